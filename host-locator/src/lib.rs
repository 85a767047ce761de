//! Cadenza's host locator: nodes (edges and ISP boxes) register and heartbeat; for each player
//! it answers with a ranked list of nodes — an ISP box covering the player's address, else the
//! nearest healthy edges by GeoIP distance adjusted by load, with rendezvous hashing keeping
//! each track on one node of its site — as JSON, or as a 302 to the primary.
//!
//! `select` is the pure decision; `registry` the lock-free node table; `geo` GeoIP and
//! distances; `mmdb` writes MaxMind DB files for tests, benchmarks and operators.

pub mod config;
pub mod error;
pub mod geo;
pub mod mmdb;
pub mod near;
pub mod registry;
pub mod rendezvous;
pub mod select;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use subtle::ConstantTimeEq;
use telemetry::{Clock, Readiness, Shutdown};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::error::{Error, FieldError};
use crate::geo::{GeoIp, GeoPoint};
use crate::registry::{Format, Protocol, Registration, Registry, Upsert};
use crate::select::{Client, Params, Request as Want, nearest_sites_memo, select};

/// Largest registration body (an ISP box may list many prefixes).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The locator's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Locator(Arc<Inner>);

/// What [`Locator`] holds.
#[derive(Debug)]
pub struct Inner {
    /// The configuration in force.
    pub config: Config,
    /// The node table.
    pub registry: Registry,
    /// The GeoIP database.
    pub geoip: Arc<GeoIp>,
    /// The time source.
    pub clock: Clock,
    /// Answer counters by reason, registered once (no label lookup per request).
    answers: [metrics::Counter; 4],
    lookup_seconds: metrics::Histogram,
}

impl std::ops::Deref for Locator {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Locator {
    /// Opens the GeoIP database (if configured) and registers the static nodes.
    pub fn new(config: Config, clock: Clock) -> anyhow::Result<Self> {
        telemetry::metrics_handle();
        let geoip = match &config.geoip_db {
            Some(path) => GeoIp::open(path).context("failed to open the GeoIP database")?,
            None => GeoIp::disabled(),
        };
        match geoip.describe() {
            Some(database) => tracing::info!(message = "GeoIP database in service.", database),
            None => tracing::warn!(
                message = "No GeoIP database configured: clients are placed by ISP-box prefixes, else in the default location.",
                lat = config.default_location.lat,
                lon = config.default_location.lon,
            ),
        }
        let locator = Self(Arc::new(Inner {
            registry: Registry::default(),
            geoip: Arc::new(geoip),
            clock,
            config,
            answers: ["isp-box", "nearest-edge", "fallback", "no-node"].map(
                |reason| metrics::counter!("cadenza_locator_answers_total", "reason" => reason),
            ),
            lookup_seconds: metrics::histogram!("cadenza_locator_lookup_duration_seconds"),
        }));
        for node in &locator.config.static_nodes {
            let description = node
                .validate(
                    |ip| locator.geoip.lookup(ip).map(|fix| fix.point),
                    locator.config.default_location,
                )
                .map_err(|errors| {
                    anyhow::anyhow!(
                        "static node {}: {}: {}",
                        node.id,
                        errors[0].field,
                        errors[0].message
                    )
                })?;
            locator
                .registry
                .upsert(description, node, true, locator.clock.now_ms());
        }
        Ok(locator)
    }

    fn params(&self) -> Params {
        Params {
            heartbeat_timeout_ms: self.config.heartbeat_timeout_secs as i64 * 1000,
            load_penalty_km: self.config.load_penalty_km,
            max_candidates: self.config.max_candidates,
        }
    }

    /// Where `ip` is, and how that was decided: the explicit override, GeoIP, or the default.
    pub fn place(
        &self,
        ip: IpAddr,
        fixed: Option<GeoPoint>,
    ) -> (GeoPoint, &'static str, Option<[u8; 2]>) {
        if let Some(point) = fixed {
            return (point, "override", None);
        }
        match self.geoip.lookup(ip) {
            Some(fix) => (fix.point, "geoip", fix.country),
            None => (self.config.default_location, "default", None),
        }
    }

    /// The ranked answer for a client (the whole decision, for the API and benchmarks).
    pub fn locate(&self, ip: IpAddr, fixed: Option<GeoPoint>, want: &Want<'_>) -> Located {
        let (location, source, country) = self.place(ip, fixed);
        let snapshot = self.registry.snapshot();
        let near = nearest_sites_memo(&snapshot, location);
        let client = Client { ip, location };
        let answer = select(
            &snapshot,
            near.as_slice(),
            &client,
            want,
            self.clock.now_ms(),
            &self.params(),
        );
        Located {
            client: ClientView {
                ip,
                location,
                location_source: source,
                country,
            },
            protocol: want.protocol,
            answer,
            snapshot,
        }
    }

