//! Events of the upload and processing pipeline (topic `tracks`, keyed by track id).

use serde::{Deserialize, Serialize};

use crate::Event;

/// The topic of track events.
pub const TOPIC: &str = "tracks";

/// A raw upload is complete and stored; processing may start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackUploaded {
    /// The new track.
    pub track_id: String,
    /// The upload it came from.
    pub upload_id: String,
    /// The artist who uploaded it.
    pub uploaded_by: String,
    /// Title from the upload's metadata.
    pub title: String,
    /// Performer from the upload's metadata.
    pub singer: String,
    /// Album, if given.
    pub album: Option<String>,
    /// The uploaded file's name, if given.
    pub filename: Option<String>,
    /// Object-store key of the raw bytes (`raw/{track_id}`).
    pub raw_key: String,
    /// Size in bytes.
    pub size: u64,
}

impl Event for TrackUploaded {
    const TOPIC: &'static str = TOPIC;
    const TYPE: &'static str = "track.uploaded";
    const VERSION: u32 = 1;
}
