//! The one error shape, bad input, limits, routing and the OpenAPI document.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::on_both_backends;
use crate::support::{TestApp, assert_error, sign_up_body};

on_both_backends!(
    bad_bodies_get_clear_errors,
    routing_errors_are_json,
    openapi_documents_every_endpoint
);

fn raw(
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.body(body.into()).unwrap()
}

async fn bad_bodies_get_clear_errors(t: &TestApp) {
    let peer = "127.0.0.1:1".parse().unwrap();
    let json_type = Some("application/json");

    let malformed = t
        .send(
            peer,
            raw(Method::POST, "/api/v1/users", json_type, "{\"email\": "),
        )
        .await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "malformed_json");

    let not_json = t
        .send(
            peer,
            raw(Method::POST, "/api/v1/users", Some("text/plain"), "{}"),
        )
        .await;
    assert_error(
        &not_json,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    let mut wrong_type = sign_up_body("types@example.com");
    wrong_type["mobile"] = json!(447700900123_u64);
    let reply = t.post("/api/v1/users", None, wrong_type).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["error"]["fields"][0]["field"], "mobile");
    assert_eq!(reply.body["error"]["fields"][0]["code"], "wrong_type");

    let mut missing = sign_up_body("missing@example.com");
    missing.as_object_mut().unwrap().remove("password");
    let reply = t.post("/api/v1/users", None, missing).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["error"]["fields"][0]["field"], "password");
    assert_eq!(reply.body["error"]["fields"][0]["code"], "required");

    // Over the 64 KiB limit: refused whole, with and without a Content-Length.
    let mut huge = sign_up_body("huge@example.com");
    huge["address"] = json!("x".repeat(100 * 1024));
    let reply = t.post("/api/v1/users", None, huge.clone()).await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let stream = futures::stream::iter(
        huge.to_string()
            .into_bytes()
            .chunks(4096)
            .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
            .collect::<Vec<_>>(),
    );
    let chunked = raw(
        Method::POST,
        "/api/v1/users",
        json_type,
        Body::from_stream(stream),
    );
    let reply = t.send(peer, chunked).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    // None of it left a row behind.
    for email in [
        "types@example.com",
        "missing@example.com",
        "huge@example.com",
    ] {
        assert!(
            t.app.users.user_by_email(email).await.unwrap().is_none(),
            "{email}"
        );
    }

    // Script-ish and SQL-ish input is data, returned as JSON text.
    let mut hostile = sign_up_body("hostile@example.com");
    hostile["address"] = json!("\"); DELETE FROM users; -- <img src=x onerror=alert(1)>");
    let reply = t.post("/api/v1/users", None, hostile).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(
        reply.body["address"],
        "\"); DELETE FROM users; -- <img src=x onerror=alert(1)>"
    );
    assert!(
        reply.raw.contains(r#"\"); DELETE"#),
        "quotes are escaped in the JSON text"
    );
    assert!(
        t.app
            .users
            .user_by_email("hostile@example.com")
            .await
            .unwrap()
            .is_some()
    );

    let bad_token = t.get("/api/v1/users/me", Some(&"x".repeat(10_000))).await;
    assert_eq!(bad_token.status, StatusCode::UNAUTHORIZED);
}

async fn routing_errors_are_json(t: &TestApp) {
    let unknown = t.get("/api/v1/nope", None).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "route_not_found");

    let method = t.put("/api/v1/packages", None, None).await;
    assert_error(
        &method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );

    let traversal = t
        .get("/api/v1/playlists/..%2F..%2Fetc%2Fpasswd", None)
        .await;
    assert_error(&traversal, StatusCode::NOT_FOUND, "playlist_not_found");
}

async fn openapi_documents_every_endpoint(t: &TestApp) {
    let reply = t.get("/api/v1/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = &reply.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/api/v1/users", "post"),
        ("/api/v1/sessions", "post"),
        ("/api/v1/sessions/current", "delete"),
        ("/api/v1/users/me", "get"),
        ("/api/v1/users/me", "patch"),
        ("/api/v1/users/me", "delete"),
        ("/api/v1/users/me/password", "put"),
        ("/api/v1/admin/users/{id}/role", "put"),
        ("/api/v1/packages", "get"),
        ("/api/v1/packages", "post"),
        ("/api/v1/packages/{id}", "get"),
        ("/api/v1/packages/{id}", "patch"),
        ("/api/v1/packages/{id}/retire", "post"),
        ("/api/v1/playlists/tracks", "post"),
        ("/api/v1/playlists", "get"),
        ("/api/v1/playlists", "post"),
        ("/api/v1/playlists/{id}", "get"),
        ("/api/v1/playlists/{id}", "patch"),
        ("/api/v1/playlists/{id}", "delete"),
        ("/api/v1/playlists/{id}/tracks/{track_id}", "delete"),
        ("/api/v1/playlists/{id}/order", "put"),
        ("/api/v1/payments", "post"),
        ("/api/v1/payments/{id}", "get"),
        ("/api/v1/payments/{id}/confirm", "post"),
        ("/api/v1/payments/webhooks/{provider}", "post"),
        ("/api/v1/admin/payments/{id}/refund", "post"),
        ("/api/v1/admin/users/{id}/payments", "get"),
        ("/api/v1/admin/users/{id}/subscriptions", "get"),
        ("/api/v1/subscriptions/me", "get"),
        ("/api/v1/subscriptions/current", "delete"),
        ("/api/v1/me/entitlements", "get"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
