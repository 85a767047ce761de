//! The analytics store (embedded SQLite, `analytics.db`): every table is shaped for the one
//! query that reads it, partition key first, so that a Cassandra/ScyllaDB store maps one to
//! one. Each play event is applied in one transaction together with its dedupe row, so that a
//! replayed or duplicated event changes nothing.

use sqlx::Row;

use crate::store::{Database, DatabaseKind, StoreError};

/// A play counts as heard (and enters listening sessions) from this much listening on.
pub const HEARD_MS: i64 = 30_000;
/// A gap between two plays' starts longer than this ends a listening session.
pub const SESSION_GAP_MS: i64 = 30 * 60 * 1000;
/// How far around a play its session is looked for.
const SESSION_SPAN_MS: i64 = 12 * 60 * 60 * 1000;

/// What a play event says, as the store applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayStep {
    /// The player started the play.
    Started,
    /// More listening.
    Progressed,
    /// Heard to the end.
    Completed,
    /// The listener skipped the rest.
    Skipped,
}

/// One play event.
#[derive(Debug, Clone)]
pub struct PlayEvent<'a> {
    /// The event's id (each counts once).
    pub event_id: &'a str,
    /// When it happened, Unix ms.
    pub at: i64,
    /// What happened.
    pub step: PlayStep,
    /// The listener.
    pub user_id: &'a str,
    /// The play.
    pub play_id: &'a str,
    /// The track.
    pub track_id: &'a str,
    /// The track's artist (pairs of one artist's tracks are not kept).
    pub artist: &'a str,
    /// The region (site) of the node that served the play.
    pub region: &'a str,
    /// Position in the track, ms.
    pub position_ms: i64,
    /// Listening this event credits, ms.
    pub listened_ms: i64,
}

/// What a play's state is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayState {
    /// Started, neither completed nor skipped.
    Playing,
    /// Heard to the end.
    Completed,
    /// Skipped.
    Skipped,
}

impl PlayState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Playing => "playing",
            Self::Completed => "completed",
            Self::Skipped => "skipped",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "playing" => Ok(Self::Playing),
            "completed" => Ok(Self::Completed),
            "skipped" => Ok(Self::Skipped),
            other => Err(StoreError::Corrupt(format!("play state {other:?}"))),
        }
    }
}

/// One play of a listener, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerPlay {
    /// The play.
    pub play_id: String,
    /// The track.
    pub track_id: String,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms of its last event.
    pub updated_at: i64,
    /// Position reached, ms.
    pub position_ms: i64,
    /// Listening, ms.
    pub listened_ms: i64,
    /// Its state.
    pub state: PlayState,
    /// Whether it counts as heard.
    pub heard: bool,
}

/// A track's count of something, e.g. plays.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TrackCount {
    /// The track.
    pub track_id: String,
    /// The count.
    pub count: i64,
    /// The latest time it concerns, Unix ms (0 where it does not apply).
    pub last_at: i64,
}

/// Plays started of a track in one hour.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HourPlays {
    /// The track.
    pub track_id: String,
    /// Unix hours.
    pub hour: i64,
    /// Plays started.
    pub starts: i64,
}

/// The analytics store.
#[derive(Debug, Clone)]
pub struct AnalyticsStore {
    db: Database,
}

const PLAY_COLUMNS: &str =
    "play_id, track_id, artist, started_at, updated_at, position_ms, listened_ms, state, heard";

fn play_of(row: &sqlx::any::AnyRow) -> Result<(ListenerPlay, String), StoreError> {
    let state: String = row.try_get("state")?;
    Ok((
        ListenerPlay {
            play_id: row.try_get("play_id")?,
            track_id: row.try_get("track_id")?,
            started_at: row.try_get("started_at")?,
            updated_at: row.try_get("updated_at")?,
            position_ms: row.try_get("position_ms")?,
            listened_ms: row.try_get("listened_ms")?,
            state: PlayState::parse(&state)?,
            heard: row.try_get::<i64, _>("heard")? != 0,
        },
        row.try_get("artist")?,
    ))
}

