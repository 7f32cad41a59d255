//! The settings of one connection. `Config::default()` is the only place
//! defaults live; the builder's setter docs quote them.

use std::time::Duration;

use crate::delivery::Overflow;

/// What a call or notification does when a bound of the connection is
/// full: the calls in flight (`max_in_flight`) or the outbound bytes queued
/// for the socket (`max_queued_bytes`).
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::{Backpressure, RpcConnection};
///
/// let builder = RpcConnection::builder("ws://127.0.0.1:9090")
///     .max_queued_bytes(1 << 20)
///     .backpressure(Backpressure::Fail);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Wait for room, up to the call's timeout (a notification: the request
    /// timeout). A call that waits too long ends with
    /// [`Error::Timeout`](crate::Error::Timeout), a notification with
    /// [`Error::Overloaded`](crate::Error::Overloaded). The default: like a
    /// socket, a slow peer slows its senders down.
    #[default]
    Wait,
    /// Fail at once with [`Error::Overloaded`](crate::Error::Overloaded).
    Fail,
}

/// How a connection that drops is dialled again: exponential backoff with
/// full jitter (each wait is random between zero and the current step),
/// from `initial_delay` doubling up to `max_delay`, for `max_attempts` in a
/// row or forever; the count starts again once a connection has stayed up
/// for `reset_after`.
///
/// It never reconnects after our own [`Close`](crate::Close) (or every
/// handle dropped), after close code 1008 (policy violation), or after a
/// handshake refused with HTTP 401 or 403: the
/// [`ConnectionEvent::Closed`](crate::ConnectionEvent::Closed) event says
/// why. After close code 1013 (try again later) or HTTP 503 it waits at
/// least `busy_delay`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use jsonrpc_websocket::{ReconnectPolicy, RpcConnection};
///
/// let builder = RpcConnection::builder("ws://127.0.0.1:9090")
///     .endpoint("ws://127.0.0.1:9091") // tried in turn
///     .reconnect(ReconnectPolicy::new().max_delay(Duration::from_secs(10)).max_attempts(20));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectPolicy {
    pub(crate) initial_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) reset_after: Duration,
    pub(crate) busy_delay: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
            reset_after: Duration::from_secs(30),
            busy_delay: Duration::from_secs(5),
        }
    }
}

impl ReconnectPolicy {
    /// The defaults: 100 ms doubling up to 30 s, forever, the count reset
    /// after 30 s up, at least 5 s after "try again later".
    pub fn new() -> Self {
        ReconnectPolicy::default()
    }

    /// The first step of the backoff. Default: 100 ms.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The largest step of the backoff. Default: 30 s.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Gives up after this many failed attempts in a row (at least 1).
    /// Default: never gives up.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Never gives up (the default).
    pub fn forever(mut self) -> Self {
        self.max_attempts = None;
        self
    }

    /// How long a connection must stay up for the attempt count to start
    /// again. Default: 30 s.
    pub fn reset_after(mut self, period: Duration) -> Self {
        self.reset_after = period;
        self
    }

    /// The least wait after close code 1013 or HTTP 503. Default: 5 s.
    pub fn busy_delay(mut self, delay: Duration) -> Self {
        self.busy_delay = delay;
        self
    }
}

/// What calls and notifications made while the connection is reconnecting
/// do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhileReconnecting {
    /// Wait for the connection (calls up to their timeout, in a queue bounded
    /// by `max_in_flight`; notifications in the outbound queue). The default.
    #[default]
    Wait,
    /// Fail at once with [`Error::NotConnected`](crate::Error::NotConnected).
    FailFast,
}

/// A ping on a fixed schedule; any frame from the server counts as a sign
/// of life; no sign of life within `timeout` of a ping means the peer is
/// gone (a half-open connection: a server that vanished without closing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub close_timeout: Duration,
    pub max_message_size: usize,
    pub max_in_flight: usize,
    pub max_queued_bytes: usize,
    pub backpressure: Backpressure,
    pub max_server_requests: usize,
    pub listener_capacity: usize,
    pub listener_overflow: Overflow,
    pub subscription_capacity: usize,
    pub subscription_overflow: Overflow,
    pub reconnect: Option<ReconnectPolicy>,
    pub while_reconnecting: WhileReconnecting,
    pub heartbeat: Option<Heartbeat>,
    pub events_capacity: usize,
    /// How often a notification flood is read (`None`: as it comes).
    pub read_pacing: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(1),
            max_message_size: 16 * 1024 * 1024,
            max_in_flight: 65_536,
            max_queued_bytes: 4 * 1024 * 1024,
            backpressure: Backpressure::Wait,
            max_server_requests: 1024,
            listener_capacity: 1024,
            listener_overflow: Overflow::DropOldest,
            subscription_capacity: 1024,
            subscription_overflow: Overflow::DropOldest,
            reconnect: None,
            while_reconnecting: WhileReconnecting::Wait,
            heartbeat: Some(Heartbeat {
                interval: Duration::from_secs(15),
                timeout: Duration::from_secs(10),
            }),
            events_capacity: 64,
            read_pacing: Some(Duration::from_micros(200)),
        }
    }
}
