//! Counters kept by the connection and readable from any thread, even after
//! the actor has stopped.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of one connection's counters.
///
/// Read it with [`Client::stats`](crate::Client::stats) or by sending
/// [`GetStats`](crate::GetStats). `pending` is the size of the pending-call
/// table: it is 0 whenever no call is waiting, and always 0 once the
/// connection has stopped.
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
    /// Calls waiting for their response right now.
    pub pending: u64,
    /// Calls written to the socket.
    pub calls_sent: u64,
    /// Notifications written to the socket.
    pub notifications_sent: u64,
    /// Responses matched to a pending call (results and error objects).
    pub responses: u64,
    /// Calls that ended with [`Error::Timeout`](crate::Error::Timeout).
    pub timeouts: u64,
    /// Responses whose id matched no pending call (late, duplicate or foreign).
    pub unknown_ids: u64,
    /// Inbound messages that were not valid JSON-RPC and were skipped.
    pub invalid_messages: u64,
    /// Requests received from the server.
    pub server_requests: u64,
    /// Notifications received from the server.
    pub server_notifications: u64,
    /// Payload bytes of complete inbound messages.
    pub bytes_received: u64,
    /// Payload bytes of outbound messages.
    pub bytes_sent: u64,
}

/// The live counters behind [`Stats`]. Written only by the actor's thread;
/// relaxed atomics make them readable elsewhere for the cost of a plain store.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub pending: AtomicU64,
    pub calls_sent: AtomicU64,
    pub notifications_sent: AtomicU64,
    pub responses: AtomicU64,
    pub timeouts: AtomicU64,
    pub unknown_ids: AtomicU64,
    pub invalid_messages: AtomicU64,
    pub server_requests: AtomicU64,
    pub server_notifications: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn set_pending(&self, n: usize) {
        self.pending.store(n as u64, Relaxed);
    }

    pub fn snapshot(&self) -> Stats {
        Stats {
            pending: self.pending.load(Relaxed),
            calls_sent: self.calls_sent.load(Relaxed),
            notifications_sent: self.notifications_sent.load(Relaxed),
            responses: self.responses.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            unknown_ids: self.unknown_ids.load(Relaxed),
            invalid_messages: self.invalid_messages.load(Relaxed),
            server_requests: self.server_requests.load(Relaxed),
            server_notifications: self.server_notifications.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
        }
    }
}
