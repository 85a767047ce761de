//! Cadenza's CDN URL tokens: the control plane signs, edges verify, without talking to each
//! other. No I/O, no clock: every function takes `now`.
//!
//! A token grants read access to every path under one canonical **path prefix** (a track's
//! directory, `/media/{track}/{version}/`) until an **expiry**, signed with HMAC-SHA256 under
//! a **key id** so that keys rotate: edges hold every key still in use, the control plane signs
//! with the newest. An optional **session** is bound into the signature for per-session
//! playlists and logging.
//!
//! The token travels as one path segment, `/t/{token}/media/…`, so that the relative URIs of
//! HLS playlists and DASH manifests inherit it (players drop query strings on relative URIs).
//! It never belongs in a cache key: [`split_path`] separates it from the path the cache uses.
//!
//! Wire form: `base64url(payload) "." base64url(mac)`, where payload is
//! `v1|{key id}|{issued at}|{expires}|{prefix}|{session}` and mac is HMAC-SHA256 over the
//! payload's bytes.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The path segment that introduces a token.
pub const TOKEN_SEGMENT: &str = "t";
/// The longest path (bytes) this crate accepts.
pub const MAX_PATH: usize = 2048;

/// A signing key: an id (carried in tokens) and its secret.
#[derive(Clone)]
pub struct Key {
    id: String,
    secret: Vec<u8>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Why a key or keyring was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Ids are 1 to 32 characters of `[A-Za-z0-9_-]`.
    #[error("key id {0:?} must be 1 to 32 characters of letters, digits, '-' and '_'")]
    BadId(String),
    /// Secrets are at least 32 bytes.
    #[error("key {0:?}: the secret must be at least 32 bytes")]
    ShortSecret(String),
    /// The signing key must be one of the keys.
    #[error("the signing key {0:?} is not among the keys")]
    UnknownSigningKey(String),
}

impl Key {
    /// A key; fails on a bad id or a secret shorter than 32 bytes.
    pub fn new(id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self, KeyError> {
        let id = id.into();
        let secret = secret.into();
        if id.is_empty()
            || id.len() > 32
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(KeyError::BadId(id));
        }
        if secret.len() < 32 {
            return Err(KeyError::ShortSecret(id));
        }
        Ok(Self { id, secret })
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The keys a party holds: all for verifying, one of them for signing.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: BTreeMap<String, Key>,
    signing: String,
}

impl Keyring {
    /// A keyring that signs with `signing` and verifies with any of `keys`.
    pub fn new(keys: Vec<Key>, signing: &str) -> Result<Self, KeyError> {
        let keys: BTreeMap<String, Key> =
            keys.into_iter().map(|key| (key.id.clone(), key)).collect();
        if !keys.contains_key(signing) {
            return Err(KeyError::UnknownSigningKey(signing.to_owned()));
        }
        Ok(Self {
            keys,
            signing: signing.to_owned(),
        })
    }

    /// Signs a token for every path under `prefix` (canonicalised; a directory ends with `/`)
    /// from `now` until `expires` (Unix seconds), optionally bound to `session`.
    pub fn sign(
        &self,
        prefix: &str,
        now: u64,
        expires: u64,
        session: Option<&str>,
    ) -> Result<String, PathError> {
        let prefix = canonical_path(prefix)?;
        if session.is_some_and(|session| session.contains('|')) {
            return Err(PathError::Invalid("a session must not contain '|'"));
        }
        let key = &self.keys[&self.signing];
        let payload = format!(
            "v1|{}|{now}|{expires}|{prefix}|{}",
            key.id,
            session.unwrap_or("")
        );
        let mac = mac(&key.secret, payload.as_bytes());
        Ok(format!("{}.{}", B64.encode(payload), B64.encode(mac)))
    }

