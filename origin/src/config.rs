//! The origin's typed configuration: defaults for one machine, layered under a TOML file,
//! `CADENZA_*` variables and flags, then checked by [`Config::validate`].

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
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
    /// The shared key edges present (`Authorization: Bearer …`) to fill. Required: a plain
    /// client is refused.
    pub fill_key: Option<Secret>,
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

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, environment or flags could not be read.
    #[error("configuration could not be read: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is not acceptable.
    #[error("configuration is invalid: {field}: {problem}")]
    Invalid {
        /// The key.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
}

impl Config {
    /// Layers defaults, the file, the environment and `overrides`, then validates.
    pub fn load(file: Option<&Path>, overrides: Figment) -> Result<Self, ConfigError> {
        let config: Config = telemetry::load_layered(&Config::default(), file, overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, problem| ConfigError::Invalid { field, problem };
        match &self.fill_key {
            None => return Err(invalid("fill_key", "required: only edges may fill")),
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
