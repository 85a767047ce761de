//! Sign-up, log-in, sessions, profile, password change, deletion, roles.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::on_both_backends;
use crate::support::{PASSWORD, TestApp, assert_error, error_code, sign_up_body};

on_both_backends!(
    sign_up_normalises_and_keeps_names,
    duplicate_email_is_409,
    sign_up_validation_names_fields,
    log_in_and_out,
    wrong_credentials_are_generic,
    failed_logins_are_throttled_per_account,
    failed_logins_are_throttled_per_address,
    log_in_rotates_the_presented_token,
    sessions_expire_idle_and_absolute,
    profile_updates_are_seen_at_once,
    password_change_revokes_every_session,
    account_deletion_removes_everything,
    concurrent_sign_ups_make_one_account,
    admin_changes_roles,
);

async fn sign_up_normalises_and_keeps_names(t: &TestApp) {
    let mut body = sign_up_body("  Zoë.Li@Example.COM ");
    body["first_name"] = json!("Zoë 李 <script>alert(1)</script>");
    body["last_name"] = json!("O'Brien'; DROP TABLE users; --");
    body["role"] = json!("artist");
    let reply = t.post("/api/v1/users", None, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.raw);
    let user = &reply.body;
    assert_eq!(user["email"], "zoë.li@example.com");
    assert_eq!(user["mobile"], "+447700900123");
    assert_eq!(user["first_name"], "Zoë 李 <script>alert(1)</script>");
    assert_eq!(user["last_name"], "O'Brien'; DROP TABLE users; --");
    assert_eq!(user["role"], "artist");
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
    assert!(!reply.raw.contains("argon2"));
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.headers["x-content-type-options"], "nosniff");

    // Stored verbatim: the profile reads back exactly.
    let token = t.log_in("ZOË.LI@example.com", PASSWORD).await;
    let me = t.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(me.body["last_name"], "O'Brien'; DROP TABLE users; --");
    assert_eq!(me.body["first_name"], "Zoë 李 <script>alert(1)</script>");
}

async fn duplicate_email_is_409(t: &TestApp) {
    t.sign_up("dup@example.com").await;
    let reply = t
        .post("/api/v1/users", None, sign_up_body("DUP@example.com"))
        .await;
    assert_error(&reply, StatusCode::CONFLICT, "email_taken");
}

async fn sign_up_validation_names_fields(t: &TestApp) {
    let body = json!({
        "first_name": "  ",
        "last_name": "x".repeat(201),
        "email": "not-an-email",
        "mobile": "07700 900123",
        "address": "Somewhere",
        "password": "short",
        "role": "admin",
    });
    let reply = t.post("/api/v1/users", None, body).await;
    assert_error(
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let mut fields: Vec<&str> = reply.body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "email",
            "first_name",
            "last_name",
            "mobile",
            "password",
            "role"
        ]
    );
    // Nothing was written.
    assert!(
        t.app
            .users
            .user_by_email("not-an-email")
            .await
            .unwrap()
            .is_none()
    );
}

async fn log_in_and_out(t: &TestApp) {
    t.sign_up("ada@example.com").await;
    let reply = t
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "ada@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let token = reply.body["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 40, "at least 128 random bits: {token}");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["user"]["email"], "ada@example.com");

    // Only the hash is stored.
    let stored = t
        .app
        .users
        .session_by_hash(&control_plane::auth::token_hash(&token))
        .await
        .unwrap()
        .expect("session stored by hash");
    assert_ne!(stored.token_hash, token);

    let me = t.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["first_name"], "Ada");

    let out = t.delete("/api/v1/sessions/current", Some(&token)).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let after = t.get("/api/v1/users/me", Some(&token)).await;
    assert_error(&after, StatusCode::UNAUTHORIZED, "invalid_token");

    let none = t.get("/api/v1/users/me", None).await;
    assert_error(&none, StatusCode::UNAUTHORIZED, "missing_token");
}

async fn wrong_credentials_are_generic(t: &TestApp) {
    t.sign_up("bob@example.com").await;
    let wrong_password = t
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "bob@example.com", "password": "nope nope nope"}),
        )
        .await;
    let unknown_email = t
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_email.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong_password.body, unknown_email.body,
        "the two failures must be indistinguishable"
    );
    assert_eq!(error_code(&wrong_password), "invalid_credentials");
}

