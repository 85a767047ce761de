//! The engine's extension points: a trait of phases with default methods, so that a node with
//! other policies (the ISP box) reuses the engine unchanged and overrides only what differs.

use http::request::Parts;
use http::{Response, StatusCode};

use crate::request::{Body, RequestContext};
use crate::upstream::FetchRequest;

/// How the cache answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Fresh, from memory.
    HitMemory,
    /// Fresh, from disk.
    HitDisk,
    /// Stale, served while it revalidates in the background.
    StaleWhileRevalidate,
    /// Stale, served because every parent failed.
    StaleIfError,
    /// Stale, served without revalidation because the request's `max-stale` takes it.
    StaleAccepted,
    /// Stale, revalidated with a parent first.
    Revalidated,
    /// Fetched from a parent (or joined a fetch in progress).
    Miss,
    /// Too large to cache: relayed from a parent for this client alone.
    Bypass,
    /// Nothing could be served.
    Error,
    /// `only-if-cached` and nothing stored that the request accepts: 504.
    NotCached,
}

impl CacheOutcome {
    /// Whether the bytes came from a cache tier.
    pub fn is_hit(self) -> bool {
        matches!(
            self,
            Self::HitMemory
                | Self::HitDisk
                | Self::StaleWhileRevalidate
                | Self::StaleIfError
                | Self::StaleAccepted
        )
    }

    /// The `Cache-Status` parameters (RFC 9211).
    pub fn cache_status(self) -> &'static str {
        match self {
            Self::HitMemory => "hit",
            Self::HitDisk => "hit; detail=disk",
            Self::StaleWhileRevalidate => "hit; fwd=stale; detail=stale-while-revalidate",
            Self::StaleIfError => "hit; fwd=stale; detail=stale-if-error",
            Self::StaleAccepted => "hit; detail=max-stale",
            Self::Revalidated => "fwd=stale",
            Self::Miss => "fwd=miss",
            Self::Bypass => "fwd=bypass",
            Self::Error => "fwd=miss; detail=upstream-failed",
            Self::NotCached => "detail=only-if-cached",
        }
    }

    /// Every outcome, in [`Self::index`] order.
    pub const ALL: [Self; 10] = [
        Self::HitMemory,
        Self::HitDisk,
        Self::StaleWhileRevalidate,
        Self::StaleIfError,
        Self::StaleAccepted,
        Self::Revalidated,
        Self::Miss,
        Self::Bypass,
        Self::Error,
        Self::NotCached,
    ];

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HitMemory => "hit_memory",
            Self::HitDisk => "hit_disk",
            Self::StaleWhileRevalidate => "stale_while_revalidate",
            Self::StaleIfError => "stale_if_error",
            Self::StaleAccepted => "stale_accepted",
            Self::Revalidated => "revalidated",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
            Self::Error => "error",
            Self::NotCached => "not_cached",
        }
    }
}

/// Phases of a request at which a node can act. Every method has a default, so an
/// implementation overrides only what it changes.
pub trait Hooks: Send + Sync + 'static {
    /// After the request is checked (host, path, token), before the cache: an early answer
    /// (`Some`) ends the request here. `path` is the canonical path without a token; `child`
    /// says the request carries the fill key (a child node filling from this one).
    fn request_filter(
        &self,
        _request: &Parts,
        _path: &str,
        _context: &RequestContext,
        _child: bool,
    ) -> Option<Response<Body>> {
        None
    }

    /// The primary cache key from the canonical path and query.
    fn cache_key(&self, path_and_query: &str, _request: &Parts) -> String {
        path_and_query.to_owned()
    }

    /// Before a fill asks the parents: add or change request headers.
    fn upstream_request_filter(&self, _fetch: &mut FetchRequest) {}

    /// After the response is made (before its body is sent): for logs, popularity counts
    /// and hit ratios. `path` is the canonical path; `body_bytes` the body's length where it
    /// is known (the range's for a 206, zero for a HEAD).
    fn logging(&self, _request: &Parts, _answer: &Answer<'_>) {}
}

/// What the engine did with a request, for [`Hooks::logging`].
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The canonical path, without a token.
    pub path: &'a str,
    /// The response's status.
    pub status: StatusCode,
    /// How the cache answered.
    pub outcome: CacheOutcome,
    /// The request's protocol and peer.
    pub context: &'a RequestContext,
    /// Body bytes of the response, where known.
    pub body_bytes: Option<u64>,
    /// Whether the request carried the fill key (a child node filling).
    pub child: bool,
}

/// The edge node's hooks: the defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeHooks;

impl Hooks for EdgeHooks {}
