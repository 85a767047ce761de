//! Playlists on HTTP: list, create, read, rename, delete, add, remove and reorder.

use std::collections::HashSet;

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::store::AddOutcome;
use super::{PageQuery, Playlist, PlaylistSummary, check_name, playlist_not_found, summary_of};
use crate::App;
use crate::auth::{AuthUser, MaybeAuthUser};
use crate::error::{Error, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery};

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(add_track))
        .routes(routes!(list_playlists, create_playlist))
        .routes(routes!(get_playlist, update_playlist, delete_playlist))
        .routes(routes!(remove_track))
        .routes(routes!(reorder))
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
