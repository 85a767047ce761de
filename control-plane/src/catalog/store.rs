//! The tracks' queries (Inventory DB, `tracks`) and the catalog store (per-track media facts,
//! processing timelines and play counters), the facade other services read tracks through.

use std::collections::BTreeMap;
use std::sync::Arc;

use events::tracks::RenditionDetail;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use crate::store::{Database, DatabaseKind, InventoryStore, StoreError, TextColumn};

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

/// A track as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TrackRow {
    /// UUID.
    pub id: String,
    /// Title.
    pub name: String,
    /// Where its packaged media lives, once published.
    pub url: Option<String>,
    /// The artist account that uploaded it.
    pub uploaded_by_user_id: String,
    /// Performer.
    pub singer: String,
    /// Album, if known.
    pub album: Option<String>,
    /// Duration, once probed.
    pub duration_ms: Option<i64>,
    /// `music` or `ad`.
    pub kind: String,
    /// Where it is in its life.
    #[sqlx(try_from = "String")]
    pub status: TrackStatus,
    /// Why it was rejected or failed.
    pub reason: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// A track to insert.
#[derive(Debug, Clone)]
pub struct NewTrack {
    /// UUID.
    pub id: String,
    /// Title.
    pub name: String,
    /// Uploader.
    pub uploaded_by_user_id: String,
    /// Performer.
    pub singer: String,
    /// Album.
    pub album: Option<String>,
    /// `music` or `ad`.
    pub kind: String,
    /// Initial status.
    pub status: TrackStatus,
    /// Duration if already known.
    pub duration_ms: Option<i64>,
    /// Unix ms.
    pub now: i64,
}

pub(crate) const TRACK_COLUMNS: &str = "id, name, url, uploaded_by_user_id, singer, album, duration_ms, kind, status, reason, created_at, updated_at";

/// Where a track is in its life, as the `tracks.status` column stores it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TrackStatus {
    /// Stored, waiting for the processing consumer.
    Uploaded,
    /// Being processed.
    Processing,
    /// Published: playable.
    Ready,
    /// Refused, with a reason; its objects are deleted.
    Rejected,
    /// Processing could not finish; its objects are deleted.
    Failed,
}

impl TryFrom<String> for TrackStatus {
    type Error = StoreError;

    fn try_from(text: String) -> Result<Self, StoreError> {
        Self::parse(&text)
    }
}

impl TextColumn for TrackStatus {
    const ALL: &'static [Self] = &[
        Self::Uploaded,
        Self::Processing,
        Self::Ready,
        Self::Rejected,
        Self::Failed,
    ];
    const WHAT: &'static str = "track status";

    fn as_str(self) -> &'static str {
        match self {
            Self::Uploaded => "uploaded",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

impl TrackStatus {
    /// Whether it is final: ready, rejected or failed.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Ready | Self::Rejected | Self::Failed)
    }
}

/// Where processing is, finer than the status, as the `tracks.stage` column stores it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TrackStage {
    /// Waiting for the processing consumer.
    Queued,
    /// Decoding, measuring and encoding.
    Transcoding,
    /// Checking for copies and reading tags.
    Filtering,
    /// Writing the renditions and thumbnails.
    Publishing,
    /// Ready.
    Done,
    /// Rejected.
    Rejected,
    /// Failed.
    Failed,
}

impl TextColumn for TrackStage {
    const ALL: &'static [Self] = &[
        Self::Queued,
        Self::Transcoding,
        Self::Filtering,
        Self::Publishing,
        Self::Done,
        Self::Rejected,
        Self::Failed,
    ];
    const WHAT: &'static str = "track stage";

    fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Transcoding => "transcoding",
            Self::Filtering => "filtering",
            Self::Publishing => "publishing",
            Self::Done => "done",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

impl TrackStage {
    /// The stage a track of `status` is at when its row names none.
    pub fn of(status: TrackStatus) -> Self {
        match status {
            TrackStatus::Uploaded => Self::Queued,
            TrackStatus::Processing => Self::Transcoding,
            TrackStatus::Ready => Self::Done,
            TrackStatus::Rejected => Self::Rejected,
            TrackStatus::Failed => Self::Failed,
        }
    }
}

