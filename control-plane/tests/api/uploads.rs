//! Track uploads: tus 1.0 (creation, offsets, checksums, interruption and resumption,
//! termination), the one-request upload, limits, and what lands in the object store and the
//! Inventory DB.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use serde_json::json;
use sha1::Digest as _;
use sqlx::Row;

use control_plane::store::TextColumn as _;

use crate::on_both_backends;
use crate::support::{Reply, TestApp, assert_error, error_code};
use crate::wav::pcm_wav;

on_both_backends!(
    a_tus_upload_becomes_a_track,
    an_interrupted_upload_resumes,
    bad_chunks_are_refused_and_change_nothing,
    uploads_are_for_their_artist_and_within_limits,
    termination_removes_the_upload,
    one_request_upload,
    uploads_are_processed_into_ready_tracks,
    unusable_uploads_are_rejected_without_leftovers,
    copies_and_duplicates_are_refused,
    tags_are_read_and_explicit_language_is_flagged,
    cover_art_becomes_thumbnails_and_top_tags_are_stored,
    progress_is_streamed_as_server_sent_events,
);

/// A 16-bit stereo WAV of a melody: a note of `notes` every quarter second, with a harmonic.
fn melody_wav(notes: &[f64], seconds: f64, rate: u32, gain: f64) -> Vec<u8> {
    pcm_wav(seconds, rate, None, |t| {
        let f = notes[(t * 4.0) as usize % notes.len()];
        let value = gain
            * (0.5 * (2.0 * std::f64::consts::PI * f * t).sin()
                + 0.2 * (4.0 * std::f64::consts::PI * f * t).sin());
        (value, value)
    })
}

/// A 16-bit stereo 44.1 kHz WAV of a 440 Hz tone at −12 dBFS.
pub(crate) fn tone_wav(seconds: f64) -> Vec<u8> {
    pcm_wav(seconds, 44_100, None, |t| {
        let value = 0.25 * (2.0 * std::f64::consts::PI * 440.0 * t).sin();
        (value, value)
    })
}

fn audio(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn sha1_header(bytes: &[u8]) -> String {
    format!(
        "sha1 {}",
        base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(bytes))
    )
}

impl TestApp {
    pub(crate) async fn artist(&self, email: &str) -> String {
        let mut body = crate::support::sign_up_body(email);
        body["role"] = json!("artist");
        let reply = self.post("/api/v1/users", None, body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.raw);
        self.log_in(email, crate::support::PASSWORD).await
    }

    pub(crate) async fn tus(
        &self,
        method: Method,
        path: &str,
        token: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        self.send("127.0.0.1:1".parse().unwrap(), request.body(body).unwrap())
            .await
    }

    async fn create(&self, token: &str, length: usize) -> Reply {
        let metadata = format!(
            "title {},singer {},filename {}",
            b64("Blue in Green"),
            b64("Zoë"),
            b64("take1.flac")
        );
        self.tus(
            Method::POST,
            "/api/v1/uploads",
            token,
            &[
                ("tus-resumable", "1.0.0".into()),
                ("upload-length", length.to_string()),
                ("upload-metadata", metadata),
            ],
            Body::empty(),
        )
        .await
    }

    async fn tus_patch(
        &self,
        token: &str,
        location: &str,
        offset: usize,
        bytes: &[u8],
        checksum: Option<String>,
    ) -> Reply {
        let mut headers = vec![
            ("tus-resumable", "1.0.0".to_owned()),
            ("content-type", "application/offset+octet-stream".to_owned()),
            ("upload-offset", offset.to_string()),
        ];
        if let Some(checksum) = checksum {
            headers.push(("upload-checksum", checksum));
        }
        self.tus(
            Method::PATCH,
            location,
            token,
            &headers,
            Body::from(bytes.to_vec()),
        )
        .await
    }

    async fn offset_of(&self, token: &str, location: &str) -> Reply {
        self.tus(
            Method::HEAD,
            location,
            token,
            &[("tus-resumable", "1.0.0".into())],
            Body::empty(),
        )
        .await
    }

    async fn raw_keys(&self) -> (Vec<String>, Vec<String>) {
        let mut listed = self.app.objects.list("raw").await.unwrap();
        listed.sort();
        let mut recorded: Vec<String> =
            sqlx::query("SELECT raw_key FROM tracks WHERE raw_key IS NOT NULL")
                .fetch_all(self.app.inventory.database().pool())
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>("raw_key"))
                .collect();
        recorded.sort();
        (listed, recorded)
    }
}

