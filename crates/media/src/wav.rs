//! Synthesised audio: 16-bit stereo PCM WAV files built in memory — the launcher's demo track,
//! and the audio of the analyser's unit tests and the integration tests.

/// A 16-bit stereo PCM WAV of `seconds` at `rate` Hz, where `sample(t)` gives the left and
/// right values (−1..1) at `t` seconds. `declared_frames` makes the header claim another
/// length than the data it carries (clamped to what a RIFF size field can state).
pub fn pcm_wav(
    seconds: f64,
    rate: u32,
    declared_frames: Option<u64>,
    mut sample: impl FnMut(f64) -> (f64, f64),
) -> Vec<u8> {
    let frames = (seconds * f64::from(rate)) as u64;
    let data_len = declared_frames
        .unwrap_or(frames)
        .saturating_mul(4)
        .min(u64::from(u32::MAX - 36)) as u32;
    let mut out = Vec::with_capacity(44 + frames as usize * 4);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&2u16.to_le_bytes()); // channels
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 4).to_le_bytes()); // bytes per second
    out.extend_from_slice(&4u16.to_le_bytes()); // bytes per frame
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..frames {
        let (left, right) = sample(n as f64 / f64::from(rate));
        out.extend_from_slice(&((left * 32767.0) as i16).to_le_bytes());
        out.extend_from_slice(&((right * 32767.0) as i16).to_le_bytes());
    }
    out
}
