//! [`ConnectionBuilder`]: configures a connection, dials it, starts its
//! actor and hands back a [`Client`].

use std::fmt;
use std::future::Future;
#[cfg(feature = "rustls")]
use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use awc::http::header::{HeaderName, HeaderValue};
use awc::http::Uri;
use futures_channel::oneshot;
use futures_util::future;
use serde::Serialize;

use crate::background;
use crate::client::Client;
use crate::config::{Backpressure, Config, Heartbeat, ReconnectPolicy, WhileReconnecting};
use crate::connection::{Auth, Dialer, Endpoint, Parts, RpcConnection};
use crate::delivery::Overflow;
use crate::error::Error;
use crate::events::ConnectionEvent;
use crate::message::{
    RegisterHandler, RegisterListener, RequestHandler, ServerNotification, ServerRequest,
};
use crate::protocol::ErrorObject;
use crate::registry::{Registry, Route};

impl RpcConnection {
    /// Starts configuring a connection to `url` (`ws://` or `wss://`;
    /// `ws://user:password@host` sends basic auth).
    ///
    /// # Examples
    ///
    /// ```
    /// # use jsonrpc_websocket::{Error, RpcConnection};
    /// # async fn demo() -> Result<(), Error> {
    /// let client = RpcConnection::builder("ws://127.0.0.1:9090").connect().await?;
    /// # Ok(()) }
    /// ```
    // Defined here, not in `connection`: what is built depends on what
    // builds it, never the other way round.
    pub fn builder(url: impl Into<String>) -> ConnectionBuilder {
        ConnectionBuilder::new(url.into())
    }
}

/// Builds and opens a connection; start one with
/// [`RpcConnection::builder`](crate::RpcConnection::builder).
///
/// Setters never fail: an unusable value (a bad URL or header) is kept and
/// reported by [`connect`](Self::connect), so a chain of setters stays a
/// chain.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use jsonrpc_websocket::{Error, RpcConnection};
///
/// # async fn demo() -> Result<(), Error> {
/// let client = RpcConnection::builder("ws://127.0.0.1:9090/rpc")
///     .bearer_auth("s3cret")
///     .header("X-Client", "docs")
///     .request_timeout(Duration::from_secs(5))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "nothing happens until `.connect()` is called"]
pub struct ConnectionBuilder {
    /// The first endpoint's URL (without credentials) and its credentials.
    url: String,
    url_auth: Option<Auth>,
    /// More endpoints, tried in turn.
    more_endpoints: Vec<Endpoint>,
    config: Config,
    headers: Vec<(HeaderName, HeaderValue)>,
    subprotocols: Vec<String>,
    /// Credentials for every endpoint without its own.
    auth: Option<Auth>,
    watchers: Vec<Recipient<ConnectionEvent>>,
    client: Option<awc::Client>,
    /// A rustls configuration of the user's, for `wss://`.
    #[cfg(feature = "rustls")]
    tls: Option<Arc<rustls::ClientConfig>>,
    handlers: Registry<RequestHandler>,
    listeners: Vec<RegisterListener>,
    invalid: Option<Error>,
}

impl ConnectionBuilder {
    pub(crate) fn new(url: String) -> Self {
        let (endpoint, invalid) = endpoint(url);
        ConnectionBuilder {
            url: endpoint.url,
            url_auth: endpoint.auth,
            more_endpoints: Vec::new(),
            config: Config::default(),
            headers: Vec::new(),
            subprotocols: Vec::new(),
            auth: None,
            watchers: Vec::new(),
            client: None,
            #[cfg(feature = "rustls")]
            tls: None,
            handlers: Registry::default(),
            listeners: Vec::new(),
            invalid,
        }
    }

    /// Credentials given twice are refused, as aiohttp refuses them.
    fn set_auth(&mut self, auth: Auth) {
        let from_url =
            self.url_auth.is_some() || self.more_endpoints.iter().any(|e| e.auth.is_some());
        if from_url {
            self.keep_first_error(
                "the URL already carries credentials (user:password@); do not also set basic_auth or bearer_auth".into(),
            );
        }
        self.auth = Some(auth);
    }

    fn keep_first_error(&mut self, reason: String) {
        if self.invalid.is_none() {
            self.invalid = Some(Error::InvalidConfig { reason });
        }
    }

