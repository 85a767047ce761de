//! The play API (the spec's stream flow): `POST /api/v1/play` checks the track and the
//! listener's entitlement, decides whether an ad break comes first, asks the host locator for
//! the ranked nodes, and answers with a manifest URL on each, every piece under a URL token
//! scoped to its own directory; `POST /api/v1/play-events` records what the player reports.
//!
//! A paid play's manifest is the packaged one on the node itself. An ad-supported play's
//! manifests are per-play documents served here (`/api/v1/plays/{id}/{node}/…`), stitched from
//! the packaged playlists of the ads and of the track with absolute segment URLs on that node,
//! so that every segment stays the one shared, cacheable file (see [`manifests`]).
//!
//! Listening is credited from play events, never more than the wall time since the play
//! began; the ad decision ([`ads::ad_break`]) runs in one User DB transaction with the
//! impression it records, so that concurrent plays never exceed a package's ads per hour.

mod http;
pub(crate) mod store;

pub(crate) use http::routes;

pub mod ads;
pub mod manifests;

pub use store::Listening;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use events::plays::{AdServed, PlayCompleted, PlayFacts, PlayProgressed, PlaySkipped, PlayStarted};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::App;
use crate::auth::AuthUser;
use crate::bus;
use crate::config::PlayConfig;
use crate::error::{Error, Result};
use crate::store::{StoreError, new_id, retry_on_conflict};

/// What the play API holds: the URL-token keys, a client for the host locator, and the
/// packaged playlists it has read (immutable, versioned objects).
pub struct Player {
    keyring: Option<url_token::Keyring>,
    http: reqwest::Client,
    pieces: moka::sync::Cache<String, Arc<str>>,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("signs", &self.keyring.is_some())
            .finish_non_exhaustive()
    }
}

impl Player {
    /// The play API's state for `config`.
    pub fn new(config: &PlayConfig) -> anyhow::Result<Self> {
        let keyring = if config.url_token_keys.is_empty() {
            None
        } else {
            let keys = config
                .url_token_keys
                .iter()
                .map(|key| url_token::Key::new(key.id.clone(), key.secret.expose().as_bytes()))
                .collect::<Result<Vec<_>, _>>()?;
            let signing = config.url_token_signing_key.clone().unwrap_or_else(|| {
                config.url_token_keys[config.url_token_keys.len() - 1]
                    .id
                    .clone()
            });
            Some(url_token::Keyring::new(keys, &signing)?)
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.locator_timeout_ms))
            .build()?;
        Ok(Self {
            keyring,
            http,
            pieces: moka::sync::Cache::builder().max_capacity(4096).build(),
        })
    }
}

/// `hls` or `dash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// HLS (a master playlist).
    Hls,
    /// DASH (an MPD).
    Dash,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hls => "hls",
            Self::Dash => "dash",
        }
    }

    /// The manifest's file name in a packaged version directory.
    fn manifest(self) -> &'static str {
        match self {
            Self::Hls => "master.m3u8",
            Self::Dash => "manifest.mpd",
        }
    }
}

/// A protocol the player prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1.
    H1,
    /// HTTP/2.
    H2,
    /// HTTP/3.
    H3,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Self::H1 => "h1",
            Self::H2 => "h2",
            Self::H3 => "h3",
        }
    }
}

/// Where the client says it is (testing, or a device that knows better than GeoIP).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
}

/// `POST /api/v1/play`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayRequest {
    /// The track.
    pub track_id: String,
    /// The manifest format wanted.
    pub format: Format,
    /// What the player is (free text, at most 200 characters), e.g. `web/hls.js`.
    #[serde(default)]
    pub device: Option<String>,
    /// The protocol the player prefers (the node URLs are for it).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// An explicit location instead of the client address's.
    #[serde(default)]
    pub location: Option<Location>,
}

