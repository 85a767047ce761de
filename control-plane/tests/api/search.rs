//! Search: `GET /api/v1/search` over the index, the index following the bus (publish, take
//! down, restore), playlists, filters, pages, and the stable refusals.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{TestApp, assert_error, error_code};
use crate::uploads::{process, tone_wav, upload_bytes};

on_both_backends!(
    tracks_are_found_as_typed,
    artists_albums_and_filters,
    bad_queries_get_stable_errors,
    the_index_follows_the_bus,
    a_listener_finds_their_own_playlists,
    an_admin_rebuilds_the_index_on_demand,
);

/// A ready track with the given facts, written to the store (as processing would).
pub(crate) async fn ready(
    t: &TestApp,
    title: &str,
    artist: &str,
    album: Option<&str>,
    genre: Option<&str>,
    year: Option<i64>,
) -> String {
    let id = t.track(title, "ready").await;
    sqlx::query(
        "UPDATE tracks SET singer = ?, album = ?, genre = ?, release_year = ?, url = ? WHERE id = ?",
    )
    .bind(artist)
    .bind(album)
    .bind(genre)
    .bind(year)
    .bind(format!("media/{id}/v1/"))
    .bind(&id)
    .execute(t.app.inventory.database().pool())
    .await
    .unwrap();
    id
}

async fn search(t: &TestApp, query: &str) -> Value {
    let reply = t.get(&format!("/api/v1/search?{query}"), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.raw);
    reply.body
}

fn titles(body: &Value) -> Vec<String> {
    body["tracks"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["track"]["title"].as_str().unwrap().to_owned())
        .collect()
}

async fn corpus(t: &TestApp) {
    ready(
        t,
        "Halo",
        "Beyoncé",
        Some("I Am... Sasha Fierce"),
        Some("R&B"),
        Some(2008),
    )
    .await;
    ready(
        t,
        "Losing My Religion",
        "R.E.M.",
        Some("Out of Time"),
        Some("Rock"),
        Some(1991),
    )
    .await;
    ready(
        t,
        "Highway to Hell",
        "AC/DC",
        Some("Highway to Hell"),
        Some("Rock"),
        Some(1979),
    )
    .await;
    ready(
        t,
        "Spider-Man Theme",
        "Michael Bublé",
        None,
        Some("Jazz"),
        Some(2004),
    )
    .await;
    ready(
        t,
        "Killing in the Name",
        "Rage Against the Machine",
        None,
        Some("Rock"),
        Some(1992),
    )
    .await;
    ready(t, "Группа крови", "Кино", None, None, Some(1988)).await;
    ready(t, "我爱北京天安门", "儿童合唱团", None, None, None).await;
    // Not findable: still processing.
    let _ = t.track("Halo (demo)", "processing").await;
    t.app.rebuild_search_index().await.unwrap();
}

async fn tracks_are_found_as_typed(t: &TestApp) {
    corpus(t).await;
    let found = search(t, "q=beyonce").await;
    assert_eq!(
        titles(&found),
        ["Halo"],
        "a track still processing is not found"
    );
    let artist = &found["tracks"]["items"][0]["artist"];
    assert_eq!(artist, &json!([{"text": "Beyoncé", "hit": true}]));
    assert_eq!(titles(&search(t, "q=beyon").await), ["Halo"], "as you type");
    assert_eq!(titles(&search(t, "q=beyonse").await), ["Halo"], "a typo");
    assert_eq!(titles(&search(t, "q=rem").await)[0], "Losing My Religion");
    assert_eq!(titles(&search(t, "q=acdc").await)[0], "Highway to Hell");
    assert_eq!(
        titles(&search(t, "q=spiderman").await),
        ["Spider-Man Theme"]
    );
    assert_eq!(
        titles(&search(t, "q=spider%20man").await),
        ["Spider-Man Theme"]
    );
    assert_eq!(
        titles(&search(t, "q=rage%20machine").await),
        ["Killing in the Name"]
    );
    assert_eq!(titles(&search(t, "q=kino").await), ["Группа крови"]);
    assert_eq!(
        titles(&search(t, "q=%E5%8C%97%E4%BA%AC%E5%A4%A9").await),
        ["我爱北京天安门"],
        "北京天 from the middle of the title"
    );
    let generation = found["generation"].as_u64().unwrap();
    assert_eq!(
        search(t, "q=beyonce").await["generation"].as_u64(),
        Some(generation)
    );
}

