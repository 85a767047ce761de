//! The QUIC transport under the edge's HTTP/3 server: h3's stream traits over quinn.
//!
//! h3-quinn, which the edge's HTTP/3 *client* uses, hands every write to quinn as a slice, and
//! quinn copies it into a new buffer of the stream's. A 100 KB segment then costs a copy into
//! that buffer and, when packets are built, a second one out of it — from memory that, with
//! hundreds of responses in flight, has long left the CPU's caches. Here a write of a slice of a
//! sealed body (see `sealed_bytes`) hands quinn the body's own bytes instead
//! (`sealed_bytes::shared`), so the only copy left is the one into packets, and it reads the
//! one cached object that every response shares. Other writes (frame headers, small bodies) are
//! copied as before. The edge's bodies are `Bytes`, so these streams carry only `Bytes`.
//!
//! Every quinn call polled here is cancel-safe (a write or read that returns `Pending` has done
//! nothing and registered the waker); accepting and opening streams keep their futures between
//! polls, since those wait on notifications they would miss if dropped.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, Bytes};
use h3::quic::{self, ConnectionErrorIncoming, StreamErrorIncoming, StreamId, WriteBuf};
use quinn::VarInt;
use tokio_util::sync::ReusableBoxFuture;

type Accepted<T> = Result<T, quinn::ConnectionError>;
type BiStreams = (quinn::SendStream, quinn::RecvStream);

/// One QUIC connection as h3 sees it.
pub struct Connection {
    conn: quinn::Connection,
    accepting_bi: Repeated<BiStreams>,
    accepting_uni: Repeated<quinn::RecvStream>,
    opener: OpenStreams,
}

impl Connection {
    /// Wraps an established connection.
    pub fn new(conn: quinn::Connection) -> Self {
        Self {
            accepting_bi: Repeated::default(),
            accepting_uni: Repeated::default(),
            opener: OpenStreams::new(conn.clone()),
            conn,
        }
    }
}

