//! Tests of the test support code itself, with a tiny client written directly on awc.
use test_support as support;

use std::time::Duration;

use actix_http::ws::Item;
use awc::ws::{Codec, Frame, Message};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use support::{Action, RawConn, RawServer, TestServer};

const T: Duration = Duration::from_secs(10);

type Ws = actix_codec::Framed<awc::BoxedSocket, Codec>;

async fn connect(url: &str, header: Option<(&str, &str)>) -> Result<Ws, awc::error::WsClientError> {
    // Room for the 1 MiB echo sent through the proxy (awc's default limit is 64 KiB).
    let mut req = awc::Client::new().ws(url).max_frame_size(4 << 20);
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let (_resp, ws) = tokio::time::timeout(T, req.connect())
        .await
        .expect("connect timed out")?;
    Ok(ws)
}

async fn send(ws: &mut Ws, v: &Value) {
    tokio::time::timeout(T, ws.send(Message::Text(v.to_string().into())))
        .await
        .expect("send timed out")
        .expect("send failed");
}

/// Next frame; `None` on EOF.
async fn next(ws: &mut Ws) -> Option<Frame> {
    tokio::time::timeout(T, ws.next())
        .await
        .expect("receive timed out")
        .map(|r| r.expect("protocol error"))
}

async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        Some(Frame::Text(b)) | Some(Frame::Binary(b)) => {
            serde_json::from_slice(&b).expect("server sent invalid JSON")
        }
        other => panic!("expected a data frame, got {other:?}"),
    }
}

#[test]
fn standard_handler_semantics() {
    let id = json!(1);
    let Action::Reply(r) =
        support::standard(&json!({"jsonrpc":"2.0","id":1,"method":"add","params":[1,2,3]}))
    else {
        panic!("add should reply")
    };
    assert_eq!(r, support::response(&id, json!(6)));
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"echo","params":"a"},
        {"jsonrpc":"2.0","method":"note"},
        {"jsonrpc":"2.0","id":2,"method":"nope"}
    ]);
    let Action::Reply(Value::Array(replies)) = support::standard(&batch) else {
        panic!("batch should reply with an array")
    };
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0], support::response(&id, json!("a")));
    assert_eq!(replies[1]["error"]["code"], -32601);
    assert!(
        matches!(support::standard(&json!([])), Action::Reply(v) if v["error"]["code"] == -32600)
    );
    assert!(matches!(
        support::standard(&json!({"jsonrpc":"2.0","method":"n"})),
        Action::Nothing
    ));
    assert!(matches!(
        support::standard(&json!({"jsonrpc":"2.0","id":"s1","result":1})),
        Action::Nothing
    ));
}

#[actix_rt::test]
async fn echo_push_ping_headers_and_drop() {
    let server = TestServer::start(support::standard);
    let mut ws = connect(&server.url(), Some(("x-test", "yes")))
        .await
        .expect("connect failed");
    assert_eq!(server.connections(), 1);
    let hs = server.handshakes();
    assert_eq!(hs.len(), 1);
    assert!(
        hs[0].contains(&("x-test".to_owned(), "yes".to_owned())),
        "{hs:?}"
    );

    let req = json!({"jsonrpc":"2.0","id":7,"method":"echo","params":{"a":[1,2]}});
    send(&mut ws, &req).await;
    assert_eq!(
        next_json(&mut ws).await,
        support::response(&json!(7), json!({"a":[1,2]}))
    );
    assert_eq!(server.wait_received_async(1, T).await, vec![req]);

    // Unparseable input is recorded as a string and answered with a parse error.
    tokio::time::timeout(T, ws.send(Message::Text("{nope".into())))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next_json(&mut ws).await["error"]["code"], -32700);
    assert_eq!(server.received()[1], json!("{nope"));

    server.push(json!({"jsonrpc":"2.0","method":"tick"}));
    assert_eq!(next_json(&mut ws).await["method"], "tick");

    // Server answers pings, records pongs.
    tokio::time::timeout(T, ws.send(Message::Ping("p1".into())))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(next(&mut ws).await, Some(Frame::Pong(b)) if &b[..] == b"p1"));
    server.broadcast(Action::Ping(b"p2".to_vec()));
    assert!(matches!(next(&mut ws).await, Some(Frame::Ping(b)) if &b[..] == b"p2"));
    tokio::time::timeout(T, ws.send(Message::Pong("p2".into())))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.wait_pongs_async(1, T).await, vec![b"p2".to_vec()]);

    // A reply followed by Drop: the reply arrives, then EOF without a close frame.
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","id":8,"method":"garbage_then_echo","params":1}),
    )
    .await;
    assert!(matches!(next(&mut ws).await, Some(Frame::Text(b)) if &b[..] == b"{not json"));
    assert_eq!(next_json(&mut ws).await["id"], 99999);
    assert_eq!(next_json(&mut ws).await["result"], 1);
    server.broadcast(Action::Many(vec![
        Action::Reply(json!("last")),
        Action::Drop,
    ]));
    assert_eq!(next_json(&mut ws).await, json!("last"));
    assert!(
        next(&mut ws).await.is_none(),
        "expected EOF without close frame"
    );
    server.wait_connections_async(0, T).await;
}

