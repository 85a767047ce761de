//! Where clients and nodes are: a GeoIP database (MaxMind DB format) that is swapped
//! atomically when its file changes, and great-circle distances.
//!
//! The database is read into memory rather than memory-mapped: a mapped file that an operator
//! overwrites in place is undefined behaviour (a SIGBUS at best), which `maxminddb` rightly
//! marks `unsafe` and this workspace forbids. A City database costs its size in RAM (about
//! 60 MB for GeoLite2-City) and lookups are just as fast. A new file that does not parse
//! leaves the old database in service; the failure is logged and counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use maxminddb::Reader;
use serde::{Deserialize, Serialize};
use telemetry::Shutdown;

/// A point on Earth, in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    /// Latitude, -90 to 90.
    pub lat: f64,
    /// Longitude, -180 to 180.
    pub lon: f64,
}

impl GeoPoint {
    /// Whether both coordinates are in range and finite.
    pub fn is_valid(&self) -> bool {
        self.lat.is_finite()
            && self.lon.is_finite()
            && (-90.0..=90.0).contains(&self.lat)
            && (-180.0..=180.0).contains(&self.lon)
    }
}

/// Great-circle distance in kilometres (haversine, mean Earth radius).
pub fn distance_km(a: GeoPoint, b: GeoPoint) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0088;
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// A point as a unit vector on the sphere. Great-circle distance decreases as the dot product
/// of two unit vectors grows, so ranking by dot product ranks by distance exactly.
pub fn unit_vector(point: GeoPoint) -> [f64; 3] {
    let (lat, lon) = (point.lat.to_radians(), point.lon.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

/// Great-circle distance in km between two unit vectors with dot product `dot`.
pub fn distance_from_dot(dot: f64) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0088;
    let chord = (2.0 - 2.0 * dot).max(0.0).sqrt();
    2.0 * EARTH_RADIUS_KM * (chord / 2.0).min(1.0).asin()
}

/// What the database says about an address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoFix {
    /// Where it is.
    pub point: GeoPoint,
    /// ISO country code, if known (two ASCII letters).
    pub country: Option<[u8; 2]>,
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

/// Why a database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be opened or is not a MaxMind DB.
    #[error("GeoIP database {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    /// It opened but holds no locations (e.g. an ASN database).
    #[error("GeoIP database {0} is not a City-type database (no locations)")]
    NotCity(PathBuf),
}

/// The GeoIP database in service, if any.
#[derive(Debug)]
pub struct GeoIp {
    path: Option<PathBuf>,
    reader: ArcSwapOption<Db>,
    seen: Mutex<Option<Stamp>>,
}

impl GeoIp {
    /// No database: every address gets the default location.
    pub fn disabled() -> Self {
        Self {
            path: None,
            reader: ArcSwapOption::empty(),
            seen: Mutex::new(None),
        }
    }

    /// Opens the database at `path`.
    pub fn open(path: &Path) -> Result<Self, GeoError> {
        let reader = load(path)?;
        Ok(Self {
            path: Some(path.to_path_buf()),
            reader: ArcSwapOption::from_pointee(Db::new(reader)),
            seen: Mutex::new(stamp(path)),
        })
    }

    /// Whether a database is in service.
    pub fn is_enabled(&self) -> bool {
        self.reader.load().is_some()
    }

    /// The database's type and build time, for logs.
    pub fn describe(&self) -> Option<String> {
        self.reader.load().as_ref().map(|db| {
            format!(
                "{} built at {}",
                db.reader.metadata().database_type,
                db.reader.metadata().build_epoch
            )
        })
    }

    /// The location of `ip`; `None` for private and unknown addresses (and without a
    /// database).
    pub fn lookup(&self, ip: IpAddr) -> Option<GeoFix> {
        if !is_public(ip) {
            return None;
        }
        let guard = self.reader.load();
        let db = guard.as_ref()?;
        let result = db.reader.lookup(ip).ok()?;
        // Many networks share one record: each record is decoded once, then remembered by
        // its offset in the data section (for this version of the file only).
        let offset = result.offset()?;
        if let Some(fix) = db.fixes.get(offset) {
            return fix;
        }
        // Only two paths of the record are read; the rest (names in many languages,
        // subdivisions, postal codes) is skipped by size, never decoded.
        let fix = (|| {
            let location: Location = result.decode_path(&maxminddb::path!["location"]).ok()??;
            let point = GeoPoint {
                lat: location.latitude?,
                lon: location.longitude?,
            };
            let country = result
                .decode_path::<&str>(&maxminddb::path!["country", "iso_code"])
                .ok()
                .flatten()
                .and_then(|code| code.as_bytes().try_into().ok());
            Some(GeoFix { point, country })
        })();
        db.fixes.insert(offset, fix);
        fix
    }

