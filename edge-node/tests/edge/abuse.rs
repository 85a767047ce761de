//! Protocol abuse, driven with raw bytes: the HTTP/2 rapid-reset attack (CVE-2023-44487) and
//! CONTINUATION floods end the connection instead of growing the edge's work or memory; an
//! HTTP/1.1 head with many small fields is served and one with too many is refused by name.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{TestEdge, TestObject, TestOrigin, edge_config};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK block for `GET {path}` on `localhost`, from the static table and literals that
/// leave the dynamic table alone.
fn get_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    block.push(0x04); // :path, literal without indexing, name from the static table
    block.push(path.len() as u8);
    block.extend_from_slice(path.as_bytes());
    block.push(0x01); // :authority
    block.push(9);
    block.extend_from_slice(b"localhost");
    block
}

/// A literal header field (without indexing, new name) of `size` value bytes.
fn filler_field(index: usize, size: usize) -> Vec<u8> {
    let name = format!("x-filler-{index}");
    let mut field = vec![0x00, name.len() as u8];
    field.extend_from_slice(name.as_bytes());
    // A 7-bit-prefix integer for the value's length.
    let mut length = size;
    if length < 127 {
        field.push(length as u8);
    } else {
        field.push(127);
        length -= 127;
        while length >= 128 {
            field.push((length % 128 + 128) as u8);
            length /= 128;
        }
        field.push(length as u8);
    }
    field.extend(std::iter::repeat_n(b'a', size));
    field
}

/// Reads frames until the server closes; the GOAWAY error code if one came.
async fn read_until_closed(mut reader: tokio::net::tcp::OwnedReadHalf) -> Option<u32> {
    let mut goaway = None;
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return goaway,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
        while buffer.len() >= 9 {
            let len = u32::from_be_bytes([0, buffer[0], buffer[1], buffer[2]]) as usize;
            if buffer.len() < 9 + len {
                break;
            }
            if buffer[3] == GOAWAY && len >= 8 {
                let code = &buffer[9 + 4..9 + 8];
                goaway = Some(u32::from_be_bytes([code[0], code[1], code[2], code[3]]));
            }
            buffer.drain(..9 + len);
        }
    }
}

/// A raw h2c connection past its preface and SETTINGS: a task that reads until the server
/// closes (and gives the GOAWAY code), and the writing half.
async fn open_h2c(
    edge: &TestEdge,
) -> (
    tokio::task::JoinHandle<Option<u32>>,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let stream = TcpStream::connect(edge.addresses.cleartext.unwrap())
        .await
        .unwrap();
    let (reader, mut writer) = stream.into_split();
    let closed = tokio::spawn(read_until_closed(reader));
    writer.write_all(PREFACE).await.unwrap();
    writer.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    (closed, writer)
}

async fn edge_with_object() -> (TestOrigin, TestEdge) {
    let origin = TestOrigin::start().await;
    origin.put("/abuse/object", TestObject::new("cached", "max-age=600"));
    let mut config = edge_config(vec![origin.url()]);
    config.token_prefixes = Vec::new();
    let edge = TestEdge::start_with(config).await;
    (origin, edge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_ends_the_connection() {
    let (origin, edge) = edge_with_object().await;
    // Warm the cache, so that each opened stream would be a cheap hit.
    let response = edge
        .h2c
        .get(edge.http("/abuse/object"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (closed, mut writer) = open_h2c(&edge).await;
    // Open and cancel streams as fast as the socket takes them, in batches.
    let block = get_block("/abuse/object");
    let pairs = 100_000u32;
    let mut sent = 0u32;
    let mut batch = Vec::new();
    'send: for id in (1..pairs * 2).step_by(2) {
        batch.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
        batch.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        if batch.len() > 32 * 1024 {
            if writer.write_all(&batch).await.is_err() {
                break 'send;
            }
            batch.clear();
        }
        sent += 1;
    }
    let goaway = tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the server kept a rapid-reset connection open")
        .unwrap();
    // Ended while the attack went on (seen: after some 5 000 pairs of the 100 000).
    assert!(
        sent < pairs,
        "the server took all {pairs} opened-and-cancelled streams (GOAWAY {goaway:?})"
    );
    // ENHANCE_YOUR_CALM (0xb) or PROTOCOL_ERROR (0x1): the attack, named.
    assert!(
        matches!(goaway, Some(0x1 | 0xb)),
        "GOAWAY code {goaway:?} after {sent} pairs"
    );
    // The node is still serving everyone else, and the attack never reached the origin.
    let response = edge
        .h2c
        .get(edge.http("/abuse/object"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(origin.hits("/abuse/object"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_flood_ends_the_connection_within_the_header_limit() {
    let (_origin, edge) = edge_with_object().await;
    let limit = edge.engine.config().max_header_bytes;
    let (closed, mut writer) = open_h2c(&edge).await;
    // A header block that never ends: HEADERS without END_HEADERS, then CONTINUATION frames
    // of filler fields, up to 64 MiB.
    writer
        .write_all(&frame(HEADERS, END_STREAM, 1, &get_block("/abuse/object")))
        .await
        .unwrap();
    let mut sent = 0usize;
    for index in 0..4096 {
        let payload = filler_field(index, 16 * 1024 - 32);
        if writer
            .write_all(&frame(CONTINUATION, 0, 1, &payload))
            .await
            .is_err()
        {
            break;
        }
        sent += payload.len();
    }
    let goaway = tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the server kept a CONTINUATION flood's connection open")
        .unwrap();
    // The server ended it long before the flood was sent: it held no more than a few header
    // limits' worth (the socket buffers hold the rest of what was written before the close).
    // (Seen: about 115 KB written of the 64 MiB.)
    assert!(
        sent < 8 * 1024 * 1024,
        "{sent} bytes of the 64 MiB flood were taken (GOAWAY {goaway:?})"
    );
    assert!(
        goaway.is_some(),
        "no GOAWAY after {sent} bytes (limit {limit})"
    );
    let response = edge
        .h2c
        .get(edge.http("/abuse/object"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Writes one raw HTTP/1.1 request; the response's status.
async fn http1_status(edge: &TestEdge, head: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(edge.addresses.cleartext.unwrap())
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await.unwrap_or(0);
        response.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&response);
        if read == 0 || text.contains("\r\n\r\n") && text.contains('}') || text.contains("cached") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text[9..12].parse().unwrap();
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_many_small_fields_are_served_and_too_many_are_refused_by_name() {
    let (_origin, edge) = edge_with_object().await;
    let fields = |count: usize| {
        (0..count)
            .map(|index| format!("x-trace-{index}: {index}\r\n"))
            .collect::<String>()
    };
    let head = |count: usize| {
        format!(
            "GET /abuse/object HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{}\r\n",
            fields(count)
        )
    };
    let (status, _) = http1_status(&edge, &head(200)).await;
    assert_eq!(status, 200, "200 small fields");
    let (status, text) = http1_status(&edge, &head(300)).await;
    assert_eq!(status, 431);
    assert!(
        text.contains("too_many_headers") && text.contains("max_header_fields"),
        "{text}"
    );
    let (status, text) = http1_status(
        &edge,
        "GET /abuse/object HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n",
    )
    .await;
    assert_eq!(status, 501, "{text}");
    assert!(text.contains("unsupported_transfer_coding"), "{text}");
}
