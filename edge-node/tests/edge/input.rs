//! Hostile and malformed input: none of it crashes the node or reaches the origin.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{TestEdge, TestObject, TestOrigin, bytes_of, edge_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ranges() {
    let origin = TestOrigin::start().await;
    let body = bytes_of(10_000, 1);
    origin.put(
        "/assets/r.m4s",
        TestObject::new(body.clone(), "public, max-age=600"),
    );
    let edge = TestEdge::start(vec![origin.url()]).await;
    let thousands = format!("bytes={}", vec!["0-0"; 5_000].join(","));
    let overlapping = "bytes=0-100,50-150,100-200".to_owned();
    for (range, status, len) in [
        ("bytes=abc", 200, 10_000),
        ("bytes=5-1", 200, 10_000),
        ("bytes=-99999999", 206, 10_000),
        ("bytes=10000-", 416, 0),
        (thousands.as_str(), 200, 10_000),
        (overlapping.as_str(), 206, 201),
    ] {
        let response = edge
            .h1
            .get(edge.http("/assets/r.m4s"))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{range:.30}");
        if status != 416 {
            assert_eq!(response.bytes().await.unwrap().len(), len, "{range:.30}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_long_urls_big_headers_and_unknown_hosts() {
    let origin = TestOrigin::start().await;
    let mut config = edge_config(vec![origin.url()]);
    config.hosts = vec!["cdn.example".into(), "127.0.0.1".into(), "localhost".into()];
    let edge = TestEdge::start_with(config).await;
    for path in [
        "/assets/../etc/passwd",
        "/assets/%2e%2e/etc/passwd",
        "/assets/%2E%2E%2Fetc%2Fpasswd",
        "/assets/..%5cetc",
        "/assets/%252e%252e/x",
        "/assets//double",
        "/assets/%00",
        "/assets/%ff",
    ] {
        let response = edge.h1.get(edge.http(path)).send().await.unwrap();
        let status = response.status();
        // The client may normalise plain dot segments itself; whatever arrives is refused or
        // unknown, never served from outside the tree.
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{path}: {status}"
        );
    }
    let long = format!("/assets/{}", "a".repeat(10_000));
    let response = edge.h1.get(edge.http(&long)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
    let response = edge
        .h1
        .get(edge.http("/assets/x"))
        .header("x-big", "b".repeat(40_000))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let response = edge
        .h1
        .get(edge.http("/assets/x"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    let response = edge
        .h1
        .post(edge.http("/assets/x"))
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(origin.hits("/assets/x"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_after_the_header_timeout() {
    let origin = TestOrigin::start().await;
    let mut config = edge_config(vec![origin.url()]);
    config.header_timeout_secs = 1;
    let edge = TestEdge::start_with(config).await;
    let mut socket = tokio::net::TcpStream::connect(edge.addresses.cleartext.unwrap())
        .await
        .unwrap();
    socket
        .write_all(b"GET /assets/x HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the node closed the slow connection");
    // The node still serves others.
    origin.put("/assets/y", TestObject::new("y", "public, max-age=60"));
    let response = edge.h1.get(edge.http("/assets/y")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
