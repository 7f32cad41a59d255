//! The proxy's websocket front end over real sockets: an actix-web server
//! with `proxy::resource("/")` in front of `TestServer` upstreams, and real
//! downstream clients (awc websockets for exact bytes, this crate's own
//! `RpcConnection` where its API reads better).
//!
//! Answers reach only the client that asked (50 websocket and 50 HTTP
//! clients at once, with colliding, string and null ids); batches keep
//! their order with failing entries alone; subscriptions are shared
//! upstream and reach only their subscribers; each upstream-loss policy
//! over a restart on the same port, with a call in flight; failover;
//! hostile input answered to its sender only; a client that does not read
//! is closed; per-session mode passes server requests through; a graceful
//! close answers what is in flight first. Every test ends with nothing
//! pending upstream.
#![cfg(feature = "proxy")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use awc::ws::{Frame, Message};
use futures_util::{SinkExt as _, StreamExt as _};
use jsonrpc_websocket::proxy::{self, Forward, ProxyConfig, UpstreamLoss, Upstreams};
use jsonrpc_websocket::{
    params, Client, ErrorObject, Overflow, ReconnectPolicy, RpcConnection, ServerRequest,
    SubscriptionItem,
};
use test_support::{
    ask, assert_no_pending, connect, connect_with, json, response, server_request, standard,
    within, Action, TestServer, Value, BOUND,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- the upstream ------------------------------------------------------------

/// `standard`, plus `eth_subscribe` (answers `0xup<n>`, n counting across
/// restarts; params `["refused"]` are refused) and `eth_unsubscribe`
/// (`true`).
fn upstream_handler(ids: Arc<AtomicU64>) -> impl Fn(&Value) -> Action + Send + Sync + 'static {
    move |msg: &Value| match msg["method"].as_str() {
        Some("eth_subscribe") if msg["params"] == json!(["refused"]) => Action::Reply(json!({
            "jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32000, "message": "refused"}
        })),
        Some("eth_subscribe") => {
            let n = ids.fetch_add(1, Ordering::SeqCst) + 1;
            Action::Reply(response(&msg["id"], json!(format!("0xup{n}"))))
        }
        Some("eth_unsubscribe") => Action::Reply(response(&msg["id"], json!(true))),
        _ => standard(msg),
    }
}

fn upstream() -> (TestServer, Arc<AtomicU64>) {
    let ids = Arc::new(AtomicU64::new(0));
    (TestServer::start(upstream_handler(Arc::clone(&ids))), ids)
}

/// An upstream notification of subscription `sub`.
fn head(sub: &str, n: u64) -> Value {
    json!({"jsonrpc": "2.0", "method": "eth_subscription",
           "params": {"subscription": sub, "result": {"number": n}}})
}

fn count(server: &TestServer, method: &str) -> usize {
    server
        .received()
        .iter()
        .filter(|m| m["method"] == method)
        .count()
}

/// Quick retries, so that restarts are ridden out fast.
fn reconnecting(url: &str) -> jsonrpc_websocket::ConnectionBuilder {
    RpcConnection::builder(url).reconnect(
        ReconnectPolicy::new()
            .initial_delay(ms(20))
            .max_delay(ms(200)),
    )
}

// ---- the proxy ---------------------------------------------------------------

struct Proxy {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    forward: Forward,
}

impl Proxy {
    /// `proxy::resource("/")` and `GET /metrics` on 127.0.0.1:0.
    fn start(forward: Forward) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = forward.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .service(proxy::resource("/"))
                .route("/metrics", web::get().to(proxy::metrics))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Proxy {
            addr,
            handle,
            forward,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Waits (bounded) until the proxy's counters satisfy `check`.
    async fn until(&self, what: &str, check: impl Fn(&proxy::ProxyStats) -> bool) {
        let wait = async {
            while !check(&self.forward.stats()) {
                actix_rt::time::sleep(ms(10)).await;
            }
        };
        if tokio::time::timeout(BOUND, wait).await.is_err() {
            panic!("{what}: not within {BOUND:?}; {:?}", self.forward.stats());
        }
    }

    /// Every session gone, every subscription with it.
    async fn assert_idle(&self) {
        self.until("sessions and subscriptions all ended", |s| {
            s.sessions == 0 && s.downstream_subscriptions == 0 && s.upstream_subscriptions == 0
        })
        .await;
    }

    async fn stop(self) {
        within("proxy stop", self.handle.stop(true)).await;
    }
}

fn config() -> ProxyConfig {
    ProxyConfig::new().timeout(Duration::from_secs(5))
}

/// A proxy in front of one upstream connection (reconnecting).
async fn proxy_for(upstream: &TestServer, config: ProxyConfig) -> (Proxy, Client) {
    let client = connect_with(reconnecting(&upstream.url())).await;
    let forward = Forward::new(Upstreams::new([client.clone()])).config(config);
    (Proxy::start(forward), client)
}

// ---- a raw downstream client -------------------------------------------------

struct Ws {
    framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
}

async fn ws(url: &str) -> Ws {
    let (_, framed) = within(
        "ws connect",
        awc::Client::new()
            .ws(url)
            .max_frame_size(64 * 1024 * 1024)
            .connect(),
    )
    .await
    .unwrap_or_else(|err| panic!("ws connect to {url}: {err}"));
    Ws { framed }
}

impl Ws {
    async fn send(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        within("ws send", self.framed.send(Message::Text(text.into())))
            .await
            .unwrap();
    }

    async fn send_json(&mut self, value: Value) {
        self.send(value.to_string()).await;
    }

    /// The next frame (pings are answered on the way).
    async fn frame(&mut self) -> Frame {
        loop {
            let frame = within("ws frame", self.framed.next())
                .await
                .expect("the proxy closed the socket")
                .expect("a websocket protocol error");
            if let Frame::Ping(payload) = frame {
                self.framed.send(Message::Pong(payload)).await.unwrap();
                continue;
            }
            return frame;
        }
    }

    /// The next text message, parsed.
    async fn recv(&mut self) -> Value {
        match self.frame().await {
            Frame::Text(bytes) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The close frame's code, skipping whatever comes before it.
    async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.framed.next().await {
                Some(Ok(Frame::Close(reason))) => return reason.map(|r| u16::from(r.code)),
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("protocol error before the close: {err}"),
                None => panic!("the socket ended without a close frame"),
            }
        }
    }

    async fn call(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send_json(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        self.recv().await
    }
}

fn request(id: impl Into<Value>, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.into(), "method": method, "params": params})
}

// ---- the tests ---------------------------------------------------------------

/// The ids every downstream client uses: 1..=10, "s", "", and null.
fn colliding_ids() -> Vec<Value> {
    let mut ids: Vec<Value> = (1..=10).map(|n| json!(n)).collect();
    ids.extend([json!("s"), json!(""), Value::Null]);
    ids
}

