//! Interop with a real jsonrpsee 0.26 server (in-process, on a thread and
//! runtime of its own): calls, a batch, subscriptions and each way they end,
//! and a slow consumer under every overflow policy, with exact counts.
//!
//! The server records what it sees (the calls it was sent, the items it has
//! sent, which subscriptions it accepted and which ended), so each test can
//! check the server's side too.

use test_support as support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::FutureExt;
use jsonrpc_websocket::{
    params, Client, Error, Overflow, Subscribe, Subscription, SubscriptionEnd, SubscriptionItem,
};
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::server::middleware::rpc::{
    Batch, Notification, Request, RpcServiceBuilder, RpcServiceT,
};
use jsonrpsee::server::{
    BatchRequestConfig, RandomStringIdProvider, RpcModule, Server, ServerConfig,
    ServerConfigBuilder, ServerHandle, SubscriptionSink,
};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::SubscriptionMessage;
use serde::Deserialize;
use serde_json::value::RawValue;
use support::{assert_no_pending, connect, json, within, Value, BOUND};
use tokio::sync::{oneshot, watch, Notify};

// ---- the server ------------------------------------------------------------

/// What the server has seen and done.
struct State {
    /// Every single (not batched) call: method and params as sent.
    calls: Mutex<Vec<(String, String)>>,
    /// Subscription items sent so far, on every subscription.
    sent: watch::Sender<u64>,
    /// Subscription ids (as JSON) accepted, and those whose subscription
    /// has ended on the server (unsubscribed or the connection gone).
    subs: watch::Sender<Subs>,
    /// Lets a `subscribe_ticks` subscription go on to its next phase.
    go: Notify,
}

#[derive(Default, Clone, Debug)]
struct Subs {
    accepted: Vec<String>,
    ended: Vec<String>,
}

impl State {
    fn calls_to(&self, method: &str) -> Vec<String> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, params)| params.clone())
            .collect()
    }

    /// Waits (bounded) until the server has sent `n` items in all.
    async fn sent_all(&self, n: u64) {
        let mut sent = self.sent.subscribe();
        within(
            &format!("the server sending {n} items"),
            sent.wait_for(|s| *s >= n),
        )
        .await
        .unwrap();
    }

    /// Waits (bounded) until subscription `id` has ended on the server.
    async fn ended(&self, id: &str) {
        let mut subs = self.subs.subscribe();
        within(
            &format!("subscription {id} ending on the server"),
            subs.wait_for(|s| s.ended.iter().any(|e| e == id)),
        )
        .await
        .unwrap();
    }

    fn has_ended(&self, id: &str) -> bool {
        self.subs.borrow().ended.iter().any(|e| e == id)
    }
}

/// Records every single call's method and params, then passes it on.
#[derive(Clone)]
struct Recorder<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> RpcServiceT for Recorder<S>
where
    S: RpcServiceT + Clone + Send + Sync + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(&self, req: Request<'a>) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let params = req.params().as_str().unwrap_or("").to_owned();
        self.state
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((req.method_name().to_owned(), params));
        self.inner.call(req)
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        self.inner.batch(batch)
    }

    fn notification<'a>(
        &self,
        n: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }
}

/// `subtract`'s params, positional (`[minuend, subtrahend]`) or named.
#[derive(Deserialize)]
struct Operands {
    minuend: i64,
    subtrahend: i64,
}

/// Sends items `from..from + count` on `sink`, counting each once queued.
async fn send_ticks(
    sink: &SubscriptionSink,
    state: &State,
    from: u64,
    count: u64,
) -> SubscriptionResult {
    for tick in from..from + count {
        let item = SubscriptionMessage::new(sink.method_name(), sink.subscription_id(), &tick)?;
        sink.send(item).await?;
        state.sent.send_modify(|n| *n += 1);
    }
    Ok(())
}