    /// Checks `token` for a request of `path` at `now` (Unix seconds), tolerating `skew`
    /// seconds of clock difference between signer and verifier. Returns the claims.
    pub fn verify(
        &self,
        token: &str,
        path: &str,
        now: u64,
        skew: u64,
    ) -> Result<Claims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Malformed);
        }
        let (payload_b64, mac_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = B64.decode(payload_b64).map_err(|_| TokenError::Malformed)?;
        let given = B64.decode(mac_b64).map_err(|_| TokenError::Malformed)?;
        let text = std::str::from_utf8(&payload).map_err(|_| TokenError::Malformed)?;
        let fields: Vec<&str> = text.splitn(6, '|').collect();
        let [version, key_id, issued, expires, prefix, session] = fields[..] else {
            return Err(TokenError::Malformed);
        };
        if version != "v1" {
            return Err(TokenError::Malformed);
        }
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| TokenError::UnknownKey(key_id.to_owned()))?;
        let mut verifier =
            Hmac::<Sha256>::new_from_slice(&key.secret).expect("HMAC takes any key length");
        verifier.update(&payload);
        verifier
            .verify_slice(&given)
            .map_err(|_| TokenError::BadSignature)?;
        // Only now, with the payload authenticated, are its fields trusted.
        let issued: u64 = issued.parse().map_err(|_| TokenError::Malformed)?;
        let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        if now > expires.saturating_add(skew) {
            return Err(TokenError::Expired {
                expired_at: expires,
            });
        }
        if issued > now.saturating_add(skew) {
            return Err(TokenError::NotYetValid { issued_at: issued });
        }
        let path = canonical_path(path).map_err(TokenError::Path)?;
        if !in_scope(prefix, &path) {
            return Err(TokenError::OutOfScope);
        }
        Ok(Claims {
            key_id: key_id.to_owned(),
            prefix: prefix.to_owned(),
            issued_at: issued,
            expires_at: expires,
            session: (!session.is_empty()).then(|| session.to_owned()),
        })
    }
}

fn mac(secret: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(payload);
    mac.finalize().into_bytes().to_vec()
}

/// A prefix ending in `/` covers everything below it; any other prefix covers only itself.
fn in_scope(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        path.starts_with(prefix)
    } else {
        path == prefix
    }
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The key it was signed with.
    pub key_id: String,
    /// The canonical path prefix it covers.
    pub prefix: String,
    /// When it was signed (Unix seconds).
    pub issued_at: u64,
    /// When it expires (Unix seconds).
    pub expires_at: u64,
    /// The session it is bound to, if any.
    pub session: Option<String>,
}

/// Why a token was refused. Every variant means 403 to the client; the variant is for logs
/// and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all (bad encoding, wrong field count, unknown version).
    #[error("malformed token")]
    Malformed,
    /// Signed with a key this verifier does not hold (retired, or forged).
    #[error("unknown key id {0:?}")]
    UnknownKey(String),
    /// The signature does not match (tampered, or forged).
    #[error("bad signature")]
    BadSignature,
    /// Past its expiry (plus the tolerated skew).
    #[error("token expired at {expired_at}")]
    Expired {
        /// Expiry, Unix seconds.
        expired_at: u64,
    },
    /// Signed in the future (beyond the tolerated skew).
    #[error("token not valid before {issued_at}")]
    NotYetValid {
        /// Signing time, Unix seconds.
        issued_at: u64,
    },
    /// The requested path is not under the token's prefix.
    #[error("path outside the token's scope")]
    OutOfScope,
    /// The requested path is not acceptable.
    #[error("bad path: {0}")]
    Path(PathError),
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Too long, not absolute, or with a forbidden character or segment.
    #[error("{0}")]
    Invalid(&'static str),
}

/// The canonical form of a request path: percent-decoded (so `%6D` and `m` are the same
/// path) and checked. Refused: a relative path, `.` and `..` segments in any encoding, empty
/// segments (`//`), an encoded `/` or `\`, a backslash, control characters, invalid UTF-8,
/// and paths longer than [`MAX_PATH`]. A query string is not part of a path.
pub fn canonical_path(path: &str) -> Result<String, PathError> {
    if path.len() > MAX_PATH {
        return Err(PathError::Invalid("path too long"));
    }
    if !path.starts_with('/') {
        return Err(PathError::Invalid("path must be absolute"));
    }
    if path.contains('?') || path.contains('#') {
        return Err(PathError::Invalid("a path has no query or fragment"));
    }
    let mut canonical = String::with_capacity(path.len());
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (index, raw) in segments.iter().enumerate() {
        let lower = raw.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return Err(PathError::Invalid("encoded slashes are not allowed"));
        }
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| PathError::Invalid("path is not UTF-8"))?;
        if decoded.is_empty() && index != last {
            return Err(PathError::Invalid("empty path segment"));
        }
        if decoded == "." || decoded == ".." {
            return Err(PathError::Invalid("dot segments are not allowed"));
        }
        if decoded.chars().any(|c| c.is_control() || c == '\\') {
            return Err(PathError::Invalid("forbidden character in path"));
        }
        canonical.push('/');
        canonical.push_str(&decoded);
    }
    Ok(canonical)
}

