//! Handlers and listeners added and removed through a `Client` while the
//! connection is open, and the namespace handle's own accessors.

use test_support as support;

use actix::prelude::*;
use jsonrpc_websocket::{
    params, ErrorObject, RegisterListener, RpcConnection, ServerNotification, ServerRequest,
};
use support::{
    ask, assert_no_pending, connect_with, json, response, server_request, standard, within, Action,
    TestServer, Value,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Answers every request with its method name.
struct Namer;

impl Actor for Namer {
    type Context = Context<Self>;
}

impl Handler<ServerRequest> for Namer {
    type Result = Result<Value, ErrorObject>;

    fn handle(&mut self, req: ServerRequest, _: &mut Context<Self>) -> Self::Result {
        Ok(json!({"handled": req.method}))
    }
}

/// Forwards notifications to a channel; when the actor stops (nobody holds
/// its address any more) the channel ends.
struct Inbox {
    seen: UnboundedSender<ServerNotification>,
}

impl Actor for Inbox {
    type Context = Context<Self>;
}

impl Handler<ServerNotification> for Inbox {
    type Result = ();

    fn handle(&mut self, n: ServerNotification, _: &mut Context<Self>) {
        let _ = self.seen.send(n);
    }
}

/// A listener actor whose only address is the recipient returned.
fn inbox() -> (
    Recipient<ServerNotification>,
    UnboundedReceiver<ServerNotification>,
) {
    let (seen, rx) = unbounded_channel();
    (Inbox { seen }.start().recipient(), rx)
}

fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

#[actix_rt::test]
async fn a_handler_actor_registered_on_an_open_connection_answers() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url())).await;
    assert_eq!(
        ask(&server, server_request(json!(1), "tools.hash", json!([]))).await["error"]["code"],
        -32601,
        "nothing answers before the registration"
    );
    within(
        "register",
        client.register("tools.", Namer.start().recipient()),
    )
    .await
    .unwrap();
    assert_eq!(
        ask(&server, server_request(json!(2), "tools.hash", json!([]))).await["result"],
        json!({"handled": "tools.hash"})
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn listeners_added_at_run_time_get_notifications_and_unlisten_lets_them_go() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url())).await;
    let (plain, mut plain_seen) = inbox();
    let (tuned, mut tuned_seen) = inbox();
    within("listen", client.listen("market.tick", plain))
        .await
        .unwrap();
    within(
        "listener",
        client.listener(RegisterListener::actor("market.", tuned).capacity(4)),
    )
    .await
    .unwrap();

    server.push(notification("market.tick", json!({"price": 10})));
    for seen in [&mut plain_seen, &mut tuned_seen] {
        let n = within("notification", seen.recv()).await.unwrap();
        assert_eq!(
            (n.method.as_str(), &n.params),
            ("market.tick", &json!({"price": 10}))
        );
    }

    // Removing the route drops the connection's hold on the listener actor:
    // with no address left it stops, and its channel ends.
    within("unlisten", client.unlisten("market.tick"))
        .await
        .unwrap();
    assert!(
        within("the removed listener stops", plain_seen.recv())
            .await
            .is_none(),
        "an unlistened actor must get nothing more"
    );
    // The namespace listener is still there.
    server.push(notification("market.tick", json!({"price": 11})));
    let n = within("notification", tuned_seen.recv()).await.unwrap();
    assert_eq!(n.params, json!({"price": 11}));
    assert_eq!(client.stats().server_notifications, 2);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_namespace_knows_its_prefix_and_calls_under_it() {
    // Answers each call with the method name it arrived under.
    let server =
        TestServer::start(|msg: &Value| Action::Reply(response(&msg["id"], msg["method"].clone())));
    let client = connect_with(RpcConnection::builder(server.url())).await;
    let eth = client.namespace("eth");
    assert_eq!(eth.prefix(), "eth");
    let nested = eth.namespace("debug");
    assert_eq!(nested.prefix(), "eth.debug");
    let method = within("call_value", nested.call_value("trace", params![]))
        .await
        .unwrap();
    assert_eq!(method, json!("eth.debug.trace"));
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_clients_debug_says_whether_it_is_connected() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url())).await;
    let open = format!("{client:?}");
    assert!(
        open.starts_with("Client { connected: true, stats: "),
        "{open}"
    );
    within("close", client.close())
        .await
        .expect("a clean close");
    let closed = format!("{client:?}");
    assert!(closed.starts_with("Client { connected: false"), "{closed}");
}
