//! Events of the account-update service (topic `subscriptions`, keyed by user id).

use serde::{Deserialize, Serialize};

/// The topic of subscription events.
pub const TOPIC: &str = "subscriptions";

/// The facts shared by every subscription event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionChange {
    /// The subscription.
    pub subscription_id: String,
    /// Its holder.
    pub user_id: String,
    /// Its package.
    pub package_id: String,
    /// The payment that caused the change, if any.
    pub payment_id: Option<String>,
    /// Start, Unix ms.
    pub start_at_ms: i64,
    /// End, Unix ms.
    pub end_at_ms: i64,
}

/// A new subscription began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionActivated(pub SubscriptionChange);

event!(TOPIC, SubscriptionActivated, "subscription.activated", 1);

/// A subscription got another period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionExtended(pub SubscriptionChange);

event!(TOPIC, SubscriptionExtended, "subscription.extended", 1);

/// A subscription was cancelled (it runs to its end date, without renewal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionCanceled(pub SubscriptionChange);

event!(TOPIC, SubscriptionCanceled, "subscription.canceled", 1);

/// A subscription ended early (its payment was refunded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionEnded(pub SubscriptionChange);

event!(TOPIC, SubscriptionEnded, "subscription.ended", 1);
