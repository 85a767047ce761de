//! The engine: one request in, one response out, whatever the protocol. It checks the request
//! (method, size, host, path, URL token), looks the object up in the cache tiers, serves it
//! fresh, serves it stale within the RFC 5861 windows, revalidates it, or joins (or starts) the
//! one fill for its key and streams as bytes arrive. Ranges and conditional requests are
//! answered here, from the cache or from a fill in progress.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, StreamBody};
use http_semantics::{BodyPlan, Planner, Precondition, Validators};
use serde_json::json;
use subtle::ConstantTimeEq as _;

use crate::cache::{Cache, Meta, Object, Tier, latin1, variant_key, vary_names};
use crate::config::Config;
use crate::fill::{Fill, FillEnd, FillFailure, FillHead, Fills};
use crate::freshness::{self, RequestDirectives, Use};
use crate::hooks::{Answer, CacheOutcome, Hooks};
use crate::upstream::{FetchRequest, Parent, Upstream, connection_names, end_to_end};

/// RFC 9211's response header.
const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

pub use crate::request::{Body, Protocol, RequestContext};

/// The caching engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("id", &self.inner.config.id)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: Config,
    cache: Cache,
    fills: Fills,
    upstream: Upstream,
    keyring: Option<url_token::Keyring>,
    hooks: Arc<dyn Hooks>,
    alt_svc: arc_swap::ArcSwapOption<HeaderValue>,
    stats: Stats,
    hot: Hot,
    clock: telemetry::Clock,
}

/// Metric handles and header values made once instead of per request (a registry lookup or a
/// `format!` per response shows in profiles at tens of thousands of requests a second).
struct Hot {
    requests: [[std::sync::OnceLock<metrics::Counter>; STATUS_LABELS.len()]; 3],
    outcomes: [std::sync::OnceLock<metrics::Counter>; CacheOutcome::ALL.len()],
    bytes: [std::sync::OnceLock<metrics::Counter>; 2],
    cache_status: [HeaderValue; CacheOutcome::ALL.len()],
}

impl Hot {
    fn new(id: &str) -> Self {
        Self {
            requests: Default::default(),
            outcomes: Default::default(),
            bytes: Default::default(),
            cache_status: CacheOutcome::ALL.map(|outcome| {
                HeaderValue::from_str(&format!("{id}; {}", outcome.cache_status()))
                    .unwrap_or_else(|_| HeaderValue::from_static("edge"))
            }),
        }
    }

    fn request(&self, protocol: Protocol, status: StatusCode) -> &metrics::Counter {
        let index = status_index(status);
        self.requests[protocol as usize][index].get_or_init(|| {
            metrics::counter!(
                "cadenza_edge_requests_total",
                "protocol" => protocol.as_str(),
                "status" => STATUS_LABELS[index]
            )
        })
    }

    fn outcome(&self, outcome: CacheOutcome) -> &metrics::Counter {
        self.outcomes[outcome.index()].get_or_init(
            || metrics::counter!("cadenza_edge_cache_total", "outcome" => outcome.as_str()),
        )
    }

    fn bytes(&self, hit: bool) -> &metrics::Counter {
        self.bytes[usize::from(hit)].get_or_init(|| {
            metrics::counter!(
                "cadenza_edge_bytes_served_total",
                "cache" => if hit { "hit" } else { "miss" }
            )
        })
    }
}

/// Counters behind the hit-ratio gauges.
#[derive(Debug, Default)]
pub struct Stats {
    /// Cacheable lookups.
    pub lookups: AtomicU64,
    /// Lookups answered from a tier.
    pub hits: AtomicU64,
    /// Body bytes sent for lookups.
    pub bytes: AtomicU64,
    /// Body bytes sent from a tier.
    pub hit_bytes: AtomicU64,
    /// Client connections open now (TCP and QUIC).
    pub connections: AtomicU64,
}

impl Engine {
    /// Builds the engine: opens the cache tiers and the parent client.
    pub fn new(config: Config, hooks: Arc<dyn Hooks>) -> anyhow::Result<Self> {
        Self::with_clock(config, hooks, telemetry::Clock::system())
    }

