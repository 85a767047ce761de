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
use crate::uploads::store::UploadRow;

mod http;
pub mod store;

pub(crate) use http::routes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use events::tracks::TrackUploaded;
use futures::StreamExt as _;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::App;
use crate::auth::{AuthUser, Role};
use crate::bus;
use crate::error::{Error, Result};
use crate::store::{StoreError, new_id};

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

impl App {
    fn staging_path(&self, id: &str) -> PathBuf {
        self.config
            .data_dir
            .join("uploads")
            .join(format!("{id}.part"))
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadRow>, StoreError> {
        store::upload(self.inventory.database().pool(), id).await
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
        let used = store::bytes_in_use(pool, user_id).await?;
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
        store::insert(pool, &row, &metadata, now).await?;
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
        body: impl futures::Stream<Item = Result<bytes::Bytes, impl std::error::Error>>,
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
        let mut stream = std::pin::pin!(body);
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
        store::record_received(
            self.inventory.database().pool(),
            id,
            offset,
            received,
            self.clock.now_ms(),
        )
        .await?;
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
        let metadata = store::metadata(self.inventory.database().pool(), id).await?;
        let metadata: HashMap<String, String> = serde_json::from_str(&metadata).unwrap_or_default();
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
        let mut tx = self.inventory.database().begin().await?;
        if !store::claim_complete(&mut *tx, id, now).await? {
            return Ok(());
        }
        let track = crate::catalog::store::UploadedTrack {
            id: &upload.track_id,
            name: &title,
            uploaded_by_user_id: &upload.user_id,
            singer: &singer,
            album: album.as_deref(),
            kind,
            raw_key: &key,
            raw_size: size as i64,
            now,
        };
        crate::catalog::store::insert_uploaded(&mut *tx, &track).await?;
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
        let before = self.clock.now_ms() - 60_000;
        for id in store::interrupted(self.inventory.database().pool(), before).await? {
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