    /// Reloads the database if its file changed. `Ok(true)` when a new one is in service.
    /// On error the old one stays.
    pub fn reload_if_changed(&self) -> Result<bool, GeoError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let current = stamp(path);
        {
            let seen = self.seen.lock().expect("geoip stamp lock");
            if current.is_none() || *seen == current {
                return Ok(false);
            }
        }
        // Record the attempt first, so a corrupt file is reported once, not every tick.
        *self.seen.lock().expect("geoip stamp lock") = current;
        let reader = load(path)?;
        self.reader.store(Some(Arc::new(Db::new(reader))));
        Ok(true)
    }

    /// Checks the file every `every` and reloads it when it changed, until `shutdown`.
    pub fn watch(
        self: Arc<Self>,
        every: Duration,
        shutdown: Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = tokio::time::sleep(every) => {}
                }
                match self.reload_if_changed() {
                    Ok(true) => {
                        metrics::counter!("cadenza_locator_geoip_reloads_total", "result" => "ok")
                            .increment(1);
                        tracing::info!(
                            message = "GeoIP database reloaded.",
                            database = self.describe().unwrap_or_default()
                        );
                    }
                    Ok(false) => {}
                    Err(error) => {
                        metrics::counter!("cadenza_locator_geoip_reloads_total", "result" => "error").increment(1);
                        tracing::error!(message = "GeoIP database reload failed; the previous one stays in service.", %error);
                    }
                }
            }
        })
    }
}

/// A database in service and the records decoded from it so far.
#[derive(Debug)]
struct Db {
    reader: Reader<Vec<u8>>,
    fixes: FixCache,
}

impl Db {
    fn new(reader: Reader<Vec<u8>>) -> Self {
        Self {
            reader,
            fixes: FixCache::new(),
        }
    }
}

/// Decoded records by data-section offset: 64 shards of bounded maps (a full shard is
/// cleared and refills), so memory stays bounded whatever the traffic.
#[derive(Debug)]
struct FixCache {
    shards: Box<[Mutex<FixShard>]>,
}

/// One shard: decoded records (or `None`: a record without a location) by offset.
type FixShard = HashMap<usize, Option<GeoFix>, OffsetHasher>;

const FIX_SHARDS: usize = 64;
const FIX_SHARD_CAPACITY: usize = 4096;

impl FixCache {
    fn new() -> Self {
        Self {
            shards: (0..FIX_SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
        }
    }

    fn shard(&self, offset: usize) -> &Mutex<FixShard> {
        // Records are a few dozen bytes apart; mix before choosing a shard.
        let mixed = (offset as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        &self.shards[mixed as usize % FIX_SHARDS]
    }

    fn get(&self, offset: usize) -> Option<Option<GeoFix>> {
        self.shard(offset)
            .lock()
            .expect("geoip fix cache lock")
            .get(&offset)
            .copied()
    }

    fn insert(&self, offset: usize, fix: Option<GeoFix>) {
        let mut shard = self.shard(offset).lock().expect("geoip fix cache lock");
        if shard.len() >= FIX_SHARD_CAPACITY {
            shard.clear();
        }
        shard.insert(offset, fix);
    }
}

/// Hashes an offset with one multiplication (offsets are not attacker-chosen keys: they come
/// from the database file, and each shard is bounded anyway).
type OffsetHasher = std::hash::BuildHasherDefault<MultiplyHasher>;

#[derive(Debug, Default)]
struct MultiplyHasher(u64);

impl std::hash::Hasher for MultiplyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, value: usize) {
        self.0 = (value as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn load(path: &Path) -> Result<Reader<Vec<u8>>, GeoError> {
    let reader = Reader::open_readfile(path).map_err(|source| GeoError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if !reader
        .metadata()
        .database_type
        .to_ascii_lowercase()
        .contains("city")
    {
        return Err(GeoError::NotCity(path.to_path_buf()));
    }
    Ok(reader)
}

/// What identifies a version of the file: modification time and size, and on Unix the inode
/// and change time too, so that a replacement written within one timestamp tick (with the
/// same size) is still seen — a rename always brings a new inode.
type Stamp = (SystemTime, u64, u64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let (inode, changed) = {
        use std::os::unix::fs::MetadataExt;
        (
            metadata.ino(),
            metadata.ctime_nsec() + metadata.ctime() * 1_000_000_000,
        )
    };
    #[cfg(not(unix))]
    let (inode, changed) = (0, 0);
    Some((metadata.modified().ok()?, metadata.len(), inode, changed))
}

/// Whether an address can be located (not private, loopback, link-local, documentation…).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        let london = GeoPoint {
            lat: 51.5074,
            lon: -0.1278,
        };
        let paris = GeoPoint {
            lat: 48.8566,
            lon: 2.3522,
        };
        let sydney = GeoPoint {
            lat: -33.8688,
            lon: 151.2093,
        };
        assert!((distance_km(london, paris) - 343.5).abs() < 2.0);
        assert!((distance_km(london, sydney) - 16_990.0).abs() < 30.0);
        assert_eq!(distance_km(paris, paris), 0.0);
        assert!(
            !GeoPoint {
                lat: 91.0,
                lon: 0.0
            }
            .is_valid()
        );
        assert!(
            !GeoPoint {
                lat: f64::NAN,
                lon: 0.0
            }
            .is_valid()
        );
    }

    #[test]
    fn private_addresses_are_not_located() {
        for ip in [
            "10.1.2.3",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["81.2.69.160", "2001:4860::1", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
