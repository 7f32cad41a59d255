//! [`Forward`]: one downstream message in, its answer out. Requests go to
//! an upstream connection, which gives each its own id (so any number of
//! downstream clients share it without collisions); answers carry the
//! downstream's id back exactly as it was written.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;

use super::codes;
use super::config::ProxyConfig;
use super::fanout::Fanout;
use super::hook::{Decision, Hook, Origin, ProxyRequest};
use super::metrics::{bump, Metrics, ProxyStats};
use super::upstream::Upstreams;
use crate::builder::ConnectionBuilder;
use crate::client::Client;
use crate::error::Error;
use crate::message::RawCall;
use crate::protocol::{self, ErrorObject, Id, Inbound, Message, Params};

/// Forwards downstream JSON-RPC messages to a pool of upstream connections
/// and builds the answers. Cheap to clone; share one among every worker and
/// front end of a service (as actix-web app data for [`http`](super::http),
/// [`websocket`](super::websocket), [`resource`](super::resource) and
/// [`metrics`](super::metrics)); its clones share the websocket
/// subscriptions it fans out and its counters.
///
/// - A request goes upstream; its answer comes back with the downstream's
///   id, byte for byte, and the upstream's result exactly as sent.
/// - A notification goes upstream; nothing comes back.
/// - A batch's entries go upstream each on its own, concurrently, each with
///   its own timeout; the answer is one batch in the downstream's order,
///   without the notifications (none at all for a batch of notifications).
///   One slow or failing entry fails alone.
/// - What is not a request gets the JSON-RPC error the specification names
///   (-32700 parse error, -32600 invalid request), id `null` when none could
///   be read.
/// - The subscription methods ([`ProxyConfig::subscription`]) are refused
///   here with -32601, as Ethereum nodes refuse them over HTTP: forwarded
///   as calls they would leave upstream subscriptions nobody reads. A
///   websocket session ([`websocket`](super::websocket)) fans them out.
///
/// Upstream failures are errors in the server range: -32001 no answer in
/// time, -32002 no upstream (lost, or none connected), -32005 a limit.
///
/// # Examples
///
/// ```no_run
/// use jsonrpc_websocket::proxy::{Forward, Origin, Transport, Upstreams};
/// use jsonrpc_websocket::RpcConnection;
///
/// # async fn demo() -> Result<(), jsonrpc_websocket::Error> {
/// let upstream = RpcConnection::builder("ws://127.0.0.1:8546").connect().await?;
/// let forward = Forward::new(Upstreams::new([upstream]));
/// let answer = forward
///     .message(r#"{"jsonrpc":"2.0","id":"a-7","method":"eth_blockNumber"}"#, &Origin::new(Transport::Http))
///     .await;
/// // Some(r#"{"jsonrpc":"2.0","id":"a-7","result":"0x12a05f"}"#)
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Forward {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    upstreams: Upstreams,
    config: ProxyConfig,
    hook: Option<Arc<dyn Hook>>,
    metrics: Arc<Metrics>,
    /// The websocket subscriptions shared through these upstreams.
    fanout: Arc<Fanout>,
    per_session: Option<Arc<SessionConnect>>,
    /// Whether this is one session's own (per-session mode): its upstream
    /// closes with the session.
    session_own: bool,
    /// Set once every websocket session is to close (see
    /// [`Forward::close_websockets`]); shared by every clone.
    closing: Arc<tokio::sync::watch::Sender<Option<(u16, String)>>>,
}

/// Makes a websocket session's own upstream connection (see
/// [`Forward::per_session`]).
pub(crate) type SessionConnect = dyn Fn(&Origin) -> ConnectionBuilder + Send + Sync;

impl Forward {
    /// Forwards to `upstreams` with the default [`ProxyConfig`] and no hook.
    pub fn new(upstreams: Upstreams) -> Forward {
        Forward {
            inner: Arc::new(Inner {
                upstreams,
                config: ProxyConfig::default(),
                hook: None,
                metrics: Arc::default(),
                fanout: Arc::default(),
                per_session: None,
                session_own: false,
                closing: Arc::new(tokio::sync::watch::Sender::new(None)),
            }),
        }
    }

