//! The proxy's HTTP front end end to end (feature `proxy`): an actix-web
//! server in this process serves `proxy::http` at `/` and `proxy::metrics`
//! at `/metrics` in front of `TestServer` upstreams, and awc clients post
//! to it. What each downstream gets back is compared byte for byte; every
//! wait is bounded, and nothing is timed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::StreamExt as _;
use jsonrpc_websocket::proxy::{
    self, codes, Decision, Forward, Origin, ProxyConfig, ProxyRequest, Upstreams,
};
use jsonrpc_websocket::{
    params, Client, ConnectionEvent, ErrorObject, ReconnectPolicy, RpcConnection,
};
use serde_json::value::RawValue;
use test_support::{
    assert_no_pending, connect_with, json, response, standard, within, Action, FaultProxy,
    TestServer, Value, BOUND,
};

// ---- the proxy under test -----------------------------------------------------

/// The routes a proxy serves: HTTP and websocket sessions at one path
/// (what `proxy::resource("/")` is), and the metrics.
fn routes(config: &mut web::ServiceConfig) {
    let rpc = web::resource("/")
        .route(web::post().to(proxy::http))
        .route(web::get().to(proxy::websocket));
    config
        .service(rpc)
        .route("/metrics", web::get().to(proxy::metrics));
}

/// A proxy served by actix-web on 127.0.0.1:0 (two workers, on threads of
/// their own; the upstream connections live on the test's thread).
struct Served {
    /// `http://127.0.0.1:PORT/`.
    url: String,
    addr: std::net::SocketAddr,
    handle: ServerHandle,
    forward: Forward,
}

impl Served {
    async fn start(forward: Forward) -> Served {
        let data = web::Data::new(forward.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
            .workers(2)
            // NOTE: the test harness's own signals are none of its business.
            .disable_signals()
            .shutdown_timeout(5)
            .bind(("127.0.0.1", 0))
            .unwrap_or_else(|err| panic!("binding the proxy: {err}"));
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Served {
            url: format!("http://{addr}/"),
            addr,
            handle,
            forward,
        }
    }

    fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Stops it gracefully (bounded).
    async fn stop(self) {
        within("stopping the proxy", self.handle.stop(true)).await;
    }
}

/// Quick retries: a lost upstream is dialled again within moments.
fn quick() -> ReconnectPolicy {
    ReconnectPolicy::new()
        .initial_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(200))
        .forever()
}

/// An upstream connection as a proxy keeps one: reconnecting.
async fn upstream(url: &str) -> Client {
    connect_with(RpcConnection::builder(url).reconnect(quick())).await
}

// ---- downstream clients -------------------------------------------------------

/// An HTTP client of its own (its own connection pool), every request
/// bounded.
fn http_client() -> awc::Client {
    awc::Client::builder().timeout(BOUND).finish()
}

/// What the proxy answered to one POST.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    /// The body as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| panic!("not JSON ({err}): {self:?}"))
    }

    /// The code of the one error object the body is.
    fn error_code(&self) -> i64 {
        let body = self.json();
        assert_eq!(body["id"], Value::Null, "{self:?}");
        body["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("not an error: {self:?}"))
    }
}

async fn post(http: &awc::Client, url: &str, body: impl Into<Bytes>) -> Reply {
    let body = body.into();
    let exchange = async {
        let mut response = http
            .post(url)
            .insert_header(("content-type", "application/json"))
            .send_body(body)
            .await
            .unwrap_or_else(|err| panic!("POST {url}: {err}"));
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response
            .body()
            .limit(64 << 20)
            .await
            .unwrap_or_else(|err| panic!("reading the answer of {url}: {err}"));
        Reply {
            status: response.status().as_u16(),
            content_type,
            body: String::from_utf8(bytes.to_vec())
                .unwrap_or_else(|err| panic!("an answer that is not UTF-8: {err}")),
        }
    };
    within("a POST to the proxy", exchange).await
}

