//! The bus on Kafka: a relay that publishes the outbox to Kafka, and consumer groups that read
//! Kafka and commit after processing.
//!
//! The relay holds a lease so one process relays each database's outbox. It sends every row
//! from its stored position in `seq` order through an idempotent producer (`acks=all`), so a
//! broker or network hiccup is retried without duplicates or reordering within a partition,
//! and stores the position only after Kafka acknowledged. If the broker is down, rows simply
//! wait in the outbox: nothing is lost, and the relay catches up when Kafka is back. A crash
//! between Kafka's acknowledgement and the position update publishes a few events twice;
//! consumers dedupe by event id.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use telemetry::Shutdown;

use super::{
    Bus, Handler, hold_lease, load_offset, process, read_outbox, release_lease, store_offset,
};
use crate::store::Database;

/// The pseudo consumer group under which the relay stores its outbox position.
const RELAY_GROUP: &str = "__kafka_relay";
/// Partitions of topics the relay creates.
const PARTITIONS: i32 = 3;

/// A Kafka connection: where the brokers are.
#[derive(Clone)]
pub struct KafkaTransport {
    brokers: String,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("brokers", &self.brokers)
            .finish()
    }
}

impl KafkaTransport {
    /// Checks the configuration for `brokers` (`host:port,host:port`); connects lazily.
    pub fn new(brokers: &str) -> Result<Self, KafkaError> {
        let transport = Self {
            brokers: brokers.to_owned(),
        };
        drop(transport.producer()?);
        Ok(transport)
    }

    /// A new idempotent producer (`acks=all`): retries never duplicate or reorder within a
    /// partition.
    fn producer(&self) -> Result<FutureProducer, KafkaError> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .set("retry.backoff.ms", "100")
            .create()
    }

    /// Creates the topics that do not exist yet.
    pub async fn ensure_topics(&self, topics: &[String]) -> Result<(), KafkaError> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()?;
        let wanted: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|topic| NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin.create_topics(&wanted, &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    tracing::warn!(message = "Could not create a Kafka topic.", topic, %code);
                    return Err(KafkaError::AdminOp(code));
                }
            }
        }
        Ok(())
    }
}

/// The Kafka names of the bus's topics.
pub(crate) fn kafka_topics(bus: &Bus) -> Vec<String> {
    bus.0
        .logs
        .keys()
        .map(|topic| format!("{}.{topic}", bus.namespace()))
        .collect()
}

