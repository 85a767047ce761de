//! The test harness: a control plane on fresh databases, called without sockets.
//!
//! Every case runs on SQLite + moka, and on MariaDB + Redis when `CADENZA_TEST_MYSQL_URL` and
//! `CADENZA_TEST_REDIS_URL` are set (each case gets its own databases and key prefix). Under
//! `CI=true` those variables are required: a backend that cannot be reached fails the run.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use control_plane::App;
use control_plane::catalog::store::NewTrack;
use control_plane::config::{Config, Secret};
use control_plane::store::{Clock, TextColumn as _, new_id};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::Connection;
use tower::ServiceExt;

/// Which backends a case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files and the in-process cache.
    Embedded,
    /// MariaDB and Redis.
    Servers,
}

/// A response, decoded.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: String,
}

/// A control plane on fresh databases.
pub struct TestApp {
    pub app: App,
    pub clock: Clock,
    #[allow(dead_code)]
    pub backend: Backend,
    router: Router,
    _dir: tempfile::TempDir,
    mysql: Option<(String, Vec<String>)>,
    redis: Option<(String, String)>,
}

pub const PASSWORD: &str = "correct horse battery";

fn server_urls() -> Option<(String, String, Option<String>)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let s3 = var("CADENZA_TEST_S3_ENDPOINT");
    if ci && s3.is_none() {
        panic!("CI=true but CADENZA_TEST_S3_ENDPOINT is not set");
    }
    match (var("CADENZA_TEST_MYSQL_URL"), var("CADENZA_TEST_REDIS_URL")) {
        (Some(mysql), Some(redis)) => Some((mysql, redis, s3)),
        _ if ci => {
            panic!("CI=true but CADENZA_TEST_MYSQL_URL and CADENZA_TEST_REDIS_URL are not both set")
        }
        _ => None,
    }
}

/// Creates a bucket (if missing) on an S3-compatible server that accepts anonymous requests (the test
/// SeaweedFS), with a bare HTTP request.
async fn create_bucket(endpoint: &str, bucket: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("CADENZA_TEST_S3_ENDPOINT must be reachable");
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    // 200, or 409 when it exists already.
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.1 409"),
        "bucket creation failed: {response}"
    );
}

