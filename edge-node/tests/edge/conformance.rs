//! RFC 9111 conformance, table-driven: each case scripts an origin's response headers and a
//! series of steps (a clock move, the request's headers, what origin trouble there is), and
//! says what the edge must answer (status, `Cache-Status`, headers) and how many requests the
//! origin has seen by then. The same table runs over HTTP/1.1, HTTP/2 (TLS) and HTTP/3, on a
//! hand-moved clock: no sleeps.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::support::{H3Client, TestEdge, TestObject, TestOrigin, clocked_pair, edge_config};

/// What a response header must be.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exactly this value.
    Is(&'static str),
    /// Absent.
    Absent,
    /// An HTTP date this many seconds after the case's start.
    DateAt(u64),
}

/// One request of a case.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// How far the clock moves before the request, milliseconds.
    advance_ms: u64,
    /// The request's headers.
    request: &'static [(&'static str, &'static str)],
    /// Whether the origin answers 503 to everything during this step.
    origin_fails: bool,
    /// The expected status.
    status: u16,
    /// The expected `Cache-Status` after the node's name.
    cache: &'static str,
    /// Requests the origin has seen for the path once the step (and any background work it
    /// started) is over.
    upstream: usize,
    /// Response headers and what they must be.
    headers: &'static [(&'static str, Expect)],
}

const fn step(advance_ms: u64, status: u16, cache: &'static str, upstream: usize) -> Step {
    Step {
        advance_ms,
        request: &[],
        origin_fails: false,
        status,
        cache,
        upstream,
        headers: &[],
    }
}

impl Step {
    const fn with(mut self, request: &'static [(&'static str, &'static str)]) -> Self {
        self.request = request;
        self
    }

    const fn failing(mut self) -> Self {
        self.origin_fails = true;
        self
    }

    const fn expect(mut self, headers: &'static [(&'static str, Expect)]) -> Self {
        self.headers = headers;
        self
    }
}

/// A scripted origin response and the requests made of it.
#[derive(Debug)]
struct Case {
    name: &'static str,
    /// The origin's response headers. `{T-N}` and `{T+N}` in a value are replaced by the
    /// HTTP date N seconds before or after the case's start.
    origin: &'static [(&'static str, &'static str)],
    steps: &'static [Step],
}

const MISS: &str = "fwd=miss";
const HIT: &str = "hit";
const REVALIDATED: &str = "fwd=stale";
const SWR: &str = "hit; fwd=stale; detail=stale-while-revalidate";
const SIE: &str = "hit; fwd=stale; detail=stale-if-error";
const MAX_STALE: &str = "hit; detail=max-stale";
const BYPASS: &str = "fwd=bypass";
const FAILED: &str = "fwd=miss; detail=upstream-failed";
const ONLY_IF_CACHED: &str = "detail=only-if-cached";

const ETAG: (&str, &str) = ("etag", "\"v1\"");

