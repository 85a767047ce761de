//! The control-plane daemon: parses flags, loads the configuration, starts telemetry, binds,
//! and hands over to `control_plane::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use control_plane::config::Config;
use control_plane::store::Clock;
use control_plane::{App, run};
use telemetry::{CommonArgs, Flags, Shutdown};

/// Cadenza control plane: accounts, packages, playlists, payments, uploads, processing, the
/// catalog and the play API — all of them, or those `--services` names.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Directory for the embedded databases.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// User DB URL (sqlite:… or mysql://…).
    #[arg(long)]
    user_db_url: Option<String>,
    /// Inventory DB URL (sqlite:… or mysql://…).
    #[arg(long)]
    inventory_db_url: Option<String>,
    /// Cache URL (memory:// or redis://…).
    #[arg(long)]
    cache_url: Option<String>,
    /// The services this process runs: `all` (the default) or a comma-separated list, e.g.
    /// `processing` for a transcoding worker or `accounts,packages,playlists,payments,
    /// subscriptions,uploads,catalog,play` for an API process (an unknown name is refused with
    /// the list).
    #[arg(long)]
    services: Option<String>,
}

impl Cli {
    fn flags(&self) -> Flags {
        self.common
            .flags()
            .set("data_dir", self.data_dir.as_ref())
            .set("user_db_url", self.user_db_url.as_ref())
            .set("inventory_db_url", self.inventory_db_url.as_ref())
            .set("cache_url", self.cache_url.as_ref())
            .set("services", self.services.as_ref())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::daemon(
        "control-plane",
        cli.common.config.as_deref(),
        cli.flags(),
        serve,
    )
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // A process that serves no HTTP (a processing worker) binds only its admin port.
    let listener = if config.services.serve_http() {
        Some(telemetry::bind(config.listen, "public").await?)
    } else {
        None
    };
    let admin = telemetry::bind(config.admin_listen, "admin").await?;
    let app = App::build(config, Clock::system()).await?;
    if let Some(admin) = app.bootstrap_admin().await? {
        // Shown once: the password is not stored anywhere but as its hash.
        eprintln!(
            "Created the first administrator: {} / {}  (shown once; change it with PUT /api/v1/users/me/password)",
            admin.email, admin.password
        );
    }
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    run(app, listener, admin, shutdown).await
}
