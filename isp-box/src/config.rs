//! The ISP box's typed configuration: the edge engine's settings under `[node]`, and the box's
//! own — the client prefixes it serves, its peers, how long it may run cut off from the host
//! locator, and its fill window and cap — layered like every daemon's (defaults, TOML file,
//! `CADENZA_*` variables, flags), then checked by [`Config::validate`].

use std::net::SocketAddr;
use std::path::PathBuf;

#[cfg(test)]
use figment::providers::Format as _;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use telemetry::{LogFormat, Secret};

/// Everything an ISP box needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The engine: listeners, TLS, cache tiers, URL-token keys, the fill key, the host
    /// locator (`[node.locator]`) — every edge-node setting. `node.parents` are the last
    /// resort: the origin.
    pub node: edge_node::Config,
    /// The client prefixes the box serves (IPv4 and IPv6 CIDRs, as the ISP announces them);
    /// every other client gets 403 `outside_coverage`. Registered with the host locator.
    pub prefixes: Vec<IpNet>,
    /// Peer boxes of the same ISP (base URLs), asked before any edge.
    pub peers: Vec<String>,
    /// How many of the nearest edges (asked from the host locator) come after the peers.
    pub nearest_edges: usize,
    /// How often the nearest edges are asked for again, seconds.
    pub parents_refresh_secs: u64,
    /// After this long without a heartbeat the host locator accepted, the box stops serving
    /// clients (503 `cut_off`) and says so in its status, seconds.
    pub locator_cutoff_secs: u64,
    /// Pre-positioning.
    pub fill: FillConfig,
}

/// Pre-positioning: the manifest, the window, the cap.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FillConfig {
    /// The control plane's base URL. Unset: no pre-positioning (demand only).
    pub control_plane: Option<String>,
    /// The box's token for its fill manifest (as the control plane's `isp_boxes` lists it).
    pub token: Option<Secret>,
    /// Start of the daily fill window, local time `HH:MM`.
    pub window_start: String,
    /// Length of the window, hours (24: always).
    pub window_hours: u32,
    /// The box's local time against UTC, minutes (UTC+2: 120).
    pub utc_offset_minutes: i32,
    /// The cap on fill traffic, bits per second (Open Connect: 1.2 Gb/s per box).
    pub rate_bps: u64,
    /// Share of `node.disk_cache_bytes` the manifest may take; the rest is for what
    /// subscribers ask that the manifest did not hold.
    pub disk_share: f64,
    /// How often the manifest is asked for again during the window, seconds.
    pub manifest_refresh_secs: u64,
    /// How often the fill checks its window and work, milliseconds.
    pub poll_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        let node = edge_node::Config {
            id: "isp-box-1".to_owned(),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8090))),
            tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8490))),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            disk_cache_dir: Some(PathBuf::from("/var/cache/cadenza-isp-box")),
            disk_cache_bytes: 400 * 1000 * 1000 * 1000,
            memory_cache_bytes: 8 * 1024 * 1024 * 1024,
            log_format: LogFormat::Json,
            ..edge_node::Config::default()
        };
        Self {
            node,
            prefixes: Vec::new(),
            peers: Vec::new(),
            nearest_edges: 2,
            parents_refresh_secs: 30,
            locator_cutoff_secs: 300,
            fill: FillConfig::default(),
        }
    }
}

impl Default for FillConfig {
    fn default() -> Self {
        Self {
            control_plane: None,
            token: None,
            window_start: "02:00".to_owned(),
            window_hours: 12,
            utc_offset_minutes: 0,
            rate_bps: 1_200_000_000,
            disk_share: 0.8,
            manifest_refresh_secs: 3_600,
            poll_ms: 30_000,
        }
    }
}

pub use telemetry::{ConfigError, DaemonConfig};

/// Slowest cap the 1 %-in-10-s promise holds for: the bucket's 10 ms burst and one read of a
/// parent's body (up to 512 KiB) stay within 1 % of ten seconds' worth (64 Mbit/s).
pub const MIN_RATE_BPS: u64 = 64_000_000;

