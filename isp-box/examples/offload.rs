//! The ISP box's offload and cache policy, measured on a seeded synthetic demand (no CDN trace
//! can be had here): a catalogue of tracks with realistic durations, each in the three ladder
//! renditions, requested with Zipf(0.9) popularity; a play fetches one rendition whole.
//!
//! 1. Byte hit ratio of each admission/eviction policy at 1 %, 2 % and 5 % of the catalogue's
//!    bytes, after a warm-up: S3-FIFO as the disk tier ships it (`edge_node::s3fifo`), LRU and
//!    W-TinyLFU as moka builds them (the memory tier's library), SIEVE as written below, all
//!    weighing objects by bytes.
//! 2. Byte offload of a box holding 5 % of the catalogue: pre-positioned from the previous
//!    day's plays (the manifest, as the control plane ranks it) then serving the day, against
//!    demand only from a cold start; with the bound no cache of that size can pass (the most
//!    popular bytes that fit, by the true popularity).
//!
//! `cargo run --release -p isp-box --example offload -- [tracks] [plays] [seed]`

use std::collections::HashMap;
use std::time::Instant;

use edge_node::s3fifo::S3Fifo;

/// splitmix64: a small seeded generator, so every run draws the same demand.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (a, b) = (self.unit().max(1e-12), self.unit());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    }
}

/// The ladder and how often players pick each rung.
const RENDITIONS: [(u64, f64); 3] = [(64_000, 0.15), (128_000, 0.45), (256_000, 0.40)];

struct Catalogue {
    /// Bytes of each (track, rendition) object: `track * 3 + rung`.
    sizes: Vec<u64>,
    /// Cumulative Zipf weights over tracks (track 0 most popular).
    cumulative: Vec<f64>,
}

impl Catalogue {
    fn new(tracks: usize, rng: &mut Rng) -> Self {
        let mut sizes = Vec::with_capacity(tracks * 3);
        for _ in 0..tracks {
            // Durations: log-normal around 3.5 minutes, between 1 and 12.
            let seconds = (210.0 * (0.35 * rng.normal()).exp()).clamp(60.0, 720.0);
            for (bps, _) in RENDITIONS {
                sizes.push((seconds * bps as f64 / 8.0) as u64);
            }
        }
        let mut cumulative = Vec::with_capacity(tracks);
        let mut sum = 0.0;
        for rank in 1..=tracks {
            sum += 1.0 / (rank as f64).powf(0.9);
            cumulative.push(sum);
        }
        for weight in &mut cumulative {
            *weight /= sum;
        }
        Self { sizes, cumulative }
    }

    fn bytes(&self) -> u64 {
        self.sizes.iter().sum()
    }

    /// One play: an object id.
    fn draw(&self, rng: &mut Rng) -> u32 {
        let u = rng.unit();
        let track = self
            .cumulative
            .partition_point(|&c| c < u)
            .min(self.cumulative.len() - 1);
        let r = rng.unit();
        let mut rung = 0;
        let mut acc = 0.0;
        for (index, (_, share)) in RENDITIONS.iter().enumerate() {
            acc += share;
            if r < acc {
                rung = index;
                break;
            }
            rung = index;
        }
        (track * 3 + rung) as u32
    }

    /// The expected share of bytes each object gets (for the bound).
    fn byte_share(&self) -> Vec<(u32, f64)> {
        let mut previous = 0.0;
        let mut shares = Vec::with_capacity(self.sizes.len());
        for (track, &c) in self.cumulative.iter().enumerate() {
            let p = c - previous;
            previous = c;
            for (rung, (_, share)) in RENDITIONS.iter().enumerate() {
                let id = track * 3 + rung;
                shares.push((id as u32, p * share * self.sizes[id] as f64));
            }
        }
        shares
    }
}

/// A byte-weighted cache policy under test.
trait Policy {
    /// Looks `id` up; on a miss, offers it for admission. Returns whether it hit.
    fn request(&mut self, id: u32, size: u64) -> bool;
    /// Places `id` ahead of demand (pre-positioning).
    fn preload(&mut self, id: u32, size: u64);
}

/// The disk tier's index: moka with the given eviction policy, weighed by bytes.
struct Moka(moka::sync::Cache<u32, u64>);

impl Moka {
    fn new(capacity: u64, policy: moka::policy::EvictionPolicy) -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(policy)
                .weigher(|_id: &u32, size: &u64| u32::try_from(*size).unwrap_or(u32::MAX))
                .build(),
        )
    }
}

impl Policy for Moka {
    fn request(&mut self, id: u32, size: u64) -> bool {
        if self.0.get(&id).is_some() {
            return true;
        }
        self.0.insert(id, size);
        self.0.run_pending_tasks();
        false
    }

