//! The client from `#[tokio::main]`, with no actix system of your own: the
//! connection runs on the crate's background actix thread, and the
//! `Client` (`Send + Sync`) is used from spawned tasks. Shows calls from
//! several tasks, a notification, a request from the server answered by a
//! closure, a subscription, a batch, the connection's events and closing,
//! against an embedded demo server.
//!
//! Run it with `cargo run --example tokio`.

#[path = "common/demo_server.rs"]
mod demo_server;

use futures_util::StreamExt;
use jsonrpc_websocket::{params, ErrorObject, RpcConnection, ServerRequest, SubscriptionItem};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // NOTE: the demo server is actix-web; it gets a thread and a system of
    // its own, as any server this program talked to would be elsewhere.
    let addr = demo_server::start_in_background()?;
    let url = format!("ws://{addr}/");
    println!("demo server listening on {url}");

    let client = RpcConnection::builder(&url)
        .register_fn("client.confirm", |req: ServerRequest| async move {
            // Runs on the connection's thread (jsonrpc-ws-bg), not tokio's.
            println!(
                "  [client] server asks: {} (on thread {:?})",
                req.params,
                std::thread::current().name()
            );
            Ok::<_, ErrorObject>(json!("yes, go ahead"))
        })
        .connect()
        .await?;
    println!("connected from tokio; the connection runs on the crate's background thread");

    // The events, watched from a task of their own.
    let mut events = client.events();
    let watcher = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            println!("  [event] {event:?}");
        }
    });

    // Calls from several tasks at once: the futures are `Send`.
    let tasks: Vec<_> = (1..=3)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.call::<f64>("math.add", params![n, n]).await })
        })
        .collect();
    for (n, task) in (1..=3).zip(tasks) {
        println!("math.add({n}, {n}) from a spawned task = {}", task.await??);
    }

    client
        .notify("log.write", params!["hello from tokio"])
        .await?;
    println!("log.write(...) notification sent");

    let answer: Value = client.call("demo.askClient", params!["Proceed?"]).await?;
    println!("demo.askClient(\"Proceed?\") = {answer}");

    // Three ticks, then the server ends the subscription.
    let mut ticks = client
        .subscribe::<u64>("demo.subscribe_ticks", params![3], "demo.unsubscribe_ticks")
        .await?;
    while let Some(item) = ticks.next().await {
        match item {
            SubscriptionItem::Item(tick) => println!("  tick {tick}"),
            other => println!("  {other:?}"),
        }
    }
    println!("subscription ended: {:?}", ticks.close_reason());

    let mut batch = client.batch();
    let sum = batch.call::<f64>("math.add", params![1, 2]);
    let users = batch.call::<Value>("app.users.getUsers", params![]);
    let mut results = batch.send().await?;
    println!(
        "batch: math.add(1, 2) = {}, app.users.getUsers() = {}",
        results.take(sum)?,
        results.take(users)?
    );

    client.close().await?;
    println!("closed: {}", client.closed().await);
    watcher.await?;
    Ok(())
}
