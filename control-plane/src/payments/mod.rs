//! The payment service: checkout with idempotency keys, confirmation through the provider,
//! provider webhooks, and refunds.
//!
//! Money moves exactly once in effect: a checkout retried with the same `Idempotency-Key`
//! replays the first answer; a payment is charged only from `requires_confirmation` or
//! `failed`, through an atomic move to `confirming`; and the move to `succeeded` writes the
//! `payment.succeeded` event in the same transaction, whichever road (synchronous charge or
//! webhook) gets there first, and only once.

pub mod provider;

use std::future::Future;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use events::payments::{PaymentRefunded, PaymentSucceeded};
use events::subscriptions::{SubscriptionChange, SubscriptionEnded};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::provider::{Card, ChargeOutcome, SANDBOX, SignatureError, verify_webhook};
use crate::App;
use crate::auth::{AuthUser, Role};
use crate::bus;
use crate::calendar::rfc3339;
use crate::error::{Error, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath};
use crate::store::{
    StoreError, TextColumn, is_unique_violation, long_text, new_id, retry_on_conflict,
};

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(checkout))
        .routes(routes!(get_payment))
        .routes(routes!(confirm))
        .routes(routes!(webhook))
        .routes(routes!(refund))
        .routes(routes!(user_payments))
}

/// Where a payment is, as the `payments.status` column stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Created at checkout; waiting for a card.
    RequiresConfirmation,
    /// A confirmation is talking to the provider.
    Confirming,
    /// The provider is deciding; its webhook will say.
    Processing,
    /// Charged.
    Succeeded,
    /// The last attempt failed; it may be confirmed again with another card.
    Failed,
    /// Charged, then given back.
    Refunded,
}

impl TextColumn for PaymentStatus {
    const ALL: &'static [Self] = &[
        Self::RequiresConfirmation,
        Self::Confirming,
        Self::Processing,
        Self::Succeeded,
        Self::Failed,
        Self::Refunded,
    ];
    const WHAT: &'static str = "payment status";

    fn as_str(self) -> &'static str {
        match self {
            Self::RequiresConfirmation => "requires_confirmation",
            Self::Confirming => "confirming",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Refunded => "refunded",
        }
    }
}

impl TryFrom<String> for PaymentStatus {
    type Error = StoreError;

    fn try_from(text: String) -> Result<Self, StoreError> {
        Self::parse(&text)
    }
}

/// A payment as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    id: String,
    user_id: String,
    package_id: String,
    amount: i64,
    currency: String,
    period: String,
    #[sqlx(try_from = "String")]
    status: PaymentStatus,
    provider: String,
    provider_ref: Option<String>,
    card_brand: Option<String>,
    card_last4: Option<String>,
    failure_code: Option<String>,
    failure_message: Option<String>,
    created_at: i64,
    updated_at: i64,
    succeeded_at: Option<i64>,
    refunded_at: Option<i64>,
}

const PAYMENT_COLUMNS: &str = "id, user_id, package_id, amount, currency, period, status, provider, provider_ref, card_brand, \
     card_last4, failure_code, failure_message, created_at, updated_at, succeeded_at, refunded_at";

/// A payment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    id: String,
    user_id: String,
    package_id: String,
    /// Minor units, from the package at checkout (never from the client).
    amount: i64,
    currency: String,
    period: String,
    /// `requires_confirmation`, `confirming`, `processing` (awaiting the provider's webhook),
    /// `succeeded`, `failed` (may be confirmed again with another card) or `refunded`.
    status: PaymentStatus,
    provider: String,
    /// Brand and last four digits of the card used; nothing else of it is kept.
    card: Option<CardSummary>,
    failure: Option<Failure>,
    created_at: String,
    updated_at: String,
    succeeded_at: Option<String>,
    refunded_at: Option<String>,
}

/// What is kept of a card.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CardSummary {
    brand: String,
    last4: String,
}

/// Why the last attempt failed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Failure {
    code: String,
    message: String,
}

