//! CMAF packaging and the manifests that reference it — pure functions over bytes and numbers.
//!
//! Each rendition is one `init.mp4` (the track header: AAC-LC `mp4a`/`esds` with the encoder's
//! AudioSpecificConfig, and an edit list that trims the encoder's priming samples and the
//! padding at the end, so playback is sample-exact) and `seg-NNNNN.m4s` fragments
//! (`moof` + `mdat`) with continuous decode times. The same files serve an HLS master and media
//! playlists (RFC 8216: VOD, `EXT-X-MAP`, `CODECS`, peak `BANDWIDTH`, `AVERAGE-BANDWIDTH`,
//! target duration) and a static DASH MPD with a segment timeline.

use std::fmt::Write as _;

/// Writes a box: a 32-bit size, the type, then what `body` writes.
fn write_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Writes a full box (version and flags after the type).
fn full_box(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    write_box(out, kind, |out| {
        out.push(version);
        out.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(out);
    });
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// What an init segment describes.
#[derive(Debug, Clone)]
pub struct TrackHeader {
    /// Sample rate (also the timescale).
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
    /// The encoder's AudioSpecificConfig.
    pub audio_specific_config: Vec<u8>,
    /// Priming samples to skip at the start (encoder delay).
    pub priming: u32,
    /// Samples to present (the source's length).
    pub presented: u64,
    /// Average bit rate, bits per second.
    pub bitrate: u32,
}

/// The `init.mp4` of a rendition.
pub fn init_segment(header: &TrackHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_box(&mut out, b"ftyp", |out| {
        out.extend_from_slice(b"iso6");
        out.extend_from_slice(&0u32.to_be_bytes());
        for brand in [b"iso6", b"cmfc", b"mp41", b"dash"] {
            out.extend_from_slice(brand);
        }
    });
    write_box(&mut out, b"moov", |out| {
        full_box(out, b"mvhd", 0, 0, |out| {
            out.extend_from_slice(&[0; 8]); // creation, modification
            out.extend_from_slice(&header.sample_rate.to_be_bytes());
            out.extend_from_slice(&0u32.to_be_bytes()); // duration: fragmented
            out.extend_from_slice(&0x0001_0000u32.to_be_bytes()); // rate
            out.extend_from_slice(&0x0100u16.to_be_bytes()); // volume
            out.extend_from_slice(&[0; 10]);
            MATRIX
                .iter()
                .for_each(|value| out.extend_from_slice(&value.to_be_bytes()));
            out.extend_from_slice(&[0; 24]);
            out.extend_from_slice(&2u32.to_be_bytes()); // next track id
        });
        write_box(out, b"trak", |out| {
            full_box(out, b"tkhd", 0, 3, |out| {
                out.extend_from_slice(&[0; 8]);
                out.extend_from_slice(&1u32.to_be_bytes()); // track id
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&0u32.to_be_bytes()); // duration
                out.extend_from_slice(&[0; 8]);
                out.extend_from_slice(&0u16.to_be_bytes()); // layer
                out.extend_from_slice(&1u16.to_be_bytes()); // alternate group
                out.extend_from_slice(&0x0100u16.to_be_bytes()); // volume
                out.extend_from_slice(&[0; 2]);
                MATRIX
                    .iter()
                    .for_each(|value| out.extend_from_slice(&value.to_be_bytes()));
                out.extend_from_slice(&[0; 8]); // width, height
            });
            write_box(out, b"edts", |out| {
                full_box(out, b"elst", 1, 0, |out| {
                    out.extend_from_slice(&1u32.to_be_bytes());
                    out.extend_from_slice(&header.presented.to_be_bytes()); // segment duration
                    out.extend_from_slice(&i64::from(header.priming).to_be_bytes()); // media time
                    out.extend_from_slice(&1u16.to_be_bytes());
                    out.extend_from_slice(&0u16.to_be_bytes());
                });
            });
            write_box(out, b"mdia", |out| {
                full_box(out, b"mdhd", 0, 0, |out| {
                    out.extend_from_slice(&[0; 8]);
                    out.extend_from_slice(&header.sample_rate.to_be_bytes());
                    out.extend_from_slice(&0u32.to_be_bytes());
                    out.extend_from_slice(&0x55C4u16.to_be_bytes()); // 'und'
                    out.extend_from_slice(&0u16.to_be_bytes());
                });
                full_box(out, b"hdlr", 0, 0, |out| {
                    out.extend_from_slice(&0u32.to_be_bytes());
                    out.extend_from_slice(b"soun");
                    out.extend_from_slice(&[0; 12]);
                    out.extend_from_slice(b"Cadenza audio\0");
                });
                write_box(out, b"minf", |out| {
                    full_box(out, b"smhd", 0, 0, |out| out.extend_from_slice(&[0; 4]));
                    write_box(out, b"dinf", |out| {
                        full_box(out, b"dref", 0, 0, |out| {
                            out.extend_from_slice(&1u32.to_be_bytes());
                            full_box(out, b"url ", 0, 1, |_| {});
                        });
                    });
                    write_box(out, b"stbl", |out| {
                        full_box(out, b"stsd", 0, 0, |out| {
                            out.extend_from_slice(&1u32.to_be_bytes());
                            write_box(out, b"mp4a", |out| {
                                out.extend_from_slice(&[0; 6]);
                                out.extend_from_slice(&1u16.to_be_bytes()); // data reference index
                                out.extend_from_slice(&[0; 8]);
                                out.extend_from_slice(&header.channels.to_be_bytes());
                                out.extend_from_slice(&16u16.to_be_bytes());
                                out.extend_from_slice(&[0; 4]);
                                out.extend_from_slice(&(header.sample_rate << 16).to_be_bytes());
                                full_box(out, b"esds", 0, 0, |out| esds(out, header));
                            });
                        });
                        for kind in [b"stts", b"stsc", b"stco"] {
                            full_box(out, kind, 0, 0, |out| {
                                out.extend_from_slice(&0u32.to_be_bytes())
                            });
                        }
                        full_box(out, b"stsz", 0, 0, |out| out.extend_from_slice(&[0; 8]));
                    });
                });
            });
        });
        write_box(out, b"mvex", |out| {
            full_box(out, b"trex", 0, 0, |out| {
                for value in [1u32, 1, 1024, 0, 0] {
                    out.extend_from_slice(&value.to_be_bytes());
                }
            });
        });
    });
    out
}

