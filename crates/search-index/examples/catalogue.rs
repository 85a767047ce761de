//! Indexes a generated catalogue and times typed queries in-process, one keystroke at a time.
//!
//! `cargo run --release -p search-index --example catalogue -- [TRACKS] [QUERIES]` (defaults
//! 1 000 000 and 200): the catalogue of [`search_index::synthetic`]; each query is a track's
//! artist and title typed letter by letter with one typo in a word of four letters or more.
//! Prints indexing throughput, the per-keystroke p50/p99, and the process's resident memory.
//! `bench/search.sh` measures the same over HTTP against this in the same run.

use std::time::Instant;

use search_index::synthetic::{self, Rng, percentile, resident_mib};
use search_index::{Catalogue, Hits, Page};

fn main() {
    let mut args = std::env::args().skip(1);
    let tracks: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let queries: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);
    let mut rng = Rng::new(0x5EED_CADE_2026);
    let documents = synthetic::catalogue(&mut rng, tracks);
    let targets: Vec<(String, String)> = (0..queries)
        .map(|_| {
            let doc = &documents[rng.below(documents.len())];
            (synthetic::typed_query(doc), doc.title.clone())
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
    for (typed, title) in &targets {
        let mut page = None;
        for text in synthetic::keystrokes(typed) {
            let (answer, ms) = synthetic::timed_search(&catalogue, text);
            page = answer.ok();
            timings.push(ms);
        }
        let hit = matches!(page, Some(Page { hits: Hits::Tracks(ref hits), .. })
            if hits.iter().any(|hit| hit.track.title == *title));
        found += usize::from(hit);
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
