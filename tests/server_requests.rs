//! Requests and notifications from the server: routing to handler actors and
//! closures, answers with the server's ids, batches, and concurrency.

use test_support as support;

use std::time::Duration;

use actix::prelude::*;
use jsonrpc_websocket::{
    params, Client, ErrorObject, RpcConnection, ServerNotification, ServerRequest,
};
use support::{
    ask, assert_no_pending, connect, connect_with, json, server_request, standard, within,
    TestServer, Value, BOUND,
};

/// Answers with the method it was called as and the params it got.
struct Recorder {
    tag: &'static str,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<ServerRequest> for Recorder {
    type Result = Result<Value, ErrorObject>;

    fn handle(&mut self, req: ServerRequest, _: &mut Context<Self>) -> Self::Result {
        if req.method.ends_with(".fail") {
            return Err(ErrorObject::new(-32001, "refused").with_data(&json!({"by": self.tag})));
        }
        Ok(json!({"by": self.tag, "method": req.method, "params": req.params}))
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

impl Handler<Stop> for Recorder {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Collects notifications.
struct Inbox {
    seen: tokio::sync::mpsc::UnboundedSender<ServerNotification>,
}

impl Actor for Inbox {
    type Context = Context<Self>;
}

impl Handler<ServerNotification> for Inbox {
    type Result = ();

    fn handle(&mut self, n: ServerNotification, _: &mut Context<Self>) {
        let _ = self.seen.send(n);
    }
}

async fn with_recorders(server: &TestServer, routes: &[(&str, &'static str)]) -> Client {
    let mut builder = RpcConnection::builder(server.url());
    for (route, tag) in routes {
        builder = builder.register(*route, Recorder { tag }.start().recipient());
    }
    within("connect", builder.connect()).await.unwrap()
}

#[actix_rt::test]
async fn an_exact_name_handler_answers() {
    let server = TestServer::start(standard);
    let client = with_recorders(&server, &[("namespace.client_method", "exact")]).await;
    let answer = ask(
        &server,
        server_request(json!(1), "namespace.client_method", json!([1, 2])),
    )
    .await;
    assert_eq!(
        answer,
        json!({"jsonrpc": "2.0", "id": 1, "result": {"by": "exact", "method": "namespace.client_method", "params": [1, 2]}})
    );
    assert_eq!(client.stats().server_requests, 1);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_namespace_handler_gets_every_method_under_it_by_full_name() {
    let server = TestServer::start(standard);
    let client = with_recorders(&server, &[("ui.", "ns")]).await;
    for (id, method) in ["ui.confirm", "ui.dialog.open", "ui.a.b.c"]
        .iter()
        .enumerate()
    {
        let answer = ask(&server, server_request(json!(id), method, json!({"k": id}))).await;
        assert_eq!(answer["result"]["method"], json!(method));
        assert_eq!(answer["result"]["params"], json!({"k": id}));
    }
    let outside = ask(&server, server_request(json!(9), "uix.confirm", json!([]))).await;
    assert_eq!(outside["error"]["code"], -32601);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn exact_beats_prefix_and_longer_prefix_beats_shorter() {
    let server = TestServer::start(standard);
    let client = with_recorders(
        &server,
        &[
            ("app.", "short"),
            ("app.users.", "long"),
            ("app.users.get", "exact"),
            ("*", "any"),
        ],
    )
    .await;
    for (method, by) in [
        ("app.users.get", "exact"),
        ("app.users.list", "long"),
        ("app.start", "short"),
        ("other", "any"),
    ] {
        let answer = ask(&server, server_request(json!(method), method, json!([]))).await;
        assert_eq!(answer["result"]["by"], by, "{method}: {answer}");
    }
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn closure_handlers_answer_and_can_be_registered_and_removed_at_run_time() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url()).register_fn(
        "math.double",
        |req: ServerRequest| async move {
            let n = req.params[0]
                .as_i64()
                .ok_or_else(|| ErrorObject::invalid_params("need a number"))?;
            Ok(json!(n * 2))
        },
    ))
    .await;
    assert_eq!(
        ask(
            &server,
            server_request(json!(1), "math.double", json!([21]))
        )
        .await["result"],
        42
    );
    let refused = ask(
        &server,
        server_request(json!(2), "math.double", json!(["x"])),
    )
    .await;
    assert_eq!(refused["error"]["code"], -32602);
    within(
        "register",
        client.register_fn("later", |_| async { Ok(json!("added")) }),
    )
    .await
    .unwrap();
    assert_eq!(
        ask(&server, server_request(json!(3), "later", json!([]))).await["result"],
        "added"
    );
    within("unregister", client.unregister("later"))
        .await
        .unwrap();
    assert_eq!(
        ask(&server, server_request(json!(4), "later", json!([]))).await["error"]["code"],
        -32601
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_closure_on_a_namespace_sees_which_method_was_called() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url()).register_fn(
        "ui.",
        |req: ServerRequest| async move {
            Ok::<_, ErrorObject>(json!({"method": req.method, "id": req.id.to_string()}))
        },
    ))
    .await;
    for (id, method) in [(1, "ui.a"), (2, "ui.b")] {
        let answer = ask(&server, server_request(json!(id), method, json!([]))).await;
        assert_eq!(
            answer["result"],
            json!({"method": method, "id": id.to_string()}),
            "{answer}"
        );
    }
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_unknown_method_gets_32601_naming_it_and_the_connection_stays_usable() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let answer = ask(
        &server,
        server_request(json!(5), "no.such.method", json!([])),
    )
    .await;
    assert_eq!(answer["id"], 5);
    assert_eq!(answer["error"]["code"], -32601);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no.such.method"),
        "{answer}"
    );
    let v: Value = within("call", client.call("echo", params![1]))
        .await
        .unwrap();
    assert_eq!(v, json!([1]));
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_handlers_error_object_is_sent_as_returned() {
    let server = TestServer::start(standard);
    let client = with_recorders(&server, &[("x.", "rec")]).await;
    let answer = ask(&server, server_request(json!(1), "x.fail", json!([]))).await;
    assert_eq!(
        answer["error"],
        json!({"code": -32001, "message": "refused", "data": {"by": "rec"}})
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_stopped_handler_actor_gives_32603_and_is_dropped() {
    let server = TestServer::start(standard);
    let handler = Recorder { tag: "gone" }.start();
    let client = connect_with(
        RpcConnection::builder(server.url()).register("svc.", handler.clone().recipient()),
    )
    .await;
    assert_eq!(
        ask(&server, server_request(json!(1), "svc.x", json!([]))).await["result"]["by"],
        "gone"
    );
    within("stop", handler.send(Stop)).await.unwrap();
    // A message sent after Stop finds the mailbox closed once the actor is gone.
    within("stopped", async {
        while handler.send(Stop).await.is_ok() {}
    })
    .await;
    let answer = ask(&server, server_request(json!(2), "svc.x", json!([]))).await;
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    // Dropped from the registry: now nobody handles it.
    let answer = ask(&server, server_request(json!(3), "svc.x", json!([]))).await;
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn string_number_and_null_ids_are_echoed_exactly() {
    let server = TestServer::start(standard);
    let client = with_recorders(&server, &[("*", "any")]).await;
    for id in [
        json!(7),
        json!(-3),
        json!(2.5),
        json!("abc"),
        json!(""),
        json!("\u{e9}\"q"),
        Value::Null,
    ] {
        let answer = ask(&server, server_request(id.clone(), "m", json!([]))).await;
        assert_eq!(answer["id"], id, "{answer}");
        assert!(answer.as_object().unwrap().contains_key("id"));
    }
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_inbound_batch_is_answered_with_one_batch() {
    let server = TestServer::start(standard);
    let client = connect_with(
        RpcConnection::builder(server.url())
            .register_fn("slow", |_| async {
                actix_rt::time::sleep(Duration::from_millis(50)).await;
                Ok(json!("slow"))
            })
            .register_fn("fast", |_| async { Ok(json!("fast")) }),
    )
    .await;
    let seen = server.received().len();
    server.push(json!([
        server_request(json!(1), "slow", json!([])),
        {"jsonrpc": "2.0", "method": "note"},
        server_request(json!("b"), "fast", json!([])),
        server_request(json!(3), "missing", json!([])),
        {"jsonrpc": "2.0", "id": 4, "method": 5},
    ]));
    let received = server.wait_received_async(seen + 1, BOUND).await;
    let answer = &received[seen];
    let items = answer
        .as_array()
        .unwrap_or_else(|| panic!("not a batch: {answer}"));
    assert_eq!(
        items.len(),
        4,
        "one answer per request, none for the notification: {answer}"
    );
    assert_eq!(
        items[0],
        json!({"jsonrpc": "2.0", "id": 1, "result": "slow"})
    );
    assert_eq!(
        items[1],
        json!({"jsonrpc": "2.0", "id": "b", "result": "fast"})
    );
    assert_eq!(items[2]["error"]["code"], -32601);
    assert_eq!(
        (items[3]["id"].clone(), items[3]["error"]["code"].clone()),
        (json!(4), json!(-32600))
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_invalid_request_gets_32600_with_its_id() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let answer = ask(
        &server,
        json!({"jsonrpc": "2.0", "id": 8, "method": "m", "params": 3}),
    )
    .await;
    assert_eq!(
        (answer["id"].clone(), answer["error"]["code"].clone()),
        (json!(8), json!(-32600))
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_notification_reaches_two_listeners_and_is_never_answered() {
    let server = TestServer::start(standard);
    let (seen, mut actors_seen) = tokio::sync::mpsc::unbounded_channel();
    let first = Inbox { seen: seen.clone() }.start();
    let second = Inbox { seen }.start();
    let (tx, mut closure_seen) = tokio::sync::mpsc::unbounded_channel();
    let client = connect_with(
        RpcConnection::builder(server.url())
            .listen("market.tick", first.recipient())
            .listen("market.tick", second.recipient())
            .on_notification("market.", move |n: ServerNotification| {
                let _ = tx.send(n);
            }),
    )
    .await;
    server.push(json!({"jsonrpc": "2.0", "method": "market.tick", "params": {"price": 10}}));
    // A call after the notification: if an answer to the notification had
    // been sent, the server would have received it first.
    let v: Value = within("call", client.call("echo", params![1]))
        .await
        .unwrap();
    assert_eq!(v, json!([1]));
    assert_eq!(
        server.received().len(),
        1,
        "only the call reached the server: {:?}",
        server.received()
    );
    let by_closure = within("closure listener", closure_seen.recv())
        .await
        .unwrap();
    assert_eq!(by_closure.params, json!({"price": 10}));
    for _ in 0..2 {
        let n = within("two listeners", actors_seen.recv()).await.unwrap();
        assert_eq!(
            (n.method.as_str(), &n.params),
            ("market.tick", &json!({"price": 10}))
        );
    }
    assert_eq!(client.stats().server_notifications, 1);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_slow_handler_does_not_delay_other_calls() {
    let server = TestServer::start(standard);
    // The handler answers only once released: no clock involved.
    let (release, released) = tokio::sync::watch::channel(false);
    let client = connect_with(RpcConnection::builder(server.url()).register_fn(
        "slow",
        move |_: ServerRequest| {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|go| *go).await;
                Ok::<_, ErrorObject>(json!("finally"))
            }
        },
    ))
    .await;
    server.push(server_request(json!("slow-1"), "slow", json!([])));
    let calls = (0..100).map(|i| {
        let client = client.clone();
        async move { client.call::<Value>("echo", params![i]).await }
    });
    let results = within("100 calls", futures_util::future::join_all(calls)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // 1 request in, 100 calls in, no answer to the slow request yet.
    let received = server.received();
    assert_eq!(received.len(), 100, "{received:?}");
    release.send(true).unwrap();
    let received = server.wait_received_async(101, BOUND).await;
    assert_eq!(
        received[100],
        json!({"jsonrpc": "2.0", "id": "slow-1", "result": "finally"})
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_flood_of_requests_beyond_the_limit_is_refused_not_queued() {
    let server = TestServer::start(standard);
    let (release, released) = tokio::sync::watch::channel(false);
    let client = connect_with(
        RpcConnection::builder(server.url())
            .max_server_requests(2)
            .register_fn("wait", move |_| {
                let mut released = released.clone();
                async move {
                    let _ = released.wait_for(|go| *go).await;
                    Ok(json!("done"))
                }
            }),
    )
    .await;
    server.push(server_request(json!(1), "wait", json!([])));
    server.push(server_request(json!(2), "wait", json!([])));
    let refused = ask(&server, server_request(json!(3), "wait", json!([]))).await;
    assert_eq!(refused["error"]["code"], -32000, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit 2"),
        "{refused}"
    );
    release.send(true).unwrap();
    let answers = server.wait_received_async(3, BOUND).await;
    let done: Vec<&Value> = answers.iter().filter(|a| a["result"] == "done").collect();
    assert_eq!(done.len(), 2, "{answers:?}");
    // Capacity is back once they answered.
    assert_eq!(
        ask(&server, server_request(json!(4), "wait", json!([]))).await["result"],
        "done"
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn handler_work_still_running_is_dropped_when_the_connection_closes() {
    /// Tells the test when the handler's future is dropped.
    struct DropSignal(Option<tokio::sync::oneshot::Sender<()>>);
    impl Drop for DropSignal {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }
    let server = TestServer::start(standard);
    let (started_tx, started) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (dropped_tx, dropped) = tokio::sync::oneshot::channel::<()>();
    let dropped_tx = std::sync::Mutex::new(Some(dropped_tx));
    let client = connect_with(RpcConnection::builder(server.url()).register_fn(
        "forever",
        move |_| {
            let signal = DropSignal(dropped_tx.lock().unwrap().take());
            let started = started_tx.clone();
            async move {
                let _signal = signal;
                let _ = started.send(());
                std::future::pending::<()>().await;
                Ok(json!("never"))
            }
        },
    ))
    .await;
    server.push(server_request(json!(1), "forever", json!([])));
    let mut started = started;
    within("handler start", started.recv()).await.unwrap();
    within("close", client.close())
        .await
        .expect("a clean close");
    within("handler dropped", dropped).await.unwrap();
    assert_no_pending(&client);
}
