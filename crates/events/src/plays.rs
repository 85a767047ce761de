//! Events of the play API (topic `plays`, keyed by user id): what listeners played, how far,
//! and which ads they were served. They feed the analytics and the catalog's play counters.

use serde::{Deserialize, Serialize};

/// The topic of play events.
pub const TOPIC: &str = "plays";

/// The facts every play event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayFacts {
    /// The play (one `POST /api/v1/play` answer).
    pub play_id: String,
    /// The listener.
    pub user_id: String,
    /// The track played (never an ad).
    pub track_id: String,
    /// The node the player was sent to first.
    pub node_id: String,
    /// That node's site (its region), for per-region counters.
    pub region: String,
    /// `hls` or `dash`.
    pub format: String,
    /// What the player said it is (free text, may be empty).
    pub device: String,
    /// Position in the track (ads excluded), ms.
    pub position_ms: u64,
    /// Track listening credited by this event, ms (progress since the previous event).
    pub listened_ms: u64,
}

/// The player started playing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayStarted(pub PlayFacts);

event!(TOPIC, PlayStarted, "play.started", 1);

/// About 30 s more of listening.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayProgressed(pub PlayFacts);

event!(TOPIC, PlayProgressed, "play.progressed", 1);

/// The track played to its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayCompleted(pub PlayFacts);

event!(TOPIC, PlayCompleted, "play.completed", 1);

/// The listener skipped the rest of the track.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaySkipped(pub PlayFacts);

event!(TOPIC, PlaySkipped, "play.skipped", 1);

/// An ad break was spliced into a play for a free-tier listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdServed {
    /// The play it precedes.
    pub play_id: String,
    /// The listener.
    pub user_id: String,
    /// The ad (a track of kind `ad`).
    pub ad_track_id: String,
    /// The track it precedes.
    pub track_id: String,
    /// The ad's duration, ms.
    pub duration_ms: u64,
    /// The site (region) of the node the play was sent to.
    pub region: String,
    /// The listener's total track listening when it was served, ms.
    pub listened_total_ms: u64,
}

event!(TOPIC, AdServed, "ad.served", 1);
