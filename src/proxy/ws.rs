//! The websocket front end: one downstream websocket session per task pair
//! (a reader that forwards, a writer that answers), with subscriptions
//! fanned out (see [`super::fanout`]) and, in per-session mode, server
//! requests passed through.
//!
//! Every queue is bounded: requests in flight per session, what waits to
//! be written, each subscriber's notifications, server requests waiting for
//! the downstream's answer; each message's size is checked on its frame
//! headers before it is buffered ([`super::gate`]).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use actix_http::ws::ProtocolError;
use actix_web::{web, FromRequest as _, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use bytes::Bytes;
use futures_util::future::{join_all, LocalBoxFuture};
use futures_util::stream::{FuturesUnordered, SelectAll};
use futures_util::StreamExt as _;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::codes;
use super::fanout::{
    self, canonical, render_end, render_lagged, DownId, Feed, FeedEnd, FeedItem, Key, SessionLink,
    Status, TopicTask,
};
use super::forward::{
    decided_text, error_text, garbage, join_batch, params, result_text, Forward, SessionConnect,
};
use super::gate::Gated;
use super::hook::{Origin, ProxyRequest, Transport};
use super::http::http;
use super::metrics::{bump, Metrics};
use crate::error::Error;
use crate::message::ServerRequest;
use crate::protocol::{self, ErrorObject, Id, Inbound, Message};

/// How long a closing session waits to hand its close frame to the socket.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Why a request (or a server request) is refused while the session closes
/// gracefully.
const SHUTTING_DOWN: &str = "the proxy is shutting down: this session is closing";

/// Server requests waiting for a downstream's answer, at most, per session.
/// (The upstream connection's own `max_server_requests` bounds how many
/// are handled at once; this bounds the table should answers never come.)
const SERVER_CALLS: usize = 1_024;

/// Serves a downstream websocket session (the upgrade of a `GET`): each
/// text or binary message (a request, a notification or a batch) is
/// forwarded as [`Forward::message`] would, concurrently, and each answer
/// goes back as soon as it is ready (answers may overtake each other; each
/// carries its request's id). Pings are answered.
///
/// Limits (see [`ProxyConfig`](super::ProxyConfig)):
/// - more than `max_connections` sessions at once: the handshake is
///   answered `503 Service Unavailable`;
/// - a message over `max_body` (checked on each frame's header, before it
///   is read): the session is closed with 1009;
/// - more than `per_client_in_flight` requests of the session in flight:
///   each further one is answered at once with -32005 (a notification is
///   dropped), nothing is queued;
/// - a downstream that does not read: see
///   [`session_outbound`](super::ProxyConfig::session_outbound) (closed
///   with 1008);
/// - a downstream that has gone without a word: pinged, and closed (1001)
///   when silent too long (see
///   [`session_heartbeat`](super::ProxyConfig::session_heartbeat)).
///
/// The configured subscribe methods (`eth_subscribe` by default) are not
/// forwarded as calls: identical subscriptions share one upstream
/// subscription, and each subscriber gets its own id and its own bounded
/// queue (see [`ProxyConfig::subscription`](super::ProxyConfig::subscription)).
/// A notification is sent as
/// `{"jsonrpc":"2.0","method":<the upstream's>,"params":{"subscription":<id>,"result":<as sent>}}`;
/// `params` carries `"lagged":{"missed":n}` instead of `result` when
/// notifications were dropped for this subscriber (or by the proxy) just
/// before the next one, `"gap":{"down_for_ms":n}` when the upstream
/// subscription was made again (see [`UpstreamLoss`](super::UpstreamLoss)),
/// and `"error":{..}` as its last notification when the proxy ends it.
///
/// [`Forward::close_websockets`] closes every session gracefully (for a
/// service that stops): what is in flight is answered first, new requests
/// get -32002, then each session closes with the code given (1001).
///
/// When the session ends (closed by either side, or lost), its requests in
/// flight are given up, its subscriptions end (the upstream one with the
/// last subscriber), and in per-session mode its upstream connection is
/// closed.
///
/// Serve it with [`resource`] (HTTP and websocket on one path), or alone:
///
/// ```no_run
/// use actix_web::{web, App, HttpServer};
/// use jsonrpc_websocket::proxy::{self, Forward};
/// # async fn demo(forward: Forward) -> std::io::Result<()> {
/// HttpServer::new(move || {
///     App::new()
///         .app_data(web::Data::new(forward.clone()))
///         .route("/ws", web::get().to(proxy::websocket))
/// })
/// .bind("127.0.0.1:8546")?
/// .run()
/// .await
/// # }
/// ```
///
/// # Errors
///
/// A request that is no websocket handshake is refused (`400`, as
/// actix-ws answers it).
pub async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    forward: web::Data<Forward>,
) -> Result<HttpResponse, actix_web::Error> {
    actix_http::ws::verify_handshake(req.head())?;
    let forward = forward.get_ref().clone();
    if forward.is_closing() {
        return Ok(HttpResponse::ServiceUnavailable().body("the proxy is shutting down"));
    }
    let Some(slot) = SessionSlot::take(&forward) else {
        bump(&forward.metrics().limited);
        return Ok(
            HttpResponse::ServiceUnavailable().body("too many websocket sessions; try again later")
        );
    };
    let mut origin = Origin::new(Transport::WebSocket);
    origin.peer = req.peer_addr();
    origin.session = next_session();
    if forward.has_hook() || forward.session_connect().is_some() {
        origin.headers = req.headers().clone();
    }

    let (session_forward, server_calls) = match forward.session_connect() {
        None => (forward.clone(), None),
        Some(connect) => match connect_session(&forward, connect, &origin).await {
            Ok((session_forward, calls)) => (session_forward, Some(calls)),
            Err(err) => {
                log::warn!("a session's upstream connection failed: {err}");
                bump(&forward.metrics().unavailable);
                return Ok(HttpResponse::BadGateway()
                    .body(format!("the upstream connection failed: {err}")));
            }
        },
    };

    let limit = forward.proxy_config().max_body;
    let oversize = Rc::new(Cell::new(None));
    let gated = Gated::new(body, limit, Rc::clone(&oversize));
    let mut payload =
        actix_web::dev::Payload::from(Box::pin(gated) as actix_http::BoxedPayloadStream);
    let body = web::Payload::from_request(&req, &mut payload).await?;
    let (response, ws, stream) = actix_ws::handle(&req, body)?;
    // The gate refuses oversized messages first; these keep actix's own
    // limits (64 KiB frames, 1 MiB messages by default) from refusing
    // what the proxy allows.
    let stream = stream
        .max_frame_size(limit)
        .aggregate_continuations()
        .max_continuation_size(limit);
    let (link, closing) = SessionLink::new(origin.session);
    let session = SessionParts {
        drain: forward.closing_signal(),
        forward: session_forward,
        origin,
        link,
        closing,
        stream,
        oversize,
        server_calls,
        slot,
    };
    actix_web::rt::spawn(run_session(session, ws));
    Ok(response)
}

