//! The actix messages a [`RpcConnection`](crate::RpcConnection) handles.
//!
//! Actors talk to the connection with `addr.send(..)`; plain async code uses
//! the [`Client`](crate::Client) handle, which sends the same messages.

use std::marker::PhantomData;
use std::time::Duration;

use actix::Message;
use serde_json::Value;

use crate::connection::Stats;
use crate::error::Error;
use crate::protocol::Params;

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
    pub(crate) method: String,
    pub(crate) params: Params,
    pub(crate) timeout: Option<Duration>,
    result: PhantomData<fn() -> T>,
}

impl Call {
    /// A call of `method` with `params` (see [`Params`] for the shapes).
    pub fn new(method: impl Into<String>, params: impl Into<Params>) -> Call {
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
    pub(crate) method: String,
    pub(crate) params: Params,
}

impl Notify {
    /// A notification of `method` with `params`.
    pub fn new(method: impl Into<String>, params: impl Into<Params>) -> Notify {
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
/// the actor. Completes when the actor has stopped. Closing a connection that
/// is already closing or closed does nothing.
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
    type Result = ();
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
