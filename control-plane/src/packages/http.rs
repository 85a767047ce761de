//! Packages on HTTP: the public list and the administrator's create, update and retire.

use axum::Json;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::store::{NewPackage, PackageUpdate};
use super::{Package, validate};
use crate::App;
use crate::auth::{AuthUser, MaybeAuthUser};
use crate::error::{Error, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::store::new_id;

pub use crate::calendar::Period;

pub(crate) fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(list_packages, create_package))
        .routes(routes!(get_package, update_package))
        .routes(routes!(retire_package))
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
