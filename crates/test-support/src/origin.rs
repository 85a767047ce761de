//! A scriptable origin for tests: objects put by path, answered with their headers, delays,
//! chunking and breaks, `Range` requests where asked, counted per path, dated by a test clock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;

/// The fill key the origin expects (`Authorization: Bearer …`); requests without it are
/// answered all the same and counted in [`TestOrigin::unauthorised`].
pub const FILL_KEY: &str = "fill-key-for-edge-tests";

/// One object the test origin serves.
#[derive(Debug, Clone)]
pub struct TestObject {
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
    pub status: u16,
    /// Wait before the response head.
    pub delay_ms: u64,
    /// Body chunk size and the pause between chunks.
    pub chunk: usize,
    pub chunk_pause_ms: u64,
    /// Break the connection after this many body bytes.
    pub break_after: Option<usize>,
    /// Answer `Range` requests (single and multipart) as an origin should.
    pub ranges: bool,
}

impl TestObject {
    pub fn new(body: impl Into<Bytes>, cache_control: &str) -> Self {
        let body = body.into();
        let etag = format!("\"{:016x}\"", xxhash(&body));
        Self {
            body,
            headers: vec![
                ("cache-control".into(), cache_control.into()),
                ("content-type".into(), "video/iso.segment".into()),
                ("etag".into(), etag),
                ("access-control-allow-origin".into(), "*".into()),
            ],
            status: 200,
            delay_ms: 0,
            chunk: 16 * 1024,
            chunk_pause_ms: 0,
            break_after: None,
            ranges: false,
        }
    }
}

