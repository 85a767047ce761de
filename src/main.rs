//! `cargo run --release`: the whole Cadenza stack on localhost, with embedded backends and
//! demo content, until Ctrl-C.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use cadenza::{StackOptions, banner, start};
use clap::Parser;
use telemetry::{LogFormat, Shutdown};

/// Cadenza: the music platform and its CDN, all on this machine.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Where all state lives (databases, media, stack.json).
    #[arg(long, env = "CADENZA_DATA_DIR", default_value = "cadenza-data")]
    data_dir: PathBuf,
    /// Address every daemon binds to.
    #[arg(long, env = "CADENZA_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// The control plane's port; other daemons follow it, admin ports are 1000 above.
    /// 0 picks free ports.
    #[arg(long, env = "CADENZA_BASE_PORT", default_value_t = 8080)]
    base_port: u16,
    /// Log format: human or json.
    #[arg(long, default_value = "human")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(cli.log_format, "info");
    let options = StackOptions {
        data_dir: cli.data_dir,
        host: cli.host,
        base_port: cli.base_port,
        log_format: cli.log_format,
        clock: telemetry::Clock::system(),
    };
    telemetry::run_main("cadenza", async move {
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals();
        let stack = start(&options, shutdown).await?;
        println!("{}", banner(&stack.info, &options.data_dir));
        stack.wait().await
    })
}
