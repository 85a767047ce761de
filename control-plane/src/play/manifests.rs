//! Per-play manifests made from cacheable pieces: the packaged HLS playlists and DASH MPDs of
//! the ads and of the track, stitched with absolute URLs (each piece carries its own URL token)
//! so that the segments stay the shared, year-cacheable files every other play uses. Pure text
//! in, text out.
//!
//! HLS: the master lists the same renditions; each media playlist plays the ads' segments, then
//! `EXT-X-DISCONTINUITY` and the track's, every piece with its own `EXT-X-MAP`; each ad break
//! is marked with an `EXT-X-DATERANGE` (which RFC 8216 ties to `EXT-X-PROGRAM-DATE-TIME`).
//! DASH: one Period per ad and one for the track, each with its `BaseURL`.

use std::fmt::Write as _;

use crate::calendar::rfc3339;

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

/// A media playlist's total duration, seconds (the sum of its `EXTINF`s).
pub fn hls_duration(playlist: &str) -> Result<f64, SpliceError> {
    let mut total = 0.0;
    for line in playlist.lines() {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            let seconds = rest.split(',').next().unwrap_or_default();
            total += seconds
                .trim()
                .parse::<f64>()
                .map_err(|_| SpliceError::Malformed("EXTINF"))?;
        }
    }
    Ok(total)
}

/// The per-play media playlist of one rendition: `pieces` in order (ads first), starting at
/// `start_ms` (Unix ms, the `EXT-X-PROGRAM-DATE-TIME` the break markers hang from).
pub fn hls_media(
    pieces: &[HlsPiece<'_>],
    start_ms: i64,
    play_id: &str,
) -> Result<String, SpliceError> {
    let mut target = 1u64;
    let mut durations = Vec::with_capacity(pieces.len());
    for piece in pieces {
        if !piece.playlist.starts_with("#EXTM3U") {
            return Err(SpliceError::Malformed("media playlist"));
        }
        for line in piece.playlist.lines() {
            if let Some(value) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                let value: u64 = value
                    .trim()
                    .parse()
                    .map_err(|_| SpliceError::Malformed("EXT-X-TARGETDURATION"))?;
                target = target.max(value);
            }
        }
        durations.push(hls_duration(piece.playlist)?);
    }
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-PROGRAM-DATE-TIME:{}\n",
        rfc3339(start_ms)
    );
    let mut offset_ms = 0.0;
    for (index, (piece, duration)) in pieces.iter().zip(&durations).enumerate() {
        if index > 0 {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(ad) = piece.ad {
            let _ = writeln!(
                out,
                "#EXT-X-DATERANGE:ID=\"{play_id}-ad-{}\",CLASS=\"com.cadenza.ad\",START-DATE=\"{}\",DURATION={duration:.3},X-AD-ID=\"{ad}\"",
                index + 1,
                rfc3339(start_ms + offset_ms as i64),
            );
        }
        for line in piece.playlist.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(attributes) = line.strip_prefix("#EXT-X-MAP:") {
                let uri =
                    attribute(attributes, "URI").ok_or(SpliceError::Malformed("EXT-X-MAP"))?;
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", absolute(&piece.base, uri));
            } else if line.starts_with("#EXTINF:") {
                out.push_str(line);
                out.push('\n');
            } else if !line.starts_with('#') {
                out.push_str(&absolute(&piece.base, line));
                out.push('\n');
            }
            // Every other tag belongs to the piece's header or end and is written once above.
        }
        offset_ms += duration * 1000.0;
    }
    out.push_str("#EXT-X-ENDLIST\n");
    Ok(out)
}

