//! Packages: the public list, the default seed, and the administrator's changes.

use axum::http::StatusCode;
use serde_json::json;

use crate::on_both_backends;
use crate::support::{TestApp, assert_error};

on_both_backends!(
    default_packages_are_seeded,
    admins_manage_packages,
    package_validation
);

async fn default_packages_are_seeded(t: &TestApp) {
    let reply = t.get("/api/v1/packages", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let packages = reply.body.as_array().unwrap();
    assert_eq!(packages.len(), 3);
    let free: Vec<_> = packages.iter().filter(|p| p["cost"] == 0).collect();
    let paid: Vec<_> = packages
        .iter()
        .filter(|p| p["cost"].as_i64().unwrap() > 0)
        .collect();
    assert_eq!(free.len(), 1);
    assert!(free[0]["free_ads_per_hour"].as_i64().unwrap() > 0);
    assert!(paid.len() >= 2);
    assert!(paid.iter().all(|p| p["free_ads_per_hour"] == 0));
    assert_eq!(packages[1]["price"], "9.99 EUR");
    assert!(
        packages
            .iter()
            .all(|p| p["currency"] == "EUR" && p["retired"] == false)
    );
}

async fn admins_manage_packages(t: &TestApp) {
    let admin = t.admin().await;
    let listener = t.user("pat@example.com").await;
    let body = json!({"name": "Family", "description": "Six accounts", "cost": 1499, "currency": "EUR", "period": "month", "free_ads_per_hour": 0});

    let anonymous = t.post("/api/v1/packages", None, body.clone()).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let denied = t
        .post("/api/v1/packages", Some(&listener), body.clone())
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    let created = t.post("/api/v1/packages", Some(&admin), body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["price"], "14.99 EUR");

    let updated = t
        .patch(
            &format!("/api/v1/packages/{id}"),
            Some(&admin),
            json!({"cost": 1599, "period": "year"}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.raw);
    assert_eq!(updated.body["cost"], 1599);
    assert_eq!(updated.body["period"], "year");
    assert_eq!(updated.body["name"], "Family");

    let retired = t
        .post(&format!("/api/v1/packages/{id}/retire"), Some(&admin), None)
        .await;
    assert_eq!(retired.status, StatusCode::OK);
    assert_eq!(retired.body["retired"], true);
    let again = t
        .post(&format!("/api/v1/packages/{id}/retire"), Some(&admin), None)
        .await;
    assert_eq!(
        again.body["retired_at"], retired.body["retired_at"],
        "retiring is idempotent"
    );

    let on_sale = t.get("/api/v1/packages", None).await;
    assert!(
        on_sale
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["id"] != id.as_str()),
        "retired packages are not sold"
    );
    let direct = t.get(&format!("/api/v1/packages/{id}"), None).await;
    assert_eq!(
        direct.status,
        StatusCode::OK,
        "subscribers can still read their package"
    );

    let all = t
        .get("/api/v1/packages?include_retired=true", Some(&admin))
        .await;
    assert_eq!(all.body.as_array().unwrap().len(), 4);
    let sneaky = t.get("/api/v1/packages?include_retired=true", None).await;
    assert_eq!(sneaky.status, StatusCode::UNAUTHORIZED);
    let listener_view = t
        .get("/api/v1/packages?include_retired=true", Some(&listener))
        .await;
    assert_eq!(listener_view.status, StatusCode::FORBIDDEN);

    let missing = t
        .patch("/api/v1/packages/nope", Some(&admin), json!({"cost": 1}))
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "package_not_found");
}

async fn package_validation(t: &TestApp) {
    let admin = t.admin().await;
    let body = json!({"name": "", "cost": -1, "currency": "eur", "period": "month", "free_ads_per_hour": 99});
    let reply = t.post("/api/v1/packages", Some(&admin), body).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["error"]["fields"].as_array().unwrap().len(), 4);
    let period = t
        .post("/api/v1/packages", Some(&admin), json!({"name": "X", "cost": 1, "currency": "EUR", "period": "fortnight", "free_ads_per_hour": 0}))
        .await;
    assert_eq!(period.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(period.body["error"]["fields"][0]["field"], "period");
    assert_eq!(
        t.get("/api/v1/packages", None)
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        3
    );
}
