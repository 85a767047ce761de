//! The host locator's typed configuration: defaults that run on one machine, layered under a
//! TOML file, `CADENZA_*` variables and flags, then checked by [`Config::validate`].

use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use telemetry::{LogFormat, Secret};

use crate::geo::GeoPoint;
use crate::registry::Registration;

/// Everything the locator needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the public API (`/v1/locate`, `/v1/nodes`).
    pub listen: SocketAddr,
    /// Address of the admin port (`/metrics`, `/healthz`, `/readyz`).
    pub admin_listen: SocketAddr,
    /// Bearer token nodes present to register and heartbeat. Unset: only the static nodes of
    /// this file exist, and registrations are refused.
    pub node_token: Option<Secret>,
    /// A MaxMind DB (GeoIP2/GeoLite2 City, or DB-IP City) file. Unset: every client is placed
    /// in `default_location` unless its prefix belongs to an ISP box.
    pub geoip_db: Option<PathBuf>,
    /// How often to check the GeoIP file for a new version, in seconds.
    pub geoip_reload_secs: u64,
    /// Where clients with private or unknown addresses are taken to be.
    pub default_location: GeoPoint,
    /// A node silent for longer than this leaves every answer, in seconds.
    pub heartbeat_timeout_secs: u64,
    /// How far (km) a fully loaded site is pushed back when ranking by distance; the penalty
    /// grows with the square of load (0: distance only).
    pub load_penalty_km: f64,
    /// Most candidates in an answer (primary and fallbacks).
    pub max_candidates: usize,
    /// Peers whose `Forwarded`/`X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Nodes declared here rather than registered; they never expire.
    pub static_nodes: Vec<Registration>,
    /// Log line format.
    pub log_format: LogFormat,
    /// How long in-flight requests may finish after SIGTERM, in seconds.
    pub drain_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9082)),
            node_token: None,
            geoip_db: None,
            geoip_reload_secs: 30,
            default_location: GeoPoint {
                lat: 50.11,
                lon: 8.68,
            },
            heartbeat_timeout_secs: 10,
            load_penalty_km: 500.0,
            max_candidates: 5,
            trusted_proxies: Vec::new(),
            static_nodes: Vec::new(),
            log_format: LogFormat::Human,
            drain_grace_secs: 5,
        }
    }
}

pub use telemetry::{ConfigError, DaemonConfig};

impl DaemonConfig for Config {
    fn log_format(&self) -> LogFormat {
        self.log_format
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, problem: &str| ConfigError::invalid(field, problem);
        if !self.default_location.is_valid() {
            return Err(invalid(
                "default_location",
                "latitude -90..90 and longitude -180..180",
            ));
        }
        if self.heartbeat_timeout_secs == 0 || self.geoip_reload_secs == 0 {
            return Err(invalid(
                "heartbeat_timeout_secs",
                "intervals must be positive",
            ));
        }
        if !(0.0..=20_000.0).contains(&self.load_penalty_km) {
            return Err(invalid("load_penalty_km", "between 0 and 20000"));
        }
        if self.max_candidates == 0 || self.max_candidates > 50 {
            return Err(invalid("max_candidates", "between 1 and 50"));
        }
        if self
            .node_token
            .as_ref()
            .is_some_and(|token| token.expose().len() < 16)
        {
            return Err(invalid("node_token", "at least 16 characters"));
        }
        for (index, node) in self.static_nodes.iter().enumerate() {
            if let Err(errors) = node.validate(|_| None, self.default_location) {
                let first = &errors[0];
                return Err(invalid(
                    &format!("static_nodes[{index}].{}", first.field),
                    &first.message,
                ));
            }
        }
        Ok(())
    }
}