impl From<PaymentRow> for Payment {
    fn from(row: PaymentRow) -> Self {
        Self {
            card: row
                .card_brand
                .zip(row.card_last4)
                .map(|(brand, last4)| CardSummary { brand, last4 }),
            failure: row.failure_code.map(|code| Failure {
                code,
                message: row.failure_message.unwrap_or_default(),
            }),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            succeeded_at: row.succeeded_at.map(rfc3339),
            refunded_at: row.refunded_at.map(rfc3339),
            id: row.id,
            user_id: row.user_id,
            package_id: row.package_id,
            amount: row.amount,
            currency: row.currency,
            period: row.period,
            status: row.status,
            provider: row.provider,
        }
    }
}

/// Checkout: which package to buy. The amount comes from the package.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkout {
    package_id: String,
}

/// Confirmation: the card to charge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    card: Card,
}

/// Start paying for a package. Send an `Idempotency-Key` header (any unique string up to 255
/// characters): retrying with the same key and body replays the first answer (marked
/// `Idempotent-Replayed: true`), the same key with another body is refused.
#[utoipa::path(post, path = "/api/v1/payments", tag = "payments", security(("bearer" = [])), request_body = Checkout,
    params(("Idempotency-Key" = String, Header, description = "Unique per checkout; kept at least 24 h")),
    responses((status = 201, body = Payment), (status = 400, body = ErrorBody, description = "idempotency_key_required"),
        (status = 404, body = ErrorBody, description = "package_not_found"), (status = 409, body = ErrorBody, description = "package_retired, package_free, idempotency_key_in_use"),
        (status = 422, body = ErrorBody, description = "idempotency_key_reused")))]
async fn checkout(
    app: App,
    caller: AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Checkout>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let fingerprint = hex::encode(Sha256::digest(
        format!(
            "POST /api/v1/payments\n{}",
            crate::store::to_json_column(&body)
        )
        .as_bytes(),
    ));
    app.idempotent(&caller.user_id, &key, &fingerprint, || async {
        let package = app
            .inventory
            .package(&body.package_id)
            .await?
            .ok_or_else(|| Error::not_found("package_not_found", "No such package."))?;
        if package.retired_at.is_some() {
            return Err(Error::conflict("package_retired", "This package is no longer sold."));
        }
        if package.cost == 0 {
            return Err(Error::conflict("package_free", "This package is free; there is nothing to pay."));
        }
        let now = app.clock.now_ms();
        let id = new_id();
        sqlx::query(
            "INSERT INTO payments (id, user_id, package_id, amount, currency, period, status, provider, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, 'requires_confirmation', ?, ?, ?)",
        )
        .bind(&id)
        .bind(&caller.user_id)
        .bind(&package.id)
        .bind(package.cost)
        .bind(&package.currency)
        .bind(&package.period)
        .bind(SANDBOX)
        .bind(now)
        .bind(now)
        .execute(app.users.database().pool())
        .await
        .map_err(StoreError::from)?;
        metrics::counter!("cadenza_payments_created_total").increment(1);
        let payment = app.payment(&id).await?.ok_or_else(payment_not_found)?;
        Ok((StatusCode::CREATED, serde_json::to_value(Payment::from(payment)).map_err(anyhow::Error::from)?))
    })
    .await
}

/// A payment of the caller's (or any, for an administrator).
#[utoipa::path(get, path = "/api/v1/payments/{id}", tag = "payments", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Payment), (status = 404, body = ErrorBody)))]
async fn get_payment(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Payment>> {
    Ok(Json(app.visible_payment(&caller, &id).await?.into()))
}

/// Pay: charge the card through the provider. 200 with a `succeeded` payment, 202 with a
/// `processing` one (the provider confirms later by webhook), 402 when the card is refused
/// (the payment stays `failed` and may be confirmed again with another card). Confirming a
/// payment that already succeeded charges nothing and returns it.
#[utoipa::path(post, path = "/api/v1/payments/{id}/confirm", tag = "payments", security(("bearer" = [])), request_body = Confirm,
    params(("id" = String, Path)),
    responses((status = 200, body = Payment), (status = 202, body = Payment), (status = 402, body = ErrorBody, description = "card_declined, insufficient_funds"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "payment_in_progress"), (status = 422, body = ErrorBody)))]
