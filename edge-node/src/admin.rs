//! The admin port: the shared `/metrics`, `/healthz` and `/readyz`, plus an authenticated
//! purge by path or prefix.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq as _;
use telemetry::Readiness;

use crate::engine::Engine;

#[derive(Debug, Deserialize)]
struct PurgeQuery {
    path: Option<String>,
    prefix: Option<String>,
}

/// The admin router.
pub fn router(engine: Engine, readiness: Readiness) -> Router {
    telemetry::admin_router("edge-node", readiness).merge(
        Router::new()
            .route("/purge", post(purge))
            .with_state(engine),
    )
}

fn problem(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"status": status.as_u16(), "code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

async fn purge(
    State(engine): State<Engine>,
    headers: HeaderMap,
    Query(query): Query<PurgeQuery>,
) -> Response {
    let Some(expected) = &engine.config().purge_key else {
        return problem(
            StatusCode::FORBIDDEN,
            "purge_disabled",
            "no purge_key is configured",
        );
    };
    let authorised = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())));
    if !authorised {
        return problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "present the purge key as a bearer token",
        );
    }
    let (target, prefix) = match (query.path, query.prefix) {
        (Some(path), None) => (path, false),
        (None, Some(prefix)) => (prefix, true),
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad_purge",
                "give exactly one of ?path=/… or ?prefix=/…",
            );
        }
    };
    let (path, query_part) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.clone(), None),
    };
    let Ok(canonical) = url_token::canonical_path(&path) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "not an acceptable path",
        );
    };
    let key = match query_part {
        Some(query) => format!("{canonical}?{query}"),
        None => canonical,
    };
    let removed = engine.cache().purge(&key, prefix);
    metrics::counter!("cadenza_edge_purged_total").increment(removed as u64);
    tracing::info!(message = "Purged.", key, prefix, removed);
    axum::Json(json!({"purged": removed})).into_response()
}
