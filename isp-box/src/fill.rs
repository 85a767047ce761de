//! Pre-positioning. Inside the daily window, the box asks the control plane for its fill
//! manifest (its region's most expected tracks, sized to its disk), evicts the tracks that fell
//! out of it, and fetches what it does not hold, in the manifest's order, through its parents
//! (peers, then edges, then the origin), reading every body under a token bucket so that fill
//! traffic keeps to the cap. Outside the window it waits; a window that closes mid-fill stops
//! after the object in hand, and the next one resumes with the first object not yet held.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use edge_node::Engine;
use edge_node::upstream::FetchRequest;
use serde::{Deserialize, Serialize};
use telemetry::Shutdown;

use crate::config::{FillConfig, FillWindow};
use crate::report::Report;

/// A token bucket over bytes. Reads are taken as they arrive: a read may drive the balance
/// below zero, and the next waits until it is repaid. So in any span of `t` seconds at most
/// `rate·t + burst + one read` bytes pass: with a burst of 10 ms and reads of at most 512 KiB,
/// within 1 % of the rate over any 10 s from 64 Mbit/s up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// `rate` bytes a second, at most `burst` saved up; starts empty at `now` (a fill that
    /// starts does not begin with a burst).
    pub fn new(rate: f64, burst: f64, now: Duration) -> Self {
        Self {
            rate,
            burst,
            tokens: 0.0,
            last: now,
        }
    }

    /// Takes `bytes` read at `now` (time since any fixed start); returns how long to wait
    /// before reading more.
    pub fn take(&mut self, bytes: u64, now: Duration) -> Duration {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// One object of a manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestObject {
    /// Path without a token.
    pub path: String,
    /// Size, bytes (0: unknown).
    pub bytes: u64,
}

/// One track of a manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestTrack {
    /// The track.
    pub track_id: String,
    /// Plays expected per day.
    pub expected_plays: f64,
    /// Bytes of its objects.
    pub bytes: u64,
    /// Its objects.
    pub objects: Vec<ManifestObject>,
}

/// The control plane's fill manifest (`GET /api/v1/isp/manifest`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The box.
    pub box_id: String,
    /// The region ranking it.
    pub region: String,
    /// When it was made, Unix ms.
    pub generated_at: i64,
    /// The budget it was made for.
    pub budget_bytes: u64,
    /// Bytes listed.
    pub bytes: u64,
    /// Tracks, most expected first.
    pub tracks: Vec<ManifestTrack>,
}

/// The fill's progress, for the status and the metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FillStatus {
    /// Whether pre-positioning is configured.
    pub enabled: bool,
    /// Whether the window is open now.
    pub window_open: bool,
    /// When the current (or next) window opens, Unix ms.
    pub window_opens_at: i64,
    /// When it closes, Unix ms.
    pub window_closes_at: i64,
    /// The cap, bits per second.
    pub cap_bps: u64,
    /// The manifest in use: when it was made.
    pub manifest_generated_at: Option<i64>,
    /// Its tracks.
    pub manifest_tracks: usize,
    /// Its objects.
    pub manifest_objects: usize,
    /// Its bytes.
    pub manifest_bytes: u64,
    /// Of its objects, those the box holds.
    pub objects_held: usize,
    /// Of its bytes, those the box holds.
    pub bytes_held: u64,
    /// Fetched in this window: objects.
    pub window_objects: u64,
    /// Fetched in this window: bytes.
    pub window_bytes: u64,
    /// Fill rate over the last 10 s, bits per second.
    pub rate_bps: u64,
    /// Whether every object of the manifest is held.
    pub complete: bool,
    /// Objects evicted because their track left the manifest.
    pub dropped_objects: u64,
    /// Objects that could not be fetched in this window.
    pub failures: u64,
    /// The last problem (manifest or fetch), if any.
    pub last_error: Option<String>,
}

/// The fill: its configuration, its engine, its progress.
#[derive(Debug)]
pub struct Filler {
    engine: Engine,
    config: FillConfig,
    window: FillWindow,
    budget_bytes: u64,
    clock: telemetry::Clock,
    report: Arc<Report>,
    http: reqwest::Client,
    status: Mutex<FillStatus>,
    /// Bytes fetched in the last 10 s, by arrival (for the rate).
    recent: Mutex<std::collections::VecDeque<(tokio::time::Instant, u64)>>,
}

