//! Accounts on HTTP: sign-up, log-in, log-out, profile, password, deletion and roles.

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::store::{NewUser, ProfileUpdate};
use super::{
    MAX_ADDRESS, MAX_NAME, SessionCreated, User, check_password, check_text, collect,
    normalize_mobile,
};
use crate::App;
use crate::auth::{AuthUser, Role, profile_key, session_key, token_hash};
use crate::error::{Error, ErrorBody, FieldError, Result};
use crate::extract::{ApiJson, ApiPath, ClientAddr};
use crate::store::new_id;

pub use crate::validate::normalize_email;

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(sign_up))
        .routes(routes!(log_in))
        .routes(routes!(log_out))
        .routes(routes!(get_me, update_me, delete_me))
        .routes(routes!(change_password))
        .routes(routes!(set_role))
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

/// Log-in credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogIn {
    email: String,
    password: String,
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
