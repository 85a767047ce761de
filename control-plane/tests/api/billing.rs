//! Subscriptions paid through the payment service: checkout, idempotency, cards, webhooks,
//! the account-update consumer, entitlements, cancellation and refunds — and the faults that
//! must not double-charge or double-credit anyone.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use control_plane::bus::{Handler, HandlerError};
use control_plane::payments::provider::sign_webhook;
use control_plane::subscriptions::{ACCOUNT_UPDATE, account_update_handler};
use events::Envelope;
use serde_json::{Value, json};
use sqlx::Row;

use crate::on_both_backends;
use crate::support::{Reply, TestApp, assert_error, error_code};

on_both_backends!(
    paying_activates_a_subscription,
    free_users_get_the_free_package,
    idempotency_keys_replay_and_refuse_reuse,
    concurrent_checkouts_with_one_key_charge_once,
    checkout_refuses_bad_packages_and_tampering,
    declined_cards_change_nothing_and_can_retry,
    asynchronous_payments_confirm_by_webhook,
    forged_stale_and_unknown_webhooks_change_nothing,
    renewal_before_expiry_extends_from_the_end,
    duplicated_and_shuffled_events_apply_once,
    consumer_killed_mid_batch_loses_nothing_and_doubles_nothing,
    failures_are_retried_only_where_a_retry_can_help,
    cancel_keeps_access_until_the_end,
    refunds_end_the_subscription,
);

const CARD_OK: &str = "4242424242424242";
const CARD_DECLINED: &str = "4000000000000002";
const CARD_NO_FUNDS: &str = "4000000000009995";
const CARD_ASYNC: &str = "4000000000003220";

impl TestApp {
    async fn package_id(&self, name: &str) -> String {
        let packages = self.get("/api/v1/packages", None).await;
        packages
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no package {name}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn checkout(&self, token: &str, key: &str, package_id: &str) -> Reply {
        let request = Request::post("/api/v1/payments")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Body::from(json!({"package_id": package_id}).to_string()))
            .unwrap();
        self.send("127.0.0.1:1".parse().unwrap(), request).await
    }

