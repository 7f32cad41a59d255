//! A batch against an embedded demo server: two typed calls, a call that
//! fails and a notification, sent as one message. The server answers in
//! reverse order; each outcome is taken from its own slot, in submission
//! order, and the failing call fails alone.
//!
//! Run it with `cargo run --example batch`.

#[path = "common/demo_server.rs"]
mod demo_server;

use jsonrpc_websocket::{params, Error, RpcConnection};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct User {
    name: String,
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = demo_server::start()?;
    let client = RpcConnection::builder(format!("ws://{addr}/"))
        .connect()
        .await?;

    let mut batch = client.batch();
    let sum = batch.call::<f64>("math.add", params![1, 2, 3.5]);
    let users = batch.call::<Vec<User>>("app.users.getUsers", params![]);
    let quotient = batch.call::<f64>("math.divide", json!({"a": 1, "b": 0}));
    batch.notify("log.write", params!["sent within a batch"]);
    let mut results = batch.send().await?;
    println!("one message, {} calls answered:", results.len());

    println!("  math.add(1, 2, 3.5)     = {}", results.take(sum)?);
    let names: Vec<String> = results.take(users)?.into_iter().map(|u| u.name).collect();
    println!("  app.users.getUsers()    = {names:?}");
    match results.take(quotient) {
        Err(Error::Rpc { error, .. }) => println!(
            "  math.divide(a=1, b=0)   -> server error {}: {}",
            error.code, error.message
        ),
        other => println!("  math.divide(a=1, b=0)   -> unexpected: {other:?}"),
    }

    client.close().await?;
    Ok(())
}
