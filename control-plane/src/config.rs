//! The control plane's typed configuration: defaults that run on one machine with no servers,
//! layered under a TOML file, `CADENZA_*` environment variables and command-line flags, then
//! checked by [`Config::validate`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use telemetry::LogFormat;
pub use telemetry::Secret;

/// Everything the control plane needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which services this process runs: `"all"` (the default) or some of them, as a list or
    /// a comma-separated string (`"processing"`, `["uploads", "play"]`); see
    /// [`crate::services::Service`].
    pub services: crate::services::Services,
    /// Directory for the embedded backends' files (SQLite databases). Created if missing.
    pub data_dir: PathBuf,
    /// Address of the public JSON API.
    pub listen: SocketAddr,
    /// Address of the admin port (`/metrics`, `/healthz`, `/readyz`); keep it private.
    pub admin_listen: SocketAddr,
    /// User DB (users, sessions, subscriptions, playlist ownership): `sqlite://…` or
    /// `mysql://…`. Unset: `DATA_DIR/user.db`.
    pub user_db_url: Option<Secret>,
    /// Inventory DB (packages, tracks, playlist tracks): `sqlite://…` or `mysql://…`; may live on
    /// another server than the User DB. Unset: `DATA_DIR/inventory.db`.
    pub inventory_db_url: Option<Secret>,
    /// Cache in front of the User DB: `memory://` (in-process, the default) or `redis://…`.
    pub cache_url: Option<Secret>,
    /// Event bus: `embedded://` (the outbox tables themselves, the default) or
    /// `kafka://host:port[,host:port]`.
    pub bus_url: Option<Secret>,
    /// Prefix of Kafka topic and consumer-group names (`{namespace}.payments`), so that
    /// several deployments can share a cluster.
    pub bus_namespace: String,
    /// Prefix of every cache key, so that several deployments (or test runs) can share a Redis.
    pub cache_prefix: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Peers whose `X-Forwarded-For` is believed (load balancers). Empty: the TCP peer is the
    /// client.
    pub trusted_proxies: Vec<IpNet>,
    /// How long in-flight requests may take to finish after SIGTERM, in seconds.
    pub drain_grace_secs: u64,
    /// Sessions, passwords and login throttling.
    pub auth: AuthConfig,
    /// Request and collection size limits.
    pub limits: LimitsConfig,
    /// Payments and their provider.
    pub payments: PaymentsConfig,
    /// Where raw uploads (and packaged media) are kept: `file:///dir` or
    /// `s3://bucket[/prefix]`.
    /// Unset: `DATA_DIR/objects`.
    pub object_store_url: Option<String>,
    /// S3 settings, for an `s3://` object store.
    pub s3: S3Config,
    /// The catalog: `sqlite://…`. Unset: `DATA_DIR/catalog.db`.
    pub catalog_url: Option<String>,
    /// The analytics store (listening tables the home screen reads): `sqlite://…`. Unset:
    /// `DATA_DIR/analytics.db`.
    pub analytics_url: Option<String>,
    /// Upload limits.
    pub uploads: UploadsConfig,
    /// Content processing.
    pub processing: ProcessingConfig,
    /// The play API: host locator, URL tokens, ad breaks.
    pub play: PlayConfig,
    /// The first administrator, created at first start when no admin exists. Unset: an admin
    /// with a random password is created and its credentials are logged once.
    pub bootstrap_admin: Option<BootstrapAdmin>,
    /// The ISP boxes that may ask for a fill manifest (`GET /api/v1/isp/manifest`), each
    /// with its own token.
    pub isp_boxes: Vec<IspBoxAccess>,
}

/// One ISP box's access to its fill manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IspBoxAccess {
    /// The box's id (as it registers with the host locator).
    pub id: String,
    /// The bearer token it presents (at least 32 characters).
    pub token: Secret,
    /// The region whose plays rank its manifest: the box's site, as the host locator names
    /// it (plays are counted per site of the node that served them).
    pub region: String,
}

/// Sessions, passwords and login throttling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A session unused for this long expires, in seconds.
    pub session_idle_ttl_secs: u64,
    /// A session expires this long after login whatever its use, in seconds.
    pub session_absolute_ttl_secs: u64,
    /// Failed logins for one account within the window before further attempts get 429.
    pub max_failures_per_account: u32,
    /// Failed logins from one client address within the window before it gets 429.
    pub max_failures_per_address: u32,
    /// The throttling window, in seconds.
    pub failure_window_secs: u64,
    /// Argon2id memory cost in KiB (OWASP: at least 19 456).
    pub argon2_memory_kib: u32,
    /// Argon2id iterations (OWASP: at least 2 with 19 MiB).
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
}

