//! The in-process servers: the jsonrpsee WebSocket server every client talks
//! to, a small raw tokio-tungstenite server for `server_request` that sends
//! JSON-RPC requests to its clients, the notification sink of `notify`, and
//! the lean server of `sub_ticks_lean` and `batch100_lean`.
//!
//! All run on one dedicated thread with a multi-thread tokio runtime of ONE
//! worker: the machine has 2 cores, the client under test runs on its own
//! thread (one core), and a single server worker keeps the server on the other
//! core instead of letting it steal the client's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use futures_util::{FutureExt, SinkExt, StreamExt};
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::server::middleware::rpc::{
    Batch, Notification, Request, RpcServiceBuilder, RpcServiceT,
};
use jsonrpsee::server::{RpcModule, Server, ServerConfig, ServerHandle};
use jsonrpsee::types::{ErrorCode, ErrorObjectOwned};
use jsonrpsee::SubscriptionMessage;
use serde_json::value::RawValue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Size of the `blob` result and the `upload` param: 1 MiB.
pub const BLOB_LEN: usize = 1024 * 1024;
/// Max request/response size on every side.
pub const MAX_MESSAGE: u32 = 32 * 1024 * 1024;
/// Requests the raw server keeps outstanding per connection in `server_request`.
pub const SERVER_REQUEST_WINDOW: u64 = 16;

/// A 1 MiB string of printable ASCII that needs no JSON escaping.
pub fn blob_string() -> String {
    (0..BLOB_LEN)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect()
}

/// State shared between the jsonrpsee server and the benchmark driver.
pub struct RpcState {
    /// `note` notifications received (counted by the middleware).
    notes: AtomicU64,
    /// `hold` calls that arrived since the last [`RpcState::reset_hold`].
    held: AtomicU64,
    /// `true` releases every waiting `hold` call.
    release: watch::Sender<bool>,
}

impl RpcState {
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// Before a memory run: new `hold` calls wait again, arrivals count from 0.
    pub fn reset_hold(&self) {
        self.release.send_replace(false);
        self.held.store(0, Ordering::Release);
    }

    /// Answer every waiting `hold` call (and later ones, until the next reset).
    pub fn release_hold(&self) {
        self.release.send_replace(true);
    }
}

/// One `server_request` run: what the raw server does on the next connection.
pub struct Job {
    /// Untimed requests first.
    pub warmup: u64,
    /// Then this many timed requests (fewer if `limit` passes first).
    pub count: u64,
    pub limit: Duration,
    pub done: oneshot::Sender<Result<JobResult, String>>,
}

#[derive(Debug)]
pub struct JobResult {
    pub completed: u64,
    pub elapsed: Duration,
    pub by_time: bool,
}

#[derive(Default)]
pub struct ServerRequestState {
    job: Mutex<Option<Job>>,
}

impl ServerRequestState {
    /// Queue the job for the next connection to the raw server.
    fn submit(&self, job: Job) {
        *self.job.lock().unwrap() = Some(job);
    }

    /// Queues a job of `count` timed requests after `warmup` untimed ones;
    /// the receiver gets the server's tally.
    pub fn start(
        &self,
        warmup: u64,
        count: u64,
        limit: Duration,
    ) -> oneshot::Receiver<Result<JobResult, String>> {
        let (done, result) = oneshot::channel();
        self.submit(Job {
            warmup,
            count,
            limit,
            done,
        });
        result
    }
}