fn module(state: Arc<State>) -> RpcModule<State> {
    let mut module = RpcModule::from_arc(state);
    module
        .register_method("subtract", |params, _, _| {
            let ops: Operands = params.parse()?;
            Ok::<i64, ErrorObjectOwned>(ops.minuend - ops.subtrahend)
        })
        .unwrap();
    // The params exactly as sent.
    module
        .register_method("echo", |params, _, _| {
            RawValue::from_string(params.as_str().unwrap_or("null").to_owned())
                .map_err(|e| ErrorObjectOwned::owned(-32602, e.to_string(), None::<()>))
        })
        .unwrap();
    module
        .register_method("fail", |_, _, _| {
            Err::<(), _>(ErrorObjectOwned::owned(
                -32001,
                "refused",
                Some(json!({"why": "asked to"})),
            ))
        })
        .unwrap();
    // `[n]`: items 1..=n. `[n, m]`: items 1..=n, then, once the test says
    // go, items n+1..=n+m. Then open until unsubscribed (or 30 s).
    module
        .register_subscription(
            "subscribe_ticks",
            "ticks",
            "unsubscribe_ticks",
            |params, pending, state, _| async move {
                let phases: Vec<u64> = match params.parse() {
                    Ok(phases) => phases,
                    Err(e) => {
                        pending.reject(e).await;
                        return Ok(());
                    }
                };
                // Recorded before the answer goes out, so a client that has
                // its answer finds its id here.
                let id = serde_json::to_string(&pending.subscription_id())?;
                state.subs.send_modify(|s| s.accepted.push(id.clone()));
                let sink = pending.accept().await?;
                let mut next = 1;
                for (i, &count) in phases.iter().enumerate() {
                    if i > 0
                        && tokio::time::timeout(BOUND, state.go.notified())
                            .await
                            .is_err()
                    {
                        break;
                    }
                    send_ticks(&sink, &state, next, count).await?;
                    next += count;
                }
                let _ = tokio::time::timeout(Duration::from_secs(30), sink.closed()).await;
                state.subs.send_modify(|s| s.ended.push(id));
                Ok(())
            },
        )
        .unwrap();
    // `[n]`: accepted only once the test says go; then items 1..=n, and open
    // until unsubscribed (or 30 s).
    module
        .register_subscription(
            "subscribe_gated",
            "gated",
            "unsubscribe_gated",
            |params, pending, state, _| async move {
                let n: u64 = match params.one() {
                    Ok(n) => n,
                    Err(e) => {
                        pending.reject(e).await;
                        return Ok(());
                    }
                };
                if tokio::time::timeout(BOUND, state.go.notified())
                    .await
                    .is_err()
                {
                    return Ok(());
                }
                let id = serde_json::to_string(&pending.subscription_id())?;
                state.subs.send_modify(|s| s.accepted.push(id.clone()));
                let sink = pending.accept().await?;
                send_ticks(&sink, &state, 1, n).await?;
                let _ = tokio::time::timeout(Duration::from_secs(30), sink.closed()).await;
                state.subs.send_modify(|s| s.ended.push(id));
                Ok(())
            },
        )
        .unwrap();
    // `[n]`: items 1..=n, then the server ends the subscription with an
    // error notification.
    module
        .register_subscription(
            "subscribe_closing",
            "closing",
            "unsubscribe_closing",
            |params, pending, state, _| async move {
                let n: u64 = match params.one() {
                    Ok(n) => n,
                    Err(e) => {
                        pending.reject(e).await;
                        return Ok(());
                    }
                };
                let sink = pending.accept().await?;
                send_ticks(&sink, &state, 1, n).await?;
                Err(format!("done after {n}").into())
            },
        )
        .unwrap();
    module
}

/// A jsonrpsee server on 127.0.0.1:0, on its own thread and current-thread
/// runtime; stopped (bounded) when dropped.
struct Jsonrpsee {
    url: String,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    done: mpsc::Receiver<()>,
}

impl Jsonrpsee {
    /// jsonrpsee's defaults (numeric subscription ids, batches allowed),
    /// WebSocket only.
    fn start() -> Jsonrpsee {
        Self::start_with(|config| config)
    }

