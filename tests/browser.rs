//! The web player in a real browser: the whole stack started in-process on free ports, then
//! `control-plane/web/tests/e2e.mjs` (playwright-core driving Debian's chromium) signs up,
//! subscribes, uploads, searches, plays, queues, builds and reorders a playlist, hears a free
//! listener's ad first, and keeps playing from the fallback when the harness stops the edge in
//! use (the script prints `STOP <edge>` and waits for `STOPPED`). Screenshots of the main pages
//! at desktop and phone sizes go to `target/screenshots/` (or `CADENZA_SCREENSHOTS`).
//!
//! Needs Node.js, `npm ci` in `control-plane/web` (the build does it) and Chromium
//! (`CADENZA_TEST_CHROMIUM`, or `chromium` on the PATH); skipped without them, required under
//! `CI=true`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cadenza::{StackOptions, start};
use telemetry::{LogFormat, Shutdown};

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CADENZA_TEST_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|path| path.is_file())
            })
        })
}

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("control-plane/web")
}

/// Forty seconds of a tune of its own (a rising chirp over a pulse), for the artist to upload:
/// long enough that a short buffer must fetch more after the edge stops.
fn upload_wav() -> Vec<u8> {
    media::wav::pcm_wav(40.0, 44_100, None, |t| {
        let tau = std::f64::consts::TAU;
        let step = (t * 5.0) as u32;
        let pitch = 180.0 * 2f64.powf(f64::from((step * 7) % 24) / 12.0);
        let within = t * 5.0 - f64::from(step);
        let envelope = (within * 30.0).min(1.0) * (-within * 4.0).exp();
        let tone = (tau * pitch * t).sin() * envelope;
        let pulse = (tau * 55.0 * t).sin() * if step.is_multiple_of(4) { 0.3 } else { 0.1 };
        (0.35 * tone + pulse, 0.3 * tone + pulse)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_player_works_in_chromium() {
    let ci = test_support::ci();
    let Some(chromium) = chromium() else {
        assert!(
            !ci,
            "CI=true but Chromium is not installed (CADENZA_TEST_CHROMIUM)"
        );
        test_support::skip_notice("the browser test needs Chromium (set CADENZA_TEST_CHROMIUM)");
        return;
    };
    if !web_dir().join("node_modules/playwright-core").is_dir() {
        assert!(!ci, "CI=true but control-plane/web/node_modules is missing");
        test_support::skip_notice("the browser test needs `npm ci` in control-plane/web");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shutdown = Shutdown::new();
    let options = StackOptions {
        data_dir: dir.path().to_path_buf(),
        host: "127.0.0.1".parse().unwrap(),
        base_port: 0,
        log_format: LogFormat::Human,
        clock: telemetry::Clock::system(),
    };
    let stack = start(&options, shutdown.clone()).await.unwrap();
    let upload = dir.path().join("lighthouse.wav");
    std::fs::write(&upload, upload_wav()).unwrap();
    let screenshots = std::env::var_os("CADENZA_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
            target.join("screenshots")
        });
    let mut child = Command::new("node")
        .arg(web_dir().join("tests/e2e.mjs"))
        .current_dir(web_dir())
        .env("CADENZA_URL", &stack.info.control_plane.url)
        .env("CADENZA_CHROMIUM", &chromium)
        .env("CADENZA_UPLOAD", &upload)
        .env("CADENZA_SCREENSHOTS", &screenshots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    // The script's lines are read on this thread while the stack's tasks run on the others.
    let started = Instant::now();
    let transcript = tokio::task::block_in_place(|| {
        let mut transcript = Vec::new();
        for line in stdout.lines() {
            let line = line.unwrap();
            println!("e2e: {line}");
            if let Some(edge) = line.strip_prefix("STOP ") {
                assert!(stack.stop_edge(edge), "no edge {edge}");
                stdin.write_all(b"STOPPED\n").unwrap();
                stdin.flush().unwrap();
            }
            transcript.push(line);
            if started.elapsed() > Duration::from_secs(600) {
                let _ = child.kill();
                panic!("the browser test took more than ten minutes");
            }
        }
        transcript
    });
    let status = child.wait().unwrap();
    assert!(
        status.success() && transcript.iter().any(|line| line == "e2e: passed"),
        "the browser test failed ({status}); its last steps:\n{}",
        transcript[transcript.len().saturating_sub(8)..].join("\n")
    );
    println!("screenshots in {}", screenshots.display());
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(15), stack.wait())
        .await
        .expect("the stack stops")
        .unwrap();
}