    async fn confirm(&self, token: &str, payment: &str, number: &str) -> Reply {
        let card =
            json!({"card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}});
        self.post(
            &format!("/api/v1/payments/{payment}/confirm"),
            Some(token),
            card,
        )
        .await
    }

    /// Checkout and confirm; returns the payment id.
    async fn buy(&self, token: &str, package: &str, number: &str) -> String {
        let created = self
            .checkout(token, &control_plane::store::new_id(), package)
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
        let id = created.body["id"].as_str().unwrap().to_owned();
        let confirmed = self.confirm(token, &id, number).await;
        assert!(confirmed.status.is_success(), "{}", confirmed.raw);
        id
    }

    /// Runs the account-update consumer over everything pending.
    async fn account_update(&self) -> usize {
        self.app
            .bus
            .poll(
                ACCOUNT_UPDATE,
                events::payments::TOPIC,
                &account_update_handler(self.app.clone()),
            )
            .await
            .unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query(sql)
            .fetch_one(self.app.users.database().pool())
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    }

    async fn events_of_type(&self, kind: &str) -> Vec<Envelope> {
        let rows = sqlx::query("SELECT envelope FROM outbox ORDER BY seq")
            .fetch_all(self.app.users.database().pool())
            .await
            .unwrap();
        rows.iter()
            .map(|row| {
                Envelope::from_json(
                    control_plane::store::long_text(row, "envelope")
                        .unwrap()
                        .as_bytes(),
                )
                .unwrap()
            })
            .filter(|envelope| envelope.kind == kind)
            .collect()
    }

    async fn entitlements(&self, token: &str) -> Value {
        let reply = self.get("/api/v1/me/entitlements", Some(token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
        reply.body
    }
}

async fn paying_activates_a_subscription(t: &TestApp) {
    let token = t.user("payer@example.com").await;
    let premium = t.package_id("Premium").await;
    let created = t.checkout(&token, "key-1", &premium).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    assert_eq!(created.body["status"], "requires_confirmation");
    assert_eq!(created.body["amount"], 999);
    assert_eq!(created.body["currency"], "EUR");
    let id = created.body["id"].as_str().unwrap().to_owned();

    let paid = t.confirm(&token, &id, CARD_OK).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.raw);
    assert_eq!(paid.body["status"], "succeeded");
    assert_eq!(paid.body["card"], json!({"brand": "visa", "last4": "4242"}));
    let succeeded = t.events_of_type("payment.succeeded").await;
    assert_eq!(succeeded.len(), 1);
    assert_eq!(
        succeeded[0].key,
        paid.body["user_id"].as_str().unwrap(),
        "keyed by user"
    );

    // Before the account-update service runs, the listener is still on the free package.
    let free = t.entitlements(&token).await;
    assert_eq!(free["source"], "free");
    assert_eq!(t.account_update().await, 1);
    let entitlements = t.entitlements(&token).await;
    assert_eq!(entitlements["package_name"], "Premium");
    assert_eq!(entitlements["free_ads_per_hour"], 0);
    assert_eq!(entitlements["source"], "subscription");
    // A reader that computed the free package before the change and wrote it to the cache
    // after the change's invalidation (a race) is not believed: its entry carries the
    // generation it was computed under, which the invalidation replaced.
    let user_id = paid.body["user_id"].as_str().unwrap();
    t.app
        .cache
        .set_json(
            &format!("entitlements:{user_id}"),
            &json!([free, null, null]),
            std::time::Duration::from_secs(300),
        )
        .await;
    assert_eq!(t.entitlements(&token).await["package_name"], "Premium");
    let subscriptions = t.get("/api/v1/subscriptions/me", Some(&token)).await;
    let current = &subscriptions.body["current"];
    assert_eq!(current["status"], "active");
    assert_eq!(current["payment_id"], id.as_str());
    assert_eq!(current["auto_renew"], true);
    assert_eq!(entitlements["until"], current["end_at"]);
    assert_eq!(t.events_of_type("subscription.activated").await.len(), 1);

    // Confirming again charges nothing more.
    let again = t.confirm(&token, &id, CARD_OK).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(t.events_of_type("payment.succeeded").await.len(), 1);
    // The card number is stored nowhere.
    let rows = sqlx::query("SELECT * FROM payments")
        .fetch_all(t.app.users.database().pool())
        .await
        .unwrap();
    for row in rows {
        for index in 0..row.len() {
            let text = row
                .try_get::<Option<String>, _>(index)
                .ok()
                .flatten()
                .or_else(|| {
                    row.try_get::<Option<Vec<u8>>, _>(index)
                        .ok()
                        .flatten()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                });
            if let Some(text) = text {
                assert!(
                    !text.contains("42424242"),
                    "card digits stored in column {index}"
                );
            }
        }
    }
}

async fn free_users_get_the_free_package(t: &TestApp) {
    let token = t.user("free@example.com").await;
    let entitlements = t.entitlements(&token).await;
    assert_eq!(entitlements["source"], "free");
    assert_eq!(entitlements["package_name"], "Free");
    assert!(entitlements["free_ads_per_hour"].as_i64().unwrap() > 0);
    assert_eq!(entitlements["until"], Value::Null);
    let subscriptions = t.get("/api/v1/subscriptions/me", Some(&token)).await;
    assert_eq!(
        subscriptions.body,
        json!({"current": null, "subscriptions": []})
    );
}

async fn idempotency_keys_replay_and_refuse_reuse(t: &TestApp) {
    let token = t.user("idem@example.com").await;
    let premium = t.package_id("Premium").await;
    let yearly = t.package_id("Premium Yearly").await;
    let first = t.checkout(&token, "order-42", &premium).await;
    let replay = t.checkout(&token, "order-42", &premium).await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.body, first.body, "the same answer, replayed");
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    let reused = t.checkout(&token, "order-42", &yearly).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reused.body["error"]["fields"][0]["code"],
        "idempotency_key_reused"
    );

    // Keys are per user: another user may use the same string.
    let other = t.user("idem2@example.com").await;
    let theirs = t.checkout(&other, "order-42", &premium).await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_ne!(theirs.body["id"], first.body["id"]);

    let missing = t
        .post(
            "/api/v1/payments",
            Some(&token),
            json!({"package_id": premium}),
        )
        .await;
    assert_error(
        &missing,
        StatusCode::BAD_REQUEST,
        "idempotency_key_required",
    );
    // Errors are replayed too.
    let unknown = t.checkout(&token, "order-43", "no-such-package").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let unknown_again = t.checkout(&token, "order-43", "no-such-package").await;
    assert_eq!(unknown_again.body, unknown.body);
    assert_eq!(t.count("SELECT COUNT(*) FROM payments").await, 2);

    // Keys are kept at least a day, then forgotten by the sweeper.
    t.clock.advance(Duration::from_secs(25 * 3600));
    t.app
        .sweep_orphans(control_plane::ORPHAN_GRACE)
        .await
        .unwrap();
    assert_eq!(
        t.checkout(&token, "order-42", &premium)
            .await
            .headers
            .get("idempotent-replayed"),
        Some(&"true".parse().unwrap())
    );
    t.clock.advance(Duration::from_secs(24 * 3600));
    t.app
        .sweep_orphans(control_plane::ORPHAN_GRACE)
        .await
        .unwrap();
    assert_eq!(t.count("SELECT COUNT(*) FROM idempotency_keys").await, 0);
}

async fn concurrent_checkouts_with_one_key_charge_once(t: &TestApp) {
    let token = t.user("racer@example.com").await;
    let premium = t.package_id("Premium").await;
    let attempts = (0..8).map(|_| t.checkout(&token, "same-key", &premium));
    let replies = futures::future::join_all(attempts).await;
    for reply in &replies {
        assert!(
            reply.status == StatusCode::CREATED
                || (reply.status == StatusCode::CONFLICT
                    && error_code(reply) == "idempotency_key_in_use"),
            "{} {}",
            reply.status,
            reply.raw
        );
    }
    assert_eq!(
        t.count("SELECT COUNT(*) FROM payments").await,
        1,
        "one payment intent"
    );
    let ids: std::collections::HashSet<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .map(|r| r.body["id"].clone())
        .collect();
    assert_eq!(ids.len(), 1);

    // Two concurrent confirmations charge once.
    let id = ids.into_iter().next().unwrap();
    let id = id.as_str().unwrap();
    let (a, b) = tokio::join!(
        t.confirm(&token, id, CARD_OK),
        t.confirm(&token, id, CARD_OK)
    );
    let statuses = [a.status, b.status];
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    assert_eq!(t.events_of_type("payment.succeeded").await.len(), 1);
}

async fn checkout_refuses_bad_packages_and_tampering(t: &TestApp) {
    let token = t.user("tamper@example.com").await;
    let admin = t.admin().await;
    let premium = t.package_id("Premium").await;
    let free = t.package_id("Free").await;

    let tampered = Request::post("/api/v1/payments")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("idempotency-key", "tamper-1")
        .body(Body::from(
            json!({"package_id": premium, "amount": 1}).to_string(),
        ))
        .unwrap();
    let reply = t.send("127.0.0.1:1".parse().unwrap(), tampered).await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the client cannot name an amount"
    );
    assert_eq!(reply.body["error"]["fields"][0]["field"], "amount");

