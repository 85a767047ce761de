//! The box's hooks on the edge engine: clients outside the covered prefixes are refused (403
//! `outside_coverage`), every client is refused while the box is cut off from the host
//! locator (503 `cut_off`), and every answer is counted for the report. Peer boxes filling
//! with the fill key pass whatever their address.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use edge_node::Hooks;
use edge_node::engine::error;
use edge_node::hooks::Answer;
use edge_node::register::Heartbeats;
use edge_node::request::{Body, RequestContext};
use http::request::Parts;
use http::{Response, StatusCode};

use crate::coverage::Coverage;
use crate::report::{Report, Served};

/// The ISP box's hooks.
#[derive(Debug)]
pub struct IspHooks {
    coverage: Coverage,
    report: Arc<Report>,
    heartbeats: Arc<Heartbeats>,
    /// Whether the box registers at all (a box without a locator is never cut off).
    registers: bool,
    cutoff_ms: u64,
    started_ms: u64,
    clock: telemetry::Clock,
}

impl IspHooks {
    /// Hooks serving `coverage`, counting into `report`, cut off when `heartbeats` have not
    /// been accepted for `cutoff_ms` (from `clock`'s now at start, for a box just started).
    pub fn new(
        coverage: Coverage,
        report: Arc<Report>,
        heartbeats: Arc<Heartbeats>,
        registers: bool,
        cutoff_ms: u64,
        clock: telemetry::Clock,
    ) -> Self {
        let started_ms = u64::try_from(clock.now_ms()).unwrap_or(0);
        Self {
            coverage,
            report,
            heartbeats,
            registers,
            cutoff_ms,
            started_ms,
            clock,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.now_ms()).unwrap_or(0)
    }

    /// How long since the locator last accepted a heartbeat (since start if never), when the
    /// box registers.
    pub fn silence_ms(&self) -> Option<u64> {
        if !self.registers {
            return None;
        }
        let last = self.heartbeats.last_accepted_ms.load(Ordering::Relaxed);
        Some(self.now_ms().saturating_sub(last.max(self.started_ms)))
    }

    /// Whether the box has been cut off from the locator for longer than it may run so.
    pub fn cut_off(&self) -> bool {
        is_cut_off(self.silence_ms(), self.cutoff_ms)
    }
}

/// The cut-off rule, for the hooks and the status alike: a registering box that has heard
/// nothing from the locator for longer than `cutoff_ms` stops serving.
pub fn is_cut_off(silence_ms: Option<u64>, cutoff_ms: u64) -> bool {
    silence_ms.is_some_and(|silence| silence > cutoff_ms)
}

impl Hooks for IspHooks {
    fn request_filter(
        &self,
        _request: &Parts,
        path: &str,
        context: &RequestContext,
        child: bool,
    ) -> Option<Response<Body>> {
        if child {
            return None;
        }
        let now = self.clock.now_ms();
        if !self.coverage.covers(context.peer.ip()) {
            metrics::counter!("cadenza_isp_refused_total", "reason" => "outside_coverage")
                .increment(1);
            self.report.record(now, Served::Refused, 0, path);
            return Some(error(
                StatusCode::FORBIDDEN,
                "outside_coverage",
                "this box serves only its ISP's subscribers",
            ));
        }
        if self.cut_off() {
            metrics::counter!("cadenza_isp_refused_total", "reason" => "cut_off").increment(1);
            self.report.record(now, Served::Refused, 0, path);
            return Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cut_off",
                "this box has lost the host locator and is not serving; ask for another node",
            ));
        }
        None
    }

    fn logging(&self, _request: &Parts, answer: &Answer<'_>) {
        if answer.child {
            return;
        }
        let served = Served::of(answer.outcome, || self.report.was_held(answer.path));
        if matches!(served, Served::Cold | Served::Evicted | Served::Expired) {
            self.report.held(answer.path);
        }
        self.report.record(
            self.clock.now_ms(),
            served,
            answer.body_bytes.unwrap_or(0),
            answer.path,
        );
    }
}
