//! The box's status: its state (ok, warning or error, with every reason, the worst deciding),
//! registration, parents, fill progress, disk use and the last hour's traffic — the document
//! `GET /status` serves and the text `isp-box status` prints from it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::fill::FillStatus;
use crate::report::HourSummary;

/// How the box is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Serving and filling as it should.
    Ok,
    /// Serving, with something to look at.
    Warning,
    /// Not serving, or about to stop.
    Error,
}

/// The state and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The worst level among the reasons.
    pub level: Level,
    /// Every reason it is not ok.
    pub reasons: Vec<String>,
}

impl State {
    /// 0 ok, 1 warning, 2 error (the metric and the CLI's exit status).
    pub fn level(&self) -> u8 {
        match self.level {
            Level::Ok => 0,
            Level::Warning => 1,
            Level::Error => 2,
        }
    }
}

/// Registration with the host locator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Whether the box registers at all.
    pub registers: bool,
    /// The health it reports (false while draining).
    pub healthy: bool,
    /// Seconds since the locator last accepted a heartbeat (since start if never).
    pub seconds_since_heartbeat: Option<u64>,
    /// After this long it stops serving.
    pub cutoff_secs: u64,
    /// Heartbeats failed since the last accepted one.
    pub failed_heartbeats: u64,
    /// Why the last one failed.
    pub last_error: Option<String>,
    /// The prefixes registered.
    pub prefixes: Vec<String>,
}

/// Disk and memory use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// Bytes on disk.
    pub used_bytes: u64,
    /// The disk tier's size.
    pub capacity_bytes: u64,
    /// Bytes in memory.
    pub memory_bytes: u64,
}

/// The whole status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The box's id.
    pub id: String,
    /// Its state.
    pub state: State,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Registration.
    pub registration: Registration,
    /// Parents in order.
    pub parents: Vec<String>,
    /// Pre-positioning.
    pub fill: FillStatus,
    /// Disk.
    pub disk: Disk,
    /// The last hour's traffic.
    pub last_hour: HourSummary,
}

/// What [`assemble`] reads.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// Box id.
    pub id: &'a str,
    /// Now, Unix ms.
    pub now_ms: i64,
    /// Start, Unix ms.
    pub started_ms: i64,
    /// Whether it registers.
    pub registers: bool,
    /// The health it reports.
    pub healthy: bool,
    /// Silence since the last accepted heartbeat.
    pub silence_ms: Option<u64>,
    /// The cut-off.
    pub cutoff_ms: u64,
    /// Failed heartbeats in a row.
    pub heartbeat_failures: u64,
    /// The last heartbeat error.
    pub heartbeat_error: Option<String>,
    /// Prefixes.
    pub prefixes: Vec<String>,
    /// Parents.
    pub parents: Vec<String>,
    /// Memory tier bytes.
    pub memory_bytes: u64,
    /// Disk tier bytes.
    pub disk_bytes: u64,
    /// Disk tier size.
    pub disk_capacity: u64,
    /// The fill.
    pub fill: FillStatus,
    /// The last hour.
    pub hour: HourSummary,
}

