//! The edge node's typed configuration: defaults for one machine, layered under a TOML file,
//! `CADENZA_*` variables and flags, then checked by [`Config::validate`].

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use telemetry::{LogFormat, Secret};

/// Everything an edge node needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Node id (in logs, metrics and registrations).
    pub id: String,
    /// Cleartext HTTP/1.1 and h2c (prior knowledge), for use behind a load balancer. Unset: off.
    pub listen: Option<SocketAddr>,
    /// HTTP/1.1 and HTTP/2 over TLS on TCP, and HTTP/3 over QUIC on the same port over UDP.
    /// Unset: off.
    pub tls_listen: Option<SocketAddr>,
    /// Serve HTTP/3 on `tls_listen`'s port (advertised with `Alt-Svc`).
    pub http3: bool,
    /// PEM certificate chain; reloaded when the file changes. Unset: a self-signed certificate
    /// for `localhost` is generated (local runs only).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for a new pair, milliseconds.
    pub tls_reload_interval_ms: u64,
    /// Admin address (`/metrics`, `/healthz`, `/readyz`, `/purge`).
    pub admin_listen: SocketAddr,
    /// Bearer token for `/purge`.
    pub purge_key: Option<Secret>,
    /// Parents, in order of preference: other edges, then the origin.
    pub parents: Vec<String>,
    /// Key presented to parents (`Authorization: Bearer …`), and accepted from child edges
    /// in place of a URL token.
    pub fill_key: Option<Secret>,
    /// PEM CA certificates that `https://` parents' certificates must chain to.
    pub parent_ca: Option<PathBuf>,
    /// PEM certificate presented to `https://` parents (mutual TLS), with `fill_client_key`.
    pub fill_client_cert: Option<PathBuf>,
    /// PEM private key of `fill_client_cert`.
    pub fill_client_key: Option<PathBuf>,
    /// Host names served (the `Host`/`:authority` without port). Empty: any.
    pub hosts: Vec<String>,
    /// URL-token keys, by id.
    pub token_keys: Vec<TokenKey>,
    /// Path prefixes that need a URL token (`/t/{token}/…`). Others are served without one.
    pub token_prefixes: Vec<String>,
    /// Tolerated clock difference with the signer, in seconds.
    pub token_skew_secs: u64,
    /// Memory tier size, bytes.
    pub memory_cache_bytes: u64,
    /// Disk tier directory. Unset: memory only.
    pub disk_cache_dir: Option<PathBuf>,
    /// Disk tier size, bytes.
    pub disk_cache_bytes: u64,
    /// Largest object cached (and coalesced); larger ones pass through.
    pub max_object_bytes: u64,
    /// Most ranges honoured in one request; a longer set is ignored (whole object served).
    pub max_ranges: usize,
    /// Longest request target, bytes (longer: 414).
    pub max_uri_bytes: usize,
    /// Largest request head, bytes (larger: 431, `headers_too_large`); also HTTP/2's header
    /// list and HTTP/3's field section.
    pub max_header_bytes: usize,
    /// Most header fields in one HTTP/1.1 request head (more: 431, `too_many_headers`).
    /// Both limits hold: a head within this count but over `max_header_bytes` is refused
    /// too. HTTP/2 and HTTP/3 are bounded by `max_header_bytes` alone.
    pub max_header_fields: usize,
    /// Time a client has to send its request head, seconds.
    pub header_timeout_secs: u64,
    /// A persistent cleartext HTTP/1.1 connection idle this long between requests is closed,
    /// seconds.
    pub idle_timeout_secs: u64,
    /// A connection whose client takes no response bytes for this long is closed, seconds
    /// (slow or stalled readers; TCP listeners — QUIC has its own idle timeout).
    pub send_timeout_secs: u64,
    /// Connection to a parent, milliseconds.
    pub upstream_connect_timeout_ms: u64,
    /// A parent's response head, milliseconds.
    pub upstream_first_byte_timeout_ms: u64,
    /// Longest pause inside a parent's body, milliseconds.
    pub upstream_idle_timeout_ms: u64,
    /// Concurrent HTTP/2 and HTTP/3 streams per connection.
    pub max_concurrent_streams: u32,
    /// Receive and send buffer asked for the HTTP/3 UDP socket, bytes (the kernel caps it at
    /// `net.core.rmem_max`/`wmem_max`). The default queues a burst of acknowledgements and
    /// requests from many connections instead of dropping datagrams (which QUIC would have to
    /// detect and resend).
    pub quic_socket_buffer_bytes: usize,
    /// Registration with the host locator. Unset: the node does not register.
    pub locator: Option<crate::register::LocatorConfig>,
    /// Log line format.
    pub log_format: LogFormat,
    /// How long in-flight requests may finish after SIGTERM, in seconds.
    pub drain_grace_secs: u64,
}

