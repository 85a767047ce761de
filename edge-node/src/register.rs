//! Registration with the host locator: the node announces itself (site, location, public
//! URLs per protocol, capacity), heartbeats its load and health, and deregisters when it
//! drains, so that players are steered to it only while it serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use telemetry::{Secret, Shutdown};

use crate::Addresses;
use crate::engine::Engine;

/// Where and how to register.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocatorConfig {
    /// The host locator's base URL.
    pub url: String,
    /// The node token it expects.
    pub token: Secret,
    /// This node's site.
    pub site: String,
    /// Latitude; with `lon`. Unset: the locator places the node by GeoIP of `address`.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude.
    #[serde(default)]
    pub lon: Option<f64>,
    /// Public address, for GeoIP placement.
    #[serde(default)]
    pub address: Option<std::net::IpAddr>,
    /// Public HTTP/1.1 base URL. Unset: the cleartext listener's.
    #[serde(default)]
    pub h1_url: Option<String>,
    /// Public HTTP/2 base URL. Unset: the TLS listener's, as `https://localhost:PORT`.
    #[serde(default)]
    pub h2_url: Option<String>,
    /// Public HTTP/3 base URL. Unset: as HTTP/2's when HTTP/3 runs.
    #[serde(default)]
    pub h3_url: Option<String>,
    /// Heartbeat interval, seconds.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// Capacity: concurrent connections.
    #[serde(default = "default_connections")]
    pub capacity_connections: u64,
    /// Capacity: egress in bits per second.
    #[serde(default = "default_egress")]
    pub capacity_egress_bps: u64,
}

fn default_heartbeat() -> u64 {
    2
}

fn default_connections() -> u64 {
    10_000
}

fn default_egress() -> u64 {
    10_000_000_000
}

/// What a node says of itself besides its addresses and load: its kind, the client prefixes
/// it covers (ISP boxes), whether it is healthy; and, back, how its heartbeats fare.
#[derive(Debug, Clone)]
pub struct Announce {
    /// `edge` or `isp-box`.
    pub kind: &'static str,
    /// Client prefixes covered (IPv4 and IPv6 CIDRs); empty for an edge.
    pub prefixes: Vec<String>,
    /// Shared with the node: the health it reports, the heartbeats' outcome.
    pub heartbeats: Arc<Heartbeats>,
}

impl Announce {
    /// An edge's: no prefixes, healthy.
    pub fn edge() -> Self {
        Self {
            kind: "edge",
            prefixes: Vec::new(),
            heartbeats: Arc::default(),
        }
    }
}

/// The heartbeats' state, shared between the registration task and the node.
#[derive(Debug)]
pub struct Heartbeats {
    /// What the node reports; set false to leave the answers while still heartbeating.
    pub healthy: AtomicBool,
    /// When the locator last accepted a heartbeat, ms on the engine's clock (0: never).
    pub last_accepted_ms: AtomicU64,
    /// Heartbeats refused or unanswered since the last accepted one.
    pub failures: AtomicU64,
    /// Why the last heartbeat failed, if it did.
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl Default for Heartbeats {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            last_accepted_ms: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
        }
    }
}

impl Heartbeats {
    fn failed(&self, error: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }

    /// Why the last heartbeat failed, if the last one did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|last| last.clone())
    }
}

/// Heartbeats until `shutdown`, then deregisters.
pub fn spawn(
    engine: Engine,
    config: LocatorConfig,
    addresses: &Addresses,
    shutdown: Shutdown,
    announce: Announce,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let h1 = config.h1_url.clone().or_else(|| {
        addresses
            .cleartext
            .map(|address| format!("http://{address}"))
    });
    let tls = addresses
        .tls
        .map(|address| format!("https://localhost:{}", address.port()));
    let h2 = config.h2_url.clone().or_else(|| tls.clone());
    let h3 = config
        .h3_url
        .clone()
        .or_else(|| tls.filter(|_| addresses.http3));
    tokio::spawn(async move {
        let id = engine.config().id.clone();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let base = config.url.trim_end_matches('/').to_owned();
        let interval = Duration::from_secs(config.heartbeat_secs.max(1));
        let mut last_bytes = engine.stats().bytes.load(Ordering::Relaxed);
        loop {
            let bytes = engine.stats().bytes.load(Ordering::Relaxed);
            let egress_bps = (bytes - last_bytes) * 8 / interval.as_secs().max(1);
            last_bytes = bytes;
            let location = match (config.lat, config.lon) {
                (Some(lat), Some(lon)) => json!({"lat": lat, "lon": lon}),
                _ => serde_json::Value::Null,
            };
            let heartbeats = &announce.heartbeats;
            let mut document = json!({
                "id": id,
                "kind": announce.kind,
                "site": config.site,
                "urls": {"h1": h1, "h2": h2, "h3": h3},
                "capacity": {"connections": config.capacity_connections, "egress_bps": config.capacity_egress_bps},
                "load": {"connections": engine.stats().connections.load(Ordering::Relaxed), "egress_bps": egress_bps},
                "healthy": heartbeats.healthy.load(Ordering::Relaxed),
                "overloaded": false,
                "prefixes": announce.prefixes,
            });
            if !location.is_null() {
                document["location"] = location;
            }
            if let Some(address) = config.address {
                document["address"] = json!(address);
            }
            let sent = client
                .post(format!("{base}/v1/nodes/{id}/heartbeat"))
                .bearer_auth(config.token.expose())
                .json(&document)
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    heartbeats
                        .last_accepted_ms
                        .store(engine.now_ms().max(1), Ordering::Relaxed);
                    heartbeats.failures.store(0, Ordering::Relaxed);
                    if let Ok(mut last) = heartbeats.last_error.lock() {
                        *last = None;
                    }
                }
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    tracing::warn!(message = "The host locator refused the heartbeat.", %status, body);
                    heartbeats.failed(format!("refused with {status}: {body}"));
                }
                Err(error) => {
                    tracing::warn!(message = "Heartbeat failed.", error = %error);
                    heartbeats.failed(format!("unreachable: {error}"));
                }
            }
            tokio::select! {
                () = shutdown.wait() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
        // Leave the answers at once rather than after the heartbeat timeout.
        let _ = client
            .delete(format!("{base}/v1/nodes/{id}"))
            .bearer_auth(config.token.expose())
            .send()
            .await;
        Ok(())
    })
}