/// The status from its inputs: the state is the worst of every check.
pub fn assemble(inputs: Inputs<'_>) -> Status {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if let Some(silence) = inputs.silence_ms {
        if crate::hooks::is_cut_off(inputs.silence_ms, inputs.cutoff_ms) {
            errors.push(format!(
                "cut off: no heartbeat accepted by the host locator for {} s (limit {} s); not serving",
                silence / 1000,
                inputs.cutoff_ms / 1000
            ));
        } else if inputs.heartbeat_failures > 0 {
            warnings.push(format!(
                "{} heartbeat(s) failed: {}; serving stops after {} s without one",
                inputs.heartbeat_failures,
                inputs.heartbeat_error.as_deref().unwrap_or("unknown"),
                inputs.cutoff_ms / 1000
            ));
        }
    }
    if !inputs.healthy {
        warnings.push("draining: reported unhealthy, the locator sends no new clients".to_owned());
    }
    let fill = &inputs.fill;
    if fill.enabled {
        if let Some(error) = &fill.last_error {
            warnings.push(format!("fill: {error}"));
        }
        if fill.failures > 0 {
            warnings.push(format!(
                "fill: {} object(s) failed in this window",
                fill.failures
            ));
        }
        if fill.manifest_generated_at.is_some()
            && !fill.window_open
            && !fill.complete
            && fill.manifest_objects > 0
        {
            warnings.push(format!(
                "fill: the window closed with {} of {} manifest objects held",
                fill.objects_held, fill.manifest_objects
            ));
        }
    }
    if inputs.disk_capacity > 0 && inputs.disk_bytes > inputs.disk_capacity {
        warnings.push("disk tier over its size".to_owned());
    }
    let level = if !errors.is_empty() {
        Level::Error
    } else if !warnings.is_empty() {
        Level::Warning
    } else {
        Level::Ok
    };
    Status {
        id: inputs.id.to_owned(),
        state: State {
            level,
            reasons: errors.into_iter().chain(warnings).collect(),
        },
        uptime_secs: u64::try_from((inputs.now_ms - inputs.started_ms).max(0) / 1000).unwrap_or(0),
        registration: Registration {
            registers: inputs.registers,
            healthy: inputs.healthy,
            seconds_since_heartbeat: inputs.silence_ms.map(|ms| ms / 1000),
            cutoff_secs: inputs.cutoff_ms / 1000,
            failed_heartbeats: inputs.heartbeat_failures,
            last_error: inputs.heartbeat_error,
            prefixes: inputs.prefixes,
        },
        parents: inputs.parents,
        fill: inputs.fill,
        disk: Disk {
            used_bytes: inputs.disk_bytes,
            capacity_bytes: inputs.disk_capacity,
            memory_bytes: inputs.memory_bytes,
        },
        last_hour: inputs.hour,
    }
}

/// `value` in the largest of `units` (steps of 1000) that keeps it at 1 or more, one decimal.
fn scaled(value: u64, units: &[&str]) -> String {
    let mut scaled = value as f64;
    let mut unit = 0;
    while scaled >= 1000.0 && unit + 1 < units.len() {
        scaled /= 1000.0;
        unit += 1;
    }
    if unit == 0 && units[0] == "B" {
        format!("{value} B")
    } else {
        format!("{scaled:.1} {}", units[unit])
    }
}

/// Bytes for people: `1.5 GB`.
pub fn human_bytes(bytes: u64) -> String {
    scaled(bytes, &["B", "kB", "MB", "GB", "TB", "PB"])
}

/// Bits per second for people: `1.2 Gbit/s`.
pub fn human_rate(bps: u64) -> String {
    scaled(bps, &["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"])
}

fn percent(part: f64) -> String {
    format!("{:.1} %", part * 100.0)
}

fn time(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(at) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute()
        ),
        Err(_) => format!("{ms} ms"),
    }
}

