//! Per-play manifests made from cacheable pieces: the packaged HLS playlists and DASH MPDs of
//! the ads and of the track, read into typed models (m3u8-rs for HLS, `media::mpd` for DASH,
//! the same types the packager writes with), stitched with absolute URLs (each piece carries
//! its own URL token) so that the segments stay the shared, year-cacheable files every other
//! play uses, and written back. Pure: documents in, documents out.
//!
//! HLS: the master lists the same renditions; each media playlist plays the ads' segments, then
//! `EXT-X-DISCONTINUITY` and the track's, every piece with its own `EXT-X-MAP`; each ad break
//! is marked with an `EXT-X-DATERANGE` (which RFC 8216 ties to `EXT-X-PROGRAM-DATE-TIME`).
//! DASH: one Period per ad and one for the track, each with its `BaseURL`.

use std::collections::HashMap;

use m3u8_rs::{
    DateRange, MasterPlaylist, MediaPlaylist, MediaPlaylistType, MediaSegment, QuotedOrUnquoted,
};
use media::mpd::{Event, EventStream, Mpd, Period, Seconds};

/// Why a piece cannot be stitched.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpliceError {
    /// A packaged document is not what the packager writes.
    #[error("malformed {0}")]
    Malformed(&'static str),
}

/// One piece of a per-play HLS media playlist.
#[derive(Debug, Clone)]
pub struct HlsPiece<'a> {
    /// Absolute URL of the piece's rendition directory, ending with `/`.
    pub base: String,
    /// The packaged media playlist of that rendition.
    pub playlist: &'a str,
    /// `Some(ad track id)` for an ad.
    pub ad: Option<&'a str>,
}

fn media_playlist(text: &str) -> Result<MediaPlaylist, SpliceError> {
    m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .map_err(|_| SpliceError::Malformed("media playlist"))
}

fn master_playlist(text: &str) -> Result<MasterPlaylist, SpliceError> {
    if !text.starts_with("#EXTM3U") {
        return Err(SpliceError::Malformed("master playlist"));
    }
    m3u8_rs::parse_master_playlist_res(text.as_bytes())
        .map_err(|_| SpliceError::Malformed("master playlist"))
}

fn write_hls(write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    write(&mut out).expect("writing to memory succeeds");
    String::from_utf8(out).expect("playlists are UTF-8")
}

fn duration_of(playlist: &MediaPlaylist) -> f64 {
    playlist
        .segments
        .iter()
        .map(|segment| f64::from(segment.duration))
        .sum()
}

/// A Unix-ms instant as the date type HLS tags carry.
fn hls_date(ms: i64) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::from_timestamp_millis(ms.max(0))
        .unwrap_or_default()
        .fixed_offset()
}

/// The per-play media playlist of one rendition: `pieces` in order (ads first), starting at
/// `start_ms` (Unix ms, the `EXT-X-PROGRAM-DATE-TIME` the break markers hang from).
pub fn hls_media(
    pieces: &[HlsPiece<'_>],
    start_ms: i64,
    play_id: &str,
) -> Result<String, SpliceError> {
    let mut target = 1u64;
    let mut segments = Vec::new();
    let mut offset_ms = 0.0;
    for (index, piece) in pieces.iter().enumerate() {
        let playlist = media_playlist(piece.playlist)?;
        target = target.max(playlist.target_duration);
        let duration = duration_of(&playlist);
        let map = playlist
            .segments
            .first()
            .and_then(|segment| segment.map.clone())
            .ok_or(SpliceError::Malformed("EXT-X-MAP"))?;
        for (position, segment) in playlist.segments.into_iter().enumerate() {
            let mut segment = MediaSegment {
                uri: absolute(&piece.base, &segment.uri),
                duration: segment.duration,
                title: segment.title,
                ..MediaSegment::default()
            };
            if position == 0 {
                let mut map = map.clone();
                map.uri = absolute(&piece.base, &map.uri);
                segment.map = Some(map);
                segment.discontinuity = index > 0;
                if index == 0 {
                    segment.program_date_time = Some(hls_date(start_ms));
                }
                if let Some(ad) = piece.ad {
                    segment.daterange = Some(DateRange {
                        id: format!("{play_id}-ad-{}", index + 1),
                        class: Some("com.cadenza.ad".to_owned()),
                        start_date: hls_date(start_ms + offset_ms as i64),
                        end_date: None,
                        duration: Some((duration * 1000.0).round() / 1000.0),
                        planned_duration: None,
                        x_prefixed: Some(HashMap::from([(
                            "X-AD-ID".to_owned(),
                            QuotedOrUnquoted::Quoted(ad.to_owned()),
                        )])),
                        end_on_next: false,
                        other_attributes: None,
                    });
                }
            }
            segments.push(segment);
        }
        offset_ms += duration * 1000.0;
    }
    let playlist = MediaPlaylist {
        version: Some(7),
        target_duration: target,
        media_sequence: 0,
        segments,
        end_list: true,
        playlist_type: Some(MediaPlaylistType::Vod),
        independent_segments: true,
        ..MediaPlaylist::default()
    };
    Ok(write_hls(|out| playlist.write_to(out)))
}

/// The per-play master playlist: the track's, with each variant pointing at the per-play
/// media playlist `{rendition}.m3u8` next to it, and `BANDWIDTH` the peak over the track and
/// the ads' same rendition (`ad_masters`).
pub fn hls_master(track_master: &str, ad_masters: &[&str]) -> Result<String, SpliceError> {
    let ad_peaks: Vec<Vec<(String, u64)>> = ad_masters
        .iter()
        .map(|master| variants(master))
        .collect::<Result<_, _>>()?;
    let mut master = master_playlist(track_master)?;
    for variant in &mut master.variants {
        let rendition = rendition_of(&variant.uri)?.to_owned();
        variant.bandwidth = ad_peaks
            .iter()
            .filter_map(|ad| {
                ad.iter()
                    .find(|(id, _)| *id == rendition)
                    .map(|(_, peak)| *peak)
            })
            .fold(variant.bandwidth, u64::max);
        variant.uri = format!("{rendition}.m3u8");
    }
    Ok(write_hls(|out| master.write_to(out)))
}

/// The renditions a master lists (`rendition id`, `BANDWIDTH`).
pub fn variants(master: &str) -> Result<Vec<(String, u64)>, SpliceError> {
    master_playlist(master)?
        .variants
        .iter()
        .map(|variant| Ok((rendition_of(&variant.uri)?.to_owned(), variant.bandwidth)))
        .collect()
}

/// `128k` of `128k/index.m3u8`.
fn rendition_of(uri: &str) -> Result<&str, SpliceError> {
    let rendition = uri
        .trim()
        .strip_suffix("/index.m3u8")
        .ok_or(SpliceError::Malformed("variant URI"))?;
    if rendition.is_empty()
        || !rendition
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(SpliceError::Malformed("variant URI"));
    }
    Ok(rendition)
}

