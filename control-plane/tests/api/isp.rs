//! ISP boxes' fill manifests: only a configured box's token gets one; its region's most played
//! tracks come first, then every region's, then unplayed new releases; every object of a
//! track is listed with its size; the budget is kept.

use axum::http::StatusCode;
use events::Envelope;
use events::plays::{PlayFacts, PlayStarted};
use events::tracks::{RenditionDetail, SegmentDetail};
use serde_json::Value;
use telemetry::Secret;

use crate::search::ready;
use crate::support::{Backend, TestApp, error_code};

const BOX_TOKEN: &str = "box-token-for-manifest-tests-32-chars-long";

async fn start(backend: Backend) -> Option<TestApp> {
    TestApp::start_with(backend, |config| {
        config.isp_boxes = vec![control_plane::config::IspBoxAccess {
            id: "box-1".into(),
            token: Secret::new(BOX_TOKEN),
            region: "isp-x".into(),
        }];
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_manifest() {
    let app = start(Backend::Embedded).await.unwrap();
    a_box_gets_its_regions_tracks_within_its_budget(&app).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_manifest() {
    let Some(app) = start(Backend::Servers).await else {
        return;
    };
    a_box_gets_its_regions_tracks_within_its_budget(&app).await;
    app.finish().await;
}

/// A published track: one rendition, an init of 100 bytes and two segments of 1 000.
async fn published(t: &TestApp, title: &str) -> String {
    let id = ready(t, title, "Artist", None, None, Some(2024)).await;
    let media = control_plane::catalog::store::TrackMedia {
        track_id: id.clone(),
        prefix: Some(format!("media/{id}/v1/")),
        duration_ms: Some(12_000),
        renditions: vec![RenditionDetail {
            id: "128k".into(),
            average_bps: 128_000,
            peak_bps: 130_000,
            init_bytes: 100,
            segments: vec![
                SegmentDetail {
                    duration_ms: 6_000,
                    bytes: 1_000,
                };
                2
            ],
        }],
        ..Default::default()
    };
    t.app
        .catalog
        .put_media(&media, t.clock.now_ms())
        .await
        .unwrap();
    id
}

async fn manifest(t: &TestApp, token: Option<&str>, bytes: u64) -> (StatusCode, Value) {
    let reply = t
        .get(&format!("/api/v1/isp/manifest?bytes={bytes}"), token)
        .await;
    (reply.status, reply.body)
}

fn track_ids(manifest: &Value) -> Vec<String> {
    manifest["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|track| track["track_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_box_gets_its_regions_tracks_within_its_budget(t: &TestApp) {
    let regional = published(t, "Regional").await;
    let elsewhere = published(t, "Elsewhere").await;
    let unplayed = published(t, "Unplayed").await;
    // Three plays in the box's region, five elsewhere.
    let analytics = control_plane::analytics::analytics_handler(t.app.clone());
    let now = t.clock.now_ms();
    for (index, (track, region)) in std::iter::repeat_n((&regional, "isp-x"), 3)
        .chain(std::iter::repeat_n((&elsewhere, "fra"), 5))
        .enumerate()
    {
        let facts = PlayFacts {
            play_id: format!("play-{index}"),
            user_id: format!("user-{index}"),
            track_id: track.clone(),
            node_id: "node".into(),
            region: region.into(),
            format: "hls".into(),
            device: String::new(),
            position_ms: 0,
            listened_ms: 0,
        };
        let mut event = Envelope::new(facts.user_id.clone(), &PlayStarted(facts), now - 3_600_000);
        event.id = uuid::Uuid::from_u128(index as u128 + 1);
        analytics(event).await.unwrap();
    }

    let (status, body) = manifest(t, Some(BOX_TOKEN), 1_000_000).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["box_id"], "box-1");
    assert_eq!(body["region"], "isp-x");
    assert_eq!(
        track_ids(&body),
        [regional.clone(), elsewhere.clone(), unplayed.clone()]
    );
    assert_eq!(body["bytes"], 3 * 2_100);
    let first = &body["tracks"][0];
    assert!(first["expected_plays"].as_f64().unwrap() > 0.0, "{first}");
    assert_eq!(body["tracks"][2]["expected_plays"], 0.0);
    let paths: Vec<&str> = first["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|object| object["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            format!("/media/{regional}/v1/master.m3u8"),
            format!("/media/{regional}/v1/manifest.mpd"),
            format!("/media/{regional}/v1/128k/index.m3u8"),
            format!("/media/{regional}/v1/128k/init.mp4"),
            format!("/media/{regional}/v1/128k/seg-00001.m4s"),
            format!("/media/{regional}/v1/128k/seg-00002.m4s"),
        ]
    );

    // A budget for two tracks gets the two most expected.
    let (_, body) = manifest(t, Some(BOX_TOKEN), 4_500).await;
    assert_eq!(track_ids(&body), [regional.clone(), elsewhere.clone()]);
    assert_eq!(body["bytes"], 4_200);

    // Only a box's own token; a budget within bounds.
    for token in [None, Some("not-a-box-token-but-long-enough-to-try")] {
        let reply = t.get("/api/v1/isp/manifest?bytes=100", token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.raw);
        assert_eq!(error_code(&reply), "unknown_box");
    }
    let (status, body) = manifest(t, Some(BOX_TOKEN), 0).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["fields"][0]["field"], "bytes", "{body}");
}
