//! Telemetry shared by every Cadenza daemon: structured logs, Prometheus metrics, the admin
//! port (`/metrics`, `/healthz`, `/readyz`), HTTP request metrics and graceful shutdown.
//!
//! Daemons call [`init_logging`] once from `main`, build their public router with
//! [`track_http`] as a layer, serve it with [`serve`], and serve [`admin_router`] on a
//! separate listener. One [`Shutdown`] handle reaches every listener and worker.

mod admin;
mod logging;
mod shutdown;

pub use admin::{Readiness, ReadinessCheck, admin_router, metrics_handle, track_http};
pub use logging::{LogFormat, init_logging};
pub use shutdown::{Shutdown, serve};
