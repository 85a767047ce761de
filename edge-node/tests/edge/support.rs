//! A scriptable origin, an in-process edge, and clients for every protocol.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use edge_node::config::TokenKey;
use edge_node::{Addresses, Config, EdgeHooks, Engine, Listeners};
use http::{HeaderMap, StatusCode};
use telemetry::DaemonConfig as _;
use telemetry::{Secret, Shutdown};

pub use test_support::bytes_of;
pub use test_support::origin::{FILL_KEY, TestObject, TestOrigin};
pub const PURGE_KEY: &str = "purge-key-for-edge-tests";
pub const TOKEN_SECRET: &str = "token-secret-of-at-least-thirty-two-bytes";

/// An edge node running in this process.
#[derive(Debug)]
pub struct TestEdge {
    pub engine: Engine,
    pub addresses: Addresses,
    pub shutdown: Shutdown,
    pub h1: reqwest::Client,
    pub h2c: reqwest::Client,
    pub tls: reqwest::Client,
    pub keyring: url_token::Keyring,
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

pub fn edge_config(parents: Vec<String>) -> Config {
    Config {
        id: "edge-test".into(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        parents,
        fill_key: Some(Secret::new(FILL_KEY)),
        purge_key: Some(Secret::new(PURGE_KEY)),
        token_keys: vec![TokenKey {
            id: "k1".into(),
            secret: Secret::new(TOKEN_SECRET),
        }],
        memory_cache_bytes: 64 * 1024 * 1024,
        upstream_first_byte_timeout_ms: 3_000,
        upstream_idle_timeout_ms: 3_000,
        drain_grace_secs: 1,
        ..Config::default()
    }
}

impl TestEdge {
    pub async fn start(parents: Vec<String>) -> Self {
        Self::start_with(edge_config(parents)).await
    }

    pub async fn start_with(config: Config) -> Self {
        Self::start_on_clock(config, telemetry::Clock::system()).await
    }

    /// An edge whose ages, expiries and token checks read `clock`.
    pub async fn start_on_clock(config: Config, clock: telemetry::Clock) -> Self {
        config.validate().unwrap();
        let listeners = Listeners::bind(&config).await.unwrap();
        let engine = Engine::with_clock(config, Arc::new(EdgeHooks), clock).unwrap();
        let shutdown = Shutdown::new();
        let (addresses, _task) =
            edge_node::start(engine.clone(), listeners, shutdown.clone()).unwrap();
        let keyring = url_token::Keyring::new(
            vec![url_token::Key::new("k1", TOKEN_SECRET.as_bytes()).unwrap()],
            "k1",
        )
        .unwrap();
        let certificate = reqwest::Certificate::from_der(&addresses.certificate[0]).unwrap();
        let tls_address = addresses.tls.unwrap();
        Self {
            h1: reqwest::Client::builder().http1_only().build().unwrap(),
            h2c: reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap(),
            tls: reqwest::Client::builder()
                .add_root_certificate(certificate)
                .resolve("localhost", tls_address)
                .http2_prior_knowledge()
                .build()
                .unwrap(),
            engine,
            addresses,
            shutdown,
            keyring,
        }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addresses.cleartext.unwrap())
    }

    /// `GET path` over cleartext HTTP/1.1, without extra headers.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.h1.get(self.http(path)).send().await.unwrap()
    }

    pub fn https(&self, path: &str) -> String {
        format!(
            "https://localhost:{}{path}",
            self.addresses.tls.unwrap().port()
        )
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.addresses.admin)
    }

    /// The sum of the node's metric `name` over its series whose labels contain `labels`
    /// (`""` for all), read from its admin port; 0 before the first.
    pub async fn metric(&self, name: &str, labels: &str) -> u64 {
        let text = test_support::get_text(&self.h1, self.admin("/metrics")).await;
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']))
                    && line.contains(labels)
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// `/t/{token}{path}` with a token for `prefix`.
    pub fn signed(&self, prefix: &str, path: &str) -> String {
        let now = now();
        let token = self.keyring.sign(prefix, now, now + 600, None).unwrap();
        format!("/t/{token}{path}")
    }

    pub async fn h3(&self) -> H3Client {
        H3Client::connect(self.addresses.tls.unwrap(), &self.addresses.certificate[0]).await
    }
}

/// An origin and an edge in front of it (no URL tokens: an ordinary origin) on one
/// hand-moved clock that starts on a whole second, so that `Date` (whole seconds) adds no
/// age of its own.
pub async fn clocked_pair() -> (telemetry::Clock, TestOrigin, TestEdge) {
    let start = telemetry::Clock::system().now_ms() / 1000 * 1000;
    let clock = telemetry::Clock::manual(start);
    let origin = TestOrigin::start().await;
    origin.set_clock(clock.clone());
    let mut config = edge_config(vec![origin.url()]);
    config.token_prefixes = Vec::new();
    let edge = TestEdge::start_on_clock(config, clock.clone()).await;
    (clock, origin, edge)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HTTP/3 client over one QUIC connection (the library's, unwrapping for tests).
pub struct H3Client(test_support::h3::H3Client);

impl H3Client {
    pub async fn connect(address: SocketAddr, certificate: &[u8]) -> Self {
        Self(
            test_support::h3::H3Client::connect(address, "localhost", certificate)
                .await
                .unwrap(),
        )
    }

    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        self.0.get(path, headers).await.unwrap()
    }
}
