//! Conditional requests (RFC 9110 §13): preconditions evaluated in the RFC's order, entity-tag
//! comparison, and `If-Range`.

use std::time::SystemTime;

use http::HeaderMap;
use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};

use crate::parse_http_date;

/// A representation's validators.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// Its entity tag as sent (`"abc"` or `W/"abc"`; an unquoted `abc`, as some origins send,
    /// is taken as `"abc"`), bytes, since an opaque tag may hold obs-text.
    pub etag: Option<&'a [u8]>,
    /// Its last modification, to the second.
    pub last_modified: Option<SystemTime>,
}

/// The outcome of the preconditions of a GET or HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the representation (and evaluate `Range`).
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates `If-Match`, `If-Unmodified-Since`, `If-None-Match` and `If-Modified-Since` for a
/// GET or HEAD, in the order of RFC 9110 §13.2.2: an entity-tag condition, when present,
/// overrides the date condition beside it.
pub fn evaluate_preconditions(headers: &HeaderMap, validators: Validators<'_>) -> Precondition {
    if headers.contains_key(IF_MATCH) {
        let matched = validators
            .etag
            .is_some_and(|etag| list_matches(headers, &IF_MATCH, etag, true));
        if !matched {
            return Precondition::Failed;
        }
    } else if let Some(since) = header_date(headers, &IF_UNMODIFIED_SINCE)
        && let Some(modified) = validators.last_modified
        && modified > since
    {
        return Precondition::Failed;
    }
    if headers.contains_key(IF_NONE_MATCH) {
        let matched = validators
            .etag
            .is_some_and(|etag| list_matches(headers, &IF_NONE_MATCH, etag, false));
        if matched {
            return Precondition::NotModified;
        }
    } else if let Some(since) = header_date(headers, &IF_MODIFIED_SINCE)
        && let Some(modified) = validators.last_modified
        && modified <= since
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Whether a request's `If-Range` (if any) lets its `Range` apply: absent, or a strong entity
/// tag equal to the representation's, or a date exactly equal to its last modification
/// (RFC 9110 §13.1.5). When false, the whole representation is served.
pub fn if_range_matches(headers: &HeaderMap, validators: Validators<'_>) -> bool {
    let Some(value) = headers.get(IF_RANGE) else {
        return true;
    };
    let value = value.as_bytes().trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return validators
            .etag
            .is_some_and(|etag| strong_equal(value, etag));
    }
    let date = std::str::from_utf8(value).ok().and_then(parse_http_date);
    match (date, validators.last_modified) {
        (Some(date), Some(modified)) => date == truncate(modified),
        _ => false,
    }
}

fn header_date(headers: &HeaderMap, name: &http::HeaderName) -> Option<SystemTime> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_http_date)
}

/// Whether the entity-tag lists of every `name` field line hold `*` or a tag equal to `etag`
/// (strongly or weakly).
fn list_matches(headers: &HeaderMap, name: &http::HeaderName, etag: &[u8], strong: bool) -> bool {
    headers.get_all(name).iter().any(|line| {
        let line = line.as_bytes();
        line.trim_ascii() == b"*"
            || entity_tags(line).any(|candidate| {
                if strong {
                    strong_equal(candidate, etag)
                } else {
                    opaque(candidate) == opaque(etag)
                }
            })
    })
}

/// The entity tags of a comma-separated list; a comma inside quotes does not split (an
/// opaque tag may hold one).
fn entity_tags(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = list;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_ascii_start();
            if rest.is_empty() {
                return None;
            }
            if rest[0] == b',' {
                rest = &rest[1..];
                continue;
            }
            let mut quoted = false;
            let mut end = rest.len();
            for (at, &byte) in rest.iter().enumerate() {
                match byte {
                    b'"' => quoted = !quoted,
                    b',' if !quoted => {
                        end = at;
                        break;
                    }
                    _ => {}
                }
            }
            let tag = rest[..end].trim_ascii();
            rest = &rest[end..];
            return Some(tag);
        }
    })
}

/// Strong comparison: both strong, same opaque tag.
fn strong_equal(a: &[u8], b: &[u8]) -> bool {
    !is_weak(a) && !is_weak(b) && opaque(a) == opaque(b)
}

fn is_weak(tag: &[u8]) -> bool {
    tag.trim_ascii().starts_with(b"W/")
}

/// The opaque part of a tag: between its quotes, or the whole tag when it is not quoted.
fn opaque(tag: &[u8]) -> &[u8] {
    let tag = tag.trim_ascii();
    let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
    match tag {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    }
}

