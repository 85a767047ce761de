//! Cadenza's origin: serves the packaged media tree (`media/{track}/{version}/…`) from the
//! object store to edge nodes, with the HTTP semantics a shared cache relies on — byte ranges
//! (single and multipart), conditional requests, strong entity tags, registered media types,
//! gzip for playlists and manifests, `Cache-Control` that lets segments live a year, and CORS
//! headers that edges pass on to browser players.
//!
//! Only edges fill from it: every GET and HEAD must carry the shared fill key
//! (`Authorization: Bearer …`) or come over a mutual-TLS connection whose client certificate
//! the configured fill CA issued.

pub mod config;
mod tls;

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use http_semantics::{BodyPlan, Planner, Precondition, Validators, compressible, content_type};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore as _, ObjectStoreExt as _};
use objects::Objects;
use serde_json::json;
use subtle::ConstantTimeEq as _;
use telemetry::{Readiness, Shutdown};
use tokio::net::TcpListener;

pub use config::Config;

const SERVICE: &str = "origin";
/// Headers a browser player may read on a cross-origin response.
const EXPOSED_HEADERS: &str =
    "Content-Length, Content-Range, Content-Encoding, ETag, Accept-Ranges, Age, Date";

/// The origin's state.
#[derive(Debug, Clone)]
pub struct Origin {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    objects: Objects,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Origin {
    /// Opens the object store of `config`.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let objects = Objects::from_url(&config.object_store_url, &config.s3)?;
        Self::with_objects(config, objects)
    }

    /// An origin over an already opened store (its certificates read now, when TLS is on).
    pub fn with_objects(config: Config, objects: Objects) -> anyhow::Result<Self> {
        let tls = tls::server_config(&config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                objects,
                tls,
            }),
        })
    }

    /// The public router.
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(serve)
            .layer(axum::middleware::from_fn_with_state(
                SERVICE,
                telemetry::track_http,
            ))
            .with_state(self.clone())
    }
}

/// Serves the public and admin routers until `shutdown`, then drains.
pub async fn run(
    origin: Origin,
    listener: TcpListener,
    admin: TcpListener,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let grace = Duration::from_secs(origin.inner.config.drain_grace_secs);
    let admin_task = tokio::spawn(telemetry::serve(
        admin,
        telemetry::admin_router(SERVICE, Readiness::new(shutdown.clone())),
        shutdown.clone(),
        grace,
    ));
    tracing::info!(
        message = "Origin listening.",
        address = %listener.local_addr()?,
        store = origin.inner.objects.kind(),
        tls = origin.inner.tls.is_some(),
        mutual_tls = origin.inner.config.fill_client_ca.is_some()
    );
    match origin.inner.tls.clone() {
        Some(config) => tls::serve(listener, origin.router(), config, shutdown, grace).await,
        None => telemetry::serve(listener, origin.router(), shutdown, grace).await?,
    }
    admin_task.await??;
    Ok(())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"status": status.as_u16(), "code": code, "message": message}});
    let mut response = (status, axum::Json(body)).into_response();
    cors(response.headers_mut());
    response
}

fn cors(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
}

async fn serve(State(origin): State<Origin>, request: Request) -> Response {
    let config = &origin.inner.config;
    let method = request.method().clone();
    if method == Method::OPTIONS {
        return preflight(request.headers());
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the origin serves GET, HEAD and OPTIONS",
        );
        response.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        return response;
    }
    let verified = request
        .extensions()
        .get::<tls::VerifiedFillClient>()
        .is_some();
    if !verified && !authorised(request.headers(), config) {
        return error(
            StatusCode::UNAUTHORIZED,
            "fill_key_required",
            "only edge nodes fill from the origin: present the fill key as a bearer token",
        );
    }
    let Ok(path) = url_token::canonical_path(request.uri().path()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "the path is not acceptable (dot segments, encoded slashes, control characters or too long)",
        );
    };
    let key = &path[1..];
    if key.ends_with('/')
        || !config
            .served_prefixes
            .iter()
            .any(|p| key.starts_with(p.as_str()))
    {
        return not_found();
    }
    match respond(&origin, key, &method, request.headers()).await {
        Ok(response) => response,
        Err(object_store::Error::NotFound { .. }) => not_found(),
        Err(failure) => {
            tracing::warn!(message = "Object store read failed.", key, error = %failure);
            error(
                StatusCode::BAD_GATEWAY,
                "store_unavailable",
                "the object store did not answer",
            )
        }
    }
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such object")
}

fn authorised(headers: &HeaderMap, config: &Config) -> bool {
    let Some(expected) = &config.fill_key else {
        return false;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes()))
}

fn preflight(headers: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .extend(http_semantics::preflight_headers(headers));
    cors(response.headers_mut());
    response
}

/// Whether a key is a playlist or manifest (short-lived) rather than immutable media.
fn is_manifest(content_type: &str) -> bool {
    compressible(content_type)
}

