//! Copy detection by acoustic fingerprint (Chromaprint, via rusty-chromaprint): two encodings of
//! the same recording — another bit rate, sample rate or level — match; different recordings do
//! not. Pure: the caller supplies the fingerprints to compare.

use rusty_chromaprint::{Configuration, match_fingerprints};

/// The fingerprinting configuration every stored fingerprint uses.
pub fn config() -> Configuration {
    Configuration::preset_test2()
}

/// How much of the shorter fingerprint must match for two tracks to be the same recording.
const MATCHED_SHARE: f32 = 0.5;

/// Whether `a` and `b` are fingerprints of the same recording: matching segments cover at
/// least half of the shorter one.
pub fn same_recording(a: &[u32], b: &[u32]) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let config = config();
    let Ok(segments) = match_fingerprints(a, b, &config) else {
        return false;
    };
    let matched: f32 = segments
        .iter()
        .map(|segment| segment.duration(&config))
        .sum();
    let shorter = a.len().min(b.len()) as f32 * config.item_duration_in_seconds();
    matched >= shorter * MATCHED_SHARE
}

/// A fingerprint as stored: little-endian `u32`s, hex.
pub fn encode(fingerprint: &[u32]) -> String {
    fingerprint
        .iter()
        .map(|word| format!("{word:08x}"))
        .collect()
}

/// The stored form read back; `None` if it is not one.
pub fn decode(text: &str) -> Option<Vec<u32>> {
    if !text.len().is_multiple_of(8) {
        return None;
    }
    (0..text.len())
        .step_by(8)
        .map(|at| u32::from_str_radix(text.get(at..at + 8)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(samples: impl Iterator<Item = f64>, rate: u32) -> Vec<u32> {
        let config = config();
        let mut printer = rusty_chromaprint::Fingerprinter::new(&config);
        printer.start(rate, 2).unwrap();
        let pcm: Vec<i16> = samples
            .flat_map(|v| {
                let s = (v * 32767.0) as i16;
                [s, s]
            })
            .collect();
        printer.consume(&pcm);
        printer.finish();
        printer.fingerprint().to_vec()
    }

    /// A melody: a note every quarter second from `notes`, with a harmonic.
    fn melody(notes: &[f64], seconds: f64, rate: u32, gain: f64) -> impl Iterator<Item = f64> {
        let notes = notes.to_vec();
        (0..(seconds * f64::from(rate)) as u64).map(move |n| {
            let t = n as f64 / f64::from(rate);
            let f = notes[(t * 4.0) as usize % notes.len()];
            gain * (0.5 * (2.0 * std::f64::consts::PI * f * t).sin()
                + 0.2 * (2.0 * std::f64::consts::PI * 2.0 * f * t).sin())
        })
    }

    #[test]
    fn the_same_recording_matches_across_rates_and_levels() {
        let tune = [261.6, 329.6, 392.0, 523.3, 392.0, 329.6, 293.7, 349.2];
        let other = [
            220.0, 246.9, 277.2, 293.7, 329.6, 370.0, 415.3, 440.0, 196.0,
        ];
        let original = print(melody(&tune, 30.0, 44_100, 0.8), 44_100);
        let copy = print(melody(&tune, 30.0, 48_000, 0.5), 48_000);
        let different = print(melody(&other, 30.0, 44_100, 0.8), 44_100);
        assert!(same_recording(&original, &copy));
        assert!(!same_recording(&original, &different));
        assert!(!same_recording(&original, &[]));
        assert_eq!(decode(&encode(&original)).unwrap(), original);
        assert_eq!(decode("xyz"), None);
    }
}