pub struct Servers {
    /// ws:// URL of the jsonrpsee server.
    pub rpc_url: String,
    /// ws:// URL of the raw server-request server.
    pub sreq_url: String,
    /// ws:// URL of the notification sink.
    pub sink_url: String,
    /// ws:// URL of the lean server.
    pub lean_url: String,
    pub rpc: Arc<RpcState>,
    pub sreq: Arc<ServerRequestState>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where each server listens.
struct Addrs {
    rpc: SocketAddr,
    sreq: SocketAddr,
    sink: SocketAddr,
    lean: SocketAddr,
}

/// Start the servers on their own thread and runtime.
pub fn start() -> Result<Servers> {
    let (release, _) = watch::channel(false);
    let rpc = Arc::new(RpcState {
        notes: AtomicU64::new(0),
        held: AtomicU64::new(0),
        release,
    });
    let sreq = Arc::new(ServerRequestState::default());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<Result<Addrs>>();

    let (rpc2, sreq2) = (rpc.clone(), sreq.clone());
    let thread = std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("bench-server-worker")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = addr_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let started = async {
                    let (rpc, handle) = start_rpc(rpc2).await?;
                    let addrs = Addrs {
                        rpc,
                        sreq: start_sreq(sreq2).await?,
                        sink: start_sink().await?,
                        lean: start_lean().await?,
                    };
                    Ok::<_, anyhow::Error>((addrs, handle))
                };
                let handle = match started.await {
                    Ok((addrs, handle)) => {
                        let _ = addr_tx.send(Ok(addrs));
                        handle
                    }
                    Err(e) => {
                        let _ = addr_tx.send(Err(e));
                        return;
                    }
                };
                let _ = stop_rx.await;
                let _ = handle.stop();
                let _ = tokio::time::timeout(Duration::from_secs(2), handle.stopped()).await;
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        })?;

    let addrs = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .context("server thread did not start")??;
    Ok(Servers {
        rpc_url: format!("ws://{}", addrs.rpc),
        sreq_url: format!("ws://{}", addrs.sreq),
        sink_url: format!("ws://{}", addrs.sink),
        lean_url: format!("ws://{}", addrs.lean),
        rpc,
        sreq,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Counts `note` notifications, which jsonrpsee's own service ignores (it
/// drops notifications without calling a handler), then passes everything on.
#[derive(Clone)]
struct NoteCounter<S> {
    inner: S,
    state: Arc<RpcState>,
}

impl<S> RpcServiceT for NoteCounter<S>
where
    S: RpcServiceT + Clone + Send + Sync + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(
        &self,
        req: Request<'a>,
    ) -> impl std::future::Future<Output = Self::MethodResponse> + Send + 'a {
        self.inner.call(req)
    }

    fn batch<'a>(
        &self,
        batch: Batch<'a>,
    ) -> impl std::future::Future<Output = Self::BatchResponse> + Send + 'a {
        self.inner.batch(batch)
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl std::future::Future<Output = Self::NotificationResponse> + Send + 'a {
        if n.method == "note" {
            self.state.notes.fetch_add(1, Ordering::AcqRel);
        }
        self.inner.notification(n)
    }
}

async fn start_rpc(state: Arc<RpcState>) -> Result<(SocketAddr, ServerHandle)> {
    let config = ServerConfig::builder()
        .ws_only()
        .max_request_body_size(MAX_MESSAGE)
        .max_response_body_size(MAX_MESSAGE)
        .max_connections(20_000)
        // Responses queued per connection before the server backs off; the
        // memory scenario releases 10,000 held calls at once.
        .set_message_buffer_capacity(16_384)
        .set_tcp_no_delay(true)
        .build();
    let counter_state = state.clone();
    let middleware = RpcServiceBuilder::new().layer_fn(move |inner| NoteCounter {
        inner,
        state: counter_state.clone(),
    });
    let server = Server::builder()
        .set_config(config)
        .set_rpc_middleware(middleware)
        .build("127.0.0.1:0")
        .await?;
    let addr = server.local_addr()?;

    let blob: Arc<Box<RawValue>> = Arc::new(RawValue::from_string(serde_json::to_string(
        &blob_string(),
    )?)?);
    let mut module = RpcModule::from_arc(state);
    // Params come back as they were sent, without being parsed into a tree.
    module.register_method("echo", |params, _, _| {
        RawValue::from_string(params.as_str().unwrap_or("null").to_owned())
            .map_err(|_| ErrorObjectOwned::from(ErrorCode::ParseError))
    })?;
    module.register_method("blob", move |_, _, _| {
        Ok::<Box<RawValue>, ErrorObjectOwned>((*blob).clone())
    })?;
    module.register_method("upload", |params, _, _| {
        let (data,): (String,) = params.parse()?;
        Ok::<usize, ErrorObjectOwned>(data.len())
    })?;
    module.register_method("count", |_, state: &RpcState, _| {
        state.notes.load(Ordering::Acquire)
    })?;
    module.register_async_method("hold", |_, state: Arc<RpcState>, _| async move {
        let mut released = state.release.subscribe();
        state.held.fetch_add(1, Ordering::AcqRel);
        // Bounded: a held call never outlives 120 s.
        let _ = tokio::time::timeout(
            Duration::from_secs(120),
            released.wait_for(|released| *released),
        )
        .await;
        0u64
    })?;
    // `sub_ticks`: n notifications `ticks` with results 1..=n, each sent as
    // soon as the connection's queue takes it; then the subscription stays
    // open until the client unsubscribes or goes (at most 120 s).
    module.register_subscription(
        "subscribe_ticks",
        "ticks",
        "unsubscribe_ticks",
        |params, pending, _, _| async move {
            let n: u64 = match params.one() {
                Ok(n) => n,
                Err(e) => {
                    pending.reject(e).await;
                    return Ok(());
                }
            };
            let sink = pending.accept().await?;
            let (method, id) = (sink.method_name(), sink.subscription_id());
            for tick in 1..=n {
                sink.send(SubscriptionMessage::new(method, id.clone(), &tick)?)
                    .await?;
            }
            let _ = tokio::time::timeout(Duration::from_secs(120), sink.closed()).await;
            SubscriptionResult::Ok(())
        },
    )?;
    let handle = server.start(module);
    Ok((addr, handle))
}