impl AnalyticsStore {
    /// Opens (and migrates) the store at `url` (`sqlite://…`).
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            url.starts_with("sqlite:"),
            "unsupported analytics URL {url:?}: only sqlite:// is built (a Cassandra/ScyllaDB store is planned)"
        );
        Ok(Self {
            db: Database::connect(url, DatabaseKind::Analytics).await?,
        })
    }

    /// Closes its connections.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Applies one play event, once per event id. Returns whether it was new.
    pub async fn apply(&self, event: &PlayEvent<'_>) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO analytics_events (event_id, counted_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(event.event_id)
        .bind(event.at)
        .execute(&mut *tx)
        .await?;
        if fresh.rows_affected() == 0 {
            return Ok(false);
        }
        let existing = sqlx::query(&format!(
            "SELECT {PLAY_COLUMNS} FROM listener_plays WHERE user_id = ? AND play_id = ?"
        ))
        .bind(event.user_id)
        .bind(event.play_id)
        .fetch_optional(&mut *tx)
        .await?;
        let before = existing
            .as_ref()
            .map(play_of)
            .transpose()?
            .map(|(play, _)| play);
        if event.step == PlayStep::Started {
            // Regional plays count starts, as the catalog's counters do.
            sqlx::query(
                "INSERT INTO region_plays (region, hour, track_id, starts) VALUES (?, ?, ?, 1) \
                 ON CONFLICT (region, hour, track_id) DO UPDATE SET starts = starts + 1",
            )
            .bind(event.region)
            .bind(event.at.div_euclid(3_600_000))
            .bind(event.track_id)
            .execute(&mut *tx)
            .await?;
        }
        let mut play = before.clone().unwrap_or(ListenerPlay {
            play_id: event.play_id.to_owned(),
            track_id: event.track_id.to_owned(),
            started_at: event.at,
            updated_at: event.at,
            position_ms: 0,
            listened_ms: 0,
            state: PlayState::Playing,
            heard: false,
        });
        play.updated_at = play.updated_at.max(event.at);
        play.position_ms = event.position_ms.max(0);
        play.listened_ms += event.listened_ms.max(0);
        match event.step {
            PlayStep::Started | PlayStep::Progressed => {}
            PlayStep::Completed if play.state == PlayState::Playing => {
                play.state = PlayState::Completed;
            }
            PlayStep::Skipped if play.state == PlayState::Playing => {
                play.state = PlayState::Skipped;
            }
            PlayStep::Completed | PlayStep::Skipped => {}
        }
        // Heard once 30 s were heard or it completed; a play skipped before that never is.
        let newly_heard = !play.heard
            && play.state != PlayState::Skipped
            && (play.listened_ms >= HEARD_MS || play.state == PlayState::Completed);
        play.heard |= newly_heard;
        sqlx::query(
            "INSERT INTO listener_plays (user_id, play_id, track_id, artist, started_at, updated_at, position_ms, listened_ms, state, heard) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (user_id, play_id) DO UPDATE SET updated_at = excluded.updated_at, position_ms = excluded.position_ms, \
             listened_ms = excluded.listened_ms, state = excluded.state, heard = excluded.heard",
        )
        .bind(event.user_id)
        .bind(&play.play_id)
        .bind(&play.track_id)
        .bind(event.artist)
        .bind(play.started_at)
        .bind(play.updated_at)
        .bind(play.position_ms)
        .bind(play.listened_ms)
        .bind(play.state.as_str())
        .bind(i64::from(play.heard))
        .execute(&mut *tx)
        .await?;
        if newly_heard {
            // The plays of its listening session: walk out from it while the gaps between
            // starts stay within SESSION_GAP_MS.
            let rows = sqlx::query(&format!(
                "SELECT {PLAY_COLUMNS} FROM listener_plays WHERE user_id = ? AND started_at BETWEEN ? AND ? \
                 ORDER BY started_at, play_id"
            ))
            .bind(event.user_id)
            .bind(play.started_at - SESSION_SPAN_MS)
            .bind(play.started_at + SESSION_SPAN_MS)
            .fetch_all(&mut *tx)
            .await?;
            let around = rows.iter().map(play_of).collect::<Result<Vec<_>, _>>()?;
            let artist = existing
                .as_ref()
                .map(|row| row.try_get::<String, _>("artist"))
                .transpose()?
                .unwrap_or_else(|| event.artist.to_owned());
            for (other, other_artist) in session_of(&around, &play.play_id) {
                if !other.heard
                    || other.track_id == play.track_id
                    || other_artist.to_lowercase() == artist.to_lowercase()
                {
                    continue;
                }
                let (a, b) = if play.track_id < other.track_id {
                    (&play.track_id, &other.track_id)
                } else {
                    (&other.track_id, &play.track_id)
                };
                let new_pair = sqlx::query(
                    "INSERT INTO listener_pairs (user_id, track_a, track_b) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(event.user_id)
                .bind(a)
                .bind(b)
                .execute(&mut *tx)
                .await?;
                if new_pair.rows_affected() == 0 {
                    // This listener counted the pair already: one listener weighs one.
                    continue;
                }
                for (one, two) in [(a, b), (b, a)] {
                    sqlx::query(
                        "INSERT INTO track_pairs (track_id, other_id, listeners) VALUES (?, ?, 1) \
                         ON CONFLICT (track_id, other_id) DO UPDATE SET listeners = listeners + 1",
                    )
                    .bind(one)
                    .bind(two)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// A listener's latest plays, newest first.
    pub async fn recent_plays(
        &self,
        user_id: &str,
        limit: i64,
    ) -> Result<Vec<ListenerPlay>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PLAY_COLUMNS} FROM listener_plays WHERE user_id = ? ORDER BY started_at DESC, play_id DESC LIMIT ?"
        ))
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| play_of(row).map(|(play, _)| play))
            .collect()
    }

    /// The tracks a listener heard at least `min` times but not since `before`, most heard
    /// first.
    pub async fn heard_before(
        &self,
        user_id: &str,
        before: i64,
        min: i64,
        limit: i64,
    ) -> Result<Vec<TrackCount>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT track_id, COUNT(*) AS count, MAX(started_at) AS last_at FROM listener_plays \
             WHERE user_id = ? AND heard = 1 GROUP BY track_id HAVING MAX(started_at) < ? AND COUNT(*) >= ? \
             ORDER BY count DESC, track_id LIMIT ?",
        )
        .bind(user_id)
        .bind(before)
        .bind(min)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?)
    }

    /// Plays started per track and hour in `region` (every region when `None`), for hours
    /// in `from..to`.
    pub async fn region_hours(
        &self,
        region: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<HourPlays>, StoreError> {
        let query = match region {
            Some(region) => sqlx::query_as(
                "SELECT track_id, hour, starts FROM region_plays WHERE region = ? AND hour >= ? AND hour < ?",
            )
            .bind(region),
            None => sqlx::query_as(
                "SELECT track_id, hour, SUM(starts) AS starts FROM region_plays WHERE hour >= ? AND hour < ? \
                 GROUP BY track_id, hour",
            ),
        };
        Ok(query.bind(from).bind(to).fetch_all(self.db.pool()).await?)
    }

    /// The tracks heard in the same sessions as `track_id`, by how many listeners, most first.
    pub async fn listened_together(
        &self,
        track_id: &str,
        limit: i64,
    ) -> Result<Vec<TrackCount>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT other_id AS track_id, listeners AS count, 0 AS last_at FROM track_pairs \
             WHERE track_id = ? ORDER BY listeners DESC, other_id LIMIT ?",
        )
        .bind(track_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?)
    }
}

/// The plays of `play_id`'s listening session among `around` (sorted by start): the run of
/// plays around it whose consecutive starts are at most [`SESSION_GAP_MS`] apart, itself left
/// out.
pub(crate) fn session_of<'a>(
    around: &'a [(ListenerPlay, String)],
    play_id: &str,
) -> Vec<&'a (ListenerPlay, String)> {
    let Some(at) = around.iter().position(|(play, _)| play.play_id == play_id) else {
        return Vec::new();
    };
    let mut first = at;
    while first > 0 && around[first].0.started_at - around[first - 1].0.started_at <= SESSION_GAP_MS
    {
        first -= 1;
    }
    let mut last = at;
    while last + 1 < around.len()
        && around[last + 1].0.started_at - around[last].0.started_at <= SESSION_GAP_MS
    {
        last += 1;
    }
    (first..=last)
        .filter(|&index| index != at)
        .map(|index| &around[index])
        .collect()
}
