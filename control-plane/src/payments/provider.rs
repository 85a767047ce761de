//! The payment provider interface, the sandbox provider shipped with Cadenza, and provider
//! webhook signatures. No I/O: the sandbox queues its webhooks for the service to deliver.
//!
//! The sandbox behaves like a real gateway's test mode, with the card numbers payment
//! developers know from Stripe: `4242 4242 4242 4242` succeeds, `4000 0000 0000 0002` is
//! declined, `4000 0000 0000 9995` fails for insufficient funds, and `4000 0000 0000 3220`
//! succeeds asynchronously — the charge is pending and a signed webhook confirms it later.
//! Other valid test cards of the common brands succeed; any other number is declined, as a
//! test-mode gateway declines real cards.

use std::fmt;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::error::FieldError;

/// Card details as the client sends them. Never stored, never logged: `Debug` shows only the
/// brand and last four digits.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Card {
    /// The card number; spaces and dashes are ignored.
    pub number: String,
    /// 1 to 12.
    pub exp_month: u32,
    /// Four digits.
    pub exp_year: u32,
    /// Three or four digits.
    pub cvc: String,
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = digits(&self.number);
        f.debug_struct("Card")
            .field("brand", &brand(&digits))
            .field("last4", &last4(&digits))
            .finish_non_exhaustive()
    }
}

/// A card that passed validation: only what may be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCard {
    /// Only digits; held in memory for the charge, never stored.
    digits: String,
    /// `visa`, `mastercard`, `amex`, … or `unknown`.
    pub brand: &'static str,
    /// The last four digits.
    pub last4: String,
}

fn digits(number: &str) -> String {
    number.chars().filter(|c| !matches!(c, ' ' | '-')).collect()
}

fn last4(digits: &str) -> String {
    digits
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

/// The brand by the card number's prefix.
pub fn brand(digits: &str) -> &'static str {
    let prefix2: u32 = digits.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let prefix4: u32 = digits.get(..4).and_then(|p| p.parse().ok()).unwrap_or(0);
    if digits.starts_with('4') {
        "visa"
    } else if (51..=55).contains(&prefix2) || (2221..=2720).contains(&prefix4) {
        "mastercard"
    } else if prefix2 == 34 || prefix2 == 37 {
        "amex"
    } else if digits.starts_with("6011") || digits.starts_with("65") {
        "discover"
    } else {
        "unknown"
    }
}

/// The Luhn checksum every card number carries.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0;
    for (index, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if index % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum % 10 == 0
}

impl Card {
    /// Checks number, expiry (against `now_year`/`now_month`) and CVC; field errors are named
    /// `card.number`, `card.exp_month`, ….
    pub fn check(&self, now_year: u32, now_month: u32) -> Result<CheckedCard, Vec<FieldError>> {
        let mut errors = Vec::new();
        let digits = digits(&self.number);
        if !(12..=19).contains(&digits.len()) || !luhn_valid(&digits) {
            errors.push(FieldError::new(
                "card.number",
                "invalid",
                "The card number is not valid.",
            ));
        }
        if !(1..=12).contains(&self.exp_month) {
            errors.push(FieldError::new(
                "card.exp_month",
                "invalid",
                "Between 1 and 12.",
            ));
        } else if self.exp_year < now_year
            || (self.exp_year == now_year && self.exp_month < now_month)
        {
            errors.push(FieldError::new(
                "card.exp_year",
                "expired",
                "The card has expired.",
            ));
        } else if self.exp_year > now_year + 50 {
            errors.push(FieldError::new(
                "card.exp_year",
                "invalid",
                "The expiry year is not plausible.",
            ));
        }
        if !(3..=4).contains(&self.cvc.len()) || !self.cvc.chars().all(|c| c.is_ascii_digit()) {
            errors.push(FieldError::new(
                "card.cvc",
                "invalid",
                "Three or four digits.",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CheckedCard {
            brand: brand(&digits),
            last4: last4(&digits),
            digits,
        })
    }
}

/// What a charge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Captured now.
    Succeeded {
        /// The provider's id of the charge.
        provider_ref: String,
    },
    /// Accepted, to be confirmed later by a webhook.
    Pending {
        /// The provider's id of the charge.
        provider_ref: String,
    },
    /// Refused.
    Declined {
        /// Stable code: `card_declined`, `insufficient_funds`, …
        code: &'static str,
        /// For the card holder.
        message: &'static str,
    },
}

/// A webhook the provider sends: body and signature header, exactly as on the wire.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    /// The raw JSON body.
    pub body: String,
    /// The `Cadenza-Signature` header value (`t=…,v1=…`).
    pub signature: String,
}

