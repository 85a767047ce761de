//! The content-processing service: the `processing` consumer group of the `tracks` topic.
//!
//! For each `track.uploaded`: claim the track (`processing`, with `track.processing.started`),
//! stream the raw object to a scratch file, analyse, transcode and package it (on the blocking
//! pool), publish every file under `media/{track}/{version}/`, and only then mark the track
//! `ready` with its loudness (`track.published`). An upload that is not a usable track becomes
//! `rejected` with its reason (`track.rejected`); a failure on our side becomes `failed`
//! (`track.failed`); either way the track's objects are deleted. The version is derived from
//! the event's id, so a redelivery (a worker that died mid-track) overwrites the same keys
//! instead of orphaning a second copy. Also: the track status endpoint.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use events::Envelope;
use events::tracks::{
    TrackFailed, TrackProcessingStarted, TrackPublished, TrackRejected, TrackTagged,
    TrackTranscoded, TrackUploaded,
};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::io::AsyncWriteExt as _;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;
use crate::auth::MaybeAuthUser;
use crate::bus::{self, Handler, HandlerError};
use crate::calendar::rfc3339;
use crate::error::{Error, ErrorBody, Result};
use crate::extract::ApiPath;
use crate::store::StoreError;
use crate::store::{TextColumn, TrackStage, TrackStatus};
use media::analyze::Limits;
use media::transcode::{LADDER, PackageError, package};

/// The consumer group of the content-processing service.
pub const PROCESSING: &str = "processing";

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

/// A track, with its processing state.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Track {
    id: String,
    name: String,
    singer: String,
    album: Option<String>,
    /// `uploaded`, `processing`, `ready`, `rejected` or `failed`.
    status: TrackStatus,
    /// Where processing is: `queued`, `transcoding`, `filtering`, `publishing`, `done`,
    /// `rejected` or `failed`.
    stage: TrackStage,
    /// How far processing is, 0 to 1.
    progress: f64,
    /// Why it was rejected or failed.
    reason: Option<String>,
    duration_ms: Option<i64>,
    /// The HLS master playlist's path, once ready (append it to a CDN node's base URL).
    hls: Option<String>,
    /// The DASH manifest's path, once ready.
    dash: Option<String>,
    /// EBU R128 integrated loudness, LUFS.
    loudness_lufs: Option<f64>,
    /// The gain that brings it to −14 LUFS, dB.
    gain_db: Option<f64>,
    /// Whether its title, tags or lyrics contain explicit language.
    explicit: bool,
    /// Genre, from its tags.
    genre: Option<String>,
    /// Year, from its tags.
    year: Option<i64>,
    /// Top tags for search and home: `genre:…`, `decade:…`, `energy:…`, `mood:…`.
    top_tags: Vec<String>,
    /// Cover-art thumbnails (square JPEGs) by edge length in pixels: paths to append to a CDN
    /// node's base URL; they need no URL token.
    artwork: std::collections::BTreeMap<String, String>,
    /// What processing left out without rejecting the track (a cover art too large to use).
    notes: Vec<TrackNote>,
    uploaded_by: String,
    created_at: String,
    updated_at: String,
}

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
    let changed = sqlx::query("UPDATE tracks SET blocked_reason = ?, updated_at = ? WHERE id = ?")
        .bind(reason)
        .bind(app.clock.now_ms())
        .bind(id)
        .execute(app.inventory.database().pool())
        .await
        .map_err(StoreError::from)?;
    if changed.rows_affected() == 0 {
        return Err(Error::not_found("track_not_found", "No such track."));
    }
    tracing::info!(
        message = "Track block changed.",
        track = id,
        blocked = reason.is_some()
    );
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

