//! The payment service: checkout with idempotency keys, confirmation through the provider,
//! provider webhooks, and refunds.
//!
//! Money moves exactly once in effect: a checkout retried with the same `Idempotency-Key`
//! replays the first answer; a payment is charged only from `requires_confirmation` or
//! `failed`, through an atomic move to `confirming`; and the move to `succeeded` writes the
//! `payment.succeeded` event in the same transaction, whichever road (synchronous charge or
//! webhook) gets there first, and only once.
use crate::payments::store::PaymentRow;

mod http;
pub mod store;

pub use store::PaymentStatus;

pub(crate) use http::routes;

pub mod provider;

use events::payments::{PaymentRefunded, PaymentSucceeded};
use events::subscriptions::{SubscriptionChange, SubscriptionEnded};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::App;
use crate::auth::{AuthUser, Role};
use crate::bus;
use crate::calendar::rfc3339;
use crate::error::{Error, Result};
use crate::store::StoreError;

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
        store::payment(self.users.database().pool(), id).await
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

    /// Applies a verified webhook in one transaction. The outer `Result` is the store's, the
    /// inner one a refusal to report to the provider.
    async fn apply_webhook(
        &self,
        provider: &str,
        event: &WebhookEvent,
    ) -> Result<Result<&'static str>, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.users.database().begin().await?;
        if !store::record_webhook(&mut *tx, provider, &event.id, now).await? {
            return Ok(Ok("duplicate"));
        }
        let Some(payment) = store::payment(&mut *tx, &event.data.payment_id).await? else {
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
                store::settle_processing(&mut *tx, &payment.id, None, now).await?;
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
                let code = event
                    .data
                    .failure_code
                    .as_deref()
                    .unwrap_or("card_declined");
                let failure = (code, "The card was declined.");
                store::settle_processing(&mut *tx, &payment.id, Some(failure), now).await?;
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
        let mut tx = self.users.database().begin().await?;
        if !store::mark_refunded(&mut *tx, &payment.id, now).await? {
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
        let paid = crate::subscriptions::store::paid_by(&mut *tx, &payment.id).await?;
        if let Some(subscription) = paid {
            crate::subscriptions::store::end_refunded(&mut *tx, &subscription.id, now).await?;
            let ended = SubscriptionEnded(SubscriptionChange {
                subscription_id: subscription.id,
                user_id: payment.user_id.clone(),
                package_id: subscription.package_id,
                payment_id: Some(payment.id.clone()),
                start_at_ms: subscription.start_at,
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
        store::delete_keys_before(pool, now - ttl_ms).await?;
        store::fail_interrupted(pool, now - 5 * 60_000, now).await?;
        Ok(())
    }
}

/// Deletes an idempotency key whose operation decided nothing, retrying briefly.
async fn release_idempotency_key(pool: &sqlx::AnyPool, user_id: &str, key: &str) {
    let mut attempt = 0;
    loop {
        match store::delete_key(pool, user_id, key).await {
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

fn payment_not_found() -> Error {
    Error::not_found("payment_not_found", "No such payment.")
}
