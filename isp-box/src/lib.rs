//! Cadenza's ISP box: the edge engine, unchanged, with the hooks and tasks of an appliance an
//! ISP installs in its own network (as Netflix Open Connect's).
//!
//! - [`hooks::IspHooks`]: serves only the client prefixes it covers; refuses everyone while
//!   cut off from the host locator; counts every answer for the report.
//! - Registration as an `isp-box` with its prefixes (the engine's heartbeat task), so that the
//!   locator sends those clients here first and stops when the heartbeats stop.
//! - [`parents`]: peer boxes, then the nearest edges, then the origin.
//! - [`fill::Filler`]: the control plane's fill manifest fetched in the nightly window, under a
//!   token-bucket cap, onto the persistent disk tier.
//! - [`report`] and [`status`]: `GET /status` on the admin port (what `isp-box status`
//!   prints), Prometheus metrics, `POST /drain`.

pub mod config;
pub mod coverage;
pub mod fill;
pub mod hooks;
pub mod parents;
pub mod report;
pub mod status;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use edge_node::register::{Announce, Heartbeats};
use edge_node::{Addresses, Engine, Listeners, Role};
use serde_json::json;
use subtle::ConstantTimeEq as _;
use telemetry::Shutdown;

pub use config::Config;
use fill::Filler;
use hooks::IspHooks;
use report::Report;
use status::Status;

/// A running box's parts, shared by its tasks and its admin routes.
#[derive(Debug, Clone)]
pub struct IspBox {
    /// The engine.
    pub engine: Engine,
    /// The configuration.
    pub config: Arc<Config>,
    hooks: Arc<IspHooks>,
    /// The report.
    pub report: Arc<Report>,
    /// The registration's state.
    pub heartbeats: Arc<Heartbeats>,
    /// The fill.
    pub filler: Arc<Filler>,
    clock: telemetry::Clock,
    started_ms: i64,
}

impl IspBox {
    /// Builds the box on `clock` (its engine, hooks and fill read it).
    pub fn new(config: Config, clock: telemetry::Clock) -> anyhow::Result<Self> {
        let report = Arc::new(Report::default());
        let heartbeats = Arc::new(Heartbeats::default());
        let hooks = Arc::new(IspHooks::new(
            coverage::Coverage::new(&config.prefixes),
            report.clone(),
            heartbeats.clone(),
            config.node.locator.is_some(),
            config.locator_cutoff_secs * 1000,
            clock.clone(),
        ));
        let engine = Engine::with_clock(config.node.clone(), hooks.clone(), clock.clone())?;
        engine
            .upstream()
            .set_parents(parents::chain(&config.peers, &[], &config.node.parents));
        let budget = (config.node.disk_cache_bytes as f64 * config.fill.disk_share) as u64;
        let filler = Arc::new(Filler::new(
            engine.clone(),
            config.fill.clone(),
            budget,
            clock.clone(),
            report.clone(),
        )?);
        let started_ms = clock.now_ms();
        Ok(Self {
            engine,
            config: Arc::new(config),
            hooks,
            report,
            heartbeats,
            filler,
            clock,
            started_ms,
        })
    }

