//! Events of the upload and processing pipeline (topic `tracks`, keyed by track id).

use serde::{Deserialize, Serialize};

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

event!(TOPIC, TrackUploaded, "track.uploaded", 1);

/// A worker started processing a track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackProcessingStarted {
    /// The track.
    pub track_id: String,
}

event!(TOPIC, TrackProcessingStarted, "track.processing.started", 1);

/// The upload is not a usable track; its objects are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackRejected {
    /// The track.
    pub track_id: String,
    /// Stable code: `not_audio`, `corrupt`, `too_short`, `too_long`, `silent`.
    pub code: String,
    /// For the artist.
    pub reason: String,
}

event!(TOPIC, TrackRejected, "track.rejected", 1);

/// Processing failed on our side; the track's objects are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackFailed {
    /// The track.
    pub track_id: String,
    /// What went wrong.
    pub reason: String,
}

event!(TOPIC, TrackFailed, "track.failed", 1);

/// The track was decoded, measured and transcoded into its renditions (not yet published).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackTranscoded {
    /// The track.
    pub track_id: String,
    /// Presented duration, ms.
    pub duration_ms: u64,
    /// Rendition ids, e.g. `64k`.
    pub renditions: Vec<String>,
    /// Files packaged (init segments, media segments, playlists, manifest).
    pub files: usize,
    /// Each rendition's bit rates and segment index.
    #[serde(default)]
    pub details: Vec<RenditionDetail>,
}

/// A rendition's facts for the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenditionDetail {
    /// Rendition id, e.g. `128k`.
    pub id: String,
    /// Average bit rate, bits per second.
    pub average_bps: u64,
    /// Peak bit rate over its segments, bits per second.
    pub peak_bps: u64,
    /// Size of its init segment, bytes.
    pub init_bytes: u64,
    /// Its segments in order: presented duration (ms) and size (bytes).
    pub segments: Vec<SegmentDetail>,
}

/// One media segment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SegmentDetail {
    /// Presented duration, ms.
    pub duration_ms: u64,
    /// Size, bytes.
    pub bytes: u64,
}

event!(TOPIC, TrackTranscoded, "track.transcoded", 1);

/// The track's renditions and manifests are published; it is ready to play.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackPublished {
    /// The track.
    pub track_id: String,
    /// Object-store prefix of this version (`media/{track}/{version}/`).
    pub prefix: String,
    /// Presented duration, ms.
    pub duration_ms: u64,
    /// EBU R128 integrated loudness, LUFS.
    pub loudness_lufs: f64,
    /// Gain to −14 LUFS, dB.
    pub gain_db: f64,
    /// Rendition ids, e.g. `64k`.
    pub renditions: Vec<String>,
}

event!(TOPIC, TrackPublished, "track.published", 1);

/// The track's tags were read and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackTagged {
    /// The track.
    pub track_id: String,
    /// Artists from the file's tags.
    pub artists: Vec<String>,
    /// Genre from the tags.
    pub genre: Option<String>,
    /// Year from the tags.
    pub year: Option<u32>,
    /// Whether its title, tags or lyrics contain a listed explicit word.
    pub explicit: bool,
    /// Top tags for search and home (`genre:…`, `decade:…`, `energy:…`, `mood:…`).
    #[serde(default)]
    pub top_tags: Vec<String>,
    /// Cover-art thumbnails by edge length in pixels (object keys), if the file had art.
    #[serde(default)]
    pub artwork: std::collections::BTreeMap<u32, String>,
}

event!(TOPIC, TrackTagged, "track.tagged", 1);

/// An administrator took a track down: it is no longer played or found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackTakenDown {
    /// The track.
    pub track_id: String,
    /// Why.
    pub reason: String,
}

event!(TOPIC, TrackTakenDown, "track.taken_down", 1);

/// An administrator put a taken-down track back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackRestored {
    /// The track.
    pub track_id: String,
}

event!(TOPIC, TrackRestored, "track.restored", 1);