    let unknown = t.checkout(&token, "tamper-2", "nope").await;
    assert_eq!(
        (unknown.status, error_code(&unknown).as_str()),
        (StatusCode::NOT_FOUND, "package_not_found")
    );
    let gratis = t.checkout(&token, "tamper-3", &free).await;
    assert_eq!(
        (gratis.status, error_code(&gratis).as_str()),
        (StatusCode::CONFLICT, "package_free")
    );

    // A package retired after checkout still completes; a retired one cannot be bought.
    let open = t.checkout(&token, "tamper-4", &premium).await;
    t.post(
        &format!("/api/v1/packages/{premium}/retire"),
        Some(&admin),
        None,
    )
    .await;
    let retired = t.checkout(&token, "tamper-5", &premium).await;
    assert_eq!(
        (retired.status, error_code(&retired).as_str()),
        (StatusCode::CONFLICT, "package_retired")
    );
    let paid = t
        .confirm(&token, open.body["id"].as_str().unwrap(), CARD_OK)
        .await;
    assert_eq!(paid.body["amount"], 999);
    t.account_update().await;
    assert_eq!(
        t.entitlements(&token).await["package_name"],
        "Premium",
        "subscribers keep a retired package"
    );
    assert_eq!(t.count("SELECT COUNT(*) FROM payments").await, 1);
}

