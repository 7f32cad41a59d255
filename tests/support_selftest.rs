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
    let mut req = awc::Client::new().ws(url);
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
