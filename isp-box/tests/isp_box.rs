//! The ISP box end to end: a test origin, a stand-in control plane serving a fill manifest, a
//! real host locator, and the box in this process (on a clock the test moves) or as its own
//! process (so that it can be killed without deregistering).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use isp_box::status::Level;
use isp_box::{Config, IspBox};
use serde_json::{Value, json};
use telemetry::DaemonConfig as _;
use telemetry::{Clock, Secret, Shutdown};
use test_support::eventually;
use test_support::origin::{FILL_KEY, TestObject, TestOrigin, bytes_of};

const BOX_TOKEN: &str = "box-token-for-tests-at-least-32-characters";
const NODE_TOKEN: &str = "node-token-for-isp-box-tests";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// 2026-12-07 01:00 UTC: an hour before the default window opens.
const BEFORE_WINDOW_MS: i64 = 1_796_605_200_000;

/// A stand-in control plane: the manifest endpoint, with its token check, counting calls.
struct ControlPlane {
    url: String,
    calls: Arc<AtomicUsize>,
    manifest: Arc<std::sync::Mutex<Value>>,
}

type ControlState = (Arc<std::sync::Mutex<Value>>, Arc<AtomicUsize>);

impl ControlPlane {
    async fn start(manifest: Value) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let manifest = Arc::new(std::sync::Mutex::new(manifest));
        let state: ControlState = (manifest.clone(), calls.clone());
        let app = Router::new()
            .route(
                "/api/v1/isp/manifest",
                get(
                    |State((manifest, calls)): State<ControlState>, headers: HeaderMap| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let authorised = headers
                            .get("authorization")
                            .is_some_and(|value| value == &format!("Bearer {BOX_TOKEN}"));
                        if authorised {
                            let manifest = manifest.lock().unwrap().clone();
                            axum::Json(manifest).into_response()
                        } else {
                            StatusCode::UNAUTHORIZED.into_response()
                        }
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            calls,
            manifest,
        }
    }
}

/// `tracks` tracks of `segments` segments of `size` bytes each, on the origin and in a
/// manifest.
fn catalogue(
    origin: &TestOrigin,
    tracks: usize,
    segments: usize,
    size: usize,
) -> (Value, Vec<String>) {
    let mut paths = Vec::new();
    let mut listed = Vec::new();
    for track in 0..tracks {
        let mut objects = Vec::new();
        for segment in 1..=segments {
            let path = format!("/media/track-{track}/v1/128k/seg-{segment:05}.m4s");
            origin.put(
                &path,
                TestObject::new(bytes_of(size, (track * 1000 + segment) as u64), IMMUTABLE),
            );
            objects.push(json!({"path": path, "bytes": size}));
            paths.push(path);
        }
        listed.push(json!({
            "track_id": format!("track-{track}"),
            "expected_plays": 100.0 - track as f64,
            "bytes": segments * size,
            "objects": objects,
        }));
    }
    let manifest = json!({
        "box_id": "isp-test-1", "region": "isp-test", "generated_at": BEFORE_WINDOW_MS,
        "budget_bytes": 1_000_000_000u64, "bytes": tracks * segments * size, "tracks": listed,
    });
    (manifest, paths)
}