async fn declined_cards_change_nothing_and_can_retry(t: &TestApp) {
    let token = t.user("declined@example.com").await;
    let premium = t.package_id("Premium").await;
    let id = t.checkout(&token, "d-1", &premium).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let declined = t.confirm(&token, &id, CARD_DECLINED).await;
    assert_error(&declined, StatusCode::PAYMENT_REQUIRED, "card_declined");
    let no_funds = t.confirm(&token, &id, CARD_NO_FUNDS).await;
    assert_error(
        &no_funds,
        StatusCode::PAYMENT_REQUIRED,
        "insufficient_funds",
    );
    let state = t.get(&format!("/api/v1/payments/{id}"), Some(&token)).await;
    assert_eq!(state.body["status"], "failed");
    assert_eq!(state.body["failure"]["code"], "insufficient_funds");
    assert!(t.events_of_type("payment.succeeded").await.is_empty());

    let invalid = t.confirm(&token, &id, "4242424242424241").await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.body["error"]["fields"][0]["field"], "card.number");

    let paid = t.confirm(&token, &id, CARD_OK).await;
    assert_eq!(paid.body["status"], "succeeded");
    assert_eq!(paid.body["failure"], Value::Null);

    // Another user cannot see or pay it.
    let other = t.user("stranger@example.com").await;
    assert_eq!(
        t.get(&format!("/api/v1/payments/{id}"), Some(&other))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.confirm(&other, &id, CARD_OK).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn asynchronous_payments_confirm_by_webhook(t: &TestApp) {
    let token = t.user("async@example.com").await;
    let premium = t.package_id("Premium").await;
    let id = t.checkout(&token, "a-1", &premium).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pending = t.confirm(&token, &id, CARD_ASYNC).await;
    assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.raw);
    assert_eq!(pending.body["status"], "processing");
    assert!(t.events_of_type("payment.succeeded").await.is_empty());

    let webhooks = t.app.sandbox.take_webhooks();
    assert_eq!(webhooks.len(), 1);
    let deliver = |hook: &control_plane::payments::provider::WebhookDelivery| {
        let request = Request::post("/api/v1/payments/webhooks/sandbox")
            .header("content-type", "application/json")
            .header("cadenza-signature", hook.signature.clone())
            .body(Body::from(hook.body.clone()))
            .unwrap();
        t.send("127.0.0.1:1".parse().unwrap(), request)
    };
    let first = deliver(&webhooks[0]).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.raw);
    assert_eq!(first.body["status"], "processed");
    let replayed = deliver(&webhooks[0]).await;
    assert_eq!(replayed.status, StatusCode::OK);
    assert_eq!(
        replayed.body["status"], "duplicate",
        "a replay is acknowledged and changes nothing"
    );
    assert_eq!(t.events_of_type("payment.succeeded").await.len(), 1);

    let paid = t.get(&format!("/api/v1/payments/{id}"), Some(&token)).await;
    assert_eq!(paid.body["status"], "succeeded");
    t.account_update().await;
    assert_eq!(t.entitlements(&token).await["package_name"], "Premium");

    // The service's own delivery path (what `run` does after the sandbox's delay).
    let id2 = t.checkout(&token, "a-2", &premium).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.confirm(&token, &id2, CARD_ASYNC).await;
    assert_eq!(t.app.deliver_sandbox_webhooks().await, 1);
    assert_eq!(
        t.get(&format!("/api/v1/payments/{id2}"), Some(&token))
            .await
            .body["status"],
        "succeeded"
    );
}