async fn artists_albums_and_filters(t: &TestApp) {
    corpus(t).await;
    let found = search(t, "q=highway&type=track,album,artist").await;
    assert_eq!(found["albums"]["items"][0]["name"], "Highway to Hell");
    assert_eq!(found["albums"]["items"][0]["artist"], "AC/DC");
    let artists = search(t, "q=the&type=artist").await;
    assert_eq!(
        artists["artists"]["items"][0]["name"],
        "Rage Against the Machine"
    );
    let rock = search(t, "q=o&genre=rock").await;
    let rock = titles(&rock);
    assert!(rock.contains(&"Losing My Religion".to_owned()), "{rock:?}");
    assert!(!rock.contains(&"Halo".to_owned()));
    let seventies = titles(&search(t, "q=h&year_from=1970&year_to=1979").await);
    assert_eq!(seventies, ["Highway to Hell"]);
    let by_artist = titles(&search(t, "q=h&artist=beyonce").await);
    assert_eq!(by_artist, ["Halo"]);
    // Pages: one result each, following the cursor.
    let first = search(t, "q=the&limit=1").await;
    let cursor = first["tracks"]["next_cursor"].as_str().unwrap().to_owned();
    let second = search(t, &format!("q=the&limit=1&cursor={cursor}")).await;
    assert_ne!(titles(&first), titles(&second));
}

