//! Certificates: read from PEM files and reloaded when they change, or generated self-signed
//! for local runs. One rustls configuration per protocol family: TCP (ALPN `h2`,
//! `http/1.1`) and QUIC (ALPN `h3`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate and its key.
#[derive(Debug)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Reads a PEM chain and key.
    pub fn from_files(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let chain = telemetry::pem::certificates(cert)?;
        let key = telemetry::pem::private_key(key)?;
        Ok(Self { chain, key })
    }

    /// A self-signed certificate for `localhost` and the loopback addresses.
    pub fn self_signed() -> anyhow::Result<Self> {
        let names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let certified = rcgen::generate_simple_self_signed(names)?;
        Ok(Self {
            chain: vec![certified.cert.der().clone()],
            key: PrivateKeyDer::try_from(certified.signing_key.serialize_der())
                .map_err(|error| anyhow::anyhow!("generated key: {error}"))?,
        })
    }

    /// The certificate chain (tests trust it).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    fn server_config(&self, alpn: &[&[u8]]) -> anyhow::Result<ServerConfig> {
        // aws-lc-rs rather than ring: AES-GCM is the largest cost of a segment served over TLS
        // outside the kernel, and aws-lc-rs has AVX-512 code for it where ring stops at AVX2
        // (about a tenth less CPU per HTTP/2 TLS segment, measured; docs/adr/0004-tls-provider.md).
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(config)
    }

    /// The TCP configuration: HTTP/2 preferred, HTTP/1.1 accepted.
    pub fn tcp_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        Ok(Arc::new(self.server_config(&[b"h2", b"http/1.1"])?))
    }

    /// The QUIC configuration for HTTP/3.
    pub fn quic_config(&self, max_streams: u32) -> anyhow::Result<quinn::ServerConfig> {
        let mut tls = self.server_config(&[b"h3"])?;
        tls.max_early_data_size = u32::MAX;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let transport = Arc::get_mut(&mut config.transport)
            .context("a fresh transport config is not shared")?;
        transport.max_concurrent_bidi_streams(max_streams.into());
        transport.max_concurrent_uni_streams(16u32.into());
        transport.max_idle_timeout(Some(Duration::from_secs(30).try_into()?));
        Ok(config)
    }
}

/// The TCP configuration in use, swapped when the files change.
#[derive(Debug, Clone)]
pub struct Certificates {
    current: Arc<ArcSwap<ServerConfig>>,
    files: Option<(PathBuf, PathBuf)>,
}

impl Certificates {
    /// From files, or self-signed when `files` is `None`.
    pub fn load(files: Option<(PathBuf, PathBuf)>) -> anyhow::Result<(Self, Identity)> {
        let identity = match &files {
            Some((cert, key)) => Identity::from_files(cert, key)?,
            None => Identity::self_signed()?,
        };
        let current = Arc::new(ArcSwap::from(identity.tcp_config()?));
        Ok((Self { current, files }, identity))
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Polls the files `every` so often and swaps the configurations when they change (a broken new pair is
    /// logged and the old one kept). `on_change` receives the new identity (for QUIC).
    pub fn watch(
        &self,
        every: Duration,
        shutdown: telemetry::Shutdown,
        on_change: impl Fn(&Identity) + Send + 'static,
    ) {
        let Some((cert, key)) = self.files.clone() else {
            return;
        };
        let current = self.current.clone();
        tokio::spawn(async move {
            let stamp = |path: &Path| {
                std::fs::metadata(path)
                    .and_then(|meta| meta.modified())
                    .ok()
            };
            let mut seen: (Option<SystemTime>, Option<SystemTime>) = (stamp(&cert), stamp(&key));
            loop {
                tokio::select! {
                    () = shutdown.wait() => return,
                    () = tokio::time::sleep(every) => {}
                }
                let now = (stamp(&cert), stamp(&key));
                if now == seen {
                    continue;
                }
                seen = now;
                match Identity::from_files(&cert, &key).and_then(|identity| {
                    let config = identity.tcp_config()?;
                    Ok((identity, config))
                }) {
                    Ok((identity, config)) => {
                        current.store(config);
                        on_change(&identity);
                        metrics::counter!("cadenza_edge_certificate_reloads_total", "outcome" => "loaded")
                            .increment(1);
                        tracing::info!(message = "Certificate reloaded.", cert = %cert.display());
                    }
                    Err(error) => {
                        metrics::counter!("cadenza_edge_certificate_reloads_total", "outcome" => "refused")
                            .increment(1);
                        tracing::warn!(
                            message = "New certificate refused; keeping the old one.",
                            error = format!("{error:#}")
                        );
                    }
                }
            }
        });
    }
}