/// Splits `/t/{token}/rest…` into the token and the path that follows it (which is what
/// caches key on). `None` when the path does not start with a token segment.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path
        .strip_prefix('/')?
        .strip_prefix(TOKEN_SEGMENT)?
        .strip_prefix('/')?;
    let (token, tail) = rest.split_once('/')?;
    if token.is_empty() {
        return None;
    }
    Some((token, &path[path.len() - tail.len() - 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn ring(signing: &str) -> Keyring {
        Keyring::new(
            vec![
                Key::new("k1", vec![1u8; 32]).unwrap(),
                Key::new("k2", vec![2u8; 32]).unwrap(),
            ],
            signing,
        )
        .unwrap()
    }

    fn token() -> String {
        ring("k1")
            .sign("/media/track-1/v3/", NOW, NOW + 600, Some("sess-9"))
            .unwrap()
    }

    #[test]
    fn signs_and_verifies_a_directory() {
        let claims = ring("k1")
            .verify(
                &token(),
                "/media/track-1/v3/hls/128k/seg-00001.m4s",
                NOW + 10,
                30,
            )
            .unwrap();
        assert_eq!(claims.prefix, "/media/track-1/v3/");
        assert_eq!(claims.key_id, "k1");
        assert_eq!(claims.session.as_deref(), Some("sess-9"));
        assert_eq!(claims.expires_at, NOW + 600);
        // The token is one URL path segment: no '/', '?', '#' or '%'.
        assert!(
            token()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
    }

    #[test]
    fn refuses_out_of_scope_paths() {
        let ring = ring("k1");
        for path in [
            "/media/track-2/v3/hls/master.m3u8",
            "/media/track-1/v2/x",
            "/media/track-1/v3",
            "/media/track-1/v30/x",
            "/other",
        ] {
            assert_eq!(
                ring.verify(&token(), path, NOW, 30),
                Err(TokenError::OutOfScope),
                "{path}"
            );
        }
        for path in [
            "/media/track-1/v3/../../track-2/v3/x",
            "/media/track-1/v3/%2e%2e/x",
            "/media/track-1/v3/a%2Fb",
            "/media/track-1/v3//x",
            "media/track-1/v3/x",
        ] {
            assert!(
                matches!(
                    ring.verify(&token(), path, NOW, 30),
                    Err(TokenError::Path(_))
                ),
                "{path}"
            );
        }
        // A file-scoped token covers exactly that file.
        let file = ring
            .sign("/media/t/v1/init.mp4", NOW, NOW + 60, None)
            .unwrap();
        assert!(ring.verify(&file, "/media/t/v1/init.mp4", NOW, 0).is_ok());
        assert_eq!(
            ring.verify(&file, "/media/t/v1/init.mp4.bak", NOW, 0),
            Err(TokenError::OutOfScope)
        );
    }

    #[test]
    fn expiry_and_skew() {
        let ring = ring("k1");
        assert!(
            ring.verify(&token(), "/media/track-1/v3/a", NOW + 600, 0)
                .is_ok()
        );
        assert!(
            ring.verify(&token(), "/media/track-1/v3/a", NOW + 629, 30)
                .is_ok(),
            "within the skew"
        );
        assert_eq!(
            ring.verify(&token(), "/media/track-1/v3/a", NOW + 631, 30),
            Err(TokenError::Expired {
                expired_at: NOW + 600
            })
        );
        assert!(
            ring.verify(&token(), "/media/track-1/v3/a", NOW - 20, 30)
                .is_ok(),
            "verifier clock 20 s behind"
        );
        assert_eq!(
            ring.verify(&token(), "/media/track-1/v3/a", NOW - 31, 30),
            Err(TokenError::NotYetValid { issued_at: NOW })
        );
    }

    #[test]
    fn tampering_and_forgery_fail() {
        let ring = ring("k1");
        let good = token();
        let (payload, mac) = good.split_once('.').unwrap();
        let text = String::from_utf8(B64.decode(payload).unwrap()).unwrap();
        // Widen the scope, extend the expiry, drop the session: each breaks the signature.
        for forged in [
            text.replace("/media/track-1/v3/", "/media/"),
            text.replace(&format!("|{}|", NOW + 600), &format!("|{}|", NOW + 999_999)),
            text.replace("sess-9", ""),
        ] {
            let token = format!("{}.{mac}", B64.encode(forged));
            assert_eq!(
                ring.verify(&token, "/media/track-1/v3/a", NOW, 30),
                Err(TokenError::BadSignature)
            );
        }
        let flipped = format!("{payload}.{}", B64.encode([0u8; 32]));
        assert_eq!(
            ring.verify(&flipped, "/media/track-1/v3/a", NOW, 30),
            Err(TokenError::BadSignature)
        );
        let stranger = Keyring::new(vec![Key::new("k1", vec![9u8; 32]).unwrap()], "k1").unwrap();
        let forged = stranger
            .sign("/media/track-1/v3/", NOW, NOW + 600, None)
            .unwrap();
        assert_eq!(
            ring.verify(&forged, "/media/track-1/v3/a", NOW, 30),
            Err(TokenError::BadSignature)
        );
        for junk in ["", ".", "abc", "a.b", "!!.!!", &"x".repeat(5000)] {
            assert_eq!(
                ring.verify(junk, "/media/track-1/v3/a", NOW, 30),
                Err(TokenError::Malformed),
                "{junk}"
            );
        }
    }

    #[test]
    fn keys_rotate() {
        let old = ring("k1").sign("/media/a/", NOW, NOW + 60, None).unwrap();
        let new = ring("k2").sign("/media/a/", NOW, NOW + 60, None).unwrap();
        let both = ring("k2");
        assert_eq!(
            both.verify(&old, "/media/a/x", NOW, 0).unwrap().key_id,
            "k1"
        );
        assert_eq!(
            both.verify(&new, "/media/a/x", NOW, 0).unwrap().key_id,
            "k2"
        );
        let retired = Keyring::new(vec![Key::new("k2", vec![2u8; 32]).unwrap()], "k2").unwrap();
        assert_eq!(
            retired.verify(&old, "/media/a/x", NOW, 0),
            Err(TokenError::UnknownKey("k1".into()))
        );
        assert!(Key::new("bad id", vec![0; 32]).is_err());
        assert!(Key::new("k", vec![0; 31]).is_err());
        assert!(Keyring::new(vec![Key::new("k", vec![0; 32]).unwrap()], "other").is_err());
        assert!(!format!("{:?}", Key::new("k", vec![7; 32]).unwrap()).contains('7'));
    }

    #[test]
    fn canonical_paths() {
        assert_eq!(
            canonical_path("/media/a%20b/%6Dx.m4s").unwrap(),
            "/media/a b/mx.m4s"
        );
        assert_eq!(canonical_path("/media/dir/").unwrap(), "/media/dir/");
        for bad in [
            "/a/../b",
            "/a/./b",
            "/a/%2E%2E/b",
            "/a/.%2e/b",
            "/a//b",
            "/a/%2f/b",
            "/a/%5C/b",
            "/a\\b",
            "/a/%00",
            "/a/%ff",
            "relative",
            "/a?b=c",
            &format!("/{}", "a".repeat(MAX_PATH)),
        ] {
            assert!(canonical_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn splits_the_token_from_the_cache_path() {
        let path = format!("/t/{}/media/track-1/v3/hls/master.m3u8", token());
        let (found, rest) = split_path(&path).unwrap();
        assert_eq!(found, token());
        assert_eq!(rest, "/media/track-1/v3/hls/master.m3u8");
        assert!(ring("k1").verify(found, rest, NOW, 0).is_ok());
        assert_eq!(split_path("/media/x"), None);
        assert_eq!(split_path("/t//media/x"), None);
        assert_eq!(split_path("/t/tokenonly"), None);
        assert_eq!(split_path("/tt/abc/x"), None);
    }
}
