//! The response planner the origin and the edge share: given a request's headers and what is
//! known of the selected representation, RFC 9110's order — preconditions (§13.2.2), then
//! `If-Range` and `Range` (§14) — decides what is sent, and the plan sets the framing headers
//! that go with it. The callers only supply the bytes.

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

use crate::conditional::{Precondition, Validators, evaluate_preconditions, if_range_matches};
use crate::range::{ByteRange, Multipart, RangeDecision, parse_range};

/// The request side of one response: its headers, the representation's validators, and the
/// most ranges one request may ask for.
#[derive(Debug, Clone, Copy)]
pub struct Planner<'a> {
    request: &'a HeaderMap,
    validators: Validators<'a>,
    max_ranges: usize,
}

/// What is sent of a representation that passed its preconditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPlan {
    /// 200 with the whole representation.
    Full,
    /// 416: no requested range overlaps it (`Content-Range: bytes */total`).
    Unsatisfiable,
    /// 206 with one range.
    Single(ByteRange),
    /// 206 with several ranges as `multipart/byteranges`.
    Multipart(Multipart),
}

impl<'a> Planner<'a> {
    /// Plans for `request` against a representation with `validators`.
    pub fn new(request: &'a HeaderMap, validators: Validators<'a>, max_ranges: usize) -> Self {
        Self {
            request,
            validators,
            max_ranges,
        }
    }

    /// The preconditions' verdict: proceed, 304 or 412.
    pub fn preconditions(&self) -> Precondition {
        evaluate_preconditions(self.request, self.validators)
    }

    /// The `Range` header when it applies: present, readable, and not voided by an
    /// `If-Range` that does not match. A caller that does not know the length yet needs it
    /// only when this is `Some`.
    pub fn range(&self) -> Option<&'a str> {
        self.request
            .get(header::RANGE)
            .and_then(|value| value.to_str().ok())
            .filter(|_| if_range_matches(self.request, self.validators))
    }

    /// What to send of a representation of `total` bytes (unknown: the whole of it, as it
    /// comes) whose type is `content_type` (for the parts of a multipart answer).
    pub fn body(&self, total: Option<u64>, content_type: &str) -> BodyPlan {
        let (Some(range), Some(total)) = (self.range(), total) else {
            return BodyPlan::Full;
        };
        match parse_range(range, total, self.max_ranges) {
            RangeDecision::Full => BodyPlan::Full,
            RangeDecision::Unsatisfiable => BodyPlan::Unsatisfiable,
            RangeDecision::Partial(ranges) if ranges.len() == 1 => BodyPlan::Single(ranges[0]),
            RangeDecision::Partial(ranges) => {
                BodyPlan::Multipart(Multipart::new(ranges, total, content_type))
            }
        }
    }
}

impl BodyPlan {
    /// The response's status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Full => StatusCode::OK,
            Self::Unsatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::Single(_) | Self::Multipart(_) => StatusCode::PARTIAL_CONTENT,
        }
    }

    /// How many body bytes a GET is sent (`None`: the whole, of unknown length; 416 sends
    /// none of the representation).
    pub fn body_len(&self, total: Option<u64>) -> Option<u64> {
        match self {
            Self::Full => total,
            Self::Unsatisfiable => Some(0),
            Self::Single(range) => Some(range.len()),
            Self::Multipart(parts) => Some(parts.content_length()),
        }
    }

    /// Sets the framing headers of the plan on `headers`: `Content-Length` (when known),
    /// `Content-Range`, and the multipart `Content-Type`. A 416's own body and length are the
    /// caller's (its error document).
    pub fn set_headers(&self, headers: &mut HeaderMap, total: Option<u64>) {
        let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        };
        match self {
            Self::Full => {
                if let Some(total) = total {
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
                }
            }
            Self::Unsatisfiable => {
                set(
                    headers,
                    header::CONTENT_RANGE,
                    &format!("bytes */{}", total.unwrap_or(0)),
                );
            }
            Self::Single(range) => {
                set(
                    headers,
                    header::CONTENT_RANGE,
                    &range.content_range(total.unwrap_or(0)),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(range.len()));
            }
            Self::Multipart(parts) => {
                set(headers, header::CONTENT_TYPE, &parts.content_type());
                headers.insert(
                    header::CONTENT_LENGTH,
                    HeaderValue::from(parts.content_length()),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    const VALIDATORS: Validators<'static> = Validators {
        etag: Some(b"\"v1\""),
        last_modified: None,
    };

    #[test]
    fn preconditions_come_before_ranges() {
        let headers = request(&[("if-none-match", "\"v1\""), ("range", "bytes=0-9")]);
        let planner = Planner::new(&headers, VALIDATORS, 8);
        assert_eq!(planner.preconditions(), Precondition::NotModified);
        let headers = request(&[("if-match", "\"v2\""), ("range", "bytes=0-9")]);
        assert_eq!(
            Planner::new(&headers, VALIDATORS, 8).preconditions(),
            Precondition::Failed
        );
    }

    #[test]
    fn ranges_plan_their_status_and_framing() {
        let headers = request(&[("range", "bytes=10-19")]);
        let plan = Planner::new(&headers, VALIDATORS, 8).body(Some(100), "audio/mp4");
        assert_eq!(plan.status(), StatusCode::PARTIAL_CONTENT);
        let mut out = HeaderMap::new();
        plan.set_headers(&mut out, Some(100));
        assert_eq!(out[header::CONTENT_RANGE], "bytes 10-19/100");
        assert_eq!(out[header::CONTENT_LENGTH], "10");
        assert_eq!(plan.body_len(Some(100)), Some(10));

        let headers = request(&[("range", "bytes=0-0,50-51")]);
        let plan = Planner::new(&headers, VALIDATORS, 8).body(Some(100), "audio/mp4");
        let mut out = HeaderMap::new();
        plan.set_headers(&mut out, Some(100));
        assert!(
            out[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("multipart/byteranges; boundary=")
        );

        let headers = request(&[("range", "bytes=500-")]);
        let plan = Planner::new(&headers, VALIDATORS, 8).body(Some(100), "audio/mp4");
        assert_eq!(plan, BodyPlan::Unsatisfiable);
        let mut out = HeaderMap::new();
        plan.set_headers(&mut out, Some(100));
        assert_eq!(out[header::CONTENT_RANGE], "bytes */100");
    }

    #[test]
    fn a_stale_if_range_or_an_unknown_length_sends_the_whole() {
        let headers = request(&[("range", "bytes=0-9"), ("if-range", "\"v0\"")]);
        let planner = Planner::new(&headers, VALIDATORS, 8);
        assert_eq!(planner.range(), None);
        assert_eq!(planner.body(Some(100), "audio/mp4"), BodyPlan::Full);
        let headers = request(&[("range", "bytes=0-9")]);
        let planner = Planner::new(&headers, VALIDATORS, 8);
        assert_eq!(planner.range(), Some("bytes=0-9"));
        assert_eq!(planner.body(None, "audio/mp4"), BodyPlan::Full);
        let mut out = HeaderMap::new();
        BodyPlan::Full.set_headers(&mut out, None);
        assert!(out.is_empty());
    }
}
