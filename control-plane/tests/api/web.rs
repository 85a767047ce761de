//! The web player's files: `index.html` at `/` revalidated on every load with its content
//! security policy, the files it names immutable and in gzip when asked, 304 for a copy the
//! client has, and a stable error for an unknown file (`services.rs` checks the JSON pointer at
//! `/` of a process that does not serve the player).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};

use crate::on_both_backends;
use crate::support::{TestApp, assert_error};

on_both_backends!(the_player_is_served_with_its_caching_headers);

const PEER: ([u8; 4], u16) = ([127, 0, 0, 1], 40_000);

async fn get(
    t: &TestApp,
    path: &str,
    headers: &[(header::HeaderName, &str)],
) -> crate::support::Reply {
    let mut request = Request::builder().method(Method::GET).uri(path);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    t.send(PEER.into(), request.body(Body::empty()).unwrap())
        .await
}

async fn the_player_is_served_with_its_caching_headers(t: &TestApp) {
    let index = get(t, "/", &[]).await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(
        index.headers[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert_eq!(index.headers[header::CACHE_CONTROL], "no-cache");
    let policy = index.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let script = index
        .raw
        .split("src=\"/assets/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("index.html names its script")
        .to_owned();

    let plain = get(t, &format!("/assets/{script}"), &[]).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(
        plain.headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert!(
        plain.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(plain.headers.get(header::CONTENT_ENCODING).is_none());
    assert!(plain.raw.len() > 10_000, "the bundle is there");
    let zipped = get(
        t,
        &format!("/assets/{script}"),
        &[(header::ACCEPT_ENCODING, "gzip, br")],
    )
    .await;
    assert_eq!(zipped.headers[header::CONTENT_ENCODING], "gzip");
    assert_eq!(zipped.headers[header::VARY], "accept-encoding");
    let etag = plain.headers[header::ETAG].to_str().unwrap().to_owned();
    let again = get(
        t,
        &format!("/assets/{script}"),
        &[(header::IF_NONE_MATCH, etag.as_str())],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.raw.is_empty());

    let missing = get(t, "/assets/app-000000000000.js", &[]).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "asset_not_found");
    let index_by_asset = get(t, "/assets/index.html", &[]).await;
    assert_eq!(index_by_asset.status, StatusCode::NOT_FOUND);
}