async fn confirm(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Confirm>,
) -> Result<Response> {
    let payment = app.visible_payment(&caller, &id).await?;
    if payment.user_id != caller.user_id {
        return Err(payment_not_found());
    }
    match payment.status {
        PaymentStatus::Succeeded | PaymentStatus::Refunded | PaymentStatus::Processing => {
            return Ok((StatusCode::OK, Json(Payment::from(payment))).into_response());
        }
        PaymentStatus::Confirming => return Err(in_progress()),
        PaymentStatus::RequiresConfirmation | PaymentStatus::Failed => {}
    }
    let (year, month) = crate::calendar::civil_year_month(app.clock.now_ms());
    let card = body.card.check(year, month).map_err(Error::Validation)?;
    let now = app.clock.now_ms();
    let claimed = sqlx::query(
        "UPDATE payments SET status = 'confirming', updated_at = ? WHERE id = ? AND status IN ('requires_confirmation', 'failed')",
    )
    .bind(now)
    .bind(&id)
    .execute(app.users.database().pool())
    .await
    .map_err(StoreError::from)?;
    if claimed.rows_affected() != 1 {
        return Err(in_progress());
    }
    let outcome = app.sandbox.charge(
        &id,
        payment.amount,
        &payment.currency,
        &card,
        &app.webhook_secret,
        now / 1000,
    );
    let pool = app.users.database().pool();
    let status = match outcome {
        ChargeOutcome::Succeeded { provider_ref } => {
            let mut tx = pool.begin().await.map_err(StoreError::from)?;
            sqlx::query(
                "UPDATE payments SET status = 'succeeded', provider_ref = ?, card_brand = ?, card_last4 = ?, failure_code = NULL, \
                 failure_message = NULL, succeeded_at = ?, updated_at = ? WHERE id = ?",
            )
            .bind(&provider_ref)
            .bind(card.brand)
            .bind(&card.last4)
            .bind(now)
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            bus::append(
                &mut tx,
                &payment.user_id,
                &succeeded_event(&payment, now),
                now,
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            app.bus.notify();
            metrics::counter!("cadenza_payments_total", "outcome" => "succeeded").increment(1);
            StatusCode::OK
        }
        ChargeOutcome::Pending { provider_ref } => {
            sqlx::query(
                "UPDATE payments SET status = 'processing', provider_ref = ?, card_brand = ?, card_last4 = ?, failure_code = NULL, \
                 failure_message = NULL, updated_at = ? WHERE id = ?",
            )
            .bind(&provider_ref)
            .bind(card.brand)
            .bind(&card.last4)
            .bind(now)
            .bind(&id)
            .execute(pool)
            .await
            .map_err(StoreError::from)?;
            metrics::counter!("cadenza_payments_total", "outcome" => "pending").increment(1);
            StatusCode::ACCEPTED
        }
        ChargeOutcome::Declined { code, message } => {
            sqlx::query(
                "UPDATE payments SET status = 'failed', card_brand = ?, card_last4 = ?, failure_code = ?, failure_message = ?, \
                 updated_at = ? WHERE id = ?",
            )
            .bind(card.brand)
            .bind(&card.last4)
            .bind(code)
            .bind(message)
            .bind(now)
            .bind(&id)
            .execute(pool)
            .await
            .map_err(StoreError::from)?;
            metrics::counter!("cadenza_payments_total", "outcome" => code).increment(1);
            return Err(Error::PaymentRequired {
                code,
                message: message.to_owned(),
            });
        }
    };
    let payment = app.payment(&id).await?.ok_or_else(payment_not_found)?;
    Ok((status, Json(Payment::from(payment))).into_response())
}

/// A provider's webhook body.
#[derive(Debug, Deserialize)]
struct WebhookEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: WebhookData,
}

#[derive(Debug, Deserialize)]
struct WebhookData {
    payment_id: String,
    provider_ref: String,
    amount: i64,
    currency: String,
    #[serde(default)]
    failure_code: Option<String>,
}

/// The raw request body, for signature checks, read within the configured limit.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl FromRequest<App> for RawBody {
    type Rejection = Error;

    async fn from_request(request: Request, app: &App) -> Result<Self> {
        let limit = app.config.limits.max_body_bytes;
        axum::body::to_bytes(request.into_body(), limit)
            .await
            .map(Self)
            .map_err(|_| Error::PayloadTooLarge { limit })
    }
}