/// Request and collection size limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest JSON request body, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Most tracks one playlist may hold.
    pub playlist_max_tracks: u32,
    /// Most playlists one user may own.
    pub max_playlists_per_user: u32,
}

/// Payments and their provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    /// The secret provider webhooks are signed with. Unset: a random one per process, which
    /// is enough for the in-process sandbox provider.
    pub webhook_secret: Option<Secret>,
    /// How far a webhook's signed timestamp may be from now, in seconds.
    pub webhook_tolerance_secs: u64,
    /// How long the sandbox waits before it sends the webhook of an asynchronous payment.
    pub sandbox_webhook_delay_ms: u64,
    /// How long idempotency keys are kept, in seconds (at least a day).
    pub idempotency_key_ttl_secs: u64,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            webhook_secret: None,
            webhook_tolerance_secs: 300,
            sandbox_webhook_delay_ms: 2_000,
            idempotency_key_ttl_secs: 48 * 3600,
        }
    }
}

pub use objects::S3Config;

/// Upload limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    /// Largest upload, in bytes.
    pub max_size_bytes: u64,
    /// What one artist may have stored and in flight, in bytes.
    pub quota_bytes_per_user: u64,
    /// Largest one-request upload (`POST /api/v1/tracks`), in bytes.
    pub one_request_max_bytes: u64,
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            max_size_bytes: 500 * 1024 * 1024,
            quota_bytes_per_user: 5 * 1024 * 1024 * 1024,
            one_request_max_bytes: 50 * 1024 * 1024,
        }
    }
}

/// Content processing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessingConfig {
    /// Words that mark a track explicit when its title, tags or lyrics contain one (whole
    /// words, any case). Explicit tracks are flagged, not rejected.
    pub explicit_words: Vec<String>,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        Self {
            explicit_words: [
                "fuck",
                "fucking",
                "motherfucker",
                "shit",
                "bitch",
                "cunt",
                "nigga",
                "pussy",
                "dick",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}

/// The play API: where it asks for nodes, how it signs URL tokens, how it spaces ad breaks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlayConfig {
    /// The host locator's base URL (`http://host:port`). Unset: `POST /api/v1/play` answers 503.
    pub locator_url: Option<String>,
    /// How long to wait for the host locator, in milliseconds.
    pub locator_timeout_ms: u64,
    /// URL-token keys shared with the edges (`[{id, secret}]`); the newest signs.
    pub url_token_keys: Vec<UrlTokenKey>,
    /// The id of the key that signs (default: the last of `url_token_keys`).
    pub url_token_signing_key: Option<String>,
    /// A token lives for the presentation's duration plus this margin (pauses, seeking), in
    /// seconds.
    pub token_margin_secs: u64,
    /// A play this long after the previous one starts a new listening session (and a free-tier
    /// session starts with an ad break), in seconds.
    pub session_idle_secs: u64,
    /// How often players should report progress, in seconds (told to them in the answer).
    pub progress_every_secs: u64,
    /// The control plane's public base URL, for the per-play manifests of ad-supported plays.
    /// Unset: `http://` + the request's `Host`.
    pub public_url: Option<String>,
}

/// One URL-token key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlTokenKey {
    /// Key id (carried in tokens).
    pub id: String,
    /// The shared secret (at least 16 bytes).
    pub secret: Secret,
}

impl Default for PlayConfig {
    fn default() -> Self {
        Self {
            locator_url: None,
            locator_timeout_ms: 2_000,
            url_token_keys: Vec::new(),
            url_token_signing_key: None,
            token_margin_secs: 3_600,
            session_idle_secs: 30 * 60,
            progress_every_secs: 30,
            public_url: None,
        }
    }
}

/// Credentials of the first administrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapAdmin {
    /// The admin's email address.
    pub email: String,
    /// The admin's password (at least 12 characters).
    pub password: Secret,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            services: crate::services::Services::all(),
            data_dir: PathBuf::from("cadenza-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9080)),
            user_db_url: None,
            inventory_db_url: None,
            cache_url: None,
            bus_url: None,
            bus_namespace: "cadenza".to_owned(),
            cache_prefix: "cadenza:".to_owned(),
            log_format: LogFormat::Human,
            trusted_proxies: Vec::new(),
            drain_grace_secs: 10,
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            payments: PaymentsConfig::default(),
            object_store_url: None,
            s3: S3Config::default(),
            catalog_url: None,
            analytics_url: None,
            uploads: UploadsConfig::default(),
            processing: ProcessingConfig::default(),
            play: PlayConfig::default(),
            bootstrap_admin: None,
            isp_boxes: Vec::new(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_idle_ttl_secs: 7 * 24 * 3600,
            session_absolute_ttl_secs: 30 * 24 * 3600,
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            failure_window_secs: 15 * 60,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            playlist_max_tracks: 10_000,
            max_playlists_per_user: 1_000,
        }
    }
}

