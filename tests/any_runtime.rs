//! The async `Client` outside an actix `System`: from tokio's multi-thread
//! runtime (in spawned tasks, which need `Send` futures), from another
//! executor on a plain thread, and with handlers for the server's requests.
//! Such connections run on the crate's one background thread; inside a
//! `System` they run where they always did.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use jsonrpc_websocket::{
    params, Client, ConnectionEvent, Error, ErrorObject, EventStream, Initiator, ReconnectPolicy,
    RpcConnection, ServerRequest, SubscriptionItem,
};
use test_support::{
    ask, assert_no_pending, json, response, server_request, standard, within, Action, FaultProxy,
    TestServer, Value, BOUND,
};

/// The name of the thread the crate starts (see `src/background.rs`).
const BACKGROUND: &str = "jsonrpc-ws-bg";

/// `standard`, plus `subscribe` (answers `"sub-1"`, then two items) and
/// `unsubscribe` (answers `true`).
fn server() -> TestServer {
    TestServer::start(|msg: &Value| match msg["method"].as_str() {
        Some("subscribe") => Action::Many(vec![
            Action::Reply(response(&msg["id"], json!("sub-1"))),
            Action::Reply(item("sub-1", json!(1))),
            Action::Reply(item("sub-1", json!(2))),
        ]),
        Some("unsubscribe") => Action::Reply(response(&msg["id"], json!(true))),
        _ => standard(msg),
    })
}

fn item(subscription: &str, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": "tick",
           "params": {"subscription": subscription, "result": result}})
}

fn builder(url: &str) -> jsonrpc_websocket::ConnectionBuilder {
    RpcConnection::builder(url).request_timeout(Duration::from_secs(8))
}

/// The names of this process's threads that the crate started.
#[cfg(target_os = "linux")]
fn background_threads() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == BACKGROUND)
        .count()
}

/// The names of the threads that handled server requests, in order.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// Records the name of the thread each server request is handled on.
fn thread_recorder() -> (
    Seen,
    impl Fn(ServerRequest) -> std::future::Ready<Result<Value, ErrorObject>> + Send + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let handler = move |req: ServerRequest| {
        let name = std::thread::current().name().map(str::to_owned);
        record.lock().unwrap().push(name);
        std::future::ready(Ok(json!({"confirmed": req.params})))
    };
    (seen, handler)
}

