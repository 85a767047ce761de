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

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;
use crate::auth::{AuthUser, MaybeAuthUser};
use crate::calendar::rfc3339;
use crate::error::{Error, ErrorBody, FieldError, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::store::{AddOutcome, PlaylistInfoRow, TextColumn, new_id};

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(add_track))
        .routes(routes!(list_playlists, create_playlist))
        .routes(routes!(get_playlist, update_playlist, delete_playlist))
        .routes(routes!(remove_track))
        .routes(routes!(reorder))
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

/// The spec's flow: add `track_id` to `playlist_id`, or to a new playlist when it is absent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTrack {
    track_id: String,
    /// An existing playlist of the caller's; absent: a new one is created.
    playlist_id: Option<String>,
    /// Name of the new playlist (only when `playlist_id` is absent).
    name: Option<String>,
}

/// What adding did.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackAdded {
    playlist: PlaylistSummary,
    track_id: String,
    /// Where the track is.
    position: i64,
    /// False when the track was already in the playlist (nothing changed).
    added: bool,
    /// True when a new playlist was created.
    created: bool,
}

/// A new, empty playlist.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlaylist {
    name: String,
    #[serde(default)]
    public: bool,
}

/// Rename or change visibility.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlaylist {
    name: Option<String>,
    public: Option<bool>,
}

/// Either the whole new order (`track_ids`, every track exactly once) or one move
/// (`track_id` to `position`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reorder {
    track_ids: Option<Vec<String>>,
    track_id: Option<String>,
    position: Option<i64>,
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

/// Add a track to a playlist, creating the playlist when no id is given.
#[utoipa::path(post, path = "/api/v1/playlists/tracks", tag = "playlists", security(("bearer" = [])), request_body = AddTrack,
    responses((status = 201, body = TrackAdded, description = "a new playlist was created"), (status = 200, body = TrackAdded),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "playlist_full, track_not_playable, too_many_playlists")))]
async fn add_track(
    app: App,
    caller: AuthUser,
    ApiJson(body): ApiJson<AddTrack>,
) -> Result<(StatusCode, Json<TrackAdded>)> {
    app.check_track(&body.track_id).await?;
    let now = app.clock.now_ms();
    let Some(playlist_id) = body.playlist_id else {
        let name = body.name.unwrap_or_else(|| "New playlist".to_owned());
        check_name(&name)?;
        let info = app
            .create_playlist(&caller.user_id, &name, false, Some(&body.track_id))
            .await?;
        let playlist = app.summary(info).await?;
        return Ok((
            StatusCode::CREATED,
            Json(TrackAdded {
                playlist,
                track_id: body.track_id,
                position: 0,
                added: true,
                created: true,
            }),
        ));
    };
    if body.name.is_some() {
        return Err(Error::invalid(
            "name",
            "invalid",
            "A name is only taken when creating a playlist; rename with PATCH.",
        ));
    }
    let info = app.playlist_for_write(&caller, &playlist_id).await?;
    let max = i64::from(app.config.limits.playlist_max_tracks);
    let (position, added) = match app
        .inventory
        .add_track(&playlist_id, &body.track_id, max, now)
        .await?
    {
        AddOutcome::Added(position) => (position, true),
        AddOutcome::AlreadyPresent(position) => (position, false),
        AddOutcome::Full => {
            return Err(Error::conflict(
                "playlist_full",
                format!("A playlist holds at most {max} tracks."),
            ));
        }
        AddOutcome::NoSuchPlaylist => return Err(playlist_not_found()),
    };
    let playlist = app.summary(info).await?;
    Ok((
        StatusCode::OK,
        Json(TrackAdded {
            playlist,
            track_id: body.track_id,
            position,
            added,
            created: false,
        }),
    ))
}

/// The caller's playlists, oldest first.
#[utoipa::path(get, path = "/api/v1/playlists", tag = "playlists", security(("bearer" = [])),
    responses((status = 200, body = [PlaylistSummary]), (status = 401, body = ErrorBody)))]
async fn list_playlists(app: App, caller: AuthUser) -> Result<Json<Vec<PlaylistSummary>>> {
    let infos = app.users.playlists_of(&caller.user_id).await?;
    let ids: Vec<String> = infos.iter().map(|info| info.playlist_id.clone()).collect();
    let counts = app.inventory.track_counts(&ids).await?;
    Ok(Json(
        infos
            .into_iter()
            .map(|info| {
                let count = counts.get(&info.playlist_id).copied().unwrap_or(0);
                summary_of(info, count)
            })
            .collect(),
    ))
}

