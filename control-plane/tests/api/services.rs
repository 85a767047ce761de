//! `services`: a process runs the services it is given — the routes of its HTTP services only,
//! and a processing worker apart from the API that turns the API's uploads into ready tracks.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use control_plane::App;
use control_plane::services::Services;
use telemetry::Shutdown;

use crate::on_both_backends;
use crate::support::{TestApp, error_code};

use crate::uploads::upload_bytes;

on_both_backends!(
    a_process_serves_only_its_services_routes,
    a_processing_worker_apart_from_the_api_publishes_its_uploads,
);

async fn a_process_serves_only_its_services_routes(t: &TestApp) {
    let mut config = t.app.config.clone();
    config.services = "packages,catalog".parse().unwrap();
    let narrow = App::build(config, t.clock.clone()).await.unwrap().router();
    let packages = t.send_to(&narrow, Method::GET, "/api/v1/packages").await;
    assert_eq!(packages.status, StatusCode::OK, "{}", packages.raw);
    let login = t.send_to(&narrow, Method::POST, "/api/v1/sessions").await;
    assert_eq!(login.status, StatusCode::NOT_FOUND, "{}", login.raw);
    assert_eq!(error_code(&login), "route_not_found");
    let document = t
        .send_to(&narrow, Method::GET, "/api/v1/openapi.json")
        .await;
    let paths: Vec<&String> = document.body["paths"].as_object().unwrap().keys().collect();
    assert!(
        paths.iter().any(|path| *path == "/api/v1/packages"),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|path| path.ends_with("/catalog")),
        "{paths:?}"
    );
    assert!(
        !paths
            .iter()
            .any(|path| path.starts_with("/api/v1/sessions")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|path| path.starts_with("/api/v1/play")),
        "{paths:?}"
    );
    // No web player here: `/` points at the API.
    let root = t.send_to(&narrow, Method::GET, "/").await;
    assert_eq!(root.status, StatusCode::OK);
    assert_eq!(root.body["openapi"], "/api/v1/openapi.json", "{}", root.raw);
}

async fn a_processing_worker_apart_from_the_api_publishes_its_uploads(t: &TestApp) {
    // The worker: the same databases, bus and object store, the processing consumer only,
    // no public listener.
    let mut config = t.app.config.clone();
    config.services = "processing".parse::<Services>().unwrap();
    assert!(!config.services.serve_http());
    let worker = App::build(config, t.clock.clone()).await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(control_plane::run(worker, None, admin, shutdown.clone()));

    // The API (this test's router, which runs no consumer) takes the upload.
    let token = t.artist("worker@example.com").await;
    let wav = crate::wav::pcm_wav(4.0, 44_100, None, |s| {
        let v = 0.4 * (2.0 * std::f64::consts::PI * 440.0 * s).sin();
        (v, v)
    });
    let track = upload_bytes(t, &token, wav, "worker.wav").await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        let reply = t
            .get(&format!("/api/v1/tracks/{track}"), Some(&token))
            .await;
        let status = reply.body["status"].as_str().unwrap().to_owned();
        if status != "uploaded" && status != "processing" {
            break reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker did not settle the track: {}",
            reply.raw
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.body["status"], "ready", "{}", status.raw);
    assert!(
        t.app
            .objects
            .get(&status.body["hls"].as_str().unwrap()[1..])
            .await
            .is_ok()
    );

    // The worker answers on its admin port, and stops cleanly.
    let health = reqwest::get(format!("http://{admin_addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the worker stops")
        .unwrap()
        .unwrap();
}
