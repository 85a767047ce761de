//! The cache in front of the User DB (the spec's MySQL → Redis): sessions and profiles, plus
//! the counters of login throttling. In-process (moka) by default, Redis when configured.
//!
//! The cache is never the source of truth. Every read that fails (Redis down, slow, returning
//! garbage) is a miss and the caller reads the database; every failure is logged and counted
//! in `cadenza_cache_errors_total`. While Redis is failing, a breaker skips it for a second at
//! a time so that requests do not each wait for a timeout. Entries carry short TTLs so that an
//! invalidation lost while Redis was unreachable heals by itself.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::Expiry;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

/// How long one Redis operation may take before it counts as a failure.
const REDIS_TIMEOUT: Duration = Duration::from_millis(300);
/// How long Redis is skipped after a failure.
const BREAKER_OPEN: Duration = Duration::from_secs(1);

/// A cache failure; callers treat it as a miss.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Redis answered with an error or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis failed recently and is being skipped for a moment.
    #[error("redis is being skipped after a recent failure")]
    BreakerOpen,
}

#[derive(Clone)]
struct MemoryEntry {
    value: Arc<Vec<u8>>,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, MemoryEntry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &MemoryEntry,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &MemoryEntry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

type Memory = moka::future::Cache<String, MemoryEntry>;

fn new_memory(capacity: u64) -> Memory {
    moka::future::Cache::builder()
        .max_capacity(capacity)
        .expire_after(PerEntryTtl)
        .build()
}

struct Redis {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    /// Unix ms until which Redis is skipped.
    skip_until_ms: AtomicU64,
}

enum Backend {
    Memory(Memory),
    Redis(Box<Redis>),
}

/// A shared handle to the cache.
#[derive(Clone)]
pub struct Cache {
    backend: Arc<Backend>,
    prefix: Arc<str>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.backend_name())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Cache {
    /// An in-process cache holding at most `capacity` entries.
    pub fn memory(capacity: u64, prefix: &str) -> Self {
        Self {
            backend: Arc::new(Backend::Memory(new_memory(capacity))),
            prefix: prefix.into(),
        }
    }

    /// A Redis cache. Connecting is lazy, so the service starts (and stays correct) while
    /// Redis is down; only a malformed URL fails here.
    pub fn redis(url: &str, prefix: &str) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        Ok(Self {
            backend: Arc::new(Backend::Redis(Box::new(Redis {
                client,
                connection: OnceCell::new(),
                skip_until_ms: AtomicU64::new(0),
            }))),
            prefix: prefix.into(),
        })
    }

    /// From a `memory://` or `redis://` URL; `None` means memory.
    pub fn from_url(url: Option<&str>, prefix: &str) -> Result<Self, CacheError> {
        match url {
            Some(url) if url.starts_with("redis") => Self::redis(url, prefix),
            _ => Ok(Self::memory(100_000, prefix)),
        }
    }