const CASES: &[Case] = &[
    // Freshness and zero windows.
    Case {
        name: "max-age=0 is revalidated on every use, never served stale",
        origin: &[("cache-control", "max-age=0"), ETAG],
        steps: &[
            step(0, 200, MISS, 1),
            step(0, 200, REVALIDATED, 2),
            step(5_000, 200, REVALIDATED, 3),
        ],
    },
    Case {
        name: "no freshness information at all: refetched every time, once each",
        origin: &[("content-type", "text/plain")],
        steps: &[
            step(0, 200, MISS, 1),
            step(0, 200, REVALIDATED, 2),
            step(1_500, 200, REVALIDATED, 3),
        ],
    },
    Case {
        name: "max-age is fresh to the millisecond, not to the second",
        origin: &[("cache-control", "max-age=1"), ETAG],
        steps: &[
            step(0, 200, MISS, 1),
            step(999, 200, HIT, 1),
            step(1, 200, REVALIDATED, 2),
        ],
    },
    Case {
        name: "s-maxage wins over max-age for a shared cache",
        origin: &[("cache-control", "max-age=1, s-maxage=60"), ETAG],
        steps: &[step(0, 200, MISS, 1), step(10_000, 200, HIT, 1)],
    },
    Case {
        name: "Expires, relative to Date",
        origin: &[("expires", "{T+30}"), ETAG],
        steps: &[
            step(0, 200, MISS, 1),
            step(20_000, 200, HIT, 1),
            step(10_000, 200, REVALIDATED, 2),
        ],
    },
    Case {
        name: "an invalid Expires is already expired",
        origin: &[("expires", "0"), ETAG],
        steps: &[step(0, 200, MISS, 1), step(0, 200, REVALIDATED, 2)],
    },
    Case {
        name: "heuristic freshness: a tenth of the time since Last-Modified",
        origin: &[("last-modified", "{T-1000}")],
        steps: &[
            step(0, 200, MISS, 1),
            step(99_000, 200, HIT, 1),
            step(1_000, 200, REVALIDATED, 2),
        ],
    },
    Case {
        name: "max-age wins over Expires",
        origin: &[("cache-control", "max-age=60"), ("expires", "{T+5}"), ETAG],
        steps: &[step(0, 200, MISS, 1), step(10_000, 200, HIT, 1)],
    },
    Case {
        name: "an invalid max-age is stale at once",
        origin: &[("cache-control", "max-age=soon"), ETAG],
        steps: &[step(0, 200, MISS, 1), step(0, 200, REVALIDATED, 2)],
    },
    Case {
        name: "Vary: each variant is stored and served on its own",
        origin: &[
            ("cache-control", "max-age=60"),
            ("vary", "accept-language"),
            ETAG,
        ],
        steps: &[
            step(0, 200, MISS, 1).with(&[("accept-language", "en")]),
            step(0, 200, MISS, 2).with(&[("accept-language", "fr")]),
            step(0, 200, HIT, 2).with(&[("accept-language", "en")]),
            step(0, 200, HIT, 2).with(&[("accept-language", "fr")]),
        ],
    },
    Case {
        name: "Vary: * is not stored",
        origin: &[("cache-control", "max-age=60"), ("vary", "*")],
        steps: &[step(0, 200, MISS, 1), step(0, 200, MISS, 2)],
    },
    // RFC 5861.
    Case {
        name: "stale-while-revalidate=0 is no window",
        origin: &[
            ("cache-control", "max-age=1, stale-while-revalidate=0"),
            ETAG,
        ],
        steps: &[step(0, 200, MISS, 1), step(1_000, 200, REVALIDATED, 2)],
    },
    Case {
        name: "stale-while-revalidate serves stale and revalidates once behind it",
        origin: &[
            ("cache-control", "max-age=1, stale-while-revalidate=10"),
            ETAG,
        ],
        steps: &[
            step(0, 200, MISS, 1),
            step(500, 200, HIT, 1),
            step(1_000, 200, SWR, 2),
            step(0, 200, HIT, 2),
        ],
    },
    Case {
        name: "past stale-while-revalidate it revalidates first",
        origin: &[
            ("cache-control", "max-age=1, stale-while-revalidate=2"),
            ETAG,
        ],
        steps: &[step(0, 200, MISS, 1), step(3_000, 200, REVALIDATED, 2)],
    },
    Case {
        name: "stale-if-error within its window, an error past it",
        origin: &[("cache-control", "max-age=1, stale-if-error=60"), ETAG],
        steps: &[
            step(0, 200, MISS, 1),
            step(2_000, 200, SIE, 2).failing(),
            step(60_000, 502, FAILED, 3).failing(),
        ],
    },
    Case {
        name: "stale-if-error=0 is no window",
        origin: &[("cache-control", "max-age=1, stale-if-error=0"), ETAG],
        steps: &[step(0, 200, MISS, 1), step(2_000, 502, FAILED, 2).failing()],
    },
    Case {
        name: "must-revalidate that cannot revalidate is 504",
        origin: &[
            (
                "cache-control",
                "max-age=1, must-revalidate, stale-if-error=60",
            ),
            ETAG,
        ],
        steps: &[step(0, 200, MISS, 1), step(2_000, 504, FAILED, 2).failing()],
    },
    Case {
        name: "proxy-revalidate binds a shared cache as must-revalidate does",
        origin: &[
            (
                "cache-control",
                "max-age=1, proxy-revalidate, stale-if-error=60",
            ),
            ETAG,
        ],
        steps: &[step(0, 200, MISS, 1), step(2_000, 504, FAILED, 2).failing()],
    },
    // Storage.
    Case {
        name: "no-store responses are not stored",
        origin: &[("cache-control", "no-store")],
        steps: &[step(0, 200, MISS, 1), step(0, 200, MISS, 2)],
    },
    Case {
        name: "private responses are not stored by a shared cache",
        origin: &[("cache-control", "private, max-age=60")],
        steps: &[step(0, 200, MISS, 1), step(0, 200, MISS, 2)],
    },
    Case {
        name: "no-cache responses are stored and revalidated on every use",
        origin: &[("cache-control", "no-cache"), ETAG],
        steps: &[step(0, 200, MISS, 1), step(0, 200, REVALIDATED, 2)],
    },
    // Age and Date.
    Case {
        name: "the parent's Age is carried and grows",
        origin: &[("cache-control", "max-age=60"), ("age", "30"), ETAG],
        steps: &[
            step(0, 200, MISS, 1).expect(&[("age", Expect::Is("30"))]),
            step(10_000, 200, HIT, 1).expect(&[("age", Expect::Is("40"))]),
            step(20_000, 200, REVALIDATED, 2).expect(&[("age", Expect::Is("30"))]),
        ],
    },
    Case {
        name: "Date is the origin's, and a revalidation's Date replaces it",
        origin: &[("cache-control", "max-age=10"), ETAG],
        steps: &[
            step(0, 200, MISS, 1).expect(&[("date", Expect::DateAt(0)), ("age", Expect::Is("0"))]),
            step(5_000, 200, HIT, 1)
                .expect(&[("date", Expect::DateAt(0)), ("age", Expect::Is("5"))]),
            step(15_000, 200, REVALIDATED, 2)
                .expect(&[("date", Expect::DateAt(20)), ("age", Expect::Is("0"))]),
        ],
    },
    // Hop-by-hop.
    Case {
        name: "hop-by-hop headers, and those Connection names, are not forwarded",
        origin: &[
            ("cache-control", "max-age=60"),
            ("connection", "x-hop-secret"),
            ("x-hop-secret", "for the next hop only"),
            ("x-end-to-end", "kept"),
        ],
        steps: &[
            step(0, 200, MISS, 1).expect(&[
                ("x-hop-secret", Expect::Absent),
                ("connection", Expect::Absent),
                ("x-end-to-end", Expect::Is("kept")),
            ]),
            step(0, 200, HIT, 1).expect(&[
                ("x-hop-secret", Expect::Absent),
                ("x-end-to-end", Expect::Is("kept")),
            ]),
        ],
    },
    // Conditional requests.
    Case {
        name: "a client's If-None-Match on a miss goes to the origin, whose 304 it gets",
        origin: &[("cache-control", "max-age=60"), ETAG],
        steps: &[
            step(0, 304, MISS, 1).with(&[("if-none-match", "\"v1\"")]),
            step(0, 200, MISS, 2),
            step(0, 304, HIT, 2)
                .with(&[("if-none-match", "\"v1\"")])
                .expect(&[("etag", Expect::Is("\"v1\""))]),
            step(0, 200, HIT, 2).with(&[("if-none-match", "\"v2\"")]),
        ],
    },
    Case {
        name: "a client's If-Modified-Since on a miss goes to the origin",
        origin: &[
            ("cache-control", "max-age=60"),
            ("last-modified", "{T-100}"),
        ],
        steps: &[
            step(0, 304, MISS, 1).with(&[("if-modified-since", "{T-50}")]),
            step(0, 200, MISS, 2).with(&[("if-modified-since", "{T-200}")]),
            step(0, 304, HIT, 2).with(&[("if-modified-since", "{T-100}")]),
        ],
    },
    Case {
        name: "If-None-Match is evaluated instead of If-Modified-Since",
        origin: &[
            ("cache-control", "max-age=60"),
            ("last-modified", "{T-100}"),
            ETAG,
        ],
        steps: &[
            step(0, 200, MISS, 1),
            step(0, 200, HIT, 1)
                .with(&[("if-none-match", "\"v2\""), ("if-modified-since", "{T-0}")]),
            step(0, 304, HIT, 1).with(&[
                ("if-none-match", "W/\"v1\""),
                ("if-modified-since", "{T-500}"),
            ]),
        ],
    },
    Case {
        name: "an unquoted entity tag compares with its quoted form",
        origin: &[("cache-control", "max-age=60"), ("etag", "abc")],
        steps: &[
            step(0, 200, MISS, 1),
            step(0, 304, HIT, 1).with(&[("if-none-match", "\"abc\"")]),
            step(0, 304, HIT, 1).with(&[("if-none-match", "abc")]),
        ],
    },
    Case {
        name: "an entity tag with obs-text compares byte for byte",
        origin: &[("cache-control", "max-age=60"), ("etag", "\"caf\u{e9}\"")],
        steps: &[
            step(0, 200, MISS, 1),
            step(0, 304, HIT, 1).with(&[("if-none-match", "W/\"caf\u{e9}\"")]),
            step(0, 200, HIT, 1).with(&[("if-none-match", "\"cafe\"")]),
        ],
    },
    // Request directives.
    Case {
        name: "request no-cache, and Pragma: no-cache, revalidate first",
        origin: &[("cache-control", "max-age=60"), ETAG],
        steps: &[
            step(0, 200, MISS, 1),
            step(0, 200, REVALIDATED, 2).with(&[("cache-control", "no-cache")]),
            step(0, 200, REVALIDATED, 3).with(&[("pragma", "no-cache")]),
            step(0, 200, HIT, 3),
        ],
    },
    Case {
        name: "request max-age narrows what is fresh enough",
        origin: &[("cache-control", "max-age=60"), ETAG],
        steps: &[
            step(0, 200, MISS, 1),
            step(10_000, 200, REVALIDATED, 2).with(&[("cache-control", "max-age=5")]),
            step(0, 200, HIT, 2).with(&[("cache-control", "max-age=5")]),
            step(0, 200, REVALIDATED, 3).with(&[("cache-control", "max-age=0")]),
        ],
    },
    Case {
        name: "request max-stale takes a stale response, within its bound",
        origin: &[("cache-control", "max-age=1"), ETAG],
        steps: &[
            step(0, 200, MISS, 1),
            step(5_000, 200, MAX_STALE, 1).with(&[("cache-control", "max-stale=10")]),
            step(0, 200, MAX_STALE, 1).with(&[("cache-control", "max-stale")]),
            step(0, 200, REVALIDATED, 2).with(&[("cache-control", "max-stale=2")]),
        ],
    },
    Case {
        name: "max-stale does not override must-revalidate",
        origin: &[("cache-control", "max-age=1, must-revalidate"), ETAG],
        steps: &[
            step(0, 200, MISS, 1),
            step(5_000, 200, REVALIDATED, 2).with(&[("cache-control", "max-stale")]),
        ],
    },
    Case {
        name: "request min-fresh wants freshness left",
        origin: &[("cache-control", "max-age=60"), ETAG],
        steps: &[
            step(0, 200, MISS, 1),
            step(30_000, 200, HIT, 1).with(&[("cache-control", "min-fresh=20")]),
            step(0, 200, REVALIDATED, 2).with(&[("cache-control", "min-fresh=40")]),
        ],
    },
    Case {
        name: "only-if-cached: from the cache or 504, never from the origin",
        origin: &[("cache-control", "max-age=60"), ETAG],
        steps: &[
            step(0, 504, ONLY_IF_CACHED, 0).with(&[("cache-control", "only-if-cached")]),
            step(0, 200, MISS, 1),
            step(0, 200, HIT, 1).with(&[("cache-control", "only-if-cached")]),
            step(120_000, 504, ONLY_IF_CACHED, 1).with(&[("cache-control", "only-if-cached")]),
            step(0, 200, MAX_STALE, 1).with(&[("cache-control", "only-if-cached, max-stale")]),
        ],
    },
    Case {
        name: "request no-store: fetched for that client alone, nothing stored",
        origin: &[("cache-control", "max-age=60"), ETAG],
        steps: &[
            step(0, 200, BYPASS, 1).with(&[("cache-control", "no-store")]),
            step(0, 200, MISS, 2),
            step(0, 200, HIT, 2),
            step(0, 200, HIT, 2).with(&[("cache-control", "no-store")]),
        ],
    },
    // RFC 9111 §3.5.
    Case {
        name: "a request with Authorization passes through, uncached and unanswered from cache",
        origin: &[("cache-control", "max-age=60"), ETAG],
        steps: &[
            step(0, 200, BYPASS, 1).with(&[("authorization", "Bearer a-listener")]),
            step(0, 200, MISS, 2),
            step(0, 200, BYPASS, 3).with(&[("authorization", "Bearer a-listener")]),
            step(0, 200, HIT, 3),
        ],
    },
];

