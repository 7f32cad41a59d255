//! [`Client`]: the handle plain async code uses instead of actor messages.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use actix::{Addr, MailboxError, Recipient};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::batch::{Batch, BatchResults, Slot};
use crate::connection::{RpcConnection, Shared};
use crate::error::Error;
use crate::events::EventStream;
use crate::message::{
    Call, Close, Disconnect, RawCall, RegisterHandler, RegisterListener, ServerNotification,
    ServerRequest, Subscribe, UnregisterHandler, UnregisterListeners,
};
use crate::protocol::{ErrorObject, Params};
use crate::registry::Route;
use crate::stats::Stats;
use crate::subscription::Subscription;

/// A cheap, cloneable handle to one [`RpcConnection`].
///
/// Every clone talks to the same connection. The connection closes when
/// [`close`](Client::close) is called, when the server goes away, or when
/// the last `Client` (and every `Addr` of the actor) is dropped: it then
/// closes cleanly with code 1000, as jsonrpsee's client does on drop.
/// Mailbox failures (the actor has stopped) become [`Error::NotConnected`],
/// so every method returns this crate's [`Error`] alone.
///
/// # Any thread, any executor
///
/// The handle is `Send + Sync`, and so is every future it returns: use it
/// from `#[tokio::main]` and `tokio::spawn`ed tasks, another executor, or
/// several threads at once. The connection itself runs on one actix
/// thread: the one that connected, inside an actix `System`; otherwise the
/// crate's background thread — **one thread for the whole process**,
/// started by the first connection made outside a `System` and shared by
/// every later one (each connection costs a few tasks on it, no thread of
/// its own; see [`ConnectionBuilder::connect`](crate::ConnectionBuilder::connect)).
/// Handlers for the server's requests run on that thread too; an actor
/// handler must live in some actix `System` (any thread), closures
/// ([`register_fn`](Self::register_fn)) need none. The background thread
/// never keeps the process from exiting; connections still open then end
/// without a close frame, so [`close`](Self::close) them first for a clean
/// close.
///
/// # Examples
///
/// ```no_run
/// use jsonrpc_websocket::{params, Error, RpcConnection};
/// use serde_json::{json, Value};
///
/// #[actix::main]
/// async fn main() -> Result<(), Error> {
///     let client = RpcConnection::builder("ws://127.0.0.1:9090").connect().await?;
///     let sum: i64 = client.call("math.add", params![2, 3]).await?;              // positional
///     let user: Value = client.call("users.get", json!({"name": "ann"})).await?; // named
///     client.notify("log.write", params!["hello"]).await?;                       // no reply
///     let users = client.namespace("app.users");
///     let all: Vec<Value> = users.call("getUsers", params![]).await?;           // app.users.getUsers
///     client.close().await?;
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Client {
    addr: Addr<RpcConnection>,
    shared: Arc<Shared>,
    /// The runtime of the connection's thread: entered by the few futures
    /// that need a tokio timer when they are polled where there is none.
    runtime: tokio::runtime::Handle,
}

