//! The subscriptions' queries (User DB: `subscriptions`).

use serde::Serialize;
use sqlx::{AnyExecutor, Row};
use utoipa::ToSchema;

use crate::store::{StoreError, TextColumn};

// ---- Types -------------------------------------------------------------------------------

/// A subscription's state, as the `subscriptions.status` column stores it (`expired` is never
/// stored: it is `active` or `canceled` past `end_at`, read against the clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Runs to `end_at` and renews.
    Active,
    /// Runs to `end_at` without renewing.
    Canceled,
    /// Past its `end_at` (computed, not stored).
    Expired,
    /// Ended by a refund.
    Refunded,
}

impl TextColumn for SubscriptionStatus {
    // `Expired` is never stored.
    const ALL: &'static [Self] = &[Self::Active, Self::Canceled, Self::Refunded];
    const WHAT: &'static str = "subscription status";

    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
            Self::Refunded => "refunded",
        }
    }
}

impl SubscriptionStatus {
    /// Whether it gives access until `end_at`.
    pub(crate) fn in_force(self) -> bool {
        matches!(self, Self::Active | Self::Canceled)
    }
}

impl TryFrom<String> for SubscriptionStatus {
    type Error = StoreError;

    fn try_from(text: String) -> Result<Self, StoreError> {
        Self::parse(&text)
    }
}

/// A subscription as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct SubscriptionRow {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) package_id: String,
    pub(crate) payment_id: String,
    pub(crate) start_at: i64,
    pub(crate) end_at: i64,
    #[sqlx(try_from = "String")]
    pub(crate) status: SubscriptionStatus,
    pub(crate) auto_renew: i64,
    pub(crate) canceled_at: Option<i64>,
    pub(crate) created_at: i64,
}

pub(crate) const SUBSCRIPTION_COLUMNS: &str = "id, user_id, package_id, payment_id, start_at, end_at, status, auto_renew, canceled_at, created_at";

/// The subscription a user holds of a package and that is still running at `at` (active or
/// canceled but not yet ended), the latest-ending first.
pub(crate) async fn running_of_package<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
    package_id: &str,
    at: i64,
) -> Result<Option<SubscriptionRow>, StoreError> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE user_id = ? AND package_id = ? AND status IN ('active', 'canceled') \
         AND end_at > ? ORDER BY end_at DESC LIMIT 1"
    );
    Ok(sqlx::query_as(&sql)
        .bind(user_id)
        .bind(package_id)
        .bind(at)
        .fetch_optional(db)
        .await?)
}

/// A user's subscriptions in force at `now` (active or canceled, within their period).
pub(crate) async fn in_force<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
    now: i64,
) -> Result<Vec<SubscriptionRow>, StoreError> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE user_id = ? AND status IN ('active', 'canceled') \
         AND start_at <= ? AND end_at > ?"
    );
    Ok(sqlx::query_as(&sql)
        .bind(user_id)
        .bind(now)
        .bind(now)
        .fetch_all(db)
        .await?)
}

/// The user's active subscription at `now` that renews, the latest-ending first.
pub(crate) async fn active<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
    now: i64,
) -> Result<Option<SubscriptionRow>, StoreError> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE user_id = ? AND status = 'active' AND start_at <= ? AND end_at > ? \
         ORDER BY end_at DESC LIMIT 1"
    );
    Ok(sqlx::query_as(&sql)
        .bind(user_id)
        .bind(now)
        .bind(now)
        .fetch_optional(db)
        .await?)
}

/// Every subscription of a user, the latest-ending first.
pub(crate) async fn all_of<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
) -> Result<Vec<SubscriptionRow>, StoreError> {
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE user_id = ? ORDER BY end_at DESC, id DESC"
    );
    Ok(sqlx::query_as(&sql).bind(user_id).fetch_all(db).await?)
}

/// Inserts a new active, renewing subscription.
pub(crate) async fn insert<'e>(
    db: impl AnyExecutor<'e>,
    row: &SubscriptionRow,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO subscriptions (id, user_id, package_id, payment_id, start_at, end_at, status, auto_renew, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, 'active', 1, ?, ?)",
    )
    .bind(&row.id)
    .bind(&row.user_id)
    .bind(&row.package_id)
    .bind(&row.payment_id)
    .bind(row.start_at)
    .bind(row.end_at)
    .bind(now)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Extends a subscription to `end`, active and renewing again.
pub(crate) async fn extend<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    end: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE subscriptions SET end_at = ?, status = 'active', auto_renew = 1, canceled_at = NULL, updated_at = ? WHERE id = ?",
    )
    .bind(end)
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Cancels an active subscription (it runs to its end, unrenewed); `false` if it was no
/// longer active.
pub(crate) async fn cancel<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let changed = sqlx::query(
        "UPDATE subscriptions SET status = 'canceled', auto_renew = 0, canceled_at = ?, updated_at = ? WHERE id = ? AND status = 'active'",
    )
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(changed.rows_affected() == 1)
}

/// Records which period of a subscription a payment bought.
pub(crate) async fn record_period<'e>(
    db: impl AnyExecutor<'e>,
    payment_id: &str,
    subscription_id: &str,
    start: i64,
    end: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO subscription_payments (payment_id, subscription_id, start_at, end_at, applied_at) VALUES (?, ?, ?, ?, ?)")
        .bind(payment_id)
        .bind(subscription_id)
        .bind(start)
        .bind(end)
        .bind(now)
        .execute(db)
        .await?;
    Ok(())
}

/// Whether a payment has already bought a period.
pub(crate) async fn is_applied<'e>(
    db: impl AnyExecutor<'e>,
    payment_id: &str,
) -> Result<bool, StoreError> {
    Ok(
        sqlx::query("SELECT subscription_id FROM subscription_payments WHERE payment_id = ?")
            .bind(payment_id)
            .fetch_optional(db)
            .await?
            .is_some(),
    )
}

/// The subscription a payment bought a period of.
pub(crate) struct PaidSubscription {
    pub(crate) id: String,
    pub(crate) package_id: String,
    pub(crate) start_at: i64,
}

/// The subscription `payment_id` paid for, if it bought one.
pub(crate) async fn paid_by<'e>(
    db: impl AnyExecutor<'e>,
    payment_id: &str,
) -> Result<Option<PaidSubscription>, StoreError> {
    let row = sqlx::query(
        "SELECT s.id AS id, s.package_id AS package_id, s.start_at AS start_at FROM subscription_payments sp \
         JOIN subscriptions s ON s.id = sp.subscription_id WHERE sp.payment_id = ?",
    )
    .bind(payment_id)
    .fetch_optional(db)
    .await?;
    row.map(|row| {
        Ok(PaidSubscription {
            id: row.try_get("id")?,
            package_id: row.try_get("package_id")?,
            start_at: row.try_get("start_at")?,
        })
    })
    .transpose()
}

/// Ends a subscription whose payment was refunded, now.
pub(crate) async fn end_refunded<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE subscriptions SET status = 'refunded', end_at = ?, auto_renew = 0, updated_at = ? WHERE id = ?",
    )
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}
