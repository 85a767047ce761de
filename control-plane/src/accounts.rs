//! The user service: sign-up, log-in and log-out, the caller's own profile, password change,
//! account deletion, and the administrator's role changes. Lives on the User DB, with
//! sessions and profiles cached.

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;
use crate::auth::{AuthUser, CachedUser, Role, profile_key, random_token, session_key, token_hash};
use crate::calendar::rfc3339;
use crate::error::{Error, ErrorBody, FieldError, Result};
use crate::extract::{ApiJson, ApiPath, ClientAddr};
use crate::store::{NewSession, NewUser, ProfileUpdate, new_id};

/// Longest name, in characters.
const MAX_NAME: usize = 200;
/// Longest address, in characters.
const MAX_ADDRESS: usize = 1000;
/// Shortest and longest password, in characters.
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 10..=256;

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(sign_up))
        .routes(routes!(log_in))
        .routes(routes!(log_out))
        .routes(routes!(get_me, update_me, delete_me))
        .routes(routes!(change_password))
        .routes(routes!(set_role))
}

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

// ---- Types -------------------------------------------------------------------------------

/// Sign-up: the spec's user fields plus a password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    /// Given name, kept exactly as written.
    first_name: String,
    /// Family name, kept exactly as written.
    last_name: String,
    /// Email address; unique, compared case-insensitively.
    email: String,
    /// Mobile number in E.164 form (`+` and country code); spaces and dashes are removed.
    mobile: String,
    /// Postal address.
    address: String,
    /// At least 10 characters.
    password: String,
    /// `listener` (default) or `artist`.
    #[serde(default)]
    role: Option<Role>,
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

/// Log-in credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogIn {
    email: String,
    password: String,
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

/// Profile fields to change; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    first_name: Option<String>,
    last_name: Option<String>,
    mobile: Option<String>,
    address: Option<String>,
}

/// Password change: the current one and the new one. Every session ends; the response
/// carries a new one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// Account deletion needs the password again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccount {
    password: String,
}

/// An administrator's change of a user's role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    role: Role,
}

// ---- Handlers ----------------------------------------------------------------------------

/// Sign up.
#[utoipa::path(post, path = "/api/v1/users", tag = "accounts", request_body = SignUp,
    responses((status = 201, body = User), (status = 409, body = ErrorBody, description = "email_taken"), (status = 422, body = ErrorBody)))]
async fn sign_up(app: App, ApiJson(body): ApiJson<SignUp>) -> Result<Response> {
    let mut errors = Vec::new();
    check_text("first_name", &body.first_name, MAX_NAME, false, &mut errors);
    check_text("last_name", &body.last_name, MAX_NAME, false, &mut errors);
    check_text("address", &body.address, MAX_ADDRESS, true, &mut errors);
    check_password("password", &body.password, &mut errors);
    let email = normalize_email(&body.email)
        .map_err(|e| errors.push(e))
        .ok();
    let mobile = normalize_mobile(&body.mobile)
        .map_err(|e| errors.push(e))
        .ok();
    let role = body.role.unwrap_or(Role::Listener);
    if role == Role::Admin {
        errors.push(FieldError::new(
            "role",
            "invalid",
            "Choose `listener` or `artist`.",
        ));
    }
    collect(errors)?;
    let (Some(email), Some(mobile)) = (email, mobile) else {
        unreachable!("validation passed, so both fields parsed");
    };
    let user = app
        .create_user(NewUser {
            id: new_id(),
            email,
            first_name: body.first_name,
            last_name: body.last_name,
            mobile,
            address: body.address,
            password_hash: app.passwords.hash(body.password).await?,
            role: role.as_str().to_owned(),
            now: app.clock.now_ms(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(User::from_cached(user))).into_response())
}

/// Log in: exchange email and password for a bearer token.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "accounts", request_body = LogIn,
    responses((status = 201, body = SessionCreated), (status = 401, body = ErrorBody, description = "invalid_credentials"),
        (status = 429, body = ErrorBody, description = "too_many_attempts; see Retry-After")))]