impl Filler {
    /// A fill for `engine` under `config`; the manifest may take `budget_bytes`.
    pub fn new(
        engine: Engine,
        config: FillConfig,
        budget_bytes: u64,
        clock: telemetry::Clock,
        report: Arc<Report>,
    ) -> anyhow::Result<Self> {
        let window = FillWindow::from_config(&config)
            .ok_or_else(|| anyhow::anyhow!("fill window is not well-formed"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let status = FillStatus {
            enabled: config.control_plane.is_some(),
            cap_bps: config.rate_bps,
            ..FillStatus::default()
        };
        Ok(Self {
            engine,
            config,
            window,
            budget_bytes,
            clock,
            report,
            http,
            status: Mutex::new(status),
            recent: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// The progress now.
    pub fn status(&self) -> FillStatus {
        let mut status = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        let now = self.clock.now_ms();
        status.window_open = self.window.is_open(now);
        (status.window_opens_at, status.window_closes_at) = self.window.bounds(now);
        status.rate_bps = self.rate_bps();
        status
    }

    fn update(&self, change: impl FnOnce(&mut FillStatus)) {
        if let Ok(mut status) = self.status.lock() {
            change(&mut status);
        }
    }

    fn rate_bps(&self) -> u64 {
        let Ok(mut recent) = self.recent.lock() else {
            return 0;
        };
        let now = tokio::time::Instant::now();
        while recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(10))
        {
            recent.pop_front();
        }
        recent.iter().map(|(_, bytes)| bytes).sum::<u64>() * 8 / 10
    }

    fn counted(&self, bytes: u64) {
        metrics::counter!("cadenza_isp_fill_bytes_total").increment(bytes);
        if let Ok(mut recent) = self.recent.lock() {
            recent.push_back((tokio::time::Instant::now(), bytes));
        }
    }

    /// Fills until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        if self.config.control_plane.is_none() {
            return;
        }
        let poll = Duration::from_millis(self.config.poll_ms);
        let refresh_ms =
            i64::try_from(self.config.manifest_refresh_secs * 1000).unwrap_or(i64::MAX);
        let mut manifest: Option<Manifest> = None;
        let mut fetched_at = i64::MIN;
        let mut window_opened = i64::MIN;
        let rate = self.config.rate_bps as f64 / 8.0;
        // A hundredth of a second's worth saved up at most.
        let mut bucket = TokenBucket::new(rate, rate / 100.0, Duration::ZERO);
        let started = tokio::time::Instant::now();
        loop {
            let now = self.clock.now_ms();
            if self.window.is_open(now) {
                let (opens, _) = self.window.bounds(now);
                if opens != window_opened {
                    window_opened = opens;
                    self.update(|status| {
                        status.window_objects = 0;
                        status.window_bytes = 0;
                        status.failures = 0;
                    });
                    // A new window asks for a new manifest.
                    fetched_at = i64::MIN;
                }
                // An empty manifest (a new box, a new catalogue) is asked for again at once.
                let empty = manifest
                    .as_ref()
                    .is_none_or(|manifest| manifest.tracks.is_empty());
                if empty || now.saturating_sub(fetched_at) >= refresh_ms {
                    match self.fetch_manifest().await {
                        Ok(fresh) => {
                            fetched_at = now;
                            self.drop_left_tracks(manifest.as_ref(), &fresh);
                            manifest = Some(fresh);
                        }
                        Err(error) => {
                            tracing::warn!(message = "Fill manifest not fetched.", error = %error);
                            self.update(|status| {
                                status.last_error = Some(format!("manifest: {error}"))
                            });
                        }
                    }
                }
                if let Some(manifest) = &manifest {
                    self.fill_from(manifest, &mut bucket, started, &shutdown)
                        .await;
                }
            }
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    async fn fetch_manifest(&self) -> anyhow::Result<Manifest> {
        let (Some(base), Some(token)) = (&self.config.control_plane, &self.config.token) else {
            anyhow::bail!("no control plane configured");
        };
        let response = self
            .http
            .get(format!(
                "{}/api/v1/isp/manifest",
                base.trim_end_matches('/')
            ))
            .query(&[("bytes", self.budget_bytes)])
            .bearer_auth(token.expose())
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("the control plane answered {status}: {body}");
        }
        let manifest: Manifest = response.json().await?;
        let objects: usize = manifest
            .tracks
            .iter()
            .map(|track| track.objects.len())
            .sum();
        tracing::info!(
            message = "Fill manifest fetched.",
            tracks = manifest.tracks.len(),
            objects,
            bytes = manifest.bytes
        );
        metrics::gauge!("cadenza_isp_manifest_bytes").set(manifest.bytes as f64);
        self.update(|status| {
            status.manifest_generated_at = Some(manifest.generated_at);
            status.manifest_tracks = manifest.tracks.len();
            status.manifest_objects = objects;
            status.manifest_bytes = manifest.bytes;
            status.last_error = None;
        });
        Ok(manifest)
    }

    /// Evicts the objects of tracks in `old` that `new` no longer lists, before anything new
    /// is fetched: they are the first to go.
    fn drop_left_tracks(&self, old: Option<&Manifest>, new: &Manifest) {
        let Some(old) = old else {
            return;
        };
        let kept: HashSet<&str> = new
            .tracks
            .iter()
            .map(|track| track.track_id.as_str())
            .collect();
        let mut dropped = 0u64;
        for track in old
            .tracks
            .iter()
            .filter(|track| !kept.contains(track.track_id.as_str()))
        {
            for object in &track.objects {
                dropped += self.engine.cache().purge(&object.path, false) as u64;
            }
        }
        if dropped > 0 {
            tracing::info!(
                message = "Objects of tracks that left the manifest evicted.",
                dropped
            );
            metrics::counter!("cadenza_isp_fill_dropped_total").increment(dropped);
            self.update(|status| status.dropped_objects += dropped);
        }
    }

    async fn fill_from(
        &self,
        manifest: &Manifest,
        bucket: &mut TokenBucket,
        started: tokio::time::Instant,
        shutdown: &Shutdown,
    ) {
        let mut held = 0usize;
        let mut held_bytes = 0u64;
        for object in manifest.tracks.iter().flat_map(|track| &track.objects) {
            if shutdown.is_triggered() || !self.window.is_open(self.clock.now_ms()) {
                break;
            }
            if !self.engine.holds(&object.path) {
                match self.fetch(&object.path, bucket, started).await {
                    Ok(bytes) => {
                        metrics::counter!("cadenza_isp_fill_objects_total").increment(1);
                        self.update(|status| {
                            status.window_objects += 1;
                            status.window_bytes += bytes;
                        });
                    }
                    Err(error) => {
                        tracing::warn!(message = "Pre-positioning fetch failed.", path = %object.path, error = %error);
                        metrics::counter!("cadenza_isp_fill_failures_total").increment(1);
                        self.update(|status| {
                            status.failures += 1;
                            status.last_error = Some(format!("{}: {error}", object.path));
                        });
                        continue;
                    }
                }
            }
            self.report.held(&object.path);
            held += 1;
            held_bytes += object.bytes;
        }
        let total: usize = manifest
            .tracks
            .iter()
            .map(|track| track.objects.len())
            .sum();
        metrics::gauge!("cadenza_isp_manifest_held_bytes").set(held_bytes as f64);
        self.update(|status| {
            status.objects_held = held;
            status.bytes_held = held_bytes;
            status.complete = held == total;
        });
    }

    /// Fetches one object through the parents under the cap and stores it on disk; returns
    /// its body's size.
    async fn fetch(
        &self,
        path: &str,
        bucket: &mut TokenBucket,
        started: tokio::time::Instant,
    ) -> anyhow::Result<u64> {
        let requested = self.engine.now_ms();
        let mut response = self
            .engine
            .upstream()
            .fetch(&FetchRequest {
                path_and_query: path.to_owned(),
                headers: http::HeaderMap::new(),
            })
            .await?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!("a parent answered {status}");
        }
        let max = self.engine.config().max_object_bytes;
        let idle = self.engine.upstream().idle_timeout;
        let headers = response.headers().clone();
        let mut body = BytesMut::new();
        loop {
            let chunk = tokio::time::timeout(idle, response.chunk())
                .await
                .map_err(|_| anyhow::anyhow!("the parent stalled"))??;
            let Some(chunk) = chunk else {
                break;
            };
            body.extend_from_slice(&chunk);
            if body.len() as u64 > max {
                anyhow::bail!("larger than max_object_bytes");
            }
            self.counted(chunk.len() as u64);
            let wait = bucket.take(chunk.len() as u64, started.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let size = body.len() as u64;
        if !self
            .engine
            .store_cold(path, status, &headers, requested, body.freeze())
            .await
        {
            anyhow::bail!("the parent's response may not be stored");
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_keeps_any_ten_seconds_within_one_percent_of_the_cap() {
        // 5 MB/s with reads of up to 64 KiB arriving as fast as they are allowed.
        let rate = 5_000_000.0;
        let mut bucket = TokenBucket::new(rate, rate / 100.0, Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut reads = Vec::new();
        let mut size = 1_000u64;
        while now < Duration::from_secs(60) {
            size = (size * 7919 + 13) % 65_536 + 1;
            reads.push((now, size));
            now += bucket.take(size, now) + Duration::from_micros(50);
        }
        let total: u64 = reads.iter().map(|(_, bytes)| bytes).sum();
        let average = total as f64 / now.as_secs_f64();
        assert!(average <= rate * 1.01 && average > rate * 0.95, "{average}");
        let window = Duration::from_secs(10);
        for (index, (start, _)) in reads.iter().enumerate() {
            let within: u64 = reads[index..]
                .iter()
                .take_while(|(at, _)| *at < *start + window)
                .map(|(_, bytes)| bytes)
                .sum();
            assert!(
                within as f64 <= rate * 10.0 * 1.01,
                "{within} bytes from {start:?}"
            );
        }
    }
}