async fn get_metrics(served: &Served) -> String {
    let http = http_client();
    let exchange = async {
        let mut response = http
            .get(served.metrics_url())
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET /metrics: {err}"));
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let bytes = response
            .body()
            .await
            .unwrap_or_else(|err| panic!("reading /metrics: {err}"));
        String::from_utf8(bytes.to_vec()).unwrap_or_else(|err| panic!("/metrics: {err}"))
    };
    within("GET /metrics", exchange).await
}

/// A request's text.
fn request(id: &str, method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
}

/// A notification's text.
fn notification(method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{params}}}"#)
}

/// An answer's text, as the proxy writes it.
fn result(id: &str, result: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
}

/// The id of an answer, exactly as written.
fn raw_id(answer: &Value) -> String {
    answer["id"].to_string()
}

/// How many requests for `method` the upstream received.
fn count(server: &TestServer, method: &str) -> usize {
    server
        .received()
        .iter()
        .filter(|m| m["method"] == method)
        .count()
}

/// `echo` answered after `params[3]` milliseconds (so that answers come
/// back in another order than the requests went), the rest as `standard`.
fn delayed_echo(msg: &Value) -> Action {
    if msg["method"] == "echo" {
        if let Some(ms) = msg["params"][3].as_u64() {
            let answer = Action::Reply(response(&msg["id"], msg["params"].clone()));
            return Action::Delay(Duration::from_millis(ms), Box::new(answer));
        }
    }
    standard(msg)
}

// ---- many clients ---------------------------------------------------------------

/// Ids every client uses: the same across clients (so they collide on the
/// shared upstream connections), in spellings a client may choose, each to
/// come back exactly as written.
const IDS: [&str; 7] = [
    "1",
    r#""a""#,
    "null",
    "1e2",
    "12345678901234567890123",
    r#""caf\u00e9""#,
    "-0",
];

/// One well-behaved downstream: `rounds` times, each id of [`IDS`] as
/// single requests all at once, then all of them as one batch; every
/// answer must be exactly its own.
async fn own_answers_only(url: String, client: u64, rounds: u64) -> usize {
    let http = http_client();
    let mut answered = 0;
    for round in 0..rounds {
        let entries: Vec<(String, String)> = IDS
            .iter()
            .enumerate()
            .map(|(k, id)| {
                let delay = (client * 7 + k as u64 * 3 + round) % 15;
                let params = format!("[{client},{round},{k},{delay}]");
                (request(id, "echo", &params), result(id, &params))
            })
            .collect();
        let singles = entries.iter().map(|(body, expected)| {
            let (http, url) = (&http, &url);
            async move {
                let reply = post(http, url, body.clone()).await;
                assert_eq!(
                    (reply.status, reply.body.as_str()),
                    (200, expected.as_str()),
                    "client {client}"
                );
                assert_eq!(reply.content_type, "application/json");
            }
        });
        join_all(singles).await;
        let batch: Vec<&str> = entries.iter().map(|(body, _)| body.as_str()).collect();
        let expected: Vec<&str> = entries.iter().map(|(_, answer)| answer.as_str()).collect();
        let reply = post(&http, &url, format!("[{}]", batch.join(","))).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body,
            format!("[{}]", expected.join(",")),
            "client {client}"
        );
        answered += 2 * IDS.len();
    }
    answered
}

#[actix_rt::test]
async fn fifty_http_clients_in_parallel_each_get_exactly_their_own_answers() {
    const CLIENTS: u64 = 50;
    const ROUNDS: u64 = 2;
    let (a, b) = (
        TestServer::start(delayed_echo),
        TestServer::start(delayed_echo),
    );
    let upstreams = [upstream(&a.url()).await, upstream(&b.url()).await];
    let served = Served::start(Forward::new(Upstreams::new(upstreams.clone()))).await;

    let clients = (0..CLIENTS).map(|c| own_answers_only(served.url.clone(), c, ROUNDS));
    let answered: usize = within("fifty clients", join_all(clients))
        .await
        .into_iter()
        .sum();

    let expected = (CLIENTS * ROUNDS) as usize * 2 * IDS.len();
    assert_eq!(answered, expected);
    // Every request went upstream once, to one of the two.
    assert_eq!(count(&a, "echo") + count(&b, "echo"), expected);
    let stats = served.forward.stats();
    assert_eq!(stats.forwarded, expected as u64, "{stats:?}");
    assert_eq!(stats.messages, CLIENTS * ROUNDS * (IDS.len() as u64 + 1));
    assert_eq!(
        (stats.timeouts, stats.unavailable, stats.invalid),
        (0, 0, 0)
    );
    for client in &upstreams {
        assert_no_pending(client);
    }
    served.stop().await;
}

