//! The accounts' queries (User DB: `users`, `sessions`).

use sqlx::Row;

use crate::store::{StoreError, UserStore, inserted};

/// A user as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    /// UUID.
    pub id: String,
    /// Normalised (lower-case) email.
    pub email: String,
    /// Given name, exactly as entered.
    pub first_name: String,
    /// Family name, exactly as entered.
    pub last_name: String,
    /// E.164 mobile number.
    pub mobile: String,
    /// Postal address.
    pub address: String,
    /// PHC string of the argon2id hash.
    pub password_hash: String,
    /// `listener`, `artist` or `admin`.
    pub role: String,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// A user to insert.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// UUID.
    pub id: String,
    /// Normalised email.
    pub email: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// E.164 mobile.
    pub mobile: String,
    /// Postal address.
    pub address: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role name.
    pub role: String,
    /// Unix ms.
    pub now: i64,
}

/// Profile fields to change; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct ProfileUpdate {
    /// New given name.
    pub first_name: Option<String>,
    /// New family name.
    pub last_name: Option<String>,
    /// New E.164 mobile.
    pub mobile: Option<String>,
    /// New address.
    pub address: Option<String>,
}

/// A session as stored. The token itself is never stored, only its SHA-256.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct SessionRow {
    /// UUID.
    pub id: String,
    /// Hex SHA-256 of the bearer token.
    pub token_hash: String,
    /// Owner.
    pub user_id: String,
    /// Unix ms of the login.
    pub created_at: i64,
    /// Unix ms of the last request (updated at most once a minute).
    pub last_seen_at: i64,
    /// Unix ms of the absolute expiry.
    pub expires_at: i64,
}

/// A session to insert.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// UUID.
    pub id: String,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// Owner.
    pub user_id: String,
    /// Unix ms.
    pub now: i64,
    /// Unix ms of the absolute expiry.
    pub expires_at: i64,
    /// Where the login came from, for the user's session list.
    pub client_addr: String,
    /// The client's `User-Agent`, truncated.
    pub user_agent: String,
}

pub(crate) const USER_COLUMNS: &str = "id, email, first_name, last_name, mobile, address, password_hash, role, created_at, updated_at";
pub(crate) const SESSION_COLUMNS: &str =
    "id, token_hash, user_id, created_at, last_seen_at, expires_at";

impl UserStore {
    /// Inserts a user. `Ok(false)` when the email is taken (the unique key decides, so two
    /// concurrent sign-ups with one email create exactly one account).
    pub async fn insert_user(&self, user: &NewUser) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO users (id, email, first_name, last_name, mobile, address, password_hash, role, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.first_name)
        .bind(&user.last_name)
        .bind(&user.mobile)
        .bind(&user.address)
        .bind(&user.password_hash)
        .bind(&user.role)
        .bind(user.now)
        .bind(user.now)
        .execute(self.db.pool())
        .await;
        inserted(result)
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?)
    }

    /// The user with this (normalised) email.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?");
        Ok(sqlx::query_as(&sql)
            .bind(email)
            .fetch_optional(self.db.pool())
            .await?)
    }

    /// Whether any user has the given role.
    pub async fn role_exists(&self, role: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = ?")
            .bind(role)
            .fetch_one(self.db.pool())
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// Applies a profile update; `Ok(false)` when the user no longer exists.
    pub async fn update_profile(
        &self,
        id: &str,
        update: &ProfileUpdate,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE users SET first_name = COALESCE(?, first_name), last_name = COALESCE(?, last_name), \
             mobile = COALESCE(?, mobile), address = COALESCE(?, address), updated_at = ? WHERE id = ?",
        )
        .bind(update.first_name.clone())
        .bind(update.last_name.clone())
        .bind(update.mobile.clone())
        .bind(update.address.clone())
        .bind(now)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Sets the role of a user (administration, bootstrap).
    pub async fn set_role(&self, id: &str, role: &str, now: i64) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE users SET role = ?, updated_at = ? WHERE id = ?")
            .bind(role)
            .bind(now)
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Replaces the password hash and revokes every session of the user, in one transaction.
    /// Returns the token hashes of the revoked sessions, for cache invalidation.
    pub async fn change_password(
        &self,
        id: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.db.begin().await?;
        sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
            .bind(password_hash)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let revoked = session_hashes(&mut tx, id).await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// Deletes a user with their sessions and playlist ownership records, in one transaction.
    /// Returns the ids of the playlists they owned (whose contents in the Inventory DB the
    /// caller removes next) and the revoked sessions' token hashes.
    pub async fn delete_user(&self, id: &str) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let mut tx = self.db.begin().await?;
        let playlists: Vec<String> =
            sqlx::query("SELECT playlist_id FROM playlist_user_info WHERE user_id = ?")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>("playlist_id"))
                .collect::<Result<_, _>>()?;
        let sessions = session_hashes(&mut tx, id).await?;
        for table in ["sessions", "playlist_user_info"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = ?"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((playlists, sessions))
    }

    /// Stores a new session.
    pub async fn insert_session(&self, session: &NewSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, token_hash, user_id, created_at, last_seen_at, expires_at, client_addr, user_agent) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&session.id)
        .bind(&session.token_hash)
        .bind(&session.user_id)
        .bind(session.now)
        .bind(session.now)
        .bind(session.expires_at)
        .bind(&session.client_addr)
        .bind(&session.user_agent)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The session whose token hashes to `token_hash`.
    pub async fn session_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<SessionRow>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = ?");
        Ok(sqlx::query_as(&sql)
            .bind(token_hash)
            .fetch_optional(self.db.pool())
            .await?)
    }

    /// Records use of a session (its idle expiry restarts).
    pub async fn touch_session(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Deletes one session (log-out); `Ok(false)` if it was already gone.
    pub async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(self.db.pool())
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Deletes sessions past their absolute expiry or idle for longer than `idle_ms`.
    pub async fn delete_expired_sessions(&self, now: i64, idle_ms: i64) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at <= ?")
            .bind(now)
            .bind(now - idle_ms)
            .execute(self.db.pool())
            .await?;
        Ok(result.rows_affected())
    }
}

pub(crate) async fn session_hashes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query("SELECT token_hash FROM sessions WHERE user_id = ?")
        .bind(user_id)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows
        .iter()
        .map(|row| row.try_get::<String, _>("token_hash"))
        .collect::<Result<_, _>>()?)
}