/// A connection's operation (accepting or opening a stream) polled over and over: its future
/// is kept between polls, since it waits on a notification it would miss if dropped, and
/// started again after each result.
struct Repeated<T>(Option<ReusableBoxFuture<'static, Accepted<T>>>);

impl<T> Default for Repeated<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T: Send + 'static> Repeated<T> {
    fn poll<F>(&mut self, cx: &mut Context<'_>, start: impl Fn() -> F) -> Poll<Accepted<T>>
    where
        F: Future<Output = Accepted<T>> + Send + 'static,
    {
        let running = self
            .0
            .get_or_insert_with(|| ReusableBoxFuture::new(start()));
        let result = ready!(running.poll(cx));
        running.set(start());
        Poll::Ready(result)
    }
}

async fn accept_bi(conn: quinn::Connection) -> Accepted<BiStreams> {
    conn.accept_bi().await
}

async fn accept_uni(conn: quinn::Connection) -> Accepted<quinn::RecvStream> {
    conn.accept_uni().await
}

async fn open_bi(conn: quinn::Connection) -> Accepted<BiStreams> {
    conn.open_bi().await
}

async fn open_uni(conn: quinn::Connection) -> Accepted<quinn::SendStream> {
    conn.open_uni().await
}

impl quic::Connection<Bytes> for Connection {
    type RecvStream = RecvStream;
    type OpenStreams = OpenStreams;

    fn poll_accept_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<RecvStream, ConnectionErrorIncoming>> {
        let conn = &self.conn;
        let accepted = ready!(self.accepting_uni.poll(cx, || accept_uni(conn.clone())));
        Poll::Ready(accepted.map(RecvStream::new).map_err(connection_error))
    }

    fn poll_accept_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream, ConnectionErrorIncoming>> {
        let conn = &self.conn;
        let accepted = ready!(self.accepting_bi.poll(cx, || accept_bi(conn.clone())));
        Poll::Ready(accepted.map(BidiStream::new).map_err(connection_error))
    }

    fn opener(&self) -> OpenStreams {
        OpenStreams::new(self.conn.clone())
    }
}

impl quic::OpenStreams<Bytes> for Connection {
    type BidiStream = BidiStream;
    type SendStream = SendStream;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream, StreamErrorIncoming>> {
        quic::OpenStreams::<Bytes>::poll_open_bidi(&mut self.opener, cx)
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SendStream, StreamErrorIncoming>> {
        quic::OpenStreams::<Bytes>::poll_open_send(&mut self.opener, cx)
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        quic::OpenStreams::<Bytes>::close(&mut self.opener, code, reason);
    }
}

/// Opens streams on a connection (h3 opens its control and QPACK streams with it).
pub struct OpenStreams {
    conn: quinn::Connection,
    opening_bi: Repeated<BiStreams>,
    opening_uni: Repeated<quinn::SendStream>,
}

impl OpenStreams {
    fn new(conn: quinn::Connection) -> Self {
        Self {
            conn,
            opening_bi: Repeated::default(),
            opening_uni: Repeated::default(),
        }
    }
}

impl Clone for OpenStreams {
    fn clone(&self) -> Self {
        Self::new(self.conn.clone())
    }
}

impl quic::OpenStreams<Bytes> for OpenStreams {
    type BidiStream = BidiStream;
    type SendStream = SendStream;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<BidiStream, StreamErrorIncoming>> {
        let conn = &self.conn;
        let opened = ready!(self.opening_bi.poll(cx, || open_bi(conn.clone())));
        Poll::Ready(opened.map(BidiStream::new).map_err(stream_connection_error))
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<SendStream, StreamErrorIncoming>> {
        let conn = &self.conn;
        let opened = ready!(self.opening_uni.poll(cx, || open_uni(conn.clone())));
        Poll::Ready(opened.map(SendStream::new).map_err(stream_connection_error))
    }

    fn close(&mut self, code: h3::error::Code, reason: &[u8]) {
        self.conn.close(
            VarInt::from_u64(code.value()).unwrap_or(VarInt::MAX),
            reason,
        );
    }
}

/// A request's stream: both halves.
pub struct BidiStream {
    send: SendStream,
    recv: RecvStream,
}

impl BidiStream {
    fn new((send, recv): BiStreams) -> Self {
        Self {
            send: SendStream::new(send),
            recv: RecvStream::new(recv),
        }
    }
}

impl quic::BidiStream<Bytes> for BidiStream {
    type SendStream = SendStream;
    type RecvStream = RecvStream;

    fn split(self) -> (SendStream, RecvStream) {
        (self.send, self.recv)
    }
}

impl quic::RecvStream for BidiStream {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        self.recv.poll_data(cx)
    }

    fn stop_sending(&mut self, error_code: u64) {
        self.recv.stop_sending(error_code);
    }

    fn recv_id(&self) -> StreamId {
        self.recv.recv_id()
    }
}

impl quic::SendStream<Bytes> for BidiStream {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        quic::SendStream::<Bytes>::poll_ready(&mut self.send, cx)
    }

    fn send_data<T: Into<WriteBuf<Bytes>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        self.send.send_data(data.into())
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        quic::SendStream::<Bytes>::poll_finish(&mut self.send, cx)
    }

    fn reset(&mut self, reset_code: u64) {
        quic::SendStream::<Bytes>::reset(&mut self.send, reset_code);
    }

    fn send_id(&self) -> StreamId {
        quic::SendStream::<Bytes>::send_id(&self.send)
    }
}

/// The receiving half of a stream.
pub struct RecvStream {
    stream: quinn::RecvStream,
}

impl RecvStream {
    fn new(stream: quinn::RecvStream) -> Self {
        Self { stream }
    }
}

impl quic::RecvStream for RecvStream {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        // `read_chunk` is cancel-safe: a fresh call per poll loses nothing.
        let chunk = ready!(pin!(self.stream.read_chunk(usize::MAX, true)).poll(cx));
        Poll::Ready(match chunk {
            Ok(chunk) => Ok(chunk.map(|chunk| chunk.bytes)),
            Err(error) => Err(read_error(error)),
        })
    }

    fn stop_sending(&mut self, error_code: u64) {
        let _ = self
            .stream
            .stop(VarInt::from_u64(error_code).unwrap_or(VarInt::MAX));
    }

    fn recv_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

