//! The event bus on a real Kafka-protocol broker: the outbox relay, consumer groups that
//! commit after processing, and a broker restart under load that loses nothing.
//!
//! `CADENZA_TEST_KAFKA_URL` (`kafka://127.0.0.1:9092`) names a running broker; the restart
//! test starts its own from `CADENZA_TEST_TANSU_BIN` (or `tansu` on the PATH). Without them
//! these tests say they are skipped; under `CI=true` they are required.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use control_plane::config::Secret;
use control_plane::subscriptions::{ACCOUNT_UPDATE, account_update_handler};
use serde_json::json;
use sqlx::Row;
use telemetry::Shutdown;

use crate::support::{Backend, PASSWORD, TestApp};

fn required(name: &str) -> Option<String> {
    test_support::server_var(name, "this Kafka test")
}

/// A control plane whose bus is Kafka at `url`, in a namespace of its own, with the relay and
/// the account-update consumer running.
async fn start(url: &str) -> (TestApp, Shutdown) {
    telemetry::init_logging(telemetry::LogFormat::Human, "warn,control_plane=info");
    let namespace = format!("test-{}", control_plane::store::new_id());
    let t = TestApp::start_with(Backend::Embedded, |config| {
        config.bus_url = Some(Secret::new(url));
        config.bus_namespace = namespace;
    })
    .await
    .unwrap();
    assert_eq!(t.app.bus.transport_name(), "kafka");
    let shutdown = Shutdown::new();
    t.app
        .bus
        .start(shutdown.clone())
        .await
        .expect("relay starts and topics exist");
    t.app
        .bus
        .subscribe(
            ACCOUNT_UPDATE,
            events::payments::TOPIC,
            account_update_handler(t.app.clone()),
            shutdown.clone(),
        )
        .unwrap();
    (t, shutdown)
}

async fn pay(t: &TestApp, email: &str) {
    let token = t.user(email).await;
    let packages = t.get("/api/v1/packages", None).await;
    let premium = packages
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Premium")
        .unwrap()["id"]
        .clone();
    let request = axum::http::Request::post("/api/v1/payments")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("idempotency-key", email)
        .body(axum::body::Body::from(
            json!({"package_id": premium}).to_string(),
        ))
        .unwrap();
    let created = t.send("127.0.0.1:1".parse().unwrap(), request).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id = created.body["id"].as_str().unwrap();
    let card = json!({"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}});
    let paid = t
        .post(
            &format!("/api/v1/payments/{id}/confirm"),
            Some(&token),
            card,
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.raw);
    t.app.bus.notify();
}

async fn applied(t: &TestApp) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM subscription_payments")
        .fetch_one(t.app.users.database().pool())
        .await
        .unwrap()
        .get("n")
}

/// Waits until `want` payments have been applied, or fails after `limit`.
async fn wait_applied(t: &TestApp, want: i64, limit: Duration) {
    let started = Instant::now();
    loop {
        let got = applied(t).await;
        if got == want {
            return;
        }
        assert!(got < want, "applied {got} periods for {want} payments");
        assert!(
            started.elapsed() < limit,
            "only {got} of {want} payments applied after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_flow_over_kafka() {
    let Some(url) = required("CADENZA_TEST_KAFKA_URL") else {
        return;
    };
    let (t, shutdown) = start(&url).await;
    for i in 0..5 {
        pay(&t, &format!("kafka{i}@example.com")).await;
    }
    wait_applied(&t, 5, Duration::from_secs(60)).await;
    let token = t.log_in("kafka3@example.com", PASSWORD).await;
    let entitlements = t.get("/api/v1/me/entitlements", Some(&token)).await;
    assert_eq!(entitlements.body["package_name"], "Premium");
    // Nothing more arrives later (no duplicate effects), and the relay is caught up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(applied(&t).await, 5);
    shutdown.trigger();
    t.finish().await;
}

struct Broker {
    child: Child,
}

impl Broker {
    fn start(bin: &str, port: u16) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the tansu broker starts");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "tansu did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_load_loses_nothing() {
    let bin = match std::env::var("CADENZA_TEST_TANSU_BIN")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(bin) => bin,
        None if Command::new("tansu")
            .arg("--help")
            .stdout(Stdio::null())
            .status()
            .is_ok() =>
        {
            "tansu".to_owned()
        }
        None => {
            let _ = required("CADENZA_TEST_TANSU_BIN");
            return;
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = Broker::start(&bin, port);
    let (t, shutdown) = start(&format!("kafka://127.0.0.1:{port}")).await;

    for i in 0..5 {
        pay(&t, &format!("before{i}@example.com")).await;
    }
    wait_applied(&t, 5, Duration::from_secs(60)).await;

    // The broker dies (with its in-memory log); payments go on meanwhile.
    broker.stop();
    for i in 0..5 {
        pay(&t, &format!("during{i}@example.com")).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        applied(&t).await,
        5,
        "nothing can be consumed while the broker is down"
    );
    let waiting: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox")
        .fetch_one(t.app.users.database().pool())
        .await
        .unwrap()
        .get("n");
    assert!(waiting >= 10, "the outbox keeps every event");

    // It comes back empty; the relay recreates the topics and publishes what waited, while
    // new payments keep arriving.
    let broker = Broker::start(&bin, port);
    for i in 0..5 {
        pay(&t, &format!("after{i}@example.com")).await;
    }
    wait_applied(&t, 15, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(applied(&t).await, 15, "exactly one effect per payment");
    shutdown.trigger();
    broker.stop();
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_index_follows_track_events_over_kafka() {
    let Some(url) = required("CADENZA_TEST_KAFKA_URL") else {
        return;
    };
    let (t, shutdown) = start(&url).await;
    t.app
        .bus
        .subscribe(
            t.app.search.group(),
            events::tracks::TOPIC,
            control_plane::search::tracks_handler(t.app.clone()),
            shutdown.clone(),
        )
        .unwrap();
    let id = crate::search::ready(&t, "Kafka Song", "Broker Band", None, None, None).await;
    t.app.rebuild_search_index().await.unwrap();
    assert_eq!(found_kafka_song(&t).await, 1);
    let admin = t.admin().await;
    let block = t.set_blocked(&admin, &id, Some("A rights claim.")).await;
    assert_eq!(block.status, StatusCode::NO_CONTENT, "{}", block.raw);
    let started = Instant::now();
    while found_kafka_song(&t).await != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the take-down never reached search"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restore = t.set_blocked(&admin, &id, None).await;
    assert_eq!(restore.status, StatusCode::NO_CONTENT);
    let started = Instant::now();
    while found_kafka_song(&t).await != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the restore never reached search"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.trigger();
    t.finish().await;
}

/// How many tracks a search for "kafka song" finds.
async fn found_kafka_song(t: &TestApp) -> usize {
    let reply = t.get("/api/v1/search?q=kafka%20song", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    reply.body["tracks"]["items"].as_array().unwrap().len()
}