impl DaemonConfig for Config {
    fn log_format(&self) -> LogFormat {
        self.node.log_format
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.node.validate()?;
        let invalid = |field: &str, problem: &str| ConfigError::invalid(field, problem);
        if self.prefixes.is_empty() {
            return Err(invalid(
                "prefixes",
                "list the client prefixes the box serves",
            ));
        }
        if self.prefixes.iter().any(|net| *net != net.trunc()) {
            return Err(invalid(
                "prefixes",
                "a prefix has host bits set (write 192.0.2.0/24, not 192.0.2.1/24)",
            ));
        }
        for peer in &self.peers {
            if !(peer.starts_with("http://") || peer.starts_with("https://")) {
                return Err(invalid("peers", "peers are http:// or https:// URLs"));
            }
        }
        if self.node.disk_cache_dir.is_none() {
            return Err(invalid(
                "node.disk_cache_dir",
                "a box keeps its cache on disk: set a directory",
            ));
        }
        if self.parents_refresh_secs == 0 || self.locator_cutoff_secs == 0 {
            return Err(invalid(
                "locator_cutoff_secs",
                "parents_refresh_secs and locator_cutoff_secs are positive",
            ));
        }
        let fill = &self.fill;
        if fill.control_plane.is_some() != fill.token.is_some() {
            return Err(invalid(
                "fill.token",
                "fill.control_plane and fill.token go together",
            ));
        }
        if let Some(url) = &fill.control_plane
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("fill.control_plane", "an http:// or https:// URL"));
        }
        if FillWindow::from_config(fill).is_none() {
            return Err(invalid(
                "fill.window_start",
                "window_start is HH:MM, window_hours 1..=24, utc_offset_minutes within ±14 h",
            ));
        }
        if fill.rate_bps < MIN_RATE_BPS {
            return Err(invalid(
                "fill.rate_bps",
                "at least 64000000 (64 Mbit/s): below that one read can break the 1 % promise",
            ));
        }
        if !(fill.disk_share > 0.0 && fill.disk_share <= 1.0) {
            return Err(invalid("fill.disk_share", "between 0 (excluded) and 1"));
        }
        if fill.manifest_refresh_secs == 0 || fill.poll_ms == 0 {
            return Err(invalid(
                "fill.poll_ms",
                "manifest_refresh_secs and poll_ms are positive",
            ));
        }
        Ok(())
    }
}

/// The daily fill window, in minutes of the box's local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillWindow {
    /// Local minute of the day it opens.
    pub start_minute: u32,
    /// Its length in minutes (1440: always open).
    pub minutes: u32,
    /// Local time minus UTC, minutes.
    pub utc_offset_minutes: i32,
}

const DAY_MINUTES: i64 = 24 * 60;

impl FillWindow {
    /// The window of `fill`, if its fields are well-formed.
    pub fn from_config(fill: &FillConfig) -> Option<Self> {
        let (hours, minutes) = fill.window_start.split_once(':')?;
        if hours.len() != 2 || minutes.len() != 2 {
            return None;
        }
        let hours: u32 = hours.parse().ok()?;
        let minutes: u32 = minutes.parse().ok()?;
        if hours > 23 || minutes > 59 || !(1..=24).contains(&fill.window_hours) {
            return None;
        }
        if fill.utc_offset_minutes.abs() > 14 * 60 {
            return None;
        }
        Some(Self {
            start_minute: hours * 60 + minutes,
            minutes: fill.window_hours * 60,
            utc_offset_minutes: fill.utc_offset_minutes,
        })
    }

    fn minutes_into(&self, now_ms: i64) -> i64 {
        let local = now_ms.div_euclid(60_000) + i64::from(self.utc_offset_minutes);
        (local - i64::from(self.start_minute)).rem_euclid(DAY_MINUTES)
    }

