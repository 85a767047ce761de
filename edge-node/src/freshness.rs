//! RFC 9111 for a shared cache: whether a response may be stored, how long it stays fresh,
//! how old it is, what a request's own directives allow, and the RFC 5861 windows in which a
//! stale copy may still be served.
//!
//! Ages are kept in milliseconds and every window is compared strictly, so that a zero
//! window (`max-age=0`, `stale-while-revalidate=0`) is no window at all, and a response is
//! never "fresh for its first second" by rounding.

use http::{HeaderMap, StatusCode};

/// Delta-seconds past this are taken as this (RFC 9111 §1.2.2).
const MAX_DELTA: u64 = 2_147_483_648;

/// The directives of every `Cache-Control` field line, as `(lower-case name, argument)`.
/// Commas inside a quoted argument (`no-cache="a, b"`) do not split it.
fn directives(headers: &HeaderMap) -> Vec<(String, Option<String>)> {
    let mut parsed = Vec::new();
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        let mut rest = value;
        while !rest.is_empty() {
            let (name_end, has_argument) = match rest.find([',', '=']) {
                Some(at) => (at, rest.as_bytes()[at] == b'='),
                None => (rest.len(), false),
            };
            let name = rest[..name_end].trim().to_ascii_lowercase();
            rest = &rest[name_end..];
            let mut argument = None;
            if has_argument {
                rest = rest[1..].trim_start();
                if let Some(quoted) = rest.strip_prefix('"') {
                    // A quoted-string: up to the closing quote, backslash escapes kept out.
                    let mut text = String::new();
                    let mut chars = quoted.char_indices();
                    let mut end = quoted.len();
                    while let Some((at, c)) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some((_, escaped)) = chars.next() {
                                    text.push(escaped);
                                }
                            }
                            '"' => {
                                end = at + 1;
                                break;
                            }
                            _ => text.push(c),
                        }
                    }
                    argument = Some(text);
                    rest = &quoted[end.min(quoted.len())..];
                } else {
                    let end = rest.find(',').unwrap_or(rest.len());
                    argument = Some(rest[..end].trim().to_owned());
                    rest = &rest[end..];
                }
            }
            // Skip to the next directive.
            rest = match rest.find(',') {
                Some(at) => &rest[at + 1..],
                None => "",
            };
            if !name.is_empty() {
                parsed.push((name, argument));
            }
        }
    }
    parsed
}

/// A delta-seconds argument: `None` when absent or not 1*DIGIT.
fn delta_seconds(argument: Option<&str>) -> Option<u64> {
    let text = argument?;
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u64>().unwrap_or(MAX_DELTA).min(MAX_DELTA))
}

