//! The processing service's queries (Inventory DB): a track's processing state and the facts
//! processing found (the `tracks` columns it writes), and `track_fingerprints`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::{AnyExecutor, Row};
use utoipa::ToSchema;

use crate::catalog::store::{TrackStage, TrackStatus};
use crate::store::{StoreError, TextColumn as _, json_column, long_text, to_json_column};

/// Something processing left out of a published track without rejecting it, for its artist
/// to see (`GET /api/v1/tracks/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrackNote {
    /// Stable: `cover_art_too_large` (over the size limit, not read), `cover_art_unusable`
    /// (not a JPEG or PNG, damaged, or beyond the pixel limits) or `tags_unreadable` (the
    /// file's tags are damaged: title and artist come from the upload, genre and year are
    /// unknown).
    pub code: String,
    /// What happened, in words.
    pub message: String,
}

/// A track with its processing state, as stored.
pub(crate) struct TrackStateRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) singer: String,
    pub(crate) album: Option<String>,
    pub(crate) status: TrackStatus,
    /// `None` on rows written before stages existed.
    pub(crate) stage: Option<TrackStage>,
    pub(crate) progress: Option<f64>,
    pub(crate) top_tags: Vec<String>,
    pub(crate) artwork: BTreeMap<String, String>,
    pub(crate) notes: Vec<TrackNote>,
    pub(crate) reason: Option<String>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) url: Option<String>,
    pub(crate) loudness_lufs: Option<f64>,
    pub(crate) gain_db: Option<f64>,
    pub(crate) explicit: bool,
    pub(crate) genre: Option<String>,
    pub(crate) release_year: Option<i64>,
    pub(crate) uploaded_by_user_id: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// A track with its processing state.
pub(crate) async fn track_state<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
) -> Result<Option<TrackStateRow>, StoreError> {
    let Some(row) = sqlx::query(
        "SELECT id, name, singer, album, status, stage, progress, top_tags, artwork, notes, reason, duration_ms, url, loudness_lufs, gain_db, explicit, genre, release_year, uploaded_by_user_id, created_at, updated_at \
         FROM tracks WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(db)
    .await?
    else {
        return Ok(None);
    };
    let status: String = row.try_get("status")?;
    let stage: Option<String> = row.try_get("stage")?;
    Ok(Some(TrackStateRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        singer: row.try_get("singer")?,
        album: row.try_get("album")?,
        status: TrackStatus::parse(&status)?,
        stage: stage.as_deref().map(TrackStage::parse).transpose()?,
        progress: row.try_get("progress")?,
        top_tags: json_column(&row, "top_tags")?.unwrap_or_default(),
        artwork: json_column(&row, "artwork")?.unwrap_or_default(),
        notes: json_column(&row, "notes")?.unwrap_or_default(),
        reason: row.try_get("reason")?,
        duration_ms: row.try_get("duration_ms")?,
        url: row.try_get("url")?,
        loudness_lufs: row.try_get("loudness_lufs")?,
        gain_db: row.try_get("gain_db")?,
        explicit: row.try_get::<i64, _>("explicit")? != 0,
        genre: row.try_get("genre")?,
        release_year: row.try_get("release_year")?,
        uploaded_by_user_id: row.try_get("uploaded_by_user_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    }))
}

/// Claims an uploaded (or interrupted) track for transcoding; `false` if it is settled.
pub(crate) async fn claim<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let claimed = sqlx::query(
        "UPDATE tracks SET status = 'processing', stage = 'transcoding', progress = 0.05, updated_at = ? \
         WHERE id = ? AND status IN ('uploaded', 'processing')",
    )
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(claimed.rows_affected() > 0)
}

/// What processing found in a track it published.
pub(crate) struct ReadyTrack<'a> {
    pub(crate) id: &'a str,
    pub(crate) prefix: &'a str,
    pub(crate) duration_ms: i64,
    pub(crate) loudness_lufs: f64,
    pub(crate) gain_db: f64,
    pub(crate) true_peak_dbtp: f64,
    pub(crate) explicit: bool,
    pub(crate) genre: Option<&'a str>,
    pub(crate) year: Option<i64>,
    pub(crate) top_tags: &'a [String],
    /// Thumbnail paths by edge length; empty when the track has no usable cover.
    pub(crate) artwork: &'a BTreeMap<String, String>,
    pub(crate) notes: &'a [TrackNote],
    pub(crate) lyrics_excerpt: Option<&'a str>,
    pub(crate) now: i64,
}

/// Marks a track ready with what processing found.
pub(crate) async fn mark_ready<'e>(
    db: impl AnyExecutor<'e>,
    track: &ReadyTrack<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE tracks SET status = 'ready', stage = 'done', progress = 1.0, reason = NULL, url = ?, duration_ms = ?, loudness_lufs = ?, gain_db = ?, \
         true_peak_dbtp = ?, explicit = ?, genre = ?, release_year = ?, top_tags = ?, artwork = ?, notes = ?, lyrics_excerpt = ?, updated_at = ? WHERE id = ?",
    )
    .bind(track.prefix)
    .bind(track.duration_ms)
    .bind(track.loudness_lufs)
    .bind(track.gain_db)
    .bind(track.true_peak_dbtp)
    .bind(i64::from(track.explicit))
    .bind(track.genre)
    .bind(track.year)
    .bind(to_json_column(&track.top_tags))
    .bind((!track.artwork.is_empty()).then(|| to_json_column(track.artwork)))
    .bind((!track.notes.is_empty()).then(|| to_json_column(&track.notes)))
    .bind(track.lyrics_excerpt)
    .bind(track.now)
    .bind(track.id)
    .execute(db)
    .await?;
    Ok(())
}

