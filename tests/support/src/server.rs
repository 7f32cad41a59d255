//! [`TestServer`]: a scriptable JSON-RPC websocket peer built on actix-web 4 + actix-ws 0.4.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Item, Session};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::thread::{panic_message, ServerThread};
use crate::Watched;

type Handler = dyn Fn(&Value) -> Action + Send + Sync + 'static;

/// What the server does in answer to one inbound message (or when broadcast with
/// [`TestServer::broadcast`]).
#[derive(Debug, Clone)]
pub enum Action {
    /// Stay silent.
    Nothing,
    /// One text frame holding the compact JSON.
    Reply(Value),
    /// One text frame with exactly this text (e.g. garbage).
    ReplyText(String),
    /// One binary frame holding the compact JSON.
    ReplyBinary(Value),
    /// The compact JSON text split into frames of at most N bytes: a non-final text frame, then
    /// continuation frames, the last one final. (A JSON shorter than N still gives two frames: all
    /// of it, then an empty final continuation.)
    ReplyFragmented(Value, usize),
    /// Performs the action after the delay, without blocking other messages of the connection
    /// (once due, it waits its turn behind what the connection is sending: never between the
    /// frames of a fragmented message).
    Delay(Duration, Box<Action>),
    /// Performs the actions in order.
    Many(Vec<Action>),
    /// Sends a close frame with this code and reason, then ends the connection.
    Close(u16, String),
    /// Ends the TCP connection abruptly, without a close frame (already queued frames are flushed
    /// first).
    Drop,
    /// Sends a ping with this payload (truncated to 125 bytes); pongs are in [`TestServer::pongs`].
    Ping(Vec<u8>),
}

/// The largest frame and message the server accepts; bigger ones close with 1009.
const MAX_FRAME_SIZE: usize = 64 * 1024 * 1024;

/// Shared between the test thread, the handshake handler and the connection tasks.
struct State {
    received: Vec<Value>,
    handshakes: Vec<Vec<(String, String)>>,
    attempts: Vec<Vec<(String, String)>>,
    pongs: Vec<Vec<u8>>,
    client_closes: Vec<Option<(u16, String)>>,
    conns: HashMap<u64, mpsc::UnboundedSender<Action>>,
    next_conn: u64,
    panics: Vec<String>,
}

struct Inner {
    watched: Watched<State>,
    handler: Box<Handler>,
    required_headers: Vec<(String, String)>,
    reject_with: Option<u16>,
    record_received: bool,
}

/// Builder for [`TestServer`] options.
#[derive(Debug, Clone)]
pub struct TestServerBuilder {
    required_headers: Vec<(String, String)>,
    reject_with: Option<u16>,
    record_received: bool,
}

impl Default for TestServerBuilder {
    fn default() -> Self {
        TestServerBuilder {
            required_headers: Vec::new(),
            reject_with: None,
            record_received: true,
        }
    }
}

impl TestServerBuilder {
    /// Rejects handshakes lacking this exact header value with HTTP 401 (may be repeated; all
    /// must match). The name is case-insensitive, the value is compared exactly.
    pub fn require_header(mut self, name: &str, value: &str) -> Self {
        self.required_headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Rejects every handshake with this HTTP status (e.g. 401, 403, 500).
    pub fn reject_with(mut self, status: u16) -> Self {
        self.reject_with = Some(status);
        self
    }

    /// Whether every inbound message is kept for [`TestServer::received`] (the default). A
    /// long-running server (the soak example) turns it off, or that list grows with every
    /// message; `received()` then stays empty and `wait_received` times out.
    pub fn record_received(mut self, on: bool) -> Self {
        self.record_received = on;
        self
    }

    /// Starts the server on 127.0.0.1:0 in its own thread (own actix `System`).
    pub fn start<F>(self, handler: F) -> TestServer
    where
        F: Fn(&Value) -> Action + Send + Sync + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("TestServer: binding 127.0.0.1:0 failed");
        self.start_on(listener, handler)
    }

