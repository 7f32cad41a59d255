//! Calls and notifications over a real socket: what arrives at the server,
//! and what comes back.

use test_support as support;

use std::time::Duration;

use jsonrpc_websocket::{params, Call, Error, GetStats, Notify, Params};
use serde::Deserialize;
use support::{
    assert_no_pending, connect, json, last_request, standard, within, RawServer, TestServer, Value,
};

#[actix_rt::test]
async fn positional_params_arrive_as_an_array() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let echoed: Value = within("call", client.call("echo", params![1, "two", [3]]))
        .await
        .unwrap();
    assert_eq!(echoed, json!([1, "two", [3]]));
    let request = last_request(&server, "echo");
    assert_eq!(
        request,
        json!({"jsonrpc": "2.0", "id": request["id"], "method": "echo", "params": [1, "two", [3]]})
    );
    assert!(request["id"].is_u64());
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn named_params_arrive_as_an_object() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let echoed: Value = within("call", client.call("echo", json!({"bar": 1, "baz": 2})))
        .await
        .unwrap();
    assert_eq!(echoed, json!({"bar": 1, "baz": 2}));
    assert_eq!(
        last_request(&server, "echo")["params"],
        json!({"bar": 1, "baz": 2})
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_single_object_can_be_sent_positionally() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let _: Value = within("call", client.call("echo", params![json!({"foo": "bar"})]))
        .await
        .unwrap();
    assert_eq!(
        last_request(&server, "echo")["params"],
        json!([{"foo": "bar"}])
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn no_params_leaves_the_member_out() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let echoed: Value = within("call", client.call("echo", params![]))
        .await
        .unwrap();
    assert_eq!(echoed, Value::Null);
    let request = last_request(&server, "echo");
    assert!(request.get("params").is_none(), "{request}");
    assert_eq!(request.as_object().unwrap().len(), 3, "{request}");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn dotted_and_namespaced_names_are_sent_whole() {
    let server = TestServer::start(|msg: &Value| {
        let id = msg["id"].clone();
        support::Action::Reply(support::response(&id, msg["method"].clone()))
    });
    let client = connect(&server.url()).await;
    let direct: String = within("call", client.call("foo.bar", params![]))
        .await
        .unwrap();
    assert_eq!(direct, "foo.bar");
    let users = client.namespace("app.users");
    let nested: String = within("call", users.call("getUsers", params![]))
        .await
        .unwrap();
    assert_eq!(nested, "app.users.getUsers");
    let deeper: String = within("call", users.namespace("admin").call("list", params![]))
        .await
        .unwrap();
    assert_eq!(deeper, "app.users.admin.list");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_notification_carries_no_id_and_gets_no_reply() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    within("notify", client.notify("log.write", params!["hi"]))
        .await
        .unwrap();
    within(
        "namespaced notify",
        client.namespace("log").notify("flush", params![]),
    )
    .await
    .unwrap();
    // A call after the notifications proves they were written first.
    let _: Value = within("call", client.call("echo", params![1]))
        .await
        .unwrap();
    let all = server.received();
    assert_eq!(
        all[0],
        json!({"jsonrpc": "2.0", "method": "log.write", "params": ["hi"]})
    );
    assert_eq!(all[1], json!({"jsonrpc": "2.0", "method": "log.flush"}));
    assert_eq!(client.stats().notifications_sent, 2);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_thousand_concurrent_calls_answered_out_of_order_each_get_their_own_result() {
    const N: usize = 1000;
    let server = RawServer::start(|mut conn| async move {
        let mut requests = Vec::with_capacity(N);
        while requests.len() < N {
            match conn.read_json().await {
                Some(request) => requests.push(request),
                None => return,
            }
        }
        // A fixed shuffle: stride through the list with a step coprime to N.
        for k in 0..N {
            let request = &requests[(k * 379 + 17) % N];
            let result = json!({"echo": request["params"][0], "id": request["id"]});
            conn.send_json(&support::response(&request["id"], result))
                .await;
        }
        conn.idle(Duration::from_secs(5)).await;
    });
    let client = connect(&server.url()).await;
    let calls = (0..N).map(|i| {
        let client = client.clone();
        async move {
            let result: Value = client.call("work", params![i]).await.unwrap();
            (i, result)
        }
    });
    let results = within("1000 calls", futures_util::future::join_all(calls)).await;
    for (i, result) in results {
        assert_eq!(
            result["echo"],
            json!(i),
            "call {i} got another call's result"
        );
    }
    assert_eq!(client.stats().responses, N as u64);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_server_error_becomes_rpc_error_with_code_message_and_data() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let err = within(
        "call",
        client.call::<Value>(
            "error",
            json!({"code": -32042, "message": "nope", "data": {"why": [1]}}),
        ),
    )
    .await
    .unwrap_err();
    let Error::Rpc { call, error } = &err else {
        panic!("expected Error::Rpc, got {err:?}");
    };
    assert_eq!(call.method, "error");
    assert_eq!(error.code, -32042);
    assert_eq!(error.message, "nope");
    assert_eq!(error.data_as::<Value>(), Some(json!({"why": [1]})));
    assert!(err.to_string().contains("'error' (id "), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
    assert_no_pending(&client);
}

#[derive(Debug, Deserialize, PartialEq)]
struct Point {
    x: i32,
    y: i32,
}

#[actix_rt::test]
async fn typed_results_decode_directly_and_mismatches_name_the_call() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let point: Point = within("call", client.call("echo", json!({"x": 1, "y": 2})))
        .await
        .unwrap();
    assert_eq!(point, Point { x: 1, y: 2 });
    let sum: i64 = within("call", client.call("add", params![2, 3]))
        .await
        .unwrap();
    assert_eq!(sum, 5);
    let err = within("call", client.call::<Point>("echo", params!["no"]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("could not decode the result of 'echo' (id "),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn actors_call_through_the_address() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let addr = client.addr();
    let sum = within("send", addr.send(Call::new("add", params![4, 5])))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sum, json!(9));
    let typed: u8 = within("send", addr.send(Call::new("add", params![1, 1]).typed()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(typed, 2);
    within("notify", addr.send(Notify::new("n", Params::none())))
        .await
        .unwrap()
        .unwrap();
    let stats = within("stats", addr.send(GetStats)).await.unwrap();
    assert_eq!(
        (stats.calls_sent, stats.notifications_sent, stats.pending),
        (2, 1, 0)
    );
}

#[actix_rt::test]
async fn invalid_params_fail_the_call_without_sending_it() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let err = within(
        "call",
        client.call::<Value>("echo", Params::positional(&json!({"a": 1}))),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::InvalidParams { ref method, .. } if method == "echo"),
        "{err:?}"
    );
    assert_eq!(client.stats().calls_sent, 0);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn calls_beyond_the_in_flight_limit_are_refused_when_told_to_fail() {
    let server = TestServer::start(standard);
    let client = within(
        "connect",
        jsonrpc_websocket::RpcConnection::builder(server.url())
            .max_in_flight(2)
            .backpressure(jsonrpc_websocket::Backpressure::Fail)
            .connect(),
    )
    .await
    .unwrap();
    let slow = |ms: u64| client.call::<Value>("sleep", params![ms]);
    let (a, b, c) = within("calls", async {
        futures_util::join!(slow(300), slow(300), slow(0))
    })
    .await;
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert!(
        matches!(
            c,
            Err(Error::Overloaded {
                bound: jsonrpc_websocket::Bound::InFlight(2),
                ..
            })
        ),
        "{c:?}"
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn close_fails_pending_calls_and_later_calls_say_not_connected() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let pending = {
        let client = client.clone();
        actix_rt::spawn(async move { client.call::<Value>("silent", params![]).await })
    };
    // The call is in the table once the server has seen it.
    server.wait_received_async(1, support::BOUND).await;
    within("close", client.close())
        .await
        .expect("a clean close");
    let err = within("pending call", pending).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Closed { code: 1000, .. }), "{err:?}");
    assert!(err.to_string().contains("'silent' (id 1)"), "{err}");
    let after = within("call after close", client.call::<Value>("echo", params![]))
        .await
        .unwrap_err();
    assert!(matches!(after, Error::NotConnected { .. }), "{after:?}");
    assert_eq!(
        after.to_string(),
        "not connected: the connection has stopped, so 'echo' was not sent"
    );
    let notify = within("notify after close", client.notify("n", params![]))
        .await
        .unwrap_err();
    assert!(notify.is_disconnect());
    // The server saw a proper close frame.
    let closes = server.wait_client_closes_async(1, support::BOUND).await;
    assert_eq!(closes[0].as_ref().map(|c| c.0), Some(1000));
    assert!(!client.is_connected());
    within("second close", client.close())
        .await
        .expect("closing twice is harmless");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_endless_timeout_is_accepted_not_a_panic() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let v: Value = within(
        "call",
        client.send(Call::new("echo", params![1]).timeout(Duration::MAX).typed()),
    )
    .await
    .unwrap();
    assert_eq!(v, json!([1]));
    assert_no_pending(&client);
}

/// Records the thread it was decoded on.
struct DecodedOn(std::thread::ThreadId);

impl<'de> Deserialize<'de> for DecodedOn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(DecodedOn(std::thread::current().id()))
    }
}

#[actix_rt::test]
async fn client_results_are_decoded_by_the_caller_not_on_the_connection() {
    let server = TestServer::start(standard);
    // The connection on an arbiter thread of its own; the caller here.
    let arbiter = actix::Arbiter::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let url = server.url();
    // The connect future is not Send (awc's client is per thread): start it there.
    arbiter.spawn_fn(move || {
        actix_rt::spawn(async move {
            let _ = tx.send(
                jsonrpc_websocket::RpcConnection::builder(url)
                    .connect()
                    .await,
            );
        });
    });
    let client = within("connect", rx).await.unwrap().unwrap();
    let here = std::thread::current().id();
    let DecodedOn(by_client) = within("call", client.call("echo", params![1]))
        .await
        .unwrap();
    assert_eq!(by_client, here, "Client::call decodes in the caller's task");
    // `Call::typed` through the address decodes on the connection's thread,
    // as documented.
    let DecodedOn(by_actor) = within(
        "send",
        client.addr().send(Call::new("echo", params![1]).typed()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_ne!(by_actor, here);
    within("close", client.close())
        .await
        .expect("a clean close");
    assert_no_pending(&client);
    arbiter.stop();
}

#[actix_rt::test]
async fn calls_beyond_the_in_flight_limit_wait_for_a_place_by_default() {
    let server = TestServer::start(standard);
    let client = support::connect_with(
        jsonrpc_websocket::RpcConnection::builder(server.url()).max_in_flight(2),
    )
    .await;
    let slow = |ms: u64| client.call::<Value>("sleep", params![ms]);
    let (a, b, c) = within("calls", async {
        futures_util::join!(slow(100), slow(100), slow(0))
    })
    .await;
    assert!(a.is_ok() && b.is_ok() && c.is_ok(), "{a:?} {b:?} {c:?}");
    let stats = client.stats();
    assert_eq!(
        (stats.backpressure_waits, stats.overloaded),
        (1, 0),
        "{stats:?}"
    );
    assert_no_pending(&client);
}
