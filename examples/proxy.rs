//! A JSON-RPC proxy in a few lines of actix-web: at `/`, a `POST` carries a
//! request, a notification or a batch, and a `GET` that upgrades is a
//! websocket session; everything goes to an upstream websocket server over
//! one shared connection (ids rewritten on the way up, the client's own ids
//! back on the way down), and identical subscriptions of websocket clients
//! share one upstream subscription. `GET /metrics` shows the proxy's
//! counters. A hook keeps to an allow list of methods.
//!
//! With `--upstream URL [--listen ADDR]` it proxies to that server
//! (listening on 127.0.0.1:8545 by default) until Ctrl-C, then closes its
//! websocket clients gracefully. With no arguments it starts the embedded
//! demo server, serves the proxy in front of it on a free port, makes a
//! few HTTP calls through it (a batch among them, and a method the hook
//! refuses), a call over a websocket, subscribes two websocket clients to
//! the same ticks (one upstream subscription), prints the metrics and
//! exits.
//!
//! Run it with `cargo run --features proxy --example proxy`.

#[path = "common/demo_server.rs"]
mod demo_server;

use std::time::Duration;

use actix_web::{web, App, HttpServer};
use jsonrpc_websocket::proxy::{
    self, Decision, Forward, Origin, ProxyConfig, ProxyRequest, Upstreams,
};
use jsonrpc_websocket::{params, ErrorObject, ReconnectPolicy, RpcConnection, SubscriptionItem};

/// The demo must be over by then: CI runs it, where a hang would cost far
/// more than a failure.
const LIMIT: Duration = Duration::from_secs(15);

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return match actix::clock::timeout(LIMIT, demo()).await {
            Ok(result) => result,
            Err(_) => Err(format!("the demo did not finish within {LIMIT:?}").into()),
        };
    }
    let (mut upstream, mut listen) = (None, "127.0.0.1:8545".to_owned());
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--upstream", Some(url)) => upstream = Some(url),
            ("--listen", Some(addr)) => listen = addr,
            _ => return Err("usage: proxy [--upstream URL [--listen ADDR]]".into()),
        }
    }
    let upstream = upstream.ok_or("usage: proxy [--upstream URL [--listen ADDR]]")?;
    serve(&upstream, &listen).await
}

/// Only these methods go upstream; the rest are refused here.
fn allow_list(request: &mut ProxyRequest, _origin: &Origin) -> Decision {
    let allowed = request.method.starts_with("math.")
        || request.method.starts_with("app.")
        || request.method == "log.write"
        || request.method == "demo.subscribe_ticks"
        || request.method == "demo.unsubscribe_ticks";
    if allowed {
        Decision::Forward
    } else {
        Decision::Refuse(ErrorObject::method_not_found(&request.method))
    }
}

/// The proxy's `Forward`: one upstream connection that reconnects when
/// lost, the demo server's subscription methods, and the hook.
async fn forward_to(url: &str) -> Result<Forward, jsonrpc_websocket::Error> {
    let upstream = RpcConnection::builder(url)
        .reconnect(ReconnectPolicy::new())
        .connect()
        .await?;
    let config = ProxyConfig::new().subscription("demo.subscribe_ticks", "demo.unsubscribe_ticks");
    Ok(Forward::new(Upstreams::new([upstream]))
        .config(config)
        .hook(allow_list))
}

/// The routes: JSON-RPC over HTTP and websocket at `/`, the metrics at
/// `/metrics`.
fn routes(config: &mut web::ServiceConfig) {
    config
        .service(proxy::resource("/"))
        .route("/metrics", web::get().to(proxy::metrics));
}

