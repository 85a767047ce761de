//! Play on HTTP: starting a play, its per-play manifests, and play events.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    PlayAnswer, PlayDocument, PlayEventAnswer, PlayEventRequest, PlayRequest, manifests,
    piece_base, piece_tokens, store,
};
use crate::App;
use crate::auth::AuthUser;
use crate::error::{Error, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath, ClientAddr};
use crate::store::retry_on_conflict;

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(start_play))
        .routes(routes!(play_event))
        .routes(routes!(play_manifest))
}

/// Start playing a track: the manifest URL on the primary node and on each fallback, with the
/// ads the listener's package calls for spliced in front.
#[utoipa::path(post, path = "/api/v1/play", tag = "play", security(("bearer" = [])), request_body = PlayRequest,
    responses((status = 201, body = PlayAnswer), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "track_not_found"),
        (status = 409, body = ErrorBody, description = "track_not_ready"), (status = 422, body = ErrorBody), (status = 451, body = ErrorBody, description = "track_blocked"),
        (status = 503, body = ErrorBody, description = "play_unavailable, locator_unavailable, no_node")))]
async fn start_play(
    app: App,
    caller: AuthUser,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    ApiJson(request): ApiJson<PlayRequest>,
) -> Result<(StatusCode, Json<PlayAnswer>)> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|value| value.to_str().ok());
    let answer = app.play(&caller, client, host, request).await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Report listening: `start`, `progress` (about every 30 s), `complete` or `skip`. Listening is
/// credited up to the position reported, never more than the time since the play began.
#[utoipa::path(post, path = "/api/v1/play-events", tag = "play", security(("bearer" = [])), request_body = PlayEventRequest,
    responses((status = 202, body = PlayEventAnswer), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "play_not_found"),
        (status = 409, body = ErrorBody, description = "play_not_started, play_already_started, play_finished"), (status = 422, body = ErrorBody)))]
async fn play_event(
    app: App,
    caller: AuthUser,
    ApiJson(request): ApiJson<PlayEventRequest>,
) -> Result<(StatusCode, Json<PlayEventAnswer>)> {
    let answer = retry_on_conflict(|| app.record_play_event(&caller, &request)).await??;
    app.bus.notify();
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

// ---- Per-play manifests ------------------------------------------------------------------

/// A per-play manifest of an ad-supported play on one of its nodes: `master.m3u8`,
/// `{rendition}.m3u8` or `manifest.mpd`. The play id is the capability (players send no
/// bearer token); it works until the play's URLs expire.
#[utoipa::path(get, path = "/api/v1/plays/{id}/{node}/{file}", tag = "play",
    params(("id" = String, Path), ("node" = usize, Path, description = "0 for the primary, then the fallbacks"), ("file" = String, Path)),
    responses((status = 200, description = "the manifest"), (status = 404, body = ErrorBody)))]
async fn play_manifest(
    app: App,
    ApiPath((id, node, file)): ApiPath<(String, usize, String)>,
) -> Result<Response> {
    let not_found = || Error::not_found("play_not_found", "No such play, or it has expired.");
    let row = store::play_document(app.users.database().pool(), &id)
        .await?
        .ok_or_else(not_found)?;
    let (created_at, expires_at) = (row.created_at, row.expires_at);
    if app.clock.now_ms() > expires_at {
        return Err(not_found());
    }
    let document: PlayDocument =
        serde_json::from_str(&row.document).map_err(|error| Error::Internal(error.into()))?;
    let node = &document.nodes.get(node).ok_or_else(not_found)?.url;
    let Some(keyring) = &app.player.keyring else {
        return Err(Error::Unavailable {
            code: "play_unavailable",
            message: "This control plane has no URL-token keys configured.".to_owned(),
        });
    };
    let bases = || -> Result<Vec<String>> {
        let tokens = piece_tokens(
            keyring,
            &document.pieces,
            (created_at / 1000).max(0) as u64,
            (expires_at / 1000).max(0) as u64,
        )?;
        Ok(document
            .pieces
            .iter()
            .zip(&tokens)
            .map(|(piece, token)| piece_base(node, token, piece))
            .collect())
    };
    let (body, content_type) = if file == "master.m3u8" {
        let track = document.pieces.last().ok_or_else(not_found)?;
        let master = app.piece(&format!("{}master.m3u8", track.prefix)).await?;
        let mut ad_masters = Vec::new();
        for piece in document.pieces.iter().filter(|piece| piece.ad) {
            ad_masters.push(app.piece(&format!("{}master.m3u8", piece.prefix)).await?);
        }
        let ad_masters: Vec<&str> = ad_masters.iter().map(|text| &**text).collect();
        (
            manifests::hls_master(&master, &ad_masters)
                .map_err(|error| Error::Internal(error.into()))?,
            "application/vnd.apple.mpegurl",
        )
    } else if file == "manifest.mpd" {
        let mut texts = Vec::new();
        for piece in &document.pieces {
            texts.push(app.piece(&format!("{}manifest.mpd", piece.prefix)).await?);
        }
        let pieces: Vec<manifests::DashPiece<'_>> = document
            .pieces
            .iter()
            .zip(&texts)
            .zip(bases()?)
            .map(|((piece, text), base)| manifests::DashPiece {
                base,
                mpd: text,
                ad: piece.ad.then_some(piece.track_id.as_str()),
            })
            .collect();
        (
            manifests::dash_mpd(&pieces).map_err(|error| Error::Internal(error.into()))?,
            "application/dash+xml",
        )
    } else if let Some(rendition) = file.strip_suffix(".m3u8")
        && !rendition.is_empty()
        && rendition
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        let mut texts = Vec::new();
        for piece in &document.pieces {
            texts.push(
                app.piece(&format!("{}{rendition}/index.m3u8", piece.prefix))
                    .await?,
            );
        }
        let pieces: Vec<manifests::HlsPiece<'_>> = document
            .pieces
            .iter()
            .zip(&texts)
            .zip(bases()?)
            .map(|((piece, text), base)| manifests::HlsPiece {
                base: format!("{base}{rendition}/"),
                playlist: text,
                ad: piece.ad.then_some(piece.track_id.as_str()),
            })
            .collect();
        (
            manifests::hls_media(&pieces, created_at, &id)
                .map_err(|error| Error::Internal(error.into()))?,
            "application/vnd.apple.mpegurl",
        )
    } else {
        return Err(not_found());
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    Ok(response)
}
