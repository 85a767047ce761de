//! Storage: the User DB and the Inventory DB of the product spec, each an SQLite file by
//! default or a MySQL/MariaDB server when its URL says `mysql://`. The two databases may live
//! on different servers, so nothing here ever joins across them.
//!
//! Both dialects go through sqlx's `Any` driver, so one set of queries serves both; the few
//! statements whose syntax differs ask [`Dialect`]. Integers are `BIGINT`, timestamps are
//! Unix milliseconds, ids are UUID strings, and booleans are 0/1 integers, which every
//! backend stores and decodes alike.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Once;

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

static USER_SQLITE: Migrator = sqlx::migrate!("migrations/user/sqlite");
static USER_MYSQL: Migrator = sqlx::migrate!("migrations/user/mysql");
static INVENTORY_SQLITE: Migrator = sqlx::migrate!("migrations/inventory/sqlite");
static INVENTORY_MYSQL: Migrator = sqlx::migrate!("migrations/inventory/mysql");
static CATALOG_SQLITE: Migrator = sqlx::migrate!("migrations/catalog/sqlite");
static ANALYTICS_SQLITE: Migrator = sqlx::migrate!("migrations/analytics/sqlite");

/// Queries on the User DB. Each service's `store` module adds the queries on its own tables
/// (`accounts::store`: users and sessions; `playlists::store`: playlist ownership).
#[derive(Debug, Clone)]
pub struct UserStore {
    pub(crate) db: Database,
}

impl UserStore {
    /// Wraps a connected User DB.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

/// Queries on the Inventory DB. Each service's `store` module adds the queries on its own
/// tables (`packages::store`, `catalog::store`: tracks, `playlists::store`: contents).
#[derive(Debug, Clone)]
pub struct InventoryStore {
    pub(crate) db: Database,
}

impl InventoryStore {
    /// Wraps a connected Inventory DB.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached (connection refused, pool exhausted, I/O error).
    /// Nothing was changed; the caller may retry.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database answered with an error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row holds a value the code does not understand (a hand-edited database).
    #[error("unexpected value in the database: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Self::Unavailable(error),
            other => Self::Database(other),
        }
    }
}

/// Whether `error` is a unique-key violation (a duplicate email, a duplicate row).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The outcome of an insert guarded by a unique key: `true` when the row went in, `false`
/// when the key was taken; any other failure is an error.
pub fn inserted<T>(result: Result<T, sqlx::Error>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(error) if is_unique_violation(&error) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Whether a transaction failed only because another one held a lock it needed
/// (MySQL deadlock or lock wait timeout, SQLite busy), so that running it again may succeed.
fn is_lock_conflict(error: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(db)) = error else {
        return false;
    };
    matches!(
        db.code().as_deref(),
        Some("1213" | "1205" | "40001" | "5" | "517" | "261")
    ) || db.message().contains("database is locked")
}

/// Runs `attempt` again (up to five times, with a short pause) while it fails on a lock
/// conflict. Each attempt must be a whole transaction, so a retry never repeats half of one.
pub async fn retry_on_conflict<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut tries = 0u32;
    loop {
        match attempt().await {
            Err(error) if is_lock_conflict(&error) && tries < 5 => {
                tries += 1;
                metrics::counter!("cadenza_db_lock_conflicts_total").increment(1);
                tokio::time::sleep(Duration::from_millis(5 << tries)).await;
            }
            other => return other,
        }
    }
}

/// Which SQL dialect a database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (the embedded default).
    Sqlite,
    /// MySQL or MariaDB.
    MySql,
}

/// Which of the two SQL databases a connection is for; picks the migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// Users, sessions, subscriptions, playlist ownership.
    User,
    /// Packages, tracks, playlist contents.
    Inventory,
    /// The catalog's embedded store (SQLite only; see `catalog`).
    Catalog,
    /// The analytics' embedded store (SQLite only; see `analytics`).
    Analytics,
}

/// A connection pool to one of the SQL databases, with its dialect.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    dialect: Dialect,
    /// Tells pools apart (two handles to one pool share it).
    id: Arc<str>,
}

