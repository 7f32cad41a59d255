//! Subscriptions over a real socket: routing by subscription id, both
//! notification shapes, the race with the subscribe answer, each overflow
//! policy with its exact missed count, and every way a subscription ends.

use std::time::Duration;

use actix::prelude::*;
use jsonrpc_websocket::{
    params, Error, Overflow, RpcConnection, Subscribe, SubscriptionEnd, SubscriptionItem,
};
use serde::Deserialize;
use test_support as support;
use test_support::{
    assert_no_pending, connect, connect_with, json, last_request, response, standard, within,
    Action, TestServer, Value,
};

/// `subscribe [name]` answers `"sub-<name>"`; `subscribe_early [name]`
/// sends a first item before its answer and a second after it;
/// `eth_subscribe` answers a hex id; the unsubscribe methods answer `true`.
fn server() -> TestServer {
    TestServer::start(|msg: &Value| {
        let id = msg["id"].clone();
        let name = msg["params"][0].as_str().unwrap_or("x").to_owned();
        match msg["method"].as_str() {
            Some("subscribe") => Action::Reply(response(&id, json!(format!("sub-{name}")))),
            Some("subscribe_early") => {
                let sub = json!(format!("sub-{name}"));
                Action::Many(vec![
                    Action::Reply(item("tick", &sub, json!("early"))),
                    Action::Reply(response(&id, sub.clone())),
                    Action::Reply(item("tick", &sub, json!("late"))),
                ])
            }
            Some("eth_subscribe") => {
                Action::Reply(response(&id, json!("0x9ce59a13059e417087c02d3236a0b1cc")))
            }
            Some("subscribe_null") => Action::Reply(response(&id, Value::Null)),
            Some("subscribe_slow") => Action::Delay(
                Duration::from_millis(300),
                Box::new(Action::Reply(response(&id, json!(format!("sub-{name}"))))),
            ),
            Some("unsubscribe" | "eth_unsubscribe") => Action::Reply(response(&id, json!(true))),
            _ => standard(msg),
        }
    })
}

/// A subscription notification in the jsonrpsee shape.
fn item(method: &str, subscription: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": {"subscription": subscription, "result": result}})
}

/// Makes sure everything pushed so far has been read by the client.
async fn barrier(client: &jsonrpc_websocket::Client) {
    let _: Value = within("barrier", client.call("echo", params![]))
        .await
        .unwrap();
}

async fn next<T: serde::de::DeserializeOwned>(
    sub: &mut jsonrpc_websocket::Subscription<T>,
) -> Option<SubscriptionItem<T>> {
    within("next item", sub.next()).await
}

fn value<T: std::fmt::Debug>(item: Option<SubscriptionItem<T>>) -> T {
    match item {
        Some(SubscriptionItem::Item(v)) => v,
        other => panic!("expected an item, got {other:?}"),
    }
}

fn lagged<T: std::fmt::Debug>(item: Option<SubscriptionItem<T>>) -> u64 {
    match item {
        Some(SubscriptionItem::Lagged { missed }) => missed,
        other => panic!("expected Lagged, got {other:?}"),
    }
}