/// The MPEG-4 elementary stream descriptor of an AAC track.
fn esds(out: &mut Vec<u8>, header: &TrackHeader) {
    let asc = &header.audio_specific_config;
    let decoder_specific = [&[0x05, asc.len() as u8][..], asc].concat();
    let mut decoder_config = vec![0x40, 0x15, 0, 0x18, 0]; // AAC, audio stream, 6 KiB buffer
    decoder_config.extend_from_slice(&header.bitrate.to_be_bytes()); // max
    decoder_config.extend_from_slice(&header.bitrate.to_be_bytes()); // average
    decoder_config.extend_from_slice(&decoder_specific);
    let mut es = vec![0, 1, 0]; // ES id 1, no flags
    es.push(0x04);
    es.push(decoder_config.len() as u8);
    es.extend_from_slice(&decoder_config);
    es.extend_from_slice(&[0x06, 0x01, 0x02]); // SL config: predefined MP4
    out.push(0x03);
    out.push(es.len() as u8);
    out.extend_from_slice(&es);
}

/// One media segment: `moof` + `mdat` for `frames` (AAC access units of `frame_len`
/// samples) starting at decode time `base_time`.
pub fn media_segment(sequence: u32, base_time: u64, frames: &[Vec<u8>], frame_len: u32) -> Vec<u8> {
    let payload: usize = frames.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(payload + 64 + frames.len() * 8);
    let mut data_offset_at = 0;
    write_box(&mut out, b"moof", |out| {
        full_box(out, b"mfhd", 0, 0, |out| {
            out.extend_from_slice(&sequence.to_be_bytes())
        });
        write_box(out, b"traf", |out| {
            full_box(out, b"tfhd", 0, 0x02_0000, |out| {
                out.extend_from_slice(&1u32.to_be_bytes())
            });
            full_box(out, b"tfdt", 1, 0, |out| {
                out.extend_from_slice(&base_time.to_be_bytes())
            });
            full_box(out, b"trun", 0, 0x00_0301, |out| {
                out.extend_from_slice(&(frames.len() as u32).to_be_bytes());
                data_offset_at = out.len();
                out.extend_from_slice(&0i32.to_be_bytes());
                for frame in frames {
                    out.extend_from_slice(&frame_len.to_be_bytes());
                    out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
                }
            });
        });
    });
    let data_offset = (out.len() + 8) as i32;
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&data_offset.to_be_bytes());
    out.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    for frame in frames {
        out.extend_from_slice(frame);
    }
    out
}

