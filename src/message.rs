//! The actix messages a [`RpcConnection`](crate::RpcConnection) handles.
//!
//! Actors talk to the connection with `addr.send(..)`; plain async code uses
//! the [`Client`](crate::Client) handle, which sends the same messages.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use actix::{Message, Recipient};
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::delivery::Overflow;
use crate::error::{CallInfo, Error};
use crate::protocol::{ErrorObject, Id, Params, RawResult};
use crate::registry::Route;
use crate::stats::Stats;
use crate::subscription::{Subscription, SubscriptionItem};

/// Calls a remote method and waits for its result.
///
/// The result type is [`serde_json::Value`] unless [`typed`](Call::typed)
/// picks another: the raw JSON of the result is then decoded straight into
/// that type, with no intermediate `Value`. Decoding happens on the
/// connection's thread, before the answer is sent to the actor that asked;
/// [`Client::call`](crate::Client::call) decodes in the caller's task instead,
/// so one large result never delays the connection's other calls.
///
/// A caller that stops waiting (drops the future of `addr.send(..)`) frees
/// the call's entry at once; a late answer is then counted as an unknown id.
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::{params, Call, Error, RpcConnection};
/// use actix::Addr;
///
/// # async fn demo(addr: Addr<RpcConnection>) -> Result<(), Box<dyn std::error::Error>> {
/// let sum = addr.send(Call::new("math.add", params![2, 3])).await??;
/// assert_eq!(sum, 5);
/// let sum: i64 = addr.send(Call::new("math.add", params![2, 3]).typed()).await??;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::Rpc`] when the server returns an error object,
/// [`Error::Timeout`] when no answer comes in time, [`Error::Closed`] or
/// [`Error::Disconnected`] when the socket goes away first,
/// [`Error::Decode`] when the result does not fit `T`, and the errors listed
/// on [`Error`] for calls that could not be sent.
#[must_use = "a Call does nothing until it is sent to the connection"]
pub struct Call<T = Value> {
    pub(crate) method: Cow<'static, str>,
    pub(crate) params: Params,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retry: bool,
    result: PhantomData<fn() -> T>,
}

impl Call {
    /// A call of `method` with `params` (see [`Params`] for the shapes).
    /// A `&'static str` method name is used without copying it.
    pub fn new(method: impl Into<Cow<'static, str>>, params: impl Into<Params>) -> Call {
        Call {
            method: method.into(),
            params: params.into(),
            timeout: None,
            retry: false,
            result: PhantomData,
        }
    }
}

impl<T> Call<T> {
    /// Overrides the connection's default timeout for this call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Lets the connection send this call again, once, if the connection is
    /// lost before its answer and a [`ReconnectPolicy`](crate::ReconnectPolicy)
    /// brings it back. Only for calls that are safe to run twice
    /// (idempotent reads): the server may have run it before the connection
    /// dropped. Without it, a call pending when the connection drops fails
    /// with a disconnect error and is never sent again.
    ///
    /// ```
    /// # use jsonrpc_websocket::{params, Call, Client, Error};
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// let height: u64 = client
    ///     .send(Call::new("chain.height", params![]).retry_on_reconnect().typed())
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn retry_on_reconnect(mut self) -> Self {
        self.retry = true;
        self
    }

    /// Decodes the result as `U` instead.
    pub fn typed<U>(self) -> Call<U> {
        Call {
            method: self.method,
            params: self.params,
            timeout: self.timeout,
            retry: self.retry,
            result: PhantomData,
        }
    }

    /// The method this call invokes.
    pub fn method(&self) -> &str {
        &self.method
    }
}

impl<T> std::fmt::Debug for Call<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("params", &self.params)
            .field("timeout", &self.timeout)
            .field("retry_on_reconnect", &self.retry)
            .finish()
    }
}

impl<T: 'static> Message for Call<T> {
    type Result = Result<T, Error>;
}

/// A call whose raw result goes back to the caller, who decodes it (what
/// [`Client`](crate::Client) sends).
pub(crate) struct RawCall {
    pub method: Cow<'static, str>,
    pub params: Params,
    pub timeout: Option<Duration>,
    pub retry: bool,
}

impl<T> From<Call<T>> for RawCall {
    fn from(call: Call<T>) -> Self {
        RawCall {
            method: call.method,
            params: call.params,
            timeout: call.timeout,
            retry: call.retry,
        }
    }
}

impl Message for RawCall {
    type Result = Result<Reply, Error>;
}

