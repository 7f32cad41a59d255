//! Batches over a real socket: answers in any order come back in submission
//! order, partial answers fail only the missing entries, a lone error fails
//! the batch, notification-only batches, one timeout, bounds.

use std::time::Duration;

use jsonrpc_websocket::{params, Backpressure, Batch, Bound, Error, RpcConnection};
use test_support::{
    assert_no_pending, connect, connect_with, json, standard, within, Action, RawConn, RawServer,
    TestServer, Value,
};

/// A peer that answers one batch with `answer(requests)` and then idles.
fn answering(answer: fn(&[Value]) -> Value) -> RawServer {
    RawServer::start(move |mut conn: RawConn| async move {
        let Some(Value::Array(requests)) = conn.read_json().await else {
            panic!("expected a batch");
        };
        let reply = answer(&requests);
        if !reply.is_null() {
            conn.send_json(&reply).await;
        }
        conn.idle(Duration::from_secs(5)).await;
    })
}

fn result(request: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": request["id"], "result": result})
}

#[actix_rt::test]
async fn answers_in_any_order_come_back_in_submission_order() {
    let server = answering(|requests| {
        // Reversed, and each echoing its own params.
        Value::Array(
            requests
                .iter()
                .rev()
                .map(|r| result(r, r["params"][0].clone()))
                .collect(),
        )
    });
    let client = connect(&server.url()).await;
    let mut batch = client.batch();
    let slots: Vec<_> = (0..20u64)
        .map(|n| batch.call::<u64>("echo", params![n]))
        .collect();
    let mut results = within("batch", batch.send()).await.unwrap();
    assert_eq!(results.len(), 20);
    for (n, slot) in slots.into_iter().enumerate() {
        assert_eq!(results.take(slot).unwrap(), n as u64);
    }
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_partial_answer_fails_only_the_missing_entries_at_once() {
    let server = answering(|requests| {
        // The second request gets nothing, the third an error; [3] is the
        // notification.
        json!([
            result(&requests[0], json!("first")),
            {"jsonrpc": "2.0", "id": requests[2]["id"], "error": {"code": -32000, "message": "no"}},
            result(&requests[4], json!("fourth")),
        ])
    });
    // A long timeout: the missing entry must not wait for it.
    let client = connect_with(
        RpcConnection::builder(server.url()).request_timeout(Duration::from_secs(3600)),
    )
    .await;
    let mut batch = client.batch();
    let first = batch.call::<String>("a", params![]);
    let second = batch.call::<String>("b", params![]);
    let third = batch.call::<String>("c", params![]);
    batch.notify("log", params!["between"]);
    let fourth = batch.call::<String>("d", params![]);
    let mut results = within("batch", batch.send()).await.unwrap();
    assert_eq!(results.take(first).unwrap(), "first");
    let missing = results.take(second).unwrap_err();
    assert!(
        matches!(missing, Error::MissingResponse { .. }),
        "{missing:?}"
    );
    assert_eq!(
        missing.to_string(),
        "the server's answer to the batch had no response for 'b' (id 2)"
    );
    let failed = results.take(third).unwrap_err();
    assert_eq!(failed.rpc_error().map(|e| e.code), Some(-32000));
    assert_eq!(results.take(fourth).unwrap(), "fourth");
    let again = results.take(fourth).unwrap_err();
    assert!(matches!(again, Error::InvalidConfig { .. }), "{again:?}");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_lone_error_in_reply_fails_every_entry_with_it() {
    let server = answering(
        |_| json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32005, "message": "batches are not supported"}}),
    );
    let client = connect(&server.url()).await;
    let mut batch = client.batch();
    let a = batch.call::<Value>("a", params![]);
    let b = batch.call::<Value>("b", params![]);
    let mut results = within("batch", batch.send()).await.unwrap();
    for slot in [a, b] {
        let err = results.take(slot).unwrap_err();
        assert_eq!(err.rpc_error().map(|e| e.code), Some(-32005), "{err:?}");
    }
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_notification_only_batch_expects_no_reply() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let mut batch = client.batch();
    batch.notify("log", params!["one"]);
    batch.notify("log", json!({"two": 2}));
    let results = within("batch", batch.send()).await.unwrap();
    assert!(results.is_empty());
    let received = server.wait_received_async(1, test_support::BOUND).await;
    assert_eq!(
        received[0],
        json!([
            {"jsonrpc": "2.0", "method": "log", "params": ["one"]},
            {"jsonrpc": "2.0", "method": "log", "params": {"two": 2}},
        ])
    );
    assert_eq!(client.stats().notifications_sent, 2);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn the_whole_batch_has_one_timeout() {
    let server = answering(|_| Value::Null);
    let client = connect(&server.url()).await;
    let mut batch = client.batch();
    let a = batch.call::<Value>("a", params![]);
    let b = batch.call::<Value>("b", params![]);
    batch.timeout(Duration::from_millis(100));
    let mut results = within("batch", batch.send()).await.unwrap();
    for slot in [a, b] {
        let err = results.take(slot).unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    }
    assert_eq!(client.stats().timeouts, 2);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn each_call_counts_against_the_in_flight_bound() {
    let server = TestServer::start(standard);
    let client = connect_with(
        RpcConnection::builder(server.url())
            .max_in_flight(2)
            .backpressure(Backpressure::Wait),
    )
    .await;
    let mut batch = client.batch();
    for _ in 0..3 {
        let _ = batch.call::<Value>("echo", params![]);
    }
    let err = within("batch", batch.send()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Overloaded {
                bound: Bound::InFlight(2),
                ..
            }
        ),
        "{err:?}"
    );
    let mut fits = client.batch();
    let a = fits.call::<Value>("echo", params![1]);
    let b = fits.call::<Value>("echo", params![2]);
    let mut results = within("batch", fits.send()).await.unwrap();
    assert_eq!(
        (results.take(a).unwrap(), results.take(b).unwrap()),
        (json!([1]), json!([2]))
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn actors_send_batches_and_entries_fail_alone() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let mut batch = Batch::new();
    let sum = batch.call::<i64>("add", params![2, 3]);
    let bad = batch.call::<i64>("echo", params!["not a number"]);
    let unknown = batch.call::<Value>("no.such", params![]);
    let mut results = within("batch", client.addr().send(batch))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(results.take(sum).unwrap(), 5);
    assert!(matches!(results.take(bad), Err(Error::Decode { .. })));
    assert_eq!(
        results
            .take(unknown)
            .unwrap_err()
            .rpc_error()
            .map(|e| e.code),
        Some(-32601)
    );
    assert_eq!(client.stats().calls_sent, 3);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_empty_batch_sends_nothing() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let results = within("batch", client.send_batch(Batch::new()))
        .await
        .unwrap();
    assert!(results.is_empty());
    let _: Value = within("call", client.call("echo", params![]))
        .await
        .unwrap();
    assert_eq!(server.received().len(), 1, "{:?}", server.received());
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_dropped_batch_frees_all_its_calls() {
    let server = answering(|_| Value::Null);
    let client = connect_with(
        RpcConnection::builder(server.url()).request_timeout(Duration::from_secs(3600)),
    )
    .await;
    let mut batch = client.batch();
    for n in 0..5 {
        let _ = batch.call::<Value>("silent", params![n]);
    }
    let gave_up = tokio::time::timeout(Duration::from_millis(100), batch.send()).await;
    assert!(gave_up.is_err());
    within("entries freed", async {
        while client.stats().pending > 0 {
            let _ = client.addr().send(jsonrpc_websocket::GetStats).await;
        }
    })
    .await;
    assert_eq!(client.stats().cancelled, 5);
    assert_no_pending(&client);
}

/// A batch that finds the outbound queue full waits for room (in its
/// caller's stead, up to its timeout), then goes: here the server stops
/// reading until the queue is full, then reads again.
#[actix_rt::test]
async fn a_batch_waits_for_room_then_goes() {
    let server = TestServer::start(standard);
    let proxy = test_support::FaultProxy::start(server.addr());
    let client = connect_with(
        RpcConnection::builder(proxy.url())
            .max_queued_bytes(32 * 1024)
            .request_timeout(Duration::from_secs(8)),
    )
    .await;
    proxy.black_hole();
    fill_queue(&client).await;
    let waits = client.stats().backpressure_waits;
    let sending = {
        let client = client.clone();
        actix_rt::spawn(async move {
            let mut batch = client.batch();
            let a = batch.call::<Value>("echo", params!["a".repeat(1024)]);
            batch.notify("note", params![]);
            batch.send().await.map(|results| (results, a))
        })
    };
    within("the batch waiting for room", async {
        while client.stats().backpressure_waits == waits {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(!sending.is_finished(), "the batch waits for room");
    proxy.heal();
    let (mut results, a) = within("the batch", sending).await.unwrap().unwrap();
    assert_eq!(results.take(a).unwrap(), json!(["a".repeat(1024)]));
    assert_no_pending(&client);
}

/// Fills the outbound queue of a client whose server has stopped reading
/// (`proxy.black_hole()`) to within a few bytes: notifications of 8 KiB,
/// then of 64 bytes, each until one has to wait.
async fn fill_queue(client: &jsonrpc_websocket::Client) {
    for size in [8 * 1024, 64] {
        let filler = "f".repeat(size);
        loop {
            let notify = client.notify("fill", params![filler]);
            match tokio::time::timeout(Duration::from_millis(50), notify).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => panic!("{err}"),
                Err(_waiting) => break,
            }
        }
    }
}

/// Fills the outbound queue (see [`fill_queue`]), then starts a batch of one
/// call (1 KiB of params, too big for what is left) that never gets an
/// answer; returns the task waiting for it once the batch waits for room.
async fn batch_waiting_for_room(
    client: &jsonrpc_websocket::Client,
) -> tokio::task::JoinHandle<Result<jsonrpc_websocket::BatchResults, Error>> {
    fill_queue(client).await;
    let waits = client.stats().backpressure_waits;
    let sending = {
        let client = client.clone();
        tokio::task::spawn_local(async move {
            let mut batch = client.batch();
            let _ = batch.call::<Value>("silent", params!["p".repeat(1024)]);
            batch.send().await
        })
    };
    within("the batch waiting for room", async {
        while client.stats().backpressure_waits == waits {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(!sending.is_finished());
    assert_eq!(client.stats().pending, 1);
    sending
}

/// A client (1 h timeout, 32 KiB outbound budget) of a server that
/// answers everything but batches, through a proxy that has stopped
/// forwarding, with a batch waiting for room (see
/// [`batch_waiting_for_room`]).
async fn stalled_batch() -> (
    TestServer,
    test_support::FaultProxy,
    jsonrpc_websocket::Client,
    tokio::task::JoinHandle<Result<jsonrpc_websocket::BatchResults, Error>>,
) {
    let server = batches_unanswered();
    let proxy = test_support::FaultProxy::start(server.addr());
    let client = connect_with(
        RpcConnection::builder(proxy.url())
            .max_queued_bytes(32 * 1024)
            .request_timeout(Duration::from_secs(3600)),
    )
    .await;
    proxy.black_hole();
    let sending = batch_waiting_for_room(&client).await;
    (server, proxy, client, sending)
}

/// A server that answers everything but batches.
fn batches_unanswered() -> TestServer {
    TestServer::start(|msg: &Value| {
        if msg.is_array() {
            Action::Nothing
        } else {
            standard(msg)
        }
    })
}

async fn until_nothing_pending(client: &jsonrpc_websocket::Client) {
    within("entries freed", async {
        while client.stats().pending > 0 {
            let _ = client.addr().send(jsonrpc_websocket::GetStats).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Regression: the batch's wait for room took the caller's only waker slot
/// from the watcher that frees a batch whose caller goes, so a batch that
/// had waited for room and then gone out kept its calls until the answer
/// or the timeout (an hour here) once its caller went.
#[actix_rt::test]
async fn a_batch_that_waited_for_room_is_freed_when_its_caller_goes_after_it_went_out() {
    let (_server, proxy, client, sending) = stalled_batch().await;
    proxy.heal();
    within("the batch written", async {
        while client.stats().queued_bytes > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(client.stats().pending, 1, "sent, no answer yet");
    sending.abort();
    until_nothing_pending(&client).await;
    let stats = client.stats();
    assert_eq!((stats.cancelled, stats.overloaded), (1, 0), "{stats:?}");
    assert_no_pending(&client);
}

/// A caller that goes while its batch still waits for room: the batch is
/// withdrawn at once and never sent, and that is counted as a cancellation,
/// not as the queue refusing it.
#[actix_rt::test]
async fn a_batch_whose_caller_goes_while_it_waits_for_room_is_withdrawn() {
    let (server, proxy, client, sending) = stalled_batch().await;
    sending.abort();
    until_nothing_pending(&client).await;
    let stats = client.stats();
    assert_eq!((stats.cancelled, stats.overloaded), (1, 0), "{stats:?}");
    proxy.heal();
    // The queue drains (the fill notifications) and the batch is not in it.
    let _: Value = within("a call after", client.call("echo", params![1]))
        .await
        .unwrap();
    assert!(
        server.received().iter().all(|m| !m.is_array()),
        "the withdrawn batch was sent"
    );
    assert_no_pending(&client);
}
