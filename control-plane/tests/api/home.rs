//! Analytics and home: a fixed event log fed to the `analytics` and `play-counters`
//! consumers (twice, as a replay would) gives the expected sections in order, the same page
//! after the duplicates, a useful page for a new listener and a visitor, and a track's
//! statistics for its artist only.

use axum::http::StatusCode;
use events::Envelope;
use events::plays::{PlayCompleted, PlayFacts, PlayProgressed, PlaySkipped, PlayStarted};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::search::ready;
use crate::support::{TestApp, assert_error};

on_both_backends!(home_is_built_from_the_event_log);

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

/// One listener's play: what happened to it, and when.
struct Play<'a> {
    user: &'a str,
    track: &'a str,
    region: &'a str,
    at: i64,
    /// Listening reported after the start, ms (0: none).
    listened_ms: u64,
    end: End,
}

#[derive(Clone, Copy)]
enum End {
    Completed,
    Skipped,
    /// Still playing (the player stopped reporting).
    Stopped,
}

/// The events of `plays`, with ids fixed by their place in the log.
fn event_log(plays: &[Play<'_>]) -> Vec<Envelope> {
    let mut log = Vec::new();
    for (index, play) in plays.iter().enumerate() {
        let facts = |position_ms, listened_ms| PlayFacts {
            play_id: format!("play-{index}"),
            user_id: play.user.to_owned(),
            track_id: play.track.to_owned(),
            node_id: "edge-1".to_owned(),
            region: play.region.to_owned(),
            format: "hls".to_owned(),
            device: String::new(),
            position_ms,
            listened_ms,
        };
        let mut events = vec![Envelope::new(play.user, &PlayStarted(facts(0, 0)), play.at)];
        if play.listened_ms > 0 {
            events.push(Envelope::new(
                play.user,
                &PlayProgressed(facts(play.listened_ms, play.listened_ms)),
                play.at + play.listened_ms as i64,
            ));
        }
        let at = play.at + play.listened_ms as i64 + 1_000;
        match play.end {
            End::Completed => events.push(Envelope::new(
                play.user,
                &PlayCompleted(facts(180_000, 180_000 - play.listened_ms)),
                at,
            )),
            End::Skipped => events.push(Envelope::new(
                play.user,
                &PlaySkipped(facts(play.listened_ms + 1_000, 1_000)),
                at,
            )),
            End::Stopped => {}
        }
        for (step, mut event) in events.into_iter().enumerate() {
            event.id = uuid::Uuid::from_u128(((index as u128) << 8) | step as u128);
            log.push(event);
        }
    }
    log
}

async fn feed(t: &TestApp, log: &[Envelope]) {
    let analytics = control_plane::analytics::analytics_handler(t.app.clone());
    let counters = control_plane::catalog::play_counters_handler(t.app.clone());
    for event in log {
        analytics(event.clone()).await.unwrap();
        counters(event.clone()).await.unwrap();
    }
}

fn section<'a>(home: &'a Value, id: &str) -> &'a Value {
    home["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|section| section["id"] == id)
        .unwrap_or_else(|| panic!("no {id} section in {home}"))
}

