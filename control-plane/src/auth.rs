//! Authentication: argon2id password hashing, opaque bearer session tokens (random, stored
//! only as SHA-256, with idle and absolute expiry), the extractor that turns a request's
//! `Authorization` header into an [`AuthUser`], and login throttling.

use std::net::IpAddr;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::App;
use crate::accounts::store::{SessionRow, UserRow};
use crate::cache::Cache;
use crate::config::AuthConfig;
use crate::error::{Error, Result};

/// How long a session stays in the cache before it is read from the database again.
pub(crate) const SESSION_CACHE_TTL: Duration = Duration::from_secs(60);
/// How long a profile stays in the cache.
pub(crate) const PROFILE_CACHE_TTL: Duration = Duration::from_secs(300);
/// A session's `last_seen_at` is written at most this often.
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Listens, builds playlists, subscribes.
    Listener,
    /// A listener who can also upload tracks.
    Artist,
    /// Manages packages, users and ads.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Listener => "listener",
            Self::Artist => "artist",
            Self::Admin => "admin",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "listener" => Some(Self::Listener),
            "artist" => Some(Self::Artist),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// Hashes and verifies passwords with argon2id. Hashing is CPU-bound, so it runs on the
/// blocking pool and never stalls the async workers.
#[derive(Debug, Clone)]
pub struct Passwords {
    params: Params,
    /// A real hash of a random password, verified against when the account does not exist so
    /// that a login's timing does not reveal whether an email is registered.
    decoy: String,
}

impl Passwords {
    /// Builds the hasher from configuration (parameters validated there).
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|error| anyhow::anyhow!("invalid argon2 parameters: {error}"))?;
        let decoy = hash_with(&params, &random_token())?;
        Ok(Self { params, decoy })
    }

    /// The PHC string of `password`'s argon2id hash with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String> {
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || hash_with(&params, &password))
            .await
            .map_err(anyhow::Error::from)?
            .map_err(Error::Internal)
    }

    /// Whether `password` matches `hash`; with `None`, spends the same time and says no.
    pub async fn verify(&self, hash: Option<String>, password: String) -> Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.decoy.clone());
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .map_err(anyhow::Error::from)?;
        Ok(known && matches)
    }
}

fn hash_with(params: &Params, password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|error| anyhow::anyhow!("salt: {error}"))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| anyhow::anyhow!("argon2 hashing failed: {error}"))
}

/// A new bearer token: 256 random bits, URL-safe base64, with a `cdz_` prefix so that secret
/// scanners can recognise it.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "cdz_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The hex SHA-256 under which a token is stored and cached.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The cache key of a session.
pub(crate) fn session_key(token_hash: &str) -> String {
    format!("session:{token_hash}")
}

/// The cache key of a profile.
pub(crate) fn profile_key(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// The caller of a request, authenticated by its bearer token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user's id.
    pub user_id: String,
    /// The user's role now (not at login).
    pub role: Role,
    /// The session's id.
    pub session_id: String,
    /// The session token's hash (for log-out).
    pub token_hash: String,
}

impl AuthUser {
    /// Fails with 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<()> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(Error::forbidden(
                "admin_required",
                "Only an administrator may do this.",
            ))
        }
    }
}

impl FromRequestParts<App> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self> {
        let token = bearer_token(parts).ok_or_else(|| {
            Error::unauthenticated(
                "missing_token",
                "Send `Authorization: Bearer <token>`; log in at POST /api/v1/sessions.",
            )
        })?;
        app.authenticate(token).await
    }
}

/// The caller if a valid bearer token is present; `None` without an `Authorization` header.
/// An invalid token is still an error, so that a client learns its session ended.
#[derive(Debug, Clone)]
pub struct MaybeAuthUser(pub Option<AuthUser>);

