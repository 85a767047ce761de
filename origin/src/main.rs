//! The origin daemon: parses flags, loads the configuration, starts telemetry, binds, and hands
//! over to `origin::run`.

use std::process::ExitCode;

use clap::Parser;
use origin::{Config, Origin, run};
use telemetry::{CommonArgs, Shutdown};

/// Cadenza origin: serves packaged media from the object store to edge nodes.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Object store URL: file:///dir or s3://bucket[/prefix].
    #[arg(long)]
    object_store_url: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let flags = cli
        .common
        .flags()
        .set("object_store_url", cli.object_store_url);
    telemetry::daemon("origin", cli.common.config.as_deref(), flags, serve)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = telemetry::bind(config.listen, "public").await?;
    let admin = telemetry::bind(config.admin_listen, "admin").await?;
    let origin = Origin::new(config)?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    run(origin, listener, admin, shutdown).await
}