/// The `notify` scenario's server: it counts notifications and answers any
/// request (the `count` barrier) with the count of its own connection. It
/// does nothing else per notification, so that the clients, not the server,
/// set the pace (jsonrpsee's server spends about 3 µs on each, which capped
/// every client, raw floors included, near the same rate).
async fn start_sink() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = sink_connection(stream).await;
            });
        }
    });
    Ok(addr)
}

async fn sink_connection(stream: TcpStream) -> Result<()> {
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(64 * 1024);
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
    let mut notes: u64 = 0;
    while let Some(message) = ws.next().await {
        let text = match message? {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        // A notification has no id; anything else is the barrier call.
        if !text.as_str().contains("\"id\"") {
            notes += 1;
            continue;
        }
        let request: serde_json::Value = serde_json::from_str(text.as_str())?;
        let answer = serde_json::json!({"jsonrpc": "2.0", "id": request["id"], "result": notes});
        ws.send(Message::text(answer.to_string())).await?;
    }
    Ok(())
}

/// Bytes the lean server gathers before a socket write.
pub const LEAN_WRITE_BUFFER: usize = 16 * 1024;

/// The lean server of `sub_ticks_lean` and `batch100_lean`: tokio-tungstenite
/// and serde_json (borrowed), nothing else. It answers `echo` (alone or in a
/// batch, each element with its own id and the params as sent) and
/// `subscribe_ticks` / `unsubscribe_ticks` with the jsonrpsee server's wire
/// format (numeric subscription ids, notifications `ticks` with
/// `{"subscription":id,"result":k}`).
///
/// What it does differently from the jsonrpsee server is all it is for:
/// - a subscription's notifications are written through a
///   [`LEAN_WRITE_BUFFER`] write buffer (a socket write whenever 16 KiB have
///   gathered, and one at the end), where jsonrpsee's send loop flushes
///   after every notification (one write, and on a 2-core machine often a
///   wake-up of the reader, per notification);
/// - a batch costs a borrowed parse and one formatted answer (a raw
///   client's round trip with 100 calls is about 40 µs here, about 270 µs
///   against the jsonrpsee server).
///
/// So the client, not the server, sets the pace, as with the notify sink.
async fn start_lean() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = lean_connection(stream).await;
            });
        }
    });
    Ok(addr)
}

/// One JSON-RPC request as the lean server reads it: borrowed, params not
/// parsed.
#[derive(serde::Deserialize)]
struct LeanRequest<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

/// What the lean server owes after one request.
enum LeanAction {
    /// Nothing (a notification).
    None,
    /// One answer.
    Answer(String),
    /// The answer to `subscribe_ticks`, then `n` notifications of subscription `sub`.
    Ticks { answer: String, sub: u64, n: u64 },
}

async fn lean_connection(stream: TcpStream) -> Result<()> {
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(64 * 1024)
        .write_buffer_size(LEAN_WRITE_BUFFER)
        .max_message_size(Some(MAX_MESSAGE as usize))
        .max_frame_size(Some(MAX_MESSAGE as usize));
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
    let mut next_sub: u64 = 1;
    let mut live: Vec<u64> = Vec::new();
    while let Some(message) = ws.next().await {
        let text = match message? {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        let text = text.as_str();
        if text.trim_start().starts_with('[') {
            let requests: Vec<LeanRequest> = serde_json::from_str(text)?;
            let mut answer = String::with_capacity(text.len() + 16);
            let mut streams = Vec::new();
            answer.push('[');
            for request in &requests {
                let one = match lean_call(request, &mut next_sub, &mut live) {
                    LeanAction::None => continue,
                    LeanAction::Answer(one) => one,
                    LeanAction::Ticks { answer, sub, n } => {
                        streams.push((sub, n));
                        answer
                    }
                };
                if answer.len() > 1 {
                    answer.push(',');
                }
                answer.push_str(&one);
            }
            answer.push(']');
            if answer.len() > 2 {
                ws.feed(Message::text(answer)).await?;
            }
            for (sub, n) in streams {
                feed_ticks(&mut ws, sub, n).await?;
            }
            ws.flush().await?;
            continue;
        }
        let request: LeanRequest = serde_json::from_str(text)?;
        match lean_call(&request, &mut next_sub, &mut live) {
            LeanAction::None => {}
            LeanAction::Answer(answer) => ws.send(Message::text(answer)).await?,
            LeanAction::Ticks { answer, sub, n } => {
                ws.feed(Message::text(answer)).await?;
                feed_ticks(&mut ws, sub, n).await?;
                ws.flush().await?;
            }
        }
    }
    Ok(())
}

/// Queues notifications `ticks` 1..=n of subscription `sub`; tungstenite
/// writes whenever [`LEAN_WRITE_BUFFER`] bytes have gathered (the caller
/// flushes the rest).
async fn feed_ticks<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    sub: u64,
    n: u64,
) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for tick in 1..=n {
        let note = format!(
            r#"{{"jsonrpc":"2.0","method":"ticks","params":{{"subscription":{sub},"result":{tick}}}}}"#
        );
        ws.feed(Message::text(note)).await?;
    }
    Ok(())
}