#[actix_rt::test]
async fn a_server_that_records_nothing_still_answers() {
    let server = TestServer::builder()
        .record_received(false)
        .start(support::standard);
    let mut ws = connect(&server.url(), None).await.expect("connect failed");
    for id in 1..=3 {
        send(
            &mut ws,
            &json!({"jsonrpc":"2.0","id":id,"method":"echo","params":[id]}),
        )
        .await;
        assert_eq!(
            next_json(&mut ws).await,
            support::response(&json!(id), json!([id]))
        );
    }
    assert!(server.received().is_empty());
}

/// RFC 6455 §5.4: the frames of one fragmented message are not interleaved
/// with another message's. A delayed reply that comes due while a long
/// fragmented one is being sent waits for its last frame.
#[actix_rt::test]
async fn a_delayed_reply_never_falls_between_the_frames_of_a_fragmented_one() {
    const LEN: usize = 50_000;
    // Due after 20 ms, while the 50,000 one-byte frames are being sent.
    let server = TestServer::start(|_: &Value| {
        Action::Many(vec![
            Action::Delay(
                Duration::from_millis(20),
                Box::new(Action::Reply(json!("late"))),
            ),
            Action::ReplyFragmented(json!("x".repeat(LEN)), 1),
        ])
    });
    let mut ws = connect(&server.url(), None).await.expect("connect failed");
    send(&mut ws, &json!({"jsonrpc":"2.0","id":1,"method":"go"})).await;
    let (mut in_message, mut frames, mut late) = (false, 0usize, false);
    while !(late && frames > 0 && !in_message) {
        match next(&mut ws).await {
            Some(Frame::Continuation(Item::FirstText(_))) if !in_message => in_message = true,
            Some(Frame::Continuation(Item::Continue(_))) if in_message => frames += 1,
            Some(Frame::Continuation(Item::Last(_))) if in_message => {
                in_message = false;
                frames += 1;
            }
            Some(Frame::Text(text)) if !in_message && &text[..] == b"\"late\"" => late = true,
            other => panic!(
                "after {frames} continuation frame(s){}: {other:?}",
                if in_message {
                    ", inside the fragmented message"
                } else {
                    ""
                }
            ),
        }
    }
}

#[actix_rt::test]
async fn fragmented_close_and_auth() {
    let server = TestServer::builder()
        .require_header("authorization", "Bearer t")
        .start(support::standard);
    match connect(&server.url(), None).await {
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 401),
        Err(e) => panic!("expected 401, got {e}"),
        Ok(_) => panic!("expected 401, got a connection"),
    }
    assert!(server.handshakes().is_empty());
    assert_eq!(server.handshake_attempts().len(), 1);

    let mut ws = connect(&server.url(), Some(("Authorization", "Bearer t")))
        .await
        .expect("connect with header failed");
    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","id":1,"method":"fragmented","params":"hello fragmented world"}),
    )
    .await;
    let mut text = Vec::new();
    let mut frames = 0;
    loop {
        frames += 1;
        match next(&mut ws).await {
            Some(Frame::Continuation(Item::FirstText(b))) if frames == 1 => {
                text.extend_from_slice(&b)
            }
            Some(Frame::Continuation(Item::Continue(b))) if frames > 1 => {
                text.extend_from_slice(&b)
            }
            Some(Frame::Continuation(Item::Last(b))) if frames > 1 => {
                text.extend_from_slice(&b);
                break;
            }
            other => panic!("unexpected frame #{frames}: {other:?}"),
        }
    }
    assert!(frames > 3);
    let v: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(v["result"], "hello fragmented world");

    send(
        &mut ws,
        &json!({"jsonrpc":"2.0","id":2,"method":"close","params":{"code":4001,"reason":"later"}}),
    )
    .await;
    match next(&mut ws).await {
        Some(Frame::Close(Some(reason))) => {
            assert_eq!(u16::from(reason.code), 4001);
            assert_eq!(reason.description.as_deref(), Some("later"));
        }
        other => panic!("expected close frame, got {other:?}"),
    }
    server.wait_connections_async(0, T).await;
}