/// A node the play may use.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlayNode {
    /// Node id.
    pub node: String,
    /// Its site.
    pub site: String,
    /// Why the locator chose it (`isp-box`, `nearest-edge`, `fallback`).
    pub reason: String,
    /// Its base URL.
    pub url: String,
    /// The manifest to open on it.
    pub manifest_url: String,
}

/// An ad spliced before the track.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlayAd {
    /// The ad (a track of kind `ad`).
    pub track_id: String,
    /// Its title.
    pub name: String,
    /// Where it starts in the presentation, ms.
    pub starts_at_ms: u64,
    /// Its duration, ms.
    pub duration_ms: u64,
}

/// The track as the player shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlayTrack {
    /// Track id.
    pub id: String,
    /// Title.
    pub name: String,
    /// Artist.
    pub singer: String,
    /// Album.
    pub album: Option<String>,
    /// Duration, ms.
    pub duration_ms: u64,
    /// Whether it has explicit language.
    pub explicit: bool,
    /// Cover-art thumbnails by edge length: absolute URLs on the primary node.
    pub artwork: BTreeMap<String, String>,
}

/// The answer to `POST /api/v1/play`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlayAnswer {
    /// This play; report events about it to `POST /api/v1/play-events`.
    pub play_id: String,
    /// `hls` or `dash`.
    pub format: Format,
    /// The manifest on the primary node.
    pub manifest_url: String,
    /// The same on each fallback node, in order.
    pub fallbacks: Vec<String>,
    /// Every node, primary first, with the locator's reasons.
    pub nodes: Vec<PlayNode>,
    /// The track.
    pub track: PlayTrack,
    /// EBU R128 integrated loudness of the track, LUFS.
    pub loudness_lufs: Option<f64>,
    /// The gain that brings it to −14 LUFS, dB.
    pub gain_db: Option<f64>,
    /// Ads before the track (empty on a paid package).
    pub ads: Vec<PlayAd>,
    /// Where the track starts in the presentation (the ads' total), ms.
    pub track_starts_at_ms: u64,
    /// The whole presentation, ms.
    pub duration_ms: u64,
    /// When the URLs stop working.
    pub expires_at: String,
    /// How often to post a `progress` event, seconds.
    pub progress_every_secs: u64,
}

