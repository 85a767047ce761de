//! The home screen and track statistics on HTTP: `GET /api/v1/home`,
//! `GET /api/v1/tracks/{id}/stats`.

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Home, TrackStats};
use crate::App;
use crate::auth::{AuthUser, MaybeAuthUser};
use crate::error::{ErrorBody, Result};
use crate::extract::{ApiPath, ClientAddr};

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(home))
        .routes(routes!(track_stats))
}

/// The home screen: titled sections of tracks (with thumbnails) and playlists — continue
/// listening, recently played, your playlists, trending near you (the region the host
/// locator sends this client to), top in your region, new releases, because you listened to
/// X, rediscover. Sections with nothing to show are left out; a visitor who is not logged in
/// gets trending, top and new releases. Cached per listener for a few seconds.
#[utoipa::path(get, path = "/api/v1/home", tag = "home",
    responses((status = 200, body = Home), (status = 401, body = ErrorBody)),
    security((), ("bearer" = [])))]
async fn home(
    app: App,
    MaybeAuthUser(caller): MaybeAuthUser,
    ClientAddr(client): ClientAddr,
) -> Result<impl IntoResponse> {
    let home = app
        .home(
            caller.as_ref().map(|caller| caller.user_id.as_str()),
            client,
        )
        .await?;
    Ok(([(header::CACHE_CONTROL, "private, max-age=10")], Json(home)))
}

/// A track's plays by day and region, with its completion and skip rates: for the track's
/// artist (its uploader) and administrators.
#[utoipa::path(get, path = "/api/v1/tracks/{id}/stats", tag = "home", params(("id" = String, Path)),
    responses((status = 200, body = TrackStats), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not_your_track"),
        (status = 404, body = ErrorBody, description = "track_not_found")),
    security(("bearer" = [])))]
async fn track_stats(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TrackStats>> {
    Ok(Json(app.track_stats(&caller, &id).await?))
}
