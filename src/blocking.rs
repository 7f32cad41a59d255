//! A blocking client, for scripts, tests and synchronous code — as
//! `reqwest::blocking` is to reqwest.
//!
//! [`Client`] has the async [`Client`](crate::Client)'s calls, notifications,
//! batches and subscriptions (an [`Iterator`] here), and each method blocks
//! the calling thread until it is done. Its connection runs on the crate's
//! background actix thread (see
//! [`ConnectionBuilder::connect`](crate::ConnectionBuilder::connect)), so no
//! runtime is needed: `fn main` and a plain `#[test]` are enough. Every
//! setting of [`ConnectionBuilder`] applies (timeouts, auth, headers,
//! reconnecting, handlers for the server's requests, which run on that
//! thread).
//!
//! # Not inside an async runtime
//!
//! Blocking a thread that runs an async runtime stalls every task on it,
//! and can deadlock. So every method checks first: on a thread inside a
//! tokio runtime (including `spawn_blocking` threads, which have entered
//! one) or an actix `System`, it does nothing and returns
//! [`Error::BlockingInAsync`]. There, use the async
//! [`Client`](crate::Client) — [`Client::as_async`] gives the same
//! connection — e.g. `Handle::current().block_on(client.as_async().call(..))`
//! inside `spawn_blocking`.
//!
//! # Examples
//!
//! ```
//! use jsonrpc_websocket::{blocking, params, Error};
//!
//! # fn main() -> Result<(), Error> {
//! # let server = test_support::TestServer::start(test_support::standard);
//! # let url = server.url();
//! let client = blocking::Client::connect(&url)?;
//! let sum: i64 = client.call("add", params![1, 2])?;
//! assert_eq!(sum, 3);
//! client.notify("log.write", params!["from a plain thread"])?;
//!
//! let mut batch = client.batch();
//! let three = batch.call::<i64>("add", params![1, 2]);
//! let echo = batch.call::<Vec<String>>("echo", params!["a", "b"]);
//! let mut results = batch.send()?;
//! assert_eq!(results.take(three)?, 3);
//! assert_eq!(results.take(echo)?, ["a", "b"]);
//!
//! client.close()?;
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::background;
use crate::batch::{Batch, BatchResults, Slot};
use crate::builder::ConnectionBuilder;
use crate::error::Error;
use crate::message::{Call, Close, Disconnect, Subscribe};
use crate::protocol::{Id, Params};
use crate::stats::Stats;
use crate::subscription::{SubscriptionEnd, SubscriptionItem};
use crate::RpcConnection;

impl ConnectionBuilder {
    /// Opens the connection on the background actix thread and returns a
    /// [`blocking::Client`](Client) for it, blocking until the handshake
    /// has succeeded.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use jsonrpc_websocket::{params, Error, ErrorObject, RpcConnection, ServerRequest};
    ///
    /// # fn main() -> Result<(), Error> {
    /// # let server = test_support::TestServer::start(test_support::standard);
    /// # let url = server.url();
    /// let client = RpcConnection::builder(&url)
    ///     .request_timeout(Duration::from_secs(5))
    ///     // Runs on the connection's thread, not on this one.
    ///     .register_fn("client.confirm", |_req: ServerRequest| async { Ok::<_, ErrorObject>(true) })
    ///     .connect_blocking()?;
    /// let echoed: Vec<u32> = client.call("echo", params![7])?;
    /// # assert_eq!(echoed, [7]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`connect`](Self::connect), and
    /// [`Error::BlockingInAsync`] on a thread inside an async runtime.
    pub fn connect_blocking(self) -> Result<Client, Error> {
        refuse_inside_async("connect")?;
        let inner = block_on(self.connect(), None).expect("no deadline: waits for the outcome")?;
        Ok(Client { inner })
    }
}

/// A blocking handle to one connection; see the [module](self) for an
/// example. Cheap to clone (every clone is the same connection), `Send`
/// and `Sync`: share it between threads freely. Dropping the last handle
/// closes the connection cleanly, as with the async client.
#[derive(Clone, Debug)]
pub struct Client {
    inner: crate::Client,
}