    /// Adds a header to the websocket handshake request (repeat the name to
    /// send it several times). An invalid name or value is reported by
    /// [`connect`](Self::connect). Default: none.
    pub fn header<N, V>(mut self, name: N, value: V) -> Self
    where
        N: TryInto<HeaderName>,
        N::Error: fmt::Display,
        V: TryInto<HeaderValue>,
        V::Error: fmt::Display,
    {
        match (name.try_into(), value.try_into()) {
            (Ok(name), Ok(value)) => self.headers.push((name, value)),
            (Err(err), _) => self.keep_first_error(format!("bad header name: {err}")),
            (_, Err(err)) => self.keep_first_error(format!("bad header value: {err}")),
        }
        self
    }

    /// Adds several handshake headers; see [`header`](Self::header).
    pub fn headers<I, N, V>(self, headers: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: TryInto<HeaderName>,
        N::Error: fmt::Display,
        V: TryInto<HeaderValue>,
        V::Error: fmt::Display,
    {
        headers
            .into_iter()
            .fold(self, |builder, (name, value)| builder.header(name, value))
    }

    /// Offers these websocket subprotocols (`Sec-WebSocket-Protocol`), for
    /// servers that require one. A name that is not an HTTP token is
    /// reported by [`connect`](Self::connect). Default: none.
    pub fn subprotocols<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for name in names {
            let name = name.into();
            if is_token(&name) {
                self.subprotocols.push(name);
            } else {
                self.keep_first_error(format!("bad subprotocol name {name:?}"));
            }
        }
        self
    }

    /// Sends `Authorization: Basic …` with the handshake. Credentials in
    /// the URL (`ws://user:pass@host`) do the same; giving both is reported
    /// by [`connect`](Self::connect). Default: none.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.set_auth(Auth::Basic {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// Sends `Authorization: Bearer <token>` with the handshake. Default: none.
    pub fn bearer_auth(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        if HeaderValue::try_from(format!("Bearer {token}")).is_err() {
            self.keep_first_error("bad bearer token: not a valid header value".into());
        }
        self.set_auth(Auth::Bearer(token));
        self
    }

    /// Uses this awc client (its connector, TLS setup and default headers)
    /// instead of the shared one — the equivalent of passing an aiohttp
    /// session to the Python library.
    ///
    /// Default: [`awc_client()`](crate::awc_client), one client per thread
    /// shared by every connection made there, with `TCP_NODELAY` and no cap
    /// on open connections. A client from `awc::Client::new()` has neither
    /// (Nagle's algorithm delays small frames, and it stops at 100 open
    /// connections): build yours on [`awc_connector()`](crate::awc_connector)
    /// to keep both.
    ///
    /// Inside an actix `System` only: an awc client cannot leave the thread
    /// that made it, so outside one [`connect`](Self::connect) reports
    /// [`Error::InvalidConfig`] (for TLS settings there, see
    /// `rustls_config`, feature `rustls`).
    pub fn client(mut self, client: awc::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Uses this rustls configuration for `wss://` instead of the default
    /// one (the webpki roots, no client certificate): a private CA among
    /// its roots, a client certificate for servers that ask for one
    /// (mutual TLS), its own verifier. Works inside and outside an actix
    /// `System`. Cannot be combined with [`client`](Self::client), which
    /// brings its own TLS setup (reported by [`connect`](Self::connect)).
    ///
    /// Its ALPN list is replaced by `http/1.1`: the websocket handshake is
    /// an HTTP/1.1 request. The crate depends on rustls 0.23 and re-exports
    /// it as [`jsonrpc_websocket::rustls`](crate::rustls), so the config is
    /// built with the same version.
    ///
    /// A certificate the configuration does not trust fails `connect` with
    /// [`Error::Transport`], whose message says that the server's
    /// certificate was not accepted and names the host. Default: none.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use jsonrpc_websocket::rustls::{pki_types::CertificateDer, ClientConfig, RootCertStore};
    /// use jsonrpc_websocket::RpcConnection;
    ///
    /// # fn demo(ca_der: CertificateDer<'static>) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut roots = RootCertStore::empty();
    /// roots.add(ca_der)?; // the private CA's certificate, DER
    /// let tls = ClientConfig::builder()
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth(); // or .with_client_auth_cert(chain, key)? for mutual TLS
    /// let builder = RpcConnection::builder("wss://node.internal:8546/").rustls_config(Arc::new(tls));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "rustls")]
    pub fn rustls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// How long a call may wait for its response before it fails with
    /// [`Error::Timeout`]; override per call with
    /// [`Call::timeout`](crate::Call::timeout). Default: 30 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// How long opening the connection (TCP, TLS and the websocket
    /// handshake) may take. Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long [`Close`](crate::Close) waits for the server to answer our
    /// close frame before dropping the socket. Default: 1 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// The largest message accepted from the server, and sent to it, in
    /// bytes. An inbound message over the limit is refused from its frame
    /// header, never buffered: the connection closes with code 1009 and
    /// pending calls fail with [`Error::MessageTooLarge`]. An outbound one
    /// fails only its own call. Default: 16 MiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// How often the connection reads while the server floods it with
    /// notifications. While messages arrive faster than about 16 per
    /// `interval` (80,000 a second at the default), all of them
    /// notifications, and no call of ours awaits an answer, the socket is
    /// read at most once per `interval` (the actor stays runnable in between
    /// rather than sleeping): the server's writes gather into large
    /// segments instead of each one waking us, which on a loopback or
    /// same-host server makes the server itself send nearly twice as fast. The cost is at most `interval` of added latency per
    /// notification during such a flood, and the core the reader stays on.
    /// Slower streams, answers to calls and the server's requests are read
    /// as they come. `Duration::ZERO` reads everything as it comes. Default:
    /// 200 µs.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use jsonrpc_websocket::RpcConnection;
    /// // Lowest latency for every notification, whatever the rate.
    /// let builder = RpcConnection::builder("ws://127.0.0.1:9000").read_pacing(Duration::ZERO);
    /// # drop(builder);
    /// ```
    pub fn read_pacing(mut self, interval: Duration) -> Self {
        self.config.read_pacing = (!interval.is_zero()).then_some(interval);
        self
    }

    /// How many calls may wait for a response at once. A call beyond that
    /// waits for a place (up to its timeout) or fails with
    /// [`Error::Overloaded`], as [`backpressure`](Self::backpressure) says; at
    /// most as many again may wait. Default: 65,536.
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.config.max_in_flight = calls.max(1);
        self
    }

