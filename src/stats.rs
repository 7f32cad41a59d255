//! Counters kept by a connection and readable from any thread, even after
//! the connection has stopped.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of one connection's counters and gauges.
///
/// Read it with [`Client::stats`](crate::Client::stats) or by sending
/// [`GetStats`](crate::GetStats). Every bound the connection enforces has a
/// gauge here (how full it is now) and a counter (what happened when it was
/// full). The gauges are 0 once the connection has stopped.
///
/// # Examples
///
/// ```
/// # async fn demo(client: jsonrpc_websocket::Client) {
/// let stats = client.stats();
/// println!("{} calls sent, {} waiting", stats.calls_sent, stats.pending);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Gauge: calls in the pending table right now: sent and waiting for
    /// their response (at most `max_in_flight`), or waiting to be sent.
    pub pending: u64,
    /// Gauge: calls waiting to be sent because a bound was full (counted in
    /// `pending` too).
    pub queued_calls: u64,
    /// Gauge: outbound bytes queued and not yet written to the socket
    /// (bounded by `max_queued_bytes`).
    pub queued_bytes: u64,
    /// Gauge: the server's requests in the hands of handlers right now
    /// (bounded by `max_server_requests`).
    pub server_requests_in_progress: u64,
    /// Calls written to the socket.
    pub calls_sent: u64,
    /// Notifications queued for the socket.
    pub notifications_sent: u64,
    /// Responses matched to a pending call (results and error objects).
    pub responses: u64,
    /// Calls that ended with [`Error::Timeout`](crate::Error::Timeout).
    pub timeouts: u64,
    /// Calls whose caller stopped waiting (dropped the future) before the
    /// outcome; their entries were freed at once.
    pub cancelled: u64,
    /// Calls and notifications that had to wait for room under a bound
    /// ([`Backpressure::Wait`](crate::Backpressure::Wait)).
    pub backpressure_waits: u64,
    /// Calls and notifications refused because a bound was full
    /// ([`Error::Overloaded`](crate::Error::Overloaded)).
    pub overloaded: u64,
    /// Responses whose id matched no pending call (late, duplicate or foreign).
    pub unknown_ids: u64,
    /// Error responses with `"id": null`: the server could not read one of
    /// our messages (logged with the server's message).
    pub null_id_errors: u64,
    /// Inbound messages that were not valid JSON-RPC and were skipped.
    pub invalid_messages: u64,
    /// Requests received from the server.
    pub server_requests: u64,
    /// The server's requests refused with -32000 because
    /// `max_server_requests` were already in progress.
    pub server_requests_refused: u64,
    /// Handlers and listeners that panicked (each panic became a -32603
    /// answer or a logged error; the connection went on).
    pub handler_panics: u64,
    /// Notifications received from the server.
    pub server_notifications: u64,
    /// Notifications a listener's full queue did not take (each listener
    /// learns how many it missed; see
    /// [`ServerNotification::missed`](crate::ServerNotification::missed)).
    pub notifications_dropped: u64,
    /// Gauge: live subscriptions.
    pub subscriptions: u64,
    /// Subscription items a subscriber's full queue did not take (each
    /// subscriber learns how many it missed: `SubscriptionItem::Lagged`).
    pub subscription_items_dropped: u64,
    /// Payload bytes of complete inbound messages.
    pub bytes_received: u64,
    /// Bytes of frames written to the socket (headers included).
    pub bytes_sent: u64,
    /// Times the connection was lost and dialled again successfully (see
    /// [`ReconnectPolicy`](crate::ReconnectPolicy)).
    pub reconnects: u64,
    /// Times the server showed no sign of life within the heartbeat's
    /// timeout of a ping (each gave the socket up).
    pub heartbeat_failures: u64,
    /// Socket reads put off during a notification flood (see
    /// [`ConnectionBuilder::read_pacing`](crate::ConnectionBuilder::read_pacing)):
    /// each delayed the notifications behind it by at most the interval.
    pub paced_reads: u64,
}

/// The live counters behind [`Stats`]. Relaxed atomics: readable from any
/// thread for the cost of a plain store on the writing side.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub pending: AtomicU64,
    pub queued_calls: AtomicU64,
    pub queued_bytes: AtomicU64,
    pub server_requests_in_progress: AtomicU64,
    pub calls_sent: AtomicU64,
    pub notifications_sent: AtomicU64,
    pub responses: AtomicU64,
    pub timeouts: AtomicU64,
    pub cancelled: AtomicU64,
    pub backpressure_waits: AtomicU64,
    pub overloaded: AtomicU64,
    pub unknown_ids: AtomicU64,
    pub null_id_errors: AtomicU64,
    pub invalid_messages: AtomicU64,
    pub server_requests: AtomicU64,
    pub server_requests_refused: AtomicU64,
    pub handler_panics: AtomicU64,
    pub server_notifications: AtomicU64,
    pub notifications_dropped: AtomicU64,
    pub subscriptions: AtomicU64,
    pub subscription_items_dropped: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub reconnects: AtomicU64,
    pub heartbeat_failures: AtomicU64,
    pub paced_reads: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// Sets a gauge.
pub(crate) fn set(gauge: &AtomicU64, n: usize) {
    gauge.store(n as u64, Relaxed);
}

impl Metrics {
    pub fn snapshot(&self) -> Stats {
        let get = |a: &AtomicU64| a.load(Relaxed);
        Stats {
            pending: get(&self.pending),
            queued_calls: get(&self.queued_calls),
            queued_bytes: get(&self.queued_bytes),
            server_requests_in_progress: get(&self.server_requests_in_progress),
            calls_sent: get(&self.calls_sent),
            notifications_sent: get(&self.notifications_sent),
            responses: get(&self.responses),
            timeouts: get(&self.timeouts),
            cancelled: get(&self.cancelled),
            backpressure_waits: get(&self.backpressure_waits),
            overloaded: get(&self.overloaded),
            unknown_ids: get(&self.unknown_ids),
            null_id_errors: get(&self.null_id_errors),
            invalid_messages: get(&self.invalid_messages),
            server_requests: get(&self.server_requests),
            server_requests_refused: get(&self.server_requests_refused),
            handler_panics: get(&self.handler_panics),
            server_notifications: get(&self.server_notifications),
            notifications_dropped: get(&self.notifications_dropped),
            subscriptions: get(&self.subscriptions),
            subscription_items_dropped: get(&self.subscription_items_dropped),
            bytes_received: get(&self.bytes_received),
            bytes_sent: get(&self.bytes_sent),
            reconnects: get(&self.reconnects),
            heartbeat_failures: get(&self.heartbeat_failures),
            paced_reads: get(&self.paced_reads),
        }
    }
}