impl Client {
    /// A handle to the connection just started on this thread.
    pub(crate) fn new(addr: Addr<RpcConnection>, shared: Arc<Shared>) -> Self {
        Client {
            addr,
            shared,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The connection actor's address, for sending it messages directly.
    pub fn addr(&self) -> &Addr<RpcConnection> {
        &self.addr
    }

    /// Calls `method` and decodes its result as `T` (use
    /// [`serde_json::Value`] to take any result). The result is decoded
    /// here, in the caller's task, from the raw JSON: a large result costs
    /// the connection's other calls nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # use jsonrpc_websocket::{params, Client, Error};
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// let sum: i64 = client.call("math.add", params![2, 3]).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`Call`]: [`Error::Rpc`], [`Error::Timeout`],
    /// [`Error::Closed`], [`Error::Disconnected`], [`Error::Decode`],
    /// [`Error::Overloaded`], …
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives the call up: its entry in the pending
    /// table is freed at once (counted in [`Stats::cancelled`]) and a late
    /// answer is ignored. The request may or may not have reached the server.
    pub async fn call<T>(
        &self,
        method: impl Into<Cow<'static, str>>,
        params: impl Into<Params>,
    ) -> Result<T, Error>
    where
        T: DeserializeOwned,
    {
        self.send(Call::new(method, params).typed()).await
    }

    /// Sends a prepared [`Call`], e.g. one with its own timeout.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use jsonrpc_websocket::{params, Call, Client, Error};
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// let report: String = client
    ///     .send(Call::new("report.build", params![]).timeout(Duration::from_secs(120)).typed())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn send<T>(&self, call: Call<T>) -> Result<T, Error>
    where
        T: DeserializeOwned,
    {
        let call = RawCall::from(call);
        let method = call.method.clone();
        let reply = self
            .addr
            .send(call)
            .await
            .map_err(|err| not_connected(err, method))??;
        reply.decode()
    }

    /// Sends a notification: no id, no reply. Completes once the frame is
    /// accepted into the connection's bounded outbound queue, in order —
    /// straight from this task, without a round trip through the actor.
    ///
    /// # Errors
    ///
    /// [`Error::Overloaded`] when the outbound queue stays full (see
    /// [`Backpressure`](crate::Backpressure)), [`Error::NotConnected`] once
    /// the connection is closing, [`Error::InvalidParams`],
    /// [`Error::MessageTooLarge`].
    pub async fn notify(
        &self,
        method: impl Into<Cow<'static, str>>,
        params: impl Into<Params>,
    ) -> Result<(), Error> {
        let params = params.into();
        let notify = self.shared.notify(method.into(), &params);
        if tokio::runtime::Handle::try_current().is_ok() {
            notify.await
        } else {
            // NOTE: waiting for room takes a tokio timer; a plain thread or
            // another executor has none, so the connection's runtime lends its own.
            tokio_util::context::TokioContext::new(notify, self.runtime.clone()).await
        }
    }

    /// Subscribes: calls `method` with `params` and routes the notifications
    /// for the subscription id it returns to the [`Subscription`], a stream
    /// of items decoded as `T` (see [`Subscribe`] for the routing rules).
    /// `unsubscribe` is the method that ends it, called with the id.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use jsonrpc_websocket::{params, Client, Error, SubscriptionItem};
    ///
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// let mut logs = client
    ///     .subscribe::<serde_json::Value>("eth_subscribe", params!["logs", {}], "eth_unsubscribe")
    ///     .await?;
    /// while let Some(SubscriptionItem::Item(log)) = logs.next().await {
    ///     println!("{log}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The subscribe call's errors; [`Error::InvalidResponse`] when its
    /// result is not a number or a string.
    pub async fn subscribe<T>(
        &self,
        method: impl Into<Cow<'static, str>>,
        params: impl Into<Params>,
        unsubscribe: impl Into<Cow<'static, str>>,
    ) -> Result<Subscription<T>, Error> {
        let subscription = self
            .subscribe_with(Subscribe::new(method, params, unsubscribe))
            .await?;
        Ok(subscription.typed())
    }

    /// Subscribes with a prepared [`Subscribe`]: its own queue capacity and
    /// overflow policy, or delivery to an actor.
    ///
    /// ```
    /// # use jsonrpc_websocket::{params, Client, Error, Overflow, Subscribe};
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// let heads = client
    ///     .subscribe_with(
    ///         Subscribe::new("eth_subscribe", params!["newHeads"], "eth_unsubscribe")
    ///             .overflow(Overflow::KeepLatest),
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_with(&self, subscribe: Subscribe) -> Result<Subscription, Error> {
        let method = subscribe.method.clone();
        self.addr
            .send(subscribe)
            .await
            .map_err(|err| not_connected(err, method))?
    }

    /// Starts a batch: calls and notifications sent as one message, each
    /// call's outcome in its own typed [`Slot`] (see [`Batch`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use jsonrpc_websocket::{params, Client, Error};
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// let mut batch = client.batch();
    /// let sum = batch.call::<i64>("math.add", params![1, 2]);
    /// let user = batch.call::<serde_json::Value>("users.get", params![7]);
    /// batch.notify("log.write", params!["a batch"]);
    /// let mut results = batch.send().await?;
    /// let sum = results.take(sum)?;       // each entry has its own outcome,
    /// let user = results.take(user);      // in submission order
    /// # Ok(()) }
    /// ```
    pub fn batch(&self) -> BatchBuilder<'_> {
        BatchBuilder {
            client: self,
            batch: Batch::new(),
        }
    }

    /// Sends a prepared [`Batch`].
    ///
    /// # Errors
    ///
    /// Only what keeps the whole batch from being sent
    /// ([`Error::NotConnected`], [`Error::Overloaded`],
    /// [`Error::MessageTooLarge`], [`Error::InvalidParams`]); each call's own
    /// outcome is in the results.
    pub async fn send_batch(&self, batch: Batch) -> Result<BatchResults, Error> {
        self.addr
            .send(batch)
            .await
            .map_err(|err| not_connected(err, Cow::Borrowed("batch")))?
    }

    /// A view of the methods under `prefix`: `client.namespace("app.users")
    /// .call("getUsers", ..)` calls `app.users.getUsers`.
    pub fn namespace(&self, prefix: impl Into<String>) -> Namespace {
        Namespace {
            client: self.clone(),
            prefix: prefix.into(),
        }
    }

    /// Closes the connection with code 1000 (see [`Close`]) and waits until
    /// it is closed. Pending calls fail with [`Error::Closed`]. Closing twice
    /// is harmless.
    ///
    /// # Errors
    ///
    /// [`Error::CloseTimeout`] when the server did not finish the closing
    /// handshake within the close timeout (the connection is closed anyway).
    pub async fn close(&self) -> Result<(), Error> {
        self.close_with(Close::new()).await
    }

    /// Closes the connection with a [`Close`] of your own (a code and a
    /// reason, a close timeout). Returns exactly what `addr.send(close)`
    /// returns, and `Ok` when the actor had already stopped.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use jsonrpc_websocket::{Client, Close, Error};
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// client.close_with(Close::with_reason(4000, "bye")?.timeout(Duration::from_millis(200))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn close_with(&self, close: Close) -> Result<(), Error> {
        // An actor that has already stopped is as closed as it gets.
        self.addr.send(close).await.unwrap_or(Ok(()))
    }

