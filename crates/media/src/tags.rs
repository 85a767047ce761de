//! Tagging: what the file says about itself (lofty: ID3v2/v1, Vorbis comments, MP4 atoms, RIFF
//! INFO, APE), and the explicit-language check over titles, tags and lyrics. A file without
//! readable tags is not an error: its tags are simply empty.

use std::path::Path;

use lofty::file::TaggedFileExt as _;
use lofty::tag::{Accessor as _, ItemKey};
use serde::{Deserialize, Serialize};

/// The tags of a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags {
    /// Title.
    pub title: Option<String>,
    /// Artists.
    pub artists: Vec<String>,
    /// Album.
    pub album: Option<String>,
    /// Genre.
    pub genre: Option<String>,
    /// Year.
    pub year: Option<u32>,
    /// Track number.
    pub track_number: Option<u32>,
    /// Lyrics (unsynchronised).
    pub lyrics: Option<String>,
    /// Embedded cover art (the front cover if marked, else the first picture), at most
    /// [`MAX_COVER_BYTES`]; a larger picture is left out and its size is in `cover_dropped`.
    #[serde(skip)]
    pub cover: Option<Vec<u8>>,
    /// The size in bytes of the cover left out for being over [`MAX_COVER_BYTES`].
    #[serde(skip)]
    pub cover_dropped: Option<usize>,
    /// Why the file's tags could not be read, if they could not.
    #[serde(skip)]
    pub unreadable: Option<String>,
}

/// The largest embedded picture taken as cover art.
pub const MAX_COVER_BYTES: usize = 16 * 1024 * 1024;

/// The most a tag reader may allocate for one item (a picture, say): above
/// [`MAX_COVER_BYTES`], so that an oversized cover is seen, measured and left out rather than
/// failing the whole tag.
pub const MAX_TAG_ITEM_BYTES: usize = 8 * MAX_COVER_BYTES;

/// Reads the tags of the file at `path` (its content decides the format, not its name). A
/// file whose tags cannot be read has none, and `unreadable` says why.
pub fn read(path: &Path) -> Tags {
    // lofty's options are per thread; set them on whichever thread reads.
    lofty::config::apply_global_options(
        lofty::config::GlobalOptions::new().allocation_limit(MAX_TAG_ITEM_BYTES),
    );
    let unreadable = |error: lofty::error::LoftyError| Tags {
        unreadable: Some(error.to_string()),
        ..Tags::default()
    };
    // From the bytes only: `Probe::open` would take the file name's extension for a format.
    let probe = match std::fs::File::open(path) {
        Ok(file) => lofty::probe::Probe::new(std::io::BufReader::new(file)),
        Err(error) => return unreadable(error.into()),
    };
    // A format lofty does not know has no tags it could read.
    let probe = match probe.guess_file_type() {
        Ok(probe) if probe.file_type().is_some() => probe,
        _ => return Tags::default(),
    };
    let file = match probe.read() {
        Ok(file) => file,
        Err(error) => return unreadable(error),
    };
    let Some(tag) = file.primary_tag().or_else(|| file.first_tag()) else {
        return Tags::default();
    };
    let text = |value: Option<std::borrow::Cow<'_, str>>| {
        value
            .map(|value| value.trim().chars().take(2000).collect::<String>())
            .filter(|value| !value.is_empty())
    };
    let mut artists: Vec<String> = tag
        .get_strings(&ItemKey::TrackArtist)
        .map(|artist| artist.trim().to_owned())
        .filter(|artist| !artist.is_empty())
        .collect();
    artists.dedup();
    let picture = tag
        .pictures()
        .iter()
        .find(|picture| picture.pic_type() == lofty::picture::PictureType::CoverFront)
        .or_else(|| tag.pictures().first())
        .map(|picture| picture.data());
    Tags {
        title: text(tag.title()),
        artists,
        album: text(tag.album()),
        genre: text(tag.genre()),
        year: tag.year(),
        track_number: tag.track(),
        lyrics: tag
            .get_string(&ItemKey::Lyrics)
            .map(|lyrics| lyrics.chars().take(20_000).collect()),
        cover: picture
            .filter(|data| data.len() <= MAX_COVER_BYTES)
            .map(<[u8]>::to_vec),
        cover_dropped: picture
            .map(<[u8]>::len)
            .filter(|&len| len > MAX_COVER_BYTES),
        unreadable: None,
    }
}

