//! What the box tells its ISP's engineers: every client request counted by how it was served
//! (memory, disk, stale, or a miss with its class), per minute for the last hour, with the
//! tracks that took the most bytes; the same counts as Prometheus metrics.
//!
//! Miss classes: `cold` (never held), `evicted` (held once, pushed out), `expired` (held but
//! stale, revalidated with a parent), `uncacheable` (relayed, not stored), `failed` (no parent
//! answered), `refused` (outside the box's prefixes, or the box is cut off).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use edge_node::CacheOutcome;
use metrics::Counter;
use serde::{Deserialize, Serialize};

/// How one request was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Fresh from memory.
    Memory,
    /// Fresh from disk.
    Disk,
    /// Stale from a tier (within a stale window).
    Stale,
    /// Never held.
    Cold,
    /// Held once, evicted since.
    Evicted,
    /// Held but expired: revalidated with a parent.
    Expired,
    /// Not storable: relayed.
    Uncacheable,
    /// No parent answered.
    Failed,
    /// Refused: outside the prefixes, or cut off.
    Refused,
}

impl Served {
    /// Every class, in [`Self::index`] order.
    pub const ALL: [Self; 9] = [
        Self::Memory,
        Self::Disk,
        Self::Stale,
        Self::Cold,
        Self::Evicted,
        Self::Expired,
        Self::Uncacheable,
        Self::Failed,
        Self::Refused,
    ];

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Label in metrics and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Disk => "disk",
            Self::Stale => "stale",
            Self::Cold => "cold",
            Self::Evicted => "evicted",
            Self::Expired => "expired",
            Self::Uncacheable => "uncacheable",
            Self::Failed => "failed",
            Self::Refused => "refused",
        }
    }

    /// Whether the bytes came from the box.
    pub fn is_hit(self) -> bool {
        matches!(self, Self::Memory | Self::Disk | Self::Stale)
    }

    /// The class of an engine outcome; `held_before` tells an eviction from a cold miss, and
    /// is asked only of a miss (a hit, most requests, costs no lookup).
    pub fn of(outcome: CacheOutcome, held_before: impl FnOnce() -> bool) -> Self {
        match outcome {
            CacheOutcome::HitMemory => Self::Memory,
            CacheOutcome::HitDisk => Self::Disk,
            CacheOutcome::StaleWhileRevalidate
            | CacheOutcome::StaleIfError
            | CacheOutcome::StaleAccepted => Self::Stale,
            CacheOutcome::Revalidated => Self::Expired,
            CacheOutcome::Miss if held_before() => Self::Evicted,
            CacheOutcome::Miss => Self::Cold,
            CacheOutcome::Bypass => Self::Uncacheable,
            CacheOutcome::Error | CacheOutcome::NotCached => Self::Failed,
        }
    }
}

const CLASSES: usize = Served::ALL.len();

#[derive(Debug, Default)]
struct Minute {
    minute: i64,
    requests: [u64; CLASSES],
    bytes: [u64; CLASSES],
    tracks: HashMap<String, (u64, u64)>,
}

/// The last hour's counts and the keys ever held.
#[derive(Debug)]
pub struct Report {
    minutes: Mutex<VecDeque<Minute>>,
    /// Hashes of the keys the box has held (a ghost list: tells evicted from cold misses).
    held: moka::sync::Cache<u128, ()>,
    /// Each class's request and byte counters, looked up once (as the engine's are) instead
    /// of in the metrics registry per request.
    counters: [OnceLock<(Counter, Counter)>; CLASSES],
}

impl Default for Report {
    fn default() -> Self {
        Self {
            minutes: Mutex::new(VecDeque::with_capacity(61)),
            held: moka::sync::Cache::new(4_000_000),
            counters: Default::default(),
        }
    }
}

/// One class's share of the last hour.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassCount {
    /// The class.
    pub class: String,
    /// Requests.
    pub requests: u64,
    /// Body bytes.
    pub bytes: u64,
}

/// A track's share of the last hour.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackCount {
    /// The track id.
    pub track_id: String,
    /// Requests for its objects.
    pub requests: u64,
    /// Bytes of them served.
    pub bytes: u64,
}

/// The last hour, summed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HourSummary {
    /// Requests from clients.
    pub requests: u64,
    /// Body bytes to clients.
    pub bytes: u64,
    /// Requests served from the box ÷ requests (0 when none).
    pub request_hit_ratio: f64,
    /// Bytes served from the box ÷ bytes (0 when none).
    pub byte_hit_ratio: f64,
    /// Every class, hits first.
    pub classes: Vec<ClassCount>,
    /// The ten tracks that took the most bytes.
    pub top_tracks: Vec<TrackCount>,
}

/// The track a media path belongs to: `/media/{track}/…`.
pub fn track_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/media/")?;
    let track = rest.split('/').next()?;
    (!track.is_empty() && rest.len() > track.len()).then_some(track)
}

fn key_hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

impl Report {
    /// Remembers that the box holds `key` (so that a later miss on it counts as evicted).
    pub fn held(&self, key: &str) {
        self.held.insert(key_hash(key), ());
    }

    /// Whether the box has held `key` before.
    pub fn was_held(&self, key: &str) -> bool {
        self.held.contains_key(&key_hash(key))
    }