/// A successful answer: the raw JSON text of the result (a slice of the
/// message it came in, not a copy), with the call it answers.
#[derive(Debug)]
pub(crate) struct Reply {
    pub call: CallInfo,
    pub result: RawResult,
}

impl Reply {
    /// Decodes the result into the caller's type.
    pub fn decode<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        self.result.decode().map_err(|source| Error::Decode {
            call: self.call,
            target: std::any::type_name::<T>(),
            source,
        })
    }
}

/// Sends a notification: a request without an id, which the server never
/// answers.
///
/// Completes once the frame is accepted into the connection's bounded
/// outbound queue, ordered before anything sent after it; a later [`Close`]
/// flushes it before the close frame. When the queue is full it waits for
/// room or fails with [`Error::Overloaded`], as the connection's
/// [`Backpressure`](crate::Backpressure) says.
///
/// # Examples
///
/// ```
/// # use jsonrpc_websocket::{params, Notify, RpcConnection};
/// # async fn demo(addr: actix::Addr<RpcConnection>) -> Result<(), Box<dyn std::error::Error>> {
/// addr.send(Notify::new("log.write", params!["hello"])).await??;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a Notify does nothing until it is sent to the connection"]
pub struct Notify {
    pub(crate) method: Cow<'static, str>,
    pub(crate) params: Params,
}

impl Notify {
    /// A notification of `method` with `params`.
    pub fn new(method: impl Into<Cow<'static, str>>, params: impl Into<Params>) -> Notify {
        Notify {
            method: method.into(),
            params: params.into(),
        }
    }
}

impl Message for Notify {
    type Result = Result<(), Error>;
}

/// Subscribes: calls `method` with `params`, takes the result as the
/// subscription id, and routes every notification whose
/// `params.subscription` is that id (compared exactly) to the subscription —
/// whatever the notification's method, so both the jsonrpsee shape (the
/// server's own method name) and the Ethereum one (`eth_subscription`) work.
/// The routing starts in the same turn that reads the answer, and
/// notifications that arrive before it are held (briefly, bounded) and
/// delivered after it, so none is lost.
///
/// The result is the [`Subscription`] handle. Its items come through its
/// stream, or, with [`deliver_to`](Self::deliver_to), to an actor.
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::{params, Overflow, RpcConnection, Subscribe};
///
/// # async fn demo(addr: actix::Addr<RpcConnection>) -> Result<(), Box<dyn std::error::Error>> {
/// let prices = addr
///     .send(
///         Subscribe::new("subscribe_prices", params!["BTC"], "unsubscribe_prices")
///             .overflow(Overflow::KeepLatest),
///     )
///     .await??;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// The subscribe call's errors; [`Error::InvalidResponse`] when its result
/// is not a number or a string.
#[must_use = "a Subscribe does nothing until it is sent to the connection"]
pub struct Subscribe {
    pub(crate) method: Cow<'static, str>,
    pub(crate) params: Params,
    pub(crate) unsubscribe: Cow<'static, str>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) capacity: Option<usize>,
    pub(crate) overflow: Option<Overflow>,
    pub(crate) deliver_to: Option<Recipient<SubscriptionItem>>,
}

impl Subscribe {
    /// Subscribes with `method` and `params`; `unsubscribe` is the method
    /// that ends it (called with the subscription id as its only param).
    pub fn new(
        method: impl Into<Cow<'static, str>>,
        params: impl Into<Params>,
        unsubscribe: impl Into<Cow<'static, str>>,
    ) -> Self {
        Subscribe {
            method: method.into(),
            params: params.into(),
            unsubscribe: unsubscribe.into(),
            timeout: None,
            capacity: None,
            overflow: None,
            deliver_to: None,
        }
    }

    /// How long the subscribe call may take. Default: the request timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many items may wait for the subscriber. Default: the
    /// connection's `subscription_capacity` (1,024).
    pub fn capacity(mut self, items: usize) -> Self {
        self.capacity = Some(items.max(1));
        self
    }

    /// What a full queue does with one more item. Default: the connection's
    /// `subscription_overflow` ([`Overflow::DropOldest`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// Sends the items to this actor (one at a time, the next once it has
    /// handled the last; a [`SubscriptionItem::Closed`] last) instead of the
    /// handle's stream. The handle still owns the subscription: dropping it
    /// unsubscribes.
    pub fn deliver_to(mut self, recipient: Recipient<SubscriptionItem>) -> Self {
        self.deliver_to = Some(recipient);
        self
    }