/// A URL-token verification key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKey {
    /// Key id, as carried in tokens.
    pub id: String,
    /// Secret, at least 32 bytes.
    pub secret: Secret,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            id: "edge-1".to_owned(),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8084))),
            tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8443))),
            http3: true,
            tls_cert: None,
            tls_key: None,
            tls_reload_interval_ms: 5_000,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9084)),
            purge_key: None,
            parents: vec!["http://127.0.0.1:8083".to_owned()],
            fill_key: None,
            parent_ca: None,
            fill_client_cert: None,
            fill_client_key: None,
            hosts: Vec::new(),
            token_keys: Vec::new(),
            token_prefixes: vec!["/media/".to_owned()],
            token_skew_secs: 30,
            memory_cache_bytes: 256 * 1024 * 1024,
            disk_cache_dir: None,
            disk_cache_bytes: 4 * 1024 * 1024 * 1024,
            max_object_bytes: 64 * 1024 * 1024,
            max_ranges: 16,
            max_uri_bytes: 4096,
            max_header_bytes: 16 * 1024,
            max_header_fields: 256,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            send_timeout_secs: 60,
            upstream_connect_timeout_ms: 2_000,
            upstream_first_byte_timeout_ms: 10_000,
            upstream_idle_timeout_ms: 10_000,
            max_concurrent_streams: 256,
            quic_socket_buffer_bytes: 4 * 1024 * 1024,
            locator: None,
            log_format: LogFormat::Human,
            drain_grace_secs: 5,
        }
    }
}

pub use telemetry::{ConfigError, DaemonConfig};

impl DaemonConfig for Config {
    fn log_format(&self) -> LogFormat {
        self.log_format
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, problem: &str| ConfigError::invalid(field, problem);
        if self.listen.is_none() && self.tls_listen.is_none() {
            return Err(invalid("listen", "set listen, tls_listen or both"));
        }
        if self.tls_reload_interval_ms == 0 {
            return Err(invalid(
                "tls_reload_interval_ms",
                "the certificate check interval must be positive",
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid("tls_cert", "give tls_cert and tls_key together"));
        }
        for (field, secs) in [
            ("header_timeout_secs", self.header_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("send_timeout_secs", self.send_timeout_secs),
        ] {
            if secs == 0 {
                return Err(invalid(field, "client timeouts must be positive"));
            }
        }
        if self.parents.is_empty() {
            return Err(invalid("parents", "at least one parent (the origin)"));
        }
        for parent in &self.parents {
            if !(parent.starts_with("http://") || parent.starts_with("https://")) {
                return Err(invalid("parents", "parents are http:// or https:// URLs"));
            }
        }
        if self
            .fill_key
            .as_ref()
            .is_none_or(|key| key.expose().len() < 16)
        {
            return Err(invalid("fill_key", "required, at least 16 characters"));
        }
        if self.fill_client_cert.is_some() != self.fill_client_key.is_some() {
            return Err(invalid(
                "fill_client_cert",
                "fill_client_cert and fill_client_key go together",
            ));
        }
        if self
            .purge_key
            .as_ref()
            .is_some_and(|key| key.expose().len() < 16)
        {
            return Err(invalid("purge_key", "at least 16 characters"));
        }
        if !self.token_prefixes.is_empty() && self.token_keys.is_empty() {
            return Err(invalid(
                "token_keys",
                "token_prefixes need at least one key (or set token_prefixes = [])",
            ));
        }
        for prefix in &self.token_prefixes {
            if !prefix.starts_with('/') {
                return Err(invalid("token_prefixes", "prefixes start with '/'"));
            }
        }
        if self.memory_cache_bytes < 1024 * 1024 {
            return Err(invalid("memory_cache_bytes", "at least 1 MiB"));
        }
        if self.max_object_bytes == 0 || self.max_object_bytes > u64::from(u32::MAX) {
            return Err(invalid("max_object_bytes", "between 1 byte and 4 GiB"));
        }
        if self.max_ranges == 0 || self.max_ranges > 1000 {
            return Err(invalid("max_ranges", "between 1 and 1000"));
        }
        if self.max_header_fields < 16 || self.max_header_fields > 10_000 {
            return Err(invalid("max_header_fields", "between 16 and 10000"));
        }
        if self.max_uri_bytes < 256 || self.max_header_bytes < 1024 {
            return Err(invalid(
                "max_uri_bytes",
                "limits too small to serve anything",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_client_timeout_is_refused_by_its_own_name() {
        // Whatever else the defaults lack, it is not a timeout.
        if let Err(ConfigError::Invalid { field, .. }) = Config::default().validate() {
            assert!(!field.ends_with("timeout_secs"), "{field}");
        }
        for (field, zero) in [
            (
                "header_timeout_secs",
                (|c| c.header_timeout_secs = 0) as fn(&mut Config),
            ),
            ("idle_timeout_secs", |c| c.idle_timeout_secs = 0),
            ("send_timeout_secs", |c| c.send_timeout_secs = 0),
        ] {
            let mut config = Config::default();
            zero(&mut config);
            match config.validate() {
                Err(ConfigError::Invalid { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{field} = 0 gave {other:?}"),
            }
        }
    }
}
