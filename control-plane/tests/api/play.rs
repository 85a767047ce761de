//! The play API against a real host locator on a free port: entitlement, ad breaks spliced
//! into per-play manifests, URL tokens, play events and their counters, and what goes wrong.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use telemetry::Shutdown;

use crate::support::{TestApp, error_code};
use crate::uploads::{process, tone_wav, upload_bytes};

crate::on_both_backends!(
    plays_splice_ads_for_free_listeners_and_count_events,
    concurrent_first_plays_serve_one_ad,
    play_fails_cleanly_without_a_locator_or_a_node,
);

const NODE_TOKEN: &str = "a node token for the play tests";
const TOKEN_SECRET: &str = "a url token secret for the play tests";

/// A host locator on a free port, with `nodes` edges registered (ids `edge-N`, site `site-N`).
async fn locator(nodes: usize) -> (String, Shutdown) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = host_locator::config::Config {
        listen: listener.local_addr().unwrap(),
        admin_listen: admin.local_addr().unwrap(),
        node_token: Some(telemetry::Secret::new(NODE_TOKEN.to_owned())),
        ..host_locator::config::Config::default()
    };
    let locator = host_locator::Locator::new(config, telemetry::Clock::system()).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    tokio::spawn(host_locator::run(
        locator,
        listener,
        admin,
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();
    for index in 1..=nodes {
        let response = http
            .post(format!("{url}/v1/nodes"))
            .bearer_auth(NODE_TOKEN)
            .json(&json!({"id": format!("edge-{index}"), "kind": "edge", "site": format!("site-{index}"),
                          "urls": {"h1": format!("http://edge-{index}.test"), "h2": format!("https://edge-{index}.test")},
                          "location": {"lat": 50.0 + index as f64, "lon": 8.0}}))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
    }
    (url, shutdown)
}

async fn with_player(t_backend: crate::support::Backend, locator_url: &str) -> Option<TestApp> {
    let url = locator_url.to_owned();
    TestApp::start_with(t_backend, move |config| {
        config.play.locator_url = Some(url);
        config.play.url_token_keys = vec![control_plane::config::UrlTokenKey {
            id: "k1".to_owned(),
            secret: telemetry::Secret::new(TOKEN_SECRET.to_owned()),
        }];
    })
    .await
}

/// Uploads an ad as the administrator (one-request upload with `kind=ad`).
async fn upload_ad(t: &TestApp, admin: &str) -> String {
    let wav = media::wav::pcm_wav(7.0, 44_100, None, |t| {
        let value = 0.2 * (std::f64::consts::TAU * 660.0 * t).sin() * (t * 3.0).fract();
        (value, value)
    });
    let reply = t
        .tus(
            Method::POST,
            "/api/v1/tracks?title=Ad&singer=Sponsor&filename=ad.wav&kind=ad",
            admin,
            &[("content-length", wav.len().to_string())],
            Body::from(wav),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.raw);
    reply.body["track_id"].as_str().unwrap().to_owned()
}

async fn plays_splice_ads_for_free_listeners_and_count_events(t: &TestApp) {
    let (url, stop) = locator(2).await;
    let Some(owned) = with_player(t.backend, &url).await else {
        return;
    };
    let t = &owned;
    let artist = t.artist("singer@example.com").await;
    let admin = t.admin().await;
    // Only administrators upload ads, and `kind` is checked.
    let reply = t
        .tus(
            Method::POST,
            "/api/v1/tracks?title=X&singer=Y&kind=ad",
            &artist,
            &[("content-length", "4".into())],
            Body::from("abcd"),
        )
        .await;
    assert_eq!(
        (reply.status, error_code(&reply).as_str()),
        (StatusCode::FORBIDDEN, "admin_required")
    );
    let reply = t
        .tus(
            Method::POST,
            "/api/v1/tracks?title=X&singer=Y&kind=jingle",
            &admin,
            &[("content-length", "4".into())],
            Body::from("abcd"),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.raw
    );

    let track = upload_bytes(t, &artist, tone_wav(9.0), "song.wav").await;
    let ad = upload_ad(t, &admin).await;
    assert!(process(t).await >= 2);

    let listener = t.user("listener@example.com").await;
    // An ad is not playable as a track.
    let reply = t
        .post(
            "/api/v1/play",
            Some(&listener),
            json!({"track_id": ad, "format": "hls"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    let play = t
        .post(
            "/api/v1/play",
            Some(&listener),
            json!({"track_id": track, "format": "hls", "device": "test"}),
        )
        .await;
    assert_eq!(play.status, StatusCode::CREATED, "{}", play.raw);
    let body = &play.body;
    assert_eq!(body["ads"].as_array().unwrap().len(), 1, "{}", play.raw);
    assert_eq!(body["ads"][0]["track_id"], ad);
    assert_eq!(body["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(body["nodes"][0]["reason"], "nearest-edge");
    let manifest = body["manifest_url"].as_str().unwrap();
    let path = &manifest[manifest.find("/api/v1/plays/").unwrap()..];
    let master = t.get(path, None).await;
    assert_eq!(master.status, StatusCode::OK);
    assert_eq!(
        master.headers["content-type"],
        "application/vnd.apple.mpegurl"
    );
    let media = t.get(&path.replace("master.m3u8", "128k.m3u8"), None).await;
    assert_eq!(media.status, StatusCode::OK);
    // The media playlist points at the primary node, each piece under its own token.
    let text = media.raw.clone();
    assert!(
        text.contains("#EXT-X-DISCONTINUITY") && text.contains("CLASS=\"com.cadenza.ad\""),
        "{text}"
    );
    let keyring = url_token::Keyring::new(
        vec![url_token::Key::new("k1", TOKEN_SECRET.as_bytes()).unwrap()],
        "k1",
    )
    .unwrap();
    let now = (t.clock.now_ms() / 1000) as u64;
    for line in text.lines().filter(|line| line.ends_with(".m4s")) {
        let rest = line
            .strip_prefix("https://edge-1.test/t/")
            .unwrap_or_else(|| panic!("{line}"));
        let (token, path) = rest.split_once('/').unwrap();
        let claims = keyring.verify(token, &format!("/{path}"), now, 0).unwrap();
        assert!(
            claims.expires_at > now + 3600 && claims.expires_at < now + 3600 + 60,
            "{claims:?}"
        );
    }
    let fallback = t
        .get(
            &path
                .replace("/0/", "/1/")
                .replace("master.m3u8", "manifest.mpd"),
            None,
        )
        .await;
    assert_eq!(fallback.status, StatusCode::OK);
    assert_eq!(fallback.raw.matches("<Period ").count(), 2);
    assert!(
        fallback.raw.contains("<BaseURL>https://edge-2.test/t/"),
        "{}",
        fallback.raw
    );
    for bad in [
        "/api/v1/plays/play_nope/0/master.m3u8",
        &path.replace("/0/", "/5/"),
        &path.replace("master.m3u8", "../x.m3u8"),
    ] {
        assert_eq!(
            t.get(bad, None).await.status,
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }

    // Within the session the next play has no ad.
    let second = t
        .post(
            "/api/v1/play",
            Some(&listener),
            json!({"track_id": track, "format": "dash"}),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.body["ads"], json!([]));
    assert!(
        second.body["manifest_url"]
            .as_str()
            .unwrap()
            .starts_with("https://edge-1.test/t/")
    );
    assert!(
        second.body["manifest_url"]
            .as_str()
            .unwrap()
            .ends_with("/manifest.mpd")
    );

    // Events: start, progress (credited up to the wall time since the play), complete.
    let play_id = second.body["play_id"].as_str().unwrap();
    let event = |kind: &str, position: u64| json!({"play_id": play_id, "type": kind, "position_ms": position});
    let reply = t
        .post("/api/v1/play-events", Some(&listener), event("start", 0))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.raw);
    t.clock.advance(std::time::Duration::from_secs(4));
    let reply = t
        .post(
            "/api/v1/play-events",
            Some(&listener),
            event("progress", 60_000),
        )
        .await;
    assert_eq!(
        reply.body["listened_ms"], 9000,
        "capped at the track's end: {}",
        reply.raw
    );
    // The player moved to the fallback: what follows counts in that node's region.
    let mut moved = event("skip", 0);
    moved["node"] = json!("edge-9");
    let reply = t
        .post("/api/v1/play-events", Some(&listener), moved.clone())
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.raw
    );
    moved["node"] = json!("edge-2");
    let reply = t.post("/api/v1/play-events", Some(&listener), moved).await;
    assert_eq!(reply.body["state"], "skipped", "{}", reply.raw);
    let reply = t
        .post(
            "/api/v1/play-events",
            Some(&listener),
            json!({"play_id": play_id, "type": "pause"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The counters: one start and one skip for the track in site-1, one ad served.
    let counters = control_plane::catalog::play_counters_handler(t.app.clone());
    t.app
        .bus
        .poll(
            control_plane::catalog::PLAY_COUNTERS,
            events::plays::TOPIC,
            &counters,
        )
        .await
        .unwrap();
    let entry = t
        .get(&format!("/api/v1/tracks/{track}/catalog"), None)
        .await;
    let plays = &entry.body["plays"];
    assert_eq!(plays.as_array().unwrap().len(), 2, "{}", entry.raw);
    let row = |region: &str| {
        plays
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["region"] == region)
            .unwrap_or_else(|| panic!("no {region} row: {plays}"))
            .clone()
    };
    let (first, second) = (row("site-1"), row("site-2"));
    assert_eq!(
        (first["starts"].as_i64(), first["skips"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(first["listened_ms"], 9000);
    assert_eq!(
        (second["starts"].as_i64(), second["skips"].as_i64()),
        (Some(0), Some(1))
    );
    // An event counted twice (a redelivery) counts once.
    let delta = control_plane::catalog::PlayCounter {
        track_id: "redelivered".to_owned(),
        day: "2026-01-01".to_owned(),
        region: "site-1".to_owned(),
        starts: 1,
        ..Default::default()
    };
    for _ in 0..2 {
        t.app
            .catalog
            .count_play("one-event", &delta, 0)
            .await
            .unwrap();
    }
    let counted = t.app.catalog.play_counters("redelivered").await.unwrap();
    assert_eq!(counted.len(), 1);
    assert_eq!(counted[0].starts, 1);
    let ad_entry = t
        .get(&format!("/api/v1/tracks/{ad}/catalog"), Some(&admin))
        .await;
    assert_eq!(ad_entry.body["plays"][0]["ads"], 1, "{}", ad_entry.raw);

    // A paid subscriber would hear none; the admin blocks the track: 451.
    let reply = t.set_blocked(&admin, &track, Some("")).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = t.set_blocked(&admin, &track, Some("rights dispute")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = t
        .post(
            "/api/v1/play",
            Some(&listener),
            json!({"track_id": track, "format": "hls"}),
        )
        .await;
    assert_eq!(
        (reply.status.as_u16(), error_code(&reply).as_str()),
        (451, "track_blocked")
    );
    let reply = t.set_blocked(&admin, &track, None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = t
        .post(
            "/api/v1/play",
            Some(&listener),
            json!({"track_id": track, "format": "hls"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    owned.finish().await;
    stop.trigger();
}

async fn concurrent_first_plays_serve_one_ad(t: &TestApp) {
    let (url, stop) = locator(1).await;
    let Some(owned) = with_player(t.backend, &url).await else {
        return;
    };
    let t = &owned;
    let artist = t.artist("singer@example.com").await;
    let admin = t.admin().await;
    let track = upload_bytes(t, &artist, tone_wav(6.0), "song.wav").await;
    upload_ad(t, &admin).await;
    assert!(process(t).await >= 2);
    let listener = t.user("listener@example.com").await;
    let plays = futures::future::join_all((0..6).map(|_| {
        t.post(
            "/api/v1/play",
            Some(&listener),
            json!({"track_id": track, "format": "hls"}),
        )
    }))
    .await;
    let mut ads = 0;
    for play in &plays {
        assert_eq!(play.status, StatusCode::CREATED, "{}", play.raw);
        ads += play.body["ads"].as_array().unwrap().len();
    }
    assert_eq!(ads, 1, "one session start, one break");
    owned.finish().await;
    stop.trigger();
}

async fn play_fails_cleanly_without_a_locator_or_a_node(t: &TestApp) {
    let artist = t.artist("singer@example.com").await;
    let track = upload_bytes(t, &artist, tone_wav(6.0), "song.wav").await;
    let listener = t.user("listener@example.com").await;
    let body = json!({"track_id": track, "format": "hls"});
    // Not configured.
    let reply = t.post("/api/v1/play", Some(&listener), body.clone()).await;
    assert_eq!(
        (reply.status, error_code(&reply).as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "play_unavailable")
    );

    // A locator with no nodes; then one that is not there at all.
    let (url, stop) = locator(0).await;
    let Some(with_empty) = with_player(t.backend, &url).await else {
        return;
    };
    let artist = with_empty.artist("singer@example.com").await;
    let track = upload_bytes(&with_empty, &artist, tone_wav(6.0), "song.wav").await;
    let listener = with_empty.user("listener@example.com").await;
    let body = json!({"track_id": track, "format": "hls"});
    let reply = with_empty
        .post("/api/v1/play", Some(&listener), body.clone())
        .await;
    assert_eq!(error_code(&reply), "track_not_ready");
    assert!(process(&with_empty).await >= 1);
    let reply = with_empty
        .post("/api/v1/play", Some(&listener), body.clone())
        .await;
    assert_eq!(
        (reply.status, error_code(&reply).as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "no_node")
    );
    stop.trigger();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let reply = with_empty.post("/api/v1/play", Some(&listener), body).await;
    assert_eq!(
        (reply.status, error_code(&reply).as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "locator_unavailable")
    );
    // Nothing was recorded for the failed plays.
    let reply = with_empty
        .post(
            "/api/v1/play-events",
            Some(&listener),
            json!({"play_id": "x", "type": "start"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let _: Value = reply.body;
    with_empty.finish().await;
}
