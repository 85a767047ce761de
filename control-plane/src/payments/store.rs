//! The payments' queries (User DB: `payments`, `idempotency_keys`).

use serde::{Deserialize, Serialize};
use sqlx::{AnyExecutor, Row};
use utoipa::ToSchema;

use crate::store::{StoreError, TextColumn, inserted, optional_long_text};

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
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) package_id: String,
    pub(crate) amount: i64,
    pub(crate) currency: String,
    pub(crate) period: String,
    #[sqlx(try_from = "String")]
    pub(crate) status: PaymentStatus,
    pub(crate) provider: String,
    pub(crate) provider_ref: Option<String>,
    pub(crate) card_brand: Option<String>,
    pub(crate) card_last4: Option<String>,
    pub(crate) failure_code: Option<String>,
    pub(crate) failure_message: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) succeeded_at: Option<i64>,
    pub(crate) refunded_at: Option<i64>,
}

pub(crate) const PAYMENT_COLUMNS: &str = "id, user_id, package_id, amount, currency, period, status, provider, provider_ref, card_brand, \
     card_last4, failure_code, failure_message, created_at, updated_at, succeeded_at, refunded_at";

/// One payment.
pub(crate) async fn payment<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
) -> Result<Option<PaymentRow>, StoreError> {
    let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ?");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(db).await?)
}

/// A user's payments, newest first.
pub(crate) async fn payments_of<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
) -> Result<Vec<PaymentRow>, StoreError> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE user_id = ? ORDER BY created_at DESC, id DESC"
    );
    Ok(sqlx::query_as(&sql).bind(user_id).fetch_all(db).await?)
}

/// A payment about to be created at checkout, waiting for a card.
pub(crate) struct NewPayment<'a> {
    pub(crate) id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) package_id: &'a str,
    pub(crate) amount: i64,
    pub(crate) currency: &'a str,
    pub(crate) period: &'a str,
    pub(crate) provider: &'a str,
    pub(crate) now: i64,
}

/// Inserts a payment in `requires_confirmation`.
pub(crate) async fn insert_payment<'e>(
    db: impl AnyExecutor<'e>,
    payment: &NewPayment<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO payments (id, user_id, package_id, amount, currency, period, status, provider, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(payment.id)
    .bind(payment.user_id)
    .bind(payment.package_id)
    .bind(payment.amount)
    .bind(payment.currency)
    .bind(payment.period)
    .bind(PaymentStatus::RequiresConfirmation.as_str())
    .bind(payment.provider)
    .bind(payment.now)
    .bind(payment.now)
    .execute(db)
    .await?;
    Ok(())
}

/// Moves a payment that waits for a card (or failed) to `confirming`; `false` if another
/// confirmation holds it or it is settled.
pub(crate) async fn claim_for_confirmation<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let claimed = sqlx::query(
        "UPDATE payments SET status = 'confirming', updated_at = ? WHERE id = ? AND status IN ('requires_confirmation', 'failed')",
    )
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// The card a confirmation charged, as the payment records it.
pub(crate) struct ChargedCard<'a> {
    pub(crate) brand: &'a str,
    pub(crate) last4: &'a str,
}