/// Proxies to `upstream` until Ctrl-C; then the websocket clients are
/// answered what they have in flight and closed with 1001.
async fn serve(upstream: &str, listen: &str) -> Result<(), Box<dyn std::error::Error>> {
    let forward = forward_to(upstream).await?;
    let data = web::Data::new(forward.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        // NOTE: stopped below, websockets first, not by actix-web's own
        // Ctrl-C handling (which would leave the sessions open until its
        // shutdown timeout).
        .disable_signals()
        // Answers go out at once (no Nagle delay).
        .tcp_nodelay(true)
        .bind(listen)?;
    for addr in server.addrs() {
        println!("listening on {addr}, proxying to {upstream}");
    }
    let server = server.run();
    let handle = server.handle();
    actix::spawn(async move {
        if actix_web::rt::signal::ctrl_c().await.is_ok() {
            forward.close_websockets(1001, "the proxy is shutting down");
            handle.stop(true).await;
        }
    });
    server.await?;
    Ok(())
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let upstream = demo_server::start()?;
    let forward = forward_to(&format!("ws://{upstream}/")).await?;
    let data = web::Data::new(forward.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .workers(1)
        .disable_signals()
        .tcp_nodelay(true)
        .bind(("127.0.0.1", 0))?;
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix::spawn(server);
    println!("demo server on ws://{upstream}/, the proxy on http://{addr}/");

    let http = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let url = format!("http://{addr}/");
    let post = |body: &'static str| {
        let (http, url) = (&http, &url);
        async move {
            println!("\n--> {body}");
            let mut response = http
                .post(url)
                .insert_header(("content-type", "application/json"))
                .send_body(body)
                .await?;
            let answer = response.body().await?;
            println!(
                "<-- {} {}",
                response.status(),
                String::from_utf8_lossy(&answer)
            );
            Ok::<_, Box<dyn std::error::Error>>(())
        }
    };

    // The client's id, whatever its spelling, comes back as it was written.
    post(r#"{"jsonrpc":"2.0","id":"call-1","method":"math.add","params":[2,3]}"#).await?;
    // The demo server answers batches backwards; the proxy keeps the
    // client's order, each entry on its own (one fails, one is a
    // notification and gets no answer).
    post(
        r#"[{"jsonrpc":"2.0","id":1,"method":"math.add","params":[1,1]},
  {"jsonrpc":"2.0","id":2,"method":"math.divide","params":{"a":1,"b":0}},
  {"jsonrpc":"2.0","method":"log.write","params":["hello from a batch"]},
  {"jsonrpc":"2.0","id":3,"method":"app.users.getUsers"}]"#,
    )
    .await?;
    // Notifications only: 204 No Content.
    post(r#"{"jsonrpc":"2.0","method":"log.write","params":["hello over HTTP"]}"#).await?;
    // Not on the allow list: refused by the hook, never sent upstream.
    post(r#"{"jsonrpc":"2.0","id":4,"method":"demo.askClient","params":["ok?"]}"#).await?;
    // Not JSON at all.
    post("{oops").await?;

    // Over a websocket at the same path (this crate's own client).
    let ws_url = format!("ws://{addr}/");
    let ws = RpcConnection::builder(&ws_url).connect().await?;
    let sum: f64 = ws.call("math.add", params![2, 3]).await?;
    println!("\nover a websocket at {ws_url}: math.add(2, 3) = {sum}");

    // Two websocket clients subscribe to the same ticks: one upstream
    // subscription, each client its own id; the last unsubscribe ends it.
    let other = RpcConnection::builder(&ws_url).connect().await?;
    let mut subscriptions = Vec::new();
    for (name, client) in [("first", &ws), ("second", &other)] {
        let ticks = client
            .subscribe::<u64>("demo.subscribe_ticks", params![], "demo.unsubscribe_ticks")
            .await?;
        println!("the {name} client subscribed: id {}", ticks.id());
        subscriptions.push((name, ticks));
    }
    let shared = forward.stats();
    println!(
        "the proxy holds {} upstream subscription for {} downstream ones",
        shared.upstream_subscriptions, shared.downstream_subscriptions
    );
    for (name, ticks) in &mut subscriptions {
        let mut got = Vec::new();
        while got.len() < 3 {
            match ticks.next().await {
                Some(SubscriptionItem::Item(tick)) => got.push(tick),
                Some(other) => println!("the {name} client: {other:?}"),
                None => return Err(format!("the {name} client's subscription ended").into()),
            }
        }
        println!("the {name} client got ticks {got:?}");
    }
    for (_, ticks) in subscriptions {
        ticks.unsubscribe().await?;
    }
    ws.close().await?;
    other.close().await?;

    let mut response = http.get(format!("http://{addr}/metrics")).send().await?;
    let metrics = response.body().await?;
    println!("\nGET /metrics (the counters that moved, and the latency count):");
    for line in String::from_utf8_lossy(&metrics).lines() {
        let moved = line.starts_with("jsonrpc_proxy_") && !line.ends_with(" 0");
        let shown = !line.contains("_bucket") && !line.contains("_sum");
        if moved && shown {
            println!("  {line}");
        }
    }

    let stats = forward.stats();
    forward.close_websockets(1001, "the demo is over");
    handle.stop(true).await;
    // 4 requests over HTTP, 1 over the websocket, 1 upstream subscribe.
    let expected = (stats.refused, stats.forwarded) == (1, 6)
        && (
            shared.upstream_subscriptions,
            shared.downstream_subscriptions,
        ) == (1, 2);
    if !expected {
        return Err(format!("unexpected counters: {stats:?}, while subscribed {shared:?}").into());
    }
    Ok(())
}
