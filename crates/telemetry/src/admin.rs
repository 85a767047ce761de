//! The admin port (`/metrics`, `/healthz`, `/readyz`) and the per-request HTTP metrics that
//! every daemon's public router records.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::Shutdown;

/// Latency buckets in seconds, from sub-millisecond cache hits to slow uploads.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder, installed on first use.
///
/// Every daemon in the process (the all-in-one stack runs several) shares it; metric names
/// carry a `service` label where they would otherwise collide.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                message = "A metrics recorder was already installed; /metrics will be empty."
            );
        }
        handle
    })
}

/// One named readiness check: resolves to `Err(reason)` while the dependency is unusable.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What `/readyz` asks before it says a daemon may take traffic.
///
/// A daemon that is draining is never ready, so a load balancer stops sending it requests
/// while the in-flight ones finish.
#[derive(Clone)]
pub struct Readiness {
    checks: Vec<(String, ReadinessCheck)>,
    shutdown: Shutdown,
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.checks.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

impl Readiness {
    /// No checks yet; not ready once `shutdown` triggers.
    pub fn new(shutdown: Shutdown) -> Self {
        Self {
            checks: Vec::new(),
            shutdown,
        }
    }

    /// Adds a named check.
    pub fn with_check(mut self, name: impl Into<String>, check: ReadinessCheck) -> Self {
        self.checks.push((name.into(), check));
        self
    }

    /// Runs every check (each bounded by a timeout) and reports them by name.
    pub async fn evaluate(&self) -> (bool, serde_json::Value) {
        let mut ready = !self.shutdown.is_triggered();
        let mut report = serde_json::Map::new();
        if self.shutdown.is_triggered() {
            report.insert("shutdown".into(), json!("draining"));
        }
        for (name, check) in &self.checks {
            let outcome = match tokio::time::timeout(Duration::from_secs(2), check()).await {
                Ok(result) => result,
                Err(_) => Err("timed out after 2 s".to_owned()),
            };
            match outcome {
                Ok(()) => {
                    report.insert(name.clone(), json!("ok"));
                }
                Err(reason) => {
                    ready = false;
                    report.insert(name.clone(), json!(reason));
                }
            }
        }
        (ready, serde_json::Value::Object(report))
    }
}

/// The admin router: `/metrics` (Prometheus text), `/healthz` (the process is alive) and
/// `/readyz` (every dependency answers and the daemon is not draining).
pub fn admin_router(service: &'static str, readiness: Readiness) -> Router {
    let handle = metrics_handle().clone();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    handle.run_upkeep();
                    (
                        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                        handle.render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || async move { Json(json!({"status": "ok", "service": service})) }),
        )
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    let (ready, checks) = readiness.evaluate().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if ready { "ready" } else { "not_ready" }, "checks": checks});
    (status, Json(body)).into_response()
}

/// Returns a `'static` copy of `value`, made once per distinct value. Only for small finite
/// sets (route templates, methods, status codes): metric labels without an allocation per
/// request.
fn intern(value: &str) -> &'static str {
    type Interned = std::sync::RwLock<std::collections::HashSet<&'static str>>;
    static INTERNED: OnceLock<Interned> = OnceLock::new();
    let set = INTERNED.get_or_init(Default::default);
    if let Some(found) = set.read().expect("intern lock").get(value) {
        return found;
    }
    let mut set = set.write().expect("intern lock");
    if let Some(found) = set.get(value) {
        return found;
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// Middleware that counts every request by service, method, route and status, and records
/// its latency. Use with `axum::middleware::from_fn_with_state(SERVICE_NAME, track_http)`.
pub async fn track_http(
    State(service): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Unknown methods fold into one label, so the interned set stays bounded.
    let method = match request.method().as_str() {
        known @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => intern(known),
        _ => "other",
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| intern(path.as_str()));
    let response = next.run(request).await;
    let status = intern(response.status().as_str());
    metrics::counter!(
        "cadenza_http_requests_total",
        "service" => service, "method" => method, "route" => route, "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "cadenza_http_request_duration_seconds",
        "service" => service, "method" => method, "route" => route
    )
    .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_status(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_reflects_checks_and_drain() {
        let shutdown = Shutdown::new();
        let healthy = Readiness::new(shutdown.clone())
            .with_check("db", Arc::new(|| Box::pin(async { Ok(()) })));
        let (status, body) = get_status(admin_router("test", healthy.clone()), "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let failing = healthy.with_check(
            "cache",
            Arc::new(|| Box::pin(async { Err("connection refused".to_owned()) })),
        );
        let (status, body) = get_status(admin_router("test", failing), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("connection refused"), "{body}");

        let draining = Readiness::new(shutdown.clone());
        shutdown.trigger();
        let (status, body) = get_status(admin_router("test", draining), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("draining"), "{body}");
    }

    #[tokio::test]
    async fn metrics_and_health_answer() {
        metrics_handle();
        metrics::counter!("cadenza_telemetry_selftest_total").increment(1);
        let router = admin_router("test", Readiness::new(Shutdown::new()));
        let (status, body) = get_status(router.clone(), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"ok\""));
        let (status, body) = get_status(router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("cadenza_telemetry_selftest_total"), "{body}");
    }
}
