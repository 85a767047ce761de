//! Ingest that artists can trust: a corpus made at test time with ffmpeg — every supported
//! format valid, cut at two points, bit-flipped, plus empty, renamed and absurd files — each
//! uploaded through the API and processed, with the outcome its table row says (ready, or
//! rejected with its code), and nothing left behind by a rejection. Needs ffmpeg (required
//! under CI=true, which `.ci/run` installs); skipped with a notice elsewhere.

use std::process::Command;

use crate::on_both_backends;
use crate::support::TestApp;
use crate::uploads::{process, upload_bytes};
use crate::wav::pcm_wav;

on_both_backends!(every_case_of_the_corpus_behaves_as_its_table_says);

#[derive(Debug, Clone, Copy)]
enum Format {
    Mp3,
    M4aFaststart,
    M4aMoovLast,
    Alac,
    Flac,
    Wav16,
    Wav24At96k,
    Vorbis,
    Opus,
}

impl Format {
    /// ffmpeg's output arguments and the file's extension.
    fn encode(self) -> (&'static [&'static str], &'static str) {
        match self {
            Self::Mp3 => (&["-c:a", "libmp3lame", "-b:a", "128k"], "mp3"),
            Self::M4aFaststart => (
                &["-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart"],
                "m4a",
            ),
            Self::M4aMoovLast => (&["-c:a", "aac", "-b:a", "128k"], "m4a"),
            Self::Alac => (&["-c:a", "alac"], "m4a"),
            Self::Flac => (&["-c:a", "flac"], "flac"),
            Self::Wav16 => (&["-c:a", "pcm_s16le"], "wav"),
            Self::Wav24At96k => (&["-c:a", "pcm_s24le", "-ar", "96000"], "wav"),
            Self::Vorbis => (&["-c:a", "libvorbis", "-q:a", "4"], "ogg"),
            Self::Opus => (&["-c:a", "libopus", "-b:a", "96k"], "opus"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    None,
    /// The file cut to this fraction of its bytes.
    Cut(f64),
    /// One byte at this fraction of the file inverted.
    Flip(f64),
}

/// The expected outcome: `Ok(())` for ready, else the rejection's code.
type Outcome = Result<(), &'static str>;

const READY: Outcome = Ok(());
const CORRUPT: Outcome = Err("corrupt");

/// Every format: valid → ready; cut at half and at nine tenths → corrupt (each container's
/// own evidence: declared sample counts, MP4 boxes and sample tables, Ogg pages); one byte
/// flipped → corrupt where the format has checksums (FLAC's frame CRCs and MD5, Ogg's page
/// CRCs), otherwise ready (the damage is a click the format cannot tell from music).
const TABLE: &[(Format, Damage, Outcome)] = &[
    (Format::Mp3, Damage::None, READY),
    (Format::Mp3, Damage::Cut(0.5), CORRUPT),
    (Format::Mp3, Damage::Cut(0.9), CORRUPT),
    (Format::Mp3, Damage::Flip(0.6), READY),
    (Format::M4aFaststart, Damage::None, READY),
    (Format::M4aFaststart, Damage::Cut(0.5), CORRUPT),
    (Format::M4aFaststart, Damage::Cut(0.9), CORRUPT),
    (Format::M4aFaststart, Damage::Flip(0.6), READY),
    (Format::M4aMoovLast, Damage::None, READY),
    (Format::M4aMoovLast, Damage::Cut(0.5), CORRUPT),
    (Format::M4aMoovLast, Damage::Cut(0.9), CORRUPT),
    (Format::Alac, Damage::None, READY),
    (Format::Alac, Damage::Cut(0.5), CORRUPT),
    (Format::Flac, Damage::None, READY),
    (Format::Flac, Damage::Cut(0.5), CORRUPT),
    (Format::Flac, Damage::Cut(0.9), CORRUPT),
    (Format::Flac, Damage::Flip(0.6), CORRUPT),
    (Format::Wav16, Damage::None, READY),
    (Format::Wav16, Damage::Cut(0.5), CORRUPT),
    (Format::Wav16, Damage::Flip(0.6), READY),
    (Format::Wav24At96k, Damage::None, READY),
    (Format::Wav24At96k, Damage::Cut(0.9), CORRUPT),
    (Format::Vorbis, Damage::None, READY),
    (Format::Vorbis, Damage::Cut(0.5), CORRUPT),
    (Format::Vorbis, Damage::Cut(0.9), CORRUPT),
    (Format::Vorbis, Damage::Flip(0.6), CORRUPT),
    (Format::Opus, Damage::None, READY),
    (Format::Opus, Damage::Cut(0.5), CORRUPT),
    (Format::Opus, Damage::Cut(0.9), CORRUPT),
    (Format::Opus, Damage::Flip(0.6), CORRUPT),
];

fn ffmpeg_available() -> bool {
    test_support::tools_available(&["ffmpeg"], "the ingest corpus")
}

/// A WAV of a melody of its own for case `index` (so that no two uploads look like copies of
/// each other to the fingerprint check).
fn source(index: usize) -> Vec<u8> {
    let scale = [
        196.0, 220.0, 246.9, 261.6, 293.7, 329.6, 349.2, 392.0, 440.0, 493.9, 523.3,
    ];
    let mut state = (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let notes: Vec<f64> = (0..16)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            scale[(state >> 33) as usize % scale.len()]
        })
        .collect();
    pcm_wav(12.0, 44_100, None, |t| {
        let f = notes[(t * 3.0) as usize % notes.len()];
        let value = 0.5 * (2.0 * std::f64::consts::PI * f * t).sin()
            + 0.15 * (6.0 * std::f64::consts::PI * f * t).sin();
        (0.6 * value, 0.6 * value)
    })
}

fn encode(dir: &std::path::Path, index: usize, format: Format) -> (Vec<u8>, &'static str) {
    let input = dir.join(format!("source-{index}.wav"));
    std::fs::write(&input, source(index)).unwrap();
    let (arguments, extension) = format.encode();
    let output = dir.join(format!("case-{index}.{extension}"));
    let status = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-i"])
        .arg(&input)
        .args(arguments)
        .arg(&output)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make {format:?}");
    (std::fs::read(&output).unwrap(), extension)
}

fn damage(mut bytes: Vec<u8>, damage: Damage) -> Vec<u8> {
    match damage {
        Damage::None => bytes,
        Damage::Cut(fraction) => {
            bytes.truncate((bytes.len() as f64 * fraction) as usize);
            bytes
        }
        Damage::Flip(fraction) => {
            let at = (bytes.len() as f64 * fraction) as usize;
            bytes[at] = !bytes[at];
            bytes
        }
    }
}

/// The rejection code a reason's text begins with.
fn code_of(reason: &str) -> &'static str {
    [
        ("not audio", "not_audio"),
        ("corrupt", "corrupt"),
        ("too short", "too_short"),
        ("too long", "too_long"),
        ("silent", "silent"),
    ]
    .iter()
    .find(|(prefix, _)| reason.starts_with(prefix))
    .map_or("other", |(_, code)| code)
}

