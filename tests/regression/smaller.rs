//! The smaller defects: limits checked in the right order, answers checked
//! against the size limit, `"id": null` errors and unreadable notification
//! params reported, credentials in the URL.

use jsonrpc_websocket::{params, ErrorObject, RpcConnection, ServerNotification, ServerRequest};

use crate::support::{
    ask, assert_no_pending, connect_with, json, server_request, standard, within, RawConn,
    RawServer, TestServer, Value,
};

#[actix_rt::test]
async fn an_unknown_method_gets_32601_even_when_every_place_is_taken() {
    let server = TestServer::start(standard);
    let (_release, released) = tokio::sync::watch::channel(false);
    let client = connect_with(
        RpcConnection::builder(server.url())
            .max_server_requests(1)
            .register_fn("wait", move |_: ServerRequest| {
                let mut released = released.clone();
                async move {
                    let _ = released.wait_for(|go| *go).await;
                    Ok::<_, ErrorObject>(json!("done"))
                }
            }),
    )
    .await;
    server.push(server_request(1, "wait", json!([])));
    let busy = ask(&server, server_request(2, "wait", json!([]))).await;
    assert_eq!(busy["error"]["code"], -32000, "{busy}");
    let unknown = ask(&server, server_request(3, "no.such", json!([]))).await;
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    assert_eq!(client.stats().server_requests_refused, 1);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_answer_over_the_size_limit_is_refused_with_32603() {
    let server = TestServer::start(standard);
    let client = connect_with(
        RpcConnection::builder(server.url())
            .max_message_size(1024)
            .register_fn("big", |_: ServerRequest| async {
                Ok::<_, ErrorObject>(json!("x".repeat(2000)))
            }),
    )
    .await;
    let answer = ask(&server, server_request(7, "big", json!([]))).await;
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("internal error: response too large ("),
        "{answer}"
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_error_with_a_null_id_is_counted_and_the_connection_goes_on() {
    let server = TestServer::start(standard);
    let client = crate::support::connect(&server.url()).await;
    server.push(
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}}),
    );
    let v: Value = within("call", client.call("echo", params![1]))
        .await
        .unwrap();
    assert_eq!(v, json!([1]));
    let stats = client.stats();
    assert_eq!(
        (stats.null_id_errors, stats.unknown_ids),
        (1, 0),
        "{stats:?}"
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn notification_params_that_cannot_be_read_are_counted_not_delivered_as_null() {
    let server = TestServer::start(standard);
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let client = connect_with(RpcConnection::builder(server.url()).on_notification(
        "n",
        move |n: ServerNotification| {
            let _ = tx.send(n.params);
        },
    ))
    .await;
    // Deeper than serde_json's recursion limit for a Value.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    server.push_text(&format!(
        r#"{{"jsonrpc":"2.0","method":"n","params":{deep}}}"#
    ));
    server.push(json!({"jsonrpc": "2.0", "method": "n", "params": ["readable"]}));
    assert_eq!(
        within("a notification", seen.recv()).await.unwrap(),
        json!(["readable"]),
        "the unreadable one must not arrive as null"
    );
    let stats = client.stats();
    assert_eq!(
        (stats.server_notifications, stats.invalid_messages),
        (2, 1),
        "{stats:?}"
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn credentials_in_the_url_are_sent_as_basic_auth() {
    let server = RawServer::start(|conn: RawConn| async move {
        let auth = conn.request_header("authorization");
        assert_eq!(
            auth.as_deref(),
            Some("Basic YW5uOnMzY3JldA=="),
            "base64(ann:s3cret)"
        );
        assert!(
            conn.request()
                .lines()
                .next()
                .is_some_and(|l| !l.contains("s3cret")),
            "the credentials must not travel in the request line: {}",
            conn.request()
        );
        let mut conn = conn;
        conn.idle(std::time::Duration::from_secs(5)).await;
    });
    let url = server.url().replacen("ws://", "ws://ann:s3cret@", 1);
    let client = connect_with(RpcConnection::builder(url)).await;
    within("close", client.close())
        .await
        .expect("a clean close");
    drop(server);
    let err = within(
        "connect",
        RpcConnection::builder("ws://ann:x@127.0.0.1:9/")
            .bearer_auth("t")
            .connect(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("already carries credentials"),
        "{err}"
    );
}
