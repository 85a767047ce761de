//! Playlists: the spec's flow (add a track to a playlist, or to a new one created for the
//! user), plus list, read, rename, reorder, remove a track and delete.
//!
//! Ownership (`playlist_user_info`) lives in the User DB and contents (`playlists`,
//! `playlist_tracks`) in the Inventory DB; they are never joined. A playlist is visible only
//! through its ownership record, so writes are ordered to make a crash between the two
//! databases leave nothing visible half-done:
//! - create: contents first, marked `pending` (invisible: no owner yet), then the ownership
//!   record (now visible, complete), then `live`;
//! - delete: contents marked `pending`, then the ownership record removed (now invisible),
//!   then the contents removed.
//!
//! [`App::sweep_orphans`] later settles any `pending` playlist left by a crash: it goes live
//! if its ownership record exists and is deleted if not.

mod http;
pub mod store;

pub(crate) use http::routes;

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::App;
use crate::auth::AuthUser;
use crate::calendar::rfc3339;
use crate::error::{Error, FieldError, Result};
use crate::playlists::store::PlaylistInfoRow;
use crate::store::{TextColumn, new_id};

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Error::Validation(vec![FieldError::new(
            "name",
            "invalid",
            "Between 1 and 200 characters, without control characters.",
        )]));
    }
    Ok(())
}

fn playlist_not_found() -> Error {
    Error::not_found("playlist_not_found", "No such playlist.")
}

fn summary_of(info: PlaylistInfoRow, track_count: i64) -> PlaylistSummary {
    PlaylistSummary {
        id: info.playlist_id,
        name: info.name,
        public: info.is_public != 0,
        owner_id: info.user_id,
        track_count,
        created_at: rfc3339(info.created_at),
        updated_at: rfc3339(info.updated_at),
    }
}