    /// How many outbound bytes may be queued for the socket and not yet
    /// written (a server that reads slowly, or not at all, fills it). Beyond
    /// it, calls and notifications wait or fail, as
    /// [`backpressure`](Self::backpressure) says; a message larger than the
    /// whole budget goes alone. Answers owed to the server's requests are
    /// never refused, but while they alone exceed the budget the connection
    /// stops reading from the server. Default: 4 MiB.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.config.max_queued_bytes = bytes.max(1);
        self
    }

    /// What calls and notifications do when `max_in_flight` or
    /// `max_queued_bytes` is full. Default: [`Backpressure::Wait`].
    pub fn backpressure(mut self, policy: Backpressure) -> Self {
        self.config.backpressure = policy;
        self
    }

    /// How many notifications may wait in each listener's queue (a listener
    /// may choose its own with [`RegisterListener::capacity`]). Default: 1,024.
    pub fn listener_capacity(mut self, notifications: usize) -> Self {
        self.config.listener_capacity = notifications.max(1);
        self
    }

    /// What a listener's full queue does with one more notification (a
    /// listener may choose its own with [`RegisterListener::overflow`]).
    /// Default: [`Overflow::DropOldest`].
    pub fn listener_overflow(mut self, overflow: Overflow) -> Self {
        self.config.listener_overflow = overflow;
        self
    }

    /// How many items may wait in each subscription's queue (a subscription
    /// may choose its own with [`Subscribe::capacity`](crate::Subscribe::capacity)). Default: 1,024.
    pub fn subscription_capacity(mut self, items: usize) -> Self {
        self.config.subscription_capacity = items.max(1);
        self
    }

    /// What a subscription's full queue does with one more item (a
    /// subscription may choose its own with [`Subscribe::overflow`](crate::Subscribe::overflow)).
    /// Default: [`Overflow::DropOldest`].
    pub fn subscription_overflow(mut self, overflow: Overflow) -> Self {
        self.config.subscription_overflow = overflow;
        self
    }

    /// Answers the server's requests matching `route` with this actor (see
    /// [`RegisterHandler`] for the routing rules). Registered before the
    /// first frame is read, so no early request is missed. Default: none;
    /// unhandled requests get -32601.
    pub fn register(
        mut self,
        route: impl Into<Route>,
        recipient: Recipient<ServerRequest>,
    ) -> Self {
        let message = RegisterHandler::actor(route, recipient);
        self.handlers.insert(message.route, message.handler);
        self
    }

    /// Answers the server's requests matching `route` with a closure, given
    /// the whole [`ServerRequest`]: the equivalent of the Python library's
    /// `server.ns.method = fn` (see [`RegisterHandler::func`]).
    ///
    /// ```
    /// # use jsonrpc_websocket::{ErrorObject, RpcConnection, ServerRequest};
    /// # use serde_json::json;
    /// let builder = RpcConnection::builder("ws://127.0.0.1:9090")
    ///     .register_fn("ui.", |req: ServerRequest| async move {
    ///         Ok::<_, ErrorObject>(json!({"you called": req.method}))
    ///     });
    /// ```
    pub fn register_fn<F, Fut, R>(mut self, route: impl Into<Route>, f: F) -> Self
    where
        F: Fn(ServerRequest) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, ErrorObject>> + 'static,
        R: Serialize,
    {
        let message = RegisterHandler::func(route, f);
        self.handlers.insert(message.route, message.handler);
        self
    }

    /// Sends the server's notifications matching `route` to this actor (see
    /// [`RegisterListener`]). Default: none.
    pub fn listen(self, route: impl Into<Route>, recipient: Recipient<ServerNotification>) -> Self {
        self.listener(RegisterListener::actor(route, recipient))
    }

    /// Passes the server's notifications matching `route` to a closure.
    pub fn on_notification<F>(self, route: impl Into<Route>, f: F) -> Self
    where
        F: Fn(ServerNotification) + Send + 'static,
    {
        self.listener(RegisterListener::func(route, f))
    }

    /// Adds a listener with its own queue settings.
    ///
    /// ```
    /// # use jsonrpc_websocket::{Overflow, RegisterListener, RpcConnection, ServerNotification};
    /// let builder = RpcConnection::builder("ws://127.0.0.1:9090").listener(
    ///     RegisterListener::func("prices.", |n: ServerNotification| println!("{}", n.params))
    ///         .capacity(1)
    ///         .overflow(Overflow::DropOldest), // only the latest price matters
    /// );
    /// ```
    pub fn listener(mut self, listener: RegisterListener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Adds another endpoint: connecting, and reconnecting, try the
    /// endpoints in turn, moving to the next one after each failed attempt
    /// (failover). Headers, credentials (unless the URL carries its own) and
    /// every other setting apply to all of them. A bad URL is reported by
    /// [`connect`](Self::connect).
    ///
    /// ```
    /// # use jsonrpc_websocket::{ReconnectPolicy, RpcConnection};
    /// let builder = RpcConnection::builder("wss://node-a.example/rpc")
    ///     .endpoint("wss://node-b.example/rpc")
    ///     .reconnect(ReconnectPolicy::new());
    /// ```
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        let (endpoint, invalid) = endpoint(url.into());
        if endpoint.auth.is_some() && self.auth.is_some() {
            self.keep_first_error(
                "the URL carries credentials (user:password@) and basic_auth or bearer_auth was set too".into(),
            );
        }
        if let Some(Error::InvalidConfig { reason }) = invalid {
            self.keep_first_error(reason);
        }
        self.more_endpoints.push(endpoint);
        self
    }

    /// Dials again when the connection is lost, as `policy` says (see
    /// [`ReconnectPolicy`]). The same actor goes on: its address, every
    /// [`Client`], handlers, listeners and settings stay valid; calls sent
    /// on the lost socket fail (unless they opted in with
    /// [`Call::retry_on_reconnect`](crate::Call::retry_on_reconnect));
    /// subscriptions are made again and say so
    /// ([`SubscriptionItem::Resubscribed`](crate::SubscriptionItem::Resubscribed)).
    /// Default: off — a lost connection ends.
    ///
    /// ```
    /// # use jsonrpc_websocket::{ReconnectPolicy, RpcConnection};
    /// let builder = RpcConnection::builder("ws://127.0.0.1:9090").reconnect(ReconnectPolicy::new());
    /// ```
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.config.reconnect = Some(policy);
        self
    }

    /// What calls and notifications made while reconnecting do: wait (up
    /// to their timeout, at most `max_in_flight` calls) or fail at once
    /// with [`Error::NotConnected`]. Default: [`WhileReconnecting::Wait`].
    pub fn while_reconnecting(mut self, mode: WhileReconnecting) -> Self {
        self.config.while_reconnecting = mode;
        self
    }

    /// Pings the server every `interval`, on a fixed schedule (also while
    /// busy); any frame from the server counts as a sign of life, and none
    /// within the [heartbeat timeout](Self::heartbeat_timeout) of a ping
    /// means the peer is gone: the socket is given up with the cause
    /// "heartbeat timeout after …" (then reconnected, or the connection
    /// ends). A peer that vanished without closing is noticed within
    /// `interval` + timeout. `Duration::ZERO` turns the heartbeat off.
    /// Default: every 15 s.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        let timeout = self
            .config
            .heartbeat
            .map_or(DEFAULT_HEARTBEAT_TIMEOUT, |h| h.timeout);
        self.config.heartbeat = (!interval.is_zero()).then_some(Heartbeat { interval, timeout });
        self
    }

    /// How long after a ping the server may stay silent before the socket
    /// is given up (see [`heartbeat`](Self::heartbeat)). Default: 10 s.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        if let Some(heartbeat) = self.config.heartbeat.as_mut() {
            heartbeat.timeout = timeout.max(Duration::from_millis(1));
        }
        self
    }

    /// Sends the connection's [`ConnectionEvent`]s to this actor, from the
    /// first (`Connected`). Later watchers:
    /// [`Client::events`](crate::Client::events) or
    /// [`WatchEvents`](crate::WatchEvents).
    pub fn watch_events(mut self, recipient: Recipient<ConnectionEvent>) -> Self {
        self.watchers.push(recipient);
        self
    }

    /// How many of the server's requests may be in the hands of handlers at
    /// once. Beyond it a request is answered at once with error -32000
    /// ("too many requests in progress"), so a flood of requests cannot grow
    /// memory without bound. Default: 1,024.
    pub fn max_server_requests(mut self, requests: usize) -> Self {
        self.config.max_server_requests = requests.max(1);
        self
    }

    /// Opens the websocket and starts the [`RpcConnection`] actor. Returns
    /// only once the handshake has succeeded (with several endpoints, each
    /// is tried once, in turn; the reconnect policy applies to connections
    /// lost later, not to this first one).
    ///
    /// Where the connection runs:
    ///
    /// - **Inside an actix `System`** (`#[actix::main]`, `#[actix_rt::test]`,
    ///   an actix-web handler or actor): on the current arbiter, as a local
    ///   task of this thread.
    /// - **Anywhere else** (`#[tokio::main]`, another executor, a plain
    ///   thread): on the crate's background actix thread, one for the whole
    ///   process, started by the first such connection and shared by all of
    ///   them. The [`Client`] that comes back is the same `Send + Sync`
    ///   handle, usable from any thread and any executor.
    ///
    /// The future is `Send`, so it can be awaited in a `tokio::spawn`ed
    /// task. The dial starts when `connect` is called.
    ///
    /// # Examples
    ///
    /// ```
    /// # use jsonrpc_websocket::{params, Error, RpcConnection};
    /// # async fn demo() -> Result<(), Error> {
    /// // From #[tokio::main], #[actix::main], or any other executor alike:
    /// let client = RpcConnection::builder("ws://127.0.0.1:9090").connect().await?;
    /// let sum: i64 = client.call("math.add", params![1, 2]).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a bad URL or header (or an awc
    /// [`client`](Self::client) given outside an actix `System`);
    /// [`Error::Handshake`] when the server answers with an HTTP status (its
    /// code is kept, e.g. 401); [`Error::Transport`] when the server cannot be
    /// reached, with the cause as `source()`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives the connection up: a dial in progress is
    /// abandoned, and a connection that opened in the meantime is closed.
    pub fn connect(self) -> impl Future<Output = Result<Client, Error>> + Send + 'static {
        let started = self.start();
        async move {
            let opened = started?;
            opened.await.unwrap_or_else(|_gone| {
                Err(Error::Transport {
                    context: "could not connect: the thread that was to run the connection stopped"
                        .into(),
                    source: "its actix System is no longer running".into(),
                })
            })
        }
    }

    /// Starts opening the connection on the thread it will run on: this one
    /// inside an actix `System`, the background thread otherwise.
    fn start(self) -> Result<oneshot::Receiver<Result<Client, Error>>, Error> {
        let (plan, client) = self.into_plan()?;
        let (tx, rx) = oneshot::channel();
        if background::inside_actix() {
            actix::spawn(reply(tx, plan.open(client)));
        } else if client.is_some() {
            return Err(Error::InvalidConfig {
                reason: "an awc client (`client(..)`) can only be used inside an actix System: \
                         awc clients cannot move to another thread"
                    .into(),
            });
        } else {
            // `open` holds awc's (thread-bound) types across awaits: it is
            // made and spawned on the background thread itself.
            background::run(move || {
                actix::spawn(reply(tx, plan.open(None)));
            })?;
        }
        Ok(rx)
    }

    /// Everything but the awc client, which cannot leave this thread.
    fn into_plan(self) -> Result<(Plan, Option<awc::Client>), Error> {
        if let Some(err) = self.invalid {
            return Err(err);
        }
        #[cfg(feature = "rustls")]
        if self.tls.is_some() && self.client.is_some() {
            return Err(Error::InvalidConfig {
                reason: "both an awc client (`client(..)`) and `rustls_config(..)` were given: \
                         the awc client brings its own TLS setup; give one of them"
                    .into(),
            });
        }
        let mut endpoints = vec![Endpoint {
            url: self.url,
            auth: self.url_auth,
        }];
        endpoints.extend(self.more_endpoints);
        let plan = Plan {
            endpoints,
            config: self.config,
            headers: self.headers,
            subprotocols: self.subprotocols,
            auth: self.auth,
            watchers: self.watchers,
            #[cfg(feature = "rustls")]
            tls: self.tls,
            handlers: self.handlers,
            listeners: self.listeners,
        };
        Ok((plan, self.client))
    }
}

