//! Transcoding and packaging: one decode feeds every rendition of the AAC-LC ladder (fdk-aac),
//! whose access units are cut into ~6 s CMAF segments as they come, then HLS and DASH
//! manifests are written beside them. Memory stays at one segment per rendition.
//!
//! All renditions share one sample rate — the source's when it is 44.1 or 48 kHz, else 48 kHz
//! through an FFT resampler (rubato) — and a stereo layout (mono is duplicated, more channels
//! keep the first two). The encoder's priming is trimmed, and
//! the silence padded at the end (the encoder cannot be flushed through its wrapper) cut off,
//! by each rendition's edit list, so playback is sample-exact.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

use super::analyze::{Analysis, Limits, Meter, Rejection, decode};
use super::package::{
    RenditionInfo, SegmentInfo, TrackHeader, dash_mpd, hls_master_playlist, hls_media_playlist,
    init_segment, media_segment,
};

/// The codec string of AAC-LC.
pub const CODECS: &str = "mp4a.40.2";
/// Samples per AAC frame.
const FRAME: usize = 1024;
/// Target segment length, seconds.
const SEGMENT_SECS: f64 = 6.0;

/// One rung of the ladder.
#[derive(Debug, Clone, Copy)]
pub struct Rung {
    /// Directory and representation id.
    pub id: &'static str,
    /// Bit rate, bits per second.
    pub bitrate: u32,
}

/// The default ladder: 64, 128 and 256 kbit/s.
pub const LADDER: [Rung; 3] = [
    Rung {
        id: "64k",
        bitrate: 64_000,
    },
    Rung {
        id: "128k",
        bitrate: 128_000,
    },
    Rung {
        id: "256k",
        bitrate: 256_000,
    },
];

/// Why packaging failed (other than the input being unusable).
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The input is not a usable track.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The encoder refused.
    #[error("AAC encoder: {0}")]
    Encoder(String),
    /// Writing the output failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What was produced.
#[derive(Debug, Clone)]
pub struct Packaged {
    /// The analysis of the source (loudness, duration).
    pub analysis: Analysis,
    /// The renditions, in ladder order.
    pub renditions: Vec<RenditionInfo>,
    /// Relative paths of every file written, for publishing.
    pub files: Vec<String>,
    /// Acoustic fingerprint (Chromaprint) of the first two minutes, for copy detection.
    pub fingerprint: Vec<u32>,
}

/// Seconds of audio the fingerprint covers.
const FINGERPRINT_SECS: u64 = 120;

struct RenditionWriter {
    rung: Rung,
    encoder: Encoder,
    dir: PathBuf,
    pending: Vec<i16>,
    segment_frames: Vec<Vec<u8>>,
    frames_per_segment: usize,
    segment_start: u64,
    segments: Vec<SegmentInfo>,
    priming: u32,
    output: Vec<u8>,
    /// Access units produced so far.
    emitted: u64,
    /// Once the length is known: the access units that hold real samples. Later ones (the
    /// padding that pushed the last samples out of the encoder) are dropped.
    keep: Option<u64>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl RenditionWriter {
    fn new(rung: Rung, sample_rate: u32, out: &Path) -> Result<Self, PackageError> {
        let encoder = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(rung.bitrate),
            sample_rate,
            transport: Transport::Raw,
            channels: ChannelMode::Stereo,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|error| PackageError::Encoder(format!("{error:?}")))?;
        let info = encoder
            .info()
            .map_err(|error| PackageError::Encoder(format!("{error:?}")))?;
        let dir = out.join(rung.id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self {
            rung,
            encoder,
            dir,
            pending: Vec::with_capacity(FRAME * 4),
            segment_frames: Vec::new(),
            frames_per_segment: (SEGMENT_SECS * f64::from(sample_rate) / FRAME as f64).round()
                as usize,
            segment_start: 0,
            segments: Vec::new(),
            priming: info.nDelay,
            output: vec![0; 8192],
            emitted: 0,
            keep: None,
        })
    }

    fn asc(&self) -> Result<Vec<u8>, PackageError> {
        let info = self
            .encoder
            .info()
            .map_err(|error| PackageError::Encoder(format!("{error:?}")))?;
        Ok(info.confBuf[..info.confSize as usize].to_vec())
    }

