//! HTTP/1.1 on the cleartext listener: a request loop of Cadenza's own in front of the engine.
//!
//! A cache hit is one parsed head, one engine call and one vectored write (the response head
//! and the body, which [`sealed_bytes::ZeroCopyStream`] sends with `sendfile(2)`): none of a
//! general server's per-request machinery. The loop keeps what RFC 9112 asks of a server:
//! persistent connections and pipelining, `Connection: close` and HTTP/1.0, bodies framed by
//! `Content-Length`, chunked or by closing, no body for `HEAD`, 204 and 304, a bounded head
//! (431, 414) read within the header timeout, an idle timeout between requests, lingering
//! close so a refused request's client still reads its answer, and graceful drain. A request
//! that carries a body is answered and the connection closed (the edge takes none). A client
//! that opens with the HTTP/2 preface (h2c with prior knowledge) is handed back, with the bytes
//! read so far, for hyper's HTTP/2.

use std::borrow::Cow;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf as _, Bytes, BytesMut};
use futures::FutureExt as _;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use telemetry::Shutdown;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::time::Instant;

use crate::engine::{Body, Engine, Protocol, RequestContext, error};

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Header-field slots parsed into on the stack; a head with more lines gets slots on the
/// heap, up to [`Limits::max_header_fields`].
const STACK_HEADERS: usize = 100;
/// After a response that ends the connection, how long and how much of what the client still
/// sends is read and dropped before closing, so that the close does not reset the connection
/// (and the client's copy of the response) while request bytes are unread.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// The loop's limits, from the node's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// A request head must arrive whole within this long of its first byte (of the
    /// connection's start, for the first request).
    pub header_timeout: Duration,
    /// A persistent connection idle this long between requests is closed.
    pub idle_timeout: Duration,
    /// Largest request head, bytes.
    pub max_head_bytes: usize,
    /// Most header fields in one request head (more: 431).
    pub max_header_fields: usize,
    /// Longest request line's target, bytes (a longer line that does not end: 414).
    pub max_uri_bytes: usize,
}

/// How a connection ended.
pub(crate) enum Ended<T> {
    /// Served and closed.
    Closed,
    /// The client opened with the HTTP/2 preface: the connection, replaying what was read.
    Http2(Rewind<T>),
}

/// Serves HTTP/1.1 on `io` until the client leaves, a limit or timeout closes it, or
/// `shutdown` (after the response in progress).
pub(crate) async fn serve<T>(
    engine: &Engine,
    io: T,
    peer: SocketAddr,
    limits: Limits,
    shutdown: &Shutdown,
) -> Ended<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = Connection {
        io,
        buffer: BytesMut::with_capacity(8 * 1024),
        head: Vec::with_capacity(1024),
        fields: Vec::with_capacity(16),
        limits,
        first: true,
    };
    let context = RequestContext {
        protocol: Protocol::Http1,
        peer,
        secure: false,
    };
    loop {
        let request = match connection.read_request(shutdown).await {
            Next::Request(request) => request,
            Next::Http2 => {
                let replay = connection.buffer.split().freeze();
                return Ended::Http2(Rewind::new(replay, connection.io));
            }
            Next::Refuse((status, code, message)) => {
                let response = error(status, code, &message);
                let _ = connection
                    .respond(response, false, Version::HTTP_11, false)
                    .await;
                connection.linger().await;
                return Ended::Closed;
            }
            Next::Close => return Ended::Closed,
        };
        connection.first = false;
        let head_only = request.parts.method == Method::HEAD;
        let version = request.parts.version;
        let response = engine.handle(request.parts, context).await;
        let keep_alive = request.keep_alive && !request.has_body && !shutdown.is_triggered();
        match connection
            .respond(response, head_only, version, keep_alive)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                connection.linger().await;
                return Ended::Closed;
            }
            Err(_) => return Ended::Closed,
        }
    }
}

/// One parsed request.
struct Parsed {
    parts: Parts,
    keep_alive: bool,
    /// It announced a body (which the edge does not read: the connection closes after it).
    has_body: bool,
}