    fn preload(&mut self, id: u32, size: u64) {
        self.0.insert(id, size);
        self.0.run_pending_tasks();
    }
}

/// SIEVE (NSDI '24): one FIFO queue with a visited bit; a hand sweeps from the tail, sparing
/// (and clearing) visited objects and evicting the first unvisited one.
struct Sieve {
    capacity: u64,
    used: u64,
    /// Slots in insertion order (newest at the back); `None` where evicted.
    queue: Vec<Option<(u32, u64)>>,
    /// Object → (slot, visited).
    index: HashMap<u32, (usize, bool)>,
    hand: usize,
}

impl Sieve {
    fn new(capacity: u64) -> Self {
        Self {
            capacity,
            used: 0,
            queue: Vec::new(),
            index: HashMap::new(),
            hand: 0,
        }
    }

    fn compact(&mut self) {
        if self.queue.len() > 2 * self.index.len() + 1024 {
            let mut kept = Vec::with_capacity(self.index.len());
            let mut new_hand = 0;
            for (slot, entry) in self.queue.iter().enumerate() {
                if let Some((id, size)) = entry {
                    if slot < self.hand {
                        new_hand = kept.len() + 1;
                    }
                    if let Some(place) = self.index.get_mut(id) {
                        place.0 = kept.len();
                    }
                    kept.push(Some((*id, *size)));
                }
            }
            self.queue = kept;
            self.hand = new_hand.min(self.queue.len());
        }
    }

    fn evict_one(&mut self) {
        loop {
            if self.hand == 0 {
                self.hand = self.queue.len();
            }
            self.hand -= 1;
            let Some((id, size)) = self.queue[self.hand] else {
                continue;
            };
            let place = self.index.get_mut(&id).expect("indexed");
            if place.1 {
                place.1 = false;
            } else {
                self.index.remove(&id);
                self.queue[self.hand] = None;
                self.used -= size;
                return;
            }
        }
    }

    fn insert(&mut self, id: u32, size: u64) {
        if size > self.capacity {
            return;
        }
        while self.used + size > self.capacity {
            self.evict_one();
        }
        // The hand's position counts from the tail: inserting at the back keeps it valid.
        self.index.insert(id, (self.queue.len(), false));
        self.queue.push(Some((id, size)));
        self.used += size;
        self.compact();
    }
}

impl Policy for Sieve {
    fn request(&mut self, id: u32, size: u64) -> bool {
        if let Some(place) = self.index.get_mut(&id) {
            place.1 = true;
            return true;
        }
        self.insert(id, size);
        false
    }

    fn preload(&mut self, id: u32, size: u64) {
        self.insert(id, size);
    }
}

/// The disk tier's own index (S3-FIFO), as it ships.
struct Shipped(S3Fifo<u32, ()>);

impl Policy for Shipped {
    fn request(&mut self, id: u32, size: u64) -> bool {
        if self.0.get(&id).is_some() {
            return true;
        }
        self.0.insert(id, (), size);
        false
    }

    fn preload(&mut self, id: u32, size: u64) {
        self.0.insert_main(id, (), size);
    }
}