    /// Resolves once the connection has ended, with how it ended: closed by
    /// either side (and whether the closing handshake finished) or lost.
    /// Resolves at once when it has already ended.
    ///
    /// ```
    /// # async fn demo(client: jsonrpc_websocket::Client) {
    /// let end = client.closed().await;
    /// eprintln!("{end}"); // e.g. "closed by the server (code 1001: restarting)"
    /// # }
    /// ```
    pub async fn closed(&self) -> Disconnect {
        let mut ended = self.shared.ended.subscribe();
        let end = match ended.wait_for(Option::is_some).await {
            Ok(end) => end.clone(),
            // The sender lives in `shared`, which this handle keeps alive.
            Err(_) => None,
        };
        end.unwrap_or_else(stopped_without_word)
    }

    /// Answers the server's requests matching `route` with this actor,
    /// replacing any handler at the same route (see [`RegisterHandler`]).
    pub async fn register(
        &self,
        route: impl Into<Route>,
        recipient: Recipient<ServerRequest>,
    ) -> Result<(), Error> {
        self.deliver(RegisterHandler::actor(route, recipient), "register")
            .await
    }

    /// Answers the server's requests matching `route` with a closure, given
    /// the whole [`ServerRequest`]: the equivalent of the Python library's
    /// `server.ns.method = fn` (see [`RegisterHandler::func`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use jsonrpc_websocket::{Client, Error, ErrorObject, ServerRequest};
    /// # use serde_json::json;
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// client
    ///     .register_fn("namespace.client_method", |req: ServerRequest| async move {
    ///         Ok::<_, ErrorObject>(json!({"you sent": req.params}))
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn register_fn<F, Fut, R>(&self, route: impl Into<Route>, f: F) -> Result<(), Error>
    where
        F: Fn(ServerRequest) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, ErrorObject>> + 'static,
        R: Serialize,
    {
        self.deliver(RegisterHandler::func(route, f), "register_fn")
            .await
    }

    /// Removes the handler registered at exactly `route`.
    pub async fn unregister(&self, route: impl Into<Route>) -> Result<(), Error> {
        self.deliver(UnregisterHandler(route.into()), "unregister")
            .await
    }

    /// Sends the server's notifications matching `route` to this actor, in
    /// addition to any other listener.
    pub async fn listen(
        &self,
        route: impl Into<Route>,
        recipient: Recipient<ServerNotification>,
    ) -> Result<(), Error> {
        self.deliver(RegisterListener::actor(route, recipient), "listen")
            .await
    }

    /// Passes the server's notifications matching `route` to a closure, in
    /// addition to any other listener.
    pub async fn on_notification<F>(&self, route: impl Into<Route>, f: F) -> Result<(), Error>
    where
        F: Fn(ServerNotification) + Send + 'static,
    {
        self.deliver(RegisterListener::func(route, f), "on_notification")
            .await
    }

    /// Adds a listener with its own queue settings (see [`RegisterListener`]).
    pub async fn listener(&self, listener: RegisterListener) -> Result<(), Error> {
        self.deliver(listener, "listener").await
    }