/// A connection's settings on their way to the thread it will run on.
struct Plan {
    endpoints: Vec<Endpoint>,
    config: Config,
    headers: Vec<(HeaderName, HeaderValue)>,
    subprotocols: Vec<String>,
    auth: Option<Auth>,
    watchers: Vec<Recipient<ConnectionEvent>>,
    #[cfg(feature = "rustls")]
    tls: Option<Arc<rustls::ClientConfig>>,
    handlers: Registry<RequestHandler>,
    listeners: Vec<RegisterListener>,
}

impl Plan {
    /// Dials and starts the actor on this thread's arbiter.
    async fn open(self, client: Option<awc::Client>) -> Result<Client, Error> {
        #[cfg(feature = "rustls")]
        let client = client.or_else(|| self.tls.map(crate::connection::rustls_client));
        let dialer = Dialer {
            endpoints: self.endpoints,
            headers: self.headers,
            subprotocols: self.subprotocols,
            auth: self.auth,
            client,
            connect_timeout: self.config.connect_timeout,
            max_message_size: self.config.max_message_size,
        };
        let mut failed = None;
        let mut opened = None;
        for endpoint in 0..dialer.endpoints.len() {
            match dialer.dial(endpoint).await {
                Ok(socket) => {
                    opened = Some((endpoint, socket));
                    break;
                }
                Err(err) => {
                    log::warn!("{err}");
                    failed = Some(err);
                }
            }
        }
        let Some((endpoint, socket)) = opened else {
            return Err(failed.unwrap_or(Error::InvalidConfig {
                reason: "no endpoint to connect to".into(),
            }));
        };
        let (addr, shared) = RpcConnection::start(Parts {
            config: self.config,
            dialer,
            socket,
            handlers: self.handlers,
            listeners: self.listeners,
            endpoint,
            watchers: self.watchers,
        });
        Ok(Client::new(addr, shared))
    }
}