/// What a play was made of: stored with it, read back to serve its per-play manifests.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlayDocument {
    /// Primary first: `(node id, site, base URL)`.
    nodes: Vec<NodeDoc>,
    /// Ads first, then the track.
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NodeDoc {
    id: String,
    site: String,
    reason: String,
    url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Piece {
    track_id: String,
    /// `media/{track}/{version}/`.
    prefix: String,
    duration_ms: u64,
    ad: bool,
}

/// Each piece's URL token for its version directory. Tokens are not stored: they are signed
/// again from the play's own issue and expiry times (Unix seconds), which gives the same token
/// while the signing key is the same.
fn piece_tokens(
    keyring: &url_token::Keyring,
    pieces: &[Piece],
    issued: u64,
    expires: u64,
) -> Result<Vec<String>> {
    pieces
        .iter()
        .map(|piece| {
            keyring
                .sign(&format!("/{}", piece.prefix), issued, expires, None)
                .map_err(|error| Error::Internal(anyhow::anyhow!(error)))
        })
        .collect()
}

/// A piece's version directory on `node`, under its token: `{node}/t/{token}/{prefix}`.
fn piece_base(node: &str, token: &str, piece: &Piece) -> String {
    format!("{node}/t/{token}/{}", piece.prefix)
}

/// One candidate from the host locator.
#[derive(Debug, Deserialize)]
struct Candidate {
    node: String,
    site: String,
    url: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
struct Located {
    candidates: Vec<Candidate>,
}

/// A track as the play API needs it.
struct PlayableTrack {
    id: String,
    name: String,
    singer: String,
    album: Option<String>,
    prefix: String,
    duration_ms: u64,
    explicit: bool,
    loudness_lufs: Option<f64>,
    gain_db: Option<f64>,
    artwork: BTreeMap<String, String>,
}

/// An ad that can be spliced.
#[derive(Debug, Clone)]
struct Ad {
    id: String,
    name: String,
    prefix: String,
    duration_ms: u64,
}

impl App {
    /// `POST /api/v1/play` without the HTTP around it; `host` is the request's `Host`, for
    /// the per-play manifests' URLs when no public URL is configured.
    async fn play(
        &self,
        caller: &AuthUser,
        client: IpAddr,
        host: Option<&str>,
        request: PlayRequest,
    ) -> Result<PlayAnswer> {
        let config = &self.config.play;
        let device = request.device.clone().unwrap_or_default();
        if device.chars().count() > 200 {
            return Err(Error::invalid(
                "device",
                "too_long",
                "At most 200 characters.",
            ));
        }
        if let Some(location) = request.location
            && !(location.lat.is_finite()
                && location.lon.is_finite()
                && (-90.0..=90.0).contains(&location.lat)
                && (-180.0..=180.0).contains(&location.lon))
        {
            return Err(Error::invalid(
                "location",
                "invalid",
                "lat is within ±90 and lon within ±180 degrees.",
            ));
        }
        let (Some(locator), Some(keyring)) = (&config.locator_url, &self.player.keyring) else {
            return Err(Error::Unavailable {
                code: "play_unavailable",
                message: "This control plane has no host locator or URL-token keys configured (play.locator_url, play.url_token_keys).".to_owned(),
            });
        };
        let track = self.playable_track(&request.track_id).await?;
        let per_hour = self
            .entitlements(&caller.user_id)
            .await?
            .free_ads_per_hour();
        let candidates = self
            .locate(locator, &request, &device, client, &track.id)
            .await?;

        let play_id = play_id();
        let decided = retry_on_conflict(|| {
            self.decide_and_record(
                caller,
                &play_id,
                &track,
                per_hour,
                &candidates,
                &request,
                &device,
            )
        })
        .await?;
        self.bus.notify();
        if let Some(ad) = &decided.ad {
            metrics::counter!("cadenza_ad_breaks_total", "reason" => ad.1.as_str()).increment(1);
        }
        metrics::counter!("cadenza_plays_total", "format" => request.format.as_str(), "ads" => if decided.ad.is_some() { "yes" } else { "no" }).increment(1);

        let public = match &config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", host.unwrap_or("localhost")),
        };
        let document = &decided.document;
        let tokens = piece_tokens(keyring, &document.pieces, decided.issued, decided.expires)?;
        let nodes: Vec<PlayNode> = document
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| PlayNode {
                node: node.id.clone(),
                site: node.site.clone(),
                reason: node.reason.clone(),
                url: node.url.clone(),
                // Ads: the per-play manifest here. None: the packaged one on the node.
                manifest_url: if decided.ad.is_some() {
                    format!(
                        "{public}/api/v1/plays/{play_id}/{index}/{}",
                        request.format.manifest()
                    )
                } else {
                    format!(
                        "{}{}",
                        piece_base(&node.url, &tokens[0], &document.pieces[0]),
                        request.format.manifest()
                    )
                },
            })
            .collect();
        let primary = &nodes[0].url;
        // One break holds one ad, at the start.
        let ads_view: Vec<PlayAd> = decided
            .ad
            .iter()
            .map(|(ad, _)| PlayAd {
                track_id: ad.id.clone(),
                name: ad.name.clone(),
                starts_at_ms: 0,
                duration_ms: ad.duration_ms,
            })
            .collect();
        let starts_at: u64 = ads_view.iter().map(|ad| ad.duration_ms).sum();
        tracing::info!(
            message = "Play started.",
            play = play_id,
            track = track.id,
            node = nodes[0].node,
            ads = decided.ad.is_some(),
        );
        Ok(PlayAnswer {
            manifest_url: nodes[0].manifest_url.clone(),
            fallbacks: nodes[1..]
                .iter()
                .map(|node| node.manifest_url.clone())
                .collect(),
            format: request.format,
            track: PlayTrack {
                artwork: track
                    .artwork
                    .iter()
                    .map(|(size, key)| {
                        (
                            size.clone(),
                            format!("{primary}/{}", key.trim_start_matches('/')),
                        )
                    })
                    .collect(),
                id: track.id,
                name: track.name,
                singer: track.singer,
                album: track.album,
                duration_ms: track.duration_ms,
                explicit: track.explicit,
            },
            nodes,
            loudness_lufs: track.loudness_lufs,
            gain_db: track.gain_db,
            ads: ads_view,
            track_starts_at_ms: starts_at,
            duration_ms: starts_at + track.duration_ms,
            expires_at: crate::calendar::rfc3339(decided.expires as i64 * 1000),
            progress_every_secs: config.progress_every_secs,
            play_id,
        })
    }

    /// A track that may be played: ready, music, not blocked.
    async fn playable_track(&self, id: &str) -> Result<PlayableTrack> {
        let not_found = || Error::not_found("track_not_found", "No such track.");
        let row = crate::catalog::store::play_track(self.inventory.database().pool(), id)
            .await?
            .ok_or_else(not_found)?;
        if row.kind != "music" {
            return Err(not_found());
        }
        if let Some(reason) = row.blocked_reason {
            return Err(Error::Blocked {
                code: "track_blocked",
                message: format!("This track has been taken down: {reason}"),
            });
        }
        let (crate::catalog::store::TrackStatus::Ready, Some(prefix)) = (row.status, row.url)
        else {
            return Err(Error::conflict(
                "track_not_ready",
                "This track is not ready to play yet.",
            ));
        };
        Ok(PlayableTrack {
            id: row.id,
            name: row.name,
            singer: row.singer,
            album: row.album,
            duration_ms: row.duration_ms.unwrap_or(0).max(0) as u64,
            explicit: row.explicit,
            loudness_lufs: row.loudness_lufs,
            gain_db: row.gain_db,
            artwork: row.artwork,
            prefix,
        })
    }

    /// Ads ready to splice, in a stable order (the rotation walks it).
    async fn ready_ads(&self) -> Result<Vec<Ad>, StoreError> {
        let rows = crate::catalog::store::ready_ads(self.inventory.database().pool()).await?;
        Ok(rows
            .into_iter()
            .map(|row| Ad {
                id: row.id,
                name: row.name,
                prefix: row.url,
                duration_ms: row.duration_ms.unwrap_or(0).max(0) as u64,
            })
            .collect())
    }

    /// The host locator's ranked nodes for this client (nodes without a URL for the
    /// protocol are dropped).
    async fn locate(
        &self,
        locator: &str,
        request: &PlayRequest,
        device: &str,
        client: IpAddr,
        track: &str,
    ) -> Result<Vec<Candidate>> {
        let mut query = vec![
            ("track", track.to_owned()),
            ("format", request.format.as_str().to_owned()),
        ];
        if let Some(protocol) = request.protocol {
            query.push(("protocol", protocol.as_str().to_owned()));
        }
        if !device.is_empty() {
            query.push(("device", device.to_owned()));
        }
        if let Some(location) = request.location {
            query.push(("lat", location.lat.to_string()));
            query.push(("lon", location.lon.to_string()));
        }
        let unavailable = |detail: String| {
            tracing::warn!(message = "The host locator did not answer.", detail);
            metrics::counter!("cadenza_play_locator_errors_total").increment(1);
            Error::Unavailable {
                code: "locator_unavailable",
                message: "The host locator is not answering; try again shortly.".to_owned(),
            }
        };
        let response = self
            .player
            .http
            .get(format!("{}/v1/locate", locator.trim_end_matches('/')))
            .query(&query)
            .header("x-forwarded-for", client.to_string())
            .send()
            .await
            .map_err(|error| unavailable(error.to_string()))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|error| unavailable(format!("status {status}: {error}")))?;
        // "No node" is an answer (503 with the locator's error code), not a failure to answer.
        let no_node = || Error::Unavailable {
            code: "no_node",
            message: "No healthy node can serve this client now; try again shortly.".to_owned(),
        };
        if body["error"]["code"] == "no_node" {
            return Err(no_node());
        }
        if !status.is_success() {
            return Err(unavailable(format!("status {status}: {body}")));
        }
        let located: Located =
            serde_json::from_value(body).map_err(|error| unavailable(error.to_string()))?;
        let candidates: Vec<Candidate> = located
            .candidates
            .into_iter()
            .filter(|candidate| !candidate.url.is_empty())
            .map(|candidate| Candidate {
                url: candidate.url.trim_end_matches('/').to_owned(),
                ..candidate
            })
            .collect();
        if candidates.is_empty() {
            return Err(no_node());
        }
        Ok(candidates)
    }

    /// In one User DB transaction: takes the listener's listening row, decides the ad break,
    /// and records the play, the impression and the `ad.served` event.
    #[allow(clippy::too_many_arguments)]
    async fn decide_and_record(
        &self,
        caller: &AuthUser,
        play_id: &str,
        track: &PlayableTrack,
        per_hour: i64,
        candidates: &[Candidate],
        request: &PlayRequest,
        device: &str,
    ) -> Result<Decided, StoreError> {
        let config = &self.config.play;
        let now = self.clock.now_ms();
        let pool = self.users.database().pool();
        // The listening row is every play's lock: created once, then updated first in every
        // transaction, so two plays of one listener decide one after the other.
        store::ensure_listening(pool, &caller.user_id, now).await?;
        let mut tx = self.users.database().begin().await?;
        store::lock_listening(&mut *tx, &caller.user_id, now).await?;
        let (listening, ads_served) = store::listening(&mut *tx, &caller.user_id).await?;
        let served_last_hour =
            store::impressions_since(&mut *tx, &caller.user_id, now - ads::HOUR_MS).await?;
        let reason = ads::ad_break(
            per_hour,
            &listening,
            served_last_hour,
            now,
            config.session_idle_secs as i64 * 1000,
        );
        // The ads are read only when a break is due (most plays have none).
        let ad = match reason {
            Some(reason) => {
                let mut ads = self.ready_ads().await?;
                if ads.is_empty() {
                    metrics::counter!("cadenza_ad_breaks_unfilled_total").increment(1);
                    None
                } else {
                    let turn = ads_served.rem_euclid(ads.len() as i64) as usize;
                    Some((ads.swap_remove(turn), reason))
                }
            }
            None => None,
        };
        let ads_ms = ad.as_ref().map_or(0, |(ad, _)| ad.duration_ms);
        let total_secs = (ads_ms + track.duration_ms).div_ceil(1000);
        let now_secs = (now / 1000).max(0) as u64;
        let expires = now_secs + total_secs + config.token_margin_secs;
        let mut pieces = Vec::new();
        if let Some((ad, _)) = &ad {
            pieces.push(Piece {
                track_id: ad.id.clone(),
                prefix: ad.prefix.clone(),
                duration_ms: ad.duration_ms,
                ad: true,
            });
        }
        pieces.push(Piece {
            track_id: track.id.clone(),
            prefix: track.prefix.clone(),
            duration_ms: track.duration_ms,
            ad: false,
        });
        let document = PlayDocument {
            nodes: candidates
                .iter()
                .map(|candidate| NodeDoc {
                    id: candidate.node.clone(),
                    site: candidate.site.clone(),
                    reason: candidate.reason.clone(),
                    url: candidate.url.clone(),
                })
                .collect(),
            pieces,
        };
        let document_text = crate::store::to_json_column(&document);
        let play = store::NewPlay {
            id: play_id,
            user_id: &caller.user_id,
            track_id: &track.id,
            format: request.format.as_str(),
            device,
            node_id: &candidates[0].node,
            region: &candidates[0].site,
            document: &document_text,
            ads_ms: ads_ms as i64,
            duration_ms: track.duration_ms as i64,
            expires_at: expires as i64 * 1000,
            now,
        };
        store::insert_play(&mut *tx, &play).await?;
        let mut last_break = listening.last_break_at_ms;
        if let Some((ad, reason)) = &ad {
            last_break = Some(listening.listened_ms);
            let impression = store::Impression {
                id: &new_id(),
                user_id: &caller.user_id,
                play_id,
                ad_track_id: &ad.id,
                listened_ms: listening.listened_ms,
                reason: reason.as_str(),
                served_at: now,
            };
            store::insert_impression(&mut *tx, &impression).await?;
            bus::append(
                &mut tx,
                &caller.user_id,
                &AdServed {
                    play_id: play_id.to_owned(),
                    user_id: caller.user_id.clone(),
                    ad_track_id: ad.id.clone(),
                    track_id: track.id.clone(),
                    duration_ms: ad.duration_ms,
                    region: candidates[0].site.clone(),
                    listened_total_ms: listening.listened_ms.max(0) as u64,
                },
                now,
            )
            .await?;
        }
        let served = ads_served + i64::from(ad.is_some());
        store::record_play_start(&mut *tx, &caller.user_id, now, last_break, served).await?;
        tx.commit().await?;
        Ok(Decided {
            document,
            ad,
            issued: now_secs,
            expires,
        })
    }
}

