//! [`ProxyConfig`]: every limit and policy of a proxy, with its default.

use std::time::Duration;

use crate::delivery::Overflow;

/// A subscribe method and the method that ends what it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionMethods {
    /// E.g. `eth_subscribe`.
    pub subscribe: String,
    /// E.g. `eth_unsubscribe`.
    pub unsubscribe: String,
}

/// What downstream subscriptions go through when their upstream connection
/// is lost and no other upstream of the pool can take them over. (When
/// another is healthy, a shared subscription moves to it whatever the
/// policy, and each subscriber is sent the gap notification of
/// [`Resubscribe`](Self::Resubscribe).)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UpstreamLoss {
    /// The library makes the upstream subscription again after the
    /// reconnect (see [`ReconnectPolicy`](crate::ReconnectPolicy)); each
    /// downstream subscriber is sent
    /// `{"subscription": <id>, "gap": {"down_for_ms": <n>}}` (see
    /// [`ProxyConfig::gap_notification`]) and its items go on under the same
    /// id. Should the upstream refuse the new subscribe call, or the
    /// connection end for good, each subscriber is sent an `error`
    /// notification instead and the subscription ends. The default.
    #[default]
    Resubscribe,
    /// Each downstream subscriber is sent
    /// `{"subscription": <id>, "error": {"code": -32002, ..}}` at once, and
    /// the subscription ends (unsubscribing it then answers `false`); a
    /// client subscribes again when it sees fit.
    ErrorNotification,
    /// Each downstream websocket holding a subscription on that upstream is
    /// closed with this code (1012 "service restart" or 1013 "try again
    /// later"; a code a server may not send becomes 1011).
    Close(u16),
}

/// The limits and policies of a proxy. Everything a downstream client
/// controls is bounded here, and going past a bound answers that client
/// alone with an error.
///
/// ```
/// use std::time::Duration;
/// use jsonrpc_websocket::proxy::ProxyConfig;
///
/// let config = ProxyConfig::new()
///     .max_body(1 << 20)
///     .max_batch(100)
///     .per_client_in_flight(64)
///     .timeout(Duration::from_secs(10))
///     .subscription("eth_subscribe", "eth_unsubscribe");
/// ```
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub(crate) max_body: usize,
    pub(crate) max_batch: usize,
    pub(crate) max_depth: usize,
    pub(crate) per_client_in_flight: usize,
    pub(crate) max_connections: usize,
    pub(crate) timeout: Duration,
    pub(crate) subscriptions: Vec<SubscriptionMethods>,
    pub(crate) upstream_loss: UpstreamLoss,
    pub(crate) gap_method: Option<String>,
    pub(crate) subscription_capacity: usize,
    pub(crate) subscription_overflow: Overflow,
    pub(crate) subscriptions_per_client: usize,
    pub(crate) outbound: usize,
    pub(crate) outbound_stall: Duration,
    /// Ping interval and how long past it silence is tolerated.
    pub(crate) heartbeat: Option<(Duration, Duration)>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            max_body: 5 * 1024 * 1024,
            max_batch: 1_000,
            max_depth: 128,
            per_client_in_flight: 256,
            max_connections: 10_000,
            timeout: Duration::from_secs(30),
            subscriptions: vec![SubscriptionMethods {
                subscribe: "eth_subscribe".into(),
                unsubscribe: "eth_unsubscribe".into(),
            }],
            upstream_loss: UpstreamLoss::Resubscribe,
            gap_method: None,
            subscription_capacity: 1_024,
            subscription_overflow: Overflow::DropOldest,
            subscriptions_per_client: 1_024,
            outbound: 1_024,
            outbound_stall: Duration::from_secs(30),
            heartbeat: Some((Duration::from_secs(15), Duration::from_secs(10))),
        }
    }
}

impl ProxyConfig {
    /// The defaults: 5 MiB bodies and messages, batches of 1,000, 256
    /// requests in flight per downstream client, 10,000 downstream
    /// websockets, 30 s per request, `eth_subscribe`/`eth_unsubscribe` as
    /// the subscription methods, 1,024 subscriptions per websocket and
    /// 1,024 notifications queued for each (the oldest dropped), 1,024
    /// messages waiting for a websocket that may stall 30 s, a ping every
    /// 15 s with 10 s more to answer.
    pub fn new() -> Self {
        ProxyConfig::default()
    }

