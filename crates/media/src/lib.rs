//! The content-processing pipeline's stages: [`analyze`] (probe, decode, loudness, rejection),
//! [`transcode`] (the AAC ladder, segmented as it is encoded) and [`package`] (CMAF boxes, HLS
//! and DASH manifests), [`tags`] and [`artwork`] (tags, top tags, thumbnails), [`fingerprint`]
//! (copy detection), [`integrity`] (container checks: Ogg pages, MP4 boxes), and [`wav`] (synthesised audio for the demo track and the tests).

pub mod analyze;
pub mod artwork;
pub mod fingerprint;
pub mod integrity;
pub mod mpd;
pub mod package;
pub mod tags;
pub mod transcode;
pub mod wav;
