//! `jsonrpc_websocket::blocking` from plain threads (a `#[test]` is one):
//! calls, notifications, batches, subscriptions as iterators, server
//! requests, closing — and a clear refusal, never a deadlock, inside an
//! async runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonrpc_websocket::{
    blocking, params, Call, Close, Error, ErrorObject, Initiator, ServerRequest, SubscriptionEnd,
    SubscriptionItem,
};
use test_support::{json, response, server_request, standard, Action, TestServer, Value, BOUND};

/// `standard`, plus `subscribe [n]` (answers `"sub-<n>"`, then items 1..=3
/// and, for n = 0, an end with an error) and `unsubscribe` (`true`).
fn server() -> TestServer {
    TestServer::start(|msg: &Value| match msg["method"].as_str() {
        Some("subscribe") => {
            let n = msg["params"][0].as_u64().unwrap_or(1);
            let sub = json!(format!("sub-{n}"));
            let mut actions = vec![Action::Reply(response(&msg["id"], sub.clone()))];
            for k in 1..=3 {
                actions.push(Action::Reply(item(&sub, json!(k))));
            }
            if n == 0 {
                actions.push(Action::Reply(json!({"jsonrpc": "2.0", "method": "tick",
                    "params": {"subscription": sub, "error": {"code": 1, "message": "done"}}})));
            }
            Action::Many(actions)
        }
        Some("unsubscribe") => Action::Reply(response(&msg["id"], json!(true))),
        _ => standard(msg),
    })
}

fn item(subscription: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": "tick",
           "params": {"subscription": subscription, "result": result}})
}

fn connect(server: &TestServer) -> blocking::Client {
    blocking::Client::builder(server.url())
        .request_timeout(Duration::from_secs(8))
        .connect_blocking()
        .unwrap()
}

fn assert_no_pending(client: &blocking::Client) {
    test_support::assert_no_pending(client.as_async());
}

#[test]
fn calls_notifications_and_errors() {
    let server = server();
    let client = blocking::Client::connect(server.url()).unwrap();
    let sum: i64 = client.call("add", params![1, 2, 3]).unwrap();
    assert_eq!(sum, 6);
    let echoed: Value = client.call("echo", json!({"a": 1})).unwrap();
    assert_eq!(echoed, json!({"a": 1}));
    client.notify("log", params!["hello"]).unwrap();
    let err = client.call::<Value>("error", params![]).unwrap_err();
    assert_eq!(err.rpc_error().unwrap().code, -32000);
    let err = client
        .send(
            Call::new("sleep", params![5_000])
                .timeout(Duration::from_millis(50))
                .typed::<Value>(),
        )
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let received = server.wait_received(5, BOUND);
    assert!(received.iter().any(|m| m["method"] == "log"));
    assert_eq!(client.stats().notifications_sent, 1);
    assert_no_pending(&client);
}

#[test]
fn a_batch_keeps_each_outcome_in_its_slot() {
    let server = server();
    let client = connect(&server);
    let mut batch = client.batch();
    let sum = batch.call::<i64>("add", params![2, 2]);
    let missing = batch.call::<Value>("nope", params![]);
    let echoed = batch.call::<Vec<String>>("echo", params!["x"]);
    batch.notify("log", params!["batched"]);
    let mut results = batch.send().unwrap();
    assert_eq!(results.take(sum).unwrap(), 4);
    assert_eq!(
        results.take(missing).unwrap_err().rpc_error().unwrap().code,
        -32601
    );
    assert_eq!(results.take(echoed).unwrap(), ["x"]);
    assert_no_pending(&client);
}

