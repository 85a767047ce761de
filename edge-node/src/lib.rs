//! Cadenza's edge node: a caching CDN engine and the daemon around it.
//!
//! The [`Engine`] answers requests whatever their protocol: URL tokens checked before any
//! cache lookup, a memory tier over a disk tier, request coalescing that streams to every
//! waiter while the one fill runs, ranges and conditional requests from the cache, an ordered
//! parent chain with failover, RFC 9111 freshness and RFC 5861 stale serving. [`Hooks`] are
//! its extension points, so the ISP box reuses it unchanged. [`run`] puts it behind the
//! listeners: cleartext HTTP/1.1 + h2c, HTTP/1.1 + HTTP/2 over TLS, HTTP/3 over QUIC.

pub mod admin;
pub mod cache;
pub mod combine;
pub mod config;
pub mod engine;
pub mod fill;
pub mod freshness;
mod h1;
pub mod hooks;
mod quic;
pub mod register;
pub mod request;
pub mod s3fifo;
pub mod server;
pub mod stall;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use telemetry::{Readiness, Shutdown};
use tokio::net::TcpListener;

pub use config::Config;
pub use engine::{Engine, Protocol, RequestContext};
pub use hooks::{CacheOutcome, EdgeHooks, Hooks};

/// The node's bound sockets.
#[derive(Debug)]
pub struct Listeners {
    /// Cleartext HTTP/1.1 and h2c.
    pub cleartext: Option<TcpListener>,
    /// TLS over TCP (its port is also HTTP/3's over UDP).
    pub tls: Option<TcpListener>,
    /// The admin port.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds every address of `config`.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let cleartext = match config.listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("failed to bind {address}"))?,
            ),
            None => None,
        };
        let tls = match config.tls_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("failed to bind {address}"))?,
            ),
            None => None,
        };
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("failed to bind {}", config.admin_listen))?;
        Ok(Self {
            cleartext,
            tls,
            admin,
        })
    }
}

/// Where a running node answers.
#[derive(Debug, Clone)]
pub struct Addresses {
    /// Cleartext HTTP/1.1 and h2c.
    pub cleartext: Option<SocketAddr>,
    /// TLS (and HTTP/3 on the same port over UDP).
    pub tls: Option<SocketAddr>,
    /// Whether HTTP/3 runs.
    pub http3: bool,
    /// Admin port.
    pub admin: SocketAddr,
    /// The certificate chain in use (self-signed in local runs), DER.
    pub certificate: Vec<Vec<u8>>,
}

/// What kind of node the engine runs as: what it announces to the host locator and what its
/// admin port serves besides the edge's routes.
#[derive(Debug)]
pub struct Role {
    /// Kind, prefixes and health for the locator.
    pub announce: register::Announce,
    /// More admin routes (the ISP box's status).
    pub admin: Option<axum::Router>,
}

impl Role {
    /// An edge node's.
    pub fn edge() -> Self {
        Self {
            announce: register::Announce::edge(),
            admin: None,
        }
    }
}

/// Starts the listeners as an edge; returns the addresses and a task that ends after
/// `shutdown` once every listener has drained.
pub fn start(
    engine: Engine,
    listeners: Listeners,
    shutdown: Shutdown,
) -> anyhow::Result<(Addresses, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    start_as(engine, listeners, shutdown, Role::edge())
}

