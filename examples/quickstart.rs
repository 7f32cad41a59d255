//! Starts a demo JSON-RPC server on 127.0.0.1, connects to it, and shows
//! positional, named and namespaced calls, a notification, a server error, a
//! request from the server answered by a closure, and closing.
//!
//! Run it with `cargo run --example quickstart`.

#[path = "common/demo_server.rs"]
mod demo_server;

use jsonrpc_websocket::{params, Error, ErrorObject, RpcConnection, ServerRequest};
use serde_json::{json, Value};

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = demo_server::start()?;
    let url = format!("ws://{addr}/");
    println!("demo server listening on {url}");

    let client = RpcConnection::builder(&url)
        // What the server may ask of us: the Python library's
        // `server.client.confirm = fn`.
        .register_fn("client.confirm", |req: ServerRequest| async move {
            println!("  [client] server asks: {}", req.params);
            Ok::<_, ErrorObject>(json!("yes, go ahead"))
        })
        .connect()
        .await?;
    println!("connected");

    let sum: f64 = client.call("math.add", params![1, 2, 3.5]).await?;
    println!("math.add(1, 2, 3.5)          = {sum}");

    let quotient: f64 = client.call("math.divide", json!({"a": 10, "b": 4})).await?;
    println!("math.divide(a=10, b=4)       = {quotient}");

    let users: Value = client
        .namespace("app.users")
        .call("getUsers", params![])
        .await?;
    println!("app.users.getUsers()         = {users}");

    client
        .notify("log.write", params!["hello from the quickstart"])
        .await?;
    println!("log.write(...) notification sent (no reply expected)");

    match client
        .call::<f64>("math.divide", json!({"a": 1, "b": 0}))
        .await
    {
        Err(Error::Rpc { error, .. }) => println!(
            "math.divide(a=1, b=0)        -> server error {}: {}",
            error.code, error.message
        ),
        other => println!("unexpected: {other:?}"),
    }

    let answer: Value = client.call("demo.askClient", params!["Proceed?"]).await?;
    println!("demo.askClient(\"Proceed?\")   = {answer}");

    client.close().await?;
    println!("closed; pending calls left: {}", client.stats().pending);
    Ok(())
}
