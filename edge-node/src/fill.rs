//! Request coalescing: one fill per cache key at a time. The first miss starts a fill that
//! runs on its own task (a client that goes away does not stop it); every concurrent miss
//! joins it and streams the bytes as they arrive. A fill that dies leaves nothing in the cache,
//! and its waiters see an error, never a short object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

use crate::cache::Object;

/// A response's head, as the fill received it.
#[derive(Debug)]
pub struct FillHead {
    /// Status.
    pub status: StatusCode,
    /// End-to-end headers.
    pub headers: HeaderMap,
    /// Declared length, if any.
    pub content_length: Option<u64>,
    /// The cache key of the variant being filled: the primary key with the values that the
    /// request which started the fill has for the headers the response varies on. A waiter
    /// whose own values differ must not take this response.
    pub variant: String,
    /// When the head arrived, Unix milliseconds.
    pub response_time_ms: u64,
    /// Its corrected initial age (RFC 9111 §4.2.3), milliseconds.
    pub initial_age_ms: u64,
}

/// How a fill ended.
#[derive(Debug, Clone)]
pub enum FillEnd {
    /// The whole object arrived (and was stored if it may be).
    Complete(Arc<Object>),
    /// The object is not for coalescing (larger than the cache takes): each waiter fetches
    /// it itself.
    Bypass,
    /// No parent answered, or the body broke off.
    Failed(FillFailure),
}

/// Why a fill failed: where the fault lies, and whether a later request may succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FillFailure {
    /// No parent answered (each one's failure inside).
    #[error(transparent)]
    Parents(#[from] crate::upstream::UpstreamError),
    /// The parent answered a revalidation with a server error.
    #[error("the parent answered {0}")]
    ParentStatus(http::StatusCode),
    /// The parent's body broke off.
    #[error("body: {0}")]
    Body(String),
    /// The parent stopped sending the body for longer than the idle timeout.
    #[error("body: idle timeout")]
    IdleTimeout,
    /// The body ended before its `Content-Length`.
    #[error("short body")]
    ShortBody,
    /// The object grew past what the cache takes (the fill stops; each waiter fetches it).
    #[error("the object is larger than the cache takes")]
    TooLarge,
    /// The fill's task ended without saying how (it panicked or was cancelled).
    #[error("the fill went away")]
    Abandoned,
}

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The parents: unreachable, slow, or answering badly.
    Upstream,
    /// The edge itself: a limit, or a task that died.
    Internal,
}

impl FillFailure {
    /// Where the fault lies.
    pub fn fault(&self) -> Fault {
        match self {
            Self::TooLarge | Self::Abandoned => Fault::Internal,
            _ => Fault::Upstream,
        }
    }

    /// Whether a later request may succeed (every failure here but the size limit).
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::TooLarge)
    }
}

#[derive(Debug, Default)]
struct State {
    head: Option<Arc<FillHead>>,
    chunks: Vec<Bytes>,
    end: Option<FillEnd>,
}

/// One fill in progress.
#[derive(Debug)]
pub struct Fill {
    state: Mutex<State>,
    version: watch::Sender<u64>,
}

