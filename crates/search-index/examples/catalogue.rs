//! Indexes a generated catalogue and times typed queries in-process, one keystroke at a time.
//!
//! `cargo run --release -p search-index --example catalogue -- [TRACKS] [QUERIES]` (defaults
//! 1 000 000 and 200): titles and names of realistic lengths from a Zipf-distributed
//! vocabulary, Zipf(1.0) plays; each query is a track's artist and title typed letter by
//! letter with one typo in a word of four letters or more. Prints indexing throughput, the
//! per-keystroke p50/p99, and the process's resident memory.

use std::collections::BTreeMap;
use std::time::Instant;

use search_index::{Catalogue, Filters, Kind, Request, TrackDoc};

/// xorshift64*: a seeded generator, so every run indexes the same catalogue.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A Zipf-like rank in `0..n` (inverse transform of a 1/x density).
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (((n as f64).powf(u)) as usize).saturating_sub(1).min(n - 1)
    }
}

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ra", "ne", "to", "su", "vi", "da", "re", "ly", "on", "an", "el", "or", "ba",
    "sh", "qu", "th", "ie", "ou", "ax", "em", "ur",
];

fn word(rng: &mut Rng) -> String {
    let syllables = 1 + rng.below(4);
    (0..syllables)
        .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
        .collect()
}

fn phrase(rng: &mut Rng, vocabulary: &[String], words: usize) -> String {
    let mut text: Vec<String> = (0..words)
        .map(|_| vocabulary[rng.zipf(vocabulary.len())].clone())
        .collect();
    if let Some(first) = text.first_mut() {
        let mut chars = first.chars();
        if let Some(c) = chars.next() {
            *first = c.to_uppercase().chain(chars).collect();
        }
    }
    text.join(" ")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let tracks: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let queries: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);
    let mut rng = Rng(0x5EED_CADE_2026);
    let vocabulary: Vec<String> = (0..50_000).map(|_| word(&mut rng)).collect();
    let artists: Vec<String> = (0..tracks / 10 + 1)
        .map(|_| {
            let words = 1 + rng.below(3);
            phrase(&mut rng, &vocabulary, words)
        })
        .collect();
    let documents: Vec<TrackDoc> = (0..tracks)
        .map(|i| {
            let words = 1 + rng.below(6);
            TrackDoc {
                id: format!("t{i}"),
                title: phrase(&mut rng, &vocabulary, words),
                artist: artists[rng.zipf(artists.len())].clone(),
                album: (rng.below(3) > 0).then(|| {
                    let words = 1 + rng.below(4);
                    phrase(&mut rng, &vocabulary, words)
                }),
                genre: Some(["rock", "pop", "jazz", "electronic", "folk"][rng.below(5)].into()),
                tags: vec![format!("mood:{}", ["calm", "dark", "bright"][rng.below(3)])],
                lyrics: None,
                year: Some(1950 + rng.below(76) as u32),
                explicit: rng.below(10) == 0,
                duration_ms: 120_000 + rng.below(240_000) as u64,
                popularity: (tracks / (1 + rng.zipf(tracks))) as u64,
                artwork: BTreeMap::new(),
            }
        })
        .collect();
    let targets: Vec<(String, String)> = (0..queries)
        .map(|_| {
            let doc = &documents[rng.below(documents.len())];
            (doc.artist.clone(), doc.title.clone())
        })
        .collect();
    let catalogue = Catalogue::new().expect("index");
    let started = Instant::now();
    catalogue.replace_all(documents).expect("indexing");
    let indexing = started.elapsed().as_secs_f64();
    println!(
        "indexed {tracks} tracks in {indexing:.1} s: {:.0} tracks/s; resident {:.0} MiB",
        tracks as f64 / indexing,
        resident_mib()
    );

    let mut timings = Vec::new();
    let mut found = 0;
    for (artist, title) in &targets {
        // One typo: the second and third letters of the first long word swapped.
        let mut typed = format!("{artist} {title}").to_lowercase();
        if let Some(at) = typed
            .split(' ')
            .scan(0, |at, word| {
                let start = *at;
                *at += word.len() + 1;
                Some((start, word.len()))
            })
            .find(|(_, len)| *len >= 4)
            .map(|(start, _)| start + 1)
        {
            let bytes = swapped(&typed, at);
            typed = bytes;
        }
        let mut last_hit = false;
        for end in 1..=typed.len() {
            if !typed.is_char_boundary(end) || typed[..end].trim().is_empty() {
                continue;
            }
            let request = Request {
                text: &typed[..end],
                kind: Kind::Track,
                limit: 10,
                offset: 0,
                filters: Filters::default(),
            };
            let started = Instant::now();
            let page = catalogue.search(&request);
            timings.push(started.elapsed().as_secs_f64() * 1000.0);
            if end == typed.len() {
                last_hit = matches!(page, Ok(search_index::Page { hits: search_index::Hits::Tracks(ref hits), .. })
                    if hits.iter().any(|hit| hit.track.title == *title));
            }
        }
        found += usize::from(last_hit);
    }
    timings.sort_by(f64::total_cmp);
    println!(
        "{} keystrokes of {queries} typed queries (one typo each): p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms; target in the first 10: {found}/{queries}",
        timings.len(),
        percentile(&timings, 0.5),
        percentile(&timings, 0.99),
        timings.last().copied().unwrap_or(0.0),
    );
    println!("resident after queries {:.0} MiB", resident_mib());
}

/// `text` with the two ASCII letters at `at` and `at + 1` swapped (unchanged otherwise).
fn swapped(text: &str, at: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    if at + 1 < bytes.len() && bytes[at].is_ascii() && bytes[at + 1].is_ascii() {
        bytes.swap(at, at + 1);
    }
    String::from_utf8(bytes).unwrap_or_else(|_| text.to_owned())
}