async fn forged_stale_and_unknown_webhooks_change_nothing(t: &TestApp) {
    let token = t.user("forge@example.com").await;
    let premium = t.package_id("Premium").await;
    let id = t.checkout(&token, "f-1", &premium).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.confirm(&token, &id, CARD_ASYNC).await;
    let genuine = t.app.sandbox.take_webhooks().remove(0);
    let post = |body: String, signature: String| {
        let request = Request::post("/api/v1/payments/webhooks/sandbox")
            .header("content-type", "application/json")
            .header("cadenza-signature", signature)
            .body(Body::from(body))
            .unwrap();
        t.send("127.0.0.1:1".parse().unwrap(), request)
    };
    let now = t.clock.now_ms() / 1000;

    let forged = post(
        genuine.body.clone(),
        sign_webhook(b"not the secret at all", now, &genuine.body),
    )
    .await;
    assert_eq!(
        (forged.status, error_code(&forged).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_signature")
    );
    let altered_body = genuine.body.replace("\"amount\":999", "\"amount\":1");
    let altered = post(altered_body, genuine.signature.clone()).await;
    assert_eq!(error_code(&altered), "invalid_signature");
    let stale = post(
        genuine.body.clone(),
        sign_webhook(&t.app.webhook_secret, now - 301, &genuine.body),
    )
    .await;
    assert_eq!(
        (stale.status, error_code(&stale).as_str()),
        (StatusCode::BAD_REQUEST, "stale_signature")
    );
    let unsigned = t
        .post("/api/v1/payments/webhooks/sandbox", None, json!({}))
        .await;
    assert_eq!(error_code(&unsigned), "invalid_signature");

    // Properly signed, but for a payment that does not exist, or with another amount.
    let mut unknown: Value = serde_json::from_str(&genuine.body).unwrap();
    unknown["id"] = json!("evt_unknown");
    unknown["data"]["payment_id"] = json!("no-such-payment");
    let body = unknown.to_string();
    let reply = post(
        body.clone(),
        sign_webhook(&t.app.webhook_secret, now, &body),
    )
    .await;
    assert_eq!(
        (reply.status, error_code(&reply).as_str()),
        (StatusCode::NOT_FOUND, "payment_not_found")
    );
    let mut cheaper: Value = serde_json::from_str(&genuine.body).unwrap();
    cheaper["id"] = json!("evt_cheaper");
    cheaper["data"]["amount"] = json!(1);
    let body = cheaper.to_string();
    let reply = post(
        body.clone(),
        sign_webhook(&t.app.webhook_secret, now, &body),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);

    let state = t.get(&format!("/api/v1/payments/{id}"), Some(&token)).await;
    assert_eq!(state.body["status"], "processing", "nothing changed");
    assert!(t.events_of_type("payment.succeeded").await.is_empty());
    assert_eq!(
        t.count("SELECT COUNT(*) FROM webhook_events").await,
        0,
        "refused deliveries are not recorded"
    );
    // The genuine one still works afterwards.
    assert_eq!(
        post(genuine.body.clone(), genuine.signature.clone())
            .await
            .body["status"],
        "processed"
    );
}

async fn renewal_before_expiry_extends_from_the_end(t: &TestApp) {
    let token = t.user("renew@example.com").await;
    let premium = t.package_id("Premium").await;
    t.buy(&token, &premium, CARD_OK).await;
    t.account_update().await;
    let first_end = t.entitlements(&token).await["until"]
        .as_str()
        .unwrap()
        .to_owned();
    t.clock.advance(Duration::from_secs(10 * 24 * 3600));
    let token = t
        .log_in("renew@example.com", crate::support::PASSWORD)
        .await;
    t.buy(&token, &premium, CARD_OK).await;
    t.account_update().await;
    let subscriptions = t.get("/api/v1/subscriptions/me", Some(&token)).await;
    let list = subscriptions.body["subscriptions"].as_array().unwrap();
    assert_eq!(list.len(), 1, "extended, not a second subscription");
    let start = list[0]["start_at"].as_str().unwrap();
    let end = list[0]["end_at"].as_str().unwrap();
    assert!(end > first_end.as_str());
    // Two calendar months from the first payment.
    assert_eq!(
        &start[5..7],
        "01",
        "the manual clock starts in January 2027: {start}"
    );
    assert_eq!(&end[5..7], "03", "{start} .. {end}");
    assert_eq!(&start[8..], &end[8..]);
    assert_eq!(t.events_of_type("subscription.extended").await.len(), 1);
}

async fn duplicated_and_shuffled_events_apply_once(t: &TestApp) {
    let token = t.user("shuffle@example.com").await;
    let premium = t.package_id("Premium").await;
    let yearly = t.package_id("Premium Yearly").await;
    t.buy(&token, &premium, CARD_OK).await;
    t.buy(&token, &premium, CARD_OK).await;
    t.buy(&token, &yearly, CARD_OK).await;
    let events = t.events_of_type("payment.succeeded").await;
    assert_eq!(events.len(), 3);
    // Every event three times, newest first, interleaved.
    let mut stream = Vec::new();
    for _ in 0..3 {
        stream.extend(events.iter().rev().cloned());
    }
    stream.swap(1, 4);
    for envelope in stream {
        t.app.apply_payment_event(envelope).await.unwrap();
    }
    // And the consumer on top, delivering them all again.
    t.account_update().await;
    assert_eq!(
        t.count("SELECT COUNT(*) FROM subscription_payments").await,
        3,
        "one period per payment"
    );
    assert_eq!(
        t.count("SELECT COUNT(*) FROM subscriptions").await,
        2,
        "one per package"
    );
    assert_eq!(t.events_of_type("subscription.activated").await.len(), 2);
    assert_eq!(t.events_of_type("subscription.extended").await.len(), 1);
    let monthly = sqlx::query("SELECT start_at, end_at FROM subscriptions WHERE package_id = ?")
        .bind(&premium)
        .fetch_one(t.app.users.database().pool())
        .await
        .unwrap();
    let (start, end): (i64, i64) = (monthly.get("start_at"), monthly.get("end_at"));
    let two_months = control_plane::calendar::add_period(
        control_plane::calendar::add_period(start, "month").unwrap(),
        "month",
    )
    .unwrap();
    assert_eq!(end, two_months);
}

async fn consumer_killed_mid_batch_loses_nothing_and_doubles_nothing(t: &TestApp) {
    let premium = t.package_id("Premium").await;
    let mut tokens = Vec::new();
    for i in 0..6 {
        let token = t.user(&format!("crashy{i}@example.com")).await;
        t.buy(&token, &premium, CARD_OK).await;
        tokens.push(token);
    }
    // A consumer that dies right after its database commit, before acknowledging, on every
    // second event: the effect is committed, the offset is not.
    let real = account_update_handler(t.app.clone());
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let crashy: Handler = {
        let calls = calls.clone();
        std::sync::Arc::new(move |envelope: Envelope| {
            let real = real.clone();
            let calls = calls.clone();
            Box::pin(async move {
                real(envelope).await?;
                if calls
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    .is_multiple_of(2)
                {
                    return Err(HandlerError::internal("killed before the acknowledgement"));
                }
                Ok(())
            })
        })
    };
    t.app
        .bus
        .poll(ACCOUNT_UPDATE, events::payments::TOPIC, &crashy)
        .await
        .unwrap();
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) > 6,
        "events were redelivered"
    );

    // A consumer task stopped in the middle of a batch, then a new one.
    for i in 6..10 {
        let token = t.user(&format!("crashy{i}@example.com")).await;
        t.buy(&token, &premium, CARD_OK).await;
        tokens.push(token);
    }
    let shutdown = telemetry::Shutdown::new();
    let task = t
        .app
        .bus
        .subscribe(
            ACCOUNT_UPDATE,
            events::payments::TOPIC,
            account_update_handler(t.app.clone()),
            shutdown.clone(),
        )
        .unwrap();
    task.abort();
    let _ = task.await;
    t.account_update().await;

    assert_eq!(
        t.count("SELECT COUNT(*) FROM subscription_payments").await,
        10
    );
    assert_eq!(t.count("SELECT COUNT(*) FROM subscriptions").await, 10);
    for token in &tokens {
        assert_eq!(t.entitlements(token).await["package_name"], "Premium");
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM bus_dead_letters").await, 0);
}