    /// `memory` or `redis`, for logs and metrics.
    pub fn backend_name(&self) -> &'static str {
        match &*self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Reads and decodes a value. Failures and undecodable values are misses.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let key = self.key(key);
        let bytes = match &*self.backend {
            Backend::Memory(memory) => memory.get(&key).await.map(|entry| entry.value.to_vec()),
            Backend::Redis(redis) => {
                match redis
                    .run(|mut conn| async move { conn.get::<_, Option<Vec<u8>>>(&key).await })
                    .await
                {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        self.record_error("get", &error);
                        return None;
                    }
                }
            }
        };
        let outcome = match bytes.as_deref().map(serde_json::from_slice::<T>) {
            Some(Ok(value)) => Some(value),
            Some(Err(_)) => {
                metrics::counter!("cadenza_cache_errors_total", "backend" => self.backend_name(), "op" => "decode")
                    .increment(1);
                None
            }
            None => None,
        };
        let result = if outcome.is_some() { "hit" } else { "miss" };
        metrics::counter!("cadenza_cache_requests_total", "backend" => self.backend_name(), "result" => result)
            .increment(1);
        outcome
    }

    /// Stores a value for `ttl`. A failure is logged and counted; the caller goes on.
    pub async fn set_json<T: Serialize>(&self, key: &str, value: &T, ttl: Duration) {
        let Ok(bytes) = serde_json::to_vec(value) else {
            return;
        };
        let key = self.key(key);
        match &*self.backend {
            Backend::Memory(memory) => {
                memory
                    .insert(
                        key,
                        MemoryEntry {
                            value: Arc::new(bytes),
                            ttl,
                        },
                    )
                    .await;
            }
            Backend::Redis(redis) => {
                let secs = ttl.as_secs().max(1);
                if let Err(error) = redis
                    .run(|mut conn| async move { conn.set_ex::<_, _, ()>(&key, bytes, secs).await })
                    .await
                {
                    self.record_error("set", &error);
                }
            }
        }
    }

    /// Removes keys. Returns `false` (after logging and counting) if Redis could not be told;
    /// the entries then expire by their TTL.
    pub async fn delete(&self, keys: &[String]) -> bool {
        if keys.is_empty() {
            return true;
        }
        let keys: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        match &*self.backend {
            Backend::Memory(memory) => {
                for key in &keys {
                    memory.invalidate(key).await;
                }
                true
            }
            Backend::Redis(redis) => {
                match redis
                    .run(|mut conn| async move { conn.del::<_, ()>(keys).await })
                    .await
                {
                    Ok(()) => true,
                    Err(error) => {
                        self.record_error("delete", &error);
                        false
                    }
                }
            }
        }
    }

    /// Adds one to a counter that lives for `window` from its first increment, and returns
    /// the new count with the seconds left in its window.
    pub async fn incr_window(&self, key: &str, window: Duration) -> Result<(u64, u64), CacheError> {
        let key = self.key(key);
        match &*self.backend {
            Backend::Memory(memory) => {
                let now = unix_secs();
                let entry = memory
                    .entry(key)
                    .and_compute_with(|existing| {
                        let (count, started) = existing
                            .and_then(|entry| decode_window(entry.value()))
                            .unwrap_or((0, now));
                        let next = encode_window(count + 1, started);
                        std::future::ready(moka::ops::compute::Op::Put(MemoryEntry {
                            value: Arc::new(next),
                            ttl: window.saturating_sub(Duration::from_secs(now - started)),
                        }))
                    })
                    .await;
                let (count, started) = entry
                    .into_entry()
                    .and_then(|entry| decode_window(entry.value()))
                    .unwrap_or((1, now));
                Ok((
                    count,
                    (started + window.as_secs()).saturating_sub(now).max(1),
                ))
            }
            Backend::Redis(redis) => {
                let secs = window.as_secs().max(1);
                let result = redis
                    .run(|mut conn| async move {
                        let (count, ttl): (u64, i64) = redis::pipe()
                            .atomic()
                            .cmd("SET")
                            .arg(&key)
                            .arg(0)
                            .arg("EX")
                            .arg(secs)
                            .arg("NX")
                            .ignore()
                            .incr(&key, 1)
                            .ttl(&key)
                            .query_async(&mut conn)
                            .await?;
                        Ok((count, ttl.max(1) as u64))
                    })
                    .await;
                result.inspect_err(|error| self.record_error("incr", error))
            }
        }
    }

    /// The current count of a window counter and the seconds left in its window
    /// (`(0, 0)` when there is none).
    pub async fn window_count(&self, key: &str) -> Result<(u64, u64), CacheError> {
        let key = self.key(key);
        match &*self.backend {
            Backend::Memory(memory) => {
                let now = unix_secs();
                Ok(match memory.get(&key).await {
                    Some(entry) => match decode_window(&entry) {
                        Some((count, started)) => {
                            let left = (started + entry.ttl.as_secs()).saturating_sub(now);
                            (count, left.max(1))
                        }
                        None => (0, 0),
                    },
                    None => (0, 0),
                })
            }
            Backend::Redis(redis) => {
                let result = redis
                    .run(|mut conn| async move {
                        let (count, ttl): (Option<u64>, i64) = redis::pipe()
                            .get(&key)
                            .ttl(&key)
                            .query_async(&mut conn)
                            .await?;
                        Ok((count.unwrap_or(0), ttl.max(0) as u64))
                    })
                    .await;
                result.inspect_err(|error| self.record_error("get", error))
            }
        }
    }

    /// Whether the backend answers (for readiness reports; the service is ready without it).
    pub async fn ping(&self) -> Result<(), CacheError> {
        match &*self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(redis) => {
                redis
                    .run(|mut conn| async move {
                        redis::cmd("PING")
                            .query_async::<String>(&mut conn)
                            .await
                            .map(drop)
                    })
                    .await
            }
        }
    }

    fn record_error(&self, op: &'static str, error: &CacheError) {
        metrics::counter!("cadenza_cache_errors_total", "backend" => self.backend_name(), "op" => op).increment(1);
        if !matches!(error, CacheError::BreakerOpen) {
            tracing::warn!(message = "Cache operation failed; falling back to the database.", op, %error);
        }
    }
}

