//! Coalescing, freshness, stale serving, failover, purge and the disk tier.

use std::time::Duration;

use http::StatusCode;

use crate::support::{PURGE_KEY, TestEdge, TestObject, TestOrigin, bytes_of, edge_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_misses_make_one_upstream_fetch() {
    let origin = TestOrigin::start().await;
    let body = bytes_of(200_000, 7);
    let mut object = TestObject::new(body.clone(), "public, max-age=3600");
    object.delay_ms = 200;
    object.chunk_pause_ms = 2;
    origin.put("/assets/hot.m4s", object);
    let edge = TestEdge::start(vec![origin.url()]).await;
    let requests = (0..200).map(|index| {
        // Both protocols, many connections.
        let client = if index % 2 == 0 {
            edge.h1.clone()
        } else {
            edge.h2c.clone()
        };
        let url = edge.http("/assets/hot.m4s");
        async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.bytes().await.unwrap()
        }
    });
    for got in futures::future::join_all(requests).await {
        assert_eq!(got, body);
    }
    assert_eq!(origin.hits("/assets/hot.m4s"), 1);
    assert_eq!(origin.unauthorised(), 0, "fills carry the fill key");
    // The client has the body as the fill streams it; the entry is stored just after.
    edge.engine.fills_idle().await;
    let response = edge.get("/assets/hot.m4s").await;
    assert_eq!(response.headers()["cache-status"], "edge-test; hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_dies_leaves_nothing_in_the_cache() {
    let origin = TestOrigin::start().await;
    let body = bytes_of(100_000, 3);
    let mut broken = TestObject::new(body.clone(), "public, max-age=3600");
    // Every waiter joins before the first byte (300 ms), and the fill dies part-way.
    broken.delay_ms = 300;
    broken.chunk = 10_000;
    broken.chunk_pause_ms = 5;
    broken.break_after = Some(50_000);
    origin.put("/assets/broken.m4s", broken);
    let edge = TestEdge::start(vec![origin.url()]).await;
    let waiters = (0..5).map(|_| {
        let client = edge.h1.clone();
        let url = edge.http("/assets/broken.m4s");
        async move {
            match client.get(url).send().await {
                Ok(response) => response.bytes().await.map(|bytes| bytes.len()),
                Err(error) => Err(error),
            }
        }
    });
    for outcome in futures::future::join_all(waiters).await {
        assert!(
            outcome.is_err(),
            "a waiter took a broken body as whole: {outcome:?}"
        );
    }
    // Repaired: the next request goes upstream again and gets the whole object.
    origin.put(
        "/assets/broken.m4s",
        TestObject::new(body.clone(), "public, max-age=3600"),
    );
    let response = edge.get("/assets/broken.m4s").await;
    assert_eq!(response.bytes().await.unwrap(), body);
    assert_eq!(origin.hits("/assets/broken.m4s"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_stopped_cached_objects_and_stale_within_its_window_are_served() {
    let origin = TestOrigin::start().await;
    origin.put(
        "/assets/fresh.m4s",
        TestObject::new(bytes_of(5_000, 1), "public, max-age=3600"),
    );
    origin.put(
        "/assets/tolerant.m3u8",
        TestObject::new(bytes_of(500, 2), "public, max-age=1, stale-if-error=300"),
    );
    origin.put(
        "/assets/strict.m3u8",
        TestObject::new(
            bytes_of(500, 3),
            "public, max-age=1, must-revalidate, stale-if-error=300",
        ),
    );
    let clock = telemetry::Clock::manual(telemetry::Clock::system().now_ms());
    // The origin dates its responses by the same clock, as a real one agrees with real time.
    origin.set_clock(clock.clone());
    let edge = TestEdge::start_on_clock(edge_config(vec![origin.url()]), clock.clone()).await;
    for path in [
        "/assets/fresh.m4s",
        "/assets/tolerant.m3u8",
        "/assets/strict.m3u8",
    ] {
        let response = edge.get(path).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap();
    }
    edge.engine.fills_idle().await;
    origin.stop().await;
    clock.advance(Duration::from_millis(2_100));
    let response = edge.get("/assets/fresh.m4s").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), bytes_of(5_000, 1));
    let response = edge.get("/assets/tolerant.m3u8").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("stale-if-error")
    );
    assert!(
        response.headers()["age"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 2
    );
    assert_eq!(response.bytes().await.unwrap(), bytes_of(500, 2));
    let response = edge.get("/assets/strict.m3u8").await;
    // RFC 9111 §5.2.2.2: must-revalidate and no parent to revalidate with is a 504.
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "revalidation_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_behind() {
    let origin = TestOrigin::start().await;
    origin.put(
        "/assets/list.m3u8",
        TestObject::new("version 1", "public, max-age=2, stale-while-revalidate=60"),
    );
    let clock = telemetry::Clock::manual(telemetry::Clock::system().now_ms());
    // The origin dates its responses by the same clock, as a real one agrees with real time.
    origin.set_clock(clock.clone());
    let edge = TestEdge::start_on_clock(edge_config(vec![origin.url()]), clock.clone()).await;
    let get = || async {
        let response = edge.get("/assets/list.m3u8").await;
        let status = response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .to_owned();
        (status, response.text().await.unwrap())
    };
    assert_eq!(get().await.1, "version 1");
    origin.put(
        "/assets/list.m3u8",
        TestObject::new("version 2", "public, max-age=2, stale-while-revalidate=60"),
    );
    clock.advance(Duration::from_millis(3_100));
    let (status, text) = get().await;
    assert_eq!(text, "version 1");
    assert!(status.contains("stale-while-revalidate"), "{status}");
    // The revalidation behind it ends.
    edge.engine.fills_idle().await;
    let (status, text) = get().await;
    assert_eq!(
        (status.as_str(), text.as_str()),
        ("edge-test; hit", "version 2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_uses_validators_and_304_refreshes() {
    let origin = TestOrigin::start().await;
    origin.put(
        "/assets/short.m4s",
        TestObject::new(bytes_of(1_000, 9), "public, max-age=1"),
    );
    let clock = telemetry::Clock::manual(telemetry::Clock::system().now_ms());
    // The origin dates its responses by the same clock, as a real one agrees with real time.
    origin.set_clock(clock.clone());
    let edge = TestEdge::start_on_clock(edge_config(vec![origin.url()]), clock.clone()).await;
    let first = edge.get("/assets/short.m4s").await;
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    first.bytes().await.unwrap();
    // The entry is stored once the fill behind the first answer ends.
    edge.engine.fills_idle().await;
    clock.advance(Duration::from_millis(2_100));
    let again = edge.get("/assets/short.m4s").await;
    assert_eq!(again.headers()["cache-status"], "edge-test; fwd=stale");
    assert_eq!(again.bytes().await.unwrap(), bytes_of(1_000, 9));
    assert_eq!(origin.hits("/assets/short.m4s"), 2);
    // The client's own validators are answered by the edge.
    let response = edge
        .h1
        .get(edge.http("/assets/short.m4s"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(origin.hits("/assets/short.m4s"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_cache_rules_no_store_private_and_vary() {
    let origin = TestOrigin::start().await;
    origin.put("/assets/no-store", TestObject::new("x", "no-store"));
    origin.put(
        "/assets/private",
        TestObject::new("x", "private, max-age=600"),
    );
    let mut varied = TestObject::new("plain", "public, max-age=600");
    varied
        .headers
        .push(("vary".into(), "Accept-Language".into()));
    origin.put("/assets/varied", varied);
    let edge = TestEdge::start(vec![origin.url()]).await;
    for _ in 0..2 {
        for path in ["/assets/no-store", "/assets/private"] {
            let response = edge.get(path).await;
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
    assert_eq!(origin.hits("/assets/no-store"), 2);
    assert_eq!(origin.hits("/assets/private"), 2);
    for language in ["en", "fr", "en", "fr"] {
        let response = edge
            .h1
            .get(edge.http("/assets/varied"))
            .header("accept-language", language)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(origin.hits("/assets/varied"), 2, "one fetch per variant");
    // CORS headers from the origin reach the player unchanged.
    let response = edge.get("/assets/varied").await;
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parents_fail_over_in_order() {
    let origin = TestOrigin::start().await;
    origin.put(
        "/assets/a.m4s",
        TestObject::new(bytes_of(2_000, 4), "public, max-age=600"),
    );
    // A dead first parent: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let edge = TestEdge::start(vec![dead_url, origin.url()]).await;
    let response = edge.get("/assets/a.m4s").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), bytes_of(2_000, 4));
    // A chain: a child edge fills from this edge (with the fill key), which fills from the origin.
    let child = TestEdge::start(vec![edge.http("")]).await;
    let path = "/media/t9/v1/seg-1.m4s";
    origin.put(
        path,
        TestObject::new(bytes_of(3_000, 5), "public, max-age=600"),
    );
    let response = child.get(&child.signed("/media/t9/v1/", path)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap(), bytes_of(3_000, 5));
    assert_eq!(origin.hits(path), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_path_and_prefix() {
    let origin = TestOrigin::start().await;
    for path in ["/assets/p/1.m4s", "/assets/p/2.m4s", "/assets/q.m4s"] {
        origin.put(path, TestObject::new("x", "public, max-age=600"));
    }
    let edge = TestEdge::start(vec![origin.url()]).await;
    let fetch_all = || async {
        for path in ["/assets/p/1.m4s", "/assets/p/2.m4s", "/assets/q.m4s"] {
            edge.get(path).await;
        }
    };
    fetch_all().await;
    // The fills store what they fetched once their responses are out: wait for them, so that
    // the purge finds all three.
    edge.engine.fills_idle().await;
    let client = reqwest::Client::new();
    let response = client
        .post(edge.admin("/purge?path=/assets/q.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = client
        .post(edge.admin("/purge?path=/assets/q.m4s"))
        .bearer_auth(PURGE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = client
        .post(edge.admin("/purge?prefix=/assets/p/"))
        .bearer_auth(PURGE_KEY)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["purged"], 2);
    fetch_all().await;
    for path in ["/assets/p/1.m4s", "/assets/p/2.m4s", "/assets/q.m4s"] {
        assert_eq!(origin.hits(path), 2, "{path}");
    }
    let metrics = test_support::get_text(&client, edge.admin("/metrics")).await;
    assert!(metrics.contains("cadenza_edge_requests_total"), "{metrics}");
    assert!(metrics.contains("cadenza_edge_cache_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_tier_survives_a_restart() {
    let origin = TestOrigin::start().await;
    let body = bytes_of(50_000, 11);
    origin.put(
        "/assets/kept.m4s",
        TestObject::new(body.clone(), "public, max-age=600"),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = edge_config(vec![origin.url()]);
    config.disk_cache_dir = Some(dir.path().to_path_buf());
    {
        let edge = TestEdge::start_with(config.clone()).await;
        let response = edge.get("/assets/kept.m4s").await;
        assert_eq!(response.bytes().await.unwrap(), body);
        let objects = dir.path().join("objects");
        test_support::eventually("the object on disk", || {
            test_support::files_under(&objects) == 1
        })
        .await;
    }
    origin.stop().await;
    let edge = TestEdge::start_with(config).await;
    let response = edge.get("/assets/kept.m4s").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["cache-status"],
        "edge-test; hit; detail=disk"
    );
    assert_eq!(response.bytes().await.unwrap(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_another_variant_does_not_join_a_fill_in_progress() {
    let origin = TestOrigin::start().await;
    let mut varied = TestObject::new(bytes_of(64 * 1024, 3), "public, max-age=600");
    varied
        .headers
        .push(("vary".into(), "Accept-Language".into()));
    // Slow, so that the second request arrives while the first fill runs.
    varied.chunk = 8 * 1024;
    varied.chunk_pause_ms = 40;
    origin.put("/assets/slow-varied", varied);
    let edge = TestEdge::start(vec![origin.url()]).await;
    let get = |language: &'static str| {
        let client = edge.h1.clone();
        let url = edge.http("/assets/slow-varied");
        async move {
            let response = client
                .get(url)
                .header("accept-language", language)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.bytes().await.unwrap()
        }
    };
    let english = tokio::spawn(get("en"));
    // The first fill has its head (and so its Vary) but not its whole body yet.
    test_support::eventually("the first fill's head", || {
        edge.engine.fills_with_head() == 1
    })
    .await;
    assert_eq!(origin.hits("/assets/slow-varied"), 1);
    let french = tokio::spawn(get("fr"));
    let (english, french) = (english.await.unwrap(), french.await.unwrap());
    assert_eq!(english, bytes_of(64 * 1024, 3));
    assert_eq!(french, bytes_of(64 * 1024, 3));
    assert_eq!(
        origin.hits("/assets/slow-varied"),
        2,
        "the French request made its own fetch"
    );
    // Both variants are stored now.
    for language in ["en", "fr", "en"] {
        get(language).await;
    }
    assert_eq!(origin.hits("/assets/slow-varied"), 2);
}