impl FromRequestParts<App> for MaybeAuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self> {
        match bearer_token(parts) {
            Some(token) => Ok(Self(Some(app.authenticate(token).await?))),
            None => Ok(Self(None)),
        }
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

impl App {
    /// Resolves a bearer token to its user, checking both expiries and that the user exists.
    pub async fn authenticate(&self, token: &str) -> Result<AuthUser> {
        let invalid = || {
            Error::unauthenticated(
                "invalid_token",
                "The session is invalid or has expired; log in again.",
            )
        };
        if token.len() > 256 {
            return Err(invalid());
        }
        let hash = token_hash(token);
        let key = session_key(&hash);
        let session = match self.cache.get_json::<SessionRow>(&key).await {
            Some(session) => session,
            None => {
                let session = self
                    .users
                    .session_by_hash(&hash)
                    .await?
                    .ok_or_else(invalid)?;
                self.cache.set_json(&key, &session, SESSION_CACHE_TTL).await;
                session
            }
        };
        let now = self.clock.now_ms();
        let idle_ms = self.config.auth.session_idle_ttl_secs as i64 * 1000;
        if now >= session.expires_at || now >= session.last_seen_at + idle_ms {
            self.users.delete_session(&hash).await?;
            self.cache.delete(&[key]).await;
            return Err(invalid());
        }
        let user = self.profile(&session.user_id).await?.ok_or_else(invalid)?;
        if now - session.last_seen_at >= TOUCH_INTERVAL_MS {
            self.users.touch_session(&session.id, now).await?;
            let touched = SessionRow {
                last_seen_at: now,
                ..session.clone()
            };
            self.cache.set_json(&key, &touched, SESSION_CACHE_TTL).await;
        }
        let role = Role::parse(&user.role)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("unknown role {:?}", user.role)))?;
        Ok(AuthUser {
            user_id: user.id,
            role,
            session_id: session.id,
            token_hash: hash,
        })
    }

    /// A user's row through the cache.
    pub async fn profile(&self, user_id: &str) -> Result<Option<CachedUser>> {
        let key = profile_key(user_id);
        if let Some(user) = self.cache.get_json::<CachedUser>(&key).await {
            return Ok(Some(user));
        }
        let Some(row) = self.users.user_by_id(user_id).await? else {
            return Ok(None);
        };
        let user = CachedUser::from(row);
        self.cache.set_json(&key, &user, PROFILE_CACHE_TTL).await;
        Ok(Some(user))
    }
}

/// The cached form of a user: everything but the password hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedUser {
    /// UUID.
    pub id: String,
    /// Normalised email.
    pub email: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// E.164.
    pub mobile: String,
    /// Postal address.
    pub address: String,
    /// Role name.
    pub role: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

impl From<UserRow> for CachedUser {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            first_name: row.first_name,
            last_name: row.last_name,
            mobile: row.mobile,
            address: row.address,
            role: row.role,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Counts failed logins per account and per client address in fixed windows, in the shared
/// cache so that every replica sees them. When the shared cache fails, an in-process counter
/// takes over, so an outage of Redis never turns throttling off.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    shared: Cache,
    local: Cache,
    window: Duration,
    per_account: u64,
    per_address: u64,
}

impl LoginThrottle {
    /// A throttle over `shared` with the configured limits.
    pub fn new(shared: Cache, config: &AuthConfig) -> Self {
        Self {
            shared,
            local: Cache::memory(100_000, ""),
            window: Duration::from_secs(config.failure_window_secs),
            per_account: u64::from(config.max_failures_per_account),
            per_address: u64::from(config.max_failures_per_address),
        }
    }

    fn keys(email: &str, addr: IpAddr) -> [(String, bool); 2] {
        [
            (
                format!("login-failures:account:{}", token_hash(email)),
                true,
            ),
            (format!("login-failures:addr:{addr}"), false),
        ]
    }