async fn every_case_of_the_corpus_behaves_as_its_table_says(t: &TestApp) {
    if !ffmpeg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = t.artist("corpus@example.com").await;
    let mut uploads = Vec::new();
    for (index, (format, harm, expected)) in TABLE.iter().enumerate() {
        let (bytes, extension) = encode(dir.path(), index, *format);
        let bytes = damage(bytes, *harm);
        let id = upload_bytes(t, &token, bytes, &format!("take-{index}.{extension}")).await;
        uploads.push((id, format!("{format:?} {harm:?}"), *expected));
    }
    // Files that are not tracks at all, and a header that declares an absurd length.
    let png = [b"\x89PNG\r\n\x1a\n".as_slice(), &[7u8; 4000]].concat();
    uploads.push((
        upload_bytes(t, &token, png, "cover.m4a").await,
        "a PNG named .m4a".into(),
        Err("not_audio"),
    ));
    uploads.push((
        upload_bytes(t, &token, vec![0u8; 2048], "zeros.mp3").await,
        "zeros named .mp3".into(),
        Err("not_audio"),
    ));
    let absurd = pcm_wav(2.0, 44_100, Some(u64::from(u32::MAX) / 4), |_| (0.1, 0.1));
    uploads.push((
        upload_bytes(t, &token, absurd, "absurd.wav").await,
        "a WAV declaring hours".into(),
        Err("too_long"),
    ));
    while process(t).await > 0 {}
    let mut ready = Vec::new();
    let mut failures = Vec::new();
    for (id, what, expected) in &uploads {
        let track = t.get(&format!("/api/v1/tracks/{id}"), Some(&token)).await;
        let status = track.body["status"].as_str().unwrap_or("?").to_owned();
        let reason = track.body["reason"].as_str().unwrap_or("").to_owned();
        let got: Result<(), &str> = match status.as_str() {
            "ready" => Ok(()),
            "rejected" => Err(code_of(&reason)),
            other => Err(if other == "failed" {
                "failed"
            } else {
                "unsettled"
            }),
        };
        if got != *expected {
            failures.push(format!(
                "{what}: expected {expected:?}, got {status} ({reason})"
            ));
        }
        if got.is_ok() {
            ready.push(id.clone());
        } else if status == "rejected" && code_of(&reason) == "corrupt" {
            // A corrupt file's reason says what is wrong and where.
            assert!(reason.len() > "corrupt: ".len() + 10, "{what}: {reason}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // A rejection leaves nothing: media only for ready tracks.
    let media = t.app.objects.list("media").await.unwrap();
    for key in &media {
        assert!(
            ready
                .iter()
                .any(|id| key.starts_with(&format!("media/{id}/"))),
            "{key} belongs to no ready track"
        );
    }
    let raw = t.app.objects.list("raw").await.unwrap();
    assert!(
        raw.len() <= ready.len(),
        "raw objects of rejected uploads remain: {raw:?}"
    );
}
