//! Processing on HTTP: a track's state, its live progress as server-sent events, and an
//! administrator's block and unblock.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Track, load_track};
use crate::App;
use crate::auth::MaybeAuthUser;
use crate::error::{Error, ErrorBody, Result};
use crate::extract::ApiPath;

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(get_track))
        .routes(routes!(block_track, unblock_track))
        .routes(routes!(track_events))
}

/// How often the progress stream looks at the track's row.
const PROGRESS_POLL: Duration = Duration::from_millis(250);

/// How long one progress stream may stay open; the client reconnects after that.
const PROGRESS_LIMIT: Duration = Duration::from_secs(30 * 60);

/// A track: anyone may see a ready one; its uploader and administrators see it in any state.
#[utoipa::path(get, path = "/api/v1/tracks/{id}", tag = "uploads", params(("id" = String, Path)),
    responses((status = 200, body = Track), (status = 404, body = ErrorBody)))]
async fn get_track(
    app: App,
    MaybeAuthUser(caller): MaybeAuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Track>> {
    Ok(Json(load_track(&app, caller.as_ref(), &id).await?))
}

/// Why a track is taken down.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    /// Shown to players that ask for it (1 to 500 characters).
    pub reason: String,
}

/// Take a track down (administrators): it is never played again, whatever its status, until
/// unblocked. URLs already handed out expire on their own.
#[utoipa::path(put, path = "/api/v1/tracks/{id}/block", tag = "uploads", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = BlockRequest,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn block_track(
    app: App,
    caller: crate::auth::AuthUser,
    ApiPath(id): ApiPath<String>,
    crate::extract::ApiJson(request): crate::extract::ApiJson<BlockRequest>,
) -> Result<StatusCode> {
    caller.require_admin()?;
    let reason = request.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(Error::invalid(
            "reason",
            "invalid",
            "Give a reason of 1 to 500 characters.",
        ));
    }
    set_block(&app, &id, Some(reason)).await
}

/// Put a blocked track back (administrators).
#[utoipa::path(delete, path = "/api/v1/tracks/{id}/block", tag = "uploads", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn unblock_track(
    app: App,
    caller: crate::auth::AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    caller.require_admin()?;
    set_block(&app, &id, None).await
}

async fn set_block(app: &App, id: &str, reason: Option<&str>) -> Result<StatusCode> {
    app.set_block(id, reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The track's progress as server-sent events: a `track` event with the track (as `GET
/// /api/v1/tracks/{id}` returns it) now and after every change, ending once it is `ready`,
/// `rejected` or `failed`. Who may see the track is decided when the stream opens.
#[utoipa::path(get, path = "/api/v1/tracks/{id}/events", tag = "uploads", params(("id" = String, Path)),
    responses((status = 200, description = "`track` events, each a Track", content_type = "text/event-stream"),
        (status = 404, body = ErrorBody)))]
async fn track_events(
    app: App,
    MaybeAuthUser(caller): MaybeAuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Sse<impl futures::Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    let first = load_track(&app, caller.as_ref(), &id).await?;
    let deadline = tokio::time::Instant::now() + PROGRESS_LIMIT;
    // State: the next track to send (if any), the last one sent, and whether the stream is done.
    let stream = futures::stream::unfold(
        (Some(first), None::<Track>, false),
        move |(next, last, done)| {
            let (app, caller, id) = (app.clone(), caller.clone(), id.clone());
            async move {
                if done {
                    return None;
                }
                let mut next = next;
                loop {
                    if let Some(track) = next.take()
                        && last.as_ref() != Some(&track)
                    {
                        let finished = track.status.is_settled();
                        let event = SseEvent::default()
                            .event("track")
                            .json_data(&track)
                            .unwrap_or_else(|_| SseEvent::default().event("error"));
                        return Some((Ok(event), (None, Some(track), finished)));
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return None;
                    }
                    tokio::time::sleep(PROGRESS_POLL).await;
                    match load_track(&app, caller.as_ref(), &id).await {
                        Ok(track) => next = Some(track),
                        // A track deleted meanwhile ends the stream; a database hiccup is
                        // retried at the next poll.
                        Err(Error::NotFound { .. }) => {
                            return None;
                        }
                        Err(_) => {}
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
