//! The event bus: topics, partition keys, consumer groups, at-least-once delivery with per-key
//! order, and acknowledgement after processing.
//!
//! Producers never talk to a broker. They [`append`] the event to the `outbox` table in the
//! same SQL transaction as the change that caused it, so the event exists if and only if the
//! change committed. The outbox's `seq` comes from a counter row bumped inside that
//! transaction, so sequence order is commit order.
//!
//! Delivery then takes one of two roads, chosen by the bus URL:
//! - **embedded** (default): consumer groups read the outbox directly in `seq` order, with
//!   their offsets in `bus_offsets`. One consumer per group and topic is active at a time
//!   (a lease in `bus_leases`); others stand by and take over when its lease lapses.
//! - **Kafka** (`kafka://host:port,…`): a leased relay publishes the outbox to Kafka in `seq`
//!   order with an idempotent producer (`acks=all`) and records how far it got; consumers are
//!   Kafka consumer groups that commit after processing. See [`kafka`].
//!
//! Either way a crash can deliver an event twice, so every handler dedupes by event id with
//! [`mark_processed`] in the same transaction as its effect.

pub mod kafka;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use events::{Envelope, Event};
use futures::future::BoxFuture;
use sqlx::{Any, Row, Transaction};
use telemetry::Shutdown;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::store::{Clock, Database, StoreError, is_unique_violation, long_text};

/// How long a consumer's or relay's lease lasts without renewal.
const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often an idle embedded consumer looks for events written by other processes.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Events read per batch.
const BATCH: i64 = 100;
/// Attempts at one event before it goes to the dead-letter table.
const MAX_ATTEMPTS: u32 = 8;

/// A failure of the bus itself.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus URL is not one this build understands.
    #[error("unsupported bus URL {0:?}: expected embedded:// or kafka://host:port[,host:port]")]
    BadUrl(String),
    /// The outbox database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// No database holds this topic's outbox.
    #[error("no outbox holds topic {0:?}")]
    UnknownTopic(String),
}

/// Where a handler's failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The event itself: undecodable, of an unknown version, or naming what does not exist.
    /// Delivering it again cannot help.
    Upstream,
    /// A store, object store or service the handler reads or writes: likely to pass on a
    /// retry.
    Downstream,
    /// The handler's own work (a scratch file, a task that died).
    Internal,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
            Self::Internal => "internal",
        }
    }
}

/// Why a handler could not process an event: where it came from, and whether delivering the
/// event again may help. A retryable failure is retried with backoff up to [`MAX_ATTEMPTS`]
/// times; one that is not goes to the dead letters at once.
#[derive(Debug, thiserror::Error)]
#[error("{} failure{}: {message}", fault.name(), if *retryable { "" } else { " (not retried)" })]
pub struct HandlerError {
    /// Where it came from.
    pub fault: Fault,
    /// Whether delivering the event again may succeed.
    pub retryable: bool,
    /// What went wrong.
    pub message: String,
}

impl HandlerError {
    /// The event cannot be processed as it is (never retried).
    pub fn upstream(error: impl std::fmt::Display) -> Self {
        Self {
            fault: Fault::Upstream,
            retryable: false,
            message: error.to_string(),
        }
    }

    /// A store or service failed (retried).
    pub fn downstream(error: impl std::fmt::Display) -> Self {
        Self {
            fault: Fault::Downstream,
            retryable: true,
            message: error.to_string(),
        }
    }

    /// The handler's own work failed (retried).
    pub fn internal(error: impl std::fmt::Display) -> Self {
        Self {
            fault: Fault::Internal,
            retryable: true,
            message: error.to_string(),
        }
    }
}

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> Self {
        Self::downstream(error)
    }
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        Self::downstream(error)
    }
}

impl From<events::DecodeError> for HandlerError {
    fn from(error: events::DecodeError) -> Self {
        Self::upstream(error)
    }
}

impl From<crate::error::Error> for HandlerError {
    fn from(error: crate::error::Error) -> Self {
        match error {
            crate::error::Error::Store(error) => Self::downstream(error),
            other => Self::internal(other),
        }
    }
}

/// Processes one event. Must be idempotent (dedupe with [`mark_processed`]).
pub type Handler =
    Arc<dyn Fn(Envelope) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync>;