/// The status as `isp-box status` prints it.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let level = match status.state.level {
        Level::Ok => "OK",
        Level::Warning => "WARNING",
        Level::Error => "ERROR",
    };
    let _ = writeln!(out, "ISP box {}: {level}", status.id);
    for reason in &status.state.reasons {
        let _ = writeln!(out, "  - {reason}");
    }
    let _ = writeln!(out, "up {} s", status.uptime_secs);
    let registration = &status.registration;
    let _ = writeln!(out, "\nRegistration");
    if registration.registers {
        let _ = writeln!(
            out,
            "  {} prefixes: {}",
            registration.prefixes.len(),
            registration.prefixes.join(", ")
        );
        let _ = writeln!(
            out,
            "  reported {}; last heartbeat accepted {} s ago (cut-off {} s)",
            if registration.healthy {
                "healthy"
            } else {
                "unhealthy (draining)"
            },
            registration.seconds_since_heartbeat.unwrap_or(0),
            registration.cutoff_secs
        );
    } else {
        let _ = writeln!(out, "  not registering (no node.locator configured)");
    }
    let _ = writeln!(out, "  parents: {}", status.parents.join(" → "));
    let fill = &status.fill;
    let _ = writeln!(out, "\nFill");
    if fill.enabled {
        let _ = writeln!(
            out,
            "  window {} ({} → {})",
            if fill.window_open { "open" } else { "closed" },
            time(fill.window_opens_at),
            time(fill.window_closes_at)
        );
        let _ = writeln!(
            out,
            "  manifest: {} tracks, {} objects, {}",
            fill.manifest_tracks,
            fill.manifest_objects,
            human_bytes(fill.manifest_bytes)
        );
        let _ = writeln!(
            out,
            "  held: {} of {} objects, {} of {}{}",
            fill.objects_held,
            fill.manifest_objects,
            human_bytes(fill.bytes_held),
            human_bytes(fill.manifest_bytes),
            if fill.complete { " (complete)" } else { "" }
        );
        let _ = writeln!(
            out,
            "  this window: {} objects, {}; rate {} of cap {}",
            fill.window_objects,
            human_bytes(fill.window_bytes),
            human_rate(fill.rate_bps),
            human_rate(fill.cap_bps)
        );
    } else {
        let _ = writeln!(out, "  not configured (demand only)");
    }
    let disk = &status.disk;
    let _ = writeln!(
        out,
        "\nDisk\n  {} of {} ({}), memory {}",
        human_bytes(disk.used_bytes),
        human_bytes(disk.capacity_bytes),
        percent(if disk.capacity_bytes == 0 {
            0.0
        } else {
            disk.used_bytes as f64 / disk.capacity_bytes as f64
        }),
        human_bytes(disk.memory_bytes)
    );
    let hour = &status.last_hour;
    let _ = writeln!(
        out,
        "\nLast hour: {} requests, {}; hit ratio {} of requests, {} of bytes",
        hour.requests,
        human_bytes(hour.bytes),
        percent(hour.request_hit_ratio),
        percent(hour.byte_hit_ratio)
    );
    let _ = writeln!(out, "  {:<12} {:>10} {:>12}", "served", "requests", "bytes");
    for class in &hour.classes {
        let _ = writeln!(
            out,
            "  {:<12} {:>10} {:>12}",
            class.class,
            class.requests,
            human_bytes(class.bytes)
        );
    }
    if !hour.top_tracks.is_empty() {
        let _ = writeln!(out, "  top tracks:");
        for track in &hour.top_tracks {
            let _ = writeln!(
                out,
                "    {:<40} {:>6} requests {:>10}",
                track.track_id,
                track.requests,
                human_bytes(track.bytes)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;

    fn inputs() -> Inputs<'static> {
        Inputs {
            id: "box-1",
            now_ms: 1_000_000,
            started_ms: 940_000,
            registers: true,
            healthy: true,
            silence_ms: Some(2_000),
            cutoff_ms: 300_000,
            heartbeat_failures: 0,
            heartbeat_error: None,
            prefixes: vec!["127.0.0.2/32".to_owned()],
            parents: vec!["http://edge".to_owned(), "http://origin".to_owned()],
            memory_bytes: 10,
            disk_bytes: 1_500_000,
            disk_capacity: 3_000_000,
            fill: FillStatus::default(),
            hour: Report::default().last_hour(1_000_000),
        }
    }

    #[test]
    fn the_state_is_the_worst_reason() {
        assert_eq!(assemble(inputs()).state.level, Level::Ok);
        let failing = Inputs {
            heartbeat_failures: 2,
            heartbeat_error: Some("unreachable".to_owned()),
            ..inputs()
        };
        let status = assemble(failing);
        assert_eq!(status.state.level, Level::Warning);
        assert!(
            status.state.reasons[0].contains("2 heartbeat(s) failed"),
            "{status:?}"
        );
        let cut = Inputs {
            silence_ms: Some(301_000),
            healthy: false,
            ..inputs()
        };
        let status = assemble(cut);
        assert_eq!(status.state.level, Level::Error);
        assert_eq!(status.state.reasons.len(), 2);
        assert!(status.state.reasons[0].starts_with("cut off"));
    }

    #[test]
    fn the_text_names_every_section() {
        let text = render(&assemble(inputs()));
        for needle in [
            "ISP box box-1: OK",
            "1 prefixes: 127.0.0.2/32",
            "parents: http://edge → http://origin",
            "not configured (demand only)",
            "1.5 MB of 3.0 MB (50.0 %)",
            "Last hour: 0 requests",
            "refused",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert_eq!(time(0), "1970-01-01 00:00 UTC");
        assert_eq!(time(1_796_601_600_000), "2026-12-07 00:00 UTC");
    }
}
