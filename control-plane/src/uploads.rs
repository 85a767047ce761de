//! The onboarding service: resumable uploads with the tus 1.0 protocol (core, creation,
//! termination and checksum extensions), so that standard tus clients work, and a one-request
//! upload for small files. Artists (and administrators) only.
//!
//! Chunks are staged in `DATA_DIR/uploads/{id}.part`; a chunk counts only once it is fully
//! written (and, with `Upload-Checksum`, verified), so a failed chunk leaves the upload at its
//! previous offset. When the last byte arrives the file goes to the object store under
//! `raw/{track}` (the track id is reserved when the upload is created), and then the track row
//! (status `uploaded`) and its `track.uploaded` event are written in one Inventory DB
//! transaction. Completion is idempotent: if a crash falls between the two steps, the client's
//! retry or the sweeper finishes it, so the object is never orphaned. Terminating an upload
//! removes its staged file.
//!
//! Staging on local disk means a given upload's chunks must reach the same replica: route
//! `/api/v1/uploads/{id}` by id (sticky) when several control planes serve uploads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use events::tracks::TrackUploaded;
use futures::StreamExt as _;
use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sqlx::Row;
use tokio::io::AsyncWriteExt as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;
use crate::auth::{AuthUser, Role};
use crate::bus;
use crate::calendar::rfc3339;
use crate::error::{Error, ErrorBody, Result};
use crate::extract::ApiPath;
use crate::store::{StoreError, long_text, new_id};

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

/// One upload as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
struct UploadRow {
    id: String,
    user_id: String,
    track_id: String,
    length: i64,
    received: i64,
    status: String,
    created_at: i64,
}

const UPLOAD_COLUMNS: &str = "id, user_id, track_id, length, received, status, created_at";

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