    /// Like [`start`](Self::start), on this address: e.g. the port of a server dropped a moment
    /// ago, for "the server restarts on the same port".
    ///
    /// `std`'s `TcpListener::bind` sets `SO_REUSEADDR` on Unix, so connections of the previous
    /// server lingering in `TIME_WAIT` do not block the port, and a dropped `TestServer` has
    /// closed its listener (actix-server joins its acceptor thread before the server's thread
    /// ends): binding normally succeeds at once. Should the address still be in use (a previous
    /// server leaked at its shutdown timeout, or the port briefly taken as the local port of an
    /// outgoing connection), binding is retried for up to [`REBIND_TIMEOUT`], blocking the
    /// calling thread; then this panics.
    pub fn start_at<F>(self, addr: SocketAddr, handler: F) -> TestServer
    where
        F: Fn(&Value) -> Action + Send + Sync + 'static,
    {
        self.start_on(bind_retrying(addr), handler)
    }

    fn start_on<F>(self, listener: std::net::TcpListener, handler: F) -> TestServer
    where
        F: Fn(&Value) -> Action + Send + Sync + 'static,
    {
        let inner = Arc::new(Inner {
            watched: Watched::new(State {
                received: Vec::new(),
                handshakes: Vec::new(),
                attempts: Vec::new(),
                pongs: Vec::new(),
                client_closes: Vec::new(),
                conns: HashMap::new(),
                next_conn: 0,
                panics: Vec::new(),
            }),
            handler: Box::new(handler),
            required_headers: self.required_headers,
            reject_with: self.reject_with,
            record_received: self.record_received,
        });

        let addr = listener
            .local_addr()
            .expect("TestServer: local_addr of listener failed");

        let app_inner = inner.clone();
        let (thread, handle) =
            ServerThread::spawn(format!("test-server-{}", addr.port()), move |ready| {
                let system = actix_rt::System::new();
                let result = system.block_on(async move {
                    let data = web::Data::from(app_inner);
                    let server = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .default_service(web::to(handshake))
                    })
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .listen(listener)?
                    .run();
                    let _ = ready.send(server.handle());
                    server.await
                });
                result.expect("TestServer: actix HttpServer failed");
            });
        TestServer {
            addr,
            inner,
            handle,
            thread,
        }
    }
}

