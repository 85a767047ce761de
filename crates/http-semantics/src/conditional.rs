//! Conditional requests (RFC 9110 §13): preconditions evaluated in the RFC's order, entity-tag
//! comparison, and `If-Range`.

use std::time::SystemTime;

use http::HeaderMap;
use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE};

use crate::parse_http_date;

/// A representation's validators.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// Its entity tag, quoted (`"abc"` or `W/"abc"`).
    pub etag: Option<&'a str>,
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
/// GET or HEAD, in the order of RFC 9110 §13.2.2.
pub fn evaluate_preconditions(headers: &HeaderMap, validators: Validators<'_>) -> Precondition {
    if let Some(if_match) = header_text(headers, &IF_MATCH) {
        let matched = if_match.trim() == "*" && validators.etag.is_some()
            || validators
                .etag
                .is_some_and(|etag| list_contains(&if_match, etag, true));
        if !matched {
            return Precondition::Failed;
        }
    } else if let Some(since) =
        header_text(headers, &IF_UNMODIFIED_SINCE).and_then(|v| parse_http_date(&v))
        && let Some(modified) = validators.last_modified
        && modified > since
    {
        return Precondition::Failed;
    }
    if let Some(if_none_match) = header_text(headers, &IF_NONE_MATCH) {
        let matched = if_none_match.trim() == "*" && validators.etag.is_some()
            || validators
                .etag
                .is_some_and(|etag| list_contains(&if_none_match, etag, false));
        if matched {
            return Precondition::NotModified;
        }
    } else if let Some(since) =
        header_text(headers, &IF_MODIFIED_SINCE).and_then(|v| parse_http_date(&v))
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
    let Some(value) = header_text(headers, &IF_RANGE) else {
        return true;
    };
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return validators
            .etag
            .is_some_and(|etag| strong_equal(value, etag));
    }
    match (parse_http_date(value), validators.last_modified) {
        (Some(date), Some(modified)) => date == truncate(modified),
        _ => false,
    }
}

fn header_text(headers: &HeaderMap, name: &http::HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let joined: Vec<&str> = values.filter_map(|value| value.to_str().ok()).collect();
    Some(joined.join(","))
}

/// Whether a comma-separated list of entity tags holds one equal to `etag`, strongly or weakly.
fn list_contains(list: &str, etag: &str, strong: bool) -> bool {
    list.split(',').map(str::trim).any(|candidate| {
        if strong {
            strong_equal(candidate, etag)
        } else {
            opaque(candidate) == opaque(etag)
        }
    })
}

/// Strong comparison: both strong, same opaque tag.
fn strong_equal(a: &str, b: &str) -> bool {
    !a.starts_with("W/") && !b.starts_with("W/") && a == b
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
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
            etag: Some("\"v1\""),
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
}