fn box_config(dir: &std::path::Path, origin: &str) -> Config {
    let mut config = Config {
        prefixes: vec!["127.0.0.2/32".parse().unwrap()],
        nearest_edges: 0,
        ..Config::default()
    };
    config.node = edge_node::Config {
        id: "isp-test-1".into(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tls_listen: None,
        http3: false,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        parents: vec![origin.to_owned()],
        fill_key: Some(Secret::new(FILL_KEY)),
        token_prefixes: Vec::new(),
        disk_cache_dir: Some(dir.to_path_buf()),
        disk_cache_bytes: 200 * 1024 * 1024,
        memory_cache_bytes: 16 * 1024 * 1024,
        upstream_first_byte_timeout_ms: 3_000,
        upstream_idle_timeout_ms: 3_000,
        drain_grace_secs: 1,
        log_format: telemetry::LogFormat::Human,
        ..edge_node::Config::default()
    };
    config
}

/// A client whose requests come from `source` (127.0.0.2 is the box's covered "ISP").
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn status_of(admin: SocketAddr) -> isp_box::status::Status {
    reqwest::get(format!("http://{admin}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// GETs every path from the box: (path, status, `Cache-Status`, body length).
async fn fetch_all(
    client: &reqwest::Client,
    addresses: &edge_node::Addresses,
    paths: &[String],
) -> Vec<(String, StatusCode, String, usize)> {
    let base = format!("http://{}", addresses.cleartext.unwrap());
    let mut answers = Vec::new();
    for path in paths {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        let status = response.status();
        let cache_status = response
            .headers()
            .get("cache-status")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let length = response.bytes().await.unwrap().len();
        answers.push((path.clone(), status, cache_status, length));
    }
    answers
}

async fn start_box(
    config: Config,
    clock: Clock,
) -> (
    IspBox,
    edge_node::Addresses,
    Shutdown,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    config.validate().unwrap();
    let isp_box = IspBox::new(config, clock).unwrap();
    let shutdown = Shutdown::new();
    let (addresses, task) = isp_box.clone().start(shutdown.clone()).await.unwrap();
    (isp_box, addresses, shutdown, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fill_waits_for_its_window_keeps_to_its_cap_and_leaves_the_box_warm_across_a_restart() {
    let origin = TestOrigin::start().await;
    // 48 segments of 256 KiB: 12 MiB, about 1.6 s at the cap.
    let (manifest, paths) = catalogue(&origin, 6, 8, 256 * 1024);
    let control = ControlPlane::start(manifest).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(BEFORE_WINDOW_MS);
    let mut config = box_config(dir.path(), &origin.url());
    config.fill.control_plane = Some(control.url.clone());
    config.fill.token = Some(Secret::new(BOX_TOKEN));
    config.fill.rate_bps = 64_000_000;
    config.fill.poll_ms = 20;
    let cap_bytes_per_sec = config.fill.rate_bps as f64 / 8.0;
    let (isp_box, addresses, shutdown, task) = start_box(config.clone(), clock.clone()).await;

    // Outside the window nothing is asked for.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(control.calls.load(Ordering::SeqCst), 0);
    assert!(paths.iter().all(|path| origin.hits(path) == 0));
    let status = status_of(addresses.admin).await;
    assert!(
        status.fill.enabled && !status.fill.window_open,
        "{status:?}"
    );

    // 02:00: the window opens; the fill runs to the end of the manifest under the cap.
    let opened = Instant::now();
    clock.advance(Duration::from_secs(3_600));
    eventually("the fill completes", || isp_box.filler.status().complete).await;
    let took = opened.elapsed().as_secs_f64();
    let status = status_of(addresses.admin).await;
    let bytes = status.fill.window_bytes as f64;
    assert_eq!(bytes, 48.0 * 256.0 * 1024.0);
    assert_eq!(status.fill.window_objects, 48);
    let rate = bytes / took;
    eprintln!(
        "fill run: {bytes} bytes, 48 objects in {took:.2} s = {:.2} MB/s against a cap of {:.2} MB/s",
        rate / 1e6,
        cap_bytes_per_sec / 1e6
    );
    assert!(
        rate <= cap_bytes_per_sec * 1.01,
        "filled at {rate} B/s against a cap of {cap_bytes_per_sec}"
    );
    assert!(rate >= cap_bytes_per_sec * 0.3, "filled at only {rate} B/s");
    assert!(paths.iter().all(|path| origin.hits(path) == 1));
    assert_eq!(status.state.level, Level::Ok, "{status:?}");

    // A track that leaves the manifest is evicted before anything else happens.
    let mut smaller = control.manifest.lock().unwrap().clone();
    smaller["tracks"].as_array_mut().unwrap().remove(0);
    *control.manifest.lock().unwrap() = smaller;
    clock.advance(Duration::from_secs(3_601));
    eventually("the left track is evicted", || {
        isp_box.filler.status().dropped_objects == 8
    })
    .await;
    let (dropped, kept) = paths.split_at(8);
    assert!(dropped.iter().all(|path| !isp_box.engine.holds(path)));
    assert!(kept.iter().all(|path| isp_box.engine.holds(path)));
    let paths = kept.to_vec();

    // Every upstream off: the manifest's objects are hits, from disk.
    origin.stop().await;
    let covered = client_from("127.0.0.2");
    for (path, status, cache_status, length) in fetch_all(&covered, &addresses, &paths).await {
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(cache_status.contains("hit"), "{path}: {cache_status}");
        assert_eq!(length, 256 * 1024);
    }
    let status = status_of(addresses.admin).await;
    assert_eq!(status.last_hour.requests, 40);
    assert!(
        (status.last_hour.byte_hit_ratio - 1.0).abs() < 1e-9,
        "{:?}",
        status.last_hour
    );

    // A restart on the same disk: still warm, with the origin still off.
    shutdown.trigger();
    task.await.unwrap().unwrap();
    drop(isp_box);
    let (_again, addresses, shutdown, _task) = start_box(config, clock.clone()).await;
    for (path, status, cache_status, _) in fetch_all(&covered, &addresses, &paths).await {
        assert_eq!(status, StatusCode::OK, "{path} after a restart");
        assert_eq!(cache_status, "isp-test-1; hit; detail=disk");
    }
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_cut_off_from_the_locator_stops_serving_and_says_why() {
    let origin = TestOrigin::start().await;
    origin.put(
        "/media/t/v1/a.m4s",
        TestObject::new(bytes_of(1000, 1), IMMUTABLE),
    );
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(BEFORE_WINDOW_MS);
    let mut config = box_config(dir.path(), &origin.url());
    // A locator that is not there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config.node.locator = Some(edge_node::register::LocatorConfig {
        url: format!("http://{closed}"),
        token: Secret::new(NODE_TOKEN),
        site: "isp-test".into(),
        lat: None,
        lon: None,
        address: None,
        h1_url: None,
        h2_url: None,
        h3_url: None,
        heartbeat_secs: 1,
        capacity_connections: 100,
        capacity_egress_bps: 1_000_000_000,
    });
    config.locator_cutoff_secs = 60;
    let (_isp_box, addresses, shutdown, _task) = start_box(config, clock.clone()).await;
    let covered = client_from("127.0.0.2");
    let url = format!("http://{}/media/t/v1/a.m4s", addresses.cleartext.unwrap());
    assert_eq!(
        covered.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = status_of(addresses.admin).await;
        if status.registration.failed_heartbeats > 0 {
            break status;
        }
        assert!(Instant::now() < deadline, "no heartbeat failed: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.state.level, Level::Warning, "{status:?}");
    clock.advance(Duration::from_secs(61));
    let response = covered.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "cut_off");
    let status = status_of(addresses.admin).await;
    assert_eq!(status.state.level, Level::Error);
    assert!(
        status.state.reasons[0].starts_with("cut off"),
        "{:?}",
        status.state
    );
    shutdown.trigger();
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The box as its own process, registering with a real locator: covered clients are sent to
/// it, others are refused; `isp-box status` reports it; killed (no deregistration), it leaves
/// the answers when its heartbeats stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_locator_sends_covered_clients_to_the_box_until_its_heartbeats_stop() {
    let origin = TestOrigin::start().await;
    origin.put(
        "/media/t/v1/a.m4s",
        TestObject::new(bytes_of(5000, 2), IMMUTABLE),
    );
    // The locator, on a clock the test moves, trusting this machine's forwarded addresses.
    let locator_clock = Clock::manual(BEFORE_WINDOW_MS);
    let locator_config = host_locator::config::Config {
        node_token: Some(Secret::new(NODE_TOKEN)),
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        heartbeat_timeout_secs: 10,
        ..host_locator::config::Config::default()
    };
    let locator = host_locator::Locator::new(locator_config, locator_clock.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let locator_admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let locator_url = format!("http://{}", listener.local_addr().unwrap());
    let locator_shutdown = Shutdown::new();
    tokio::spawn(host_locator::run(
        locator,
        listener,
        locator_admin,
        locator_shutdown.clone(),
    ));
    let http = reqwest::Client::new();
    let edge = json!({
        "id": "edge-1", "kind": "edge", "site": "fra",
        "urls": {"h1": "http://edge-1.cdn.test"},
        "location": {"lat": 50.1, "lon": 8.7},
    });
    let register_edge = || async {
        let response = http
            .post(format!("{locator_url}/v1/nodes/edge-1/heartbeat"))
            .bearer_auth(NODE_TOKEN)
            .json(&edge)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    };
    register_edge().await;

    let dir = tempfile::tempdir().unwrap();
    let (port, tls_port, admin_port) = (free_port(), free_port(), free_port());
    let config_path = dir.path().join("isp-box.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
prefixes = ["127.0.0.2/32"]
nearest_edges = 0
locator_cutoff_secs = 60

[node]
id = "isp-proc-1"
listen = "127.0.0.1:{port}"
tls_listen = "127.0.0.1:{tls_port}"
http3 = false
admin_listen = "127.0.0.1:{admin_port}"
parents = ["{origin}"]
fill_key = "{FILL_KEY}"
token_prefixes = []
disk_cache_dir = "{cache}"
disk_cache_bytes = 100000000
memory_cache_bytes = 16777216
log_format = "human"

[node.locator]
url = "{locator_url}"
token = "{NODE_TOKEN}"
site = "isp-test"
heartbeat_secs = 1
lat = 48.1
lon = 11.6
h1_url = "http://127.0.0.1:{port}"
"#,
            origin = origin.url(),
            cache = dir.path().join("cache").display(),
        ),
    )
    .unwrap();
    let binary = env!("CARGO_BIN_EXE_isp-box");
    let mut child = Killed(
        std::process::Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .env("CADENZA_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let locate = |client: &'static str| {
        let http = http.clone();
        let locator_url = locator_url.clone();
        async move {
            let answer: Value = test_support::json_of(
                http.get(format!("{locator_url}/v1/locate?track=t&protocol=h1"))
                    .header("x-forwarded-for", client),
            )
            .await;
            answer
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = locate("127.0.0.2").await;
        if answer["candidates"][0]["node"] == "isp-proc-1" {
            assert_eq!(answer["reason"], "isp-box");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the box never registered: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Other clients are sent to the edge.
    let other = locate("127.0.0.3").await;
    assert_eq!(other["candidates"][0]["node"], "edge-1", "{other}");

    // The box serves its prefix and refuses the rest.
    let box_url = format!("http://127.0.0.1:{port}/media/t/v1/a.m4s");
    let covered = client_from("127.0.0.2").get(&box_url).send().await.unwrap();
    assert_eq!(covered.status(), StatusCode::OK);
    assert_eq!(covered.bytes().await.unwrap().len(), 5000);
    let outside = client_from("127.0.0.1").get(&box_url).send().await.unwrap();
    assert_eq!(outside.status(), StatusCode::FORBIDDEN);
    let body: Value = outside.json().await.unwrap();
    assert_eq!(body["error"]["code"], "outside_coverage");

    // `isp-box status` says so.
    let printed = std::process::Command::new(binary)
        .args([
            "status",
            "--admin",
            &format!("http://127.0.0.1:{admin_port}"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&printed.stdout).into_owned();
    assert_eq!(
        printed.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    for needle in [
        "ISP box isp-proc-1: OK",
        "1 prefixes: 127.0.0.2/32",
        "reported healthy",
        "not configured (demand only)",
        "Last hour: 2 requests",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let rows: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(
        rows.iter()
            .any(|row| row.split_whitespace().collect::<Vec<_>>() == ["cold", "1", "5.0", "kB"]),
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|row| row.split_whitespace().collect::<Vec<_>>() == ["refused", "1", "0", "B"]),
        "{text}"
    );
    assert!(
        text.contains("top tracks:") && text.contains(" t "),
        "{text}"
    );

    // Killed: no deregistration. Once its heartbeats are overdue it leaves the answers.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    locator_clock.advance(Duration::from_secs(11));
    register_edge().await;
    let answer = locate("127.0.0.2").await;
    assert_eq!(answer["candidates"][0]["node"], "edge-1", "{answer}");
    assert!(
        answer["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["node"] != "isp-proc-1"),
        "{answer}"
    );
    locator_shutdown.trigger();
}

/// Every metric the Grafana dashboard plots is one the edge or the box exports.
#[test]
fn the_dashboard_plots_only_metrics_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard = std::fs::read_to_string(root.join("docs/grafana/cadenza-cdn.json")).unwrap();
    let mut sources = String::new();
    for dir in ["edge-node/src", "isp-box/src"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            sources.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
        }
    }
    let mut named = Vec::new();
    let mut rest = dashboard.as_str();
    while let Some(start) = rest.find("cadenza_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        named.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    named.sort();
    named.dedup();
    assert!(named.len() >= 10, "{named:?}");
    let unknown: Vec<&String> = named
        .iter()
        .filter(|name| *name != "cadenza_cdn" && !sources.contains(&format!("\"{name}\"")))
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard plots metrics nobody exports: {unknown:?}"
    );
}