    /// The subscribe method.
    pub fn method(&self) -> &str {
        &self.method
    }
}

impl std::fmt::Debug for Subscribe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribe")
            .field("method", &self.method)
            .field("params", &self.params)
            .field("unsubscribe", &self.unsubscribe)
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("to an actor", &self.deliver_to.is_some())
            .finish()
    }
}

impl Message for Subscribe {
    type Result = Result<Subscription, Error>;
}

/// Closes the connection: sends a close frame (after everything already
/// queued), fails every pending call with [`Error::Closed`], waits for the
/// server's close frame up to the close timeout, and stops the actor.
///
/// Completes when the actor has stopped: `Ok` once the server has closed its
/// side, [`Error::CloseTimeout`] if it did not in time (the socket is
/// dropped anyway). Closing a connection that is already closing waits for
/// the same end with the same outcome. [`Client::close`](crate::Client::close)
/// sends this message and returns exactly its outcome (and `Ok` when the
/// actor had already stopped, where `addr.send` fails with
/// `MailboxError::Closed`).
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// # use jsonrpc_websocket::{Close, RpcConnection};
/// # async fn demo(addr: actix::Addr<RpcConnection>) -> Result<(), Box<dyn std::error::Error>> {
/// addr.send(Close::new()).await??;
/// // A code and reason of our own, without waiting for the server's answer:
/// let close = Close::with_reason(4000, "shutting down")?.timeout(Duration::ZERO);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Close {
    pub(crate) code: u16,
    pub(crate) reason: String,
    pub(crate) timeout: Option<Duration>,
}

/// The longest close reason a control frame can carry (125 bytes less the code).
const MAX_CLOSE_REASON: usize = 123;

impl Close {
    /// A normal closure (code 1000, no reason).
    pub fn new() -> Close {
        Close {
            code: 1000,
            reason: String::new(),
            timeout: None,
        }
    }

    /// A closure with a code and a reason of your own.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidClose`] for a code a client may not send (RFC 6455
    /// §7.4: use 1000–1003, 1007–1014 or 3000–4999) or a reason longer than
    /// 123 bytes (what fits in a control frame). Nothing is ever changed
    /// silently: a valid code is sent as given.
    pub fn with_reason(code: u16, reason: impl Into<String>) -> Result<Close, Error> {
        let reason = reason.into();
        if !may_send_close_code(code) {
            return Err(Error::InvalidClose {
                reason: format!(
                    "code {code} may not be sent (use 1000-1003, 1007-1014 or 3000-4999)"
                ),
            });
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(Error::InvalidClose {
                reason: format!(
                    "the reason is {} bytes long; a close frame carries at most {MAX_CLOSE_REASON}",
                    reason.len()
                ),
            });
        }
        Ok(Close {
            code,
            reason,
            timeout: None,
        })
    }

    /// How long to wait for the server's close frame before dropping the
    /// socket (`Duration::ZERO`: do not wait once ours is written). Default:
    /// the connection's close timeout (see
    /// [`ConnectionBuilder::close_timeout`](crate::ConnectionBuilder::close_timeout)).
    pub fn timeout(mut self, timeout: Duration) -> Close {
        self.timeout = Some(timeout);
        self
    }

