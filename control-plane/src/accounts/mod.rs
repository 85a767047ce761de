//! The user service: sign-up, log-in and log-out, the caller's own profile, password change,
//! account deletion, and the administrator's role changes. Lives on the User DB, with
//! sessions and profiles cached.

mod http;
pub mod store;

pub(crate) use http::routes;

use serde::Serialize;
use utoipa::ToSchema;

use crate::App;
use crate::accounts::store::{NewSession, NewUser};
use crate::auth::{CachedUser, Role, profile_key, random_token, session_key, token_hash};
use crate::calendar::rfc3339;
use crate::error::{Error, FieldError, Result};
use crate::store::new_id;

/// Longest name, in characters.
const MAX_NAME: usize = 200;
/// Longest address, in characters.
const MAX_ADDRESS: usize = 1000;
/// Shortest and longest password, in characters.
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 10..=256;

pub use crate::validate::normalize_email;

// ---- Validation --------------------------------------------------------------------------

/// Removes the usual separators from a phone number and checks that what is left is E.164:
/// `+`, then 8 to 15 digits, the first not zero.
pub fn normalize_mobile(mobile: &str) -> Result<String, FieldError> {
    let compact: String = mobile
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let digits = compact.strip_prefix('+').unwrap_or("");
    let valid = (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    if !valid {
        return Err(FieldError::new(
            "mobile",
            "invalid",
            "Give the mobile number in international E.164 form, e.g. +447700900123.",
        ));
    }
    Ok(compact)
}

/// Checks a free-text field: not blank, not too long, no control characters (newlines and tabs
/// are allowed where `multiline`). The value is kept exactly as given.
fn check_text(field: &str, value: &str, max: usize, multiline: bool, errors: &mut Vec<FieldError>) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(field, "required", "Must not be empty."));
    } else if value.chars().count() > max {
        errors.push(FieldError::new(
            field,
            "too_long",
            format!("At most {max} characters."),
        ));
    } else if value
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        errors.push(FieldError::new(
            field,
            "invalid",
            "Must not contain control characters.",
        ));
    }
}

fn check_password(field: &str, password: &str, errors: &mut Vec<FieldError>) {
    let chars = password.chars().count();
    if !PASSWORD_CHARS.contains(&chars) {
        errors.push(FieldError::new(
            field,
            "invalid",
            format!(
                "Use between {} and {} characters.",
                PASSWORD_CHARS.start(),
                PASSWORD_CHARS.end()
            ),
        ));
    }
}

fn collect(errors: Vec<FieldError>) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

// ---- Operations other services and the launcher use -----------------------------------------

impl App {
    /// Inserts a user; 409 `email_taken` if the email is registered.
    pub async fn create_user(&self, user: NewUser) -> Result<CachedUser> {
        if !self.users.insert_user(&user).await? {
            return Err(Error::conflict(
                "email_taken",
                "An account with this email already exists.",
            ));
        }
        metrics::counter!("cadenza_signups_total", "role" => user.role.clone()).increment(1);
        let row =
            self.users.user_by_id(&user.id).await?.ok_or_else(|| {
                Error::Internal(anyhow::anyhow!("user vanished right after insert"))
            })?;
        Ok(row.into())
    }

    /// Opens a session for `user` and returns its token.
    pub(crate) async fn start_session(
        &self,
        user: CachedUser,
        client_addr: &str,
        user_agent: &str,
    ) -> Result<SessionCreated> {
        let token = random_token();
        let now = self.clock.now_ms();
        let expires_at = now + self.config.auth.session_absolute_ttl_secs as i64 * 1000;
        self.users
            .insert_session(&NewSession {
                id: new_id(),
                token_hash: token_hash(&token),
                user_id: user.id.clone(),
                now,
                expires_at,
                client_addr: client_addr.to_owned(),
                user_agent: user_agent.to_owned(),
            })
            .await?;
        Ok(SessionCreated {
            token,
            token_type: "Bearer",
            expires_at: rfc3339(expires_at),
            idle_timeout_secs: self.config.auth.session_idle_ttl_secs,
            user: User::from_cached(user),
        })
    }

