//! A differential property test: seeded random requests (ranges single, suffix, open and
//! multipart, unsatisfiable and malformed; `If-None-Match`, `If-Match`, `If-Modified-Since`,
//! `If-Range`; request cache directives) for objects with random cache policies, sent both
//! through the edge and to the origin directly, on a hand-moved clock. Whatever the cache
//! holds, the edge must answer as the origin does: same status, same bytes.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::support::{TestObject, bytes_of, clocked_pair};

const POLICIES: &[&str] = &[
    "max-age=60",
    "max-age=0",
    "no-cache",
    "no-store",
    "private, max-age=60",
    "public, max-age=2, stale-while-revalidate=2",
    "max-age=1, must-revalidate",
    "s-maxage=5",
];

/// The parts of a `multipart/byteranges` body: each part's `Content-Range` and bytes.
fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a multipart response names its boundary");
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let head_end = find(rest, b"\r\n\r\n").expect("a part head");
        let head = String::from_utf8_lossy(&rest[..head_end]).to_lowercase();
        let range = head
            .lines()
            .find_map(|line| line.strip_prefix("content-range: "))
            .expect("a part's Content-Range")
            .to_owned();
        let data_start = head_end + 4;
        let next = find(&rest[data_start..], delimiter.as_bytes()).expect("a next delimiter");
        // The data ends before the CRLF that precedes the next delimiter.
        let data = rest[data_start..data_start + next - 2].to_vec();
        parts.push((range, data));
        rest = &rest[data_start + next..];
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn random_range(rng: &mut StdRng, len: usize) -> String {
    let len = len as u64;
    let one = |rng: &mut StdRng| -> String {
        match rng.random_range(0..6) {
            0 => {
                let start = rng.random_range(0..len);
                let end = rng.random_range(start..len + 10);
                format!("{start}-{end}")
            }
            1 => format!("{}-", rng.random_range(0..len + 5)),
            2 => format!("-{}", rng.random_range(0..len + 5)),
            3 => format!("{}-{}", len + 1, len + 20),
            4 => {
                let start = rng.random_range(0..len);
                format!("{start}-{start}")
            }
            _ => "x-y".to_owned(),
        }
    };
    let count = if rng.random_bool(0.7) {
        1
    } else {
        rng.random_range(2..5)
    };
    let specs: Vec<String> = (0..count).map(|_| one(rng)).collect();
    if rng.random_bool(0.05) {
        format!("items={}", specs.join(","))
    } else {
        format!("bytes={}", specs.join(","))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_answers_as_the_origin_does_for_random_ranges_conditions_and_policies() {
    let (clock, origin, edge) = clocked_pair().await;
    let start = clock.now_ms();
    let direct = reqwest::Client::builder().http1_only().build().unwrap();
    // A fixed seed, so that a failure reproduces; CADENZA_DIFFERENTIAL_SEED tries others.
    let seed = std::env::var("CADENZA_DIFFERENTIAL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x9111);
    let mut rng = StdRng::seed_from_u64(seed);
    let modified = http_semantics::http_date(
        UNIX_EPOCH + Duration::from_millis(start as u64) - Duration::from_secs(3_600),
    );
    let objects: Vec<(String, Bytes, String)> = (0..8)
        .map(|index| {
            let path = format!("/differential/{index}.m4s");
            let body = bytes_of(rng.random_range(1..20_000), index);
            let mut object =
                TestObject::new(body.clone(), POLICIES[index as usize % POLICIES.len()]);
            object.ranges = true;
            object
                .headers
                .push(("last-modified".into(), modified.clone()));
            let etag = object
                .headers
                .iter()
                .find(|(name, _)| name == "etag")
                .unwrap()
                .1
                .clone();
            origin.put(&path, object);
            (path, body, etag)
        })
        .collect();
    let dates = [
        modified.clone(),
        http_semantics::http_date(
            UNIX_EPOCH + Duration::from_millis(start as u64) - Duration::from_secs(7_200),
        ),
        http_semantics::http_date(UNIX_EPOCH + Duration::from_millis(start as u64)),
    ];
    let mut compared = 0;
    for round in 0..400 {
        clock.advance(Duration::from_millis(rng.random_range(0..1_500)));
        let (path, body, etag) = &objects[rng.random_range(0..objects.len())];
        let mut headers: Vec<(&str, String)> = Vec::new();
        if rng.random_bool(0.6) {
            headers.push(("range", random_range(&mut rng, body.len())));
        }
        let tag = |rng: &mut StdRng| match rng.random_range(0..4) {
            0 => etag.clone(),
            1 => format!("W/{etag}"),
            2 => "\"other\"".to_owned(),
            _ => format!("\"other\", {etag}"),
        };
        if rng.random_bool(0.25) {
            headers.push(("if-none-match", tag(&mut rng)));
        }
        if rng.random_bool(0.1) {
            headers.push(("if-match", tag(&mut rng)));
        }
        if rng.random_bool(0.2) {
            headers.push((
                "if-modified-since",
                dates[rng.random_range(0..dates.len())].clone(),
            ));
        }
        if rng.random_bool(0.2) {
            let value = if rng.random_bool(0.5) {
                tag(&mut rng)
            } else {
                dates[rng.random_range(0..dates.len())].clone()
            };
            headers.push(("if-range", value));
        }
        if rng.random_bool(0.15) {
            let directive = [
                "no-cache",
                "max-age=0",
                "max-stale=5",
                "min-fresh=10",
                "no-store",
            ][rng.random_range(0..5)];
            headers.push(("cache-control", directive.to_owned()));
        }
        let send = |client: &reqwest::Client, url: String| {
            let mut request = client.get(url);
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            request.send()
        };
        let through = send(&edge.h1, edge.http(path)).await.unwrap();
        edge.engine.fills_idle().await;
        let straight = send(&direct, format!("{}{path}", origin.url()))
            .await
            .unwrap();
        let at = format!("seed {seed}, round {round}: {path} {headers:?}");
        assert_eq!(through.status(), straight.status(), "{at}: status");
        let status = through.status().as_u16();
        let header = |response: &reqwest::Response, name: &str| {
            response
                .headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        let (edge_type, origin_type) = (
            header(&through, "content-type"),
            header(&straight, "content-type"),
        );
        let (edge_range, origin_range) = (
            header(&through, "content-range"),
            header(&straight, "content-range"),
        );
        let (edge_body, origin_body) = (
            through.bytes().await.unwrap(),
            straight.bytes().await.unwrap(),
        );
        match status {
            200 => assert_eq!(edge_body, origin_body, "{at}: body"),
            206 if origin_type
                .as_deref()
                .is_some_and(|kind| kind.starts_with("multipart/byteranges")) =>
            {
                assert_eq!(
                    multipart_parts(edge_type.as_deref().unwrap(), &edge_body),
                    multipart_parts(origin_type.as_deref().unwrap(), &origin_body),
                    "{at}: parts"
                );
            }
            206 => {
                assert_eq!(edge_range, origin_range, "{at}: content-range");
                assert_eq!(edge_body, origin_body, "{at}: body");
            }
            416 => assert_eq!(edge_range, origin_range, "{at}: content-range"),
            304 | 412 => {}
            other => panic!("{at}: unexpected status {other}"),
        }
        compared += 1;
    }
    assert_eq!(compared, 400);
}