impl Client {
    /// Connects to `url` with default settings; for anything else, start
    /// with [`Client::builder`].
    ///
    /// # Errors
    ///
    /// As for [`ConnectionBuilder::connect_blocking`].
    pub fn connect(url: impl Into<String>) -> Result<Client, Error> {
        RpcConnection::builder(url).connect_blocking()
    }

    /// Starts configuring a connection; finish with
    /// [`connect_blocking`](ConnectionBuilder::connect_blocking). The same
    /// builder as [`RpcConnection::builder`].
    pub fn builder(url: impl Into<String>) -> ConnectionBuilder {
        RpcConnection::builder(url)
    }

    /// Calls `method` and decodes its result as `T`; see
    /// [`crate::Client::call`].
    ///
    /// # Errors
    ///
    /// Those of [`crate::Client::call`]; [`Error::BlockingInAsync`].
    pub fn call<T: DeserializeOwned>(
        &self,
        method: impl Into<Cow<'static, str>>,
        params: impl Into<Params>,
    ) -> Result<T, Error> {
        wait("call", self.inner.call(method, params))?
    }

    /// Sends a prepared [`Call`] (its own timeout, retry on reconnect).
    ///
    /// # Errors
    ///
    /// Those of [`crate::Client::send`]; [`Error::BlockingInAsync`].
    pub fn send<T: DeserializeOwned>(&self, call: Call<T>) -> Result<T, Error> {
        wait("call", self.inner.send(call))?
    }

    /// Sends a notification; returns once it is queued for the socket.
    ///
    /// # Errors
    ///
    /// Those of [`crate::Client::notify`]; [`Error::BlockingInAsync`].
    pub fn notify(
        &self,
        method: impl Into<Cow<'static, str>>,
        params: impl Into<Params>,
    ) -> Result<(), Error> {
        wait("notify", self.inner.notify(method, params))?
    }

    /// Starts a batch; see [`crate::Client::batch`].
    pub fn batch(&self) -> BatchBuilder<'_> {
        BatchBuilder {
            client: self,
            batch: Batch::new(),
        }
    }

    /// Sends a prepared [`Batch`] and waits for every call's outcome.
    ///
    /// # Errors
    ///
    /// Those of [`crate::Client::send_batch`]; [`Error::BlockingInAsync`].
    pub fn send_batch(&self, batch: Batch) -> Result<BatchResults, Error> {
        wait("send a batch", self.inner.send_batch(batch))?
    }

    /// Subscribes; the [`Subscription`] is an iterator of its items. See
    /// [`crate::Client::subscribe`] for the routing rules.
    ///
    /// # Examples
    ///
    /// ```
    /// use jsonrpc_websocket::{blocking, params, Error, SubscriptionItem};
    ///
    /// # fn main() -> Result<(), Error> {
    /// # use test_support::{json, response, Action, TestServer};
    /// # let tick = |n: u64| Action::Reply(json!({"jsonrpc": "2.0", "method": "tick",
    /// #     "params": {"subscription": "t1", "result": n}}));
    /// # let server = TestServer::start(move |msg| match msg["method"].as_str() {
    /// #     Some("subscribe_ticks") => Action::Many(vec![
    /// #         Action::Reply(response(&msg["id"], json!("t1"))), tick(1), tick(2), tick(3)]),
    /// #     Some("unsubscribe_ticks") => Action::Reply(response(&msg["id"], json!(true))),
    /// #     _ => test_support::standard(msg),
    /// # });
    /// # let url = server.url();
    /// let client = blocking::Client::connect(&url)?;
    /// let mut ticks = client.subscribe::<u64>("subscribe_ticks", params![], "unsubscribe_ticks")?;
    /// let first: Vec<u64> = ticks
    ///     .by_ref()
    ///     .filter_map(|item| match item {
    ///         SubscriptionItem::Item(n) => Some(n),
    ///         _ => None, // Lagged, Resubscribed, Invalid: see SubscriptionItem
    ///     })
    ///     .take(3)
    ///     .collect();
    /// assert_eq!(first, [1, 2, 3]);
    /// assert_eq!(ticks.unsubscribe()?, true);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`crate::Client::subscribe`]; [`Error::BlockingInAsync`].
    pub fn subscribe<T>(
        &self,
        method: impl Into<Cow<'static, str>>,
        params: impl Into<Params>,
        unsubscribe: impl Into<Cow<'static, str>>,
    ) -> Result<Subscription<T>, Error> {
        let inner = wait(
            "subscribe",
            self.inner.subscribe::<T>(method, params, unsubscribe),
        )??;
        Ok(Subscription::new(inner))
    }

    /// Subscribes with a prepared [`Subscribe`] (its own queue capacity and
    /// overflow policy).
    ///
    /// # Errors
    ///
    /// Those of [`crate::Client::subscribe_with`]; [`Error::BlockingInAsync`].
    pub fn subscribe_with(&self, subscribe: Subscribe) -> Result<Subscription, Error> {
        let inner = wait("subscribe", self.inner.subscribe_with(subscribe))??;
        Ok(Subscription::new(inner))
    }

    /// Closes the connection with code 1000 and waits until it is closed;
    /// see [`crate::Client::close`].
    ///
    /// # Errors
    ///
    /// [`Error::CloseTimeout`]; [`Error::BlockingInAsync`].
    pub fn close(&self) -> Result<(), Error> {
        wait("close", self.inner.close())?
    }

    /// Closes the connection with a [`Close`] of your own.
    ///
    /// # Errors
    ///
    /// As for [`close`](Self::close).
    pub fn close_with(&self, close: Close) -> Result<(), Error> {
        wait("close", self.inner.close_with(close))?
    }

    /// Blocks until the connection has ended, and says how.
    ///
    /// # Errors
    ///
    /// [`Error::BlockingInAsync`].
    pub fn closed(&self) -> Result<Disconnect, Error> {
        wait("wait for the end", self.inner.closed())
    }

    /// The connection's counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Whether the connection is still running (also while reconnecting).
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// Whether the connection is down and dialling again.
    pub fn is_reconnecting(&self) -> bool {
        self.inner.is_reconnecting()
    }

    /// The async handle of the same connection: for what this one does
    /// not offer (events, run-time handler registration, namespaces), and
    /// for async code.
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }

    /// Turns this handle into the async handle of the same connection.
    pub fn into_async(self) -> crate::Client {
        self.inner
    }
}