impl Fill {
    fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            version: watch::channel(0).0,
        }
    }

    fn bump(&self) {
        self.version.send_modify(|version| *version += 1);
    }

    /// Publishes the response head.
    pub fn set_head(&self, head: FillHead) {
        self.state.lock().expect("fill lock").head = Some(Arc::new(head));
        self.bump();
    }

    /// Publishes a body chunk.
    pub fn push(&self, chunk: Bytes) {
        self.state.lock().expect("fill lock").chunks.push(chunk);
        self.bump();
    }

    /// Publishes the end.
    pub fn finish(&self, end: FillEnd) {
        self.state.lock().expect("fill lock").end = Some(end);
        self.bump();
    }

    /// The whole body received (for building the stored object).
    pub fn body(&self) -> Bytes {
        let state = self.state.lock().expect("fill lock");
        let mut body = BytesMut::with_capacity(state.chunks.iter().map(Bytes::len).sum());
        for chunk in &state.chunks {
            body.extend_from_slice(chunk);
        }
        body.freeze()
    }

    /// Waits for the head or the end, whichever comes first.
    pub async fn wait_head(self: &Arc<Self>) -> Result<Arc<FillHead>, FillEnd> {
        let mut changes = self.version.subscribe();
        loop {
            changes.borrow_and_update();
            {
                let state = self.state.lock().expect("fill lock");
                if let Some(end) = &state.end {
                    // A completed fill may have a head too; a streaming waiter prefers it.
                    return match (&state.head, end) {
                        (Some(head), FillEnd::Complete(_)) => Ok(head.clone()),
                        _ => Err(end.clone()),
                    };
                }
                if let Some(head) = &state.head {
                    return Ok(head.clone());
                }
            }
            if changes.changed().await.is_err() {
                return Err(FillEnd::Failed(FillFailure::Abandoned));
            }
        }
    }

    /// Waits for the end.
    pub async fn wait_end(self: &Arc<Self>) -> FillEnd {
        let mut changes = self.version.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(end) = &self.state.lock().expect("fill lock").end {
                return end.clone();
            }
            if changes.changed().await.is_err() {
                return FillEnd::Failed(FillFailure::Abandoned);
            }
        }
    }

    /// The bytes `start..end` of the body as they arrive (`end`: `None` for all of it). The
    /// stream fails if the fill does, so that a client never takes a short body for a whole.
    pub fn stream(
        self: &Arc<Self>,
        start: u64,
        end: Option<u64>,
    ) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        struct Cursor {
            fill: Arc<Fill>,
            changes: watch::Receiver<u64>,
            chunk: usize,
            offset: u64,
            start: u64,
            end: Option<u64>,
            done: bool,
        }
        impl Cursor {
            fn into_done(mut self) -> Self {
                self.done = true;
                self
            }
        }
        let cursor = Cursor {
            changes: self.version.subscribe(),
            fill: self.clone(),
            chunk: 0,
            offset: 0,
            start,
            end,
            done: false,
        };
        futures::stream::unfold(cursor, |mut cursor| async move {
            loop {
                if cursor.done || cursor.end.is_some_and(|end| cursor.offset >= end) {
                    return None;
                }
                cursor.changes.borrow_and_update();
                let (next, end) = {
                    let state = cursor.fill.state.lock().expect("fill lock");
                    (state.chunks.get(cursor.chunk).cloned(), state.end.clone())
                };
                if let Some(chunk) = next {
                    let chunk_start = cursor.offset;
                    let chunk_end = chunk_start + chunk.len() as u64;
                    cursor.chunk += 1;
                    cursor.offset = chunk_end;
                    let from = cursor.start.max(chunk_start);
                    let to = cursor.end.map_or(chunk_end, |end| end.min(chunk_end));
                    if from >= to {
                        continue;
                    }
                    let piece =
                        chunk.slice((from - chunk_start) as usize..(to - chunk_start) as usize);
                    return Some((Ok(piece), cursor));
                }
                match end {
                    Some(FillEnd::Complete(_)) => return None,
                    Some(FillEnd::Failed(reason)) => {
                        return Some((
                            Err(std::io::Error::other(reason.to_string())),
                            cursor.into_done(),
                        ));
                    }
                    Some(FillEnd::Bypass) => {
                        return Some((
                            Err(std::io::Error::other("fill bypassed")),
                            cursor.into_done(),
                        ));
                    }
                    None => {}
                }
                if cursor.changes.changed().await.is_err() {
                    return Some((
                        Err(std::io::Error::other("the fill went away")),
                        cursor.into_done(),
                    ));
                }
            }
        })
    }
}

/// The fills in progress, by cache key.
#[derive(Debug, Default)]
pub struct Fills {
    running: Mutex<HashMap<String, Arc<Fill>>>,
    /// Woken whenever the last fill in progress ends.
    idle: tokio::sync::Notify,
}

impl Fills {
    /// Joins the fill for `key`, or creates one; `true` when the caller created it and must
    /// run it.
    pub fn join(&self, key: &str) -> (Arc<Fill>, bool) {
        let mut running = self.running.lock().expect("fills lock");
        if let Some(fill) = running.get(key) {
            metrics::counter!("cadenza_edge_coalesced_waiters_total").increment(1);
            return (fill.clone(), false);
        }
        let fill = Arc::new(Fill::new());
        running.insert(key.to_owned(), fill.clone());
        (fill, true)
    }

    /// Forgets the fill for `key` (if it is still `fill`).
    pub fn remove(&self, key: &str, fill: &Arc<Fill>) {
        let mut running = self.running.lock().expect("fills lock");
        if running
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, fill))
        {
            running.remove(key);
            if running.is_empty() {
                self.idle.notify_waiters();
            }
        }
    }

    /// Waits until no fill runs (background revalidations included).
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Fills in progress.
    pub fn len(&self) -> usize {
        self.running.lock().expect("fills lock").len()
    }

    /// Fills in progress whose response head has arrived (the body may still be coming).
    pub fn with_head(&self) -> usize {
        self.running
            .lock()
            .expect("fills lock")
            .values()
            .filter(|fill| fill.state.lock().expect("fill lock").head.is_some())
            .count()
    }

    /// Whether no fill runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