/// Top tags for search and home: `genre:…` (from the tags), `decade:…` (from the year), and
/// `energy:…` and `mood:…` classes from the measured audio features.
///
/// Energy: high for loud tracks that are not sparse, or busy (many transients) fairly loud
/// ones; low for quiet or sparse and soft ones; medium otherwise. Mood combines energy with
/// brightness (zero crossings): upbeat (high, bright), intense (high, darker), calm (low,
/// bright), mellow (low, dark), dramatic (medium with a wide dynamic spread), else balanced.
/// These are heuristics over three features, documented as such, not a trained classifier.
pub fn top_tags(
    genre: Option<&str>,
    year: Option<u32>,
    analysis: &crate::analyze::Analysis,
) -> Vec<String> {
    let mut tags = Vec::new();
    if let Some(genre) = genre
        .and_then(|genre| genre.split(['/', ';', ',']).next())
        .map(|genre| genre.trim().to_lowercase())
        .filter(|genre| !genre.is_empty())
    {
        tags.push(format!(
            "genre:{}",
            genre.chars().take(40).collect::<String>()
        ));
    }
    if let Some(year) = year.filter(|year| (1900..=2100).contains(year)) {
        tags.push(format!("decade:{}s", year / 10 * 10));
    }
    let features = &analysis.features;
    let lufs = analysis.integrated_lufs;
    let (loud, quiet) = (lufs > -12.0, lufs < -20.0);
    let (busy, sparse) = (
        features.onsets_per_min > 90.0,
        features.onsets_per_min < 20.0,
    );
    let energy = if (loud && !sparse) || (busy && lufs > -16.0) {
        "high"
    } else if quiet || (sparse && lufs < -16.0) {
        "low"
    } else {
        "medium"
    };
    let bright = features.zero_crossings_per_sec > 3_000.0;
    let dark = features.zero_crossings_per_sec < 800.0;
    let mood = match energy {
        "high" if bright => "upbeat",
        "high" => "intense",
        "low" if dark => "mellow",
        "low" => "calm",
        _ if features.dynamic_spread_db > 20.0 => "dramatic",
        _ => "balanced",
    };
    tags.push(format!("energy:{energy}"));
    tags.push(format!("mood:{mood}"));
    tags
}

/// Whether any of `texts` contains one of `words` as a whole word, ignoring case.
pub fn is_explicit(words: &[String], texts: &[&str]) -> bool {
    let words: Vec<String> = words.iter().map(|word| word.to_lowercase()).collect();
    texts.iter().any(|text| {
        text.to_lowercase()
            .split(|c: char| !c.is_alphanumeric() && c != '\'')
            .any(|token| words.iter().any(|word| token == word))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_words_match_whole_words_only() {
        let words = vec!["damn".to_owned(), "Heck".to_owned()];
        assert!(is_explicit(&words, &["Well, DAMN!"]));
        assert!(is_explicit(&words, &["title", "what the heck is this"]));
        assert!(
            !is_explicit(&words, &["Amsterdam", "checkout"]),
            "no substrings"
        );
        assert!(!is_explicit(&words, &[]));
        assert!(!is_explicit(&[], &["damn"]));
    }

    fn analysis(lufs: f64, zc: f64, onsets: f64, spread: f64) -> crate::analyze::Analysis {
        crate::analyze::Analysis {
            sample_rate: 48_000,
            channels: 2,
            frames: 48_000 * 60,
            duration_ms: 60_000,
            integrated_lufs: lufs,
            true_peak_dbtp: -1.0,
            sample_peak_dbfs: -1.0,
            gain_db: -14.0 - lufs,
            bad_packets: 0,
            features: crate::analyze::Features {
                zero_crossings_per_sec: zc,
                onsets_per_min: onsets,
                dynamic_spread_db: spread,
            },
        }
    }

    #[test]
    fn top_tags_from_tags_and_features() {
        assert_eq!(
            top_tags(
                Some(" Synth-Pop / Dance"),
                Some(1987),
                &analysis(-9.0, 4_000.0, 120.0, 8.0)
            ),
            [
                "genre:synth-pop",
                "decade:1980s",
                "energy:high",
                "mood:upbeat"
            ]
        );
        assert_eq!(
            top_tags(None, Some(3000), &analysis(-24.0, 500.0, 5.0, 10.0)),
            ["energy:low", "mood:mellow"]
        );
        assert_eq!(
            top_tags(Some(""), None, &analysis(-15.0, 1_500.0, 50.0, 25.0)),
            ["energy:medium", "mood:dramatic"]
        );
    }

    #[test]
    fn untagged_or_unreadable_files_have_empty_tags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.mp3");
        std::fs::write(&path, b"not audio at all").unwrap();
        assert_eq!(read(&path), Tags::default());
        let missing = read(&dir.path().join("missing.flac"));
        assert!(missing.unreadable.is_some(), "{missing:?}");
        assert_eq!(
            Tags {
                unreadable: None,
                ..missing
            },
            Tags::default()
        );
    }
}