/// Appends `event` (keyed by `key`) to the outbox inside `tx`, and returns its envelope.
/// The event is published if and only if `tx` commits.
pub async fn append<E: Event>(
    tx: &mut Transaction<'_, Any>,
    key: &str,
    event: &E,
    now: i64,
) -> Result<Envelope, StoreError> {
    let envelope = Envelope::new(key, event, now);
    // Bumping the counter row first takes its lock until commit: producers serialise here,
    // and sequence order equals commit order.
    sqlx::query("UPDATE bus_sequence SET value = value + 1 WHERE name = 'outbox'")
        .execute(&mut **tx)
        .await?;
    let seq: i64 = sqlx::query("SELECT value FROM bus_sequence WHERE name = 'outbox'")
        .fetch_one(&mut **tx)
        .await?
        .try_get("value")?;
    sqlx::query("INSERT INTO outbox (seq, id, topic, event_key, envelope, created_at) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(seq)
        .bind(envelope.id.to_string())
        .bind(E::TOPIC)
        .bind(key)
        .bind(envelope.to_json())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    metrics::counter!("cadenza_bus_events_appended_total", "topic" => E::TOPIC, "type" => E::TYPE)
        .increment(1);
    Ok(envelope)
}

/// Records inside `tx` that `group` processed `event_id`. Returns `false` if it already had:
/// the caller then skips the effect (and may commit or drop `tx`).
pub async fn mark_processed(
    tx: &mut Transaction<'_, Any>,
    group: &str,
    event_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "INSERT INTO bus_processed (consumer_group, event_id, processed_at) VALUES (?, ?, ?)",
    )
    .bind(group)
    .bind(event_id)
    .bind(now)
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(error) if is_unique_violation(&error) => {
            metrics::counter!("cadenza_bus_duplicates_total", "group" => group.to_owned())
                .increment(1);
            Ok(false)
        }
        Err(error) => Err(error.into()),
    }
}

enum Transport {
    Embedded,
    Kafka(kafka::KafkaTransport),
}

struct BusInner {
    transport: Transport,
    /// Which database holds each topic's outbox.
    logs: HashMap<&'static str, Database>,
    clock: Clock,
    /// Wakes embedded consumers and the relay as soon as this process appends.
    appended: Notify,
    /// This process's identity in leases.
    instance: String,
    /// Prefix of Kafka topic and group names (`{namespace}.{topic}`).
    namespace: String,
}

