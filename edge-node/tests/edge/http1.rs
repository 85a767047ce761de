//! The cleartext listener's own HTTP/1.1 loop, over raw sockets: persistence, pipelining,
//! HTTP/1.0, requests with bodies, malformed heads, the idle timeout and the drain.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{TestEdge, TestObject, TestOrigin, bytes_of, edge_config};

async fn connect(edge: &TestEdge) -> TcpStream {
    TcpStream::connect(edge.addresses.cleartext.unwrap())
        .await
        .unwrap()
}

/// Everything the node sends until it closes the connection.
async fn until_closed(socket: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut received))
        .await
        .expect("the node closes the connection")
        .unwrap();
    received
}

/// Splits responses whose bodies are framed by `content-length`.
fn responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<(u16, String, Vec<u8>)> {
    let mut out = Vec::new();
    for &head_only in head_only {
        let end = bytes
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .expect("a whole head")
            + 4;
        let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
        let status = head[9..12].parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .map_or(0, |value| value.trim().parse().unwrap());
        let body_len = if head_only { 0 } else { length };
        out.push((status, head, bytes[end..end + body_len].to_vec()));
        bytes = &bytes[end + body_len..];
    }
    assert!(
        bytes.is_empty(),
        "{} bytes after the last response",
        bytes.len()
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let origin = TestOrigin::start().await;
    let first = bytes_of(100_000, 1);
    let second = bytes_of(3_000, 2);
    origin.put(
        "/assets/a",
        TestObject::new(first.clone(), "public, max-age=60"),
    );
    origin.put(
        "/assets/b",
        TestObject::new(second.clone(), "public, max-age=60"),
    );
    let edge = TestEdge::start(vec![origin.url()]).await;
    let mut socket = connect(&edge).await;
    // A miss, a HEAD, a hit and a missing object, in one write; the last one closes.
    socket
        .write_all(
            b"GET /assets/a HTTP/1.1\r\nHost: localhost\r\n\r\n\
              HEAD /assets/b HTTP/1.1\r\nHost: localhost\r\n\r\n\
              GET /assets/a HTTP/1.1\r\nHost: localhost\r\n\r\n\
              GET /assets/b HTTP/1.1\r\nHost: localhost\r\n\r\n\
              GET /assets/none HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let received = until_closed(&mut socket).await;
    let answers = responses(&received, &[false, true, false, false, false]);
    assert_eq!(answers[0].0, 200);
    assert_eq!(answers[0].2, first);
    assert_eq!(answers[1].0, 200);
    assert!(
        answers[1].1.contains("content-length: 3000\r\n"),
        "{}",
        answers[1].1
    );
    assert_eq!(answers[2].2, first);
    assert!(answers[2].1.contains("cache-status: "), "{}", answers[2].1);
    assert_eq!(answers[3].2, second);
    assert_eq!(answers[4].0, 404);
    assert!(answers[4].1.contains("connection: close\r\n"));
    assert_eq!(origin.hits("/assets/a"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_closes_unless_asked_to_keep_alive() {
    let origin = TestOrigin::start().await;
    origin.put("/assets/x", TestObject::new("xyz", "public, max-age=60"));
    let edge = TestEdge::start(vec![origin.url()]).await;
    let mut socket = connect(&edge).await;
    socket
        .write_all(b"GET /assets/x HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\nGET /assets/x HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let received = until_closed(&mut socket).await;
    let answers = responses(&received, &[false, false]);
    assert!(answers[0].1.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(answers[0].1.contains("connection: keep-alive\r\n"));
    assert_eq!(answers[0].2, b"xyz");
    assert!(answers[1].1.contains("connection: close\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_malformed_heads_are_answered_then_the_connection_closes() {
    let origin = TestOrigin::start().await;
    let edge = TestEdge::start(vec![origin.url()]).await;
    // A body the edge will not read: 405, then close (the next bytes cannot be trusted to be
    // a request), without resetting the connection before the client has read the answer.
    let mut socket = connect(&edge).await;
    socket
        .write_all(b"POST /assets/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 70000\r\n\r\n")
        .await
        .unwrap();
    socket.write_all(&vec![b'x'; 70_000]).await.unwrap();
    let received = until_closed(&mut socket).await;
    let answers = responses(&received, &[false]);
    assert_eq!(answers[0].0, 405);
    assert!(answers[0].1.contains("connection: close\r\n"));
    // Garbage: 400 in the platform's JSON error shape.
    let mut socket = connect(&edge).await;
    socket
        .write_all(b"\x16\x03\x01 not http\r\n\r\n")
        .await
        .unwrap();
    let received = until_closed(&mut socket).await;
    let answers = responses(&received, &[false]);
    assert_eq!(answers[0].0, 400);
    let error: serde_json::Value = serde_json::from_slice(&answers[0].2).unwrap();
    assert_eq!(error["error"]["code"], "bad_request");
    // Request smuggling's classic: both framings.
    let mut socket = connect(&edge).await;
    socket
        .write_all(b"GET /assets/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .await
        .unwrap();
    let received = until_closed(&mut socket).await;
    assert_eq!(responses(&received, &[false])[0].0, 400);
    assert_eq!(origin.hits("/assets/x"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_the_drain_does_not_wait_for_them() {
    let origin = TestOrigin::start().await;
    origin.put("/assets/x", TestObject::new("xyz", "public, max-age=60"));
    let mut config = edge_config(vec![origin.url()]);
    config.idle_timeout_secs = 1;
    let edge = TestEdge::start_with(config).await;
    let mut socket = connect(&edge).await;
    socket
        .write_all(b"GET /assets/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let received = until_closed(&mut socket).await;
    assert_eq!(responses(&received, &[false])[0].2, b"xyz");

    // A connection that is idle when the node is told to stop is closed at once.
    let mut idle = connect(&edge).await;
    idle.write_all(b"GET /assets/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0; 4096];
    let read = idle.read(&mut first).await.unwrap();
    assert!(read > 0);
    edge.shutdown.trigger();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_millis(900), idle.read_to_end(&mut rest))
        .await
        .expect("closed on shutdown, before the idle timeout")
        .unwrap();
}
