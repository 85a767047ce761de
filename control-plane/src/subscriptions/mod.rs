//! The account-update service and what it maintains: subscriptions and entitlements.
//!
//! The account-update consumer group turns each `payment.succeeded` event into subscription
//! time: a new subscription from the payment's time, or, when the user already holds an
//! active subscription to the same package, one more period from its current end. Exactly
//! one effect per payment, however often and in whatever order events arrive: the event id
//! is recorded in `bus_processed` and the payment in `subscription_payments` (its primary
//! key) in the same transaction as the change, and a payment refunded before its event is
//! processed buys nothing.
//!
//! Entitlements are evaluated against the clock at each read (no expiry job), and cached no
//! longer than until the entitlement ends.
use crate::subscriptions::store::SubscriptionRow;

mod http;
pub mod store;

pub use store::SubscriptionStatus;

pub(crate) use http::routes;

use std::sync::Arc;
use std::time::Duration;

use events::Envelope;
use events::payments::PaymentSucceeded;
use events::subscriptions::{SubscriptionActivated, SubscriptionChange, SubscriptionExtended};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::App;
use crate::bus::{self, Handler, HandlerError};
use crate::calendar::rfc3339;
use crate::error::{Error, Result};
use crate::store::{StoreError, new_id, retry_on_conflict};

/// The consumer group of the account-update service.
pub const ACCOUNT_UPDATE: &str = "account-update";

/// What the user may do now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Entitlements {
    /// The package in force: the paid one subscribed to, else the free one.
    package_id: String,
    package_name: String,
    /// `subscription` or `free`.
    source: String,
    subscription_id: Option<String>,
    /// Ads per hour of listening under this package (0: no ads).
    free_ads_per_hour: i64,
    /// When this entitlement ends (null for the free package).
    until: Option<String>,
    #[serde(skip)]
    until_ms: Option<i64>,
}

impl Entitlements {
    /// Ads per hour the user hears.
    pub fn free_ads_per_hour(&self) -> i64 {
        self.free_ads_per_hour
    }
}

fn change(row: &SubscriptionRow, payment_id: Option<&str>) -> SubscriptionChange {
    SubscriptionChange {
        subscription_id: row.id.clone(),
        user_id: row.user_id.clone(),
        package_id: row.package_id.clone(),
        payment_id: payment_id.map(str::to_owned),
        start_at_ms: row.start_at,
        end_at_ms: row.end_at,
    }
}

fn entitlements_key(user_id: &str) -> String {
    format!("entitlements:{user_id}")
}

fn entitlements_generation_key(user_id: &str) -> String {
    format!("entitlements-generation:{user_id}")
}

/// How long an entitlements generation is kept: twice the longest entry's life, so no entry
/// computed under an older generation outlives the newer one.
const ENTITLEMENTS_GENERATION_TTL: Duration = Duration::from_secs(600);

/// The account-update consumer's handler.
pub fn account_update_handler(app: App) -> Handler {
    Arc::new(move |envelope: Envelope| {
        let app = app.clone();
        Box::pin(async move { app.apply_payment_event(envelope).await })
    })
}

impl App {
    /// Applies one event of the `payments` topic for the account-update group.
    pub async fn apply_payment_event(&self, envelope: Envelope) -> Result<(), HandlerError> {
        if !envelope.is::<PaymentSucceeded>() {
            return Ok(());
        }
        let event = envelope
            .decode::<PaymentSucceeded>()
            .map_err(HandlerError::upstream)?;
        let event_id = envelope.id.to_string();
        let applied = retry_on_conflict(|| self.apply_payment(&event_id, &event)).await?;
        if applied {
            self.bus.notify();
            self.forget_entitlements(&event.user_id).await;
        }
        Ok(())
    }

    /// One transaction: dedupe, then create or extend. `Ok(true)` if it changed anything.
    async fn apply_payment(
        &self,
        event_id: &str,
        event: &PaymentSucceeded,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.users.database().begin().await?;
        if !bus::mark_processed(&mut tx, ACCOUNT_UPDATE, event_id, now).await? {
            return Ok(false);
        }
        let paid = crate::payments::store::has_succeeded(&mut *tx, &event.payment_id).await?;
        let already = store::is_applied(&mut *tx, &event.payment_id).await?;
        if !paid || already {
            // Refunded before we got here, unknown, or already applied: nothing to buy.
            tx.commit().await?;
            return Ok(false);
        }
        let Some(_) = crate::calendar::add_period(0, &event.period) else {
            return Err(StoreError::Corrupt(format!(
                "payment {} has unknown period {:?}",
                event.payment_id, event.period
            )));
        };
        let at = now.max(event.succeeded_at_ms);
        let current =
            store::running_of_package(&mut *tx, &event.user_id, &event.package_id, at).await?;
        match current {
            Some(mut row) => {
                let start = row.end_at;
                let end = crate::calendar::add_period(start, &event.period).unwrap_or(start);
                store::extend(&mut *tx, &row.id, end, now).await?;
                store::record_period(&mut *tx, &event.payment_id, &row.id, start, end, now).await?;
                row.end_at = end;
                let extended = SubscriptionExtended(change(&row, Some(&event.payment_id)));
                bus::append(&mut tx, &event.user_id, &extended, now).await?;
            }
            None => {
                let start = event.succeeded_at_ms;
                let end = crate::calendar::add_period(start, &event.period).unwrap_or(start);
                let row = SubscriptionRow {
                    id: new_id(),
                    user_id: event.user_id.clone(),
                    package_id: event.package_id.clone(),
                    payment_id: event.payment_id.clone(),
                    start_at: start,
                    end_at: end,
                    status: SubscriptionStatus::Active,
                    auto_renew: 1,
                    canceled_at: None,
                    created_at: now,
                };
                store::insert(&mut *tx, &row, now).await?;
                store::record_period(&mut *tx, &event.payment_id, &row.id, start, end, now).await?;
                let activated = SubscriptionActivated(change(&row, Some(&event.payment_id)));
                bus::append(&mut tx, &event.user_id, &activated, now).await?;
            }
        }
        tx.commit().await?;
        metrics::counter!("cadenza_subscription_periods_applied_total").increment(1);
        Ok(true)
    }

