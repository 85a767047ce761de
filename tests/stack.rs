//! End-to-end: the all-in-one stack started in-process on free ports, driven over real HTTP
//! the way a newcomer's scripts would, stopped, and started again on the same data.

use std::time::Duration;

use cadenza::{StackInfo, StackOptions, start};
use serde_json::{Value, json};
use telemetry::{LogFormat, Shutdown};

fn options(dir: &std::path::Path) -> StackOptions {
    StackOptions {
        data_dir: dir.to_path_buf(),
        host: "127.0.0.1".parse().unwrap(),
        base_port: 0,
        log_format: LogFormat::Human,
        clock: telemetry::Clock::system(),
    }
}

/// GETs `url` (with the bearer `token`, if any) until its JSON answer is `ready`, for at most
/// 20 s: for what the bus brings about a moment after the stack starts.
async fn poll_json(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut request = http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if ready(&answer) {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_serves_the_api_and_restarts_on_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = Shutdown::new();
    let stack = start(&options(dir.path()), shutdown.clone()).await.unwrap();
    let stack_token = stack.node_token.clone();

    // stack.json describes the running stack.
    let written: StackInfo =
        serde_json::from_slice(&std::fs::read(dir.path().join("stack.json")).unwrap()).unwrap();
    assert_eq!(written.control_plane.url, stack.info.control_plane.url);
    let api = written.control_plane.url.clone();
    let admin = written.control_plane.admin.clone();
    let http = reqwest::Client::new();

    let packages: Value = test_support::get_json(&http, format!("{api}/api/v1/packages")).await;
    assert_eq!(packages.as_array().unwrap().len(), 3);

    // The demo listener logs in with the printed credentials.
    let listener = &written.demo.listener;
    let session = http
        .post(format!("{api}/api/v1/sessions"))
        .json(&json!({"email": listener.email, "password": listener.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 201);
    let token = session.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me: Value = test_support::json_of(
        http.get(format!("{api}/api/v1/users/me"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(me["role"], "listener");

    // The demo tunes, uploaded after the stack started, reached search through the bus.
    poll_json(
        &http,
        &format!("{api}/api/v1/search?q=minor%20walz"),
        None,
        "the demo tunes to reach search",
        |found| found["tracks"]["items"][0]["track"]["title"] == "Minor Waltz",
    )
    .await;

    // Every demo tune passed the pipeline (none taken for a copy of another), and the demo
    // listener's history reached home through the analytics consumer.
    assert_eq!(
        written
            .demo_catalogue
            .iter()
            .filter(|entry| entry.kind == "music")
            .count(),
        12,
        "{:?}",
        written.demo_catalogue
    );
    poll_json(
        &http,
        &format!("{api}/api/v1/home"),
        Some(&token),
        "the demo listener's home to have its sections",
        |home| {
            let sections: Vec<&str> = home["sections"]
                .as_array()
                .unwrap()
                .iter()
                .map(|section| section["id"].as_str().unwrap())
                .collect();
            ["recent", "playlists", "top", "new", "because"]
                .iter()
                .all(|id| sections.contains(id))
        },
    )
    .await;

    // A newcomer signs up over the socket (the client address comes from the connection).
    let signed_up = http
        .post(format!("{api}/api/v1/users"))
        .json(&json!({"first_name": "New", "last_name": "Comer", "email": "new@example.com",
                      "mobile": "+33612345678", "address": "Paris", "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_up.status(), 201);

    // The admin port reports health, readiness and metrics.
    assert_eq!(
        http.get(format!("{admin}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{admin}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = test_support::get_text(&http, format!("{admin}/metrics")).await;
    assert!(metrics.contains("cadenza_http_requests_total"), "{metrics}");
    assert!(metrics.contains(r#"route="/api/v1/sessions""#), "{metrics}");

    // The edge registers itself with the host locator, which sends players to it.
    let locator = &written.host_locator;
    assert_eq!(written.edges.len(), 2);
    let mut found = Value::Null;
    for _ in 0..100 {
        let answer = http
            .get(format!("{}/v1/locate?track=t", locator.url))
            .send()
            .await
            .unwrap();
        if answer.status() == 200 {
            found = answer.json().await.unwrap();
            if found["candidates"]
                .as_array()
                .is_some_and(|all| all.len() == 2)
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The default client location is Frankfurt: edge-1 there first, edge-2 (Amsterdam) next.
    assert_eq!(found["candidates"][0]["node"], "edge-1", "{found}");
    assert_eq!(found["candidates"][1]["node"], "edge-2", "{found}");
    assert_eq!(
        written.edges[0].h3, found["candidates"][0]["url"],
        "{found}"
    );

    // The demo track plays through the edge, which fills from the origin.
    let demo = written.demo_track.clone().expect("the demo track is ready");
    let master = http.get(&demo.hls).send().await.unwrap();
    assert_eq!(master.status(), 200);
    assert_eq!(
        master.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    let master = master.text().await.unwrap();
    let base = demo.hls.rsplit_once('/').unwrap().0.to_owned();
    let variant = master
        .lines()
        .find(|line| !line.starts_with('#') && !line.is_empty())
        .expect("a variant");
    let media_url = format!("{base}/{variant}");
    let media = test_support::get_text(&http, &media_url).await;
    let segment = media
        .lines()
        .find(|line| !line.starts_with('#') && !line.is_empty())
        .expect("a segment");
    let segment_url = format!("{}/{segment}", media_url.rsplit_once('/').unwrap().0);
    let via_edge = http.get(&segment_url).send().await.unwrap();
    assert_eq!(via_edge.status(), 200, "{segment_url}");
    let via_edge = via_edge.bytes().await.unwrap();
    let again = http.get(&segment_url).send().await.unwrap();
    assert_eq!(again.headers()["cache-status"], "edge-1; hit");
    assert_eq!(again.bytes().await.unwrap(), via_edge);
    // The origin serves the same bytes, but only to a fill.
    let path = &segment_url[segment_url.find("/media/").unwrap()..];
    let origin_url = format!("{}{path}", written.origin.url);
    assert_eq!(http.get(&origin_url).send().await.unwrap().status(), 401);
    let fill_key = std::fs::read_to_string(dir.path().join("fill-key")).unwrap();
    let direct = http
        .get(&origin_url)
        .bearer_auth(fill_key.trim())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(direct, via_edge);
    // edge-2 fills from edge-1 (its first parent) and serves the same bytes.
    let second = segment_url.replace(&written.edges[0].url, &written.edges[1].url);
    assert_ne!(second, segment_url);
    let via_second = http.get(&second).send().await.unwrap();
    assert_eq!(via_second.status(), 200);
    assert_eq!(via_second.bytes().await.unwrap(), via_edge);
    // Without the token, the edge refuses.
    let untokened = format!("{}{path}", written.edges[0].url);
    assert_eq!(http.get(&untokened).send().await.unwrap().status(), 403);
    // The ISP box covers 127.0.0.2: the locator sends clients there to it, it serves them, it
    // refuses everyone else, and it pre-positions the demo catalogue from the manifest.
    assert_eq!(written.isp_boxes.len(), 1);
    let isp_box = &written.isp_boxes[0];
    let from_isp = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    poll_json(
        &from_isp,
        &format!("{}/v1/locate?track=t", locator.url),
        None,
        "the locator to send 127.0.0.2 to the ISP box",
        |answer| answer["candidates"][0]["node"] == "isp-demo-1" && answer["reason"] == "isp-box",
    )
    .await;
    let box_segment = segment_url.replace(&written.edges[0].url, &isp_box.url);
    let via_box = from_isp.get(&box_segment).send().await.unwrap();
    assert_eq!(via_box.status(), 200, "{box_segment}");
    assert_eq!(via_box.bytes().await.unwrap(), via_edge);
    let refused = http.get(&box_segment).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let status = poll_json(
        &http,
        &format!("{}/status", isp_box.admin),
        None,
        "the ISP box to pre-position the demo catalogue",
        |status| {
            status["fill"]["complete"] == true
                && status["fill"]["manifest_tracks"].as_u64() >= Some(12)
        },
    )
    .await;
    assert_eq!(status["id"], "isp-demo-1");
    assert!(
        status["fill"]["bytes_held"].as_u64().unwrap() > 0,
        "{status}"
    );
    let dash = http.get(&demo.dash).send().await.unwrap();
    assert_eq!(dash.status(), 200);
    assert_eq!(dash.headers()["content-type"], "application/dash+xml");

    assert_eq!(
        http.get(format!("{}/readyz", locator.admin))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Drain and stop.
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(15), stack.wait())
        .await
        .expect("stops within the grace period")
        .unwrap();
    assert!(
        http.get(format!("{api}/api/v1/packages"))
            .send()
            .await
            .is_err(),
        "the listener is closed"
    );

    // A second start reuses the data: same demo credentials, the sign-up is still there.
    let shutdown = Shutdown::new();
    let again = start(&options(dir.path()), shutdown.clone()).await.unwrap();
    assert_eq!(again.info.demo.listener.password, listener.password);
    let demo_again = again
        .info
        .demo_track
        .clone()
        .expect("the demo track is kept");
    assert_eq!(demo_again.id, demo.id);
    assert_eq!(
        http.get(&demo_again.hls).send().await.unwrap().status(),
        200
    );
    assert_eq!(again.node_token, stack_token, "the node token is kept too");
    let api = again.info.control_plane.url.clone();
    let relogin = http
        .post(format!("{api}/api/v1/sessions"))
        .json(&json!({"email": "new@example.com", "password": "a long enough password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(relogin.status(), 201);
    let packages: Value = test_support::get_json(&http, format!("{api}/api/v1/packages")).await;
    assert_eq!(
        packages.as_array().unwrap().len(),
        3,
        "packages are seeded once"
    );
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(15), again.wait())
        .await
        .unwrap()
        .unwrap();
}