/// Client `c`'s `n`th request (some take longer, so that answers come
/// back out of order) and the result it must get.
fn own_request(c: u64, n: usize, id: &Value) -> (Value, Value) {
    if n.is_multiple_of(3) {
        (
            request(id.clone(), "sleep", json!([n as u64 * 3])),
            json!("slept"),
        )
    } else {
        (request(id.clone(), "echo", json!([c, n])), json!([c, n]))
    }
}

/// Websocket client `c`: every request at once, then each answer matched
/// to its request by id.
async fn websocket_client(url: String, c: u64) {
    let mut ws = ws(&url).await;
    let ids = colliding_ids();
    for (n, id) in ids.iter().enumerate() {
        ws.send_json(own_request(c, n, id).0).await;
    }
    let mut seen = Vec::new();
    for _ in 0..ids.len() {
        let answer = ws.recv().await;
        let n = ids
            .iter()
            .position(|i| *i == answer["id"])
            .unwrap_or_else(|| panic!("ws client {c}: an id it never sent: {answer}"));
        assert_eq!(
            answer["result"],
            own_request(c, n, &ids[n]).1,
            "ws client {c}: {answer}"
        );
        seen.push(n);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..ids.len()).collect::<Vec<_>>(), "ws client {c}");
}

/// HTTP client `c`: every request as a POST of its own, all at once, then
/// all of them again as one batch.
async fn http_client(url: String, c: u64) {
    let http = awc::Client::builder().timeout(BOUND).finish();
    let post = |body: Value| {
        let (http, url) = (&http, &url);
        async move {
            let mut response = http.post(url).send_json(&body).await.unwrap();
            assert_eq!(response.status(), 200, "http client {c}");
            response.json::<Value>().await.unwrap()
        }
    };
    let ids = colliding_ids();
    let answers = futures_util::future::join_all(
        ids.iter()
            .enumerate()
            .map(|(n, id)| post(own_request(c, n, id).0)),
    )
    .await;
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(answer["id"], ids[n], "http client {c}: {answer}");
        assert_eq!(
            answer["result"],
            own_request(c, n, &ids[n]).1,
            "http client {c}: {answer}"
        );
    }
    let batch = ids
        .iter()
        .enumerate()
        .map(|(n, id)| own_request(c, n, id).0)
        .collect();
    let answer = post(Value::Array(batch)).await;
    let answers = answer
        .as_array()
        .unwrap_or_else(|| panic!("http client {c}: {answer}"));
    assert_eq!(answers.len(), ids.len(), "http client {c}: {answer}");
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(answer["id"], ids[n], "http client {c}: {answer}");
        assert_eq!(
            answer["result"],
            own_request(c, n, &ids[n]).1,
            "http client {c}: {answer}"
        );
    }
}

