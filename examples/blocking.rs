//! The blocking client, for scripts and synchronous code: a plain `fn main`,
//! no async runtime. Shows calls, a notification, a request from the server
//! answered by a closure, a batch, a subscription read as an iterator, and
//! closing, against an embedded demo server.
//!
//! Run it with `cargo run --example blocking`.

#[path = "common/demo_server.rs"]
mod demo_server;

use std::time::Duration;

use jsonrpc_websocket::{blocking, params, ErrorObject, ServerRequest, SubscriptionItem};
use serde_json::{json, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = demo_server::start_in_background()?;
    let url = format!("ws://{addr}/");
    println!("demo server listening on {url}");

    let client = blocking::Client::builder(&url)
        .request_timeout(Duration::from_secs(10))
        // Answered on the connection's thread while this one waits.
        .register_fn("client.confirm", |req: ServerRequest| async move {
            println!("  [client] server asks: {}", req.params);
            Ok::<_, ErrorObject>(json!("yes, go ahead"))
        })
        .connect_blocking()?;
    println!("connected");

    let sum: f64 = client.call("math.add", params![1, 2, 3.5])?;
    println!("math.add(1, 2, 3.5)        = {sum}");
    let quotient: f64 = client.call("math.divide", json!({"a": 10, "b": 4}))?;
    println!("math.divide(a=10, b=4)     = {quotient}");
    match client.call::<f64>("math.divide", json!({"a": 1, "b": 0})) {
        Err(err) => println!("math.divide(a=1, b=0)      -> {err}"),
        Ok(q) => println!("unexpected: {q}"),
    }
    client.notify("log.write", params!["hello from a plain thread"])?;
    println!("log.write(...) notification sent");
    let answer: Value = client.call("demo.askClient", params!["Proceed?"])?;
    println!("demo.askClient(\"Proceed?\") = {answer}");

    let mut batch = client.batch();
    let sum = batch.call::<f64>("math.add", params![1, 2]);
    let users = batch.call::<Value>("app.users.getUsers", params![]);
    batch.notify("log.write", params!["in a batch"]);
    let mut results = batch.send()?;
    println!(
        "batch: math.add(1, 2) = {}, app.users.getUsers() = {}",
        results.take(sum)?,
        results.take(users)?
    );

    // An iterator that blocks for each item: five ticks, then unsubscribe.
    let mut ticks =
        client.subscribe::<u64>("demo.subscribe_ticks", params![], "demo.unsubscribe_ticks")?;
    for item in ticks.by_ref().take(5) {
        match item {
            SubscriptionItem::Item(tick) => println!("  tick {tick}"),
            other => println!("  {other:?}"),
        }
    }
    println!("unsubscribed; the server answered {}", ticks.unsubscribe()?);

    client.close()?;
    println!("closed: {}", client.closed()?);
    Ok(())
}
