//! The inventory service's packages: what is on sale (public), and the administrator's
//! create, update and retire. A retired package is no longer sold, but subscriptions that
//! hold it keep it.

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;
use crate::auth::{AuthUser, MaybeAuthUser};
use crate::calendar::rfc3339;
use crate::error::{Error, ErrorBody, FieldError, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::store::{NewPackage, PackageRow, PackageUpdate, new_id};

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(list_packages, create_package))
        .routes(routes!(get_package, update_package))
        .routes(routes!(retire_package))
}

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

/// A new package.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePackage {
    name: String,
    #[serde(default)]
    description: String,
    /// Minor units, 0 or more.
    cost: i64,
    /// ISO 4217, three upper-case letters.
    currency: String,
    period: Period,
    /// 0 to 60.
    free_ads_per_hour: i64,
}

/// Package fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePackage {
    name: Option<String>,
    description: Option<String>,
    cost: Option<i64>,
    currency: Option<String>,
    period: Option<Period>,
    free_ads_per_hour: Option<i64>,
}

/// Listing options.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Include retired packages (administrators only).
    #[serde(default)]
    include_retired: bool,
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

/// Packages on sale, cheapest first.
#[utoipa::path(get, path = "/api/v1/packages", tag = "packages", params(ListQuery),
    responses((status = 200, body = [Package]), (status = 403, body = ErrorBody)))]
async fn list_packages(
    app: App,
    MaybeAuthUser(caller): MaybeAuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Package>>> {
    if query.include_retired {
        caller
            .ok_or_else(|| {
                Error::unauthenticated(
                    "missing_token",
                    "Log in as an administrator to see retired packages.",
                )
            })?
            .require_admin()?;
    }
    let rows = app.inventory.packages(query.include_retired).await?;
    Ok(Json(
        rows.into_iter()
            .map(Package::try_from)
            .collect::<Result<_>>()?,
    ))
}

/// One package, retired or not (a subscriber's package may have been retired).
#[utoipa::path(get, path = "/api/v1/packages/{id}", tag = "packages", params(("id" = String, Path)),
    responses((status = 200, body = Package), (status = 404, body = ErrorBody)))]
async fn get_package(app: App, ApiPath(id): ApiPath<String>) -> Result<Json<Package>> {
    let row = app
        .inventory
        .package(&id)
        .await?
        .ok_or_else(|| Error::not_found("package_not_found", "No such package."))?;
    Ok(Json(row.try_into()?))
}

/// Create a package (administrators only).
#[utoipa::path(post, path = "/api/v1/packages", tag = "packages", security(("bearer" = [])), request_body = CreatePackage,
    responses((status = 201, body = Package), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_package(
    app: App,
    caller: AuthUser,
    ApiJson(body): ApiJson<CreatePackage>,
) -> Result<(StatusCode, Json<Package>)> {
    caller.require_admin()?;
    validate(
        Some(&body.name),
        Some(&body.description),
        Some(body.cost),
        Some(&body.currency),
        Some(body.free_ads_per_hour),
    )?;
    let id = new_id();
    app.inventory
        .insert_package(
            &NewPackage {
                id: id.clone(),
                name: body.name,
                description: body.description,
                cost: body.cost,
                currency: body.currency,
                period: body.period.as_str().to_owned(),
                free_ads_per_hour: body.free_ads_per_hour,
            },
            app.clock.now_ms(),
        )
        .await?;
    let created = get_package(app, ApiPath(id)).await?;
    Ok((StatusCode::CREATED, created))
}

/// Change a package (administrators only). Subscriptions already paid keep their terms.
#[utoipa::path(patch, path = "/api/v1/packages/{id}", tag = "packages", security(("bearer" = [])), request_body = UpdatePackage,
    params(("id" = String, Path)),
    responses((status = 200, body = Package), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_package(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdatePackage>,
) -> Result<Json<Package>> {
    caller.require_admin()?;
    validate(
        body.name.as_deref(),
        body.description.as_deref(),
        body.cost,
        body.currency.as_deref(),
        body.free_ads_per_hour,
    )?;
    let update = PackageUpdate {
        name: body.name,
        description: body.description,
        cost: body.cost,
        currency: body.currency,
        period: body.period.map(|period| period.as_str().to_owned()),
        free_ads_per_hour: body.free_ads_per_hour,
    };
    if !app
        .inventory
        .update_package(&id, &update, app.clock.now_ms())
        .await?
    {
        return Err(Error::not_found("package_not_found", "No such package."));
    }
    get_package(app, ApiPath(id)).await
}

/// Stop selling a package (administrators only). Idempotent.
#[utoipa::path(post, path = "/api/v1/packages/{id}/retire", tag = "packages", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Package), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn retire_package(
    app: App,
    caller: AuthUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Package>> {
    caller.require_admin()?;
    if app.inventory.package(&id).await?.is_none() {
        return Err(Error::not_found("package_not_found", "No such package."));
    }
    app.inventory
        .retire_package(&id, app.clock.now_ms())
        .await?;
    get_package(app, ApiPath(id)).await
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
