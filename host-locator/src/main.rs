//! The host-locator daemon: parses flags, loads the configuration, starts telemetry, binds,
//! and hands over to `host_locator::run`. `build-geoip` turns a CSV of networks into a MaxMind
//! DB file the locator can read.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use host_locator::config::Config;
use host_locator::{Locator, run};
use telemetry::{Clock, CommonArgs, Shutdown};

/// Cadenza host locator: sends each player to the nearest healthy edge or ISP box.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// MaxMind DB (City) file.
    #[arg(long)]
    geoip_db: Option<PathBuf>,
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
    let flags = cli.common.flags().set("geoip_db", cli.geoip_db.as_ref());
    telemetry::daemon("host-locator", cli.common.config.as_deref(), flags, serve)
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
    let listener = telemetry::bind(config.listen, "public").await?;
    let admin = telemetry::bind(config.admin_listen, "admin").await?;
    let locator = Locator::new(config, Clock::system())?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    run(locator, listener, admin, shutdown).await
}
