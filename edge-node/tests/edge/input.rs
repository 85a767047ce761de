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
    // Thousands of ranges, within the 16 KiB head limit.
    let thousands = format!("bytes={}", vec!["0-0"; 3_000].join(","));
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
        let response = edge.get(path).await;
        let status = response.status();
        // The client may normalise plain dot segments itself; whatever arrives is refused or
        // unknown, never served from outside the tree.
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{path}: {status}"
        );
    }
    let long = format!("/assets/{}", "a".repeat(10_000));
    let response = edge.get(&long).await;
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
    let response = edge.get("/assets/y").await;
    assert_eq!(response.status(), StatusCode::OK);
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_does_not_hurt_the_node() {
    let origin = TestOrigin::start().await;
    origin.put(
        "/assets/z",
        TestObject::new(bytes_of(10_000, 5), "public, max-age=600"),
    );
    let edge = TestEdge::start(vec![origin.url()]).await;
    let before = resident_bytes();
    let tcp = tokio::net::TcpStream::connect(edge.addresses.cleartext.unwrap())
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut client = client;
    let mut sent = 0;
    for _ in 0..20_000 {
        let Ok(ready) = client.clone().ready().await else {
            break;
        };
        client = ready;
        let request = http::Request::get(edge.http("/assets/z")).body(()).unwrap();
        let Ok((_response, mut stream)) = client.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
    // Whether the node cut the connection early or absorbed every reset, it serves others
    // and its memory did not run away.
    let response = edge.h2c.get(edge.http("/assets/z")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        grown < 200 * 1024 * 1024,
        "grew {grown} bytes after {sent} resets"
    );
    assert!(
        origin.hits("/assets/z") <= 1 + sent / 100,
        "{} fills",
        origin.hits("/assets/z")
    );
}

/// An HPACK integer with an `n`-bit prefix.
fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u8, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_flood_is_cut_off() {
    let origin = TestOrigin::start().await;
    let edge = TestEdge::start(vec![origin.url()]).await;
    let mut socket = tokio::net::TcpStream::connect(edge.addresses.cleartext.unwrap())
        .await
        .unwrap();
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    socket.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    // HEADERS without END_HEADERS, then CONTINUATION frames of 16 KB of literal headers, never
    // ending. The node must give up on the connection rather than buffer them.
    // :method GET, :scheme http, :path / (HPACK static table).
    let block = vec![0x82, 0x86, 0x84];
    socket.write_all(&frame(0x1, 0x0, 1, &block)).await.unwrap();
    let mut literal = vec![0x00];
    hpack_int(&mut literal, 0x00, 7, 6);
    literal.extend_from_slice(b"x-fill");
    hpack_int(&mut literal, 0x00, 7, 16_000);
    literal.extend(std::iter::repeat_n(b'a', 16_000));
    let continuation = frame(0x9, 0x0, 1, &literal);
    let flood = async {
        for _ in 0..4_000 {
            if socket.write_all(&continuation).await.is_err() {
                return true;
            }
        }
        false
    };
    let cut_during_flood = tokio::time::timeout(Duration::from_secs(20), flood)
        .await
        .unwrap_or(true);
    if !cut_during_flood {
        // Everything fit in socket buffers: the node must have answered with GOAWAY or closed.
        let mut buffer = vec![0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer)).await;
        assert!(
            read.is_ok(),
            "the node neither closed nor answered a 64 MB header block"
        );
    }
    let response = edge
        .h2c
        .get(edge.http("/assets/none"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_after_the_send_timeout() {
    let origin = TestOrigin::start().await;
    // Larger than every socket buffer between the two, so the node's writes must stall.
    let big = bytes_of(48 * 1024 * 1024, 9);
    origin.put(
        "/assets/big",
        TestObject::new(big.clone(), "public, max-age=60"),
    );
    let mut config = edge_config(vec![origin.url()]);
    config.send_timeout_secs = 1;
    let edge = TestEdge::start_with(config).await;
    // Warm the cache, so the stall is on the client side only.
    let warm = edge.get("/assets/big").await;
    assert_eq!(warm.bytes().await.unwrap().len(), big.len());

    let timeouts_before = edge.metric("cadenza_edge_send_timeouts_total", "").await;
    let mut socket = tokio::net::TcpStream::connect(edge.addresses.cleartext.unwrap())
        .await
        .unwrap();
    socket
        .write_all(b"GET /assets/big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // Take nothing until the node has counted a send timeout: it gave up on this client.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while edge.metric("cadenza_edge_send_timeouts_total", "").await <= timeouts_before {
        assert!(
            std::time::Instant::now() < deadline,
            "the node never timed out the stalled client"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut received))
        .await
        .expect("the node closed the stalled connection");
    assert!(
        read.is_err() || received.len() < big.len(),
        "a stalled client got the whole object ({} bytes)",
        received.len()
    );
    // A reader that keeps reading gets everything, and the node still serves others.
    let again = edge.get("/assets/big").await;
    assert_eq!(again.bytes().await.unwrap(), big);
}