/// A handle to the bus; cheap to clone.
///
/// On Kafka, topic `t` is `{namespace}.t` and group `g` is `{namespace}.g`, so several
/// deployments (or test runs) can share one cluster.
#[derive(Clone)]
pub struct Bus(Arc<BusInner>);

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("transport", &self.transport_name())
            .field("topics", &self.0.logs.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Bus {
    /// A bus over `url` (`None` or `embedded://`: the outbox itself; `kafka://…`: Kafka),
    /// whose topics' outboxes live in the databases `logs` names.
    pub fn new(
        url: Option<&str>,
        namespace: &str,
        logs: HashMap<&'static str, Database>,
        clock: Clock,
    ) -> Result<Self, BusError> {
        let transport = match url {
            None | Some("") | Some("embedded://") => Transport::Embedded,
            Some(url) if url.starts_with("kafka://") => Transport::Kafka(
                kafka::KafkaTransport::new(url.trim_start_matches("kafka://"))?,
            ),
            Some(other) => return Err(BusError::BadUrl(other.to_owned())),
        };
        Ok(Self(Arc::new(BusInner {
            transport,
            logs,
            clock,
            appended: Notify::new(),
            instance: uuid::Uuid::new_v4().to_string(),
            namespace: namespace.to_owned(),
        })))
    }

    /// `embedded` or `kafka`.
    pub fn transport_name(&self) -> &'static str {
        match self.0.transport {
            Transport::Embedded => "embedded",
            Transport::Kafka(_) => "kafka",
        }
    }

    /// Tells local consumers (and the relay) that something was appended and committed.
    pub fn notify(&self) {
        self.0.appended.notify_waiters();
    }

    /// Starts whatever moves events from the outbox to consumers: nothing for the embedded
    /// bus, the relay for Kafka. Creates Kafka topics first.
    pub async fn start(&self, shutdown: Shutdown) -> Result<Vec<JoinHandle<()>>, BusError> {
        match &self.0.transport {
            Transport::Embedded => Ok(Vec::new()),
            Transport::Kafka(kafka) => {
                kafka.ensure_topics(&kafka::kafka_topics(self)).await?;
                let mut tasks = Vec::new();
                let mut seen: Vec<Database> = Vec::new();
                for db in self.0.logs.values() {
                    // One relay per database, however many topics it holds.
                    if seen.iter().any(|other| other.same_pool(db)) {
                        continue;
                    }
                    seen.push(db.clone());
                    tasks.push(tokio::spawn(kafka::relay(
                        self.clone(),
                        kafka.clone(),
                        db.clone(),
                        shutdown.clone(),
                    )));
                }
                Ok(tasks)
            }
        }
    }

    /// Runs `handler` for every event of `topic` in consumer group `group` until `shutdown`.
    pub fn subscribe(
        &self,
        group: &str,
        topic: &'static str,
        handler: Handler,
        shutdown: Shutdown,
    ) -> Result<JoinHandle<()>, BusError> {
        let db = self
            .0
            .logs
            .get(topic)
            .cloned()
            .ok_or_else(|| BusError::UnknownTopic(topic.to_owned()))?;
        let group = group.to_owned();
        Ok(match &self.0.transport {
            Transport::Embedded => tokio::spawn(embedded_consumer(
                self.clone(),
                db,
                group,
                topic,
                handler,
                shutdown,
            )),
            Transport::Kafka(kafka) => tokio::spawn(kafka::consumer(
                self.clone(),
                kafka.clone(),
                db,
                group,
                topic,
                handler,
                shutdown,
            )),
        })
    }

    /// Delivers everything pending in `topic`'s outbox to `handler` as consumer group `group`,
    /// here and now, without a lease (for tools and tests of the embedded bus). Returns how
    /// many events were processed.
    pub async fn poll(
        &self,
        group: &str,
        topic: &str,
        handler: &Handler,
    ) -> Result<usize, BusError> {
        let db = self
            .0
            .logs
            .get(topic)
            .cloned()
            .ok_or_else(|| BusError::UnknownTopic(topic.to_owned()))?;
        let shutdown = Shutdown::new();
        let mut total = 0;
        loop {
            let got = poll_batch(self, &db, group, topic, handler, &shutdown).await?;
            if got == 0 {
                return Ok(total);
            }
            total += got;
        }
    }

    /// The namespace that prefixes Kafka topics and consumer groups.
    pub(crate) fn namespace(&self) -> &str {
        &self.0.namespace
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.0.clock
    }

    pub(crate) fn instance(&self) -> &str {
        &self.0.instance
    }

    pub(crate) async fn appended(&self) {
        self.0.appended.notified().await;
    }
}

/// Takes or renews the lease `name` for this instance. `Ok(true)` while it is ours.
pub(crate) async fn hold_lease(
    db: &Database,
    name: &str,
    owner: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let expires = now + LEASE_TTL.as_millis() as i64;
    sqlx::query("UPDATE bus_leases SET owner = ?, expires_at = ? WHERE name = ? AND (owner = ? OR expires_at < ?)")
        .bind(owner)
        .bind(expires)
        .bind(name)
        .bind(owner)
        .bind(now)
        .execute(db.pool())
        .await?;
    let insert = sqlx::query("INSERT INTO bus_leases (name, owner, expires_at) VALUES (?, ?, ?)")
        .bind(name)
        .bind(owner)
        .bind(expires)
        .execute(db.pool())
        .await;
    if let Err(error) = insert
        && !is_unique_violation(&error)
    {
        return Err(error.into());
    }
    let holder: String = sqlx::query("SELECT owner FROM bus_leases WHERE name = ?")
        .bind(name)
        .fetch_one(db.pool())
        .await?
        .try_get("owner")?;
    Ok(holder == owner)
}