/// Provider callbacks, signed like Stripe's: header `Cadenza-Signature: t=…,v1=…` with
/// `v1 = hex(HMAC-SHA256(secret, "{t}.{raw body}"))`, within 5 minutes. Forged or stale
/// deliveries are refused (400) and change nothing; a delivery of an event already processed
/// is acknowledged (200, `duplicate`) and changes nothing, so that the provider stops retrying.
#[utoipa::path(post, path = "/api/v1/payments/webhooks/{provider}", tag = "payments", params(("provider" = String, Path)),
    responses((status = 200, description = "processed, duplicate or ignored"), (status = 400, body = ErrorBody, description = "invalid_signature, stale_signature, malformed_webhook"),
        (status = 404, body = ErrorBody, description = "provider_not_found, payment_not_found"), (status = 422, body = ErrorBody, description = "webhook_mismatch")))]
async fn webhook(
    app: App,
    ApiPath(provider): ApiPath<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<serde_json::Value>> {
    if provider != SANDBOX {
        return Err(Error::not_found(
            "provider_not_found",
            "No such payment provider.",
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|_| malformed_webhook())?;
    let signature = headers
        .get("cadenza-signature")
        .and_then(|value| value.to_str().ok());
    let tolerance = app.config.payments.webhook_tolerance_secs as i64;
    if let Err(error) = verify_webhook(
        &app.webhook_secret,
        signature,
        text,
        app.clock.now_ms() / 1000,
        tolerance,
    ) {
        metrics::counter!("cadenza_webhooks_rejected_total", "reason" => format!("{error:?}"))
            .increment(1);
        tracing::warn!(message = "Webhook refused.", provider, %error);
        let code = if error == SignatureError::Stale {
            "stale_signature"
        } else {
            "invalid_signature"
        };
        return Err(Error::BadRequest {
            code,
            message: format!("Webhook refused: {error}."),
        });
    }
    let event: WebhookEvent = serde_json::from_str(text).map_err(|_| malformed_webhook())?;
    let outcome = retry_on_conflict(|| app.apply_webhook(&provider, &event)).await?;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => return Err(error),
    };
    app.bus.notify();
    metrics::counter!("cadenza_webhooks_total", "outcome" => outcome).increment(1);
    Ok(Json(serde_json::json!({"status": outcome})))
}

/// Refund a payment (administrators only): the payment becomes `refunded` and the
/// subscription it paid for ends now, with their events, in one transaction. Idempotent.
#[utoipa::path(post, path = "/api/v1/admin/payments/{id}/refund", tag = "payments", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Payment), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "payment_not_refundable")))]
async fn refund(app: App, caller: AuthUser, ApiPath(id): ApiPath<String>) -> Result<Json<Payment>> {
    caller.require_admin()?;
    let payment = app.payment(&id).await?.ok_or_else(payment_not_found)?;
    match payment.status {
        PaymentStatus::Refunded => return Ok(Json(payment.into())),
        PaymentStatus::Succeeded => {}
        other => {
            return Err(Error::conflict(
                "payment_not_refundable",
                format!(
                    "Only a succeeded payment can be refunded; this one is {}.",
                    other.as_str()
                ),
            ));
        }
    }
    let refunded = retry_on_conflict(|| app.refund_payment(&payment)).await?;
    if !refunded {
        // Lost a race with another refund; report the state as it is now.
        let current = app.payment(&id).await?.ok_or_else(payment_not_found)?;
        return Ok(Json(current.into()));
    }
    app.bus.notify();
    app.forget_entitlements(&payment.user_id).await;
    let current = app.payment(&id).await?.ok_or_else(payment_not_found)?;
    Ok(Json(current.into()))
}

/// A user's payments, newest first (administrators only).
#[utoipa::path(get, path = "/api/v1/admin/users/{id}/payments", tag = "payments", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = [Payment]), (status = 403, body = ErrorBody)))]
async fn user_payments(
    app: App,
    caller: AuthUser,
    ApiPath(user_id): ApiPath<String>,
) -> Result<Json<Vec<Payment>>> {
    caller.require_admin()?;
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE user_id = ? ORDER BY created_at DESC, id DESC"
    );
    let rows: Vec<PaymentRow> = sqlx::query_as(&sql)
        .bind(&user_id)
        .fetch_all(app.users.database().pool())
        .await
        .map_err(StoreError::from)?;
    Ok(Json(rows.into_iter().map(Payment::from).collect()))
}

fn payment_not_found() -> Error {
    Error::not_found("payment_not_found", "No such payment.")
}

fn in_progress() -> Error {
    Error::conflict(
        "payment_in_progress",
        "This payment is being confirmed right now; fetch it again shortly.",
    )
}

fn malformed_webhook() -> Error {
    Error::BadRequest {
        code: "malformed_webhook",
        message: "The webhook body is not a valid event.".to_owned(),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<String> {
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    if key.is_empty() {
        return Err(Error::BadRequest {
            code: "idempotency_key_required",
            message: "Send an Idempotency-Key header (a unique string per checkout) so that a retry never charges twice.".to_owned(),
        });
    }
    if key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::BadRequest {
            code: "idempotency_key_invalid",
            message: "The Idempotency-Key must be 1 to 255 visible ASCII characters.".to_owned(),
        });
    }
    Ok(key.to_owned())
}

fn succeeded_event(payment: &PaymentRow, now: i64) -> PaymentSucceeded {
    PaymentSucceeded {
        payment_id: payment.id.clone(),
        user_id: payment.user_id.clone(),
        package_id: payment.package_id.clone(),
        amount: payment.amount,
        currency: payment.currency.clone(),
        period: payment.period.clone(),
        provider: payment.provider.clone(),
        succeeded_at_ms: now,
    }
}

impl App {
    /// One payment.
    pub async fn payment(&self, id: &str) -> Result<Option<PaymentRow>, StoreError> {
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ?");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.users.database().pool())
            .await?)
    }

    /// The payment if the caller may see it (its owner or an administrator); 404 otherwise.
    async fn visible_payment(&self, caller: &AuthUser, id: &str) -> Result<PaymentRow> {
        let payment = self.payment(id).await?.ok_or_else(payment_not_found)?;
        if payment.user_id == caller.user_id || caller.role == Role::Admin {
            Ok(payment)
        } else {
            Err(payment_not_found())
        }
    }

    /// Runs `op` at most once per (user, key): the first call records the key, runs `op` and
    /// stores its answer (success or client error); later calls with the same body replay that
    /// answer, with another body are refused (422), and while the first is running get 409.
    async fn idempotent<F, Fut>(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
        op: F,
    ) -> Result<Response>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(StatusCode, serde_json::Value)>>,
    {
        let pool = self.users.database().pool();
        let inserted = sqlx::query("INSERT INTO idempotency_keys (user_id, idem_key, request_hash, created_at) VALUES (?, ?, ?, ?)")
            .bind(user_id)
            .bind(key)
            .bind(fingerprint)
            .bind(self.clock.now_ms())
            .execute(pool)
            .await;
        match inserted {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => {
                let row = sqlx::query("SELECT request_hash, response_status, response_body FROM idempotency_keys WHERE user_id = ? AND idem_key = ?")
                    .bind(user_id)
                    .bind(key)
                    .fetch_one(pool)
                    .await
                    .map_err(StoreError::from)?;
                let hash: String = row.try_get("request_hash").map_err(StoreError::from)?;
                if hash != fingerprint {
                    return Err(Error::invalid(
                        "Idempotency-Key",
                        "idempotency_key_reused",
                        "This Idempotency-Key was used with another request; use a new key.",
                    ));
                }
                let status: Option<i64> =
                    row.try_get("response_status").map_err(StoreError::from)?;
                let body = match row
                    .try_get::<Option<i64>, _>("response_status")
                    .map_err(StoreError::from)?
                {
                    Some(_) => Some(long_text(&row, "response_body").map_err(StoreError::from)?),
                    None => None,
                };
                return match (status, body) {
                    (Some(status), Some(body)) => {
                        metrics::counter!("cadenza_idempotent_replays_total").increment(1);
                        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
                        let mut response = (
                            status,
                            [(
                                axum::http::header::CONTENT_TYPE,
                                HeaderValue::from_static("application/json"),
                            )],
                            body,
                        )
                            .into_response();
                        response
                            .headers_mut()
                            .insert("idempotent-replayed", HeaderValue::from_static("true"));
                        Ok(response)
                    }
                    _ => Err(Error::conflict(
                        "idempotency_key_in_use",
                        "A request with this Idempotency-Key is still being processed; retry shortly.",
                    )),
                };
            }
            Err(error) => return Err(StoreError::from(error).into()),
        }
        let (status, body) = match op().await {
            Ok(answer) => answer,
            Err(error) => {
                let (status, body) = error.to_body();
                if status.is_server_error() {
                    // Nothing was decided; free the key so that a retry runs again. A key
                    // that cannot be freed would answer 409 for its whole lifetime, so the
                    // delete is retried, and logged and counted if it still fails.
                    release_idempotency_key(pool, user_id, key).await;
                    return Err(error);
                }
                (
                    status,
                    serde_json::to_value(body).map_err(anyhow::Error::from)?,
                )
            }
        };
        sqlx::query("UPDATE idempotency_keys SET response_status = ?, response_body = ? WHERE user_id = ? AND idem_key = ?")
            .bind(i64::from(status.as_u16()))
            .bind(body.to_string())
            .bind(user_id)
            .bind(key)
            .execute(pool)
            .await
            .map_err(StoreError::from)?;
        Ok((status, Json(body)).into_response())
    }

    /// Applies a verified webhook in one transaction. The outer `Result` is the store's, the
    /// inner one a refusal to report to the provider.
    async fn apply_webhook(
        &self,
        provider: &str,
        event: &WebhookEvent,
    ) -> Result<Result<&'static str>, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.users.database().pool().begin().await?;
        let recorded = sqlx::query(
            "INSERT INTO webhook_events (provider, event_id, received_at) VALUES (?, ?, ?)",
        )
        .bind(provider)
        .bind(&event.id)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match recorded {
            Ok(_) => {}
            Err(error) if is_unique_violation(&error) => return Ok(Ok("duplicate")),
            Err(error) => return Err(error.into()),
        }
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ?");
        let Some(payment) = sqlx::query_as::<_, PaymentRow>(&sql)
            .bind(&event.data.payment_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(Err(payment_not_found()));
        };
        let matches = payment.provider == provider
            && payment.provider_ref.as_deref() == Some(event.data.provider_ref.as_str())
            && payment.amount == event.data.amount
            && payment.currency == event.data.currency;
        if !matches {
            return Ok(Err(Error::invalid(
                "data",
                "webhook_mismatch",
                "The webhook's charge, amount or currency does not match the payment.",
            )));
        }
        let outcome = match (event.kind.as_str(), payment.status) {
            ("payment_intent.succeeded", PaymentStatus::Processing) => {
                sqlx::query("UPDATE payments SET status = 'succeeded', succeeded_at = ?, updated_at = ? WHERE id = ?")
                    .bind(now)
                    .bind(now)
                    .bind(&payment.id)
                    .execute(&mut *tx)
                    .await?;
                bus::append(
                    &mut tx,
                    &payment.user_id,
                    &succeeded_event(&payment, now),
                    now,
                )
                .await?;
                "processed"
            }
            ("payment_intent.payment_failed", PaymentStatus::Processing) => {
                sqlx::query("UPDATE payments SET status = 'failed', failure_code = ?, failure_message = ?, updated_at = ? WHERE id = ?")
                    .bind(event.data.failure_code.as_deref().unwrap_or("card_declined"))
                    .bind("The card was declined.")
                    .bind(now)
                    .bind(&payment.id)
                    .execute(&mut *tx)
                    .await?;
                "processed"
            }
            _ => "ignored",
        };
        tx.commit().await?;
        Ok(Ok(outcome))
    }

    /// Refunds a succeeded payment and ends the subscription it paid for, with events, in one
    /// transaction. `Ok(false)` if it was no longer `succeeded`.
    async fn refund_payment(&self, payment: &PaymentRow) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.users.database().pool().begin().await?;
        let changed = sqlx::query("UPDATE payments SET status = 'refunded', refunded_at = ?, updated_at = ? WHERE id = ? AND status = 'succeeded'")
            .bind(now)
            .bind(now)
            .bind(&payment.id)
            .execute(&mut *tx)
            .await?;
        if changed.rows_affected() != 1 {
            return Ok(false);
        }
        let refunded = PaymentRefunded {
            payment_id: payment.id.clone(),
            user_id: payment.user_id.clone(),
            amount: payment.amount,
            currency: payment.currency.clone(),
            refunded_at_ms: now,
        };
        bus::append(&mut tx, &payment.user_id, &refunded, now).await?;
        let subscription = sqlx::query(
            "SELECT s.id AS id, s.package_id AS package_id, s.start_at AS start_at FROM subscription_payments sp \
             JOIN subscriptions s ON s.id = sp.subscription_id WHERE sp.payment_id = ?",
        )
        .bind(&payment.id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = subscription {
            let subscription_id: String = row.try_get("id")?;
            sqlx::query("UPDATE subscriptions SET status = 'refunded', end_at = ?, auto_renew = 0, updated_at = ? WHERE id = ?")
                .bind(now)
                .bind(now)
                .bind(&subscription_id)
                .execute(&mut *tx)
                .await?;
            let ended = SubscriptionEnded(SubscriptionChange {
                subscription_id,
                user_id: payment.user_id.clone(),
                package_id: row.try_get("package_id")?,
                payment_id: Some(payment.id.clone()),
                start_at_ms: row.try_get("start_at")?,
                end_at_ms: now,
            });
            bus::append(&mut tx, &payment.user_id, &ended, now).await?;
        }
        tx.commit().await?;
        metrics::counter!("cadenza_payments_refunded_total").increment(1);
        Ok(true)
    }

    /// Housekeeping for the sweeper: forgets idempotency keys past their time, and fails
    /// confirmations interrupted by a crash (stuck in `confirming` for over five minutes) so
    /// that the payer can try again.
    pub(crate) async fn sweep_payments(&self) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let pool = self.users.database().pool();
        let ttl_ms = self.config.payments.idempotency_key_ttl_secs as i64 * 1000;
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(now - ttl_ms)
            .execute(pool)
            .await?;
        sqlx::query(
            "UPDATE payments SET status = 'failed', failure_code = 'interrupted',              failure_message = 'The confirmation was interrupted; nothing was charged. Confirm again.', updated_at = ?              WHERE status = 'confirming' AND updated_at < ?",
        )
        .bind(now)
        .bind(now - 5 * 60_000)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Sends the sandbox's queued webhooks through this service's own webhook endpoint, as
    /// the provider would over the network. Returns how many were accepted.
    pub async fn deliver_sandbox_webhooks(&self) -> usize {
        use tower::ServiceExt as _;
        let mut accepted = 0;
        for delivery in self.sandbox.take_webhooks() {
            let request = axum::http::Request::post(format!("/api/v1/payments/webhooks/{SANDBOX}"))
                .header("content-type", "application/json")
                .header("cadenza-signature", delivery.signature)
                .body(axum::body::Body::from(delivery.body));
            let Ok(request) = request else { continue };
            match self.router().oneshot(request).await {
                Ok(response) if response.status().is_success() => accepted += 1,
                Ok(response) => {
                    tracing::warn!(message = "Sandbox webhook was refused.", status = %response.status())
                }
                Err(never) => match never {},
            }
        }
        accepted
    }
}

/// Deletes an idempotency key whose operation decided nothing, retrying briefly.
async fn release_idempotency_key(pool: &sqlx::AnyPool, user_id: &str, key: &str) {
    let mut attempt = 0;
    loop {
        let result = sqlx::query("DELETE FROM idempotency_keys WHERE user_id = ? AND idem_key = ?")
            .bind(user_id)
            .bind(key)
            .execute(pool)
            .await;
        match result {
            Ok(_) => return,
            Err(error) if attempt < 3 => {
                attempt += 1;
                tracing::warn!(message = "Could not free an idempotency key; retrying.", attempt, %error);
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
            Err(error) => {
                metrics::counter!("cadenza_idempotency_keys_stuck_total").increment(1);
                tracing::error!(message = "Could not free an idempotency key: retries with it answer 409 until it expires.", user_id, %error);
                return;
            }
        }
    }
}
