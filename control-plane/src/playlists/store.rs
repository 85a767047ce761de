//! The playlists' queries: ownership in the User DB (`playlist_user_info`) and contents in the
//! Inventory DB (`playlists`, `playlist_tracks`).
//!
//! Every change to a playlist's contents first updates its `playlists` row inside the
//! transaction. That row lock (MySQL) or write lock (SQLite) serialises concurrent changes to
//! one playlist, so positions stay dense (0..n) and the size limit holds under concurrency.

use std::collections::HashMap;

use sqlx::Row;

use crate::store::{
    InventoryStore, StoreError, UserStore, inserted, placeholders, retry_on_conflict,
};

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

pub(crate) type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

impl InventoryStore {
    // ---- Playlists -----------------------------------------------------------------------

    /// Creates a playlist in the `pending` state, holding `first_track` if given. It stays
    /// invisible until the User DB records its owner and [`Self::mark_playlist_live`] runs.
    pub async fn create_playlist(
        &self,
        playlist_id: &str,
        first_track: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
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
            let mut tx = self.db.begin().await?;
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
            let mut tx = self.db.begin().await?;
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
            let mut tx = self.db.begin().await?;
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
            let mut tx = self.db.begin().await?;
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
            let mut tx = self.db.begin().await?;
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
pub(crate) async fn lock_playlist(
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

pub(crate) async fn position_of(
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

pub(crate) async fn set_count(
    tx: &mut Tx<'_>,
    playlist_id: &str,
    count: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE playlists SET track_count = ? WHERE id = ?")
        .bind(count)
        .bind(playlist_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The User DB's record of a playlist: who owns it, its name and visibility.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlaylistInfoRow {
    /// Row UUID.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// The playlist's id, shared with the Inventory DB's `playlists` and `playlist_tracks`.
    pub playlist_id: String,
    /// Name.
    pub name: String,
    /// 1 when anyone may read it.
    pub is_public: i64,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

pub(crate) const PLAYLIST_COLUMNS: &str =
    "id, user_id, playlist_id, name, is_public, created_at, updated_at";

impl UserStore {
    /// Records that `user_id` owns the playlist `playlist_id`. `Ok(false)` when a record for
    /// that playlist already exists.
    pub async fn insert_playlist_info(&self, row: &PlaylistInfoRow) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO playlist_user_info (id, user_id, playlist_id, name, is_public, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.id)
        .bind(&row.user_id)
        .bind(&row.playlist_id)
        .bind(&row.name)
        .bind(row.is_public)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(self.db.pool())
        .await;
        inserted(result)
    }

    /// The ownership record of a playlist.
    pub async fn playlist_info(
        &self,
        playlist_id: &str,
    ) -> Result<Option<PlaylistInfoRow>, StoreError> {
        let sql =
            format!("SELECT {PLAYLIST_COLUMNS} FROM playlist_user_info WHERE playlist_id = ?");
        Ok(sqlx::query_as(&sql)
            .bind(playlist_id)
            .fetch_optional(self.db.pool())
            .await?)
    }

    /// A user's playlists, oldest first.
    pub async fn playlists_of(&self, user_id: &str) -> Result<Vec<PlaylistInfoRow>, StoreError> {
        let sql = format!(
            "SELECT {PLAYLIST_COLUMNS} FROM playlist_user_info WHERE user_id = ? ORDER BY created_at, id"
        );
        Ok(sqlx::query_as(&sql)
            .bind(user_id)
            .fetch_all(self.db.pool())
            .await?)
    }

    /// How many playlists a user owns.
    pub async fn playlist_count(&self, user_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM playlist_user_info WHERE user_id = ?")
            .bind(user_id)
            .fetch_one(self.db.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Renames a playlist and/or changes its visibility.
    pub async fn update_playlist_info(
        &self,
        playlist_id: &str,
        name: Option<&str>,
        is_public: Option<bool>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE playlist_user_info SET name = COALESCE(?, name), is_public = COALESCE(?, is_public), updated_at = ? \
             WHERE playlist_id = ?",
        )
        .bind(name.map(str::to_owned))
        .bind(is_public.map(i64::from))
        .bind(now)
        .bind(playlist_id)
        .execute(self.db.pool())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Deletes a playlist's ownership record: from then on nobody sees the playlist.
    pub async fn delete_playlist_info(&self, playlist_id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM playlist_user_info WHERE playlist_id = ?")
            .bind(playlist_id)
            .execute(self.db.pool())
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Which of `playlist_ids` have an ownership record.
    pub async fn owned_playlist_ids(
        &self,
        playlist_ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        if playlist_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT playlist_id FROM playlist_user_info WHERE playlist_id IN ({})",
            placeholders(playlist_ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in playlist_ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get::<String, _>("playlist_id"))
            .collect::<Result<_, _>>()?)
    }
}