    /// Adds interleaved stereo samples, encoding every whole frame.
    fn push(&mut self, stereo: &[i16], presented: u64, rate: u32) -> Result<(), PackageError> {
        self.pending.extend_from_slice(stereo);
        let mut taken = 0;
        while self.pending.len() - taken >= FRAME * 2 {
            let block = &self.pending[taken..taken + FRAME * 2];
            let encoded = self
                .encoder
                .encode(block, &mut self.output)
                .map_err(|error| PackageError::Encoder(format!("{error:?}")))?;
            taken += encoded.input_consumed.max(FRAME * 2);
            if encoded.output_size > 0 && self.keep.is_none_or(|keep| self.emitted < keep) {
                self.emitted += 1;
                self.segment_frames
                    .push(self.output[..encoded.output_size].to_vec());
                if self.segment_frames.len() == self.frames_per_segment {
                    self.flush(presented, rate)?;
                }
            }
        }
        self.pending.drain(..taken);
        Ok(())
    }

    /// Writes the frames gathered so far as the next segment.
    fn flush(&mut self, presented: u64, rate: u32) -> Result<(), PackageError> {
        if self.segment_frames.is_empty() {
            return Ok(());
        }
        let sequence = self.segments.len() as u32 + 1;
        let bytes = media_segment(
            sequence,
            self.segment_start,
            &self.segment_frames,
            FRAME as u32,
        );
        let path = self.dir.join(format!("seg-{sequence:05}.m4s"));
        std::fs::write(&path, &bytes).map_err(io(&path))?;
        let samples = (self.segment_frames.len() * FRAME) as u64;
        // The part of this segment the edit list presents: [priming, priming + presented).
        let (first, last) = (u64::from(self.priming), u64::from(self.priming) + presented);
        let shown = (self.segment_start + samples)
            .min(last)
            .saturating_sub(self.segment_start.max(first));
        self.segments.push(SegmentInfo {
            start: self.segment_start,
            samples,
            bytes: bytes.len() as u64,
            presented_secs: shown as f64 / f64::from(rate),
        });
        self.segment_start += samples;
        self.segment_frames.clear();
        Ok(())
    }
}

/// Moves decoded audio to the encoders: stereo, at the output rate, as 16-bit samples.
struct Feed {
    out_rate: u32,
    in_rate: u32,
    resampler: Option<rubato::FftFixedIn<f32>>,
    /// Resampler input waiting for a whole chunk, per channel.
    pending: [Vec<f32>; 2],
    /// Resampler output still to drop (its delay).
    skip: usize,
    /// Stereo frames handed to the encoders.
    fed: u64,
    interleaved: Vec<i16>,
}

impl Feed {
    fn new(in_rate: u32) -> Result<Self, PackageError> {
        let (out_rate, resampler) = if in_rate == 44_100 || in_rate == 48_000 {
            (in_rate, None)
        } else {
            let resampler = rubato::FftFixedIn::<f32>::new(in_rate as usize, 48_000, 1024, 2, 2)
                .map_err(|error| PackageError::Encoder(format!("resampler: {error}")))?;
            (48_000, Some(resampler))
        };
        let skip = resampler
            .as_ref()
            .map_or(0, rubato::Resampler::output_delay);
        Ok(Self {
            out_rate,
            in_rate,
            resampler,
            pending: [Vec::new(), Vec::new()],
            skip,
            fed: 0,
            interleaved: Vec::new(),
        })
    }

    fn push(
        &mut self,
        samples: &[f32],
        channels: usize,
        writers: &mut [RenditionWriter],
    ) -> Result<(), PackageError> {
        let stereo = samples
            .chunks_exact(channels)
            .map(|frame| (frame[0], if channels > 1 { frame[1] } else { frame[0] }));
        let Some(mut resampler) = self.resampler.take() else {
            self.interleaved.clear();
            for (left, right) in stereo {
                self.interleaved.push(to_i16(left));
                self.interleaved.push(to_i16(right));
            }
            return self.emit(writers, None);
        };
        for (left, right) in stereo {
            self.pending[0].push(left);
            self.pending[1].push(right);
        }
        use rubato::Resampler as _;
        while self.pending[0].len() >= resampler.input_frames_next() {
            let take = resampler.input_frames_next();
            let chunk = [
                self.pending[0][..take].to_vec(),
                self.pending[1][..take].to_vec(),
            ];
            self.pending[0].drain(..take);
            self.pending[1].drain(..take);
            let output = resampler
                .process(&chunk, None)
                .map_err(|error| PackageError::Encoder(format!("resampler: {error}")))?;
            self.interleave(&output);
            self.emit(writers, None)?;
        }
        self.resampler = Some(resampler);
        Ok(())
    }

