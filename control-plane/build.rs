//! Rebuilds the crate when a migration changes (`sqlx::migrate!` embeds them at compile time),
//! and builds the web player: `npm ci` when `web/node_modules` is missing or older than the
//! lockfile, then `node web/build.mjs` into `OUT_DIR/web`, whose files `src/web.rs` embeds
//! through the table written here. Without Node.js the crate still builds, with a page that
//! says how to get the player (under `CI=true` that is an error instead).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    for input in [
        "web/src",
        "web/index.html",
        "web/build.mjs",
        "web/package.json",
        "web/package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={input}");
    }
    println!("cargo:rerun-if-env-changed=CI");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let dist = out.join("web");
    let built = build_web(&web, &dist);
    let files = match built {
        Ok(()) => list(&dist),
        Err(why) => {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!("the web player could not be built: {why}");
            }
            println!(
                "cargo:warning=the web player was not built ({why}); / explains how to get it"
            );
            let _ = std::fs::remove_dir_all(&dist);
            std::fs::create_dir_all(&dist).expect("OUT_DIR is writable");
            std::fs::write(
                dist.join("index.html"),
                format!(
                    "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Cadenza</title>\
                     <body style=\"font-family:system-ui;max-width:40rem;margin:3rem auto\">\
                     <h1>Cadenza</h1><p>The web player was not built into this binary: {}.</p>\
                     <p>Install Node.js 20 and npm, then build again (<code>cargo run --release</code>). \
                     The API is at <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p></body></html>",
                    html_escape(&why)
                ),
            )
            .expect("OUT_DIR is writable");
            list(&dist)
        }
    };
    let mut table = String::from("/// The web player's files: (name, bytes, gzip copy).\n");
    table.push_str("pub(crate) static ASSETS: &[Entry] = &[\n");
    for file in files.iter().filter(|file| !file.ends_with(".gz")) {
        let path = dist.join(file);
        let gzip = dist.join(format!("{file}.gz"));
        let gzip = if gzip.exists() {
            format!("Some(include_bytes!({:?}))", gzip.display().to_string())
        } else {
            "None".to_owned()
        };
        writeln!(
            table,
            "    ({file:?}, include_bytes!({:?}), {gzip}),",
            path.display().to_string()
        )
        .expect("writing to a String");
    }
    table.push_str("];\n");
    std::fs::write(out.join("web_assets.rs"), table).expect("OUT_DIR is writable");
}

fn build_web(web: &Path, dist: &Path) -> Result<(), String> {
    let lock = web.join("package-lock.json");
    let installed = web.join("node_modules/.package-lock.json");
    let stale = match (modified(&lock), modified(&installed)) {
        (Some(lock), Some(installed)) => lock > installed,
        _ => true,
    };
    if stale {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(web),
            "npm ci",
        )?;
    }
    run(
        Command::new("node")
            .arg(web.join("build.mjs"))
            .arg(dist)
            .current_dir(web),
        "node build.mjs",
    )
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|error| format!("{what} could not start: {error}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

fn list(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
