//! The catalog (the spec's Cassandra): per-track media facts — renditions and their segment
//! index, duration, loudness, tags and top tags, thumbnails — and the processing timeline,
//! persisted by the `catalog` consumer group from the track events.
//!
//! The store is a trait shaped for a wide-column database: every read and write names one
//! partition (the track id), the timeline is clustered by time, nothing joins. The embedded
//! implementation is SQLite (`catalog.db`); a Cassandra/ScyllaDB one would map
//! `track_media` and `track_timeline` one to one (see the migration for the CQL).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use events::Envelope;
use events::tracks::{
    RenditionDetail, TrackFailed, TrackPublished, TrackRejected, TrackTagged, TrackTranscoded,
};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;
use crate::auth::MaybeAuthUser;
use crate::bus::{Handler, HandlerError};
use crate::error::{ErrorBody, Result};
use crate::extract::ApiPath;
use crate::store::{Database, DatabaseKind, StoreError};

/// The consumer group that persists the catalog.
pub const CATALOG: &str = "catalog";
/// The consumer group that keeps the play counters.
pub const PLAY_COUNTERS: &str = "play-counters";

/// One row of play counters: a track's plays on one day (UTC) in one region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlayCounter {
    /// The track (or ad).
    pub track_id: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// The site of the node that served the plays.
    pub region: String,
    /// Plays started.
    pub starts: i64,
    /// Plays heard to the end.
    pub completes: i64,
    /// Plays skipped.
    pub skips: i64,
    /// Times served as an ad.
    pub ads: i64,
    /// Listening, ms.
    pub listened_ms: i64,
}

/// A track's media facts: one partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrackMedia {
    /// The track.
    pub track_id: String,
    /// Object-store prefix of the published version.
    pub prefix: Option<String>,
    /// Presented duration, ms.
    pub duration_ms: Option<u64>,
    /// EBU R128 integrated loudness, LUFS.
    pub loudness_lufs: Option<f64>,
    /// Gain to −14 LUFS, dB.
    pub gain_db: Option<f64>,
    /// Renditions with their segment index.
    #[schema(value_type = Vec<Object>)]
    pub renditions: Vec<RenditionDetail>,
    /// Artists from the tags.
    pub artists: Vec<String>,
    /// Genre from the tags.
    pub genre: Option<String>,
    /// Year from the tags.
    pub year: Option<u32>,
    /// Whether explicit language was found.
    pub explicit: bool,
    /// Top tags.
    pub top_tags: Vec<String>,
    /// Cover-art thumbnails by edge length (object keys).
    pub artwork: BTreeMap<u32, String>,
}

/// One step of a track's processing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntry {
    /// When it happened, Unix ms.
    pub at: i64,
    /// The event id (entries are idempotent by it).
    pub event_id: String,
    /// The event type, e.g. `track.transcoded`.
    pub kind: String,
    /// A short detail (a rejection's reason, a rendition count).
    pub detail: Option<String>,
}

/// A catalog store: partition-keyed reads and writes only.
pub trait CatalogStore: Send + Sync + std::fmt::Debug {
    /// The media facts of a track.
    fn media<'a>(
        &'a self,
        track_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TrackMedia>, StoreError>>;
    /// Replaces the media facts of a track.
    fn put_media<'a>(
        &'a self,
        media: &'a TrackMedia,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Adds a timeline entry (again: no change).
    fn add_timeline<'a>(
        &'a self,
        track_id: &'a str,
        entry: &'a TimelineEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// A track's timeline, oldest first.
    fn timeline<'a>(
        &'a self,
        track_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<TimelineEntry>, StoreError>>;
    /// Adds `delta` to its row's counters, once per `event_id` (again: no change).
    fn count_play<'a>(
        &'a self,
        event_id: &'a str,
        delta: &'a PlayCounter,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// A track's play counters, by day then region.
    fn play_counters<'a>(
        &'a self,
        track_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PlayCounter>, StoreError>>;
}

/// The embedded catalog: SQLite.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    db: Database,
}

impl SqliteCatalog {
    /// Opens (and migrates) the catalog at `url` (`sqlite://…`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            db: Database::connect(url, DatabaseKind::Catalog).await?,
        })
    }
}

