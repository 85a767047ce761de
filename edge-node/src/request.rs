//! What every layer knows of a request besides its head — the protocol it came in on, its
//! peer, whether it was encrypted — and the response body type of every protocol. The listeners
//! fill these in, the engine and the hooks read them.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

/// Response bodies of every protocol.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The protocol a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2 (over TLS or h2c).
    Http2,
    /// HTTP/3 over QUIC.
    Http3,
}

impl Protocol {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "http2",
            Self::Http3 => "http3",
        }
    }
}

/// What the engine knows of a request besides its head.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext {
    /// Protocol.
    pub protocol: Protocol,
    /// Peer address.
    pub peer: SocketAddr,
    /// Whether it came over TLS or QUIC.
    pub secure: bool,
}