/// The per-play master playlist: the track's, with each variant pointing at the per-play
/// media playlist `{rendition}.m3u8` next to it, and `BANDWIDTH` the peak over the track and
/// the ads' same rendition (`ad_masters`).
pub fn hls_master(track_master: &str, ad_masters: &[&str]) -> Result<String, SpliceError> {
    let ad_peaks: Vec<Vec<(String, u64)>> = ad_masters
        .iter()
        .map(|master| variants(master))
        .collect::<Result<_, _>>()?;
    let mut out = String::new();
    let mut lines = track_master.lines().peekable();
    if !track_master.starts_with("#EXTM3U") {
        return Err(SpliceError::Malformed("master playlist"));
    }
    while let Some(line) = lines.next() {
        if let Some(attributes) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let uri = lines
                .next()
                .ok_or(SpliceError::Malformed("EXT-X-STREAM-INF"))?;
            let rendition = rendition_of(uri)?;
            let own: u64 = attribute(attributes, "BANDWIDTH")
                .and_then(|value| value.parse().ok())
                .ok_or(SpliceError::Malformed("BANDWIDTH"))?;
            let peak = ad_peaks
                .iter()
                .filter_map(|ad| {
                    ad.iter()
                        .find(|(id, _)| id == rendition)
                        .map(|(_, peak)| *peak)
                })
                .fold(own, u64::max);
            let attributes =
                attributes.replacen(&format!("BANDWIDTH={own}"), &format!("BANDWIDTH={peak}"), 1);
            let _ = writeln!(out, "#EXT-X-STREAM-INF:{attributes}\n{rendition}.m3u8");
        } else if !line.trim().is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// The renditions a master lists (`rendition id`, `BANDWIDTH`).
pub fn variants(master: &str) -> Result<Vec<(String, u64)>, SpliceError> {
    let mut found = Vec::new();
    let mut lines = master.lines();
    while let Some(line) = lines.next() {
        if let Some(attributes) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let uri = lines
                .next()
                .ok_or(SpliceError::Malformed("EXT-X-STREAM-INF"))?;
            let bandwidth = attribute(attributes, "BANDWIDTH")
                .and_then(|value| value.parse().ok())
                .ok_or(SpliceError::Malformed("BANDWIDTH"))?;
            found.push((rendition_of(uri)?.to_owned(), bandwidth));
        }
    }
    Ok(found)
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

/// An MPD's `mediaPresentationDuration`, seconds (the packager writes `PT{seconds}S`).
pub fn mpd_duration(mpd: &str) -> Result<f64, SpliceError> {
    let value = xml_attribute(mpd, "mediaPresentationDuration")
        .ok_or(SpliceError::Malformed("mediaPresentationDuration"))?;
    value
        .strip_prefix("PT")
        .and_then(|rest| rest.strip_suffix('S'))
        .and_then(|seconds| seconds.parse::<f64>().ok())
        .ok_or(SpliceError::Malformed("mediaPresentationDuration"))
}

/// The per-play MPD: one Period per piece, in order.
pub fn dash_mpd(pieces: &[DashPiece<'_>]) -> Result<String, SpliceError> {
    let mut periods = String::new();
    let mut start = 0.0;
    for (index, piece) in pieces.iter().enumerate() {
        let duration = mpd_duration(piece.mpd)?;
        let open = piece
            .mpd
            .find("<Period")
            .ok_or(SpliceError::Malformed("Period"))?;
        let body_start = open
            + piece.mpd[open..]
                .find('>')
                .ok_or(SpliceError::Malformed("Period"))?
            + 1;
        let body_end = piece
            .mpd
            .rfind("</Period>")
            .ok_or(SpliceError::Malformed("Period"))?;
        if body_end < body_start {
            return Err(SpliceError::Malformed("Period"));
        }
        let body = piece.mpd[body_start..body_end]
            .trim_start_matches('\n')
            .trim_end();
        let id = match piece.ad {
            Some(_) => format!("ad-{}", index + 1),
            None => "track".to_owned(),
        };
        let _ = writeln!(
            periods,
            "  <Period id=\"{id}\" start=\"PT{start:.3}S\" duration=\"PT{duration:.3}S\">\n    <BaseURL>{}</BaseURL>",
            xml_escape(&piece.base)
        );
        if let Some(ad) = piece.ad {
            let _ = writeln!(
                periods,
                "    <EventStream schemeIdUri=\"urn:cadenza:ad:2026\" timescale=\"1000\">\n      <Event id=\"{}\" presentationTime=\"0\" duration=\"{}\">{}</Event>\n    </EventStream>",
                index + 1,
                (duration * 1000.0).round() as u64,
                xml_escape(ad)
            );
        }
        periods.push_str(body);
        periods.push_str("\n  </Period>\n");
        start += duration;
    }
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019\" type=\"static\" mediaPresentationDuration=\"PT{start:.3}S\" minBufferTime=\"PT2S\">\n{periods}</MPD>\n"
    ))
}

