//! The Inventory DB: packages, tracks and playlist contents (`playlists`, `playlist_tracks`).
//!
//! Every change to a playlist's contents first updates its `playlists` row inside the
//! transaction. That row lock (MySQL) or write lock (SQLite) serialises concurrent changes to
//! one playlist, so positions stay dense (0..n) and the size limit holds under concurrency.

use std::collections::HashMap;

use sqlx::Row;

use super::{Database, StoreError, TextColumn, placeholders, retry_on_conflict};

/// A package as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PackageRow {
    /// UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Description for the shop page.
    pub description: String,
    /// Price per period in the currency's minor unit.
    pub cost: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `week`, `month` or `year`.
    pub period: String,
    /// Ads a listener on this package hears per hour.
    pub free_ads_per_hour: i64,
    /// Unix ms when it stopped being sold; `None` while on sale.
    pub retired_at: Option<i64>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// A package to insert.
#[derive(Debug, Clone)]
pub struct NewPackage {
    /// UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Minor units.
    pub cost: i64,
    /// ISO 4217.
    pub currency: String,
    /// Billing period.
    pub period: String,
    /// Ads per hour.
    pub free_ads_per_hour: i64,
}

/// Package fields to change; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct PackageUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New price.
    pub cost: Option<i64>,
    /// New currency.
    pub currency: Option<String>,
    /// New period.
    pub period: Option<String>,
    /// New ads per hour.
    pub free_ads_per_hour: Option<i64>,
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

/// One entry of a playlist, with the track's facts.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlaylistTrackRow {
    /// The track.
    pub track_id: String,
    /// 0-based position, dense.
    pub position: i64,
    /// Unix ms when it was added.
    pub added_at: i64,
    /// Title (absent if the track row is gone).
    pub name: Option<String>,
    /// Performer.
    pub singer: Option<String>,
    /// Album.
    pub album: Option<String>,
    /// Duration.
    pub duration_ms: Option<i64>,
    /// Track status.
    pub status: Option<String>,
}

/// What adding a track to a playlist did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// Appended at this position.
    Added(i64),
    /// It was already there, at this position; nothing changed.
    AlreadyPresent(i64),
    /// The playlist holds the maximum number of tracks.
    Full,
    /// No such playlist.
    NoSuchPlaylist,
}

const PACKAGE_COLUMNS: &str = "id, name, description, cost, currency, period, free_ads_per_hour, retired_at, created_at, updated_at";
const TRACK_COLUMNS: &str = "id, name, url, uploaded_by_user_id, singer, album, duration_ms, kind, status, reason, created_at, updated_at";

/// Queries on the Inventory DB.
#[derive(Debug, Clone)]
pub struct InventoryStore {
    db: Database,
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

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
    /// Wraps a connected Inventory DB.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

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

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    // ---- Packages ------------------------------------------------------------------------

    /// Packages, cheapest first; retired ones only when asked.
    pub async fn packages(&self, include_retired: bool) -> Result<Vec<PackageRow>, StoreError> {
        let filter = if include_retired {
            ""
        } else {
            "WHERE retired_at IS NULL"
        };
        let sql =
            format!("SELECT {PACKAGE_COLUMNS} FROM packages {filter} ORDER BY cost, name, id");
        Ok(sqlx::query_as(&sql).fetch_all(self.db.pool()).await?)
    }