/// How long [`TestServerBuilder::start_at`] retries binding an address still in use.
pub const REBIND_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr`, retrying (bounded by [`REBIND_TIMEOUT`]) while it is still in use.
fn bind_retrying(addr: SocketAddr) -> std::net::TcpListener {
    let deadline = Instant::now() + REBIND_TIMEOUT;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => return listener,
            Err(err) if err.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                log::debug!("TestServer: {addr} still in use (attempt {attempts}), retrying");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => {
                panic!("TestServer: binding {addr} failed after {attempts} attempt(s): {err}")
            }
        }
    }
}

/// A JSON-RPC websocket peer (actix-web + actix-ws) whose answers are decided by a handler.
///
/// Accepts websocket handshakes on any path. Answers pings with pongs, records pongs, replies to
/// a client's close with a close. Dropping it stops the server (open connections are dropped),
/// joins its thread (bounded) and re-raises any panic of the handler or server thread.
pub struct TestServer {
    addr: std::net::SocketAddr,
    inner: Arc<Inner>,
    handle: actix_web::dev::ServerHandle,
    thread: ServerThread,
}

impl TestServer {
    /// Starts a server whose replies are decided by `handler` for every inbound text/binary
    /// message (parsed as JSON; unparseable input is recorded and passed as `Value::String(raw)`).
    pub fn start<F>(handler: F) -> TestServer
    where
        F: Fn(&Value) -> Action + Send + Sync + 'static,
    {
        TestServerBuilder::default().start(handler)
    }

    /// Like [`start`](Self::start), on this address (see [`TestServerBuilder::start_at`]).
    pub fn start_at<F>(addr: SocketAddr, handler: F) -> TestServer
    where
        F: Fn(&Value) -> Action + Send + Sync + 'static,
    {
        TestServerBuilder::default().start_at(addr, handler)
    }

    /// Builder for options.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// `ws://127.0.0.1:PORT/ws` (any path is accepted).
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Every message received so far, in order, across all connections.
    pub fn received(&self) -> Vec<Value> {
        self.inner.watched.lock().received.clone()
    }

    /// Blocks the calling thread until at least `n` messages were received; returns them all.
    /// Panics on timeout.
    ///
    /// Do not use this from a single-threaded runtime while the message still has to be written
    /// by a task of that same runtime (it would block that task): use
    /// [`wait_received_async`](Self::wait_received_async) there.
    pub fn wait_received(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.inner
            .watched
            .wait_blocking(timeout, |s| {
                (s.received.len() >= n).then(|| s.received.clone())
            })
            .unwrap_or_else(|| self.timeout_received(n, timeout))
    }

    /// Async version of [`wait_received`](Self::wait_received) (needs a tokio/actix runtime).
    pub async fn wait_received_async(&self, n: usize, timeout: Duration) -> Vec<Value> {
        match self
            .inner
            .watched
            .wait_async(timeout, |s| {
                (s.received.len() >= n).then(|| s.received.clone())
            })
            .await
        {
            Some(v) => v,
            None => self.timeout_received(n, timeout),
        }
    }

    fn timeout_received(&self, n: usize, timeout: Duration) -> ! {
        let got = self.received();
        panic!(
            "TestServer: timed out after {timeout:?} waiting for {n} received message(s); got {}: {got:?}",
            got.len()
        )
    }

    /// Request headers of each accepted websocket handshake, in order: (lowercased name, value).
    pub fn handshakes(&self) -> Vec<Vec<(String, String)>> {
        self.inner.watched.lock().handshakes.clone()
    }

    /// Request headers of every HTTP request that reached the server, accepted or rejected.
    pub fn handshake_attempts(&self) -> Vec<Vec<(String, String)>> {
        self.inner.watched.lock().attempts.clone()
    }

    /// Payloads of the pongs received so far, in order.
    pub fn pongs(&self) -> Vec<Vec<u8>> {
        self.inner.watched.lock().pongs.clone()
    }

    /// Waits (async, bounded) until at least `n` pongs were received; returns them. Panics on
    /// timeout.
    pub async fn wait_pongs_async(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        self.inner
            .watched
            .wait_async(timeout, |s| (s.pongs.len() >= n).then(|| s.pongs.clone()))
            .await
            .unwrap_or_else(|| {
                panic!("TestServer: timed out after {timeout:?} waiting for {n} pong(s)")
            })
    }

    /// Close frames received from clients, in order: `Some((code, reason))`, or `None` for a
    /// close frame without payload.
    pub fn client_closes(&self) -> Vec<Option<(u16, String)>> {
        self.inner.watched.lock().client_closes.clone()
    }

    /// Waits (async, bounded) until at least `n` client close frames were received; returns
    /// them. Panics on timeout.
    pub async fn wait_client_closes_async(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Vec<Option<(u16, String)>> {
        self.inner
            .watched
            .wait_async(timeout, |s| {
                (s.client_closes.len() >= n).then(|| s.client_closes.clone())
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "TestServer: timed out after {timeout:?} waiting for {n} client close frame(s)"
                )
            })
    }

    /// Sends an unsolicited text message (compact JSON) to every currently connected client.
    pub fn push(&self, msg: Value) {
        self.broadcast(Action::Reply(msg));
    }

    /// Like [`push`](Self::push), raw text.
    pub fn push_text(&self, text: &str) {
        self.broadcast(Action::ReplyText(text.to_owned()));
    }

    /// Performs `action` on every currently connected client (e.g. `Action::Close(..)`,
    /// `Action::Drop`, `Action::Ping(..)`). Queued in order with replies of the connection.
    pub fn broadcast(&self, action: Action) {
        let state = self.inner.watched.lock();
        for tx in state.conns.values() {
            let _ = tx.send(action.clone());
        }
    }

    /// Number of currently open websocket connections.
    pub fn connections(&self) -> usize {
        self.inner.watched.lock().conns.len()
    }

    /// Waits (async, bounded) until `connections() == n`. Panics on timeout.
    pub async fn wait_connections_async(&self, n: usize, timeout: Duration) {
        if self
            .inner
            .watched
            .wait_async(timeout, |s| (s.conns.len() == n).then_some(()))
            .await
            .is_none()
        {
            panic!(
                "TestServer: timed out after {timeout:?} waiting for {n} connection(s); have {}",
                self.connections()
            );
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Sends the stop command right away; the returned future only awaits completion.
        drop(self.handle.stop(false));
        self.thread.join();
        let panics = std::mem::take(&mut self.inner.watched.lock().panics);
        self.thread.raise_recorded(panics);
    }
}

