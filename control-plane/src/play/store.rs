//! The play API's queries (User DB): `listening` (each listener's listening clock, which is
//! also every play's lock), `plays` and `ad_impressions`.

use sqlx::{AnyExecutor, Row};

use crate::store::{StoreError, is_unique_violation, long_text};

/// A listener's listening clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listening {
    /// Track time heard in all, ms.
    pub listened_ms: i64,
    /// The listening clock at the last break (`None`: never had one).
    pub last_break_at_ms: Option<i64>,
    /// Wall clock of the latest play (`None`: never played).
    pub last_play_at: Option<i64>,
}

/// Creates the listener's `listening` row if there is none.
pub(crate) async fn ensure_listening<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO listening (user_id, listened_ms, last_break_at_ms, last_play_at, ads_served, updated_at) VALUES (?, 0, NULL, NULL, 0, ?)",
    )
    .bind(user_id)
    .bind(now)
    .execute(db)
    .await;
    match inserted {
        Err(error) if !is_unique_violation(&error) => Err(error.into()),
        _ => Ok(()),
    }
}

/// Locks the listener's `listening` row for the rest of the transaction (by writing it), so
/// that two plays or events of one listener decide one after the other.
pub(crate) async fn lock_listening<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE listening SET updated_at = ? WHERE user_id = ?")
        .bind(now)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(())
}

/// The listener's listening clock and how many ads they were served in all.
pub(crate) async fn listening<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
) -> Result<(Listening, i64), StoreError> {
    let row = sqlx::query(
        "SELECT listened_ms, last_break_at_ms, last_play_at, ads_served FROM listening WHERE user_id = ?",
    )
    .bind(user_id)
    .fetch_one(db)
    .await?;
    Ok((
        Listening {
            listened_ms: row.try_get("listened_ms")?,
            last_break_at_ms: row.try_get("last_break_at_ms")?,
            last_play_at: row.try_get("last_play_at")?,
        },
        row.try_get("ads_served")?,
    ))
}

/// After a play: when it began, the listening clock at the last break, ads served in all.
pub(crate) async fn record_play_start<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
    now: i64,
    last_break_at_ms: Option<i64>,
    ads_served: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE listening SET last_play_at = ?, last_break_at_ms = ?, ads_served = ? WHERE user_id = ?",
    )
    .bind(now)
    .bind(last_break_at_ms)
    .bind(ads_served)
    .bind(user_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Adds heard track time to the listener's clock.
pub(crate) async fn credit_listening<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
    credited_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE listening SET listened_ms = listened_ms + ? WHERE user_id = ?")
        .bind(credited_ms)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Ads served to the listener since `since`.
pub(crate) async fn impressions_since<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
    since: i64,
) -> Result<i64, StoreError> {
    Ok(
        sqlx::query("SELECT COUNT(*) AS n FROM ad_impressions WHERE user_id = ? AND served_at > ?")
            .bind(user_id)
            .bind(since)
            .fetch_one(db)
            .await?
            .try_get("n")?,
    )
}

/// An ad served before a play.
pub(crate) struct Impression<'a> {
    pub(crate) id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) play_id: &'a str,
    pub(crate) ad_track_id: &'a str,
    pub(crate) listened_ms: i64,
    pub(crate) reason: &'a str,
    pub(crate) served_at: i64,
}

/// Records an ad impression.
pub(crate) async fn insert_impression<'e>(
    db: impl AnyExecutor<'e>,
    impression: &Impression<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ad_impressions (id, user_id, play_id, ad_track_id, listened_ms, reason, served_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(impression.id)
    .bind(impression.user_id)
    .bind(impression.play_id)
    .bind(impression.ad_track_id)
    .bind(impression.listened_ms)
    .bind(impression.reason)
    .bind(impression.served_at)
    .execute(db)
    .await?;
    Ok(())
}

/// A play as it is served.
pub(crate) struct NewPlay<'a> {
    pub(crate) id: &'a str,
    pub(crate) user_id: &'a str,
    pub(crate) track_id: &'a str,
    pub(crate) format: &'a str,
    pub(crate) device: &'a str,
    pub(crate) node_id: &'a str,
    pub(crate) region: &'a str,
    /// The play's document (nodes, pieces), JSON.
    pub(crate) document: &'a str,
    pub(crate) ads_ms: i64,
    pub(crate) duration_ms: i64,
    pub(crate) expires_at: i64,
    pub(crate) now: i64,
}

/// Records a served play.
pub(crate) async fn insert_play<'e>(
    db: impl AnyExecutor<'e>,
    play: &NewPlay<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO plays (id, user_id, track_id, format, device, node_id, region, document, ads_ms, duration_ms, position_ms, listened_ms, state, expires_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 'served', ?, ?, ?)",
    )
    .bind(play.id)
    .bind(play.user_id)
    .bind(play.track_id)
    .bind(play.format)
    .bind(play.device)
    .bind(play.node_id)
    .bind(play.region)
    .bind(play.document)
    .bind(play.ads_ms)
    .bind(play.duration_ms)
    .bind(play.expires_at)
    .bind(play.now)
    .bind(play.now)
    .execute(db)
    .await?;
    Ok(())
}

/// A play as play events read it.
pub(crate) struct PlayRow {
    pub(crate) track_id: String,
    pub(crate) format: String,
    pub(crate) device: String,
    pub(crate) node_id: String,
    pub(crate) region: String,
    pub(crate) ads_ms: i64,
    pub(crate) duration_ms: i64,
    pub(crate) listened_ms: i64,
    pub(crate) state: String,
    pub(crate) created_at: i64,
}

/// A play of `user_id`'s.
pub(crate) async fn play_of<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    user_id: &str,
) -> Result<Option<PlayRow>, StoreError> {
    let row = sqlx::query(
        "SELECT track_id, format, device, node_id, region, ads_ms, duration_ms, listened_ms, state, created_at FROM plays WHERE id = ? AND user_id = ?",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    row.map(|row| {
        Ok(PlayRow {
            track_id: row.try_get("track_id")?,
            format: row.try_get("format")?,
            device: row.try_get("device")?,
            node_id: row.try_get("node_id")?,
            region: row.try_get("region")?,
            ads_ms: row.try_get("ads_ms")?,
            duration_ms: row.try_get("duration_ms")?,
            listened_ms: row.try_get("listened_ms")?,
            state: row.try_get("state")?,
            created_at: row.try_get("created_at")?,
        })
    })
    .transpose()
}

/// A play's document (JSON), its expiry and its start, for its per-play manifests.
pub(crate) struct PlayDocumentRow {
    pub(crate) document: String,
    pub(crate) expires_at: i64,
    pub(crate) created_at: i64,
}

/// A play's document.
pub(crate) async fn play_document<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
) -> Result<Option<PlayDocumentRow>, StoreError> {
    let row = sqlx::query("SELECT document, expires_at, created_at FROM plays WHERE id = ?")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.map(|row| {
        Ok(PlayDocumentRow {
            document: long_text(&row, "document")?,
            expires_at: row.try_get("expires_at")?,
            created_at: row.try_get("created_at")?,
        })
    })
    .transpose()
}

/// Moves a play to `state` at `position_ms` with `listened_ms` heard.
pub(crate) async fn record_progress<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    position_ms: i64,
    listened_ms: i64,
    state: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE plays SET position_ms = ?, listened_ms = ?, state = ?, updated_at = ? WHERE id = ?",
    )
    .bind(position_ms)
    .bind(listened_ms)
    .bind(state)
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}