/// What the manifests need to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentInfo {
    /// Decode time of its first sample.
    pub start: u64,
    /// Samples in it.
    pub samples: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Presented duration (after the edit list), seconds.
    pub presented_secs: f64,
}

/// One rendition as the manifests see it.
#[derive(Debug, Clone)]
pub struct RenditionInfo {
    /// Directory and DASH representation id, e.g. `128k`.
    pub id: String,
    /// Its segments, in order.
    pub segments: Vec<SegmentInfo>,
    /// Size of `init.mp4`.
    pub init_bytes: u64,
}

impl RenditionInfo {
    /// Peak bit rate over its segments (bits per second of presentation).
    pub fn peak_bandwidth(&self) -> u64 {
        self.segments
            .iter()
            .filter(|segment| segment.presented_secs > 0.5)
            .map(|segment| (segment.bytes as f64 * 8.0 / segment.presented_secs).ceil() as u64)
            .max()
            .unwrap_or(0)
    }

    /// Average bit rate over the whole presentation.
    pub fn average_bandwidth(&self) -> u64 {
        let bytes: u64 = self.segments.iter().map(|segment| segment.bytes).sum();
        let secs: f64 = self
            .segments
            .iter()
            .map(|segment| segment.presented_secs)
            .sum();
        if secs > 0.0 {
            (bytes as f64 * 8.0 / secs).ceil() as u64
        } else {
            0
        }
    }
}

/// The HLS media playlist of one rendition.
pub fn hls_media_playlist(rendition: &RenditionInfo) -> String {
    let target = rendition
        .segments
        .iter()
        .map(|segment| segment.presented_secs.round() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n"
    );
    for (index, segment) in rendition.segments.iter().enumerate() {
        let _ = write!(
            text,
            "#EXTINF:{:.5},\nseg-{:05}.m4s\n",
            segment.presented_secs,
            index + 1
        );
    }
    text.push_str("#EXT-X-ENDLIST\n");
    text
}

/// The HLS master playlist.
pub fn hls_master_playlist(renditions: &[RenditionInfo], codecs: &str) -> String {
    let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for rendition in renditions {
        let _ = write!(
            text,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{codecs}\"\n{}/index.m3u8\n",
            rendition.peak_bandwidth(),
            rendition.average_bandwidth(),
            rendition.id
        );
    }
    text
}

