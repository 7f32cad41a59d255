//! The actix messages a [`RpcConnection`](crate::RpcConnection) handles.
//!
//! Actors talk to the connection with `addr.send(..)`; plain async code uses
//! the [`Client`](crate::Client) handle, which sends the same messages.

use std::borrow::Cow;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use actix::{Message, Recipient};
use serde_json::Value;

use crate::connection::{Listener, RequestHandler, Stats};
use crate::error::Error;
use crate::protocol::{ErrorObject, Id, Params};
use crate::registry::Route;

/// Calls a remote method and waits for its result.
///
/// The result type is [`serde_json::Value`] unless [`typed`](Call::typed)
/// picks another: the raw JSON of the result is then decoded straight into
/// that type, with no intermediate `Value`.
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

    /// Decodes the result as `U` instead.
    pub fn typed<U>(self) -> Call<U> {
        Call {
            method: self.method,
            params: self.params,
            timeout: self.timeout,
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
            .finish()
    }
}

impl<T: 'static> Message for Call<T> {
    type Result = Result<T, Error>;
}

/// Sends a notification: a request without an id, which the server never
/// answers.
///
/// Completes once the frame is in the connection's write buffer, ordered
/// before anything sent after it; a later [`Close`] flushes it before the
/// close frame.
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

/// Closes the connection: sends a close frame, fails every pending call with
/// [`Error::Closed`], waits (briefly) for the server's close frame and stops
/// the actor. Completes when the actor has stopped: `Ok` once the server has
/// closed its side, [`Error::CloseTimeout`] if it did not within the close
/// timeout. Closing a connection that is already closing waits for the same
/// end.
///
/// # Examples
///
/// ```
/// # use jsonrpc_websocket::{Close, RpcConnection};
/// # async fn demo(addr: actix::Addr<RpcConnection>) {
/// let _ = addr.send(Close::new()).await;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Close {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

impl Close {
    /// A normal closure (code 1000, no reason).
    pub fn new() -> Close {
        Close {
            code: 1000,
            reason: String::new(),
        }
    }

    /// A closure with a code and a reason of your own (codes 1000 or
    /// 3000–4999; anything else is sent as 1000).
    pub fn with_reason(code: u16, reason: impl Into<String>) -> Close {
        Close {
            code: if code == 1000 || (3000..=4999).contains(&code) {
                code
            } else {
                1000
            },
            reason: reason.into(),
        }
    }
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
pub struct ServerRequest {
    /// The full method name (also when the handler serves a whole namespace).
    pub method: String,
    /// The params; `Value::Null` when the request had none.
    pub params: Value,
    /// The server's id, echoed exactly in the response.
    pub id: Id,
}

impl ServerRequest {
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
#[derive(Debug, Clone, PartialEq)]
pub struct ServerNotification {
    /// The full method name.
    pub method: String,
    /// The params; `Value::Null` when the notification had none.
    pub params: Value,
}

impl Message for ServerNotification {
    type Result = ();
}

/// Registers the handler for server requests at a [`Route`], replacing any
/// handler at the same route. Exact names win over namespaces, longer
/// namespaces over shorter ones, and `"*"` catches the rest; a request
/// nobody handles is answered with -32601.
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::{ErrorObject, RegisterHandler, RpcConnection};
/// use serde_json::{json, Value};
///
/// # async fn demo(addr: actix::Addr<RpcConnection>) -> Result<(), actix::MailboxError> {
/// addr.send(RegisterHandler::func("ui.confirm", |params: Value| async move {
///     Ok::<_, ErrorObject>(json!(true))
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
    /// params (`Value::Null` when there are none). The future runs on the
    /// connection's thread, concurrently with everything else.
    pub fn func<F, Fut>(route: impl Into<Route>, f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, ErrorObject>> + 'static,
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
    pub(crate) listener: Listener,
}

impl RegisterListener {
    /// Notifications matching `route` are sent to this actor.
    pub fn actor(route: impl Into<Route>, recipient: Recipient<ServerNotification>) -> Self {
        RegisterListener {
            route: route.into(),
            listener: Listener::Actor(recipient),
        }
    }

    /// Notifications matching `route` are passed to this closure, on the
    /// connection's thread (keep it quick, or hand the work off).
    pub fn func<F>(route: impl Into<Route>, f: F) -> Self
    where
        F: Fn(ServerNotification) + Send + 'static,
    {
        RegisterListener {
            route: route.into(),
            listener: Listener::Func(Box::new(f)),
        }
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