    /// With `configure` applied to the server's configuration.
    fn start_with(configure: fn(ServerConfigBuilder) -> ServerConfigBuilder) -> Jsonrpsee {
        let state = Arc::new(State {
            calls: Mutex::new(Vec::new()),
            sent: watch::channel(0).0,
            subs: watch::channel(Subs::default()).0,
            go: Notify::new(),
        });
        let (ready_tx, ready_rx) = mpsc::channel::<SocketAddr>();
        let (done_tx, done) = mpsc::channel::<()>();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let server_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("jsonrpsee-server".into())
            .spawn(move || {
                let _done = done_tx; // dropped when this thread ends, even by panic
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the server");
                rt.block_on(async move {
                    let (addr, handle) = serve(server_state, configure).await;
                    let _ = ready_tx.send(addr);
                    let _ = stop_rx.await;
                    let _ = handle.stop();
                    let _ = tokio::time::timeout(Duration::from_secs(2), handle.stopped()).await;
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("a thread for the server");
        let addr = ready_rx
            .recv_timeout(BOUND)
            .expect("the jsonrpsee server did not start");
        Jsonrpsee {
            url: format!("ws://{addr}"),
            state,
            stop: Some(stop),
            thread: Some(thread),
            done,
        }
    }
}

async fn serve(
    state: Arc<State>,
    configure: fn(ServerConfigBuilder) -> ServerConfigBuilder,
) -> (SocketAddr, ServerHandle) {
    let config = configure(ServerConfig::builder().ws_only());
    let recorder_state = Arc::clone(&state);
    let middleware = RpcServiceBuilder::new().layer_fn(move |inner| Recorder {
        inner,
        state: Arc::clone(&recorder_state),
    });
    let server = Server::builder()
        .set_config(config.build())
        .set_rpc_middleware(middleware)
        .build("127.0.0.1:0")
        .await
        .expect("the server binds");
    let addr = server.local_addr().expect("a local address");
    (addr, server.start(module(state)))
}

impl Drop for Jsonrpsee {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match self.done.recv_timeout(BOUND) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    eprintln!("warning: the jsonrpsee server did not stop; leaking its thread");
                }
                _ => {
                    if thread.join().is_err() && !std::thread::panicking() {
                        panic!("the jsonrpsee server thread panicked");
                    }
                }
            }
        }
    }
}

// ---- helpers ---------------------------------------------------------------

/// The next item, bounded.
async fn next<T: serde::de::DeserializeOwned>(
    sub: &mut Subscription<T>,
) -> Option<SubscriptionItem<T>> {
    within("the next subscription item", sub.next()).await
}

/// The next item, which must be `Item(expected)`.
async fn expect_item(sub: &mut Subscription<u64>, expected: u64) {
    match next(sub).await {
        Some(SubscriptionItem::Item(tick)) => assert_eq!(tick, expected),
        other => panic!("expected item {expected}, got {other:?}"),
    }
}

/// The next item, which must be `Lagged { missed: expected }`.
async fn expect_lagged(sub: &mut Subscription<u64>, expected: u64) {
    match next(sub).await {
        Some(SubscriptionItem::Lagged { missed }) => assert_eq!(missed, expected),
        other => panic!("expected Lagged {{ missed: {expected} }}, got {other:?}"),
    }
}

/// Nothing more is ready now (the subscription is still live).
fn expect_nothing_ready(sub: &mut Subscription<u64>) {
    if let Some(item) = sub.next().now_or_never() {
        panic!("expected nothing ready, got {item:?}");
    }
}

/// A call answered after everything the server sent before it: once it
/// returns, every earlier notification has been routed.
async fn barrier(client: &Client) {
    let answer: Value = within("the barrier call", client.call("echo", params!["barrier"]))
        .await
        .unwrap();
    assert_eq!(answer, json!(["barrier"]));
}