    /// Uses these limits and policies.
    pub fn config(self, config: ProxyConfig) -> Forward {
        self.with(|inner| inner.config = config)
    }

    /// Lets `hook` inspect, rewrite, answer or refuse each request first.
    pub fn hook(self, hook: impl Hook) -> Forward {
        self.with(|inner| inner.hook = Some(Arc::new(hook)))
    }

    /// Gives each downstream websocket session an upstream connection of
    /// its own, made by `connect` from the session's [`Origin`] (its
    /// handshake headers, its address) when the session opens, and closed
    /// when it ends. HTTP requests still go to the pool given to
    /// [`new`](Self::new) (which may be empty: they are then answered with
    /// -32002).
    ///
    /// What this mode adds: requests the upstream server sends on that
    /// connection pass through to the downstream client, under an id the
    /// proxy gives them (1, 2, … per session), and the client's answer goes
    /// back to the upstream under the upstream's own id; an answer that
    /// does not come within [`ProxyConfig::timeout`] is answered upstream
    /// with -32001, a session gone with -32002. Only requests that no
    /// handler of the builder takes pass through: the proxy registers
    /// itself at the route `"*"` (replacing one the builder has), so exact
    /// names and namespaces registered on the builder are still answered by
    /// their handlers. Notifications from the upstream go to the builder's
    /// listeners, as on any connection; subscriptions are fanned out as in
    /// the shared mode, among the subscribers of the one session.
    ///
    /// The handshake waits for the upstream connection; when it cannot be
    /// made, the downstream's handshake is answered `502 Bad Gateway`.
    ///
    /// # Examples
    ///
    /// Each session's upstream gets the downstream's `Authorization` header:
    ///
    /// ```no_run
    /// use actix_web::{web, App, HttpServer};
    /// use jsonrpc_websocket::proxy::{self, Forward, Origin, Upstreams};
    /// use jsonrpc_websocket::RpcConnection;
    ///
    /// # async fn demo() -> std::io::Result<()> {
    /// let forward = Forward::new(Upstreams::new([])).per_session(|origin: &Origin| {
    ///     let mut builder = RpcConnection::builder("ws://127.0.0.1:8546");
    ///     if let Some(auth) = origin.headers.get("authorization") {
    ///         builder = builder.header("authorization", auth.clone());
    ///     }
    ///     builder
    /// });
    /// HttpServer::new(move || {
    ///     App::new()
    ///         .app_data(web::Data::new(forward.clone()))
    ///         .service(proxy::resource("/"))
    /// })
    /// .bind("127.0.0.1:8545")?
    /// .run()
    /// .await
    /// # }
    /// ```
    pub fn per_session<F>(self, connect: F) -> Forward
    where
        F: Fn(&Origin) -> ConnectionBuilder + Send + Sync + 'static,
    {
        self.with(|inner| inner.per_session = Some(Arc::new(connect)))
    }

    /// The per-session connection maker, if any.
    pub(crate) fn session_connect(&self) -> Option<&Arc<SessionConnect>> {
        self.inner.per_session.as_ref()
    }

    /// The forward of one session with its own upstream connection: the
    /// same limits, hook and counters, its own subscriptions.
    pub(crate) fn for_session(&self, client: Client) -> Forward {
        Forward {
            inner: Arc::new(Inner {
                upstreams: Upstreams::new([client]),
                config: self.inner.config.clone(),
                hook: self.inner.hook.clone(),
                metrics: Arc::clone(&self.inner.metrics),
                fanout: Arc::default(),
                per_session: None,
                session_own: true,
                closing: Arc::clone(&self.inner.closing),
            }),
        }
    }

