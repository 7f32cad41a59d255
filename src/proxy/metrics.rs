//! The proxy's counters, and the same in Prometheus text for `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::upstream::{Upstreams, BUCKETS_US};

/// A snapshot of a proxy's counters; see [`Forward::stats`](super::Forward::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Downstream messages handled (an HTTP body or a websocket message;
    /// a batch counts once).
    pub messages: u64,
    /// Requests forwarded upstream (each batch entry counts).
    pub forwarded: u64,
    /// Notifications forwarded upstream.
    pub notifications: u64,
    /// Requests a hook answered without the upstream.
    pub answered_locally: u64,
    /// Requests a hook refused.
    pub refused: u64,
    /// Requests answered with the upstream's error object.
    pub upstream_errors: u64,
    /// Requests that got no answer in time (-32001).
    pub timeouts: u64,
    /// Requests that could not reach an upstream, or lost it before the
    /// answer, or came while the websockets close (see
    /// [`Forward::close_websockets`](super::Forward::close_websockets))
    /// (-32002).
    pub unavailable: u64,
    /// Messages or requests refused at a limit (body, batch, in flight,
    /// connections).
    pub limited: u64,
    /// Messages that were not JSON-RPC requests (-32700, -32600).
    pub invalid: u64,
    /// Subscription notifications sent to downstream subscribers (items,
    /// gaps, lags and ends; one per subscriber).
    pub subscription_notifications: u64,
    /// Items dropped for a downstream subscriber that fell behind (its
    /// queue's overflow policy).
    pub subscription_items_dropped: u64,
    /// Server requests passed through to a downstream client (per-session
    /// mode).
    pub server_requests: u64,
    /// Downstream websockets closed because they did not read what was
    /// sent to them (see [`ProxyConfig::session_outbound`](super::ProxyConfig::session_outbound)).
    pub slow_sessions: u64,
    /// Gauge: downstream websocket sessions open.
    pub sessions: u64,
    /// Gauge: upstream subscriptions shared by downstream subscribers.
    pub upstream_subscriptions: u64,
    /// Gauge: downstream subscriptions.
    pub downstream_subscriptions: u64,
}

/// The live counters behind [`ProxyStats`].
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub messages: AtomicU64,
    pub forwarded: AtomicU64,
    pub notifications: AtomicU64,
    pub answered_locally: AtomicU64,
    pub refused: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub unavailable: AtomicU64,
    pub limited: AtomicU64,
    pub invalid: AtomicU64,
    pub subscription_notifications: AtomicU64,
    pub subscription_items_dropped: AtomicU64,
    pub server_requests: AtomicU64,
    pub slow_sessions: AtomicU64,
    pub sessions: AtomicU64,
    pub upstream_subscriptions: AtomicU64,
    pub downstream_subscriptions: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

impl Metrics {
    pub fn snapshot(&self) -> ProxyStats {
        let get = |a: &AtomicU64| a.load(Relaxed);
        ProxyStats {
            messages: get(&self.messages),
            forwarded: get(&self.forwarded),
            notifications: get(&self.notifications),
            answered_locally: get(&self.answered_locally),
            refused: get(&self.refused),
            upstream_errors: get(&self.upstream_errors),
            timeouts: get(&self.timeouts),
            unavailable: get(&self.unavailable),
            limited: get(&self.limited),
            invalid: get(&self.invalid),
            subscription_notifications: get(&self.subscription_notifications),
            subscription_items_dropped: get(&self.subscription_items_dropped),
            server_requests: get(&self.server_requests),
            slow_sessions: get(&self.slow_sessions),
            sessions: get(&self.sessions),
            upstream_subscriptions: get(&self.upstream_subscriptions),
            downstream_subscriptions: get(&self.downstream_subscriptions),
        }
    }