/// Starts the listeners as `role`: see [`start`].
pub fn start_as(
    engine: Engine,
    listeners: Listeners,
    shutdown: Shutdown,
    role: Role,
) -> anyhow::Result<(Addresses, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let config = engine.config().clone();
    let grace = Duration::from_secs(config.drain_grace_secs);
    let mut tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>> = Vec::new();
    let admin_address = listeners.admin.local_addr()?;
    let mut admin_routes = admin::router(engine.clone(), Readiness::new(shutdown.clone()));
    if let Some(more) = role.admin {
        admin_routes = admin_routes.merge(more);
    }
    let admin_server = telemetry::serve(listeners.admin, admin_routes, shutdown.clone(), grace);
    tasks.push(tokio::spawn(async move { Ok(admin_server.await?) }));
    let mut addresses = Addresses {
        cleartext: None,
        tls: None,
        http3: false,
        admin: admin_address,
        certificate: Vec::new(),
    };
    let mut servers = Vec::new();
    if let Some(listener) = listeners.cleartext {
        addresses.cleartext = Some(listener.local_addr()?);
        servers.push(tokio::spawn(server::serve_tcp(
            engine.clone(),
            listener,
            None,
            shutdown.clone(),
            grace,
        )));
    }
    if let Some(listener) = listeners.tls {
        let address = listener.local_addr()?;
        addresses.tls = Some(address);
        let files = config.tls_cert.clone().zip(config.tls_key.clone());
        let (certificates, identity) = tls::Certificates::load(files)?;
        let reload_every = Duration::from_millis(config.tls_reload_interval_ms);
        addresses.certificate = identity.chain().iter().map(|der| der.to_vec()).collect();
        if config.http3 {
            let endpoint = quic_endpoint(
                identity.quic_config(config.max_concurrent_streams)?,
                address,
                config.quic_socket_buffer_bytes,
            )
            .with_context(|| format!("failed to bind HTTP/3 on udp {address}"))?;
            engine.set_h3_port(address.port());
            addresses.http3 = true;
            let reloading = endpoint.clone();
            let streams = config.max_concurrent_streams;
            certificates.watch(
                reload_every,
                shutdown.clone(),
                move |identity| match identity.quic_config(streams) {
                    Ok(quic) => reloading.set_server_config(Some(quic)),
                    Err(error) => {
                        tracing::warn!(message = "QUIC certificate refused.", error = %error)
                    }
                },
            );
            servers.push(tokio::spawn(server::serve_h3(
                engine.clone(),
                endpoint,
                shutdown.clone(),
                grace,
            )));
        } else {
            certificates.watch(reload_every, shutdown.clone(), |_| {});
        }
        servers.push(tokio::spawn(server::serve_tcp(
            engine.clone(),
            listener,
            Some(certificates),
            shutdown.clone(),
            grace,
        )));
    }
    // Hit ratios and tier sizes, once a second.
    let gauges = engine.clone();
    let stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.wait() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let stats = gauges.stats();
            let ratio = |part: u64, whole: u64| {
                if whole == 0 {
                    0.0
                } else {
                    part as f64 / whole as f64
                }
            };
            metrics::gauge!("cadenza_edge_request_hit_ratio").set(ratio(
                stats.hits.load(Ordering::Relaxed),
                stats.lookups.load(Ordering::Relaxed),
            ));
            metrics::gauge!("cadenza_edge_byte_hit_ratio").set(ratio(
                stats.hit_bytes.load(Ordering::Relaxed),
                stats.bytes.load(Ordering::Relaxed),
            ));
            let (memory, disk) = gauges.cache().sizes();
            metrics::gauge!("cadenza_edge_cache_bytes", "tier" => "memory").set(memory as f64);
            metrics::gauge!("cadenza_edge_cache_bytes", "tier" => "disk").set(disk as f64);
            let (sealed, sealed_cap) = sealed_bytes::census();
            metrics::gauge!("cadenza_edge_sealed_bodies").set(sealed as f64);
            metrics::gauge!("cadenza_edge_sealed_bodies_cap").set(sealed_cap as f64);
            metrics::gauge!("cadenza_edge_fills_in_progress")
                .set(gauges.fills_in_progress() as f64);
        }
    }));
    if let Some(locator) = config.locator.clone() {
        tasks.push(register::spawn(
            engine.clone(),
            locator,
            &addresses,
            shutdown.clone(),
            role.announce,
        ));
    }
    tracing::info!(
        message = "Edge node listening.",
        id = %config.id,
        cleartext = ?addresses.cleartext,
        tls = ?addresses.tls,
        http3 = addresses.http3,
        admin = %addresses.admin
    );
    let handle = tokio::spawn(async move {
        for server in servers {
            server.await?;
        }
        for task in tasks {
            task.await??;
        }
        Ok(())
    });
    Ok((addresses, handle))
}

/// Binds the HTTP/3 endpoint on `address` over UDP with socket buffers of `buffer_bytes`
/// (as much of it as the kernel grants; what it granted is logged when it is less).
fn quic_endpoint(
    config: quinn::ServerConfig,
    address: std::net::SocketAddr,
    buffer_bytes: usize,
) -> anyhow::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if address.is_ipv6() && address.ip().is_unspecified() {
        // `[::]` takes IPv4 clients too where the system allows it.
        let _ = socket.set_only_v6(false);
    }
    // Best effort: an unprivileged process gets at most the sysctl maximum.
    let _ = socket.set_recv_buffer_size(buffer_bytes);
    let _ = socket.set_send_buffer_size(buffer_bytes);
    // Linux reports twice the size asked for (its bookkeeping overhead included).
    let granted = socket.recv_buffer_size()?.min(socket.send_buffer_size()?) / 2;
    if granted < buffer_bytes {
        tracing::info!(
            message = "QUIC socket buffers smaller than configured; raise net.core.rmem_max and wmem_max for more.",
            configured = buffer_bytes,
            granted
        );
    }
    socket.bind(&address.into())?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket.into(),
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// Builds the engine with the default hooks, binds, serves until `shutdown`, and drains.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config).await?;
    let engine = Engine::new(config, Arc::new(EdgeHooks))?;
    let (_, handle) = start(engine, listeners, shutdown)?;
    handle.await?
}