/// Per-upload locks: one chunk at a time per upload in this process.
#[derive(Debug, Default)]
pub struct UploadLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl UploadLocks {
    fn get(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.0
            .lock()
            .expect("upload locks")
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    fn forget(&self, id: &str) {
        self.0.lock().expect("upload locks").remove(id);
    }
}

fn tus_headers(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn require_artist(caller: &AuthUser) -> Result<()> {
    if matches!(caller.role, Role::Artist | Role::Admin) {
        Ok(())
    } else {
        Err(Error::forbidden(
            "artist_required",
            "Only artists can upload tracks.",
        ))
    }
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
        .append(&caller, &id, offset, checksum, request.into_body())
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
    sqlx::query(
        "UPDATE uploads SET status = 'terminated', updated_at = ? WHERE id = ? AND status = 'open'",
    )
    .bind(app.clock.now_ms())
    .bind(&id)
    .execute(app.inventory.database().pool())
    .await
    .map_err(StoreError::from)?;
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
        .append(&caller, &upload.id, 0, None, request.into_body())
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

impl App {
    fn staging_path(&self, id: &str) -> PathBuf {
        self.config
            .data_dir
            .join("uploads")
            .join(format!("{id}.part"))
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadRow>, StoreError> {
        let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.inventory.database().pool())
            .await?)
    }

    /// The upload if the caller owns it and it was not terminated; 404 otherwise.
    async fn owned_upload(&self, caller: &AuthUser, id: &str) -> Result<UploadRow> {
        self.upload(id)
            .await?
            .filter(|upload| upload.user_id == caller.user_id && upload.status != "terminated")
            .ok_or_else(|| Error::not_found("upload_not_found", "No such upload."))
    }

    async fn create_upload(
        &self,
        user_id: &str,
        length: u64,
        metadata: HashMap<String, String>,
    ) -> Result<UploadRow> {
        let limits = &self.config.uploads;
        if length == 0 {
            return Err(Error::invalid(
                "Upload-Length",
                "invalid",
                "An empty file is not a track.",
            ));
        }
        if length > limits.max_size_bytes {
            return Err(Error::PayloadTooLarge {
                limit: limits.max_size_bytes as usize,
            });
        }
        for key in ["title", "singer"] {
            if metadata
                .get(key)
                .is_none_or(|value| value.trim().is_empty())
            {
                return Err(Error::invalid(
                    format!("metadata.{key}"),
                    "required",
                    format!("Give the track's {key}."),
                ));
            }
        }
        let pool = self.inventory.database().pool();
        let used: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(length), 0) AS SIGNED) AS used FROM uploads WHERE user_id = ? AND status IN ('open', 'complete')",
        )
        .bind(user_id)
        .fetch_one(pool)
        .await
        .map_err(StoreError::from)?
        .try_get("used")
        .map_err(StoreError::from)?;
        if used as u64 + length > limits.quota_bytes_per_user {
            return Err(Error::Conflict {
                code: "quota_exceeded",
                message: format!(
                    "This upload would exceed your storage quota of {} bytes ({} in use).",
                    limits.quota_bytes_per_user, used
                ),
            });
        }
        let now = self.clock.now_ms();
        let row = UploadRow {
            id: new_id(),
            user_id: user_id.to_owned(),
            track_id: new_id(),
            length: length as i64,
            received: 0,
            status: "open".to_owned(),
            created_at: now,
        };
        let metadata = serde_json::to_string(&metadata).map_err(anyhow::Error::from)?;
        sqlx::query(
            "INSERT INTO uploads (id, user_id, track_id, length, received, metadata, status, created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, 'open', ?, ?)",
        )
        .bind(&row.id)
        .bind(&row.user_id)
        .bind(&row.track_id)
        .bind(row.length)
        .bind(metadata)
        .bind(now)
        .bind(now)
        .execute(pool)
        .await
        .map_err(StoreError::from)?;
        let dir = self.config.data_dir.join("uploads");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(anyhow::Error::from)?;
        tokio::fs::File::create(self.staging_path(&row.id))
            .await
            .map_err(anyhow::Error::from)?;
        metrics::counter!("cadenza_uploads_created_total").increment(1);
        Ok(row)
    }

    /// Appends one chunk at `offset`; returns the new offset. Completes the upload when the
    /// last byte arrives.
    async fn append(
        &self,
        caller: &AuthUser,
        id: &str,
        offset: i64,
        checksum: Option<(String, Vec<u8>)>,
        body: Body,
    ) -> Result<i64> {
        require_artist(caller)?;
        let lock = self.upload_locks.get(id);
        let _guard = lock.lock().await;
        let upload = self.owned_upload(caller, id).await?;
        if upload.status == "complete" {
            return Err(Error::conflict(
                "upload_complete",
                "This upload is already complete.",
            ));
        }
        if offset != upload.received {
            return Err(Error::Conflict {
                code: "offset_mismatch",
                message: format!(
                    "The upload is at offset {}; resume from there (HEAD tells the offset).",
                    upload.received
                ),
            });
        }
        let path = self.staging_path(id);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .map_err(anyhow::Error::from)?;
        file.set_len(offset as u64)
            .await
            .map_err(anyhow::Error::from)?;
        let mut file = tokio::io::BufWriter::new(file);
        tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(offset as u64))
            .await
            .map_err(anyhow::Error::from)?;
        let remaining = upload.length - offset;
        let (mut sha1, mut sha256) = (Sha1::new(), Sha256::new());
        let mut written: i64 = 0;
        let mut interrupted = false;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                interrupted = true;
                break;
            };
            if written + chunk.len() as i64 > remaining {
                file.get_mut()
                    .set_len(offset as u64)
                    .await
                    .map_err(anyhow::Error::from)?;
                return Err(Error::PayloadTooLarge {
                    limit: remaining as usize,
                });
            }
            file.write_all(&chunk).await.map_err(anyhow::Error::from)?;
            if checksum.is_some() {
                sha1.update(&chunk);
                sha256.update(&chunk);
            }
            written += chunk.len() as i64;
        }
        file.flush().await.map_err(anyhow::Error::from)?;
        let file = file.into_inner();
        if let Some((algorithm, expected)) = &checksum {
            let actual = if algorithm == "sha1" {
                sha1.finalize().to_vec()
            } else {
                sha256.finalize().to_vec()
            };
            // An interrupted chunk cannot be checked: it is dropped, like a mismatching one.
            if interrupted || &actual != expected {
                file.set_len(offset as u64)
                    .await
                    .map_err(anyhow::Error::from)?;
                metrics::counter!("cadenza_upload_checksum_mismatches_total").increment(1);
                return Err(Error::ChecksumMismatch);
            }
        }
        file.sync_data().await.map_err(anyhow::Error::from)?;
        let received = offset + written;
        sqlx::query(
            "UPDATE uploads SET received = ?, updated_at = ? WHERE id = ? AND received = ?",
        )
        .bind(received)
        .bind(self.clock.now_ms())
        .bind(id)
        .bind(offset)
        .execute(self.inventory.database().pool())
        .await
        .map_err(StoreError::from)?;
        metrics::counter!("cadenza_upload_bytes_total").increment(written as u64);
        if received == upload.length {
            self.complete_upload(id).await?;
        }
        Ok(received)
    }

    /// Moves a fully received upload into the object store and records the track with its
    /// `track.uploaded` event. Safe to run again after a crash at any point.
    pub async fn complete_upload(&self, id: &str) -> Result<()> {
        let Some(upload) = self.upload(id).await? else {
            return Err(Error::not_found("upload_not_found", "No such upload."));
        };
        if upload.status != "open" || upload.received != upload.length {
            return Ok(());
        }
        let key = format!("raw/{}", upload.track_id);
        let staged = self.staging_path(id);
        let size = self
            .objects
            .put_file(&key, &staged)
            .await
            .map_err(|error| Error::Internal(anyhow::anyhow!(error)))?;
        let metadata_row = sqlx::query("SELECT metadata FROM uploads WHERE id = ?")
            .bind(id)
            .fetch_one(self.inventory.database().pool())
            .await
            .map_err(StoreError::from)?;
        let metadata: HashMap<String, String> =
            serde_json::from_str(&long_text(&metadata_row, "metadata").map_err(StoreError::from)?)
                .unwrap_or_default();
        let now = self.clock.now_ms();
        let title = metadata.get("title").cloned().unwrap_or_default();
        let singer = metadata.get("singer").cloned().unwrap_or_default();
        let album = metadata.get("album").cloned();
        let kind = match metadata.get("kind").map(String::as_str) {
            Some("ad") => "ad",
            _ => "music",
        };
        let event = TrackUploaded {
            track_id: upload.track_id.clone(),
            upload_id: upload.id.clone(),
            uploaded_by: upload.user_id.clone(),
            title: title.clone(),
            singer: singer.clone(),
            album: album.clone(),
            filename: metadata.get("filename").cloned(),
            raw_key: key.clone(),
            size,
        };
        let mut tx = self
            .inventory
            .database()
            .pool()
            .begin()
            .await
            .map_err(StoreError::from)?;
        let claimed = sqlx::query("UPDATE uploads SET status = 'complete', updated_at = ? WHERE id = ? AND status = 'open'")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        if claimed.rows_affected() != 1 {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO tracks (id, name, url, uploaded_by_user_id, singer, album, duration_ms, kind, status, reason, created_at, updated_at, raw_key, raw_size) \
             VALUES (?, ?, NULL, ?, ?, ?, NULL, ?, 'uploaded', NULL, ?, ?, ?, ?)",
        )
        .bind(&upload.track_id)
        .bind(&title)
        .bind(&upload.user_id)
        .bind(&singer)
        .bind(album)
        .bind(kind)
        .bind(now)
        .bind(now)
        .bind(&key)
        .bind(size as i64)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        bus::append(&mut tx, &upload.track_id, &event, now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.bus.notify();
        remove_staged(&staged).await;
        self.upload_locks.forget(id);
        metrics::counter!("cadenza_uploads_completed_total").increment(1);
        tracing::info!(
            message = "Upload complete.",
            upload = id,
            track = upload.track_id,
            size
        );
        Ok(())
    }

    /// Finishes uploads whose last byte arrived but whose completion was interrupted.
    pub(crate) async fn sweep_uploads(&self) -> Result<()> {
        let rows = sqlx::query(
            "SELECT id FROM uploads WHERE status = 'open' AND received = length AND updated_at < ?",
        )
        .bind(self.clock.now_ms() - 60_000)
        .fetch_all(self.inventory.database().pool())
        .await
        .map_err(StoreError::from)?;
        for row in rows {
            let id: String = row.try_get("id").map_err(StoreError::from)?;
            if let Err(error) = self.complete_upload(&id).await {
                tracing::warn!(message = "Could not finish an interrupted upload; will retry.", upload = id, %error);
            }
        }
        Ok(())
    }
}

/// Deletes a staged upload file; one already gone is fine, any other failure is logged (the
/// file is only disk space: nothing reads it again).
async fn remove_staged(path: &std::path::Path) {
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(message = "Could not delete a staged upload file.", path = %path.display(), %error);
        }
    }
}
