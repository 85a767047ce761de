//! The two halves of `bench/search.sh`, which runs them on two cores.
//!
//! `search_bench serve DIR [TRACKS] [QUERIES]` starts a real control plane (embedded backends,
//! data in DIR), indexes a generated catalogue of TRACKS tracks into its search index (timed),
//! gives one listener 10 000 plays through the analytics store, then times in-process — on
//! this process's core, before any HTTP load — every distinct keystroke of QUERIES typed
//! queries on the index itself and the uncached assembly of that listener's home page. It
//! writes `DIR/serve.json` (its figures and what the client needs) and serves until stdin
//! closes.
//!
//! `search_bench query DIR` sends the same keystrokes to `GET /api/v1/search` and asks
//! `GET /api/v1/home` as that listener, one request at a time over one keep-alive connection,
//! and writes `DIR/query.json`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use control_plane::App;
use control_plane::analytics::store::{PlayEvent, PlayStep};
use control_plane::catalog::store::{NewTrack, TrackStatus};
use control_plane::config::Config;
use control_plane::store::Clock;
use search_index::synthetic::{self, Rng, percentile, resident_mib};
use serde_json::{Value, json};
use telemetry::Shutdown;

/// Tracks the benchmark listener has heard (and that the Inventory DB holds).
const LISTENED_TRACKS: usize = 2_000;
/// The listener's plays.
const LISTENER_PLAYS: usize = 10_000;
/// Other listeners, and plays each, so that trending, top and pairs have data.
const OTHER_LISTENERS: usize = 200;
const OTHER_PLAYS: usize = 50;
/// Home pages assembled (and asked for) per measurement.
const HOME_ROUNDS: usize = 200;
const DAY_MS: i64 = 24 * 3_600_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: search_bench serve DIR [TRACKS] [QUERIES] | search_bench query DIR";
    let dir = PathBuf::from(args.get(1).context(usage)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args[0].as_str() {
        "serve" => {
            let tracks = args.get(2).map_or(Ok(1_000_000), |n| n.parse())?;
            let queries = args.get(3).map_or(Ok(200), |n| n.parse())?;
            runtime.block_on(serve(&dir, tracks, queries))
        }
        "query" => runtime.block_on(query(&dir)),
        _ => bail!(usage),
    }
}

fn summary(mut timings: Vec<f64>) -> Value {
    timings.sort_by(f64::total_cmp);
    json!({
        "count": timings.len(),
        "p50_ms": percentile(&timings, 0.5),
        "p95_ms": percentile(&timings, 0.95),
        "p99_ms": percentile(&timings, 0.99),
        "max_ms": timings.last().copied().unwrap_or(0.0),
    })
}