#[actix_rt::test]
async fn fifty_websocket_and_fifty_http_clients_at_once_each_get_exactly_their_own_answers() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config()).await;
    let http_url = format!("http://{}/", proxy.addr);
    let clients: Vec<_> = (0..50u64)
        .flat_map(|c| {
            [
                actix_rt::spawn(websocket_client(proxy.url(), c)),
                actix_rt::spawn(http_client(http_url.clone(), 100 + c)),
            ]
        })
        .collect();
    for client in clients {
        within("a client's answers", client).await.unwrap();
    }
    let stats = proxy.forward.stats();
    // 13 requests per websocket client; 13 POSTs and a batch of 13 per HTTP one.
    assert_eq!(stats.forwarded, 50 * 13 + 50 * 13 * 2);
    assert_eq!(stats.limited + stats.invalid + stats.unavailable, 0);
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn a_batch_comes_back_in_order_with_each_failing_entry_alone() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config().timeout(ms(500))).await;
    let mut ws = ws(&proxy.url()).await;
    ws.send_json(json!([
        request(1, "sleep", json!([100])),
        request("two", "error", json!({"code": -32099, "message": "no"})),
        {"jsonrpc": "2.0", "method": "echo", "params": ["a notification"]},
        request(3, "silent", json!([])),
        request(4, "echo", json!({"b": 1, "a": 2})),
        {"jsonrpc": "2.0", "id": 5},
    ]))
    .await;
    let answer = ws.recv().await;
    let answers = answer.as_array().expect("a batch answer");
    let ids: Vec<&Value> = answers.iter().map(|a| &a["id"]).collect();
    // (An entry that is no request gets id null, as over HTTP.)
    assert_eq!(
        ids,
        [&json!(1), &json!("two"), &json!(3), &json!(4), &Value::Null]
    );
    assert_eq!(answers[0]["result"], "slept");
    assert_eq!(answers[1]["error"]["code"], -32099);
    assert_eq!(answers[2]["error"]["code"], -32001, "{}", answers[2]);
    assert_eq!(answers[3]["result"], json!({"b": 1, "a": 2}));
    assert_eq!(answers[4]["error"]["code"], -32600);
    // The connection goes on, and the notification went upstream.
    assert_eq!(ws.call(json!(9), "add", json!([2, 3])).await["result"], 5);
    assert_eq!(count(&server, "echo"), 2);
    drop(ws);
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn subscriptions_reach_only_their_subscribers_with_the_upstreams_method() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config()).await;
    let (a, b, c) = (
        connect(&proxy.url()).await,
        connect(&proxy.url()).await,
        connect(&proxy.url()).await,
    );
    let mut bystander = ws(&proxy.url()).await;
    let subscribe = |client: &Client, params: Value| {
        let client = client.clone();
        async move {
            within(
                "subscribe",
                client.subscribe::<Value>("eth_subscribe", params, "eth_unsubscribe"),
            )
            .await
            .unwrap()
        }
    };
    let mut heads_a = subscribe(&a, json!(["newHeads"])).await;
    let mut heads_b = subscribe(&b, json!(["newHeads"])).await;
    let mut logs_c = subscribe(&c, json!(["logs", {"address": "0x1"}])).await;
    assert_ne!(heads_a.id(), heads_b.id(), "each downstream its own id");
    assert_eq!(count(&server, "eth_subscribe"), 2, "newHeads shared");
    // Which upstream id is which: the first subscribe was newHeads.
    server.push(head("0xup1", 1));
    server.push(head("0xup2", 100));
    server.push(head("0xup1", 2));
    for heads in [&mut heads_a, &mut heads_b] {
        for n in [1, 2] {
            match within("a head", heads.next()).await {
                Some(SubscriptionItem::Item(item)) => assert_eq!(item, json!({"number": n})),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(heads.notification_method(), Some("eth_subscription"));
    }
    match within("a log", logs_c.next()).await {
        Some(SubscriptionItem::Item(item)) => assert_eq!(item, json!({"number": 100})),
        other => panic!("{other:?}"),
    }
    // The bystander's next message is its own answer, not a notification.
    let answer = bystander.call(json!("b"), "echo", json!([])).await;
    assert_eq!(answer["id"], "b", "{answer}");
    let stats = proxy.forward.stats();
    assert_eq!(
        (stats.upstream_subscriptions, stats.downstream_subscriptions),
        (2, 3)
    );
    assert_eq!(stats.subscription_notifications, 5);
    for client in [&a, &b, &c] {
        within("close", client.close()).await.unwrap();
    }
    drop(bystander);
    proxy.assert_idle().await;
    within("unsubscribes upstream", async {
        while count(&server, "eth_unsubscribe") < 2 {
            actix_rt::time::sleep(ms(10)).await;
        }
    })
    .await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn identical_subscriptions_share_one_upstream_subscription_until_the_last_unsubscribes() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config()).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(ws(&proxy.url()).await);
    }
    // The same params, written five ways.
    let params = [
        r#"["logs",{"address":"0x1","topics":["0xa",null]}]"#,
        r#"["logs", {"topics": ["0xa", null], "address": "0x1"}]"#,
        r#"[ "logs" , { "address" : "0x1" , "topics" : [ "0xa" , null ] } ]"#,
        r#"["logs",{"topics":["0xa",null],"address":"0x1"}]"#,
        r#"["logs",{"address":"0x1","topics":["0xa",null]}]"#,
    ];
    let mut ids = Vec::new();
    for (ws, params) in clients.iter_mut().zip(params) {
        ws.send(format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"eth_subscribe","params":{params}}}"#
        ))
        .await;
        let answer = ws.recv().await;
        assert_eq!(answer["id"], 7);
        ids.push(answer["result"].as_str().expect("an id").to_owned());
    }
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 5, "each its own id: {ids:?}");
    assert_eq!(
        count(&server, "eth_subscribe"),
        1,
        "one upstream subscription"
    );
    server.push(head("0xup1", 42));
    for (ws, id) in clients.iter_mut().zip(&ids) {
        assert_eq!(
            ws.recv().await,
            json!({"jsonrpc": "2.0", "method": "eth_subscription",
                   "params": {"subscription": id, "result": {"number": 42}}})
        );
    }
    // Another session's id, and an unknown one: false, nothing ends.
    let answer = clients[0]
        .call(json!(1), "eth_unsubscribe", json!([ids[1]]))
        .await;
    assert_eq!(answer["result"], false);
    let answer = clients[0]
        .call(json!(2), "eth_unsubscribe", json!(["0x0"]))
        .await;
    assert_eq!(answer["result"], false);
    // Four leave: nothing goes upstream.
    for n in 0..4 {
        let answer = clients[n]
            .call(json!(3), "eth_unsubscribe", json!([ids[n]]))
            .await;
        assert_eq!(answer["result"], true);
    }
    let stats = proxy.forward.stats();
    assert_eq!(
        (stats.upstream_subscriptions, stats.downstream_subscriptions),
        (1, 1)
    );
    // Only the last subscriber still gets items.
    server.push(head("0xup1", 43));
    assert_eq!(clients[4].recv().await["params"]["result"]["number"], 43);
    let answer = clients[0]
        .call(json!(4), "echo", json!(["no item first"]))
        .await;
    assert_eq!(answer["id"], 4, "{answer}");
    // The last one leaves: the upstream subscription ends.
    let answer = clients[4]
        .call(json!(5), "eth_unsubscribe", json!([ids[4]]))
        .await;
    assert_eq!(answer["result"], true);
    let unsubscribe = within("the upstream unsubscribe", async {
        loop {
            if let Some(m) = server
                .received()
                .into_iter()
                .find(|m| m["method"] == "eth_unsubscribe")
            {
                return m;
            }
            actix_rt::time::sleep(ms(10)).await;
        }
    })
    .await;
    assert_eq!(unsubscribe["params"], json!(["0xup1"]));
    proxy
        .until("the upstream subscription ended", |s| {
            s.upstream_subscriptions == 0 && s.downstream_subscriptions == 0
        })
        .await;
    assert_eq!(count(&server, "eth_unsubscribe"), 1);
    drop(clients);
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn a_session_closing_counts_as_unsubscribing() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config()).await;
    let a = connect(&proxy.url()).await;
    let mut b = ws(&proxy.url()).await;
    let sub_a = within(
        "subscribe",
        a.subscribe::<Value>("eth_subscribe", params!["newHeads"], "eth_unsubscribe"),
    )
    .await
    .unwrap();
    let answer = b.call(json!(1), "eth_subscribe", json!(["newHeads"])).await;
    assert!(answer["result"].is_string(), "{answer}");
    assert_eq!(count(&server, "eth_subscribe"), 1);
    // a's session ends without unsubscribing (its handle is still alive).
    within("close a", a.close()).await.unwrap();
    proxy
        .until("a's subscription ended", |s| {
            s.downstream_subscriptions == 1
        })
        .await;
    assert_eq!(count(&server, "eth_unsubscribe"), 0, "b still subscribed");
    drop(sub_a);
    // b's socket goes away without a close frame.
    drop(b);
    proxy.assert_idle().await;
    let received = server.wait_received_async(2, BOUND).await;
    assert_eq!(
        received
            .iter()
            .filter(|m| m["method"] == "eth_unsubscribe")
            .map(|m| m["params"].clone())
            .collect::<Vec<_>>(),
        [json!(["0xup1"])]
    );
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn a_refused_subscribe_is_answered_with_the_upstreams_error() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config()).await;
    let mut a = ws(&proxy.url()).await;
    let answer = a
        .call(json!("x"), "eth_subscribe", json!(["refused"]))
        .await;
    assert_eq!(
        answer,
        json!({"jsonrpc": "2.0", "id": "x", "error": {"code": -32000, "message": "refused"}})
    );
    assert_eq!(proxy.forward.stats().downstream_subscriptions, 0);
    // Tried again: a new upstream subscribe (a failed one is not kept).
    let answer = a
        .call(json!("y"), "eth_subscribe", json!(["refused"]))
        .await;
    assert_eq!(answer["error"]["code"], -32000);
    assert_eq!(count(&server, "eth_subscribe"), 2);
    // An unsubscribe whose params are no [id].
    let answer = a
        .call(json!("z"), "eth_unsubscribe", json!(["0x1", "0x2"]))
        .await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    drop(a);
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