    /// The public router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/locate", get(locate))
            .route("/v1/nodes", post(register).get(list_nodes))
            .route("/v1/nodes/{id}", axum::routing::delete(deregister))
            .route("/v1/nodes/{id}/heartbeat", post(heartbeat))
            .fallback(|| async { Error::RouteNotFound })
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .layer(axum::middleware::from_fn_with_state(
                "host-locator",
                telemetry::track_http,
            ))
            .with_state(self.clone())
    }

    fn check_token(&self, headers: &HeaderMap) -> Result<(), Error> {
        let Some(expected) = &self.config.node_token else {
            return Err(Error::Unauthorized);
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
            Ok(())
        } else {
            Err(Error::Unauthorized)
        }
    }

    fn upsert(&self, registration: &Registration) -> Result<Upsert, Error> {
        let description = registration
            .validate(
                |ip| self.geoip.lookup(ip).map(|fix| fix.point),
                self.config.default_location,
            )
            .map_err(|errors| Error::BadRequest {
                code: "invalid_registration",
                message: format!("{}: {}", errors[0].field, errors[0].message),
                fields: errors
                    .into_iter()
                    .map(|error| FieldError {
                        field: error.field,
                        code: "invalid",
                        message: error.message,
                    })
                    .collect(),
            })?;
        let outcome = self
            .registry
            .upsert(description, registration, false, self.clock.now_ms());
        if outcome != Upsert::Refreshed {
            tracing::info!(message = "Node registered.", node = registration.id, kind = ?registration.kind, site = registration.site, change = ?outcome);
        }
        Ok(outcome)
    }
}

/// The answer of `/v1/locate`: the ranked candidates, read from the snapshot they were chosen
/// from (nothing is copied until the answer is written out).
#[derive(Debug)]
pub struct Located {
    /// Who asked, and where they were placed.
    pub client: ClientView,
    /// The protocol asked for (which URL each candidate shows).
    pub protocol: Option<Protocol>,
    /// The decision.
    pub answer: select::Answer,
    snapshot: Arc<registry::Snapshot>,
}

impl Located {
    /// The primary's reason (`isp-box`, `nearest-edge`), or `no-node`.
    pub fn reason(&self) -> &'static str {
        self.answer.reason().as_str()
    }

    /// The candidates' node ids, best first.
    pub fn node_ids(&self) -> Vec<&str> {
        self.answer
            .candidates
            .iter()
            .map(|candidate| self.snapshot.nodes[candidate.node].description.id.as_str())
            .collect()
    }

    /// Counts the answer against its primary (exported as `cadenza_locator_selections_total`).
    pub fn count_selection(&self) {
        if let Some(candidate) = self.answer.candidates.first() {
            self.snapshot.nodes[candidate.node]
                .selections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The primary's id and base URL.
    pub fn primary(&self) -> Option<(&str, &str)> {
        let candidate = self.answer.candidates.first()?;
        let description = &self.snapshot.nodes[candidate.node].description;
        Some((
            &description.id,
            description
                .urls
                .for_protocol(self.protocol)
                .unwrap_or_default(),
        ))
    }
}

impl Serialize for Located {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let candidates: Vec<CandidateView<'_>> = self
            .answer
            .candidates
            .iter()
            .map(|candidate| {
                let node = &self.snapshot.nodes[candidate.node];
                let description = &node.description;
                CandidateView {
                    node: &description.id,
                    kind: description.kind,
                    site: &description.site,
                    url: description
                        .urls
                        .for_protocol(self.protocol)
                        .unwrap_or_default(),
                    reason: candidate.reason.as_str(),
                    distance_km: (geo::distance_km(self.client.location, description.location)
                        * 10.0)
                        .round()
                        / 10.0,
                    load: node.load(),
                }
            })
            .collect();
        let mut state = serializer.serialize_struct("Located", 3)?;
        state.serialize_field("reason", self.reason())?;
        state.serialize_field("client", &self.client)?;
        state.serialize_field("candidates", &candidates)?;
        state.end()
    }
}

/// The client as the locator saw it.
#[derive(Debug, Serialize)]
pub struct ClientView {
    /// The address used.
    pub ip: IpAddr,
    /// Where it was placed.
    pub location: GeoPoint,
    /// `override`, `geoip` or `default`.
    pub location_source: &'static str,
    /// ISO country, when GeoIP knows it.
    #[serde(serialize_with = "country_code")]
    pub country: Option<[u8; 2]>,
}

fn country_code<S: serde::Serializer>(
    code: &Option<[u8; 2]>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match code
        .as_ref()
        .and_then(|code| std::str::from_utf8(code).ok())
    {
        Some(code) => serializer.serialize_some(code),
        None => serializer.serialize_none(),
    }
}

