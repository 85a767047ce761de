//! Events of the payment service (topic `payments`, keyed by user id).

use serde::{Deserialize, Serialize};

/// The topic of payment events.
pub const TOPIC: &str = "payments";

/// A payment was captured. The account-update service turns it into subscription time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSucceeded {
    /// The payment.
    pub payment_id: String,
    /// Who paid.
    pub user_id: String,
    /// What was bought.
    pub package_id: String,
    /// Amount in the currency's minor unit.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// The package's billing period at purchase (`week`, `month`, `year`).
    pub period: String,
    /// The payment provider.
    pub provider: String,
    /// When the provider confirmed it, Unix ms.
    pub succeeded_at_ms: i64,
}

event!(TOPIC, PaymentSucceeded, "payment.succeeded", 1);

/// A payment was refunded by an administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    /// The payment.
    pub payment_id: String,
    /// Who had paid.
    pub user_id: String,
    /// Amount refunded, minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// When, Unix ms.
    pub refunded_at_ms: i64,
}

event!(TOPIC, PaymentRefunded, "payment.refunded", 1);
