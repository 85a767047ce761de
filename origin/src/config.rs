//! The origin's typed configuration: defaults for one machine, layered under a TOML file,
//! `CADENZA_*` variables and flags, then checked by [`Config::validate`].

use std::net::SocketAddr;
use std::path::PathBuf;

use objects::S3Config;
use serde::{Deserialize, Serialize};
use telemetry::{LogFormat, Secret};

/// Everything the origin needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address edges fill from.
    pub listen: SocketAddr,
    /// Address of the admin port (`/metrics`, `/healthz`, `/readyz`).
    pub admin_listen: SocketAddr,
    /// The object store holding the packaged media: `file:///dir` or `s3://bucket[/prefix]`.
    pub object_store_url: String,
    /// S3 settings, for an `s3://` store.
    pub s3: S3Config,
    /// The shared key edges present (`Authorization: Bearer …`) to fill. Required unless
    /// `fill_client_ca` is set: a plain client is refused.
    pub fill_key: Option<Secret>,
    /// PEM certificate chain: with `tls_key`, `listen` serves HTTPS (HTTP/1.1 and HTTP/2).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: with TLS on, a client must present a certificate they issued
    /// (mutual TLS), and such a client may fill without the key.
    pub fill_client_ca: Option<PathBuf>,
    /// Key prefixes that are served (everything else, such as `raw/` uploads, is 404).
    pub served_prefixes: Vec<String>,
    /// `Cache-Control` of immutable, versioned media (segments and init segments).
    pub immutable_cache_control: String,
    /// `Cache-Control` of playlists and manifests.
    pub manifest_cache_control: String,
    /// Most ranges honoured in one request; a longer set is ignored (whole object served).
    pub max_ranges: usize,
    /// Largest playlist or manifest compressed on the fly, in bytes.
    pub max_gzip_bytes: u64,
    /// Log line format.
    pub log_format: LogFormat,
    /// How long in-flight requests may finish after SIGTERM, in seconds.
    pub drain_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8083)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9083)),
            object_store_url: "file://./cadenza-data/objects".to_owned(),
            s3: S3Config::default(),
            fill_key: None,
            tls_cert: None,
            tls_key: None,
            fill_client_ca: None,
            served_prefixes: vec!["media/".to_owned(), "public/".to_owned()],
            immutable_cache_control: "public, max-age=31536000, immutable".to_owned(),
            manifest_cache_control:
                "public, max-age=60, stale-while-revalidate=30, stale-if-error=86400".to_owned(),
            max_ranges: 16,
            max_gzip_bytes: 4 * 1024 * 1024,
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
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(invalid("tls_cert", "tls_cert and tls_key go together"));
        }
        if self.fill_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(invalid(
                "fill_client_ca",
                "mutual TLS needs tls_cert and tls_key",
            ));
        }
        match &self.fill_key {
            None if self.fill_client_ca.is_some() => {}
            None => {
                return Err(invalid(
                    "fill_key",
                    "required (or fill_client_ca): only edges may fill",
                ));
            }
            Some(key) if key.expose().len() < 16 => {
                return Err(invalid("fill_key", "at least 16 characters"));
            }
            Some(_) => {}
        }
        if self.served_prefixes.is_empty()
            || self.served_prefixes.iter().any(|prefix| {
                prefix.starts_with('/') || !prefix.ends_with('/') || prefix.contains("..")
            })
        {
            return Err(invalid(
                "served_prefixes",
                "one or more relative key prefixes ending in '/', such as \"media/\"",
            ));
        }
        if self.max_ranges == 0 || self.max_ranges > 1000 {
            return Err(invalid("max_ranges", "between 1 and 1000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(change: impl FnOnce(&mut Config)) -> Result<(), ConfigError> {
        let mut config = Config {
            fill_key: Some(Secret::new("a-fill-key-of-length")),
            ..Config::default()
        };
        change(&mut config);
        config.validate()
    }

    #[test]
    fn fills_need_a_key_or_a_client_ca_over_tls() {
        assert!(with(|_| {}).is_ok());
        assert!(with(|config| config.fill_key = None).is_err());
        assert!(with(|config| config.fill_key = Some(Secret::new("short"))).is_err());
        assert!(
            with(|config| config.tls_cert = Some("cert.pem".into())).is_err(),
            "a certificate without its key"
        );
        assert!(
            with(|config| config.fill_client_ca = Some("ca.pem".into())).is_err(),
            "mutual TLS without TLS"
        );
        assert!(
            with(|config| {
                config.fill_key = None;
                config.tls_cert = Some("cert.pem".into());
                config.tls_key = Some("key.pem".into());
                config.fill_client_ca = Some("ca.pem".into());
            })
            .is_ok()
        );
    }
}