/// Bytes hit ÷ bytes asked over `plays`, counting from `counted_from`.
fn byte_hit_ratio(
    policy: &mut dyn Policy,
    catalogue: &Catalogue,
    plays: &[u32],
    counted_from: usize,
) -> f64 {
    let (mut hit, mut all) = (0u64, 0u64);
    for (index, &id) in plays.iter().enumerate() {
        let size = catalogue.sizes[id as usize];
        let hits = policy.request(id, size);
        if index >= counted_from {
            all += size;
            if hits {
                hit += size;
            }
        }
    }
    hit as f64 / all.max(1) as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let tracks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let plays: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2026);
    let mut rng = Rng(seed);
    let catalogue = Catalogue::new(tracks, &mut rng);
    let total = catalogue.bytes();
    let yesterday: Vec<u32> = (0..plays).map(|_| catalogue.draw(&mut rng)).collect();
    let today: Vec<u32> = (0..plays).map(|_| catalogue.draw(&mut rng)).collect();
    println!(
        "catalogue: {tracks} tracks × 3 renditions, {:.1} GB; {plays} plays a day, Zipf(0.9), seed {seed}",
        total as f64 / 1e9
    );

    // 1. Policies at three sizes, the second day counted (the first warms the cache).
    let both: Vec<u32> = yesterday.iter().chain(&today).copied().collect();
    println!("\nbyte hit ratio after a day's warm-up (points over LRU in brackets):");
    println!(
        "{:>6} {:>8} {:>18} {:>18} {:>18}",
        "cache", "LRU", "S3-FIFO (ships)", "W-TinyLFU", "SIEVE"
    );
    let mut worst_margin = f64::INFINITY;
    for percent in [1u64, 2, 5] {
        let capacity = total * percent / 100;
        let started = Instant::now();
        let lru = byte_hit_ratio(
            &mut Moka::new(capacity, moka::policy::EvictionPolicy::lru()),
            &catalogue,
            &both,
            plays,
        );
        let shipped = byte_hit_ratio(
            &mut Shipped(S3Fifo::new(capacity)),
            &catalogue,
            &both,
            plays,
        );
        let tiny_lfu = byte_hit_ratio(
            &mut Moka::new(capacity, moka::policy::EvictionPolicy::tiny_lfu()),
            &catalogue,
            &both,
            plays,
        );
        let sieve = byte_hit_ratio(&mut Sieve::new(capacity), &catalogue, &both, plays);
        worst_margin = worst_margin.min(shipped - lru);
        let cell = |ratio: f64| format!("{:.1} % ({:+.1})", ratio * 100.0, (ratio - lru) * 100.0);
        println!(
            "{:>5}% {:>7.1}% {:>18} {:>18} {:>18}   ({:.1} s)",
            percent,
            lru * 100.0,
            cell(shipped),
            cell(tiny_lfu),
            cell(sieve),
            started.elapsed().as_secs_f64()
        );
    }
    println!(
        "shipped policy − LRU, smallest margin over the three sizes: {:+.1} points",
        worst_margin * 100.0
    );

    // 2. Offload of a box holding 5 % of the catalogue's bytes.
    let capacity = total * 5 / 100;
    let mut counts: HashMap<u32, u64> = HashMap::new();
    for &id in &yesterday {
        *counts.entry(id).or_default() += 1;
    }
    // The manifest: yesterday's plays per object (the control plane ranks tracks by expected
    // plays; here per rendition, as the bytes are), most first, within the box's fill share.
    let mut ranked: Vec<(u32, u64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let fill_budget = (capacity as f64 * 0.8) as u64;
    let prepositioned = || {
        let mut cache = Shipped(S3Fifo::new(capacity));
        let mut filled = 0u64;
        for (id, _) in &ranked {
            let size = catalogue.sizes[*id as usize];
            if filled + size <= fill_budget {
                cache.preload(*id, size);
                filled += size;
            }
        }
        (cache, filled)
    };
    let (mut box_cache, filled) = prepositioned();
    let with_fill = byte_hit_ratio(&mut box_cache, &catalogue, &today, 0);
    let cold = byte_hit_ratio(&mut Shipped(S3Fifo::new(capacity)), &catalogue, &today, 0);
    // The first hour of the day alone.
    let hour = &today[..plays / 24];
    let hour_with_fill = byte_hit_ratio(&mut prepositioned().0, &catalogue, hour, 0);
    let hour_cold = byte_hit_ratio(&mut Shipped(S3Fifo::new(capacity)), &catalogue, hour, 0);
    let mut shares = catalogue.byte_share();
    shares.sort_by(|a, b| {
        let density = |(id, share): &(u32, f64)| share / catalogue.sizes[*id as usize] as f64;
        density(b).total_cmp(&density(a))
    });
    let (mut held, mut bound) = (0u64, 0.0);
    let all_share: f64 = shares.iter().map(|(_, share)| share).sum();
    for (id, share) in &shares {
        let size = catalogue.sizes[*id as usize];
        if held + size <= capacity {
            held += size;
            bound += share;
        }
    }
    println!(
        "\nbyte offload of a box holding 5 % of the catalogue ({:.2} GB), over a day:",
        capacity as f64 / 1e9
    );
    println!(
        "  pre-positioned from yesterday's plays ({:.2} GB filled): {:.1} %",
        filled as f64 / 1e9,
        with_fill * 100.0
    );
    println!(
        "  demand only, from a cold start:                         {:.1} %",
        cold * 100.0
    );
    // How large a box this demand needs for 95 % (most popular bytes first).
    let (mut needed, mut share) = (0u64, 0.0);
    for (id, object_share) in &shares {
        if share >= 0.95 * all_share {
            break;
        }
        needed += catalogue.sizes[*id as usize];
        share += object_share;
    }
    println!(
        "  its first hour alone: pre-positioned {:.1} %, demand only {:.1} %",
        hour_with_fill * 100.0,
        hour_cold * 100.0
    );
    println!(
        "  bound for any cache of this size (most popular bytes):  {:.1} %",
        bound / all_share * 100.0
    );
    println!(
        "  a box must hold {:.0} % of the catalogue ({:.1} GB) for 95 % on this demand",
        needed as f64 / total as f64 * 100.0,
        needed as f64 / 1e9
    );
}