/// Gives a lease up (at shutdown), so a standby takes over at once.
pub(crate) async fn release_lease(db: &Database, name: &str, owner: &str) {
    if let Err(error) = sqlx::query("DELETE FROM bus_leases WHERE name = ? AND owner = ?")
        .bind(name)
        .bind(owner)
        .execute(db.pool())
        .await
    {
        // Harmless: the lease expires on its own and a standby takes over then.
        tracing::warn!(message = "Could not give a bus lease up; it expires on its own.", lease = name, %error);
    }
}

/// The next sequence number `group` wants from `topic` (0 for a new group).
pub(crate) async fn load_offset(
    db: &Database,
    group: &str,
    topic: &str,
) -> Result<i64, StoreError> {
    let row =
        sqlx::query("SELECT next_seq FROM bus_offsets WHERE consumer_group = ? AND topic = ?")
            .bind(group)
            .bind(topic)
            .fetch_optional(db.pool())
            .await?;
    Ok(match row {
        Some(row) => row.try_get("next_seq")?,
        None => 0,
    })
}

/// Records that `group` has processed everything of `topic` before `next_seq`.
pub(crate) async fn store_offset(
    db: &Database,
    group: &str,
    topic: &str,
    next_seq: i64,
    now: i64,
) -> Result<(), StoreError> {
    let updated = sqlx::query("UPDATE bus_offsets SET next_seq = ?, updated_at = ? WHERE consumer_group = ? AND topic = ?")
        .bind(next_seq)
        .bind(now)
        .bind(group)
        .bind(topic)
        .execute(db.pool())
        .await?;
    if updated.rows_affected() == 0 {
        let insert = sqlx::query("INSERT INTO bus_offsets (consumer_group, topic, next_seq, updated_at) VALUES (?, ?, ?, ?)")
            .bind(group)
            .bind(topic)
            .bind(next_seq)
            .bind(now)
            .execute(db.pool())
            .await;
        match insert {
            // MySQL reports 0 rows for an update that changed nothing; the row exists.
            Err(error) if is_unique_violation(&error) => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// Outbox rows of `topic` from `from_seq` on, in order.
pub(crate) async fn read_outbox(
    db: &Database,
    topic: Option<&str>,
    from_seq: i64,
    limit: i64,
) -> Result<Vec<(i64, String, String, String)>, StoreError> {
    let rows = match topic {
        Some(topic) => {
            sqlx::query("SELECT seq, topic, event_key, envelope FROM outbox WHERE topic = ? AND seq >= ? ORDER BY seq LIMIT ?")
                .bind(topic)
                .bind(from_seq)
                .bind(limit)
                .fetch_all(db.pool())
                .await?
        }
        None => {
            sqlx::query("SELECT seq, topic, event_key, envelope FROM outbox WHERE seq >= ? ORDER BY seq LIMIT ?")
                .bind(from_seq)
                .bind(limit)
                .fetch_all(db.pool())
                .await?
        }
    };
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("seq")?,
                row.try_get("topic")?,
                row.try_get("event_key")?,
                long_text(row, "envelope")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Runs `handler` on one event, retrying with backoff. After [`MAX_ATTEMPTS`] failures (or at
/// once if the envelope cannot be read or the failure is not retryable) the event goes to
/// `bus_dead_letters`, is logged and
/// counted, and delivery moves on. Returns `false` only when shutdown interrupted it (the
/// event must not be acknowledged).
pub(crate) async fn process(
    bus: &Bus,
    db: &Database,
    group: &str,
    topic: &str,
    raw: &str,
    handler: &Handler,
    shutdown: &Shutdown,
) -> bool {
    let envelope = match Envelope::from_json(raw.as_bytes()) {
        Ok(envelope) => envelope,
        Err(error) => {
            let id = format!("unreadable-{}", uuid::Uuid::new_v4());
            dead_letter(bus, db, group, topic, &id, raw, &error.to_string()).await;
            return true;
        }
    };
    let mut attempt = 0;
    loop {
        let started = std::time::Instant::now();
        match handler(envelope.clone()).await {
            Ok(()) => {
                metrics::counter!("cadenza_bus_events_processed_total", "group" => group.to_owned(), "type" => envelope.kind.clone())
                    .increment(1);
                metrics::histogram!("cadenza_bus_handler_duration_seconds", "group" => group.to_owned())
                    .record(started.elapsed().as_secs_f64());
                return true;
            }
            Err(error) => {
                attempt += 1;
                metrics::counter!("cadenza_bus_handler_failures_total", "group" => group.to_owned(), "fault" => error.fault.name())
                    .increment(1);
                if attempt >= MAX_ATTEMPTS || !error.retryable {
                    dead_letter(
                        bus,
                        db,
                        group,
                        topic,
                        &envelope.id.to_string(),
                        raw,
                        &error.to_string(),
                    )
                    .await;
                    return true;
                }
                tracing::warn!(message = "Event handler failed; retrying.", group, event_id = %envelope.id, attempt, %error);
                let backoff = Duration::from_millis(50u64 << attempt.min(7));
                tokio::select! {
                    () = shutdown.wait() => return false,
                    () = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}

async fn dead_letter(
    bus: &Bus,
    db: &Database,
    group: &str,
    topic: &str,
    event_id: &str,
    raw: &str,
    error: &str,
) {
    tracing::error!(
        message = "Event moved to the dead-letter table: it failed repeatedly or cannot succeed.",
        group,
        topic,
        event_id,
        error
    );
    metrics::counter!("cadenza_bus_dead_letters_total", "group" => group.to_owned()).increment(1);
    let error: String = error.chars().take(2000).collect();
    let result = sqlx::query(
        "INSERT INTO bus_dead_letters (consumer_group, event_id, topic, envelope, error, failed_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(group)
    .bind(event_id)
    .bind(topic)
    .bind(raw)
    .bind(error)
    .bind(bus.clock().now_ms())
    .execute(db.pool())
    .await;
    if let Err(error) = result
        && !is_unique_violation(&error)
    {
        tracing::error!(message = "Could not record a dead letter.", %error);
    }
}

/// The embedded consumer: holds the group's lease, reads the outbox from its offset, runs the
/// handler on each event in order and acknowledges each by advancing the offset.
async fn embedded_consumer(
    bus: Bus,
    db: Database,
    group: String,
    topic: &'static str,
    handler: Handler,
    shutdown: Shutdown,
) {
    let lease = format!("consumer:{group}:{topic}");
    let mut holding = false;
    while !shutdown.is_triggered() {
        let now = bus.clock().now_ms();
        match hold_lease(&db, &lease, bus.instance(), now).await {
            Ok(true) => {
                if !holding {
                    tracing::info!(message = "Consumer is active.", group, topic);
                    holding = true;
                }
            }
            Ok(false) => {
                holding = false;
                idle(&bus, &shutdown, LEASE_TTL / 4).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(message = "Consumer could not reach the outbox database.", group, %error);
                idle(&bus, &shutdown, Duration::from_secs(1)).await;
                continue;
            }
        }
        match poll_batch(&bus, &db, &group, topic, &handler, &shutdown).await {
            Ok(0) => idle(&bus, &shutdown, POLL_INTERVAL).await,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(message = "Consumer failed to read the outbox; retrying.", group, %error);
                idle(&bus, &shutdown, Duration::from_secs(1)).await;
            }
        }
    }
    if holding {
        release_lease(&db, &lease, bus.instance()).await;
    }
}

/// Processes the next batch of `topic` for `group` from the outbox and acknowledges each
/// event after its handler; returns how many were processed.
async fn poll_batch(
    bus: &Bus,
    db: &Database,
    group: &str,
    topic: &str,
    handler: &Handler,
    shutdown: &Shutdown,
) -> Result<usize, StoreError> {
    let offset = load_offset(db, group, topic).await?;
    let batch = read_outbox(db, Some(topic), offset, BATCH).await?;
    let got = batch.len();
    for (seq, _, _, raw) in batch {
        if !process(bus, db, group, topic, &raw, handler, shutdown).await {
            return Ok(0);
        }
        store_offset(db, group, topic, seq + 1, bus.clock().now_ms()).await?;
    }
    Ok(got)
}

async fn idle(bus: &Bus, shutdown: &Shutdown, at_most: Duration) {
    tokio::select! {
        () = shutdown.wait() => {}
        () = bus.appended() => {}
        () = tokio::time::sleep(at_most) => {}
    }
}