/// What the transaction decided.
struct Decided {
    document: PlayDocument,
    ad: Option<(Ad, ads::BreakReason)>,
    /// The play's URL tokens' issue and expiry times, Unix seconds.
    issued: u64,
    expires: u64,
}

/// An unguessable play id: it is the capability that opens the per-play manifests.
fn play_id() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "play_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

// ---- Play events -------------------------------------------------------------------------

/// What the player reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlayEventKind {
    /// Playback began.
    Start,
    /// Still playing (every `progress_every_secs`).
    Progress,
    /// Played to the end.
    Complete,
    /// The listener skipped the rest.
    Skip,
}

/// `POST /api/v1/play-events`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlayEventRequest {
    /// The play, from `POST /api/v1/play`.
    pub play_id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: PlayEventKind,
    /// The player's position in the presentation (ads included), ms.
    #[serde(default)]
    pub position_ms: u64,
    /// The node now serving the player, when it moved to a fallback (a node id of the play's
    /// answer); the counters go to that node's region.
    #[serde(default)]
    pub node: Option<String>,
}

/// What a play event changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlayEventAnswer {
    /// The play.
    pub play_id: String,
    /// `playing`, `completed` or `skipped`.
    pub state: String,
    /// Position in the track (ads excluded), ms.
    pub position_ms: u64,
    /// Track listening credited to this play so far, ms.
    pub listened_ms: u64,
}

