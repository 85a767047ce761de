//! The catalog on HTTP: a track's media facts and processing timeline.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{PlayCounter, TimelineEntry, TrackMedia};
use crate::App;
use crate::auth::MaybeAuthUser;
use crate::error::{ErrorBody, Result};
use crate::extract::ApiPath;

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
