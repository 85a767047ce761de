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

mod http;
pub(crate) mod store;

pub use store::TrackNote;

pub(crate) use http::routes;

use std::sync::Arc;
use std::time::Duration;

use events::Envelope;
use events::tracks::{
    TrackFailed, TrackProcessingStarted, TrackPublished, TrackRejected, TrackRestored, TrackTagged,
    TrackTakenDown, TrackTranscoded, TrackUploaded,
};
use futures::StreamExt as _;
use serde::Serialize;
use tokio::io::AsyncWriteExt as _;
use utoipa::ToSchema;

use crate::App;
use crate::bus::{self, Handler, HandlerError};
use crate::calendar::rfc3339;
use crate::catalog::store::{TrackStage, TrackStatus};
use crate::error::{Error, Result};
use crate::store::StoreError;
use media::analyze::Limits;
use media::transcode::{LADDER, PackageError, package};

/// How much of a track's lyrics search indexes.
const LYRICS_EXCERPT_CHARS: usize = 500;

/// The consumer group of the content-processing service.
pub const PROCESSING: &str = "processing";

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

/// Loads a track as `caller` may see it: anyone a ready one, its uploader and administrators
/// any.
async fn load_track(app: &App, caller: Option<&crate::auth::AuthUser>, id: &str) -> Result<Track> {
    let not_found = || Error::not_found("track_not_found", "No such track.");
    let row = store::track_state(app.inventory.database().pool(), id)
        .await?
        .ok_or_else(not_found)?;
    let status = row.status;
    if !crate::auth::may_see_track(caller, status, &row.uploaded_by_user_id) {
        return Err(not_found());
    }
    let prefix = row.url;
    Ok(Track {
        notes: row.notes,
        // Rows written before stages existed name none: the status decides.
        stage: row.stage.unwrap_or(TrackStage::of(status)),
        progress: row.progress.unwrap_or(if status == TrackStatus::Ready {
            1.0
        } else {
            0.0
        }),
        top_tags: row.top_tags,
        artwork: row.artwork,
        id: row.id,
        name: row.name,
        singer: row.singer,
        album: row.album,
        reason: row.reason,
        duration_ms: row.duration_ms,
        hls: prefix
            .as_ref()
            .map(|prefix| format!("/{prefix}master.m3u8")),
        dash: prefix
            .as_ref()
            .map(|prefix| format!("/{prefix}manifest.mpd")),
        loudness_lufs: row.loudness_lufs,
        gain_db: row.gain_db,
        explicit: row.explicit,
        genre: row.genre,
        year: row.release_year,
        uploaded_by: row.uploaded_by_user_id,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
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
        let mut tx = self.inventory.database().begin().await?;
        if !store::claim(&mut *tx, &track, now).await? {
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
                let mut tx = self.inventory.database().begin().await?;
                let artwork: std::collections::BTreeMap<String, String> = published
                    .tagged
                    .artwork
                    .iter()
                    .map(|(size, key)| (size.to_string(), format!("/{key}")))
                    .collect();
                let ready = store::ReadyTrack {
                    id: &track,
                    prefix: &prefix,
                    duration_ms: published.published.duration_ms as i64,
                    loudness_lufs: published.published.loudness_lufs,
                    gain_db: published.published.gain_db,
                    true_peak_dbtp: published.true_peak_dbtp,
                    explicit: published.tagged.explicit,
                    genre: published.tagged.genre.as_deref(),
                    year: published.tagged.year.map(i64::from),
                    top_tags: &published.tagged.top_tags,
                    artwork: &artwork,
                    notes: &published.notes,
                    lyrics_excerpt: published.lyrics_excerpt.as_deref(),
                    now,
                };
                store::mark_ready(&mut *tx, &ready).await?;
                store::insert_fingerprint(
                    &mut *tx,
                    &track,
                    &event.uploaded_by,
                    ready.duration_ms,
                    &published.fingerprint,
                    now,
                )
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
        let pool = self.inventory.database().pool();
        let updated = store::set_stage(pool, track, stage, progress, self.clock.now_ms()).await;
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
        let mut tx = self.inventory.database().begin().await?;
        store::set_stage(&mut *tx, track, stage, progress, now).await?;
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
        let mut tx = self.inventory.database().begin().await?;
        store::settle(&mut *tx, track, status, reason, now).await?;
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
            lyrics_excerpt: tags
                .lyrics
                .as_deref()
                .map(|lyrics| lyrics.chars().take(LYRICS_EXCERPT_CHARS).collect()),
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
        let pool = self.inventory.database().pool();
        for row in store::fingerprints_between(pool, low, high).await? {
            let stored = row.fingerprint;
            let Some(stored) = media::fingerprint::decode(&stored) else {
                continue;
            };
            if media::fingerprint::same_recording(fingerprint, &stored) {
                return Ok(Some((row.track_id, row.uploaded_by == artist)));
            }
        }
        Ok(None)
    }
}

/// A track transcoded, checked and published, ready to be marked so.
struct Prepared {
    published: TrackPublished,
    /// The start of the lyrics, for search.
    lyrics_excerpt: Option<String>,
    true_peak_dbtp: f64,
    fingerprint: String,
    tagged: TrackTagged,
    notes: Vec<TrackNote>,
}

/// How processing ended, when not with a published track.
enum Settled {
    Rejected(&'static str, String),
    Failed(String),
}

impl App {
    /// Takes a track down with a reason, or puts it back (`None`), with the event that tells
    /// the play API's readers and search, in one transaction.
    pub(crate) async fn set_block(&self, id: &str, reason: Option<&str>) -> Result<()> {
        let now = self.clock.now_ms();
        let mut tx = self.inventory.database().begin().await?;
        if !store::set_block(&mut *tx, id, reason, now).await? {
            return Err(Error::not_found("track_not_found", "No such track."));
        }
        let track_id = id.to_owned();
        match reason {
            Some(reason) => {
                let event = TrackTakenDown {
                    track_id,
                    reason: reason.to_owned(),
                };
                bus::append(&mut tx, id, &event, now).await?;
            }
            None => {
                bus::append(&mut tx, id, &TrackRestored { track_id }, now).await?;
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        self.bus.notify();
        tracing::info!(
            message = "Track block changed.",
            track = id,
            blocked = reason.is_some()
        );
        Ok(())
    }
}