    /// One package, retired or not.
    pub async fn package(&self, id: &str) -> Result<Option<PackageRow>, StoreError> {
        let sql = format!("SELECT {PACKAGE_COLUMNS} FROM packages WHERE id = ?");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?)
    }

    /// How many packages exist, retired included.
    pub async fn package_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM packages")
            .fetch_one(self.db.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Inserts a package.
    pub async fn insert_package(&self, package: &NewPackage, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO packages (id, name, description, cost, currency, period, free_ads_per_hour, retired_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        )
        .bind(&package.id)
        .bind(&package.name)
        .bind(&package.description)
        .bind(package.cost)
        .bind(&package.currency)
        .bind(&package.period)
        .bind(package.free_ads_per_hour)
        .bind(now)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Applies an update; `Ok(false)` when there is no such package.
    pub async fn update_package(
        &self,
        id: &str,
        update: &PackageUpdate,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE packages SET name = COALESCE(?, name), description = COALESCE(?, description), \
             cost = COALESCE(?, cost), currency = COALESCE(?, currency), period = COALESCE(?, period), \
             free_ads_per_hour = COALESCE(?, free_ads_per_hour), updated_at = ? WHERE id = ?",
        )
        .bind(update.name.clone())
        .bind(update.description.clone())
        .bind(update.cost)
        .bind(update.currency.clone())
        .bind(update.period.clone())
        .bind(update.free_ads_per_hour)
        .bind(now)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Takes a package off sale (idempotent: the first retirement time stays).
    pub async fn retire_package(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE packages SET retired_at = COALESCE(retired_at, ?), updated_at = ? WHERE id = ?",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
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

    // ---- Playlists -----------------------------------------------------------------------

    /// Creates a playlist in the `pending` state, holding `first_track` if given. It stays
    /// invisible until the User DB records its owner and [`Self::mark_playlist_live`] runs.
    pub async fn create_playlist(
        &self,
        playlist_id: &str,
        first_track: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query("INSERT INTO playlists (id, track_count, state, created_at, updated_at) VALUES (?, ?, 'pending', ?, ?)")
            .bind(playlist_id)
            .bind(i64::from(first_track.is_some()))
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if let Some(track_id) = first_track {
            sqlx::query("INSERT INTO playlist_tracks (playlist_id, track_id, position, added_at) VALUES (?, ?, 0, ?)")
                .bind(playlist_id)
                .bind(track_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks playlists `live` (their owner is recorded) or `pending` (about to be deleted).
    pub async fn set_playlist_state(
        &self,
        playlist_ids: &[String],
        live: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        for chunk in playlist_ids.chunks(500) {
            let sql = format!(
                "UPDATE playlists SET state = ?, updated_at = ? WHERE id IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(if live { "live" } else { "pending" })
                .bind(now);
            for id in chunk {
                query = query.bind(id);
            }
            query.execute(self.db.pool()).await?;
        }
        Ok(())
    }

    /// Shorthand for marking one playlist live.
    pub async fn mark_playlist_live(&self, playlist_id: &str, now: i64) -> Result<(), StoreError> {
        self.set_playlist_state(&[playlist_id.to_owned()], true, now)
            .await
    }

    /// Pending playlists untouched since `before` (candidates for the orphan sweeper).
    pub async fn pending_playlists(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM playlists WHERE state = 'pending' AND updated_at < ? ORDER BY updated_at LIMIT ?")
            .bind(before)
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get::<String, _>("id"))
            .collect::<Result<_, _>>()?)
    }

    /// Deletes playlists and their contents.
    pub async fn delete_playlists(&self, playlist_ids: &[String]) -> Result<(), StoreError> {
        for chunk in playlist_ids.chunks(500) {
            let list = placeholders(chunk.len());
            let mut tx = self.db.pool().begin().await?;
            for sql in [
                format!("DELETE FROM playlist_tracks WHERE playlist_id IN ({list})"),
                format!("DELETE FROM playlists WHERE id IN ({list})"),
            ] {
                let mut query = sqlx::query(&sql);
                for id in chunk {
                    query = query.bind(id);
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// How many tracks a playlist holds; `None` if it does not exist.
    pub async fn track_count(&self, playlist_id: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT track_count FROM playlists WHERE id = ?")
            .bind(playlist_id)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.map(|row| row.try_get("track_count")).transpose()?)
    }

    /// Track counts of several playlists at once (absent ids are left out).
    pub async fn track_counts(
        &self,
        playlist_ids: &[String],
    ) -> Result<HashMap<String, i64>, StoreError> {
        let mut counts = HashMap::with_capacity(playlist_ids.len());
        for chunk in playlist_ids.chunks(500) {
            let sql = format!(
                "SELECT id, track_count FROM playlists WHERE id IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            for row in query.fetch_all(self.db.pool()).await? {
                counts.insert(
                    row.try_get::<String, _>("id")?,
                    row.try_get::<i64, _>("track_count")?,
                );
            }
        }
        Ok(counts)
    }

    /// Appends a track unless it is already there or the playlist is full.
    pub async fn add_track(
        &self,
        playlist_id: &str,
        track_id: &str,
        max_tracks: i64,
        now: i64,
    ) -> Result<AddOutcome, StoreError> {
        retry_on_conflict(|| async move {
            let mut tx = self.db.pool().begin().await?;
            let Some(count) = lock_playlist(&mut tx, playlist_id, now).await? else {
                return Ok(AddOutcome::NoSuchPlaylist);
            };
            if let Some(position) = position_of(&mut tx, playlist_id, track_id).await? {
                return Ok(AddOutcome::AlreadyPresent(position));
            }
            if count >= max_tracks {
                return Ok(AddOutcome::Full);
            }
            sqlx::query("INSERT INTO playlist_tracks (playlist_id, track_id, position, added_at) VALUES (?, ?, ?, ?)")
                .bind(playlist_id)
                .bind(track_id)
                .bind(count)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            set_count(&mut tx, playlist_id, count + 1).await?;
            tx.commit().await?;
            Ok(AddOutcome::Added(count))
        })
        .await
    }

    /// Removes a track and closes the gap; `Ok(false)` if it was not in the playlist.
    pub async fn remove_track(
        &self,
        playlist_id: &str,
        track_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        retry_on_conflict(|| async move {
            let mut tx = self.db.pool().begin().await?;
            let Some(count) = lock_playlist(&mut tx, playlist_id, now).await? else {
                return Ok(false);
            };
            let Some(position) = position_of(&mut tx, playlist_id, track_id).await? else {
                return Ok(false);
            };
            sqlx::query("DELETE FROM playlist_tracks WHERE playlist_id = ? AND track_id = ?")
                .bind(playlist_id)
                .bind(track_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE playlist_tracks SET position = position - 1 WHERE playlist_id = ? AND position > ?")
                .bind(playlist_id)
                .bind(position)
                .execute(&mut *tx)
                .await?;
            set_count(&mut tx, playlist_id, count - 1).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Moves one track to `to` (clamped to the end), shifting the ones between.
    /// `Ok(None)` if the track is not in the playlist; else its new position.
    pub async fn move_track(
        &self,
        playlist_id: &str,
        track_id: &str,
        to: i64,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        retry_on_conflict(|| async move {
            let mut tx = self.db.pool().begin().await?;
            let Some(count) = lock_playlist(&mut tx, playlist_id, now).await? else {
                return Ok(None);
            };
            let Some(from) = position_of(&mut tx, playlist_id, track_id).await? else {
                return Ok(None);
            };
            let to = to.clamp(0, count - 1);
            let shift = if to < from {
                Some(("position + 1", "position >= ? AND position < ?", to, from))
            } else if to > from {
                Some(("position - 1", "position > ? AND position <= ?", from, to))
            } else {
                None
            };
            if let Some((expr, range, low, high)) = shift {
                sqlx::query(&format!(
                    "UPDATE playlist_tracks SET position = {expr} WHERE playlist_id = ? AND {range}"
                ))
                .bind(playlist_id)
                .bind(low)
                .bind(high)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE playlist_tracks SET position = ? WHERE playlist_id = ? AND track_id = ?")
                    .bind(to)
                    .bind(playlist_id)
                    .bind(track_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(Some(to))
        })
        .await
    }

    /// Replaces the whole order. `order` must name every track of the playlist exactly once;
    /// otherwise nothing changes and `Ok(false)` is returned. `Ok(None)`: no such playlist.
    pub async fn set_order(
        &self,
        playlist_id: &str,
        order: &[String],
        now: i64,
    ) -> Result<Option<bool>, StoreError> {
        retry_on_conflict(|| async move {
            let mut tx = self.db.pool().begin().await?;
            if lock_playlist(&mut tx, playlist_id, now).await?.is_none() {
                return Ok(None);
            }
            let mut current: Vec<String> = sqlx::query("SELECT track_id FROM playlist_tracks WHERE playlist_id = ?")
                .bind(playlist_id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>("track_id"))
                .collect::<Result<_, _>>()?;
            let mut wanted = order.to_vec();
            current.sort_unstable();
            wanted.sort_unstable();
            if current != wanted {
                return Ok(Some(false));
            }
            for (chunk_index, chunk) in order.chunks(200).enumerate() {
                let cases = vec!["WHEN ? THEN ?"; chunk.len()].join(" ");
                let sql = format!(
                    "UPDATE playlist_tracks SET position = CASE track_id {cases} END WHERE playlist_id = ? AND track_id IN ({})",
                    placeholders(chunk.len())
                );
                let mut query = sqlx::query(&sql);
                for (offset, track_id) in chunk.iter().enumerate() {
                    query = query.bind(track_id).bind((chunk_index * 200 + offset) as i64);
                }
                query = query.bind(playlist_id);
                for track_id in chunk {
                    query = query.bind(track_id);
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(Some(true))
        })
        .await
    }

    /// A page of a playlist's tracks in order.
    pub async fn playlist_tracks(
        &self,
        playlist_id: &str,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<PlaylistTrackRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT pt.track_id AS track_id, pt.position AS position, pt.added_at AS added_at, t.name AS name, \
             t.singer AS singer, t.album AS album, t.duration_ms AS duration_ms, t.status AS status \
             FROM playlist_tracks pt LEFT JOIN tracks t ON t.id = pt.track_id \
             WHERE pt.playlist_id = ? ORDER BY pt.position LIMIT ? OFFSET ?",
        )
        .bind(playlist_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.db.pool())
        .await?)
    }
}

/// Takes the playlist's lock for the rest of the transaction and returns its track count,
/// or `None` if it does not exist. The write must come first: a SQLite transaction that reads
/// before it writes cannot wait for the lock and fails instead.
async fn lock_playlist(
    tx: &mut Tx<'_>,
    playlist_id: &str,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    sqlx::query("UPDATE playlists SET updated_at = ? WHERE id = ?")
        .bind(now)
        .bind(playlist_id)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query("SELECT track_count FROM playlists WHERE id = ?")
        .bind(playlist_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|row| row.try_get("track_count")).transpose()?)
}

async fn position_of(
    tx: &mut Tx<'_>,
    playlist_id: &str,
    track_id: &str,
) -> Result<Option<i64>, StoreError> {
    let row =
        sqlx::query("SELECT position FROM playlist_tracks WHERE playlist_id = ? AND track_id = ?")
            .bind(playlist_id)
            .bind(track_id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(|row| row.try_get("position")).transpose()?)
}

async fn set_count(tx: &mut Tx<'_>, playlist_id: &str, count: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE playlists SET track_count = ? WHERE id = ?")
        .bind(count)
        .bind(playlist_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
