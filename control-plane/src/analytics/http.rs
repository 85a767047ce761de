//! The home screen, track statistics and ISP boxes' fill manifests on HTTP: `GET /api/v1/home`,
//! `GET /api/v1/tracks/{id}/stats`, `GET /api/v1/isp/manifest`.

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::fill::FillManifest;
use super::{Home, TrackStats};
use crate::App;
use crate::auth::{AuthUser, MaybeAuthUser};
use crate::error::{ErrorBody, Result};
use crate::extract::{ApiPath, ApiQuery, ClientAddr};

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(home))
        .routes(routes!(track_stats))
        .routes(routes!(isp_manifest))
}

/// The query of a fill manifest.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
struct ManifestQuery {
    /// The box's budget for pre-positioned media, bytes.
    bytes: u64,
}

/// Largest budget a manifest is made for: 1 PB.
const MAX_BUDGET: u64 = 1_000_000_000_000_000;

/// An ISP box's fill manifest: the tracks its region is expected to play most (then those
/// every region plays most), each with every object to pre-position and its size, within
/// `bytes`. For ISP boxes only: the box's own token as a bearer token.
#[utoipa::path(get, path = "/api/v1/isp/manifest", tag = "home", params(ManifestQuery),
    responses((status = 200, body = FillManifest), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody, description = "unknown_box")),
    security(("bearer" = [])))]
async fn isp_manifest(
    app: App,
    headers: axum::http::HeaderMap,
    ApiQuery(query): ApiQuery<ManifestQuery>,
) -> Result<impl IntoResponse> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    let access = app.isp_box(token)?.clone();
    if query.bytes == 0 || query.bytes > MAX_BUDGET {
        return Err(crate::error::Error::invalid(
            "bytes",
            "out_of_range",
            "the budget is between 1 byte and 1 PB",
        ));
    }
    let manifest = app.fill_manifest(&access, query.bytes).await?;
    Ok((
        [(header::CACHE_CONTROL, "private, no-store")],
        Json(manifest),
    ))
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
