//! Configuration of a connection, and the handshake that opens it.

use std::fmt;
use std::time::Duration;

use awc::http::header::{HeaderName, HeaderValue};
use awc::http::Uri;

use std::future::Future;

use actix::Recipient;
use serde_json::Value;

use super::{transport, Routes};
use crate::client::Client;
use crate::error::Error;
use crate::message::{RegisterHandler, RegisterListener, ServerNotification, ServerRequest};
use crate::protocol::ErrorObject;
use crate::registry::Route;

/// Settings of one connection. `Default` is the only place defaults live.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub close_timeout: Duration,
    pub max_message_size: usize,
    pub max_in_flight: usize,
    pub max_server_requests: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(1),
            max_message_size: 16 * 1024 * 1024,
            max_in_flight: 65_536,
            max_server_requests: 1024,
        }
    }
}

enum Auth {
    Basic { user: String, password: String },
    Bearer(String),
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
#[must_use = "nothing happens until `.connect()` is awaited"]
pub struct ConnectionBuilder {
    url: String,
    config: Config,
    headers: Vec<(HeaderName, HeaderValue)>,
    subprotocols: Vec<String>,
    auth: Option<Auth>,
    client: Option<awc::Client>,
    routes: Routes,
    invalid: Option<Error>,
}

impl ConnectionBuilder {
    pub(crate) fn new(url: String) -> Self {
        let invalid = check_url(&url).err().map(|reason| Error::InvalidConfig {
            reason: format!("bad URL {url:?}: {reason}"),
        });
        ConnectionBuilder {
            url,
            config: Config::default(),
            headers: Vec::new(),
            subprotocols: Vec::new(),
            auth: None,
            client: None,
            routes: Routes::default(),
            invalid,
        }
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

    /// Sends `Authorization: Basic …` with the handshake. Default: none.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some(Auth::Basic {
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
        self.auth = Some(Auth::Bearer(token));
        self
    }

    /// Uses this awc client (its connector, TLS setup and handshake timeout)
    /// instead of one made for the connection — the equivalent of passing an
    /// aiohttp session to the Python library. Default: a client of our own
    /// with `TCP_NODELAY` set.
    pub fn client(mut self, client: awc::Client) -> Self {
        self.client = Some(client);
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

    /// How many calls may wait for a response at once; a call beyond that
    /// fails at once with [`Error::Overloaded`] instead of growing memory.
    /// Default: 65,536.
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.config.max_in_flight = calls.max(1);
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
        self.routes.handlers.insert(message.route, message.handler);
        self
    }

    /// Answers the server's requests matching `route` with a closure: the
    /// equivalent of the Python library's `server.ns.method = fn`.
    ///
    /// ```
    /// # use jsonrpc_websocket::{ErrorObject, RpcConnection};
    /// # use serde_json::{json, Value};
    /// let builder = RpcConnection::builder("ws://127.0.0.1:9090")
    ///     .register_fn("client.ping", |_params: Value| async { Ok::<_, ErrorObject>(json!("pong")) });
    /// ```
    pub fn register_fn<F, Fut>(mut self, route: impl Into<Route>, f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, ErrorObject>> + 'static,
    {
        let message = RegisterHandler::func(route, f);
        self.routes.handlers.insert(message.route, message.handler);
        self
    }

    /// Sends the server's notifications matching `route` to this actor (see
    /// [`RegisterListener`]). Default: none.
    pub fn listen(
        mut self,
        route: impl Into<Route>,
        recipient: Recipient<ServerNotification>,
    ) -> Self {
        self.routes
            .add_listener(RegisterListener::actor(route, recipient));
        self
    }

    /// Passes the server's notifications matching `route` to a closure.
    pub fn on_notification<F>(mut self, route: impl Into<Route>, f: F) -> Self
    where
        F: Fn(ServerNotification) + Send + 'static,
    {
        self.routes.add_listener(RegisterListener::func(route, f));
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

    /// Opens the websocket and starts the [`RpcConnection`](crate::RpcConnection)
    /// actor on the current actix arbiter. Returns only once the handshake has
    /// succeeded.
    ///
    /// Must be awaited inside a running actix system (`#[actix::main]`,
    /// `#[actix_rt::test]`, `actix_rt::System::new().block_on(..)`, or within
    /// an actix-web server).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a bad URL or header;
    /// [`Error::Handshake`] when the server answers with an HTTP status (its
    /// code is kept, e.g. 401); [`Error::Transport`] when the server cannot be
    /// reached, with the awc error as `source()`.
    pub async fn connect(self) -> Result<Client, Error> {
        if let Some(err) = self.invalid {
            return Err(err);
        }
        let client = self
            .client
            .unwrap_or_else(|| transport::default_client(self.config.connect_timeout));
        let mut request = client
            .ws(self.url.as_str())
            .max_frame_size(self.config.max_message_size);
        for (name, value) in self.headers {
            request = request.header(name, value);
        }
        if !self.subprotocols.is_empty() {
            request = request.protocols(&self.subprotocols);
        }
        request = match self.auth {
            Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(&password)),
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
            None => request,
        };
        let framed = transport::handshake(request, &self.url, self.config.connect_timeout).await?;
        Ok(super::RpcConnection::start(
            framed,
            self.config,
            self.routes,
        ))
    }
}

impl fmt::Debug for ConnectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values and credentials may be secret: show names only.
        f.debug_struct("ConnectionBuilder")
            .field("url", &self.url)
            .field("config", &self.config)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("auth", &self.auth.is_some())
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