// ---- batches and notifications --------------------------------------------------

#[actix_rt::test]
async fn a_batch_is_answered_in_order_with_one_failing_and_one_timing_out_alone() {
    let server = TestServer::start(standard);
    let up = upstream(&server.url()).await;
    let config = ProxyConfig::new().timeout(Duration::from_millis(300));
    let served = Served::start(Forward::new(Upstreams::new([up.clone()])).config(config)).await;
    let http = http_client();

    let batch = [
        request(r#""first""#, "echo", "[1]"),
        request("2", "error", "[]"),
        // Never answered: times out on its own.
        request("3", "silent", "[]"),
        notification("log.write", r#"["in a batch"]"#),
        request("4", "sleep", "[20]"),
        request(r#""last""#, "add", "[2,3]"),
    ];
    let reply = post(&http, &served.url, format!("[{}]", batch.join(","))).await;
    assert_eq!(reply.status, 200);
    let answers = reply.json();
    let answers = answers.as_array().expect("a batch answer");
    let ids: Vec<String> = answers.iter().map(raw_id).collect();
    assert_eq!(ids, [r#""first""#, "2", "3", "4", r#""last""#], "{reply:?}");
    assert_eq!(answers[0]["result"], json!([1]));
    // The upstream's own error object, as it sent it.
    assert_eq!(
        answers[1]["error"],
        json!({"code": -32000, "message": "boom", "data": {"detail": "x"}})
    );
    assert_eq!(answers[2]["error"]["code"], codes::UPSTREAM_TIMEOUT);
    assert_eq!(answers[3]["result"], "slept");
    assert_eq!(answers[4]["result"], 5);
    // The notification went upstream too, with its params.
    let received = server.wait_received_async(6, BOUND).await;
    assert!(
        received
            .contains(&json!({"jsonrpc": "2.0", "method": "log.write", "params": ["in a batch"]})),
        "{received:?}"
    );

    // Entries that are no requests get -32600 each (id null when none can
    // be read); the rest are answered.
    let mixed = format!(
        r#"[1,{},{{"foo":"bar"}},{{"jsonrpc":"2.0","id":"x","method":5}}]"#,
        request("7", "echo", r#"{"k":"v"}"#)
    );
    let reply = post(&http, &served.url, mixed).await;
    let answers = reply.json();
    let codes: Vec<Value> = answers
        .as_array()
        .expect("a batch answer")
        .iter()
        .map(|a| a["error"]["code"].clone())
        .collect();
    assert_eq!(
        codes,
        [json!(-32600), Value::Null, json!(-32600), json!(-32600)],
        "{reply:?}"
    );
    assert_eq!(
        answers[1],
        json!({"jsonrpc": "2.0", "id": 7, "result": {"k": "v"}})
    );
    assert_eq!(raw_id(&answers[3]), r#""x""#);

    // An empty batch is one invalid request.
    let reply = post(&http, &served.url, "[]").await;
    assert_eq!(reply.error_code(), -32600);

    let stats = served.forward.stats();
    assert_eq!((stats.timeouts, stats.upstream_errors), (1, 1), "{stats:?}");
    assert_no_pending(&up);
    served.stop().await;
}

#[actix_rt::test]
async fn notifications_only_are_answered_204_and_reach_the_upstream() {
    let server = TestServer::start(standard);
    let up = upstream(&server.url()).await;
    let served = Served::start(Forward::new(Upstreams::new([up.clone()]))).await;
    let http = http_client();

    let reply = post(&http, &served.url, notification("log.write", r#"["one"]"#)).await;
    assert_eq!((reply.status, reply.body.as_str()), (204, ""), "{reply:?}");
    let batch = format!(
        "[{},{}]",
        notification("log.write", r#"["two"]"#),
        notification("log.flush", r#"{"now":true}"#)
    );
    let reply = post(&http, &served.url, batch).await;
    assert_eq!((reply.status, reply.body.as_str()), (204, ""), "{reply:?}");

    let received = server.wait_received_async(3, BOUND).await;
    let expected = [
        json!({"jsonrpc": "2.0", "method": "log.write", "params": ["one"]}),
        json!({"jsonrpc": "2.0", "method": "log.write", "params": ["two"]}),
        json!({"jsonrpc": "2.0", "method": "log.flush", "params": {"now": true}}),
    ];
    for notification in expected {
        assert!(received.contains(&notification), "{received:?}");
    }
    assert_eq!(served.forward.stats().notifications, 3);
    assert_no_pending(&up);
    served.stop().await;
}

// ---- hostile input ----------------------------------------------------------------

/// Nesting far deeper than any parser's recursion limit.
const DEPTH: usize = 100_000;

#[actix_rt::test]
async fn hostile_input_gets_errors_for_that_client_only_while_another_keeps_working() {
    let server = TestServer::start(delayed_echo);
    let up = upstream(&server.url()).await;
    let config = ProxyConfig::new().timeout(Duration::from_secs(2));
    let served = Served::start(Forward::new(Upstreams::new([up.clone()])).config(config)).await;
    let hostile_done = AtomicBool::new(false);

    // A well-behaved client, all along: each answer exactly its own.
    let good = async {
        let http = http_client();
        let mut n: u64 = 0;
        while !hostile_done.load(Ordering::Relaxed) || n < 20 {
            let params = format!("[{n},0,0,{}]", n % 5);
            let reply = post(&http, &served.url, request(&n.to_string(), "echo", &params)).await;
            assert_eq!(reply.body, result(&n.to_string(), &params));
            n += 1;
        }
        n
    };

    let hostile = async {
        let http = http_client();
        let url = &served.url;
        // Not JSON.
        for garbage in ["{not json", "", "\"jsonrpc\": \"2.0\"}", "[1,2"] {
            let reply = post(&http, url, garbage).await;
            assert_eq!(reply.status, 200, "{garbage:?}: {reply:?}");
            assert_eq!(reply.error_code(), -32700, "{garbage:?}: {reply:?}");
        }
        // JSON, but no request.
        for not_a_request in [
            "42",
            r#""text""#,
            r#"{"foo":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":2}"#,
            r#"{"jsonrpc":"1.0","id":1,"method":"echo"}"#,
        ] {
            let reply = post(&http, url, not_a_request).await;
            assert_eq!(reply.status, 200, "{not_a_request}: {reply:?}");
            let answer = reply.json();
            assert_eq!(
                answer["error"]["code"], -32600,
                "{not_a_request}: {reply:?}"
            );
        }
        // Not UTF-8.
        let reply = post(
            &http,
            url,
            Bytes::from_static(
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":[\"\xff\xfe\"]}",
            ),
        )
        .await;
        assert_eq!(reply.error_code(), -32700, "{reply:?}");
        // Deeply nested: a batch of one entry that is no request.
        let nested = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
        let reply = post(&http, url, nested).await;
        assert_eq!(reply.status, 200);
        let answer = reply.json();
        assert_eq!(answer[0]["error"]["code"], -32600, "{reply:?}");
        // Deeply nested params: -32602 at once, nothing forwarded (an
        // upstream that cannot parse them would answer with no id, and the
        // request would wait for its timeout).
        let params = format!("[{}{}]", "[".repeat(DEPTH), "]".repeat(DEPTH));
        let reply = post(&http, url, request("\"deep\"", "echo", &params)).await;
        let answer = reply.json();
        assert_eq!(raw_id(&answer), "\"deep\"", "{reply:?}");
        assert_eq!(answer["error"]["code"], -32602, "{reply:?}");
        // 10,000 entries: one error, nothing forwarded.
        let flood: Vec<String> = (0..10_000)
            .map(|n| request(&n.to_string(), "flood", "[]"))
            .collect();
        let reply = post(&http, url, format!("[{}]", flood.join(","))).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.error_code(), codes::LIMIT_EXCEEDED, "{reply:?}");
        // Over the 5 MiB body limit: 413, the bytes not kept.
        let huge = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"echo","params":["{}"]}}"#,
            "x".repeat(6 << 20)
        );
        let reply = post(&http, url, huge).await;
        assert_eq!(reply.status, 413, "{}", &reply.body);
        assert_eq!(reply.error_code(), codes::LIMIT_EXCEEDED);
        hostile_done.store(true, Ordering::Relaxed);
    };

    let (good, ()) = within("the hostile and the good client", async {
        futures_util::join!(good, hostile)
    })
    .await;
    assert!(good >= 20);
    assert_eq!(count(&server, "flood"), 0);
    let stats = served.forward.stats();
    assert!(stats.limited >= 2 && stats.invalid >= 10, "{stats:?}");
    assert_no_pending(&up);
    served.stop().await;
}

#[actix_rt::test]
async fn a_body_cut_short_leaves_the_proxy_serving() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let server = TestServer::start(standard);
    let up = upstream(&server.url()).await;
    let served = Served::start(Forward::new(Upstreams::new([up.clone()]))).await;
    // Promises 1,000 bytes, sends 10 and stops writing.
    let mut socket = within("connect", tokio::net::TcpStream::connect(served.addr))
        .await
        .unwrap_or_else(|err| panic!("connecting to the proxy: {err}"));
    let head = "POST / HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"jsonrpc\"";
    within("write", socket.write_all(head.as_bytes()))
        .await
        .unwrap_or_else(|err| panic!("writing: {err}"));
    let _ = socket.shutdown().await;
    let mut answer = Vec::new();
    // Whatever the proxy says (or nothing), the socket ends.
    let _ = within(
        "the cut-short request ends",
        socket.read_to_end(&mut answer),
    )
    .await;

    let reply = post(&http_client(), &served.url, request("1", "add", "[1,2]")).await;
    assert_eq!(reply.body, result("1", "3"));
    assert_no_pending(&up);
    served.stop().await;
}

// ---- failover -------------------------------------------------------------------------

/// Waits (bounded) for an event of the upstream connection.
async fn event(client: &Client, what: &str, wanted: impl Fn(&ConnectionEvent) -> bool) {
    let mut events = client.events();
    within(what, async {
        while let Some(event) = events.next().await {
            if wanted(&event) {
                return;
            }
        }
        panic!("the events ended before {what}");
    })
    .await;
}

#[actix_rt::test]
async fn requests_fail_over_to_a_second_upstream_when_the_first_is_dropped() {
    let (a, b) = (TestServer::start(standard), TestServer::start(standard));
    // The first upstream is reached through a proxy that can cut it off.
    let cut = FaultProxy::start(a.addr());
    let upstreams = [upstream(&cut.url()).await, upstream(&b.url()).await];
    let config = ProxyConfig::new().timeout(BOUND);
    let served =
        Served::start(Forward::new(Upstreams::new(upstreams.clone())).config(config)).await;
    let http = http_client();

    // Both idle: the first is preferred.
    let reply = post(&http, &served.url, request("1", "echo", r#"["a"]"#)).await;
    assert_eq!(reply.body, result("1", r#"["a"]"#));
    assert_eq!((count(&a, "echo"), count(&b, "echo")), (1, 0));

    // A request in flight on the first when it is lost gets -32002.
    let in_flight = actix_rt::spawn({
        let (http, url) = (http.clone(), served.url.clone());
        async move { post(&http, &url, request(r#""lost""#, "silent", "[]")).await }
    });
    a.wait_received_async(2, BOUND).await;
    cut.refuse(true);
    cut.drop_all();
    let reply = within("the request in flight", in_flight)
        .await
        .unwrap_or_else(|err| panic!("the request in flight: {err}"));
    let answer = reply.json();
    assert_eq!(raw_id(&answer), r#""lost""#);
    assert_eq!(
        answer["error"]["code"],
        codes::UPSTREAM_UNAVAILABLE,
        "{reply:?}"
    );
    event(&upstreams[0], "the first upstream reconnecting", |e| {
        matches!(e, ConnectionEvent::Reconnecting { .. })
    })
    .await;

    // While it is gone, every request goes to the second.
    for n in 0..10 {
        let reply = post(
            &http,
            &served.url,
            request(&n.to_string(), "add", &format!("[{n},1]")),
        )
        .await;
        assert_eq!(reply.body, result(&n.to_string(), &(n + 1).to_string()));
    }
    assert_eq!((count(&a, "add"), count(&b, "add")), (0, 10));
    let metrics = get_metrics(&served).await;
    assert!(
        metrics.contains("jsonrpc_proxy_upstream_up{upstream=\"0\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jsonrpc_proxy_upstream_up{upstream=\"1\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jsonrpc_proxy_upstream_failures_total{upstream=\"0\"} 1\n"),
        "{metrics}"
    );

    // Back: preferred again.
    cut.refuse(false);
    event(&upstreams[0], "the first upstream back", |e| {
        matches!(e, ConnectionEvent::Reconnected)
    })
    .await;
    let reply = post(&http, &served.url, request("11", "echo", r#"["back"]"#)).await;
    assert_eq!(reply.body, result("11", r#"["back"]"#));
    assert_eq!(count(&a, "echo"), 2);

    // The second dropped for good: the first takes everything.
    drop(b);
    event(&upstreams[1], "the second upstream reconnecting", |e| {
        matches!(e, ConnectionEvent::Reconnecting { .. })
    })
    .await;
    for n in 20..25 {
        let reply = post(&http, &served.url, request(&n.to_string(), "add", "[1,1]")).await;
        assert_eq!(reply.body, result(&n.to_string(), "2"));
    }
    assert_eq!(count(&a, "add"), 5);
    for up in &upstreams {
        assert_no_pending(up);
    }
    served.stop().await;
}

// ---- the hook ---------------------------------------------------------------------------

/// An allow list, an API key on a header, a method answered here and one
/// rewritten on its way.
fn gatekeeper(request: &mut ProxyRequest, origin: &Origin) -> Decision {
    let key = origin
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok());
    if key != Some("k1") {
        return Decision::Refuse(ErrorObject::new(-32000, "missing or wrong x-api-key"));
    }
    match request.method.as_str() {
        "echo" | "add" | "log.write" => Decision::Forward,
        "proxy_version" => match RawValue::from_string(r#"{"name":"test","v":1}"#.to_owned()) {
            Ok(version) => Decision::Answer(version),
            Err(err) => Decision::Refuse(ErrorObject::internal(err)),
        },
        "legacy_echo" => {
            request.method = "echo".into();
            let was = request.params.take().unwrap_or_else(|| "null".into());
            request.params = Some(format!(r#"{{"rewritten":true,"was":{was}}}"#));
            Decision::Forward
        }
        "broken" => {
            // A hook's mistake: params that are not JSON.
            request.params = Some("[1,".into());
            Decision::Forward
        }
        _ => Decision::Refuse(ErrorObject::method_not_found(&request.method)),
    }
}

async fn post_with_key(http: &awc::Client, url: &str, key: &str, body: String) -> Reply {
    let exchange = async {
        let mut response = http
            .post(url)
            .insert_header(("x-api-key", key))
            .send_body(body)
            .await
            .unwrap_or_else(|err| panic!("POST {url}: {err}"));
        let bytes = response
            .body()
            .await
            .unwrap_or_else(|err| panic!("reading the answer: {err}"));
        Reply {
            status: response.status().as_u16(),
            content_type: String::new(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    };
    within("a POST with a key", exchange).await
}

#[actix_rt::test]
async fn the_hook_refuses_answers_and_rewrites_before_anything_goes_upstream() {
    let server = TestServer::start(standard);
    let up = upstream(&server.url()).await;
    let forward = Forward::new(Upstreams::new([up.clone()])).hook(gatekeeper);
    let served = Served::start(forward).await;
    let (http, url) = (http_client(), served.url.as_str());

    let reply = post_with_key(&http, url, "k1", request("1", "add", "[1,2]")).await;
    assert_eq!(reply.body, result("1", "3"));
    // Not on the list.
    let reply = post_with_key(&http, url, "k1", request("2", "admin_peers", "[]")).await;
    let answer = reply.json();
    assert_eq!(
        (raw_id(&answer), answer["error"]["code"].clone()),
        ("2".into(), json!(-32601))
    );
    // No key, a wrong key.
    let reply = post(&http, url, request("3", "add", "[1,2]")).await;
    assert_eq!(
        reply.json()["error"]["message"],
        "missing or wrong x-api-key"
    );
    let reply = post_with_key(&http, url, "k2", request("4", "add", "[1,2]")).await;
    assert_eq!(reply.json()["error"]["code"], -32000);
    // Answered here, exactly as the hook wrote it.
    let reply = post_with_key(&http, url, "k1", request(r#""v""#, "proxy_version", "[]")).await;
    assert_eq!(reply.body, result(r#""v""#, r#"{"name":"test","v":1}"#));
    // Rewritten on its way.
    let reply = post_with_key(&http, url, "k1", request("5", "legacy_echo", "[7]")).await;
    assert_eq!(reply.body, result("5", r#"{"rewritten":true,"was":[7]}"#));
    // A hook writing params that are not JSON: invalid params, to this client.
    let reply = post_with_key(&http, url, "k1", request("6", "broken", "[]")).await;
    assert_eq!(reply.json()["error"]["code"], -32602, "{reply:?}");
    // In a batch, each entry decided on its own; a refused notification
    // gets no answer.
    let batch = format!(
        "[{},{},{},{}]",
        request("7", "echo", "[1]"),
        request("8", "eth_sendRawTransaction", "[]"),
        notification("log.write", "[1]"),
        notification("admin_stop", "[]"),
    );
    let reply = post_with_key(&http, url, "k1", batch).await;
    let answers = reply.json();
    assert_eq!(answers[0]["result"], json!([1]), "{reply:?}");
    assert_eq!(answers[1]["error"]["code"], -32601, "{reply:?}");
    assert_eq!(answers.as_array().map(Vec::len), Some(2));

    // Upstream saw only what the hook let through, as rewritten.
    let received = server.wait_received_async(4, BOUND).await;
    // (A batch's entries go up side by side, in no set order.)
    let mut methods: Vec<&str> = received
        .iter()
        .filter_map(|m| m["method"].as_str())
        .collect();
    methods.sort_unstable();
    assert_eq!(
        methods,
        ["add", "echo", "echo", "log.write"],
        "{received:?}"
    );
    assert_eq!(
        received[1]["params"],
        json!({"rewritten": true, "was": [7]})
    );
    let stats = served.forward.stats();
    assert_eq!((stats.answered_locally, stats.refused), (1, 5), "{stats:?}");
    assert_no_pending(&up);
    served.stop().await;
}

// ---- metrics ------------------------------------------------------------------------------

#[actix_rt::test]
async fn get_metrics_shows_the_counters_and_each_upstreams_latency() {
    let (a, b) = (TestServer::start(standard), TestServer::start(standard));
    let upstreams = [upstream(&a.url()).await, upstream(&b.url()).await];
    let served = Served::start(Forward::new(Upstreams::new(upstreams.clone()))).await;
    let http = http_client();

    let batch = format!(
        "[{},{},{}]",
        request("1", "add", "[1,1]"),
        request("2", "error", "[]"),
        notification("log.write", "[1]")
    );
    post(&http, &served.url, batch).await;
    post(&http, &served.url, "{not json").await;
    post(&http, &served.url, request("3", "echo", "[]")).await;
    let metrics = get_metrics(&served).await;

    for line in [
        "# TYPE jsonrpc_proxy_messages_total counter",
        "jsonrpc_proxy_messages_total 3",
        "jsonrpc_proxy_forwarded_total 3",
        "jsonrpc_proxy_notifications_total 1",
        "jsonrpc_proxy_upstream_errors_total 1",
        "jsonrpc_proxy_invalid_total 1",
        "jsonrpc_proxy_timeouts_total 0",
        "jsonrpc_proxy_unavailable_total 0",
        "jsonrpc_proxy_limited_total 0",
        "jsonrpc_proxy_upstream_up{upstream=\"0\"} 1",
        "jsonrpc_proxy_upstream_up{upstream=\"1\"} 1",
        "# TYPE jsonrpc_proxy_upstream_latency_seconds histogram",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no line {line:?} in:\n{metrics}"
        );
    }
    // Every forwarded request was timed by the upstream that answered it.
    let count = |upstream: &str| -> u64 {
        let prefix =
            format!("jsonrpc_proxy_upstream_latency_seconds_count{{upstream=\"{upstream}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no latency count for upstream {upstream}:\n{metrics}"))
    };
    assert_eq!(count("0") + count("1"), 3, "{metrics}");
    for upstream in ["0", "1"] {
        let inf = format!(
            "jsonrpc_proxy_upstream_latency_seconds_bucket{{upstream=\"{upstream}\",le=\"+Inf\"}} {}",
            count(upstream)
        );
        assert!(metrics.lines().any(|l| l == inf), "{inf:?} in:\n{metrics}");
    }
    for up in &upstreams {
        assert_no_pending(up);
    }
    served.stop().await;
}

// ---- websocket at the same path ------------------------------------------------------------

#[actix_rt::test]
async fn http_and_websocket_downstreams_share_one_path_and_the_upstream() {
    let server = TestServer::start(standard);
    let up = upstream(&server.url()).await;
    let served = Served::start(Forward::new(Upstreams::new([up.clone()]))).await;
    let ws_url = format!("ws://{}/", served.addr);
    let downstream = connect_with(RpcConnection::builder(&ws_url)).await;
    let sum: i64 = within(
        "a call over the proxy's websocket",
        downstream.call("add", params![2, 3]),
    )
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(sum, 5);
    let reply = post(&http_client(), &served.url, request("1", "add", "[1,1]")).await;
    assert_eq!(reply.body, result("1", "2"));
    assert_eq!(count(&server, "add"), 2);
    let _ = within("closing", downstream.close()).await;
    assert_no_pending(&up);
    served.stop().await;
}

#[actix_rt::test]
async fn a_client_that_goes_away_leaves_nothing_pending_upstream_past_the_timeout() {
    let server = TestServer::start(standard);
    let up = upstream(&server.url()).await;
    let config = ProxyConfig::new().timeout(Duration::from_millis(300));
    let served = Served::start(Forward::new(Upstreams::new([up.clone()])).config(config)).await;
    // Gives up on its request (never answered upstream) and goes away.
    let impatient = awc::Client::builder()
        .timeout(Duration::from_millis(50))
        .finish();
    let gave_up = impatient
        .post(&served.url)
        .send_body(request("1", "silent", "[]"))
        .await;
    assert!(gave_up.is_err(), "{gave_up:?}");
    drop(impatient);
    server.wait_received_async(1, BOUND).await;
    // NOTE: actix-web does not drop a handler whose HTTP/1 client has gone
    // (actix/actix-web#3462), so the upstream call waits for the proxy's
    // timeout; it must end then, not linger.
    within("the upstream call to end", async {
        // (The proxy counts the timeout on its worker's thread.)
        while up.stats().pending > 0 || served.forward.stats().timeouts == 0 {
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(served.forward.stats().timeouts, 1);
    served.stop().await;
}
