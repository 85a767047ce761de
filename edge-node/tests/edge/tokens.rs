//! URL tokens: checked before the cache, never part of its key.

use http::StatusCode;

use crate::support::{TOKEN_SECRET, TestEdge, TestObject, TestOrigin, now};

async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_media_and_stay_out_of_the_cache_key() {
    let origin = TestOrigin::start().await;
    let path = "/media/track1/v1/128k/seg-1.m4s";
    origin.put(path, TestObject::new("segment", "public, max-age=600"));
    origin.put(
        "/public/cover.jpg",
        TestObject::new("jpeg", "public, max-age=600"),
    );
    let edge = TestEdge::start(vec![origin.url()]).await;
    let get = |target: String| {
        let client = edge.h1.clone();
        let url = edge.http(&target);
        async move { client.get(url).send().await.unwrap() }
    };

    let response = get(edge.signed("/media/track1/v1/", path)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "segment");
    edge.engine.fills_idle().await;
    // Another token for the same track: a hit, so the token is not in the key.
    let response = get(edge.signed("/media/track1/", path)).await;
    assert_eq!(response.headers()["cache-status"], "edge-test; hit");
    assert_eq!(origin.hits(path), 1);

    let response = get(path.to_owned()).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await, "token_required");

    let response = get(edge.signed("/media/track2/", path)).await;
    assert_eq!(error_code(response).await, "token_out_of_scope");

    let expired = edge
        .keyring
        .sign("/media/track1/", now() - 7200, now() - 3600, None)
        .unwrap();
    let response = get(format!("/t/{expired}{path}")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await, "token_expired");

    let good = edge
        .keyring
        .sign("/media/track1/", now(), now() + 600, None)
        .unwrap();
    let (payload, mac) = good.split_once('.').unwrap();
    let mut tampered_mac = mac.to_owned();
    let last = tampered_mac.pop().unwrap();
    tampered_mac.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        format!("{payload}.{tampered_mac}"),
        "not-a-token".to_owned(),
        format!("{payload}x.{mac}"),
    ] {
        let response = get(format!("/t/{bad}{path}")).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{bad}");
        assert_eq!(error_code(response).await, "token_invalid");
    }

    // A key the edge does not hold.
    let other = url_token::Keyring::new(
        vec![url_token::Key::new("k2", TOKEN_SECRET.as_bytes()).unwrap()],
        "k2",
    )
    .unwrap();
    let foreign = other
        .sign("/media/track1/", now(), now() + 600, None)
        .unwrap();
    let response = get(format!("/t/{foreign}{path}")).await;
    assert_eq!(error_code(response).await, "token_invalid");

    // Paths outside the token prefixes need none.
    let response = get("/public/cover.jpg".to_owned()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        origin.hits(path),
        1,
        "refused requests never reach the origin"
    );
}
