//! The inventory service's packages: what is on sale (public), and the administrator's
//! create, update and retire. A retired package is no longer sold, but subscriptions that
//! hold it keep it.

mod http;
pub mod store;

pub(crate) use http::routes;

use serde::Serialize;
use utoipa::ToSchema;

use crate::calendar::rfc3339;
use crate::error::{Error, FieldError, Result};
use crate::packages::store::{NewPackage, PackageRow};
use crate::store::new_id;

pub use crate::calendar::Period;

/// A package.
#[derive(Debug, Serialize, ToSchema)]
pub struct Package {
    id: String,
    name: String,
    description: String,
    /// Price per period in the currency's minor unit (cents): 999 is 9.99.
    cost: i64,
    /// ISO 4217 currency code.
    currency: String,
    /// The price for people, e.g. `9.99 EUR`.
    price: String,
    period: Period,
    /// Ads a listener on this package hears per hour of listening; 0 on paid packages.
    free_ads_per_hour: i64,
    /// Whether it is no longer sold.
    retired: bool,
    retired_at: Option<String>,
    created_at: String,
    updated_at: String,
}

impl TryFrom<PackageRow> for Package {
    type Error = Error;

    fn try_from(row: PackageRow) -> Result<Self> {
        let period = Period::parse(&row.period).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "package {} has unknown period {:?}",
                row.id,
                row.period
            ))
        })?;
        Ok(Self {
            price: format!("{}.{:02} {}", row.cost / 100, row.cost % 100, row.currency),
            retired: row.retired_at.is_some(),
            retired_at: row.retired_at.map(rfc3339),
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
            id: row.id,
            name: row.name,
            description: row.description,
            cost: row.cost,
            currency: row.currency,
            period,
            free_ads_per_hour: row.free_ads_per_hour,
        })
    }
}

fn validate(
    name: Option<&str>,
    description: Option<&str>,
    cost: Option<i64>,
    currency: Option<&str>,
    ads: Option<i64>,
) -> Result<()> {
    let mut errors = Vec::new();
    if let Some(name) = name
        && (name.trim().is_empty() || name.chars().count() > 100)
    {
        errors.push(FieldError::new(
            "name",
            "invalid",
            "Between 1 and 100 characters.",
        ));
    }
    if description.is_some_and(|text| text.chars().count() > 1000) {
        errors.push(FieldError::new(
            "description",
            "too_long",
            "At most 1000 characters.",
        ));
    }
    if cost.is_some_and(|cost| !(0..=100_000_000).contains(&cost)) {
        errors.push(FieldError::new(
            "cost",
            "invalid",
            "Between 0 and 100 000 000 minor units.",
        ));
    }
    if currency.is_some_and(|code| code.len() != 3 || !code.chars().all(|c| c.is_ascii_uppercase()))
    {
        errors.push(FieldError::new(
            "currency",
            "invalid",
            "An ISO 4217 code such as EUR.",
        ));
    }
    if ads.is_some_and(|ads| !(0..=60).contains(&ads)) {
        errors.push(FieldError::new(
            "free_ads_per_hour",
            "invalid",
            "Between 0 and 60.",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

/// The packages a fresh installation sells: one free with ads, two paid without.
pub(crate) fn default_packages() -> Vec<NewPackage> {
    let package = |name: &str, description: &str, cost, period: Period, ads| NewPackage {
        id: new_id(),
        name: name.to_owned(),
        description: description.to_owned(),
        cost,
        currency: "EUR".to_owned(),
        period: period.as_str().to_owned(),
        free_ads_per_hour: ads,
    };
    vec![
        package(
            "Free",
            "Every track, with a few ads each hour.",
            0,
            Period::Month,
            4,
        ),
        package("Premium", "Every track, no ads.", 999, Period::Month, 0),
        package(
            "Premium Yearly",
            "Every track, no ads, two months free.",
            9990,
            Period::Year,
            0,
        ),
    ]
}
