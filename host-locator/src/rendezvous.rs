//! Stable hashing for rendezvous (highest-random-weight) selection: the same node and track
//! hashes on every replica and version, combined into independent uniform weights.

/// The stable hash of a node id (XXH3, the same on every replica and version).
pub fn node_hash(node: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(node.as_bytes())
}

/// The stable hash of a track id.
pub fn track_hash(track: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(track.as_bytes(), 0x5ca1_ab1e)
}

/// The rendezvous weight of a node (by its [`node_hash`]) for a track (by its [`track_hash`]):
/// the two hashes combined and finalised with SplitMix64's mixer, so that every node's weight
/// for a track is an independent, uniform 64-bit value.
pub fn rendezvous_weight(track: u64, node: u64) -> u64 {
    let mut x = track ^ node.rotate_left(32);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