/// `base` + a relative `uri` (an absolute one is kept).
fn absolute(base: &str, uri: &str) -> String {
    if uri.contains("://") {
        uri.to_owned()
    } else {
        format!("{base}{uri}")
    }
}

/// An HLS attribute's value (quotes removed).
fn attribute<'a>(attributes: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attributes;
    loop {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (
                &quoted[..end],
                quoted[end + 1..].strip_prefix(',').unwrap_or(""),
            )
        } else {
            match after.split_once(',') {
                Some((value, next)) => (value, next),
                None => (after, ""),
            }
        };
        if key.trim() == name {
            return Some(value);
        }
        if next.is_empty() {
            return None;
        }
        rest = next;
    }
}

/// The first `name="…"` attribute in an XML document.
fn xml_attribute<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let start = xml.find(&needle)? + needle.len();
    let end = xml[start..].find('"')?;
    Some(&xml[start..start + end])
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
        assert!(text.contains("#EXT-X-DATERANGE:ID=\"p-ad-1\",CLASS=\"com.cadenza.ad\",START-DATE=\"2023-11-14T22:13:20.000Z\",DURATION=10.500,X-AD-ID=\"ad\""));
        let ad_map = text
            .find("#EXT-X-MAP:URI=\"https://e/t/A/media/ad/1/64k/init.mp4\"")
            .unwrap();
        let gap = text.find("#EXT-X-DISCONTINUITY").unwrap();
        let track_map = text
            .find("#EXT-X-MAP:URI=\"https://e/t/T/media/tr/1/64k/init.mp4\"")
            .unwrap();
        assert!(ad_map < gap && gap < track_map);
        assert!(text.contains("\nhttps://e/t/T/media/tr/1/64k/seg-00001.m4s\n"));
        assert_eq!(hls_duration(&text).unwrap(), 16.5);
    }

    #[test]
    fn master_points_at_per_play_playlists_with_the_peak_bandwidth() {
        let track = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=70000,AVERAGE-BANDWIDTH=65000,CODECS=\"mp4a.40.2\"\n64k/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=130000,AVERAGE-BANDWIDTH=128000,CODECS=\"mp4a.40.2\"\n128k/index.m3u8\n";
        let ad = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=72000,AVERAGE-BANDWIDTH=64000,CODECS=\"mp4a.40.2\"\n64k/index.m3u8\n";
        let master = hls_master(track, &[ad]).unwrap();
        assert!(
            master.contains(
                "BANDWIDTH=72000,AVERAGE-BANDWIDTH=65000,CODECS=\"mp4a.40.2\"\n64k.m3u8\n"
            )
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

    #[test]
    fn dash_gets_a_period_per_piece() {
        let mpd = |duration: &str| {
            format!(
                "<?xml version=\"1.0\"?>\n<MPD type=\"static\" mediaPresentationDuration=\"PT{duration}S\">\n  <Period id=\"0\" start=\"PT0S\">\n    <AdaptationSet/>\n  </Period>\n</MPD>\n"
            )
        };
        let (ad, track) = (mpd("10.500"), mpd("20.000"));
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
        assert!(text.contains("mediaPresentationDuration=\"PT30.500S\""));
        assert!(text.contains("<Period id=\"ad-1\" start=\"PT0.000S\" duration=\"PT10.500S\">\n    <BaseURL>https://e/t/A/media/ad/1/</BaseURL>"));
        assert!(text.contains("<Period id=\"track\" start=\"PT10.500S\" duration=\"PT20.000S\">"));
        assert_eq!(text.matches("<AdaptationSet/>").count(), 2);
        assert!(
            dash_mpd(&[DashPiece {
                base: String::new(),
                mpd: "<MPD/>",
                ad: None
            }])
            .is_err()
        );
    }

    #[test]
    fn reads_quoted_and_bare_attributes() {
        let attributes = "BANDWIDTH=1,CODECS=\"a,b\",URI=\"x.mp4\"";
        assert_eq!(attribute(attributes, "CODECS"), Some("a,b"));
        assert_eq!(attribute(attributes, "URI"), Some("x.mp4"));
        assert_eq!(attribute(attributes, "BANDWIDTH"), Some("1"));
        assert_eq!(attribute(attributes, "NONE"), None);
    }
}
