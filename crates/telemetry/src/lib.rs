//! The runtime every Cadenza daemon shares: structured logs, Prometheus metrics, the admin
//! port (`/metrics`, `/healthz`, `/readyz`), HTTP request metrics, graceful shutdown, layered
//! configuration with redacted secrets and the PEM files it names ([`pem`]), and the client
//! address behind trusted proxies.
//!
//! Daemons call [`init_logging`] once from `main`, build their public router with
//! [`track_http`] as a layer, serve it with [`serve`], and serve [`admin_router`] on a
//! separate listener. One [`Shutdown`] handle reaches every listener and worker.

mod admin;
mod clock;
mod config;
mod daemon;
mod logging;
mod net;
pub mod pem;
mod shutdown;

pub use admin::{Readiness, ReadinessCheck, admin_router, metrics_handle, track_http};
pub use clock::Clock;
pub use config::{ConfigError, DaemonConfig, Flags, Secret, load_layered};
pub use daemon::{CommonArgs, bind, daemon};
pub use logging::{LogFormat, init_logging};
pub use net::{client_addr, request_client_addr};
pub use shutdown::{Shutdown, accept, drain_within, run_main, serve};