fn header_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// HTTP entry point for every path: checks options, upgrades, registers the connection.
async fn handshake(req: HttpRequest, body: web::Payload, inner: web::Data<Inner>) -> HttpResponse {
    let inner = inner.into_inner();
    let headers = header_pairs(&req);
    inner.watched.update(|s| s.attempts.push(headers.clone()));

    if let Some(status) = inner.reject_with {
        let status = StatusCode::from_u16(status).expect("TestServer: invalid reject_with status");
        return HttpResponse::build(status).body("rejected by TestServer::reject_with");
    }
    for (name, value) in &inner.required_headers {
        if req.headers().get(name.as_str()).map(|v| v.as_bytes()) != Some(value.as_bytes()) {
            return HttpResponse::Unauthorized().body(format!("missing or wrong header {name}"));
        }
    }

    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(err) => return HttpResponse::from_error(err),
    };
    let stream = stream
        .max_frame_size(MAX_FRAME_SIZE)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_SIZE);

    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    // Registered before the 101 goes out, so a client that sees the handshake complete also
    // sees `connections()` include it and receives `push`es.
    let id = inner.watched.update(|s| {
        let id = s.next_conn;
        s.next_conn += 1;
        s.conns.insert(id, cmd_tx.clone());
        s.handshakes.push(headers);
        id
    });

    let (abort_tx, abort_rx) = oneshot::channel();
    let conn = Conn {
        session,
        later: cmd_tx.clone(),
        abort: Arc::new(Mutex::new(Some(abort_tx))),
        closed: Arc::new(AtomicBool::new(false)),
    };
    actix_web::rt::spawn(run_connection(inner, id, conn, stream, cmd_rx));

    response
        .map_body(|_, body| AbortableBody {
            inner: body,
            abort: Some(abort_rx),
            aborting: false,
        })
        .map_into_boxed_body()
}

/// Handles of one connection, cloned into delayed actions.
#[derive(Clone)]
struct Conn {
    session: Session,
    /// The connection's command queue: a delayed action, once due, is performed by the
    /// connection's own task, in turn with everything else it sends.
    later: mpsc::UnboundedSender<Action>,
    abort: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    /// Set once a close frame was sent or the connection was dropped: nothing more is sent.
    closed: Arc<AtomicBool>,
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    async fn close(&self, code: u16, reason: Option<String>) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            let _ = self
                .session
                .clone()
                .close(Some(CloseReason {
                    code: CloseCode::from(code),
                    description: reason,
                }))
                .await;
        }
    }

    fn drop_connection(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(tx) = self.abort.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
    }
}

/// Removes the connection from the registry when the connection task ends or is dropped.
struct Registration {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner.watched.update(|s| s.conns.remove(&self.id));
    }
}