/// Publishes `db`'s outbox to Kafka until `shutdown`.
pub(crate) async fn relay(bus: Bus, kafka: KafkaTransport, db: Database, shutdown: Shutdown) {
    let lease = "relay:kafka";
    let topics = kafka_topics(&bus);
    let mut holding = false;
    let mut producer: Option<FutureProducer> = None;
    while !shutdown.is_triggered() {
        match hold_lease(&db, lease, bus.instance(), bus.clock().now_ms()).await {
            Ok(true) => holding = true,
            Ok(false) => {
                holding = false;
                super::idle(&bus, &shutdown, super::LEASE_TTL / 4).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(message = "Relay could not reach the outbox database.", %error);
                super::idle(&bus, &shutdown, Duration::from_secs(1)).await;
                continue;
            }
        }
        let current = match producer.take() {
            Some(current) => current,
            None => match kafka.producer() {
                Ok(fresh) => fresh,
                Err(error) => {
                    tracing::warn!(message = "Relay could not create a Kafka producer.", %error);
                    super::idle(&bus, &shutdown, Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        match relay_batch(&bus, &current, &db).await {
            Ok(0) => {
                producer = Some(current);
                super::idle(&bus, &shutdown, super::POLL_INTERVAL).await;
            }
            Ok(_) => producer = Some(current),
            Err(error) => {
                metrics::counter!("cadenza_bus_relay_failures_total").increment(1);
                tracing::warn!(message = "Relay could not publish to Kafka; the events wait in the outbox.", %error);
                // The producer is dropped: a broker that restarted does not know its producer
                // id, so the next attempt starts a fresh idempotent session. A broker that lost
                // its state also needs its topics again.
                drop(current);
                if let Err(error) = kafka.ensure_topics(&topics).await {
                    tracing::warn!(message = "Could not create the bus topics; trying again with the next attempt.", %error);
                }
                tokio::select! {
                    () = shutdown.wait() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    if holding {
        release_lease(&db, lease, bus.instance()).await;
    }
}

/// Sends the next batch; returns how many rows were published.
async fn relay_batch(
    bus: &Bus,
    producer: &FutureProducer,
    db: &Database,
) -> Result<usize, super::BusError> {
    let offset = load_offset(db, RELAY_GROUP, "*").await?;
    let batch = read_outbox(db, None, offset, 500).await?;
    if batch.is_empty() {
        return Ok(0);
    }
    let sends = batch.iter().map(|(_, topic, key, envelope)| {
        let topic = format!("{}.{topic}", bus.namespace());
        async move {
            producer
                .send(
                    FutureRecord::to(&topic).key(key).payload(envelope),
                    Duration::from_secs(10),
                )
                .await
        }
    });
    let results = join_all(sends).await;
    // Advance only over the unbroken run of acknowledged rows, so nothing is skipped.
    let mut published = 0;
    let mut first_error = None;
    for ((seq, _, _, _), result) in batch.iter().zip(results) {
        match result {
            Ok(_) => {
                published += 1;
                store_offset(db, RELAY_GROUP, "*", seq + 1, bus.clock().now_ms()).await?;
            }
            Err((error, _)) => {
                first_error = Some(error);
                break;
            }
        }
    }
    metrics::counter!("cadenza_bus_relayed_total").increment(published as u64);
    match first_error {
        Some(error) => Err(error.into()),
        None => Ok(published),
    }
}

/// A Kafka consumer-group member running `handler` on `topic` until `shutdown`; commits each
/// message's offset after the handler succeeded (or dead-lettered it).
///
/// When every broker is lost, the member leaves and rejoins with a fresh consumer, which
/// resumes from the group's committed offsets (or the start of a log the broker rebuilt).
/// Re-reading is harmless: delivery is at least once and handlers dedupe.
pub(crate) async fn consumer(
    bus: Bus,
    kafka: KafkaTransport,
    db: Database,
    group: String,
    topic: &'static str,
    handler: Handler,
    shutdown: Shutdown,
) {
    while !shutdown.is_triggered() {
        match consume(&bus, &kafka, &db, &group, topic, &handler, &shutdown).await {
            Ok(()) => break,
            Err(error) => {
                metrics::counter!("cadenza_bus_consumer_rejoins_total", "group" => group.clone())
                    .increment(1);
                tracing::warn!(message = "Kafka consumer lost its brokers; rejoining.", group, %error);
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// One consumer's life: `Ok` at shutdown, `Err` when it should be replaced.
async fn consume(
    bus: &Bus,
    kafka: &KafkaTransport,
    db: &Database,
    group: &str,
    topic: &'static str,
    handler: &Handler,
    shutdown: &Shutdown,
) -> Result<(), KafkaError> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", format!("{}.{group}", bus.namespace()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("enable.partition.eof", "false")
        .create()?;
    let kafka_topic = format!("{}.{topic}", bus.namespace());
    consumer.subscribe(&[&kafka_topic])?;
    tracing::info!(
        message = "Kafka consumer subscribed.",
        group,
        topic = kafka_topic
    );
    loop {
        let message = tokio::select! {
            () = shutdown.wait() => return Ok(()),
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message.detach(),
            Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown)) => {
                return Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::AllBrokersDown,
                ));
            }
            Err(error) => {
                tracing::debug!(message = "Kafka consumer error; retrying.", group, %error);
                tokio::select! {
                    () = shutdown.wait() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
        };
        let raw = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        if !process(bus, db, group, topic, &raw, handler, shutdown).await {
            return Ok(());
        }
        let mut position = TopicPartitionList::new();
        let committed = position
            .add_partition_offset(
                message.topic(),
                message.partition(),
                Offset::Offset(message.offset() + 1),
            )
            .and_then(|()| consumer.commit(&position, CommitMode::Sync));
        if let Err(error) = committed {
            // The message will be delivered again; the handler's dedupe absorbs it.
            tracing::warn!(message = "Kafka offset commit failed.", group, %error);
        }
    }
}