/// Runs `open` and hands its outcome to whoever awaits `connect`, unless
/// they have gone: then the dial is abandoned.
async fn reply(
    mut tx: oneshot::Sender<Result<Client, Error>>,
    open: impl Future<Output = Result<Client, Error>>,
) {
    let open = std::pin::pin!(open);
    let outcome = match future::select(open, tx.cancellation()).await {
        future::Either::Left((outcome, _)) => outcome,
        future::Either::Right(((), _)) => return,
    };
    // NOTE: the caller may have gone meanwhile; the `Client` dropped with
    // the outcome was the connection's only handle, so it closes (1000).
    let _ = tx.send(outcome);
}

/// The heartbeat's timeout when none is set.
const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// An endpoint from a URL: `ws://user:pass@host` means basic auth, as in
/// the Python library (the credentials never reach awc inside the URL).
/// With the URL's error, if it is unusable.
fn endpoint(url: String) -> (Endpoint, Option<Error>) {
    let (url, auth) = match crate::connection::split_userinfo(&url) {
        Some((stripped, user, password)) => (stripped, Some(Auth::Basic { user, password })),
        None => (url, None),
    };
    let invalid = check_url(&url).err().map(|reason| Error::InvalidConfig {
        reason: format!("bad URL {url:?}: {reason}"),
    });
    (Endpoint { url, auth }, invalid)
}