/// One protocol's client.
enum Client {
    Reqwest(reqwest::Client, fn(&TestEdge, &str) -> String),
    H3(H3Client),
}

impl Client {
    async fn get(
        &mut self,
        edge: &TestEdge,
        path: &str,
        headers: &[(String, String)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        match self {
            Self::Reqwest(client, url) => {
                let mut request = client.get(url(edge, path));
                for (name, value) in headers {
                    request = request.header(
                        name.as_str(),
                        http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
                    );
                }
                let response = request.send().await.unwrap();
                let status = response.status();
                let headers = response.headers().clone();
                (status, headers, response.bytes().await.unwrap())
            }
            Self::H3(client) => {
                let pairs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str()))
                    .collect();
                client.get(path, &pairs).await
            }
        }
    }
}

/// Replaces `{T-N}` / `{T+N}` with the HTTP date N seconds from `start_ms`.
fn dated(value: &str, start_ms: u64) -> String {
    let Some(open) = value.find("{T") else {
        return value.to_owned();
    };
    let close = value[open..].find('}').unwrap() + open;
    let offset: i64 = value[open + 2..close].parse().unwrap();
    let seconds = (start_ms / 1000) as i64 + offset;
    let date = http_semantics::http_date(UNIX_EPOCH + Duration::from_secs(seconds as u64));
    format!("{}{date}{}", &value[..open], &value[close + 1..])
}

