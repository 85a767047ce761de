//! Subscriptions on HTTP: the caller's subscriptions and entitlements, cancelling, and an
//! administrator's view of a user's.

use axum::Json;
use events::subscriptions::SubscriptionCanceled;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Entitlements, Subscription, Subscriptions, change, store};
use crate::auth::AuthUser;
use crate::error::{Error, ErrorBody, Result};
use crate::extract::ApiPath;
use crate::store::{StoreError, retry_on_conflict};
use crate::{App, bus};

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(my_subscriptions))
        .routes(routes!(cancel_current))
        .routes(routes!(my_entitlements))
        .routes(routes!(user_subscriptions))
}

// ---- Handlers ----------------------------------------------------------------------------

/// The caller's subscriptions, current and past.
#[utoipa::path(get, path = "/api/v1/subscriptions/me", tag = "subscriptions", security(("bearer" = [])),
    responses((status = 200, body = Subscriptions), (status = 401, body = ErrorBody)))]
async fn my_subscriptions(app: App, caller: AuthUser) -> Result<Json<Subscriptions>> {
    Ok(Json(app.subscriptions_of(&caller.user_id).await?))
}

/// Cancel the current paid subscription: it stays in force until its end date and is not
/// renewed.
#[utoipa::path(delete, path = "/api/v1/subscriptions/current", tag = "subscriptions", security(("bearer" = [])),
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody, description = "no_active_subscription")))]
async fn cancel_current(app: App, caller: AuthUser) -> Result<Json<Subscription>> {
    let now = app.clock.now_ms();
    let canceled = retry_on_conflict(|| async {
        let mut tx = app.users.database().begin().await?;
        let Some(row) = store::active(&mut *tx, &caller.user_id, now).await? else {
            return Ok(None);
        };
        if store::cancel(&mut *tx, &row.id, now).await? {
            let event = SubscriptionCanceled(change(&row, None));
            bus::append(&mut tx, &row.user_id, &event, now).await?;
        }
        tx.commit().await?;
        Ok::<_, StoreError>(Some(row.id))
    })
    .await?
    .ok_or_else(|| {
        Error::not_found(
            "no_active_subscription",
            "There is no active paid subscription to cancel.",
        )
    })?;
    app.bus.notify();
    app.forget_entitlements(&caller.user_id).await;
    let all = app.subscriptions_of(&caller.user_id).await?;
    all.subscriptions
        .into_iter()
        .find(|subscription| subscription.id == canceled)
        .map(Json)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("canceled subscription vanished")))
}

/// The package in force for the caller, its ads per hour, and until when.
#[utoipa::path(get, path = "/api/v1/me/entitlements", tag = "subscriptions", security(("bearer" = [])),
    responses((status = 200, body = Entitlements), (status = 401, body = ErrorBody)))]
async fn my_entitlements(app: App, caller: AuthUser) -> Result<Json<Entitlements>> {
    Ok(Json(app.entitlements(&caller.user_id).await?))
}

/// A user's subscriptions (administrators only).
#[utoipa::path(get, path = "/api/v1/admin/users/{id}/subscriptions", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Subscriptions), (status = 403, body = ErrorBody)))]
async fn user_subscriptions(
    app: App,
    caller: AuthUser,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<Subscriptions>> {
    caller.require_admin()?;
    Ok(Json(app.subscriptions_of(&user_id).await?))
}
