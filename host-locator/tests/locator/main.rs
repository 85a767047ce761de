//! The host locator through its HTTP API: registration and heartbeats, GeoIP placement,
//! ISP-box prefixes, health, the 302 mode, proxies, bad input, and GeoIP reloads.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use host_locator::Locator;
use host_locator::config::Config;
use host_locator::mmdb::{Writer, city_record};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use telemetry::DaemonConfig as _;
use telemetry::{Clock, Secret};
use tower::ServiceExt;

const TOKEN: &str = "node-token-for-tests-0123456789";

/// A City database with networks in five countries, IPv4 and IPv6.
fn geoip_bytes(paris_lat: f64) -> Vec<u8> {
    let mut writer = Writer::new("GeoLite2-City", "Cadenza test networks");
    writer.insert(
        "81.2.69.0/24".parse().unwrap(),
        city_record("GB", "London", 51.51, -0.09),
    );
    writer.insert(
        "2.2.0.0/16".parse().unwrap(),
        city_record("FR", "Paris", paris_lat, 2.35),
    );
    writer.insert(
        "5.10.0.0/16".parse().unwrap(),
        city_record("DE", "Berlin", 52.52, 13.40),
    );
    writer.insert(
        "8.8.0.0/16".parse().unwrap(),
        city_record("US", "New York", 40.71, -74.0),
    );
    writer.insert(
        "1.0.16.0/20".parse().unwrap(),
        city_record("JP", "Tokyo", 35.68, 139.69),
    );
    writer.insert(
        "2a01:e00::/26".parse().unwrap(),
        city_record("FR", "Paris", paris_lat, 2.35),
    );
    writer.insert(
        "2001:4860::/32".parse().unwrap(),
        city_record("US", "New York", 40.71, -74.0),
    );
    writer.build(1_700_000_000)
}

struct Harness {
    locator: Locator,
    clock: Clock,
    dir: tempfile::TempDir,
}

impl Harness {
    fn new(with_geoip: bool, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            node_token: Some(Secret::new(TOKEN)),
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            ..Config::default()
        };
        if with_geoip {
            let path = dir.path().join("city.mmdb");
            std::fs::write(&path, geoip_bytes(48.86)).unwrap();
            config.geoip_db = Some(path);
        }
        tweak(&mut config);
        config.validate().unwrap();
        let clock = Clock::manual(1_800_000_000_000);
        let locator = Locator::new(config, clock.clone()).unwrap();
        Self {
            locator,
            clock,
            dir,
        }
    }

    async fn call(
        &self,
        peer: &str,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let peer: SocketAddr = format!("{peer}:40000")
            .parse()
            .or_else(|_| format!("[{peer}]:40000").parse())
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = self.locator.router().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            headers,
        )
    }

    async fn register(&self, node: Value) -> StatusCode {
        self.register_answer(node).await.0
    }

    /// Registers `node` with the right token; the status and body.
    async fn register_answer(&self, node: Value) -> (StatusCode, Value) {
        let (status, body, _) = self
            .call(
                "192.0.2.1",
                Method::POST,
                "/v1/nodes",
                Some(TOKEN),
                Some(node),
                &[],
            )
            .await;
        (status, body)
    }

    async fn heartbeat(&self, node: Value) -> StatusCode {
        let id = node["id"].as_str().unwrap().to_owned();
        self.call(
            "192.0.2.1",
            Method::POST,
            &format!("/v1/nodes/{id}/heartbeat"),
            Some(TOKEN),
            Some(node),
            &[],
        )
        .await
        .0
    }

    async fn locate(&self, client: &str, query: &str) -> (StatusCode, Value) {
        let (status, body, _) = self
            .call(
                client,
                Method::GET,
                &format!("/v1/locate?{query}"),
                None,
                None,
                &[],
            )
            .await;
        (status, body)
    }

    async fn primary(&self, client: &str, query: &str) -> (String, String) {
        let (status, body) = self.locate(client, query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            body["candidates"][0]["node"].as_str().unwrap().to_owned(),
            body["candidates"][0]["reason"].as_str().unwrap().to_owned(),
        )
    }
}

