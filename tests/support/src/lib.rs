//! In-process fake peers for the integration tests of `jsonrpc-websocket`
//! and its CLI.
//!
//! * [`TestServer`]: an actix-web + actix-ws JSON-RPC peer whose answers are scripted by a
//!   handler returning [`Action`]s ([`standard`] covers the common methods).
//! * [`RawServer`]: a hand-rolled websocket peer on a bare tokio `TcpListener`, for hostile
//!   byte-level tests.
//! * [`FaultProxy`]: a TCP proxy in front of either, injecting network faults (cut, black hole,
//!   latency, refusal, a moved backend).
//!
//! Every server (and the proxy) binds `127.0.0.1:0` (a [`TestServer`] may also bind a given
//! address), runs on its own thread with its own runtime and shuts down (bounded) when dropped,
//! re-raising any panic from inside it.

pub mod proxy;
pub mod raw;
pub mod server;
mod thread;

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use proxy::FaultProxy;
pub use raw::{RawConn, RawFrame, RawServer};
pub use serde_json::{json, Value};
pub use server::{response, standard, Action, TestServer};

/// How long dropping a server waits for its thread to finish before giving up (and leaking it).
pub(crate) const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server constructor waits for its thread to report readiness.
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A mutex-protected state plus both a condvar (for blocking waits from plain threads) and a
/// tokio `Notify` (for async waits from inside a runtime) that fire on every change.
pub(crate) struct Watched<T> {
    state: Mutex<T>,
    cond: Condvar,
    notify: tokio::sync::Notify,
}

impl<T> Watched<T> {
    pub(crate) fn new(value: T) -> Self {
        Watched {
            state: Mutex::new(value),
            cond: Condvar::new(),
            notify: tokio::sync::Notify::new(),
        }
    }

    /// Locks the state (ignoring poisoning: a panic elsewhere is reported separately).
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mutates the state and wakes every waiter.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let r = f(&mut self.lock());
        self.cond.notify_all();
        self.notify.notify_waiters();
        r
    }

    /// Blocks the current thread until `check` returns `Some`, or `timeout` elapses (`None`).
    pub(crate) fn wait_blocking<R>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&T) -> Option<R>,
    ) -> Option<R> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock();
        loop {
            if let Some(r) = check(&guard) {
                return Some(r);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            guard = self
                .cond
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits asynchronously (must run inside a tokio/actix runtime with timers) until `check`
    /// returns `Some`, or `timeout` elapses (`None`).
    pub(crate) async fn wait_async<R>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&T) -> Option<R>,
    ) -> Option<R> {
        let wait = async {
            loop {
                let notified = self.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(r) = check(&self.lock()) {
                    return r;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }
}

// ---- client-side helpers shared by the integration tests -------------------

use jsonrpc_websocket::{Client, RpcConnection};

/// Every await in a test is bounded by this.
pub const BOUND: Duration = Duration::from_secs(10);

/// Awaits `fut`, panicking with `what` if it takes longer than [`BOUND`].
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(BOUND, fut).await {
        Ok(out) => out,
        Err(_) => panic!("{what} did not finish within {BOUND:?}"),
    }
}

/// Connects with default settings.
pub async fn connect(url: &str) -> Client {
    within("connect", RpcConnection::builder(url).connect())
        .await
        .unwrap_or_else(|err| panic!("connect to {url}: {err}"))
}

/// Connects with a configured builder.
pub async fn connect_with(builder: jsonrpc_websocket::ConnectionBuilder) -> Client {
    within("connect", builder.connect())
        .await
        .unwrap_or_else(|err| panic!("connect: {err}"))
}

/// The last request the server received for `method`.
pub fn last_request(server: &TestServer, method: &str) -> Value {
    server
        .received()
        .into_iter()
        .rev()
        .find(|m| m["method"] == method)
        .unwrap_or_else(|| panic!("server never received '{method}': {:?}", server.received()))
}

/// A peer that completes the handshake, then neither reads nor writes nor
/// closes (for 5 s): our writes back up and our close frame goes unanswered.
pub fn silent_peer() -> RawServer {
    RawServer::start(|conn: RawConn| async move {
        let _open_but_ignored = conn;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
}

/// A request from the server to the client: `{"jsonrpc":"2.0","id":..,"method":..,"params":..}`.
pub fn server_request(id: impl Into<Value>, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.into(), "method": method, "params": params})
}

/// Pushes a request from the server and returns the client's answer to it
/// (the first message received after it that is not a request).
pub async fn ask(server: &TestServer, request: Value) -> Value {
    let seen = server.received().len();
    let id = request["id"].clone();
    server.push(request);
    let received = server.wait_received_async(seen + 1, BOUND).await;
    let answer = received[seen..].iter().find(|m| m.get("method").is_none());
    answer
        .cloned()
        .unwrap_or_else(|| panic!("no answer to id {id}: {received:?}"))
}

/// The pending-call table must be empty after every test.
pub fn assert_no_pending(client: &Client) {
    let stats = client.stats();
    assert_eq!(
        stats.pending, 0,
        "calls left in the pending table: {stats:?}"
    );
}

/// The `source()` chain of an error, outermost first (the error itself included).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![err.to_string()];
    let mut next = err.source();
    while let Some(err) = next {
        out.push(err.to_string());
        next = err.source();
    }
    out
}