/// Serves JSON-RPC at `path` as Ethereum nodes do: a `POST` is a request
/// over HTTP ([`http`]), a `GET` upgrading to websocket is a session
/// ([`websocket`]). Other methods are answered `405`.
///
/// ```no_run
/// use actix_web::{web, App, HttpServer};
/// use jsonrpc_websocket::proxy::{self, Forward};
/// # async fn demo(forward: Forward) -> std::io::Result<()> {
/// HttpServer::new(move || {
///     App::new()
///         .app_data(web::Data::new(forward.clone()))
///         .service(proxy::resource("/"))
///         .route("/metrics", web::get().to(proxy::metrics))
/// })
/// .bind("127.0.0.1:8545")?
/// .run()
/// .await
/// # }
/// ```
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path)
        .route(web::post().to(http))
        .route(web::get().to(websocket))
}

fn next_session() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Relaxed)
}

/// One place among `max_connections`, held for the session's life.
struct SessionSlot {
    forward: Forward,
}

impl SessionSlot {
    fn take(forward: &Forward) -> Option<SessionSlot> {
        let max = forward.proxy_config().max_connections as u64;
        forward
            .metrics()
            .sessions
            .fetch_update(Relaxed, Relaxed, |open| (open < max).then_some(open + 1))
            .ok()?;
        Some(SessionSlot {
            forward: forward.clone(),
        })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.forward.metrics().sessions.fetch_sub(1, Relaxed);
    }
}

/// A server request from a session's own upstream, on its way downstream.
struct ServerCall {
    request: ServerRequest,
    reply: oneshot::Sender<Result<Box<RawValue>, ErrorObject>>,
}

/// Connects a session's own upstream, whose server requests (those no
/// handler of the builder takes) come to the session.
async fn connect_session(
    forward: &Forward,
    connect: &Arc<SessionConnect>,
    origin: &Origin,
) -> Result<(Forward, mpsc::Receiver<ServerCall>), Error> {
    let (calls, incoming) = mpsc::channel::<ServerCall>(64);
    let timeout = forward.proxy_config().timeout;
    let builder = connect(origin).register_fn("*", move |request: ServerRequest| {
        let calls = calls.clone();
        async move {
            let gone =
                || ErrorObject::new(codes::UPSTREAM_UNAVAILABLE, "the downstream client is gone");
            let late = || {
                ErrorObject::new(
                    codes::UPSTREAM_TIMEOUT,
                    format!("the downstream client did not answer within {timeout:?}"),
                )
            };
            let (reply, answer) = oneshot::channel();
            let asked = async {
                calls
                    .send(ServerCall { request, reply })
                    .await
                    .map_err(|_| gone())?;
                answer.await.map_err(|_| gone())?
            };
            tokio::time::timeout(timeout, asked)
                .await
                .unwrap_or_else(|_| Err(late()))
        }
    });
    let client = builder.connect().await?;
    Ok((forward.for_session(client), incoming))
}