impl CatalogStore for SqliteCatalog {
    fn media<'a>(
        &'a self,
        track_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TrackMedia>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT document FROM track_media WHERE track_id = ?")
                .bind(track_id)
                .fetch_optional(self.db.pool())
                .await?;
            Ok(match row {
                Some(row) => {
                    let text: String = row.try_get("document")?;
                    serde_json::from_str(&text).ok()
                }
                None => None,
            })
        })
    }

    fn put_media<'a>(
        &'a self,
        media: &'a TrackMedia,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let document = crate::store::to_json_column(media);
            sqlx::query(
                "INSERT INTO track_media (track_id, document, updated_at) VALUES (?, ?, ?) \
                 ON CONFLICT (track_id) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
            )
            .bind(&media.track_id)
            .bind(document)
            .bind(now)
            .execute(self.db.pool())
            .await?;
            Ok(())
        })
    }

    fn add_timeline<'a>(
        &'a self,
        track_id: &'a str,
        entry: &'a TimelineEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO track_timeline (track_id, at, event_id, kind, detail) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(track_id)
            .bind(entry.at)
            .bind(&entry.event_id)
            .bind(&entry.kind)
            .bind(entry.detail.clone())
            .execute(self.db.pool())
            .await?;
            Ok(())
        })
    }

    fn timeline<'a>(
        &'a self,
        track_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<TimelineEntry>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT at, event_id, kind, detail FROM track_timeline WHERE track_id = ? ORDER BY at, event_id",
            )
            .bind(track_id)
            .fetch_all(self.db.pool())
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(TimelineEntry {
                        at: row.try_get("at")?,
                        event_id: row.try_get("event_id")?,
                        kind: row.try_get("kind")?,
                        detail: row.try_get("detail")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    fn count_play<'a>(
        &'a self,
        event_id: &'a str,
        delta: &'a PlayCounter,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { Ok(self.count_once(event_id, delta, now).await?) })
    }

    fn play_counters<'a>(
        &'a self,
        track_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PlayCounter>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT track_id, day, region, starts, completes, skips, ads, listened_ms FROM play_counters WHERE track_id = ? ORDER BY day, region",
            )
            .bind(track_id)
            .fetch_all(self.db.pool())
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(PlayCounter {
                        track_id: row.try_get("track_id")?,
                        day: row.try_get("day")?,
                        region: row.try_get("region")?,
                        starts: row.try_get("starts")?,
                        completes: row.try_get("completes")?,
                        skips: row.try_get("skips")?,
                        ads: row.try_get("ads")?,
                        listened_ms: row.try_get("listened_ms")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }
}

impl SqliteCatalog {
    async fn count_once(
        &self,
        event_id: &str,
        delta: &PlayCounter,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.pool().begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO counted_events (event_id, counted_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(event_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if fresh.rows_affected() == 1 {
            sqlx::query(
                "INSERT INTO play_counters (track_id, day, region, starts, completes, skips, ads, listened_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (track_id, day, region) DO UPDATE SET starts = starts + excluded.starts, completes = completes + excluded.completes, \
                 skips = skips + excluded.skips, ads = ads + excluded.ads, listened_ms = listened_ms + excluded.listened_ms",
            )
            .bind(&delta.track_id)
            .bind(&delta.day)
            .bind(&delta.region)
            .bind(delta.starts)
            .bind(delta.completes)
            .bind(delta.skips)
            .bind(delta.ads)
            .bind(delta.listened_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}

/// Opens the catalog named by `url`: `sqlite://…` (the embedded store). Cassandra/ScyllaDB is
/// the scale-out engine of the design and is not built yet.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn CatalogStore>> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteCatalog::open(url).await?));
    }
    anyhow::bail!(
        "unsupported catalog URL {url:?}: only sqlite:// is built (a Cassandra/ScyllaDB store is planned)"
    )
}

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

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(get_catalog))
}

/// A track's catalog entry: its media facts and processing timeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CatalogEntry {
    /// Media facts (absent until the catalog consumer has seen the track's events).
    media: Option<TrackMedia>,
    /// Processing timeline, oldest first.
    timeline: Vec<TimelineEntry>,
    /// Play counters by day and region.
    plays: Vec<PlayCounter>,
}

/// The catalog's view of a track; visible as the track is (anyone once ready, its uploader and
/// administrators always).
#[utoipa::path(get, path = "/api/v1/tracks/{id}/catalog", tag = "uploads", params(("id" = String, Path)),
    responses((status = 200, body = CatalogEntry), (status = 404, body = ErrorBody)))]
async fn get_catalog(
    app: App,
    MaybeAuthUser(caller): MaybeAuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CatalogEntry>> {
    let visible = app
        .inventory
        .track_status_and_owner(&id)
        .await?
        .is_some_and(|(status, owner)| crate::auth::may_see_track(caller.as_ref(), status, &owner));
    if !visible {
        return Err(crate::error::Error::not_found(
            "track_not_found",
            "No such track.",
        ));
    }
    Ok(Json(CatalogEntry {
        media: app.catalog.media(&id).await?,
        timeline: app.catalog.timeline(&id).await?,
        plays: app.catalog.play_counters(&id).await?,
    }))
}