    /// The close code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The close reason (may be empty).
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Codes an endpoint may put in a close frame (RFC 6455 §7.4.1 and the IANA
/// registry); 1004–1006 and 1015 are reserved or only reported locally.
pub(crate) fn may_send_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Cuts `reason` to what a close frame can carry, at a character boundary
/// (for reasons we make up ourselves, such as error descriptions).
pub(crate) fn fit_close_reason(reason: &str) -> String {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

impl Default for Close {
    fn default() -> Self {
        Close::new()
    }
}

impl Message for Close {
    type Result = Result<(), Error>;
}

/// Asks for the connection's counters (see [`Stats`]).
///
/// The same figures are readable without the actor, even after it has
/// stopped, through [`Client::stats`](crate::Client::stats).
#[derive(Debug, Clone, Copy, Default)]
pub struct GetStats;

impl Message for GetStats {
    type Result = Stats;
}

/// A request the server sent us, delivered to the handler registered for its
/// method (see [`RegisterHandler`]). The handler's answer goes back to the
/// server as the response, with the server's id.
///
/// Closure handlers get the same value as actors: the method (a namespace
/// handler learns which method was called), the params and the id.
///
/// # Examples
///
/// A handler actor:
///
/// ```
/// use actix::prelude::*;
/// use jsonrpc_websocket::{ErrorObject, ServerRequest};
/// use serde_json::{json, Value};
///
/// struct Greeter;
/// impl Actor for Greeter {
///     type Context = Context<Self>;
/// }
/// impl Handler<ServerRequest> for Greeter {
///     type Result = Result<Value, ErrorObject>;
///     fn handle(&mut self, req: ServerRequest, _: &mut Context<Self>) -> Self::Result {
///         let (name,): (String,) = req.params_as()?;
///         Ok(json!(format!("hello {name}, from {}", req.method)))
///     }
/// }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerRequest {
    /// The full method name (also when the handler serves a whole namespace).
    pub method: String,
    /// The params; `Value::Null` when the request had none.
    pub params: Value,
    /// The server's id, echoed exactly in the response.
    pub id: Id,
}

impl ServerRequest {
    /// A request as the connection would deliver it (for testing handlers).
    pub fn new(method: impl Into<String>, params: Value, id: impl Into<Id>) -> Self {
        ServerRequest {
            method: method.into(),
            params,
            id: id.into(),
        }
    }

    /// The params decoded as `T`; on failure an -32602 error object ready to
    /// return from the handler.
    pub fn params_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, ErrorObject> {
        T::deserialize(&self.params).map_err(ErrorObject::invalid_params)
    }
}

impl Message for ServerRequest {
    type Result = Result<Value, ErrorObject>;
}

/// A notification the server sent us, delivered to every listener whose
/// route matches its method (see [`RegisterListener`]). Never answered.
///
/// Each listener has a bounded queue; when it is full, its
/// [`Overflow`] policy drops notifications, and the next one the listener
/// gets says in [`missed`](Self::missed) how many it did not get.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ServerNotification {
    /// The full method name.
    pub method: String,
    /// The params; `Value::Null` when the notification had none.
    pub params: Value,
    /// How many notifications this listener missed just before this one
    /// because its queue was full (0 almost always).
    pub missed: u64,
}

impl ServerNotification {
    /// A notification as the connection would deliver it (for testing listeners).
    pub fn new(method: impl Into<String>, params: Value) -> Self {
        ServerNotification {
            method: method.into(),
            params,
            missed: 0,
        }
    }

    /// The params decoded as `T`.
    pub fn params_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.params)
    }
}

impl Message for ServerNotification {
    type Result = ();
}

/// What answers the requests matching one route.
pub(crate) enum RequestHandler {
    Actor(Recipient<ServerRequest>),
    Func(Box<HandlerFn>),
}

/// A closure handler, with its result already turned into JSON text.
pub(crate) type HandlerFn =
    dyn Fn(ServerRequest) -> LocalBoxFuture<'static, Result<Box<RawValue>, ErrorObject>> + Send;

impl RequestHandler {
    pub(crate) fn func<F, Fut, R>(f: F) -> Self
    where
        F: Fn(ServerRequest) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, ErrorObject>> + 'static,
        R: Serialize,
    {
        RequestHandler::Func(Box::new(move |request| {
            let answer = f(request);
            Box::pin(async move {
                let result = answer.await?;
                serde_json::value::to_raw_value(&result).map_err(|err| {
                    ErrorObject::internal(format!("the handler's result is not JSON: {err}"))
                })
            })
        }))
    }

    pub(crate) fn is_alive(&self) -> bool {
        match self {
            RequestHandler::Actor(recipient) => recipient.connected(),
            RequestHandler::Func(_) => true,
        }
    }
}

/// Who is told of the notifications matching one route.
pub(crate) enum ListenerKind {
    Actor(Recipient<ServerNotification>),
    Func(Box<dyn Fn(ServerNotification) + Send>),
}

/// Registers the handler for server requests at a [`Route`], replacing any
/// handler at the same route. Exact names win over namespaces, longer
/// namespaces over shorter ones, and `"*"` catches the rest; a request
/// nobody handles is answered with -32601.
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::{ErrorObject, RegisterHandler, RpcConnection, ServerRequest};
/// use serde_json::json;
///
/// # async fn demo(addr: actix::Addr<RpcConnection>) -> Result<(), actix::MailboxError> {
/// addr.send(RegisterHandler::func("ui.", |req: ServerRequest| async move {
///     Ok::<_, ErrorObject>(json!({"handled": req.method, "params": req.params}))
/// }))
/// .await?;
/// # Ok(()) }
/// ```
pub struct RegisterHandler {
    pub(crate) route: Route,
    pub(crate) handler: RequestHandler,
}