impl From<crate::Client> for Client {
    /// A blocking handle to a connection opened with the async client
    /// (which may run on any actix thread).
    fn from(inner: crate::Client) -> Self {
        Client { inner }
    }
}

/// A batch being built for a [`blocking::Client`](Client); see
/// [`Client::batch`].
#[must_use = "a batch does nothing until it is sent"]
#[derive(Debug)]
pub struct BatchBuilder<'a> {
    client: &'a Client,
    batch: Batch,
}

impl BatchBuilder<'_> {
    /// Adds a call; see [`Batch::call`].
    pub fn call<T>(
        &mut self,
        method: impl Into<Cow<'static, str>>,
        params: impl Into<Params>,
    ) -> Slot<T> {
        self.batch.call(method, params)
    }

    /// Adds a notification; see [`Batch::notify`].
    pub fn notify(&mut self, method: impl Into<Cow<'static, str>>, params: impl Into<Params>) {
        self.batch.notify(method, params);
    }

    /// Sets the batch's timeout; see [`Batch::timeout`].
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.batch.timeout(timeout);
        self
    }

    /// Sends the batch and waits for every call's outcome.
    ///
    /// # Errors
    ///
    /// As for [`Client::send_batch`].
    pub fn send(self) -> Result<BatchResults, Error> {
        self.client.send_batch(self.batch)
    }
}

/// A live subscription of a [`blocking::Client`](Client): an [`Iterator`]
/// of its items, which blocks for the next one and ends when the
/// subscription does ([`close_reason`](Self::close_reason) says why).
/// Dropping it unsubscribes without waiting. See
/// [`crate::Subscription`] for the queue and its overflow policy.
///
/// Inside an async runtime, where it must not block, the iterator yields
/// one [`SubscriptionItem::Invalid`] carrying [`Error::BlockingInAsync`],
/// then ends; the subscription itself goes on.
pub struct Subscription<T = Value> {
    inner: crate::Subscription<T>,
    /// The last call was refused (inside an async runtime).
    refused: bool,
}

impl<T> Subscription<T> {
    fn new(inner: crate::Subscription<T>) -> Self {
        Subscription {
            inner,
            refused: false,
        }
    }

    /// The subscription id the server returned.
    pub fn id(&self) -> &Id {
        self.inner.id()
    }

