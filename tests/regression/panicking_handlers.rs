//! A panicking handler becomes a -32603 answer; the connection goes on.

use std::time::Duration;

use jsonrpc_websocket::{params, ErrorObject, RpcConnection, ServerNotification, ServerRequest};

use crate::support::{
    ask, assert_no_pending, connect_with, json, server_request, standard, within, TestServer, Value,
};

#[actix_rt::test]
async fn panics_now_or_later_answer_32603_and_return_their_place() {
    let server = TestServer::start(standard);
    let client = connect_with(
        RpcConnection::builder(server.url())
            // One place: a panic that kept it would refuse every later request.
            .max_server_requests(1)
            .register_fn(
                "boom.now",
                |_: ServerRequest| -> std::future::Ready<Result<Value, ErrorObject>> {
                    panic!("panicked before returning a future")
                },
            )
            .register_fn("boom.first_poll", |_: ServerRequest| async {
                if true {
                    panic!("panicked on the first poll");
                }
                Ok::<Value, ErrorObject>(json!(null))
            })
            .register_fn("boom.later", |_: ServerRequest| async {
                actix_rt::time::sleep(Duration::from_millis(10)).await;
                if true {
                    panic!("panicked after waiting");
                }
                Ok::<Value, ErrorObject>(json!(null))
            })
            .register_fn("fine", |_: ServerRequest| async {
                Ok::<_, ErrorObject>(json!("fine"))
            }),
    )
    .await;
    for (id, method) in [(1, "boom.now"), (2, "boom.first_poll"), (3, "boom.later")] {
        let answer = ask(&server, server_request(id, method, json!([]))).await;
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["error"]["code"], -32603, "{method}: {answer}");
        assert_eq!(
            answer["error"]["message"],
            format!("internal error: the handler for '{method}' panicked")
        );
        // The place came back: the next request is handled.
        assert_eq!(
            ask(&server, server_request(10 + id, "fine", json!([]))).await["result"],
            "fine"
        );
    }
    let v: Value = within("call", client.call("echo", params![1]))
        .await
        .unwrap();
    assert_eq!(v, json!([1]));
    let stats = client.stats();
    assert_eq!(
        (stats.handler_panics, stats.server_requests_in_progress),
        (3, 0)
    );
    assert!(client.is_connected());
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_panicking_listener_is_logged_and_keeps_listening() {
    let server = TestServer::start(standard);
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let client = connect_with(RpcConnection::builder(server.url()).on_notification(
        "tick",
        move |n: ServerNotification| {
            if n.params == json!(["bad"]) {
                panic!("listener panicked");
            }
            let _ = tx.send(n.params);
        },
    ))
    .await;
    for params in [json!(["bad"]), json!(["good"])] {
        server.push(json!({"jsonrpc": "2.0", "method": "tick", "params": params}));
    }
    assert_eq!(
        within("listener", seen.recv()).await.unwrap(),
        json!(["good"])
    );
    assert_eq!(client.stats().handler_panics, 1);
    assert_no_pending(&client);
}