/// Records a published track's fingerprint, for finding re-uploads of the same recording.
pub(crate) async fn insert_fingerprint<'e>(
    db: impl AnyExecutor<'e>,
    track_id: &str,
    uploaded_by: &str,
    duration_ms: i64,
    fingerprint: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO track_fingerprints (track_id, uploaded_by, duration_ms, fingerprint, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(track_id)
    .bind(uploaded_by)
    .bind(duration_ms)
    .bind(fingerprint)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// A stored fingerprint: the track, its uploader and the encoded fingerprint.
pub(crate) struct StoredFingerprint {
    pub(crate) track_id: String,
    pub(crate) uploaded_by: String,
    pub(crate) fingerprint: String,
}

/// The fingerprints of tracks lasting between `low` and `high` milliseconds.
pub(crate) async fn fingerprints_between<'e>(
    db: impl AnyExecutor<'e>,
    low: i64,
    high: i64,
) -> Result<Vec<StoredFingerprint>, StoreError> {
    let rows = sqlx::query(
        "SELECT track_id, uploaded_by, fingerprint FROM track_fingerprints WHERE duration_ms BETWEEN ? AND ?",
    )
    .bind(low)
    .bind(high)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredFingerprint {
                track_id: row.try_get("track_id")?,
                uploaded_by: row.try_get("uploaded_by")?,
                fingerprint: long_text(row, "fingerprint")?,
            })
        })
        .collect()
}

/// Records where processing of a track is, while it is processing.
pub(crate) async fn set_stage<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    stage: TrackStage,
    progress: f64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE tracks SET stage = ?, progress = ?, updated_at = ? WHERE id = ? AND status = 'processing'",
    )
    .bind(stage.as_str())
    .bind(progress)
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Settles a track as rejected or failed, with the reason.
pub(crate) async fn settle<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    status: TrackStatus,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE tracks SET status = ?, stage = ?, reason = ?, updated_at = ? WHERE id = ?")
        .bind(status.as_str())
        .bind(TrackStage::of(status).as_str())
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Blocks a track with a reason, or unblocks it (`None`); `false` if there is no such track.
pub(crate) async fn set_block<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let changed = sqlx::query("UPDATE tracks SET blocked_reason = ?, updated_at = ? WHERE id = ?")
        .bind(reason)
        .bind(now)
        .bind(id)
        .execute(db)
        .await?;
    Ok(changed.rows_affected() > 0)
}