impl Database {
    /// Connects to `url` and brings the schema of `kind` up to date.
    pub async fn connect(url: &str, kind: DatabaseKind) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let url = url.replacen("mariadb://", "mysql://", 1);
        let dialect = if url.starts_with("mysql://") {
            Dialect::MySql
        } else {
            Dialect::Sqlite
        };
        if dialect == Dialect::Sqlite {
            ensure_sqlite_dir(&url)
                .map_err(|error| StoreError::Unavailable(sqlx::Error::Io(error)))?;
        }
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if dialect == Dialect::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL lets readers run beside the writer; the busy timeout makes a
                        // second writer wait for the lock instead of failing at once.
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                            .await?;
                    } else {
                        conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let migrator = match (kind, dialect) {
            (DatabaseKind::User, Dialect::Sqlite) => &USER_SQLITE,
            (DatabaseKind::User, Dialect::MySql) => &USER_MYSQL,
            (DatabaseKind::Inventory, Dialect::Sqlite) => &INVENTORY_SQLITE,
            (DatabaseKind::Inventory, Dialect::MySql) => &INVENTORY_MYSQL,
            (DatabaseKind::Catalog, Dialect::Sqlite) => &CATALOG_SQLITE,
            (DatabaseKind::Analytics, Dialect::Sqlite) => &ANALYTICS_SQLITE,
            (DatabaseKind::Catalog | DatabaseKind::Analytics, Dialect::MySql) => {
                return Err(StoreError::Unavailable(sqlx::Error::Configuration(
                    "the catalog's and the analytics' embedded stores are SQLite".into(),
                )));
            }
        };
        migrator.run(&pool).await?;
        Ok(Self {
            pool,
            dialect,
            id: new_id().into(),
        })
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Whether `other` is a handle to the same pool.
    pub fn same_pool(&self, other: &Database) -> bool {
        self.id == other.id
    }

    /// The dialect the database speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Answers when the database answers a trivial query (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection (at shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn ensure_sqlite_dir(url: &str) -> std::io::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match std::path::Path::new(path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent),
        _ => Ok(()),
    }
}

pub use telemetry::Clock;

/// A fresh, time-ordered id (UUID v7).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A nullable long-text column: `None` for NULL (see [`long_text`]).
pub fn optional_long_text(
    row: &sqlx::any::AnyRow,
    column: &str,
) -> Result<Option<String>, sqlx::Error> {
    use sqlx::Row as _;
    match row.try_get::<Option<String>, _>(column) {
        Ok(text) => Ok(text),
        Err(_) => {
            let bytes: Option<Vec<u8>> = row.try_get(column)?;
            bytes
                .map(|bytes| {
                    String::from_utf8(bytes).map_err(|error| sqlx::Error::ColumnDecode {
                        index: column.to_owned(),
                        source: Box::new(error),
                    })
                })
                .transpose()
        }
    }
}

/// An enum a column stores as text: every variant with its text, and what it is called in the
/// error for a row holding something else.
pub trait TextColumn: Copy + 'static {
    /// Every variant.
    const ALL: &'static [Self];
    /// What the column holds, for errors (`track status`).
    const WHAT: &'static str;

    /// The column's text.
    fn as_str(self) -> &'static str;

    /// The column's text read back; anything else is a corrupt row.
    fn parse(text: &str) -> Result<Self, StoreError> {
        Self::ALL
            .iter()
            .copied()
            .find(|value| value.as_str() == text)
            .ok_or_else(|| StoreError::Corrupt(format!("{} {text:?}", Self::WHAT)))
    }
}

/// Reads a JSON long-text column: `None` when it is NULL, and [`StoreError::Corrupt`] (never a
/// silent empty value) when what it holds does not parse as a `T`.
pub fn json_column<T: serde::de::DeserializeOwned>(
    row: &sqlx::any::AnyRow,
    column: &str,
) -> Result<Option<T>, StoreError> {
    optional_long_text(row, column)?
        .map(|text| {
            serde_json::from_str(&text)
                .map_err(|error| StoreError::Corrupt(format!("column {column}: {error}")))
        })
        .transpose()
}

/// A value as the JSON text a column stores. Cadenza's column types (strings, numbers, lists,
/// maps with string keys) always serialise.
pub fn to_json_column<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("column values serialise to JSON")
}

/// Reads a long-text column (`TEXT`/`MEDIUMTEXT`) as a string. SQLite reports such columns
/// as text, while sqlx's `Any` driver sees MySQL's as BLOBs; both hold UTF-8.
pub fn long_text(row: &sqlx::any::AnyRow, column: &str) -> Result<String, sqlx::Error> {
    use sqlx::Row as _;
    match row.try_get::<String, _>(column) {
        Ok(text) => Ok(text),
        Err(_) => {
            let bytes: Vec<u8> = row.try_get(column)?;
            String::from_utf8(bytes).map_err(|error| sqlx::Error::ColumnDecode {
                index: column.to_owned(),
                source: Box::new(error),
            })
        }
    }
}

/// `?, ?, ?` with `n` placeholders, for `IN (…)` lists.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}
