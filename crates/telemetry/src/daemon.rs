//! What every daemon's `main` does the same way: the flags they all take, loading the
//! configuration (an invalid one exits with status 64 and one line saying what is wrong),
//! starting logging, binding listeners with a clear error, and running on [`run_main`]'s
//! runtime.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::{DaemonConfig, Flags, LogFormat, init_logging, run_main};

/// The flags every daemon takes (`#[command(flatten)]` them into its own).
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// TOML configuration file (flags and CADENZA_* variables override it).
    #[arg(long, env = "CADENZA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Public address (the daemon's own protocol: the API, fills, cleartext HTTP).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin address (/metrics, /healthz, /readyz).
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Log format: human or json.
    #[arg(long)]
    pub log_format: Option<LogFormat>,
}

impl CommonArgs {
    /// The configuration layer of these flags, for the daemon to add its own to.
    pub fn flags(&self) -> Flags {
        Flags::default()
            .set("listen", self.listen)
            .set("admin_listen", self.admin_listen)
            .set("log_format", self.log_format)
    }
}

/// Runs daemon `name`: loads its configuration from `file` and `flags` (one that cannot be
/// had exits with status 64 and says why), starts logging, and runs `serve`, the daemon itself.
pub fn daemon<C, F>(
    name: &str,
    file: Option<&Path>,
    flags: Flags,
    serve: impl FnOnce(C) -> F,
) -> ExitCode
where
    C: DaemonConfig,
    F: Future<Output = anyhow::Result<()>>,
{
    let config = match C::load(file, flags.into()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{name}: {error}");
            return ExitCode::from(64);
        }
    };
    init_logging(config.log_format(), "info");
    run_main(name, serve(config))
}

/// Binds `address` for the `what` listener ("public", "admin"), saying which failed.
pub async fn bind(address: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("failed to bind the {what} address {address}"))
}
