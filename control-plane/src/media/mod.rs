//! The content-processing pipeline's stages. So far: [`analyze`] (probe, decode, loudness,
//! rejection). Tagging, fingerprinting, transcoding and packaging follow.

pub mod analyze;
