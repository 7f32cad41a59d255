//! Builder settings a user relies on: extra endpoints are checked like the
//! first, `Debug` never shows secrets, and the connection-wide defaults for
//! listener and subscription queues apply to each new queue.

use test_support as support;

use actix::prelude::*;
use jsonrpc_websocket::{
    params, Error, Overflow, RpcConnection, ServerNotification, SubscriptionEnd, SubscriptionItem,
};
use support::{
    assert_no_pending, connect_with, json, response, standard, within, Action, TestServer, Value,
};

fn invalid_config(result: Result<jsonrpc_websocket::Client, Error>) -> String {
    match result {
        Err(Error::InvalidConfig { reason }) => reason,
        Err(other) => panic!("expected InvalidConfig, got {other:?}"),
        Ok(_) => panic!("expected InvalidConfig, got a connection"),
    }
}

#[actix_rt::test]
async fn a_bad_extra_endpoint_is_reported_by_connect_before_dialling() {
    let server = TestServer::start(standard);
    let reason = invalid_config(
        within(
            "connect",
            RpcConnection::builder(server.url())
                .endpoint("ftp://backup.example/")
                .connect(),
        )
        .await,
    );
    assert_eq!(
        reason,
        r#"bad URL "ftp://backup.example/": unsupported scheme "ftp" (use ws:// or wss://)"#
    );
    let reason = invalid_config(
        within(
            "connect",
            RpcConnection::builder(server.url())
                .endpoint("ws://:9/")
                .connect(),
        )
        .await,
    );
    assert!(reason.ends_with("missing host"), "{reason}");
    assert_eq!(server.connections(), 0, "nothing was dialled");
}

#[actix_rt::test]
async fn credentials_in_an_extra_endpoint_conflict_with_explicit_auth() {
    let server = TestServer::start(standard);
    let reason = invalid_config(
        within(
            "connect",
            RpcConnection::builder(server.url())
                .bearer_auth("t0ken")
                .endpoint("ws://user:secret@backup.example/")
                .connect(),
        )
        .await,
    );
    assert_eq!(
        reason,
        "the URL carries credentials (user:password@) and basic_auth or bearer_auth was set too"
    );
}

#[test]
fn debug_of_a_builder_names_headers_but_shows_no_secret() {
    let builder = RpcConnection::builder("ws://primary.example/rpc")
        .endpoint("ws://backup.example/rpc")
        .header("x-api-key", "hunter2")
        .bearer_auth("t0ken-value");
    let text = format!("{builder:?}");
    for shown in [
        "ws://primary.example/rpc",
        "ws://backup.example/rpc",
        "x-api-key",
    ] {
        assert!(text.contains(shown), "{shown} missing from {text}");
    }
    for secret in ["hunter2", "t0ken-value"] {
        assert!(!text.contains(secret), "{secret} leaked in {text}");
    }
}

/// `subscribe` answers `"sub-1"` and then pushes `count` items at once.
fn flooding_server(count: u64) -> TestServer {
    TestServer::start(move |msg: &Value| match msg["method"].as_str() {
        Some("subscribe") => {
            let mut actions = vec![Action::Reply(response(&msg["id"], json!("sub-1")))];
            for n in 1..=count {
                actions.push(Action::Reply(json!({
                    "jsonrpc": "2.0",
                    "method": "tick",
                    "params": {"subscription": "sub-1", "result": n},
                })));
            }
            Action::Many(actions)
        }
        Some("unsubscribe") => Action::Reply(response(&msg["id"], json!(true))),
        _ => standard(msg),
    })
}

#[actix_rt::test]
async fn the_default_subscription_queue_settings_apply_to_each_subscription() {
    let server = flooding_server(5);
    let client = connect_with(
        RpcConnection::builder(server.url())
            .subscription_capacity(2)
            .subscription_overflow(Overflow::Close),
    )
    .await;
    let mut sub = within(
        "subscribe",
        client.subscribe::<u64>("subscribe", params![], "unsubscribe"),
    )
    .await
    .unwrap();
    // Everything pushed has been read once the next answer arrives.
    let _: Value = within("barrier", client.call("echo", params![]))
        .await
        .unwrap();
    let mut items = Vec::new();
    while let Some(item) = within("next", sub.next()).await {
        match item {
            SubscriptionItem::Item(n) => items.push(n),
            other => panic!("Close ends the stream without a marker, got {other:?}"),
        }
    }
    assert_eq!(items, [1, 2], "the queue held two items");
    assert_eq!(
        sub.close_reason(),
        Some(SubscriptionEnd::Lagged { missed: 1 }),
        "the third item overflowed the queue and closed it"
    );
    assert_no_pending(&client);
}

/// Handles one notification at a time, each only when the test says so.
struct Gated {
    seen: tokio::sync::mpsc::UnboundedSender<ServerNotification>,
    gate: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Actor for Gated {
    type Context = Context<Self>;
}

impl Handler<ServerNotification> for Gated {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, n: ServerNotification, _: &mut Context<Self>) -> Self::Result {
        let seen = self.seen.clone();
        let gate = std::sync::Arc::clone(&self.gate);
        Box::pin(async move {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
            let _ = seen.send(n);
        })
    }
}

#[actix_rt::test]
async fn the_default_listener_queue_settings_apply_to_each_listener() {
    let server = TestServer::start(standard);
    let (seen, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let listener = Gated {
        seen,
        gate: std::sync::Arc::clone(&gate),
    }
    .start();
    let client = connect_with(
        RpcConnection::builder(server.url())
            .listener_capacity(1)
            .listener_overflow(Overflow::DropNewest)
            .listen("tick", listener.recipient()),
    )
    .await;
    for n in 1..=5 {
        server.push(json!({"jsonrpc": "2.0", "method": "tick", "params": [n]}));
    }
    let _: Value = within("barrier", client.call("echo", params![]))
        .await
        .unwrap();
    // The listener is stuck on at most one notification and its queue holds
    // one more: the rest were dropped, counted, and told with the next one.
    gate.add_permits(10);
    let first = within("first", rx.recv()).await.unwrap();
    assert_eq!(
        (&first.params, first.missed),
        (&json!([1]), 0),
        "DropNewest keeps the oldest"
    );
    let dropped = client.stats().notifications_dropped;
    assert!((3..=4).contains(&dropped), "dropped {dropped}");
    if dropped == 3 {
        let second = within("second", rx.recv()).await.unwrap();
        assert_eq!((&second.params, second.missed), (&json!([2]), 0));
    }
    server.push(json!({"jsonrpc": "2.0", "method": "tick", "params": [6]}));
    let next = within("after the drops", rx.recv()).await.unwrap();
    assert_eq!((&next.params, next.missed), (&json!([6]), dropped));
    assert_no_pending(&client);
}