async fn respond(
    origin: &Origin,
    key: &str,
    method: &Method,
    request: &HeaderMap,
) -> Result<Response, object_store::Error> {
    let config = &origin.inner.config;
    let store = origin.inner.objects.store();
    let location = Key::from(key);
    // A whole-object GET — what an edge's fill is — reads the object in one call and takes the
    // metadata from that answer; HEAD and ranges look at the metadata first.
    let mut whole = if *method == Method::GET && !request.contains_key(header::RANGE) {
        Some(store.get_opts(&location, GetOptions::default()).await?)
    } else {
        None
    };
    let meta = match &whole {
        Some(result) => result.meta.clone(),
        None => store.head(&location).await?,
    };
    let total = meta.size;
    let etag_core = meta
        .e_tag
        .as_deref()
        .map(|tag| tag.trim_start_matches("W/").trim_matches('"').to_owned())
        .unwrap_or_else(|| format!("{:x}-{total:x}", meta.last_modified.timestamp()));
    let last_modified: SystemTime = meta.last_modified.into();
    let media_type = content_type(key);
    let gzip = compressible(media_type)
        && total <= config.max_gzip_bytes
        && http_semantics::accepts_gzip(request)
        && !request.contains_key(header::RANGE);
    let etag = if gzip {
        format!("\"{etag_core}-gz\"")
    } else {
        format!("\"{etag_core}\"")
    };

    let mut headers = HeaderMap::new();
    cors(&mut headers);
    insert(&mut headers, header::ETAG, &etag);
    insert(
        &mut headers,
        header::LAST_MODIFIED,
        &http_semantics::http_date(last_modified),
    );
    insert(
        &mut headers,
        header::CACHE_CONTROL,
        if is_manifest(media_type) {
            &config.manifest_cache_control
        } else {
            &config.immutable_cache_control
        },
    );
    if compressible(media_type) {
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

    let validators = Validators {
        etag: Some(etag.as_bytes()),
        last_modified: Some(last_modified),
    };
    let planner = Planner::new(request, validators, config.max_ranges);
    match planner.preconditions() {
        Precondition::Proceed => {}
        Precondition::NotModified => return Ok((StatusCode::NOT_MODIFIED, headers).into_response()),
        Precondition::Failed => {
            return Ok(error(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "the object does not match the request's preconditions",
            ));
        }
    }

    if gzip {
        let raw = match whole.take() {
            Some(result) => result.bytes().await?,
            None => store.get(&location).await?.bytes().await?,
        };
        let body = gzip_bytes(&raw);
        insert(&mut headers, header::CONTENT_TYPE, media_type);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        insert(
            &mut headers,
            header::CONTENT_LENGTH,
            &body.len().to_string(),
        );
        let body = if *method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(body)
        };
        return Ok((StatusCode::OK, headers, body).into_response());
    }

    let head = *method == Method::HEAD;
    let plan = planner.body(Some(total), media_type);
    if matches!(plan, BodyPlan::Full | BodyPlan::Single(_)) {
        insert(&mut headers, header::CONTENT_TYPE, media_type);
    }
    plan.set_headers(&mut headers, Some(total));
    let status = plan.status();
    match plan {
        BodyPlan::Full => {
            let body = match whole.take() {
                _ if head => Body::empty(),
                Some(result) => Body::from_stream(result.into_stream()),
                None => stream(origin, &location, &etag_core, None).await?,
            };
            Ok((status, headers, body).into_response())
        }
        BodyPlan::Unsatisfiable => {
            let mut response = error(
                status,
                "range_not_satisfiable",
                "no requested range overlaps the object",
            );
            response.headers_mut().extend(headers);
            Ok(response)
        }
        BodyPlan::Single(range) => {
            let body = if head {
                Body::empty()
            } else {
                stream(origin, &location, &etag_core, Some(range.start..range.end)).await?
            };
            Ok((status, headers, body).into_response())
        }
        BodyPlan::Multipart(parts) => {
            if head {
                return Ok((status, headers).into_response());
            }
            // Parts are fetched one after another as the body is sent: memory holds one part.
            let store = store.clone();
            let location = location.clone();
            let count = parts.ranges().len();
            let pieces = futures::stream::iter(0..=count).then(move |index| {
                let store = store.clone();
                let location = location.clone();
                let parts = parts.clone();
                async move {
                    if index == count {
                        return Ok::<_, object_store::Error>(vec![parts.trailer()]);
                    }
                    let range = parts.ranges()[index];
                    let bytes = store.get_range(&location, range.start..range.end).await?;
                    Ok(vec![parts.part_header(index), bytes])
                }
            });
            let body = pieces.flat_map(|piece| {
                futures::stream::iter(match piece {
                    Ok(chunks) => chunks.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(failure) => vec![Err(failure)],
                })
            });
            Ok((status, headers, Body::from_stream(body)).into_response())
        }
    }
}

/// Streams the object (or a range of it), insisting on the entity tag the headers announced so
/// that a concurrent replacement cannot mix two versions in one response.
async fn stream(
    origin: &Origin,
    location: &Key,
    etag_core: &str,
    range: Option<std::ops::Range<u64>>,
) -> Result<Body, object_store::Error> {
    let store = origin.inner.objects.store();
    let options = GetOptions {
        range: range.map(GetRange::Bounded),
        ..GetOptions::default()
    };
    let result = store.get_opts(location, options).await?;
    let current = result
        .meta
        .e_tag
        .as_deref()
        .map(|tag| tag.trim_start_matches("W/").trim_matches('"'));
    if current.is_some_and(|current| current != etag_core) {
        return Err(object_store::Error::Precondition {
            path: location.to_string(),
            source: "the object changed while being served".into(),
        });
    }
    Ok(Body::from_stream(result.into_stream()))
}

fn gzip_bytes(raw: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(raw)
        .expect("writing to a Vec cannot fail");
    Bytes::from(encoder.finish().expect("writing to a Vec cannot fail"))
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}