/// What a session is made of, before it runs.
struct SessionParts {
    /// Set when every session is to close gracefully (see
    /// [`Forward::close_websockets`]).
    drain: watch::Receiver<Option<(u16, String)>>,
    forward: Forward,
    origin: Origin,
    link: Arc<SessionLink>,
    closing: watch::Receiver<Option<(u16, String)>>,
    stream: AggregatedMessageStream,
    oversize: Rc<Cell<Option<u64>>>,
    server_calls: Option<mpsc::Receiver<ServerCall>>,
    slot: SessionSlot,
}

/// What waits to be written to the downstream socket.
enum Out {
    Text(String),
    Ping,
    Pong(Bytes),
    Done(Done),
}

/// A message's outcome: the answer, and the subscriptions it started or
/// ended (the writer must know before it writes the answer, or after).
#[derive(Default)]
struct Done {
    text: Option<String>,
    feeds: Vec<Feed>,
    unsubscribed: Vec<DownId>,
}

impl Done {
    fn text(text: String) -> Done {
        Done {
            text: Some(text),
            ..Done::default()
        }
    }
}

/// What the reader's concurrent work shares.
struct Ctx {
    forward: Forward,
    origin: Origin,
    link: Arc<SessionLink>,
    in_flight: Rc<Cell<usize>>,
    calls: RefCell<ServerCalls>,
}