/// The static DASH MPD: one Period, one audio AdaptationSet whose SegmentTimeline is the
/// first rendition's (all renditions share their segment boundaries), a Representation per
/// rendition.
pub fn dash_mpd(
    renditions: &[RenditionInfo],
    sample_rate: u32,
    channels: u16,
    priming: u32,
    duration_secs: f64,
    codecs: &str,
) -> String {
    use crate::mpd::{
        AdaptationSet, ChannelConfiguration, Mpd, Period, Representation, Run, Seconds,
        SegmentTemplate, SegmentTimeline,
    };
    let mut runs: Vec<Run> = Vec::new();
    if let Some(rendition) = renditions.first() {
        for segment in &rendition.segments {
            match runs.last_mut() {
                Some(run) if run.d == segment.samples => *run.r.get_or_insert(0) += 1,
                _ => runs.push(Run {
                    t: runs.is_empty().then_some(segment.start),
                    d: segment.samples,
                    r: None,
                }),
            }
        }
    }
    let adaptation = AdaptationSet {
        content_type: "audio".to_owned(),
        mime_type: "audio/mp4".to_owned(),
        codecs: codecs.to_owned(),
        sample_rate,
        lang: "und".to_owned(),
        segment_alignment: true,
        start_with_sap: 1,
        channels: ChannelConfiguration {
            scheme: "urn:mpeg:dash:23003:3:audio_channel_configuration:2011".to_owned(),
            value: channels,
        },
        template: SegmentTemplate {
            timescale: sample_rate,
            presentation_time_offset: u64::from(priming),
            initialization: "$RepresentationID$/init.mp4".to_owned(),
            media: "$RepresentationID$/seg-$Number%05d$.m4s".to_owned(),
            start_number: 1,
            timeline: SegmentTimeline { runs },
        },
        representations: renditions
            .iter()
            .map(|rendition| Representation {
                id: rendition.id.clone(),
                bandwidth: rendition.peak_bandwidth(),
            })
            .collect(),
    };
    Mpd::new(
        duration_secs,
        vec![Period {
            id: "0".to_owned(),
            start: Seconds(0.0),
            duration: None,
            base_url: None,
            events: None,
            adaptation_sets: vec![adaptation],
        }],
    )
    .to_xml()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes(bytes: &[u8]) -> Vec<(String, usize)> {
        let mut found = Vec::new();
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            found.push((
                String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned(),
                size,
            ));
            assert!(size >= 8 && at + size <= bytes.len(), "bad box at {at}");
            at += size;
        }
        assert_eq!(at, bytes.len(), "boxes fill the file exactly");
        found
    }

    #[test]
    fn segments_are_well_formed() {
        let header = TrackHeader {
            sample_rate: 44_100,
            channels: 2,
            audio_specific_config: vec![0x12, 0x10],
            priming: 2048,
            presented: 441_000,
            bitrate: 128_000,
        };
        let init = init_segment(&header);
        let top: Vec<String> = boxes(&init).into_iter().map(|(kind, _)| kind).collect();
        assert_eq!(top, ["ftyp", "moov"]);
        assert!(init.windows(4).any(|w| w == b"elst") && init.windows(4).any(|w| w == b"esds"));

        let frames = vec![vec![1u8; 300], vec![2u8; 310]];
        let segment = media_segment(7, 2048, &frames, 1024);
        let top = boxes(&segment);
        assert_eq!(
            top.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["moof", "mdat"]
        );
        assert_eq!(top[1].1, 8 + 610);
        // trun's data offset points at the first byte of the first frame.
        let trun = segment.windows(4).position(|w| w == b"trun").unwrap();
        let offset = i32::from_be_bytes(segment[trun + 12..trun + 16].try_into().unwrap()) as usize;
        assert_eq!(&segment[offset..offset + 300], &[1u8; 300][..]);
    }

    #[test]
    fn manifests() {
        let segment = |start, samples, bytes, secs| SegmentInfo {
            start,
            samples,
            bytes,
            presented_secs: secs,
        };
        let rendition = RenditionInfo {
            id: "128k".into(),
            segments: vec![
                segment(0, 264_192, 96_000, 5.944),
                segment(264_192, 264_192, 97_000, 5.991),
                segment(528_384, 10_240, 3_000, 0.2),
            ],
            init_bytes: 700,
        };
        let media = hls_media_playlist(&rendition);
        assert!(media.contains("#EXT-X-TARGETDURATION:6\n"), "{media}");
        assert!(
            media.contains("#EXT-X-MAP:URI=\"init.mp4\"") && media.ends_with("#EXT-X-ENDLIST\n")
        );
        assert_eq!(media.matches("#EXTINF:").count(), 3);
        let master = hls_master_playlist(std::slice::from_ref(&rendition), "mp4a.40.2");
        // Peak: 97 000 B × 8 / 5.991 s → 129 528 (the 0.2 s tail is too short to count);
        // average: 196 000 B × 8 / 12.135 s → 129 214.
        assert!(
            master.contains(
                "BANDWIDTH=129528,AVERAGE-BANDWIDTH=129214,CODECS=\"mp4a.40.2\"\n128k/index.m3u8"
            ),
            "{master}"
        );
        let mpd = dash_mpd(&[rendition], 44_100, 2, 2048, 12.135, "mp4a.40.2");
        assert!(mpd.contains("<S t=\"0\" d=\"264192\" r=\"1\"/>"), "{mpd}");
        assert!(mpd.contains("<S d=\"10240\"/>"), "{mpd}");
        let read = crate::mpd::Mpd::parse(&mpd).unwrap();
        assert_eq!(
            read.periods[0].adaptation_sets[0]
                .template
                .timeline
                .runs
                .len(),
            2
        );
        assert!(mpd.contains("presentationTimeOffset=\"2048\""));
    }
}
