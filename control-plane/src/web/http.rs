//! The web player on HTTP: `GET /` (`index.html`, with its content security policy) and
//! `GET /assets/{file}`.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Asset, accepts_gzip, asset};
use crate::App;
use crate::error::Error;

/// What `index.html` may load: its own files, the API, and media from the CDN's nodes (any
/// host: the nodes are other origins), with hls.js's worker from a `blob:` URL.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: http: https:; media-src 'self' blob: data: http: https:; \
     connect-src 'self' http: https:; worker-src 'self' blob:; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    let Some(index) = asset("index.html") else {
        return Error::not_found("asset_not_found", "The web player is not built in.")
            .into_response();
    };
    let mut response = send(index, &headers);
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    response
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match asset(&name).filter(|_| name != "index.html") {
        Some(found) => {
            let mut response = send(found, &headers);
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            response
        }
        None => {
            Error::not_found("asset_not_found", "No such file of the web player.").into_response()
        }
    }
}

/// The file, in gzip when the request takes it, or 304 when the client has it.
fn send(found: Asset, headers: &HeaderMap) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{:016x}\"", found.etag))
        .expect("hex digits are a valid header value");
    let has_it = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim().as_bytes() == etag.as_bytes())
        });
    let mut response = if has_it {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let takes_gzip = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|value| value.to_str().ok())
            .is_some_and(accepts_gzip);
        match found.gzip {
            Some(gzip) if takes_gzip => {
                let mut response = (StatusCode::OK, gzip).into_response();
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                response
            }
            _ => (StatusCode::OK, found.bytes).into_response(),
        }
    };
    let out = response.headers_mut();
    out.insert(header::ETAG, etag);
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(found.mime));
    if found.gzip.is_some() {
        out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    response
}
