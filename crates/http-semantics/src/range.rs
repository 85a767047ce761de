//! `Range` requests (RFC 9110 §14): parsing `bytes=` range sets against a representation's
//! length, and the layout of a `multipart/byteranges` body.

use bytes::{BufMut as _, Bytes, BytesMut};

/// A satisfiable byte range: `start..end` (end exclusive), never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Never true: an empty range is not satisfiable.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The `Content-Range` value for this range of a `total`-byte representation.
    pub fn content_range(&self, total: u64) -> String {
        format!("bytes {}-{}/{total}", self.start, self.end - 1)
    }
}

/// What to do with a request's `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeDecision {
    /// No header, another unit, a syntactically invalid set, or more ranges than the cap:
    /// serve the whole representation (200), as RFC 9110 §14.2 allows.
    Full,
    /// One range or several (206; several make a `multipart/byteranges` body). Overlapping
    /// ranges are coalesced.
    Partial(Vec<ByteRange>),
    /// Valid, but no range overlaps the representation: 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parses a `Range` header value against a representation of `len` bytes, accepting at most
/// `max_ranges` ranges (more are treated as abuse and the header is ignored).
pub fn parse_range(value: &str, len: u64, max_ranges: usize) -> RangeDecision {
    let Some((unit, set)) = value.split_once('=') else {
        return RangeDecision::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeDecision::Full;
    }
    let mut satisfiable = Vec::new();
    let mut count = 0usize;
    for spec in set.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            // RFC 9110's list syntax tolerates empty elements.
            continue;
        }
        count += 1;
        if count > max_ranges {
            return RangeDecision::Full;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return RangeDecision::Full;
        };
        let (first, last) = (first.trim(), last.trim());
        if first.is_empty() {
            // Suffix: the last N bytes.
            let Some(suffix) = digits(last) else {
                return RangeDecision::Full;
            };
            if suffix > 0 && len > 0 {
                satisfiable.push(ByteRange {
                    start: len.saturating_sub(suffix),
                    end: len,
                });
            }
            continue;
        }
        let Some(first) = digits(first) else {
            return RangeDecision::Full;
        };
        let last = if last.is_empty() {
            None
        } else {
            match digits(last) {
                Some(last) if last >= first => Some(last),
                _ => return RangeDecision::Full,
            }
        };
        if first < len {
            let end = last.map_or(len, |last| last.saturating_add(1).min(len));
            satisfiable.push(ByteRange { start: first, end });
        }
    }
    if count == 0 {
        return RangeDecision::Full;
    }
    if satisfiable.is_empty() {
        return RangeDecision::Unsatisfiable;
    }
    RangeDecision::Partial(coalesce(satisfiable))
}

/// A run of ASCII digits as a number; `None` for anything else or an overflow.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Keeps the client's order unless ranges overlap or touch; then sorts and merges them, so that
/// no byte is sent twice (RFC 9110 §14.3 lets a server coalesce).
fn coalesce(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    if ranges.len() < 2 {
        return ranges;
    }
    let mut sorted = ranges.clone();
    sorted.sort_by_key(|range| range.start);
    let overlapping = sorted.windows(2).any(|pair| pair[1].start <= pair[0].end);
    if !overlapping {
        return ranges;
    }
    ranges.clear();
    for range in sorted {
        match ranges.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => ranges.push(range),
        }
    }
    ranges
}

/// The layout of a `multipart/byteranges` body: each part's header block, then its bytes,
/// then the closing delimiter. Callers write `part_header(i)`, the bytes of `ranges[i]`, …,
/// then `trailer()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart {
    boundary: String,
    headers: Vec<Bytes>,
    ranges: Vec<ByteRange>,
    trailer: Bytes,
}

