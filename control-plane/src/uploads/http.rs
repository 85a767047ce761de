//! Uploads on HTTP: tus 1.0 resumable uploads (create, offset, append, terminate) and
//! one-request uploads.

use std::collections::HashMap;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{remove_staged, require_artist, store};
use crate::App;
use crate::auth::{AuthUser, Role};
use crate::calendar::rfc3339;
use crate::error::{Error, ErrorBody, Result};
use crate::extract::ApiPath;

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_upload, tus_options))
        .routes(routes!(
            upload_status,
            upload_offset,
            append_chunk,
            terminate_upload
        ))
        .routes(routes!(one_request_upload))
}

const TUS_VERSION: &str = "1.0.0";

/// An upload, as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct Upload {
    id: String,
    /// Bytes received so far.
    offset: i64,
    /// Bytes announced.
    length: i64,
    /// `open`, `complete` or `terminated`.
    status: String,
    /// The track it became (once complete).
    track_id: Option<String>,
    created_at: String,
}

fn tus_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The `kind` an upload asks for: `music` (the default) or `ad`, which only administrators may
/// upload (ads are spliced before free-tier plays).
fn check_kind(caller: &AuthUser, metadata: &HashMap<String, String>) -> Result<()> {
    match metadata.get("kind").map(String::as_str) {
        None | Some("music") => Ok(()),
        Some("ad") if caller.role == Role::Admin => Ok(()),
        Some("ad") => Err(Error::forbidden(
            "admin_required",
            "Only administrators can upload ads.",
        )),
        Some(_) => Err(Error::invalid(
            "metadata.kind",
            "invalid",
            "kind is `music` or `ad`.",
        )),
    }
}

fn check_tus_version(headers: &HeaderMap) -> Result<()> {
    match headers
        .get("tus-resumable")
        .and_then(|value| value.to_str().ok())
    {
        Some(TUS_VERSION) => Ok(()),
        _ => Err(Error::PreconditionFailed {
            code: "tus_version_unsupported",
            message: "Send `Tus-Resumable: 1.0.0`.".to_owned(),
        }),
    }
}

/// Parses `Upload-Metadata`: comma-separated `key base64value` pairs.
pub fn parse_metadata(header: Option<&str>) -> Result<HashMap<String, String>> {
    let mut pairs = HashMap::new();
    let Some(header) = header else {
        return Ok(pairs);
    };
    for pair in header
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let (key, value) = pair.split_once(' ').unwrap_or((pair, ""));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| {
                Error::invalid(
                    "Upload-Metadata",
                    "invalid",
                    format!("the value of `{key}` is not base64"),
                )
            })?;
        let value = String::from_utf8(bytes).map_err(|_| {
            Error::invalid(
                "Upload-Metadata",
                "invalid",
                format!("`{key}` is not UTF-8"),
            )
        })?;
        if key.is_empty() || key.len() > 100 || value.chars().count() > 300 {
            return Err(Error::invalid(
                "Upload-Metadata",
                "invalid",
                "keys up to 100 bytes, values up to 300 characters",
            ));
        }
        pairs.insert(key.to_owned(), value);
    }
    Ok(pairs)
}

/// Discover the server's tus capabilities.
#[utoipa::path(options, path = "/api/v1/uploads", tag = "uploads", responses((status = 204)))]
async fn tus_options(app: App) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    tus_headers(&mut response);
    let headers = response.headers_mut();
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert(
        "tus-extension",
        HeaderValue::from_static("creation,termination,checksum"),
    );
    headers.insert(
        "tus-checksum-algorithm",
        HeaderValue::from_static("sha1,sha256"),
    );
    headers.insert(
        "tus-max-size",
        HeaderValue::from(app.config.uploads.max_size_bytes),
    );
    response
}

/// Create an upload (tus creation). Headers: `Tus-Resumable: 1.0.0`, `Upload-Length`, and
/// `Upload-Metadata` with `title` and `singer` (and optionally `album`, `filename`, and `kind`:
/// `music` or, for administrators, `ad`).
#[utoipa::path(post, path = "/api/v1/uploads", tag = "uploads", security(("bearer" = [])),
    responses((status = 201, description = "Location names the upload"), (status = 403, body = ErrorBody, description = "artist_required"),
        (status = 412, body = ErrorBody), (status = 413, body = ErrorBody, description = "upload_too_large, quota_exceeded"), (status = 422, body = ErrorBody)))]
async fn create_upload(app: App, caller: AuthUser, headers: HeaderMap) -> Result<Response> {
    require_artist(&caller)?;
    check_tus_version(&headers)?;
    let length: u64 = headers
        .get("upload-length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| {
            Error::invalid(
                "Upload-Length",
                "required",
                "Send the total size in bytes (deferred length is not supported).",
            )
        })?;
    let metadata = parse_metadata(
        headers
            .get("upload-metadata")
            .and_then(|value| value.to_str().ok()),
    )?;
    check_kind(&caller, &metadata)?;
    let upload = app.create_upload(&caller.user_id, length, metadata).await?;
    let mut response = StatusCode::CREATED.into_response();
    tus_headers(&mut response);
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/api/v1/uploads/{}", upload.id))
            .map_err(anyhow::Error::from)?,
    );
    response
        .headers_mut()
        .insert("upload-offset", HeaderValue::from(0));
    Ok(response)
}

