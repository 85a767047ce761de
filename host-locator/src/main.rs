//! The host-locator daemon: parses flags, loads the configuration, starts telemetry, binds,
//! and hands over to `host_locator::run`. `build-geoip` turns a CSV of networks into a MaxMind
//! DB file the locator can read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use host_locator::config::Config;
use host_locator::{Locator, run};
use telemetry::{Clock, Flags, LogFormat, Shutdown};

/// Cadenza host locator: sends each player to the nearest healthy edge or ISP box.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file (flags and CADENZA_* variables override it).
    #[arg(long, env = "CADENZA_CONFIG")]
    config: Option<PathBuf>,
    /// Public API address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin address (/metrics, /healthz, /readyz).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// MaxMind DB (City) file.
    #[arg(long)]
    geoip_db: Option<PathBuf>,
    /// Log format: human or json.
    #[arg(long)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Builds a MaxMind DB file from `network,country,city,latitude,longitude` lines.
    BuildGeoip {
        /// The CSV file.
        #[arg(long)]
        csv: PathBuf,
        /// Where to write the database.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::BuildGeoip { csv, out }) = &cli.command {
        return match build_geoip(csv, out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("host-locator: {error:#}");
                ExitCode::from(65)
            }
        };
    }
    let overrides = Flags::default()
        .set("listen", cli.listen)
        .set("admin_listen", cli.admin_listen)
        .set("geoip_db", cli.geoip_db.as_ref())
        .set("log_format", cli.log_format);
    let config = match Config::load(cli.config.as_deref(), overrides.into()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("host-locator: {error}");
            return ExitCode::from(64);
        }
    };
    telemetry::init_logging(config.log_format, "info");
    telemetry::run_main("host-locator", serve(config))
}

fn build_geoip(csv: &PathBuf, out: &PathBuf) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(csv).with_context(|| format!("cannot read {}", csv.display()))?;
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let bytes = host_locator::mmdb::from_csv(&text, epoch)
        .map_err(|error| anyhow::anyhow!("{}: {error}", csv.display()))?;
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("failed to bind the public address {}", config.listen))?;
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("failed to bind the admin address {}", config.admin_listen))?;
    let locator = Locator::new(config, Clock::system())?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    run(locator, listener, admin, shutdown).await
}
