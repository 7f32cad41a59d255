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
        }
    }
}