async fn failed_logins_are_throttled_per_account(t: &TestApp) {
    t.sign_up("carol@example.com").await;
    let attempt = |password: &'static str, port: u16| async move {
        t.call_from(
            format!("198.51.100.{}:1234", port).parse().unwrap(),
            Method::POST,
            "/api/v1/sessions",
            None,
            Some(json!({"email": "carol@example.com", "password": password})),
        )
        .await
    };
    // Five failures from five addresses: the account limit, not the address limit, applies.
    for i in 0..5 {
        assert_eq!(
            attempt("wrong password!", i).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let blocked = attempt(PASSWORD, 9).await;
    assert_eq!(
        blocked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert_eq!(error_code(&blocked), "too_many_attempts");
    let retry_after: u64 = blocked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
}

async fn failed_logins_are_throttled_per_address(t: &TestApp) {
    let peer = "203.0.113.50:5555".parse().unwrap();
    for i in 0..20 {
        let reply = t
            .call_from(
                peer,
                Method::POST,
                "/api/v1/sessions",
                None,
                Some(json!({"email": format!("guess{i}@example.com"), "password": "wrong password!"})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    t.sign_up("dave@example.com").await;
    let blocked = t
        .call_from(
            peer,
            Method::POST,
            "/api/v1/sessions",
            None,
            Some(json!({"email": "dave@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.headers.contains_key("retry-after"));
    // Another address is not affected.
    t.log_in("dave@example.com", PASSWORD).await;
}

async fn log_in_rotates_the_presented_token(t: &TestApp) {
    t.sign_up("erin@example.com").await;
    let first = t.log_in("erin@example.com", PASSWORD).await;
    let reply = t
        .post(
            "/api/v1/sessions",
            Some(&first),
            json!({"email": "erin@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let second = reply.body["token"].as_str().unwrap();
    assert_ne!(first, second);
    assert_eq!(
        t.get("/api/v1/users/me", Some(&first)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.get("/api/v1/users/me", Some(second)).await.status,
        StatusCode::OK
    );
}

async fn sessions_expire_idle_and_absolute(t: &TestApp) {
    let idle = t.user("idle@example.com").await;
    let active = t.log_in("idle@example.com", PASSWORD).await;
    let day = Duration::from_secs(24 * 3600);
    // Use `active` every day for 29 days; `idle` is never used again.
    for _ in 0..29 {
        t.clock.advance(day);
        let reply = t.get("/api/v1/users/me", Some(&active)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    }
    assert_eq!(
        t.get("/api/v1/users/me", Some(&idle)).await.status,
        StatusCode::UNAUTHORIZED,
        "idle for more than 7 days"
    );
    t.clock.advance(day);
    assert_eq!(
        t.get("/api/v1/users/me", Some(&active)).await.status,
        StatusCode::UNAUTHORIZED,
        "30 days after log-in, however active"
    );
}

async fn profile_updates_are_seen_at_once(t: &TestApp) {
    let token = t.user("fay@example.com").await;
    // Warm the cache.
    t.get("/api/v1/users/me", Some(&token)).await;
    let reply = t
        .patch(
            "/api/v1/users/me",
            Some(&token),
            json!({"first_name": "Fåy", "mobile": "+1 415 555 2671"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    assert_eq!(reply.body["first_name"], "Fåy");
    let me = t.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(me.body["first_name"], "Fåy");
    assert_eq!(me.body["mobile"], "+14155552671");
    assert_eq!(me.body["last_name"], "Lovelace");

    let bad = t
        .patch("/api/v1/users/me", Some(&token), json!({"mobile": "12"}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let email = t
        .patch(
            "/api/v1/users/me",
            Some(&token),
            json!({"email": "x@example.com"}),
        )
        .await;
    assert_eq!(
        email.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "email is not a profile field"
    );
    assert_eq!(email.body["error"]["fields"][0]["code"], "unknown_field");
}

async fn password_change_revokes_every_session(t: &TestApp) {
    let phone = t.user("gus@example.com").await;
    let laptop = t.log_in("gus@example.com", PASSWORD).await;
    // Both sessions are cached.
    for token in [&phone, &laptop] {
        assert_eq!(
            t.get("/api/v1/users/me", Some(token)).await.status,
            StatusCode::OK
        );
    }
    let wrong = t
        .put(
            "/api/v1/users/me/password",
            Some(&laptop),
            json!({"current_password": "not my password", "new_password": "a brand new secret"}),
        )
        .await;
    assert_error(&wrong, StatusCode::FORBIDDEN, "wrong_password");

    let reply = t
        .put(
            "/api/v1/users/me/password",
            Some(&laptop),
            json!({"current_password": PASSWORD, "new_password": "a brand new secret"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    let fresh = reply.body["token"].as_str().unwrap();
    for token in [&phone, &laptop] {
        assert_eq!(
            t.get("/api/v1/users/me", Some(token)).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        t.get("/api/v1/users/me", Some(fresh)).await.status,
        StatusCode::OK
    );
    let old = t
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "gus@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    t.log_in("gus@example.com", "a brand new secret").await;
}

async fn account_deletion_removes_everything(t: &TestApp) {
    let token = t.user("hal@example.com").await;
    let track = t.track("Song", "ready").await;
    let added = t
        .post(
            "/api/v1/playlists/tracks",
            Some(&token),
            json!({"track_id": track}),
        )
        .await;
    let playlist = added.body["playlist"]["id"].as_str().unwrap().to_owned();

    let wrong = t
        .call(
            Method::DELETE,
            "/api/v1/users/me",
            Some(&token),
            Some(json!({"password": "wrong password!"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let reply = t
        .call(
            Method::DELETE,
            "/api/v1/users/me",
            Some(&token),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.raw);

    assert_eq!(
        t.get("/api/v1/users/me", Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        t.app
            .users
            .user_by_email("hal@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        t.app
            .users
            .playlist_info(&playlist)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        t.app.inventory.track_count(&playlist).await.unwrap(),
        None,
        "contents deleted too"
    );
    // The email can be used again.
    t.sign_up("hal@example.com").await;
}

async fn concurrent_sign_ups_make_one_account(t: &TestApp) {
    let attempts = (0..8).map(|_| t.post("/api/v1/users", None, sign_up_body("race@example.com")));
    let replies = futures::future::join_all(attempts).await;
    let created = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let conflicts = replies
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT)
        .count();
    assert_eq!(
        (created, conflicts),
        (1, 7),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

async fn admin_changes_roles(t: &TestApp) {
    let admin = t.admin().await;
    let user = t.sign_up("ivy@example.com").await;
    let listener = t.log_in("ivy@example.com", PASSWORD).await;
    let path = format!("/api/v1/admin/users/{}/role", user["id"].as_str().unwrap());

    let denied = t
        .put(&path, Some(&listener), json!({"role": "admin"}))
        .await;
    assert_error(&denied, StatusCode::FORBIDDEN, "admin_required");

    let reply = t.put(&path, Some(&admin), json!({"role": "artist"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    assert_eq!(reply.body["role"], "artist");
    // The change is visible through the cache at once.
    let me = t.get("/api/v1/users/me", Some(&listener)).await;
    assert_eq!(me.body["role"], "artist");

    let missing = t
        .put(
            "/api/v1/admin/users/nope/role",
            Some(&admin),
            json!({"role": "artist"}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // A second bootstrap creates nothing.
    assert!(t.app.bootstrap_admin().await.unwrap().is_none());
}

/// With Redis configured but down, every flow still works from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_stays_correct_with_redis_down() {
    let t = TestApp::start_with(crate::support::Backend::Embedded, |config| {
        config.cache_url = Some(control_plane::config::Secret::new("redis://127.0.0.1:1/"));
    })
    .await
    .unwrap();
    let token = t.user("outage@example.com").await;
    let me = t.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK);
    let patched = t
        .patch(
            "/api/v1/users/me",
            Some(&token),
            json!({"last_name": "Byron"}),
        )
        .await;
    assert_eq!(patched.body["last_name"], "Byron");
    assert_eq!(
        t.delete("/api/v1/sessions/current", Some(&token))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        t.get("/api/v1/users/me", Some(&token)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let metrics = telemetry::metrics_handle().render();
    assert!(
        metrics.contains("cadenza_cache_errors_total"),
        "the outage is counted"
    );
    t.finish().await;
}