impl Multipart {
    /// Lays out `ranges` of a `total`-byte representation of `content_type`.
    pub fn new(ranges: Vec<ByteRange>, total: u64, content_type: &str) -> Self {
        let boundary = format!("cadenza-{:016x}", rand::random::<u64>());
        let headers = ranges
            .iter()
            .enumerate()
            .map(|(index, range)| {
                let mut header = BytesMut::new();
                if index > 0 {
                    header.put_slice(b"\r\n");
                }
                header.put_slice(
                    format!(
                        "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
                        range.content_range(total)
                    )
                    .as_bytes(),
                );
                header.freeze()
            })
            .collect();
        let trailer = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        Self {
            boundary,
            headers,
            ranges,
            trailer,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }

    /// The ranges, in the order of the parts.
    pub fn ranges(&self) -> &[ByteRange] {
        &self.ranges
    }

    /// The header block before part `index`.
    pub fn part_header(&self, index: usize) -> Bytes {
        self.headers[index].clone()
    }

    /// The closing delimiter.
    pub fn trailer(&self) -> Bytes {
        self.trailer.clone()
    }

    /// The body's exact length.
    pub fn content_length(&self) -> u64 {
        self.headers
            .iter()
            .map(|header| header.len() as u64)
            .sum::<u64>()
            + self.ranges.iter().map(ByteRange::len).sum::<u64>()
            + self.trailer.len() as u64
    }

    /// The whole body, from the full representation in memory.
    pub fn body_from(&self, full: &[u8]) -> Bytes {
        let mut body = BytesMut::with_capacity(self.content_length() as usize);
        for (index, range) in self.ranges.iter().enumerate() {
            body.put_slice(&self.headers[index]);
            body.put_slice(&full[range.start as usize..range.end as usize]);
        }
        body.put_slice(&self.trailer);
        body.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(
            parse_range("bytes=0-9", 100, 8),
            RangeDecision::Partial(vec![r(0, 10)])
        );
        assert_eq!(
            parse_range("bytes=90-", 100, 8),
            RangeDecision::Partial(vec![r(90, 100)])
        );
        assert_eq!(
            parse_range("bytes=-10", 100, 8),
            RangeDecision::Partial(vec![r(90, 100)])
        );
        assert_eq!(
            parse_range("BYTES = 5 - 500", 100, 8),
            RangeDecision::Partial(vec![r(5, 100)])
        );
        // A suffix longer than the object is the whole object.
        assert_eq!(
            parse_range("bytes=-1000", 100, 8),
            RangeDecision::Partial(vec![r(0, 100)])
        );
    }

    #[test]
    fn hostile_and_invalid_sets_are_ignored() {
        for value in [
            "bytes=abc",
            "bytes=5-1",
            "bytes=-",
            "bytes=1-2-3",
            "bytes=0x10-20",
            "bytes=+1-2",
            "bytes=99999999999999999999999-",
            "items=0-1",
            "bytes",
            "bytes=",
        ] {
            assert_eq!(parse_range(value, 100, 8), RangeDecision::Full, "{value}");
        }
        let many = format!("bytes={}", vec!["0-0"; 5000].join(","));
        assert_eq!(parse_range(&many, 100, 64), RangeDecision::Full);
    }

    #[test]
    fn unsatisfiable_sets() {
        assert_eq!(
            parse_range("bytes=100-", 100, 8),
            RangeDecision::Unsatisfiable
        );
        assert_eq!(
            parse_range("bytes=-0", 100, 8),
            RangeDecision::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=0-", 0, 8), RangeDecision::Unsatisfiable);
        assert_eq!(
            parse_range("bytes=200-300, 150-", 100, 8),
            RangeDecision::Unsatisfiable
        );
    }

    #[test]
    fn several_ranges_keep_order_unless_they_overlap() {
        assert_eq!(
            parse_range("bytes=50-59, 0-9", 100, 8),
            RangeDecision::Partial(vec![r(50, 60), r(0, 10)])
        );
        assert_eq!(
            parse_range("bytes=50-59, 0-9, 5-52, 200-", 100, 8),
            RangeDecision::Partial(vec![r(0, 60)])
        );
        assert_eq!(
            parse_range("bytes=0-9,10-19", 100, 8),
            RangeDecision::Partial(vec![r(0, 20)])
        );
    }

    #[test]
    fn multipart_layout_matches_its_length() {
        let full: Vec<u8> = (0..=255).collect();
        let parts = Multipart::new(vec![r(0, 3), r(250, 256)], 256, "video/iso.segment");
        let body = parts.body_from(&full);
        assert_eq!(body.len() as u64, parts.content_length());
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("Content-Range: bytes 0-2/256"));
        assert!(text.contains("Content-Range: bytes 250-255/256"));
        assert!(text.ends_with(&format!("--{}--\r\n", parts.boundary)));
    }
}
