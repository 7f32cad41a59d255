//! The upstream pool: connections a proxy forwards to, each choosing
//! itself by health and load, each timing its answers.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::client::Client;

/// Upper bounds of the latency histogram's buckets, in microseconds.
pub(crate) const BUCKETS_US: [u64; 12] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000,
];

/// How long one upstream takes to answer, as a histogram.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    /// Answers at or under each bucket's bound (not cumulative), and one more
    /// bucket for the rest.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Latency {
    pub fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Cumulative counts per bucket (the last is every answer), the count
    /// and the sum in microseconds.
    pub fn snapshot(&self) -> (Vec<u64>, u64, u64) {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Relaxed);
                total
            })
            .collect();
        (
            cumulative,
            self.count.load(Relaxed),
            self.sum_us.load(Relaxed),
        )
    }
}

/// One upstream connection and its timings.
pub(crate) struct Upstream {
    pub client: Client,
    pub latency: Latency,
    /// Requests forwarded to it that failed for want of an answer
    /// (timeout, disconnect).
    pub failures: AtomicU64,
}

/// The upstream connections of a proxy. Each request goes to a healthy one
/// (connected, not reconnecting) with the fewest calls pending; when one
/// drops, requests go to the others (failover) while it reconnects (give
/// each a [`ReconnectPolicy`](crate::ReconnectPolicy)). When none is
/// healthy, requests go to the first, where they wait for it as its
/// [`WhileReconnecting`](crate::WhileReconnecting) says.
///
/// ```no_run
/// use jsonrpc_websocket::{proxy::Upstreams, ReconnectPolicy, RpcConnection};
///
/// # async fn demo() -> Result<(), jsonrpc_websocket::Error> {
/// let mut clients = Vec::new();
/// for url in ["ws://node-a:8546", "ws://node-b:8546"] {
///     clients.push(
///         RpcConnection::builder(url)
///             .reconnect(ReconnectPolicy::new())
///             .connect()
///             .await?,
///     );
/// }
/// let upstreams = Upstreams::new(clients);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Upstreams {
    all: Arc<[Upstream]>,
}

impl Upstreams {
    /// A pool of these connections (in order of preference when equally
    /// loaded).
    pub fn new(clients: impl IntoIterator<Item = Client>) -> Upstreams {
        Upstreams {
            all: clients
                .into_iter()
                .map(|client| Upstream {
                    client,
                    latency: Latency::default(),
                    failures: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// The connections, in the order given.
    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.all.iter().map(|u| &u.client)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub(crate) fn all(&self) -> &[Upstream] {
        &self.all
    }

    /// The upstream for the next request: a healthy one with the fewest
    /// calls pending; the first when none is healthy; `None` when the pool
    /// is empty or every connection has ended.
    pub(crate) fn pick(&self) -> Option<(usize, &Upstream)> {
        let healthy = self
            .all
            .iter()
            .enumerate()
            .filter(|(_, u)| u.client.is_connected() && !u.client.is_reconnecting())
            .min_by_key(|(_, u)| u.client.pending_now());
        healthy.or_else(|| {
            self.all
                .iter()
                .enumerate()
                .find(|(_, u)| u.client.is_connected())
        })
    }
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field("len", &self.all.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_its_bucket_and_adds_up() {
        let latency = Latency::default();
        latency.record(Duration::from_micros(100));
        latency.record(Duration::from_micros(250));
        latency.record(Duration::from_millis(3));
        latency.record(Duration::from_secs(60));
        let (cumulative, count, sum) = latency.snapshot();
        assert_eq!(cumulative[0], 2, "≤ 250 µs");
        assert_eq!(cumulative[4], 3, "≤ 5 ms");
        assert_eq!(cumulative[BUCKETS_US.len()], 4, "everything");
        assert_eq!((count, sum), (4, 100 + 250 + 3_000 + 60_000_000));
    }
}