async fn run_matrix(protocol: &str) {
    let (clock, origin, edge) = clocked_pair().await;
    let mut client = match protocol {
        "http1" => Client::Reqwest(edge.h1.clone(), |edge, path| edge.http(path)),
        "http2" => Client::Reqwest(edge.tls.clone(), |edge, path| edge.https(path)),
        _ => Client::H3(edge.h3().await),
    };
    for (index, case) in CASES.iter().enumerate() {
        // Each case starts on a whole second (and a second after the last one's end).
        clock.advance(Duration::from_millis(2_000 - clock.now_ms() as u64 % 1000));
        let path = format!("/conformance/{protocol}/{index}");
        let case_start = clock.now_ms() as u64;
        let mut object = TestObject::new(
            crate::support::bytes_of(3_000 + index, index as u64),
            "unused",
        );
        object.headers = case
            .origin
            .iter()
            .map(|(name, value)| ((*name).to_owned(), dated(value, case_start)))
            .collect();
        let body = object.body.clone();
        origin.put(&path, object);
        for (number, step) in case.steps.iter().enumerate() {
            let at = format!("{protocol} · {} · step {}", case.name, number + 1);
            clock.advance(Duration::from_millis(step.advance_ms));
            origin.set_failing(step.origin_fails);
            let request: Vec<(String, String)> = step
                .request
                .iter()
                .map(|(name, value)| ((*name).to_owned(), dated(value, case_start)))
                .collect();
            let (status, headers, got) = client.get(&edge, &path, &request).await;
            edge.engine.fills_idle().await;
            origin.set_failing(false);
            assert_eq!(status.as_u16(), step.status, "{at}: status");
            assert_eq!(
                headers
                    .get("cache-status")
                    .map(|value| value.to_str().unwrap()),
                Some(format!("edge-test; {}", step.cache).as_str()),
                "{at}: cache-status"
            );
            assert_eq!(origin.hits(&path), step.upstream, "{at}: origin requests");
            if status == StatusCode::OK {
                assert_eq!(got, body, "{at}: body");
            }
            for (name, expect) in step.headers {
                let value = headers.get(*name).map(|value| value.as_bytes().to_vec());
                match expect {
                    Expect::Is(wanted) => {
                        assert_eq!(value.as_deref(), Some(wanted.as_bytes()), "{at}: {name}")
                    }
                    Expect::Absent => assert_eq!(value, None, "{at}: {name} must be absent"),
                    Expect::DateAt(seconds) => {
                        let wanted = http_semantics::http_date(
                            UNIX_EPOCH
                                + Duration::from_millis(case_start)
                                + Duration::from_secs(*seconds),
                        );
                        assert_eq!(value.as_deref(), Some(wanted.as_bytes()), "{at}: {name}");
                    }
                }
            }
        }
    }
    // What the origin saw: client conditions forwarded on a miss, credentials in place of the
    // fill key, no hop-by-hop headers of the client's.
    let conditional = CASES
        .iter()
        .position(|case| case.name.starts_with("a client's If-None-Match"))
        .unwrap();
    let seen = origin.requests(&format!("/conformance/{protocol}/{conditional}"));
    assert_eq!(seen[0]["if-none-match"], "\"v1\"");
    let authorised = CASES
        .iter()
        .position(|case| case.name.starts_with("a request with Authorization"))
        .unwrap();
    let seen = origin.requests(&format!("/conformance/{protocol}/{authorised}"));
    assert_eq!(seen[0]["authorization"], "Bearer a-listener");
    assert_eq!(seen[0].get_all("authorization").iter().count(), 1);
    assert_eq!(
        seen[1]["authorization"],
        format!("Bearer {}", crate::support::FILL_KEY).as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9111_matrix_over_http1() {
    run_matrix("http1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9111_matrix_over_http2() {
    run_matrix("http2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9111_matrix_over_http3() {
    run_matrix("http3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_methods_are_refused_with_allow_and_reach_no_origin() {
    let origin = TestOrigin::start().await;
    origin.put("/m/object", TestObject::new("body", "max-age=60"));
    let mut config = edge_config(vec![origin.url()]);
    config.token_prefixes = Vec::new();
    let edge = TestEdge::start_with(config).await;
    for client in [&edge.h1, &edge.h2c] {
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let response = client
                .request(method.parse().unwrap(), edge.http("/m/object"))
                .body("x")
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method}"
            );
            assert_eq!(response.headers()["allow"], "GET, HEAD, OPTIONS");
        }
    }
    assert_eq!(origin.hits("/m/object"), 0);
}
