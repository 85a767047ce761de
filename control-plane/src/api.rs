//! The public router: the routes of the services this process runs (`crate::services`), the
//! OpenAPI document, JSON 404s and 405s, and the layers every response passes.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::App;
use crate::error::Error;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cadenza control plane",
        description = "Accounts, packages and playlists of the Cadenza music platform. Every error is `{\"error\": {status, code, message, fields}}`.",
        version = "1"
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Sign-up, log-in, profile"),
        (name = "packages", description = "Packages on sale"),
        (name = "playlists", description = "Playlists"),
        (name = "payments", description = "Checkout, card payments, provider webhooks, refunds"),
        (name = "subscriptions", description = "Subscriptions and entitlements"),
        (name = "uploads", description = "Track uploads: tus 1.0 resumable uploads and one-request uploads"),
        (name = "play", description = "Playing: node choice, signed URLs, ad breaks, play events"),
        (name = "search", description = "Search as you type over tracks, artists, albums and your playlists"),
        (name = "home", description = "The home screen and track statistics, from the listening analytics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The public router: every service's routes, the OpenAPI document, and JSON 404/405s.
pub fn router(app: App) -> Router {
    use crate::services::Service;
    let services = &app.config.services;
    type Routes = fn() -> OpenApiRouter<App>;
    let routes: [(Service, Routes); 11] = [
        (Service::Accounts, crate::accounts::routes),
        (Service::Packages, crate::packages::routes),
        (Service::Playlists, crate::playlists::routes),
        (Service::Payments, crate::payments::routes),
        (Service::Subscriptions, crate::subscriptions::routes),
        (Service::Uploads, crate::uploads::routes),
        (Service::Uploads, crate::processing::routes),
        (Service::Catalog, crate::catalog::routes),
        (Service::Play, crate::play::routes),
        (Service::Search, crate::search::routes),
        (Service::Home, crate::analytics::routes),
    ];
    let (router, openapi) = routes
        .into_iter()
        .filter(|(service, _)| services.runs(*service))
        .fold(
            OpenApiRouter::with_openapi(ApiDoc::openapi()),
            |router, (_, routes)| router.merge(routes()),
        )
        .split_for_parts();
    let document = openapi.clone();
    let limit = app.config.limits.max_body_bytes;
    // The web player at `/` where this process serves it, else a pointer to the API.
    let router = if services.runs(Service::Web) {
        router.merge(crate::web::routes())
    } else {
        router.route("/", get(index))
    };
    router
        .route(
            "/api/v1/openapi.json",
            get(move || async move { Json(document) }),
        )
        .fallback(|| async {
            Error::not_found(
                "route_not_found",
                "No such endpoint; see GET /api/v1/openapi.json.",
            )
        })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        // Bodies are read by `ApiJson` within the configured limit; this outer bound (with
        // slack for multipart uploads later) stops any other reader from buffering more.
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(nosniff))
        .layer(axum::middleware::from_fn_with_state(
            "control-plane",
            telemetry::track_http,
        ))
        .with_state(app)
}

/// Every response is JSON; tell browsers never to sniff it as something else (HTML), so that
/// stored user text can never run as script.
async fn nosniff(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
}

async fn index() -> Response {
    (
        StatusCode::OK,
        Json(serde_json::json!({
            "service": "cadenza control plane",
            "openapi": "/api/v1/openapi.json",
            "packages": "/api/v1/packages",
        })),
    )
        .into_response()
}