    /// Drains the resampler so that exactly the expected number of frames reaches the encoders.
    fn finish(
        &mut self,
        source_frames: u64,
        writers: &mut [RenditionWriter],
    ) -> Result<(), PackageError> {
        let Some(mut resampler) = self.resampler.take() else {
            return Ok(());
        };
        use rubato::Resampler as _;
        let expected = (u128::from(source_frames) * u128::from(self.out_rate)
            / u128::from(self.in_rate)) as u64;
        let pending = std::mem::take(&mut self.pending);
        // rubato reads an empty channel as an inactive one: a tail of nothing is flushed below.
        if !pending[0].is_empty() {
            let output = resampler
                .process_partial(Some(&pending), None)
                .map_err(|error| PackageError::Encoder(format!("resampler: {error}")))?;
            self.interleave(&output);
            self.emit(writers, Some(expected))?;
        }
        while self.fed < expected {
            let output = resampler
                .process_partial(None::<&[Vec<f32>]>, None)
                .map_err(|error| PackageError::Encoder(format!("resampler: {error}")))?;
            if output[0].is_empty() {
                break;
            }
            self.interleave(&output);
            self.emit(writers, Some(expected))?;
        }
        Ok(())
    }

    fn interleave(&mut self, output: &[Vec<f32>]) {
        self.interleaved.clear();
        let skip = self.skip.min(output[0].len());
        self.skip -= skip;
        for (left, right) in output[0][skip..].iter().zip(&output[1][skip..]) {
            self.interleaved.push(to_i16(*left));
            self.interleaved.push(to_i16(*right));
        }
    }

    /// Hands the interleaved buffer to every encoder, cut at `limit` frames in total.
    fn emit(
        &mut self,
        writers: &mut [RenditionWriter],
        limit: Option<u64>,
    ) -> Result<(), PackageError> {
        let mut frames = (self.interleaved.len() / 2) as u64;
        if let Some(limit) = limit {
            frames = frames.min(limit.saturating_sub(self.fed));
        }
        let block = &self.interleaved[..frames as usize * 2];
        for writer in writers.iter_mut() {
            writer.push(block, u64::MAX / 4, self.out_rate)?;
        }
        self.fed += frames;
        Ok(())
    }
}