/// A handler that fails `failures` times with `error`, then runs the real account-update
/// handler; counts its calls.
fn failing_first(
    t: &TestApp,
    failures: usize,
    error: fn() -> HandlerError,
) -> (Handler, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let real = account_update_handler(t.app.clone());
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler: Handler = {
        let calls = calls.clone();
        std::sync::Arc::new(move |envelope: Envelope| {
            let real = real.clone();
            let calls = calls.clone();
            Box::pin(async move {
                if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < failures {
                    return Err(error());
                }
                real(envelope).await
            })
        })
    };
    (handler, calls)
}

async fn failures_are_retried_only_where_a_retry_can_help(t: &TestApp) {
    let premium = t.package_id("Premium").await;
    let first = t.user("flaky@example.com").await;
    t.buy(&first, &premium, CARD_OK).await;
    // A store that fails twice: the event is delivered again, with backoff, and applies once.
    let (flaky, calls) = failing_first(t, 2, || HandlerError::downstream("connection reset"));
    let handled = t
        .app
        .bus
        .poll(ACCOUNT_UPDATE, events::payments::TOPIC, &flaky)
        .await
        .unwrap();
    assert_eq!(handled, 1);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(t.entitlements(&first).await["package_name"], "Premium");
    assert_eq!(t.count("SELECT COUNT(*) FROM bus_dead_letters").await, 0);

    // An event that cannot be processed as it is: one attempt, then the dead letters, with the
    // failure's source in the record; delivery moves on.
    let second = t.user("unlucky@example.com").await;
    t.buy(&second, &premium, CARD_OK).await;
    let (hopeless, calls) = failing_first(t, usize::MAX, || {
        HandlerError::upstream("payload names an unknown package")
    });
    t.app
        .bus
        .poll(ACCOUNT_UPDATE, events::payments::TOPIC, &hopeless)
        .await
        .unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(t.count("SELECT COUNT(*) FROM bus_dead_letters").await, 1);
    let error: String = sqlx::query_scalar("SELECT error FROM bus_dead_letters")
        .fetch_one(t.app.users.database().pool())
        .await
        .unwrap();
    assert_eq!(
        error,
        "upstream failure (not retried): payload names an unknown package"
    );
    assert_ne!(t.entitlements(&second).await["package_name"], "Premium");
}