async fn serve(dir: &Path, tracks: usize, queries: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    let app = App::build(config, Clock::system()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let shutdown = Shutdown::new();
    let server = tokio::spawn(control_plane::run(
        app.clone(),
        Some(listener),
        admin,
        shutdown.clone(),
    ));
    // The start-up rebuild (of an empty store) first, so that it cannot replace ours.
    while app.search.generation() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resident_before = resident_mib();

    let mut rng = Rng::new(0x5EED_CADE_2026);
    let documents = synthetic::catalogue(&mut rng, tracks);
    let mut keystrokes = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..queries {
        let typed = synthetic::typed_query(&documents[rng.below(documents.len())]);
        for stroke in synthetic::keystrokes(&typed) {
            if seen.insert(stroke.to_owned()) {
                keystrokes.push(stroke.to_owned());
            }
        }
    }
    let listened: Vec<_> = documents[..LISTENED_TRACKS.min(tracks)].to_vec();
    let started = Instant::now();
    let indexed = app.search.replace_all(documents).await?;
    let indexing_secs = started.elapsed().as_secs_f64();
    let resident_after = resident_mib();
    eprintln!(
        "indexed {indexed} tracks in {indexing_secs:.1} s ({:.0} tracks/s); resident {resident_before:.0} → {resident_after:.0} MiB",
        indexed as f64 / indexing_secs
    );

    // The listener, the tracks they heard, and their plays.
    let http = reqwest::Client::new();
    let api = format!("{url}/api/v1");
    let signed_up: Value = http
        .post(format!("{api}/users"))
        .json(
            &json!({"first_name": "Bench", "last_name": "Listener", "email": "bench@example.com",
            "mobile": "+44 7700 900123", "address": "London", "password": "correct horse battery"}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let user_id = signed_up["id"].as_str().context("sign-up id")?.to_owned();
    let session: Value = http
        .post(format!("{api}/sessions"))
        .json(&json!({"email": "bench@example.com", "password": "correct horse battery"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = session["token"].as_str().context("token")?.to_owned();
    let now = app.clock.now_ms();
    for (index, doc) in listened.iter().enumerate() {
        app.inventory
            .insert_track(&NewTrack {
                id: doc.id.clone(),
                name: doc.title.clone(),
                uploaded_by_user_id: "bench-artist".to_owned(),
                singer: doc.artist.clone(),
                album: doc.album.clone(),
                kind: "music".to_owned(),
                status: TrackStatus::Ready,
                duration_ms: Some(doc.duration_ms as i64),
                now: now - (LISTENED_TRACKS - index) as i64 * 60_000,
            })
            .await?;
    }
    let started = Instant::now();
    let mut events = apply_plays(
        &app,
        &listened,
        &user_id,
        LISTENER_PLAYS,
        90 * DAY_MS,
        &mut rng,
    )
    .await?;
    for other in 0..OTHER_LISTENERS {
        let user = format!("other-{other}");
        events += apply_plays(&app, &listened, &user, OTHER_PLAYS, 3 * DAY_MS, &mut rng).await?;
    }
    let applying_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "applied {events} play events in {applying_secs:.1} s ({:.0} events/s)",
        events as f64 / applying_secs
    );

    // In-process: the index itself, then home assembled without its page cache.
    let catalogue = app.search.catalogue();
    let mut search_timings = Vec::with_capacity(keystrokes.len());
    for text in &keystrokes {
        let (page, ms) = synthetic::timed_search(catalogue, text);
        search_timings.push(ms);
        page.with_context(|| format!("in-process search of {text:?}"))?;
    }
    let mut home_timings = Vec::with_capacity(HOME_ROUNDS);
    let mut sections = 0;
    for _ in 0..HOME_ROUNDS {
        let started = Instant::now();
        let home = app.assemble_home(Some(&user_id), None).await?;
        home_timings.push(started.elapsed().as_secs_f64() * 1000.0);
        sections = home.sections.len();
    }
    let figures = json!({
        "url": url,
        "token": token,
        "keystrokes": keystrokes,
        "tracks": indexed,
        "indexing_secs": indexing_secs,
        "tracks_per_sec": indexed as f64 / indexing_secs,
        "resident_mib_before_index": resident_before,
        "resident_mib_after_index": resident_after,
        "play_events": events,
        "play_events_per_sec": events as f64 / applying_secs,
        "in_process_search": summary(search_timings),
        "home_assembly": summary(home_timings),
        "home_sections": sections,
        "resident_mib_end": resident_mib(),
    });
    std::fs::write(dir.join("serve.json"), serde_json::to_vec_pretty(&figures)?)?;
    eprintln!("serving at {url}; close stdin to stop");
    // Serve until stdin closes.
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
        .await??;
    shutdown.trigger();
    server.await??;
    Ok(())
}

/// Gives `user` `count` plays of `tracks` (Zipf) over the last `span_ms`, in sessions of
/// about ten plays three minutes apart: seven in ten heard to the end, two skipped after 20 s,
/// one left after a minute. Returns how many events were applied.
async fn apply_plays(
    app: &App,
    tracks: &[search_index::TrackDoc],
    user: &str,
    count: usize,
    span_ms: i64,
    rng: &mut Rng,
) -> anyhow::Result<usize> {
    let now = app.clock.now_ms();
    let mut at = now - span_ms;
    let mut events = 0;
    for index in 0..count {
        at += if index % 10 == 0 {
            span_ms / (count as i64 / 10 + 1)
        } else {
            180_000
        };
        let start = at.min(now);
        let track = &tracks[rng.zipf(tracks.len())];
        let play_id = format!("{user}-{index}");
        let end = match rng.below(10) {
            0..=6 => (PlayStep::Completed, 180_000),
            7 | 8 => (PlayStep::Skipped, 20_000),
            _ => (PlayStep::Progressed, 60_000),
        };
        for (step, heard) in [(PlayStep::Started, 0), end] {
            events += 1;
            let event_id = format!("{play_id}-{events}");
            app.analytics
                .store()
                .apply(&PlayEvent {
                    event_id: &event_id,
                    at: (start + heard).min(now),
                    step,
                    user_id: user,
                    play_id: &play_id,
                    track_id: &track.id,
                    artist: &track.artist,
                    region: ["fra", "ams", "lon"][index % 3],
                    position_ms: heard,
                    listened_ms: heard,
                })
                .await?;
        }
    }
    Ok(events)
}

async fn query(dir: &Path) -> anyhow::Result<()> {
    let served: Value = serde_json::from_slice(&std::fs::read(dir.join("serve.json"))?)?;
    let url = served["url"].as_str().context("url")?;
    let token = served["token"].as_str().context("token")?;
    let keystrokes = served["keystrokes"].as_array().context("keystrokes")?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()?;
    let mut search_timings = Vec::with_capacity(keystrokes.len());
    for text in keystrokes {
        let text = text.as_str().context("keystroke")?;
        let started = Instant::now();
        let response = http
            .get(format!("{url}/api/v1/search"))
            .query(&[("q", text), ("limit", "10")])
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        search_timings.push(started.elapsed().as_secs_f64() * 1000.0);
        if !status.is_success() {
            bail!(
                "search {text:?}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    let mut home_timings = Vec::with_capacity(HOME_ROUNDS);
    for _ in 0..HOME_ROUNDS {
        let started = Instant::now();
        let response = http
            .get(format!("{url}/api/v1/home"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?;
        response.bytes().await?;
        home_timings.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let figures = json!({
        "http_search": summary(search_timings),
        "http_home": summary(home_timings),
    });
    std::fs::write(dir.join("query.json"), serde_json::to_vec_pretty(&figures)?)?;
    Ok(())
}