fn xxhash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Deterministic pseudo-random bytes.
pub fn bytes_of(len: usize, seed: u64) -> Bytes {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// What the origin holds and has seen.
#[derive(Debug, Default)]
pub struct OriginState {
    objects: Mutex<HashMap<String, TestObject>>,
    hits: Mutex<HashMap<String, usize>>,
    requests: Mutex<HashMap<String, Vec<HeaderMap>>>,
    unauthorised: Mutex<usize>,
    /// Answer every request with 503.
    failing: std::sync::atomic::AtomicBool,
    /// The clock its `Date` headers come from (the system's when unset).
    clock: Mutex<Option<telemetry::Clock>>,
}

/// A scriptable origin that counts requests per path.
#[derive(Debug)]
pub struct TestOrigin {
    pub address: SocketAddr,
    state: Arc<OriginState>,
    task: tokio::task::JoinHandle<()>,
}

impl TestOrigin {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), Arc::default()).await
    }

    pub async fn start_on(address: SocketAddr, state: Arc<OriginState>) -> Self {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .fallback(serve)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            address,
            state,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn put(&self, path: &str, object: TestObject) {
        self.state
            .objects
            .lock()
            .unwrap()
            .insert(path.to_owned(), object);
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// The request headers of every request for `path`, in order.
    pub fn requests(&self, path: &str) -> Vec<HeaderMap> {
        self.state
            .requests
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Answers 503 to everything while `failing`.
    pub fn set_failing(&self, failing: bool) {
        self.state
            .failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// Dates its responses from `clock`.
    pub fn set_clock(&self, clock: telemetry::Clock) {
        *self.state.clock.lock().unwrap() = Some(clock);
    }

    pub fn unauthorised(&self) -> usize {
        *self.state.unauthorised.lock().unwrap()
    }

    /// Stops answering; returns once the port refuses connections.
    pub async fn stop(&self) {
        self.task.abort();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(self.address).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the test origin still accepts connections"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn serve(State(state): State<Arc<OriginState>>, request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map(|target| target.as_str().to_owned())
        .unwrap_or_default();
    *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    state
        .requests
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default()
        .push(request.headers().clone());
    if state.failing.load(std::sync::atomic::Ordering::SeqCst) {
        return Response::builder()
            .status(503)
            .body(Body::from("failing"))
            .unwrap();
    }
    let authorised = request
        .headers()
        .get("authorization")
        .is_some_and(|value| value == format!("Bearer {FILL_KEY}").as_str());
    if !authorised {
        *state.unauthorised.lock().unwrap() += 1;
    }
    let object = state.objects.lock().unwrap().get(&path).cloned();
    let Some(object) = object else {
        return Response::builder()
            .status(404)
            .body(Body::from("missing"))
            .unwrap();
    };
    tokio::time::sleep(Duration::from_millis(object.delay_ms)).await;
    let mut builder = Response::builder().status(object.status);
    for (name, value) in &object.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let clock = state.clock.lock().unwrap().clone();
    if let Some(clock) = clock
        && !object.headers.iter().any(|(name, _)| name == "date")
    {
        let now = std::time::UNIX_EPOCH + Duration::from_millis(clock.now_ms() as u64);
        builder = builder.header("date", http_semantics::http_date(now));
    }
    // Preconditions as an origin evaluates them (RFC 9110 §13.2.2).
    let etag = object
        .headers
        .iter()
        .find(|(name, _)| name == "etag")
        .map(|(_, value)| value.clone());
    let last_modified = object
        .headers
        .iter()
        .find(|(name, _)| name == "last-modified")
        .and_then(|(_, value)| http_semantics::parse_http_date(value));
    let validators = http_semantics::Validators {
        etag: etag.as_deref().map(str::as_bytes),
        last_modified,
    };
    match http_semantics::evaluate_preconditions(request.headers(), validators) {
        http_semantics::Precondition::Proceed => {}
        http_semantics::Precondition::NotModified => {
            return builder.status(304).body(Body::empty()).unwrap();
        }
        http_semantics::Precondition::Failed => {
            return builder.status(412).body(Body::empty()).unwrap();
        }
    }
    if object.ranges
        && object.status == 200
        && let Some(range) = request
            .headers()
            .get("range")
            .and_then(|value| value.to_str().ok())
        && http_semantics::if_range_matches(request.headers(), validators)
    {
        let total = object.body.len() as u64;
        builder = builder.header("accept-ranges", "bytes");
        match http_semantics::parse_range(range, total, 16) {
            http_semantics::RangeDecision::Full => {}
            http_semantics::RangeDecision::Unsatisfiable => {
                return builder
                    .status(416)
                    .header("content-range", format!("bytes */{total}"))
                    .body(Body::empty())
                    .unwrap();
            }
            http_semantics::RangeDecision::Partial(ranges) if ranges.len() == 1 => {
                let range = ranges[0];
                return builder
                    .status(206)
                    .header("content-range", range.content_range(total))
                    .body(Body::from(
                        object.body.slice(range.start as usize..range.end as usize),
                    ))
                    .unwrap();
            }
            http_semantics::RangeDecision::Partial(ranges) => {
                let parts = http_semantics::Multipart::new(ranges, total, "video/iso.segment");
                let mut response = builder
                    .status(206)
                    .body(Body::from(parts.body_from(&object.body)))
                    .unwrap();
                response
                    .headers_mut()
                    .insert("content-type", parts.content_type().parse().unwrap());
                return response;
            }
        }
    }
    builder = builder.header("content-length", object.body.len());
    let chunks: Vec<Bytes> = object
        .body
        .chunks(object.chunk.max(1))
        .map(Bytes::copy_from_slice)
        .collect();
    let pause = object.chunk_pause_ms;
    let limit = object.break_after;
    let stream = futures::stream::unfold(
        (chunks.into_iter(), 0usize),
        move |(mut chunks, sent)| async move {
            if limit.is_some_and(|limit| sent >= limit) {
                return Some((
                    Err(std::io::Error::other("origin broke off")),
                    (Vec::new().into_iter(), usize::MAX),
                ));
            }
            let chunk = chunks.next()?;
            if pause > 0 {
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            let sent = sent.saturating_add(chunk.len());
            Some((Ok::<_, std::io::Error>(chunk), (chunks, sent)))
        },
    );
    builder.body(Body::from_stream(stream)).unwrap()
}