/// Waits (bounded) for calls sent without waiting for their answer (an
/// unsubscribe on drop, or on overflow) to be answered.
async fn answered(client: &Client) {
    within("every pending call to be answered", async {
        while client.stats().pending > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// `subscribe_ticks` with `phases`, the queue `capacity` and `overflow`.
async fn slow_subscriber(
    client: &Client,
    phases: Value,
    capacity: usize,
    overflow: Overflow,
) -> Subscription<u64> {
    within(
        "subscribe",
        client.subscribe_with(
            Subscribe::new("subscribe_ticks", phases, "unsubscribe_ticks")
                .capacity(capacity)
                .overflow(overflow),
        ),
    )
    .await
    .unwrap()
    .typed()
}

// ---- calls and batches -----------------------------------------------------

#[actix_rt::test]
async fn calls_with_positional_and_named_params() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let positional: i64 = within("positional", client.call("subtract", params![42, 23]))
        .await
        .unwrap();
    assert_eq!(positional, 19);
    let named: i64 = within(
        "named",
        client.call("subtract", json!({"subtrahend": 23, "minuend": 42})),
    )
    .await
    .unwrap();
    assert_eq!(named, 19);
    let received: Vec<Value> = server
        .state
        .calls_to("subtract")
        .iter()
        .map(|params| serde_json::from_str(params).unwrap())
        .collect();
    assert_eq!(
        received,
        [json!([42, 23]), json!({"minuend": 42, "subtrahend": 23})]
    );
    assert!(server.state.calls_to("subtract")[1].starts_with('{'));
    let err = within("fail", client.call::<Value>("fail", params![]))
        .await
        .unwrap_err();
    let object = err
        .rpc_error()
        .unwrap_or_else(|| panic!("not Rpc: {err:?}"));
    assert_eq!(object.code, -32001);
    assert_eq!(object.message, "refused");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_batch_answers_each_call_in_submission_order_and_one_may_fail() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut batch = client.batch();
    let first = batch.call::<i64>("subtract", params![10, 3]);
    let failing = batch.call::<Value>("fail", params![]);
    batch.notify("note", params![1]);
    let echoed = batch.call::<Value>("echo", params!["x", 2]);
    let named = batch.call::<i64>("subtract", json!({"minuend": 1, "subtrahend": 2}));
    let mut results = within("batch", batch.send()).await.unwrap();
    assert_eq!(results.len(), 4);
    // Taken out of order on purpose: each slot finds its own outcome.
    assert_eq!(results.take(named).unwrap(), -1);
    assert_eq!(results.take(echoed).unwrap(), json!(["x", 2]));
    match results.take(failing) {
        Err(Error::Rpc { error, .. }) => {
            assert_eq!(error.code, -32001);
            assert_eq!(error.message, "refused");
        }
        other => panic!("expected the server's error, got {other:?}"),
    }
    assert_eq!(results.take(first).unwrap(), 7);
    assert_no_pending(&client);
}

// ---- subscriptions ---------------------------------------------------------

#[actix_rt::test]
async fn a_subscription_receives_its_items_in_order() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut ticks = within(
        "subscribe",
        client.subscribe::<u64>("subscribe_ticks", params![5], "unsubscribe_ticks"),
    )
    .await
    .unwrap();
    assert_eq!(ticks.method(), "subscribe_ticks");
    assert_eq!(
        server.state.subs.borrow().accepted,
        [ticks.id().to_string()]
    );
    for tick in 1..=5 {
        expect_item(&mut ticks, tick).await;
    }
    server.state.sent_all(5).await;
    barrier(&client).await;
    expect_nothing_ready(&mut ticks);
    assert_eq!(client.stats().subscriptions, 1);
    let answer = within("unsubscribe", ticks.unsubscribe()).await.unwrap();
    assert_eq!(answer, json!(true));
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn string_subscription_ids_work_too() {
    let server =
        Jsonrpsee::start_with(|config| config.set_id_provider(RandomStringIdProvider::new(16)));
    let client = connect(&server.url).await;
    let mut ticks = within(
        "subscribe",
        client.subscribe::<u64>("subscribe_ticks", params![3], "unsubscribe_ticks"),
    )
    .await
    .unwrap();
    let id = ticks.id().to_string();
    assert!(id.starts_with('"'), "a string id: {id}");
    for tick in 1..=3 {
        expect_item(&mut ticks, tick).await;
    }
    let answer = within("unsubscribe", ticks.unsubscribe()).await.unwrap();
    assert_eq!(answer, json!(true));
    server.state.ended(&id).await;
    assert_eq!(
        server.state.calls_to("unsubscribe_ticks"),
        [format!("[{id}]")]
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn unsubscribe_reaches_the_server_and_ends_its_subscription() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut ticks = within(
        "subscribe",
        client.subscribe::<u64>("subscribe_ticks", params![2], "unsubscribe_ticks"),
    )
    .await
    .unwrap();
    let id = ticks.id().to_string();
    expect_item(&mut ticks, 1).await;
    assert!(!server.state.has_ended(&id));
    // jsonrpsee answers `true` only when it removed a live subscription.
    let answer = within("unsubscribe", ticks.unsubscribe()).await.unwrap();
    assert_eq!(answer, json!(true));
    assert_eq!(
        server.state.calls_to("unsubscribe_ticks"),
        [format!("[{id}]")]
    );
    server.state.ended(&id).await;
    // The connection is still up: it was the unsubscribe, not a disconnect.
    barrier(&client).await;
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn dropping_the_handle_unsubscribes() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut ticks = within(
        "subscribe",
        client.subscribe::<u64>("subscribe_ticks", params![1], "unsubscribe_ticks"),
    )
    .await
    .unwrap();
    let id = ticks.id().to_string();
    expect_item(&mut ticks, 1).await;
    drop(ticks);
    server.state.ended(&id).await;
    assert_eq!(
        server.state.calls_to("unsubscribe_ticks"),
        [format!("[{id}]")]
    );
    barrier(&client).await;
    answered(&client).await;
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_subscription_the_server_closes_ends_its_stream() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut ticks = within(
        "subscribe",
        client.subscribe::<u64>("subscribe_closing", params![3], "unsubscribe_closing"),
    )
    .await
    .unwrap();
    for tick in 1..=3 {
        expect_item(&mut ticks, tick).await;
    }
    assert!(next(&mut ticks).await.is_none(), "the stream ends");
    assert!(next(&mut ticks).await.is_none(), "and stays ended");
    assert_eq!(
        ticks.close_reason(),
        Some(SubscriptionEnd::ServerClosed {
            error: r#""done after 3""#.to_owned()
        })
    );
    drop(ticks);
    barrier(&client).await;
    assert!(
        server.state.calls_to("unsubscribe_closing").is_empty(),
        "nothing to unsubscribe from"
    );
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

// ---- a slow consumer under each overflow policy ----------------------------
//
// The server sends 10 items to a queue of 4 before the consumer polls at all
// (the barrier call proves every one of them was routed), then the consumer
// reads.

#[actix_rt::test]
async fn drop_oldest_says_how_many_were_missed_then_gives_the_newest() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut ticks = slow_subscriber(&client, json!([10]), 4, Overflow::DropOldest).await;
    server.state.sent_all(10).await;
    barrier(&client).await;
    expect_lagged(&mut ticks, 6).await;
    for tick in 7..=10 {
        expect_item(&mut ticks, tick).await;
    }
    expect_nothing_ready(&mut ticks);
    assert_eq!(client.stats().subscription_items_dropped, 6);
    let answer = within("unsubscribe", ticks.unsubscribe()).await.unwrap();
    assert_eq!(answer, json!(true));
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn keep_latest_gives_one_item_with_the_missed_count() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut ticks = slow_subscriber(&client, json!([10]), 4, Overflow::KeepLatest).await;
    server.state.sent_all(10).await;
    barrier(&client).await;
    expect_lagged(&mut ticks, 9).await;
    expect_item(&mut ticks, 10).await;
    expect_nothing_ready(&mut ticks);
    assert_eq!(client.stats().subscription_items_dropped, 9);
    let answer = within("unsubscribe", ticks.unsubscribe()).await.unwrap();
    assert_eq!(answer, json!(true));
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn close_delivers_what_was_queued_then_ends_lagged_and_unsubscribes() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut ticks = slow_subscriber(&client, json!([10]), 4, Overflow::Close).await;
    let id = ticks.id().to_string();
    server.state.sent_all(10).await;
    barrier(&client).await;
    for tick in 1..=4 {
        expect_item(&mut ticks, tick).await;
    }
    assert!(next(&mut ticks).await.is_none(), "the stream ends");
    // Item 5 found the queue full and closed it; 6..10 came after the end.
    assert_eq!(
        ticks.close_reason(),
        Some(SubscriptionEnd::Lagged { missed: 1 })
    );
    assert_eq!(client.stats().subscription_items_dropped, 1);
    // The library unsubscribed on its own.
    server.state.ended(&id).await;
    assert_eq!(
        server.state.calls_to("unsubscribe_ticks"),
        [format!("[{id}]")]
    );
    drop(ticks);
    answered(&client).await;
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn drop_newest_gives_the_first_items_then_says_how_many_were_missed() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    // 10 items, then (on go) one more.
    let mut ticks = slow_subscriber(&client, json!([10, 1]), 4, Overflow::DropNewest).await;
    server.state.sent_all(10).await;
    barrier(&client).await;
    for tick in 1..=4 {
        expect_item(&mut ticks, tick).await;
    }
    // The drops came after item 4: the next item to arrive tells of them.
    expect_nothing_ready(&mut ticks);
    server.state.go.notify_one();
    server.state.sent_all(11).await;
    barrier(&client).await;
    expect_lagged(&mut ticks, 6).await;
    expect_item(&mut ticks, 11).await;
    expect_nothing_ready(&mut ticks);
    assert_eq!(client.stats().subscription_items_dropped, 6);
    let answer = within("unsubscribe", ticks.unsubscribe()).await.unwrap();
    assert_eq!(answer, json!(true));
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn drop_newest_tells_of_drops_at_the_end_when_the_server_closes() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut ticks: Subscription<u64> = within(
        "subscribe",
        client.subscribe_with(
            Subscribe::new("subscribe_closing", params![10], "unsubscribe_closing")
                .capacity(4)
                .overflow(Overflow::DropNewest),
        ),
    )
    .await
    .unwrap()
    .typed();
    server.state.sent_all(10).await;
    barrier(&client).await;
    for tick in 1..=4 {
        expect_item(&mut ticks, tick).await;
    }
    expect_lagged(&mut ticks, 6).await;
    assert!(next(&mut ticks).await.is_none(), "the stream ends");
    assert_eq!(
        ticks.close_reason(),
        Some(SubscriptionEnd::ServerClosed {
            error: r#""done after 10""#.to_owned()
        })
    );
    assert_no_pending(&client);
}

// ---- more subscription cases -----------------------------------------------

#[actix_rt::test]
async fn two_subscriptions_on_one_connection_each_get_only_their_own_items() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut a = slow_subscriber(&client, json!([3]), 16, Overflow::DropOldest).await;
    let mut b = slow_subscriber(&client, json!([5]), 16, Overflow::DropOldest).await;
    assert_ne!(a.id(), b.id());
    server.state.sent_all(8).await;
    barrier(&client).await;
    for tick in 1..=3 {
        expect_item(&mut a, tick).await;
    }
    expect_nothing_ready(&mut a);
    for tick in 1..=5 {
        expect_item(&mut b, tick).await;
    }
    expect_nothing_ready(&mut b);
    assert_eq!(client.stats().subscriptions, 2);
    assert_eq!(
        within("unsubscribe a", a.unsubscribe()).await.unwrap(),
        json!(true)
    );
    assert_eq!(
        within("unsubscribe b", b.unsubscribe()).await.unwrap(),
        json!(true)
    );
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn items_that_do_not_decode_are_reported_and_the_subscription_goes_on() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut words = within(
        "subscribe",
        client.subscribe::<String>("subscribe_ticks", params![2], "unsubscribe_ticks"),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        match next(&mut words).await {
            Some(SubscriptionItem::Invalid(Error::ItemDecode { .. })) => {}
            other => panic!("expected an undecodable item, got {other:?}"),
        }
    }
    let answer = within("unsubscribe", words.unsubscribe()).await.unwrap();
    assert_eq!(answer, json!(true));
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_refused_subscribe_is_an_error_and_leaves_nothing_behind() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let refused = within(
        "subscribe",
        client.subscribe::<u64>(
            "subscribe_ticks",
            params!["not a count"],
            "unsubscribe_ticks",
        ),
    )
    .await
    .unwrap_err();
    assert!(refused.rpc_error().is_some(), "{refused:?}");
    assert!(server.state.subs.borrow().accepted.is_empty());
    barrier(&client).await;
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn the_server_going_away_ends_subscriptions_as_disconnected() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut ticks = within(
        "subscribe",
        client.subscribe::<u64>("subscribe_ticks", params![1], "unsubscribe_ticks"),
    )
    .await
    .unwrap();
    expect_item(&mut ticks, 1).await;
    drop(server);
    assert!(next(&mut ticks).await.is_none(), "the stream ends");
    assert!(
        matches!(
            ticks.close_reason(),
            Some(SubscriptionEnd::Disconnected { .. })
        ),
        "{:?}",
        ticks.close_reason()
    );
    assert_no_pending(&client);
}

/// A subscribe call whose caller gives up before the answer: the server
/// still creates the subscription, so the library must end it.
#[actix_rt::test]
async fn a_subscribe_call_given_up_before_its_answer_still_unsubscribes() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    {
        let subscribe = client.subscribe::<u64>("subscribe_gated", params![3], "unsubscribe_gated");
        let seen = within("the server seeing the subscribe call", async {
            while server.state.calls_to("subscribe_gated").is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        tokio::select! {
            outcome = subscribe => panic!("answered before the gate opened: {outcome:?}"),
            () = seen => {}
        }
        // The caller gives up here (the subscribe future is dropped).
    }
    within("the library to notice the caller is gone", async {
        while client.stats().pending > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    // Now the server accepts: a live subscription nobody holds.
    server.state.go.notify_one();
    let mut subs = server.state.subs.subscribe();
    let id = within(
        "the server accepting",
        subs.wait_for(|s| !s.accepted.is_empty()),
    )
    .await
    .unwrap()
    .accepted[0]
        .clone();
    server.state.sent_all(3).await;
    barrier(&client).await;
    let mut subs = server.state.subs.subscribe();
    let ended = tokio::time::timeout(BOUND, subs.wait_for(|s| s.ended.contains(&id))).await;
    assert!(
        ended.is_ok(),
        "the server's subscription {id} is still live {BOUND:?} after its answer \
         (unsubscribe calls: {:?}); client stats: {:?}",
        server.state.calls_to("unsubscribe_gated"),
        client.stats()
    );
    assert_eq!(
        server.state.calls_to("unsubscribe_gated"),
        [format!("[{id}]")]
    );
    answered(&client).await;
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

/// `unsubscribe()` on a subscription that has already ended (here the
/// server closed it) has no live subscription to end.
#[actix_rt::test]
async fn unsubscribing_a_subscription_that_already_ended_calls_no_invented_method() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut ticks = within(
        "subscribe",
        client.subscribe::<u64>("subscribe_closing", params![1], "unsubscribe_closing"),
    )
    .await
    .unwrap();
    expect_item(&mut ticks, 1).await;
    assert!(next(&mut ticks).await.is_none(), "the server closed it");
    let outcome = within("unsubscribe", ticks.unsubscribe()).await;
    barrier(&client).await;
    assert!(
        server.state.calls_to("unsubscribe").is_empty(),
        "the library called a method named `unsubscribe` (registered nowhere) \
         with the id; it answered {outcome:?}"
    );
    assert_no_pending(&client);
}

// ---- more batch cases ------------------------------------------------------

#[actix_rt::test]
async fn a_batch_of_notifications_only_completes_without_an_answer() {
    let server = Jsonrpsee::start();
    let client = connect(&server.url).await;
    let mut batch = client.batch();
    batch.notify("note", params![1]);
    batch.notify("note", params![2]);
    let results = within("batch", batch.send()).await.unwrap();
    assert!(results.is_empty());
    barrier(&client).await;
    let stats = client.stats();
    assert_eq!(
        (stats.invalid_messages, stats.unknown_ids),
        (0, 0),
        "{stats:?}"
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_server_that_refuses_batches_fails_each_call_with_its_error() {
    let server = Jsonrpsee::start_with(|config| {
        config.set_batch_request_config(BatchRequestConfig::Disabled)
    });
    let client = connect(&server.url).await;
    let mut batch = client.batch();
    let first = batch.call::<i64>("subtract", params![2, 1]);
    let second = batch.call::<Value>("echo", params!["x"]);
    let mut results = within("batch", batch.send()).await.unwrap();
    for outcome in [
        results.take(first).map(|_| ()),
        results.take(second).map(|_| ()),
    ] {
        match outcome {
            Err(Error::Rpc { error, .. }) => assert_eq!(error.code, -32005, "{error:?}"),
            other => panic!("expected the server's refusal, got {other:?}"),
        }
    }
    // Single calls still work.
    barrier(&client).await;
    assert_no_pending(&client);
}
