//! The origin over a local directory and over S3, through real HTTP.

use std::io::Read as _;

use objects::{Objects, S3Config};
use origin::{Config, Origin};
use reqwest::StatusCode;
use reqwest::header::{
    CACHE_CONTROL, CONTENT_ENCODING, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_NONE_MATCH, IF_RANGE,
    RANGE,
};
use telemetry::DaemonConfig as _;
use telemetry::{Secret, Shutdown};

const KEY: &str = "fill-key-for-the-tests";
const BUCKET: &str = "cadenza-test";

struct Running {
    base: String,
    client: reqwest::Client,
    segment: Vec<u8>,
    _dir: Option<tempfile::TempDir>,
    shutdown: Shutdown,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl Running {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }
}

/// The objects every case reads, by key.
fn fixture() -> (Vec<u8>, Vec<(&'static str, Vec<u8>)>) {
    let segment: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let playlist = "#EXTM3U\n#EXT-X-VERSION:7\n".repeat(50).into_bytes();
    let objects = vec![
        ("media/t1/v1/128k/seg-1.m4s", segment.clone()),
        ("media/t1/v1/128k/init.mp4", b"init".to_vec()),
        ("media/t1/v1/master.m3u8", playlist),
        ("raw/upload", b"private".to_vec()),
    ];
    (segment, objects)
}

/// An origin over each object store the run has: a local directory always, and an
/// S3-compatible server when `CADENZA_TEST_S3_ENDPOINT` names one (required when `CI=true`).
async fn origins() -> Vec<Running> {
    let (segment, objects) = fixture();
    let dir = tempfile::tempdir().unwrap();
    for (key, bytes) in &objects {
        let path = dir.path().join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let mut running = vec![
        start(
            format!("file://{}", dir.path().display()),
            S3Config::default(),
            segment.clone(),
        )
        .await,
    ];
    let endpoint = std::env::var("CADENZA_TEST_S3_ENDPOINT")
        .ok()
        .filter(|endpoint| !endpoint.is_empty());
    match endpoint {
        Some(endpoint) => {
            // The bucket: 200 when created, 409 when it exists (SeaweedFS takes anonymous
            // requests).
            let created = reqwest::Client::new()
                .put(format!("{}/{BUCKET}", endpoint.trim_end_matches('/')))
                .send()
                .await
                .expect("CADENZA_TEST_S3_ENDPOINT must be reachable");
            assert!(
                created.status().is_success() || created.status() == StatusCode::CONFLICT,
                "bucket creation: {}",
                created.status()
            );
            let url = format!(
                "s3://{BUCKET}/origin-{}",
                dir.path().file_name().unwrap().to_string_lossy()
            );
            let s3 = S3Config {
                endpoint: Some(endpoint),
                ..S3Config::default()
            };
            let store = Objects::from_url(&url, &s3).unwrap();
            for (key, bytes) in objects {
                store.put(key, bytes.into()).await.unwrap();
            }
            running.push(start(url, s3, segment).await);
        }
        None if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true but CADENZA_TEST_S3_ENDPOINT is not set")
        }
        None => {
            // Straight to stderr, past the test harness's capture, so the skip is seen.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: the origin over S3 (set CADENZA_TEST_S3_ENDPOINT to an S3-compatible server)"
            );
        }
    }
    running[0]._dir = Some(dir);
    running
}

async fn start(object_store_url: String, s3: S3Config, segment: Vec<u8>) -> Running {
    let config = Config {
        object_store_url,
        s3,
        fill_key: Some(Secret::new(KEY)),
        ..Config::default()
    };
    config.validate().unwrap();
    let origin = Origin::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    tokio::spawn(origin::run(origin, listener, admin, shutdown.clone()));
    let client = reqwest::Client::builder().no_gzip().build().unwrap();
    Running {
        base,
        client,
        segment,
        _dir: None,
        shutdown,
    }
}