#[actix_rt::test]
async fn raw_server_round_trip_and_reject() {
    let server = RawServer::start(|mut conn: RawConn| async move {
        assert!(conn.request_header("sec-websocket-key").is_some());
        while let Some(v) = conn.read_json().await {
            // Answer with a 16-bit-length frame written by hand.
            let payload = json!({"echo": v, "pad": "y".repeat(200)}).to_string();
            let mut bytes =
                RawConn::frame_header(true, support::raw::OP_TEXT, payload.len() as u64);
            assert_eq!(bytes.len(), 4);
            bytes.extend_from_slice(payload.as_bytes());
            conn.send_raw(&bytes).await;
        }
    });
    let mut ws = connect(&server.url(), None)
        .await
        .expect("raw connect failed");
    assert_eq!(server.connections_accepted(), 1);
    send(&mut ws, &json!({"n": 1})).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["echo"], json!({"n": 1}));
    tokio::time::timeout(T, ws.close()).await.unwrap().unwrap();
    drop(ws);
    drop(server); // re-raises a script panic, if any

    assert_eq!(RawConn::frame_header(false, 2, 5), vec![0x02, 5]);
    assert_eq!(
        RawConn::frame_header(true, 1, 100 << 20),
        vec![0x81, 127, 0, 0, 0, 0, 0x06, 0x40, 0, 0]
    );

    let rejecting = RawServer::reject(403);
    match connect(&rejecting.url(), None).await {
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 403),
        Err(e) => panic!("expected 403, got {e}"),
        Ok(_) => panic!("expected 403, got a connection"),
    }
}

// ---- FaultProxy and TestServer::start_at -------------------------------------------------

/// Long enough to be sure a message that should not arrive does not: nothing is slow on
/// loopback, and every positive wait is bounded by `T` anyway.
const QUIET: Duration = Duration::from_millis(300);
/// "Promptly": a cut connection must end well before `T`.
const PROMPT: Duration = Duration::from_secs(3);

fn echo(id: u64, params: Value) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"echo","params":params})
}

/// Sends an echo request and checks its answer.
async fn round_trip(ws: &mut Ws, id: u64) {
    send(ws, &echo(id, json!([id]))).await;
    assert_eq!(
        next_json(ws).await,
        support::response(&json!(id), json!([id]))
    );
}

/// Waits (bounded by `PROMPT`) for the stream to end: EOF or an error, not a frame.
async fn ended(ws: &mut Ws) {
    match tokio::time::timeout(PROMPT, ws.next()).await {
        Err(_) => panic!("the stream did not end within {PROMPT:?}"),
        Ok(None | Some(Err(_))) => {}
        Ok(Some(Ok(frame))) => panic!("expected the stream to end, got {frame:?}"),
    }
}

/// Asserts that nothing arrives for `QUIET`. Waiting out the window is the point: absence can
/// only be observed over some time.
async fn quiet(ws: &mut Ws) {
    if let Ok(item) = tokio::time::timeout(QUIET, ws.next()).await {
        panic!("expected nothing for {QUIET:?}, got {item:?}");
    }
}