/// Subscribes `ws` to newHeads through the proxy; returns its id.
async fn subscribe_heads(ws: &mut Ws) -> String {
    let answer = ws
        .call(json!(1), "eth_subscribe", json!(["newHeads"]))
        .await;
    answer["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned()
}

/// Sends a request the upstream never answers, and waits until the
/// upstream has it: it is pending there when the upstream is lost.
async fn hold_a_call(ws: &mut Ws, server: &TestServer) {
    let seen = server.received().len();
    ws.send_json(request("held", "silent", json!([]))).await;
    server.wait_received_async(seen + 1, BOUND).await;
}

/// The held call's answer once its upstream was lost: -32002 at once.
async fn assert_held_call_lost(ws: &mut Ws) {
    let answer = ws.recv().await;
    assert_eq!(answer["id"], "held", "{answer}");
    assert_eq!(answer["error"]["code"], -32002, "{answer}");
}

/// Restarts the upstream on its port, with the same handler.
fn restart(server: TestServer, ids: &Arc<AtomicU64>) -> TestServer {
    let addr = server.addr();
    drop(server);
    TestServer::start_at(addr, upstream_handler(Arc::clone(ids)))
}

#[actix_rt::test]
async fn on_upstream_restart_resubscribe_sends_a_gap_and_items_go_on() {
    let (server, ids) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config().gap_notification("proxy_gap")).await;
    let mut a = ws(&proxy.url()).await;
    let mut b = ws(&proxy.url()).await;
    let mut caller = ws(&proxy.url()).await;
    let id_a = subscribe_heads(&mut a).await;
    let id_b = subscribe_heads(&mut b).await;
    server.push(head("0xup1", 1));
    assert_eq!(a.recv().await["params"]["result"]["number"], 1);
    assert_eq!(b.recv().await["params"]["result"]["number"], 1);
    hold_a_call(&mut caller, &server).await;

    let server = restart(server, &ids);
    // A call in flight is lost with the upstream, never sent again.
    assert_held_call_lost(&mut caller).await;
    // Each subscriber is told of the gap, with its own id.
    for (ws, id) in [(&mut a, &id_a), (&mut b, &id_b)] {
        let gap = ws.recv().await;
        assert_eq!(gap["method"], "proxy_gap", "{gap}");
        assert_eq!(gap["params"]["subscription"], json!(id));
        assert!(gap["params"]["gap"]["down_for_ms"].is_u64(), "{gap}");
    }
    // Made again once, upstream, under a new id; items go on.
    assert_eq!(count(&server, "eth_subscribe"), 1);
    server.push(head("0xup2", 2));
    for (ws, id) in [(&mut a, &id_a), (&mut b, &id_b)] {
        let item = ws.recv().await;
        assert_eq!(item["params"]["subscription"], json!(id));
        assert_eq!(item["params"]["result"]["number"], 2);
    }
    assert_eq!(proxy.forward.stats().upstream_subscriptions, 1);
    assert_eq!(
        caller.call(json!(2), "add", json!([2, 2])).await["result"],
        4
    );
    assert_eq!(
        count(&server, "silent"),
        0,
        "the lost call was not sent again"
    );
    drop((a, b, caller));
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn on_upstream_loss_error_notification_ends_each_subscription_with_an_error() {
    let (server, ids) = upstream();
    let (proxy, upstream_client) = proxy_for(
        &server,
        config().upstream_loss(UpstreamLoss::ErrorNotification),
    )
    .await;
    let mut a = ws(&proxy.url()).await;
    let mut caller = ws(&proxy.url()).await;
    let id_a = subscribe_heads(&mut a).await;
    hold_a_call(&mut caller, &server).await;
    let server = restart(server, &ids);
    assert_held_call_lost(&mut caller).await;
    let end = a.recv().await;
    assert_eq!(
        end["method"], "eth_subscribe",
        "no item yet: the subscribe method"
    );
    assert_eq!(end["params"]["subscription"], json!(id_a));
    assert_eq!(end["params"]["error"]["code"], -32002, "{end}");
    proxy
        .until("the subscription ended", |s| {
            s.downstream_subscriptions == 0
        })
        .await;
    // Nothing was made again upstream, and the session goes on.
    let answer = a.call(json!(2), "eth_unsubscribe", json!([id_a])).await;
    assert_eq!(answer["result"], false);
    within("the upstream back", async {
        while upstream_client.is_reconnecting() {
            actix_rt::time::sleep(ms(10)).await;
        }
    })
    .await;
    let answer = a.call(json!(3), "echo", json!(["still here"])).await;
    assert_eq!(answer["result"], json!(["still here"]));
    assert_eq!(count(&server, "eth_subscribe"), 0);
    assert_eq!(
        count(&server, "silent"),
        0,
        "the lost call was not sent again"
    );
    drop((a, caller));
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn on_upstream_loss_close_closes_each_subscribed_session_with_its_code() {
    closes_on_upstream_loss(1012).await;
    closes_on_upstream_loss(1013).await;
}

async fn closes_on_upstream_loss(code: u16) {
    let (server, ids) = upstream();
    let (proxy, upstream_client) =
        proxy_for(&server, config().upstream_loss(UpstreamLoss::Close(code))).await;
    let mut a = ws(&proxy.url()).await;
    let mut bystander = ws(&proxy.url()).await;
    subscribe_heads(&mut a).await;
    hold_a_call(&mut bystander, &server).await;
    let server = restart(server, &ids);
    assert_eq!(within("the close", a.closed()).await, Some(code));
    proxy.until("a's session ended", |s| s.sessions == 1).await;
    // A session without subscriptions stays; its call in flight was lost.
    assert_held_call_lost(&mut bystander).await;
    within("the upstream back", async {
        while upstream_client.is_reconnecting() {
            actix_rt::time::sleep(ms(10)).await;
        }
    })
    .await;
    let answer = bystander.call(json!(1), "echo", json!([1])).await;
    assert_eq!(answer["result"], json!([1]));
    assert_eq!(count(&server, "eth_subscribe"), 0);
    assert_eq!(
        count(&server, "silent"),
        0,
        "the lost call was not sent again"
    );
    drop(bystander);
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn a_shared_subscription_fails_over_to_the_healthy_upstream() {
    fails_over(UpstreamLoss::Resubscribe).await;
}

/// With another upstream healthy, a subscription moves whatever the policy.
#[actix_rt::test]
async fn failover_comes_before_the_error_and_close_policies() {
    fails_over(UpstreamLoss::ErrorNotification).await;
    fails_over(UpstreamLoss::Close(1012)).await;
}

async fn fails_over(policy: UpstreamLoss) {
    let ids = Arc::new(AtomicU64::new(0));
    let first = TestServer::start(upstream_handler(Arc::clone(&ids)));
    let second = TestServer::start(upstream_handler(Arc::clone(&ids)));
    let a_client = connect_with(reconnecting(&first.url())).await;
    let b_client = connect_with(reconnecting(&second.url())).await;
    let forward = Forward::new(Upstreams::new([a_client.clone(), b_client.clone()]))
        .config(config().upstream_loss(policy));
    let proxy = Proxy::start(forward);
    let mut a = ws(&proxy.url()).await;
    let mut b = ws(&proxy.url()).await;
    let mut caller = ws(&proxy.url()).await;
    let id_a = subscribe_heads(&mut a).await;
    let id_b = subscribe_heads(&mut b).await;
    assert_eq!(count(&first, "eth_subscribe"), 1, "on the first upstream");
    assert_eq!(count(&second, "eth_subscribe"), 0);
    first.push(head("0xup1", 1));
    assert_eq!(a.recv().await["params"]["result"]["number"], 1);
    assert_eq!(b.recv().await["params"]["result"]["number"], 1);
    // Both idle: a call goes to the first, and is in flight there.
    hold_a_call(&mut caller, &first).await;

    drop(first); // and it does not come back
    assert_held_call_lost(&mut caller).await;
    for (ws, id) in [(&mut a, &id_a), (&mut b, &id_b)] {
        let gap = ws.recv().await;
        assert_eq!(
            gap["method"], "eth_subscription",
            "the items' method: {gap}"
        );
        assert_eq!(gap["params"]["subscription"], json!(id));
        assert!(gap["params"]["gap"]["down_for_ms"].is_u64(), "{gap}");
    }
    assert_eq!(count(&second, "eth_subscribe"), 1, "moved");
    second.push(head("0xup2", 2));
    for (ws, id) in [(&mut a, &id_a), (&mut b, &id_b)] {
        let item = ws.recv().await;
        assert_eq!(item["params"]["subscription"], json!(id), "the same id");
        assert_eq!(item["params"]["result"]["number"], 2);
    }
    // Calls go to the healthy one too.
    assert_eq!(a.call(json!(5), "add", json!([1, 2])).await["result"], 3);
    assert_eq!(
        caller.call(json!(5), "add", json!([2, 2])).await["result"],
        4
    );
    assert_eq!(count(&second, "add"), 2);
    assert_eq!(
        count(&second, "silent"),
        0,
        "the lost call was not sent again"
    );
    // The last subscriber leaves: unsubscribed where it lives now.
    let answer = a.call(json!(6), "eth_unsubscribe", json!([id_a])).await;
    assert_eq!(answer["result"], true);
    let answer = b.call(json!(6), "eth_unsubscribe", json!([id_b])).await;
    assert_eq!(answer["result"], true);
    within("the upstream unsubscribe", async {
        while count(&second, "eth_unsubscribe") < 1 {
            actix_rt::time::sleep(ms(10)).await;
        }
    })
    .await;
    assert_eq!(
        second
            .received()
            .into_iter()
            .find(|m| m["method"] == "eth_unsubscribe")
            .unwrap()["params"],
        json!(["0xup2"])
    );
    drop((a, b, caller));
    proxy.assert_idle().await;
    assert_no_pending(&a_client);
    assert_no_pending(&b_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn hostile_input_is_answered_to_that_client_only_while_another_keeps_working() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(
        &server,
        config().max_body(1024 * 1024).per_client_in_flight(4),
    )
    .await;
    // A well-behaved client, working all along.
    let url = proxy.url();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = actix_rt::spawn(async move {
        let mut good = ws(&url).await;
        let mut n = 0u64;
        loop {
            n += 1;
            let answer = good.call(json!(n), "add", json!([n, 1])).await;
            assert_eq!(answer, json!({"jsonrpc": "2.0", "id": n, "result": n + 1}));
            if stopped.try_recv().is_ok() {
                return n;
            }
        }
    });

    let mut bad = ws(&proxy.url()).await;
    // Garbage.
    bad.send("{not json").await;
    let answer = bad.recv().await;
    assert_eq!(
        (answer["id"].clone(), answer["error"]["code"].clone()),
        (Value::Null, json!(-32700))
    );
    bad.send("42").await;
    assert_eq!(bad.recv().await["error"]["code"], -32600);
    bad.send("[]").await;
    assert_eq!(bad.recv().await["error"]["code"], -32600);
    bad.send(r#"{"jsonrpc":"2.0","id":{"an":"object"},"method":"echo"}"#)
        .await;
    assert_eq!(bad.recv().await["error"]["code"], -32600);
    // Deep nesting, in the params and as the whole message.
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    bad.send(format!(
        r#"{{"jsonrpc":"2.0","id":"deep","method":"echo","params":{deep}}}"#
    ))
    .await;
    let answer = bad.recv().await;
    assert_eq!(answer["id"], "deep");
    assert!(answer["error"]["code"].is_i64(), "{answer}");
    // As a message: a batch of one entry that is no request.
    bad.send(deep.clone()).await;
    let answer = bad.recv().await;
    assert_eq!(answer[0]["error"]["code"], -32600, "{answer}");
    bad.send(format!(
        r#"{{"jsonrpc":"2.0","id":"deep-sub","method":"eth_subscribe","params":{deep}}}"#
    ))
    .await;
    assert_eq!(bad.recv().await["error"]["code"], -32602);
    // A 10,000-entry batch: one error, nothing forwarded.
    let batch: Vec<Value> = (0..10_000)
        .map(|n| request(n, "echo", json!([n])))
        .collect();
    bad.send_json(Value::Array(batch)).await;
    let answer = bad.recv().await;
    assert_eq!(answer["error"]["code"], -32005, "{answer}");
    // A flood beyond 4 in flight: the rest answered at once with -32005.
    for n in 0..20 {
        bad.send_json(request(n, "sleep", json!([300]))).await;
    }
    let mut slept = 0;
    let mut limited = 0;
    for _ in 0..20 {
        let answer = bad.recv().await;
        if answer["result"] == "slept" {
            slept += 1;
        } else {
            assert_eq!(answer["error"]["code"], -32005, "{answer}");
            limited += 1;
        }
    }
    assert_eq!((slept, limited), (4, 16));
    // Nothing of that batch (nor the deep params) went upstream; 4 sleeps did.
    assert_eq!((count(&server, "echo"), count(&server, "sleep")), (0, 4));
    // A message over the limit closes this session with 1009.
    bad.send("x".repeat(1024 * 1024 + 1)).await;
    assert_eq!(within("the 1009 close", bad.closed()).await, Some(1009));

    let _ = stop.send(());
    let calls = within("the good client", worker).await.unwrap();
    assert!(calls > 0);
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

/// A client frame header announcing `len` bytes, then the first `have`
/// of them: the gate must refuse it from the header alone.
#[actix_rt::test]
async fn a_huge_frame_header_closes_the_session_before_its_bytes_arrive() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config().max_body(1024)).await;
    let mut raw = RawClient::connect(proxy.addr).await;
    raw.tcp
        .write_all(&masked_text(
            br#"{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]}"#,
        ))
        .await
        .unwrap();
    let answer = br#"{"jsonrpc":"2.0","id":1,"result":[1]}"#;
    let mut read = vec![0u8; 2 + answer.len()];
    within("the answer", raw.tcp.read_exact(&mut read))
        .await
        .unwrap();
    assert_eq!(&read[2..], answer);
    // A frame announcing 1 GiB, and a little of it: refused from its header.
    let mut bytes = vec![0x81, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 30).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    bytes.extend_from_slice(&[b'x'; 1000]);
    raw.tcp.write_all(&bytes).await.unwrap();
    let read = within("the close", raw.read_until_close()).await;
    // The close frame: 0x88, its length, the code 1009 (0x03F1), the reason.
    assert_eq!(&read[..4], &[0x88, read[1], 0x03, 0xF1], "{read:?}");
    let reason = String::from_utf8_lossy(&read[4..]);
    assert_eq!(
        reason,
        "a message of 1073741824 bytes is over the limit of 1024"
    );
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config()).await;
    let mut raw = RawClient::connect(proxy.addr).await;
    raw.tcp.write_all(&masked_text(b"\xff\xfe")).await.unwrap();
    let read = within("the close", raw.read_until_close()).await;
    assert_eq!(&read[..4], &[0x88, read[1], 0x03, 0xEF], "1007: {read:?}");
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

/// A websocket client on a bare socket (for what awc would not send, and
/// for a client that does not read).
struct RawClient {
    tcp: tokio::net::TcpStream,
}

impl RawClient {
    async fn connect(addr: SocketAddr) -> RawClient {
        Self::connect_with(addr, None).await
    }

    async fn connect_with(addr: SocketAddr, recv_buffer: Option<u32>) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let mut tcp = within("tcp connect", socket.connect(addr)).await.unwrap();
        tcp.write_all(
            b"GET / HTTP/1.1\r\nHost: proxy\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        // The 101 response, byte by byte up to its blank line.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            within("the handshake", tcp.read_exact(&mut byte))
                .await
                .unwrap();
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        RawClient { tcp }
    }

    /// Everything the proxy sends until it closes the socket.
    async fn read_until_close(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.tcp.read_to_end(&mut out).await;
        out
    }
}

/// A masked (key 0, so the payload reads as it is) final text frame.
fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

#[actix_rt::test]
async fn a_client_that_does_not_read_is_closed_and_its_session_freed() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(
        &server,
        config()
            .per_client_in_flight(1_000)
            .session_outbound(4, ms(300)),
    )
    .await;
    let mut good = ws(&proxy.url()).await;
    let mut deaf = RawClient::connect_with(proxy.addr, Some(4096)).await;
    // 400 answers of 64 KiB each: far more than the socket buffers hold.
    let mut bytes = Vec::new();
    for n in 0..400 {
        bytes.extend(masked_text(
            request(n, "big", json!([64 * 1024])).to_string().as_bytes(),
        ));
    }
    within("the requests", deaf.tcp.write_all(&bytes))
        .await
        .unwrap();
    proxy
        .until("the deaf session closed", |s| {
            s.slow_sessions == 1 && s.sessions == 1
        })
        .await;
    // The other session never noticed.
    assert_eq!(
        good.call(json!(1), "echo", json!(["ok"])).await["result"],
        json!(["ok"])
    );
    drop(good);
    drop(deaf);
    proxy.assert_idle().await;
    within("no call left upstream", async {
        while upstream_client.stats().pending > 0 {
            actix_rt::time::sleep(ms(10)).await;
        }
    })
    .await;
    proxy.stop().await;
}

#[actix_rt::test]
async fn a_client_that_answers_no_ping_is_closed_and_one_that_does_stays() {
    let (server, _) = upstream();
    let (proxy, upstream_client) =
        proxy_for(&server, config().session_heartbeat(ms(100), ms(200))).await;
    // This crate's client answers pings by itself, idle or not.
    let alive = connect(&proxy.url()).await;
    let mut silent = RawClient::connect(proxy.addr).await;
    let read = within("the silent one closed", silent.read_until_close()).await;
    // Pings (0x89, no payload), then the close frame with 1001 (0x03E9).
    assert!(read.starts_with(&[0x89, 0x00]), "{read:?}");
    let close = read.iter().position(|&b| b == 0x88).expect("a close frame");
    assert_eq!(&read[close + 2..close + 4], &[0x03, 0xE9], "{read:?}");
    proxy
        .until("the silent one's session ended", |s| s.sessions == 1)
        .await;
    // The other one outlived several heartbeats and still works.
    let sum: i64 = within("a call", alive.call("add", params![1, 1]))
        .await
        .unwrap();
    assert_eq!(sum, 2);
    within("close", alive.close()).await.unwrap();
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn close_websockets_answers_what_is_in_flight_then_closes_each_session() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config()).await;
    let mut busy = ws(&proxy.url()).await;
    let mut idle = ws(&proxy.url()).await;
    let mut subscribed = ws(&proxy.url()).await;
    subscribe_heads(&mut subscribed).await;
    let seen = server.received().len();
    busy.send_json(request("slow", "sleep", json!([500]))).await;
    server.wait_received_async(seen + 1, BOUND).await;
    proxy
        .forward
        .close_websockets(1001, "the proxy is shutting down");
    // Asked again, with another code: nothing changes.
    proxy.forward.close_websockets(4000, "another");
    // A new request is refused at once; the one in flight is answered,
    // then the session closes.
    let refused = busy.call(json!("new"), "add", json!([1, 1])).await;
    assert_eq!(refused["id"], "new", "{refused}");
    assert_eq!(refused["error"]["code"], -32002, "{refused}");
    assert_eq!(
        busy.recv().await,
        json!({"jsonrpc": "2.0", "id": "slow", "result": "slept"})
    );
    for ws in [&mut busy, &mut idle, &mut subscribed] {
        assert_eq!(within("the close", ws.closed()).await, Some(1001));
    }
    // No new session; HTTP goes on.
    match within("a handshake", awc::Client::new().ws(proxy.url()).connect()).await {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 503)
        }
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    let mut answer = within(
        "a POST",
        awc::Client::new()
            .post(format!("http://{}/", proxy.addr))
            .send_body(request(1, "add", json!([1, 1])).to_string()),
    )
    .await
    .unwrap();
    let body: Value =
        serde_json::from_slice(&within("the body", answer.body()).await.unwrap()).unwrap();
    assert_eq!(body["result"], 2);
    proxy.assert_idle().await;
    within("the upstream unsubscribe", async {
        while count(&server, "eth_unsubscribe") < 1 {
            actix_rt::time::sleep(ms(10)).await;
        }
    })
    .await;
    // Nothing else reached the upstream: the refused request did not.
    assert_eq!(count(&server, "add"), 1, "only the HTTP one");
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn close_websockets_in_per_session_mode_takes_answers_and_refuses_new_server_requests() {
    let (server, _) = upstream();
    let url = server.url();
    let forward = Forward::new(Upstreams::new([]))
        .config(config())
        .per_session(move |_: &proxy::Origin| RpcConnection::builder(url.clone()));
    let proxy = Proxy::start(forward);
    let mut client = ws(&proxy.url()).await;
    server.wait_connections_async(1, BOUND).await;
    server.push(server_request("srv-1", "client.ask", json!([1])));
    assert_eq!(client.recv().await["id"], 1);
    // Something in flight keeps the session open while it drains.
    let seen = server.received().len();
    client
        .send_json(request("slow", "sleep", json!([1000])))
        .await;
    server.wait_received_async(seen + 1, BOUND).await;
    proxy
        .forward
        .close_websockets(1001, "the proxy is shutting down");
    // The client's answer to the server request asked before still goes up.
    let seen = server.received().len();
    client
        .send_json(json!({"jsonrpc": "2.0", "id": 1, "result": "yes"}))
        .await;
    let received = server.wait_received_async(seen + 1, BOUND).await;
    assert_eq!(
        received[seen],
        json!({"jsonrpc": "2.0", "id": "srv-1", "result": "yes"})
    );
    // A new server request is answered upstream, not passed down.
    let answer = ask(&server, server_request("srv-2", "client.ask", json!([2]))).await;
    assert_eq!(answer["id"], "srv-2");
    assert_eq!(answer["error"]["code"], -32002, "{answer}");
    // The request in flight is answered, then the close; nothing else came.
    assert_eq!(
        client.recv().await,
        json!({"jsonrpc": "2.0", "id": "slow", "result": "slept"})
    );
    match client.frame().await {
        Frame::Close(reason) => assert_eq!(reason.map(|r| u16::from(r.code)), Some(1001)),
        other => panic!("expected the close, got {other:?}"),
    }
    // The session's own upstream connection closes with it.
    server.wait_connections_async(0, BOUND).await;
    proxy.assert_idle().await;
    proxy.stop().await;
}

#[actix_rt::test]
async fn connections_beyond_the_limit_are_refused_with_503() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config().max_connections(2)).await;
    let first = ws(&proxy.url()).await;
    let mut second = ws(&proxy.url()).await;
    let refused = within("a third", awc::Client::new().ws(proxy.url()).connect()).await;
    match refused {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 503)
        }
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    assert_eq!(
        second.call(json!(1), "echo", json!([2])).await["result"],
        json!([2])
    );
    drop(first);
    proxy.until("a place freed", |s| s.sessions == 1).await;
    let mut third = ws(&proxy.url()).await;
    assert_eq!(
        third.call(json!(1), "echo", json!([3])).await["result"],
        json!([3])
    );
    assert_eq!(proxy.forward.stats().limited, 1);
    drop((second, third));
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn pings_are_answered_and_binary_messages_are_json_too() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config()).await;
    let mut ws = ws(&proxy.url()).await;
    ws.framed
        .send(Message::Ping(bytes::Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    match ws.frame().await {
        Frame::Pong(payload) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("{other:?}"),
    }
    let text = request("bin", "echo", json!([1])).to_string();
    ws.framed
        .send(Message::Binary(bytes::Bytes::from(text)))
        .await
        .unwrap();
    assert_eq!(ws.recv().await["result"], json!([1]));
    ws.framed
        .send(Message::Binary(bytes::Bytes::from_static(b"\xff\xfe")))
        .await
        .unwrap();
    assert_eq!(ws.recv().await["error"]["code"], -32700);
    drop(ws);
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn http_and_websocket_are_served_at_one_path() {
    let (server, _) = upstream();
    let (proxy, upstream_client) = proxy_for(&server, config()).await;
    let http = awc::Client::new();
    let mut answer = within(
        "a POST",
        http.post(format!("http://{}/", proxy.addr))
            .insert_header(("content-type", "application/json"))
            .send_body(request("h", "add", json!([20, 22])).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let body: Value =
        serde_json::from_slice(&within("the body", answer.body()).await.unwrap()).unwrap();
    assert_eq!(body, json!({"jsonrpc": "2.0", "id": "h", "result": 42}));
    // Subscriptions need a websocket: refused over HTTP, nothing upstream.
    let mut answer = within(
        "a POST",
        http.post(format!("http://{}/", proxy.addr))
            .send_body(request(1, "eth_subscribe", json!(["newHeads"])).to_string()),
    )
    .await
    .unwrap();
    let body: Value =
        serde_json::from_slice(&within("the body", answer.body()).await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], -32601, "{body}");
    assert_eq!(count(&server, "eth_subscribe"), 0);
    // The websocket at the same path.
    let client = connect(&proxy.url()).await;
    let sum: i64 = within("a call", client.call("add", params![1, 2]))
        .await
        .unwrap();
    assert_eq!(sum, 3);
    // A GET that is no upgrade.
    let answer = within("a GET", http.get(format!("http://{}/", proxy.addr)).send())
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    within("close", client.close()).await.unwrap();
    assert_no_pending(&client);
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn slow_subscribers_lag_alone_and_are_told_how_many_they_missed() {
    let (server, _) = upstream();
    let (proxy, upstream_client) =
        proxy_for(&server, config().subscriber_queue(32, Overflow::DropOldest)).await;
    let mut fast = ws(&proxy.url()).await;
    let id_fast = subscribe_heads(&mut fast).await;
    // The slow one stops reading its socket after subscribing: once the
    // socket and its queue are full, items are dropped for it alone.
    let mut slow = RawClient::connect_with(proxy.addr, Some(4096)).await;
    slow.tcp
        .write_all(&masked_text(
            request(1, "eth_subscribe", json!(["newHeads"]))
                .to_string()
                .as_bytes(),
        ))
        .await
        .unwrap();
    proxy
        .until("both subscribed", |s| s.downstream_subscriptions == 2)
        .await;
    let pad = "x".repeat(64 * 1024);
    const ROUNDS: u64 = 25;
    const PER_ROUND: u64 = 16;
    // In rounds no larger than the queue: the fast one, reading all along,
    // never has more than a round waiting.
    for round in 0..ROUNDS {
        for k in 0..PER_ROUND {
            let n = round * PER_ROUND + k;
            server.push(json!({"jsonrpc": "2.0", "method": "eth_subscription",
                "params": {"subscription": "0xup1", "result": {"number": n, "pad": pad}}}));
        }
        for k in 0..PER_ROUND {
            let item = fast.recv().await;
            assert_eq!(item["params"]["subscription"], json!(id_fast));
            assert_eq!(
                item["params"]["result"]["number"],
                round * PER_ROUND + k,
                "the fast one misses nothing: {}",
                item["params"].get("lagged").unwrap_or(&Value::Null)
            );
        }
    }
    let last = ROUNDS * PER_ROUND - 1;
    proxy
        .until("items dropped for the slow one", |s| {
            s.subscription_items_dropped > 0
        })
        .await;
    // Now it reads: what is left, with a `lagged` notification before the
    // next item after the drops, and the newest item last.
    let mut all = Vec::new();
    let read = async {
        let needle = format!(r#""number":{last},"#);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = slow.tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "the proxy closed the slow one");
            // Only the new bytes (and a needle's length before) are searched.
            let from = all.len().saturating_sub(needle.len());
            all.extend_from_slice(&buf[..n]);
            if memchr::memmem::find(&all[from..], needle.as_bytes()).is_some() {
                return;
            }
        }
    };
    within("the slow one's items", read).await;
    assert!(
        memchr::memmem::find(&all, br#""lagged":{"missed":"#).is_some(),
        "told of the drops"
    );
    drop((fast, slow));
    proxy.assert_idle().await;
    assert_no_pending(&upstream_client);
    proxy.stop().await;
}

#[actix_rt::test]
async fn per_session_mode_passes_server_requests_through_and_answers_back() {
    let (server, _) = upstream();
    let url = server.url();
    let forward = Forward::new(Upstreams::new([]))
        .config(config())
        .per_session(move |origin: &proxy::Origin| {
            let mut builder = RpcConnection::builder(url.clone());
            if let Some(token) = origin.headers.get("x-token") {
                builder = builder.header("x-token", token.clone());
            }
            builder
        });
    let proxy = Proxy::start(forward);
    let client = connect_with(
        RpcConnection::builder(proxy.url())
            .header("x-token", "t-1")
            .register_fn("client.confirm", |req: ServerRequest| async move {
                Ok::<_, ErrorObject>(json!({"confirmed": req.params}))
            })
            .register_fn("client.refuse", |_req: ServerRequest| async move {
                Err::<Value, _>(ErrorObject::new(4001, "user rejected"))
            }),
    )
    .await;
    // The session has its own upstream connection, made with its header.
    server.wait_connections_async(1, BOUND).await;
    let headers = server.handshakes().pop().unwrap();
    assert!(
        headers.contains(&("x-token".into(), "t-1".into())),
        "{headers:?}"
    );
    let sum: i64 = within("a call", client.call("add", params![2, 2]))
        .await
        .unwrap();
    assert_eq!(sum, 4);

    // A server request goes downstream and its answer comes back with the
    // upstream's own id.
    let answer = ask(
        &server,
        server_request("srv-1", "client.confirm", json!([42])),
    )
    .await;
    assert_eq!(
        answer,
        json!({"jsonrpc": "2.0", "id": "srv-1", "result": {"confirmed": [42]}})
    );
    let answer = ask(&server, server_request(77, "client.refuse", json!({}))).await;
    assert_eq!(
        answer,
        json!({"jsonrpc": "2.0", "id": 77, "error": {"code": 4001, "message": "user rejected"}})
    );
    let answer = ask(&server, server_request(78, "client.unknown", json!([]))).await;
    assert_eq!(
        answer["error"]["code"], -32601,
        "the client's own answer: {answer}"
    );
    assert_eq!(proxy.forward.stats().server_requests, 3);
    // Subscriptions are fanned out within the session, from its upstream.
    let mut heads = within(
        "subscribe",
        client.subscribe::<Value>("eth_subscribe", params!["newHeads"], "eth_unsubscribe"),
    )
    .await
    .unwrap();
    server.push(head("0xup1", 5));
    match within("a head", heads.next()).await {
        Some(SubscriptionItem::Item(item)) => assert_eq!(item, json!({"number": 5})),
        other => panic!("{other:?}"),
    }
    assert_eq!(proxy.forward.stats().upstream_subscriptions, 1);

    // Another session gets another upstream connection.
    let other = connect(&proxy.url()).await;
    server.wait_connections_async(2, BOUND).await;
    within("close", other.close()).await.unwrap();
    // The session ends, and its upstream connection with it.
    within("close", client.close()).await.unwrap();
    server.wait_connections_async(0, BOUND).await;
    assert_no_pending(&client);
    proxy.assert_idle().await;
    proxy.stop().await;
}

#[actix_rt::test]
async fn per_session_mode_answers_the_upstream_when_the_client_does_not() {
    let (server, _) = upstream();
    let url = server.url();
    let forward = Forward::new(Upstreams::new([]))
        .config(config().timeout(ms(300)))
        .per_session(move |_: &proxy::Origin| RpcConnection::builder(url.clone()));
    let proxy = Proxy::start(forward);
    let mut client = ws(&proxy.url()).await;
    server.wait_connections_async(1, BOUND).await;
    let seen = server.received().len();
    server.push(server_request("srv-9", "client.ask", json!({"q": 1})));
    // The client sees it under the proxy's id, with the params as sent.
    let request = client.recv().await;
    assert_eq!(
        request,
        json!({"jsonrpc": "2.0", "id": 1, "method": "client.ask", "params": {"q": 1}})
    );
    // It does not answer in time: the upstream gets -32001 with its own id.
    let received = server.wait_received_async(seen + 1, BOUND).await;
    assert_eq!(received[seen]["id"], "srv-9");
    assert_eq!(
        received[seen]["error"]["code"], -32001,
        "{}",
        received[seen]
    );
    // A late answer is dropped quietly: the next message is the echo's.
    client
        .send_json(json!({"jsonrpc": "2.0", "id": 1, "result": "late"}))
        .await;
    let answer = client.call(json!("e"), "echo", json!([1])).await;
    assert_eq!(answer["id"], "e", "{answer}");
    // An answer to an id the proxy never gave is an invalid request.
    client
        .send_json(json!({"jsonrpc": "2.0", "id": 99, "result": "what"}))
        .await;
    assert_eq!(client.recv().await["error"]["code"], -32600);
    drop(client);
    server.wait_connections_async(0, BOUND).await;
    proxy.assert_idle().await;
    proxy.stop().await;
}

#[actix_rt::test]
async fn per_session_mode_refuses_the_handshake_when_the_upstream_cannot_be_reached() {
    let forward = Forward::new(Upstreams::new([]))
        .config(config())
        .per_session(|_: &proxy::Origin| {
            RpcConnection::builder("ws://127.0.0.1:1/nothing-here").connect_timeout(ms(500))
        });
    let proxy = Proxy::start(forward);
    let refused = within(
        "the handshake",
        awc::Client::new().ws(proxy.url()).connect(),
    )
    .await;
    match refused {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 502)
        }
        other => panic!("expected 502, got {:?}", other.map(|_| ())),
    }
    proxy.assert_idle().await;
    proxy.stop().await;
}
