//! The ISP box daemon and its status command: `isp-box` (or `isp-box run`) serves; `isp-box
//! status` asks a running box's admin port and prints its state, registration, fill progress,
//! disk use and last hour, exiting 0 when ok, 1 on a warning, 2 on an error and 3 when the box
//! does not answer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use isp_box::Config;
use isp_box::status::{Status, render};
use telemetry::{LogFormat, Shutdown};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Cadenza ISP box: serves an ISP's subscribers from inside its network, pre-positioned at night.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default).
    Run(RunArgs),
    /// Print a running box's status.
    Status {
        /// The box's admin URL.
        #[arg(
            long,
            default_value = "http://127.0.0.1:9090",
            env = "CADENZA_ISP_BOX_ADMIN"
        )]
        admin: String,
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// TOML configuration file (flags and CADENZA_* variables override it).
    #[arg(long, env = "CADENZA_CONFIG")]
    config: Option<PathBuf>,
    /// Admin address (/status, /metrics, /healthz, /readyz, /drain, /purge).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Cleartext HTTP/1.1 + h2c address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Disk cache directory.
    #[arg(long)]
    disk_cache_dir: Option<PathBuf>,
    /// Log format: human or json.
    #[arg(long)]
    log_format: Option<LogFormat>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Status { admin, json }) => return status(&admin, json),
        Some(Command::Run(args)) => args,
        None => cli.run,
    };
    let flags = telemetry::Flags::default()
        .set("node.admin_listen", args.admin_listen)
        .set("node.listen", args.listen)
        .set("node.disk_cache_dir", args.disk_cache_dir.as_ref())
        .set("node.log_format", args.log_format);
    telemetry::daemon(
        "isp-box",
        args.config.as_deref(),
        flags,
        |config: Config| async move {
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            isp_box::run(config, shutdown).await
        },
    )
}

fn status(admin: &str, json: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("isp-box status: {error}");
            return ExitCode::from(3);
        }
    };
    let url = format!("{}/status", admin.trim_end_matches('/'));
    let fetched = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        client
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json::<Status>()
            .await
    });
    match fetched {
        Ok(status) => {
            if json {
                match serde_json::to_string_pretty(&status) {
                    Ok(text) => println!("{text}"),
                    Err(error) => eprintln!("isp-box status: {error}"),
                }
            } else {
                print!("{}", render(&status));
            }
            ExitCode::from(status.state.level())
        }
        Err(error) => {
            eprintln!("isp-box status: the box at {admin} did not answer: {error}");
            ExitCode::from(3)
        }
    }
}