    /// Counts one request for `path` at `now_ms`.
    pub fn record(&self, now_ms: i64, served: Served, bytes: u64, path: &str) {
        let (requests, bytes_counter) = self.counters[served.index()].get_or_init(|| {
            (
                metrics::counter!("cadenza_isp_requests_total", "class" => served.as_str()),
                metrics::counter!("cadenza_isp_bytes_total", "class" => served.as_str()),
            )
        });
        requests.increment(1);
        bytes_counter.increment(bytes);
        let minute = now_ms.div_euclid(60_000);
        let Ok(mut minutes) = self.minutes.lock() else {
            return;
        };
        if minutes.back().is_none_or(|last| last.minute != minute) {
            minutes.push_back(Minute {
                minute,
                ..Minute::default()
            });
        }
        while minutes
            .front()
            .is_some_and(|first| first.minute <= minute - 60)
        {
            minutes.pop_front();
        }
        if let Some(current) = minutes.back_mut().filter(|last| last.minute == minute) {
            current.requests[served.index()] += 1;
            current.bytes[served.index()] += bytes;
            if let Some(track) = track_of(path) {
                // A track already counted this minute costs no allocation.
                match current.tracks.get_mut(track) {
                    Some(entry) => {
                        entry.0 += 1;
                        entry.1 += bytes;
                    }
                    None => {
                        current.tracks.insert(track.to_owned(), (1, bytes));
                    }
                }
            }
        }
    }

    /// The hour up to `now_ms`.
    pub fn last_hour(&self, now_ms: i64) -> HourSummary {
        let minute = now_ms.div_euclid(60_000);
        let mut requests = [0u64; CLASSES];
        let mut bytes = [0u64; CLASSES];
        let mut tracks: HashMap<String, (u64, u64)> = HashMap::new();
        if let Ok(minutes) = self.minutes.lock() {
            for counted in minutes.iter().filter(|m| m.minute > minute - 60) {
                for class in 0..CLASSES {
                    requests[class] += counted.requests[class];
                    bytes[class] += counted.bytes[class];
                }
                for (track, (count, size)) in &counted.tracks {
                    let entry = tracks.entry(track.clone()).or_default();
                    entry.0 += count;
                    entry.1 += size;
                }
            }
        }
        let total_requests: u64 = requests.iter().sum();
        let total_bytes: u64 = bytes.iter().sum();
        let hits = |counts: &[u64; CLASSES]| -> u64 {
            Served::ALL
                .iter()
                .filter(|served| served.is_hit())
                .map(|served| counts[served.index()])
                .sum()
        };
        let ratio = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                part as f64 / whole as f64
            }
        };
        let mut top: Vec<TrackCount> = tracks
            .into_iter()
            .map(|(track_id, (requests, bytes))| TrackCount {
                track_id,
                requests,
                bytes,
            })
            .collect();
        top.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then_with(|| a.track_id.cmp(&b.track_id))
        });
        top.truncate(10);
        HourSummary {
            requests: total_requests,
            bytes: total_bytes,
            request_hit_ratio: ratio(hits(&requests), total_requests),
            byte_hit_ratio: ratio(hits(&bytes), total_bytes),
            classes: Served::ALL
                .iter()
                .map(|served| ClassCount {
                    class: served.as_str().to_owned(),
                    requests: requests[served.index()],
                    bytes: bytes[served.index()],
                })
                .collect(),
            top_tracks: top,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hour_sums_its_minutes_and_forgets_older_ones() {
        let report = Report::default();
        let start = 1_000 * 60_000;
        report.record(start, Served::Cold, 100, "/media/a/v1/128k/seg-00001.m4s");
        report.record(
            start + 30 * 60_000,
            Served::Disk,
            300,
            "/media/a/v1/128k/seg-00002.m4s",
        );
        report.record(
            start + 59 * 60_000,
            Served::Memory,
            600,
            "/media/b/v1/64k/init.mp4",
        );
        let hour = report.last_hour(start + 59 * 60_000);
        assert_eq!(hour.requests, 3);
        assert_eq!(hour.bytes, 1_000);
        assert!((hour.byte_hit_ratio - 0.9).abs() < 1e-9);
        assert_eq!(hour.top_tracks[0].track_id, "b");
        assert_eq!(hour.top_tracks[1].bytes, 400);
        // An hour after the first: it is gone.
        let later = report.last_hour(start + 60 * 60_000);
        assert_eq!(later.requests, 2);
        assert!((later.request_hit_ratio - 1.0).abs() < 1e-9);
    }

    #[test]
    fn misses_are_classed_by_what_the_box_held() {
        let report = Report::default();
        assert_eq!(
            Served::of(CacheOutcome::Miss, || report.was_held("/k")),
            Served::Cold
        );
        report.held("/k");
        assert_eq!(
            Served::of(CacheOutcome::Miss, || report.was_held("/k")),
            Served::Evicted
        );
        assert_eq!(
            Served::of(CacheOutcome::Revalidated, || true),
            Served::Expired
        );
        assert_eq!(
            Served::of(CacheOutcome::Bypass, || false),
            Served::Uncacheable
        );
        assert_eq!(track_of("/media/t9/v2/master.m3u8"), Some("t9"));
        assert_eq!(track_of("/media/t9"), None);
        assert_eq!(track_of("/healthz"), None);
    }
}