impl RegisterHandler {
    /// Requests matching `route` go to this actor.
    pub fn actor(route: impl Into<Route>, recipient: Recipient<ServerRequest>) -> Self {
        RegisterHandler {
            route: route.into(),
            handler: RequestHandler::Actor(recipient),
        }
    }

    /// Requests matching `route` are answered by this closure, given the
    /// whole [`ServerRequest`] (method, params, id). Its `Ok` value is
    /// serialized as the result (a `Value`, a struct, or a
    /// `Box<RawValue>` sent exactly as it is); its `Err` is sent as the
    /// error object. The future runs on the connection's thread,
    /// concurrently with everything else; a panic in it becomes a -32603
    /// answer and the connection goes on.
    pub fn func<F, Fut, R>(route: impl Into<Route>, f: F) -> Self
    where
        F: Fn(ServerRequest) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, ErrorObject>> + 'static,
        R: Serialize,
    {
        RegisterHandler {
            route: route.into(),
            handler: RequestHandler::func(f),
        }
    }
}

impl std::fmt::Debug for RegisterHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterHandler")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl Message for RegisterHandler {
    type Result = ();
}

/// Removes the request handler registered at exactly this route.
#[derive(Debug, Clone)]
pub struct UnregisterHandler(pub Route);

impl Message for UnregisterHandler {
    type Result = ();
}

/// Adds a listener for server notifications at a [`Route`]. Several
/// listeners may share a route; a notification goes to every listener of
/// every route that matches it.
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::{RegisterListener, RpcConnection, ServerNotification};
///
/// # async fn demo(addr: actix::Addr<RpcConnection>) -> Result<(), actix::MailboxError> {
/// addr.send(RegisterListener::func("market.", |n: ServerNotification| {
///     println!("{}: {}", n.method, n.params);
/// }))
/// .await?;
/// # Ok(()) }
/// ```
pub struct RegisterListener {
    pub(crate) route: Route,
    pub(crate) listener: ListenerKind,
    pub(crate) capacity: Option<usize>,
    pub(crate) overflow: Option<Overflow>,
}

impl RegisterListener {
    /// Notifications matching `route` are sent to this actor, one at a time
    /// (the next once it has handled the last), from the listener's queue.
    pub fn actor(route: impl Into<Route>, recipient: Recipient<ServerNotification>) -> Self {
        Self::new(route.into(), ListenerKind::Actor(recipient))
    }

    /// Notifications matching `route` are passed to this closure, on the
    /// connection's thread, from the listener's queue (keep it quick, or
    /// hand the work off). A panic in it is logged and counted; the
    /// listener stays.
    pub fn func<F>(route: impl Into<Route>, f: F) -> Self
    where
        F: Fn(ServerNotification) + Send + 'static,
    {
        Self::new(route.into(), ListenerKind::Func(Box::new(f)))
    }

    fn new(route: Route, listener: ListenerKind) -> Self {
        RegisterListener {
            route,
            listener,
            capacity: None,
            overflow: None,
        }
    }

    /// How many notifications may wait in this listener's queue. Default:
    /// the connection's `listener_capacity` (1,024).
    pub fn capacity(mut self, notifications: usize) -> Self {
        self.capacity = Some(notifications.max(1));
        self
    }

    /// What this listener's full queue does with one more notification.
    /// Default: the connection's `listener_overflow`
    /// ([`Overflow::DropOldest`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }
}

impl std::fmt::Debug for RegisterListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterListener")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl Message for RegisterListener {
    type Result = ();
}

/// Removes every notification listener registered at exactly this route.
#[derive(Debug, Clone)]
pub struct UnregisterListeners(pub Route);

impl Message for UnregisterListeners {
    type Result = ();
}

/// How a connection ended: what [`Client::closed`](crate::Client::closed)
/// resolves with.
///
/// # Examples
///
/// ```
/// # async fn demo(client: jsonrpc_websocket::Client) {
/// let end = client.closed().await;
/// if end.initiator == jsonrpc_websocket::Initiator::Server {
///     eprintln!("the server closed the connection: {end}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Disconnect {
    /// Who ended the connection.
    pub initiator: Initiator,
    /// The close code we sent or received; `None` when the socket was lost
    /// without a closing handshake.
    pub code: Option<u16>,
    /// The close reason, or what went wrong (may be empty).
    pub reason: String,
    /// Whether the closing handshake completed: both close frames went.
    pub clean: bool,
}