fn edge(id: &str, site: &str, lat: f64, lon: f64) -> Value {
    json!({
        "id": id, "kind": "edge", "site": site,
        "urls": {"h1": format!("http://{id}.cdn.test"), "h2": format!("https://{id}.cdn.test"), "h3": format!("https://{id}.cdn.test")},
        "location": {"lat": lat, "lon": lon},
        "capacity": {"connections": 1000, "egress_bps": 10_000_000_000_u64},
    })
}

fn isp_box(id: &str, prefixes: &[&str]) -> Value {
    json!({
        "id": id, "kind": "isp-box", "site": format!("isp-{id}"),
        "urls": {"h2": format!("https://{id}.isp.test")},
        "location": {"lat": 48.0, "lon": 2.0},
        "capacity": {"connections": 500},
        "prefixes": prefixes,
    })
}

async fn europe_and_america(h: &Harness) {
    for node in [
        edge("lon-1", "lon", 51.5, -0.1),
        edge("fra-1", "fra", 50.1, 8.7),
        edge("fra-2", "fra", 50.1, 8.7),
        edge("nyc-1", "nyc", 40.7, -74.0),
        edge("tyo-1", "tyo", 35.7, 139.7),
    ] {
        assert_eq!(h.register(node).await, StatusCode::CREATED);
    }
}

#[tokio::test]
async fn clients_go_to_the_nearest_edge_by_geoip() {
    let h = Harness::new(true, |_| {});
    europe_and_america(&h).await;
    assert_eq!(
        h.primary("81.2.69.160", "track=t1").await,
        ("lon-1".into(), "nearest-edge".into())
    );
    assert_eq!(h.primary("8.8.8.8", "track=t1").await.0, "nyc-1");
    assert_eq!(h.primary("1.0.16.1", "track=t1").await.0, "tyo-1");
    let berlin = h.primary("5.10.1.1", "track=t1").await.0;
    assert!(berlin.starts_with("fra-"), "{berlin}");
    // IPv6 clients.
    assert_eq!(h.primary("2a01:e00::1", "track=t1").await.0, "lon-1");
    assert_eq!(h.primary("2001:4860::8888", "track=t1").await.0, "nyc-1");

    let (_, answer) = h.locate("2.2.3.4", "track=t1&protocol=h3&format=hls").await;
    assert_eq!(answer["client"]["location_source"], "geoip");
    assert_eq!(answer["client"]["country"], "FR");
    assert_eq!(answer["reason"], "nearest-edge");
    let candidates = answer["candidates"].as_array().unwrap();
    assert_eq!(candidates[0]["node"], "lon-1");
    assert_eq!(candidates[0]["url"], "https://lon-1.cdn.test");
    assert!(candidates[1..].iter().all(|c| c["reason"] == "fallback"));
    assert_eq!(candidates.len(), 5, "primary plus every fallback");
    assert!(candidates[0]["distance_km"].as_f64().unwrap() < 400.0);

    // Unknown and private addresses get the default region (Frankfurt).
    let (_, private) = h.locate("192.168.1.10", "track=t1").await;
    assert_eq!(private["client"]["location_source"], "default");
    assert!(
        private["candidates"][0]["node"]
            .as_str()
            .unwrap()
            .starts_with("fra-")
    );
    // An explicit location wins (for testing).
    let (_, fixed) = h.locate("8.8.8.8", "track=t1&lat=35.6&lon=139.6").await;
    assert_eq!(fixed["client"]["location_source"], "override");
    assert_eq!(fixed["candidates"][0]["node"], "tyo-1");
}

#[tokio::test]
async fn isp_boxes_cover_their_prefixes() {
    let h = Harness::new(true, |_| {});
    europe_and_america(&h).await;
    assert_eq!(
        h.register(isp_box("orange-1", &["2.2.0.0/17", "2a01:e00::/28"]))
            .await,
        StatusCode::CREATED
    );
    assert_eq!(
        h.register(isp_box("orange-core", &["2.2.0.0/16"])).await,
        StatusCode::CREATED
    );

    assert_eq!(
        h.primary("2.2.0.1", "track=t").await,
        ("orange-1".into(), "isp-box".into())
    );
    assert_eq!(
        h.primary("2.2.127.255", "track=t").await.0,
        "orange-1",
        "last address of the /17"
    );
    assert_eq!(
        h.primary("2.2.128.0", "track=t").await.0,
        "orange-core",
        "first address past it: the /16"
    );
    let outside = h.primary("2.3.0.0", "track=t").await;
    assert!(
        outside.0.starts_with("fra-") && outside.1 == "nearest-edge",
        "outside every prefix and unknown to GeoIP: the default region's edge, {outside:?}"
    );
    assert_eq!(h.primary("2a01:e0f:ffff::1", "track=t").await.0, "orange-1");
    assert_eq!(
        h.primary("2a01:e10::1", "track=t").await.0,
        "lon-1",
        "outside the /28, inside the GeoIP /26"
    );
    // A box that cannot speak the asked protocol is skipped.
    let (_, h1) = h.locate("2.2.0.1", "track=t&protocol=h1").await;
    assert_eq!(h1["candidates"][0]["kind"], "edge");
}