impl fmt::Debug for ConnectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values and credentials may be secret: show names only.
        f.debug_struct("ConnectionBuilder")
            .field("url", &self.url)
            .field(
                "more_endpoints",
                &self
                    .more_endpoints
                    .iter()
                    .map(|e| &e.url)
                    .collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("auth", &self.auth.is_some())
            .field("client", &self.client.is_some())
            .field("subprotocols", &self.subprotocols)
            .field("invalid", &self.invalid)
            .finish()
    }
}

/// An HTTP token (RFC 9110 §5.6.2): what a subprotocol name must be. awc
/// panics on a header value it cannot build, so names are checked here.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_url(url: &str) -> Result<(), String> {
    let uri = Uri::try_from(url).map_err(|err| err.to_string())?;
    match uri.scheme_str() {
        Some("ws" | "wss" | "http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "unsupported scheme {other:?} (use ws:// or wss://)"
            ))
        }
        None => return Err("missing scheme (use ws:// or wss://)".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("missing host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_reported_by_connect() {
        for (url, why) in [
            ("localhost:80", "missing scheme"),
            ("ftp://x/", "unsupported scheme"),
            ("/just/a/path", "missing scheme"),
            ("ws://", "invalid"),
            ("not a url", "invalid"),
        ] {
            let builder = ConnectionBuilder::new(url.into());
            let reason = match builder.invalid {
                Some(Error::InvalidConfig { reason }) => reason,
                other => panic!("{url}: {other:?}"),
            };
            assert!(reason.contains(why), "{url}: {reason}");
        }
        assert!(ConnectionBuilder::new("ws://127.0.0.1:1/x".into())
            .invalid
            .is_none());
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_reported() {
        let builder = ConnectionBuilder::new("ws://h/".into()).bearer_auth("a\nb");
        assert!(matches!(builder.invalid, Some(Error::InvalidConfig { .. })));
    }

    #[test]
    fn subprotocol_names_must_be_tokens() {
        let ok = ConnectionBuilder::new("ws://h/".into()).subprotocols(["jsonrpc", "v2.json-rpc"]);
        assert!(ok.invalid.is_none());
        for bad in ["", "a b", "a,b", "é", "x\n"] {
            let builder = ConnectionBuilder::new("ws://h/".into()).subprotocols([bad]);
            assert!(builder.invalid.is_some(), "{bad:?}");
        }
    }

    #[test]
    fn credentials_in_the_url_are_basic_auth_and_cannot_be_given_twice() {
        let builder = ConnectionBuilder::new("ws://ann:s3cret@127.0.0.1:9/rpc".into());
        assert_eq!(builder.url, "ws://127.0.0.1:9/rpc");
        assert!(matches!(
            &builder.url_auth,
            Some(Auth::Basic { user, password }) if user == "ann" && password == "s3cret"
        ));
        assert!(builder.invalid.is_none());
        for twice in [
            ConnectionBuilder::new("ws://ann:x@h/".into()).basic_auth("bob", "y"),
            ConnectionBuilder::new("ws://ann:x@h/".into()).bearer_auth("t"),
        ] {
            let Some(Error::InvalidConfig { reason }) = twice.invalid else {
                panic!("credentials given twice were accepted");
            };
            assert!(reason.contains("already carries credentials"), "{reason}");
        }
    }

    #[test]
    fn the_first_bad_header_is_kept() {
        let builder = ConnectionBuilder::new("ws://h/".into())
            .header("ok", "fine")
            .header("bad name", "v")
            .header("x", "bad\nvalue");
        assert_eq!(builder.headers.len(), 1);
        let Some(Error::InvalidConfig { reason }) = builder.invalid else {
            panic!("no error kept");
        };
        assert!(reason.starts_with("bad header name"), "{reason}");
    }
}
