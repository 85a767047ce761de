//! The daemon killed with SIGKILL in the middle of fills, then restarted on the same disk
//! tier: everything it serves afterwards is byte-exact.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::StatusCode;

use crate::support::{FILL_KEY, TestObject, TestOrigin, bytes_of};

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn spawn(config: &std::path::Path, admin: SocketAddr) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_edge-node"))
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("http://{admin}/healthz"))
            .send()
            .await
            .is_ok()
        {
            return daemon;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the edge daemon did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_fills_then_restart_serves_only_whole_objects() {
    let origin = TestOrigin::start().await;
    let objects: Vec<(String, bytes::Bytes)> = (0..30)
        .map(|index| (format!("/assets/o{index}.m4s"), bytes_of(200_000, index)))
        .collect();
    for (index, (path, body)) in objects.iter().enumerate() {
        let mut object = TestObject::new(body.clone(), "public, max-age=3600");
        if index >= 5 {
            object.chunk = 8 * 1024;
            object.chunk_pause_ms = 10;
        }
        origin.put(path, object);
    }
    let dir = tempfile::tempdir().unwrap();
    let (listen, tls, admin) = (free_port(), free_port(), free_port());
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "id = \"edge-kill\"\nlisten = \"{listen}\"\ntls_listen = \"{tls}\"\nhttp3 = false\n\
             admin_listen = \"{admin}\"\nparents = [\"{}\"]\nfill_key = \"{FILL_KEY}\"\n\
             token_prefixes = []\ndisk_cache_dir = \"{}\"\n",
            origin.url(),
            dir.path().join("cache").display()
        ),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{listen}{path}");

    let mut daemon = spawn(&config, admin).await;
    // Five objects complete (and reach the disk)…
    for (path, body) in &objects[..5] {
        let response = client.get(url(path)).send().await.unwrap();
        assert_eq!(response.bytes().await.unwrap(), body);
    }
    let stored = dir.path().join("cache").join("objects");
    test_support::eventually("five objects on disk", || {
        test_support::files_under(&stored) == 5
    })
    .await;
    // …twenty-five are mid-fill when the process is killed.
    let pending: Vec<_> = objects[5..]
        .iter()
        .map(|(path, _)| tokio::spawn(client.get(url(path)).send()))
        .collect();
    test_support::eventually("every fill under way", || {
        objects[5..].iter().all(|(path, _)| origin.hits(path) >= 1)
    })
    .await;
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    for task in pending {
        let _ = task.await;
    }

    // Restarted with the origin gone: whatever is served comes from the disk and is whole.
    origin.stop().await;
    let _daemon = spawn(&config, admin).await;
    let mut from_disk = 0;
    for (path, body) in &objects {
        let response = client.get(url(path)).send().await.unwrap();
        match response.status() {
            StatusCode::OK => {
                assert_eq!(&response.bytes().await.unwrap(), body, "{path}");
                from_disk += 1;
            }
            StatusCode::BAD_GATEWAY => {}
            other => panic!("{path}: {other}"),
        }
    }
    assert!(from_disk >= 5, "the completed objects survive: {from_disk}");
}