    /// Whether the window is open at `now_ms` (Unix ms).
    pub fn is_open(&self, now_ms: i64) -> bool {
        self.minutes_into(now_ms) < i64::from(self.minutes)
    }

    /// When the window that is open at `now_ms`, or the next one, opens and closes (Unix ms).
    pub fn bounds(&self, now_ms: i64) -> (i64, i64) {
        let into = self.minutes_into(now_ms);
        let minute_start = now_ms.div_euclid(60_000) * 60_000;
        let opened = minute_start - into * 60_000;
        let opened = if into < i64::from(self.minutes) {
            opened
        } else {
            opened + DAY_MINUTES * 60_000
        };
        (opened, opened + i64::from(self.minutes) * 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;

    const PACKAGED: &str = include_str!("../packaging/isp-box.toml");

    #[test]
    fn the_packaged_configuration_is_valid_and_names_every_field() {
        let config: Config =
            Figment::from(figment::providers::Serialized::defaults(Config::default()))
                .merge(figment::providers::Toml::string(PACKAGED))
                .extract()
                .unwrap();
        config.validate().unwrap();
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let mut missing = Vec::new();
        let mut walk = vec![(String::new(), &defaults)];
        while let Some((prefix, value)) = walk.pop() {
            let Some(fields) = value.as_object() else {
                continue;
            };
            for (name, inner) in fields {
                // Mentioned as a key, set or commented out.
                let named = PACKAGED.lines().any(|line| {
                    let line = line.trim_start_matches(['#', ' ']);
                    line.starts_with(&format!("{name} =")) || line == format!("[{prefix}{name}]")
                });
                if !named {
                    missing.push(format!("{prefix}{name}"));
                }
                if inner.is_object() {
                    walk.push((format!("{prefix}{name}."), inner));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "isp-box.toml does not document {missing:?}"
        );
    }

    fn window(start: &str, hours: u32, offset: i32) -> FillWindow {
        FillWindow::from_config(&FillConfig {
            window_start: start.to_owned(),
            window_hours: hours,
            utc_offset_minutes: offset,
            ..FillConfig::default()
        })
        .unwrap()
    }

    const HOUR: i64 = 3_600_000;

    #[test]
    fn the_window_opens_at_local_start_and_wraps_midnight() {
        // 02:00–14:00 at UTC+2 is 00:00–12:00 UTC.
        let w = window("02:00", 12, 120);
        let day = 20_000 * 24 * HOUR;
        assert!(w.is_open(day));
        assert!(w.is_open(day + 11 * HOUR + 59 * 60_000));
        assert!(!w.is_open(day + 12 * HOUR));
        assert!(!w.is_open(day - 1));
        assert_eq!(w.bounds(day + HOUR), (day, day + 12 * HOUR));
        assert_eq!(
            w.bounds(day + 13 * HOUR),
            (day + 24 * HOUR, day + 36 * HOUR)
        );
        // 22:00 for 6 hours crosses midnight.
        let night = window("22:00", 6, 0);
        assert!(night.is_open(day + 23 * HOUR));
        assert!(night.is_open(day + 24 * HOUR + 3 * HOUR));
        assert!(!night.is_open(day + 24 * HOUR + 4 * HOUR));
        assert!(window("00:00", 24, 0).is_open(day + 17 * HOUR));
    }

    #[test]
    fn malformed_windows_are_refused() {
        for (start, hours, offset) in [
            ("2:00", 12, 0),
            ("24:00", 12, 0),
            ("02:60", 12, 0),
            ("02:00", 0, 0),
            ("02:00", 25, 0),
            ("02:00", 12, 15 * 60),
        ] {
            let fill = FillConfig {
                window_start: start.to_owned(),
                window_hours: hours,
                utc_offset_minutes: offset,
                ..FillConfig::default()
            };
            assert!(
                FillWindow::from_config(&fill).is_none(),
                "{start} {hours} {offset}"
            );
        }
    }
}