/// One node of an answer.
#[derive(Debug, Serialize)]
struct CandidateView<'a> {
    node: &'a str,
    kind: registry::NodeKind,
    site: &'a str,
    url: &'a str,
    reason: &'static str,
    distance_km: f64,
    load: f64,
}

/// `/v1/locate` parameters, borrowed from the query string (decoded only where escaped).
#[derive(Debug, Default)]
struct LocateQuery<'a> {
    track: Option<Cow<'a, str>>,
    format: Option<Cow<'a, str>>,
    protocol: Option<Cow<'a, str>>,
    device: Option<Cow<'a, str>>,
    lat: Option<Cow<'a, str>>,
    lon: Option<Cow<'a, str>>,
    redirect: Option<Cow<'a, str>>,
    path: Option<Cow<'a, str>>,
}

impl<'a> LocateQuery<'a> {
    fn parse(query: &'a str) -> Result<Self, Error> {
        let mut parsed = Self::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "track" => &mut parsed.track,
                "format" => &mut parsed.format,
                "protocol" => &mut parsed.protocol,
                "device" => &mut parsed.device,
                "lat" => &mut parsed.lat,
                "lon" => &mut parsed.lon,
                "redirect" => &mut parsed.redirect,
                "path" => &mut parsed.path,
                other => {
                    return Err(Error::field(
                        "query",
                        format!("unknown parameter `{other}`"),
                    ));
                }
            };
            *slot = Some(value);
        }
        Ok(parsed)
    }
}

/// The client's address (connection, or trusted proxies' headers).
struct Peer(IpAddr);

impl FromRequestParts<Locator> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        locator: &Locator,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(telemetry::request_client_addr(
            parts,
            &locator.config.trusted_proxies,
        )))
    }
}

async fn locate(
    State(locator): State<Locator>,
    Peer(ip): Peer,
    uri: axum::http::Uri,
) -> Result<Response, Error> {
    let started = Instant::now();
    let query = LocateQuery::parse(uri.query().unwrap_or(""))?;
    let track = query.track.as_deref().unwrap_or("");
    if track.is_empty() || track.len() > 200 {
        return Err(Error::field("track", "required, at most 200 characters"));
    }
    let format = match query.format.as_deref() {
        None | Some("") => None,
        Some("hls") => Some(Format::Hls),
        Some("dash") => Some(Format::Dash),
        Some(_) => return Err(Error::field("format", "hls or dash")),
    };
    let protocol = match query.protocol.as_deref() {
        None | Some("") => None,
        Some("h1" | "http/1.1") => Some(Protocol::H1),
        Some("h2") => Some(Protocol::H2),
        Some("h3") => Some(Protocol::H3),
        Some(_) => return Err(Error::field("protocol", "h1, h2 or h3")),
    };
    let fixed = match (query.lat.as_deref(), query.lon.as_deref()) {
        (None, None) => None,
        (Some(lat), Some(lon)) => {
            let point = GeoPoint {
                lat: lat.parse().map_err(|_| Error::field("lat", "a number"))?,
                lon: lon.parse().map_err(|_| Error::field("lon", "a number"))?,
            };
            if !point.is_valid() {
                return Err(Error::field(
                    "lat",
                    "latitude -90..90 and longitude -180..180",
                ));
            }
            Some(point)
        }
        _ => return Err(Error::field("lat", "give both lat and lon, or neither")),
    };
    let redirect = matches!(query.redirect.as_deref(), Some("1" | "true" | "yes"));
    if let Some(path) = &query.path
        && (!path.starts_with('/')
            || path.starts_with("//")
            || path.len() > 2000
            || path.contains(['\r', '\n', ' ']))
    {
        return Err(Error::field(
            "path",
            "an absolute path such as /t/TOKEN/media/…",
        ));
    }
    if query
        .device
        .as_ref()
        .is_some_and(|device| device.len() > 200)
    {
        return Err(Error::field("device", "at most 200 characters"));
    }
    let answer = locator.locate(
        ip,
        fixed,
        &Want {
            track,
            format,
            protocol,
        },
    );
    locator.answers[answer.answer.reason() as usize].increment(1);
    locator
        .lookup_seconds
        .record(started.elapsed().as_secs_f64());
    let Some((_, url)) = answer.primary() else {
        return Err(Error::NoNode);
    };
    answer.count_selection();
    if redirect {
        let target = format!(
            "{}{}",
            url.trim_end_matches('/'),
            query.path.as_deref().unwrap_or("/")
        );
        return Ok((
            StatusCode::FOUND,
            [
                (header::LOCATION, target),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response());
    }
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

/// A JSON body decoded with the path of the offending field.
struct Body<T>(T);

impl<T: serde::de::DeserializeOwned> FromRequest<Locator> for Body<T> {
    type Rejection = Error;

    async fn from_request(request: Request, _: &Locator) -> Result<Self, Error> {
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY)
            .await
            .map_err(|_| Error::PayloadTooLarge)?;
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut deserializer)
            .map(Body)
            .map_err(|error| {
                let field = error.path().to_string();
                let message = error.inner().to_string();
                let field = if field == "." {
                    "body".to_owned()
                } else {
                    field
                };
                Error::field(field, message)
            })
    }
}

async fn register(
    State(locator): State<Locator>,
    headers: HeaderMap,
    Body(registration): Body<Registration>,
) -> Result<Response, Error> {
    locator.check_token(&headers)?;
    let outcome = locator.upsert(&registration)?;
    let status = if outcome == Upsert::Added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(serde_json::json!({"id": registration.id, "status": format!("{outcome:?}").to_lowercase()}))).into_response())
}

