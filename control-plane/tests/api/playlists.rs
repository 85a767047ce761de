//! Playlists: the spec's add-track flow, ownership, order, limits, concurrency, and the
//! crash-safety of writes that span the two databases.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, TestApp, assert_error, error_code};

on_both_backends!(
    add_track_creates_then_appends,
    read_rename_reorder_remove_delete,
    ownership_is_enforced,
    tracks_must_exist_and_be_ready,
    concurrent_adds_keep_positions_dense,
    crash_between_databases_leaves_nothing_visible,
);

fn positions(playlist: &Value) -> Vec<(String, i64)> {
    playlist["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["track_id"].as_str().unwrap().to_owned(),
                t["position"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn ids(playlist: &Value) -> Vec<String> {
    positions(playlist).into_iter().map(|(id, _)| id).collect()
}

async fn add(
    t: &TestApp,
    token: &str,
    track: &str,
    playlist: Option<&str>,
) -> crate::support::Reply {
    let mut body = json!({"track_id": track});
    if let Some(playlist) = playlist {
        body["playlist_id"] = json!(playlist);
    }
    t.post("/api/v1/playlists/tracks", Some(token), body).await
}

async fn add_track_creates_then_appends(t: &TestApp) {
    let token = t.user("pl@example.com").await;
    let a = t.track("A", "ready").await;
    let b = t.track("B", "ready").await;

    let created = add(t, &token, &a, None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    assert_eq!(created.body["created"], true);
    assert_eq!(created.body["playlist"]["name"], "New playlist");
    assert_eq!(created.body["playlist"]["track_count"], 1);
    let playlist = created.body["playlist"]["id"].as_str().unwrap().to_owned();

    let appended = add(t, &token, &b, Some(&playlist)).await;
    assert_eq!(appended.status, StatusCode::OK, "{}", appended.raw);
    assert_eq!(
        (
            appended.body["position"].as_i64(),
            appended.body["added"].as_bool()
        ),
        (Some(1), Some(true))
    );

    let again = add(t, &token, &a, Some(&playlist)).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        (
            again.body["position"].as_i64(),
            again.body["added"].as_bool()
        ),
        (Some(0), Some(false))
    );
    assert_eq!(
        again.body["playlist"]["track_count"], 2,
        "a duplicate add changes nothing"
    );

    let named = t
        .post(
            "/api/v1/playlists/tracks",
            Some(&token),
            json!({"track_id": b, "name": "Road trip"}),
        )
        .await;
    assert_eq!(named.status, StatusCode::CREATED);
    assert_eq!(named.body["playlist"]["name"], "Road trip");

    let mine = t.get("/api/v1/playlists", Some(&token)).await;
    let list = mine.body.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], playlist.as_str());
    assert_eq!(list[0]["track_count"], 2);
    assert_eq!(list[1]["track_count"], 1);
}

async fn read_rename_reorder_remove_delete(t: &TestApp) {
    let token = t.user("order@example.com").await;
    let mut tracks = Vec::new();
    for name in ["one", "two", "three", "four", "five"] {
        tracks.push(t.track(name, "ready").await);
    }
    let created = t
        .post("/api/v1/playlists", Some(&token), json!({"name": "Mix"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(created.body["track_count"], 0);
    let id = created.body["id"].as_str().unwrap().to_owned();
    for track in &tracks {
        assert_eq!(
            add(t, &token, track, Some(&id)).await.status,
            StatusCode::OK
        );
    }
    let path = format!("/api/v1/playlists/{id}");
    let read = t.get(&path, Some(&token)).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(ids(&read.body), tracks);
    assert_eq!(read.body["tracks"][2]["name"], "three");
    assert_eq!(read.body["tracks"][2]["singer"], "Test Singer");
    let page = t
        .get(&format!("{path}?offset=1&limit=2"), Some(&token))
        .await;
    assert_eq!(ids(&page.body), tracks[1..3]);

    let renamed = t
        .patch(
            &path,
            Some(&token),
            json!({"name": "Mix 2 ✨", "public": true}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(
        (
            renamed.body["name"].as_str(),
            renamed.body["public"].as_bool()
        ),
        (Some("Mix 2 ✨"), Some(true))
    );

    // Move "five" to the front, then "one" (now second) to the end.
    let moved = t
        .put(
            &format!("{path}/order"),
            Some(&token),
            json!({"track_id": tracks[4], "position": 0}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.raw);
    let moved = t
        .put(
            &format!("{path}/order"),
            Some(&token),
            json!({"track_id": tracks[0], "position": 99}),
        )
        .await;
    let expected = vec![
        tracks[4].clone(),
        tracks[1].clone(),
        tracks[2].clone(),
        tracks[3].clone(),
        tracks[0].clone(),
    ];
    assert_eq!(ids(&moved.body), expected);

    let mut reversed = tracks.clone();
    reversed.reverse();
    let full = t
        .put(
            &format!("{path}/order"),
            Some(&token),
            json!({"track_ids": reversed}),
        )
        .await;
    assert_eq!(full.status, StatusCode::OK);
    assert_eq!(ids(&full.body), reversed);
    let partial = t
        .put(
            &format!("{path}/order"),
            Some(&token),
            json!({"track_ids": &reversed[..3]}),
        )
        .await;
    assert_eq!(
        partial.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an order must name every track"
    );
    let both = t
        .put(
            &format!("{path}/order"),
            Some(&token),
            json!({"track_ids": reversed, "position": 1}),
        )
        .await;
    assert_eq!(both.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Remove from the middle: positions close up.
    let removed = t
        .delete(&format!("{path}/tracks/{}", tracks[2]), Some(&token))
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let after = t.get(&path, Some(&token)).await;
    let dense: Vec<i64> = positions(&after.body).into_iter().map(|(_, p)| p).collect();
    assert_eq!(dense, [0, 1, 2, 3]);
    assert_eq!(after.body["track_count"], 4);
    let gone = t
        .delete(&format!("{path}/tracks/{}", tracks[2]), Some(&token))
        .await;
    assert_error(&gone, StatusCode::NOT_FOUND, "track_not_in_playlist");

    assert_eq!(
        t.delete(&path, Some(&token)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        t.get(&path, Some(&token)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(t.app.inventory.track_count(&id).await.unwrap(), None);
}

async fn ownership_is_enforced(t: &TestApp) {
    let owner = t.user("owner@example.com").await;
    let other = t.user("other@example.com").await;
    let track = t.track("Mine", "ready").await;
    let id = add(t, &owner, &track, None).await.body["playlist"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/playlists/{id}");

    // Private: another user cannot even learn that it exists.
    for (method, url, body) in [
        (Method::GET, path.clone(), None),
        (Method::PATCH, path.clone(), Some(json!({"name": "Stolen"}))),
        (Method::DELETE, path.clone(), None),
        (Method::DELETE, format!("{path}/tracks/{track}"), None),
    ] {
        let reply = t.call(method.clone(), &url, Some(&other), body).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {url}");
        assert_eq!(error_code(&reply), "playlist_not_found");
    }
    let sneaky_add = add(t, &other, &track, Some(&id)).await;
    assert_eq!(sneaky_add.status, StatusCode::NOT_FOUND);
    assert_eq!(t.get(&path, None).await.status, StatusCode::NOT_FOUND);

    // Public: readable by anyone, still changeable only by the owner.
    t.patch(&path, Some(&owner), json!({"public": true})).await;
    assert_eq!(t.get(&path, Some(&other)).await.status, StatusCode::OK);
    assert_eq!(t.get(&path, None).await.status, StatusCode::OK);
    let denied = t.delete(&path, Some(&other)).await;
    assert_error(&denied, StatusCode::FORBIDDEN, "not_playlist_owner");
    assert!(
        t.get("/api/v1/playlists", Some(&other))
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );
}

async fn tracks_must_exist_and_be_ready(t: &TestApp) {
    let token = t.user("tracks@example.com").await;
    let missing = add(t, &token, "no-such-track", None).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "track_not_found");
    let processing = t.track("Still processing", "processing").await;
    let reply = add(t, &token, &processing, None).await;
    assert_error(&reply, StatusCode::CONFLICT, "track_not_playable");
    assert!(
        t.get("/api/v1/playlists", Some(&token))
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty(),
        "no playlist was created"
    );
}

async fn concurrent_adds_keep_positions_dense(t: &TestApp) {
    let token = t.user("busy@example.com").await;
    let first = t.track("first", "ready").await;
    let id = add(t, &token, &first, None).await.body["playlist"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tracks = Vec::new();
    for i in 0..16 {
        tracks.push(t.track(&format!("t{i}"), "ready").await);
    }
    // Every track twice, all at once.
    let adds = tracks
        .iter()
        .chain(tracks.iter())
        .map(|track| add(t, &token, track, Some(&id)));
    let replies = futures::future::join_all(adds).await;
    assert!(
        replies.iter().all(|r| r.status == StatusCode::OK),
        "{:?}",
        replies.iter().map(|r| &r.raw).collect::<Vec<_>>()
    );
    assert_eq!(
        replies.iter().filter(|r| r.body["added"] == true).count(),
        16
    );
    let read = t
        .get(&format!("/api/v1/playlists/{id}"), Some(&token))
        .await;
    let mut got: Vec<i64> = positions(&read.body).into_iter().map(|(_, p)| p).collect();
    got.sort_unstable();
    assert_eq!(got, (0..17).collect::<Vec<_>>());
    assert_eq!(read.body["track_count"], 17);
}

async fn crash_between_databases_leaves_nothing_visible(t: &TestApp) {
    let token = t.user("crash@example.com").await;
    let track = t.track("t", "ready").await;
    let now = t.clock.now_ms();
    // A create that died after the Inventory DB write, before the User DB one.
    t.app
        .inventory
        .create_playlist("crashed-create", Some(&track), now)
        .await
        .unwrap();
    // A create that died after the User DB write, before being marked live.
    let info = t
        .app
        .create_playlist(
            &t.sign_up_user_id("crash@example.com").await,
            "Half",
            false,
            Some(&track),
        )
        .await
        .unwrap();
    t.app
        .inventory
        .set_playlist_state(std::slice::from_ref(&info.playlist_id), false, now)
        .await
        .unwrap();

    // Neither is half-visible: the first does not appear at all, the second is whole.
    let mine = t.get("/api/v1/playlists", Some(&token)).await;
    let listed: Vec<&str> = mine
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [info.playlist_id.as_str()]);
    assert_eq!(mine.body[0]["track_count"], 1);

    // Inside the grace period the sweeper leaves both alone.
    assert_eq!(
        t.app
            .sweep_orphans(control_plane::ORPHAN_GRACE)
            .await
            .unwrap(),
        0
    );
    t.clock
        .advance(control_plane::ORPHAN_GRACE + Duration::from_secs(1));
    assert_eq!(
        t.app
            .sweep_orphans(control_plane::ORPHAN_GRACE)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        t.app.inventory.track_count("crashed-create").await.unwrap(),
        None,
        "the orphan is gone"
    );
    assert_eq!(
        t.app
            .inventory
            .track_count(&info.playlist_id)
            .await
            .unwrap(),
        Some(1),
        "the owned one stays"
    );
    assert!(
        t.app
            .inventory
            .pending_playlists(i64::MAX, 10)
            .await
            .unwrap()
            .is_empty(),
        "and is live again"
    );
    // The sweeper's session clean-up ran too; the (active) session survives it.
    assert_eq!(
        t.get("/api/v1/playlists", Some(&token)).await.status,
        StatusCode::OK
    );
}

/// The per-playlist and per-user limits hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlist_limits_hold() {
    let t = TestApp::start_with(Backend::Embedded, |config| {
        config.limits.playlist_max_tracks = 3;
        config.limits.max_playlists_per_user = 2;
    })
    .await
    .unwrap();
    let token = t.user("limits@example.com").await;
    let mut tracks = Vec::new();
    for i in 0..4 {
        tracks.push(t.track(&format!("t{i}"), "ready").await);
    }
    let id = add(&t, &token, &tracks[0], None).await.body["playlist"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    add(&t, &token, &tracks[1], Some(&id)).await;
    add(&t, &token, &tracks[2], Some(&id)).await;
    let full = add(&t, &token, &tracks[3], Some(&id)).await;
    assert_error(&full, StatusCode::CONFLICT, "playlist_full");
    // Re-adding a track already there is still fine on a full playlist.
    assert_eq!(
        add(&t, &token, &tracks[0], Some(&id)).await.status,
        StatusCode::OK
    );

    assert_eq!(
        add(&t, &token, &tracks[3], None).await.status,
        StatusCode::CREATED
    );
    let third = add(&t, &token, &tracks[3], None).await;
    assert_error(&third, StatusCode::CONFLICT, "too_many_playlists");
    t.finish().await;
}

impl TestApp {
    async fn sign_up_user_id(&self, email: &str) -> String {
        self.app
            .users
            .user_by_email(email)
            .await
            .unwrap()
            .unwrap()
            .id
    }
}
