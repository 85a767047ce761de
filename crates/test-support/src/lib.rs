//! What the workspace's tests share, and nothing a daemon links: a scriptable origin
//! ([`origin`]), an HTTP/3 client ([`h3`]), self-signed certificates ([`certs`]), and the rules
//! for tests that need a server or a tool (run when it is named or installed, say so when
//! skipped, and fail under `CI=true` instead of skipping).

pub mod certs;
pub mod h3;
pub mod origin;

pub use origin::bytes_of;

/// Whether this is a CI run (`CI=true`), where every backend and tool must be present.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// Says that a test (or part of one) was skipped, on the terminal itself: libtest captures
/// `eprintln!` of passing tests, which would hide the notice.
pub fn skip_notice(what: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipped: {what}");
}

/// The value of the environment variable `name` when set and not empty. Unset, it is `None`
/// and the skip is announced with `why` — or, under `CI=true`, the test fails.
pub fn server_var(name: &str, why: &str) -> Option<String> {
    match std::env::var(name).ok().filter(|value| !value.is_empty()) {
        Some(value) => Some(value),
        None if ci() => panic!("CI=true but {name} is not set ({why})"),
        None => {
            skip_notice(&format!("{why} (set {name})"));
            None
        }
    }
}

/// Whether every one of `tools` runs (`TOOL -version`); when one does not, the skip is
/// announced with `why` — or, under `CI=true` (where `.ci/run` installs them), the test fails.
pub fn tools_available(tools: &[&str], why: &str) -> bool {
    let found = tools.iter().all(|tool| {
        std::process::Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|output| output.status.success())
    });
    if !found {
        assert!(!ci(), "CI=true but {tools:?} are not installed ({why})");
        skip_notice(&format!("{why}: needs {}", tools.join(" and ")));
    }
    found
}

/// Waits until `ready` holds, checking every 10 ms, for at most 10 s; `what` names it when it
/// never does. For conditions a test cannot be told of directly (a file written by a
/// background task), in place of a fixed sleep.
pub async fn eventually(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The body of `GET url` as text; a transport error fails the test.
pub async fn get_text(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> String {
    let response = client.get(url).send().await.expect("GET");
    response.text().await.expect("GET body")
}

/// The body of `GET url` decoded from JSON; a transport or decoding error fails the test.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl,
) -> T {
    json_of(client.get(url)).await
}

/// Sends `request` and decodes its answer's body from JSON; a transport or decoding error
/// fails the test.
pub async fn json_of<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    let response = request.send().await.expect("request");
    response.json().await.expect("body as JSON")
}

/// How many files lie under `dir`, at any depth (0 if it does not exist).
pub fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() { files_under(&path) } else { 1 }
        })
        .sum()
}