impl App {
    /// 404 unless the track exists; 409 unless it is ready to play.
    async fn check_track(&self, track_id: &str) -> Result<()> {
        let track = self
            .inventory
            .track(track_id)
            .await?
            .ok_or_else(|| Error::not_found("track_not_found", "No such track."))?;
        if track.status != crate::catalog::store::TrackStatus::Ready {
            return Err(Error::conflict(
                "track_not_playable",
                format!(
                    "The track is {}, not ready; only ready tracks go in playlists.",
                    track.status.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// The ownership record, if the caller owns the playlist: 404 if it is private and not
    /// theirs (its existence is not revealed), 403 if it is someone else's public playlist.
    async fn playlist_for_write(
        &self,
        caller: &AuthUser,
        playlist_id: &str,
    ) -> Result<PlaylistInfoRow> {
        let info = self
            .users
            .playlist_info(playlist_id)
            .await?
            .ok_or_else(playlist_not_found)?;
        if info.user_id == caller.user_id {
            Ok(info)
        } else if info.is_public != 0 {
            Err(Error::forbidden(
                "not_playlist_owner",
                "Only the owner may change this playlist.",
            ))
        } else {
            Err(playlist_not_found())
        }
    }

    /// Creates a playlist for `user_id` in the order the module documentation gives.
    pub async fn create_playlist(
        &self,
        user_id: &str,
        name: &str,
        public: bool,
        first_track: Option<&str>,
    ) -> Result<PlaylistInfoRow> {
        let max = i64::from(self.config.limits.max_playlists_per_user);
        if self.users.playlist_count(user_id).await? >= max {
            return Err(Error::conflict(
                "too_many_playlists",
                format!("A user may own at most {max} playlists."),
            ));
        }
        let now = self.clock.now_ms();
        let playlist_id = new_id();
        self.inventory
            .create_playlist(&playlist_id, first_track, now)
            .await?;
        let info = PlaylistInfoRow {
            id: new_id(),
            user_id: user_id.to_owned(),
            playlist_id: playlist_id.clone(),
            name: name.to_owned(),
            is_public: i64::from(public),
            created_at: now,
            updated_at: now,
        };
        self.users.insert_playlist_info(&info).await?;
        if let Err(error) = self.inventory.mark_playlist_live(&playlist_id, now).await {
            // The playlist is complete and visible; the sweeper marks it live later.
            tracing::warn!(message = "Could not mark a new playlist live; the sweeper will.", playlist_id, %error);
        }
        metrics::counter!("cadenza_playlists_created_total").increment(1);
        Ok(info)
    }

    async fn summary(&self, info: PlaylistInfoRow) -> Result<PlaylistSummary> {
        let count = self
            .inventory
            .track_count(&info.playlist_id)
            .await?
            .unwrap_or(0);
        Ok(summary_of(info, count))
    }

    async fn playlist(&self, info: PlaylistInfoRow, page: PageQuery) -> Result<Playlist> {
        let limit = page.limit.unwrap_or(10_000);
        if page.offset < 0 || !(1..=10_000).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                "invalid",
                "offset ≥ 0 and 1 ≤ limit ≤ 10 000.",
            ));
        }
        let rows = self
            .inventory
            .playlist_tracks(&info.playlist_id, page.offset, limit)
            .await?;
        let tracks = rows
            .into_iter()
            .map(|row| PlaylistEntry {
                track_id: row.track_id,
                position: row.position,
                name: row.name,
                singer: row.singer,
                album: row.album,
                duration_ms: row.duration_ms,
                status: row.status,
                added_at: rfc3339(row.added_at),
            })
            .collect();
        Ok(Playlist {
            summary: self.summary(info).await?,
            tracks,
        })
    }

    /// Settles playlists left `pending` longer than `grace` by a crash between the two
    /// databases: live if the User DB has their owner, deleted otherwise. Also deletes expired
    /// sessions. Returns how many playlists were deleted.
    pub async fn sweep_orphans(&self, grace: Duration) -> Result<usize> {
        let now = self.clock.now_ms();
        let mut deleted = 0;
        loop {
            let pending = self
                .inventory
                .pending_playlists(now - grace.as_millis() as i64, 500)
                .await?;
            if pending.is_empty() {
                break;
            }
            let owned: HashSet<String> = self
                .users
                .owned_playlist_ids(&pending)
                .await?
                .into_iter()
                .collect();
            let (live, orphans): (Vec<String>, Vec<String>) =
                pending.into_iter().partition(|id| owned.contains(id));
            self.inventory.set_playlist_state(&live, true, now).await?;
            self.inventory.delete_playlists(&orphans).await?;
            deleted += orphans.len();
            metrics::counter!("cadenza_playlist_orphans_deleted_total")
                .increment(orphans.len() as u64);
        }
        let idle_ms = self.config.auth.session_idle_ttl_secs as i64 * 1000;
        self.users.delete_expired_sessions(now, idle_ms).await?;
        self.sweep_payments().await?;
        self.sweep_uploads().await?;
        Ok(deleted)
    }
}

/// A playlist without its tracks.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaylistSummary {
    id: String,
    name: String,
    /// Whether anyone may read it.
    public: bool,
    owner_id: String,
    track_count: i64,
    created_at: String,
    updated_at: String,
}

/// A playlist with a page of its tracks, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Playlist {
    #[serde(flatten)]
    summary: PlaylistSummary,
    tracks: Vec<PlaylistEntry>,
}

/// One track of a playlist.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlaylistEntry {
    track_id: String,
    /// 0-based; positions are always 0..track_count with no gaps.
    position: i64,
    name: Option<String>,
    singer: Option<String>,
    album: Option<String>,
    duration_ms: Option<i64>,
    status: Option<String>,
    added_at: String,
}

/// Which tracks to return.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// Skip this many tracks (default 0).
    #[serde(default)]
    offset: i64,
    /// Return at most this many (default and maximum 10 000).
    limit: Option<i64>,
}