async fn cancel_keeps_access_until_the_end(t: &TestApp) {
    let token = t.user("cancel@example.com").await;
    let premium = t.package_id("Premium").await;
    let none = t
        .delete("/api/v1/subscriptions/current", Some(&token))
        .await;
    assert_eq!(
        (none.status, error_code(&none).as_str()),
        (StatusCode::NOT_FOUND, "no_active_subscription")
    );
    t.buy(&token, &premium, CARD_OK).await;
    t.account_update().await;
    assert_eq!(
        t.entitlements(&token).await["package_name"],
        "Premium",
        "and cached"
    );

    let canceled = t
        .delete("/api/v1/subscriptions/current", Some(&token))
        .await;
    assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.raw);
    assert_eq!(canceled.body["status"], "canceled");
    assert_eq!(canceled.body["auto_renew"], false);
    assert_eq!(
        t.entitlements(&token).await["package_name"],
        "Premium",
        "still in force until its end"
    );
    assert_eq!(t.events_of_type("subscription.canceled").await.len(), 1);

    // Past the end, by the clock alone (no job runs).
    t.clock.advance(Duration::from_secs(32 * 24 * 3600));
    let token = t
        .log_in("cancel@example.com", crate::support::PASSWORD)
        .await;
    let entitlements = t.entitlements(&token).await;
    assert_eq!(entitlements["source"], "free");
    let subscriptions = t.get("/api/v1/subscriptions/me", Some(&token)).await;
    assert_eq!(subscriptions.body["current"], Value::Null);
    assert_eq!(subscriptions.body["subscriptions"][0]["status"], "expired");
}