/// Loads a track as `caller` may see it: anyone a ready one, its uploader and administrators
/// any.
async fn load_track(app: &App, caller: Option<&crate::auth::AuthUser>, id: &str) -> Result<Track> {
    let not_found = || Error::not_found("track_not_found", "No such track.");
    let row = sqlx::query(
        "SELECT id, name, singer, album, status, stage, progress, top_tags, artwork, notes, reason, duration_ms, url, loudness_lufs, gain_db, explicit, genre, release_year, uploaded_by_user_id, created_at, updated_at \
         FROM tracks WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(app.inventory.database().pool())
    .await
    .map_err(StoreError::from)?
    .ok_or_else(not_found)?;
    let get = |column: &str| -> Result<Option<String>> {
        Ok(row.try_get(column).map_err(StoreError::from)?)
    };
    let status: String = row.try_get("status").map_err(StoreError::from)?;
    let status = TrackStatus::parse(&status)?;
    let owner: String = row
        .try_get("uploaded_by_user_id")
        .map_err(StoreError::from)?;
    let visible = crate::auth::may_see_track(caller, status, &owner);
    if !visible {
        return Err(not_found());
    }
    let prefix = get("url")?;
    // Rows written before stages existed name none: the status decides.
    let stage = match get("stage")? {
        Some(stage) => TrackStage::parse(&stage)?,
        None => TrackStage::of(status),
    };
    let progress: Option<f64> = row.try_get("progress").map_err(StoreError::from)?;
    let top_tags: Vec<String> = crate::store::json_column(&row, "top_tags")?.unwrap_or_default();
    let artwork: std::collections::BTreeMap<String, String> =
        crate::store::json_column(&row, "artwork")?.unwrap_or_default();
    let notes: Vec<TrackNote> = crate::store::json_column(&row, "notes")?.unwrap_or_default();
    Ok(Track {
        notes,
        stage,
        progress: progress.unwrap_or(if status == TrackStatus::Ready {
            1.0
        } else {
            0.0
        }),
        top_tags,
        artwork,
        id: row.try_get("id").map_err(StoreError::from)?,
        name: row.try_get("name").map_err(StoreError::from)?,
        singer: row.try_get("singer").map_err(StoreError::from)?,
        album: get("album")?,
        reason: get("reason")?,
        duration_ms: row.try_get("duration_ms").map_err(StoreError::from)?,
        hls: prefix
            .as_ref()
            .map(|prefix| format!("/{prefix}master.m3u8")),
        dash: prefix
            .as_ref()
            .map(|prefix| format!("/{prefix}manifest.mpd")),
        loudness_lufs: row.try_get("loudness_lufs").map_err(StoreError::from)?,
        gain_db: row.try_get("gain_db").map_err(StoreError::from)?,
        explicit: row
            .try_get::<i64, _>("explicit")
            .map_err(StoreError::from)?
            != 0,
        genre: get("genre")?,
        year: row.try_get("release_year").map_err(StoreError::from)?,
        uploaded_by: owner,
        created_at: rfc3339(row.try_get("created_at").map_err(StoreError::from)?),
        updated_at: rfc3339(row.try_get("updated_at").map_err(StoreError::from)?),
        status,
    })
}

/// Where a version's cover-art thumbnails go: outside `media/` (which needs URL tokens), so
/// that search results and home pages can show them: `public/art/{track}/{version}/`.
fn artwork_prefix(media_prefix: &str) -> String {
    format!(
        "public/art/{}",
        media_prefix.strip_prefix("media/").unwrap_or(media_prefix)
    )
}

/// A reader that publishes how far it has read, for progress reports.
struct Counting<R> {
    inner: R,
    position: Arc<std::sync::atomic::AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.position
            .fetch_add(read as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(read)
    }
}

impl<R: std::io::Seek> std::io::Seek for Counting<R> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let position = self.inner.seek(to)?;
        self.position
            .store(position, std::sync::atomic::Ordering::Relaxed);
        Ok(position)
    }
}

/// The processing consumer's handler.
pub fn processing_handler(app: App) -> Handler {
    Arc::new(move |envelope: Envelope| {
        let app = app.clone();
        Box::pin(async move { app.process_upload(envelope).await })
    })
}

