//! RFC 9111 for a shared cache: whether a response may be stored, how long it stays fresh,
//! how old it is, and the RFC 5861 windows in which a stale copy may still be served.

use http::{HeaderMap, StatusCode};

/// The `Cache-Control` directives a shared cache acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (unqualified): store, but revalidate before every use.
    pub no_cache: bool,
    /// `private` (unqualified): not for a shared cache.
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`, `proxy-revalidate`, or `s-maxage` (which implies it): never serve
    /// stale.
    pub must_revalidate: bool,
    /// `max-age`.
    pub max_age: Option<u64>,
    /// `s-maxage`.
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate`.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`.
    pub stale_if_error: Option<u64>,
}

impl CacheControl {
    /// Parses every `Cache-Control` field line. An invalid delta-seconds voids the directive
    /// (and makes `max-age`/`s-maxage` stale at once, as RFC 9111 §4.2.1 advises).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut parsed = Self::default();
        for value in headers.get_all(http::header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let (name, argument) = match directive.split_once('=') {
                    Some((name, argument)) => {
                        (name.trim(), Some(argument.trim().trim_matches('"')))
                    }
                    None => (directive.trim(), None),
                };
                let seconds = || argument.map(|text| text.parse::<u64>().unwrap_or(0));
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => parsed.no_store = true,
                    // Qualified forms name headers; treating them as unqualified is the safe side.
                    "no-cache" => parsed.no_cache = true,
                    "private" => parsed.private = true,
                    "public" => parsed.public = true,
                    "must-revalidate" | "proxy-revalidate" => parsed.must_revalidate = true,
                    "max-age" => parsed.max_age = seconds(),
                    "s-maxage" => {
                        parsed.s_maxage = seconds();
                        parsed.must_revalidate = true;
                    }
                    "stale-while-revalidate" => parsed.stale_while_revalidate = seconds(),
                    "stale-if-error" => parsed.stale_if_error = seconds(),
                    _ => {}
                }
            }
        }
        parsed
    }
}

/// Status codes a cache may store with heuristic freshness (RFC 9110 §15.1).
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The storage decision and freshness of a response, computed once when it arrives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Whether it may be stored at all.
    pub storable: bool,
    /// Freshness lifetime, seconds.
    pub lifetime: u64,
    /// Whether every use needs revalidation (`no-cache`).
    pub revalidate_always: bool,
    /// Whether stale use is forbidden (`must-revalidate`, `proxy-revalidate`, `s-maxage`).
    pub must_revalidate: bool,
    /// Seconds past expiry during which a stale copy is served while it revalidates.
    pub stale_while_revalidate: u64,
    /// Seconds past expiry during which a stale copy is served if the parents fail.
    pub stale_if_error: u64,
}

/// Decides whether a response to a GET may be stored by a shared cache and for how long
/// (RFC 9111 §3, §4.2.1, §4.2.2). `now` is Unix seconds at receipt.
pub fn policy(status: StatusCode, headers: &HeaderMap, now: u64) -> Policy {
    let control = CacheControl::parse(headers);
    let date = header_date(headers, http::header::DATE).unwrap_or(now);
    let explicit = control.s_maxage.or(control.max_age).or_else(|| {
        headers.get(http::header::EXPIRES).map(|value| {
            // An invalid Expires (such as "0") means already expired.
            value
                .to_str()
                .ok()
                .and_then(http_semantics::parse_http_date)
                .map_or(0, |expires| unix(expires).saturating_sub(date))
        })
    });
    let vary_star = headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').any(|name| name.trim() == "*"));
    let understood = matches!(status.as_u16(), 200..=599) && status != StatusCode::PARTIAL_CONTENT;
    let lifetime = match explicit {
        Some(seconds) => Some(seconds),
        // Heuristic freshness only without explicit expiry and for heuristically cacheable
        // statuses: a tenth of the time since the last modification, at most a day.
        None if heuristically_cacheable(status) => {
            header_date(headers, http::header::LAST_MODIFIED)
                .map(|modified| (date.saturating_sub(modified) / 10).min(86_400))
                .or(Some(0))
        }
        None => None,
    };
    let has_explicit = explicit.is_some() || control.public;
    let storable = understood
        && !control.no_store
        && !control.private
        && !vary_star
        && (has_explicit || heuristically_cacheable(status) || control.no_cache);
    Policy {
        storable,
        lifetime: lifetime.unwrap_or(0),
        revalidate_always: control.no_cache,
        must_revalidate: control.must_revalidate,
        stale_while_revalidate: if control.must_revalidate {
            0
        } else {
            control.stale_while_revalidate.unwrap_or(0)
        },
        stale_if_error: if control.must_revalidate {
            0
        } else {
            control.stale_if_error.unwrap_or(0)
        },
    }
}

/// The age the response had when it arrived (RFC 9111 §4.2.3's corrected initial age).
pub fn initial_age(headers: &HeaderMap, request_time: u64, response_time: u64) -> u64 {
    let date = header_date(headers, http::header::DATE).unwrap_or(response_time);
    let apparent = response_time.saturating_sub(date);
    let age_value = headers
        .get(http::header::AGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let delay = response_time.saturating_sub(request_time);
    apparent.max(age_value.saturating_add(delay))
}

fn header_date(headers: &HeaderMap, name: http::HeaderName) -> Option<u64> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .and_then(http_semantics::parse_http_date)
        .map(unix)
}

fn unix(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn explicit_freshness_prefers_s_maxage_then_max_age_then_expires() {
        let p = policy(
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=60, s-maxage=600")]),
            NOW,
        );
        assert_eq!(
            (p.storable, p.lifetime, p.must_revalidate),
            (true, 600, true)
        );
        let p = policy(
            StatusCode::OK,
            &headers(&[("cache-control", "public, max-age=60")]),
            NOW,
        );
        assert_eq!((p.lifetime, p.must_revalidate), (60, false));
        let date =
            http_semantics::http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW));
        let expires = http_semantics::http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW + 300),
        );
        let p = policy(
            StatusCode::OK,
            &headers(&[("date", &date), ("expires", &expires)]),
            NOW,
        );
        assert_eq!(p.lifetime, 300);
        let p = policy(StatusCode::OK, &headers(&[("expires", "0")]), NOW);
        assert_eq!((p.storable, p.lifetime), (true, 0));
    }

    #[test]
    fn shared_caches_do_not_store_private_or_no_store_or_vary_star() {
        for value in [
            ("cache-control", "private, max-age=60"),
            ("cache-control", "no-store"),
            ("vary", "*"),
        ] {
            assert!(
                !policy(StatusCode::OK, &headers(&[value]), NOW).storable,
                "{value:?}"
            );
        }
        let p = policy(
            StatusCode::OK,
            &headers(&[("cache-control", "no-cache")]),
            NOW,
        );
        assert!(p.storable && p.revalidate_always);
    }

    #[test]
    fn heuristics_only_where_the_rfc_allows() {
        let modified = http_semantics::http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW - 10_000),
        );
        let p = policy(
            StatusCode::OK,
            &headers(&[("last-modified", &modified)]),
            NOW,
        );
        assert_eq!((p.storable, p.lifetime), (true, 1_000));
        // 302 is not heuristically cacheable: without explicit freshness it is not stored.
        let p = policy(
            StatusCode::FOUND,
            &headers(&[("last-modified", &modified)]),
            NOW,
        );
        assert!(!p.storable);
        let p = policy(
            StatusCode::FOUND,
            &headers(&[("cache-control", "max-age=5")]),
            NOW,
        );
        assert!(p.storable);
    }

    #[test]
    fn stale_windows_and_age() {
        let p = policy(
            StatusCode::OK,
            &headers(&[(
                "cache-control",
                "max-age=1, stale-while-revalidate=30, stale-if-error=600",
            )]),
            NOW,
        );
        assert_eq!((p.stale_while_revalidate, p.stale_if_error), (30, 600));
        let p = policy(
            StatusCode::OK,
            &headers(&[(
                "cache-control",
                "max-age=1, must-revalidate, stale-if-error=600",
            )]),
            NOW,
        );
        assert_eq!(p.stale_if_error, 0);
        assert_eq!(initial_age(&headers(&[("age", "100")]), NOW - 2, NOW), 102);
    }
}