async fn run_connection(
    inner: Arc<Inner>,
    id: u64,
    conn: Conn,
    mut stream: actix_ws::AggregatedMessageStream,
    mut cmd_rx: mpsc::UnboundedReceiver<Action>,
) {
    let _registration = Registration {
        inner: inner.clone(),
        id,
    };
    let mut cmds_open = true;
    loop {
        tokio::select! {
            cmd = cmd_rx.recv(), if cmds_open => match cmd {
                Some(action) => perform(action, conn.clone()).await,
                None => cmds_open = false,
            },
            msg = stream.recv() => match msg {
                None => break,
                Some(Err(err)) => {
                    log::debug!("TestServer: websocket protocol error: {err}");
                    let too_big = matches!(err, actix_ws::ProtocolError::Overflow)
                        || err.to_string().contains("maximum continuation size");
                    let code = if too_big { 1009 } else { 1002 };
                    conn.close(code, Some(err.to_string())).await;
                    break;
                }
                Some(Ok(msg)) => handle_message(&inner, &conn, msg).await,
            },
        }
    }
}

async fn handle_message(inner: &Arc<Inner>, conn: &Conn, msg: AggregatedMessage) {
    let value = match msg {
        AggregatedMessage::Text(text) => parse_lenient(text.as_bytes()),
        AggregatedMessage::Binary(bytes) => parse_lenient(&bytes),
        AggregatedMessage::Ping(payload) => {
            if !conn.is_closed() {
                let _ = conn.session.clone().pong(&payload).await;
            }
            return;
        }
        AggregatedMessage::Pong(payload) => {
            inner.watched.update(|s| s.pongs.push(payload.to_vec()));
            return;
        }
        AggregatedMessage::Close(reason) => {
            let recorded = reason
                .as_ref()
                .map(|r| (u16::from(r.code), r.description.clone().unwrap_or_default()));
            inner.watched.update(|s| s.client_closes.push(recorded));
            let (code, description) = match reason {
                Some(r) => (u16::from(r.code), r.description),
                None => (1000, None),
            };
            conn.close(code, description).await;
            return;
        }
    };
    if inner.record_received {
        inner.watched.update(|s| s.received.push(value.clone()));
    }
    if conn.is_closed() {
        return;
    }
    let action = std::panic::catch_unwind(AssertUnwindSafe(|| (inner.handler)(&value)));
    match action {
        Ok(action) => perform(action, conn.clone()).await,
        Err(payload) => {
            let msg = format!(
                "handler panicked on {value}: {}",
                panic_message(payload.as_ref())
            );
            inner.watched.update(|s| s.panics.push(msg));
            conn.drop_connection();
        }
    }
}

fn parse_lenient(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Performs one action; send errors (connection gone) are ignored.
fn perform(action: Action, conn: Conn) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(async move {
        if conn.is_closed() {
            return;
        }
        let mut session = conn.session.clone();
        match action {
            Action::Nothing => {}
            Action::Reply(v) => {
                let _ = session.text(v.to_string()).await;
            }
            Action::ReplyText(t) => {
                let _ = session.text(t).await;
            }
            Action::ReplyBinary(v) => {
                let _ = session.binary(v.to_string().into_bytes()).await;
            }
            Action::ReplyFragmented(v, chunk) => {
                let bytes = Bytes::from(v.to_string().into_bytes());
                let chunk = chunk.max(1);
                let mut parts: Vec<Bytes> = (0..bytes.len())
                    .step_by(chunk)
                    .map(|i| bytes.slice(i..(i + chunk).min(bytes.len())))
                    .collect();
                if parts.len() < 2 {
                    parts.push(Bytes::new());
                }
                let last = parts.len() - 1;
                for (i, part) in parts.into_iter().enumerate() {
                    let item = if i == 0 {
                        Item::FirstText(part)
                    } else if i == last {
                        Item::Last(part)
                    } else {
                        Item::Continue(part)
                    };
                    if session.continuation(item).await.is_err() {
                        break;
                    }
                }
            }
            Action::Delay(delay, action) => {
                let later = conn.later.clone();
                actix_web::rt::spawn(async move {
                    actix_web::rt::time::sleep(delay).await;
                    // Not performed here: a message sent from this task could fall between
                    // the frames of a fragmented one the connection is sending (RFC 6455
                    // §5.4 forbids it). A connection that has ended is gone from the queue.
                    let _ = later.send(*action);
                });
            }
            Action::Many(actions) => {
                for action in actions {
                    perform(action, conn.clone()).await;
                }
            }
            Action::Close(code, reason) => conn.close(code, Some(reason)).await,
            Action::Drop => conn.drop_connection(),
            Action::Ping(payload) => {
                let _ = session.ping(&payload).await;
            }
        }
    })
}

