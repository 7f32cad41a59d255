//! Handling requests and notifications from the server: a handler actor
//! registered for a whole namespace, a closure for one method, and a
//! notification listener, against an embedded demo server that calls them.
//!
//! Run it with `cargo run --example server_requests`.

#[path = "common/demo_server.rs"]
mod demo_server;

use actix::prelude::*;
use jsonrpc_websocket::{params, ErrorObject, RpcConnection, ServerNotification, ServerRequest};
use serde_json::{json, Value};

/// Answers every `ui.*` request; it sees the full method name.
struct Ui {
    answered: usize,
}

impl Actor for Ui {
    type Context = Context<Self>;
}

impl Handler<ServerRequest> for Ui {
    type Result = Result<Value, ErrorObject>;

    fn handle(&mut self, req: ServerRequest, _: &mut Context<Self>) -> Self::Result {
        self.answered += 1;
        println!("  [ui actor] {} {} (id {})", req.method, req.params, req.id);
        match req.method.as_str() {
            "ui.ping" => Ok(json!({"pong": self.answered})),
            other => Err(ErrorObject::method_not_found(other)),
        }
    }
}

/// Prints the server's notifications.
struct Newsreader;

impl Actor for Newsreader {
    type Context = Context<Self>;
}

impl Handler<ServerNotification> for Newsreader {
    type Result = ();

    fn handle(&mut self, n: ServerNotification, _: &mut Context<Self>) {
        println!("  [newsreader] {}: {}", n.method, n.params);
    }
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = demo_server::start()?;
    let client = RpcConnection::builder(format!("ws://{addr}/"))
        .register("ui.", Ui { answered: 0 }.start().recipient())
        .register_fn("client.confirm", |req: ServerRequest| async move {
            let question = req.params[0].as_str().unwrap_or("?").to_owned();
            Ok::<_, ErrorObject>(json!(format!("confirmed: {question}")))
        })
        .listen("news.", Newsreader.start().recipient())
        .connect()
        .await?;

    // Each of these makes the server call us back before it answers.
    let pinged: Value = client.call("demo.ping", params![1]).await?;
    println!("demo.ping       -> {pinged}");
    let asked: Value = client.call("demo.askClient", params!["deploy?"]).await?;
    println!("demo.askClient  -> {asked}");

    let stats = client.stats();
    println!(
        "server requests answered: {}, notifications received: {}",
        stats.server_requests, stats.server_notifications
    );
    client.close().await?;
    Ok(())
}
