//! The parts of HTTP semantics (RFC 9110) that both the origin and the edge implement, kept in
//! one place so that the two answer alike: byte ranges and `multipart/byteranges`,
//! conditional requests and entity tags, gzip negotiation and CORS preflights, and the media
//! types of Cadenza's delivery formats.
//!
//! No I/O: callers pass the representation's metadata and get decisions back.

mod conditional;
mod media;
mod negotiate;
mod plan;
mod range;

pub use conditional::{Precondition, Validators, evaluate_preconditions, if_range_matches};
pub use media::{compressible, content_type};
pub use negotiate::{accepts_gzip, preflight_headers};
pub use plan::{BodyPlan, Planner};
pub use range::{ByteRange, Multipart, RangeDecision, parse_range};

/// Formats a time as an HTTP date (IMF-fixdate).
pub fn http_date(time: std::time::SystemTime) -> String {
    httpdate::fmt_http_date(time)
}

/// Parses an HTTP date in any of the three formats RFC 9110 accepts.
pub fn parse_http_date(value: &str) -> Option<std::time::SystemTime> {
    httpdate::parse_http_date(value.trim()).ok()
}
