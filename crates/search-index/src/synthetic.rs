//! A generated catalogue for benchmarks: titles and names of realistic lengths from a
//! Zipf-distributed vocabulary, Zipf plays, and queries typed the way listeners type them
//! (letter by letter, one typo in a longer word). Seeded, so every run sees the same data.

use std::collections::BTreeMap;

use std::time::Instant;

use crate::{Catalogue, Filters, Kind, Page, Request, SearchError, TrackDoc};

/// xorshift64*: a small seeded generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced: xorshift would stay at 0).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A Zipf(1)-like rank in `0..n`: rank r is drawn about 1/(r+1) as often as rank 0.
    pub fn zipf(&mut self, n: usize) -> usize {
        let u = self.unit();
        (((n as f64).powf(u)) as usize).saturating_sub(1).min(n - 1)
    }
}

const SYLLABLES: [&str; 24] = [
    "ka", "lo", "mi", "ra", "ne", "to", "su", "vi", "da", "re", "ly", "on", "an", "el", "or", "ba",
    "sh", "qu", "th", "ie", "ou", "ax", "em", "ur",
];

const GENRES: [&str; 5] = ["rock", "pop", "jazz", "electronic", "folk"];
const MOODS: [&str; 3] = ["calm", "dark", "bright"];

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

/// `tracks` generated tracks (ids `t0`, `t1`, …): titles of one to six words and artists of
/// one to three from a 50 000-word vocabulary drawn by Zipf, an album for two in three,
/// one artist per ten tracks (Zipf over artists), Zipf plays.
pub fn catalogue(rng: &mut Rng, tracks: usize) -> Vec<TrackDoc> {
    let vocabulary: Vec<String> = (0..50_000).map(|_| word(rng)).collect();
    let artists: Vec<String> = (0..tracks / 10 + 1)
        .map(|_| {
            let words = 1 + rng.below(3);
            phrase(rng, &vocabulary, words)
        })
        .collect();
    (0..tracks)
        .map(|i| {
            let words = 1 + rng.below(6);
            TrackDoc {
                id: format!("t{i}"),
                title: phrase(rng, &vocabulary, words),
                artist: artists[rng.zipf(artists.len())].clone(),
                album: (rng.below(3) > 0).then(|| {
                    let words = 1 + rng.below(4);
                    phrase(rng, &vocabulary, words)
                }),
                genre: Some(GENRES[rng.below(GENRES.len())].into()),
                tags: vec![format!("mood:{}", MOODS[rng.below(MOODS.len())])],
                lyrics: None,
                year: Some(1950 + rng.below(76) as u32),
                explicit: rng.below(10) == 0,
                duration_ms: 120_000 + rng.below(240_000) as u64,
                popularity: (tracks / (1 + rng.zipf(tracks))) as u64,
                artwork: BTreeMap::new(),
            }
        })
        .collect()
}

/// A query a listener types for `doc`: its artist then its title, lower case, with the second
/// and third letters of the first word of four letters or more swapped (one typo).
pub fn typed_query(doc: &TrackDoc) -> String {
    let typed = format!("{} {}", doc.artist, doc.title).to_lowercase();
    let mut at = 0;
    for word in typed.split(' ') {
        if word.len() >= 4 && word.is_ascii() {
            let mut bytes = typed.into_bytes();
            bytes.swap(at + 1, at + 2);
            return String::from_utf8(bytes).expect("ASCII letters swapped");
        }
        at += word.len() + 1;
    }
    typed
}

/// Every keystroke of `typed`: each prefix that ends on a character and is not blank.
pub fn keystrokes(typed: &str) -> impl Iterator<Item = &str> {
    (1..=typed.len())
        .filter(|&end| typed.is_char_boundary(end))
        .map(|end| &typed[..end])
        .filter(|prefix| !prefix.trim().is_empty())
}

/// One keystroke's search as a search-as-you-type client sends it (tracks, ten a page), and
/// how long it took, ms.
pub fn timed_search(catalogue: &Catalogue, text: &str) -> (Result<Page, SearchError>, f64) {
    let request = Request {
        text,
        kind: Kind::Track,
        limit: 10,
        offset: 0,
        filters: Filters::default(),
    };
    let started = Instant::now();
    let page = catalogue.search(&request);
    (page, started.elapsed().as_secs_f64() * 1000.0)
}

/// The value at fraction `p` (0..=1) of `sorted` (ascending); 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// This process's resident memory, MiB (0 where `/proc` does not say).
pub fn resident_mib() -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_query_has_one_swap_in_a_long_word() {
        let doc = TrackDoc {
            artist: "Ka Lomira".into(),
            title: "Su".into(),
            ..catalogue(&mut Rng::new(1), 1).remove(0)
        };
        assert_eq!(typed_query(&doc), "ka lmoira su");
        let strokes: Vec<&str> = keystrokes("a b").collect();
        assert_eq!(strokes, ["a", "a ", "a b"]);
    }

    #[test]
    fn the_catalogue_is_seeded() {
        let one = catalogue(&mut Rng::new(7), 50);
        let two = catalogue(&mut Rng::new(7), 50);
        assert_eq!(one.len(), 50);
        assert!(one.iter().zip(&two).all(|(a, b)| a.title == b.title));
    }
}