/// The upload's offset (tus `HEAD`).
#[utoipa::path(head, path = "/api/v1/uploads/{id}", tag = "uploads", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "Upload-Offset and Upload-Length headers"), (status = 404)))]
async fn upload_offset(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Response> {
    let upload = app.owned_upload(&caller, &id).await?;
    let mut response = StatusCode::OK.into_response();
    tus_headers(&mut response);
    response
        .headers_mut()
        .insert("upload-offset", HeaderValue::from(upload.received));
    response
        .headers_mut()
        .insert("upload-length", HeaderValue::from(upload.length));
    Ok(response)
}

/// The upload as JSON: offset, length, status, and the track once complete.
#[utoipa::path(get, path = "/api/v1/uploads/{id}", tag = "uploads", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Upload), (status = 404, body = ErrorBody)))]
async fn upload_status(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Upload>> {
    let upload = app.owned_upload(&caller, &id).await?;
    Ok(Json(Upload {
        track_id: (upload.status == "complete").then(|| upload.track_id.clone()),
        created_at: rfc3339(upload.created_at),
        id: upload.id,
        offset: upload.received,
        length: upload.length,
        status: upload.status,
    }))
}

/// Append a chunk (tus `PATCH`): `Content-Type: application/offset+octet-stream`,
/// `Upload-Offset` equal to the current offset, optionally `Upload-Checksum: sha1 <base64>`
/// (or sha256) over this chunk. 460 when the checksum does not match (the chunk is dropped).
#[utoipa::path(patch, path = "/api/v1/uploads/{id}", tag = "uploads", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "Upload-Offset header"), (status = 409, body = ErrorBody, description = "offset_mismatch"),
        (status = 415, body = ErrorBody), (status = 460, body = ErrorBody, description = "checksum_mismatch")))]
async fn append_chunk(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
    request: Request,
) -> Result<Response> {
    let headers = request.headers().clone();
    check_tus_version(&headers)?;
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        != Some("application/offset+octet-stream")
    {
        return Err(Error::UnsupportedMediaType);
    }
    let offset: i64 = headers
        .get("upload-offset")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| {
            Error::invalid(
                "Upload-Offset",
                "required",
                "Send the offset this chunk starts at.",
            )
        })?;
    let checksum = match headers
        .get("upload-checksum")
        .and_then(|value| value.to_str().ok())
    {
        None => None,
        Some(value) => {
            let (algorithm, digest) = value.split_once(' ').ok_or_else(|| {
                Error::invalid(
                    "Upload-Checksum",
                    "invalid",
                    "`<algorithm> <base64 digest>`",
                )
            })?;
            let digest = base64::engine::general_purpose::STANDARD
                .decode(digest.trim())
                .map_err(|_| {
                    Error::invalid("Upload-Checksum", "invalid", "the digest is not base64")
                })?;
            match algorithm {
                "sha1" | "sha256" => Some((algorithm.to_owned(), digest)),
                _ => {
                    return Err(Error::BadRequest {
                        code: "checksum_algorithm_unsupported",
                        message: "Use sha1 or sha256.".to_owned(),
                    });
                }
            }
        }
    };
    let received = app
        .append(
            &caller,
            &id,
            offset,
            checksum,
            request.into_body().into_data_stream(),
        )
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    tus_headers(&mut response);
    response
        .headers_mut()
        .insert("upload-offset", HeaderValue::from(received));
    Ok(response)
}

/// Abandon an upload (tus termination): its staged bytes are deleted.
#[utoipa::path(delete, path = "/api/v1/uploads/{id}", tag = "uploads", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "upload_complete")))]
async fn terminate_upload(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Response> {
    let upload = app.owned_upload(&caller, &id).await?;
    if upload.status == "complete" {
        return Err(Error::conflict(
            "upload_complete",
            "This upload is complete; delete the track instead.",
        ));
    }
    let lock = app.upload_locks.get(&id);
    let _guard = lock.lock().await;
    store::terminate(app.inventory.database().pool(), &id, app.clock.now_ms()).await?;
    remove_staged(&app.staging_path(&id)).await;
    app.upload_locks.forget(&id);
    let mut response = StatusCode::NO_CONTENT.into_response();
    tus_headers(&mut response);
    Ok(response)
}

/// Upload a small file in one request: the raw audio as the body, `title`, `singer` (and
/// optionally `album`, `filename`) as query parameters.
#[utoipa::path(post, path = "/api/v1/tracks", tag = "uploads", security(("bearer" = [])),
    params(("title" = String, Query), ("singer" = String, Query), ("album" = Option<String>, Query), ("filename" = Option<String>, Query)),
    responses((status = 201, body = Upload), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn one_request_upload(
    app: App,
    caller: AuthUser,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
    request: Request,
) -> Result<(StatusCode, Json<Upload>)> {
    require_artist(&caller)?;
    let limit = app.config.uploads.one_request_max_bytes;
    let length: u64 = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| {
            Error::invalid(
                "Content-Length",
                "required",
                "Send the body's length (no chunked bodies).",
            )
        })?;
    if length > limit {
        return Err(Error::PayloadTooLarge {
            limit: limit as usize,
        });
    }
    let metadata: HashMap<String, String> = query
        .into_iter()
        .filter(|(key, _)| {
            matches!(
                key.as_str(),
                "title" | "singer" | "album" | "filename" | "kind"
            )
        })
        .collect();
    check_kind(&caller, &metadata)?;
    let upload = app.create_upload(&caller.user_id, length, metadata).await?;
    let received = app
        .append(
            &caller,
            &upload.id,
            0,
            None,
            request.into_body().into_data_stream(),
        )
        .await?;
    if received != length as i64 {
        return Err(Error::invalid(
            "body",
            "invalid",
            "The body was shorter than its Content-Length.",
        ));
    }
    let upload = app.owned_upload(&caller, &upload.id).await?;
    Ok((
        StatusCode::CREATED,
        Json(Upload {
            track_id: (upload.status == "complete").then(|| upload.track_id.clone()),
            created_at: rfc3339(upload.created_at),
            id: upload.id,
            offset: upload.received,
            length: upload.length,
            status: upload.status,
        }),
    ))
}
