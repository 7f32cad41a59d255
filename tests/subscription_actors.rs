//! Subscriptions delivered to an actor that falls behind: it is told how many
//! items it missed (never silently), whichever overflow policy drops them,
//! and the end still comes last.

use std::sync::Arc;

use actix::prelude::*;
use jsonrpc_websocket::{
    params, Overflow, RpcConnection, Subscribe, SubscriptionEnd, SubscriptionItem,
};
use test_support::{
    assert_no_pending, connect_with, json, response, standard, within, Action, TestServer, Value,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;

/// `subscribe` answers `"sub-1"` and at once pushes items 1 to 5.
fn flooding_server() -> TestServer {
    TestServer::start(|msg: &Value| match msg["method"].as_str() {
        Some("subscribe") => {
            let mut actions = vec![Action::Reply(response(&msg["id"], json!("sub-1")))];
            for n in 1..=5 {
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

/// Handles each item only when the test lets it through.
struct Gated {
    seen: UnboundedSender<SubscriptionItem>,
    gate: Arc<Semaphore>,
}

impl Actor for Gated {
    type Context = Context<Self>;
}

impl Handler<SubscriptionItem> for Gated {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, item: SubscriptionItem, _: &mut Context<Self>) -> Self::Result {
        let seen = self.seen.clone();
        let gate = Arc::clone(&self.gate);
        Box::pin(async move {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
            let _ = seen.send(item);
        })
    }
}

fn gated() -> (
    Recipient<SubscriptionItem>,
    UnboundedReceiver<SubscriptionItem>,
    Arc<Semaphore>,
) {
    let (seen, rx) = unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let actor = Gated {
        seen,
        gate: Arc::clone(&gate),
    }
    .start();
    (actor.recipient(), rx, gate)
}

async fn next(rx: &mut UnboundedReceiver<SubscriptionItem>) -> SubscriptionItem {
    within("next item", rx.recv())
        .await
        .expect("the actor is alive")
}

#[actix_rt::test]
async fn an_actor_behind_a_drop_oldest_queue_is_told_what_it_missed_then_gets_the_newest() {
    let server = flooding_server();
    let client = connect_with(RpcConnection::builder(server.url())).await;
    let (recipient, mut rx, gate) = gated();
    let sub = within(
        "subscribe",
        client.subscribe_with(
            Subscribe::new("subscribe", params![], "unsubscribe")
                .capacity(1)
                .overflow(Overflow::DropOldest)
                .deliver_to(recipient),
        ),
    )
    .await
    .unwrap();
    // All five items have been read once the next answer arrives.
    let _: Value = within("barrier", client.call("echo", params![]))
        .await
        .unwrap();
    gate.add_permits(100);
    // The actor may have been handed item 1 before the rest arrived; either
    // way every item is delivered or counted, and the newest comes last.
    let mut delivered = Vec::new();
    let mut missed = 0;
    while delivered.last() != Some(&json!(5)) {
        match next(&mut rx).await {
            SubscriptionItem::Item(v) => delivered.push(v),
            SubscriptionItem::Lagged { missed: n } => {
                assert_eq!(missed, 0, "one gap, told once");
                missed = n;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(missed > 0, "the actor fell behind: it must be told");
    assert_eq!(
        delivered.len() as u64 + missed,
        5,
        "{delivered:?} + {missed}"
    );
    within("unsubscribe", sub.unsubscribe()).await.unwrap();
    assert!(matches!(
        next(&mut rx).await,
        SubscriptionItem::Closed(SubscriptionEnd::Unsubscribed)
    ));
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn drops_at_the_tail_of_a_drop_newest_queue_are_told_before_the_end() {
    let server = flooding_server();
    let client = connect_with(RpcConnection::builder(server.url())).await;
    let (recipient, mut rx, gate) = gated();
    let sub = within(
        "subscribe",
        client.subscribe_with(
            Subscribe::new("subscribe", params![], "unsubscribe")
                .capacity(1)
                .overflow(Overflow::DropNewest)
                .deliver_to(recipient),
        ),
    )
    .await
    .unwrap();
    let _: Value = within("barrier", client.call("echo", params![]))
        .await
        .unwrap();
    // No item came after the drops, so only the end of the queue can tell.
    within("unsubscribe", sub.unsubscribe()).await.unwrap();
    gate.add_permits(100);
    let mut delivered = Vec::new();
    let missed = loop {
        match next(&mut rx).await {
            SubscriptionItem::Item(v) => delivered.push(v),
            SubscriptionItem::Lagged { missed } => break missed,
            other => panic!("expected the missed count before {other:?}"),
        }
    };
    assert_eq!(delivered[0], json!(1), "DropNewest keeps the oldest");
    assert_eq!(
        delivered.len() as u64 + missed,
        5,
        "{delivered:?} + {missed}"
    );
    assert!(matches!(
        next(&mut rx).await,
        SubscriptionItem::Closed(SubscriptionEnd::Unsubscribed)
    ));
    assert_no_pending(&client);
}
