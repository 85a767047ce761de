//! The parent chain: an ordered list of parents (another edge, then the origin), each tried in
//! turn with timeouts; the first that answers without a server error wins.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http::{HeaderMap, HeaderName, HeaderValue};

/// A parent to fill from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// Base URL, without a trailing slash.
    pub base: String,
}

/// How the edge meets `https://` parents.
#[derive(Debug, Clone, Default)]
pub struct ParentTls {
    /// PEM CA certificates the parents' certificates must chain to.
    pub ca: Option<PathBuf>,
    /// PEM certificate and key presented to parents (mutual TLS).
    pub client: Option<(PathBuf, PathBuf)>,
}

/// What a fill asks its parents for.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// Path and query (canonical, without a token).
    pub path_and_query: String,
    /// Request headers to forward (Accept-Encoding normalised, the headers the object varies
    /// on, validators when revalidating).
    pub headers: HeaderMap,
}

/// How one parent failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentFailure {
    /// No response head within the first-byte timeout.
    Timeout,
    /// The connection could not be made or broke before a response.
    Connection,
    /// It answered with a server error (and another parent was left to ask).
    ServerError(http::StatusCode),
}

impl std::fmt::Display for ParentFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("timeout"),
            Self::Connection => f.write_str("error"),
            Self::ServerError(status) => write!(f, "server error {}", status.as_u16()),
        }
    }
}

/// Why no parent answered: each parent asked, with how it failed. Always the upstream's fault,
/// and a later request may succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Every parent failed to connect, timed out or answered with a server error.
    #[error("no parent answered: {}", describe(.0))]
    AllFailed(Vec<(String, ParentFailure)>),
}

fn describe(attempts: &[(String, ParentFailure)]) -> String {
    attempts
        .iter()
        .map(|(parent, failure)| format!("{parent}: {failure}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parents and the HTTP client that reaches them.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: reqwest::Client,
    /// Swapped whole when a node learns new parents (the ISP box asks the locator).
    parents: std::sync::Arc<arc_swap::ArcSwap<Vec<Parent>>>,
    fill_key: HeaderValue,
    first_byte_timeout: Duration,
    /// Longest wait for the next body chunk.
    pub idle_timeout: Duration,
}

impl Upstream {
    /// A client for `parents` with the given timeouts, authenticating with `fill_key` (and,
    /// over TLS, with the client certificate of `tls`).
    pub fn new(
        parents: Vec<Parent>,
        fill_key: &str,
        tls: &ParentTls,
        connect_timeout: Duration,
        first_byte_timeout: Duration,
        idle_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &tls.ca {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} is not a PEM certificate file", ca.display()))?;
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        if let Some((cert, key)) = &tls.client {
            let mut pem =
                std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?,
            );
            let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
                format!(
                    "{} and {} are not a PEM certificate and key",
                    cert.display(),
                    key.display()
                )
            })?;
            builder = builder.identity(identity);
        }
        let client = builder.build()?;
        let mut fill_key = HeaderValue::from_str(&format!("Bearer {fill_key}"))?;
        fill_key.set_sensitive(true);
        Ok(Self {
            client,
            parents: std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(parents)),
            fill_key,
            first_byte_timeout,
            idle_timeout,
        })
    }

    /// The parents now, in order.
    pub fn parents(&self) -> Vec<Parent> {
        self.parents.load().as_ref().clone()
    }

    /// Replaces the parents (fills under way keep the list they started with).
    pub fn set_parents(&self, parents: Vec<Parent>) {
        self.parents.store(std::sync::Arc::new(parents));
    }

    /// Asks each parent in turn. A 5xx from the last parent is returned as the answer; a 5xx
    /// from an earlier one moves on to the next.
    pub async fn fetch(&self, request: &FetchRequest) -> Result<reqwest::Response, UpstreamError> {
        let mut failures = Vec::new();
        let parents = self.parents.load_full();
        let last = parents.len().saturating_sub(1);
        for (index, parent) in parents.iter().enumerate() {
            let url = format!("{}{}", parent.base, request.path_and_query);
            let mut builder = self.client.get(&url);
            // A request passed through with its own credentials carries those instead.
            if !request.headers.contains_key(http::header::AUTHORIZATION) {
                builder = builder.header(http::header::AUTHORIZATION, self.fill_key.clone());
            }
            for (name, value) in &request.headers {
                builder = builder.header(name, value);
            }
            let started = Instant::now();
            let outcome = tokio::time::timeout(self.first_byte_timeout, builder.send()).await;
            metrics::histogram!("cadenza_edge_upstream_seconds", "parent" => index.to_string())
                .record(started.elapsed().as_secs_f64());
            let failure = match outcome {
                Err(_) => ParentFailure::Timeout,
                Ok(Err(_)) => ParentFailure::Connection,
                Ok(Ok(response)) if response.status().is_server_error() && index < last => {
                    ParentFailure::ServerError(response.status())
                }
                Ok(Ok(response)) => {
                    metrics::counter!("cadenza_edge_upstream_fetches_total", "parent" => index.to_string(), "outcome" => "answered").increment(1);
                    return Ok(response);
                }
            };
            let result = match failure {
                ParentFailure::Timeout => "timeout",
                ParentFailure::Connection => "error",
                ParentFailure::ServerError(_) => "server_error",
            };
            metrics::counter!("cadenza_edge_upstream_fetches_total", "parent" => index.to_string(), "outcome" => result).increment(1);
            tracing::warn!(message = "Parent failed; trying the next.", parent = %parent.base, outcome = result);
            failures.push((parent.base.clone(), failure));
        }
        Err(UpstreamError::AllFailed(failures))
    }
}

/// A parent's response headers without the hop-by-hop ones: those [`is_hop_by_hop`] names
/// and those its `Connection` header names (RFC 9110 §7.6.1).
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named = connection_names(headers);
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !is_hop_by_hop(name) && !named.iter().any(|token| token == name.as_str()) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// The field names a message's `Connection` header lists, lower-case: hop-by-hop for that
/// message, so never forwarded.
pub fn connection_names(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and others a cache must not store or forward.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "alt-svc"
    )
}