async fn bad_queries_get_stable_errors(t: &TestApp) {
    corpus(t).await;
    let refused = |query: String, status: StatusCode, code: &'static str| async move {
        let reply = t.get(&format!("/api/v1/search?{query}"), None).await;
        assert_eq!(reply.status, status, "{query}: {}", reply.raw);
        assert_eq!(error_code(&reply), code, "{query}");
    };
    refused("q=".into(), StatusCode::BAD_REQUEST, "query_empty").await;
    refused("type=track".into(), StatusCode::BAD_REQUEST, "query_empty").await;
    refused("q=%20%20".into(), StatusCode::BAD_REQUEST, "query_empty").await;
    refused(
        "q=%3F!.%2C".into(),
        StatusCode::BAD_REQUEST,
        "query_no_words",
    )
    .await;
    refused(
        "q=%F0%9F%94%A5".into(),
        StatusCode::BAD_REQUEST,
        "query_no_words",
    )
    .await;
    let long = "a".repeat(10 * 1024);
    refused(
        format!("q={long}"),
        StatusCode::BAD_REQUEST,
        "query_too_long",
    )
    .await;
    refused(
        "q=halo&type=song".into(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    refused(
        "q=halo&limit=0".into(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    refused(
        "q=halo&cursor=zz".into(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    refused(
        "q=halo&year_from=2000&year_to=1990".into(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

/// Delivers the pending track events to this process's search consumer.
async fn feed(t: &TestApp) {
    t.app
        .bus
        .poll(
            t.app.search.group(),
            events::tracks::TOPIC,
            &control_plane::search::tracks_handler(t.app.clone()),
        )
        .await
        .unwrap();
}

async fn the_index_follows_the_bus(t: &TestApp) {
    // Published through the pipeline: the published event indexes it.
    let token = t.artist("producer@example.com").await;
    upload_bytes(t, &token, tone_wav(4.0), "take.wav").await;
    assert!(process(t).await >= 1);
    assert!(
        titles(&search(t, "q=take").await).is_empty(),
        "not before the event"
    );
    feed(t).await;
    let found = search(t, "q=take").await;
    assert_eq!(titles(&found), ["Take"]);
    let id = found["tracks"]["items"][0]["track"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Taken down: gone; restored: back. Replays change nothing.
    let admin = t.admin().await;
    let block = t.set_blocked(&admin, &id, Some("A rights claim.")).await;
    assert_eq!(block.status, StatusCode::NO_CONTENT, "{}", block.raw);
    feed(t).await;
    assert!(titles(&search(t, "q=take").await).is_empty());
    let restore = t.set_blocked(&admin, &id, None).await;
    assert_eq!(restore.status, StatusCode::NO_CONTENT);
    feed(t).await;
    assert_eq!(titles(&search(t, "q=me").await), ["Take"], "by its singer");
    t.app.rebuild_search_index().await.unwrap();
    assert_eq!(titles(&search(t, "q=take").await), ["Take"]);
}

async fn a_listener_finds_their_own_playlists(t: &TestApp) {
    corpus(t).await;
    let token = t.user("listener@example.com").await;
    for name in ["Road Trip", "Sunday Morning"] {
        let created = t
            .post("/api/v1/playlists", Some(&token), json!({"name": name}))
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
    }
    let found = t
        .get(
            "/api/v1/search?q=road%20tirp&type=playlist,track",
            Some(&token),
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.raw);
    let playlists = found.body["playlists"]["items"].as_array().unwrap();
    assert_eq!(playlists.len(), 1);
    assert_eq!(playlists[0]["name"], "Road Trip");
    let other = t.user("other@example.com").await;
    let theirs = t
        .get("/api/v1/search?q=road&type=playlist", Some(&other))
        .await;
    assert_eq!(theirs.body["playlists"]["items"], json!([]));
    let anonymous = search(t, "q=road&type=playlist").await;
    assert_eq!(anonymous["playlists"]["items"], json!([]));
}

async fn an_admin_rebuilds_the_index_on_demand(t: &TestApp) {
    // Written to the store behind the bus's back: not searchable until a rebuild.
    let quiet = ready(t, "Echoes", "Quiet Band", None, None, None).await;
    let loud = ready(t, "Echoes", "Loud Band", None, None, None).await;
    // Plays for the second, counted by the catalog's counters: the rebuild reads them in bulk.
    let counters = control_plane::catalog::play_counters_handler(t.app.clone());
    for n in 0..3u128 {
        let facts = events::plays::PlayFacts {
            play_id: format!("play-{n}"),
            user_id: "someone".to_owned(),
            track_id: loud.clone(),
            node_id: "edge-1".to_owned(),
            region: "fra".to_owned(),
            format: "hls".to_owned(),
            device: String::new(),
            position_ms: 0,
            listened_ms: 0,
        };
        let mut event = events::Envelope::new(
            "someone",
            &events::plays::PlayStarted(facts),
            t.clock.now_ms(),
        );
        event.id = uuid::Uuid::from_u128(0xec40 + n);
        counters(event).await.unwrap();
    }
    assert!(titles(&search(t, "q=echoes").await).is_empty());
    let listener = t.user("curious@example.com").await;
    let refused = t
        .post("/api/v1/search/rebuild", Some(&listener), None)
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, "admin_required");
    let anonymous = t.post("/api/v1/search/rebuild", None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let before = t.app.search.generation();
    let admin = t.admin().await;
    let rebuilt = t.post("/api/v1/search/rebuild", Some(&admin), None).await;
    assert_eq!(rebuilt.status, StatusCode::OK, "{}", rebuilt.raw);
    assert_eq!(rebuilt.body["tracks"], 2);
    assert!(rebuilt.body["generation"].as_u64().unwrap() > before);
    // Equal matches: the one with plays first.
    let found = search(t, "q=echoes").await;
    let ids: Vec<&str> = found["tracks"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["track"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [loud.as_str(), quiet.as_str()]);
    assert_eq!(found["tracks"]["items"][0]["track"]["popularity"], 3);
}