/// One piece of a per-play DASH MPD.
#[derive(Debug, Clone)]
pub struct DashPiece<'a> {
    /// Absolute URL of the piece's version directory (where its MPD lies), ending with `/`.
    pub base: String,
    /// Its packaged MPD.
    pub mpd: &'a str,
    /// `Some(ad track id)` for an ad.
    pub ad: Option<&'a str>,
}

/// The per-play MPD: one Period per piece, in order, each the piece's own with its start,
/// duration and `BaseURL` (and, for an ad, an event marking the break).
pub fn dash_mpd(pieces: &[DashPiece<'_>]) -> Result<String, SpliceError> {
    let mut periods = Vec::with_capacity(pieces.len());
    let mut start = 0.0;
    for (index, piece) in pieces.iter().enumerate() {
        let packaged = Mpd::parse(piece.mpd).map_err(|_| SpliceError::Malformed("MPD"))?;
        let duration = packaged.duration.0;
        let period = packaged
            .periods
            .into_iter()
            .next()
            .ok_or(SpliceError::Malformed("Period"))?;
        if period.adaptation_sets.is_empty() {
            return Err(SpliceError::Malformed("AdaptationSet"));
        }
        periods.push(Period {
            id: match piece.ad {
                Some(_) => format!("ad-{}", index + 1),
                None => "track".to_owned(),
            },
            start: Seconds(start),
            duration: Some(Seconds(duration)),
            base_url: Some(piece.base.clone()),
            events: piece.ad.map(|ad| EventStream {
                scheme: "urn:cadenza:ad:2026".to_owned(),
                timescale: 1000,
                events: vec![Event {
                    id: index as u64 + 1,
                    presentation_time: 0,
                    duration: (duration * 1000.0).round() as u64,
                    value: ad.to_owned(),
                }],
            }),
            adaptation_sets: period.adaptation_sets,
        });
        start += duration;
    }
    Ok(Mpd::new(start, periods).to_xml())
}

/// `base` + a relative `uri` (an absolute one is kept).
fn absolute(base: &str, uri: &str) -> String {
    if uri.contains("://") {
        uri.to_owned()
    } else {
        format!("{base}{uri}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AD: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:6.00000,\nseg-00001.m4s\n#EXTINF:4.50000,\nseg-00002.m4s\n#EXT-X-ENDLIST\n";
    const TRACK: &str = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:7\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:6.00000,\nseg-00001.m4s\n#EXT-X-ENDLIST\n";

    #[test]
    fn splices_ads_before_the_track() {
        let text = hls_media(
            &[
                HlsPiece {
                    base: "https://e/t/A/media/ad/1/64k/".into(),
                    playlist: AD,
                    ad: Some("ad"),
                },
                HlsPiece {
                    base: "https://e/t/T/media/tr/1/64k/".into(),
                    playlist: TRACK,
                    ad: None,
                },
            ],
            1_700_000_000_000,
            "p",
        )
        .unwrap();
        assert_eq!(text.matches("#EXT-X-ENDLIST").count(), 1);
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY").count(), 1);
        assert!(text.contains("#EXT-X-TARGETDURATION:7\n"));
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z"));
        // The break's marker: its id, class, start (the program date), length and ad.
        let marker = text
            .lines()
            .find(|line| line.starts_with("#EXT-X-DATERANGE:"))
            .unwrap();
        for part in [
            "ID=\"p-ad-1\"",
            "CLASS=\"com.cadenza.ad\"",
            "START-DATE=\"2023-11-14T22:13:20+00:00\"",
            "DURATION=10.5",
            "X-AD-ID=\"ad\"",
        ] {
            assert!(marker.contains(part), "{marker}");
        }
        let ad_map = text
            .find("#EXT-X-MAP:URI=\"https://e/t/A/media/ad/1/64k/init.mp4\"")
            .unwrap();
        let gap = text.find("#EXT-X-DISCONTINUITY").unwrap();
        let track_map = text
            .find("#EXT-X-MAP:URI=\"https://e/t/T/media/tr/1/64k/init.mp4\"")
            .unwrap();
        let ad_last = text
            .find("https://e/t/A/media/ad/1/64k/seg-00002.m4s")
            .unwrap();
        let track_first = text
            .find("https://e/t/T/media/tr/1/64k/seg-00001.m4s")
            .unwrap();
        // The ad's map and segments, then the discontinuity and the track's map (in either
        // order: both are tags of the track's first segment), then the track's segments.
        assert!(
            ad_map < ad_last && ad_last < gap && ad_last < track_map,
            "{text}"
        );
        assert!(gap < track_first && track_map < track_first, "{text}");
        assert!(text.contains("\nhttps://e/t/T/media/tr/1/64k/seg-00001.m4s\n"));
        assert_eq!(duration_of(&media_playlist(&text).unwrap()), 16.5);
        assert!(
            hls_media(
                &[HlsPiece {
                    base: String::new(),
                    playlist: "nope",
                    ad: None
                }],
                0,
                "p"
            )
            .is_err()
        );
    }

    #[test]
    fn master_points_at_per_play_playlists_with_the_peak_bandwidth() {
        let track = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=70000,AVERAGE-BANDWIDTH=65000,CODECS=\"mp4a.40.2\"\n64k/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=130000,AVERAGE-BANDWIDTH=128000,CODECS=\"mp4a.40.2\"\n128k/index.m3u8\n";
        let ad = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=72000,AVERAGE-BANDWIDTH=64000,CODECS=\"mp4a.40.2\"\n64k/index.m3u8\n";
        let master = hls_master(track, &[ad]).unwrap();
        assert!(
            master.contains(
                "BANDWIDTH=72000,AVERAGE-BANDWIDTH=65000,CODECS=\"mp4a.40.2\"\n64k.m3u8\n"
            ),
            "{master}"
        );
        assert!(master.contains(
            "BANDWIDTH=130000,AVERAGE-BANDWIDTH=128000,CODECS=\"mp4a.40.2\"\n128k.m3u8\n"
        ));
        assert_eq!(
            variants(&master).unwrap_err(),
            SpliceError::Malformed("variant URI")
        );
        assert!(hls_master("not a playlist", &[]).is_err());
    }

    /// A packaged MPD of `duration` seconds, as the packager writes it.
    fn packaged(duration: f64) -> String {
        let rendition = media::package::RenditionInfo {
            id: "64k".into(),
            segments: vec![media::package::SegmentInfo {
                start: 0,
                samples: (duration * 48_000.0) as u64,
                bytes: 48_000,
                presented_secs: duration,
            }],
            init_bytes: 700,
        };
        media::package::dash_mpd(&[rendition], 48_000, 2, 2048, duration, "mp4a.40.2")
    }

    #[test]
    fn dash_gets_a_period_per_piece() {
        let (ad, track) = (packaged(10.5), packaged(20.0));
        let text = dash_mpd(&[
            DashPiece {
                base: "https://e/t/A/media/ad/1/".into(),
                mpd: &ad,
                ad: Some("ad"),
            },
            DashPiece {
                base: "https://e/t/T/media/tr/1/".into(),
                mpd: &track,
                ad: None,
            },
        ])
        .unwrap();
        assert!(
            text.contains("mediaPresentationDuration=\"PT30.500S\""),
            "{text}"
        );
        assert!(text.contains("<Period id=\"ad-1\" start=\"PT0.000S\" duration=\"PT10.500S\">\n    <BaseURL>https://e/t/A/media/ad/1/</BaseURL>"), "{text}");
        assert!(text.contains("<Period id=\"track\" start=\"PT10.500S\" duration=\"PT20.000S\">"));
        assert!(
            text.contains("<Event id=\"1\" presentationTime=\"0\" duration=\"10500\">ad</Event>"),
            "{text}"
        );
        assert_eq!(text.matches("<AdaptationSet ").count(), 2);
        assert_eq!(Mpd::parse(&text).unwrap().duration.0, 30.5);
        assert!(
            dash_mpd(&[DashPiece {
                base: String::new(),
                mpd: "<MPD/>",
                ad: None
            }])
            .is_err()
        );
    }
}