impl App {
    /// Processes one `track.uploaded` event (other track events are ignored).
    pub async fn process_upload(&self, envelope: Envelope) -> Result<(), HandlerError> {
        if !envelope.is::<TrackUploaded>() {
            return Ok(());
        }
        let event: TrackUploaded = envelope.decode().map_err(HandlerError::upstream)?;
        let track = event.track_id.clone();
        // Claim it; a ready, rejected or failed track was already settled (a redelivery).
        let now = self.clock.now_ms();
        let mut tx = self.inventory.database().pool().begin().await?;
        let claimed = sqlx::query("UPDATE tracks SET status = 'processing', stage = 'transcoding', progress = 0.05, updated_at = ? WHERE id = ? AND status IN ('uploaded', 'processing')")
            .bind(now)
            .bind(&track)
            .execute(&mut *tx)
            .await?;
        if claimed.rows_affected() == 0 {
            return Ok(());
        }
        bus::append(
            &mut tx,
            &track,
            &TrackProcessingStarted {
                track_id: track.clone(),
            },
            now,
        )
        .await?;
        tx.commit().await?;
        self.bus.notify();
        metrics::counter!("cadenza_processing_started_total").increment(1);

        let version: String = envelope
            .id
            .simple()
            .to_string()
            .chars()
            .rev()
            .take(12)
            .collect();
        let prefix = format!("media/{track}/{version}/");
        let scratch = tempfile::tempdir().map_err(HandlerError::internal)?;
        let outcome = self
            .transcode_and_publish(&event, &prefix, scratch.path())
            .await;
        let now = self.clock.now_ms();
        match outcome {
            Ok(published) => {
                let mut tx = self.inventory.database().pool().begin().await?;
                sqlx::query(
                    "UPDATE tracks SET status = 'ready', stage = 'done', progress = 1.0, reason = NULL, url = ?, duration_ms = ?, loudness_lufs = ?, gain_db = ?, \
                     true_peak_dbtp = ?, explicit = ?, genre = ?, release_year = ?, top_tags = ?, artwork = ?, notes = ?, updated_at = ? WHERE id = ?",
                )
                .bind(&prefix)
                .bind(published.published.duration_ms as i64)
                .bind(published.published.loudness_lufs)
                .bind(published.published.gain_db)
                .bind(published.true_peak_dbtp)
                .bind(i64::from(published.tagged.explicit))
                .bind(published.tagged.genre.clone())
                .bind(published.tagged.year.map(i64::from))
                .bind(crate::store::to_json_column(&published.tagged.top_tags))
                .bind(
                    (!published.tagged.artwork.is_empty()).then(|| {
                        let paths: std::collections::BTreeMap<String, String> = published
                            .tagged
                            .artwork
                            .iter()
                            .map(|(size, key)| (size.to_string(), format!("/{key}")))
                            .collect();
                        crate::store::to_json_column(&paths)
                    }),
                )
                .bind(
                    (!published.notes.is_empty())
                        .then(|| crate::store::to_json_column(&published.notes)),
                )
                .bind(now)
                .bind(&track)
                .execute(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO track_fingerprints (track_id, uploaded_by, duration_ms, fingerprint, created_at) VALUES (?, ?, ?, ?, ?)")
                    .bind(&track)
                    .bind(&event.uploaded_by)
                    .bind(published.published.duration_ms as i64)
                    .bind(&published.fingerprint)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                bus::append(&mut tx, &track, &published.tagged, now).await?;
                bus::append(&mut tx, &track, &published.published, now).await?;
                tx.commit().await?;
                metrics::counter!("cadenza_processing_finished_total", "outcome" => "ready")
                    .increment(1);
                tracing::info!(message = "Track ready.", track, prefix);
            }
            Err(Settled::Rejected(code, reason)) => {
                self.settle(
                    &track,
                    TrackStatus::Rejected,
                    &reason,
                    &TrackRejected {
                        track_id: track.clone(),
                        code: code.to_owned(),
                        reason: reason.clone(),
                    },
                    &event.raw_key,
                    &prefix,
                )
                .await?;
                metrics::counter!("cadenza_processing_finished_total", "outcome" => "rejected")
                    .increment(1);
                tracing::info!(message = "Track rejected.", track, code, reason);
            }
            Err(Settled::Failed(reason)) => {
                self.settle(
                    &track,
                    TrackStatus::Failed,
                    &reason,
                    &TrackFailed {
                        track_id: track.clone(),
                        reason: reason.clone(),
                    },
                    &event.raw_key,
                    &prefix,
                )
                .await?;
                metrics::counter!("cadenza_processing_finished_total", "outcome" => "failed")
                    .increment(1);
                tracing::error!(message = "Track processing failed.", track, reason);
            }
        }
        self.bus.notify();
        Ok(())
    }

    /// Records where processing is (best effort: progress is informative).
    async fn set_stage(&self, track: &str, stage: TrackStage, progress: f64) {
        let updated = sqlx::query(
            "UPDATE tracks SET stage = ?, progress = ?, updated_at = ? WHERE id = ? AND status = 'processing'",
        )
        .bind(stage.as_str())
        .bind(progress)
        .bind(self.clock.now_ms())
        .bind(track)
        .execute(self.inventory.database().pool())
        .await;
        if let Err(error) = updated {
            tracing::warn!(message = "Could not record the processing stage.", track, %error);
        }
    }

    /// Moves to `stage` and emits `event` in one transaction.
    async fn stage_with_event<E: events::Event>(
        &self,
        track: &str,
        stage: TrackStage,
        progress: f64,
        event: &E,
    ) -> Result<(), HandlerError> {
        let now = self.clock.now_ms();
        let mut tx = self.inventory.database().pool().begin().await?;
        sqlx::query(
            "UPDATE tracks SET stage = ?, progress = ?, updated_at = ? WHERE id = ? AND status = 'processing'",
        )
        .bind(stage.as_str())
        .bind(progress)
        .bind(now)
        .bind(track)
        .execute(&mut *tx)
        .await?;
        bus::append(&mut tx, track, event, now).await?;
        tx.commit().await?;
        self.bus.notify();
        Ok(())
    }

    /// Marks a track rejected or failed with its event, then deletes its objects.
    async fn settle<E: events::Event>(
        &self,
        track: &str,
        status: TrackStatus,
        reason: &str,
        event: &E,
        raw_key: &str,
        prefix: &str,
    ) -> Result<(), HandlerError> {
        let now = self.clock.now_ms();
        let mut tx = self.inventory.database().pool().begin().await?;
        sqlx::query(
            "UPDATE tracks SET status = ?, stage = ?, reason = ?, updated_at = ? WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(TrackStage::of(status).as_str())
        .bind(reason)
        .bind(now)
        .bind(track)
        .execute(&mut *tx)
        .await?;
        bus::append(&mut tx, track, event, now).await?;
        tx.commit().await?;
        self.delete_objects(raw_key, prefix).await;
        Ok(())
    }

    async fn delete_objects(&self, raw_key: &str, prefix: &str) {
        let mut keys = vec![raw_key.to_owned()];
        for listed in [
            prefix.trim_end_matches('/').to_owned(),
            artwork_prefix(prefix).trim_end_matches('/').to_owned(),
        ] {
            match self.objects.list(&listed).await {
                Ok(found) => keys.extend(found),
                Err(error) => {
                    metrics::counter!("cadenza_orphaned_objects_total").increment(1);
                    tracing::warn!(message = "Could not list the objects of a settled track; some may stay behind.", prefix = listed, %error);
                }
            }
        }
        for key in keys {
            if let Err(error) = self.objects.delete(&key).await {
                tracing::warn!(message = "Could not delete an object of a settled track.", key, %error);
            }
        }
    }

    async fn transcode_and_publish(
        &self,
        event: &TrackUploaded,
        prefix: &str,
        scratch: &std::path::Path,
    ) -> Result<Prepared, Settled> {
        let failed = |error: &dyn std::fmt::Display| Settled::Failed(error.to_string());
        // The raw object, streamed to a scratch file.
        let raw_path = scratch.join("raw");
        let tag_path = raw_path.clone();
        let mut file = tokio::fs::File::create(&raw_path)
            .await
            .map_err(|e| failed(&e))?;
        let mut stream = self
            .objects
            .get_stream(&event.raw_key)
            .await
            .map_err(|e| failed(&e))?;
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk.map_err(|e| failed(&e))?)
                .await
                .map_err(|e| failed(&e))?;
        }
        file.flush().await.map_err(|e| failed(&e))?;
        let extension = event
            .filename
            .as_deref()
            .and_then(|name| std::path::Path::new(name).extension())
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase);
        let out = scratch.join("out");
        let total = tokio::fs::metadata(&raw_path)
            .await
            .map(|meta| meta.len())
            .unwrap_or(0);
        let position = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // Progress while transcoding: 5 % to 85 %, by how far the decoder has read the file.
        let reporter = {
            let (app, track, position) = (self.clone(), event.track_id.clone(), position.clone());
            tokio::spawn(async move {
                let mut reported = 0.05f64;
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let read = position.load(std::sync::atomic::Ordering::Relaxed) as f64;
                    let fraction = if total == 0 {
                        0.0
                    } else {
                        (read / total as f64).min(1.0)
                    };
                    let progress = 0.05 + 0.8 * fraction;
                    if progress - reported >= 0.01 {
                        reported = progress;
                        app.set_stage(&track, TrackStage::Transcoding, progress)
                            .await;
                    }
                }
            })
        };
        let packaged = {
            let out = out.clone();
            let position = position.clone();
            tokio::task::spawn_blocking(move || {
                let source = std::fs::File::open(&raw_path).map_err(|source| PackageError::Io {
                    path: raw_path.clone(),
                    source,
                })?;
                package(
                    Counting {
                        inner: source,
                        position,
                    },
                    extension.as_deref(),
                    &Limits::default(),
                    &LADDER,
                    &out,
                )
            })
            .await
        };
        reporter.abort();
        let packaged = match packaged.map_err(|e| failed(&e))? {
            Ok(packaged) => packaged,
            Err(PackageError::Rejected(rejection)) => {
                return Err(Settled::Rejected(rejection.code(), rejection.to_string()));
            }
            Err(error) => return Err(failed(&error)),
        };
        self.stage_with_event(
            &event.track_id,
            TrackStage::Filtering,
            0.86,
            &TrackTranscoded {
                track_id: event.track_id.clone(),
                duration_ms: packaged.analysis.duration_ms,
                renditions: packaged
                    .renditions
                    .iter()
                    .map(|rendition| rendition.id.clone())
                    .collect(),
                files: packaged.files.len(),
                details: packaged
                    .renditions
                    .iter()
                    .map(|rendition| events::tracks::RenditionDetail {
                        id: rendition.id.clone(),
                        average_bps: rendition.average_bandwidth(),
                        peak_bps: rendition.peak_bandwidth(),
                        init_bytes: rendition.init_bytes,
                        segments: rendition
                            .segments
                            .iter()
                            .map(|segment| events::tracks::SegmentDetail {
                                duration_ms: (segment.presented_secs * 1000.0).round() as u64,
                                bytes: segment.bytes,
                            })
                            .collect(),
                    })
                    .collect(),
            },
        )
        .await
        .map_err(|e| failed(&e))?;
        // Tags, and the explicit-language check over everything the listener will read.
        let tags = media::tags::read(&tag_path);
        let mut texts: Vec<&str> = vec![&event.title];
        texts.extend(event.album.as_deref());
        texts.extend(tags.title.as_deref());
        texts.extend(tags.album.as_deref());
        texts.extend(tags.genre.as_deref());
        texts.extend(tags.lyrics.as_deref());
        texts.extend(tags.artists.iter().map(String::as_str));
        let explicit = media::tags::is_explicit(&self.config.processing.explicit_words, &texts);
        // Content filtering: the same recording as a ready track is a duplicate (same artist)
        // or a suspected copy (another artist's).
        if let Some((original, same_artist)) = self
            .find_same_recording(
                &packaged.fingerprint,
                packaged.analysis.duration_ms,
                &event.uploaded_by,
            )
            .await
            .map_err(|e| failed(&e))?
        {
            return Err(if same_artist {
                Settled::Rejected("duplicate", format!("duplicate of your track {original}"))
            } else {
                Settled::Rejected(
                    "suspected_copy",
                    format!("suspected copy of track {original}, uploaded by another artist"),
                )
            });
        }
        // Cover art: thumbnails, or none and a note if the picture is unusable (never a
        // rejection).
        let mut notes = Vec::new();
        if let Some(error) = &tags.unreadable {
            notes.push(TrackNote {
                code: "tags_unreadable".to_owned(),
                message: format!("The file's tags could not be read ({error}); none were used."),
            });
        }
        if let Some(bytes) = tags.cover_dropped {
            notes.push(TrackNote {
                code: "cover_art_too_large".to_owned(),
                message: format!(
                    "The cover art ({:.1} MiB) is over the {} MiB limit and was not used.",
                    bytes as f64 / (1024.0 * 1024.0),
                    media::tags::MAX_COVER_BYTES / (1024 * 1024)
                ),
            });
        }
        let thumbnails = match tags.cover.clone() {
            Some(picture) => {
                match tokio::task::spawn_blocking(move || media::artwork::thumbnails(&picture))
                    .await
                    .map_err(|e| failed(&e))?
                {
                    Ok(thumbnails) => thumbnails,
                    Err(error) => {
                        tracing::info!(message = "Cover art skipped.", track = event.track_id, %error);
                        notes.push(TrackNote {
                            code: "cover_art_unusable".to_owned(),
                            message: format!("The cover art was not used: {error}."),
                        });
                        Vec::new()
                    }
                }
            }
            None => Vec::new(),
        };
        self.set_stage(&event.track_id, TrackStage::Publishing, 0.9)
            .await;
        for file in &packaged.files {
            self.objects
                .put_file(&format!("{prefix}{file}"), &out.join(file))
                .await
                .map_err(|e| failed(&e))?;
        }
        let art_prefix = artwork_prefix(prefix);
        let mut artwork = std::collections::BTreeMap::new();
        for (size, jpeg) in thumbnails {
            let key = format!("{art_prefix}{size}.jpg");
            self.objects
                .put(&key, bytes::Bytes::from(jpeg))
                .await
                .map_err(|e| failed(&e))?;
            artwork.insert(size, key);
        }
        let top_tags = media::tags::top_tags(tags.genre.as_deref(), tags.year, &packaged.analysis);
        let analysis = &packaged.analysis;
        Ok(Prepared {
            published: TrackPublished {
                track_id: event.track_id.clone(),
                prefix: prefix.to_owned(),
                duration_ms: analysis.duration_ms,
                loudness_lufs: analysis.integrated_lufs,
                gain_db: analysis.gain_db,
                renditions: packaged
                    .renditions
                    .iter()
                    .map(|rendition| rendition.id.clone())
                    .collect(),
            },
            true_peak_dbtp: analysis.true_peak_dbtp,
            fingerprint: media::fingerprint::encode(&packaged.fingerprint),
            tagged: TrackTagged {
                track_id: event.track_id.clone(),
                artists: tags.artists,
                genre: tags.genre,
                year: tags.year,
                explicit,
                top_tags,
                artwork,
            },
            notes,
        })
    }

    /// A ready track of similar length with the same recording, and whether it is the same
    /// artist's.
    async fn find_same_recording(
        &self,
        fingerprint: &[u32],
        duration_ms: u64,
        artist: &str,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let (low, high) = (duration_ms as i64 * 4 / 5, duration_ms as i64 * 5 / 4);
        let rows = sqlx::query("SELECT track_id, uploaded_by, fingerprint FROM track_fingerprints WHERE duration_ms BETWEEN ? AND ?")
            .bind(low)
            .bind(high)
            .fetch_all(self.inventory.database().pool())
            .await?;
        for row in rows {
            let stored = crate::store::long_text(&row, "fingerprint")?;
            let Some(stored) = media::fingerprint::decode(&stored) else {
                continue;
            };
            if media::fingerprint::same_recording(fingerprint, &stored) {
                let uploaded_by: String = row.try_get("uploaded_by")?;
                return Ok(Some((row.try_get("track_id")?, uploaded_by == artist)));
            }
        }
        Ok(None)
    }
}

/// A track transcoded, checked and published, ready to be marked so.
struct Prepared {
    published: TrackPublished,
    true_peak_dbtp: f64,
    fingerprint: String,
    tagged: TrackTagged,
    notes: Vec<TrackNote>,
}

/// Something processing left out of a published track without rejecting it, for its artist
/// to see (`GET /api/v1/tracks/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrackNote {
    /// Stable: `cover_art_too_large` (over the size limit, not read), `cover_art_unusable`
    /// (not a JPEG or PNG, damaged, or beyond the pixel limits) or `tags_unreadable` (the
    /// file's tags are damaged: title and artist come from the upload, genre and year are
    /// unknown).
    pub code: String,
    /// What happened, in words.
    pub message: String,
}

/// How processing ended, when not with a published track.
enum Settled {
    Rejected(&'static str, String),
    Failed(String),
}