/// Answers one request of the lean server.
fn lean_call(request: &LeanRequest, next_sub: &mut u64, live: &mut Vec<u64>) -> LeanAction {
    let Some(id) = request.id.map(RawValue::get) else {
        return LeanAction::None;
    };
    let params = request.params.map_or("null", RawValue::get);
    let ok = |result: &str| format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
    let first_number = || serde_json::from_str::<(u64,)>(params).ok().map(|(n,)| n);
    match request.method.as_ref() {
        "echo" => LeanAction::Answer(ok(params)),
        "subscribe_ticks" => match first_number() {
            Some(n) => {
                let sub = *next_sub;
                *next_sub += 1;
                live.push(sub);
                LeanAction::Ticks {
                    answer: ok(&sub.to_string()),
                    sub,
                    n,
                }
            }
            None => LeanAction::Answer(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32602,"message":"expected [n]"}}}}"#
            )),
        },
        "unsubscribe_ticks" => {
            let known = first_number().and_then(|sub| live.iter().position(|&s| s == sub));
            if let Some(at) = known {
                live.swap_remove(at);
            }
            LeanAction::Answer(ok(if known.is_some() { "true" } else { "false" }))
        }
        _ => LeanAction::Answer(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"Method not found"}}}}"#
        )),
    }
}

async fn start_sreq(state: Arc<ServerRequestState>) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let job = state.job.lock().unwrap().take();
                let _ = sreq_connection(stream, job).await;
            });
        }
    });
    Ok(addr)
}

async fn sreq_connection(stream: TcpStream, job: Option<Job>) -> Result<()> {
    stream.set_nodelay(true)?;
    // A small read buffer: tungstenite zero-fills it before every read.
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
    let Some(job) = job else {
        let _ = ws.close(None).await;
        return Ok(());
    };
    let outcome = async {
        let hard_limit = Instant::now() + job.limit + Duration::from_secs(30);
        ping_window(&mut ws, 0, job.warmup, hard_limit).await?;
        let start = Instant::now();
        let deadline = start + job.limit;
        let completed = ping_window(&mut ws, job.warmup, job.count, deadline).await?;
        Ok::<_, anyhow::Error>(JobResult {
            completed,
            elapsed: start.elapsed(),
            by_time: completed < job.count,
        })
    }
    .await;
    let _ = job.done.send(outcome.map_err(|e| format!("{e:#}")));
    // Close and wait (bounded) for the client's close frame.
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    Ok(())
}

/// Send `count` requests `bench.ping` with ids `first..`, keeping
/// [`SERVER_REQUEST_WINDOW`] outstanding, stop sending at `deadline`; returns
/// how many were answered.
async fn ping_window<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    first: u64,
    count: u64,
    deadline: Instant,
) -> Result<u64>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = |k: u64| {
        Message::text(format!(
            r#"{{"jsonrpc":"2.0","id":{k},"method":"bench.ping","params":[{k}]}}"#
        ))
    };
    let (mut sent, mut answered) = (0u64, 0u64);
    while sent < count.min(SERVER_REQUEST_WINDOW) {
        ws.feed(request(first + sent)).await?;
        sent += 1;
    }
    ws.flush().await?;
    while answered < sent {
        // Take every answer that is ready, then send as many requests in one
        // flush (each tungstenite read writes out what was fed before it).
        let mut burst = 0;
        let mut msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| anyhow!("no response from the client in 30 s"))?;
        loop {
            match msg {
                Some(Ok(Message::Text(text))) => {
                    if !text.contains("\"result\"") {
                        bail!("unexpected response: {}", &text[..text.len().min(200)]);
                    }
                    burst += 1;
                }
                Some(Ok(Message::Close(_))) | None => {
                    bail!("client closed after {} answers", answered + burst)
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
            match ws.next().now_or_never() {
                Some(m) => msg = m,
                None => break,
            }
        }
        answered += burst;
        let more = burst.min(count - sent);
        if more > 0 && Instant::now() < deadline {
            for _ in 0..more {
                ws.feed(request(first + sent)).await?;
                sent += 1;
            }
            ws.flush().await?;
        }
    }
    Ok(answered)
}