    /// Every counter, each upstream's state, counters and latency
    /// histogram, in the Prometheus text format (version 0.0.4).
    pub fn prometheus(&self, upstreams: &Upstreams) -> String {
        let stats = self.snapshot();
        let mut out = String::with_capacity(4096);
        let counters: [(&str, &str, u64); 14] = [
            ("messages", "downstream messages handled", stats.messages),
            ("forwarded", "requests forwarded upstream", stats.forwarded),
            (
                "notifications",
                "notifications forwarded upstream",
                stats.notifications,
            ),
            (
                "answered_locally",
                "requests a hook answered",
                stats.answered_locally,
            ),
            ("refused", "requests a hook refused", stats.refused),
            (
                "upstream_errors",
                "requests answered with the upstream's error",
                stats.upstream_errors,
            ),
            (
                "timeouts",
                "requests with no answer in time",
                stats.timeouts,
            ),
            (
                "unavailable",
                "requests that could not reach an upstream",
                stats.unavailable,
            ),
            (
                "limited",
                "messages or requests refused at a limit",
                stats.limited,
            ),
            (
                "invalid",
                "messages that were not JSON-RPC requests",
                stats.invalid,
            ),
            (
                "subscription_notifications",
                "subscription notifications sent downstream",
                stats.subscription_notifications,
            ),
            (
                "subscription_items_dropped",
                "items dropped for downstream subscribers that fell behind",
                stats.subscription_items_dropped,
            ),
            (
                "server_requests",
                "server requests passed through to downstream clients",
                stats.server_requests,
            ),
            (
                "slow_sessions",
                "downstream websockets closed for not reading",
                stats.slow_sessions,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP jsonrpc_proxy_{name}_total {help}");
            let _ = writeln!(out, "# TYPE jsonrpc_proxy_{name}_total counter");
            let _ = writeln!(out, "jsonrpc_proxy_{name}_total {value}");
        }
        let gauges: [(&str, &str, u64); 3] = [
            (
                "sessions",
                "downstream websocket sessions open",
                stats.sessions,
            ),
            (
                "upstream_subscriptions",
                "upstream subscriptions shared by downstream subscribers",
                stats.upstream_subscriptions,
            ),
            (
                "downstream_subscriptions",
                "downstream subscriptions",
                stats.downstream_subscriptions,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP jsonrpc_proxy_{name} {help}");
            let _ = writeln!(out, "# TYPE jsonrpc_proxy_{name} gauge");
            let _ = writeln!(out, "jsonrpc_proxy_{name} {value}");
        }
        upstream_metrics(&mut out, upstreams);
        out
    }
}

fn upstream_metrics(out: &mut String, upstreams: &Upstreams) {
    let _ = writeln!(
        out,
        "# HELP jsonrpc_proxy_upstream_up 1 when connected and not reconnecting"
    );
    let _ = writeln!(out, "# TYPE jsonrpc_proxy_upstream_up gauge");
    for (n, upstream) in upstreams.all().iter().enumerate() {
        let up = upstream.client.is_connected() && !upstream.client.is_reconnecting();
        let _ = writeln!(
            out,
            "jsonrpc_proxy_upstream_up{{upstream=\"{n}\"}} {}",
            u8::from(up)
        );
    }
    let _ = writeln!(
        out,
        "# HELP jsonrpc_proxy_upstream_pending calls waiting for the upstream"
    );
    let _ = writeln!(out, "# TYPE jsonrpc_proxy_upstream_pending gauge");
    for (n, upstream) in upstreams.all().iter().enumerate() {
        let pending = upstream.client.pending_now();
        let _ = writeln!(
            out,
            "jsonrpc_proxy_upstream_pending{{upstream=\"{n}\"}} {pending}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP jsonrpc_proxy_upstream_reconnects_total reconnects of the upstream connection"
    );
    let _ = writeln!(
        out,
        "# TYPE jsonrpc_proxy_upstream_reconnects_total counter"
    );
    for (n, upstream) in upstreams.all().iter().enumerate() {
        let reconnects = upstream.client.stats().reconnects;
        let _ = writeln!(
            out,
            "jsonrpc_proxy_upstream_reconnects_total{{upstream=\"{n}\"}} {reconnects}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP jsonrpc_proxy_upstream_failures_total forwarded requests that got no answer"
    );
    let _ = writeln!(out, "# TYPE jsonrpc_proxy_upstream_failures_total counter");
    for (n, upstream) in upstreams.all().iter().enumerate() {
        let failures = upstream.failures.load(Relaxed);
        let _ = writeln!(
            out,
            "jsonrpc_proxy_upstream_failures_total{{upstream=\"{n}\"}} {failures}"
        );
    }
    let _ = writeln!(out, "# HELP jsonrpc_proxy_upstream_latency_seconds time from forwarding a request to its answer");
    let _ = writeln!(
        out,
        "# TYPE jsonrpc_proxy_upstream_latency_seconds histogram"
    );
    for (n, upstream) in upstreams.all().iter().enumerate() {
        let (cumulative, count, sum_us) = upstream.latency.snapshot();
        for (bound, total) in BUCKETS_US.iter().zip(&cumulative) {
            let le = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "jsonrpc_proxy_upstream_latency_seconds_bucket{{upstream=\"{n}\",le=\"{le}\"}} {total}"
            );
        }
        let _ = writeln!(
            out,
            "jsonrpc_proxy_upstream_latency_seconds_bucket{{upstream=\"{n}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "jsonrpc_proxy_upstream_latency_seconds_sum{{upstream=\"{n}\"}} {}",
            sum_us as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "jsonrpc_proxy_upstream_latency_seconds_count{{upstream=\"{n}\"}} {count}"
        );
    }
}