/// The `Cache-Control` directives a shared cache acts on in a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (qualified or not): store, but revalidate before every use.
    pub no_cache: bool,
    /// `private` (qualified or not): not for a shared cache.
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`, `proxy-revalidate`, or `s-maxage` (which implies it): never serve
    /// stale.
    pub must_revalidate: bool,
    /// `max-age`; an invalid value is `Some(0)` (stale at once, RFC 9111 §4.2.1).
    pub max_age: Option<u64>,
    /// `s-maxage`; an invalid value is `Some(0)`.
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate`; an invalid value voids it.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`; an invalid value voids it.
    pub stale_if_error: Option<u64>,
}

impl CacheControl {
    /// Parses every `Cache-Control` field line of a response. Qualified `no-cache` and
    /// `private` (which name header fields) are taken as unqualified: the safe side.
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut parsed = Self::default();
        for (name, argument) in directives(headers) {
            let seconds = || delta_seconds(argument.as_deref());
            match name.as_str() {
                "no-store" => parsed.no_store = true,
                "no-cache" => parsed.no_cache = true,
                "private" => parsed.private = true,
                "public" => parsed.public = true,
                "must-revalidate" | "proxy-revalidate" => parsed.must_revalidate = true,
                "max-age" => parsed.max_age = Some(seconds().unwrap_or(0)),
                "s-maxage" => {
                    parsed.s_maxage = Some(seconds().unwrap_or(0));
                    parsed.must_revalidate = true;
                }
                "stale-while-revalidate" => parsed.stale_while_revalidate = seconds(),
                "stale-if-error" => parsed.stale_if_error = seconds(),
                _ => {}
            }
        }
        parsed
    }
}

/// What a request's own `Cache-Control` (or, without one, `Pragma: no-cache`) asks of a
/// cache (RFC 9111 §5.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-cache`: no stored response without revalidating it first.
    pub no_cache: bool,
    /// `no-store`: nothing of this exchange is stored.
    pub no_store: bool,
    /// `max-age`: the client takes no response older than this, seconds.
    pub max_age: Option<u64>,
    /// `max-stale`: the client takes a stale response, this much past expiry at most
    /// (`Some(None)`: any staleness).
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh`: the response must stay fresh at least this much longer, seconds.
    pub min_fresh: Option<u64>,
    /// `only-if-cached`: answer from the cache or with 504, never from a parent.
    pub only_if_cached: bool,
}

impl RequestDirectives {
    /// Parses a request's directives; a request without any has the defaults.
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut parsed = Self::default();
        if !headers.contains_key(http::header::CACHE_CONTROL) {
            // RFC 9111 §5.4: without Cache-Control, Pragma: no-cache means no-cache.
            parsed.no_cache = headers
                .get_all(http::header::PRAGMA)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .any(|value| {
                    value
                        .split(',')
                        .any(|token| token.trim().eq_ignore_ascii_case("no-cache"))
                });
            return parsed;
        }
        for (name, argument) in directives(headers) {
            let seconds = || delta_seconds(argument.as_deref());
            match name.as_str() {
                "no-cache" => parsed.no_cache = true,
                "no-store" => parsed.no_store = true,
                // An invalid max-age asks for a response of age 0: revalidate.
                "max-age" => parsed.max_age = Some(seconds().unwrap_or(0)),
                "max-stale" => {
                    parsed.max_stale = match &argument {
                        None => Some(None),
                        Some(_) => seconds().map(Some),
                    }
                }
                "min-fresh" => parsed.min_fresh = seconds(),
                "only-if-cached" => parsed.only_if_cached = true,
                _ => {}
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
    // 206 and 304 are never stored as responses of their own: the edge fills whole objects,
    // and a 304 only freshens what is stored.
    let understood = matches!(status.as_u16(), 200..=599)
        && status != StatusCode::PARTIAL_CONTENT
        && status != StatusCode::NOT_MODIFIED;
    // Heuristic freshness (§4.2.2) only without an explicit expiry, and only for a
    // heuristically cacheable status or a response marked public: a tenth of the time since
    // the last modification, at most a day. Without Last-Modified there is nothing to base
    // a heuristic on, so the lifetime is 0 and every use revalidates.
    let heuristic_allowed = heuristically_cacheable(status) || control.public;
    let lifetime = match explicit {
        Some(seconds) => seconds,
        None if heuristic_allowed => header_date(headers, http::header::LAST_MODIFIED)
            .map_or(0, |modified| {
                (date.saturating_sub(modified) / 10).min(86_400)
            }),
        None => 0,
    };
    let storable = understood
        && !control.no_store
        && !control.private
        && !vary_star
        && (explicit.is_some() || heuristic_allowed || control.no_cache);
    let stale_window = |window: Option<u64>| {
        if control.must_revalidate || control.no_cache {
            0
        } else {
            window.unwrap_or(0)
        }
    };
    Policy {
        storable,
        lifetime,
        revalidate_always: control.no_cache,
        must_revalidate: control.must_revalidate,
        stale_while_revalidate: stale_window(control.stale_while_revalidate),
        stale_if_error: stale_window(control.stale_if_error),
    }
}

/// What a stored response may be used for, at a given age, by a given request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Fresh enough for this request: serve it.
    Fresh,
    /// Stale, but the request's `max-stale` takes it: serve it without revalidating.
    StaleAccepted,
    /// Stale within `stale-while-revalidate`: serve it and revalidate behind it.
    StaleWhileRevalidate,
    /// Revalidate (or refetch) before use.
    Revalidate,
}

impl Policy {
    /// The use of a stored response `age_ms` old for a request with `request`'s directives.
    pub fn use_at(&self, age_ms: u64, request: &RequestDirectives) -> Use {
        let lifetime_ms = self.lifetime.saturating_mul(1000);
        if self.revalidate_always || request.no_cache {
            return Use::Revalidate;
        }
        // The client's max-age: a response as old as it or older is not acceptable (strict,
        // so that max-age=0 always revalidates).
        if request
            .max_age
            .is_some_and(|max_age| age_ms >= max_age.saturating_mul(1000))
        {
            return Use::Revalidate;
        }
        let min_fresh_ms = request.min_fresh.unwrap_or(0).saturating_mul(1000);
        if age_ms.saturating_add(min_fresh_ms) < lifetime_ms {
            return Use::Fresh;
        }
        if age_ms < lifetime_ms {
            // Fresh, but not for as long as min-fresh asks.
            return Use::Revalidate;
        }
        let staleness_ms = age_ms - lifetime_ms;
        if !self.must_revalidate
            && let Some(max_stale) = request.max_stale
            && max_stale.is_none_or(|seconds| staleness_ms <= seconds.saturating_mul(1000))
        {
            return Use::StaleAccepted;
        }
        if staleness_ms < self.stale_while_revalidate.saturating_mul(1000) {
            return Use::StaleWhileRevalidate;
        }
        Use::Revalidate
    }

    /// Whether a stored response `age_ms` old may be served because every parent failed
    /// (RFC 5861 §4: within `stale-if-error`, never past `must-revalidate`).
    pub fn usable_on_error(&self, age_ms: u64) -> bool {
        let staleness_ms = age_ms.saturating_sub(self.lifetime.saturating_mul(1000));
        !self.must_revalidate && staleness_ms < self.stale_if_error.saturating_mul(1000)
    }
}

/// The age in milliseconds the response had when it arrived (RFC 9111 §4.2.3's corrected
/// initial age): `request_ms` when the request went out, `response_ms` when the response
/// came back.
pub fn initial_age_ms(headers: &HeaderMap, request_ms: u64, response_ms: u64) -> u64 {
    let date_ms = header_date(headers, http::header::DATE).map_or(response_ms, |date| date * 1000);
    let apparent = response_ms.saturating_sub(date_ms);
    let age_value_ms = headers
        .get(http::header::AGE)
        .and_then(|value| delta_seconds(value.to_str().ok().map(str::trim)))
        .unwrap_or(0)
        .saturating_mul(1000);
    let delay = response_ms.saturating_sub(request_ms);
    apparent.max(age_value_ms.saturating_add(delay))
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
        assert_eq!(
            initial_age_ms(&headers(&[("age", "100")]), (NOW - 2) * 1000, NOW * 1000),
            102_000
        );
    }

    #[test]
    fn a_zero_window_is_no_window() {
        let plain = RequestDirectives::default();
        for value in [
            "max-age=0",
            "max-age=0, stale-while-revalidate=0, stale-if-error=0",
        ] {
            let p = policy(StatusCode::OK, &headers(&[("cache-control", value)]), NOW);
            assert_eq!(p.use_at(0, &plain), Use::Revalidate, "{value}");
            assert!(!p.usable_on_error(0), "{value}");
        }
        // No freshness information at all: stored, revalidated on every use, never stale.
        let p = policy(StatusCode::OK, &HeaderMap::new(), NOW);
        assert!(p.storable);
        assert_eq!(p.use_at(0, &plain), Use::Revalidate);
        assert!(!p.usable_on_error(0));
        let p = policy(
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=1, stale-while-revalidate=2")]),
            NOW,
        );
        assert_eq!(p.use_at(999, &plain), Use::Fresh);
        assert_eq!(p.use_at(1_000, &plain), Use::StaleWhileRevalidate);
        assert_eq!(p.use_at(2_999, &plain), Use::StaleWhileRevalidate);
        assert_eq!(p.use_at(3_000, &plain), Use::Revalidate);
    }

    #[test]
    fn request_directives_narrow_or_widen_what_is_served() {
        let parse = |value: &str| RequestDirectives::parse(&headers(&[("cache-control", value)]));
        let p = policy(
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=60")]),
            NOW,
        );
        assert_eq!(p.use_at(10_000, &parse("no-cache")), Use::Revalidate);
        assert_eq!(p.use_at(10_000, &parse("max-age=0")), Use::Revalidate);
        assert_eq!(p.use_at(10_000, &parse("max-age=20")), Use::Fresh);
        assert_eq!(p.use_at(10_000, &parse("min-fresh=40")), Use::Fresh);
        assert_eq!(p.use_at(10_000, &parse("min-fresh=50")), Use::Revalidate);
        assert_eq!(p.use_at(70_000, &parse("max-stale")), Use::StaleAccepted);
        assert_eq!(p.use_at(70_000, &parse("max-stale=10")), Use::StaleAccepted);
        assert_eq!(p.use_at(70_001, &parse("max-stale=10")), Use::Revalidate);
        let strict = policy(
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=60, must-revalidate")]),
            NOW,
        );
        assert_eq!(strict.use_at(70_000, &parse("max-stale")), Use::Revalidate);
        let pragma = RequestDirectives::parse(&headers(&[("pragma", "no-cache")]));
        assert!(pragma.no_cache);
        let both = RequestDirectives::parse(&headers(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-stale"),
        ]));
        assert!(!both.no_cache, "Cache-Control wins over Pragma");
        let all = parse("no-store, only-if-cached, max-stale=abc");
        assert!(all.no_store && all.only_if_cached && all.max_stale.is_none());
    }

    #[test]
    fn quoted_arguments_keep_their_commas() {
        let control = CacheControl::parse(&headers(&[(
            "cache-control",
            "no-cache=\"set-cookie, x-a\", max-age=30, s-maxage=oops",
        )]));
        assert!(control.no_cache);
        assert_eq!(control.max_age, Some(30));
        assert_eq!(
            control.s_maxage,
            Some(0),
            "an invalid s-maxage is stale at once"
        );
        let control = CacheControl::parse(&headers(&[("cache-control", "max-age=99999999999")]));
        assert_eq!(control.max_age, Some(MAX_DELTA));
    }
}