#[tokio::test]
async fn health_overload_silence_and_recovery() {
    let h = Harness::new(true, |config| config.heartbeat_timeout_secs = 10);
    europe_and_america(&h).await;
    let london = "81.2.69.1";
    assert_eq!(h.primary(london, "track=t").await.0, "lon-1");

    let mut unhealthy = edge("lon-1", "lon", 51.5, -0.1);
    unhealthy["healthy"] = json!(false);
    assert_eq!(h.heartbeat(unhealthy).await, StatusCode::OK);
    assert_ne!(h.primary(london, "track=t").await.0, "lon-1");

    let mut overloaded = edge("lon-1", "lon", 51.5, -0.1);
    overloaded["overloaded"] = json!(true);
    h.heartbeat(overloaded).await;
    assert_ne!(h.primary(london, "track=t").await.0, "lon-1");

    let mut full = edge("lon-1", "lon", 51.5, -0.1);
    full["load"] = json!({"connections": 1000});
    h.heartbeat(full).await;
    assert_ne!(h.primary(london, "track=t").await.0, "lon-1", "at capacity");

    h.heartbeat(edge("lon-1", "lon", 51.5, -0.1)).await;
    assert_eq!(h.primary(london, "track=t").await.0, "lon-1", "recovered");

    // Silence: 11 s without a heartbeat from anyone but fra-1.
    h.clock.advance(Duration::from_secs(11));
    h.heartbeat(edge("fra-1", "fra", 50.1, 8.7)).await;
    let (_, answer) = h.locate(london, "track=t").await;
    let nodes: Vec<&str> = answer["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        ["fra-1"],
        "silent nodes leave every answer within the interval"
    );
    h.clock.advance(Duration::from_secs(11));
    let (status, body) = h.locate(london, "track=t").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "no_node");
    // Coming back is one heartbeat.
    h.heartbeat(edge("lon-1", "lon", 51.5, -0.1)).await;
    assert_eq!(h.primary(london, "track=t").await.0, "lon-1");
}