/// Connects with a `client.confirm` handler that records its thread.
async fn connect_recording(server: &TestServer) -> (Client, Seen) {
    let (seen, handler) = thread_recorder();
    let client = within(
        "connect",
        builder(&server.url())
            .register_fn("client.confirm", handler)
            .connect(),
    )
    .await
    .unwrap();
    (client, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_notifications_work_from_tokio_tasks() {
    let server = server();
    let client = within("connect", builder(&server.url()).connect())
        .await
        .unwrap();
    // Spawned tasks need `Send` futures: connect, call and notify are.
    let tasks: Vec<_> = (0..8)
        .map(|n: i64| {
            let client = client.clone();
            tokio::spawn(async move {
                let sum: i64 = client.call("add", params![n, 1]).await?;
                client.notify("log", params![n]).await?;
                Ok::<_, Error>(sum)
            })
        })
        .collect();
    let mut sums = Vec::new();
    for task in tasks {
        sums.push(within("a task", task).await.unwrap().unwrap());
    }
    assert_eq!(sums, (1..=8).collect::<Vec<_>>());
    let received = server.wait_received_async(16, BOUND).await;
    assert_eq!(received.iter().filter(|m| m["method"] == "log").count(), 8);
    let connected = tokio::spawn(async move {
        let client = builder(&server.url()).connect().await?;
        let echoed: Value = client.call("echo", params!["spawned"]).await?;
        client.close().await?;
        Ok::<_, Error>(echoed)
    });
    let echoed = within("connect in a task", connected).await.unwrap();
    assert_eq!(echoed.unwrap(), json!(["spawned"]));
    assert_no_pending(&client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_and_a_batch_from_tokio() {
    let server = server();
    let client = within("connect", builder(&server.url()).connect())
        .await
        .unwrap();
    let mut ticks = within(
        "subscribe",
        client.subscribe::<u64>("subscribe", params![], "unsubscribe"),
    )
    .await
    .unwrap();
    let reader = tokio::spawn(async move {
        let mut items = Vec::new();
        while items.len() < 2 {
            match ticks.next().await {
                Some(SubscriptionItem::Item(n)) => items.push(n),
                other => panic!("unexpected {other:?}"),
            }
        }
        (items, ticks.unsubscribe().await)
    });
    let (items, unsubscribed) = within("the items", reader).await.unwrap();
    assert_eq!(items, [1, 2]);
    assert_eq!(unsubscribed.unwrap(), json!(true));

    let mut batch = client.batch();
    let sum = batch.call::<i64>("add", params![2, 3]);
    let failed = batch.call::<Value>("no.such.method", params![]);
    batch.notify("log", params!["in a batch"]);
    let mut results = within("the batch", batch.send()).await.unwrap();
    assert_eq!(results.take(sum).unwrap(), 5);
    assert_eq!(
        results.take(failed).unwrap_err().rpc_error().unwrap().code,
        -32601
    );
    assert_no_pending(&client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_requests_are_answered_on_the_background_thread() {
    let server = server();
    let (client, seen) = connect_recording(&server).await;
    let answer = ask(&server, server_request(7, "client.confirm", json!(["ok?"]))).await;
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["result"], json!({"confirmed": ["ok?"]}));
    // Registered at run time, from this runtime, too.
    let (later, handler) = thread_recorder();
    within("register", client.register_fn("client.later", handler))
        .await
        .unwrap();
    let answer = ask(&server, server_request(8, "client.later", json!([]))).await;
    assert_eq!(answer["result"], json!({"confirmed": []}));
    for seen in [seen, later] {
        assert_eq!(*seen.lock().unwrap(), [Some(BACKGROUND.to_owned())]);
    }
}

/// An actor of the user's, in an actix `System` of its own on its own thread.
struct Confirmer;

impl Actor for Confirmer {
    type Context = Context<Self>;
}

impl Handler<ServerRequest> for Confirmer {
    type Result = Result<Value, ErrorObject>;

    fn handle(&mut self, req: ServerRequest, _: &mut Context<Self>) -> Self::Result {
        Ok(json!({"actor saw": req.params}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_actor_in_another_system_answers_server_requests() {
    let (ready, started) = std::sync::mpsc::channel();
    let actors = std::thread::spawn(move || {
        let system = actix::System::new();
        system.block_on(async {
            let addr = Confirmer.start();
            ready
                .send((addr.recipient::<ServerRequest>(), actix::System::current()))
                .unwrap();
        });
        system.run().unwrap();
    });
    let (recipient, actor_system) = started.recv_timeout(BOUND).unwrap();
    let server = server();
    let client = within(
        "connect",
        builder(&server.url())
            .register("client.", recipient)
            .connect(),
    )
    .await
    .unwrap();
    let answer = ask(&server, server_request(1, "client.check", json!([42]))).await;
    assert_eq!(answer["result"], json!({"actor saw": [42]}));
    within("close", client.close()).await.unwrap();
    actor_system.stop();
    actors.join().unwrap();
}

async fn until(events: &mut EventStream, wanted: fn(&ConnectionEvent) -> bool) {
    loop {
        let event = within("an event", events.next()).await;
        match event {
            Some(event) if wanted(&event) => return,
            Some(_) => {}
            None => panic!("the events ended"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_events_reach_tokio_tasks() {
    let server = server();
    let proxy = FaultProxy::start(server.addr());
    let client = within(
        "connect",
        builder(&proxy.url())
            .reconnect(
                ReconnectPolicy::new()
                    .initial_delay(Duration::from_millis(20))
                    .max_delay(Duration::from_millis(200)),
            )
            .connect(),
    )
    .await
    .unwrap();
    let mut events = client.events();
    until(&mut events, |e| {
        matches!(e, ConnectionEvent::Connected { .. })
    })
    .await;
    proxy.drop_all();
    until(&mut events, |e| {
        matches!(e, ConnectionEvent::Disconnected { .. })
    })
    .await;
    until(&mut events, |e| matches!(e, ConnectionEvent::Reconnected)).await;
    let sum: i64 = within(
        "a call after reconnecting",
        client.call("add", params![1, 1]),
    )
    .await
    .unwrap();
    assert_eq!(sum, 2);
    within("close", client.close()).await.unwrap();
    until(&mut events, |e| matches!(e, ConnectionEvent::Closed { .. })).await;
    let end = within("closed", client.closed()).await;
    assert_eq!(end.initiator, Initiator::Client);
    assert!(end.clean, "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_closes_the_connection() {
    let server = server();
    let client = within("connect", builder(&server.url()).connect())
        .await
        .unwrap();
    let _: Value = within("a call", client.call("echo", params![]))
        .await
        .unwrap();
    drop(client);
    let closes = server.wait_client_closes_async(1, BOUND).await;
    assert_eq!(closes[0].as_ref().map(|(code, _)| *code), Some(1000));
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_share_one_background_thread() {
    let server = server();
    let connects: Vec<_> = (0..40)
        .map(|_| tokio::spawn(builder(&server.url()).connect()))
        .collect();
    let mut clients = Vec::new();
    for connect in connects {
        clients.push(within("connect", connect).await.unwrap().unwrap());
    }
    assert_eq!(background_threads(), 1, "one thread for all 40 connections");
    for (n, client) in clients.iter().enumerate() {
        let echoed: Vec<usize> = within("a call", client.call("echo", params![n]))
            .await
            .unwrap();
        assert_eq!(echoed, [n]);
    }
    for client in &clients {
        within("close", client.close()).await.unwrap();
    }
    for client in &clients {
        assert!(
            !client.is_connected(),
            "each connection's actor has stopped"
        );
    }
    // A connection made after all have closed uses the same thread.
    let again = within("connect", builder(&server.url()).connect())
        .await
        .unwrap();
    assert_eq!(background_threads(), 1);
    within("close", again.close()).await.unwrap();
}

#[test]
fn another_executor_on_a_plain_thread_drives_the_client() {
    let server = server();
    let url = server.url();
    let outcome = std::thread::spawn(move || {
        futures_executor::block_on(async {
            let client = builder(&url).connect().await?;
            let sum: i64 = client.call("add", params![20, 22]).await?;
            client.notify("log", params!["no tokio here"]).await?;
            let mut ticks = client
                .subscribe::<u64>("subscribe", params![], "unsubscribe")
                .await?;
            let first = ticks.next().await;
            client.close().await?;
            Ok::<_, Error>((sum, first))
        })
    })
    .join()
    .unwrap();
    let (sum, first) = outcome.unwrap();
    assert_eq!(sum, 42);
    assert!(
        matches!(first, Some(SubscriptionItem::Item(1))),
        "{first:?}"
    );
    server.wait_received(3, BOUND);
}

#[test]
fn a_notification_waiting_for_room_needs_no_runtime_of_its_own() {
    // A peer that never reads: the outbox fills, and a notification waits
    // for room up to the request timeout — a tokio timer, lent by the
    // connection's runtime since this thread has none.
    let peer = test_support::silent_peer();
    let url = peer.url();
    let outcome = futures_executor::block_on(async {
        let client = RpcConnection::builder(&url)
            .max_queued_bytes(1024)
            .request_timeout(Duration::from_millis(300))
            .heartbeat(Duration::ZERO)
            .close_timeout(Duration::from_millis(100))
            .connect()
            .await?;
        let big = "x".repeat(64 * 1024);
        let mut outcome = Ok(());
        // Up to 32 MiB: more than loopback socket buffers take in.
        for _ in 0..512 {
            outcome = client.notify("fill", params![big.as_str()]).await;
            if outcome.is_err() {
                break;
            }
        }
        let _ = client.close().await;
        Ok::<_, Error>(outcome)
    });
    let err = outcome.unwrap().unwrap_err();
    assert!(matches!(err, Error::Overloaded { .. }), "{err:?}");
}

#[actix_rt::test]
async fn inside_a_system_the_connection_runs_on_the_current_thread() {
    let server = server();
    let (client, seen) = connect_recording(&server).await;
    let _ = ask(&server, server_request(1, "client.confirm", json!([]))).await;
    let here = std::thread::current().name().map(str::to_owned);
    assert_eq!(*seen.lock().unwrap(), [here]);
    assert_ne!(seen.lock().unwrap()[0].as_deref(), Some(BACKGROUND));
    within("close", client.close()).await.unwrap();
}

#[test]
fn futures_of_the_client_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn check(client: &Client) {
        assert_send(&RpcConnection::builder("ws://127.0.0.1:1/").connect());
        assert_send(&client.call::<Value>("m", params![]));
        assert_send(&client.notify("m", params![]));
        assert_send(&client.subscribe::<Value>("s", params![], "u"));
        assert_send(&client.batch().send());
        assert_send(&client.close());
        assert_send(&client.closed());
        assert_send(&client.events());
    }
    let _ = check;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awc_client_cannot_be_used_outside_a_system() {
    let err = builder("ws://127.0.0.1:1/")
        .client(awc::Client::default())
        .connect()
        .await
        .unwrap_err();
    let Error::InvalidConfig { reason } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("inside an actix System"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_come_back_from_the_background_thread() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", refused.local_addr().unwrap());
    drop(refused);
    let err = within("connect", builder(&url).connect())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
}
