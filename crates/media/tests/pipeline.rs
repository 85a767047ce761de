//! The pipeline's output checked by an independent decoder: a generated track is packaged, and
//! ffmpeg decodes every rendition, the HLS master playlist and the DASH manifest without a
//! complaint, to the source's length plus the encoder priming that the edit list marks (ffmpeg
//! 5.1 does not apply edit lists to fragmented MP4). Needs `ffmpeg`/`ffprobe` (required under
//! CI=true; otherwise skipped with a message).

use std::path::Path;
use std::process::Command;

use media::analyze::Limits;
use media::transcode::{LADDER, package};

use media::wav::pcm_wav;

/// fdk-aac's AAC-LC encoder delay, in samples.
const PRIMING: f64 = 2048.0;

fn ffmpeg_available() -> bool {
    test_support::tools_available(&["ffmpeg", "ffprobe"], "the output checks")
}

/// A 16-bit stereo WAV: a chord that changes every second, so segments differ.
fn wav(seconds: f64, rate: u32) -> Vec<u8> {
    pcm_wav(seconds, rate, None, |t| {
        let root = [220.0, 246.94, 261.63, 293.66][(t as usize) % 4];
        let value = 0.2
            * ((2.0 * std::f64::consts::PI * root * t).sin()
                + 0.5 * (2.0 * std::f64::consts::PI * root * 1.5 * t).sin());
        (value, value / 2.0)
    })
}

