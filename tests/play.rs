//! The stream flow end to end, with every daemon running on free ports: sign up, subscribe,
//! upload, process, play through the host locator, fetch every byte from the chosen edge over
//! HTTP/1.1, HTTP/2 and HTTP/3, report listening, read the counters; free-tier ad breaks over
//! two simulated hours; URL tokens; and an edge dying mid-playback.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use cadenza::{Stack, StackOptions, start};
use serde_json::{Value, json};
use telemetry::{Clock, LogFormat, Shutdown};
use test_support::get_text;
use test_support::h3::H3Client;

fn options(dir: &Path, clock: Clock) -> StackOptions {
    StackOptions {
        data_dir: dir.to_path_buf(),
        host: "127.0.0.1".parse().unwrap(),
        base_port: 0,
        log_format: LogFormat::Human,
        clock,
    }
}

/// A listener, artist or admin talking to the control plane.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(stack: &Stack) -> Self {
        Self {
            base: stack.info.control_plane.url.clone(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    async fn log_in(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/sessions",
                "",
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    async fn sign_up(&self, email: &str) -> String {
        let password = "a long enough password";
        let (status, body) = self
            .post(
                "/api/v1/users",
                "",
                json!({"first_name": "Lis", "last_name": "Tener", "email": email,
                       "mobile": "+33612345678", "address": "Paris", "password": password}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        self.log_in(email, password).await
    }

    /// Uploads a WAV as `token` and waits until the pipeline has made it ready.
    async fn upload_ready(&self, token: &str, title: &str, wav: Vec<u8>) -> String {
        let response = self
            .http
            .post(format!("{}/api/v1/tracks", self.base))
            .query(&[
                ("title", title),
                ("singer", "Test Artist"),
                ("filename", "t.wav"),
            ])
            .bearer_auth(token)
            .body(wav)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let track = response.json::<Value>().await.unwrap()["track_id"]
            .as_str()
            .unwrap()
            .to_owned();
        for _ in 0..600 {
            let (_, state) = self.get(&format!("/api/v1/tracks/{track}"), token).await;
            match state["status"].as_str().unwrap() {
                "ready" => return track,
                "rejected" | "failed" => panic!("the upload was {state}"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("the upload was not processed in a minute");
    }
}

/// Twelve seconds of square-ish chords, unlike every demo tune.
fn test_tune() -> Vec<u8> {
    let chords = [
        [196.0, 246.94, 293.66],
        [174.61, 220.0, 261.63],
        [164.81, 207.65, 246.94],
    ];
    media::wav::pcm_wav(12.0, 44_100, None, |t| {
        let chord = chords[((t / 1.5) as usize) % chords.len()];
        let tau = std::f64::consts::TAU;
        let value: f64 = chord
            .iter()
            .map(|f| {
                let s = (tau * f * t).sin();
                s.signum() * s.abs().powf(0.3)
            })
            .sum::<f64>()
            / 3.0;
        let gate = if (t * 4.0).fract() < 0.7 { 1.0 } else { 0.3 };
        (0.3 * value * gate, 0.28 * value * gate)
    })
}

/// One way of fetching from an edge.
enum Via {
    H1(reqwest::Client),
    H2(reqwest::Client),
    H3(H3Client),
}

impl Via {
    async fn get(&mut self, url: &str) -> (u16, String, Bytes) {
        match self {
            Self::H1(client) | Self::H2(client) => {
                let response = client.get(url).send().await.unwrap();
                let expected = if url.starts_with("https:") {
                    reqwest::Version::HTTP_2
                } else {
                    reqwest::Version::HTTP_11
                };
                assert_eq!(response.version(), expected, "{url}");
                let status = response.status().as_u16();
                let cache = response
                    .headers()
                    .get("cache-status")
                    .map(|value| value.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                (status, cache, response.bytes().await.unwrap())
            }
            Self::H3(client) => {
                let path = &url[url.find("://").unwrap() + 3..];
                let path = &path[path.find('/').unwrap()..];
                let (status, headers, body) = client.get(path, &[]).await.unwrap();
                let cache = headers
                    .get("cache-status")
                    .map(|value| value.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                (status.as_u16(), cache, body)
            }
        }
    }
}

/// The first rendition a master lists: its URI, its media playlist's URL and text.
async fn first_media_playlist(http: &reqwest::Client, master: &str) -> (String, String, String) {
    let master_text = get_text(http, master).await;
    let rendition = master_text
        .lines()
        .find(|line| line.ends_with(".m3u8"))
        .unwrap()
        .to_owned();
    let media_url = resolve(master, &rendition);
    let media = get_text(http, &media_url).await;
    (rendition, media_url, media)
}

/// The edge's certificate, DER, from the PEM the stack wrote.
fn certificate_der(path: &Path) -> Vec<u8> {
    pem::parse(std::fs::read(path).unwrap())
        .unwrap()
        .into_contents()
}

/// `base` + `relative` (a playlist's URI).
fn resolve(base: &str, relative: &str) -> String {
    if relative.contains("://") {
        return relative.to_owned();
    }
    format!("{}/{relative}", &base[..base.rfind('/').unwrap()])
}

/// Every file an HLS presentation needs, as absolute URLs: master, media playlists, init
/// segments and media segments.
async fn hls_files(via: &mut Via, master_url: &str) -> Vec<(String, Bytes)> {
    let (status, _, master) = via.get(master_url).await;
    assert_eq!(status, 200, "{master_url}");
    let master_text = String::from_utf8(master.to_vec()).unwrap();
    let mut files = vec![(master_url.to_owned(), master)];
    for line in master_text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
    {
        let media_url = resolve(master_url, line);
        let (status, _, media) = via.get(&media_url).await;
        assert_eq!(status, 200, "{media_url}");
        let media_text = String::from_utf8(media.to_vec()).unwrap();
        files.push((media_url.clone(), media));
        for line in media_text.lines() {
            let uri = if let Some(map) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
                map.trim_end_matches('"')
            } else if !line.starts_with('#') && !line.is_empty() {
                line
            } else {
                continue;
            };
            let url = resolve(&media_url, uri);
            let (status, _, body) = via.get(&url).await;
            assert_eq!(status, 200, "{url}");
            files.push((url, body));
        }
    }
    files
}

/// The object path of an edge URL (`…/t/{token}/media/…` → `/media/…`).
fn media_path(url: &str) -> &str {
    let after = &url[url.find("/t/").unwrap() + 3..];
    &after[after.find('/').unwrap()..]
}

fn ffmpeg_available() -> bool {
    test_support::tools_available(&["ffmpeg"], "decoding the plays with ffmpeg")
}

/// Decodes `input` (a URL or file) with ffmpeg after remuxing its AAC frames as they come (an
/// HLS discontinuity restarts timestamps, which ffmpeg's CLI would trim), and returns the
/// decoded duration in seconds.
fn ffmpeg_decoded_secs(input: &str, dir: &Path) -> f64 {
    let adts = dir.join("remuxed.aac");
    let remux = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-i",
            input,
            "-map",
            "0:a:0",
            "-c",
            "copy",
            "-f",
            "adts",
        ])
        .arg(&adts)
        .output()
        .unwrap();
    assert!(
        remux.status.success(),
        "{}",
        String::from_utf8_lossy(&remux.stderr)
    );
    let decode = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&adts)
        .args(["-f", "s16le", "-ac", "2", "-ar", "44100", "-"])
        .output()
        .unwrap();
    assert!(
        decode.status.success(),
        "{}",
        String::from_utf8_lossy(&decode.stderr)
    );
    decode.stdout.len() as f64 / 4.0 / 44_100.0
}

async fn wait_for_counter(
    api: &Api,
    token: &str,
    track: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..600 {
        let (status, entry) = api
            .get(&format!("/api/v1/tracks/{track}/catalog"), token)
            .await;
        assert_eq!(status, 200, "{entry}");
        if check(&entry["plays"]) {
            return entry["plays"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the play counters of {track} never got there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_uploads_plays_and_is_counted_over_every_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = Shutdown::new();
    let stack = start(&options(dir.path(), Clock::system()), shutdown.clone())
        .await
        .unwrap();
    let api = Api::new(&stack);
    let info = stack.info.clone();

    // Sign up and subscribe to Premium with the sandbox card.
    let listener = api.sign_up("subscriber@example.com").await;
    let (_, packages) = api.get("/api/v1/packages", "").await;
    let premium = packages
        .as_array()
        .unwrap()
        .iter()
        .find(|package| package["name"] == "Premium")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let checkout = api
        .http
        .post(format!("{}/api/v1/payments", api.base))
        .bearer_auth(&listener)
        .header("idempotency-key", "premium-1")
        .json(&json!({"package_id": premium}))
        .send()
        .await
        .unwrap();
    assert_eq!(checkout.status(), 201);
    let payment = checkout.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, paid) = api
        .post(
            &format!("/api/v1/payments/{payment}/confirm"),
            &listener,
            json!({"card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}}),
        )
        .await;
    assert!(status < 300, "{paid}");
    let mut ads_per_hour = -1;
    for _ in 0..600 {
        let (_, entitlements) = api.get("/api/v1/me/entitlements", &listener).await;
        ads_per_hour = entitlements["free_ads_per_hour"].as_i64().unwrap();
        if ads_per_hour == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ads_per_hour, 0, "the subscription did not take effect");

    // The artist uploads; the pipeline processes.
    let artist = api
        .log_in(&info.demo.artist.email, &info.demo.artist.password)
        .await;
    let track = api
        .upload_ready(&artist, "Square Chords", test_tune())
        .await;

    // Bad plays: unknown track, bad format, no session.
    let (status, body) = api
        .post(
            "/api/v1/play",
            &listener,
            json!({"track_id": "nope", "format": "hls"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("track_not_found"))
    );
    let (status, body) = api
        .post(
            "/api/v1/play",
            &listener,
            json!({"track_id": track, "format": "flv"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["fields"][0]["field"], "format");
    let (status, _) = api
        .post(
            "/api/v1/play",
            "",
            json!({"track_id": track, "format": "hls"}),
        )
        .await;
    assert_eq!(status, 401);
    let (status, body) = api
        .post(
            "/api/v1/play",
            &listener,
            json!({"track_id": track, "format": "hls", "location": {"lat": 91.0, "lon": 0.0}}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["fields"][0]["field"].as_str()),
        (422, Some("location"))
    );

    let fill_key = std::fs::read_to_string(dir.path().join("fill-key")).unwrap();
    let origin = reqwest::Client::new();
    let mut first_play = None;
    for protocol in ["h1", "h2", "h3"] {
        let (status, play) = api
            .post("/api/v1/play", &listener, json!({"track_id": track, "format": "hls", "protocol": protocol, "device": "test/ffmpeg"}))
            .await;
        assert_eq!(status, 201, "{play}");
        // A paid play has no ads and plays the packaged manifest on the node itself.
        assert_eq!(play["ads"], json!([]));
        assert_eq!(play["track_starts_at_ms"], 0);
        assert!(
            play["gain_db"].is_number() && play["loudness_lufs"].is_number(),
            "{play}"
        );
        assert_eq!(play["track"]["name"], "Square Chords");
        let nodes = play["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 2, "both edges are candidates: {play}");
        assert_eq!(play["fallbacks"].as_array().unwrap().len(), 1);
        let manifest = play["manifest_url"].as_str().unwrap().to_owned();
        assert!(
            manifest.contains("/t/") && manifest.ends_with("/master.m3u8"),
            "{manifest}"
        );
        let primary = nodes[0]["node"].as_str().unwrap();
        let edge = info.edges.iter().find(|edge| edge.id == primary).unwrap();
        let mut via = match protocol {
            "h1" => {
                assert!(manifest.starts_with(&edge.url), "{manifest}");
                Via::H1(reqwest::Client::builder().http1_only().build().unwrap())
            }
            "h2" => {
                assert!(manifest.starts_with(&edge.tls), "{manifest}");
                let port: u16 = edge.tls.rsplit(':').next().unwrap().parse().unwrap();
                let certificate = std::fs::read(&edge.certificate).unwrap();
                Via::H2(
                    reqwest::Client::builder()
                        .add_root_certificate(reqwest::Certificate::from_pem(&certificate).unwrap())
                        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], port)))
                        .http2_prior_knowledge()
                        .build()
                        .unwrap(),
                )
            }
            _ => {
                assert!(manifest.starts_with(&edge.h3), "{manifest}");
                let port: u16 = edge.h3.rsplit(':').next().unwrap().parse().unwrap();
                Via::H3(
                    H3Client::connect(
                        SocketAddr::from(([127, 0, 0, 1], port)),
                        "localhost",
                        &certificate_der(&edge.certificate),
                    )
                    .await
                    .unwrap(),
                )
            }
        };
        let files = hls_files(&mut via, &manifest).await;
        assert!(files.len() > 3 * 3, "{} files", files.len());
        // Every byte equals the origin's.
        for (url, body) in &files {
            let from_origin = origin
                .get(format!("{}{}", info.origin.url, media_path(url)))
                .bearer_auth(fill_key.trim())
                .send()
                .await
                .unwrap();
            assert_eq!(from_origin.status(), 200, "{url}");
            assert_eq!(
                &from_origin.bytes().await.unwrap(),
                body,
                "{url} over {protocol}"
            );
        }
        if first_play.is_none() {
            first_play = Some((play, files));
        }
    }
    let (_, files) = first_play.unwrap();

    // Tokens: expired, for another track, tampered → 403; the token is not in the cache key.
    let secret = std::fs::read_to_string(dir.path().join("url-token-key")).unwrap();
    let keyring = url_token::Keyring::new(
        vec![url_token::Key::new("demo", secret.trim().as_bytes()).unwrap()],
        "demo",
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (segment_url, segment) = files.iter().find(|(url, _)| url.ends_with(".m4s")).unwrap();
    let path = media_path(segment_url);
    let directory = &path[..path[..path.rfind('/').unwrap()].rfind('/').unwrap() + 1];
    let edge_base = &segment_url[..segment_url.find("/t/").unwrap()];
    let h1 = reqwest::Client::new();
    let other_track = &info.demo_catalogue[0].id;
    let expired = keyring
        .sign(directory, now - 7200, now - 3600, None)
        .unwrap();
    let elsewhere = keyring
        .sign(&format!("/media/{other_track}/"), now, now + 600, None)
        .unwrap();
    let good = keyring.sign(directory, now, now + 600, None).unwrap();
    let mut tampered = good.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for token in [&expired, &elsewhere, &tampered] {
        let response = h1
            .get(format!("{edge_base}/t/{token}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{token}");
    }
    let another = keyring.sign(directory, now, now + 900, None).unwrap();
    let response = h1
        .get(format!("{edge_base}/t/{another}{path}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cache = response.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cache.contains("hit"),
        "another token for the same segment is a cache hit: {cache}"
    );
    assert_eq!(&response.bytes().await.unwrap(), segment);

    // Play events: start, progress, complete; then nothing more on a finished play.
    let (status, play) = api
        .post(
            "/api/v1/play",
            &listener,
            json!({"track_id": track, "format": "dash"}),
        )
        .await;
    assert_eq!(status, 201, "{play}");
    assert!(
        play["manifest_url"]
            .as_str()
            .unwrap()
            .ends_with("/manifest.mpd")
    );
    let play_id = play["play_id"].as_str().unwrap();
    let event = |kind: &str, position: u64| json!({"play_id": play_id, "type": kind, "position_ms": position});
    let (status, body) = api
        .post("/api/v1/play-events", &listener, event("progress", 1000))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("play_not_started"))
    );
    let (status, body) = api
        .post("/api/v1/play-events", &listener, event("start", 0))
        .await;
    assert_eq!((status, body["state"].as_str()), (202, Some("playing")));
    let (status, body) = api
        .post("/api/v1/play-events", &listener, event("progress", 3000))
        .await;
    assert_eq!((status, body["listened_ms"].as_u64()), (202, Some(3000)));
    let (status, body) = api
        .post("/api/v1/play-events", &listener, event("complete", 0))
        .await;
    assert_eq!((status, body["state"].as_str()), (202, Some("completed")));
    // Listening is never credited beyond the time since the play began.
    let listened = body["listened_ms"].as_u64().unwrap();
    assert!((3000..9000).contains(&listened), "{body}");
    let (status, body) = api
        .post("/api/v1/play-events", &listener, event("progress", 5000))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("play_finished"))
    );
    let (status, _) = api
        .post(
            "/api/v1/play-events",
            &listener,
            json!({"play_id": "play_unknown", "type": "start"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .post("/api/v1/play-events", &artist, event("start", 0))
        .await;
    assert_eq!(status, 404, "another user's play is not theirs to report");

    // The events are on the bus and the counters of the track's day and region follow.
    let region = play["nodes"][0]["site"].as_str().unwrap().to_owned();
    let plays = wait_for_counter(&api, &listener, &track, |plays| {
        plays
            .as_array()
            .is_some_and(|rows| rows.iter().any(|row| row["completes"] == 1))
    })
    .await;
    assert_eq!(plays[0]["region"], region);
    assert_eq!(plays[0]["starts"], 1);
    assert!(plays[0]["listened_ms"].as_i64().unwrap() >= 3000);

    // An admin takes the track down: no more plays.
    let admin = api
        .log_in(&info.demo.admin.email, &info.demo.admin.password)
        .await;
    let (status, _) = api
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/tracks/{track}/block"),
            &admin,
            Some(json!({"reason": "test takedown"})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = api
        .post(
            "/api/v1/play",
            &listener,
            json!({"track_id": track, "format": "dash"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (451, Some("track_blocked"))
    );
    let (status, _) = api
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/tracks/{track}/block"),
            &listener,
            Some(json!({"reason": "x"})),
        )
        .await;
    assert_eq!(status, 403);

    shutdown.trigger();
    stack.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_listener_hears_n_ads_an_hour_spread_evenly() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = Shutdown::new();
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = Clock::manual(start_ms);
    let stack = start(&options(dir.path(), clock.clone()), shutdown.clone())
        .await
        .unwrap();
    let api = Api::new(&stack);
    let listener = api.sign_up("free@example.com").await;
    let (_, entitlements) = api.get("/api/v1/me/entitlements", &listener).await;
    let per_hour = entitlements["free_ads_per_hour"].as_i64().unwrap();
    assert_eq!(per_hour, 4);
    let track = stack
        .info
        .demo_catalogue
        .iter()
        .find(|entry| entry.kind == "music")
        .unwrap()
        .id
        .clone();
    let ad = stack
        .info
        .demo_catalogue
        .iter()
        .find(|entry| entry.kind == "ad")
        .unwrap()
        .id
        .clone();

    // The first play of a session starts with an ad, spliced server-side.
    let (status, play) = api
        .post(
            "/api/v1/play",
            &listener,
            json!({"track_id": track, "format": "hls", "protocol": "h1"}),
        )
        .await;
    assert_eq!(status, 201, "{play}");
    assert_eq!(play["ads"].as_array().unwrap().len(), 1, "{play}");
    assert_eq!(play["ads"][0]["track_id"], ad);
    let ad_ms = play["ads"][0]["duration_ms"].as_u64().unwrap();
    let track_ms = play["track"]["duration_ms"].as_u64().unwrap();
    assert_eq!(play["track_starts_at_ms"].as_u64().unwrap(), ad_ms);
    let master = play["manifest_url"].as_str().unwrap().to_owned();
    assert!(
        master.starts_with(&stack.info.control_plane.url) && master.contains("/api/v1/plays/"),
        "{master}"
    );
    assert!(
        play["fallbacks"][0]
            .as_str()
            .unwrap()
            .contains("/1/master.m3u8")
    );
    let http = reqwest::Client::new();
    let (_, _, media) = first_media_playlist(&http, &master).await;
    assert_eq!(media.matches("#EXT-X-DISCONTINUITY").count(), 1, "{media}");
    assert_eq!(media.matches("#EXT-X-MAP:").count(), 2);
    assert!(
        media.contains("#EXT-X-PROGRAM-DATE-TIME:") && media.contains(&format!("X-AD-ID=\"{ad}\"")),
        "{media}"
    );
    // Segments stay the shared files: every segment URL is on the edge, under a token.
    let edge = &stack
        .info
        .edges
        .iter()
        .find(|edge| edge.id == play["nodes"][0]["node"])
        .unwrap()
        .url;
    assert!(
        media
            .lines()
            .filter(|line| line.ends_with(".m4s"))
            .all(|line| line.starts_with(edge.as_str()))
    );
    let mpd_url = master.replace("master.m3u8", "manifest.mpd");
    let mpd = get_text(&http, &mpd_url).await;
    assert_eq!(mpd.matches("<Period ").count(), 2, "{mpd}");
    assert!(mpd.contains("<Period id=\"ad-1\" start=\"PT0.000S\""));
    let missing = http
        .get(master.replace("/0/master.m3u8", "/7/master.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    if ffmpeg_available() {
        // The spliced HLS decodes end to end: the ad, then the track.
        let decoded = ffmpeg_decoded_secs(&master, dir.path());
        let expected = (ad_ms + track_ms) as f64 / 1000.0;
        assert!(
            (decoded - expected).abs() < 0.25,
            "decoded {decoded} s, expected {expected} s"
        );
        // Each DASH Period decodes: the pieces its SegmentTemplate names, from its BaseURL.
        for (period, secs) in [(0, ad_ms), (1, track_ms)] {
            let start = mpd.match_indices("<Period ").nth(period).unwrap().0;
            let text = &mpd[start..];
            let base = &text[text.find("<BaseURL>").unwrap() + 9..text.find("</BaseURL>").unwrap()];
            let timeline = &text
                [text.find("<SegmentTimeline>").unwrap()..text.find("</SegmentTimeline>").unwrap()];
            let count: usize = timeline
                .split("<S ")
                .skip(1)
                .map(|s| {
                    1 + s
                        .split("r=\"")
                        .nth(1)
                        .map_or(0, |r| r[..r.find('"').unwrap()].parse::<usize>().unwrap())
                })
                .sum();
            let mut bytes = http
                .get(format!("{base}128k/init.mp4"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec();
            for number in 1..=count {
                let response = http
                    .get(format!("{base}128k/seg-{number:05}.m4s"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                bytes.extend_from_slice(&response.bytes().await.unwrap());
            }
            let file = dir.path().join(format!("period-{period}.mp4"));
            std::fs::write(&file, bytes).unwrap();
            let decoded = ffmpeg_decoded_secs(file.to_str().unwrap(), dir.path());
            assert!(
                (decoded - secs as f64 / 1000.0).abs() < 0.25,
                "period {period}: {decoded} s"
            );
        }
    }

    // Two hours of listening, the clock moved by hand: each play hears its ads, then the track.
    let interval_ms = 3_600_000 / per_hour as u64;
    let mut listened: u64 = 0;
    let mut breaks: Vec<(u64, i64)> = Vec::new(); // (listening clock, wall clock)
    let mut play = play;
    loop {
        let play_id = play["play_id"].as_str().unwrap().to_owned();
        let ads = play["ads"].as_array().unwrap();
        assert!(ads.len() <= 1);
        if !ads.is_empty() {
            breaks.push((listened, clock.now_ms()));
        }
        let ads_ms = play["track_starts_at_ms"].as_u64().unwrap();
        clock.advance(Duration::from_millis(ads_ms));
        let (status, _) = api
            .post(
                "/api/v1/play-events",
                &listener,
                json!({"play_id": play_id, "type": "start", "position_ms": ads_ms}),
            )
            .await;
        assert_eq!(status, 202);
        clock.advance(Duration::from_millis(track_ms));
        let (status, body) = api
            .post(
                "/api/v1/play-events",
                &listener,
                json!({"play_id": play_id, "type": "complete"}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["listened_ms"].as_u64().unwrap(), track_ms);
        listened += track_ms;
        if listened >= 2 * 3_600_000 {
            break;
        }
        let (status, next) = api
            .post(
                "/api/v1/play",
                &listener,
                json!({"track_id": track, "format": "hls", "protocol": "h1"}),
            )
            .await;
        assert_eq!(status, 201, "{next}");
        play = next;
    }
    assert_eq!(breaks.len() as i64, 2 * per_hour, "{breaks:?}");
    assert_eq!(
        breaks[0].0, 0,
        "the first break comes before the first track"
    );
    for pair in breaks.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= interval_ms && gap < interval_ms + track_ms + 1,
            "breaks {gap} ms of listening apart: {breaks:?}"
        );
    }
    for (index, (_, at)) in breaks.iter().enumerate() {
        let within_hour = breaks[..=index]
            .iter()
            .filter(|(_, earlier)| at - earlier < 3_600_000)
            .count();
        assert!(within_hour as i64 <= per_hour, "{breaks:?}");
    }
    // Every break is an impression on record and counted for the ad.
    let (_, me) = api.get("/api/v1/users/me", &listener).await;
    let mine = sqlx_count(
        &stack,
        &format!(
            "SELECT COUNT(*) AS n FROM ad_impressions WHERE user_id = '{}'",
            me["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(mine, 2 * per_hour);
    // (The stack's own demo play at start served the demo listener one too.)
    let all = sqlx_count(&stack, "SELECT COUNT(*) AS n FROM ad_impressions").await;
    let counted = wait_for_counter(&api, &listener, &ad, |plays| {
        plays.as_array().is_some_and(|rows| {
            rows.iter()
                .map(|row| row["ads"].as_i64().unwrap())
                .sum::<i64>()
                == all
        })
    })
    .await;
    assert!(!counted.as_array().unwrap().is_empty());

    shutdown.trigger();
    stack.wait().await.unwrap();
}

async fn sqlx_count(stack: &Stack, sql: &str) -> i64 {
    use sqlx::Row as _;
    sqlx::query(sql)
        .fetch_one(stack.control_plane.users.database().pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_falls_back_when_its_edge_dies_mid_playback() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = Shutdown::new();
    let stack = start(&options(dir.path(), Clock::system()), shutdown.clone())
        .await
        .unwrap();
    let api = Api::new(&stack);
    let listener = api
        .log_in(
            &stack.info.demo.listener.email,
            &stack.info.demo.listener.password,
        )
        .await;
    let track = stack.info.demo_catalogue[0].id.clone();
    let (status, play) = api
        .post(
            "/api/v1/play",
            &listener,
            json!({"track_id": track, "format": "hls", "protocol": "h1"}),
        )
        .await;
    assert_eq!(status, 201, "{play}");
    let primary = play["nodes"][0]["node"].as_str().unwrap().to_owned();
    let master = play["manifest_url"].as_str().unwrap().to_owned();
    let fallback = play["fallbacks"][0].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();

    // The player reads the playlists and the first segment from the primary…
    let (rendition, media_url, media) = first_media_playlist(&http, &master).await;
    let segments: Vec<String> = media
        .lines()
        .filter(|line| line.ends_with(".m4s"))
        .map(|line| resolve(&media_url, line))
        .collect();
    assert!(segments.len() >= 4, "{media}");
    let first = http.get(&segments[0]).send().await.unwrap();
    assert_eq!(first.status(), 200);

    // …then the primary edge goes away.
    assert!(stack.stop_edge(&primary));
    let mut refused = false;
    for _ in 0..100 {
        if http.get(&segments[1]).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the stopped edge still answers");

    // The fallback URL serves the rest, byte for byte what the origin has.
    let fallback_master = http.get(&fallback).send().await.unwrap();
    assert_eq!(fallback_master.status(), 200);
    let fallback_media_url = resolve(&fallback, &rendition);
    let fallback_media = get_text(&http, &fallback_media_url).await;
    let rest: Vec<String> = fallback_media
        .lines()
        .filter(|line| line.ends_with(".m4s"))
        .map(|line| resolve(&fallback_media_url, line))
        .collect();
    assert_eq!(rest.len(), segments.len());
    let fill_key = std::fs::read_to_string(dir.path().join("fill-key")).unwrap();
    for url in &rest[1..] {
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let body = response.bytes().await.unwrap();
        let origin = http
            .get(format!("{}{}", stack.info.origin.url, media_path(url)))
            .bearer_auth(fill_key.trim())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body, origin, "{url}");
    }

    // The locator soon stops offering the dead edge.
    let mut gone = false;
    for _ in 0..300 {
        let (status, next) = api
            .post(
                "/api/v1/play",
                &listener,
                json!({"track_id": track, "format": "hls", "protocol": "h1"}),
            )
            .await;
        assert_eq!(status, 201, "{next}");
        if next["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|node| node["node"] != primary.as_str())
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the locator still offers the stopped edge");

    shutdown.trigger();
    stack.wait().await.unwrap();
}
