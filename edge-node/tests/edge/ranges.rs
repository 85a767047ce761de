//! Byte-exact ranges over HTTP/1.1, h2c, HTTP/2 over TLS and HTTP/3, from the cache and from
//! fills in progress.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_semantics::{RangeDecision, parse_range};

use crate::support::{TestEdge, TestObject, TestOrigin, bytes_of};

const SIZE: usize = 300_000;

fn random_range(rng: &mut impl rand::Rng) -> String {
    let count = rng.random_range(1..=3);
    let specs: Vec<String> = (0..count)
        .map(|_| match rng.random_range(0..10) {
            0 => format!("-{}", rng.random_range(1..SIZE as u64 + 500)),
            1 => format!("{}-", rng.random_range(0..SIZE as u64)),
            2 => format!("{}-{}", SIZE as u64 + 5, SIZE as u64 + 9),
            _ => {
                let start = rng.random_range(0..SIZE as u64);
                format!("{start}-{}", start + rng.random_range(0..40_000))
            }
        })
        .collect();
    format!("bytes={}", specs.join(","))
}

/// Checks one response against what RFC 9110 says it must be.
fn check(object: &Bytes, range: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) {
    match parse_range(range, object.len() as u64, 16) {
        RangeDecision::Full => {
            assert_eq!(status, StatusCode::OK, "{range}");
            assert_eq!(body, &object[..], "{range}");
        }
        RangeDecision::Unsatisfiable => {
            assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
            assert_eq!(
                headers["content-range"],
                format!("bytes */{}", object.len())
            );
        }
        RangeDecision::Partial(ranges) if ranges.len() == 1 => {
            let r = ranges[0];
            assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(
                headers["content-range"],
                r.content_range(object.len() as u64),
                "{range}"
            );
            assert_eq!(body, &object[r.start as usize..r.end as usize], "{range}");
        }
        RangeDecision::Partial(ranges) => {
            assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
            let content_type = headers["content-type"].to_str().unwrap();
            let boundary = content_type
                .strip_prefix("multipart/byteranges; boundary=")
                .expect("multipart");
            let mut expected = Vec::new();
            for (index, r) in ranges.iter().enumerate() {
                if index > 0 {
                    expected.extend_from_slice(b"\r\n");
                }
                expected.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Type: video/iso.segment\r\nContent-Range: {}\r\n\r\n",
                        r.content_range(object.len() as u64)
                    )
                    .as_bytes(),
                );
                expected.extend_from_slice(&object[r.start as usize..r.end as usize]);
            }
            expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            assert_eq!(body, &expected[..], "{range}");
        }
    }
}

async fn setup(name: &str) -> (TestOrigin, TestEdge, String, Bytes) {
    let origin = TestOrigin::start().await;
    let body = bytes_of(SIZE, name.len() as u64);
    let mut object = TestObject::new(body.clone(), "public, max-age=3600");
    // Slow enough that the first requests arrive while the fill runs.
    object.chunk = 8 * 1024;
    object.chunk_pause_ms = 5;
    let path = format!("/assets/{name}.m4s");
    origin.put(&path, object);
    let edge = TestEdge::start(vec![origin.url()]).await;
    (origin, edge, path, body)
}

async fn over_reqwest(client: reqwest::Client, url: String, body: Bytes, count: usize) {
    let mut rng = rand::rng();
    let ranges: Vec<String> = (0..count).map(|_| random_range(&mut rng)).collect();
    // The first batch races the fill; the rest come from the cache.
    let first: Vec<_> = ranges[..20]
        .iter()
        .map(|range| {
            let request = client.get(&url).header("range", range).send();
            let range = range.clone();
            async move {
                let response = request.await.unwrap();
                let (status, headers) = (response.status(), response.headers().clone());
                (range, status, headers, response.bytes().await.unwrap())
            }
        })
        .collect();
    for (range, status, headers, got) in futures::future::join_all(first).await {
        check(&body, &range, status, &headers, &got);
    }
    for range in &ranges[20..] {
        let response = client
            .get(&url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let got = response.bytes().await.unwrap();
        check(&body, range, status, &headers, &got);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_byte_exact_over_http1() {
    let (origin, edge, path, body) = setup("h1").await;
    over_reqwest(edge.h1.clone(), edge.http(&path), body, 1_000).await;
    assert_eq!(origin.hits(&path), 1);
    // The cached body is in sealed memory, so the cleartext answers above left by sendfile.
    let (object, _) = edge.engine.cache().get(&path).await.unwrap();
    assert!(sealed_bytes::is_sealed(&object.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_byte_exact_over_h2c() {
    let (origin, edge, path, body) = setup("h2c").await;
    over_reqwest(edge.h2c.clone(), edge.http(&path), body, 1_000).await;
    assert_eq!(origin.hits(&path), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_byte_exact_over_http2_with_tls() {
    let (origin, edge, path, body) = setup("h2-tls").await;
    let response = edge.tls.get(edge.https(&path)).send().await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    let alt_svc = response.headers()["alt-svc"].to_str().unwrap().to_owned();
    assert_eq!(
        alt_svc,
        format!("h3=\":{}\"; ma=86400", edge.addresses.tls.unwrap().port())
    );
    over_reqwest(edge.tls.clone(), edge.https(&path), body, 1_000).await;
    assert_eq!(origin.hits(&path), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_byte_exact_over_http3() {
    let (origin, edge, path, body) = setup("h3").await;
    let mut client = edge.h3().await;
    let mut rng = rand::rng();
    for _ in 0..1_000 {
        let range = random_range(&mut rng);
        let (status, headers, got) = client.get(&path, &[("range", &range)]).await;
        check(&body, &range, status, &headers, &got);
    }
    let (status, _, got) = client.get(&path, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, body);
    // Whole bodies on several connections at once, so that writes wait on flow control.
    let whole = (0..8).map(|_| async {
        let mut client = edge.h3().await;
        for _ in 0..3 {
            let (status, _, got) = client.get(&path, &[]).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(got, body);
        }
    });
    futures::future::join_all(whole).await;
    assert_eq!(origin.hits(&path), 1);
    // The cached body is sealed, so the answers above handed quinn its bytes without a copy.
    let (object, _) = edge.engine.cache().get(&path).await.unwrap();
    assert!(sealed_bytes::is_sealed(&object.body));
}
