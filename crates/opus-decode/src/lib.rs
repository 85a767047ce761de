//! A safe Opus packet decoder: libopus's own decoder (as `unsafe-libopus`, the C library
//! translated to Rust, so it builds from crates.io with no system package or C toolchain),
//! behind a type that owns the decoder state and checks every buffer before libopus sees it.
//!
//! This crate allows `unsafe` for that alone: creating, using and freeing the decoder through
//! libopus's pointer-based API.

/// Why a decoder could not be made or a packet decoded: libopus's error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpusError {
    /// The sample rate or channel count is not one libopus decodes at.
    #[error("libopus does not decode at {sample_rate} Hz with {channels} channels")]
    BadArguments {
        /// Asked-for rate.
        sample_rate: u32,
        /// Asked-for channels.
        channels: usize,
    },
    /// libopus refused the packet (its code: -4 invalid packet, -1 bad argument, …).
    #[error("libopus error {0}")]
    Decode(i32),
}

/// The most frames one Opus packet decodes to: 120 ms at 48 kHz.
pub const MAX_FRAMES_48K: usize = 5760;

/// One stream's decoder.
#[derive(Debug)]
pub struct Decoder {
    state: std::ptr::NonNull<unsafe_libopus::OpusDecoder>,
    channels: usize,
    max_frames: usize,
}

// SAFETY: the decoder state is plain memory owned by this value alone; libopus keeps no
// thread-local or global state for it.
unsafe impl Send for Decoder {}
// SAFETY: every method that touches the state takes `&mut self`.
unsafe impl Sync for Decoder {}

impl Decoder {
    /// A decoder for `channels` (1 or 2) at `sample_rate` (8, 12, 16, 24 or 48 kHz).
    pub fn new(sample_rate: u32, channels: usize) -> Result<Self, OpusError> {
        let bad = OpusError::BadArguments {
            sample_rate,
            channels,
        };
        if !matches!(sample_rate, 8_000 | 12_000 | 16_000 | 24_000 | 48_000)
            || !(1..=2).contains(&channels)
        {
            return Err(bad);
        }
        let mut error = 0i32;
        // SAFETY: arguments are in libopus's documented ranges (checked above); `error` is a
        // valid pointer for the call's duration.
        let state = unsafe {
            unsafe_libopus::opus_decoder_create(sample_rate as i32, channels as i32, &mut error)
        };
        match std::ptr::NonNull::new(state) {
            Some(state) if error == 0 => Ok(Self {
                state,
                channels,
                max_frames: MAX_FRAMES_48K * sample_rate as usize / 48_000,
            }),
            _ => Err(bad),
        }
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The samples a buffer must hold for any packet: frames × channels.
    pub fn max_samples(&self) -> usize {
        self.max_frames * self.channels
    }

    /// Decodes one packet into `pcm` (interleaved `f32`, at least [`Self::max_samples`]
    /// long); the frames decoded.
    pub fn decode_float(&mut self, packet: &[u8], pcm: &mut [f32]) -> Result<usize, OpusError> {
        if pcm.len() < self.max_samples() || packet.len() > i32::MAX as usize {
            return Err(OpusError::Decode(-1));
        }
        let frames = (pcm.len() / self.channels).min(self.max_frames) as i32;
        // SAFETY: `state` is a live decoder owned by `self`; `packet` is readable for its
        // length; `pcm` holds `frames × channels` writable floats (checked above).
        let decoded = unsafe {
            unsafe_libopus::opus_decode_float(
                self.state.as_ptr(),
                packet.as_ptr(),
                packet.len() as i32,
                pcm.as_mut_ptr(),
                frames,
                0,
            )
        };
        usize::try_from(decoded).map_err(|_| OpusError::Decode(decoded))
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: `state` came from opus_decoder_create and is freed once, here.
        unsafe { unsafe_libopus::opus_decoder_destroy(self.state.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_rates_and_layouts_libopus_does_not_decode() {
        assert!(Decoder::new(44_100, 2).is_err());
        assert!(Decoder::new(48_000, 3).is_err());
        assert_eq!(Decoder::new(48_000, 2).unwrap().max_samples(), 11_520);
    }

    #[test]
    fn a_short_buffer_or_a_garbage_packet_is_an_error_not_a_crash() {
        let mut decoder = Decoder::new(48_000, 1).unwrap();
        let mut small = vec![0.0; 10];
        assert!(
            decoder
                .decode_float(&[0xfc, 0xff, 0xfe], &mut small)
                .is_err()
        );
        let mut pcm = vec![0.0; decoder.max_samples()];
        // A TOC byte for a 20 ms CELT frame and no payload: libopus treats an empty frame as
        // lost and conceals it; any answer but a crash will do.
        let _ = decoder.decode_float(&[0xfc], &mut pcm);
        assert!(decoder.decode_float(&[0xff; 3], &mut pcm).is_err());
    }
}
