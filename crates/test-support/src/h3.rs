//! A small HTTP/3 client over one QUIC connection (quinn, h3 and h3-quinn), for the tests that
//! fetch from an edge's HTTP/3 listener.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::{Buf as _, Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

/// An HTTP/3 client over one QUIC connection to one server.
pub struct H3Client {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    server_name: String,
    _endpoint: quinn::Endpoint,
}

impl std::fmt::Debug for H3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Client")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl H3Client {
    /// Connects to `address`, trusting only `certificate` (DER) for `server_name`.
    pub async fn connect(
        address: SocketAddr,
        server_name: &str,
        certificate: &[u8],
    ) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls_pki_types::CertificateDer::from(certificate.to_vec()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let local: SocketAddr = if address.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let mut endpoint = quinn::Endpoint::client(local)?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let connection = endpoint
            .connect(address, server_name)?
            .await
            .context("the QUIC handshake failed")?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection)).await?;
        tokio::spawn(async move {
            let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(Self {
            send,
            server_name: server_name.to_owned(),
            _endpoint: endpoint,
        })
    }

    /// GETs `path` with `headers`; the whole body.
    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let mut request = http::Request::get(format!("https://{}{path}", self.server_name));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut stream = self.send.send_request(request.body(())?).await?;
        // A server may answer and stop reading before this end arrives (RFC 9114 §4.1), which
        // fails the finish; a client must still take the response, so only a missing one fails.
        let finished = stream.finish().await;
        let response = match stream.recv_response().await {
            Ok(response) => response,
            Err(error) => {
                finished?;
                return Err(error.into());
            }
        };
        let mut body = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await? {
            let bytes = chunk.copy_to_bytes(chunk.remaining());
            body.extend_from_slice(&bytes);
        }
        Ok((response.status(), response.headers().clone(), body.freeze()))
    }
}