/// Records the provider's answer to a charge: `succeeded` (with `succeeded_at`) or
/// `processing` (the provider confirms later by webhook).
pub(crate) async fn record_charge<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    status: PaymentStatus,
    provider_ref: &str,
    card: &ChargedCard<'_>,
    now: i64,
) -> Result<(), StoreError> {
    let succeeded_at = (status == PaymentStatus::Succeeded).then_some(now);
    sqlx::query(
        "UPDATE payments SET status = ?, provider_ref = ?, card_brand = ?, card_last4 = ?, failure_code = NULL, \
         failure_message = NULL, succeeded_at = ?, updated_at = ? WHERE id = ?",
    )
    .bind(status.as_str())
    .bind(provider_ref)
    .bind(card.brand)
    .bind(card.last4)
    .bind(succeeded_at)
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Records a refused charge (`failed`, with the provider's code and message).
pub(crate) async fn record_decline<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    card: &ChargedCard<'_>,
    code: &str,
    message: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE payments SET status = 'failed', card_brand = ?, card_last4 = ?, failure_code = ?, failure_message = ?, \
         updated_at = ? WHERE id = ?",
    )
    .bind(card.brand)
    .bind(card.last4)
    .bind(code)
    .bind(message)
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// A webhook's verdict on a `processing` payment: `succeeded`, or `failed` with `failure`.
pub(crate) async fn settle_processing<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    failure: Option<(&str, &str)>,
    now: i64,
) -> Result<(), StoreError> {
    match failure {
        None => sqlx::query(
            "UPDATE payments SET status = 'succeeded', succeeded_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(now)
        .bind(now)
        .bind(id),
        Some((code, message)) => sqlx::query(
            "UPDATE payments SET status = 'failed', failure_code = ?, failure_message = ?, updated_at = ? WHERE id = ?",
        )
        .bind(code)
        .bind(message)
        .bind(now)
        .bind(id),
    }
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a `succeeded` payment `refunded`; `false` if it was no longer `succeeded`.
pub(crate) async fn mark_refunded<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let changed = sqlx::query(
        "UPDATE payments SET status = 'refunded', refunded_at = ?, updated_at = ? WHERE id = ? AND status = 'succeeded'",
    )
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(changed.rows_affected() == 1)
}

/// Fails confirmations interrupted by a crash (`confirming` since before `before`).
pub(crate) async fn fail_interrupted<'e>(
    db: impl AnyExecutor<'e>,
    before: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE payments SET status = 'failed', failure_code = 'interrupted', \
         failure_message = 'The confirmation was interrupted; nothing was charged. Confirm again.', updated_at = ? \
         WHERE status = 'confirming' AND updated_at < ?",
    )
    .bind(now)
    .bind(before)
    .execute(db)
    .await?;
    Ok(())
}

/// Records a provider webhook's event id; `false` if it was seen before (a redelivery).
pub(crate) async fn record_webhook<'e>(
    db: impl AnyExecutor<'e>,
    provider: &str,
    event_id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let recorded = sqlx::query(
        "INSERT INTO webhook_events (provider, event_id, received_at) VALUES (?, ?, ?)",
    )
    .bind(provider)
    .bind(event_id)
    .bind(now)
    .execute(db)
    .await;
    inserted(recorded)
}

// ---- Idempotency keys ----------------------------------------------------------------------

/// Claims an idempotency key for a request with this fingerprint; `false` if the key exists.
pub(crate) async fn claim_key<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
    key: &str,
    fingerprint: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, idem_key, request_hash, created_at) VALUES (?, ?, ?, ?)",
    )
    .bind(user_id)
    .bind(key)
    .bind(fingerprint)
    .bind(now)
    .execute(db)
    .await;
    inserted(result)
}

/// What an idempotency key holds: the fingerprint of the request that claimed it, and its
/// answer once there is one.
pub(crate) struct KeyRecord {
    pub(crate) fingerprint: String,
    pub(crate) answer: Option<(i64, String)>,
}

/// The record of a claimed key.
pub(crate) async fn key_record<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
    key: &str,
) -> Result<KeyRecord, StoreError> {
    let row = sqlx::query(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys WHERE user_id = ? AND idem_key = ?",
    )
    .bind(user_id)
    .bind(key)
    .fetch_one(db)
    .await?;
    let status: Option<i64> = row.try_get("response_status")?;
    let answer = match status {
        Some(status) => optional_long_text(&row, "response_body")?.map(|body| (status, body)),
        None => None,
    };
    Ok(KeyRecord {
        fingerprint: row.try_get("request_hash")?,
        answer,
    })
}

/// Stores the answer a claimed key replays.
pub(crate) async fn store_key_answer<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
    key: &str,
    status: u16,
    body: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = ?, response_body = ? WHERE user_id = ? AND idem_key = ?",
    )
    .bind(i64::from(status))
    .bind(body)
    .bind(user_id)
    .bind(key)
    .execute(db)
    .await?;
    Ok(())
}

/// Forgets one key.
pub(crate) async fn delete_key<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
    key: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM idempotency_keys WHERE user_id = ? AND idem_key = ?")
        .bind(user_id)
        .bind(key)
        .execute(db)
        .await?;
    Ok(())
}

/// Forgets keys claimed before `before`.
pub(crate) async fn delete_keys_before<'e>(
    db: impl AnyExecutor<'e>,
    before: i64,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
        .bind(before)
        .execute(db)
        .await?;
    Ok(())
}

/// Whether a payment exists and has succeeded (not refunded since).
pub(crate) async fn has_succeeded<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
) -> Result<bool, StoreError> {
    let status: Option<String> = sqlx::query("SELECT status FROM payments WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await?
        .map(|row| row.try_get("status"))
        .transpose()?;
    Ok(status.as_deref() == Some(PaymentStatus::Succeeded.as_str()))
}