fn to_i16(sample: f32) -> i16 {
    (sample.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

/// Decodes `source`, measures it, and writes the ladder's CMAF renditions, HLS playlists
/// (`master.m3u8`, `{rung}/index.m3u8`) and DASH manifest (`manifest.mpd`) under `out`.
pub fn package<R>(
    source: R,
    extension: Option<&str>,
    limits: &Limits,
    ladder: &[Rung],
    out: &Path,
) -> Result<Packaged, PackageError>
where
    R: Read + Seek + Send + Sync + 'static,
{
    let mut meter = Meter::default();
    let mut writers: Vec<RenditionWriter> = Vec::new();
    let mut feed: Option<Feed> = None;
    let mut failure: Option<PackageError> = None;
    let fingerprint_config = super::fingerprint::config();
    let mut printer = rusty_chromaprint::Fingerprinter::new(&fingerprint_config);
    let mut printed: u64 = 0;
    let mut stereo_source: Vec<i16> = Vec::new();
    let info = decode(
        source,
        extension,
        limits.max_duration_ms,
        |samples, channels, rate| {
            meter.add(samples, channels, rate)?;
            if printed == 0 {
                printer
                    .start(rate, 2)
                    .map_err(|error| Rejection::Corrupt(format!("fingerprinting: {error:?}")))?;
            }
            if printed < FINGERPRINT_SECS * u64::from(rate) {
                stereo_source.clear();
                for frame in samples.chunks_exact(channels) {
                    stereo_source.push(to_i16(frame[0]));
                    stereo_source.push(to_i16(if channels > 1 { frame[1] } else { frame[0] }));
                }
                printer.consume(&stereo_source);
                printed += (samples.len() / channels) as u64;
            }
            let feed = match &mut feed {
                Some(feed) => feed,
                None => {
                    let created = Feed::new(rate).map_err(|error| {
                        failure = Some(error);
                        Rejection::Corrupt("resampler setup failed".to_owned())
                    })?;
                    for rung in ladder {
                        match RenditionWriter::new(*rung, created.out_rate, out) {
                            Ok(writer) => writers.push(writer),
                            Err(error) => {
                                failure = Some(error);
                                return Err(Rejection::Corrupt("encoder setup failed".to_owned()));
                            }
                        }
                    }
                    feed.insert(created)
                }
            };
            if let Err(error) = feed.push(samples, channels, &mut writers) {
                failure = Some(error);
                return Err(Rejection::Corrupt("encoding failed".to_owned()));
            }
            Ok(())
        },
    );
    if let Some(error) = failure {
        return Err(error);
    }
    let info = info?;
    let analysis = meter.finish(&info, limits)?;
    let mut feed =
        feed.ok_or_else(|| PackageError::Rejected(Rejection::Corrupt("no audio".to_owned())))?;
    feed.finish(info.frames, &mut writers)?;
    let rate = feed.out_rate;
    let presented = feed.fed;
    let mut renditions = Vec::with_capacity(writers.len());
    let mut files = Vec::new();
    for writer in &mut writers {
        // Pad with silence so that every real sample leaves the encoder's look-ahead, keeping
        // only the access units that reach the last real sample.
        writer.keep = Some((u64::from(writer.priming) + presented).div_ceil(FRAME as u64));
        let padding = vec![0i16; (writer.priming as usize + 2 * FRAME) * 2];
        writer.push(&padding, presented, rate)?;
        writer.flush(presented, rate)?;
        // Segment durations as presented, now that the length is known.
        let (first, last) = (
            u64::from(writer.priming),
            u64::from(writer.priming) + presented,
        );
        let mut segments = Vec::new();
        for segment in &writer.segments {
            let shown = (segment.start + segment.samples)
                .min(last)
                .saturating_sub(segment.start.max(first));
            if shown > 0 {
                segments.push(SegmentInfo {
                    presented_secs: shown as f64 / f64::from(rate),
                    ..*segment
                });
            } else {
                // A segment holding only padding is not published.
                let path = writer
                    .dir
                    .join(format!("seg-{:05}.m4s", segments.len() + 1));
                let _ = std::fs::remove_file(path);
            }
        }
        let header = TrackHeader {
            sample_rate: rate,
            channels: 2,
            audio_specific_config: writer.asc()?,
            priming: writer.priming,
            presented,
            bitrate: writer.rung.bitrate,
        };
        let init = init_segment(&header);
        let init_path = writer.dir.join("init.mp4");
        std::fs::write(&init_path, &init).map_err(io(&init_path))?;
        let rendition = RenditionInfo {
            id: writer.rung.id.to_owned(),
            segments,
            init_bytes: init.len() as u64,
        };
        let playlist_path = writer.dir.join("index.m3u8");
        std::fs::write(&playlist_path, hls_media_playlist(&rendition))
            .map_err(io(&playlist_path))?;
        files.push(format!("{}/init.mp4", rendition.id));
        files.push(format!("{}/index.m3u8", rendition.id));
        files.extend(
            (1..=rendition.segments.len()).map(|n| format!("{}/seg-{n:05}.m4s", rendition.id)),
        );
        renditions.push(rendition);
    }
    let master = out.join("master.m3u8");
    std::fs::write(&master, hls_master_playlist(&renditions, CODECS)).map_err(io(&master))?;
    let priming = writers.first().map_or(0, |writer| writer.priming);
    let mpd = out.join("manifest.mpd");
    std::fs::write(
        &mpd,
        dash_mpd(
            &renditions,
            rate,
            2,
            priming,
            presented as f64 / f64::from(rate),
            CODECS,
        ),
    )
    .map_err(io(&mpd))?;
    files.push("master.m3u8".to_owned());
    files.push("manifest.mpd".to_owned());
    printer.finish();
    Ok(Packaged {
        analysis,
        renditions,
        files,
        fingerprint: printer.fingerprint().to_vec(),
    })
}