/// The sandbox gateway.
#[derive(Debug, Default)]
pub struct Sandbox {
    outbox: Mutex<Vec<WebhookDelivery>>,
}

/// The name under which the sandbox's payments and webhooks are recorded.
pub const SANDBOX: &str = "sandbox";

impl Sandbox {
    /// Charges `amount` to `card` for `payment_id`. For the asynchronous test card, queues a
    /// signed `payment_intent.succeeded` webhook, to be sent with [`Sandbox::take_webhooks`].
    pub fn charge(
        &self,
        payment_id: &str,
        amount: i64,
        currency: &str,
        card: &CheckedCard,
        secret: &[u8],
        now_secs: i64,
    ) -> ChargeOutcome {
        let provider_ref = format!("ch_{}", uuid::Uuid::new_v4().simple());
        match card.digits.as_str() {
            "4000000000000002" => ChargeOutcome::Declined {
                code: "card_declined",
                message: "The card was declined.",
            },
            "4000000000009995" => ChargeOutcome::Declined {
                code: "insufficient_funds",
                message: "The card has insufficient funds.",
            },
            "4000000000003220" => {
                let body = serde_json::json!({
                    "id": format!("evt_{}", uuid::Uuid::new_v4().simple()),
                    "type": "payment_intent.succeeded",
                    "data": {"payment_id": payment_id, "provider_ref": provider_ref, "amount": amount, "currency": currency},
                })
                .to_string();
                let signature = sign_webhook(secret, now_secs, &body);
                self.outbox
                    .lock()
                    .expect("sandbox lock")
                    .push(WebhookDelivery { body, signature });
                ChargeOutcome::Pending { provider_ref }
            }
            "4242424242424242" | "4000056655665556" | "5555555555554444" | "2223003122003222"
            | "5200828282828210" | "378282246310005" | "371449635398431" | "6011111111111117" => {
                ChargeOutcome::Succeeded { provider_ref }
            }
            _ => ChargeOutcome::Declined {
                code: "card_declined",
                message: "The card was declined: the sandbox takes test cards only.",
            },
        }
    }

    /// Takes the webhooks waiting to be sent.
    pub fn take_webhooks(&self) -> Vec<WebhookDelivery> {
        std::mem::take(&mut *self.outbox.lock().expect("sandbox lock"))
    }
}

/// The `t=…,v1=…` header for `body` signed at `timestamp` (Stripe's scheme:
/// HMAC-SHA256 over `"{t}.{body}"`, hex).
pub fn sign_webhook(secret: &[u8], timestamp: i64, body: &str) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

fn mac(secret: &[u8], timestamp: i64, body: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Why a webhook signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is missing or not `t=…,v1=…`.
    #[error("the signature header is missing or malformed")]
    Malformed,
    /// The timestamp is outside the tolerance (a stale or replayed delivery).
    #[error("the signature timestamp is outside the tolerance")]
    Stale,
    /// No `v1` signature matches.
    #[error("no signature matches the body")]
    Mismatch,
}