    /// Ends sessions by token hash, in the database and then the cache.
    async fn end_sessions(&self, token_hashes: &[String]) -> Result<()> {
        for hash in token_hashes {
            self.users.delete_session(hash).await?;
        }
        let keys: Vec<String> = token_hashes.iter().map(|hash| session_key(hash)).collect();
        self.cache.delete(&keys).await;
        Ok(())
    }

    /// 403 `wrong_password` unless `password` is the user's.
    async fn confirm_password(&self, user_id: &str, password: String) -> Result<()> {
        let hash = self
            .users
            .user_by_id(user_id)
            .await?
            .map(|user| user.password_hash);
        if self.passwords.verify(hash, password).await? {
            Ok(())
        } else {
            Err(Error::forbidden(
                "wrong_password",
                "The password is incorrect.",
            ))
        }
    }

    /// Deletes a user. The playlists' contents (Inventory DB) are first marked pending, then
    /// the user and their ownership records go in one User DB transaction, then the contents
    /// are deleted. A crash at any point leaves only pending contents nobody can see, which the
    /// orphan sweeper removes.
    pub async fn delete_user(&self, user_id: &str) -> Result<()> {
        let owned: Vec<String> = self
            .users
            .playlists_of(user_id)
            .await?
            .into_iter()
            .map(|row| row.playlist_id)
            .collect();
        let now = self.clock.now_ms();
        self.inventory
            .set_playlist_state(&owned, false, now)
            .await?;
        let (playlists, sessions) = self.users.delete_user(user_id).await?;
        let mut keys: Vec<String> = sessions.iter().map(|hash| session_key(hash)).collect();
        keys.push(profile_key(user_id));
        self.cache.delete(&keys).await;
        self.inventory.delete_playlists(&playlists).await?;
        metrics::counter!("cadenza_accounts_deleted_total").increment(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        assert!(normalize_email("not-an-email").is_err());
        assert!(normalize_email("a@").is_err());
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn mobiles_must_be_e164() {
        assert_eq!(
            normalize_mobile("+44 7700-900 123").unwrap(),
            "+447700900123"
        );
        assert_eq!(
            normalize_mobile("+1 (415) 555.2671").unwrap(),
            "+14155552671"
        );
        for bad in [
            "07700900123",
            "+0123456789",
            "+12",
            "+1234567890123456",
            "+44 77OO 900123",
            "",
        ] {
            assert!(normalize_mobile(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_checks() {
        let mut errors = Vec::new();
        check_text("n", "Zoë 李", 200, false, &mut errors);
        check_text("a", "1 Road\nTown", 200, true, &mut errors);
        assert!(errors.is_empty());
        check_text("n", "   ", 200, false, &mut errors);
        check_text("n", "a\u{0}b", 200, false, &mut errors);
        check_text("n", &"x".repeat(201), 200, false, &mut errors);
        let codes: Vec<_> = errors.iter().map(|e| e.code).collect();
        assert_eq!(codes, ["required", "invalid", "too_long"]);
    }
}

/// A user, as the user sees themself.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    id: String,
    email: String,
    first_name: String,
    last_name: String,
    mobile: String,
    address: String,
    role: Role,
    created_at: String,
    updated_at: String,
}

impl User {
    fn from_cached(user: CachedUser) -> Self {
        Self {
            role: Role::parse(&user.role).unwrap_or(Role::Listener),
            created_at: rfc3339(user.created_at),
            updated_at: rfc3339(user.updated_at),
            id: user.id,
            email: user.email,
            first_name: user.first_name,
            last_name: user.last_name,
            mobile: user.mobile,
            address: user.address,
        }
    }
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionCreated {
    /// The bearer token: send `Authorization: Bearer <token>`. Shown once; store it safely.
    token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// When the session ends whatever its use.
    expires_at: String,
    /// The session also ends after this many seconds without a request.
    idle_timeout_secs: u64,
    /// Who logged in.
    user: User,
}
