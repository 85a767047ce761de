//! Listeners: cleartext HTTP/1.1 (the loop in [`crate::h1`]) and h2c, HTTP/1.1 and HTTP/2 over
//! TLS (ALPN), and HTTP/3 over QUIC. Each turns requests into the engine's protocol-free calls
//! and streams its responses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use telemetry::Shutdown;
use tokio::net::TcpListener;

use sealed_bytes::ZeroCopyStream;

use crate::combine::CombineWrites;
use crate::engine::{Engine, Protocol, RequestContext};
use crate::h1;
use crate::stall::SendTimeout;
use crate::tls::Certificates;

/// Counts a connection in its engine's stats while it lives.
struct ConnectionGuard(Engine);

impl ConnectionGuard {
    fn new(engine: &Engine) -> Self {
        engine
            .stats()
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(engine.clone())
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0
            .stats()
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn builder(engine: &Engine) -> auto::Builder<TokioExecutor> {
    let config = engine.config();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.header_timeout_secs))
        .max_buf_size(config.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.max_concurrent_streams)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        // Rapid reset (CVE-2023-44487) and CONTINUATION floods: bounded resets, bounded
        // header lists, and a keep-alive that drops dead peers.
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

async fn answer(
    engine: Engine,
    request: Request<Incoming>,
    peer: SocketAddr,
    secure: bool,
) -> Result<Response<crate::engine::Body>, Infallible> {
    let protocol = if request.version() == Version::HTTP_2 {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    let (parts, _body) = request.into_parts();
    let context = RequestContext {
        protocol,
        peer,
        secure,
    };
    Ok(engine.handle(parts, context).await)
}

/// Serves TCP connections — TLS when `certificates` is given, cleartext (HTTP/1.1 and h2c)
/// otherwise — until `shutdown`, then drains for at most `grace`.
pub async fn serve_tcp(
    engine: Engine,
    listener: TcpListener,
    certificates: Option<Certificates>,
    shutdown: Shutdown,
    grace: Duration,
) {
    let builder = builder(&engine);
    let config = engine.config();
    let handshake_timeout = Duration::from_secs(config.header_timeout_secs);
    let send_timeout = Duration::from_secs(config.send_timeout_secs);
    let limits = h1::Limits {
        header_timeout: handshake_timeout,
        idle_timeout: Duration::from_secs(config.idle_timeout_secs),
        max_head_bytes: config.max_header_bytes,
        max_header_fields: config.max_header_fields,
        max_uri_bytes: config.max_uri_bytes,
    };
    let graceful = GracefulShutdown::new();
    // Cleartext HTTP/1.1 connections are Cadenza's own loop's, not hyper's: the drain waits
    // for their tasks as well as for hyper's connections.
    let cleartext = tokio_util::task::TaskTracker::new();
    while let Some((stream, peer)) = telemetry::accept(&listener, &shutdown).await {
        let _ = stream.set_nodelay(true);
        let guard = ConnectionGuard::new(&engine);
        let engine = engine.clone();
        let builder = builder.clone();
        let secure = certificates.is_some();
        let service = {
            let engine = engine.clone();
            hyper::service::service_fn(move |request| answer(engine.clone(), request, peer, secure))
        };
        match &certificates {
            None => {
                // Cleartext: cached bodies leave by sendfile(2) from sealed files, and whatever
                // precedes a body waits for its pages (MSG_MORE): an HTTP/1.1 response head,
                // HTTP/2 frame headers. Small HTTP/2 responses leave together (see `combine`).
                let stream = ZeroCopyStream::new(stream);
                let stream = SendTimeout::new(stream, send_timeout);
                let watcher = graceful.watcher();
                let shutdown = shutdown.clone();
                cleartext.spawn(async move {
                    let _guard = guard;
                    if let h1::Ended::Http2(stream) =
                        h1::serve(&engine, stream, peer, limits, &shutdown).await
                    {
                        let stream = CombineWrites::new(stream, true);
                        let connection = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .into_owned();
                        let _ = watcher.watch(connection).await;
                    }
                });
            }
            Some(certificates) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(certificates.current());
                let watcher = graceful.watcher();
                let timeout = handshake_timeout;
                let stream = SendTimeout::new(stream, send_timeout);
                tokio::spawn(async move {
                    let _guard = guard;
                    let Ok(Ok(tls)) = tokio::time::timeout(timeout, acceptor.accept(stream)).await
                    else {
                        metrics::counter!("cadenza_edge_tls_handshake_failures_total").increment(1);
                        return;
                    };
                    // HTTP/2 writes small responses together (see `combine`).
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(&b"h2"[..]);
                    let connection = builder
                        .serve_connection(TokioIo::new(CombineWrites::new(tls, h2)), service)
                        .into_owned();
                    let _ = watcher.watch(connection).await;
                });
            }
        }
    }
    drop(listener);
    cleartext.close();
    telemetry::drain_within(
        async move {
            graceful.shutdown().await;
            cleartext.wait().await;
        },
        grace,
    )
    .await;
}

/// Serves HTTP/3 on `endpoint` until `shutdown`.
pub async fn serve_h3(
    engine: Engine,
    endpoint: quinn::Endpoint,
    shutdown: Shutdown,
    grace: Duration,
) {
    loop {
        let incoming = tokio::select! {
            () = shutdown.wait() => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
        };
        let engine = engine.clone();
        let shutdown = shutdown.clone();
        let guard = ConnectionGuard::new(&engine);
        tokio::spawn(async move {
            let _guard = guard;
            let peer = incoming.remote_address();
            let Ok(connection) = incoming.await else {
                metrics::counter!("cadenza_edge_tls_handshake_failures_total").increment(1);
                return;
            };
            if let Err(error) = h3_connection(engine, connection, peer, shutdown).await {
                tracing::debug!(message = "HTTP/3 connection ended.", error = %error);
            }
        });
    }
    endpoint.close(0u32.into(), b"shutting down");
    let _ = tokio::time::timeout(grace, endpoint.wait_idle()).await;
}

async fn h3_connection(
    engine: Engine,
    connection: quinn::Connection,
    peer: SocketAddr,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut connection: h3::server::Connection<crate::quic::Connection, Bytes> =
        h3::server::builder()
            .max_field_section_size(engine.config().max_header_bytes as u64)
            .build(crate::quic::Connection::new(connection))
            .await?;
    loop {
        let resolver = tokio::select! {
            () = shutdown.wait() => {
                connection.shutdown(0).await?;
                return Ok(());
            }
            accepted = connection.accept() => match accepted? {
                Some(resolver) => resolver,
                None => return Ok(()),
            },
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            let Ok((request, mut stream)) = resolver.resolve_request().await else {
                return;
            };
            let (parts, ()) = request.into_parts();
            let context = RequestContext {
                protocol: Protocol::Http3,
                peer,
                secure: true,
            };
            let response = engine.handle(parts, context).await;
            let (head, mut body) = response.into_parts();
            if stream
                .send_response(Response::from_parts(head, ()))
                .await
                .is_err()
            {
                return;
            }
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Ok(data) = frame.into_data()
                            && stream.send_data(data).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(_) => {
                        // The fill broke off: reset the stream so the client cannot take a
                        // short body for a whole one.
                        stream.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                        return;
                    }
                }
            }
            let _ = stream.finish().await;
        });
    }
}