    /// Closes every downstream websocket session gracefully, as a service
    /// does when it stops. Each session answers the requests it has in
    /// flight (each within [`ProxyConfig::timeout`]) and then closes with
    /// `code` and `reason` (1001 "going away" is the code for a service
    /// going down; a code a server may not send becomes 1001). Meanwhile
    /// it answers each new request with -32002 at once and drops new
    /// notifications, still takes the client's answers to passed-through
    /// server requests (per-session mode) and answers new ones -32002
    /// upstream. Subscriptions end with their sessions (the upstream ones
    /// are unsubscribed). New websocket handshakes are refused with `503`.
    /// HTTP requests are not affected: stop the `HttpServer` for those
    /// (its graceful stop also waits for the sessions' connections to
    /// end). Calling it again changes nothing.
    ///
    /// # Examples
    ///
    /// On Ctrl-C, websockets first, then the server:
    ///
    /// ```no_run
    /// # async fn demo(forward: jsonrpc_websocket::proxy::Forward, server: actix_web::dev::ServerHandle) {
    /// forward.close_websockets(1001, "the proxy is shutting down");
    /// server.stop(true).await;
    /// # }
    /// ```
    pub fn close_websockets(&self, code: u16, reason: impl Into<String>) {
        let code = if crate::message::may_send_close_code(code) {
            code
        } else {
            1001
        };
        let reason = crate::message::fit_close_reason(&reason.into());
        self.inner.closing.send_if_modified(|closing| {
            if closing.is_some() {
                return false;
            }
            *closing = Some((code, reason));
            true
        });
    }

    /// Whether [`close_websockets`](Self::close_websockets) was called.
    pub(crate) fn is_closing(&self) -> bool {
        self.inner.closing.borrow().is_some()
    }

    /// Learns when [`close_websockets`](Self::close_websockets) is called.
    pub(crate) fn closing_signal(&self) -> tokio::sync::watch::Receiver<Option<(u16, String)>> {
        self.inner.closing.subscribe()
    }

    /// Whether this is one session's own forward (see [`for_session`](Self::for_session)).
    pub(crate) fn is_session_forward(&self) -> bool {
        self.inner.session_own
    }

    pub(crate) fn fanout(&self) -> &Fanout {
        &self.inner.fanout
    }

    fn with(self, change: impl FnOnce(&mut Inner)) -> Forward {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        change(&mut inner);
        Forward {
            inner: Arc::new(inner),
        }
    }

    /// The limits and policies in use.
    pub fn proxy_config(&self) -> &ProxyConfig {
        &self.inner.config
    }

    /// The upstream pool.
    pub fn upstreams(&self) -> &Upstreams {
        &self.inner.upstreams
    }

    /// The proxy's counters so far.
    pub fn stats(&self) -> ProxyStats {
        self.inner.metrics.snapshot()
    }

    /// The counters, each upstream's state and latency histogram, in the
    /// Prometheus text format (what `GET /metrics` serves).
    pub fn prometheus(&self) -> String {
        self.inner.metrics.prometheus(&self.inner.upstreams)
    }