async fn heartbeat(
    State(locator): State<Locator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(registration): Body<Registration>,
) -> Result<Response, Error> {
    locator.check_token(&headers)?;
    if registration.id != id {
        return Err(Error::field("id", "the body's id must match the path's"));
    }
    let outcome = locator.upsert(&registration)?;
    Ok(
        Json(serde_json::json!({"id": id, "status": format!("{outcome:?}").to_lowercase()}))
            .into_response(),
    )
}

async fn deregister(
    State(locator): State<Locator>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Error> {
    locator.check_token(&headers)?;
    if locator.registry.remove(&id) {
        tracing::info!(message = "Node deregistered.", node = id);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NodeNotFound)
    }
}

async fn list_nodes(
    State(locator): State<Locator>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, Error> {
    locator.check_token(&headers)?;
    let now = locator.clock.now_ms();
    let timeout = locator.params().heartbeat_timeout_ms;
    let snapshot = locator.registry.snapshot();
    let nodes: Vec<serde_json::Value> = snapshot
        .nodes
        .iter()
        .map(|node| {
            let d = &node.description;
            serde_json::json!({
                "id": d.id, "kind": d.kind, "site": d.site, "urls": d.urls, "location": d.location,
                "prefixes": d.prefixes.len(), "static": node.is_static,
                "available": node.is_available(now, timeout), "load": node.load(),
                "last_seen_ms_ago": now - node.last_seen_ms.load(std::sync::atomic::Ordering::Relaxed),
                "selections": node.selections.load(std::sync::atomic::Ordering::Relaxed),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({"nodes": nodes})))
}

/// Serves the API on `listener` and the admin port on `admin`, watches the GeoIP file and
/// forgets long-silent nodes, until `shutdown`.
pub async fn run(
    locator: Locator,
    listener: TcpListener,
    admin: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(locator.config.drain_grace_secs);
    let (public_addr, admin_addr) = (listener.local_addr()?, admin.local_addr()?);
    let admin_task = tokio::spawn(telemetry::serve(
        admin,
        telemetry::admin_router("host-locator", Readiness::new(shutdown.clone())),
        shutdown.clone(),
        grace,
    ));
    let watcher = locator.geoip.clone().watch(
        Duration::from_secs(locator.config.geoip_reload_secs),
        shutdown.clone(),
    );
    let housekeeping = tokio::spawn({
        let locator = locator.clone();
        let shutdown = shutdown.clone();
        async move {
            let timeout = locator.params().heartbeat_timeout_ms;
            loop {
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let now = locator.clock.now_ms();
                let forgotten = locator.registry.forget_silent(now, timeout * 10);
                if forgotten > 0 {
                    tracing::info!(
                        message = "Forgot nodes silent for ten heartbeat timeouts.",
                        count = forgotten
                    );
                }
                let (nodes, stale) = locator.registry.census(now, timeout);
                metrics::gauge!("cadenza_locator_registry_nodes").set(nodes as f64);
                metrics::gauge!("cadenza_locator_stale_nodes").set(stale as f64);
                // Per-node selections are counted in the node (an atomic add per answer) and
                // published here once a second.
                for node in &locator.registry.snapshot().nodes {
                    let id = node.description.id.clone();
                    metrics::counter!("cadenza_locator_selections_total", "node" => id)
                        .absolute(node.selections.load(std::sync::atomic::Ordering::Relaxed));
                }
            }
        }
    });
    tracing::info!(message = "Host locator listening.", public = %public_addr, admin = %admin_addr);
    let served = telemetry::serve(listener, locator.router(), shutdown.clone(), grace).await;
    shutdown.trigger();
    let _ = tokio::join!(admin_task, watcher, housekeeping);
    tracing::info!(message = "Host locator stopped.");
    served.context("the public listener failed")
}