#[actix_rt::test]
async fn proxy_forwards_both_ways_and_drop_all_cuts() {
    let server = TestServer::start(support::standard);
    let proxy = support::FaultProxy::start(server.addr());
    assert_eq!(proxy.backend(), server.addr());
    assert!(
        proxy.url().starts_with("ws://127.0.0.1:"),
        "{}",
        proxy.url()
    );
    let mut ws = connect(&proxy.url(), Some(("x-via", "proxy")))
        .await
        .expect("connect through the proxy failed");
    assert_eq!((proxy.accepted(), proxy.connections()), (1, 1));
    assert_eq!(server.connections(), 1);
    assert!(server.handshakes()[0].contains(&("x-via".to_owned(), "proxy".to_owned())));

    // Client to server and back, server push, pings both ways.
    round_trip(&mut ws, 1).await;
    server.push(json!({"jsonrpc":"2.0","method":"tick"}));
    assert_eq!(next_json(&mut ws).await["method"], "tick");
    server.broadcast(Action::Ping(b"sp".to_vec()));
    assert!(matches!(next(&mut ws).await, Some(Frame::Ping(b)) if &b[..] == b"sp"));
    tokio::time::timeout(T, ws.send(Message::Pong("sp".into())))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.wait_pongs_async(1, T).await, vec![b"sp".to_vec()]);
    // A large message crosses in many chunks.
    let big = "z".repeat(1 << 20);
    send(&mut ws, &echo(2, json!(big))).await;
    assert_eq!(next_json(&mut ws).await["result"], json!(big));

    // Cut: the client's stream ends without a close frame, and so does the server's.
    assert_eq!(proxy.drop_all(), 1);
    assert_eq!(proxy.connections(), 0);
    ended(&mut ws).await;
    server.wait_connections_async(0, T).await;
    assert!(server.client_closes().is_empty());

    // New connections are forwarded again.
    let mut ws = connect(&proxy.url(), None).await.expect("reconnect failed");
    assert_eq!(proxy.wait_accepted(2, T).await, 2);
    proxy.wait_open(1, T).await;
    round_trip(&mut ws, 3).await;
    tokio::time::timeout(T, ws.close()).await.unwrap().unwrap();
    drop(ws);
    proxy.wait_open(0, T).await;
    server.wait_connections_async(0, T).await;
}

#[actix_rt::test]
async fn proxy_black_hole_holds_traffic_and_heal_resumes_it() {
    let server = TestServer::start(support::standard);
    let proxy = support::FaultProxy::start(server.addr());
    let mut ws = connect(&proxy.url(), None).await.expect("connect failed");
    round_trip(&mut ws, 1).await;

    assert_eq!(proxy.black_hole(), 1);
    // The client's write succeeds; nothing reaches the server, nothing comes back, nothing closes.
    send(&mut ws, &echo(2, json!([2]))).await;
    server.push(json!({"jsonrpc":"2.0","method":"held"}));
    quiet(&mut ws).await;
    assert_eq!(server.received().len(), 1, "{:?}", server.received());
    assert_eq!(proxy.connections(), 1);
    assert_eq!(server.connections(), 1);

    // Only the connections open at the call are black-holed: a new one works.
    let mut other = connect(&proxy.url(), None)
        .await
        .expect("connect during the black hole failed");
    round_trip(&mut other, 10).await;
    assert_eq!(proxy.connections(), 2);

    // Heal: what was held is delivered, in order, and traffic flows again.
    assert_eq!(proxy.heal(), 1);
    assert_eq!(proxy.heal(), 0);
    assert_eq!(next_json(&mut ws).await["method"], "held");
    assert_eq!(
        next_json(&mut ws).await,
        support::response(&json!(2), json!([2]))
    );
    round_trip(&mut ws, 3).await;
    round_trip(&mut other, 11).await;
}

#[actix_rt::test]
async fn proxy_black_hole_hides_a_close_until_healed() {
    let server = TestServer::start(support::standard);
    let proxy = support::FaultProxy::start(server.addr());
    let mut ws = connect(&proxy.url(), None).await.expect("connect failed");
    round_trip(&mut ws, 1).await;
    proxy.black_hole();
    // The server closes (close frame, then TCP close): the client sees neither.
    server.broadcast(Action::Close(4000, "bye".to_owned()));
    quiet(&mut ws).await;
    assert_eq!(proxy.connections(), 1);
    proxy.heal();
    match next(&mut ws).await {
        Some(Frame::Close(Some(reason))) => assert_eq!(u16::from(reason.code), 4000),
        other => panic!("expected the held close frame, got {other:?}"),
    }
    drop(ws);
    proxy.wait_open(0, T).await;
}

