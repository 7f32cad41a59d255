//! A JSON-RPC 2.0 client over WebSocket for the actix ecosystem.
//!
//! One [`RpcConnection`] actor owns one websocket. Actors call remote
//! methods with `addr.send(Call::new("foo.bar", params)).await`; plain async
//! code uses the cloneable [`Client`] handle.
//!
//! # Connecting
//!
//! ```no_run
//! use jsonrpc_websocket::{Error, RpcConnection};
//!
//! # async fn demo() -> Result<(), Error> {
//! let client = RpcConnection::builder("ws://127.0.0.1:9090/rpc")
//!     .basic_auth("ann", "s3cret")
//!     .header("X-Trace", "on")
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Outside actix
//!
//! The same [`Client`] works from `#[tokio::main]`, `tokio::spawn`ed tasks,
//! other executors and plain threads: outside an actix `System`,
//! [`connect`](ConnectionBuilder::connect) runs the connection on the
//! crate's background actix thread (one for the whole process, shared by
//! every such connection). Synchronous code uses [`blocking::Client`].
//!
//! # Calling methods
//!
//! Positional params with [`params!`], named params with a JSON object, no
//! params with `params![]`; the result decodes into any
//! [`DeserializeOwned`](serde::de::DeserializeOwned) type:
//!
//! ```
//! use jsonrpc_websocket::{params, Client, Error};
//! use serde_json::{json, Value};
//!
//! # async fn demo(client: Client) -> Result<(), Error> {
//! let sum: i64 = client.call("math.add", params![1, 2]).await?;
//! let user: Value = client.call("users.find", json!({"name": "ann"})).await?;
//! let echoed: Value = client.call("echo", params![json!({"foo": "bar"})]).await?; // [{"foo":"bar"}]
//! let users: Vec<Value> = client.namespace("app.users").call("getUsers", params![]).await?;
//! client.notify("log.write", params!["hello"]).await?;
//! # Ok(()) }
//! ```
//!
//! # From an actor
//!
//! ```
//! use jsonrpc_websocket::{params, Call, RpcConnection};
//!
//! # async fn demo(addr: actix::Addr<RpcConnection>) -> Result<(), Box<dyn std::error::Error>> {
//! let sum: i64 = addr.send(Call::new("math.add", params![1, 2]).typed()).await??;
//! # Ok(()) }
//! ```
//!
//! # Handling requests from the server
//!
//! Register a handler at an exact name, a namespace (`"ui."`) or `"*"`;
//! its answer goes back with the server's id. Notifications go to listeners.
//!
//! ```
//! use jsonrpc_websocket::{ErrorObject, RpcConnection, ServerNotification, ServerRequest};
//! use serde_json::json;
//!
//! # async fn demo() -> Result<(), jsonrpc_websocket::Error> {
//! let client = RpcConnection::builder("ws://127.0.0.1:9090")
//!     .register_fn("client.confirm", |req: ServerRequest| async move {
//!         Ok::<_, ErrorObject>(json!({"confirmed": req.params}))
//!     })
//!     .on_notification("news.", |n: ServerNotification| println!("{}", n.method))
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Handler actors implement `Handler<ServerRequest>` and are registered with
//! [`ConnectionBuilder::register`] or [`Client::register`].
//!
//! # Errors
//!
//! Every call ends: with its result, an [`Error::Rpc`] carrying the server's
//! error object, [`Error::Timeout`], or [`Error::Closed`] /
//! [`Error::Disconnected`] when the socket goes away first. See [`Error`].
//!
//! # Proxying from actix-web
//!
//! With the `proxy` feature, the `proxy` module makes an actix-web service
//! a JSON-RPC proxy in front of upstream websocket servers: `Forward` (ids
//! rewritten so that every downstream shares the upstream connections),
//! HTTP and websocket front ends, subscriptions fanned out, failover, a
//! hook, metrics. See the module's docs and `docs/proxy.md`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// docs.rs builds on nightly with `--cfg docsrs`: label feature-gated items
// (`doc_auto_cfg` was folded into `doc_cfg` in Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod background;
mod batch;
pub mod blocking;
mod builder;
mod client;
mod config;
mod connection;
mod delivery;
mod error;
mod events;
mod message;
mod protocol;
#[cfg(feature = "proxy")]
pub mod proxy;
mod registry;
mod stats;
mod subscription;

pub use batch::{Batch, BatchResults, Slot};
pub use builder::ConnectionBuilder;
pub use client::{BatchBuilder, Client, Namespace};
pub use config::{Backpressure, ReconnectPolicy, WhileReconnecting};
pub use connection::{awc_client, awc_connector, RpcConnection};
#[doc(hidden)]
pub use connection::{BatchReply, CallReply, NotifyReply, SubscribeReply, UnsubscribeReply};
pub use delivery::Overflow;
pub use error::{Bound, BoxError, CallInfo, Error};
pub use events::{ConnectionEvent, EventStream, WatchEvents};
pub use message::{
    Call, Close, Disconnect, GetStats, Initiator, Notify, RegisterHandler, RegisterListener,
    ServerNotification, ServerRequest, Subscribe, UnregisterHandler, UnregisterListeners,
};
pub use protocol::{codes, ErrorObject, Id, Params, ParamsBuilder};
pub use registry::Route;
pub use stats::Stats;
pub use subscription::{Subscription, SubscriptionEnd, SubscriptionItem, Unsubscribe};

/// Re-exported so that users and this crate name the same `actix` (its
/// `Addr`, `Recipient` and `System` appear in this crate's API).
pub use actix;
/// Re-exported (feature `rustls`) so that a configuration given to
/// [`ConnectionBuilder::rustls_config`] is built with the same rustls.
#[cfg(feature = "rustls")]
pub use rustls;
/// Re-exported so that users and macros name the same `serde_json`.
pub use serde_json;

/// Internals exposed for the criterion micro-benchmarks in `benches/` only
/// (feature `bench-internals`); not part of the API and not covered by semver.
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod __bench {
    pub use crate::protocol::{encode_request, encode_result_response, parse, Inbound, Message};
}

/// The README's examples, compiled as doc tests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// docs/proxy.md's examples, compiled as doc tests (with the `proxy`
/// feature) so they cannot rot.
#[doc = include_str!("../docs/proxy.md")]
#[cfg(all(doctest, feature = "proxy"))]
pub struct ProxyGuideDoctests;
