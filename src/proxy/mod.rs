//! The actix-web side of a JSON-RPC proxy (feature `proxy`): downstream
//! clients reach an actix-web service over HTTP or websocket, and their
//! requests go to upstream JSON-RPC servers through [`RpcConnection`]s.
//!
//! - [`Forward`]: one downstream message in, its answer out; ids rewritten
//!   so that every downstream shares the upstream connections, answers with
//!   the downstream's own ids byte for byte; batch entries each on their own.
//! - [`Upstreams`]: the upstream pool, with failover.
//! - [`http`] and [`metrics`]: the HTTP front end and `GET /metrics`.
//! - [`websocket`]: the websocket front end, with subscriptions fanned out
//!   (identical subscriptions share one upstream subscription) and, with
//!   [`Forward::per_session`], an upstream connection per session whose
//!   server requests pass through to the downstream client.
//! - [`resource`]: both front ends at one path, as Ethereum nodes serve.
//! - [`UpstreamLoss`]: what subscriptions go through when their upstream
//!   is lost (made again with a gap notification, ended with an error, or
//!   the socket closed).
//! - [`Hook`]: inspect, rewrite, answer or refuse each request.
//! - [`ProxyConfig`]: every limit a downstream meets.
//! - [`Forward::close_websockets`]: a graceful end for every websocket
//!   session, for a service that stops.
//!
//! `docs/proxy.md` puts them together, with each policy and limit in
//! full; `jsonrpc-ws proxy` is a ready proxy built from them.
//!
//! # Examples
//!
//! HTTP and websocket on one port:
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//! use jsonrpc_websocket::proxy::{self, Forward, Upstreams};
//! use jsonrpc_websocket::{ReconnectPolicy, RpcConnection};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let upstream = RpcConnection::builder("ws://127.0.0.1:8546")
//!     .reconnect(ReconnectPolicy::new())
//!     .connect()
//!     .await?;
//! let forward = web::Data::new(Forward::new(Upstreams::new([upstream])));
//! HttpServer::new(move || {
//!     App::new()
//!         .app_data(forward.clone())
//!         .service(proxy::resource("/"))
//!         .route("/metrics", web::get().to(proxy::metrics))
//! })
//! .bind("127.0.0.1:8545")?
//! .run()
//! .await?;
//! # Ok(()) }
//! ```
//!
//! [`RpcConnection`]: crate::RpcConnection

mod config;
mod fanout;
mod forward;
mod gate;
mod hook;
mod http;
mod metrics;
mod upstream;
mod ws;

pub use config::{ProxyConfig, SubscriptionMethods, UpstreamLoss};
pub use forward::Forward;
pub use hook::{Decision, Hook, Origin, ProxyRequest, Transport};
pub use http::{http, metrics};
pub use metrics::ProxyStats;
pub use upstream::Upstreams;
pub use ws::{resource, websocket};

/// The error codes a proxy answers with itself (besides the standard ones
/// in [`crate::codes`]).
pub mod codes {
    /// The upstream did not answer in time.
    pub const UPSTREAM_TIMEOUT: i64 = -32001;
    /// No upstream is connected, or it was lost before answering.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32002;
    /// A limit was reached: body, batch size, requests in flight, the
    /// upstream's own bounds (the code Ethereum nodes use).
    pub const LIMIT_EXCEEDED: i64 = -32005;
}
