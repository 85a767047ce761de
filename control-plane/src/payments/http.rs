//! Payments on HTTP: checkout, card confirmation, the provider's webhooks, refunds and an
//! administrator's view of a user's payments.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::provider::{Card, ChargeOutcome, SANDBOX, SignatureError, verify_webhook};
use super::release_idempotency_key;
use super::{Payment, PaymentStatus, WebhookEvent, payment_not_found, store, succeeded_event};
use crate::auth::AuthUser;
use crate::error::{Error, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath};
use crate::store::{StoreError, TextColumn, new_id, retry_on_conflict};
use crate::{App, bus};

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(checkout))
        .routes(routes!(get_payment))
        .routes(routes!(confirm))
        .routes(routes!(webhook))
        .routes(routes!(refund))
        .routes(routes!(user_payments))
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
            return Err(Error::conflict(
                "package_retired",
                "This package is no longer sold.",
            ));
        }
        if package.cost == 0 {
            return Err(Error::conflict(
                "package_free",
                "This package is free; there is nothing to pay.",
            ));
        }
        let now = app.clock.now_ms();
        let id = new_id();
        let payment = store::NewPayment {
            id: &id,
            user_id: &caller.user_id,
            package_id: &package.id,
            amount: package.cost,
            currency: &package.currency,
            period: &package.period,
            provider: SANDBOX,
            now,
        };
        store::insert_payment(app.users.database().pool(), &payment).await?;
        metrics::counter!("cadenza_payments_created_total").increment(1);
        let payment = app.payment(&id).await?.ok_or_else(payment_not_found)?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(Payment::from(payment)).map_err(anyhow::Error::from)?,
        ))
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
    if !store::claim_for_confirmation(app.users.database().pool(), &id, now).await? {
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
    let charged = store::ChargedCard {
        brand: card.brand,
        last4: &card.last4,
    };
    let status = match outcome {
        ChargeOutcome::Succeeded { provider_ref } => {
            let mut tx = app.users.database().begin().await?;
            store::record_charge(
                &mut *tx,
                &id,
                PaymentStatus::Succeeded,
                &provider_ref,
                &charged,
                now,
            )
            .await?;
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
            store::record_charge(
                pool,
                &id,
                PaymentStatus::Processing,
                &provider_ref,
                &charged,
                now,
            )
            .await?;
            metrics::counter!("cadenza_payments_total", "outcome" => "pending").increment(1);
            StatusCode::ACCEPTED
        }
        ChargeOutcome::Declined { code, message } => {
            store::record_decline(pool, &id, &charged, code, message, now).await?;
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
    let rows = store::payments_of(app.users.database().pool(), &user_id).await?;
    Ok(Json(rows.into_iter().map(Payment::from).collect()))
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

impl App {
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
        if !store::claim_key(pool, user_id, key, fingerprint, self.clock.now_ms()).await? {
            let record = store::key_record(pool, user_id, key).await?;
            if record.fingerprint != fingerprint {
                return Err(Error::invalid(
                    "Idempotency-Key",
                    "idempotency_key_reused",
                    "This Idempotency-Key was used with another request; use a new key.",
                ));
            }
            let Some((status, body)) = record.answer else {
                return Err(Error::conflict(
                    "idempotency_key_in_use",
                    "A request with this Idempotency-Key is still being processed; retry shortly.",
                ));
            };
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
            return Ok(response);
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
        store::store_key_answer(pool, user_id, key, status.as_u16(), &body.to_string()).await?;
        Ok((status, Json(body)).into_response())
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