    /// Drops the cached entitlements of a user. A new generation is set first, so that an
    /// entry computed from the database before the change and written after this call (a
    /// reader racing the change) is never served: entries carry the generation they were
    /// computed under.
    pub(crate) async fn forget_entitlements(&self, user_id: &str) {
        self.cache
            .set_json(
                &entitlements_generation_key(user_id),
                &crate::store::new_id(),
                ENTITLEMENTS_GENERATION_TTL,
            )
            .await;
        self.cache.delete(&[entitlements_key(user_id)]).await;
    }

    /// The entitlements in force now: the paid subscription with the fewest ads (then the
    /// latest end), else the free package.
    pub async fn entitlements(&self, user_id: &str) -> Result<Entitlements> {
        let now = self.clock.now_ms();
        let key = entitlements_key(user_id);
        let generation: Option<String> = self
            .cache
            .get_json(&entitlements_generation_key(user_id))
            .await;
        if let Some(cached) = self
            .cache
            .get_json::<(Entitlements, Option<i64>, Option<String>)>(&key)
            .await
            && cached.1.is_none_or(|until| until > now)
            && cached.2 == generation
        {
            return Ok(Entitlements {
                until_ms: cached.1,
                ..cached.0
            });
        }
        let rows = store::in_force(self.users.database().pool(), user_id, now).await?;
        let mut best: Option<Entitlements> = None;
        for row in rows {
            let Some(package) = self.inventory.package(&row.package_id).await? else {
                continue;
            };
            let candidate = Entitlements {
                package_id: package.id,
                package_name: package.name,
                source: "subscription".to_owned(),
                subscription_id: Some(row.id),
                free_ads_per_hour: package.free_ads_per_hour,
                until: Some(rfc3339(row.end_at)),
                until_ms: Some(row.end_at),
            };
            let better = best.as_ref().is_none_or(|best| {
                (
                    candidate.free_ads_per_hour,
                    -candidate.until_ms.unwrap_or(0),
                ) < (best.free_ads_per_hour, -best.until_ms.unwrap_or(0))
            });
            if better {
                best = Some(candidate);
            }
        }
        let entitlements = match best {
            Some(best) => best,
            None => {
                let free = self
                    .inventory
                    .packages(false)
                    .await?
                    .into_iter()
                    .find(|package| package.cost == 0)
                    .ok_or_else(|| {
                        Error::Internal(anyhow::anyhow!("no free package is on sale"))
                    })?;
                Entitlements {
                    package_id: free.id,
                    package_name: free.name,
                    source: "free".to_owned(),
                    subscription_id: None,
                    free_ads_per_hour: free.free_ads_per_hour,
                    until: None,
                    until_ms: None,
                }
            }
        };
        let ttl = match entitlements.until_ms {
            Some(until) => Duration::from_millis((until - now).clamp(1, 300_000) as u64),
            None => Duration::from_secs(300),
        };
        self.cache
            .set_json(
                &key,
                &(entitlements.clone(), entitlements.until_ms, generation),
                ttl,
            )
            .await;
        Ok(entitlements)
    }

    async fn subscriptions_of(&self, user_id: &str) -> Result<Subscriptions> {
        let now = self.clock.now_ms();
        let rows = store::all_of(self.users.database().pool(), user_id).await?;
        let mut subscriptions = Vec::with_capacity(rows.len());
        let mut current = None;
        for row in rows {
            let package = self.inventory.package(&row.package_id).await?;
            let in_force = row.status.in_force() && row.start_at <= now && now < row.end_at;
            let status = if row.status.in_force() && now >= row.end_at {
                SubscriptionStatus::Expired
            } else {
                row.status
            };
            let view = Subscription {
                id: row.id,
                package_id: row.package_id,
                package_name: package.map(|package| package.name),
                status,
                start_at: rfc3339(row.start_at),
                end_at: rfc3339(row.end_at),
                auto_renew: row.auto_renew != 0,
                canceled_at: row.canceled_at.map(rfc3339),
                payment_id: row.payment_id,
                created_at: rfc3339(row.created_at),
            };
            if in_force && current.is_none() {
                current = Some(view.id.clone());
            }
            subscriptions.push(view);
        }
        let current = current.and_then(|id| subscriptions.iter().find(|s| s.id == id).cloned());
        Ok(Subscriptions {
            current,
            subscriptions,
        })
    }
}

/// A subscription.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscription {
    id: String,
    package_id: String,
    package_name: Option<String>,
    /// `active`, `canceled` (runs to `end_at` without renewal), `expired` or `refunded`,
    /// evaluated against the clock now.
    status: SubscriptionStatus,
    start_at: String,
    end_at: String,
    auto_renew: bool,
    canceled_at: Option<String>,
    /// The payment that started it.
    payment_id: String,
    created_at: String,
}

/// A user's subscriptions, current first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Subscriptions {
    /// The paid subscription in force now, if any.
    current: Option<Subscription>,
    /// Every subscription, newest first.
    subscriptions: Vec<Subscription>,
}
