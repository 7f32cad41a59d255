//! Subscriptions against an embedded demo server that ticks every 20 ms:
//! reading a few items and unsubscribing, a subscriber that falls behind and
//! is told how many items it missed, and a subscription the server ends.
//!
//! Run it with `cargo run --example subscriptions`.

#[path = "common/demo_server.rs"]
mod demo_server;

use std::time::Duration;

use jsonrpc_websocket::{params, Overflow, RpcConnection, Subscribe, SubscriptionItem};

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = demo_server::start()?;
    let client = RpcConnection::builder(format!("ws://{addr}/"))
        .connect()
        .await?;

    // A stream of typed items: read five ticks, then unsubscribe.
    let mut ticks = client
        .subscribe::<u64>("demo.subscribe_ticks", params![], "demo.unsubscribe_ticks")
        .await?;
    println!("subscribed, id {}", ticks.id());
    let mut seen = 0;
    while seen < 5 {
        match ticks.next().await {
            Some(SubscriptionItem::Item(tick)) => {
                seen += 1;
                println!("  tick {tick}");
            }
            Some(SubscriptionItem::Lagged { missed }) => println!("  (missed {missed} ticks)"),
            Some(other) => println!("  {other:?}"),
            None => break,
        }
    }
    let answer = ticks.unsubscribe().await?;
    println!("unsubscribed; the server answered {answer}");

    // A subscriber that falls behind: its queue holds 2 items and drops the
    // oldest when full. Nothing is dropped silently: a `Lagged` item comes
    // first and says how many were missed.
    let mut slow = client
        .subscribe_with(
            Subscribe::new("demo.subscribe_ticks", params![], "demo.unsubscribe_ticks")
                .capacity(2)
                .overflow(Overflow::DropOldest),
        )
        .await?
        .typed::<u64>();
    println!("slow subscriber, id {}: busy for 200 ms", slow.id());
    actix::clock::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        match slow.next().await {
            Some(SubscriptionItem::Item(tick)) => println!("  tick {tick}"),
            Some(SubscriptionItem::Lagged { missed }) => {
                println!("  lagged: missed {missed} ticks (a real client would catch up here)")
            }
            Some(other) => println!("  {other:?}"),
            None => break,
        }
    }
    // Dropping the handle unsubscribes too, without waiting for the answer.
    drop(slow);

    // The server may end a subscription: `[3]` asks for three ticks only.
    let mut three = client
        .subscribe::<u64>("demo.subscribe_ticks", params![3], "demo.unsubscribe_ticks")
        .await?;
    println!("three ticks, id {}", three.id());
    while let Some(item) = three.next().await {
        match item {
            SubscriptionItem::Item(tick) => println!("  tick {tick}"),
            other => println!("  {other:?}"),
        }
    }
    match three.close_reason() {
        Some(end) => println!("  ended: {end}"),
        None => println!("  ended without a reason"),
    }

    client.close().await?;
    println!(
        "closed; subscriptions left: {}",
        client.stats().subscriptions
    );
    Ok(())
}