    /// Fails with 429 (and the seconds to wait) if either counter is at its limit.
    pub async fn check(&self, email: &str, addr: IpAddr) -> Result<()> {
        for (key, is_account) in Self::keys(email, addr) {
            let (count, left) = match self.shared.window_count(&key).await {
                Ok(found) => found,
                Err(_) => self.local.window_count(&key).await.unwrap_or((0, 0)),
            };
            let limit = if is_account {
                self.per_account
            } else {
                self.per_address
            };
            if count >= limit {
                metrics::counter!("cadenza_login_throttled_total", "by" => if is_account { "account" } else { "address" })
                    .increment(1);
                return Err(Error::RateLimited {
                    retry_after_secs: left.max(1),
                });
            }
        }
        Ok(())
    }

    /// Counts one failed attempt against the account and the address.
    pub async fn record_failure(&self, email: &str, addr: IpAddr) {
        for (key, _) in Self::keys(email, addr) {
            if self.shared.incr_window(&key, self.window).await.is_err()
                && let Err(error) = self.local.incr_window(&key, self.window).await
            {
                // The in-process counter cannot fail short of a bug; say so if it does.
                tracing::error!(message = "Could not count a failed login.", %error);
            }
        }
    }

    /// Clears the account's failures after a successful login.
    pub async fn record_success(&self, email: &str, addr: IpAddr) {
        let [(account, _), _] = Self::keys(email, addr);
        self.shared.delete(std::slice::from_ref(&account)).await;
        self.local.delete(&[account]).await;
    }
}

/// Whether `caller` may see a track with `status` uploaded by `owner`: anyone a ready one, its
/// uploader and administrators any.
pub fn may_see_track(
    caller: Option<&AuthUser>,
    status: crate::catalog::store::TrackStatus,
    owner: &str,
) -> bool {
    status == crate::catalog::store::TrackStatus::Ready
        || caller.is_some_and(|caller| caller.user_id == owner || caller.role == Role::Admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast_config() -> AuthConfig {
        AuthConfig::default()
    }

    #[tokio::test]
    async fn hashes_verify_and_decoy_says_no() {
        let passwords = Passwords::new(&fast_config()).unwrap();
        let hash = passwords
            .hash("correct horse battery".to_owned())
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            passwords
                .verify(Some(hash.clone()), "correct horse battery".to_owned())
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify(Some(hash), "wrong".to_owned())
                .await
                .unwrap()
        );
        assert!(!passwords.verify(None, "anything".to_owned()).await.unwrap());
        assert!(
            !passwords
                .verify(Some("not a phc string".to_owned()), "x".to_owned())
                .await
                .unwrap()
        );
    }

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert!(a.len() >= 4 + 43, "{a}");
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[tokio::test]
    async fn throttle_blocks_after_the_limit() {
        let config = AuthConfig {
            max_failures_per_account: 3,
            ..fast_config()
        };
        let throttle = LoginThrottle::new(Cache::memory(100, "t:"), &config);
        let addr: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            throttle.check("a@example.com", addr).await.unwrap();
            throttle.record_failure("a@example.com", addr).await;
        }
        let Err(Error::RateLimited { retry_after_secs }) =
            throttle.check("a@example.com", addr).await
        else {
            panic!("expected 429");
        };
        assert!(retry_after_secs > 0);
        // Another account from the same address is not yet blocked.
        throttle.check("b@example.com", addr).await.unwrap();
        throttle.record_success("a@example.com", addr).await;
        throttle.check("a@example.com", addr).await.unwrap();
    }

    #[tokio::test]
    async fn throttle_falls_back_to_local_counters_when_redis_is_down() {
        let config = AuthConfig {
            max_failures_per_account: 2,
            ..fast_config()
        };
        let throttle =
            LoginThrottle::new(Cache::redis("redis://127.0.0.1:1/", "t:").unwrap(), &config);
        let addr: IpAddr = "192.0.2.2".parse().unwrap();
        throttle.record_failure("c@example.com", addr).await;
        throttle.record_failure("c@example.com", addr).await;
        assert!(matches!(
            throttle.check("c@example.com", addr).await,
            Err(Error::RateLimited { .. })
        ));
    }
}
