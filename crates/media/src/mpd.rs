//! The DASH MPD as types: the subset Cadenza writes (a static presentation of audio-only
//! Periods, each an AdaptationSet with a SegmentTemplate and SegmentTimeline, optionally a
//! BaseURL and an EventStream). Packaging writes one Period; the play API reads packaged MPDs
//! back into these types and writes per-play MPDs of several Periods with the same writer
//! (quick-xml's serde support). Elements and attributes outside the subset are ignored when
//! reading.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The MPD namespace.
pub const NAMESPACE: &str = "urn:mpeg:dash:schema:mpd:2011";
/// The profiles Cadenza's MPDs declare.
pub const PROFILES: &str = "urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019";

/// A time in seconds, written as an ISO 8601 duration with millisecond precision
/// (`PT12.345S`); read from any `PT…S` of seconds.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Seconds(pub f64);

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("PT{:.3}S", self.0))
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.strip_prefix("PT")
            .and_then(|rest| rest.strip_suffix('S'))
            .and_then(|seconds| seconds.parse::<f64>().ok())
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .map(Seconds)
            .ok_or_else(|| serde::de::Error::custom(format!("not a PT…S duration: {text}")))
    }
}

/// A static MPD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "MPD")]
pub struct Mpd {
    #[serde(rename = "@xmlns", default = "namespace")]
    pub xmlns: String,
    #[serde(rename = "@profiles", default = "profiles")]
    pub profiles: String,
    #[serde(rename = "@type", default = "static_type")]
    pub kind: String,
    #[serde(rename = "@mediaPresentationDuration")]
    pub duration: Seconds,
    #[serde(rename = "@minBufferTime", default = "min_buffer")]
    pub min_buffer_time: Seconds,
    #[serde(rename = "Period", default)]
    pub periods: Vec<Period>,
}

fn namespace() -> String {
    NAMESPACE.to_owned()
}

fn profiles() -> String {
    PROFILES.to_owned()
}

fn static_type() -> String {
    "static".to_owned()
}

fn min_buffer() -> Seconds {
    Seconds(2.0)
}

/// One Period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    #[serde(rename = "@id")]
    pub id: String,
    #[serde(rename = "@start")]
    pub start: Seconds,
    #[serde(rename = "@duration", skip_serializing_if = "Option::is_none", default)]
    pub duration: Option<Seconds>,
    #[serde(rename = "BaseURL", skip_serializing_if = "Option::is_none", default)]
    pub base_url: Option<String>,
    #[serde(
        rename = "EventStream",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub events: Option<EventStream>,
    #[serde(rename = "AdaptationSet", default)]
    pub adaptation_sets: Vec<AdaptationSet>,
}

/// Timed events of a Period (Cadenza marks its ad breaks with one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventStream {
    #[serde(rename = "@schemeIdUri")]
    pub scheme: String,
    #[serde(rename = "@timescale")]
    pub timescale: u64,
    #[serde(rename = "Event", default)]
    pub events: Vec<Event>,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "@id")]
    pub id: u64,
    #[serde(rename = "@presentationTime")]
    pub presentation_time: u64,
    #[serde(rename = "@duration")]
    pub duration: u64,
    #[serde(rename = "$text", default)]
    pub value: String,
}

/// An audio AdaptationSet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptationSet {
    #[serde(rename = "@contentType")]
    pub content_type: String,
    #[serde(rename = "@mimeType")]
    pub mime_type: String,
    #[serde(rename = "@codecs")]
    pub codecs: String,
    #[serde(rename = "@audioSamplingRate")]
    pub sample_rate: u32,
    #[serde(rename = "@lang")]
    pub lang: String,
    #[serde(rename = "@segmentAlignment")]
    pub segment_alignment: bool,
    #[serde(rename = "@startWithSAP")]
    pub start_with_sap: u8,
    #[serde(rename = "AudioChannelConfiguration")]
    pub channels: ChannelConfiguration,
    #[serde(rename = "SegmentTemplate")]
    pub template: SegmentTemplate,
    #[serde(rename = "Representation", default)]
    pub representations: Vec<Representation>,
}

/// The channel layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelConfiguration {
    #[serde(rename = "@schemeIdUri")]
    pub scheme: String,
    #[serde(rename = "@value")]
    pub value: u16,
}

/// Where the segments are and how long each lasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentTemplate {
    #[serde(rename = "@timescale")]
    pub timescale: u32,
    #[serde(rename = "@presentationTimeOffset")]
    pub presentation_time_offset: u64,
    #[serde(rename = "@initialization")]
    pub initialization: String,
    #[serde(rename = "@media")]
    pub media: String,
    #[serde(rename = "@startNumber")]
    pub start_number: u64,
    #[serde(rename = "SegmentTimeline")]
    pub timeline: SegmentTimeline,
}

