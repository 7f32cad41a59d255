//! [`Client`]: the handle plain async code uses instead of actor messages.

use std::sync::Arc;

use std::borrow::Cow;
use std::future::Future;

use actix::{Addr, MailboxError, Recipient};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::connection::{RpcConnection, SharedMetrics, Stats};
use crate::error::Error;
use crate::message::{
    Call, Close, Notify, RegisterHandler, RegisterListener, ServerNotification, ServerRequest,
    UnregisterHandler, UnregisterListeners,
};
use crate::protocol::{ErrorObject, Params};
use crate::registry::Route;

/// A cheap, cloneable handle to one [`RpcConnection`].
///
/// Every clone talks to the same connection; the connection closes when
/// [`close`](Client::close) is called or when the server goes away. Mailbox
/// failures (the actor has stopped) become [`Error::NotConnected`], so every
/// method returns this crate's [`Error`] alone.
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
    metrics: Arc<SharedMetrics>,
}

impl Client {
    pub(crate) fn new(addr: Addr<RpcConnection>, metrics: Arc<SharedMetrics>) -> Self {
        Client { addr, metrics }
    }

    /// The connection actor's address, for sending it messages directly.
    pub fn addr(&self) -> &Addr<RpcConnection> {
        &self.addr
    }

    /// Calls `method` and decodes its result as `T` (use
    /// [`serde_json::Value`] to take any result).
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
    /// [`Error::Closed`], [`Error::Disconnected`], [`Error::Decode`], …
    pub async fn call<T>(
        &self,
        method: impl Into<Cow<'static, str>>,
        params: impl Into<Params>,
    ) -> Result<T, Error>
    where
        T: DeserializeOwned + Send + 'static,
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
        T: DeserializeOwned + Send + 'static,
    {
        let method = call.method.clone();
        self.addr
            .send(call)
            .await
            .map_err(|err| not_connected(err, method))?
    }

    /// Sends a notification: no id, no reply. Completes once the frame is
    /// queued for writing, in order.
    pub async fn notify(
        &self,
        method: impl Into<Cow<'static, str>>,
        params: impl Into<Params>,
    ) -> Result<(), Error> {
        let notify = Notify::new(method, params);
        let method = notify.method.clone();
        self.addr
            .send(notify)
            .await
            .map_err(|err| not_connected(err, method))?
    }

    /// A view of the methods under `prefix`: `client.namespace("app.users")
    /// .call("getUsers", ..)` calls `app.users.getUsers`.
    pub fn namespace(&self, prefix: impl Into<String>) -> Namespace {
        Namespace {
            client: self.clone(),
            prefix: prefix.into(),
        }
    }

    /// Closes the connection (see [`Close`]) and waits until it is closed.
    /// Pending calls fail with [`Error::Closed`]. Closing twice is harmless.
    ///
    /// # Errors
    ///
    /// [`Error::CloseTimeout`] when the server did not finish the closing
    /// handshake within the close timeout (the connection is closed anyway).
    pub async fn close(&self) -> Result<(), Error> {
        // An actor that has already stopped is as closed as it gets.
        self.addr.send(Close::new()).await.unwrap_or(Ok(()))
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

    /// Answers the server's requests matching `route` with a closure: the
    /// equivalent of the Python library's `server.ns.method = fn`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use jsonrpc_websocket::{Client, Error, ErrorObject};
    /// # use serde_json::{json, Value};
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// client
    ///     .register_fn("namespace.client_method", |params: Value| async move {
    ///         Ok::<_, ErrorObject>(json!({"you sent": params}))
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn register_fn<F, Fut>(&self, route: impl Into<Route>, f: F) -> Result<(), Error>
    where
        F: Fn(Value) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, ErrorObject>> + 'static,
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
        self.metrics.snapshot()
    }

    /// Whether the connection actor is still running.
    pub fn is_connected(&self) -> bool {
        self.addr.connected()
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
        T: DeserializeOwned + Send + 'static,
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