fn titles(section: &Value) -> Vec<String> {
    section["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["title"].as_str().unwrap().to_owned())
        .collect()
}

fn ids(home: &Value) -> Vec<String> {
    home["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|section| section["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn home_is_built_from_the_event_log(t: &TestApp) {
    let now = t.clock.now_ms();
    let alpha = ready(t, "Alpha", "Xenia", None, Some("Pop"), Some(2020)).await;
    let bravo = ready(t, "Bravo", "Yusuf", None, Some("Pop"), Some(2021)).await;
    let charlie = ready(t, "Charlie", "Zola", None, Some("Jazz"), Some(2019)).await;
    // Alpha's artist again: never paired with Alpha.
    let delta = ready(t, "Delta", "Xenia", None, Some("Pop"), Some(2022)).await;
    let echo = ready(t, "Echo", "Wren", None, Some("Folk"), Some(2001)).await;
    let foxtrot = ready(t, "Foxtrot", "Vida", None, Some("Rock"), Some(2024)).await;
    let listener = t.sign_up("listener@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = t
        .log_in("listener@example.com", crate::support::PASSWORD)
        .await;
    let created = t
        .post(
            "/api/v1/playlists",
            Some(&token),
            json!({"name": "Road Trip"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);

    let play = |user, track, region, at, listened_ms, end| Play {
        user,
        track,
        region,
        at,
        listened_ms,
        end,
    };
    let l = listener.as_str();
    let mut plays = vec![
        // Forty days ago the listener heard Echo twice.
        play(l, &echo, "eu-west", now - 40 * DAY, 0, End::Completed),
        play(
            l,
            &echo,
            "eu-west",
            now - 40 * DAY + 5 * MINUTE,
            0,
            End::Completed,
        ),
        // Another listener heard Alpha, Bravo and Delta in one session.
        play(
            "m",
            &alpha,
            "eu-west",
            now - 120 * MINUTE,
            0,
            End::Completed,
        ),
        play(
            "m",
            &bravo,
            "eu-west",
            now - 116 * MINUTE,
            0,
            End::Completed,
        ),
        play(
            "m",
            &delta,
            "eu-west",
            now - 112 * MINUTE,
            0,
            End::Completed,
        ),
        // A third heard Alpha, 35 s of Bravo, and skipped Charlie at once.
        play(
            "n",
            &alpha,
            "eu-west",
            now - 180 * MINUTE,
            0,
            End::Completed,
        ),
        play(
            "n",
            &bravo,
            "eu-west",
            now - 176 * MINUTE,
            35_000,
            End::Skipped,
        ),
        play(
            "n",
            &charlie,
            "eu-west",
            now - 175 * MINUTE,
            0,
            End::Skipped,
        ),
        // The listener: Alpha to the end, 40 s of Charlie, Foxtrot skipped.
        play(l, &alpha, "eu-west", now - 60 * MINUTE, 0, End::Completed),
        play(
            l,
            &charlie,
            "eu-west",
            now - 56 * MINUTE,
            40_000,
            End::Stopped,
        ),
        play(l, &foxtrot, "eu-west", now - 50 * MINUTE, 0, End::Skipped),
    ];
    // Foxtrot is the rage elsewhere.
    for user in ["q1", "q2", "q3", "q4"] {
        plays.push(play(
            user,
            &foxtrot,
            "us-east",
            now - 10 * MINUTE,
            0,
            End::Completed,
        ));
    }
    let log = event_log(&plays);
    feed(t, &log).await;

    let home = serde_json::to_value(
        t.app
            .assemble_home(Some(l), Some("eu-west".to_owned()))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        ids(&home),
        [
            "continue",
            "recent",
            "playlists",
            "trending",
            "top",
            "new",
            "because",
            "rediscover"
        ],
        "{home}"
    );
    let resume = section(&home, "continue");
    assert_eq!(titles(resume), ["Charlie"]);
    assert_eq!(resume["items"][0]["position_ms"], 40_000);
    assert_eq!(
        titles(section(&home, "recent")),
        ["Foxtrot", "Charlie", "Alpha", "Echo"]
    );
    assert_eq!(section(&home, "playlists")["items"][0]["name"], "Road Trip");
    let trending = section(&home, "trending");
    assert_eq!(trending["title"], "Trending near you");
    assert_eq!(
        titles(trending),
        ["Alpha"],
        "only Alpha has three plays here"
    );
    let top = section(&home, "top");
    assert_eq!(top["title"], "Top in eu-west");
    assert_eq!(titles(top)[0], "Alpha");
    let counts: Vec<i64> = top["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [3, 2, 2, 1, 1]);
    assert_eq!(titles(section(&home, "new")).len(), 6);
    // The latest heard track with pairs: Charlie (Foxtrot was skipped), heard beside Alpha.
    let because = section(&home, "because");
    assert_eq!(because["title"], "Because you listened to Charlie");
    assert_eq!(titles(because), ["Alpha"]);
    let rediscover = section(&home, "rediscover");
    assert_eq!(titles(rediscover), ["Echo"]);
    assert_eq!(rediscover["items"][0]["count"], 2);
    // Alpha's pairs: Bravo by two listeners (n heard 35 s of it before skipping), Charlie by
    // one; never Delta, Alpha's own artist's.
    let together = t
        .app
        .analytics
        .store()
        .listened_together(&alpha, 10)
        .await
        .unwrap();
    let together: Vec<(String, i64)> = together
        .into_iter()
        .map(|pair| (pair.track_id, pair.count))
        .collect();
    assert_eq!(together, [(bravo.clone(), 2), (charlie.clone(), 1)]);

    // The whole log again (a replay), then each event once more: nothing changes.
    feed(t, &log).await;
    feed(t, &log[3..9]).await;
    let again = serde_json::to_value(
        t.app
            .assemble_home(Some(l), Some("eu-west".to_owned()))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(again, home);

    // Over HTTP (no locator here: no region, so every region's trending and top).
    let reply = t.get("/api/v1/home", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    assert_eq!(reply.body["region"], Value::Null);
    let trending = section(&reply.body, "trending");
    assert_eq!(trending["title"], "Trending");
    assert_eq!(titles(trending), ["Foxtrot", "Alpha"]);
    assert_eq!(titles(section(&reply.body, "top"))[0], "Foxtrot");
    // A new listener and a visitor still get something to play.
    let newcomer = t.user("newcomer@example.com").await;
    let reply = t.get("/api/v1/home", Some(&newcomer)).await;
    assert_eq!(ids(&reply.body), ["trending", "top", "new"]);
    let reply = t.get("/api/v1/home", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(ids(&reply.body), ["trending", "top", "new"]);

    // Statistics: for the track's artist and admins only.
    let artist = t.sign_up("charlie@example.com").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    sqlx::query("UPDATE tracks SET uploaded_by_user_id = ? WHERE id = ?")
        .bind(&artist)
        .bind(&charlie)
        .execute(t.app.inventory.database().pool())
        .await
        .unwrap();
    let artist_token = t
        .log_in("charlie@example.com", crate::support::PASSWORD)
        .await;
    let stats = t
        .get(
            &format!("/api/v1/tracks/{charlie}/stats"),
            Some(&artist_token),
        )
        .await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.raw);
    let totals = &stats.body["totals"];
    assert_eq!(
        (totals["starts"].as_i64(), totals["skips"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(totals["skip_rate"], 0.5);
    assert_eq!(totals["completion_rate"], 0.0);
    assert_eq!(stats.body["by_region"][0]["region"], "eu-west");
    assert_eq!(stats.body["by_day"].as_array().unwrap().len(), 1);
    let admin = t.admin().await;
    let stats = t
        .get(&format!("/api/v1/tracks/{alpha}/stats"), Some(&admin))
        .await;
    assert_eq!(stats.status, StatusCode::OK);
    assert_eq!(stats.body["totals"]["starts"], 3, "duplicates counted once");
    assert_eq!(stats.body["totals"]["completion_rate"], 1.0);
    let refused = t
        .get(&format!("/api/v1/tracks/{charlie}/stats"), Some(&token))
        .await;
    assert_error(&refused, StatusCode::FORBIDDEN, "not_your_track");
    let missing = t
        .get("/api/v1/tracks/no-such-track/stats", Some(&admin))
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "track_not_found");
    let anonymous = t.get(&format!("/api/v1/tracks/{alpha}/stats"), None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}