async fn refunds_end_the_subscription(t: &TestApp) {
    let admin = t.admin().await;
    let token = t.user("refund@example.com").await;
    let user_id = t.get("/api/v1/users/me", Some(&token)).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let premium = t.package_id("Premium").await;
    let paid = t.buy(&token, &premium, CARD_OK).await;
    t.account_update().await;
    assert_eq!(t.entitlements(&token).await["package_name"], "Premium");

    let path = format!("/api/v1/admin/payments/{paid}/refund");
    assert_eq!(
        t.post(&path, Some(&token), None).await.status,
        StatusCode::FORBIDDEN
    );
    let refunded = t.post(&path, Some(&admin), None).await;
    assert_eq!(refunded.status, StatusCode::OK, "{}", refunded.raw);
    assert_eq!(refunded.body["status"], "refunded");
    assert_eq!(
        t.entitlements(&token).await["source"],
        "free",
        "at once, cache included"
    );
    let again = t.post(&path, Some(&admin), None).await;
    assert_eq!(
        again.body["refunded_at"], refunded.body["refunded_at"],
        "idempotent"
    );
    assert_eq!(t.events_of_type("payment.refunded").await.len(), 1);
    assert_eq!(t.events_of_type("subscription.ended").await.len(), 1);

    let payments = t
        .get(
            &format!("/api/v1/admin/users/{user_id}/payments"),
            Some(&admin),
        )
        .await;
    assert_eq!(payments.body.as_array().unwrap().len(), 1);
    let subscriptions = t
        .get(
            &format!("/api/v1/admin/users/{user_id}/subscriptions"),
            Some(&admin),
        )
        .await;
    assert_eq!(subscriptions.body["subscriptions"][0]["status"], "refunded");

    // A refund that lands before the account-update service saw the payment buys nothing.
    let early = t.buy(&token, &premium, CARD_OK).await;
    t.post(
        &format!("/api/v1/admin/payments/{early}/refund"),
        Some(&admin),
        None,
    )
    .await;
    t.account_update().await;
    assert_eq!(t.entitlements(&token).await["source"], "free");
    assert_eq!(
        t.count("SELECT COUNT(*) FROM subscription_payments").await,
        1
    );

    // Only succeeded payments are refundable.
    let open = t.checkout(&token, "r-open", &premium).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = t
        .post(
            &format!("/api/v1/admin/payments/{open}/refund"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (refused.status, error_code(&refused).as_str()),
        (StatusCode::CONFLICT, "payment_not_refundable")
    );
}