fn decoded_seconds(input: &Path, extra: &[&str]) -> f64 {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(extra)
        .arg("-i")
        .arg(input)
        .args(["-map", "0:a:0", "-f", "s16le", "-ac", "2", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        output.status.success(),
        "ffmpeg failed on {}: {}",
        input.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "ffmpeg complained about {}: {}",
        input.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout.len() as f64 / 4.0
}

#[test]
fn every_rendition_decodes_cleanly_through_hls_and_dash() {
    if !ffmpeg_available() {
        return;
    }
    for rate in [44_100u32, 48_000, 96_000, 22_050] {
        // 44.1 and 48 kHz are kept; anything else is resampled to 48 kHz.
        let out_rate = if rate == 44_100 || rate == 48_000 {
            rate
        } else {
            48_000
        };
        let dir = tempfile::tempdir().unwrap();
        let source = 20.0;
        let packaged = package(
            std::io::Cursor::new(wav(source, rate)),
            Some("wav"),
            &Limits::default(),
            &LADDER,
            dir.path(),
        )
        .unwrap();
        assert_eq!(packaged.renditions.len(), 3);
        assert!((packaged.analysis.duration_ms as f64 - source * 1000.0).abs() < 1.0);
        for rendition in &packaged.renditions {
            // ~6 s segments, the last shorter; the presented durations add up to the source.
            let secs: Vec<f64> = rendition
                .segments
                .iter()
                .map(|s| s.presented_secs)
                .collect();
            assert_eq!(secs.len(), 4, "{secs:?}");
            assert!(
                secs[1..3].iter().all(|s| (s - 5.99).abs() < 0.1),
                "{secs:?}"
            );
            assert!(
                (secs.iter().sum::<f64>() - source).abs() < 0.001,
                "{secs:?}"
            );
            // Each rendition alone, through its media playlist. ffmpeg 5.1 applies no edit list
            // to fragmented MP4, so it also plays the encoder's priming (2 048 samples) that
            // the init segment's edit list tells players to skip, and up to one frame of the
            // last access unit: it must decode to exactly that, no more, no less.
            let media = dir.path().join(&rendition.id).join("index.m3u8");
            let samples = decoded_seconds(&media, &["-allowed_extensions", "ALL"]);
            let excess = samples - source * f64::from(out_rate) - PRIMING;
            assert!(
                (0.0..1024.0).contains(&excess),
                "{} at {rate} Hz: {samples} samples, {excess} beyond source + priming",
                rendition.id
            );
            // The encoded bit rate is near the rung's.
            let bits = rendition.segments.iter().map(|s| s.bytes).sum::<u64>() as f64 * 8.0;
            let kbps = bits / source / 1000.0;
            let target = rendition.id.trim_end_matches('k').parse::<f64>().unwrap();
            assert!(
                (kbps - target).abs() / target < 0.15,
                "{}: {kbps} kbit/s",
                rendition.id
            );
        }
        // The master playlist (the player's entry point) and the DASH manifest.
        let master = std::fs::read_to_string(dir.path().join("master.m3u8")).unwrap();
        assert_eq!(master.matches("#EXT-X-STREAM-INF:").count(), 3, "{master}");
        assert!(master.contains("CODECS=\"mp4a.40.2\""));
        for entry in ["master.m3u8", "manifest.mpd"] {
            let samples = decoded_seconds(&dir.path().join(entry), &["-allowed_extensions", "ALL"]);
            let excess = samples - source * f64::from(out_rate) - PRIMING;
            assert!(
                (0.0..1024.0).contains(&excess),
                "{entry} at {rate} Hz: {samples} samples, {excess} beyond source + priming"
            );
        }
        // What a player that applies the edit list presents is exactly the source.
        let init = std::fs::read(dir.path().join("64k/init.mp4")).unwrap();
        let elst = init.windows(4).position(|w| w == b"elst").unwrap();
        let presented = u64::from_be_bytes(init[elst + 12..elst + 20].try_into().unwrap());
        let media_time = i64::from_be_bytes(init[elst + 20..elst + 28].try_into().unwrap());
        assert_eq!(
            (presented, media_time),
            ((source * f64::from(out_rate)) as u64, PRIMING as i64)
        );
        let mpd = std::fs::read_to_string(dir.path().join("manifest.mpd")).unwrap();
        assert!(
            mpd.contains(&format!("audioSamplingRate=\"{out_rate}\"")),
            "{mpd}"
        );
        for file in &packaged.files {
            assert!(dir.path().join(file).is_file(), "{file} listed but missing");
        }
    }
}

/// Ogg Opus (made by ffmpeg's libopus, an independent encoder) decodes to the source's length
/// (the header's pre-skip dropped) and loudness, in stereo and mono; the pipeline then packages
/// it like any other upload.
#[test]
fn ogg_opus_uploads_decode_to_the_source_length_and_loudness() {
    if !ffmpeg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.wav");
    std::fs::write(&source, wav(6.0, 48_000)).unwrap();
    let reference = media::analyze::analyze(
        std::io::Cursor::new(std::fs::read(&source).unwrap()),
        Some("wav"),
        &Limits::default(),
    )
    .unwrap();
    for (name, channels) in [("stereo.opus", "2"), ("mono.opus", "1")] {
        let opus = dir.path().join(name);
        let encoded = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-y", "-i"])
            .arg(&source)
            .args(["-ac", channels, "-c:a", "libopus", "-b:a", "128k"])
            .arg(&opus)
            .output()
            .expect("ffmpeg runs");
        assert!(
            encoded.status.success(),
            "{}",
            String::from_utf8_lossy(&encoded.stderr)
        );
        let analysis = media::analyze::analyze(
            std::io::Cursor::new(std::fs::read(&opus).unwrap()),
            Some("opus"),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(analysis.sample_rate, 48_000, "{name}");
        assert_eq!(analysis.channels, channels.parse::<usize>().unwrap());
        assert_eq!(analysis.bad_packets, 0);
        // The pre-skip is dropped; the last packet's padding (at most 20 ms) may remain.
        let extra = analysis.duration_ms as i64 - reference.duration_ms as i64;
        assert!(
            (0..=25).contains(&extra),
            "{name}: {} ms",
            analysis.duration_ms
        );
        if channels == "2" {
            let drift = (analysis.integrated_lufs - reference.integrated_lufs).abs();
            assert!(drift < 0.5, "{name}: {} LUFS", analysis.integrated_lufs);
        }
        let out = dir.path().join(format!("{name}-out"));
        let packaged = package(
            std::io::Cursor::new(std::fs::read(&opus).unwrap()),
            Some("opus"),
            &Limits::default(),
            &LADDER,
            &out,
        );
        assert!(packaged.is_ok(), "{name}: {packaged:?}");
    }
}

/// Truncated files of every supported format (made by ffmpeg from one source, cut in half) get a
/// clear outcome and never a panic: a rejection where the container declares its length (WAV,
/// FLAC, M4A) and otherwise the shorter track the bytes hold (MP3, Ogg), never longer.
#[test]
fn truncated_files_of_every_format_get_a_clear_outcome() {
    if !ffmpeg_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.wav");
    std::fs::write(&source, wav(8.0, 44_100)).unwrap();
    for (extension, codec, declares_length) in [
        ("wav", "pcm_s16le", true),
        ("flac", "flac", true),
        ("m4a", "aac", true),
        ("mp3", "libmp3lame", false),
        ("ogg", "libvorbis", false),
        ("opus", "libopus", false),
    ] {
        let file = dir.path().join(format!("whole.{extension}"));
        let encoded = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-y", "-i"])
            .arg(&source)
            .args(["-c:a", codec])
            .arg(&file)
            .output()
            .expect("ffmpeg runs");
        if !encoded.status.success() {
            panic!("{extension}: {}", String::from_utf8_lossy(&encoded.stderr));
        }
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.truncate(bytes.len() / 2);
        let outcome = media::analyze::analyze(
            std::io::Cursor::new(bytes),
            Some(extension),
            &Limits::default(),
        );
        match outcome {
            Err(rejection) => assert!(
                matches!(rejection.code(), "corrupt" | "not_audio"),
                "{extension}: {rejection}"
            ),
            Ok(analysis) => {
                assert!(
                    !declares_length,
                    "{extension}: a truncated file was accepted"
                );
                assert!(
                    analysis.duration_ms < 6_000,
                    "{extension}: {} ms from half the bytes",
                    analysis.duration_ms
                );
            }
        }
    }
}