/// Runs of segments of one duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentTimeline {
    #[serde(rename = "S", default)]
    pub runs: Vec<Run>,
}

/// `r + 1` segments of duration `d` from `t` (or from where the previous run ended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    #[serde(rename = "@t", skip_serializing_if = "Option::is_none", default)]
    pub t: Option<u64>,
    #[serde(rename = "@d")]
    pub d: u64,
    #[serde(rename = "@r", skip_serializing_if = "Option::is_none", default)]
    pub r: Option<u64>,
}

/// One rendition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Representation {
    #[serde(rename = "@id")]
    pub id: String,
    #[serde(rename = "@bandwidth")]
    pub bandwidth: u64,
}

/// An MPD that does not read as one Cadenza writes.
#[derive(Debug, thiserror::Error)]
#[error("malformed MPD: {0}")]
pub struct MpdError(String);

impl Mpd {
    /// A static MPD of `periods` lasting `duration`.
    pub fn new(duration: f64, periods: Vec<Period>) -> Self {
        Self {
            xmlns: namespace(),
            profiles: profiles(),
            kind: static_type(),
            duration: Seconds(duration),
            min_buffer_time: min_buffer(),
            periods,
        }
    }

    /// Reads an MPD.
    pub fn parse(text: &str) -> Result<Self, MpdError> {
        quick_xml::de::from_str(text).map_err(|error| MpdError(error.to_string()))
    }

    /// The document, with its XML declaration, indented by two spaces.
    pub fn to_xml(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let mut serializer = quick_xml::se::Serializer::new(&mut out);
        serializer.indent(' ', 2);
        self.serialize(serializer)
            .expect("an MPD of strings and numbers serialises");
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Mpd {
        Mpd::new(
            12.135,
            vec![Period {
                id: "0".into(),
                start: Seconds(0.0),
                duration: None,
                base_url: None,
                events: None,
                adaptation_sets: vec![AdaptationSet {
                    content_type: "audio".into(),
                    mime_type: "audio/mp4".into(),
                    codecs: "mp4a.40.2".into(),
                    sample_rate: 44_100,
                    lang: "und".into(),
                    segment_alignment: true,
                    start_with_sap: 1,
                    channels: ChannelConfiguration {
                        scheme: "urn:mpeg:dash:23003:3:audio_channel_configuration:2011".into(),
                        value: 2,
                    },
                    template: SegmentTemplate {
                        timescale: 44_100,
                        presentation_time_offset: 2048,
                        initialization: "$RepresentationID$/init.mp4".into(),
                        media: "$RepresentationID$/seg-$Number%05d$.m4s".into(),
                        start_number: 1,
                        timeline: SegmentTimeline {
                            runs: vec![
                                Run {
                                    t: Some(0),
                                    d: 264_192,
                                    r: Some(1),
                                },
                                Run {
                                    t: None,
                                    d: 10_240,
                                    r: None,
                                },
                            ],
                        },
                    },
                    representations: vec![Representation {
                        id: "128k".into(),
                        bandwidth: 129_528,
                    }],
                }],
            }],
        )
    }

    #[test]
    fn writes_and_reads_back_the_same_document() {
        let text = sample().to_xml();
        assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\""), "{text}");
        assert!(
            text.contains("mediaPresentationDuration=\"PT12.135S\""),
            "{text}"
        );
        assert!(text.contains("<S t=\"0\" d=\"264192\" r=\"1\"/>"), "{text}");
        assert!(text.contains("<S d=\"10240\"/>"), "{text}");
        assert!(
            text.contains("media=\"$RepresentationID$/seg-$Number%05d$.m4s\""),
            "{text}"
        );
        assert_eq!(Mpd::parse(&text).unwrap(), sample());
    }

    #[test]
    fn text_is_escaped_and_foreign_parts_are_ignored() {
        let mut mpd = sample();
        mpd.periods[0].base_url = Some("https://edge/t/a&b<c>/".into());
        let text = mpd.to_xml();
        assert!(
            text.contains("<BaseURL>https://edge/t/a&amp;b&lt;c&gt;/</BaseURL>"),
            "{text}"
        );
        assert_eq!(Mpd::parse(&text).unwrap(), mpd);
        let foreign = text.replace("<BaseURL>", "<ProgramInformation lang=\"en\"/><BaseURL>");
        assert_eq!(Mpd::parse(&foreign).unwrap(), mpd);
        assert!(Mpd::parse("<MPD mediaPresentationDuration=\"soon\"/>").is_err());
        assert!(Mpd::parse("not xml").is_err());
    }
}