impl InventoryStore {
    /// A track's status and uploader, which decide who may see it; `None` if there is no such
    /// track.
    pub async fn track_status_and_owner(
        &self,
        id: &str,
    ) -> Result<Option<(TrackStatus, String)>, StoreError> {
        let row = sqlx::query("SELECT status, uploaded_by_user_id FROM tracks WHERE id = ?")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|row| {
            let status: String = row.try_get("status")?;
            Ok((
                TrackStatus::parse(&status)?,
                row.try_get("uploaded_by_user_id")?,
            ))
        })
        .transpose()
    }

    // ---- Tracks --------------------------------------------------------------------------

    /// Inserts a track (uploads do this; until the upload flow exists, tests and demo seeding).
    pub async fn insert_track(&self, track: &NewTrack) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tracks (id, name, url, uploaded_by_user_id, singer, album, duration_ms, kind, status, reason, created_at, updated_at) \
             VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        )
        .bind(&track.id)
        .bind(&track.name)
        .bind(&track.uploaded_by_user_id)
        .bind(&track.singer)
        .bind(track.album.clone())
        .bind(track.duration_ms)
        .bind(&track.kind)
        .bind(track.status.as_str())
        .bind(track.now)
        .bind(track.now)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// One track.
    pub async fn track(&self, id: &str) -> Result<Option<TrackRow>, StoreError> {
        let sql = format!("SELECT {TRACK_COLUMNS} FROM tracks WHERE id = ?");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?)
    }
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
    /// Plays started of every track that has any, over every day and region: what a search
    /// index is rebuilt with (one scan instead of a read per track).
    fn plays_started(&self) -> BoxFuture<'_, Result<BTreeMap<String, u64>, StoreError>>;
}

/// The embedded catalog: SQLite.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    pub(crate) db: Database,
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

    fn plays_started(&self) -> BoxFuture<'_, Result<BTreeMap<String, u64>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT track_id, SUM(starts) AS starts FROM play_counters GROUP BY track_id",
            )
            .fetch_all(self.db.pool())
            .await?;
            rows.iter()
                .map(|row| {
                    let starts: i64 = row.try_get("starts")?;
                    Ok((row.try_get("track_id")?, starts.max(0) as u64))
                })
                .collect::<Result<BTreeMap<_, _>, sqlx::Error>>()
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

/// A track whose raw upload just completed, waiting for processing.
pub(crate) struct UploadedTrack<'a> {
    pub(crate) id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) uploaded_by_user_id: &'a str,
    pub(crate) singer: &'a str,
    pub(crate) album: Option<&'a str>,
    pub(crate) kind: &'a str,
    pub(crate) raw_key: &'a str,
    pub(crate) raw_size: i64,
    pub(crate) now: i64,
}

/// Inserts an `uploaded` track with its raw object.
pub(crate) async fn insert_uploaded<'e>(
    db: impl sqlx::AnyExecutor<'e>,
    track: &UploadedTrack<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO tracks (id, name, url, uploaded_by_user_id, singer, album, duration_ms, kind, status, reason, created_at, updated_at, raw_key, raw_size) \
         VALUES (?, ?, NULL, ?, ?, ?, NULL, ?, ?, NULL, ?, ?, ?, ?)",
    )
    .bind(track.id)
    .bind(track.name)
    .bind(track.uploaded_by_user_id)
    .bind(track.singer)
    .bind(track.album)
    .bind(track.kind)
    .bind(TrackStatus::Uploaded.as_str())
    .bind(track.now)
    .bind(track.now)
    .bind(track.raw_key)
    .bind(track.raw_size)
    .execute(db)
    .await?;
    Ok(())
}

/// What the play API needs of a track.
pub(crate) struct PlayTrackRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) singer: String,
    pub(crate) album: Option<String>,
    pub(crate) status: TrackStatus,
    pub(crate) kind: String,
    pub(crate) blocked_reason: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) loudness_lufs: Option<f64>,
    pub(crate) gain_db: Option<f64>,
    pub(crate) explicit: bool,
    pub(crate) artwork: std::collections::BTreeMap<String, String>,
}

/// A track as the play API reads it.
pub(crate) async fn play_track<'e>(
    db: impl sqlx::AnyExecutor<'e>,
    id: &str,
) -> Result<Option<PlayTrackRow>, StoreError> {
    let Some(row) = sqlx::query(
        "SELECT id, name, singer, album, status, kind, blocked_reason, url, duration_ms, loudness_lufs, gain_db, explicit, artwork \
         FROM tracks WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(db)
    .await?
    else {
        return Ok(None);
    };
    let status: String = row.try_get("status")?;
    Ok(Some(PlayTrackRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        singer: row.try_get("singer")?,
        album: row.try_get("album")?,
        status: TrackStatus::parse(&status)?,
        kind: row.try_get("kind")?,
        blocked_reason: row.try_get("blocked_reason")?,
        url: row.try_get("url")?,
        duration_ms: row.try_get("duration_ms")?,
        loudness_lufs: row.try_get("loudness_lufs")?,
        gain_db: row.try_get("gain_db")?,
        explicit: row.try_get::<i64, _>("explicit")? != 0,
        artwork: crate::store::json_column(&row, "artwork")?.unwrap_or_default(),
    }))
}

