//! The uploads' queries (Inventory DB: `uploads`).

use sqlx::{AnyExecutor, Row};

use crate::store::{StoreError, long_text};

/// One upload as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct UploadRow {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) track_id: String,
    pub(crate) length: i64,
    pub(crate) received: i64,
    pub(crate) status: String,
    pub(crate) created_at: i64,
}

pub(crate) const UPLOAD_COLUMNS: &str =
    "id, user_id, track_id, length, received, status, created_at";

/// One upload.
pub(crate) async fn upload<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
) -> Result<Option<UploadRow>, StoreError> {
    let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(db).await?)
}

/// Bytes a user's open and completed uploads take.
pub(crate) async fn bytes_in_use<'e>(
    db: impl AnyExecutor<'e>,
    user_id: &str,
) -> Result<i64, StoreError> {
    Ok(sqlx::query(
        "SELECT CAST(COALESCE(SUM(length), 0) AS SIGNED) AS used FROM uploads WHERE user_id = ? AND status IN ('open', 'complete')",
    )
    .bind(user_id)
    .fetch_one(db)
    .await?
    .try_get("used")?)
}

/// Inserts an open upload with its tus metadata (JSON).
pub(crate) async fn insert<'e>(
    db: impl AnyExecutor<'e>,
    row: &UploadRow,
    metadata: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO uploads (id, user_id, track_id, length, received, metadata, status, created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, 'open', ?, ?)",
    )
    .bind(&row.id)
    .bind(&row.user_id)
    .bind(&row.track_id)
    .bind(row.length)
    .bind(metadata)
    .bind(now)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

/// Moves an upload's offset from `offset` to `received` (unchanged if it moved meanwhile).
pub(crate) async fn record_received<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    offset: i64,
    received: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE uploads SET received = ?, updated_at = ? WHERE id = ? AND received = ?")
        .bind(received)
        .bind(now)
        .bind(id)
        .bind(offset)
        .execute(db)
        .await?;
    Ok(())
}

/// An upload's tus metadata, as the JSON text it was stored as.
pub(crate) async fn metadata<'e>(db: impl AnyExecutor<'e>, id: &str) -> Result<String, StoreError> {
    let row = sqlx::query("SELECT metadata FROM uploads WHERE id = ?")
        .bind(id)
        .fetch_one(db)
        .await?;
    Ok(long_text(&row, "metadata")?)
}

/// Marks an open upload complete; `false` if it was not open (completed or terminated).
pub(crate) async fn claim_complete<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let claimed = sqlx::query(
        "UPDATE uploads SET status = 'complete', updated_at = ? WHERE id = ? AND status = 'open'",
    )
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// Terminates an open upload.
pub(crate) async fn terminate<'e>(
    db: impl AnyExecutor<'e>,
    id: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE uploads SET status = 'terminated', updated_at = ? WHERE id = ? AND status = 'open'",
    )
    .bind(now)
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Open uploads that have every byte but were last touched before `before`: their completion
/// was interrupted.
pub(crate) async fn interrupted<'e>(
    db: impl AnyExecutor<'e>,
    before: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM uploads WHERE status = 'open' AND received = length AND updated_at < ?",
    )
    .bind(before)
    .fetch_all(db)
    .await?;
    rows.iter().map(|row| Ok(row.try_get("id")?)).collect()
}
