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

pub mod ads;
pub mod manifests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use events::plays::{AdServed, PlayCompleted, PlayFacts, PlayProgressed, PlaySkipped, PlayStarted};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;
use crate::auth::AuthUser;
use crate::bus;
use crate::config::PlayConfig;
use crate::error::{Error, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath, ClientAddr};
use crate::store::{StoreError, TextColumn, is_unique_violation, new_id, retry_on_conflict};

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(start_play))
        .routes(routes!(play_event))
        .routes(routes!(play_manifest))
}

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
    let answer = app.play(&caller, client, &headers, request).await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

impl App {
    /// `POST /api/v1/play` without the HTTP around it.
    async fn play(
        &self,
        caller: &AuthUser,
        client: IpAddr,
        headers: &HeaderMap,
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
            None => format!(
                "http://{}",
                headers
                    .get(header::HOST)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("localhost")
            ),
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
        let row = sqlx::query(
            "SELECT id, name, singer, album, status, kind, blocked_reason, url, duration_ms, loudness_lufs, gain_db, explicit, artwork \
             FROM tracks WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(self.inventory.database().pool())
        .await
        .map_err(StoreError::from)?
        .ok_or_else(not_found)?;
        let text = |column: &str| -> Result<Option<String>> {
            Ok(row.try_get(column).map_err(StoreError::from)?)
        };
        if text("kind")?.as_deref() != Some("music") {
            return Err(not_found());
        }
        if let Some(reason) = text("blocked_reason")? {
            return Err(Error::Blocked {
                code: "track_blocked",
                message: format!("This track has been taken down: {reason}"),
            });
        }
        let status = text("status")?
            .map(|status| crate::store::TrackStatus::parse(&status))
            .transpose()?;
        let (Some(crate::store::TrackStatus::Ready), Some(prefix)) = (status, text("url")?) else {
            return Err(Error::conflict(
                "track_not_ready",
                "This track is not ready to play yet.",
            ));
        };
        let artwork = crate::store::json_column(&row, "artwork")?.unwrap_or_default();
        Ok(PlayableTrack {
            id: row.try_get("id").map_err(StoreError::from)?,
            name: row.try_get("name").map_err(StoreError::from)?,
            singer: row.try_get("singer").map_err(StoreError::from)?,
            album: text("album")?,
            duration_ms: row
                .try_get::<Option<i64>, _>("duration_ms")
                .map_err(StoreError::from)?
                .unwrap_or(0)
                .max(0) as u64,
            explicit: row
                .try_get::<i64, _>("explicit")
                .map_err(StoreError::from)?
                != 0,
            loudness_lufs: row.try_get("loudness_lufs").map_err(StoreError::from)?,
            gain_db: row.try_get("gain_db").map_err(StoreError::from)?,
            artwork,
            prefix,
        })
    }

    /// Ads ready to splice, in a stable order (the rotation walks it).
    async fn ready_ads(&self) -> Result<Vec<Ad>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, url, duration_ms FROM tracks \
             WHERE kind = 'ad' AND status = 'ready' AND blocked_reason IS NULL AND url IS NOT NULL ORDER BY id",
        )
        .fetch_all(self.inventory.database().pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Ad {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    prefix: row.try_get("url")?,
                    duration_ms: row
                        .try_get::<Option<i64>, _>("duration_ms")?
                        .unwrap_or(0)
                        .max(0) as u64,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(StoreError::from)
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
        if let Err(error) = sqlx::query(
            "INSERT INTO listening (user_id, listened_ms, last_break_at_ms, last_play_at, ads_served, updated_at) VALUES (?, 0, NULL, NULL, 0, ?)",
        )
        .bind(&caller.user_id)
        .bind(now)
        .execute(pool)
        .await
            && !is_unique_violation(&error)
        {
            return Err(error.into());
        }
        let mut tx = pool.begin().await?;
        sqlx::query("UPDATE listening SET updated_at = ? WHERE user_id = ?")
            .bind(now)
            .bind(&caller.user_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            "SELECT listened_ms, last_break_at_ms, last_play_at, ads_served FROM listening WHERE user_id = ?",
        )
        .bind(&caller.user_id)
        .fetch_one(&mut *tx)
        .await?;
        let listening = ads::Listening {
            listened_ms: row.try_get("listened_ms")?,
            last_break_at_ms: row.try_get("last_break_at_ms")?,
            last_play_at: row.try_get("last_play_at")?,
        };
        let ads_served: i64 = row.try_get("ads_served")?;
        let served_last_hour: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM ad_impressions WHERE user_id = ? AND served_at > ?",
        )
        .bind(&caller.user_id)
        .bind(now - ads::HOUR_MS)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
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
        sqlx::query(
            "INSERT INTO plays (id, user_id, track_id, format, device, node_id, region, document, ads_ms, duration_ms, position_ms, listened_ms, state, expires_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 'served', ?, ?, ?)",
        )
        .bind(play_id)
        .bind(&caller.user_id)
        .bind(&track.id)
        .bind(request.format.as_str())
        .bind(device)
        .bind(&candidates[0].node)
        .bind(&candidates[0].site)
        .bind(crate::store::to_json_column(&document))
        .bind(ads_ms as i64)
        .bind(track.duration_ms as i64)
        .bind(expires as i64 * 1000)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut last_break = listening.last_break_at_ms;
        if let Some((ad, reason)) = &ad {
            last_break = Some(listening.listened_ms);
            sqlx::query(
                "INSERT INTO ad_impressions (id, user_id, play_id, ad_track_id, listened_ms, reason, served_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(new_id())
            .bind(&caller.user_id)
            .bind(play_id)
            .bind(&ad.id)
            .bind(listening.listened_ms)
            .bind(reason.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
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
        sqlx::query(
            "UPDATE listening SET last_play_at = ?, last_break_at_ms = ?, ads_served = ? WHERE user_id = ?",
        )
        .bind(now)
        .bind(last_break)
        .bind(ads_served + i64::from(ad.is_some()))
        .bind(&caller.user_id)
        .execute(&mut *tx)
        .await?;
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

impl App {
    async fn record_play_event(
        &self,
        caller: &AuthUser,
        request: &PlayEventRequest,
    ) -> Result<Result<PlayEventAnswer>, StoreError> {
        let now = self.clock.now_ms();
        let pool = self.users.database().pool();
        let mut tx = pool.begin().await?;
        // Lock the listener's row first (as plays do), then read the play.
        sqlx::query("UPDATE listening SET updated_at = ? WHERE user_id = ?")
            .bind(now)
            .bind(&caller.user_id)
            .execute(&mut *tx)
            .await?;
        let Some(row) = sqlx::query(
            "SELECT track_id, format, device, node_id, region, ads_ms, duration_ms, position_ms, listened_ms, state, created_at FROM plays WHERE id = ? AND user_id = ?",
        )
        .bind(&request.play_id)
        .bind(&caller.user_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(Err(Error::not_found("play_not_found", "No such play of yours.")));
        };
        let state: String = row.try_get("state")?;
        let (mut node_id, mut region): (String, String) =
            (row.try_get("node_id")?, row.try_get("region")?);
        if let Some(node) = &request.node {
            // The document (the play's nodes) is read only for an event that names a node.
            let text = sqlx::query("SELECT document FROM plays WHERE id = ?")
                .bind(&request.play_id)
                .fetch_one(&mut *tx)
                .await?;
            let document: Option<PlayDocument> =
                serde_json::from_str(&crate::store::long_text(&text, "document")?).ok();
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
        let ads_ms: i64 = row.try_get("ads_ms")?;
        let duration_ms: i64 = row.try_get("duration_ms")?;
        let listened_before: i64 = row.try_get("listened_ms")?;
        let created_at: i64 = row.try_get("created_at")?;
        let conflict =
            |code: &'static str, message: &str| Ok(Err(Error::conflict(code, message.to_owned())));
        let next_state = match (state.as_str(), request.kind) {
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
        sqlx::query(
            "UPDATE plays SET position_ms = ?, listened_ms = ?, state = ?, updated_at = ? WHERE id = ?",
        )
        .bind(position)
        .bind(listened)
        .bind(next_state)
        .bind(now)
        .bind(&request.play_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE listening SET listened_ms = listened_ms + ? WHERE user_id = ?")
            .bind(credited)
            .bind(&caller.user_id)
            .execute(&mut *tx)
            .await?;
        let facts = PlayFacts {
            play_id: request.play_id.clone(),
            user_id: caller.user_id.clone(),
            track_id: row.try_get("track_id")?,
            node_id,
            region,
            format: row.try_get("format")?,
            device: row.try_get("device")?,
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
    let row = sqlx::query("SELECT document, expires_at, created_at FROM plays WHERE id = ?")
        .bind(&id)
        .fetch_optional(app.users.database().pool())
        .await
        .map_err(StoreError::from)?
        .ok_or_else(not_found)?;
    let expires_at: i64 = row.try_get("expires_at").map_err(StoreError::from)?;
    let created_at: i64 = row.try_get("created_at").map_err(StoreError::from)?;
    if app.clock.now_ms() > expires_at {
        return Err(not_found());
    }
    let document: PlayDocument =
        serde_json::from_str(&crate::store::long_text(&row, "document").map_err(StoreError::from)?)
            .map_err(|error| Error::Internal(error.into()))?;
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
