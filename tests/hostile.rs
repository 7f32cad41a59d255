//! Misbehaving servers: silence, drops, close frames, garbage, unknown ids,
//! fragments, binary frames, oversized messages and protocol violations.
//! Every call must end, and the pending table must end empty.

use test_support as support;

use std::time::{Duration, Instant};

use jsonrpc_websocket::{params, Call, Error, RpcConnection};
use support::raw::{OP_BINARY, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use support::{
    assert_no_pending, connect, connect_with, json, response, standard, within, RawConn, RawServer,
    TestServer, Value,
};

#[actix_rt::test]
async fn a_call_to_a_silent_server_times_out() {
    let server = TestServer::start(standard);
    let client = connect_with(
        RpcConnection::builder(server.url()).request_timeout(Duration::from_millis(200)),
    )
    .await;
    let err = within("call", client.call::<Value>("silent", params![]))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "timed out after 200ms waiting for 'silent' (id 1)"
    );
    // A per-call timeout overrides the default; the connection still works.
    let err = within(
        "call",
        client.send(Call::new("silent", params![]).timeout(Duration::from_millis(50))),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { after, .. } if after == Duration::from_millis(50)),
        "{err:?}"
    );
    let sum: i64 = within("call", client.call("add", params![1, 1]))
        .await
        .unwrap();
    assert_eq!(sum, 2);
    assert_eq!(client.stats().timeouts, 2);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_late_answer_after_a_timeout_is_an_unknown_id_and_harmless() {
    let server = TestServer::start(standard);
    let client = connect_with(
        RpcConnection::builder(server.url()).request_timeout(Duration::from_millis(50)),
    )
    .await;
    let err = within("call", client.call::<Value>("sleep", params![200]))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    // The late reply arrives while this slower call waits.
    let v: String = within(
        "call",
        client.send(
            Call::new("sleep", params![300])
                .timeout(Duration::from_secs(5))
                .typed(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(v, "slept");
    assert_eq!(client.stats().unknown_ids, 1);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_dropped_socket_fails_the_call_within_a_second() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let started = Instant::now();
    let err = within("call", client.call::<Value>("drop", params![]))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, Error::Disconnected { call: Some(ref c), .. } if c.method == "drop"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "connection lost while waiting for 'drop' (id 1)"
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn every_pending_call_fails_when_the_socket_drops() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let waiting: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            actix_rt::spawn(async move { client.call::<Value>("silent", params![]).await })
        })
        .collect();
    server.wait_received_async(50, support::BOUND).await;
    assert_eq!(client.stats().pending, 50);
    server.broadcast(support::Action::Drop);
    for call in waiting {
        let err = within("call", call).await.unwrap().unwrap_err();
        assert!(err.is_disconnect(), "{err:?}");
    }
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_close_frame_mid_call_gives_its_code_and_reason() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let err = within(
        "call",
        client.call::<Value>("close", json!({"code": 4001, "reason": "maintenance"})),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Closed { code: 4001, ref reason, call: Some(_) } if reason == "maintenance"),
        "{err:?}"
    );
    assert_eq!(err.close_code(), Some(4001));
    assert_eq!(
        err.to_string(),
        "connection closed (code 4001: maintenance) while waiting for 'close' (id 1)"
    );
    let after = within("call", client.call::<Value>("echo", params![]))
        .await
        .unwrap_err();
    assert!(after.is_disconnect(), "{after:?}");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn the_servers_close_frame_is_echoed() {
    // Regression: the close frame arrives in the same read as the handshake
    // response, and nothing follows until we answer. Those early bytes used
    // to sit undecoded until the next read.
    let server = RawServer::start(|mut conn: RawConn| async move {
        conn.send_close(4002, "bye").await;
        // The client must answer with its own close frame, echoing the code.
        let frame = conn.read_frame().await.expect("a close frame back");
        assert_eq!(frame.close_code().map(|c| c.0), Some(4002));
    });
    let client = connect(&server.url()).await;
    let end = within("the end", client.closed()).await;
    assert_eq!(
        (end.initiator, end.code, end.reason.as_str()),
        (jsonrpc_websocket::Initiator::Server, Some(4002), "bye")
    );
    assert!(!client.is_connected());
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn garbage_and_unknown_ids_are_skipped_and_the_connection_keeps_working() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let v: Value = within("call", client.call("garbage_then_echo", params![7]))
        .await
        .unwrap();
    assert_eq!(v, json!([7]));
    for text in [
        "{not json",
        "[]",
        "42",
        "\"str\"",
        r#"{"jsonrpc":"2.0","id":"x","result":1}"#,
        r#"{"jsonrpc":"2.0","id":null,"result":1}"#,
    ] {
        server.push_text(text);
    }
    let v: Value = within("call", client.call("echo", params![8]))
        .await
        .unwrap();
    assert_eq!(v, json!([8]));
    let stats = client.stats();
    assert!(stats.unknown_ids >= 3, "{stats:?}");
    assert!(stats.invalid_messages >= 4, "{stats:?}");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_invalid_response_fails_only_its_call() {
    let server = RawServer::start(|mut conn: RawConn| async move {
        while let Some(request) = conn.read_json().await {
            let id = &request["id"];
            match request["method"].as_str() {
                Some("both") => {
                    conn.send_json(&json!({"jsonrpc": "2.0", "id": id, "result": 1, "error": {"code": 1, "message": "m"}}))
                        .await
                }
                Some("old") => conn.send_json(&json!({"id": id, "result": 1})).await,
                _ => conn.send_json(&response(id, json!("fine"))).await,
            }
        }
    });
    let client = connect(&server.url()).await;
    let err = within("call", client.call::<Value>("both", params![]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid response to 'both' (id 1): response has both result and error"
    );
    let err = within("call", client.call::<Value>("old", params![]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err:?}");
    let ok: String = within("call", client.call("ok", params![])).await.unwrap();
    assert_eq!(ok, "fine");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn fragmented_and_binary_replies_work() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let long = "x".repeat(100);
    let v: Value = within("call", client.call("fragmented", params![long.clone(), 2]))
        .await
        .unwrap();
    assert_eq!(v, json!([long, 2]));
    let v: Value = within("call", client.call("binary", json!({"b": true})))
        .await
        .unwrap();
    assert_eq!(v, json!({"b": true}));
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn control_frames_between_fragments_are_handled_and_pings_answered() {
    let server = RawServer::start(|mut conn: RawConn| async move {
        let request = conn.read_json().await.expect("a request");
        let text = response(&request["id"], json!("joined")).to_string();
        let (a, b) = text.split_at(10);
        conn.send_frame(false, OP_BINARY, a.as_bytes()).await;
        conn.send_frame(true, OP_PING, b"are you there").await;
        conn.send_frame(false, OP_CONTINUATION, &b.as_bytes()[..3])
            .await;
        conn.send_frame(true, OP_CONTINUATION, &b.as_bytes()[3..])
            .await;
        let pong = conn.read_frame().await.expect("a pong");
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (OP_PONG, &b"are you there"[..])
        );
        conn.idle(Duration::from_secs(5)).await;
    });
    let client = connect(&server.url()).await;
    let v: String = within("call", client.call("x", params![])).await.unwrap();
    assert_eq!(v, "joined");
    client.close().await.expect("a clean close");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_reply_over_the_size_limit_fails_without_being_buffered() {
    // The server announces a 1 GiB frame and sends only its header: a client
    // that waited for the payload would hang until the timeout.
    let server = RawServer::start(|mut conn: RawConn| async move {
        let _ = conn.read_json().await;
        conn.send_raw(&RawConn::frame_header(true, OP_TEXT, 1 << 30))
            .await;
        let close = conn.read_frame().await.expect("a close frame");
        assert_eq!(close.close_code().map(|c| c.0), Some(1009));
    });
    let client = connect_with(RpcConnection::builder(server.url()).max_message_size(1 << 20)).await;
    let err = within("call", client.call::<Value>("big", params![]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MessageTooLarge { size, limit, inbound: true, call: Some(_) } if size == 1 << 30 && limit == 1 << 20),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("exceeds the limit of 1048576 bytes"),
        "{err}"
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_real_oversized_reply_closes_with_1009_and_a_smaller_one_passes() {
    let server = TestServer::start(standard);
    let client =
        connect_with(RpcConnection::builder(server.url()).max_message_size(64 * 1024)).await;
    let fits: String = within("call", client.call("big", params![60_000]))
        .await
        .unwrap();
    assert_eq!(fits.len(), 60_000);
    let err = within("call", client.call::<Value>("big", params![100_000]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MessageTooLarge { inbound: true, .. }),
        "{err:?}"
    );
    let closes = server.wait_client_closes_async(1, support::BOUND).await;
    assert_eq!(closes[0].as_ref().map(|c| c.0), Some(1009));
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_oversized_request_fails_alone() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url()).max_message_size(1024)).await;
    let err = within(
        "call",
        client.call::<Value>("echo", params!["y".repeat(2000)]),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::MessageTooLarge { inbound: false, .. }),
        "{err:?}"
    );
    let ok: Value = within("call", client.call("echo", params![1]))
        .await
        .unwrap();
    assert_eq!(ok, json!([1]));
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_protocol_violation_ends_the_connection_with_a_clear_error() {
    let server = RawServer::start(|mut conn: RawConn| async move {
        let _ = conn.read_json().await;
        // A masked frame from a server is forbidden (RFC 6455 §5.1).
        conn.send_raw(&[0x81, 0x82, 1, 2, 3, 4, b'{' ^ 1, b'}' ^ 2])
            .await;
        conn.idle(Duration::from_secs(5)).await;
    });
    let client = connect(&server.url()).await;
    let err = within("call", client.call::<Value>("x", params![]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    let causes = support::chain(&err);
    assert!(causes.iter().any(|c| c.contains("masked")), "{causes:?}");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_socket_cut_mid_frame_fails_the_call() {
    let server = RawServer::start(|mut conn: RawConn| async move {
        let _ = conn.read_json().await;
        conn.send_raw(&RawConn::frame_header(true, OP_TEXT, 100))
            .await;
        conn.send_raw(b"{\"jsonrpc\":").await;
        // Dropping the connection here cuts the frame in half.
    });
    let client = connect(&server.url()).await;
    let err = within("call", client.call::<Value>("x", params![]))
        .await
        .unwrap_err();
    assert!(err.is_disconnect(), "{err:?}");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn invalid_utf8_is_skipped() {
    let server = RawServer::start(|mut conn: RawConn| async move {
        let request = conn.read_json().await.expect("a request");
        conn.send_frame(true, OP_TEXT, &[0xff, 0xfe, b'{', b'}'])
            .await;
        conn.send_json(&response(&request["id"], json!("after")))
            .await;
        conn.idle(Duration::from_secs(5)).await;
    });
    let client = connect(&server.url()).await;
    let v: String = within("call", client.call("x", params![])).await.unwrap();
    assert_eq!(v, "after");
    assert_eq!(client.stats().invalid_messages, 1);
    client.close().await.expect("a clean close");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_reply_trickled_byte_by_byte_arrives_whole() {
    let server = RawServer::start(|mut conn: RawConn| async move {
        let request = conn.read_json().await.expect("a request");
        let text = response(&request["id"], json!({"slowly": true})).to_string();
        let mut bytes = RawConn::frame_header(true, OP_TEXT, text.len() as u64);
        bytes.extend_from_slice(text.as_bytes());
        for byte in bytes {
            conn.send_raw(&[byte]).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        conn.idle(Duration::from_secs(5)).await;
    });
    let client = connect(&server.url()).await;
    let v: Value = within("call", client.call("x", params![])).await.unwrap();
    assert_eq!(v, json!({"slowly": true}));
    client.close().await.expect("a clean close");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_server_that_stops_reading_cannot_hang_calls() {
    // The server never reads: our writes back up in the socket buffers.
    let server = support::silent_peer();
    let client = connect_with(
        RpcConnection::builder(server.url()).request_timeout(Duration::from_millis(300)),
    )
    .await;
    let big = "z".repeat(1 << 20);
    let calls = (0..8).map(|_| client.call::<Value>("upload", params![big]));
    let results = within(
        "calls to a server that does not read",
        futures_util::future::join_all(calls),
    )
    .await;
    for result in results {
        assert!(
            result.is_err_and(|err| err.is_timeout()),
            "every call times out"
        );
    }
    assert_no_pending(&client);
}

/// Regression (found while documenting the reconnect paths): a batch whose
/// frame found the outbound queue full (with `Backpressure::Wait`) was
/// accepted at once and its frame waited in a detached task, with no time
/// limit and no bound on how many waited (5,000 batches of 16 KiB to a server
/// that stopped reading added 160 MB). Now the frame waits in the caller's
/// stead for at most the timeout, and the batch is refused with `Overloaded`
/// when no room comes.
#[actix_rt::test]
async fn batches_cannot_pile_up_behind_a_server_that_stops_reading() {
    let server = support::silent_peer(); // never reads, for 5 s
    let client = connect_with(
        RpcConnection::builder(server.url())
            .max_queued_bytes(64 * 1024)
            .request_timeout(Duration::from_millis(200)),
    )
    .await;
    // Fill the socket buffers and the 64 KiB budget: notifications go until
    // one waits its 200 ms in vain.
    let filler = "f".repeat(16 * 1024);
    let mut filled = false;
    for _ in 0..10_000 {
        match within("notify", client.notify("fill", params![filler])).await {
            Ok(()) => {}
            Err(Error::Overloaded { .. }) => {
                filled = true;
                break;
            }
            Err(err) => panic!("{err}"),
        }
    }
    assert!(
        filled,
        "10,000 notifications of 16 KiB never filled the queue"
    );
    let mut accepted = 0;
    for _ in 0..10 {
        let mut batch = client.batch();
        batch.notify("more", params![filler]);
        if within("a batch", batch.send()).await.is_ok() {
            accepted += 1;
        }
    }
    assert_eq!(
        accepted, 0,
        "16 KiB batches accepted beyond a full 64 KiB budget, their frames held with no bound"
    );
}

#[actix_rt::test]
async fn close_reports_a_server_that_never_answers_the_close_frame() {
    let server = support::silent_peer();
    let client = connect_with(
        RpcConnection::builder(server.url()).close_timeout(Duration::from_millis(100)),
    )
    .await;
    let err = within("close", client.close()).await.unwrap_err();
    assert!(matches!(err, Error::CloseTimeout { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the server did not answer our close frame within 100ms"
    );
    assert!(!client.is_connected());
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_malformed_close_frame_still_closes_and_fails_the_call() {
    let server = RawServer::start(|mut conn: RawConn| async move {
        let _ = conn.read_json().await;
        // A close payload of one byte is invalid (a code takes two).
        conn.send_frame(true, 0x8, &[0x03]).await;
        conn.idle(Duration::from_secs(5)).await;
    });
    let client = connect(&server.url()).await;
    let err = within("call", client.call::<Value>("x", params![]))
        .await
        .unwrap_err();
    // 1005: "no status code was present".
    assert!(matches!(err, Error::Closed { code: 1005, .. }), "{err:?}");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_oversized_ping_is_a_protocol_violation() {
    let server = RawServer::start(|mut conn: RawConn| async move {
        let _ = conn.read_json().await;
        // Control frames may carry at most 125 bytes (RFC 6455 §5.5).
        conn.send_frame(true, OP_PING, &[b'p'; 200]).await;
        conn.idle(Duration::from_secs(5)).await;
    });
    let client = connect(&server.url()).await;
    let err = within("call", client.call::<Value>("x", params![]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_flood_of_pings_is_answered_with_bounded_pongs_and_calls_go_on() {
    // RFC 6455 §5.5.3: only the latest ping needs its pong. A flood of pings
    // must not queue a pong each: the latest ping is answered, pongs come in
    // order, and no more pongs come than pings.
    let server = RawServer::start(|mut conn: RawConn| async move {
        let request = conn.read_json().await.expect("a request");
        for i in 0..500u32 {
            conn.send_frame(true, OP_PING, &i.to_be_bytes()).await;
        }
        conn.send_json(&response(&request["id"], json!("still here")))
            .await;
        let mut last = None;
        let mut pongs = 0;
        while last != Some(499) {
            match conn.read_frame().await {
                Some(frame) if frame.opcode == OP_PONG => {
                    let n = u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
                    assert!(last.is_none_or(|l| n > l), "pong {n} after {last:?}");
                    last = Some(n);
                    pongs += 1;
                }
                Some(_) => {}
                None => panic!("connection ended before the latest ping was answered"),
            }
        }
        assert!(pongs <= 500, "{pongs} pongs for 500 pings");
        conn.idle(Duration::from_secs(5)).await;
    });
    let client = connect(&server.url()).await;
    let v: String = within("call", client.call("x", params![])).await.unwrap();
    assert_eq!(v, "still here");
    within("close", client.close())
        .await
        .expect("a clean close");
    assert_no_pending(&client);
}