/// Who ended a connection (see [`Disconnect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Initiator {
    /// This side: [`Close`], every handle dropped, or a violation by the
    /// server that we answered with a close frame (1002, 1009).
    Client,
    /// The server, with a close frame.
    Server,
    /// Neither: the socket failed or was cut without a close frame.
    Transport,
}

impl std::fmt::Display for Disconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let by = match self.initiator {
            Initiator::Client => "closed by the client",
            Initiator::Server => "closed by the server",
            Initiator::Transport => "connection lost",
        };
        f.write_str(by)?;
        match (self.code, self.reason.is_empty()) {
            (Some(code), true) => write!(f, " (code {code})")?,
            (Some(code), false) => write!(f, " (code {code}: {})", self.reason)?,
            (None, false) => write!(f, ": {}", self.reason)?,
            (None, true) => {}
        }
        if self.code.is_some() && !self.clean {
            f.write_str(", closing handshake incomplete")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Point {
        x: i32,
        y: i32,
    }

    #[test]
    fn a_server_request_decodes_its_params_or_gives_a_32602_to_return() {
        let req = ServerRequest::new("geo.move", json!({"x": 1, "y": 2}), 7u64);
        assert_eq!(req.method, "geo.move");
        assert_eq!(req.id, Id::from(7u64));
        assert_eq!(req.params_as::<Point>().unwrap(), Point { x: 1, y: 2 });
        let err = ServerRequest::new("geo.move", json!(["x"]), "a")
            .params_as::<Point>()
            .unwrap_err();
        assert_eq!(err.code, -32602);
        assert_eq!(
            err.message,
            r#"invalid params: invalid type: string "x", expected i32"#
        );
    }

    #[test]
    fn a_server_notification_decodes_its_params() {
        let n = ServerNotification::new("geo.moved", json!({"x": 3, "y": 4}));
        assert_eq!(n.missed, 0);
        assert_eq!(n.params_as::<Point>().unwrap(), Point { x: 3, y: 4 });
        assert!(ServerNotification::new("geo.moved", json!(null))
            .params_as::<Point>()
            .is_err());
    }

    #[test]
    fn a_closure_result_that_is_not_json_becomes_a_32603() {
        use futures_util::FutureExt;
        let handler = RequestHandler::func(|_req: ServerRequest| async {
            // Maps with non-string keys cannot be written as JSON objects.
            Ok(std::collections::HashMap::from([((1, 2), 3)]))
        });
        let RequestHandler::Func(f) = handler else {
            panic!("a closure handler");
        };
        let err = f(ServerRequest::new("m", json!([]), 1u64))
            .now_or_never()
            .expect("nothing to wait for")
            .unwrap_err();
        assert_eq!(err.code, -32603);
        assert!(
            err.message
                .starts_with("internal error: the handler's result is not JSON: "),
            "{}",
            err.message
        );
    }

    #[test]
    fn close_reasons_are_cut_to_123_bytes_on_a_char_boundary() {
        assert_eq!(fit_close_reason("short"), "short");
        // 122 ASCII bytes then a two-byte char: byte 123 is inside it.
        let reason = format!("{}é", "a".repeat(122));
        assert_eq!(fit_close_reason(&reason), "a".repeat(122));
        let reason = "é".repeat(100);
        assert_eq!(fit_close_reason(&reason), "é".repeat(61));
    }

    #[test]
    fn the_default_close_is_a_normal_close() {
        let close = Close::default();
        assert_eq!(close.code(), 1000);
        assert_eq!(close.reason(), "");
    }

    #[test]
    fn a_disconnect_says_who_closed_and_with_what() {
        let lost = Disconnect {
            initiator: Initiator::Transport,
            code: None,
            reason: String::new(),
            clean: false,
        };
        assert_eq!(lost.to_string(), "connection lost");
        let table = [
            (
                Initiator::Server,
                Some(1001),
                "",
                true,
                "closed by the server (code 1001)",
            ),
            (
                Initiator::Server,
                Some(4000),
                "bye",
                false,
                "closed by the server (code 4000: bye), closing handshake incomplete",
            ),
            (
                Initiator::Client,
                None,
                "stopped",
                false,
                "closed by the client: stopped",
            ),
        ];
        for (initiator, code, reason, clean, text) in table {
            let d = Disconnect {
                initiator,
                code,
                reason: reason.into(),
                clean,
            };
            assert_eq!(d.to_string(), text);
        }
    }
}