enum Next {
    Request(Parsed),
    Http2,
    Refuse(Refusal),
    Close,
}

/// A request refused before the engine: status, stable code, message.
type Refusal = (StatusCode, &'static str, Cow<'static, str>);

/// Framing of a response body.
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

struct Connection<T> {
    io: T,
    /// Bytes read and not yet parsed (pipelined requests wait here).
    buffer: BytesMut,
    /// The response head being written.
    head: Vec<u8>,
    /// Header fields of the head being parsed: name, and where the value lies in the head.
    fields: Vec<(HeaderName, usize, usize)>,
    limits: Limits,
    first: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Connection<T> {
    /// Reads until a whole request head is buffered, then parses it.
    async fn read_request(&mut self, shutdown: &Shutdown) -> Next {
        // The first request's clock starts with the connection; later ones with their first
        // byte (until then the idle timeout applies).
        let mut deadline = self
            .first
            .then(|| Instant::now() + self.limits.header_timeout);
        loop {
            if !self.buffer.is_empty() {
                deadline.get_or_insert_with(|| Instant::now() + self.limits.header_timeout);
                if self.first
                    && H2_PREFACE
                        .starts_with(&self.buffer[..self.buffer.len().min(H2_PREFACE.len())])
                {
                    if self.buffer.len() >= H2_PREFACE.len() {
                        return Next::Http2;
                    }
                } else {
                    match self.parse() {
                        Ok(Some(request)) => return Next::Request(request),
                        Ok(None) => {}
                        Err(refusal) => return Next::Refuse(refusal),
                    }
                }
            }
            let wait = deadline.unwrap_or_else(|| Instant::now() + self.limits.idle_timeout);
            let read = self.io.read_buf(&mut self.buffer);
            let outcome = tokio::select! {
                () = shutdown.wait() => return Next::Close,
                outcome = tokio::time::timeout_at(wait, read) => outcome,
            };
            match outcome {
                Ok(Ok(read)) if read > 0 => {}
                _ => return Next::Close,
            }
        }
    }

    /// Parses the buffered head: a request, `None` for more bytes, or the refusal.
    fn parse(&mut self) -> Result<Option<Parsed>, Refusal> {
        const BAD: Refusal = (
            StatusCode::BAD_REQUEST,
            "bad_request",
            Cow::Borrowed("the request is not valid HTTP/1.1"),
        );
        let limits = self.limits;
        let too_large = || -> Refusal {
            (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                Cow::Owned(format!(
                    "the request head is larger than {} bytes (max_header_bytes)",
                    limits.max_head_bytes
                )),
            )
        };
        // Slots for every line buffered (a head has fewer fields than lines), on the stack
        // for ordinary heads, capped at the configured count.
        let lines = self.buffer.iter().filter(|&&byte| byte == b'\n').count();
        let wanted = lines.min(limits.max_header_fields);
        let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
        let mut heap;
        let slots: &mut [httparse::Header<'_>] = if wanted <= STACK_HEADERS {
            &mut stack[..wanted.max(1).min(limits.max_header_fields)]
        } else {
            heap = vec![httparse::EMPTY_HEADER; wanted];
            &mut heap
        };
        let mut request = httparse::Request::new(slots);
        let length = match request.parse(&self.buffer) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => {
                if self.buffer.len() < limits.max_head_bytes {
                    return Ok(None);
                }
                let line_ends = self.buffer.contains(&b'\n');
                if !line_ends && self.buffer.len() > limits.max_uri_bytes {
                    return Err((
                        StatusCode::URI_TOO_LONG,
                        "uri_too_long",
                        Cow::Borrowed("the request target is too long"),
                    ));
                }
                return Err(too_large());
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err((
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "too_many_headers",
                    Cow::Owned(format!(
                        "the request has more than {} header fields (max_header_fields)",
                        limits.max_header_fields
                    )),
                ));
            }
            Err(_) => return Err(BAD),
        };
        if length > limits.max_head_bytes {
            return Err(too_large());
        }
        let (Some(method), Some(target), Some(minor)) =
            (request.method, request.path, request.version)
        else {
            return Err(BAD);
        };
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| BAD)?;
        let version = if minor == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let base = self.buffer.as_ptr() as usize;
        let span = |bytes: &[u8]| (bytes.as_ptr() as usize - base, bytes.len());
        let target = span(target.as_bytes());
        let mut keep_alive = version == Version::HTTP_11;
        let mut has_body = false;
        let mut content_length: Option<u64> = None;
        let mut chunked = false;
        let mut hosts = 0;
        self.fields.clear();
        for field in request.headers.iter() {
            let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| BAD)?;
            if name == header::CONTENT_LENGTH {
                // 1*DIGIT (RFC 9110 §8.6): `u64::from_str` alone would take a leading `+`,
                // which a proxy in front may read differently.
                let digits = field.value.trim_ascii();
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(BAD);
                }
                let value = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|digits| digits.parse::<u64>().ok())
                    .ok_or(BAD)?;
                if content_length.is_some_and(|known| known != value) {
                    return Err(BAD);
                }
                content_length = Some(value);
                has_body |= value > 0;
            } else if name == header::TRANSFER_ENCODING {
                // RFC 9112 §6.1: chunked is the one coding understood, once, and last; any
                // other (or chunked twice) is refused with 501.
                if chunked || !field.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    return Err((
                        StatusCode::NOT_IMPLEMENTED,
                        "unsupported_transfer_coding",
                        Cow::Borrowed("the only request transfer coding served is chunked"),
                    ));
                }
                chunked = true;
                has_body = true;
            } else if name == header::HOST {
                hosts += 1;
            } else if name == header::CONNECTION {
                for token in field.value.split(|byte| *byte == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive")
                        && version == Version::HTTP_10
                    {
                        keep_alive = true;
                    }
                }
            }
            let (start, len) = span(field.value);
            self.fields.push((name, start, len));
        }
        // RFC 9112 §6.3: both framings at once smuggles requests; §3.2: one Host at most
        // (none is the engine's to refuse, with its own code).
        if (chunked && content_length.is_some()) || hosts > 1 {
            return Err(BAD);
        }
        let head = self.buffer.split_to(length).freeze();
        let uri =
            Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1)).map_err(|_| BAD)?;
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri;
        parts.version = version;
        parts.headers.reserve(self.fields.len());
        for (name, start, len) in self.fields.drain(..) {
            let value =
                HeaderValue::from_maybe_shared(head.slice(start..start + len)).map_err(|_| BAD)?;
            parts.headers.append(name, value);
        }
        Ok(Some(Parsed {
            parts,
            keep_alive,
            has_body,
        }))
    }

    /// Writes `response`; whether the connection stays open for another request.
    async fn respond(
        &mut self,
        response: Response<Body>,
        head_only: bool,
        version: Version,
        mut keep_alive: bool,
    ) -> io::Result<bool> {
        let (parts, mut body) = response.into_parts();
        let status = parts.status;
        let bodiless = head_only
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let head = &mut self.head;
        head.clear();
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(status.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(status.canonical_reason().unwrap_or("Status").as_bytes());
        head.extend_from_slice(b"\r\n");
        let mut declared = None;
        for (name, value) in &parts.headers {
            if name == header::CONNECTION
                || name == header::TRANSFER_ENCODING
                || name.as_str() == "keep-alive"
            {
                continue;
            }
            if name == header::CONTENT_LENGTH {
                if status == StatusCode::NO_CONTENT {
                    continue;
                }
                declared = value
                    .to_str()
                    .ok()
                    .and_then(|value| value.parse::<u64>().ok());
            }
            field(head, name.as_str().as_bytes(), value.as_bytes());
        }
        if !parts.headers.contains_key(header::DATE) {
            DATE.with(|date| field(head, b"date", &date.now()));
        }
        let framing = if bodiless {
            Framing::Length(0)
        } else if let Some(length) = declared {
            Framing::Length(length)
        } else if let Some(length) = body.size_hint().exact() {
            field(
                head,
                b"content-length",
                itoa::Buffer::new().format(length).as_bytes(),
            );
            Framing::Length(length)
        } else if version == Version::HTTP_11 {
            field(head, b"transfer-encoding", b"chunked");
            Framing::Chunked
        } else {
            keep_alive = false;
            Framing::UntilClose
        };
        if !keep_alive {
            field(head, b"connection", b"close");
        } else if version == Version::HTTP_10 {
            field(head, b"connection", b"keep-alive");
        }
        head.extend_from_slice(b"\r\n");
        if bodiless {
            self.io.write_all(&self.head).await?;
            return Ok(keep_alive);
        }
        // The head goes out with the first body bytes when they are at hand (a stored
        // object's always are), on its own before waiting for a fill's.
        let mut head_pending = true;
        let mut sent: u64 = 0;
        loop {
            let next = match body.frame().now_or_never() {
                Some(next) => next,
                None => {
                    if head_pending {
                        head_pending = false;
                        self.io.write_all(&self.head).await?;
                        self.io.flush().await?;
                    }
                    body.frame().await
                }
            };
            let data = match next {
                None => break,
                Some(Err(failure)) => return Err(failure),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => data,
                    _ => continue,
                },
            };
            sent += data.len() as u64;
            let head: &[u8] = if head_pending { &self.head } else { &[] };
            head_pending = false;
            if let Framing::Length(length) = framing
                && sent > length
            {
                return Err(io::Error::other("the body is longer than its length"));
            }
            if let Framing::Chunked = framing {
                let size = format!("{:x}\r\n", data.len());
                write_all(
                    &mut self.io,
                    &mut [
                        IoSlice::new(head),
                        IoSlice::new(size.as_bytes()),
                        IoSlice::new(&data),
                        IoSlice::new(b"\r\n"),
                    ],
                )
                .await?;
            } else {
                write_all(&mut self.io, &mut [IoSlice::new(head), IoSlice::new(&data)]).await?;
            }
        }
        let head: &[u8] = if head_pending { &self.head } else { &[] };
        match framing {
            Framing::Length(length) if sent != length => {
                Err(io::Error::other("the body is shorter than its length"))
            }
            Framing::Chunked => {
                write_all(
                    &mut self.io,
                    &mut [IoSlice::new(head), IoSlice::new(b"0\r\n\r\n")],
                )
                .await?;
                Ok(keep_alive)
            }
            _ => {
                if !head.is_empty() {
                    self.io.write_all(head).await?;
                }
                Ok(keep_alive)
            }
        }
    }

    /// Ends the connection after a response: closes the sending side, then reads and drops
    /// what the client still sends (briefly, boundedly) so it can read the response.
    async fn linger(&mut self) {
        if self.io.shutdown().await.is_err() {
            return;
        }
        let drain = async {
            let mut taken = 0;
            loop {
                self.buffer.clear();
                match self.io.read_buf(&mut self.buffer).await {
                    Ok(read) if read > 0 && taken < LINGER_BYTES => taken += read,
                    _ => return,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
}

/// Appends one header field line.
fn field(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Writes every slice, in order (leading empty ones are dropped first; an empty head is
/// passed as one).
async fn write_all<W: AsyncWrite + Unpin>(
    io: &mut W,
    slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    let mut slices = slices;
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let written = io.write_vectored(slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

thread_local! {
    static DATE: CachedDate = CachedDate::new();
}

/// The `Date` value, formatted once a second per thread.
struct CachedDate {
    value: std::cell::RefCell<(u64, [u8; 29])>,
}

impl CachedDate {
    fn new() -> Self {
        Self {
            value: std::cell::RefCell::new((u64::MAX, [0; 29])),
        }
    }

    fn now(&self) -> [u8; 29] {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let mut cached = self.value.borrow_mut();
        if cached.0 != second {
            let text = http_semantics::http_date(now);
            if text.len() == 29 {
                cached.1.copy_from_slice(text.as_bytes());
                cached.0 = second;
            }
        }
        cached.1
    }
}

/// A stream that first replays bytes already read from it.
pub(crate) struct Rewind<T> {
    replay: Bytes,
    inner: T,
}

impl<T> Rewind<T> {
    fn new(replay: Bytes, inner: T) -> Self {
        Self { replay, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.replay.is_empty() {
            let take = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay[..take]);
            self.replay.advance(take);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            max_head_bytes: 1024,
            max_header_fields: 256,
            max_uri_bytes: 256,
        }
    }

    fn connection(input: &[u8]) -> Connection<tokio::io::DuplexStream> {
        let (near, _far) = tokio::io::duplex(64);
        Connection {
            io: near,
            buffer: BytesMut::from(input),
            head: Vec::new(),
            fields: Vec::new(),
            limits: limits(),
            first: true,
        }
    }

    fn parse(input: &[u8]) -> Result<Option<Parsed>, Refusal> {
        connection(input).parse()
    }

    fn status_of(result: Result<Option<Parsed>, Refusal>) -> u16 {
        match result {
            Err((status, _, _)) => status.as_u16(),
            Ok(_) => 0,
        }
    }

    #[test]
    fn pipelined_requests_parse_one_at_a_time() {
        let mut connection = connection(
            b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-Two: 1\r\nX-Two: 2\r\n\r\nHEAD /b HTTP/1.1\r\nhost: h\r\nConnection: close\r\n\r\nGET /c",
        );
        let first = connection.parse().unwrap().unwrap();
        assert_eq!(first.parts.method, Method::GET);
        assert_eq!(first.parts.uri, "/a?x=1");
        assert_eq!(first.parts.headers.get_all("x-two").iter().count(), 2);
        assert!(first.keep_alive && !first.has_body);
        let second = connection.parse().unwrap().unwrap();
        assert_eq!(second.parts.method, Method::HEAD);
        assert!(!second.keep_alive);
        assert!(
            connection.parse().unwrap().is_none(),
            "a partial head waits"
        );
        assert_eq!(&connection.buffer[..], b"GET /c");
    }

    #[test]
    fn persistence_follows_the_version_and_connection_tokens() {
        let old = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(old.parts.version, Version::HTTP_10);
        assert!(!old.keep_alive);
        let old = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(old.keep_alive);
        let closing = parse(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: TE, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!closing.keep_alive);
        let body = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\ndata")
            .unwrap()
            .unwrap();
        assert!(body.has_body);
        let empty = parse(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length:  0 \r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!empty.has_body && empty.keep_alive);
    }

    #[test]
    fn malformed_smuggling_and_oversized_heads_are_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: +0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/3.0\r\nHost: h\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(status_of(parse(bad)), 400, "{}", String::from_utf8_lossy(bad));
        }
        let long_line = format!("GET /{} HTTP/1.1", "a".repeat(2000));
        assert_eq!(status_of(parse(long_line.as_bytes())), 414);
        let big_head = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n", "b".repeat(2000));
        assert_eq!(status_of(parse(big_head.as_bytes())), 431);
        // 200 small fields (as clients with cookies and tracing headers send) are served;
        // one more than the configured count is refused by name.
        let many = |count: usize| {
            format!(
                "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
                "X-Trace-Part: b\r\n".repeat(count)
            )
        };
        let mut served = connection(many(200).as_bytes());
        served.limits.max_head_bytes = 16 * 1024;
        let parsed = served.parse().unwrap().unwrap();
        assert_eq!(parsed.parts.headers.len(), 201);
        let mut refused = connection(many(256).as_bytes());
        refused.limits.max_head_bytes = 16 * 1024;
        match refused.parse() {
            Err((status, code, message)) => {
                assert_eq!((status.as_u16(), code), (431, "too_many_headers"));
                assert!(message.contains("256") && message.contains("max_header_fields"));
            }
            _ => panic!("257 fields were taken"),
        }
        match parse(big_head.as_bytes()) {
            Err((_, code, message)) => {
                assert_eq!(code, "headers_too_large");
                assert!(
                    message.contains("1024 bytes (max_header_bytes)"),
                    "{message}"
                );
            }
            _ => panic!("a head over the byte limit was taken"),
        }
    }

    #[test]
    fn transfer_codings_other_than_chunked_are_not_implemented() {
        for value in ["xchunked", "gzip, chunked", "chunked, chunked", "identity"] {
            let head = format!("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert_eq!(status_of(parse(head.as_bytes())), 501, "{value}");
        }
        let twice = b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status_of(parse(twice)), 501);
        let fine = b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert!(parse(fine).unwrap().unwrap().has_body);
    }

    async fn written(
        response: Response<Body>,
        head_only: bool,
        version: Version,
    ) -> (io::Result<bool>, String) {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut connection = Connection {
            io: near,
            buffer: BytesMut::new(),
            head: Vec::new(),
            fields: Vec::new(),
            limits: limits(),
            first: false,
        };
        let result = connection.respond(response, head_only, version, true).await;
        drop(connection);
        let mut out = Vec::new();
        far.read_to_end(&mut out).await.unwrap();
        (result, String::from_utf8(out).unwrap())
    }

    fn full(body: &'static str) -> Body {
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    fn streamed(chunks: Vec<io::Result<&'static str>>) -> Body {
        let stream = futures::stream::iter(chunks.into_iter().map(|chunk| {
            chunk.map(|text| http_body::Frame::data(Bytes::from_static(text.as_bytes())))
        }));
        StreamBody::new(stream).boxed_unsync()
    }

    fn response(status: u16, body: Body) -> Response<Body> {
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response
            .headers_mut()
            .insert("x-edge", HeaderValue::from_static("1"));
        response
    }

    #[tokio::test]
    async fn bodies_are_framed_by_length_chunks_or_close() {
        let (kept, text) = written(response(200, full("hello")), false, Version::HTTP_11).await;
        assert!(kept.unwrap());
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nx-edge: 1\r\ndate: "),
            "{text}"
        );
        assert!(
            text.ends_with("\r\ncontent-length: 5\r\n\r\nhello"),
            "{text}"
        );

        let body = streamed(vec![Ok("ab"), Ok(""), Ok("cde")]);
        let (kept, text) = written(response(200, body), false, Version::HTTP_11).await;
        assert!(kept.unwrap());
        assert!(
            text.ends_with("transfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"),
            "{text}"
        );

        let body = streamed(vec![Ok("ab"), Ok("cde")]);
        let (kept, text) = written(response(200, body), false, Version::HTTP_10).await;
        assert!(
            !kept.unwrap(),
            "an HTTP/1.0 body of unknown length ends with the connection"
        );
        assert!(text.ends_with("connection: close\r\n\r\nabcde"), "{text}");
    }

    #[tokio::test]
    async fn head_204_and_304_carry_no_body() {
        let mut head = response(200, full(""));
        head.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        let (kept, text) = written(head, true, Version::HTTP_11).await;
        assert!(kept.unwrap());
        assert!(text.contains("\r\ncontent-length: 5\r\n"), "{text}");
        assert!(text.ends_with("GMT\r\n\r\n"), "no body: {text}");
        for status in [204, 304] {
            let (kept, text) = written(response(status, full("x")), false, Version::HTTP_11).await;
            assert!(kept.unwrap());
            assert!(
                text.ends_with("\r\n\r\n") && !text.contains("content-length"),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_broken_or_overlong_body_fails_the_connection() {
        let body = streamed(vec![Ok("ab"), Err(io::Error::other("fill broke"))]);
        let (result, text) = written(response(200, body), false, Version::HTTP_11).await;
        assert!(result.is_err());
        assert!(text.ends_with("2\r\nab\r\n"), "no last chunk: {text}");

        let mut overlong = response(200, full("toolong"));
        overlong
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        let (result, _) = written(overlong, false, Version::HTTP_11).await;
        assert!(result.is_err());

        let mut short = response(200, streamed(vec![Ok("ab")]));
        short
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        let (result, _) = written(short, false, Version::HTTP_11).await;
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn rewind_replays_then_reads_on() {
        let (near, mut far) = tokio::io::duplex(64);
        far.write_all(b" world").await.unwrap();
        drop(far);
        let mut rewind = Rewind::new(Bytes::from_static(b"hello"), near);
        let mut out = Vec::new();
        rewind.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"hello world");
    }
}