/// The sending half of a stream. What h3 hands `send_data` is written by `poll_ready`.
pub struct SendStream {
    stream: quinn::SendStream,
    /// The frame being written, as h3 encoded it: its header, then its payload.
    writing: Option<WriteBuf<Bytes>>,
}

impl SendStream {
    fn new(stream: quinn::SendStream) -> Self {
        Self {
            stream,
            writing: None,
        }
    }

    fn send_data(&mut self, data: WriteBuf<Bytes>) -> Result<(), StreamErrorIncoming> {
        if self.writing.is_some() {
            // h3 waits for `poll_ready` between frames; anything else is a bug there.
            return Err(StreamErrorIncoming::ConnectionErrorIncoming {
                connection_error: ConnectionErrorIncoming::InternalError(
                    "a frame was sent before the last one was written".to_owned(),
                ),
            });
        }
        self.writing = Some(data);
        Ok(())
    }
}

impl quic::SendStream<Bytes> for SendStream {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        while let Some(data) = self.writing.as_mut() {
            let chunk = data.chunk();
            if chunk.is_empty() {
                self.writing = None;
                break;
            }
            // Both writes are cancel-safe: `Pending` means nothing was written.
            let written = match sealed_bytes::shared(chunk) {
                Some(body) => {
                    let mut bodies = [body];
                    ready!(pin!(self.stream.write_chunks(&mut bodies)).poll(cx))
                        .map(|written| written.bytes)
                }
                None => ready!(Pin::new(&mut self.stream).poll_write(cx, chunk)),
            }
            .map_err(write_error)?;
            data.advance(written);
        }
        Poll::Ready(Ok(()))
    }

    fn send_data<T: Into<WriteBuf<Bytes>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        SendStream::send_data(self, data.into())
    }

    fn poll_finish(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        Poll::Ready(
            self.stream
                .finish()
                .map_err(|error| StreamErrorIncoming::Unknown(Box::new(error))),
        )
    }

    fn reset(&mut self, reset_code: u64) {
        self.writing = None;
        let _ = self
            .stream
            .reset(VarInt::from_u64(reset_code).unwrap_or(VarInt::MAX));
    }

    fn send_id(&self) -> StreamId {
        stream_id(self.stream.id())
    }
}

fn stream_id(id: quinn::StreamId) -> StreamId {
    // quinn's stream ids are QUIC varints, which h3's accept.
    StreamId::try_from(u64::from(id)).unwrap_or_else(|_| unreachable!("a varint stream id"))
}

fn connection_error(error: quinn::ConnectionError) -> ConnectionErrorIncoming {
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => {
            ConnectionErrorIncoming::ApplicationClose {
                error_code: close.error_code.into_inner(),
            }
        }
        quinn::ConnectionError::TimedOut => ConnectionErrorIncoming::Timeout,
        other => ConnectionErrorIncoming::Undefined(Arc::new(other)),
    }
}

fn stream_connection_error(error: quinn::ConnectionError) -> StreamErrorIncoming {
    StreamErrorIncoming::ConnectionErrorIncoming {
        connection_error: connection_error(error),
    }
}

fn read_error(error: quinn::ReadError) -> StreamErrorIncoming {
    match error {
        quinn::ReadError::Reset(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::ReadError::ConnectionLost(error) => stream_connection_error(error),
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}

fn write_error(error: quinn::WriteError) -> StreamErrorIncoming {
    match error {
        quinn::WriteError::Stopped(code) => StreamErrorIncoming::StreamTerminated {
            error_code: code.into_inner(),
        },
        quinn::WriteError::ConnectionLost(error) => stream_connection_error(error),
        other => StreamErrorIncoming::Unknown(Box::new(other)),
    }
}