#[test]
fn a_subscription_is_an_iterator() {
    let server = server();
    let client = connect(&server);
    let mut ticks = client
        .subscribe::<u64>("subscribe", params![1], "unsubscribe")
        .unwrap();
    assert_eq!(ticks.id().to_string(), "\"sub-1\"");
    assert_eq!(ticks.method(), "subscribe");
    let items: Vec<u64> = ticks
        .by_ref()
        .take(3)
        .map(|item| match item {
            SubscriptionItem::Item(n) => n,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(items, [1, 2, 3]);
    // Nothing more comes: a bounded wait says so.
    let deadline = Instant::now() + Duration::from_millis(50);
    assert!(ticks.next_timeout(Duration::from_millis(50)).is_none());
    assert!(Instant::now() >= deadline, "gave up before its timeout");
    assert_eq!(ticks.close_reason(), None, "still live");
    assert_eq!(ticks.unsubscribe().unwrap(), json!(true));
    assert_no_pending(&client);
}

#[test]
fn the_iterator_ends_when_the_server_ends_the_subscription() {
    let server = server();
    let client = connect(&server);
    let ticks = client
        .subscribe::<u64>("subscribe", params![0], "unsubscribe")
        .unwrap();
    let mut seen = Vec::new();
    let mut ticks = ticks;
    for item in ticks.by_ref() {
        match item {
            SubscriptionItem::Item(n) => seen.push(n),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, [1, 2, 3]);
    assert!(
        matches!(
            ticks.close_reason(),
            Some(SubscriptionEnd::ServerClosed { .. })
        ),
        "{:?}",
        ticks.close_reason()
    );
}

#[test]
fn handles_are_shared_between_threads() {
    let server = server();
    let client = connect(&server);
    let threads: Vec<_> = (0..4)
        .map(|n: i64| {
            let client = client.clone();
            std::thread::spawn(move || client.call::<i64>("add", params![n, 10]))
        })
        .collect();
    let sums: Vec<i64> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert_eq!(sums, [10, 11, 12, 13]);
    // A subscription moves to another thread too.
    let ticks = client
        .subscribe::<u64>("subscribe", params![1], "unsubscribe")
        .unwrap();
    let first = std::thread::spawn(move || {
        let mut ticks = ticks;
        ticks.next_timeout(BOUND)
    })
    .join()
    .unwrap();
    assert!(
        matches!(first, Some(SubscriptionItem::Item(1))),
        "{first:?}"
    );
}

#[test]
fn server_requests_are_answered_while_this_thread_blocks() {
    let server = server();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    let client = blocking::Client::builder(server.url())
        .register_fn("client.confirm", move |req: ServerRequest| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, ErrorObject>(json!({"yes": req.params})) }
        })
        .connect_blocking()
        .unwrap();
    let seen = server.received().len();
    server.push(server_request(9, "client.confirm", json!([1])));
    // The answer goes out while this thread waits for something else.
    let slept: String = client.call("sleep", params![50]).unwrap();
    assert_eq!(slept, "slept");
    let received = server.wait_received(seen + 2, BOUND);
    let answer = received
        .iter()
        .find(|m| m["id"] == 9 && m.get("method").is_none())
        .expect("the answer to the server's request");
    assert_eq!(answer["result"], json!({"yes": [1]}));
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

#[test]
fn closing_says_how_the_connection_ended() {
    let server = server();
    let client = connect(&server);
    client
        .close_with(Close::with_reason(4000, "done").unwrap())
        .unwrap();
    let end = client.closed().unwrap();
    assert_eq!(end.initiator, Initiator::Client);
    assert_eq!(end.code, Some(4000));
    assert!(!client.is_connected());
    let err = client.call::<Value>("echo", params![]).unwrap_err();
    assert!(err.is_disconnect(), "{err}");
    client.close().unwrap(); // twice is harmless
}

#[test]
fn connect_errors_are_returned() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", refused.local_addr().unwrap());
    drop(refused);
    let err = blocking::Client::connect(&url).unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    let err = blocking::Client::connect("not a url").unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err:?}");
}

fn refused(err: &Error, operation: &str, runtime: &str) -> bool {
    matches!(err, Error::BlockingInAsync { operation: o, runtime: r } if *o == operation && *r == runtime)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_inside_a_tokio_runtime_is_refused() {
    let server = server();
    let err = blocking::Client::connect(server.url()).unwrap_err();
    assert!(refused(&err, "connect", "a tokio runtime"), "{err:?}");
    assert!(err.to_string().contains("use the async Client"), "{err}");
}

#[actix_rt::test]
async fn connecting_inside_an_actix_system_is_refused() {
    let err = blocking::Client::connect("ws://127.0.0.1:1/").unwrap_err();
    assert!(refused(&err, "connect", "an actix System"), "{err:?}");
}

#[test]
fn a_client_carried_into_a_runtime_refuses_instead_of_blocking_it() {
    let server = server();
    let client = connect(&server);
    let mut ticks = client
        .subscribe::<u64>("subscribe", params![1], "unsubscribe")
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let err = client.call::<Value>("echo", params![]).unwrap_err();
        assert!(refused(&err, "call", "a tokio runtime"), "{err:?}");
        let err = client.notify("log", params![]).unwrap_err();
        assert!(refused(&err, "notify", "a tokio runtime"), "{err:?}");
        let err = client.batch().send().unwrap_err();
        assert!(refused(&err, "send a batch", "a tokio runtime"), "{err:?}");
        let err = client.close().unwrap_err();
        assert!(refused(&err, "close", "a tokio runtime"), "{err:?}");
        // The iterator says so once, then ends: a loop over it cannot spin.
        let said: Vec<_> = ticks.by_ref().collect();
        assert!(
            matches!(&said[..], [SubscriptionItem::Invalid(err)] if refused(err, "wait for an item", "a tokio runtime")),
            "{said:?}"
        );
        // The same connection, asynchronously, is fine here.
        let echoed: Value = client.as_async().call("echo", params![1]).await.unwrap();
        assert_eq!(echoed, json!([1]));
    });
    // Back on a plain thread, both work again.
    assert!(matches!(ticks.next(), Some(SubscriptionItem::Item(1))));
    let sum: i64 = client.call("add", params![1, 1]).unwrap();
    assert_eq!(sum, 2);
    assert!(client.is_connected(), "the refusals changed nothing");
}
