//! The origin daemon: parses flags, loads the configuration, starts telemetry, binds, and hands
//! over to `origin::run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use origin::{Config, Origin, run};
use telemetry::{Flags, LogFormat, Shutdown};

/// Cadenza origin: serves packaged media from the object store to edge nodes.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file (flags and CADENZA_* variables override it).
    #[arg(long, env = "CADENZA_CONFIG")]
    config: Option<PathBuf>,
    /// Address edges fill from.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin address (/metrics, /healthz, /readyz).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Object store URL: file:///dir or s3://bucket[/prefix].
    #[arg(long)]
    object_store_url: Option<String>,
    /// Log format: human or json.
    #[arg(long)]
    log_format: Option<LogFormat>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Flags::default()
        .set("listen", cli.listen)
        .set("admin_listen", cli.admin_listen)
        .set("object_store_url", cli.object_store_url)
        .set("log_format", cli.log_format);
    let config = match Config::load(cli.config.as_deref(), overrides.into()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("origin: {error}");
            return ExitCode::from(64);
        }
    };
    telemetry::init_logging(config.log_format, "info");
    telemetry::run_main("origin", serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to bind the public address {}", config.listen))?;
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("failed to bind the admin address {}", config.admin_listen))?;
    let origin = Origin::new(config)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    run(origin, listener, admin, shutdown).await
}
