//! Connection events delivered to actors: a watcher given to the builder and
//! one added later with `WatchEvents` both see the state first and then each
//! transition, in order, ending with `Closed`.

use test_support as support;

use actix::prelude::*;
use jsonrpc_websocket::{ConnectionEvent, RpcConnection, WatchEvents};
use support::{connect_with, standard, within, TestServer};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Forwards every event it handles to a channel the test reads.
struct Monitor {
    seen: UnboundedSender<ConnectionEvent>,
}

impl Actor for Monitor {
    type Context = Context<Self>;
}

impl Handler<ConnectionEvent> for Monitor {
    type Result = ();

    fn handle(&mut self, event: ConnectionEvent, _: &mut Context<Self>) {
        let _ = self.seen.send(event);
    }
}

fn monitor() -> (
    Recipient<ConnectionEvent>,
    UnboundedReceiver<ConnectionEvent>,
) {
    let (seen, rx) = unbounded_channel();
    (Monitor { seen }.start().recipient(), rx)
}

async fn next(rx: &mut UnboundedReceiver<ConnectionEvent>) -> String {
    within("next event", rx.recv())
        .await
        .expect("the monitor is alive")
        .to_string()
}

#[actix_rt::test]
async fn a_builder_watcher_sees_connected_first_and_closed_last() {
    let server = TestServer::start(standard);
    let (recipient, mut events) = monitor();
    let client = connect_with(RpcConnection::builder(server.url()).watch_events(recipient)).await;
    assert_eq!(
        next(&mut events).await,
        format!("connected to {}", server.url())
    );
    within("close", client.close())
        .await
        .expect("a clean close");
    assert_eq!(
        next(&mut events).await,
        "disconnected (code 1000): closed by the client (code 1000)"
    );
    let last = next(&mut events).await;
    assert!(last.starts_with("closed: "), "{last}");
}

#[actix_rt::test]
async fn a_watcher_added_later_is_told_the_current_state_then_the_close() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url())).await;
    let (recipient, mut events) = monitor();
    within("watch", client.addr().send(WatchEvents(recipient)))
        .await
        .expect("the connection is running");
    assert_eq!(
        next(&mut events).await,
        format!("connected to {}", server.url())
    );
    within("close", client.close())
        .await
        .expect("a clean close");
    assert_eq!(
        next(&mut events).await,
        "disconnected (code 1000): closed by the client (code 1000)"
    );
    let last = next(&mut events).await;
    assert!(last.starts_with("closed: "), "{last}");
}