impl Redis {
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        let now = unix_ms();
        if now < self.skip_until_ms.load(Ordering::Relaxed) {
            return Err(CacheError::BreakerOpen);
        }
        let attempt = async {
            let connection = self
                .connection
                .get_or_try_init(|| {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(REDIS_TIMEOUT)
                        .set_response_timeout(REDIS_TIMEOUT)
                        .set_number_of_retries(1);
                    ConnectionManager::new_with_config(self.client.clone(), config)
                })
                .await?
                .clone();
            op(connection).await.map_err(CacheError::from)
        };
        let result = match tokio::time::timeout(REDIS_TIMEOUT * 2, attempt).await {
            Ok(result) => result,
            Err(_) => Err(CacheError::Timeout(REDIS_TIMEOUT * 2)),
        };
        if result.is_err() {
            self.skip_until_ms
                .store(now + BREAKER_OPEN.as_millis() as u64, Ordering::Relaxed);
        }
        result
    }
}

fn encode_window(count: u64, started: u64) -> Vec<u8> {
    format!("{count}:{started}").into_bytes()
}

fn decode_window(entry: &MemoryEntry) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(&entry.value).ok()?;
    let (count, started) = text.split_once(':')?;
    Some((count.parse().ok()?, started.parse().ok()?))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn unix_secs() -> u64 {
    unix_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_round_trip_and_delete() {
        let cache = Cache::memory(100, "t:");
        cache
            .set_json("a", &vec![1, 2, 3], Duration::from_secs(60))
            .await;
        assert_eq!(cache.get_json::<Vec<i32>>("a").await, Some(vec![1, 2, 3]));
        assert!(cache.delete(&["a".to_owned()]).await);
        assert_eq!(cache.get_json::<Vec<i32>>("a").await, None);
    }

    #[tokio::test]
    async fn memory_window_counts() {
        let cache = Cache::memory(100, "t:");
        assert_eq!(cache.window_count("w").await.unwrap().0, 0);
        for expected in 1..=3 {
            let (count, left) = cache
                .incr_window("w", Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(count, expected);
            assert!(left > 0 && left <= 60);
        }
        assert_eq!(cache.window_count("w").await.unwrap().0, 3);
    }

    #[tokio::test]
    async fn unreachable_redis_is_a_miss_not_a_failure() {
        // Port 1 on loopback refuses connections.
        let cache = Cache::redis("redis://127.0.0.1:1/", "t:").unwrap();
        cache.set_json("k", &1, Duration::from_secs(5)).await;
        assert_eq!(cache.get_json::<i32>("k").await, None);
        assert!(!cache.delete(&["k".to_owned()]).await);
        assert!(
            cache
                .incr_window("w", Duration::from_secs(5))
                .await
                .is_err()
        );
        assert!(cache.ping().await.is_err());
    }
}
