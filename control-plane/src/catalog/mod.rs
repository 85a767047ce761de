//! The catalog (the spec's Cassandra): per-track media facts — renditions and their segment
//! index, duration, loudness, tags and top tags, thumbnails — and the processing timeline,
//! persisted by the `catalog` consumer group from the track events.
//!
//! The store is a trait shaped for a wide-column database: every read and write names one
//! partition (the track id), the timeline is clustered by time, nothing joins. The embedded
//! implementation is SQLite (`catalog.db`); a Cassandra/ScyllaDB one would map
//! `track_media` and `track_timeline` one to one (see the migration for the CQL).

mod http;
pub mod store;

pub use store::{PlayCounter, TimelineEntry, TrackMedia};

pub(crate) use http::routes;

use std::sync::Arc;

use events::Envelope;
use events::tracks::{TrackFailed, TrackPublished, TrackRejected, TrackTagged, TrackTranscoded};

use crate::App;
use crate::bus::{Handler, HandlerError};
use crate::error::Result;

/// The consumer group that persists the catalog.
pub const CATALOG: &str = "catalog";
/// The consumer group that keeps the play counters.
pub const PLAY_COUNTERS: &str = "play-counters";

/// The `catalog` consumer: every track event lands in the timeline; `track.transcoded`,
/// `track.tagged` and `track.published` fill the media facts. Idempotent: a redelivered event
/// writes the same timeline row and the same facts.
pub fn catalog_handler(app: App) -> Handler {
    Arc::new(move |envelope: Envelope| {
        let app = app.clone();
        Box::pin(async move { app.record_in_catalog(envelope).await })
    })
}

/// The `play-counters` consumer: play and ad events add to the counters of their track, day
/// and region; each event counts once however often it is delivered.
pub fn play_counters_handler(app: App) -> Handler {
    Arc::new(move |envelope: Envelope| {
        let app = app.clone();
        Box::pin(async move { app.count_play(envelope).await })
    })
}

impl App {
    async fn count_play(&self, envelope: Envelope) -> Result<(), HandlerError> {
        use events::plays::{AdServed, PlayCompleted, PlayProgressed, PlaySkipped, PlayStarted};
        let at = envelope
            .occurred_at_ms()
            .unwrap_or_else(|| self.clock.now_ms());
        let day = crate::calendar::rfc3339(at)[..10].to_owned();
        // Which row the event counts on, and what it adds there.
        let (track_id, region, delta) = if envelope.is::<AdServed>() {
            let served: AdServed = envelope.decode()?;
            let delta = PlayCounter {
                ads: 1,
                ..PlayCounter::default()
            };
            (served.ad_track_id, served.region, delta)
        } else {
            let (facts, delta) = if envelope.is::<PlayStarted>() {
                let PlayStarted(facts) = envelope.decode()?;
                let delta = PlayCounter {
                    starts: 1,
                    ..PlayCounter::default()
                };
                (facts, delta)
            } else if envelope.is::<PlayProgressed>() {
                let PlayProgressed(facts) = envelope.decode()?;
                (facts, PlayCounter::default())
            } else if envelope.is::<PlayCompleted>() {
                let PlayCompleted(facts) = envelope.decode()?;
                let delta = PlayCounter {
                    completes: 1,
                    ..PlayCounter::default()
                };
                (facts, delta)
            } else if envelope.is::<PlaySkipped>() {
                let PlaySkipped(facts) = envelope.decode()?;
                let delta = PlayCounter {
                    skips: 1,
                    ..PlayCounter::default()
                };
                (facts, delta)
            } else {
                return Ok(());
            };
            let delta = PlayCounter {
                listened_ms: facts.listened_ms as i64,
                ..delta
            };
            (facts.track_id, facts.region, delta)
        };
        let delta = PlayCounter {
            track_id,
            day,
            region,
            ..delta
        };
        self.catalog
            .count_play(&envelope.id.to_string(), &delta, self.clock.now_ms())
            .await?;
        Ok(())
    }

    async fn record_in_catalog(&self, envelope: Envelope) -> Result<(), HandlerError> {
        let catalog = &self.catalog;
        let track = envelope.key.clone();
        let at = envelope
            .occurred_at_ms()
            .unwrap_or_else(|| self.clock.now_ms());
        // Each event is decoded once: a timeline detail, and what it changes in the media facts.
        let (detail, update) = if envelope.is::<TrackRejected>() {
            let event: TrackRejected = envelope.decode()?;
            (Some(event.reason), None)
        } else if envelope.is::<TrackFailed>() {
            let event: TrackFailed = envelope.decode()?;
            (Some(event.reason), None)
        } else if envelope.is::<TrackTranscoded>() {
            let event: TrackTranscoded = envelope.decode()?;
            let detail = format!(
                "{} renditions, {} files",
                event.renditions.len(),
                event.files
            );
            (Some(detail), Some(Update::Transcoded(event)))
        } else if envelope.is::<TrackTagged>() {
            (None, Some(Update::Tagged(envelope.decode()?)))
        } else if envelope.is::<TrackPublished>() {
            (None, Some(Update::Published(envelope.decode()?)))
        } else {
            (None, None)
        };
        let entry = TimelineEntry {
            at,
            event_id: envelope.id.to_string(),
            kind: envelope.kind.clone(),
            detail,
        };
        catalog.add_timeline(&track, &entry).await?;
        if let Some(update) = update {
            let mut media = catalog.media(&track).await?.unwrap_or_default();
            media.track_id = track;
            update.apply(&mut media);
            catalog.put_media(&media, self.clock.now_ms()).await?;
        }
        Ok(())
    }
}

/// What an event changes in a track's media facts.
enum Update {
    Transcoded(TrackTranscoded),
    Tagged(TrackTagged),
    Published(TrackPublished),
}

impl Update {
    fn apply(self, media: &mut TrackMedia) {
        match self {
            Self::Transcoded(event) => {
                media.duration_ms = Some(event.duration_ms);
                media.renditions = event.details;
            }
            Self::Tagged(event) => {
                media.artists = event.artists;
                media.genre = event.genre;
                media.year = event.year;
                media.explicit = event.explicit;
                media.top_tags = event.top_tags;
                media.artwork = event.artwork;
            }
            Self::Published(event) => {
                media.prefix = Some(event.prefix);
                media.duration_ms = Some(event.duration_ms);
                media.loudness_lufs = Some(event.loudness_lufs);
                media.gain_db = Some(event.gain_db);
            }
        }
    }
}