    pub(crate) fn has_hook(&self) -> bool {
        self.inner.hook.is_some()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Forwards one downstream message (a request, a notification or a
    /// batch) and returns the text to answer with; `None` when nothing is
    /// owed (notifications). This is what the HTTP front end does with a
    /// body; the subscription methods are refused here (-32601), as over
    /// HTTP. Never fails: every failure is a JSON-RPC error in the answer.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives up the requests it forwarded: nothing is
    /// left pending upstream, and their answers are dropped.
    pub async fn message(&self, text: &str, origin: &Origin) -> Option<String> {
        bump(&self.metrics().messages);
        match protocol::parse(text) {
            Inbound::Single(message) => self.entry(message, origin).await,
            Inbound::Batch(messages) => {
                let limit = self.inner.config.max_batch;
                if messages.len() > limit {
                    bump(&self.metrics().limited);
                    let error = ErrorObject::new(
                        codes::LIMIT_EXCEEDED,
                        format!(
                            "a batch of {} entries is over the limit of {limit}",
                            messages.len()
                        ),
                    );
                    return Some(error_text(&Id::null(), &error));
                }
                let answers = join_all(messages.into_iter().map(|m| self.entry(m, origin))).await;
                join_batch(answers.into_iter().flatten())
            }
            Inbound::Garbage(reason) => {
                bump(&self.metrics().invalid);
                Some(error_text(&Id::null(), &garbage(text, &reason)))
            }
        }
    }

    /// One request or notification of a message.
    async fn entry(&self, message: Message<'_>, origin: &Origin) -> Option<String> {
        match message {
            Message::Request(request) => {
                let request = ProxyRequest {
                    method: request.method.into_owned(),
                    params: request.params.map(str::to_owned),
                    id: Some(request.id),
                };
                Some(self.request(request, origin).await)
            }
            Message::Notification(notification) => {
                let request = ProxyRequest {
                    method: notification.method.into_owned(),
                    params: notification.params.map(str::to_owned),
                    id: None,
                };
                self.notification(request, origin).await;
                None
            }
            Message::InvalidRequest { id, reason } => {
                bump(&self.metrics().invalid);
                let id = id.unwrap_or_else(Id::null);
                Some(error_text(&id, &ErrorObject::invalid_request(reason)))
            }
            Message::Response(_) | Message::InvalidResponse { .. } => {
                bump(&self.metrics().invalid);
                let error = ErrorObject::invalid_request("a response where a request was expected");
                Some(error_text(&Id::null(), &error))
            }
        }
    }

    /// Forwards a request (after the hook) and returns its answer.
    pub(crate) async fn request(&self, mut request: ProxyRequest, origin: &Origin) -> String {
        if let Some(answer) = self.decide(&mut request, origin) {
            let id = request.id.unwrap_or_else(Id::null);
            return decided_text(&id, answer);
        }
        if self.is_subscription_method(&request.method) {
            // NOTE: forwarded as a call, a subscribe would leave an upstream
            // subscription that nobody reads and nobody ends.
            bump(&self.metrics().refused);
            let id = request.id.unwrap_or_else(Id::null);
            return error_text(&id, &no_subscriptions_here(&request.method));
        }
        self.upstream_request(request).await
    }

    /// Whether `method` subscribes or unsubscribes (see
    /// [`ProxyConfig::subscription`]): only a websocket session can.
    fn is_subscription_method(&self, method: &str) -> bool {
        let config = &self.inner.config;
        config.subscribe_pair(method).is_some() || config.unsubscribe_pair(method).is_some()
    }

    /// Sends a request the hook has passed upstream and returns its answer.
    pub(crate) async fn upstream_request(&self, request: ProxyRequest) -> String {
        let id = request.id.unwrap_or_else(Id::null);
        let params = match params(request.params, self.inner.config.max_depth) {
            Ok(params) => params,
            Err(error) => {
                bump(&self.metrics().invalid);
                return error_text(&id, &error);
            }
        };
        let Some((_, upstream)) = self.inner.upstreams.pick() else {
            bump(&self.metrics().unavailable);
            let error = ErrorObject::new(codes::UPSTREAM_UNAVAILABLE, "no upstream is connected");
            return error_text(&id, &error);
        };
        bump(&self.metrics().forwarded);
        let call = RawCall {
            method: request.method.into(),
            params,
            timeout: Some(self.inner.config.timeout),
            retry: false,
        };
        let started = Instant::now();
        let outcome = match upstream.client.addr().send(call).await {
            Ok(outcome) => outcome,
            Err(_mailbox) => Err(Error::NotConnected {
                method: "forwarded request".into(),
            }),
        };
        match outcome {
            Ok(reply) => {
                upstream.latency.record(started.elapsed());
                result_text(&id, &reply.result.text)
            }
            Err(Error::Rpc { error, .. }) => {
                upstream.latency.record(started.elapsed());
                bump(&self.metrics().upstream_errors);
                error_text(&id, &error)
            }
            Err(err) => {
                let error = self.upstream_failure(&err);
                if !matches!(err, Error::Overloaded { .. }) {
                    bump(&upstream.failures);
                }
                error_text(&id, &error)
            }
        }
    }

    /// Forwards a notification (after the hook).
    pub(crate) async fn notification(&self, mut request: ProxyRequest, origin: &Origin) {
        if self.decide(&mut request, origin).is_some() {
            // Answered or refused here: a notification gets no answer.
            return;
        }
        if self.is_subscription_method(&request.method) {
            bump(&self.metrics().refused);
            return;
        }
        self.upstream_notification(request).await;
    }

    /// Sends a notification the hook has passed upstream.
    pub(crate) async fn upstream_notification(&self, request: ProxyRequest) {
        let Ok(params) = params(request.params, self.inner.config.max_depth) else {
            bump(&self.metrics().invalid);
            return;
        };
        let Some((_, upstream)) = self.inner.upstreams.pick() else {
            bump(&self.metrics().unavailable);
            return;
        };
        bump(&self.metrics().notifications);
        if let Err(err) = upstream.client.notify(request.method, params).await {
            log::debug!("a downstream notification could not go upstream: {err}");
        }
    }

    /// The hook's decision: `None` to forward, or the answer to give here.
    pub(crate) fn decide(
        &self,
        request: &mut ProxyRequest,
        origin: &Origin,
    ) -> Option<Result<Box<serde_json::value::RawValue>, ErrorObject>> {
        let hook = self.inner.hook.as_ref()?;
        match hook.request(request, origin) {
            Decision::Forward => None,
            Decision::Answer(result) => {
                bump(&self.metrics().answered_locally);
                Some(Ok(result))
            }
            Decision::Refuse(error) => {
                bump(&self.metrics().refused);
                Some(Err(error))
            }
        }
    }

    /// The error a downstream gets when the upstream gave no answer.
    pub(crate) fn upstream_failure(&self, err: &Error) -> ErrorObject {
        match err {
            Error::Timeout { after, .. } => {
                bump(&self.metrics().timeouts);
                ErrorObject::new(
                    codes::UPSTREAM_TIMEOUT,
                    format!("the upstream did not answer within {after:?}"),
                )
            }
            Error::Overloaded { .. } => {
                bump(&self.metrics().limited);
                ErrorObject::new(
                    codes::LIMIT_EXCEEDED,
                    format!("the upstream is busy: {err}"),
                )
            }
            Error::MessageTooLarge { .. } | Error::InvalidParams { .. } => {
                bump(&self.metrics().invalid);
                ErrorObject::invalid_request(err)
            }
            other => {
                bump(&self.metrics().unavailable);
                ErrorObject::new(
                    codes::UPSTREAM_UNAVAILABLE,
                    format!("the upstream is unavailable: {other}"),
                )
            }
        }
    }
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("upstreams", &self.inner.upstreams)
            .field("config", &self.inner.config)
            .field("hook", &self.inner.hook.is_some())
            .field("per_session", &self.inner.per_session.is_some())
            .finish()
    }
}

/// A downstream's params as upstream params: checked to be JSON (a hook may
/// have written them) nested at most `max_depth` levels.
pub(crate) fn params(text: Option<String>, max_depth: usize) -> Result<Params, ErrorObject> {
    let Some(text) = text else {
        return Ok(Params::none());
    };
    if depth(&text) > max_depth {
        return Err(ErrorObject::invalid_params(format!(
            "params nested deeper than {max_depth} levels"
        )));
    }
    let params = Params::from_json(text);
    if params.is_invalid() {
        return Err(ErrorObject::invalid_params(
            "params must be a JSON array or object",
        ));
    }
    Ok(params)
}

/// The error for a subscription method outside a websocket session (the
/// code and message Ethereum nodes answer over HTTP).
pub(crate) fn no_subscriptions_here(method: &str) -> ErrorObject {
    ErrorObject::new(
        protocol::codes::METHOD_NOT_FOUND,
        format!("notifications not supported: {method} needs a websocket session"),
    )
}

/// How deeply `json` nests arrays and objects (brackets inside strings do
/// not count). One pass, no allocation: it runs before any parser does.
fn depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// -32700 for text that is not JSON, -32600 for JSON that is no request.
pub(crate) fn garbage(text: &str, reason: &str) -> ErrorObject {
    if serde_json::from_str::<&serde_json::value::RawValue>(text).is_err() {
        ErrorObject::new(
            protocol::codes::PARSE_ERROR,
            format!("parse error: {reason}"),
        )
    } else {
        ErrorObject::invalid_request(reason)
    }
}

/// The answer a hook gave instead of the upstream.
pub(crate) fn decided_text(
    id: &Id,
    answer: Result<Box<serde_json::value::RawValue>, ErrorObject>,
) -> String {
    match answer {
        Ok(result) => result_text(id, result.get()),
        Err(error) => error_text(id, &error),
    }
}

pub(crate) fn result_text(id: &Id, result: &str) -> String {
    let mut out = Vec::with_capacity(40 + result.len());
    protocol::write_result_response(&mut out, id, result);
    text(out)
}

pub(crate) fn error_text(id: &Id, error: &ErrorObject) -> String {
    let mut out = Vec::with_capacity(96);
    protocol::write_error_response(&mut out, id, error);
    text(out)
}

/// The writers only ever put valid UTF-8 (from `&str`s) in the buffer.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `[a,b,…]`, or `None` for no answers at all.
pub(crate) fn join_batch(answers: impl Iterator<Item = String>) -> Option<String> {
    let mut out = String::new();
    for answer in answers {
        out.push(if out.is_empty() { '[' } else { ',' });
        out.push_str(&answer);
    }
    if out.is_empty() {
        return None;
    }
    out.push(']');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_carry_the_downstream_id_exactly() {
        let id = Id::from_json("1e2").unwrap();
        assert_eq!(
            result_text(&id, r#"{"b":1,"a":2}"#),
            r#"{"jsonrpc":"2.0","id":1e2,"result":{"b":1,"a":2}}"#
        );
        let error = ErrorObject::new(-32001, "slow");
        assert_eq!(
            error_text(&Id::null(), &error),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"slow"}}"#
        );
    }

