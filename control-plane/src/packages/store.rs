//! The packages' queries (Inventory DB, `packages` table).

use sqlx::Row;

use crate::store::{InventoryStore, StoreError};

/// A package as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PackageRow {
    /// UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Description for the shop page.
    pub description: String,
    /// Price per period in the currency's minor unit.
    pub cost: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `week`, `month` or `year`.
    pub period: String,
    /// Ads a listener on this package hears per hour.
    pub free_ads_per_hour: i64,
    /// Unix ms when it stopped being sold; `None` while on sale.
    pub retired_at: Option<i64>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub updated_at: i64,
}

/// A package to insert.
#[derive(Debug, Clone)]
pub struct NewPackage {
    /// UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Minor units.
    pub cost: i64,
    /// ISO 4217.
    pub currency: String,
    /// Billing period.
    pub period: String,
    /// Ads per hour.
    pub free_ads_per_hour: i64,
}

/// Package fields to change; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct PackageUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New price.
    pub cost: Option<i64>,
    /// New currency.
    pub currency: Option<String>,
    /// New period.
    pub period: Option<String>,
    /// New ads per hour.
    pub free_ads_per_hour: Option<i64>,
}

pub(crate) const PACKAGE_COLUMNS: &str = "id, name, description, cost, currency, period, free_ads_per_hour, retired_at, created_at, updated_at";

impl InventoryStore {
    // ---- Packages ------------------------------------------------------------------------

    /// Packages, cheapest first; retired ones only when asked.
    pub async fn packages(&self, include_retired: bool) -> Result<Vec<PackageRow>, StoreError> {
        let filter = if include_retired {
            ""
        } else {
            "WHERE retired_at IS NULL"
        };
        let sql =
            format!("SELECT {PACKAGE_COLUMNS} FROM packages {filter} ORDER BY cost, name, id");
        Ok(sqlx::query_as(&sql).fetch_all(self.db.pool()).await?)
    }

    /// One package, retired or not.
    pub async fn package(&self, id: &str) -> Result<Option<PackageRow>, StoreError> {
        let sql = format!("SELECT {PACKAGE_COLUMNS} FROM packages WHERE id = ?");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?)
    }

    /// How many packages exist, retired included.
    pub async fn package_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM packages")
            .fetch_one(self.db.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Inserts a package.
    pub async fn insert_package(&self, package: &NewPackage, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO packages (id, name, description, cost, currency, period, free_ads_per_hour, retired_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
        )
        .bind(&package.id)
        .bind(&package.name)
        .bind(&package.description)
        .bind(package.cost)
        .bind(&package.currency)
        .bind(&package.period)
        .bind(package.free_ads_per_hour)
        .bind(now)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Applies an update; `Ok(false)` when there is no such package.
    pub async fn update_package(
        &self,
        id: &str,
        update: &PackageUpdate,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE packages SET name = COALESCE(?, name), description = COALESCE(?, description), \
             cost = COALESCE(?, cost), currency = COALESCE(?, currency), period = COALESCE(?, period), \
             free_ads_per_hour = COALESCE(?, free_ads_per_hour), updated_at = ? WHERE id = ?",
        )
        .bind(update.name.clone())
        .bind(update.description.clone())
        .bind(update.cost)
        .bind(update.currency.clone())
        .bind(update.period.clone())
        .bind(update.free_ads_per_hour)
        .bind(now)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Takes a package off sale (idempotent: the first retirement time stays).
    pub async fn retire_package(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE packages SET retired_at = COALESCE(retired_at, ?), updated_at = ? WHERE id = ?",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}
