//! Riding out a server restart: an embedded demo server is stopped and
//! started again on the same port while a client with a reconnect policy
//! goes on. It prints the connection's events as they come and shows a
//! subscription that survives the restart (its `Resubscribed { down_for }`
//! item tells of the gap), a call pending at the drop failing with a
//! disconnect error, a call that opted in with `retry_on_reconnect()` sent
//! again and answered, and new calls succeeding.
//!
//! Run it with `cargo run --example reconnect`.

#[path = "common/demo_server.rs"]
mod demo_server;

use std::time::Duration;

use futures_util::StreamExt;
use jsonrpc_websocket::{
    params, Call, ReconnectPolicy, RpcConnection, Subscription, SubscriptionItem,
};

/// The whole example must be over by then: it is run by CI, where a hang
/// would cost far more than a failure.
const LIMIT: Duration = Duration::from_secs(15);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match actix::clock::timeout(LIMIT, run()).await {
        Ok(result) => result,
        Err(_) => Err(format!("the example did not finish within {LIMIT:?}").into()),
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut server = demo_server::DemoServer::start()?;
    let url = format!("ws://{}/", server.addr());
    println!("demo server listening on {url}");

    let client = RpcConnection::builder(&url)
        // Quick steps: the server is back within a moment. (The default
        // policy starts at 100 ms and doubles up to 30 s.)
        .reconnect(
            ReconnectPolicy::new()
                .initial_delay(ms(50))
                .max_delay(ms(500)),
        )
        .connect()
        .await?;

    // The connection's events, as they come; the stream starts with the
    // current state and ends after `Closed`.
    let mut events = client.events();
    let printer = actix::spawn(async move {
        while let Some(event) = events.next().await {
            println!("  [event] {event}");
        }
    });

    let mut ticks = client
        .subscribe::<u64>("demo.subscribe_ticks", params![], "demo.unsubscribe_ticks")
        .await?;
    println!("subscribed to ticks, id {}", ticks.id());
    read_ticks(&mut ticks, 3).await?;

    // Two slow calls are in flight when the server goes away.
    let plain = {
        let client = client.clone();
        actix::spawn(async move { client.call::<String>("demo.sleep", params![5_000]).await })
    };
    let retried = {
        let client = client.clone();
        actix::spawn(async move {
            let call = Call::new("demo.sleep", params![1_000]).retry_on_reconnect();
            client.send(call.typed::<String>()).await
        })
    };
    // NOTE: a moment for both calls to be written; either way they are
    // pending when the server stops (they are answered after 1 and 5 s).
    actix::clock::sleep(ms(50)).await;

    println!("stopping the server: its connections drop without a close frame");
    server.stop().await;
    match plain.await? {
        Err(err) if err.is_disconnect() => println!("the plain call failed: {err}"),
        other => return Err(format!("expected a disconnect error, got {other:?}").into()),
    }
    println!("reconnecting: {}", client.is_reconnecting());

    actix::clock::sleep(ms(300)).await;
    println!("starting the server again on the same port");
    server.restart().await?;

    // Ticks read before the drop may still be queued; then the gap.
    loop {
        match ticks.next().await {
            Some(SubscriptionItem::Item(tick)) => {
                println!("  tick {tick} (queued before the drop)")
            }
            Some(SubscriptionItem::Resubscribed { down_for }) => {
                println!("subscription made again after {down_for:?} down; ticks sent meanwhile are lost");
                break;
            }
            Some(other) => println!("  {other:?}"),
            None => {
                return Err(format!("the subscription ended: {:?}", ticks.close_reason()).into())
            }
        }
    }
    read_ticks(&mut ticks, 3).await?;

    let answer = retried.await??;
    println!("the call that opted in was sent again and answered {answer:?}");
    let sum: f64 = client.call("math.add", params![2, 3]).await?;
    println!("a new call: math.add(2, 3) = {sum}");
    println!("reconnects so far: {}", client.stats().reconnects);

    let answer = ticks.unsubscribe().await?;
    println!("unsubscribed; the server answered {answer}");
    client.close().await?;
    // Ends after the `Closed` event.
    printer.await?;
    Ok(())
}

/// Prints the subscription's next `n` ticks.
async fn read_ticks(ticks: &mut Subscription<u64>, n: usize) -> Result<(), String> {
    let mut seen = 0;
    while seen < n {
        match ticks.next().await {
            Some(SubscriptionItem::Item(tick)) => {
                seen += 1;
                println!("  tick {tick}");
            }
            Some(other) => println!("  {other:?}"),
            None => {
                return Err(format!(
                    "the subscription ended: {:?}",
                    ticks.close_reason()
                ))
            }
        }
    }
    Ok(())
}