impl TestApp {
    /// A control plane on `backend` with the default test configuration; `None` when the
    /// servers are not configured (the case says it was skipped).
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |_| {}).await
    }

    /// Like [`TestApp::start`], with configuration changes.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<Self> {
        // Silent unless CADENZA_LOG asks, e.g. CADENZA_LOG=error to see a 500's cause.
        telemetry::init_logging(telemetry::LogFormat::Human, "off");
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let mut mysql = None;
        let mut redis = None;
        if backend == Backend::Servers {
            let Some((mysql_url, redis_url, s3)) = server_urls() else {
                skip_notice(
                    "the MariaDB + Redis run of this case needs CADENZA_TEST_MYSQL_URL and CADENZA_TEST_REDIS_URL",
                );
                return None;
            };
            let tag = new_id().replace('-', "");
            let tag = &tag[tag.len() - 12..];
            let names = vec![
                format!("cz_test_{tag}_user"),
                format!("cz_test_{tag}_inventory"),
            ];
            let mut admin = sqlx::MySqlConnection::connect(&mysql_url)
                .await
                .expect("CADENZA_TEST_MYSQL_URL must reach a MariaDB/MySQL server");
            for name in &names {
                sqlx::query(&format!(
                    "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                ))
                .execute(&mut admin)
                .await
                .expect("create test database");
            }
            let base = mysql_url.trim_end_matches('/');
            config.user_db_url = Some(Secret::new(format!("{base}/{}", names[0])));
            config.inventory_db_url = Some(Secret::new(format!("{base}/{}", names[1])));
            config.cache_url = Some(Secret::new(redis_url.clone()));
            config.cache_prefix = format!("cz-test:{tag}:");
            redis = Some((redis_url, config.cache_prefix.clone()));
            if let Some(endpoint) = s3 {
                // One bucket for every test, a key prefix each.
                create_bucket(&endpoint, "cadenza-test").await;
                config.object_store_url = Some(format!("s3://cadenza-test/cz-test-{tag}"));
                config.s3.endpoint = Some(endpoint);
            }
            mysql = Some((mysql_url, names));
        }
        tweak(&mut config);
        let clock = Clock::manual(1_800_000_000_000);
        let app = App::build(config, clock.clone())
            .await
            .expect("control plane starts");
        Some(Self {
            router: app.router(),
            app,
            clock,
            backend,
            _dir: dir,
            mysql,
            redis,
        })
    }

    /// Drops the case's server databases.
    pub async fn finish(self) {
        self.app.users.database().close().await;
        self.app.inventory.database().close().await;
        if let Some((url, names)) = self.mysql
            && let Ok(mut admin) = sqlx::MySqlConnection::connect(&url).await
        {
            for name in names {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`"))
                    .execute(&mut admin)
                    .await;
            }
        }
        if let Some((url, prefix)) = self.redis
            && let Ok(client) = redis::Client::open(url)
            && let Ok(mut conn) = client.get_multiplexed_async_connection().await
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        }
    }

    /// Sends a request as if from 127.0.0.1.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_from(
            "127.0.0.1:40000".parse().unwrap(),
            method,
            path,
            token,
            body,
        )
        .await
    }

    /// `GET path`, with a token if given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    /// `DELETE path`, with a token if given.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::DELETE, path, token, None).await
    }

    /// `POST path` with a JSON body (or none).
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<Option<Value>>,
    ) -> Reply {
        self.call(Method::POST, path, token, body.into()).await
    }

    /// `PUT path` with a JSON body (or none).
    pub async fn put(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<Option<Value>>,
    ) -> Reply {
        self.call(Method::PUT, path, token, body.into()).await
    }

    /// `PATCH path` with a JSON body (or none).
    pub async fn patch(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<Option<Value>>,
    ) -> Reply {
        self.call(Method::PATCH, path, token, body.into()).await
    }

    /// An admin takes `track` down with `reason` (`PUT …/block`), or puts it back (`None`:
    /// `DELETE …/block`).
    pub async fn set_blocked(&self, admin: &str, track: &str, reason: Option<&str>) -> Reply {
        let path = format!("/api/v1/tracks/{track}/block");
        match reason {
            Some(reason) => {
                self.put(&path, Some(admin), json!({ "reason": reason }))
                    .await
            }
            None => self.delete(&path, Some(admin)).await,
        }
    }

    /// Sends a request from the given peer address.
    pub async fn call_from(
        &self,
        peer: SocketAddr,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        self.send(peer, request).await
    }

    /// Sends a request without a body to another router (of an `App` with other services).
    #[allow(dead_code)]
    pub async fn send_to(&self, router: &Router, method: Method, path: &str) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        Self::send_through(router, "127.0.0.1:40000".parse().unwrap(), request).await
    }

    /// Sends a prepared request.
    pub async fn send(&self, peer: SocketAddr, request: Request<Body>) -> Reply {
        Self::send_through(&self.router, peer, request).await
    }

    async fn send_through(router: &Router, peer: SocketAddr, mut request: Request<Body>) -> Reply {
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            raw,
        }
    }

    /// Signs up a listener with `email` and the test password.
    pub async fn sign_up(&self, email: &str) -> Value {
        let reply = self.post("/api/v1/users", None, sign_up_body(email)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.raw);
        reply.body
    }

    /// Logs in and returns the token.
    pub async fn log_in(&self, email: &str, password: &str) -> String {
        let reply = self
            .post(
                "/api/v1/sessions",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.raw);
        reply.body["token"].as_str().unwrap().to_owned()
    }

    /// Signs up and logs in; returns the token.
    pub async fn user(&self, email: &str) -> String {
        self.sign_up(email).await;
        self.log_in(email, PASSWORD).await
    }

    /// Creates the first admin and logs in as them.
    pub async fn admin(&self) -> String {
        let admin = self
            .app
            .bootstrap_admin()
            .await
            .unwrap()
            .expect("no admin yet");
        self.log_in(&admin.email, &admin.password).await
    }

    /// A track with the given status, through the store API (uploads create them later).
    pub async fn track(&self, name: &str, status: &str) -> String {
        let id = new_id();
        self.app
            .inventory
            .insert_track(&NewTrack {
                id: id.clone(),
                name: name.to_owned(),
                uploaded_by_user_id: new_id(),
                singer: "Test Singer".to_owned(),
                album: None,
                kind: "music".to_owned(),
                status: control_plane::catalog::store::TrackStatus::parse(status).unwrap(),
                duration_ms: Some(180_000),
                now: self.clock.now_ms(),
            })
            .await
            .unwrap();
        id
    }
}

/// A valid sign-up body.
pub fn sign_up_body(email: &str) -> Value {
    json!({
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": email,
        "mobile": "+44 7700 900123",
        "address": "12 St James's Square, London",
        "password": PASSWORD,
    })
}

/// Asserts that `reply` is the error `code` with `status`, in the one error shape.
pub fn assert_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.raw);
    assert_eq!(error_code(reply), code);
}

/// Asserts the one error shape and returns the code.
pub fn error_code(reply: &Reply) -> String {
    let error = &reply.body["error"];
    assert_eq!(error["status"], reply.status.as_u16(), "{}", reply.raw);
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        reply.raw
    );
    assert!(error["fields"].is_array(), "{}", reply.raw);
    error["code"].as_str().expect("error code").to_owned()
}

/// Runs each listed case on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let app = $crate::support::TestApp::start($crate::support::Backend::Embedded).await.unwrap();
                    super::$case(&app).await;
                    app.finish().await;
                }
            )*
        }
        mod servers {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(app) = $crate::support::TestApp::start($crate::support::Backend::Servers).await else { return };
                    super::$case(&app).await;
                    app.finish().await;
                }
            )*
        }
    };
}

pub use test_support::skip_notice;