#[tokio::test]
async fn a_restarted_locator_rebuilds_from_heartbeats() {
    let first = Harness::new(true, |_| {});
    europe_and_america(&first).await;
    let before = first.primary("5.10.1.1", "track=song-42").await;
    // A fresh locator knows nothing until the nodes' next heartbeats, which carry everything.
    let second = Harness::new(true, |_| {});
    assert_eq!(
        second.locate("5.10.1.1", "track=song-42").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    for node in [
        edge("lon-1", "lon", 51.5, -0.1),
        edge("fra-1", "fra", 50.1, 8.7),
        edge("fra-2", "fra", 50.1, 8.7),
        edge("nyc-1", "nyc", 40.7, -74.0),
        edge("tyo-1", "tyo", 35.7, 139.7),
    ] {
        assert_eq!(second.heartbeat(node).await, StatusCode::OK);
    }
    assert_eq!(
        second.primary("5.10.1.1", "track=song-42").await,
        before,
        "same answer as its peer: rendezvous is stable across replicas"
    );
}

#[tokio::test]
async fn redirect_mode_and_proxies() {
    let h = Harness::new(true, |_| {});
    europe_and_america(&h).await;
    let (status, _, headers) = h
        .call(
            "8.8.4.4",
            Method::GET,
            "/v1/locate?track=t&redirect=1&protocol=h2&path=/t/abc/media/t/1/hls/master.m3u8",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(
        headers["location"],
        "https://nyc-1.cdn.test/t/abc/media/t/1/hls/master.m3u8"
    );
    assert_eq!(headers["cache-control"], "no-store");

    // A stranger's X-Forwarded-For is ignored; a trusted proxy's is believed.
    let spoof = [("x-forwarded-for", "1.0.16.5")];
    let (_, spoofed, _) = h
        .call(
            "8.8.4.4",
            Method::GET,
            "/v1/locate?track=t",
            None,
            None,
            &spoof,
        )
        .await;
    assert_eq!(spoofed["client"]["ip"], "8.8.4.4");
    assert_eq!(spoofed["candidates"][0]["node"], "nyc-1");
    let (_, proxied, _) = h
        .call(
            "10.1.2.3",
            Method::GET,
            "/v1/locate?track=t",
            None,
            None,
            &spoof,
        )
        .await;
    assert_eq!(proxied["client"]["ip"], "1.0.16.5");
    assert_eq!(proxied["candidates"][0]["node"], "tyo-1");
    let forwarded = [("forwarded", "for=\"[2a01:e00::9]:1234\"")];
    let (_, v6, _) = h
        .call(
            "10.1.2.3",
            Method::GET,
            "/v1/locate?track=t",
            None,
            None,
            &forwarded,
        )
        .await;
    assert_eq!(v6["client"]["ip"], "2a01:e00::9");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field() {
    let h = Harness::new(false, |_| {});
    // Authentication.
    let (status, body, _) = h
        .call(
            "192.0.2.1",
            Method::POST,
            "/v1/nodes",
            None,
            Some(edge("x", "s", 1.0, 1.0)),
            &[],
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (status, _, _) = h
        .call(
            "192.0.2.1",
            Method::POST,
            "/v1/nodes",
            Some("wrong-token-wrong-token"),
            Some(edge("x", "s", 1.0, 1.0)),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(h.locator.registry.snapshot().nodes.is_empty());

    let field_of = |body: &Value| {
        body["error"]["fields"][0]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let mut bad_prefix = isp_box("isp", &["2.2.0.0/33"]);
    let (status, body) = h.register_answer(bad_prefix.clone()).await;
    assert_eq!(
        (status, field_of(&body)),
        (StatusCode::BAD_REQUEST, "prefixes[0]".to_owned())
    );
    bad_prefix["prefixes"] = json!(["2.2.0.1/16"]);
    let (_, body) = h.register_answer(bad_prefix).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("host bits"),
        "{body}"
    );
    let mut bad_location = edge("e", "s", 0.0, 0.0);
    bad_location["location"] = json!({"lat": 123.0, "lon": 0.0});
    let (_, body) = h.register_answer(bad_location).await;
    assert_eq!(field_of(&body), "location");
    let mut bad_address = edge("e", "s", 0.0, 0.0);
    bad_address["address"] = json!("300.1.2.3");
    let (status, body) = h.register_answer(bad_address).await;
    assert_eq!(
        (status, field_of(&body)),
        (StatusCode::BAD_REQUEST, "address".to_owned())
    );
    let mut no_urls = edge("e", "s", 0.0, 0.0);
    no_urls["urls"] = json!({});
    let (_, body) = h.register_answer(no_urls).await;
    assert_eq!(field_of(&body), "urls");
    let mut bad_kind = edge("e", "s", 0.0, 0.0);
    bad_kind["kind"] = json!("router");
    let (_, body) = h.register_answer(bad_kind).await;
    assert_eq!(field_of(&body), "kind");
    let (status, _, _) = h
        .call(
            "192.0.2.1",
            Method::POST,
            "/v1/nodes/other/heartbeat",
            Some(TOKEN),
            Some(edge("e", "s", 0.0, 0.0)),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "id mismatch");
    let (status, body, _) = h
        .call(
            "192.0.2.1",
            Method::POST,
            "/v1/nodes",
            Some(TOKEN),
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        h.locator.registry.snapshot().nodes.is_empty(),
        "nothing was registered"
    );

    // Locate parameters.
    h.register(edge("fra-1", "fra", 50.1, 8.7)).await;
    for (query, field) in [
        ("", "track"),
        ("track=t&lat=91&lon=0", "lat"),
        ("track=t&lat=abc&lon=1", "lat"),
        ("track=t&lat=10", "lat"),
        ("track=t&format=mp4", "format"),
        ("track=t&protocol=h9", "protocol"),
        ("track=t&path=//evil.example/", "path"),
        ("track=t&client=1.2.3.4", "query"),
    ] {
        let (status, body) = h.locate("192.0.2.9", query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(field_of(&body), field, "{query}");
    }
    let (status, _, _) = h
        .call(
            "192.0.2.1",
            Method::DELETE,
            "/v1/nodes/nope",
            Some(TOKEN),
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = h
        .call(
            "192.0.2.1",
            Method::DELETE,
            "/v1/nodes/fra-1",
            Some(TOKEN),
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body, _) = h
        .call("192.0.2.1", Method::GET, "/v1/nope", None, None, &[])
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("route_not_found"))
    );
}

#[tokio::test]
async fn works_without_geoip_from_prefixes_and_defaults() {
    let h = Harness::new(false, |config| {
        config.default_location = host_locator::geo::GeoPoint {
            lat: 40.7,
            lon: -74.0,
        }
    });
    assert!(!h.locator.geoip.is_enabled());
    europe_and_america(&h).await;
    h.register(isp_box("isp-1", &["203.0.113.0/24"])).await;
    assert_eq!(h.primary("203.0.113.50", "track=t").await.0, "isp-1");
    let (_, answer) = h.locate("81.2.69.160", "track=t").await;
    assert_eq!(answer["client"]["location_source"], "default");
    assert_eq!(answer["candidates"][0]["node"], "nyc-1");
}

#[tokio::test]
async fn geoip_reloads_and_survives_a_corrupt_file() {
    let h = Harness::new(true, |_| {});
    let path = h.dir.path().join("city.mmdb");
    let paris = "2.2.3.4".parse().unwrap();
    assert!((h.locator.geoip.lookup(paris).unwrap().point.lat - 48.86).abs() < 1e-9);

    // A new database, replaced atomically (write beside it, rename over it).
    let tmp = h.dir.path().join("city.tmp");
    std::fs::write(&tmp, geoip_bytes(10.0)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(h.locator.geoip.reload_if_changed().unwrap());
    assert!((h.locator.geoip.lookup(paris).unwrap().point.lat - 10.0).abs() < 1e-9);
    assert!(
        !h.locator.geoip.reload_if_changed().unwrap(),
        "unchanged file: nothing to do"
    );

    // A corrupt one: the previous database stays in service; the watcher logs and counts it.
    let shutdown = telemetry::Shutdown::new();
    let watcher = h
        .locator
        .geoip
        .clone()
        .watch(Duration::from_millis(20), shutdown.clone());
    std::fs::write(&tmp, b"this is not a maxmind database, not even close").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let metrics = telemetry::metrics_handle();
    let started = std::time::Instant::now();
    while !metrics
        .render()
        .contains(r#"cadenza_locator_geoip_reloads_total{result="error"}"#)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the failed reload was not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        (h.locator.geoip.lookup(paris).unwrap().point.lat - 10.0).abs() < 1e-9,
        "old database still answers"
    );
    shutdown.trigger();
    watcher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_serves_over_real_sockets() {
    let config = Config {
        node_token: Some(Secret::new(TOKEN)),
        ..Config::default()
    };
    let locator = Locator::new(config, Clock::system()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (api, admin_url) = (
        format!("http://{}", listener.local_addr().unwrap()),
        format!("http://{}", admin.local_addr().unwrap()),
    );
    let shutdown = telemetry::Shutdown::new();
    let task = tokio::spawn(host_locator::run(
        locator,
        listener,
        admin,
        shutdown.clone(),
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let registered = http
        .post(format!("{api}/v1/nodes"))
        .bearer_auth(TOKEN)
        .json(&edge("fra-1", "fra", 50.1, 8.7))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let located = http
        .get(format!("{api}/v1/locate?track=x&redirect=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(located.status(), 302);
    assert_eq!(located.headers()["location"], "https://fra-1.cdn.test/");
    let metrics = test_support::get_text(&http, format!("{admin_url}/metrics")).await;
    assert!(
        metrics.contains(r#"cadenza_locator_answers_total{reason="nearest-edge"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("cadenza_locator_lookup_duration_seconds"),
        "{metrics}"
    );
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