#[actix_rt::test]
async fn two_concurrent_subscriptions_each_get_only_their_own_items() {
    let server = server();
    let client = connect(&server.url()).await;
    let (a, b) = futures_util::join!(
        client.subscribe::<u64>("subscribe", params!["a"], "unsubscribe"),
        client.subscribe::<u64>("subscribe", params!["b"], "unsubscribe"),
    );
    let (mut a, mut b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        (a.id().to_string(), b.id().to_string()),
        (r#""sub-a""#.into(), r#""sub-b""#.into())
    );
    for n in 1..=3 {
        server.push(item("tick", &json!("sub-a"), json!(n)));
        server.push(item("tick", &json!("sub-b"), json!(100 + n)));
        // Another subscription's, and an id that only looks alike.
        server.push(item("tick", &json!("sub-c"), json!(999)));
        server.push(item("tick", &json!(["sub-a"]), json!(999)));
    }
    barrier(&client).await;
    for n in 1..=3 {
        assert_eq!(value(next(&mut a).await), n);
        assert_eq!(value(next(&mut b).await), 100 + n);
    }
    drop((a, b));
    assert_no_pending(&client);
}

#[derive(Debug, Deserialize, PartialEq)]
struct Head {
    number: String,
}

#[actix_rt::test]
async fn the_ethereum_shape_works_end_to_end() {
    let server = server();
    let client = connect(&server.url()).await;
    let mut heads = within(
        "subscribe",
        client.subscribe::<Head>("eth_subscribe", params!["newHeads"], "eth_unsubscribe"),
    )
    .await
    .unwrap();
    let id = json!("0x9ce59a13059e417087c02d3236a0b1cc");
    server.push(item(
        "eth_subscription",
        &id,
        json!({"number": "0x1b4", "hash": "0x0"}),
    ));
    server.push(item("eth_subscription", &id, json!({"number": "0x1b5"})));
    assert_eq!(
        value(next(&mut heads).await),
        Head {
            number: "0x1b4".into()
        }
    );
    assert_eq!(
        value(next(&mut heads).await),
        Head {
            number: "0x1b5".into()
        }
    );
    let answer = within("unsubscribe", heads.unsubscribe()).await.unwrap();
    assert_eq!(answer, json!(true));
    assert_eq!(
        last_request(&server, "eth_unsubscribe")["params"],
        json!([id])
    );
    assert_no_pending(&client);
}

/// The proxy passes notifications on with the method they came with: the
/// handle says which method carried each item, exactly, including items
/// held before the subscribe answer and a server that changes its method.
#[actix_rt::test]
async fn notification_method_is_the_method_of_the_last_item_yielded() {
    let server = server();
    let client = connect(&server.url()).await;
    let mut sub = within(
        "subscribe",
        client.subscribe::<String>("subscribe_early", params!["m"], "unsubscribe"),
    )
    .await
    .unwrap();
    assert_eq!(sub.notification_method(), None, "before any item");
    assert_eq!(value(next(&mut sub).await), "early");
    assert_eq!(sub.notification_method(), Some("tick"), "a held item");
    assert_eq!(value(next(&mut sub).await), "late");
    server.push_text(
        r#"{"jsonrpc":"2.0","method":"tock\"\u00e9","params":{"subscription":"sub-m","result":"third"}}"#,
    );
    barrier(&client).await;
    assert_eq!(value(next(&mut sub).await), "third");
    assert_eq!(
        sub.notification_method(),
        Some("tock\"é"),
        "as the server wrote it, unescaped"
    );
    drop(sub);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_notification_sent_before_the_answer_is_held_and_delivered_first() {
    let server = server();
    let client = connect(&server.url()).await;
    let mut sub = within(
        "subscribe",
        client.subscribe::<String>("subscribe_early", params!["r"], "unsubscribe"),
    )
    .await
    .unwrap();
    assert_eq!(value(next(&mut sub).await), "early");
    assert_eq!(value(next(&mut sub).await), "late");
    assert_no_pending(&client);
}

/// Subscribes with `overflow` and a queue of 4, then has the server send
/// items 1..=10 while nobody reads.
async fn flooded(
    overflow: Overflow,
) -> (
    TestServer,
    jsonrpc_websocket::Client,
    jsonrpc_websocket::Subscription<u64>,
) {
    let server = server();
    let client = connect(&server.url()).await;
    let sub = within(
        "subscribe",
        client.subscribe_with(
            Subscribe::new("subscribe", params!["slow"], "unsubscribe")
                .capacity(4)
                .overflow(overflow),
        ),
    )
    .await
    .unwrap()
    .typed::<u64>();
    for n in 1..=10 {
        server.push(item("tick", &json!("sub-slow"), json!(n)));
    }
    barrier(&client).await;
    (server, client, sub)
}

#[actix_rt::test]
async fn drop_oldest_says_how_many_were_missed_then_goes_on() {
    let (server, client, mut sub) = flooded(Overflow::DropOldest).await;
    assert_eq!(lagged(next(&mut sub).await), 6);
    for n in 7..=10 {
        assert_eq!(value(next(&mut sub).await), n);
    }
    server.push(item("tick", &json!("sub-slow"), json!(11)));
    assert_eq!(value(next(&mut sub).await), 11);
    assert_eq!(client.stats().subscription_items_dropped, 6);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn drop_newest_keeps_the_first_and_says_what_was_missed_after_them() {
    let (server, client, mut sub) = flooded(Overflow::DropNewest).await;
    for n in 1..=4 {
        assert_eq!(value(next(&mut sub).await), n);
    }
    server.push(item("tick", &json!("sub-slow"), json!(11)));
    assert_eq!(lagged(next(&mut sub).await), 6);
    assert_eq!(value(next(&mut sub).await), 11);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn keep_latest_keeps_only_the_newest() {
    let (_server, client, mut sub) = flooded(Overflow::KeepLatest).await;
    assert_eq!(lagged(next(&mut sub).await), 9);
    assert_eq!(value(next(&mut sub).await), 10);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn close_ends_the_stream_with_lagged_and_unsubscribes() {
    let (server, client, mut sub) = flooded(Overflow::Close).await;
    for n in 1..=4 {
        assert_eq!(value(next(&mut sub).await), n);
    }
    assert!(next(&mut sub).await.is_none(), "the stream ends");
    assert_eq!(
        sub.close_reason(),
        Some(SubscriptionEnd::Lagged { missed: 1 })
    );
    // subscribe, the barrier call, and the unsubscribe the overflow sent.
    let requests = server.wait_received_async(3, support::BOUND).await;
    assert!(
        requests
            .iter()
            .any(|m| m["method"] == "unsubscribe" && m["params"] == json!(["sub-slow"])),
        "{requests:?}"
    );
    barrier(&client).await;
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn dropping_the_handle_unsubscribes_without_waiting() {
    let server = server();
    let client = connect(&server.url()).await;
    let sub = within(
        "subscribe",
        client.subscribe::<Value>("subscribe", params!["d"], "unsubscribe"),
    )
    .await
    .unwrap();
    assert_eq!(client.stats().subscriptions, 1);
    drop(sub);
    let requests = server.wait_received_async(2, support::BOUND).await;
    assert_eq!(
        (requests[1]["method"].clone(), requests[1]["params"].clone()),
        (json!("unsubscribe"), json!(["sub-d"]))
    );
    barrier(&client).await;
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn unsubscribe_returns_the_answer_and_stops_routing_at_once() {
    let server = server();
    let client = connect(&server.url()).await;
    let sub = within(
        "subscribe",
        client.subscribe::<Value>("subscribe", params!["u"], "unsubscribe"),
    )
    .await
    .unwrap();
    assert_eq!(
        within("unsubscribe", sub.unsubscribe()).await.unwrap(),
        json!(true)
    );
    // Late items for it are no longer ours (a listener would get them).
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    within(
        "listen",
        client.on_notification("tick", move |n| {
            let _ = tx.send(n.params);
        }),
    )
    .await
    .unwrap();
    server.push(item("tick", &json!("sub-u"), json!(1)));
    let late = within("late item", seen.recv()).await.unwrap();
    assert_eq!(late["subscription"], "sub-u");
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_subscription_the_server_ends_ends_with_its_error() {
    let server = server();
    let client = connect(&server.url()).await;
    let mut sub = within(
        "subscribe",
        client.subscribe::<u64>("subscribe", params!["e"], "unsubscribe"),
    )
    .await
    .unwrap();
    server.push(item("tick", &json!("sub-e"), json!(1)));
    server.push(json!({"jsonrpc": "2.0", "method": "tick",
        "params": {"subscription": "sub-e", "error": {"code": -32000, "message": "gone"}}}));
    assert_eq!(value(next(&mut sub).await), 1);
    assert!(next(&mut sub).await.is_none());
    assert_eq!(
        sub.close_reason(),
        Some(SubscriptionEnd::ServerClosed {
            error: r#"{"code":-32000,"message":"gone"}"#.into()
        })
    );
    drop(sub);
    barrier(&client).await;
    assert!(
        server
            .received()
            .iter()
            .all(|m| m["method"] != "unsubscribe"),
        "no unsubscribe for what the server ended"
    );
    assert_no_pending(&client);
}

/// Regression: `unsubscribe()` on a subscription the server had ended
/// called a method literally named "unsubscribe" (the route, which knew the
/// real method, was gone), and returned the server's -32601.
#[actix_rt::test]
async fn unsubscribing_what_the_server_ended_sends_nothing_and_answers_null() {
    let server = server();
    let client = connect(&server.url()).await;
    let mut sub = within(
        "subscribe",
        client.subscribe::<u64>("subscribe", params!["z"], "eth_unsubscribe"),
    )
    .await
    .unwrap();
    server.push(json!({"jsonrpc": "2.0", "method": "tick",
        "params": {"subscription": "sub-z", "error": {"code": -32000, "message": "gone"}}}));
    assert!(next(&mut sub).await.is_none());
    let answer = within("unsubscribe", sub.unsubscribe()).await.unwrap();
    assert_eq!(answer, Value::Null);
    barrier(&client).await;
    assert!(
        server
            .received()
            .iter()
            .all(|m| !m["method"].as_str().unwrap_or("").contains("unsubscribe")),
        "no call for a subscription that has ended"
    );
    assert_no_pending(&client);
}

/// A server that answers two subscribe calls with the same id cannot say
/// whose its items are: the second call fails, the first goes on. (Found by
/// a property test of the subscription table: the second silently took the
/// first one's items.)
#[actix_rt::test]
async fn an_id_the_server_hands_out_twice_fails_the_second_subscribe() {
    let server = server();
    let client = connect(&server.url()).await;
    let mut first = within(
        "subscribe",
        client.subscribe::<u64>("subscribe", params!["same"], "unsubscribe"),
    )
    .await
    .unwrap();
    let err = within(
        "subscribe again",
        client.subscribe::<u64>("subscribe", params!["same"], "unsubscribe"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidResponse { reason, .. } if reason.contains("another subscription")),
        "{err}"
    );
    server.push(item("tick", &json!("sub-same"), json!(5)));
    assert_eq!(value(next(&mut first).await), 5);
    assert_eq!(client.stats().subscriptions, 1);
    assert_no_pending(&client);
}

/// A subscribe call given up on (or timed out) before its answer still
/// creates the subscription on the server: its late answer is unsubscribed.
/// (It leaked: the answer was counted as an unknown id.)
#[actix_rt::test]
async fn a_subscribe_given_up_before_its_answer_is_unsubscribed_when_it_comes() {
    let server = server();
    let client = connect(&server.url()).await;
    // Given up: the caller stops waiting.
    let given_up = tokio::time::timeout(
        Duration::from_millis(30),
        client.subscribe::<u64>("subscribe_slow", params!["a"], "unsubscribe"),
    )
    .await;
    assert!(given_up.is_err(), "answered too soon");
    // Timed out.
    let err = within(
        "subscribe",
        client.subscribe_with(
            Subscribe::new("subscribe_slow", params!["b"], "unsubscribe")
                .timeout(Duration::from_millis(30)),
        ),
    )
    .await
    .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let deadline = std::time::Instant::now() + support::BOUND;
    let unsubscribed = loop {
        let ids: Vec<Value> = server
            .received()
            .into_iter()
            .filter(|m| m["method"] == "unsubscribe")
            .map(|m| m["params"][0].clone())
            .collect();
        if ids.len() == 2 || std::time::Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(unsubscribed, [json!("sub-a"), json!("sub-b")]);
    barrier(&client).await;
    assert_eq!(
        client.stats().unknown_ids,
        0,
        "the late answers were expected"
    );
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn the_connection_ending_ends_every_subscription() {
    let server = server();
    let client = connect(&server.url()).await;
    let mut sub = within(
        "subscribe",
        client.subscribe::<u64>("subscribe", params!["c"], "unsubscribe"),
    )
    .await
    .unwrap();
    server.broadcast(Action::Close(4001, "maintenance".into()));
    assert!(next(&mut sub).await.is_none());
    match sub.close_reason() {
        Some(SubscriptionEnd::Disconnected { reason }) => {
            assert!(
                reason.contains("4001") && reason.contains("maintenance"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_item_that_does_not_decode_is_told_and_the_subscription_goes_on() {
    let server = server();
    let client = connect(&server.url()).await;
    let mut sub = within(
        "subscribe",
        client.subscribe::<u64>("subscribe", params!["i"], "unsubscribe"),
    )
    .await
    .unwrap();
    server.push(item("tick", &json!("sub-i"), json!("not a number")));
    server.push(item("tick", &json!("sub-i"), json!(2)));
    match next(&mut sub).await {
        Some(SubscriptionItem::Invalid(err)) => assert!(
            err.to_string().starts_with(
                r#"could not decode an item of subscription "sub-i" of 'subscribe' as u64"#
            ),
            "{err}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(value(next(&mut sub).await), 2);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_result_that_is_no_id_fails_the_subscribe_call() {
    let server = server();
    let client = connect(&server.url()).await;
    let err = within(
        "subscribe",
        client.subscribe::<Value>("subscribe_null", params![], "unsubscribe"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

/// Collects what a subscription sends to an actor.
struct Collector(tokio::sync::mpsc::UnboundedSender<SubscriptionItem>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<SubscriptionItem> for Collector {
    type Result = ();

    fn handle(&mut self, item: SubscriptionItem, _: &mut Context<Self>) {
        let _ = self.0.send(item);
    }
}

#[actix_rt::test]
async fn items_can_go_to_an_actor_which_is_told_the_end() {
    let server = server();
    let client =
        connect_with(RpcConnection::builder(server.url()).request_timeout(Duration::from_secs(5)))
            .await;
    let (tx, mut got) = tokio::sync::mpsc::unbounded_channel();
    let collector = Collector(tx).start();
    let sub = within(
        "subscribe",
        client.subscribe_with(
            Subscribe::new("subscribe", params!["actor"], "unsubscribe")
                .deliver_to(collector.recipient()),
        ),
    )
    .await
    .unwrap();
    server.push(item("tick", &json!("sub-actor"), json!({"n": 1})));
    match within("item", got.recv()).await {
        Some(SubscriptionItem::Item(v)) => assert_eq!(v, json!({"n": 1})),
        other => panic!("{other:?}"),
    }
    within("unsubscribe", sub.unsubscribe()).await.unwrap();
    match within("end", got.recv()).await {
        Some(SubscriptionItem::Closed(SubscriptionEnd::Unsubscribed)) => {}
        other => panic!("{other:?}"),
    }
    assert_no_pending(&client);
}