    /// The subscribe method.
    pub fn method(&self) -> &str {
        self.inner.method()
    }

    /// The id the server knows the subscription by now (a reconnect makes
    /// it again under a new one).
    pub fn current_id(&self) -> Id {
        self.inner.current_id()
    }

    /// Why the subscription ended, once it has.
    pub fn close_reason(&self) -> Option<SubscriptionEnd> {
        self.inner.close_reason()
    }

    /// Ends the subscription and returns the server's answer to the
    /// unsubscribe call.
    ///
    /// # Errors
    ///
    /// Those of [`crate::Subscription::unsubscribe`];
    /// [`Error::BlockingInAsync`] (the subscription is then dropped, which
    /// unsubscribes without waiting).
    pub fn unsubscribe(self) -> Result<Value, Error> {
        wait("unsubscribe", self.inner.unsubscribe())?
    }

    /// The async subscription (a `Stream`) behind this one.
    pub fn into_async(self) -> crate::Subscription<T> {
        self.inner
    }
}

impl<T: DeserializeOwned> Subscription<T> {
    /// The next item, waiting at most `timeout`: `None` when none came in
    /// time or the subscription has ended ([`close_reason`](Self::close_reason)
    /// tells them apart).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<SubscriptionItem<T>> {
        self.next_until(Some(Instant::now() + timeout))
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Option<SubscriptionItem<T>> {
        if let Err(err) = refuse_inside_async("wait for an item") {
            // Once, then the iteration ends: a loop over it must not spin.
            return (!std::mem::replace(&mut self.refused, true))
                .then_some(SubscriptionItem::Invalid(err));
        }
        self.refused = false;
        block_on(self.inner.next(), deadline).flatten()
    }
}

impl<T: DeserializeOwned> Iterator for Subscription<T> {
    type Item = SubscriptionItem<T>;

    /// Blocks until the next item; `None` once the subscription has ended.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None)
    }
}

impl<T> std::fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// Refuses to block a thread that runs an async runtime.
fn refuse_inside_async(operation: &'static str) -> Result<(), Error> {
    match background::async_runtime() {
        Some(runtime) => Err(Error::BlockingInAsync { operation, runtime }),
        None => Ok(()),
    }
}

/// Runs `fut` to completion on this thread, unless it runs an async runtime.
fn wait<F: Future>(operation: &'static str, fut: F) -> Result<F::Output, Error> {
    refuse_inside_async(operation)?;
    Ok(block_on(fut, None).expect("no deadline: waits for the outcome"))
}

/// Polls `fut` on this thread, parking it between wake-ups, until it is
/// ready or `deadline` has passed (`None`).
///
// NOTE: futures-executor's `block_on` has no deadline, which
// `Subscription::next_timeout` needs; this is the whole of it.
fn block_on<F: Future>(fut: F, deadline: Option<Instant>) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = fut.as_mut().poll(&mut cx) {
            return Some(output);
        }
        // A wake-up between the poll and here leaves a token: `park`
        // returns at once. A spurious return only costs one more poll.
        match deadline {
            None => std::thread::park(),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                std::thread::park_timeout(left);
            }
        }
    }
}

/// Wakes the thread blocked in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_move_between_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Client>();
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Subscription<u64>>();
    }

    #[test]
    fn block_on_waits_for_a_wake_from_another_thread() {
        let (tx, rx) = futures_channel::oneshot::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(7).unwrap();
        });
        assert_eq!(block_on(rx, None), Some(Ok(7)));
        sender.join().unwrap();
    }

    #[test]
    fn block_on_gives_up_at_its_deadline() {
        let (_tx, rx) = futures_channel::oneshot::channel::<()>();
        let deadline = Instant::now() + Duration::from_millis(30);
        assert_eq!(block_on(rx, Some(deadline)), None);
        // Not before it (a spurious unpark only costs another poll).
        assert!(Instant::now() >= deadline);
    }

    #[actix_rt::test]
    async fn inside_an_actix_system_nothing_blocks() {
        let err = Client::connect("ws://127.0.0.1:1/").unwrap_err();
        assert!(
            matches!(
                err,
                Error::BlockingInAsync {
                    operation: "connect",
                    runtime: "an actix System"
                }
            ),
            "{err:?}"
        );
    }
}