/// Create an empty playlist.
#[utoipa::path(post, path = "/api/v1/playlists", tag = "playlists", security(("bearer" = [])), request_body = CreatePlaylist,
    responses((status = 201, body = PlaylistSummary), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_playlist(
    app: App,
    caller: AuthUser,
    ApiJson(body): ApiJson<CreatePlaylist>,
) -> Result<(StatusCode, Json<PlaylistSummary>)> {
    check_name(&body.name)?;
    let info = app
        .create_playlist(&caller.user_id, &body.name, body.public, None)
        .await?;
    Ok((StatusCode::CREATED, Json(app.summary(info).await?)))
}

/// A playlist with its tracks in order. Another user's private playlist is 404.
#[utoipa::path(get, path = "/api/v1/playlists/{id}", tag = "playlists", security(("bearer" = [])),
    params(("id" = String, Path), PageQuery),
    responses((status = 200, body = Playlist), (status = 404, body = ErrorBody)))]
async fn get_playlist(
    app: App,
    MaybeAuthUser(caller): MaybeAuthUser,
    ApiPath(id): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Playlist>> {
    let info = app
        .users
        .playlist_info(&id)
        .await?
        .filter(|info| {
            info.is_public != 0
                || caller
                    .as_ref()
                    .is_some_and(|caller| caller.user_id == info.user_id)
        })
        .ok_or_else(playlist_not_found)?;
    app.playlist(info, page).await.map(Json)
}

/// Rename a playlist or change its visibility.
#[utoipa::path(patch, path = "/api/v1/playlists/{id}", tag = "playlists", security(("bearer" = [])), request_body = UpdatePlaylist,
    params(("id" = String, Path)),
    responses((status = 200, body = PlaylistSummary), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_playlist(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdatePlaylist>,
) -> Result<Json<PlaylistSummary>> {
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    app.playlist_for_write(&caller, &id).await?;
    app.users
        .update_playlist_info(&id, body.name.as_deref(), body.public, app.clock.now_ms())
        .await?;
    let info = app
        .users
        .playlist_info(&id)
        .await?
        .ok_or_else(playlist_not_found)?;
    Ok(Json(app.summary(info).await?))
}

/// Delete a playlist.
#[utoipa::path(delete, path = "/api/v1/playlists/{id}", tag = "playlists", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_playlist(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    app.playlist_for_write(&caller, &id).await?;
    let ids = [id];
    app.inventory
        .set_playlist_state(&ids, false, app.clock.now_ms())
        .await?;
    app.users.delete_playlist_info(&ids[0]).await?;
    app.inventory.delete_playlists(&ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a track from a playlist; the tracks after it move up.
#[utoipa::path(delete, path = "/api/v1/playlists/{id}/tracks/{track_id}", tag = "playlists", security(("bearer" = [])),
    params(("id" = String, Path), ("track_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody, description = "playlist_not_found or track_not_in_playlist")))]
async fn remove_track(
    app: App,
    caller: AuthUser,
    ApiPath((id, track_id)): ApiPath<(String, String)>,
) -> Result<StatusCode> {
    app.playlist_for_write(&caller, &id).await?;
    if !app
        .inventory
        .remove_track(&id, &track_id, app.clock.now_ms())
        .await?
    {
        return Err(Error::not_found(
            "track_not_in_playlist",
            "That track is not in this playlist.",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Reorder a playlist: the whole order at once, or one track moved.
#[utoipa::path(put, path = "/api/v1/playlists/{id}/order", tag = "playlists", security(("bearer" = [])), request_body = Reorder,
    params(("id" = String, Path)),
    responses((status = 200, body = Playlist), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn reorder(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Reorder>,
) -> Result<Json<Playlist>> {
    let info = app.playlist_for_write(&caller, &id).await?;
    let now = app.clock.now_ms();
    match (body.track_ids, body.track_id, body.position) {
        (Some(order), None, None) => {
            let unique: HashSet<&String> = order.iter().collect();
            if unique.len() != order.len() {
                return Err(Error::invalid(
                    "track_ids",
                    "invalid",
                    "A track may appear only once.",
                ));
            }
            match app.inventory.set_order(&id, &order, now).await? {
                Some(true) => {}
                Some(false) => {
                    return Err(Error::invalid(
                        "track_ids",
                        "invalid",
                        "Name every track of the playlist exactly once.",
                    ));
                }
                None => return Err(playlist_not_found()),
            }
        }
        (None, Some(track_id), Some(position)) => {
            if position < 0 {
                return Err(Error::invalid("position", "invalid", "Must be 0 or more."));
            }
            if app
                .inventory
                .move_track(&id, &track_id, position, now)
                .await?
                .is_none()
            {
                return Err(Error::not_found(
                    "track_not_in_playlist",
                    "That track is not in this playlist.",
                ));
            }
        }
        _ => {
            return Err(Error::invalid(
                "",
                "invalid",
                "Send either `track_ids` (the whole order) or `track_id` with `position`.",
            ));
        }
    }
    app.playlist(
        info,
        PageQuery {
            offset: 0,
            limit: None,
        },
    )
    .await
    .map(Json)
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
        if track.status != crate::store::TrackStatus::Ready {
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