/// Response body wrapper that can abort the HTTP connection (the h1 dispatcher drops the socket
/// when the body stream errors). On abort it first yields `Pending` once (self-woken) so already
/// encoded frames get flushed, then errors.
struct AbortableBody {
    inner: BoxBody,
    abort: Option<oneshot::Receiver<()>>,
    aborting: bool,
}

impl MessageBody for AbortableBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if this.aborting {
            return Poll::Ready(Some(Err(
                "connection dropped by TestServer (Action::Drop)".into()
            )));
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => {}
            other => return other,
        }
        if let Some(rx) = this.abort.as_mut() {
            match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(())) => {
                    this.aborting = true;
                    this.abort = None;
                    cx.waker().wake_by_ref();
                }
                Poll::Ready(Err(_)) => this.abort = None,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

// ---------------------------------------------------------------------------------------------
// The standard handler.

/// `{"jsonrpc":"2.0","id":id,"result":result}`.
pub fn response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// `{"jsonrpc":"2.0","id":id,"error":{"code":code,"message":message[,"data":data]}}`.
fn error_response(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

/// A handler covering the methods most tests need:
///
/// * requests (object with `"method"` and `"id"`):
///   - `echo`: result = params (null if absent)
///   - `add`: sum of a positional numeric array (integer if all are integers)
///   - `sleep`: params `{"ms": N}` or `[N]`: result `"slept"` after N ms
///   - `error`: error `{"code": -32000, "message": "boom", "data": {"detail": "x"}}`; if params
///     is an object, code/message/data come from it (defaults -32000 / "boom" / no data)
///   - `silent`: no reply; `drop`: drops the TCP connection; `close`: close frame with
///     params.code (4000) and params.reason ("bye")
///   - `binary`: result = params in a binary frame; `fragmented`: result = params as
///     continuation frames of 7 bytes
///   - `big`: result = a string of params.bytes (or `params[0]`) `'x'`s
///   - `garbage_then_echo`: `{not json`, then a response for unknown id 99999, then
///     result = params
///   - anything else: error -32601 "Method not found: NAME" with data `{"method": NAME}`
/// * notifications (no `"id"`) and responses (no `"method"`): nothing
/// * batches (arrays): one text frame with the responses to the elements having an id (delays
///   of `sleep` are honoured as the longest of them; connection-level actions are ignored);
///   empty array: error -32600 with id null; nothing if no element had an id
/// * unparseable input (`Value::String`): error -32700 with id null; other non-objects: -32600
pub fn standard(msg: &Value) -> Action {
    match msg {
        Value::Array(items) if items.is_empty() => Action::Reply(error_response(
            &Value::Null,
            -32600,
            "Invalid Request",
            None,
        )),
        Value::Array(items) => {
            let mut delay = Duration::ZERO;
            let mut replies = Vec::new();
            for item in items {
                if item.is_object() && item.get("id").is_none() {
                    continue;
                }
                if let Some(reply) = final_reply(standard(item), &mut delay) {
                    replies.push(reply);
                }
            }
            if replies.is_empty() {
                Action::Nothing
            } else if delay.is_zero() {
                Action::Reply(Value::Array(replies))
            } else {
                Action::Delay(delay, Box::new(Action::Reply(Value::Array(replies))))
            }
        }
        Value::Object(obj) => {
            let (Some(method), Some(id)) = (obj.get("method"), obj.get("id")) else {
                return Action::Nothing; // notification or response to a server request
            };
            let Some(method) = method.as_str() else {
                return Action::Reply(error_response(id, -32600, "Invalid Request", None));
            };
            standard_request(id, method, obj.get("params"))
        }
        Value::String(_) => {
            Action::Reply(error_response(&Value::Null, -32700, "Parse error", None))
        }
        _ => Action::Reply(error_response(
            &Value::Null,
            -32600,
            "Invalid Request",
            None,
        )),
    }
}

/// The reply value an action would send last (for batch assembly), accumulating delays.
fn final_reply(action: Action, delay: &mut Duration) -> Option<Value> {
    match action {
        Action::Reply(v) | Action::ReplyBinary(v) | Action::ReplyFragmented(v, _) => Some(v),
        Action::Delay(d, inner) => {
            let reply = final_reply(*inner, delay);
            if reply.is_some() {
                *delay = (*delay).max(d);
            }
            reply
        }
        Action::Many(actions) => actions
            .into_iter()
            .filter_map(|a| final_reply(a, delay))
            .last(),
        _ => None,
    }
}

fn standard_request(id: &Value, method: &str, params: Option<&Value>) -> Action {
    let params_or_null = params.cloned().unwrap_or(Value::Null);
    let first_or_field = |field: &str| -> Option<u64> {
        match params {
            Some(Value::Object(o)) => o.get(field).and_then(Value::as_u64),
            Some(Value::Array(a)) => a.first().and_then(Value::as_u64),
            _ => None,
        }
    };
    let invalid_params = |what: &str| {
        Action::Reply(error_response(
            id,
            -32602,
            &format!("Invalid params: {what}"),
            None,
        ))
    };
    match method {
        "echo" => Action::Reply(response(id, params_or_null)),
        "add" => {
            let Some(Value::Array(items)) = params else {
                return invalid_params("add expects an array of numbers");
            };
            if items.iter().all(|v| v.is_i64()) {
                let sum: i64 = items.iter().filter_map(Value::as_i64).sum();
                Action::Reply(response(id, json!(sum)))
            } else if items.iter().all(Value::is_number) {
                let sum: f64 = items.iter().filter_map(Value::as_f64).sum();
                Action::Reply(response(id, json!(sum)))
            } else {
                invalid_params("add expects an array of numbers")
            }
        }
        "sleep" => match first_or_field("ms") {
            Some(ms) => Action::Delay(
                Duration::from_millis(ms),
                Box::new(Action::Reply(response(id, json!("slept")))),
            ),
            None => invalid_params("sleep expects {\"ms\": N} or [N]"),
        },
        "error" => match params {
            Some(Value::Object(o)) => Action::Reply(error_response(
                id,
                o.get("code").and_then(Value::as_i64).unwrap_or(-32000),
                o.get("message").and_then(Value::as_str).unwrap_or("boom"),
                o.get("data").cloned(),
            )),
            _ => Action::Reply(error_response(
                id,
                -32000,
                "boom",
                Some(json!({"detail": "x"})),
            )),
        },
        "silent" => Action::Nothing,
        "drop" => Action::Drop,
        "close" => {
            let obj = params.and_then(Value::as_object);
            let code = obj
                .and_then(|o| o.get("code"))
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(4000);
            let reason = obj
                .and_then(|o| o.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("bye");
            Action::Close(code, reason.to_owned())
        }
        "binary" => Action::ReplyBinary(response(id, params_or_null)),
        "fragmented" => Action::ReplyFragmented(response(id, params_or_null), 7),
        "big" => match first_or_field("bytes") {
            Some(n) => Action::Reply(response(id, Value::String("x".repeat(n as usize)))),
            None => invalid_params("big expects {\"bytes\": N} or [N]"),
        },
        "garbage_then_echo" => Action::Many(vec![
            Action::ReplyText("{not json".to_owned()),
            Action::Reply(response(&json!(99999), json!("unknown id"))),
            Action::Reply(response(id, params_or_null)),
        ]),
        other => Action::Reply(error_response(
            id,
            -32601,
            &format!("Method not found: {other}"),
            Some(json!({"method": other})),
        )),
    }
}
