//! The memo of nearest sites per place that each registry snapshot carries: bounded, sharded,
//! and empty in every new snapshot (only a new snapshot can move sites).

use crate::geo::GeoPoint;

/// How many nearest sites are ranked by load before falling back to a full scan.
pub const NEAR_SITES: usize = 8;

/// The nearest sites of a place: at most [`NEAR_SITES`] `(site, distance km)`, nearest first.
#[derive(Debug, Clone, Copy)]
pub struct Near {
    pub(crate) sites: [(usize, f64); NEAR_SITES],
    pub(crate) len: usize,
}

impl Near {
    /// The sites, nearest first.
    pub fn as_slice(&self) -> &[(usize, f64)] {
        &self.sites[..self.len]
    }
}

/// `nearest_sites` answers by place, per snapshot: 32 shards of bounded maps (a full shard
/// is cleared and refills), so memory stays bounded whatever the traffic.
#[derive(Debug)]
pub struct NearMemo {
    shards: Box<[std::sync::Mutex<NearShard>]>,
}

type NearShard = std::collections::HashMap<(u64, u64), Near, PlaceHasher>;

const NEAR_SHARDS: usize = 32;
pub(crate) const NEAR_SHARD_CAPACITY: usize = 4096;

impl Default for NearMemo {
    fn default() -> Self {
        Self {
            shards: (0..NEAR_SHARDS)
                .map(|_| std::sync::Mutex::new(NearShard::default()))
                .collect(),
        }
    }
}

impl NearMemo {
    pub(crate) fn key(point: GeoPoint) -> (u64, u64) {
        (point.lat.to_bits(), point.lon.to_bits())
    }

    pub(crate) fn shard(&self, key: (u64, u64)) -> &std::sync::Mutex<NearShard> {
        let mixed = (key.0 ^ key.1.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59;
        &self.shards[mixed as usize % NEAR_SHARDS]
    }
}

/// Hashes a place's coordinate bits with one multiplication (places come from the GeoIP file
/// or the configuration, and each shard is bounded anyway).
type PlaceHasher = std::hash::BuildHasherDefault<PlaceHash>;

#[derive(Debug, Default)]
pub struct PlaceHash(u64);

impl std::hash::Hasher for PlaceHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