    /// The covered prefixes as written (registration and status).
    fn prefixes(&self) -> Vec<String> {
        self.config
            .prefixes
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The status now (what `GET /status` answers).
    pub fn status(&self) -> Status {
        let now = self.clock.now_ms();
        let (memory, disk) = self.engine.cache().sizes();
        status::assemble(status::Inputs {
            id: &self.config.node.id,
            now_ms: now,
            started_ms: self.started_ms,
            registers: self.config.node.locator.is_some(),
            healthy: self.heartbeats.healthy.load(Ordering::Relaxed),
            silence_ms: self.hooks.silence_ms(),
            cutoff_ms: self.config.locator_cutoff_secs * 1000,
            heartbeat_failures: self.heartbeats.failures.load(Ordering::Relaxed),
            heartbeat_error: self.heartbeats.last_error(),
            prefixes: self.prefixes(),
            parents: self
                .engine
                .upstream()
                .parents()
                .into_iter()
                .map(|parent| parent.base)
                .collect(),
            memory_bytes: memory,
            disk_bytes: disk,
            disk_capacity: self.config.node.disk_cache_bytes,
            fill: self.filler.status(),
            hour: self.report.last_hour(now),
        })
    }

    /// Binds, starts the engine's listeners with the box's role, and the box's tasks; returns
    /// the addresses and a task that ends after `shutdown` once everything has drained.
    pub async fn start(
        self,
        shutdown: Shutdown,
    ) -> anyhow::Result<(Addresses, tokio::task::JoinHandle<anyhow::Result<()>>)> {
        let listeners = Listeners::bind(&self.config.node).await?;
        let admin = Router::new()
            .route("/status", get(status_route))
            .route("/drain", post(drain_route).delete(undrain_route))
            .with_state(self.clone());
        let role = Role {
            announce: Announce {
                kind: "isp-box",
                prefixes: self.prefixes(),
                heartbeats: self.heartbeats.clone(),
            },
            admin: Some(admin),
        };
        let (addresses, serving) =
            edge_node::start_as(self.engine.clone(), listeners, shutdown.clone(), role)?;
        let parents = tokio::spawn(parents::keep_current(
            self.engine.clone(),
            (*self.config).clone(),
            shutdown.clone(),
        ));
        let filling = tokio::spawn(self.filler.clone().run(shutdown.clone()));
        let gauges = tokio::spawn(self.clone().publish_gauges(shutdown.clone()));
        tracing::info!(message = "ISP box started.", id = %self.config.node.id, prefixes = self.config.prefixes.len());
        let handle = tokio::spawn(async move {
            serving.await??;
            parents.await?;
            filling.await?;
            gauges.await?;
            Ok(())
        });
        Ok((addresses, handle))
    }

    /// The status's figures as Prometheus gauges, once a second.
    async fn publish_gauges(self, shutdown: Shutdown) {
        loop {
            let status = self.status();
            metrics::gauge!("cadenza_isp_state").set(f64::from(status.state.level()));
            metrics::gauge!("cadenza_isp_hit_ratio", "kind" => "request")
                .set(status.last_hour.request_hit_ratio);
            metrics::gauge!("cadenza_isp_hit_ratio", "kind" => "byte")
                .set(status.last_hour.byte_hit_ratio);
            metrics::gauge!("cadenza_isp_fill_rate_bps").set(status.fill.rate_bps as f64);
            metrics::gauge!("cadenza_isp_fill_cap_bps").set(status.fill.cap_bps as f64);
            metrics::gauge!("cadenza_isp_fill_window_open").set(if status.fill.window_open {
                1.0
            } else {
                0.0
            });
            metrics::gauge!("cadenza_isp_disk_bytes").set(status.disk.used_bytes as f64);
            if let Some(seconds) = status.registration.seconds_since_heartbeat {
                metrics::gauge!("cadenza_isp_heartbeat_age_seconds").set(seconds as f64);
            }
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Builds the box on the system clock, serves until `shutdown`, and drains.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let isp_box = IspBox::new(config, telemetry::Clock::system())?;
    let (_, handle) = isp_box.start(shutdown).await?;
    handle.await?
}

async fn status_route(State(isp_box): State<IspBox>) -> Response {
    axum::Json(isp_box.status()).into_response()
}

/// `None` when the admin key was presented, else the refusal.
fn refusal_without_key(isp_box: &IspBox, headers: &HeaderMap) -> Option<Response> {
    let problem = |status: StatusCode, code: &str, message: &str| {
        let body = json!({"error": {"status": status.as_u16(), "code": code, "message": message}});
        (status, axum::Json(body)).into_response()
    };
    let Some(expected) = &isp_box.config.node.purge_key else {
        return Some(problem(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "no node.purge_key is configured",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
        None
    } else {
        Some(problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "present node.purge_key as a bearer token",
        ))
    }
}

/// `POST /drain` reports the box unhealthy, so that the locator stops sending clients within a
/// heartbeat while it goes on serving those it has; `DELETE /drain` ends the drain.
async fn drain_route(State(isp_box): State<IspBox>, headers: HeaderMap) -> Response {
    set_draining(&isp_box, &headers, true)
}

async fn undrain_route(State(isp_box): State<IspBox>, headers: HeaderMap) -> Response {
    set_draining(&isp_box, &headers, false)
}

fn set_draining(isp_box: &IspBox, headers: &HeaderMap, draining: bool) -> Response {
    if let Some(refused) = refusal_without_key(isp_box, headers) {
        return refused;
    }
    isp_box
        .heartbeats
        .healthy
        .store(!draining, Ordering::Relaxed);
    tracing::info!(
        message = "Drain changed: reporting to the host locator.",
        draining
    );
    axum::Json(json!({"draining": draining})).into_response()
}
