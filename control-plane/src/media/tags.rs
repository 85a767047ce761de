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
}

/// Reads the tags of the file at `path` (its content decides the format, not its name).
pub fn read(path: &Path) -> Tags {
    let Ok(probe) = lofty::probe::Probe::open(path) else {
        return Tags::default();
    };
    let Ok(probe) = probe.guess_file_type() else {
        return Tags::default();
    };
    let Ok(file) = probe.read() else {
        return Tags::default();
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
    }
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

    #[test]
    fn untagged_or_unreadable_files_have_empty_tags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.mp3");
        std::fs::write(&path, b"not audio at all").unwrap();
        assert_eq!(read(&path), Tags::default());
        assert_eq!(read(&dir.path().join("missing.flac")), Tags::default());
    }
}