async fn log_in(
    app: App,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LogIn>,
) -> Result<Response> {
    let email = body.email.trim().to_lowercase();
    app.throttle.check(&email, addr).await?;
    let user = app.users.user_by_email(&email).await?;
    let ok = app
        .passwords
        .verify(
            user.as_ref().map(|user| user.password_hash.clone()),
            body.password,
        )
        .await?;
    let Some(user) = user.filter(|_| ok) else {
        app.throttle.record_failure(&email, addr).await;
        metrics::counter!("cadenza_logins_total", "result" => "failure").increment(1);
        return Err(Error::unauthenticated(
            "invalid_credentials",
            "The email or password is incorrect.",
        ));
    };
    app.throttle.record_success(&email, addr).await;
    // A token presented with the log-in is replaced, not kept beside the new one.
    if let Some(old) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        app.end_sessions(&[token_hash(old.trim())]).await?;
    }
    let user_agent: String = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(255)
        .collect();
    let created = app
        .start_session(user.into(), &addr.to_string(), &user_agent)
        .await?;
    metrics::counter!("cadenza_logins_total", "result" => "success").increment(1);
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Log out: end the session of the token used.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "accounts", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
async fn log_out(app: App, caller: AuthUser) -> Result<StatusCode> {
    app.end_sessions(&[caller.token_hash]).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's profile.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
async fn get_me(app: App, caller: AuthUser) -> Result<Json<User>> {
    let user = app
        .profile(&caller.user_id)
        .await?
        .ok_or_else(|| Error::unauthenticated("invalid_token", "The account no longer exists."))?;
    Ok(Json(User::from_cached(user)))
}

/// Change the caller's profile.
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "accounts", security(("bearer" = [])), request_body = UpdateProfile,
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_me(
    app: App,
    caller: AuthUser,
    ApiJson(body): ApiJson<UpdateProfile>,
) -> Result<Json<User>> {
    let mut errors = Vec::new();
    if let Some(name) = &body.first_name {
        check_text("first_name", name, MAX_NAME, false, &mut errors);
    }
    if let Some(name) = &body.last_name {
        check_text("last_name", name, MAX_NAME, false, &mut errors);
    }
    if let Some(address) = &body.address {
        check_text("address", address, MAX_ADDRESS, true, &mut errors);
    }
    let mobile = match body.mobile.as_deref().map(normalize_mobile) {
        Some(Ok(mobile)) => Some(mobile),
        Some(Err(error)) => {
            errors.push(error);
            None
        }
        None => None,
    };
    collect(errors)?;
    let update = ProfileUpdate {
        first_name: body.first_name,
        last_name: body.last_name,
        mobile,
        address: body.address,
    };
    let now = app.clock.now_ms();
    if !app
        .users
        .update_profile(&caller.user_id, &update, now)
        .await?
    {
        return Err(Error::unauthenticated(
            "invalid_token",
            "The account no longer exists.",
        ));
    }
    app.cache.delete(&[profile_key(&caller.user_id)]).await;
    get_me(app, caller).await
}

/// Delete the caller's account, its sessions and its playlists.
#[utoipa::path(delete, path = "/api/v1/users/me", tag = "accounts", security(("bearer" = [])), request_body = DeleteAccount,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "wrong_password")))]
async fn delete_me(
    app: App,
    caller: AuthUser,
    ApiJson(body): ApiJson<DeleteAccount>,
) -> Result<StatusCode> {
    app.confirm_password(&caller.user_id, body.password).await?;
    app.delete_user(&caller.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the caller's password. Every session of the account ends (other devices are
/// logged out); the response is a fresh session for this client.
#[utoipa::path(put, path = "/api/v1/users/me/password", tag = "accounts", security(("bearer" = [])), request_body = ChangePassword,
    responses((status = 200, body = SessionCreated), (status = 403, body = ErrorBody, description = "wrong_password"), (status = 422, body = ErrorBody)))]
async fn change_password(
    app: App,
    caller: AuthUser,
    ClientAddr(addr): ClientAddr,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<Json<SessionCreated>> {
    let mut errors = Vec::new();
    check_password("new_password", &body.new_password, &mut errors);
    collect(errors)?;
    app.confirm_password(&caller.user_id, body.current_password)
        .await?;
    let hash = app.passwords.hash(body.new_password).await?;
    let revoked = app
        .users
        .change_password(&caller.user_id, &hash, app.clock.now_ms())
        .await?;
    let keys: Vec<String> = revoked.iter().map(|hash| session_key(hash)).collect();
    app.cache.delete(&keys).await;
    let user = app
        .profile(&caller.user_id)
        .await?
        .ok_or_else(|| Error::unauthenticated("invalid_token", "The account no longer exists."))?;
    Ok(Json(app.start_session(user, &addr.to_string(), "").await?))
}

/// Change a user's role (administrators only).
#[utoipa::path(put, path = "/api/v1/admin/users/{id}/role", tag = "accounts", security(("bearer" = [])), request_body = SetRole,
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_role(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SetRole>,
) -> Result<Json<User>> {
    caller.require_admin()?;
    if !app
        .users
        .set_role(&id, body.role.as_str(), app.clock.now_ms())
        .await?
    {
        return Err(Error::not_found("user_not_found", "No such user."));
    }
    app.cache.delete(&[profile_key(&id)]).await;
    let user = app
        .profile(&id)
        .await?
        .ok_or_else(|| Error::not_found("user_not_found", "No such user."))?;
    Ok(Json(User::from_cached(user)))
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