    /// The largest HTTP body, and websocket message, a downstream client
    /// may send, in bytes: beyond it, HTTP answers 413 and a websocket is
    /// closed with 1009. Default: 5 MiB.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes.max(1);
        self
    }

    /// The most entries in one downstream batch; a larger batch is answered
    /// with one error (-32005) and nothing is forwarded. Default: 1,000.
    pub fn max_batch(mut self, entries: usize) -> Self {
        self.max_batch = entries.max(1);
        self
    }

    /// How deeply a request's params may nest arrays and objects; deeper
    /// params are answered with -32602 and not forwarded (an upstream that
    /// cannot parse them would answer with no id, and the request would
    /// wait for its timeout). Default: 128, serde_json's own limit.
    pub fn max_depth(mut self, levels: usize) -> Self {
        self.max_depth = levels.max(1);
        self
    }

    /// The most requests one downstream websocket may have in flight;
    /// beyond it, each further request is answered at once with -32005.
    /// Default: 256.
    pub fn per_client_in_flight(mut self, requests: usize) -> Self {
        self.per_client_in_flight = requests.max(1);
        self
    }

    /// The most downstream websockets at once; one more is refused with
    /// HTTP 503 at the handshake. Default: 10,000.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// How long each forwarded request (each batch entry on its own) may
    /// wait for the upstream's answer; past it the downstream gets -32001.
    /// Default: 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Treats `subscribe`/`unsubscribe` as a subscription pair on websocket
    /// downstreams: identical subscribe calls share one upstream
    /// subscription. Replaces the default pair on first use; call it again
    /// for more pairs.
    pub fn subscription(
        mut self,
        subscribe: impl Into<String>,
        unsubscribe: impl Into<String>,
    ) -> Self {
        let default = ProxyConfig::default().subscriptions;
        if self.subscriptions == default {
            self.subscriptions.clear();
        }
        self.subscriptions.push(SubscriptionMethods {
            subscribe: subscribe.into(),
            unsubscribe: unsubscribe.into(),
        });
        self
    }

    /// What downstream subscriptions go through when their upstream is
    /// lost. Default: [`UpstreamLoss::Resubscribe`].
    pub fn upstream_loss(mut self, policy: UpstreamLoss) -> Self {
        self.upstream_loss = policy;
        self
    }

    /// The method of the notification telling a downstream subscriber of a
    /// gap (policy [`UpstreamLoss::Resubscribe`], and a move to another
    /// upstream): its params are
    /// `{"subscription": <id>, "gap": {"down_for_ms": <n>}}`. Default: the
    /// method of the subscription's own notifications (the last one's), or
    /// the subscribe method itself when none has come yet; set it to be
    /// sure of the name.
    pub fn gap_notification(mut self, method: impl Into<String>) -> Self {
        self.gap_method = Some(method.into());
        self
    }

    /// How many notifications may wait for each downstream subscriber, and
    /// what a full queue does with one more. Each subscriber has its own
    /// queue: one that falls behind loses items alone, and the next
    /// notification it gets is
    /// `{"subscription": <id>, "lagged": {"missed": <n>}}` (with the items'
    /// method); under [`Overflow::Close`] its last is one with an `error`
    /// (-32005), and the subscription is ended. Default: 1,024, drop the
    /// oldest.
    pub fn subscriber_queue(mut self, capacity: usize, overflow: Overflow) -> Self {
        self.subscription_capacity = capacity.max(1);
        self.subscription_overflow = overflow;
        self
    }

    /// The most subscriptions one downstream websocket may hold at once;
    /// one more subscribe call is answered with -32005. Default: 1,024.
    pub fn subscriptions_per_client(mut self, subscriptions: usize) -> Self {
        self.subscriptions_per_client = subscriptions.max(1);
        self
    }

    /// Bounds what waits to be written to one downstream websocket:
    /// at most `messages` answers (and passed-through server requests)
    /// queued for the socket, and at most `stall` for a message to be taken
    /// by it. A downstream that does not read its socket fills both; the
    /// session is then closed with 1008 (policy violation) and everything
    /// it held is freed, while other downstreams go on. Subscription
    /// notifications wait in each subscriber's own queue instead (see
    /// [`subscriber_queue`](Self::subscriber_queue)). Default: 1,024
    /// messages, 30 s.
    pub fn session_outbound(mut self, messages: usize, stall: Duration) -> Self {
        self.outbound = messages.max(1);
        self.outbound_stall = stall;
        self
    }

    /// Pings each downstream websocket every `interval`; one from which
    /// nothing at all (a pong, a message) has come for `interval` +
    /// `timeout` is closed (1001) at the next ping, and everything it held
    /// freed: a client gone without a word does not hold its place (and
    /// its subscriptions) forever. `Duration::ZERO` as the interval turns
    /// it off. Default: 15 s, 10 s (as the library's own heartbeat).
    pub fn session_heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.heartbeat = (!interval.is_zero()).then_some((interval, timeout));
        self
    }

    /// The subscription pair `method` subscribes with, if it is one.
    pub(crate) fn subscribe_pair(&self, method: &str) -> Option<&SubscriptionMethods> {
        self.subscriptions.iter().find(|p| p.subscribe == method)
    }

    /// The subscription pair `method` unsubscribes with, if it is one.
    pub(crate) fn unsubscribe_pair(&self, method: &str) -> Option<&SubscriptionMethods> {
        self.subscriptions.iter().find(|p| p.unsubscribe == method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_pair_given_replaces_the_default_and_more_add_up() {
        let config = ProxyConfig::new();
        assert!(config.subscribe_pair("eth_subscribe").is_some());
        let config = config
            .subscription("subscribe_ticks", "unsubscribe_ticks")
            .subscription("eth_subscribe", "eth_unsubscribe");
        assert_eq!(config.subscriptions.len(), 2);
        assert_eq!(
            config
                .unsubscribe_pair("unsubscribe_ticks")
                .map(|p| &*p.subscribe),
            Some("subscribe_ticks")
        );
        assert!(config.subscribe_pair("eth_call").is_none());
    }
}