pub use telemetry::{ConfigError, DaemonConfig};

impl DaemonConfig for Config {
    fn log_format(&self) -> LogFormat {
        self.log_format
    }

    fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(field: &str, problem: impl Into<String>) -> ConfigError {
            ConfigError::invalid(field, problem)
        }
        let mut box_ids = std::collections::BTreeSet::new();
        for access in &self.isp_boxes {
            if access.id.is_empty() || !box_ids.insert(access.id.as_str()) {
                return Err(invalid("isp_boxes", "every box has an id of its own"));
            }
            if access.token.expose().len() < 32 {
                return Err(invalid("isp_boxes", "tokens are at least 32 characters"));
            }
            if access.region.is_empty() {
                return Err(invalid("isp_boxes", "every box names its region"));
            }
        }
        for (field, url) in [
            ("user_db_url", &self.user_db_url),
            ("inventory_db_url", &self.inventory_db_url),
        ] {
            if let Some(url) = url {
                let url = url.expose();
                if !(url.starts_with("sqlite:")
                    || url.starts_with("mysql://")
                    || url.starts_with("mariadb://"))
                {
                    return Err(invalid(field, "expected a sqlite: or mysql:// URL"));
                }
            }
        }
        if let Some(url) = &self.cache_url {
            let url = url.expose();
            if !(url == "memory://" || url.starts_with("redis://") || url.starts_with("rediss://"))
            {
                return Err(invalid("cache_url", "expected memory:// or a redis:// URL"));
            }
        }
        if let Some(url) = &self.bus_url {
            let url = url.expose();
            if !(url == "embedded://"
                || (url.starts_with("kafka://") && url.len() > "kafka://".len()))
            {
                return Err(invalid(
                    "bus_url",
                    "expected embedded:// or kafka://host:port[,host:port]",
                ));
            }
        }
        if self.bus_namespace.is_empty()
            || !self
                .bus_namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                "bus_namespace",
                "letters, digits, '-', '_' and '.' only",
            ));
        }
        if self.payments.idempotency_key_ttl_secs < 24 * 3600 {
            return Err(invalid(
                "payments.idempotency_key_ttl_secs",
                "idempotency keys must be kept at least 24 hours",
            ));
        }
        if self
            .payments
            .webhook_secret
            .as_ref()
            .is_some_and(|secret| secret.expose().len() < 16)
        {
            return Err(invalid(
                "payments.webhook_secret",
                "must be at least 16 characters",
            ));
        }
        if let Some(url) = &self.object_store_url
            && !(url.starts_with("file://") || url.starts_with("s3://"))
        {
            return Err(invalid(
                "object_store_url",
                "expected file:///dir or s3://bucket",
            ));
        }
        let uploads = &self.uploads;
        if uploads.max_size_bytes == 0
            || uploads.one_request_max_bytes > uploads.max_size_bytes
            || uploads.quota_bytes_per_user < uploads.max_size_bytes
        {
            return Err(invalid(
                "uploads.max_size_bytes",
                "need 0 < one_request_max_bytes <= max_size_bytes <= quota_bytes_per_user",
            ));
        }
        let auth = &self.auth;
        if auth.argon2_memory_kib < 19_456
            || auth.argon2_iterations < 2
            || auth.argon2_parallelism < 1
        {
            return Err(invalid(
                "auth.argon2_memory_kib",
                "argon2id parameters must be at least OWASP's (19 456 KiB, 2 iterations, 1 lane)",
            ));
        }
        if auth.session_idle_ttl_secs == 0
            || auth.session_absolute_ttl_secs < auth.session_idle_ttl_secs
        {
            return Err(invalid(
                "auth.session_absolute_ttl_secs",
                "session lifetimes must be positive and the absolute one at least the idle one",
            ));
        }
        if auth.max_failures_per_account == 0
            || auth.max_failures_per_address == 0
            || auth.failure_window_secs == 0
        {
            return Err(invalid(
                "auth.max_failures_per_account",
                "login throttling limits must be positive",
            ));
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(invalid("limits.max_body_bytes", "must be at least 1024"));
        }
        if self.limits.playlist_max_tracks == 0 || self.limits.max_playlists_per_user == 0 {
            return Err(invalid(
                "limits.playlist_max_tracks",
                "playlist limits must be positive",
            ));
        }
        let play = &self.play;
        if let Some(url) = &play.locator_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "play.locator_url",
                "expected an http:// or https:// URL",
            ));
        }
        if play
            .url_token_keys
            .iter()
            .any(|key| key.secret.expose().len() < 16 || key.id.is_empty())
        {
            return Err(invalid(
                "play.url_token_keys",
                "every key needs an id and a secret of at least 16 bytes",
            ));
        }
        if let Some(signing) = &play.url_token_signing_key
            && !play.url_token_keys.iter().any(|key| &key.id == signing)
        {
            return Err(invalid(
                "play.url_token_signing_key",
                "must name one of play.url_token_keys",
            ));
        }
        if play.session_idle_secs == 0
            || play.progress_every_secs == 0
            || play.locator_timeout_ms == 0
        {
            return Err(invalid(
                "play.session_idle_secs",
                "play intervals and timeouts must be positive",
            ));
        }
        if let Some(admin) = &self.bootstrap_admin {
            if crate::validate::normalize_email(&admin.email).is_err() {
                return Err(invalid(
                    "bootstrap_admin.email",
                    "not a valid email address",
                ));
            }
            if admin.password.expose().chars().count() < 12 {
                return Err(invalid(
                    "bootstrap_admin.password",
                    "must be at least 12 characters",
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The analytics store URL in force.
    pub fn analytics_url(&self) -> String {
        self.analytics_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&self.data_dir, "analytics.db"))
    }

    /// The catalog URL in force.
    pub fn catalog_url(&self) -> String {
        self.catalog_url
            .clone()
            .unwrap_or_else(|| sqlite_url(&self.data_dir, "catalog.db"))
    }

    /// The object store URL in force.
    pub fn object_store_url(&self) -> String {
        self.object_store_url.clone().unwrap_or_else(|| {
            format!(
                "file://{}",
                absolute(&self.data_dir.join("objects")).display()
            )
        })
    }

    /// The User DB URL in force.
    pub fn user_db_url(&self) -> String {
        self.user_db_url.as_ref().map_or_else(
            || sqlite_url(&self.data_dir, "user.db"),
            |url| url.expose().to_owned(),
        )
    }

    /// The Inventory DB URL in force.
    pub fn inventory_db_url(&self) -> String {
        self.inventory_db_url.as_ref().map_or_else(
            || sqlite_url(&self.data_dir, "inventory.db"),
            |url| url.expose().to_owned(),
        )
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn sqlite_url(dir: &Path, file: &str) -> String {
    format!("sqlite://{}?mode=rwc", dir.join(file).display())
}

#[cfg(test)]
// figment's `Jail` fixes its closure's error type, which clippy finds large.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::Serialized;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn layers_file_env_and_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "cp.toml",
                r#"
                    cache_prefix = "from-file:"
                    drain_grace_secs = 3
                    [auth]
                    max_failures_per_account = 9
                "#,
            )?;
            jail.set_env("CADENZA_DRAIN_GRACE_SECS", "4");
            jail.set_env("CADENZA_AUTH__MAX_FAILURES_PER_ADDRESS", "33");
            jail.set_env("CADENZA_TEST_MYSQL_URL", "mysql://ignored");
            let flags = Figment::from(Serialized::default("listen", "127.0.0.1:1234"));
            let config = Config::load(Some(Path::new("cp.toml")), flags).unwrap();
            assert_eq!(config.cache_prefix, "from-file:");
            assert_eq!(config.drain_grace_secs, 4);
            assert_eq!(config.auth.max_failures_per_account, 9);
            assert_eq!(config.auth.max_failures_per_address, 33);
            assert_eq!(config.listen.port(), 1234);
            Ok(())
        });
    }

    #[test]
    fn rejects_unknown_keys_and_weak_hashing() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "lisen = \"127.0.0.1:1\"")?;
            let error = Config::load(Some(Path::new("bad.toml")), Figment::new()).unwrap_err();
            assert!(error.to_string().contains("lisen"), "{error}");

            jail.create_file("weak.toml", "[auth]\nargon2_memory_kib = 1024")?;
            let error = Config::load(Some(Path::new("weak.toml")), Figment::new()).unwrap_err();
            assert!(error.to_string().contains("argon2"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn secrets_are_redacted() {
        let config = Config {
            user_db_url: Some(Secret::new("mysql://root:hunter2@db/users")),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