fn truncate(time: SystemTime) -> SystemTime {
    parse_http_date(&crate::http_date(time)).unwrap_or(time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers(pairs: &[(&http::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append((*name).clone(), value.parse().unwrap());
        }
        map
    }

    fn validators() -> Validators<'static> {
        Validators {
            etag: Some(b"\"v1\""),
            last_modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        }
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let cases = [
            ("\"v1\"", Precondition::NotModified),
            ("W/\"v1\"", Precondition::NotModified),
            ("\"x\", \"v1\"", Precondition::NotModified),
            ("*", Precondition::NotModified),
            ("\"v2\"", Precondition::Proceed),
        ];
        for (value, expected) in cases {
            let map = headers(&[(&IF_NONE_MATCH, value)]);
            assert_eq!(
                evaluate_preconditions(&map, validators()),
                expected,
                "{value}"
            );
        }
    }

    #[test]
    fn if_none_match_overrides_if_modified_since() {
        let later = "Wed, 01 Jan 2031 00:00:00 GMT";
        let map = headers(&[(&IF_NONE_MATCH, "\"v2\""), (&IF_MODIFIED_SINCE, later)]);
        assert_eq!(
            evaluate_preconditions(&map, validators()),
            Precondition::Proceed
        );
        let map = headers(&[(&IF_MODIFIED_SINCE, later)]);
        assert_eq!(
            evaluate_preconditions(&map, validators()),
            Precondition::NotModified
        );
        let earlier = "Wed, 01 Jan 2020 00:00:00 GMT";
        let map = headers(&[(&IF_MODIFIED_SINCE, earlier)]);
        assert_eq!(
            evaluate_preconditions(&map, validators()),
            Precondition::Proceed
        );
        let map = headers(&[(&IF_MODIFIED_SINCE, "garbage")]);
        assert_eq!(
            evaluate_preconditions(&map, validators()),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        let map = headers(&[(&IF_MATCH, "W/\"v1\"")]);
        assert_eq!(
            evaluate_preconditions(&map, validators()),
            Precondition::Failed
        );
        let map = headers(&[(&IF_MATCH, "\"v1\"")]);
        assert_eq!(
            evaluate_preconditions(&map, validators()),
            Precondition::Proceed
        );
        let map = headers(&[(&IF_UNMODIFIED_SINCE, "Wed, 01 Jan 2020 00:00:00 GMT")]);
        assert_eq!(
            evaluate_preconditions(&map, validators()),
            Precondition::Failed
        );
    }

    #[test]
    fn if_range_needs_a_strong_match_or_the_exact_date() {
        assert!(if_range_matches(&HeaderMap::new(), validators()));
        assert!(if_range_matches(
            &headers(&[(&IF_RANGE, "\"v1\"")]),
            validators()
        ));
        assert!(!if_range_matches(
            &headers(&[(&IF_RANGE, "W/\"v1\"")]),
            validators()
        ));
        assert!(!if_range_matches(
            &headers(&[(&IF_RANGE, "\"v2\"")]),
            validators()
        ));
        let exact = crate::http_date(validators().last_modified.unwrap());
        assert!(if_range_matches(
            &headers(&[(&IF_RANGE, &exact)]),
            validators()
        ));
        assert!(!if_range_matches(
            &headers(&[(&IF_RANGE, "Wed, 01 Jan 2031 00:00:00 GMT")]),
            validators()
        ));
    }

    #[test]
    fn unquoted_and_obs_text_tags_compare_by_their_opaque_part() {
        let with = |etag: &'static [u8]| Validators {
            etag: Some(etag),
            last_modified: None,
        };
        // An origin's unquoted tag matches the client's quoted echo of it, and the reverse.
        for (stored, sent) in [
            (&b"abc"[..], &b"\"abc\""[..]),
            (b"\"abc\"", b"abc"),
            (b"W/abc", b"\"abc\""),
        ] {
            let mut map = HeaderMap::new();
            map.insert(IF_NONE_MATCH, http::HeaderValue::from_bytes(sent).unwrap());
            assert_eq!(
                evaluate_preconditions(&map, with(stored)),
                Precondition::NotModified,
                "{stored:?} vs {sent:?}"
            );
        }
        // obs-text (Latin-1 bytes) inside the quotes.
        let latin: &'static [u8] = b"\"caf\xe9\"";
        let mut map = HeaderMap::new();
        map.insert(IF_NONE_MATCH, http::HeaderValue::from_bytes(latin).unwrap());
        assert_eq!(
            evaluate_preconditions(&map, with(latin)),
            Precondition::NotModified
        );
        // A comma inside a tag does not split the list.
        let mut map = HeaderMap::new();
        map.insert(IF_NONE_MATCH, "\"a,b\", \"c\"".parse().unwrap());
        assert_eq!(
            evaluate_preconditions(&map, with(b"\"a,b\"")),
            Precondition::NotModified
        );
        assert_eq!(
            evaluate_preconditions(&map, with(b"\"a\"")),
            Precondition::Proceed
        );
        // Lists over several field lines.
        let mut map = HeaderMap::new();
        map.append(IF_NONE_MATCH, "\"x\"".parse().unwrap());
        map.append(IF_NONE_MATCH, "\"v1\"".parse().unwrap());
        assert_eq!(
            evaluate_preconditions(&map, validators()),
            Precondition::NotModified
        );
    }
}