/// A place among the session's `per_client_in_flight`.
struct Permit(Rc<Cell<usize>>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl Ctx {
    fn metrics(&self) -> &Metrics {
        self.forward.metrics()
    }

    /// Whether the session is closing gracefully (see
    /// [`Forward::close_websockets`]): new requests are refused.
    // NOTE: read from the forward, not learnt from the reader loop's
    // notification: the watch wakes its waiters after its value is set (a
    // shard at a time), and a message read in between must see the value.
    fn draining(&self) -> bool {
        self.forward.is_closing()
    }

    fn permit(&self) -> Option<Permit> {
        let now = self.in_flight.get();
        if now >= self.forward.proxy_config().per_client_in_flight {
            bump(&self.metrics().limited);
            return None;
        }
        self.in_flight.set(now + 1);
        Some(Permit(Rc::clone(&self.in_flight)))
    }
}

/// An entry of a message: answered at once, or to be worked on.
enum Prepared {
    Now(Option<String>),
    Later(LocalBoxFuture<'static, Done>),
}

/// Reads one downstream message into work.
fn prepare(ctx: &Rc<Ctx>, text: &str) -> Prepared {
    bump(&ctx.metrics().messages);
    match protocol::parse(text) {
        Inbound::Single(message) => prepare_entry(ctx, message),
        Inbound::Batch(messages) => {
            let limit = ctx.forward.proxy_config().max_batch;
            if messages.len() > limit {
                bump(&ctx.metrics().limited);
                let error = ErrorObject::new(
                    codes::LIMIT_EXCEEDED,
                    format!(
                        "a batch of {} entries is over the limit of {limit}",
                        messages.len()
                    ),
                );
                return Prepared::Now(Some(error_text(&Id::null(), &error)));
            }
            let entries: Vec<Prepared> = messages
                .into_iter()
                .map(|message| prepare_entry(ctx, message))
                .collect();
            if entries.iter().all(|e| matches!(e, Prepared::Now(_))) {
                let answers = entries.into_iter().filter_map(|e| match e {
                    Prepared::Now(answer) => answer,
                    Prepared::Later(_) => None,
                });
                return Prepared::Now(join_batch(answers));
            }
            Prepared::Later(Box::pin(async move {
                let parts = join_all(entries.into_iter().map(|entry| async move {
                    match entry {
                        Prepared::Now(text) => Done {
                            text,
                            ..Done::default()
                        },
                        Prepared::Later(work) => work.await,
                    }
                }))
                .await;
                let mut done = Done::default();
                let mut answers = Vec::new();
                for part in parts {
                    answers.extend(part.text);
                    done.feeds.extend(part.feeds);
                    done.unsubscribed.extend(part.unsubscribed);
                }
                done.text = join_batch(answers.into_iter());
                done
            }))
        }
        Inbound::Garbage(reason) => {
            bump(&ctx.metrics().invalid);
            Prepared::Now(Some(error_text(&Id::null(), &garbage(text, &reason))))
        }
    }
}

fn prepare_entry(ctx: &Rc<Ctx>, message: Message<'_>) -> Prepared {
    match message {
        Message::Request(request) if ctx.draining() => {
            bump(&ctx.metrics().unavailable);
            let error = ErrorObject::new(codes::UPSTREAM_UNAVAILABLE, SHUTTING_DOWN);
            Prepared::Now(Some(error_text(&request.id, &error)))
        }
        Message::Notification(_) if ctx.draining() => {
            bump(&ctx.metrics().unavailable);
            Prepared::Now(None)
        }
        Message::Request(request) => {
            let Some(permit) = ctx.permit() else {
                let limit = ctx.forward.proxy_config().per_client_in_flight;
                let error = ErrorObject::new(
                    codes::LIMIT_EXCEEDED,
                    format!("too many requests in flight (the limit is {limit})"),
                );
                return Prepared::Now(Some(error_text(&request.id, &error)));
            };
            let request = ProxyRequest {
                method: request.method.into_owned(),
                params: request.params.map(str::to_owned),
                id: Some(request.id),
            };
            let ctx = Rc::clone(ctx);
            Prepared::Later(Box::pin(async move {
                let _permit = permit;
                handle_request(ctx, request).await
            }))
        }
        Message::Notification(notification) => {
            let Some(permit) = ctx.permit() else {
                log::debug!("a downstream notification was dropped: too many in flight");
                return Prepared::Now(None);
            };
            let request = ProxyRequest {
                method: notification.method.into_owned(),
                params: notification.params.map(str::to_owned),
                id: None,
            };
            let ctx = Rc::clone(ctx);
            Prepared::Later(Box::pin(async move {
                let _permit = permit;
                handle_notification(ctx, request).await
            }))
        }
        Message::Response(response) => {
            let outcome = response.outcome.map(str::to_owned);
            if ctx.calls.borrow_mut().answer(&response.id, outcome) {
                return Prepared::Now(None);
            }
            bump(&ctx.metrics().invalid);
            let error = ErrorObject::invalid_request("a response where a request was expected");
            Prepared::Now(Some(error_text(&Id::null(), &error)))
        }
        Message::InvalidResponse { id, reason } => {
            let error = ErrorObject::internal(format!("the client's answer is invalid: {reason}"));
            if let Some(id) = id {
                if ctx.calls.borrow_mut().answer(&id, Err(error)) {
                    return Prepared::Now(None);
                }
            }
            bump(&ctx.metrics().invalid);
            let error = ErrorObject::invalid_request("a response where a request was expected");
            Prepared::Now(Some(error_text(&Id::null(), &error)))
        }
        Message::InvalidRequest { id, reason } => {
            bump(&ctx.metrics().invalid);
            let id = id.unwrap_or_else(Id::null);
            Prepared::Now(Some(error_text(&id, &ErrorObject::invalid_request(reason))))
        }
    }
}

async fn handle_request(ctx: Rc<Ctx>, mut request: ProxyRequest) -> Done {
    let forward = &ctx.forward;
    if let Some(answer) = forward.decide(&mut request, &ctx.origin) {
        let id = request.id.unwrap_or_else(Id::null);
        return Done::text(decided_text(&id, answer));
    }
    let config = forward.proxy_config();
    if let Some(pair) = config.subscribe_pair(&request.method) {
        let unsubscribe = pair.unsubscribe.clone();
        return subscribe(&ctx, request, unsubscribe).await;
    }
    if config.unsubscribe_pair(&request.method).is_some() {
        return unsubscribe(&ctx, request);
    }
    Done::text(forward.upstream_request(request).await)
}

async fn handle_notification(ctx: Rc<Ctx>, mut request: ProxyRequest) -> Done {
    let forward = &ctx.forward;
    if forward.decide(&mut request, &ctx.origin).is_some() {
        return Done::default();
    }
    let config = forward.proxy_config();
    if config.subscribe_pair(&request.method).is_some() {
        // NOTE: a subscription nobody could learn the id of.
        bump(&ctx.metrics().refused);
        return Done::default();
    }
    if config.unsubscribe_pair(&request.method).is_some() {
        // Ends the subscription all the same; nothing is answered.
        let mut done = unsubscribe(&ctx, request);
        done.text = None;
        return done;
    }
    forward.upstream_notification(request).await;
    Done::default()
}

/// A subscribe call: joins (or starts) the topic of its (method, canonical
/// params), and answers once its upstream subscription is live.
async fn subscribe(ctx: &Rc<Ctx>, request: ProxyRequest, unsubscribe: String) -> Done {
    let forward = &ctx.forward;
    let config = forward.proxy_config();
    let id = request.id.clone().unwrap_or_else(Id::null);
    // The depth is checked first, before any parser sees the params.
    let checked = params(request.params.clone(), config.max_depth)
        .and_then(|upstream| Ok((canonical(request.params.as_deref())?, upstream)));
    let (key_params, upstream_params) = match checked {
        Ok(both) => both,
        Err(error) => {
            bump(&ctx.metrics().invalid);
            return Done::text(error_text(&id, &error));
        }
    };
    let limit = config.subscriptions_per_client;
    if forward.fanout().count(ctx.link.id) >= limit {
        bump(&ctx.metrics().limited);
        let error = ErrorObject::new(
            codes::LIMIT_EXCEEDED,
            format!("this client holds {limit} subscriptions, the limit"),
        );
        return Done::text(error_text(&id, &error));
    }
    let key = Key {
        method: request.method,
        params: key_params,
    };
    let joined = forward.fanout().join(
        key.clone(),
        &ctx.link,
        config.subscription_capacity,
        config.subscription_overflow,
        ctx.metrics(),
    );
    if let Some(start) = joined.start {
        actix_web::rt::spawn(fanout::run_topic(TopicTask {
            forward: forward.clone(),
            key,
            serial: start.serial,
            params: upstream_params,
            unsubscribe,
            done: start.done,
        }));
    }
    let mut status = joined.status;
    let made = async {
        loop {
            let now = status.borrow_and_update().clone();
            match now {
                Status::Live => return Ok(()),
                Status::Failed(error) => return Err(error),
                Status::Pending => {
                    if status.changed().await.is_err() {
                        return Err(ErrorObject::new(
                            codes::UPSTREAM_UNAVAILABLE,
                            "the upstream subscription was given up",
                        ));
                    }
                }
            }
        }
    };
    // The topic's task bounds its subscribe call by the timeout; this
    // bounds the wait even should that task be gone.
    let outcome = tokio::time::timeout(config.timeout.saturating_mul(2), made)
        .await
        .unwrap_or_else(|_| {
            bump(&ctx.metrics().timeouts);
            Err(ErrorObject::new(
                codes::UPSTREAM_TIMEOUT,
                "the upstream subscription was not made in time",
            ))
        });
    match outcome {
        Ok(()) => Done {
            text: Some(result_text(&id, &format!("\"{}\"", joined.id))),
            feeds: vec![joined.feed],
            unsubscribed: Vec::new(),
        },
        Err(error) => {
            forward
                .fanout()
                .leave(ctx.link.id, &joined.id, ctx.metrics());
            Done::text(error_text(&id, &error))
        }
    }
}

/// An unsubscribe call: `true` when the session held that subscription
/// (the upstream one ends with its last subscriber), `false` otherwise.
fn unsubscribe(ctx: &Rc<Ctx>, request: ProxyRequest) -> Done {
    let id = request.id.unwrap_or_else(Id::null);
    let target = request
        .params
        .as_deref()
        .and_then(|params| serde_json::from_str::<Vec<Value>>(params).ok())
        .and_then(|params| match params.as_slice() {
            [Value::String(target)] => Some(target.clone()),
            _ => None,
        });
    let Some(target) = target else {
        bump(&ctx.metrics().invalid);
        let error = ErrorObject::invalid_params("expected [subscription id]");
        return Done::text(error_text(&id, &error));
    };
    let fanout = ctx.forward.fanout();
    match fanout.leave(ctx.link.id, &target, ctx.metrics()) {
        Some(_) => Done {
            text: Some(result_text(&id, "true")),
            feeds: Vec::new(),
            unsubscribed: vec![Arc::from(target)],
        },
        None => Done::text(result_text(&id, "false")),
    }
}

/// Server requests passed to the downstream, waiting for its answers.
#[derive(Default)]
struct ServerCalls {
    /// The last id given (ids start at 1).
    last: u64,
    waiting: HashMap<u64, oneshot::Sender<Result<Box<RawValue>, ErrorObject>>>,
}

impl ServerCalls {
    /// The request to send downstream, under an id of the proxy's; `None`
    /// when too many are waiting (the upstream is answered with -32005).
    fn ask(&mut self, call: ServerCall) -> Option<String> {
        // Calls the upstream side gave up on (timed out) need no answer.
        self.waiting.retain(|_, reply| !reply.is_closed());
        if self.waiting.len() >= SERVER_CALLS {
            let error = ErrorObject::new(
                codes::LIMIT_EXCEEDED,
                "too many requests wait for the downstream client",
            );
            let _ = call.reply.send(Err(error));
            return None;
        }
        self.last += 1;
        let params = match &call.request.params {
            Value::Null => None,
            params => Some(params.to_string()),
        };
        let mut out = Vec::new();
        protocol::write_request(
            &mut out,
            Some(self.last),
            &call.request.method,
            params.as_deref().map(str::as_bytes),
        );
        self.waiting.insert(self.last, call.reply);
        // The writer only ever puts in valid UTF-8 (from `&str`s).
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// The downstream answered `id`: `false` when no call of ours is known
    /// by that id (one given up on counts as known: its answer is dropped).
    fn answer(&mut self, id: &Id, outcome: Result<String, ErrorObject>) -> bool {
        let Some(n) = id.as_u64().filter(|n| (1..=self.last).contains(n)) else {
            return false;
        };
        if let Some(reply) = self.waiting.remove(&n) {
            let outcome = outcome.and_then(|text| {
                RawValue::from_string(text).map_err(|err| {
                    ErrorObject::internal(format!("the client's result is not JSON: {err}"))
                })
            });
            // The upstream side may have given up meanwhile.
            let _ = reply.send(outcome);
        }
        true
    }
}

/// Why the writer stopped.
enum Stop {
    /// Asked to (the session is closing) or nothing more to write.
    Done,
    /// The socket would not take a message within the stall bound.
    Stalled,
    /// The socket is gone.
    Gone,
}

/// Runs a session: reads, forwards, and when it ends, cleans up everything
/// it holds.
async fn run_session(parts: SessionParts, ws: Session) {
    let SessionParts {
        mut drain,
        forward,
        origin,
        link,
        mut closing,
        mut stream,
        oversize,
        server_calls,
        slot,
    } = parts;
    let config = forward.proxy_config().clone();
    let (out, outgoing) = mpsc::channel::<Out>(config.outbound);
    let writer = actix_web::rt::spawn(write_session(
        ws,
        outgoing,
        closing.clone(),
        Arc::clone(&link),
        forward.clone(),
    ));
    let ctx = Rc::new(Ctx {
        forward: forward.clone(),
        origin,
        link: Arc::clone(&link),
        in_flight: Rc::new(Cell::new(0)),
        calls: RefCell::new(ServerCalls::default()),
    });
    let mut in_flight: FuturesUnordered<LocalBoxFuture<'static, Done>> = FuturesUnordered::new();
    // Any frame from the client shows it is there; silence past the
    // heartbeat's bound ends the session.
    let mut last_seen = tokio::time::Instant::now();
    let mut pings = config.heartbeat.map(|(interval, _)| {
        let mut pings = tokio::time::interval_at(last_seen + interval, interval);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pings
    });
    let mut server_calls = server_calls;
    let queue = Queue {
        out: &out,
        stall: config.outbound_stall,
        link: &link,
        metrics: forward.metrics(),
    };

    // Once draining, new requests are refused (see `Ctx::draining`; answers
    // to server requests are still taken, pings still answered); the
    // session closes when what is in flight has been answered.
    let mut draining: Option<(u16, String)> = None;

    // The loop ends with the close to send, if any is still to be sent.
    let end: Option<(u16, String)> = loop {
        if let Some(close) = draining.as_ref().filter(|_| in_flight.is_empty()) {
            break Some(close.clone());
        }
        tokio::select! {
            biased;
            _ = closing.changed() => break None,
            close = drain_asked(&mut drain), if draining.is_none() => {
                draining = Some(close);
            }
            message = stream.recv() => {
                last_seen = tokio::time::Instant::now();
                let text = match message {
                    None => break Some((1000, String::new())),
                    Some(Err(err)) => break Some(protocol_close(&err, oversize.get(), config.max_body)),
                    Some(Ok(AggregatedMessage::Text(text))) => text,
                    Some(Ok(AggregatedMessage::Binary(bytes))) => match bytestring::ByteString::try_from(bytes) {
                        Ok(text) => text,
                        Err(_) => {
                            bump(&forward.metrics().messages);
                            bump(&forward.metrics().invalid);
                            let error = ErrorObject::new(protocol::codes::PARSE_ERROR, "parse error: the message is not UTF-8");
                            if !queue.push(Out::Text(error_text(&Id::null(), &error)), &mut closing).await {
                                break None;
                            }
                            continue;
                        }
                    },
                    Some(Ok(AggregatedMessage::Ping(payload))) => {
                        if !queue.push(Out::Pong(payload), &mut closing).await {
                            break None;
                        }
                        continue;
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => continue,
                    Some(Ok(AggregatedMessage::Close(reason))) => {
                        // Echo the client's code, as RFC 6455 §5.5.1 asks.
                        let code = reason.map_or(1000, |r| u16::from(r.code));
                        let code = if crate::message::may_send_close_code(code) { code } else { 1000 };
                        break Some((code, String::new()));
                    }
                };
                match prepare(&ctx, &text) {
                    Prepared::Now(None) => {}
                    Prepared::Now(Some(answer)) => {
                        if !queue.push(Out::Text(answer), &mut closing).await {
                            break None;
                        }
                    }
                    Prepared::Later(work) => in_flight.push(work),
                }
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                if !queue.push(Out::Done(done), &mut closing).await {
                    break None;
                }
            }
            () = next_tick(&mut pings) => {
                if let Some((interval, timeout)) = config.heartbeat {
                    if last_seen.elapsed() > interval + timeout {
                        log::debug!("downstream session {} answered no ping; closing it", link.id);
                        break Some((1001, format!("nothing received for {:?}", last_seen.elapsed())));
                    }
                }
                if !queue.push(Out::Ping, &mut closing).await {
                    break None;
                }
            }
            Some(call) = next_call(&mut server_calls) => {
                bump(&forward.metrics().server_requests);
                if ctx.draining() {
                    let error = ErrorObject::new(codes::UPSTREAM_UNAVAILABLE, SHUTTING_DOWN);
                    // The upstream side may have given up meanwhile.
                    let _ = call.reply.send(Err(error));
                    continue;
                }
                let asked = ctx.calls.borrow_mut().ask(call);
                if let Some(text) = asked {
                    if !queue.push(Out::Text(text), &mut closing).await {
                        break None;
                    }
                }
            }
        }
    };
    if let Some((code, reason)) = end {
        let _ = link.close(code, &reason);
    }
    // Everything the session holds ends here: requests in flight are given
    // up, its subscriptions end, its server requests are answered with an
    // error (their senders drop), its own upstream closes.
    drop(in_flight);
    drop(server_calls);
    drop(out);
    forward.fanout().session_ended(link.id, forward.metrics());
    drop(ctx);
    if forward.is_session_forward() {
        for client in forward.upstreams().clients() {
            let client = client.clone();
            actix_web::rt::spawn(async move {
                let _ = tokio::time::timeout(CLOSE_WAIT * 5, client.close()).await;
            });
        }
    }
    let _ = writer.await;
    drop(slot);
}

/// The close every session is asked for (see [`Forward::close_websockets`]),
/// once it is asked; at once if it already was.
async fn drain_asked(drain: &mut watch::Receiver<Option<(u16, String)>>) -> (u16, String) {
    loop {
        if let Some(close) = drain.borrow_and_update().clone() {
            return close;
        }
        if drain.changed().await.is_err() {
            // No forward is left to ask (cannot happen while the session
            // holds one).
            std::future::pending::<()>().await;
        }
    }
}

async fn next_tick(pings: &mut Option<tokio::time::Interval>) {
    match pings {
        Some(pings) => {
            pings.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn next_call(calls: &mut Option<mpsc::Receiver<ServerCall>>) -> Option<ServerCall> {
    match calls {
        Some(incoming) => match incoming.recv().await {
            Some(call) => Some(call),
            None => {
                *calls = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

/// The reader's side of the outbound queue.
struct Queue<'a> {
    out: &'a mpsc::Sender<Out>,
    stall: Duration,
    link: &'a Arc<SessionLink>,
    metrics: &'a Metrics,
}

impl Queue<'_> {
    /// Queues `item`, waiting at most the stall bound for room; `false`
    /// when the session is to end (it did not read, or is closing).
    async fn push(&self, item: Out, closing: &mut watch::Receiver<Option<(u16, String)>>) -> bool {
        let item = match self.out.try_send(item) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(item)) => item,
        };
        tokio::select! {
            _ = closing.changed() => false,
            sent = tokio::time::timeout(self.stall, self.out.send(item)) => match sent {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false,
                Err(_) => {
                    slow(self.link, self.metrics);
                    false
                }
            },
        }
    }
}

/// Closes a session that does not read what is sent to it (counted once,
/// whichever side of it noticed first).
fn slow(link: &SessionLink, metrics: &Metrics) {
    if link.close(1008, "the client does not read what is sent to it") {
        bump(&metrics.slow_sessions);
    }
}

/// The close for a broken inbound stream: 1009 for a message over the
/// limit, 1007 for text that is not UTF-8, 1002 for a protocol violation.
fn protocol_close(err: &ProtocolError, oversize: Option<u64>, limit: usize) -> (u16, String) {
    if let Some(size) = oversize {
        return (
            1009,
            format!("a message of {size} bytes is over the limit of {limit}"),
        );
    }
    match err {
        ProtocolError::Overflow => (
            1009,
            format!("a message is over the limit of {limit} bytes"),
        ),
        // actix-ws's word for a text frame that is not UTF-8 (RFC 6455 §8.1).
        ProtocolError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            (1007, "a text message that is not UTF-8".to_owned())
        }
        ProtocolError::Io(_) => {
            log::debug!("a downstream websocket failed: {err}");
            (1002, "the websocket failed".to_owned())
        }
        other => (1002, crate::message::fit_close_reason(&other.to_string())),
    }
}

/// Writes everything the session sends: answers, passed-through server
/// requests, pongs and subscription notifications, and at last the close.
async fn write_session(
    mut ws: Session,
    mut outgoing: mpsc::Receiver<Out>,
    mut closing: watch::Receiver<Option<(u16, String)>>,
    link: Arc<SessionLink>,
    forward: Forward,
) {
    let metrics = forward.metrics();
    let stall = forward.proxy_config().outbound_stall;
    let mut feeds: SelectAll<Feed> = SelectAll::new();
    // Subscriptions whose notifications go out; one unsubscribed (or ended)
    // is removed at once, whatever is still queued for it.
    let mut active: HashSet<DownId> = HashSet::new();
    // The method of each subscription's last notification, for a lag told
    // at its end.
    let mut methods: HashMap<DownId, Arc<str>> = HashMap::new();

    let stop: Stop = 'run: loop {
        let mut texts: Vec<String> = Vec::new();
        let mut pong = None;
        let mut ping = false;
        tokio::select! {
            biased;
            _ = closing.changed() => break Stop::Done,
            out = outgoing.recv() => match out {
                None => break Stop::Done,
                Some(Out::Text(text)) => texts.push(text),
                Some(Out::Pong(payload)) => pong = Some(payload),
                Some(Out::Ping) => ping = true,
                Some(Out::Done(done)) => {
                    for id in &done.unsubscribed {
                        active.remove(id);
                        methods.remove(id);
                    }
                    texts.extend(done.text);
                    for feed in done.feeds {
                        active.insert(Arc::clone(&feed.id));
                        feeds.push(feed);
                    }
                }
            },
            Some((id, item)) = feeds.next(), if !feeds.is_empty() => match item {
                FeedItem::Event { missed, event } if active.contains(&id) => {
                    if missed > 0 {
                        bump(&metrics.subscription_notifications);
                        texts.push(render_lagged(event.method(), &id, missed));
                    }
                    methods.insert(Arc::clone(&id), Arc::clone(event.method()));
                    bump(&metrics.subscription_notifications);
                    texts.push(event.render(&id));
                }
                FeedItem::End { missed, end } if active.remove(&id) => {
                    let last = methods.remove(&id);
                    if missed > 0 {
                        if let Some(method) = last.as_ref().or(match &end { Some(FeedEnd::Error { method, .. }) => Some(method), _ => None }) {
                            bump(&metrics.subscription_notifications);
                            texts.push(render_lagged(method, &id, missed));
                        }
                    }
                    if let Some(FeedEnd::Error { method, error }) = end {
                        bump(&metrics.subscription_notifications);
                        texts.push(render_end(&method, &id, &error));
                    }
                }
                // Unsubscribed meanwhile: nothing more goes out for it.
                _ => {}
            },
        }
        if ping {
            match tokio::time::timeout(stall, ws.ping(b"")).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break 'run Stop::Gone,
                Err(_) => break 'run Stop::Stalled,
            }
        }
        if let Some(payload) = pong {
            match tokio::time::timeout(stall, ws.pong(&payload)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break 'run Stop::Gone,
                Err(_) => break 'run Stop::Stalled,
            }
        }
        for text in texts {
            match tokio::time::timeout(stall, ws.text(text)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break 'run Stop::Gone,
                Err(_) => break 'run Stop::Stalled,
            }
        }
    };
    if let Stop::Done = stop {
        // What the reader queued before the close (the answers a graceful
        // close waited for) goes first, within the stall bound in all.
        let flush = async {
            while let Ok(out) = outgoing.try_recv() {
                let text = match out {
                    Out::Text(text) => Some(text),
                    Out::Done(done) => done.text,
                    Out::Ping | Out::Pong(_) => None,
                };
                if let Some(text) = text {
                    if ws.text(text).await.is_err() {
                        return;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(stall, flush).await;
    }
    match stop {
        Stop::Done => {}
        Stop::Gone => {
            let _ = link.close(1000, "");
        }
        Stop::Stalled => slow(&link, metrics),
    }
    let (code, reason) = closing.borrow().clone().unwrap_or((1000, String::new()));
    let close = CloseReason {
        code: CloseCode::from(code),
        description: (!reason.is_empty()).then_some(reason),
    };
    // NOTE: a socket that stopped reading may never take the close frame:
    // bounded, and the session's memory is freed either way.
    let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(Some(close))).await;
}