#[tokio::test]
async fn a_plain_client_is_refused() {
    for origin in origins().await {
        let url = format!("{}/media/t1/v1/128k/seg-1.m4s", origin.base);
        let response = origin.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "fill_key_required");
        let response = origin
            .client
            .get(&url)
            .bearer_auth("wrong-key-wrong-key")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn whole_objects_with_types_validators_and_cache_control() {
    for origin in origins().await {
        let response = origin
            .get("/media/t1/v1/128k/seg-1.m4s")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "video/iso.segment");
        assert_eq!(
            response.headers()[CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        let etag = response.headers()[ETAG].to_str().unwrap().to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "strong: {etag}"
        );
        assert_eq!(response.bytes().await.unwrap(), origin.segment);

        let response = origin
            .client
            .head(format!("{}/media/t1/v1/128k/seg-1.m4s", origin.base))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-length"], "100000");

        let response = origin
            .get("/media/t1/v1/128k/seg-1.m4s")
            .header(IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[ETAG], etag.as_str());

        let response = origin
            .get("/media/t1/v1/128k/init.mp4")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()[CONTENT_TYPE], "audio/mp4");
    }
}

#[tokio::test]
async fn single_and_multipart_ranges() {
    for origin in origins().await {
        let path = "/media/t1/v1/128k/seg-1.m4s";
        let response = origin
            .get(path)
            .header(RANGE, "bytes=100-199")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(response.headers()[CONTENT_RANGE], "bytes 100-199/100000");
        assert_eq!(response.bytes().await.unwrap(), origin.segment[100..200]);

        let response = origin
            .get(path)
            .header(RANGE, "bytes=-10")
            .send()
            .await
            .unwrap();
        assert_eq!(response.bytes().await.unwrap(), origin.segment[99_990..]);

        let response = origin
            .get(path)
            .header(RANGE, "bytes=0-1, 500-509")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
        let content_type = response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let boundary = content_type
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap()
            .to_owned();
        let body = response.bytes().await.unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(
        format!("--{boundary}\r\nContent-Type: video/iso.segment\r\nContent-Range: bytes 0-1/100000\r\n\r\n").as_bytes(),
    );
        expected.extend_from_slice(&origin.segment[0..2]);
        expected.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Type: video/iso.segment\r\nContent-Range: bytes 500-509/100000\r\n\r\n").as_bytes(),
    );
        expected.extend_from_slice(&origin.segment[500..510]);
        expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        assert_eq!(body, expected);

        let response = origin
            .get(path)
            .header(RANGE, "bytes=100000-")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(response.headers()[CONTENT_RANGE], "bytes */100000");

        for hostile in [
            "bytes=abc",
            "bytes=5-1",
            &format!("bytes={}", vec!["1-2"; 3000].join(",")),
        ] {
            let response = origin
                .get(path)
                .header(RANGE, hostile)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{hostile:.20}");
            assert_eq!(response.bytes().await.unwrap().len(), 100_000);
        }

        let response = origin
            .get(path)
            .header(RANGE, "bytes=0-9")
            .header(IF_RANGE, "\"stale\"")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "a stale If-Range gets the whole object"
        );
    }
}

#[tokio::test]
async fn playlists_are_gzipped_and_short_lived() {
    for origin in origins().await {
        let response = origin
            .get("/media/t1/v1/master.m3u8")
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_ENCODING], "gzip");
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(response.headers()["vary"], "Accept-Encoding");
        assert!(
            response.headers()[CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("max-age=60")
        );
        let compressed = response.bytes().await.unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "#EXTM3U\n#EXT-X-VERSION:7\n".repeat(50));

        let response = origin.get("/media/t1/v1/master.m3u8").send().await.unwrap();
        assert!(response.headers().get(CONTENT_ENCODING).is_none());
    }
}

#[tokio::test]
async fn private_keys_and_traversal_are_refused() {
    for origin in origins().await {
        assert_eq!(
            origin.get("/raw/upload").send().await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            origin
                .get("/media/t1/v1/nothing.m4s")
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NOT_FOUND
        );
        for path in [
            "/media/%2e%2e/raw/upload",
            "/media/..%2fraw/upload",
            "/media/t1/%2E%2E/%2E%2E/raw/upload",
            "/media/t1/..%5c..%5craw/upload",
            "/media//t1",
        ] {
            let status = origin.get(path).send().await.unwrap().status();
            assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
                "{path}: {status}"
            );
        }
        let response = origin
            .client
            .post(format!("{}/media/t1/v1/master.m3u8", origin.base))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
