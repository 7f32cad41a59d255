//! Arbitrary inbound messages over a real socket: whatever a server sends
//! in text or binary frames (random bytes, invalid UTF-8, JSON-like token
//! soup, stray responses, requests, notifications), the connection neither
//! panics nor stops: a call made afterwards is answered, and nothing is
//! left in the pending table.
//!
//! The quick run is part of `cargo test`; `cargo test --test
//! inbound_property -- --ignored` runs many more cases.

use std::sync::{Arc, Mutex};

use jsonrpc_websocket::{params, RegisterListener, RpcConnection, ServerNotification};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use test_support::{assert_no_pending, json, within, RawConn, RawServer, Value};

/// Pieces of JSON-RPC text, joined at random: mostly near misses.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"jsonrpc\"",
    "\"2.0\"",
    "\"1.0\"",
    "\"id\"",
    "1",
    "2",
    "-1",
    "1.5",
    "1e999",
    "null",
    "true",
    "\"method\"",
    "\"result\"",
    "\"error\"",
    "\"params\"",
    "\"subscription\"",
    "\"x\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\\"\"",
    "{\"code\":-32600}",
    "{\"code\":\"x\"}",
    " ",
    "\n",
    "\u{feff}",
    "é",
    "\"id\":1",
    "\"id\":null",
];

/// One message: its bytes, and whether it goes in a text frame.
fn message() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let soup = prop::collection::vec(prop::sample::select(TOKENS), 0..40)
        .prop_map(|tokens| tokens.concat().into_bytes());
    let text = ".{0,200}".prop_map(String::into_bytes);
    let bytes = prop::collection::vec(any::<u8>(), 0..200);
    (prop_oneof![4 => soup, 2 => text, 1 => bytes], any::<bool>())
}

/// The messages of one case, in order.
type Case = Vec<(Vec<u8>, bool)>;

fn case() -> impl Strategy<Value = Case> {
    prop::collection::vec(message(), 1..24)
}

/// Runs `cases` generated cases, one connection each.
async fn run(cases: u32) {
    let mut runner = TestRunner::new(Config::with_cases(cases));
    let queue: Arc<Mutex<Vec<Case>>> = Arc::default();
    let script_queue = Arc::clone(&queue);
    let server = RawServer::start(move |mut conn: RawConn| {
        let messages = script_queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        async move {
            for (bytes, text) in &messages {
                conn.send_frame(true, if *text { 0x1 } else { 0x2 }, bytes)
                    .await;
            }
            conn.send_json(&json!({"jsonrpc": "2.0", "method": "marker"}))
                .await;
            // Answer the call that follows (answers to requests in the
            // soup may come first).
            while let Some(msg) = conn.read_json().await {
                if msg["method"] == "echo" {
                    let answer =
                        json!({"jsonrpc": "2.0", "id": msg["id"], "result": msg["params"]});
                    conn.send_json(&answer).await;
                }
            }
        }
    });
    for n in 0..cases {
        let messages = case().new_tree(&mut runner).expect("a case").current();
        queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(messages.clone());
        let (tx, mut marker) = tokio::sync::mpsc::unbounded_channel();
        let client = within(
            "connect",
            RpcConnection::builder(server.url())
                .listener(RegisterListener::func(
                    "marker",
                    move |n: ServerNotification| {
                        let _ = tx.send(n.method);
                    },
                ))
                .connect(),
        )
        .await
        .unwrap();
        within("the marker", marker.recv()).await;
        let answer: Result<Value, _> = within("a call", client.call("echo", params![n])).await;
        let shown: Vec<String> = messages
            .iter()
            .map(|(b, _)| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert_eq!(answer.ok(), Some(json!([n])), "after {shown:?}");
        assert_no_pending(&client);
        assert!(client.is_connected(), "after {shown:?}");
        let _ = within("close", client.close()).await;
    }
}

#[actix_rt::test]
async fn whatever_arrives_the_connection_goes_on() {
    run(48).await;
}

#[actix_rt::test]
#[ignore = "long: many more cases"]
async fn whatever_arrives_the_connection_goes_on_long() {
    run(3_000).await;
}
