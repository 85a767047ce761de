//! The event envelope every bus message carries, and the payloads that cross service boundaries.
//!
//! Every event is `{id, type, version, occurred_at, key, payload}`: `id` is a UUID v7 that
//! consumers dedupe by, `key` (a user or track id) is the partition key that keeps one
//! entity's events in order, and `type` + `version` say how to read `payload`. Delivery is
//! at least once, so every consumer must make a second delivery change nothing.
//! This crate has no I/O.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Makes a payload an [`Event`] of `topic` with its `type` string and schema version, where
/// the payload is declared: `event!(TOPIC, PaymentSucceeded, "payment.succeeded", 1);`.
macro_rules! event {
    ($topic:expr, $payload:ty, $kind:literal, $version:literal) => {
        impl $crate::Event for $payload {
            const TOPIC: &'static str = $topic;
            const TYPE: &'static str = $kind;
            const VERSION: u32 = $version;
        }
    };
}

pub mod payments;
pub mod plays;
pub mod subscriptions;
pub mod tracks;

/// A typed event: its payload type names its topic, type string and version.
pub trait Event: Serialize + DeserializeOwned {
    /// The topic it is published on.
    const TOPIC: &'static str;
    /// The `type` field, e.g. `payment.succeeded`.
    const TYPE: &'static str;
    /// The payload's schema version; bumped on incompatible change.
    const VERSION: u32;
}

/// The versioned JSON envelope every event travels in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id (UUID v7, time-ordered); consumers dedupe by it.
    pub id: Uuid,
    /// What happened, e.g. `payment.succeeded`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Payload schema version.
    pub version: u32,
    /// When it happened, RFC 3339 UTC.
    pub occurred_at: String,
    /// Partition key: the entity whose events must stay in order.
    pub key: String,
    /// The event's facts.
    pub payload: serde_json::Value,
}

/// Why an envelope could not be read as the expected event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The envelope is not JSON of the envelope's shape.
    #[error("malformed envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    /// It is another type of event.
    #[error("expected a {expected} event, got {actual}")]
    WrongType {
        /// The type asked for.
        expected: &'static str,
        /// The type found.
        actual: String,
    },
    /// It is a version this code does not know.
    #[error("{kind} version {version} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The event type.
        kind: String,
        /// The version found.
        version: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The payload does not match the type's schema.
    #[error("malformed {kind} payload: {source}")]
    Payload {
        /// The event type.
        kind: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

impl Envelope {
    /// Wraps `event` for `key`, stamped with `occurred_at_ms` (Unix milliseconds).
    pub fn new<E: Event>(key: impl Into<String>, event: &E, occurred_at_ms: i64) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind: E::TYPE.to_owned(),
            version: E::VERSION,
            occurred_at: rfc3339(occurred_at_ms),
            key: key.into(),
            payload: serde_json::to_value(event).expect("event payloads serialise to JSON"),
        }
    }

    /// The topic this envelope's type belongs on.
    pub fn topic_of<E: Event>() -> &'static str {
        E::TOPIC
    }

    /// Parses an envelope from its JSON text.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(DecodeError::Envelope)
    }

    /// The JSON text of the envelope.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("envelopes serialise to JSON")
    }

    /// Whether this is an event of type `E`.
    pub fn is<E: Event>(&self) -> bool {
        self.kind == E::TYPE
    }

    /// Reads the payload as `E`, checking type and version.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        if self.kind != E::TYPE {
            return Err(DecodeError::WrongType {
                expected: E::TYPE,
                actual: self.kind.clone(),
            });
        }
        if self.version != E::VERSION {
            return Err(DecodeError::UnsupportedVersion {
                kind: self.kind.clone(),
                version: self.version,
                supported: E::VERSION,
            });
        }
        serde_json::from_value(self.payload.clone()).map_err(|source| DecodeError::Payload {
            kind: self.kind.clone(),
            source,
        })
    }
}

impl Envelope {
    /// When the event occurred, Unix ms (`None` if `occurred_at` is not RFC 3339).
    pub fn occurred_at_ms(&self) -> Option<i64> {
        parse_rfc3339(&self.occurred_at)
    }
}

/// Unix milliseconds as RFC 3339 in UTC with exactly three fractional digits
/// (`2026-12-03T11:00:00.000Z`), the one form every Cadenza timestamp takes on the wire. Times
/// before 1970 are written as 1970.
pub fn rfc3339(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms.max(0));
    at.format(FORMAT)
        .expect("a UTC time between 1970 and 9999 formats")
}

/// An RFC 3339 timestamp (any offset, any fraction) as Unix milliseconds; `None` if it is not
/// one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::PaymentSucceeded;

    #[test]
    fn timestamps_are_utc_with_milliseconds_and_read_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    fn sample() -> PaymentSucceeded {
        PaymentSucceeded {
            payment_id: "p1".into(),
            user_id: "u1".into(),
            package_id: "k1".into(),
            amount: 999,
            currency: "EUR".into(),
            period: "month".into(),
            provider: "sandbox".into(),
            succeeded_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn occurred_at_reads_back_to_the_millisecond() {
        let envelope = Envelope::new("k", &sample(), 1_700_000_000_123);
        assert_eq!(envelope.occurred_at_ms(), Some(1_700_000_000_123));
    }

    #[test]
    fn round_trips_through_json() {
        let envelope = Envelope::new("u1", &sample(), 1_700_000_000_000);
        let text = envelope.to_json();
        assert!(text.contains(r#""type":"payment.succeeded""#), "{text}");
        assert!(
            text.contains(r#""occurred_at":"2023-11-14T22:13:20.000Z""#),
            "{text}"
        );
        let back = Envelope::from_json(text.as_bytes()).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(back.decode::<PaymentSucceeded>().unwrap(), sample());
        assert_eq!(back.id.get_version_num(), 7);
    }

    #[test]
    fn refuses_other_types_and_versions() {
        let mut envelope = Envelope::new("u1", &sample(), 0);
        envelope.version = 99;
        assert!(matches!(
            envelope.decode::<PaymentSucceeded>(),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        envelope.version = 1;
        envelope.kind = "payment.refunded".into();
        assert!(matches!(
            envelope.decode::<PaymentSucceeded>(),
            Err(DecodeError::WrongType { .. })
        ));
        envelope.kind = "payment.succeeded".into();
        envelope.payload = serde_json::json!({"payment_id": 5});
        assert!(matches!(
            envelope.decode::<PaymentSucceeded>(),
            Err(DecodeError::Payload { .. })
        ));
        assert!(Envelope::from_json(b"{}").is_err());
    }
}