    /// Builds the engine on `clock`: every age, expiry and token check reads it, so that a
    /// test can move time by hand instead of sleeping.
    pub fn with_clock(
        config: Config,
        hooks: Arc<dyn Hooks>,
        clock: telemetry::Clock,
    ) -> anyhow::Result<Self> {
        let disk = config
            .disk_cache_dir
            .as_deref()
            .map(|dir| (dir, config.disk_cache_bytes));
        let cache = Cache::open(config.memory_cache_bytes, disk)?;
        let fill_key = config
            .fill_key
            .as_ref()
            .map(|key| key.expose().to_owned())
            .unwrap_or_default();
        let upstream = Upstream::new(
            config
                .parents
                .iter()
                .map(|base| Parent {
                    base: base.trim_end_matches('/').to_owned(),
                })
                .collect(),
            &fill_key,
            &crate::upstream::ParentTls {
                ca: config.parent_ca.clone(),
                client: config
                    .fill_client_cert
                    .clone()
                    .zip(config.fill_client_key.clone()),
            },
            Duration::from_millis(config.upstream_connect_timeout_ms),
            Duration::from_millis(config.upstream_first_byte_timeout_ms),
            Duration::from_millis(config.upstream_idle_timeout_ms),
        )?;
        let keyring = if config.token_keys.is_empty() {
            None
        } else {
            let keys = config
                .token_keys
                .iter()
                .map(|key| url_token::Key::new(key.id.clone(), key.secret.expose().as_bytes()))
                .collect::<Result<Vec<_>, _>>()?;
            let signing = config.token_keys[0].id.clone();
            Some(url_token::Keyring::new(keys, &signing)?)
        };
        let hot = Hot::new(&config.id);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                cache,
                fills: Fills::default(),
                upstream,
                keyring,
                hooks,
                alt_svc: arc_swap::ArcSwapOption::empty(),
                stats: Stats::default(),
                hot,
                clock,
            }),
        })
    }

    /// Advertises HTTP/3 on `port` in every TCP response.
    pub fn set_h3_port(&self, port: u16) {
        let value = HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")).ok();
        self.inner.alt_svc.store(value.map(Arc::new));
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The cache tiers.
    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// The hit counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Fills in progress.
    pub fn fills_in_progress(&self) -> usize {
        self.inner.fills.len()
    }

    /// Fills in progress whose parent's response head has arrived.
    pub fn fills_with_head(&self) -> usize {
        self.inner.fills.with_head()
    }

    /// The parent chain (an ISP box replaces its parents as it learns them).
    pub fn upstream(&self) -> &Upstream {
        &self.inner.upstream
    }

    /// Stores a parent's response fetched outside any client request (pre-positioning), as a
    /// fill of `path_and_query` would have — hop-by-hop headers dropped, a `Date` added where
    /// missing, freshness from the headers — but on disk only, so that what is pre-positioned
    /// does not push what clients are playing out of memory (in memory where there is no disk
    /// tier). Waits for the write. `requested_ms` is when the fetch was sent, on the engine's
    /// clock (see [`Self::now_ms`]). Returns whether the response was storable (and so stored).
    pub async fn store_cold(
        &self,
        path_and_query: &str,
        status: StatusCode,
        parent_headers: &HeaderMap,
        requested_ms: u64,
        body: Bytes,
    ) -> bool {
        let response_ms = self.now_ms();
        let mut headers = end_to_end(parent_headers);
        self.ensure_date(&mut headers, response_ms);
        let key = variant_key(path_and_query, &vary_names(&headers), &HeaderMap::new());
        let object = self.object(&key, status, &headers, requested_ms, response_ms, body);
        if !object.meta.policy.storable {
            return false;
        }
        self.inner.cache.insert_cold(Arc::new(object)).await;
        true
    }

    /// Whether a cache tier holds `path_and_query` (as a request without varied headers
    /// would look it up).
    pub fn holds(&self, path_and_query: &str) -> bool {
        let key = self.inner.cache.key_for(path_and_query, &HeaderMap::new());
        self.inner.cache.contains(&key)
    }

    /// Waits until no fill runs, background revalidations included.
    pub async fn fills_idle(&self) {
        self.inner.fills.idle().await;
    }

    /// Answers one request.
    pub async fn handle(&self, request: Parts, context: RequestContext) -> Response<Body> {
        let mut response = self.route(&request, &context).await;
        if context.protocol != Protocol::Http3 {
            if let Some(alt_svc) = self.inner.alt_svc.load_full() {
                response
                    .headers_mut()
                    .insert(header::ALT_SVC, (*alt_svc).clone());
            }
        } else {
            // The TCP servers add a Date where a response has none; the QUIC one does not.
            let now = self.now_ms();
            self.ensure_date(response.headers_mut(), now);
        }
        self.inner
            .hot
            .request(context.protocol, response.status())
            .increment(1);
        response
    }

    async fn route(&self, request: &Parts, context: &RequestContext) -> Response<Body> {
        let config = &self.inner.config;
        if request.method == Method::OPTIONS {
            return preflight(&request.headers);
        }
        if request.method != Method::GET && request.method != Method::HEAD {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "an edge serves GET, HEAD and OPTIONS",
            );
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            return response;
        }
        let target_len = request
            .uri
            .path_and_query()
            .map_or(0, |target| target.as_str().len());
        if target_len > config.max_uri_bytes {
            return error(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                "the request target is too long",
            );
        }
        if let Err(refusal) = self.check_host(request) {
            return refusal.response();
        }
        let raw_path = request.uri.path();
        let (token, rest) = match url_token::split_path(raw_path) {
            Some((token, rest)) => (Some(token), rest),
            None => (None, raw_path),
        };
        let Ok(path) = url_token::canonical_path(rest) else {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_path",
                "the path is not acceptable (dot segments, encoded slashes, control characters or too long)",
            );
        };
        if let Err(refusal) = self.check_token(token, &path, &request.headers) {
            return refusal.response();
        }
        let child = self.is_child_edge(&request.headers);
        if let Some(response) = self
            .inner
            .hooks
            .request_filter(request, &path, context, child)
        {
            return response;
        }
        // The path is the start of the path and query: logging borrows it from there.
        let path_len = path.len();
        let path_and_query = match request.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let primary = self.inner.hooks.cache_key(&path_and_query, request);
        let (mut response, outcome) = self.lookup(request, &primary, &path_and_query).await;
        // Errors made here say what the cache did too.
        if !response.headers().contains_key(&CACHE_STATUS) {
            response.headers_mut().insert(
                CACHE_STATUS.clone(),
                self.inner.hot.cache_status[outcome.index()].clone(),
            );
        }
        self.inner.hot.outcome(outcome).increment(1);
        let answer = Answer {
            path: &path_and_query[..path_len],
            status: response.status(),
            outcome,
            context,
            body_bytes: http_body::Body::size_hint(response.body())
                .exact()
                .or_else(|| {
                    response
                        .headers()
                        .get(header::CONTENT_LENGTH)?
                        .to_str()
                        .ok()?
                        .parse()
                        .ok()
                }),
            child,
        };
        self.inner.hooks.logging(request, &answer);
        response
    }

    fn check_host(&self, request: &Parts) -> Result<(), Refusal> {
        let hosts = &self.inner.config.hosts;
        let host = request.uri.host().map(str::to_owned).or_else(|| {
            request
                .headers
                .get(header::HOST)
                .and_then(|value| value.to_str().ok())
                .map(|value| strip_port(value).to_owned())
        });
        let Some(host) = host else {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "host_required",
                "the request names no host",
            ));
        };
        if hosts.is_empty() || hosts.iter().any(|known| known.eq_ignore_ascii_case(&host)) {
            Ok(())
        } else {
            Err(Refusal(
                StatusCode::MISDIRECTED_REQUEST,
                "unknown_host",
                "this node does not serve that host",
            ))
        }
    }

    fn check_token(
        &self,
        token: Option<&str>,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), Refusal> {
        let config = &self.inner.config;
        let protected = config
            .token_prefixes
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()));
        if !protected || self.is_child_edge(headers) {
            return Ok(());
        }
        let refuse = |code: &'static str, message: &'static str| {
            metrics::counter!("cadenza_edge_token_refusals_total", "reason" => code).increment(1);
            Err(Refusal(StatusCode::FORBIDDEN, code, message))
        };
        let (Some(token), Some(keyring)) = (token, &self.inner.keyring) else {
            return refuse(
                "token_required",
                "this path needs a URL token: /t/{token}/…",
            );
        };
        match keyring.verify(token, path, self.now_ms() / 1000, config.token_skew_secs) {
            Ok(_) => Ok(()),
            Err(url_token::TokenError::Expired { .. }) => {
                refuse("token_expired", "the URL token has expired")
            }
            Err(url_token::TokenError::OutOfScope) => refuse(
                "token_out_of_scope",
                "the URL token does not cover this path",
            ),
            Err(_) => refuse("token_invalid", "the URL token is not valid"),
        }
    }

    fn is_child_edge(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.inner.config.fill_key else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())))
    }

    async fn lookup(
        &self,
        request: &Parts,
        primary: &str,
        path_and_query: &str,
    ) -> (Response<Body>, CacheOutcome) {
        let inner = &self.inner;
        inner.stats.lookups.fetch_add(1, Ordering::Relaxed);
        // RFC 9111 §3.5: a request carrying its own credentials is not answered from the
        // shared cache and its response is not stored; it goes to the parents as it came.
        // (A child edge's fill key is the one Authorization the cache serves.)
        if request.headers.contains_key(header::AUTHORIZATION)
            && !self.is_child_edge(&request.headers)
        {
            let response = self.pass_through(request, path_and_query, true).await;
            return (response, CacheOutcome::Bypass);
        }
        let directives = if request.headers.contains_key(header::CACHE_CONTROL)
            || request.headers.contains_key(header::PRAGMA)
        {
            RequestDirectives::parse(&request.headers)
        } else {
            RequestDirectives::default()
        };
        let key = inner.cache.key_for(primary, &request.headers);
        let now = self.now_ms();
        let stale = match inner.cache.get(&key).await {
            Some((object, tier)) => {
                match object.meta.policy.use_at(object.age_ms(now), &directives) {
                    Use::Fresh => {
                        let outcome = match tier {
                            Tier::Memory => CacheOutcome::HitMemory,
                            Tier::Disk => CacheOutcome::HitDisk,
                        };
                        return (self.serve_object(request, &object, outcome).await, outcome);
                    }
                    Use::StaleAccepted => {
                        let outcome = CacheOutcome::StaleAccepted;
                        return (self.serve_object(request, &object, outcome).await, outcome);
                    }
                    Use::StaleWhileRevalidate => {
                        // Serve the stale copy now; revalidate behind it.
                        let stale = Some(object.clone());
                        self.start_fill(request, &key, primary, path_and_query, stale, &[]);
                        let outcome = CacheOutcome::StaleWhileRevalidate;
                        return (self.serve_object(request, &object, outcome).await, outcome);
                    }
                    Use::Revalidate => Some(object),
                }
            }
            None => None,
        };
        if directives.only_if_cached {
            // RFC 9111 §5.2.1.7: nothing stored that this request accepts, and no parent may
            // be asked.
            let response = error(
                StatusCode::GATEWAY_TIMEOUT,
                "not_cached",
                "only-if-cached: the cache holds no response this request accepts",
            );
            return (response, CacheOutcome::NotCached);
        }
        if directives.no_store {
            // Nothing of this exchange may be stored: fetched for this client alone.
            let response = self.pass_through(request, path_and_query, false).await;
            return (response, CacheOutcome::Bypass);
        }
        let mut fill = self.start_fill(request, &key, primary, path_and_query, stale.clone(), &[]);
        let mut waited = fill.wait_head().await;
        if let Ok(head) = &waited {
            // A fill started before the response's Vary was known is keyed by the primary key
            // alone; a request with other values for the varied headers makes its own fill,
            // keyed by its variant (RFC 9111 §4.1).
            let names = vary_names(&head.headers);
            let mine = variant_key(primary, &names, &request.headers);
            if mine != head.variant {
                fill = self.start_fill(request, &mine, primary, path_and_query, None, &names);
                waited = fill.wait_head().await;
            }
        }
        match waited {
            Ok(head) => {
                let outcome = if stale.is_some() {
                    CacheOutcome::Revalidated
                } else {
                    CacheOutcome::Miss
                };
                (
                    self.serve_fill(request, &fill, &head, outcome).await,
                    outcome,
                )
            }
            Err(FillEnd::Complete(object)) => {
                let outcome = CacheOutcome::Revalidated;
                (self.serve_object(request, &object, outcome).await, outcome)
            }
            Err(FillEnd::Bypass) => (
                self.pass_through(request, path_and_query, false).await,
                CacheOutcome::Bypass,
            ),
            Err(FillEnd::Failed(reason)) => {
                tracing::warn!(message = "Fill failed.", path = path_and_query, fault = ?reason.fault(), retryable = reason.retryable(), reason = %reason);
                if let Some(stale) = stale {
                    let policy = &stale.meta.policy;
                    if policy.usable_on_error(stale.age_ms(self.now_ms())) {
                        let outcome = CacheOutcome::StaleIfError;
                        return (self.serve_object(request, &stale, outcome).await, outcome);
                    }
                    if policy.must_revalidate {
                        // RFC 9111 §5.2.2.2: a response that must be revalidated and cannot
                        // be is answered with 504.
                        let response = error(
                            StatusCode::GATEWAY_TIMEOUT,
                            "revalidation_failed",
                            "the stored response must be revalidated and no parent answered",
                        );
                        return (response, CacheOutcome::Error);
                    }
                }
                (
                    error(
                        StatusCode::BAD_GATEWAY,
                        "upstream_unavailable",
                        "no parent could provide the object",
                    ),
                    CacheOutcome::Error,
                )
            }
        }
    }

    /// Joins the fill for this request's cache key (`key`: the primary key with the values of
    /// whatever headers the stored variants are known to vary on), starting it if none runs.
    /// The parent gets the request's values of the headers `stale` varies on and of those
    /// `vary` names; with `stale`, its validators; without, the request's own
    /// `If-None-Match`/`If-Modified-Since` (so that the fill is keyed by them too, and only
    /// requests with the same conditions share its answer, which may be a 304).
    fn start_fill(
        &self,
        request: &Parts,
        key: &str,
        primary: &str,
        path_and_query: &str,
        stale: Option<Arc<Object>>,
        vary: &[String],
    ) -> Arc<Fill> {
        let gzip = http_semantics::accepts_gzip(&request.headers);
        let mut fill_key = format!("{key}\u{0}{}", if gzip { "gzip" } else { "identity" });
        let hop = connection_names(&request.headers);
        // With If-Match or If-Unmodified-Since too, the whole object is fetched and every
        // precondition evaluated here, in RFC 9110 §13.2.2's order (a parent's 304 to the
        // If-None-Match alone would skip the If-Match that comes first).
        let forward_conditions = stale.is_none()
            && !request.headers.contains_key(header::IF_MATCH)
            && !request.headers.contains_key(header::IF_UNMODIFIED_SINCE);
        let conditions: Vec<(HeaderName, HeaderValue)> = if forward_conditions {
            [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE]
                .into_iter()
                .filter(|name| !hop.iter().any(|named| named == name.as_str()))
                .flat_map(|name| {
                    request
                        .headers
                        .get_all(&name)
                        .iter()
                        .map(move |value| (name.clone(), value.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        } else {
            Vec::new()
        };
        for (name, value) in &conditions {
            fill_key.push('\u{0}');
            fill_key.push_str(name.as_str());
            fill_key.push(':');
            fill_key.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        let (fill, created) = self.inner.fills.join(&fill_key);
        if created {
            let mut headers = HeaderMap::new();
            if gzip {
                headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            }
            // Forward whatever the response is known to vary on (other than Accept-Encoding,
            // which is normalised above), so the parent selects the same representation.
            let stale_vary = stale.iter().flat_map(|stale| stale.meta.vary.iter());
            for name in stale_vary.chain(vary) {
                if name == "accept-encoding" || headers.contains_key(name.as_str()) {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                    for value in request.headers.get_all(&name) {
                        headers.append(name.clone(), value.clone());
                    }
                }
            }
            if let Some(stale) = &stale {
                if let Some(etag) = stale.headers.get(header::ETAG) {
                    headers.insert(header::IF_NONE_MATCH, etag.clone());
                } else if let Some(modified) = stale.headers.get(header::LAST_MODIFIED) {
                    headers.insert(header::IF_MODIFIED_SINCE, modified.clone());
                }
            }
            for (name, value) in conditions {
                headers.append(name, value);
            }
            let mut fetch = FetchRequest {
                path_and_query: path_and_query.to_owned(),
                headers,
            };
            self.inner.hooks.upstream_request_filter(&mut fetch);
            let engine = self.clone();
            let primary = primary.to_owned();
            let request_headers = request.headers.clone();
            let task_fill = fill.clone();
            tokio::spawn(async move {
                engine
                    .run_fill(&task_fill, &primary, fetch, &request_headers, stale)
                    .await;
                engine.inner.fills.remove(&fill_key, &task_fill);
            });
        }
        fill
    }

    async fn run_fill(
        &self,
        fill: &Arc<Fill>,
        primary: &str,
        fetch: FetchRequest,
        request_headers: &HeaderMap,
        stale: Option<Arc<Object>>,
    ) {
        let inner = &self.inner;
        let request_time = self.now_ms();
        let end = |outcome: &'static str, end: FillEnd| {
            metrics::counter!("cadenza_edge_fills_total", "outcome" => outcome).increment(1);
            fill.finish(end);
        };
        let mut response = match inner.upstream.fetch(&fetch).await {
            Ok(response) => response,
            Err(failure) => return end("failed", FillEnd::Failed(failure.into())),
        };
        let response_time = self.now_ms();
        let status = response.status();
        let mut headers = end_to_end(response.headers());
        self.ensure_date(&mut headers, response_time);
        if let Some(stale) = &stale {
            if status == StatusCode::NOT_MODIFIED {
                // Freshened: the stored body with the new headers (RFC 9111 §4.3.4), its Date
                // and Age among them.
                let mut merged = stale.headers.clone();
                for name in headers.keys() {
                    if name != header::CONTENT_LENGTH {
                        merged.remove(name);
                    }
                }
                for (name, value) in &headers {
                    if name != header::CONTENT_LENGTH {
                        merged.append(name.clone(), value.clone());
                    }
                }
                let object = Arc::new(self.object(
                    &stale.meta.key,
                    stale.status(),
                    &merged,
                    request_time,
                    response_time,
                    stale.body.clone(),
                ));
                if object.meta.policy.storable {
                    inner.cache.insert(object.clone());
                }
                return end("revalidated", FillEnd::Complete(object));
            }
            if status.is_server_error() {
                return end("failed", FillEnd::Failed(FillFailure::ParentStatus(status)));
            }
        }
        let content_length = if status == StatusCode::NOT_MODIFIED {
            Some(0)
        } else {
            response.content_length()
        };
        let max = inner.config.max_object_bytes;
        if content_length.is_some_and(|length| length > max) {
            return end("bypassed", FillEnd::Bypass);
        }
        let names = vary_names(&headers);
        let key = variant_key(primary, &names, request_headers);
        fill.set_head(FillHead {
            status,
            headers: headers.clone(),
            content_length,
            variant: key.clone(),
            response_time_ms: response_time,
            initial_age_ms: freshness::initial_age_ms(&headers, request_time, response_time),
        });
        let idle = inner.upstream.idle_timeout;
        let mut received = 0u64;
        loop {
            match tokio::time::timeout(idle, response.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    received += chunk.len() as u64;
                    if received > max {
                        return end("failed", FillEnd::Failed(FillFailure::TooLarge));
                    }
                    fill.push(chunk);
                }
                Ok(Ok(None)) => break,
                Ok(Err(failure)) => {
                    return end(
                        "failed",
                        FillEnd::Failed(FillFailure::Body(failure.to_string())),
                    );
                }
                Err(_) => return end("failed", FillEnd::Failed(FillFailure::IdleTimeout)),
            }
        }
        if content_length.is_some_and(|length| length != received) {
            return end("failed", FillEnd::Failed(FillFailure::ShortBody));
        }
        let object = Arc::new(self.object(
            &key,
            status,
            &headers,
            request_time,
            response_time,
            fill.body(),
        ));
        if object.meta.policy.storable {
            inner.cache.insert(object.clone());
            end("stored", FillEnd::Complete(object));
        } else {
            end("not_stored", FillEnd::Complete(object));
        }
    }

    fn object(
        &self,
        key: &str,
        status: StatusCode,
        headers: &HeaderMap,
        request_ms: u64,
        response_ms: u64,
        body: Bytes,
    ) -> Object {
        let policy = freshness::policy(status, headers, response_ms / 1000);
        let meta = Meta {
            key: key.to_owned(),
            status: status.as_u16(),
            // Age is recomputed on every use; everything else is kept byte for byte (values
            // with obs-text too, such as an entity tag in Latin-1).
            headers: headers
                .iter()
                .filter(|(name, _)| *name != header::AGE)
                .map(|(name, value)| (name.as_str().to_owned(), latin1(value.as_bytes())))
                .collect(),
            response_time_ms: response_ms,
            initial_age_ms: freshness::initial_age_ms(headers, request_ms, response_ms),
            policy,
            vary: vary_names(headers),
        };
        self.inner.cache.object(meta, body)
    }

    /// Answers from a stored object.
    async fn serve_object(
        &self,
        request: &Parts,
        object: &Arc<Object>,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let mut headers = object.headers.clone();
        headers.insert(header::AGE, age_value(object.age_ms(self.now_ms())));
        let source = Source::Stored(object.body.clone());
        self.respond(
            request,
            object.status(),
            headers,
            Some(object.body.len() as u64),
            source,
            outcome,
        )
        .await
    }

    /// Answers from a fill in progress.
    async fn serve_fill(
        &self,
        request: &Parts,
        fill: &Arc<Fill>,
        head: &FillHead,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let mut headers = head.headers.clone();
        let age = head
            .initial_age_ms
            .saturating_add(self.now_ms().saturating_sub(head.response_time_ms));
        headers.insert(header::AGE, age_value(age));
        let source = Source::Filling(fill.clone());
        self.respond(
            request,
            head.status,
            headers,
            head.content_length,
            source,
            outcome,
        )
        .await
    }

    /// Adds a `Date` to a parent's response that has none (RFC 9110 §6.6.1: a cache that
    /// stores or forwards such a response adds one).
    fn ensure_date(&self, headers: &mut HeaderMap, now_ms: u64) {
        if !headers.contains_key(header::DATE)
            && let Ok(value) = HeaderValue::from_str(&http_semantics::http_date(
                std::time::UNIX_EPOCH + Duration::from_millis(now_ms),
            ))
        {
            headers.insert(header::DATE, value);
        }
    }

    /// Milliseconds since the Unix epoch, on the engine's clock.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.clock.now_ms()).unwrap_or(0)
    }

    async fn respond(
        &self,
        request: &Parts,
        status: StatusCode,
        mut headers: HeaderMap,
        length: Option<u64>,
        source: Source,
        outcome: CacheOutcome,
    ) -> Response<Body> {
        let stats = &self.inner.stats;
        if outcome.is_hit() {
            stats.hits.fetch_add(1, Ordering::Relaxed);
        }
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(
            CACHE_STATUS.clone(),
            self.inner.hot.cache_status[outcome.index()].clone(),
        );
        let head_only = request.method == Method::HEAD;
        let count = |bytes: u64| {
            stats.bytes.fetch_add(bytes, Ordering::Relaxed);
            if outcome.is_hit() {
                stats.hit_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            self.inner.hot.bytes(outcome.is_hit()).increment(bytes);
        };
        if status == StatusCode::NOT_MODIFIED {
            // The parent's answer to this request's own conditions.
            return build(status, headers, empty());
        }
        if status != StatusCode::OK {
            // Other statuses are relayed whole, ranges and validators aside.
            let body = match (head_only, length) {
                (true, _) => empty(),
                (false, _) => source.whole(),
            };
            if let Some(length) = length {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
                count(if head_only { 0 } else { length });
            }
            return build(status, headers, body);
        }
        let etag = headers
            .get(header::ETAG)
            .map(|value| value.as_bytes().to_vec());
        let last_modified = headers
            .get(header::LAST_MODIFIED)
            .and_then(|value| value.to_str().ok())
            .and_then(http_semantics::parse_http_date);
        let validators = Validators {
            etag: etag.as_deref(),
            last_modified,
        };
        let planner = Planner::new(&request.headers, validators, self.inner.config.max_ranges);
        match planner.preconditions() {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                for name in [
                    header::CONTENT_TYPE,
                    header::CONTENT_ENCODING,
                    header::CONTENT_RANGE,
                ] {
                    headers.remove(name);
                }
                return build(StatusCode::NOT_MODIFIED, headers, empty());
            }
            Precondition::Failed => {
                return error(
                    StatusCode::PRECONDITION_FAILED,
                    "precondition_failed",
                    "the object does not match the request's preconditions",
                );
            }
        }
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        // Ranges need the length; a fill of unknown length is waited for.
        let (length, source) = match (planner.range(), length, source) {
            (Some(_), None, Source::Filling(fill)) => match fill.wait_end().await {
                FillEnd::Complete(object) => (
                    Some(object.body.len() as u64),
                    Source::Stored(object.body.clone()),
                ),
                _ => return broke_off(),
            },
            (_, length, source) => (length, source),
        };
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let plan = planner.body(length, &content_type);
        if plan == BodyPlan::Unsatisfiable {
            let mut response = error(
                plan.status(),
                "range_not_satisfiable",
                "no requested range overlaps the object",
            );
            plan.set_headers(response.headers_mut(), length);
            return response;
        }
        plan.set_headers(&mut headers, length);
        if let Some(sent) = plan.body_len(length) {
            count(if head_only { 0 } else { sent });
        }
        let status = plan.status();
        let body = match plan {
            _ if head_only => empty(),
            BodyPlan::Full | BodyPlan::Unsatisfiable => source.whole(),
            BodyPlan::Single(range) => match source {
                Source::Stored(bytes) => {
                    full(bytes.slice(range.start as usize..range.end as usize))
                }
                Source::Filling(fill) => stream_body(fill.stream(range.start, Some(range.end))),
            },
            BodyPlan::Multipart(parts) => {
                let bytes = match source {
                    Source::Stored(bytes) => bytes,
                    Source::Filling(fill) => match fill.wait_end().await {
                        FillEnd::Complete(object) => object.body.clone(),
                        _ => return broke_off(),
                    },
                };
                full(parts.body_from(&bytes))
            }
        };
        build(status, headers, body)
    }

    /// Fetches a response for this one client straight from the parents, storing nothing:
    /// objects too large to cache, requests with `no-store`, and (with `credentials`) requests
    /// with their own `Authorization`, which goes to the parent in place of the fill key. The
    /// request's range, conditions and cache directives go with it.
    async fn pass_through(
        &self,
        request: &Parts,
        path_and_query: &str,
        credentials: bool,
    ) -> Response<Body> {
        let mut headers = HeaderMap::new();
        let mut names = vec![
            header::RANGE,
            header::IF_RANGE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_UNMODIFIED_SINCE,
            header::CACHE_CONTROL,
            header::PRAGMA,
        ];
        if credentials {
            names.push(header::AUTHORIZATION);
        }
        let hop = connection_names(&request.headers);
        names.retain(|name| !hop.iter().any(|named| named == name.as_str()));
        for name in names {
            for value in request.headers.get_all(&name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let fetch = FetchRequest {
            path_and_query: path_and_query.to_owned(),
            headers,
        };
        let response = match self.inner.upstream.fetch(&fetch).await {
            Ok(response) => response,
            Err(_) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    "no parent could provide the object",
                );
            }
        };
        let status = response.status();
        let mut headers = end_to_end(response.headers());
        self.ensure_date(&mut headers, self.now_ms());
        headers.insert(
            CACHE_STATUS.clone(),
            self.inner.hot.cache_status[CacheOutcome::Bypass.index()].clone(),
        );
        let bodiless = request.method == Method::HEAD
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::NO_CONTENT;
        let body = if bodiless {
            empty()
        } else {
            stream_body(
                response
                    .bytes_stream()
                    .map(|chunk| chunk.map_err(std::io::Error::other)),
            )
        };
        build(status, headers, body)
    }
}

/// The `Age` value of an age in milliseconds: whole seconds (RFC 9111 §5.1).
fn age_value(age_ms: u64) -> HeaderValue {
    HeaderValue::from(age_ms / 1000)
}

/// A request refused before the cache: status, stable code, message.
struct Refusal(StatusCode, &'static str, &'static str);

impl Refusal {
    fn response(&self) -> Response<Body> {
        error(self.0, self.1, self.2)
    }
}

/// Where a response's bytes come from.
enum Source {
    Stored(Bytes),
    Filling(Arc<Fill>),
}

impl Source {
    fn whole(self) -> Body {
        match self {
            Self::Stored(bytes) => full(bytes),
            Self::Filling(fill) => stream_body(fill.stream(0, None)),
        }
    }
}

fn build(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> Body {
    full(Bytes::new())
}

fn stream_body<S>(stream: S) -> Body
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    StreamBody::new(stream.map(|chunk| chunk.map(http_body::Frame::data))).boxed_unsync()
}

/// A JSON error response in the platform's one shape.
/// 502 for a response whose parent broke off before the bytes a range needs arrived.
fn broke_off() -> Response<Body> {
    error(
        StatusCode::BAD_GATEWAY,
        "upstream_unavailable",
        "the parent's response broke off",
    )
}

pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = json!({"error": {"status": status.as_u16(), "code": code, "message": message}});
    let mut response = build(
        status,
        HeaderMap::new(),
        full(Bytes::from(body.to_string())),
    );
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

fn preflight(headers: &HeaderMap) -> Response<Body> {
    build(
        StatusCode::NO_CONTENT,
        http_semantics::preflight_headers(headers),
        empty(),
    )
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |inner| &inner[1..]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Every status label, exact codes first.
const STATUS_LABELS: [&str; 13] = [
    "200", "206", "304", "400", "403", "404", "416", "502", "1xx", "2xx", "3xx", "4xx", "5xx",
];

/// The position of a status's label in [`STATUS_LABELS`]: its own for the common codes, its
/// class otherwise.
fn status_index(status: StatusCode) -> usize {
    let exact = [200, 206, 304, 400, 403, 404, 416, 502];
    exact
        .iter()
        .position(|code| *code == status.as_u16())
        .unwrap_or_else(|| match status.as_u16() / 100 {
            1 => 8,
            2 => 9,
            3 => 10,
            4 => 11,
            _ => 12,
        })
}