    #[test]
    fn batches_join_in_order_and_an_empty_one_is_no_answer() {
        assert_eq!(
            join_batch(["a".to_owned(), "b".to_owned()].into_iter()),
            Some("[a,b]".into())
        );
        assert_eq!(join_batch(std::iter::empty()), None);
    }

    #[test]
    fn garbage_is_a_parse_error_or_an_invalid_request() {
        assert_eq!(garbage("{not json", "x").code, -32700);
        assert_eq!(garbage("[]", "x").code, -32600);
        assert_eq!(garbage("5", "x").code, -32600);
    }

    #[test]
    fn params_must_be_json_and_not_too_deep() {
        assert!(params(None, 128).is_ok());
        assert!(params(Some("[1,2]".into()), 128).is_ok());
        assert_eq!(params(Some("[1,".into()), 128).unwrap_err().code, -32602);
        assert!(params(Some("[[[1]]]".into()), 3).is_ok());
        assert_eq!(
            params(Some("[[[[1]]]]".into()), 3).unwrap_err().code,
            -32602
        );
    }

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(depth(r#"[1,{"a":[2]}]"#), 3);
        assert_eq!(depth(r#"["[[[[", "\"[{"]"#), 1);
        assert_eq!(depth("7"), 0);
    }

    #[actix_rt::test]
    async fn without_upstreams_every_request_gets_an_error_and_notifications_nothing() {
        let forward = Forward::new(Upstreams::new([]));
        let origin = Origin::new(super::super::Transport::Http);
        let answer = forward
            .message(r#"{"jsonrpc":"2.0","id":"x","method":"m"}"#, &origin)
            .await
            .unwrap();
        assert!(
            answer.contains(r#""id":"x""#) && answer.contains("-32002"),
            "{answer}"
        );
        assert_eq!(
            forward
                .message(r#"{"jsonrpc":"2.0","method":"m"}"#, &origin)
                .await,
            None
        );
        let stats = forward.stats();
        assert_eq!((stats.messages, stats.unavailable), (2, 2));
    }
}