async fn a_tus_upload_becomes_a_track(t: &TestApp) {
    let token = t.artist("artist@example.com").await;
    let options = t
        .tus(
            Method::OPTIONS,
            "/api/v1/uploads",
            &token,
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(options.status, StatusCode::NO_CONTENT);
    assert_eq!(options.headers["tus-version"], "1.0.0");
    assert!(
        options.headers["tus-extension"]
            .to_str()
            .unwrap()
            .contains("checksum")
    );

    let bytes = audio(300_000);
    let created = t.create(&token, bytes.len()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    assert_eq!(created.headers["tus-resumable"], "1.0.0");
    let location = created.headers["location"].to_str().unwrap().to_owned();
    assert_eq!(
        t.offset_of(&token, &location).await.headers["upload-offset"],
        "0"
    );

    let first = t
        .tus_patch(
            &token,
            &location,
            0,
            &bytes[..100_000],
            Some(sha1_header(&bytes[..100_000])),
        )
        .await;
    assert_eq!(first.status, StatusCode::NO_CONTENT, "{}", first.raw);
    assert_eq!(first.headers["upload-offset"], "100000");
    let status = t.get(&location, Some(&token)).await;
    assert_eq!(
        (
            status.body["offset"].as_i64(),
            status.body["status"].as_str()
        ),
        (Some(100_000), Some("open"))
    );
    assert_eq!(status.body["track_id"], serde_json::Value::Null);

    let last = t
        .tus_patch(&token, &location, 100_000, &bytes[100_000..], None)
        .await;
    assert_eq!(last.status, StatusCode::NO_CONTENT, "{}", last.raw);
    let done = t.get(&location, Some(&token)).await;
    assert_eq!(done.body["status"], "complete");
    let track_id = done.body["track_id"].as_str().unwrap().to_owned();

    // The track row, its event and its object, with exactly the uploaded bytes.
    let track = t.app.inventory.track(&track_id).await.unwrap().unwrap();
    assert_eq!(
        (
            track.status.as_str(),
            track.name.as_str(),
            track.singer.as_str()
        ),
        ("uploaded", "Blue in Green", "Zoë")
    );
    assert_eq!(
        t.app
            .objects
            .get(&format!("raw/{track_id}"))
            .await
            .unwrap()
            .to_vec(),
        bytes
    );
    let events: Vec<String> = sqlx::query("SELECT event_key FROM outbox WHERE topic = 'tracks'")
        .fetch_all(t.app.inventory.database().pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("event_key"))
        .collect();
    assert_eq!(events, std::slice::from_ref(&track_id));
    let (listed, recorded) = t.raw_keys().await;
    assert_eq!(listed, recorded, "the object store matches the database");
    // Nothing is left in staging.
    assert!(
        std::fs::read_dir(t.app.config.data_dir.join("uploads"))
            .unwrap()
            .next()
            .is_none()
    );
    // A complete upload takes no more bytes.
    assert_eq!(
        t.tus_patch(&token, &location, 300_000, b"x", None)
            .await
            .status,
        StatusCode::CONFLICT
    );
}

async fn an_interrupted_upload_resumes(t: &TestApp) {
    let token = t.artist("resume@example.com").await;
    let bytes = audio(200_000);
    let location = t.create(&token, bytes.len()).await.headers["location"]
        .to_str()
        .unwrap()
        .to_owned();
    // The connection drops after 70 000 bytes of a chunk.
    let head = bytes[..70_000].to_vec();
    let stream = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(head),
        Err(std::io::Error::other("connection reset")),
    ]);
    let broken = t
        .tus(
            Method::PATCH,
            &location,
            &token,
            &[
                ("tus-resumable", "1.0.0".into()),
                ("content-type", "application/offset+octet-stream".into()),
                ("upload-offset", "0".into()),
            ],
            Body::from_stream(stream),
        )
        .await;
    assert_eq!(
        broken.status,
        StatusCode::NO_CONTENT,
        "what arrived is kept: {}",
        broken.raw
    );
    let offset: usize = t.offset_of(&token, &location).await.headers["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(offset, 70_000);
    let rest = t
        .tus_patch(
            &token,
            &location,
            offset,
            &bytes[offset..],
            Some(sha1_header(&bytes[offset..])),
        )
        .await;
    assert_eq!(rest.status, StatusCode::NO_CONTENT, "{}", rest.raw);
    let track_id = t.get(&location, Some(&token)).await.body["track_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        t.app
            .objects
            .get(&format!("raw/{track_id}"))
            .await
            .unwrap()
            .to_vec(),
        bytes
    );
}

async fn bad_chunks_are_refused_and_change_nothing(t: &TestApp) {
    let token = t.artist("careful@example.com").await;
    let bytes = audio(50_000);
    let location = t.create(&token, bytes.len()).await.headers["location"]
        .to_str()
        .unwrap()
        .to_owned();

    let wrong = t
        .tus_patch(
            &token,
            &location,
            0,
            &bytes[..20_000],
            Some(sha1_header(b"something else")),
        )
        .await;
    assert_eq!(wrong.status.as_u16(), 460);
    assert_eq!(error_code(&wrong), "checksum_mismatch");
    assert_eq!(
        t.offset_of(&token, &location).await.headers["upload-offset"],
        "0",
        "the chunk was dropped"
    );

    let offset = t.tus_patch(&token, &location, 5, &bytes[..10], None).await;
    assert_eq!(
        (offset.status, error_code(&offset).as_str()),
        (StatusCode::CONFLICT, "offset_mismatch")
    );
    let too_much = t
        .tus_patch(&token, &location, 0, &audio(60_000), None)
        .await;
    assert_eq!(too_much.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        t.offset_of(&token, &location).await.headers["upload-offset"],
        "0"
    );
    let plain = t
        .tus(
            Method::PATCH,
            &location,
            &token,
            &[
                ("tus-resumable", "1.0.0".into()),
                ("upload-offset", "0".into()),
            ],
            Body::from(bytes.clone()),
        )
        .await;
    assert_eq!(plain.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let unknown_algorithm = t
        .tus_patch(&token, &location, 0, &bytes, Some("md5 AAAA".into()))
        .await;
    assert_eq!(unknown_algorithm.status, StatusCode::BAD_REQUEST);
    let no_version = t
        .tus(
            Method::POST,
            "/api/v1/uploads",
            &token,
            &[("upload-length", "10".into())],
            Body::empty(),
        )
        .await;
    assert_eq!(no_version.status, StatusCode::PRECONDITION_FAILED);

    // After all that, the right chunk still completes the upload.
    let good = t
        .tus_patch(&token, &location, 0, &bytes, Some(sha1_header(&bytes)))
        .await;
    assert_eq!(good.status, StatusCode::NO_CONTENT, "{}", good.raw);
    let (listed, recorded) = t.raw_keys().await;
    assert_eq!((listed.len(), listed), (1, recorded));
}

async fn uploads_are_for_their_artist_and_within_limits(t: &TestApp) {
    let listener = t.user("listener@example.com").await;
    let refused = t.create(&listener, 100).await;
    assert_eq!(
        (refused.status, error_code(&refused).as_str()),
        (StatusCode::FORBIDDEN, "artist_required")
    );

    let token = t.artist("limits@example.com").await;
    let other = t.artist("other-artist@example.com").await;
    let location = t.create(&token, 1000).await.headers["location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        t.offset_of(&other, &location).await.status,
        StatusCode::NOT_FOUND,
        "someone else's upload"
    );
    assert_eq!(
        t.tus_patch(&other, &location, 0, &audio(10), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let huge = t.create(&token, 600 * 1024 * 1024).await;
    assert_eq!(
        huge.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "over the 500 MB maximum"
    );
    let empty = t.create(&token, 0).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    let untitled = t
        .tus(
            Method::POST,
            "/api/v1/uploads",
            &token,
            &[
                ("tus-resumable", "1.0.0".into()),
                ("upload-length", "10".into()),
                ("upload-metadata", format!("singer {}", b64("x"))),
            ],
            Body::empty(),
        )
        .await;
    assert_eq!(untitled.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        untitled.body["error"]["fields"][0]["field"],
        "metadata.title"
    );
    let garbled = t
        .tus(
            Method::POST,
            "/api/v1/uploads",
            &token,
            &[
                ("tus-resumable", "1.0.0".into()),
                ("upload-length", "10".into()),
                ("upload-metadata", "title !!notbase64!!".into()),
            ],
            Body::empty(),
        )
        .await;
    assert_eq!(garbled.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Quota: open uploads count. With the first 1 000 bytes, ten 499 MiB uploads fit in
    // 5 GiB (4 990 MiB); the eleventh does not.
    for _ in 0..10 {
        assert_eq!(
            t.create(&token, 499 * 1024 * 1024).await.status,
            StatusCode::CREATED
        );
    }
    let over = t.create(&token, 499 * 1024 * 1024).await;
    assert_eq!(
        (over.status, error_code(&over).as_str()),
        (StatusCode::CONFLICT, "quota_exceeded")
    );
}

async fn termination_removes_the_upload(t: &TestApp) {
    let token = t.artist("quitter@example.com").await;
    let created = t.create(&token, 10_000).await;
    let location = created.headers["location"].to_str().unwrap().to_owned();
    t.tus_patch(&token, &location, 0, &audio(4_000), None).await;
    let id = location.rsplit('/').next().unwrap();
    assert!(
        t.app
            .config
            .data_dir
            .join("uploads")
            .join(format!("{id}.part"))
            .exists()
    );
    let deleted = t
        .tus(
            Method::DELETE,
            &location,
            &token,
            &[("tus-resumable", "1.0.0".into())],
            Body::empty(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        t.offset_of(&token, &location).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(
        !t.app
            .config
            .data_dir
            .join("uploads")
            .join(format!("{id}.part"))
            .exists()
    );
    assert_eq!(
        t.raw_keys().await.0.len(),
        0,
        "nothing reached the object store"
    );
}

async fn one_request_upload(t: &TestApp) {
    let token = t.artist("quick@example.com").await;
    let bytes = audio(123_456);
    let reply = t
        .tus(
            Method::POST,
            "/api/v1/tracks?title=Quick%20One&singer=Solo&album=Demos",
            &token,
            &[("content-length", bytes.len().to_string())],
            Body::from(bytes.clone()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.raw);
    assert_eq!(reply.body["status"], "complete");
    let track_id = reply.body["track_id"].as_str().unwrap();
    let track = t.app.inventory.track(track_id).await.unwrap().unwrap();
    assert_eq!(
        (track.name.as_str(), track.album.as_deref()),
        ("Quick One", Some("Demos"))
    );
    assert_eq!(
        t.app
            .objects
            .get(&format!("raw/{track_id}"))
            .await
            .unwrap()
            .to_vec(),
        bytes
    );
    let missing = t
        .tus(
            Method::POST,
            "/api/v1/tracks?singer=Solo",
            &token,
            &[("content-length", "3".into())],
            Body::from("abc"),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
}

pub(crate) async fn upload_bytes(
    t: &TestApp,
    token: &str,
    bytes: Vec<u8>,
    filename: &str,
) -> String {
    let reply = t
        .tus(
            Method::POST,
            &format!("/api/v1/tracks?title=Take&singer=Me&filename={filename}"),
            token,
            &[("content-length", bytes.len().to_string())],
            Body::from(bytes),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.raw);
    reply.body["track_id"].as_str().unwrap().to_owned()
}

pub(crate) async fn process(t: &TestApp) -> usize {
    t.app
        .bus
        .poll(
            control_plane::processing::PROCESSING,
            events::tracks::TOPIC,
            &control_plane::processing::processing_handler(t.app.clone()),
        )
        .await
        .unwrap()
}

async fn uploads_are_processed_into_ready_tracks(t: &TestApp) {
    let token = t.artist("producer@example.com").await;
    let track_id = upload_bytes(t, &token, tone_wav(8.0), "take.wav").await;
    let before = t
        .get(&format!("/api/v1/tracks/{track_id}"), Some(&token))
        .await;
    assert_eq!(before.body["status"], "uploaded");
    assert_eq!(
        t.get(&format!("/api/v1/tracks/{track_id}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND,
        "not public before it is ready"
    );

    assert!(process(t).await >= 1);
    let track = t.get(&format!("/api/v1/tracks/{track_id}"), None).await;
    assert_eq!(track.status, StatusCode::OK, "{}", track.raw);
    assert_eq!(track.body["status"], "ready");
    assert_eq!(track.body["duration_ms"], 8000);
    let loudness = track.body["loudness_lufs"].as_f64().unwrap();
    // A stereo sine at −12 dBFS reads −12 LUFS at 1 kHz (EBU Tech 3341); K-weighting takes
    // about 0.7 dB off at 440 Hz.
    assert!((loudness + 12.7).abs() < 0.3, "{loudness}");
    assert!((track.body["gain_db"].as_f64().unwrap() - (-14.0 - loudness)).abs() < 1e-9);
    let hls = track.body["hls"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    let prefix = hls.trim_end_matches("master.m3u8").to_owned();
    let master = String::from_utf8(t.app.objects.get(&hls).await.unwrap().to_vec()).unwrap();
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 3, "{master}");
    let mut published = t
        .app
        .objects
        .list(prefix.trim_end_matches('/'))
        .await
        .unwrap();
    published.sort();
    for rung in ["64k", "128k", "256k"] {
        for file in ["init.mp4", "index.m3u8", "seg-00001.m4s", "seg-00002.m4s"] {
            assert!(
                published.contains(&format!("{prefix}{rung}/{file}")),
                "{rung}/{file} missing from {published:?}"
            );
        }
    }
    assert!(published.contains(&format!("{prefix}manifest.mpd")));
    // A redelivered event changes nothing.
    let events: Vec<String> =
        sqlx::query("SELECT envelope FROM outbox WHERE topic = 'tracks' ORDER BY seq")
            .fetch_all(t.app.inventory.database().pool())
            .await
            .unwrap()
            .iter()
            .map(|row| control_plane::store::long_text(row, "envelope").unwrap())
            .collect();
    let uploaded = events
        .iter()
        .find(|e| e.contains("track.uploaded"))
        .unwrap();
    t.app
        .process_upload(events::Envelope::from_json(uploaded.as_bytes()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        t.get(&format!("/api/v1/tracks/{track_id}"), None)
            .await
            .body["status"],
        "ready"
    );
    assert!(events.iter().any(|e| e.contains("track.published")));
    assert!(
        events
            .iter()
            .any(|e| e.contains("track.processing.started"))
    );
}

async fn unusable_uploads_are_rejected_without_leftovers(t: &TestApp) {
    let token = t.artist("prankster@example.com").await;
    let png = [b"\x89PNG\r\n\x1a\n".as_slice(), &[7u8; 4000]].concat();
    let track_id = upload_bytes(t, &token, png, "cover.flac").await;
    let mut short = tone_wav(0.3);
    let short_id = upload_bytes(t, &token, std::mem::take(&mut short), "short.wav").await;
    process(t).await;
    let png_track = t
        .get(&format!("/api/v1/tracks/{track_id}"), Some(&token))
        .await;
    assert_eq!(png_track.body["status"], "rejected");
    assert!(
        png_track.body["reason"]
            .as_str()
            .unwrap()
            .starts_with("not audio"),
        "{}",
        png_track.raw
    );
    let short_track = t
        .get(&format!("/api/v1/tracks/{short_id}"), Some(&token))
        .await;
    assert_eq!(short_track.body["status"], "rejected");
    assert!(
        short_track.body["reason"]
            .as_str()
            .unwrap()
            .starts_with("too short"),
        "{}",
        short_track.raw
    );
    // Nothing is left behind: no raw object, no media.
    assert!(t.app.objects.list("raw").await.unwrap().is_empty());
    assert!(t.app.objects.list("media").await.unwrap().is_empty());
}

async fn copies_and_duplicates_are_refused(t: &TestApp) {
    let tune = [261.6, 329.6, 392.0, 523.3, 392.0, 329.6, 293.7, 349.2];
    let other = [
        220.0, 246.9, 277.2, 293.7, 329.6, 370.0, 415.3, 440.0, 196.0,
    ];
    let alice = t.artist("alice@example.com").await;
    let bob = t.artist("bob@example.com").await;
    let original = upload_bytes(t, &alice, melody_wav(&tune, 20.0, 44_100, 0.8), "tune.wav").await;
    process(t).await;
    assert_eq!(
        t.get(&format!("/api/v1/tracks/{original}"), None)
            .await
            .body["status"],
        "ready"
    );

    // Another artist's re-encoding of it (another sample rate and level) is a suspected copy.
    let copy = upload_bytes(t, &bob, melody_wav(&tune, 20.0, 48_000, 0.5), "mine.wav").await;
    // The same artist's second upload is a duplicate.
    let again = upload_bytes(
        t,
        &alice,
        melody_wav(&tune, 20.0, 44_100, 0.6),
        "tune-again.wav",
    )
    .await;
    // A different recording passes.
    let fresh = upload_bytes(t, &bob, melody_wav(&other, 20.0, 44_100, 0.8), "fresh.wav").await;
    process(t).await;
    let copy = t.get(&format!("/api/v1/tracks/{copy}"), Some(&bob)).await;
    assert_eq!(copy.body["status"], "rejected", "{}", copy.raw);
    assert_eq!(
        copy.body["reason"],
        format!("suspected copy of track {original}, uploaded by another artist")
    );
    let again = t
        .get(&format!("/api/v1/tracks/{again}"), Some(&alice))
        .await;
    assert_eq!(again.body["status"], "rejected", "{}", again.raw);
    assert_eq!(
        again.body["reason"],
        format!("duplicate of your track {original}")
    );
    assert_eq!(
        t.get(&format!("/api/v1/tracks/{fresh}"), None).await.body["status"],
        "ready"
    );
    // The rejected ones left no objects: two raw uploads remain, for the two ready tracks.
    assert_eq!(t.app.objects.list("raw").await.unwrap().len(), 2);
}

/// `wav` with an ID3v2 tag written by lofty.
fn tagged(
    wav: Vec<u8>,
    title: &str,
    artist: &str,
    genre: &str,
    year: u32,
    lyrics: &str,
) -> Vec<u8> {
    use lofty::config::WriteOptions;
    use lofty::tag::{Accessor as _, ItemKey, Tag, TagExt as _, TagType};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tagged.wav");
    std::fs::write(&path, wav).unwrap();
    let mut tag = Tag::new(TagType::Id3v2);
    tag.set_title(title.to_owned());
    tag.set_artist(artist.to_owned());
    tag.set_genre(genre.to_owned());
    tag.set_year(year);
    tag.insert_text(ItemKey::Lyrics, lyrics.to_owned());
    tag.save_to_path(&path, WriteOptions::default()).unwrap();
    std::fs::read(&path).unwrap()
}

async fn tags_are_read_and_explicit_language_is_flagged(t: &TestApp) {
    let token = t.artist("tagger@example.com").await;
    let rough = tagged(
        melody_wav(&[196.0, 233.1, 261.6, 311.1, 349.2], 6.0, 44_100, 0.7),
        "Blue Monday",
        "Zoë & The Band",
        "Jazz",
        1959,
        "oh this shit is cold tonight",
    );
    let clean = tagged(
        melody_wav(&[440.0, 493.9, 554.4, 587.3], 6.0, 44_100, 0.7),
        "Sunny",
        "Zoë",
        "Pop",
        2001,
        "la la la",
    );
    let rough = upload_bytes(t, &token, rough, "rough.wav").await;
    let clean = upload_bytes(t, &token, clean, "clean.wav").await;
    process(t).await;
    let rough = t.get(&format!("/api/v1/tracks/{rough}"), None).await;
    assert_eq!(rough.body["status"], "ready", "{}", rough.raw);
    assert_eq!(
        (
            rough.body["explicit"].as_bool(),
            rough.body["genre"].as_str(),
            rough.body["year"].as_i64()
        ),
        (Some(true), Some("Jazz"), Some(1959))
    );
    let clean = t.get(&format!("/api/v1/tracks/{clean}"), None).await;
    assert_eq!(
        (
            clean.body["explicit"].as_bool(),
            clean.body["genre"].as_str()
        ),
        (Some(false), Some("Pop"))
    );
    let tagged_events: Vec<String> =
        sqlx::query("SELECT envelope FROM outbox WHERE topic = 'tracks' ORDER BY seq")
            .fetch_all(t.app.inventory.database().pool())
            .await
            .unwrap()
            .iter()
            .map(|row| control_plane::store::long_text(row, "envelope").unwrap())
            .filter(|envelope| envelope.contains("track.tagged"))
            .collect();
    assert_eq!(tagged_events.len(), 2);
    assert!(
        tagged_events.iter().any(|e| e.contains("Zoë & The Band")),
        "{tagged_events:?}"
    );
}

/// `wav` with an ID3v2 tag holding a genre, a year and `cover` as the front cover.
fn with_cover(wav: Vec<u8>, genre: &str, year: u32, cover: Vec<u8>) -> Vec<u8> {
    use lofty::config::WriteOptions;
    use lofty::picture::{MimeType, Picture, PictureType};
    use lofty::tag::{Accessor as _, Tag, TagExt as _, TagType};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cover.wav");
    std::fs::write(&path, wav).unwrap();
    let mut tag = Tag::new(TagType::Id3v2);
    tag.set_genre(genre.to_owned());
    tag.set_year(year);
    tag.push_picture(Picture::new_unchecked(
        PictureType::CoverFront,
        Some(MimeType::Png),
        None,
        cover,
    ));
    tag.save_to_path(&path, WriteOptions::default()).unwrap();
    std::fs::read(&path).unwrap()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG of `width` × `height` pixels; `claimed` makes its header declare another size (with a
/// valid checksum, so only the size limits stop it).
fn png(width: u32, height: u32, claimed: Option<(u32, u32)>) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 3 % 256) as u8, (y * 5 % 256) as u8, 90])
    });
    let mut bytes = Vec::new();
    picture
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    if let Some((w, h)) = claimed {
        bytes[16..20].copy_from_slice(&w.to_be_bytes());
        bytes[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    }
    bytes
}

async fn cover_art_becomes_thumbnails_and_top_tags_are_stored(t: &TestApp) {
    let token = t.artist("painter@example.com").await;
    let covered = with_cover(
        melody_wav(&[261.6, 329.6, 392.0, 523.3], 6.0, 44_100, 0.7),
        "Jazz",
        1959,
        png(800, 600, None),
    );
    let huge = with_cover(
        melody_wav(&[220.0, 277.2, 329.6], 6.0, 44_100, 0.7),
        "Rock",
        2003,
        png(8, 8, Some((100_000, 100_000))),
    );
    // A cover over the 16 MiB limit: a PNG's first bytes, then padding.
    let mut heavy_cover = png(8, 8, None);
    heavy_cover.resize(media::tags::MAX_COVER_BYTES + 1024, 0);
    let heavy = with_cover(
        melody_wav(&[196.0, 246.9, 293.7], 6.0, 44_100, 0.7),
        "Folk",
        1971,
        heavy_cover,
    );
    let covered = upload_bytes(t, &token, covered, "covered.wav").await;
    let huge = upload_bytes(t, &token, huge, "huge.wav").await;
    let heavy = upload_bytes(t, &token, heavy, "heavy.wav").await;
    process(t).await;

    let track = t.get(&format!("/api/v1/tracks/{covered}"), None).await;
    assert_eq!(track.body["status"], "ready", "{}", track.raw);
    assert_eq!(track.body["stage"], "done");
    assert_eq!(track.body["progress"], 1.0);
    let tags: Vec<&str> = track.body["top_tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tag| tag.as_str().unwrap())
        .collect();
    assert_eq!(&tags[..2], ["genre:jazz", "decade:1950s"], "{tags:?}");
    assert!(
        tags[2].starts_with("energy:") && tags[3].starts_with("mood:"),
        "{tags:?}"
    );
    let artwork = track.body["artwork"].as_object().unwrap();
    assert_eq!(artwork.len(), 3, "{artwork:?}");
    for size in [96u32, 300, 640] {
        let path = artwork[&size.to_string()].as_str().unwrap();
        assert!(
            path.starts_with(&format!("/public/art/{covered}/")),
            "{path}"
        );
        let jpeg = t.app.objects.get(&path[1..]).await.unwrap();
        let decoded = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (size, size));
    }

    // A picture declaring 100 000 × 100 000 pixels is skipped; the track is fine.
    let track = t.get(&format!("/api/v1/tracks/{huge}"), None).await;
    assert_eq!(track.body["status"], "ready", "{}", track.raw);
    assert_eq!(track.body["artwork"], json!({}));
    assert_eq!(
        track.body["notes"][0]["code"], "cover_art_unusable",
        "{}",
        track.raw
    );
    assert!(
        t.app
            .objects
            .list(&format!("public/art/{huge}"))
            .await
            .unwrap()
            .is_empty()
    );

    // A cover over the size limit is not read; the track is published with a note saying so.
    let track = t.get(&format!("/api/v1/tracks/{heavy}"), None).await;
    assert_eq!(track.body["status"], "ready", "{}", track.raw);
    assert_eq!(track.body["artwork"], json!({}));
    assert_eq!(
        track.body["notes"],
        json!([{"code": "cover_art_too_large",
                "message": "The cover art (16.0 MiB) is over the 16 MiB limit and was not used."}])
    );
    // The rest of its tag was read.
    assert_eq!(track.body["top_tags"][0], "genre:folk", "{}", track.raw);
    let track = t.get(&format!("/api/v1/tracks/{covered}"), None).await;
    assert_eq!(track.body["notes"], json!([]));

    // Each stage announced itself on the bus.
    let types: Vec<String> =
        sqlx::query("SELECT envelope FROM outbox WHERE topic = 'tracks' ORDER BY seq")
            .fetch_all(t.app.inventory.database().pool())
            .await
            .unwrap()
            .iter()
            .map(|row| control_plane::store::long_text(row, "envelope").unwrap())
            .filter(|envelope| envelope.contains(&covered))
            .map(|envelope| {
                let value: serde_json::Value = serde_json::from_str(&envelope).unwrap();
                value["type"].as_str().unwrap().to_owned()
            })
            .collect();
    assert_eq!(
        types,
        [
            "track.uploaded",
            "track.processing.started",
            "track.transcoded",
            "track.tagged",
            "track.published"
        ]
    );

    // The catalog consumer persists the media facts and the timeline, idempotently.
    let handler = control_plane::catalog::catalog_handler(t.app.clone());
    let catalog = || {
        t.app.bus.poll(
            control_plane::catalog::CATALOG,
            events::tracks::TOPIC,
            &handler,
        )
    };
    assert!(catalog().await.unwrap() >= 5);
    let entry = t
        .get(&format!("/api/v1/tracks/{covered}/catalog"), None)
        .await;
    assert_eq!(entry.status, StatusCode::OK, "{}", entry.raw);
    let media = &entry.body["media"];
    assert_eq!(media["genre"], "Jazz");
    assert_eq!(media["top_tags"][0], "genre:jazz");
    assert_eq!(media["artwork"].as_object().unwrap().len(), 3);
    let renditions = media["renditions"].as_array().unwrap();
    assert_eq!(renditions.len(), 3);
    let segments = renditions[1]["segments"].as_array().unwrap();
    let total_ms: u64 = segments
        .iter()
        .map(|s| s["duration_ms"].as_u64().unwrap())
        .sum();
    assert!(
        (total_ms as i64 - 6_000).abs() <= 50,
        "{total_ms} ms of segments"
    );
    assert!(media["loudness_lufs"].as_f64().unwrap() < 0.0);
    assert!(
        media["prefix"]
            .as_str()
            .unwrap()
            .starts_with(&format!("media/{covered}/"))
    );
    let kinds: Vec<&str> = entry.body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "track.uploaded",
            "track.processing.started",
            "track.transcoded",
            "track.tagged",
            "track.published"
        ]
    );
    // Replayed events change nothing.
    let rewound = sqlx::query("DELETE FROM bus_offsets WHERE consumer_group LIKE '%catalog'")
        .execute(t.app.inventory.database().pool())
        .await
        .unwrap();
    assert_eq!(rewound.rows_affected(), 1);
    assert!(
        catalog().await.unwrap() >= 5,
        "the events were delivered again"
    );
    let again = t
        .get(&format!("/api/v1/tracks/{covered}/catalog"), None)
        .await;
    assert_eq!(again.body, entry.body);
}

/// The `track` events of a server-sent event stream, in order.
fn sse_tracks(raw: &str) -> Vec<serde_json::Value> {
    raw.split("\n\n")
        .filter(|block| block.lines().any(|line| line == "event: track"))
        .map(|block| {
            let data: String = block
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .collect();
            serde_json::from_str(&data).unwrap()
        })
        .collect()
}

async fn progress_is_streamed_as_server_sent_events(t: &TestApp) {
    let token = t.artist("streamer@example.com").await;
    let track_id = upload_bytes(t, &token, tone_wav(4.0), "take.wav").await;
    let path = format!("/api/v1/tracks/{track_id}/events");
    // Not the uploader's: the stream does not open, and says why like every other endpoint.
    let stranger = t.get(&path, None).await;
    assert_error(&stranger, StatusCode::NOT_FOUND, "track_not_found");
    let missing = t.get("/api/v1/tracks/nope/events", Some(&token)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // The uploader watches while the track is processed; the stream ends once it is ready.
    let (stream, processed) = tokio::join!(t.get(&path, Some(&token)), async {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        process(t).await
    });
    assert!(processed >= 1);
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(
        stream.headers["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let tracks = sse_tracks(&stream.raw);
    assert!(tracks.len() >= 2, "{}", stream.raw);
    assert_eq!(tracks[0]["status"], "uploaded");
    assert_eq!(tracks[0]["id"], track_id.as_str());
    let last = tracks.last().unwrap();
    assert_eq!(last["status"], "ready", "{}", stream.raw);
    assert_eq!(last["duration_ms"], 4000);
    assert!(last["hls"].as_str().unwrap().ends_with("master.m3u8"));
    // Each event is a change: no two in a row are the same.
    assert!(tracks.windows(2).all(|pair| pair[0] != pair[1]));

    // A settled track: one event, and the stream ends; now anyone may watch it.
    let settled = t.get(&path, None).await;
    assert_eq!(settled.status, StatusCode::OK);
    let tracks = sse_tracks(&settled.raw);
    assert_eq!(tracks.len(), 1, "{}", settled.raw);
    assert_eq!(tracks[0]["status"], "ready");
}