#[actix_rt::test]
async fn proxy_stall_delays_and_zero_releases() {
    let server = TestServer::start(support::standard);
    let proxy = support::FaultProxy::start(server.addr());
    let mut ws = connect(&proxy.url(), None).await.expect("connect failed");

    let delay = Duration::from_millis(200);
    proxy.stall(delay);
    let started = std::time::Instant::now();
    round_trip(&mut ws, 1).await;
    let took = started.elapsed();
    assert!(took >= 2 * delay, "a stalled round trip took only {took:?}");

    // New connections are stalled too (their handshake included); it still completes.
    let started = std::time::Instant::now();
    let mut other = connect(&proxy.url(), None).await.expect("connect failed");
    let took = started.elapsed();
    assert!(took >= 2 * delay, "a stalled handshake took only {took:?}");

    // A long stall holds the request; going back to zero releases it at once.
    proxy.stall(Duration::from_secs(60));
    send(&mut other, &echo(2, json!([2]))).await;
    quiet(&mut other).await;
    assert!(server.received().iter().all(|m| m["id"] != 2));
    proxy.stall(Duration::ZERO);
    assert_eq!(
        next_json(&mut other).await,
        support::response(&json!(2), json!([2]))
    );
    round_trip(&mut ws, 3).await;
}

#[actix_rt::test]
async fn proxy_refuse_and_accept_again() {
    let server = TestServer::start(support::standard);
    let proxy = support::FaultProxy::start(server.addr());
    let mut open = connect(&proxy.url(), None).await.expect("connect failed");

    proxy.refuse(true);
    assert!(connect(&proxy.url(), None).await.is_err());
    assert_eq!(proxy.wait_refused(1, T).await, 1);
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(server.handshake_attempts().len(), 1);
    // The open connection is untouched.
    round_trip(&mut open, 1).await;

    proxy.refuse(false);
    let mut ws = connect(&proxy.url(), None)
        .await
        .expect("connect after refuse(false) failed");
    round_trip(&mut ws, 2).await;
    assert_eq!((proxy.accepted(), proxy.refused()), (2, 1));
}

#[actix_rt::test]
async fn proxy_set_backend_moves_new_connections() {
    let first = TestServer::start(support::standard);
    let second = TestServer::start(support::standard);
    let proxy = support::FaultProxy::start(first.addr());
    let mut old = connect(&proxy.url(), None).await.expect("connect failed");

    proxy.set_backend(second.addr());
    assert_eq!(proxy.backend(), second.addr());
    let mut new = connect(&proxy.url(), None).await.expect("connect failed");
    assert_eq!((first.connections(), second.connections()), (1, 1));
    round_trip(&mut new, 1).await;
    round_trip(&mut old, 2).await;
    assert_eq!(second.received(), vec![echo(1, json!([1]))]);
    assert_eq!(first.received(), vec![echo(2, json!([2]))]);
}

#[actix_rt::test]
async fn test_server_restarts_on_the_same_port_behind_the_proxy() {
    let server = TestServer::start(support::standard);
    let addr = server.addr();
    let proxy = support::FaultProxy::start(addr);
    let mut direct = connect(&server.url(), None).await.expect("connect failed");
    let mut proxied = connect(&proxy.url(), None).await.expect("connect failed");
    round_trip(&mut direct, 1).await;
    round_trip(&mut proxied, 2).await;

    // The server goes away, closing its connections first (leaving them in TIME_WAIT on its
    // port): both clients see their stream end.
    drop(server);
    ended(&mut direct).await;
    ended(&mut proxied).await;
    // The proxy forwards half-closes: its connection ends once the client closes too.
    drop((direct, proxied));
    proxy.wait_open(0, T).await;
    // While it is down, the proxy cannot reach the backend: the handshake fails.
    assert!(connect(&proxy.url(), None).await.is_err());

    let restarted = TestServer::start_at(addr, support::standard);
    assert_eq!(restarted.addr(), addr);
    let mut direct = connect(&restarted.url(), None)
        .await
        .expect("connect to the restarted server failed");
    let mut proxied = connect(&proxy.url(), None)
        .await
        .expect("connect through the proxy to the restarted server failed");
    round_trip(&mut direct, 3).await;
    round_trip(&mut proxied, 4).await;
    assert_eq!(restarted.connections(), 2);

    // And once more, with the builder.
    drop((direct, proxied));
    drop(restarted);
    let again = TestServer::builder()
        .require_header("x-k", "v")
        .start_at(addr, support::standard);
    let mut ws = connect(&proxy.url(), Some(("x-k", "v")))
        .await
        .expect("connect to the server restarted again failed");
    round_trip(&mut ws, 5).await;
    assert_eq!(again.addr(), addr);
}