/// Verifies a webhook's signature header against its raw body, in constant time, accepting
/// any of several `v1` values (as during a secret rotation) and a timestamp within
/// `tolerance_secs` of `now_secs`.
pub fn verify_webhook(
    secret: &[u8],
    header: Option<&str>,
    body: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Malformed)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => {
                signatures.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?)
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_secs - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, timestamp, body);
    let matched = signatures
        .iter()
        .fold(subtle::Choice::from(0), |any, candidate| {
            any | candidate.as_slice().ct_eq(&expected)
        });
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(number: &str) -> Card {
        Card {
            number: number.into(),
            exp_month: 12,
            exp_year: 2030,
            cvc: "123".into(),
        }
    }

    #[test]
    fn validates_cards() {
        let checked = card("4242 4242 4242 4242").check(2026, 11).unwrap();
        assert_eq!((checked.brand, checked.last4.as_str()), ("visa", "4242"));
        assert_eq!(
            card("5555-5555-5555-4444").check(2026, 11).unwrap().brand,
            "mastercard"
        );
        assert_eq!(
            card("378282246310005").check(2026, 11).unwrap().brand,
            "amex"
        );
        let errors = card("4242424242424241").check(2026, 11).unwrap_err();
        assert_eq!(errors[0].field, "card.number");
        let expired = Card {
            exp_year: 2026,
            exp_month: 10,
            ..card("4242424242424242")
        };
        assert_eq!(expired.check(2026, 11).unwrap_err()[0].code, "expired");
        let bad_cvc = Card {
            cvc: "12a".into(),
            ..card("4242424242424242")
        };
        assert_eq!(bad_cvc.check(2026, 11).unwrap_err()[0].field, "card.cvc");
    }

    #[test]
    fn debug_never_shows_the_number() {
        let shown = format!("{:?}", card("4242424242424242"));
        assert!(!shown.contains("42424242"), "{shown}");
        assert!(shown.contains("4242") && shown.contains("visa"), "{shown}");
        assert!(!shown.contains("123"), "{shown}");
    }

    #[test]
    fn sandbox_behaves_like_test_mode() {
        let sandbox = Sandbox::default();
        let charge = |number: &str| {
            sandbox.charge(
                "p1",
                999,
                "EUR",
                &card(number).check(2026, 1).unwrap(),
                b"k",
                100,
            )
        };
        assert!(matches!(
            charge("4242424242424242"),
            ChargeOutcome::Succeeded { .. }
        ));
        assert!(matches!(
            charge("4000000000000002"),
            ChargeOutcome::Declined {
                code: "card_declined",
                ..
            }
        ));
        assert!(matches!(
            charge("4000000000009995"),
            ChargeOutcome::Declined {
                code: "insufficient_funds",
                ..
            }
        ));
        assert!(sandbox.take_webhooks().is_empty());
        assert!(matches!(
            charge("4000000000003220"),
            ChargeOutcome::Pending { .. }
        ));
        let hooks = sandbox.take_webhooks();
        assert_eq!(hooks.len(), 1);
        verify_webhook(b"k", Some(&hooks[0].signature), &hooks[0].body, 100, 300).unwrap();
        assert!(hooks[0].body.contains("payment_intent.succeeded"));
        // A Luhn-valid card that is not a test card is declined.
        assert!(matches!(
            charge("4111111111111111"),
            ChargeOutcome::Declined { .. }
        ));
    }

    #[test]
    fn webhook_signatures() {
        let header = sign_webhook(b"secret", 1_000, "{\"a\":1}");
        assert_eq!(
            verify_webhook(b"secret", Some(&header), "{\"a\":1}", 1_100, 300),
            Ok(())
        );
        assert_eq!(
            verify_webhook(b"secret", Some(&header), "{\"a\":2}", 1_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_webhook(b"other", Some(&header), "{\"a\":1}", 1_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_webhook(b"secret", Some(&header), "{\"a\":1}", 1_301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_webhook(b"secret", Some(&header), "{\"a\":1}", 699, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_webhook(b"secret", None, "{}", 0, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_webhook(b"secret", Some("t=1"), "{}", 1, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_webhook(b"secret", Some("v1=zz,t=1"), "{}", 1, 300),
            Err(SignatureError::Malformed)
        );
        // Several v1 values (secret rotation): any match is enough.
        let rotated = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(
            verify_webhook(b"secret", Some(&rotated), "{\"a\":1}", 1_000, 300),
            Ok(())
        );
    }
}
