//! TLS for fills, and mutual TLS as the alternative to the shared key: with `fill_client_ca`
//! set, a connection completes its handshake only with a client certificate issued by that
//! CA, and every request on it may fill.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use telemetry::Shutdown;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::Config;

/// Set on a request whose connection presented a client certificate the fill CA verified.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VerifiedFillClient;

/// The rustls configuration `config` asks for: `None` for cleartext.
pub(crate) fn server_config(config: &Config) -> anyhow::Result<Option<Arc<ServerConfig>>> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let chain = telemetry::pem::certificates(cert)?;
    let key = telemetry::pem::private_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &config.fill_client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in telemetry::pem::certificates(ca)? {
                roots
                    .add(certificate)
                    .with_context(|| format!("{} holds an unusable CA", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("fill_client_ca")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder.with_single_cert(chain, key)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(server)))
}

/// Time a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over TLS on `listener` until `shutdown`, then drains for at most `grace`.
/// Requests on a connection whose client certificate was verified carry
/// [`VerifiedFillClient`].
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Arc<ServerConfig>,
    shutdown: Shutdown,
    grace: Duration,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    while let Some((stream, peer)) = telemetry::accept(&listener, &shutdown).await {
        let acceptor = acceptor.clone();
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                metrics::counter!("cadenza_origin_tls_handshake_failures_total").increment(1);
                return;
            };
            // rustls reports peer certificates only when the client verifier accepted them.
            let verified = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|chain| !chain.is_empty());
            let service = hyper::service::service_fn(
                move |mut request: http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    if verified {
                        request.extensions_mut().insert(VerifiedFillClient);
                    }
                    router.clone().oneshot(request.map(axum::body::Body::new))
                },
            );
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let _ = watcher.watch(connection).await;
        });
    }
    drop(listener);
    telemetry::drain_within(graceful.shutdown(), grace).await;
}