    /// Removes every listener registered at exactly `route`.
    pub async fn unlisten(&self, route: impl Into<Route>) -> Result<(), Error> {
        self.deliver(UnregisterListeners(route.into()), "unlisten")
            .await
    }

    async fn deliver<M>(&self, message: M, what: &'static str) -> Result<(), Error>
    where
        M: actix::Message<Result = ()> + Send + 'static,
        RpcConnection: actix::Handler<M>,
    {
        self.addr
            .send(message)
            .await
            .map_err(|err| not_connected(err, Cow::Borrowed(what)))
    }

    /// The connection's counters, readable even after it has stopped.
    pub fn stats(&self) -> Stats {
        self.shared.metrics.snapshot()
    }

    /// Whether the connection actor is still running (it runs on while
    /// reconnecting; see [`is_reconnecting`](Self::is_reconnecting)).
    pub fn is_connected(&self) -> bool {
        self.addr.connected()
    }

    /// Calls in the pending table now (a cheaper [`Stats::pending`]).
    #[cfg(feature = "proxy")]
    pub(crate) fn pending_now(&self) -> u64 {
        self.shared
            .metrics
            .pending
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the connection is down and dialling again.
    pub fn is_reconnecting(&self) -> bool {
        self.shared
            .reconnecting
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The connection's [`ConnectionEvent`](crate::ConnectionEvent)s from now on, as a stream that
    /// starts with the state the connection is in (`Connected`, the pending
    /// `Reconnecting`, or `Closed`) and ends after `Closed`. Watching costs
    /// nothing until an event happens; drop the stream to stop.
    ///
    /// ```
    /// # use futures_util::StreamExt;
    /// # use jsonrpc_websocket::{Client, ConnectionEvent};
    /// # async fn demo(client: Client) {
    /// let mut events = client.events();
    /// assert!(matches!(events.next().await, Some(ConnectionEvent::Connected { .. })));
    /// # }
    /// ```
    pub fn events(&self) -> EventStream {
        self.shared.watchers().stream()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("connected", &self.is_connected())
            .field("stats", &self.stats())
            .finish()
    }
}

fn not_connected(_: MailboxError, method: Cow<'static, str>) -> Error {
    Error::NotConnected { method }
}

fn stopped_without_word() -> Disconnect {
    Disconnect {
        initiator: crate::message::Initiator::Transport,
        code: None,
        reason: "the connection stopped".to_owned(),
        clean: false,
    }
}

/// A batch being built for one [`Client`]; see [`Client::batch`].
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
    pub fn timeout(&mut self, timeout: std::time::Duration) -> &mut Self {
        self.batch.timeout(timeout);
        self
    }

    /// Sends the batch and waits for every call's outcome; see
    /// [`Client::send_batch`].
    pub async fn send(self) -> Result<BatchResults, Error> {
        self.client.send_batch(self.batch).await
    }
}

/// The methods under one dotted prefix, as in the Python library's
/// `server.app.users.getUsers()`. Made by [`Client::namespace`].
///
/// # Examples
///
/// ```
/// # use jsonrpc_websocket::{params, Client, Error};
/// # async fn demo(client: Client) -> Result<(), Error> {
/// let admin = client.namespace("app").namespace("users.admin");
/// assert_eq!(admin.prefix(), "app.users.admin");
/// let n: u64 = admin.call("count", params![]).await?; // app.users.admin.count
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Namespace {
    client: Client,
    prefix: String,
}

impl Namespace {
    /// The dotted prefix, without a trailing dot.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn qualify(&self, method: &str) -> String {
        format!("{}.{}", self.prefix, method)
    }

    /// Calls `prefix.method`; see [`Client::call`].
    pub async fn call<T>(&self, method: &str, params: impl Into<Params>) -> Result<T, Error>
    where
        T: DeserializeOwned,
    {
        self.client.call(self.qualify(method), params).await
    }

    /// Calls `prefix.method` and returns the result as a [`Value`].
    pub async fn call_value(
        &self,
        method: &str,
        params: impl Into<Params>,
    ) -> Result<Value, Error> {
        self.call(method, params).await
    }

    /// Notifies `prefix.method`; see [`Client::notify`].
    pub async fn notify(&self, method: &str, params: impl Into<Params>) -> Result<(), Error> {
        self.client.notify(self.qualify(method), params).await
    }

    /// A nested namespace: `prefix.sub`.
    pub fn namespace(&self, sub: &str) -> Namespace {
        self.client.namespace(self.qualify(sub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_move_between_threads() {
        fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync_clone::<Client>();
        assert_send_sync_clone::<Namespace>();
    }
}