impl App {
    async fn record_play_event(
        &self,
        caller: &AuthUser,
        request: &PlayEventRequest,
    ) -> Result<Result<PlayEventAnswer>, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.users.database().begin().await?;
        // Lock the listener's row first (as plays do), then read the play.
        store::lock_listening(&mut *tx, &caller.user_id, now).await?;
        let Some(row) = store::play_of(&mut *tx, &request.play_id, &caller.user_id).await? else {
            return Ok(Err(Error::not_found(
                "play_not_found",
                "No such play of yours.",
            )));
        };
        let state = row.state.as_str();
        let (mut node_id, mut region) = (row.node_id.clone(), row.region.clone());
        if let Some(node) = &request.node {
            // The document (the play's nodes) is read only for an event that names a node.
            let text = store::play_document(&mut *tx, &request.play_id).await?;
            let document: Option<PlayDocument> =
                text.and_then(|text| serde_json::from_str(&text.document).ok());
            match document.and_then(|document| {
                document
                    .nodes
                    .into_iter()
                    .find(|candidate| &candidate.id == node)
            }) {
                Some(candidate) => (node_id, region) = (candidate.id, candidate.site),
                None => {
                    return Ok(Err(Error::invalid(
                        "node",
                        "invalid",
                        "Not one of this play's nodes.",
                    )));
                }
            }
        }
        let (ads_ms, duration_ms) = (row.ads_ms, row.duration_ms);
        let (listened_before, created_at) = (row.listened_ms, row.created_at);
        let conflict =
            |code: &'static str, message: &str| Ok(Err(Error::conflict(code, message.to_owned())));
        let next_state = match (state, request.kind) {
            ("completed" | "skipped", _) => {
                return conflict("play_finished", "This play has ended; start another.");
            }
            ("served", PlayEventKind::Start) => "playing",
            (_, PlayEventKind::Start) => {
                return conflict("play_already_started", "This play has already started.");
            }
            ("served", _) => {
                return conflict("play_not_started", "Send a `start` event first.");
            }
            (_, PlayEventKind::Progress) => "playing",
            (_, PlayEventKind::Complete) => "completed",
            (_, PlayEventKind::Skip) => "skipped",
        };
        // Position in the track, ads excluded; a completed play is at its end.
        let position = if request.kind == PlayEventKind::Complete {
            duration_ms
        } else {
            (request.position_ms.min(i64::MAX as u64) as i64 - ads_ms).clamp(0, duration_ms)
        };
        // Never more listening than the wall time since the play began (ads first), with a
        // little tolerance for the player's clock and the request's flight.
        let heard_at_most = (now - created_at - ads_ms + 5_000).max(0);
        let listened = position.min(heard_at_most).max(listened_before);
        let credited = listened - listened_before;
        store::record_progress(
            &mut *tx,
            &request.play_id,
            position,
            listened,
            next_state,
            now,
        )
        .await?;
        store::credit_listening(&mut *tx, &caller.user_id, credited).await?;
        let facts = PlayFacts {
            play_id: request.play_id.clone(),
            user_id: caller.user_id.clone(),
            track_id: row.track_id,
            node_id,
            region,
            format: row.format,
            device: row.device,
            position_ms: position as u64,
            listened_ms: credited as u64,
        };
        let key = caller.user_id.as_str();
        match request.kind {
            PlayEventKind::Start => bus::append(&mut tx, key, &PlayStarted(facts), now).await?,
            PlayEventKind::Progress => {
                bus::append(&mut tx, key, &PlayProgressed(facts), now).await?
            }
            PlayEventKind::Complete => {
                bus::append(&mut tx, key, &PlayCompleted(facts), now).await?
            }
            PlayEventKind::Skip => bus::append(&mut tx, key, &PlaySkipped(facts), now).await?,
        };
        tx.commit().await?;
        metrics::counter!("cadenza_play_events_total", "type" => next_state).increment(1);
        Ok(Ok(PlayEventAnswer {
            play_id: request.play_id.clone(),
            state: next_state.to_owned(),
            position_ms: position as u64,
            listened_ms: listened as u64,
        }))
    }
}

impl App {
    /// A packaged playlist or manifest (immutable under its versioned key), cached.
    async fn piece(&self, key: &str) -> Result<Arc<str>> {
        if let Some(text) = self.player.pieces.get(key) {
            return Ok(text);
        }
        let bytes = self.objects.get(key).await.map_err(|error| {
            tracing::error!(message = "A packaged manifest is missing.", key, %error);
            Error::not_found(
                "play_not_found",
                "This play's media is no longer available.",
            )
        })?;
        let text: Arc<str> = String::from_utf8_lossy(&bytes).into();
        self.player.pieces.insert(key.to_owned(), text.clone());
        Ok(text)
    }
}
