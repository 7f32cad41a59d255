//! Messages refused before anything is written: params of the wrong shape
//! and frames over the size limit, for notifications, batches and
//! subscriptions. The caller learns why, nothing reaches the server, and the
//! connection stays usable.

use jsonrpc_websocket::{params, Batch, Error, Params, RpcConnection};
use test_support::{assert_no_pending, connect_with, json, standard, within, TestServer, Value};

/// Proves the connection still works, and that only this call reached the
/// server since `before` messages.
async fn still_usable(server: &TestServer, client: &jsonrpc_websocket::Client, before: usize) {
    let v: Value = within("call", client.call("echo", params!["ok"]))
        .await
        .unwrap();
    assert_eq!(v, json!(["ok"]));
    let received = server.received();
    assert_eq!(received.len(), before + 1, "{received:?}");
    assert_eq!(received[before]["method"], "echo");
}

#[actix_rt::test]
async fn a_notification_with_scalar_params_is_refused_naming_the_method() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url())).await;
    let err = within(
        "notify",
        client.notify("log.write", Params::from_json("42")),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid params for 'log.write': params must be a JSON array or object, got `42`"
    );
    still_usable(&server, &client, 0).await;
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_notification_over_the_size_limit_is_refused_with_its_size() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url()).max_message_size(256)).await;
    let err = within(
        "notify",
        client.notify("log.write", params!["x".repeat(300)]),
    )
    .await
    .unwrap_err();
    let Error::MessageTooLarge {
        size,
        limit: 256,
        inbound: false,
        call: None,
        ..
    } = err
    else {
        panic!("expected an outbound MessageTooLarge, got {err:?}");
    };
    assert!(size > 300, "the whole frame is counted: {size}");
    assert_eq!(
        err.to_string(),
        format!("request of {size} bytes exceeds the limit of 256 bytes")
    );
    still_usable(&server, &client, 0).await;
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_batch_with_one_bad_entry_is_refused_as_a_whole_naming_that_entry() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url())).await;
    let mut batch = Batch::new();
    let _ = batch.call::<Value>("echo", params![1]);
    let _ = batch.call::<Value>("math.sqrt", Params::from_json("\"nine\""));
    let err = within("batch", client.send_batch(batch)).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidParams { method, .. } if method == "math.sqrt"),
        "{err:?}"
    );
    still_usable(&server, &client, 0).await;
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_batch_over_the_size_limit_is_refused_and_nothing_is_sent() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url()).max_message_size(256)).await;
    let mut batch = Batch::new();
    for _ in 0..4 {
        let _ = batch.call::<Value>("echo", params!["y".repeat(80)]);
    }
    let err = within("batch", client.send_batch(batch)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::MessageTooLarge {
                limit: 256,
                inbound: false,
                ..
            }
        ),
        "{err:?}"
    );
    still_usable(&server, &client, 0).await;
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_batch_after_close_is_not_sent() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url())).await;
    within("close", client.close())
        .await
        .expect("a clean close");
    let mut batch = Batch::new();
    let _ = batch.call::<Value>("echo", params![1]);
    let err = within("batch", client.send_batch(batch)).await.unwrap_err();
    assert!(err.is_disconnect(), "{err:?}");
    assert!(server.received().is_empty(), "{:?}", server.received());
}

#[actix_rt::test]
async fn a_subscribe_with_scalar_params_is_refused_naming_the_method() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url())).await;
    let err = within(
        "subscribe",
        client.subscribe::<Value>(
            "chain.subscribe",
            Params::from_json("true"),
            "chain.unsubscribe",
        ),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidParams { method, .. } if method == "chain.subscribe"),
        "{err:?}"
    );
    still_usable(&server, &client, 0).await;
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_unsubscribe_after_the_connection_stopped_names_the_subscription() {
    let server = TestServer::start(|msg: &Value| match msg["method"].as_str() {
        Some("subscribe") => {
            test_support::Action::Reply(test_support::response(&msg["id"], json!("sub-1")))
        }
        _ => standard(msg),
    });
    let client = connect_with(RpcConnection::builder(server.url())).await;
    let sub = within(
        "subscribe",
        client.subscribe::<Value>("subscribe", params![], "unsubscribe"),
    )
    .await
    .unwrap();
    within("close", client.close())
        .await
        .expect("a clean close");
    let err = within("unsubscribe", sub.unsubscribe()).await.unwrap_err();
    assert!(err.is_disconnect(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "not connected: the connection has stopped, so 'unsubscribe of subscription \"sub-1\" of 'subscribe'' was not sent"
    );
}