/// A ready ad: its id, name, packaged prefix and duration.
pub(crate) struct AdRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) duration_ms: Option<i64>,
}

/// Ads ready to splice (ready, not blocked, packaged), by id.
pub(crate) async fn ready_ads<'e>(
    db: impl sqlx::AnyExecutor<'e>,
) -> Result<Vec<AdRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, name, url, duration_ms FROM tracks \
         WHERE kind = 'ad' AND status = 'ready' AND blocked_reason IS NULL AND url IS NOT NULL ORDER BY id",
    )
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AdRow {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                url: row.try_get("url")?,
                duration_ms: row.try_get("duration_ms")?,
            })
        })
        .collect()
}

/// What search indexes of a track.
pub(crate) struct SearchableRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) singer: String,
    pub(crate) album: Option<String>,
    pub(crate) genre: Option<String>,
    pub(crate) top_tags: Vec<String>,
    pub(crate) lyrics_excerpt: Option<String>,
    pub(crate) release_year: Option<i64>,
    pub(crate) explicit: bool,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) artwork: std::collections::BTreeMap<String, String>,
}

const SEARCHABLE_COLUMNS: &str = "id, name, singer, album, genre, top_tags, lyrics_excerpt, release_year, explicit, duration_ms, artwork";
/// Tracks a listener may find: ready music that is not taken down.
const SEARCHABLE: &str = "status = 'ready' AND kind = 'music' AND blocked_reason IS NULL";

fn searchable_row(row: &sqlx::any::AnyRow) -> Result<SearchableRow, StoreError> {
    Ok(SearchableRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        singer: row.try_get("singer")?,
        album: row.try_get("album")?,
        genre: row.try_get("genre")?,
        top_tags: crate::store::json_column(row, "top_tags")?.unwrap_or_default(),
        lyrics_excerpt: crate::store::optional_long_text(row, "lyrics_excerpt")?,
        release_year: row.try_get("release_year")?,
        explicit: row.try_get::<i64, _>("explicit")? != 0,
        duration_ms: row.try_get("duration_ms")?,
        artwork: crate::store::json_column(row, "artwork")?.unwrap_or_default(),
    })
}

/// Every track a listener may find.
pub(crate) async fn searchable_tracks<'e>(
    db: impl sqlx::AnyExecutor<'e>,
) -> Result<Vec<SearchableRow>, StoreError> {
    let sql = format!("SELECT {SEARCHABLE_COLUMNS} FROM tracks WHERE {SEARCHABLE} ORDER BY id");
    let rows = sqlx::query(&sql).fetch_all(db).await?;
    rows.iter().map(searchable_row).collect()
}

/// Track `id` if a listener may find it.
pub(crate) async fn searchable_track<'e>(
    db: impl sqlx::AnyExecutor<'e>,
    id: &str,
) -> Result<Option<SearchableRow>, StoreError> {
    let sql = format!("SELECT {SEARCHABLE_COLUMNS} FROM tracks WHERE id = ? AND {SEARCHABLE}");
    let row = sqlx::query(&sql).bind(id).fetch_optional(db).await?;
    row.as_ref().map(searchable_row).transpose()
}

/// The tracks among `ids` a listener may find, in no order.
pub(crate) async fn listed_tracks<'e>(
    db: impl sqlx::AnyExecutor<'e> + Copy,
    ids: &[String],
) -> Result<Vec<SearchableRow>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(200) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT {SEARCHABLE_COLUMNS} FROM tracks WHERE id IN ({marks}) AND {SEARCHABLE}"
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(db).await? {
            found.push(searchable_row(&row)?);
        }
    }
    Ok(found)
}

/// The `limit` tracks a listener may find that were uploaded last, newest first.
pub(crate) async fn newest_tracks<'e>(
    db: impl sqlx::AnyExecutor<'e>,
    limit: i64,
) -> Result<Vec<SearchableRow>, StoreError> {
    let sql = format!(
        "SELECT {SEARCHABLE_COLUMNS} FROM tracks WHERE {SEARCHABLE} ORDER BY created_at DESC, id LIMIT ?"
    );
    let rows = sqlx::query(&sql).bind(limit).fetch_all(db).await?;
    rows.iter().map(searchable_row).collect()
}
