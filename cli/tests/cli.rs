//! The `jsonrpc-ws` binary, run as a child process against in-process test
//! servers: what it prints, what reaches the server, and its exit codes.

use test_support as support;

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use support::raw::{OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use support::{
    json, last_request, response, standard, Action, RawConn, RawServer, TestServer, Value,
};

/// Every run of the binary is killed (and the test failed) after this long.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    /// The non-empty lines of stderr.
    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.is_empty()).collect()
    }

    /// Asserts exit 2 with exactly one `error: ...` line on stderr naming
    /// `what`, and nothing on stdout.
    fn assert_failure(&self, what: &str) {
        assert_eq!(self.code, 2, "{self:#?}");
        assert_eq!(self.stdout, "", "{self:#?}");
        let lines = self.stderr_lines();
        assert_eq!(lines.len(), 1, "{self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        assert!(lines[0].contains(what), "expected {what:?}: {self:#?}");
    }

    /// Asserts a usage error: exit 64, a message on stderr, nothing on stdout.
    fn assert_usage_error(&self, what: &str) {
        assert_eq!(self.code, 64, "{self:#?}");
        assert_eq!(self.stdout, "", "{self:#?}");
        assert!(self.stderr.contains(what), "expected {what:?}: {self:#?}");
    }
}

/// Runs the binary with `args` (RUST_LOG unset), killing it after
/// [`RUN_LIMIT`].
fn run(args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jsonrpc-ws"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not start jsonrpc-ws");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for jsonrpc-ws") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "jsonrpc-ws {args:?} did not exit within {RUN_LIMIT:?}; stdout: {:?}, stderr: {:?}",
                stdout.join().unwrap(),
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code().expect("jsonrpc-ws was killed by a signal"),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        took: started.elapsed(),
    }
}

/// Reads a pipe to its end on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The value of header `name` in the server's only handshake.
fn handshake_header(server: &TestServer, name: &str) -> Option<String> {
    let handshakes = server.handshakes();
    assert_eq!(handshakes.len(), 1, "{handshakes:?}");
    handshakes[0]
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

// ---- success -----------------------------------------------------------------

#[test]
fn call_with_positional_params_prints_the_compact_result() {
    let server = TestServer::start(standard);
    let out = run(&[
        "call",
        &server.url(),
        "echo",
        r#"[1, "two", [3], {"a": null}]"#,
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "[1,\"two\",[3],{\"a\":null}]\n");
    assert_eq!(out.stderr, "");
    assert_eq!(
        last_request(&server, "echo")["params"],
        json!([1, "two", [3], {"a": null}])
    );

    let out = run(&["call", &server.url(), "add", "[2, 3]"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "5\n"), "{out:#?}");
}

#[test]
fn call_with_named_params_sends_an_object() {
    let server = TestServer::start(standard);
    let out = run(&[
        "call",
        &server.url(),
        "echo",
        r#"{"name": "ann", "age": 7}"#,
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout.lines().count(), 1, "{out:#?}");
    assert!(out.stdout.ends_with('\n') && !out.stdout.contains(' '));
    let printed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(printed, json!({"name": "ann", "age": 7}));
    assert_eq!(
        last_request(&server, "echo")["params"],
        json!({"name": "ann", "age": 7})
    );
}

#[test]
fn call_without_params_leaves_them_out() {
    let server = TestServer::start(standard);
    let out = run(&["call", &server.url(), "echo"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "null\n");
    let request = last_request(&server, "echo");
    assert!(request.get("params").is_none(), "{request}");
    assert!(request["id"].is_u64(), "{request}");
}

#[test]
fn notify_sends_a_message_without_id_and_closes_cleanly() {
    let server = TestServer::start(standard);
    let out = run(&["notify", &server.url(), "log.write", r#"["hello"]"#]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "");
    let messages = server.wait_received(1, Duration::from_secs(5));
    assert_eq!(
        messages,
        vec![json!({"jsonrpc": "2.0", "method": "log.write", "params": ["hello"]})]
    );
    assert_eq!(server.client_closes(), vec![Some((1000, String::new()))]);
}

#[test]
fn notify_fails_when_the_server_never_finishes_closing() {
    // Reads the notification, then ignores everything (our close frame too).
    let server =
        support::RawServer::start(
            |mut conn| async move { while conn.read_frame().await.is_some() {} },
        );
    let out = run(&["notify", &server.url(), "log.write", "[1]"]);
    out.assert_failure("did not answer our close frame");
}

#[test]
fn headers_and_basic_auth_reach_the_server() {
    let server = TestServer::builder()
        .require_header("authorization", "Basic YW5uOnMzY3JldA==")
        .start(standard);
    // Options before the subcommand's arguments...
    let out = run(&[
        "call",
        "-H",
        "X-Trace: on",
        "--header",
        "X-Empty:",
        "--basic-auth",
        "ann:s3cret",
        &server.url(),
        "echo",
        "[1]",
    ]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "[1]\n"), "{out:#?}");
    assert_eq!(handshake_header(&server, "x-trace").as_deref(), Some("on"));
    assert_eq!(handshake_header(&server, "x-empty").as_deref(), Some(""));
}

#[test]
fn bearer_auth_and_options_after_the_arguments_reach_the_server() {
    let server = TestServer::builder()
        .require_header("authorization", "Bearer t0ken")
        .start(standard);
    // ...and after them.
    let out = run(&[
        "call",
        &server.url(),
        "echo",
        "[1]",
        "--bearer",
        "t0ken",
        "-H",
        "X-Trace: a: b",
    ]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "[1]\n"), "{out:#?}");
    assert_eq!(
        handshake_header(&server, "x-trace").as_deref(),
        Some("a: b")
    );
}

// ---- failures ----------------------------------------------------------------

#[test]
fn a_server_error_exits_1_with_code_message_and_data() {
    let server = TestServer::start(standard);
    let out = run(&["call", &server.url(), "error"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr_lines(),
        ["error -32000: boom", r#"data: {"detail":"x"}"#]
    );

    let out = run(&[
        "call",
        &server.url(),
        "error",
        r#"{"code": 42, "message": "no data"}"#,
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(out.stderr_lines(), ["error 42: no data"]);
}

#[test]
fn a_silent_server_times_out_with_exit_2() {
    let server = TestServer::start(standard);
    let out = run(&["call", &server.url(), "silent", "--timeout", "0.3"]);
    out.assert_failure("timed out after 300ms waiting for 'silent' (id ");
    assert!(out.took < Duration::from_secs(10), "{out:#?}");
}

#[test]
fn a_refused_connection_exits_2() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("ws://127.0.0.1:{port}/");
    let out = run(&["call", &url, "echo", "--timeout", "5"]);
    out.assert_failure(&format!("could not connect to {url}"));
}

#[test]
fn a_refused_connection_prints_its_cause_chain_once() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("ws://127.0.0.1:{port}/");
    let out = run(&["call", &url, "echo", "--timeout", "5"]);
    out.assert_failure(&url);
    let line = out.stderr_lines()[0];
    assert!(line.to_lowercase().contains("refused"), "{out:#?}");
    // `error: <error>: <its source>: ...`, each layer once.
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[..i].contains(part),
            "{part:?} is printed twice in {line:?}"
        );
    }
}

#[test]
fn an_unanswered_handshake_is_bounded_by_the_timeout() {
    // The kernel completes the TCP handshake; nobody ever answers the HTTP one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let out = run(&["--timeout", "0.3", "call", &url, "echo"]);
    out.assert_failure(&format!("could not connect to {url}"));
    assert!(out.took < Duration::from_secs(10), "{out:#?}");
}

#[test]
fn a_dropped_connection_mid_call_exits_2() {
    let server = TestServer::start(standard);
    let out = run(&["call", &server.url(), "drop"]);
    out.assert_failure("connection lost while waiting for 'drop' (id ");
}

#[test]
fn a_close_frame_mid_call_exits_2_with_its_code() {
    let server = TestServer::start(standard);
    let out = run(&[
        "call",
        &server.url(),
        "close",
        r#"{"code": 4001, "reason": "bye"}"#,
    ]);
    out.assert_failure("connection closed (code 4001: bye) while waiting for 'close' (id ");
}

#[test]
fn a_rejected_handshake_exits_2_with_the_status() {
    let server = RawServer::reject(401);
    let out = run(&["call", &server.url(), "echo"]);
    out.assert_failure("401");
}

#[test]
fn a_missing_credential_is_a_rejected_handshake() {
    let server = TestServer::builder()
        .require_header("authorization", "Bearer right")
        .start(standard);
    let out = run(&["notify", &server.url(), "x", "--bearer", "wrong"]);
    out.assert_failure("rejected with HTTP status 401");
    assert!(server.handshakes().is_empty());
}

#[test]
fn a_reply_over_max_message_size_exits_2() {
    let server = TestServer::start(standard);
    let out = run(&[
        "call",
        &server.url(),
        "big",
        "[5000]",
        "--max-message-size",
        "1000",
    ]);
    out.assert_failure("exceeds the limit of 1000 bytes");
}

// ---- usage errors ------------------------------------------------------------

const NOWHERE: &str = "ws://127.0.0.1:9/";

#[test]
fn bad_json_params_are_a_usage_error() {
    run(&["call", NOWHERE, "echo", "[1,"]).assert_usage_error("not valid JSON");
}

#[test]
fn scalar_params_are_a_usage_error() {
    run(&["call", NOWHERE, "echo", "5"]).assert_usage_error("array");
    run(&["notify", NOWHERE, "echo", "\"text\""]).assert_usage_error("array");
    run(&["call", NOWHERE, "echo", "null"]).assert_usage_error("array");
}

#[test]
fn a_missing_method_is_a_usage_error() {
    run(&["call", NOWHERE]).assert_usage_error("<METHOD>");
}

#[test]
fn a_missing_subcommand_is_a_usage_error() {
    assert_eq!(run(&[]).code, 64);
    run(&["frobnicate", NOWHERE, "echo"]).assert_usage_error("frobnicate");
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    run(&["call", NOWHERE, "echo", "--frobnicate"]).assert_usage_error("--frobnicate");
}

#[test]
fn a_header_without_colon_is_a_usage_error() {
    run(&["call", NOWHERE, "echo", "-H", "X-Trace on"]).assert_usage_error("X-Trace on");
    run(&["call", NOWHERE, "echo", "-H", "bad name: v"]).assert_usage_error("header name");
}

#[test]
fn bad_option_values_are_usage_errors() {
    run(&["call", NOWHERE, "echo", "--basic-auth", "ann"]).assert_usage_error("USER:PASS");
    run(&["call", NOWHERE, "echo", "--timeout", "soon"]).assert_usage_error("--timeout");
    run(&["call", NOWHERE, "echo", "--timeout", "-1"]).assert_usage_error("--timeout");
    run(&["call", NOWHERE, "echo", "--timeout", "0"]).assert_usage_error("--timeout");
    run(&["call", NOWHERE, "echo", "--max-message-size", "0"])
        .assert_usage_error("--max-message-size");
    run(&[
        "call",
        NOWHERE,
        "echo",
        "--bearer",
        "t",
        "--basic-auth",
        "a:b",
    ])
    .assert_usage_error("cannot be used with");
    run(&["call", NOWHERE, "echo", "--reply", "ask"]).assert_usage_error("METHOD=JSON");
    run(&["call", NOWHERE, "echo", "--reply", "ask={"]).assert_usage_error("not valid JSON");
}

#[test]
fn a_bad_url_is_a_usage_error() {
    run(&["call", "127.0.0.1:9", "echo"]).assert_usage_error("missing scheme");
    run(&["call", "ftp://127.0.0.1:9/", "echo"]).assert_usage_error("unsupported scheme");
    run(&["call", "not a url", "echo"]).assert_usage_error("bad URL");
}

#[test]
fn help_and_version_print_to_stdout_and_exit_0() {
    let out = run(&["--help"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("Usage: jsonrpc-ws"), "{out:#?}");
    assert!(out.stdout.contains("--timeout <SECS>"), "{out:#?}");
    assert_eq!(out.stderr, "");

    let out = run(&["call", "--help"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("<URL> <METHOD> [PARAMS]"), "{out:#?}");

    let out = run(&["--version"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.starts_with("jsonrpc-ws "), "{out:#?}");
}

// ---- requests and notifications from the server --------------------------

#[test]
fn replies_answer_server_requests_and_notifications_are_printed() {
    let server = RawServer::start(|mut conn| async move {
        let Some(call) = conn.read_json().await else {
            return;
        };
        conn.send_json(&json!({"jsonrpc": "2.0", "method": "tick", "params": [1]}))
            .await;
        conn.send_json(&json!({"jsonrpc": "2.0", "method": "bare"}))
            .await;
        conn.send_json(&json!({"jsonrpc": "2.0", "id": "s1", "method": "ask", "params": [1]}))
            .await;
        conn.send_json(&json!({"jsonrpc": "2.0", "id": "s2", "method": "other"}))
            .await;
        conn.send_json(&json!({"jsonrpc": "2.0", "id": "s3", "method": "ui.confirm"}))
            .await;
        let mut answers = Vec::new();
        while answers.len() < 3 {
            match conn.read_json().await {
                Some(answer) => answers.push(answer),
                None => return,
            }
        }
        conn.send_json(&response(&call["id"], json!(answers))).await;
        conn.idle(Duration::from_secs(5)).await;
    });
    let out = run(&[
        "call",
        &server.url(),
        "go",
        "--reply",
        "ask=0",
        "--reply",
        r#"ask={"ok": true}"#,
        "--reply",
        "ui.=[true]",
        "--print-notifications",
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    let answers: Value = serde_json::from_str(&out.stdout).unwrap();
    let by_id = |id: &str| {
        answers
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no answer to {id}: {answers}"))
            .clone()
    };
    assert_eq!(
        by_id("s1"),
        json!({"jsonrpc": "2.0", "id": "s1", "result": {"ok": true}})
    );
    assert_eq!(by_id("s2")["error"]["code"], -32601, "{answers}");
    assert_eq!(by_id("s3")["result"], json!([true]), "{answers}");
    assert_eq!(
        out.stderr_lines(),
        [
            r#"{"method":"tick","params":[1]}"#,
            r#"{"method":"bare","params":null}"#
        ]
    );
}

// ---- the user's JSON goes out exactly as written ---------------------------

/// The members of one JSON-RPC message, each as the exact text it was sent
/// with: no `Value` in between, so numbers keep their digits and objects
/// their key order.
fn members(payload: &str) -> HashMap<String, Box<RawValue>> {
    serde_json::from_str(payload)
        .unwrap_or_else(|err| panic!("not one JSON object ({err}): {payload}"))
}

/// The payload of the client's next text frame, answering pings. `None` once
/// the client goes away or sends its close frame (which is answered, so the
/// client closes cleanly).
async fn next_text(conn: &mut RawConn) -> Option<String> {
    loop {
        let frame = conn.read_frame().await?;
        match frame.opcode {
            OP_TEXT => {
                assert!(frame.fin, "a fragmented message: {frame:?}");
                return Some(String::from_utf8(frame.payload).expect("text frames are UTF-8"));
            }
            OP_PING => conn.send_frame(true, OP_PONG, &frame.payload).await,
            OP_CLOSE => {
                conn.send_close(1000, "").await;
                return None;
            }
            _ => {}
        }
    }
}

#[test]
fn params_reach_the_server_exactly_as_written() {
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = received.clone();
    // Records each message, answers calls with null.
    let server = RawServer::start(move |mut conn| {
        let log = log.clone();
        async move {
            while let Some(text) = next_text(&mut conn).await {
                log.lock().unwrap().push(text.clone());
                if let Some(id) = members(&text).get("id") {
                    let answer = format!(r#"{{"jsonrpc":"2.0","id":{},"result":null}}"#, id.get());
                    conn.send_text(&answer).await;
                }
            }
        }
    });

    // Digits beyond f64, and keys out of order.
    let call_params = r#"[12345678901234567890123,{"b":1,"a":2}]"#;
    let out = run(&["call", &server.url(), "echo", call_params]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "null\n"), "{out:#?}");

    // Spacing, exponents, negative zero and escapes are kept too.
    let notify_params = r#"{"z": [1.50e3, -0.0, "\u00e9"], "a": {}}"#;
    let out = run(&["notify", &server.url(), "log.write", notify_params]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:#?}");

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(members(&received[0])["params"].get(), call_params);
    assert_eq!(members(&received[1])["params"].get(), notify_params);
}

#[test]
fn a_reply_reaches_the_server_exactly_as_written() {
    let answers = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = answers.clone();
    // Asks the client once while its call waits, then answers the call.
    let server = RawServer::start(move |mut conn| {
        let log = log.clone();
        async move {
            let Some(call) = next_text(&mut conn).await else {
                return;
            };
            conn.send_text(r#"{"jsonrpc":"2.0","id":"s1","method":"ask"}"#)
                .await;
            let Some(answer) = next_text(&mut conn).await else {
                return;
            };
            log.lock().unwrap().push(answer);
            let id = members(&call)["id"].get().to_owned();
            conn.send_text(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"done"}}"#))
                .await;
            while next_text(&mut conn).await.is_some() {}
        }
    });

    let reply = r#"{"z": 1, "a": 12345678901234567890123}"#;
    let out = run(&[
        "call",
        &server.url(),
        "go",
        "--reply",
        &format!("ask={reply}"),
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "\"done\"\n"),
        "{out:#?}"
    );
    let answers = answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 1, "{answers:?}");
    let answer = members(&answers[0]);
    assert_eq!(answer["id"].get(), r#""s1""#, "{answers:?}");
    assert_eq!(answer["result"].get(), reply, "{answers:?}");
}

// ---- subscribe ---------------------------------------------------------------

/// `{"jsonrpc":"2.0","method":method,"params":{"subscription":sub,"result":result}}`,
/// with `sub` and `result` as the exact JSON text given.
fn item(method: &str, sub: &str, result: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":"{method}","params":{{"subscription":{sub},"result":{result}}}}}"#
    )
}

/// Answers the client's next call with `result` (exact JSON text); returns
/// the call's text, or `None` once the client has gone.
async fn answer_next(conn: &mut RawConn, result: &str) -> Option<String> {
    let call = next_text(conn).await?;
    let id = members(&call)["id"].get().to_owned();
    conn.send_text(&format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#
    ))
    .await;
    Some(call)
}

/// A server for subscription `"ab"` of method `sub`: one item before its
/// answer, the others after it, mixed with items of another subscription and
/// of the Ethereum shape, then answers the unsubscribe call with `true`.
/// Records every message it reads.
fn subscription_server(received: Arc<Mutex<Vec<String>>>) -> RawServer {
    RawServer::start(move |mut conn| {
        let log = received.clone();
        async move {
            let Some(subscribe) = next_text(&mut conn).await else {
                return;
            };
            log.lock().unwrap().push(subscribe.clone());
            // Servers race: an item may come before the answer that names it.
            conn.send_text(&item("sub", r#""ab""#, "1")).await;
            let id = members(&subscribe)["id"].get().to_owned();
            conn.send_text(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"ab"}}"#))
                .await;
            conn.send_text(&item("sub", r#""other""#, r#""not ours""#))
                .await;
            conn.send_text(&item(
                "sub",
                r#""ab""#,
                r#"{"b": 1, "a": 12345678901234567890123}"#,
            ))
            .await;
            conn.send_text(&item("sub", "1", r#""a number id is another id""#))
                .await;
            conn.send_text(&item("eth_subscription", r#""ab""#, r#"[1.50e3, "x y"]"#))
                .await;
            conn.send_text(&item("sub", r#""ab""#, "4")).await;
            // The rest of the conversation: the unsubscribe call, then close.
            while let Some(text) = next_text(&mut conn).await {
                log.lock().unwrap().push(text.clone());
                if let Some(id) = members(&text).get("id") {
                    let answer = format!(r#"{{"jsonrpc":"2.0","id":{},"result":true}}"#, id.get());
                    conn.send_text(&answer).await;
                }
            }
        }
    })
}

#[test]
fn subscribe_prints_count_items_as_sent_then_unsubscribes() {
    let received = Arc::new(Mutex::new(Vec::new()));
    let server = subscription_server(received.clone());
    let out = run(&[
        "subscribe",
        &server.url(),
        "sub",
        r#"["newHeads", {"b": 1, "a": 12345678901234567890123}]"#,
        "--unsubscribe",
        "unsub",
        "--count",
        "3",
    ]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(
        out.stdout, "1\n{\"b\":1,\"a\":12345678901234567890123}\n[1.50e3,\"x y\"]\n",
        "{out:#?}"
    );
    assert_eq!(out.stderr, "", "{out:#?}");
    drop(server);
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "{received:?}");
    let subscribe = members(&received[0]);
    assert_eq!(subscribe["method"].get(), r#""sub""#);
    assert_eq!(
        subscribe["params"].get(),
        r#"["newHeads", {"b": 1, "a": 12345678901234567890123}]"#
    );
    let unsubscribe = members(&received[1]);
    assert_eq!(unsubscribe["method"].get(), r#""unsub""#, "{received:?}");
    assert_eq!(unsubscribe["params"].get(), r#"["ab"]"#, "{received:?}");
}

#[test]
fn subscribe_ends_with_exit_1_when_the_server_ends_the_subscription() {
    let server = TestServer::start(|msg| {
        if msg["method"] != "sub" {
            return standard(msg);
        }
        let note = |params: Value| {
            Action::Reply(json!({"jsonrpc": "2.0", "method": "sub", "params": params}))
        };
        Action::Many(vec![
            Action::Reply(response(&msg["id"], json!(7))),
            note(json!({"subscription": 7, "result": "a"})),
            note(json!({"subscription": 8, "result": "not ours"})),
            note(json!({"subscription": 7, "result": "b"})),
            note(json!({"subscription": 7, "error": {"code": -32000, "message": "feed gone"}})),
        ])
    });
    let out = run(&["subscribe", &server.url(), "sub", "--unsubscribe", "unsub"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(out.stdout, "\"a\"\n\"b\"\n", "{out:#?}");
    assert_eq!(
        out.stderr_lines(),
        [r#"error: subscription 7 closed by the server: {"code":-32000,"message":"feed gone"}"#]
    );
    // The server ended it: no unsubscribe call.
    assert!(
        server.received().iter().all(|m| m["method"] != "unsub"),
        "{:?}",
        server.received()
    );
}

#[test]
fn subscribe_with_count_exits_0_when_the_server_ends_it_after_the_last_item() {
    let server = TestServer::start(|msg| {
        let note = |params: Value| {
            Action::Reply(json!({"jsonrpc": "2.0", "method": "sub", "params": params}))
        };
        match msg["method"].as_str() {
            Some("sub") => Action::Many(vec![
                Action::Reply(response(&msg["id"], json!(3))),
                note(json!({"subscription": 3, "result": 1})),
                note(json!({"subscription": 3, "result": 2})),
                note(json!({"subscription": 3, "error": {"code": 1, "message": "done"}})),
            ]),
            Some("unsub") => Action::Reply(response(&msg["id"], json!(true))),
            _ => standard(msg),
        }
    });
    let out = run(&[
        "subscribe",
        &server.url(),
        "sub",
        "--unsubscribe",
        "unsub",
        "--count",
        "2",
    ]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "1\n2\n"), "{out:#?}");
    assert_eq!(out.stderr, "", "{out:#?}");
    // Whether it unsubscribed depends on what it had read: never any other
    // method than the one given.
    let methods: Vec<Value> = server
        .received()
        .iter()
        .map(|m| m["method"].clone())
        .collect();
    assert!(
        methods == [json!("sub")] || methods == [json!("sub"), json!("unsub")],
        "{methods:?}"
    );
}

#[test]
fn subscribe_exits_2_when_the_server_closes_or_drops_the_connection() {
    let server = TestServer::start(|msg| {
        let end = match msg["method"].as_str() {
            Some("sub_close") => Action::Close(4001, "bye".into()),
            Some("sub_drop") => Action::Drop,
            _ => return standard(msg),
        };
        Action::Many(vec![
            Action::Reply(response(&msg["id"], json!("s"))),
            Action::Reply(json!({
                "jsonrpc": "2.0",
                "method": "s",
                "params": {"subscription": "s", "result": 1}
            })),
            end,
        ])
    });

    let out = run(&[
        "subscribe",
        &server.url(),
        "sub_close",
        "--unsubscribe",
        "u",
    ]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert_eq!(out.stdout, "1\n", "{out:#?}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{out:#?}");
    assert!(
        lines[0].starts_with("error: subscription \"s\" ended: "),
        "{out:#?}"
    );
    assert!(
        lines[0].contains("4001") && lines[0].contains("bye"),
        "{out:#?}"
    );

    let out = run(&["subscribe", &server.url(), "sub_drop", "--unsubscribe", "u"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert_eq!(out.stdout, "1\n", "{out:#?}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{out:#?}");
    assert!(
        lines[0].starts_with("error: subscription \"s\" ended: "),
        "{out:#?}"
    );
}

#[test]
fn a_refused_subscribe_call_exits_1_with_the_error() {
    let server = TestServer::start(standard);
    let out = run(&["subscribe", &server.url(), "nosuch", "--unsubscribe", "u"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(out.stdout, "");
    assert_eq!(
        out.stderr_lines(),
        [
            "error -32601: Method not found: nosuch",
            r#"data: {"method":"nosuch"}"#
        ]
    );
}

#[test]
fn subscribe_stops_quietly_when_stdout_is_closed() {
    let unsubscribed = Arc::new(Mutex::new(None::<String>));
    let log = unsubscribed.clone();
    // Items every 10 ms (for at most 10 s) until the unsubscribe call.
    let server = RawServer::start(move |mut conn| {
        let log = log.clone();
        async move {
            if answer_next(&mut conn, "5").await.is_none() {
                return;
            }
            for n in 0..1000 {
                conn.send_text(&item("sub", "5", &n.to_string())).await;
                let next = tokio::time::timeout(Duration::from_millis(10), next_text(&mut conn));
                if let Ok(text) = next.await {
                    let Some(text) = text else { return };
                    *log.lock().unwrap() = Some(text.clone());
                    let id = members(&text)["id"].get().to_owned();
                    let answer = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":true}}"#);
                    conn.send_text(&answer).await;
                    while next_text(&mut conn).await.is_some() {}
                    return;
                }
            }
        }
    });
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jsonrpc-ws"))
        .args(["subscribe", &server.url(), "sub", "--unsubscribe", "unsub"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("could not start jsonrpc-ws");
    let stderr = drain(child.stderr.take().unwrap());
    // `| head -c 1`: read one byte, then close the pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("no item printed");
    drop(stdout);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for jsonrpc-ws") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("jsonrpc-ws did not exit after its stdout was closed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = stderr.join().unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "");
    drop(server);
    let unsubscribed = unsubscribed
        .lock()
        .unwrap()
        .clone()
        .expect("no unsubscribe call");
    assert_eq!(members(&unsubscribed)["params"].get(), "[5]");
}

#[test]
fn subscribe_usage_errors() {
    run(&["subscribe", NOWHERE, "sub"]).assert_usage_error("--unsubscribe");
    run(&[
        "subscribe",
        NOWHERE,
        "sub",
        "--unsubscribe",
        "u",
        "--count",
        "0",
    ])
    .assert_usage_error("--count");
    run(&["subscribe", NOWHERE, "sub", "5", "--unsubscribe", "u"]).assert_usage_error("array");
}

// ---- batch -------------------------------------------------------------------

#[test]
fn batch_prints_one_line_per_call_in_submission_order() {
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = received.clone();
    // Answers the batch's calls in reverse order, each result the exact text
    // of its params.
    let server = RawServer::start(move |mut conn| {
        let log = log.clone();
        async move {
            let Some(text) = next_text(&mut conn).await else {
                return;
            };
            log.lock().unwrap().push(text.clone());
            let entries: Vec<HashMap<String, Box<RawValue>>> =
                serde_json::from_str(&text).expect("a batch");
            let answers: Vec<String> = entries
                .iter()
                .rev()
                .filter_map(|e| {
                    let id = e.get("id")?.get();
                    let result = e.get("params").map_or("null", |p| p.get());
                    Some(format!(
                        r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#
                    ))
                })
                .collect();
            conn.send_text(&format!("[{}]", answers.join(","))).await;
            while next_text(&mut conn).await.is_some() {}
        }
    });
    let batch = r#"[
        {"method": "first", "params": [12345678901234567890123, {"b": 1, "a": 2}]},
        {"method": "log.write", "params": ["between"], "notification": true},
        {"method": "second"},
        {"method": "third", "params": {"z": [1.50e3, -0.0]}, "notification": false}
    ]"#;
    let out = run(&["batch", &server.url(), batch]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(
        out.stdout,
        concat!(
            "{\"result\":[12345678901234567890123,{\"b\":1,\"a\":2}]}\n",
            "{\"result\":null}\n",
            "{\"result\":{\"z\":[1.50e3,-0.0]}}\n",
        ),
        "{out:#?}"
    );
    assert_eq!(out.stderr, "");
    drop(server);
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "one message: {received:?}");
    let sent: Vec<HashMap<String, Box<RawValue>>> = serde_json::from_str(&received[0]).unwrap();
    let methods: Vec<&str> = sent.iter().map(|e| e["method"].get()).collect();
    assert_eq!(
        methods,
        [r#""first""#, r#""log.write""#, r#""second""#, r#""third""#]
    );
    assert_eq!(
        sent[0]["params"].get(),
        r#"[12345678901234567890123, {"b": 1, "a": 2}]"#
    );
    assert!(!sent[1].contains_key("id"), "a notification: {received:?}");
    assert!(!sent[2].contains_key("params"), "{received:?}");
    assert_eq!(sent[3]["params"].get(), r#"{"z": [1.50e3, -0.0]}"#);
}

#[test]
fn a_batch_with_an_error_entry_exits_1() {
    let server = TestServer::start(standard);
    let batch = r#"[
        {"method": "add", "params": [1, 2]},
        {"method": "error"},
        {"method": "log.write", "notification": true},
        {"method": "echo", "params": {"a": 1}}
    ]"#;
    let out = run(&["batch", &server.url(), batch]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stdout,
        concat!(
            "{\"result\":3}\n",
            "{\"error\":{\"code\":-32000,\"message\":\"boom\",\"data\":{\"detail\":\"x\"}}}\n",
            "{\"result\":{\"a\":1}}\n",
        ),
        "{out:#?}"
    );
    assert_eq!(out.stderr, "", "{out:#?}");
    let batches: Vec<Value> = server
        .received()
        .into_iter()
        .filter(Value::is_array)
        .collect();
    assert_eq!(batches.len(), 1, "{:?}", server.received());
    assert_eq!(batches[0].as_array().unwrap().len(), 4);
}

#[test]
fn a_batch_of_notifications_prints_nothing() {
    let server = TestServer::start(standard);
    let batch = r#"[{"method": "a", "notification": true}, {"method": "b", "params": [1], "notification": true}]"#;
    let out = run(&["batch", &server.url(), batch]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:#?}");
    assert_eq!(out.stderr, "");
    let received = server.wait_received(1, Duration::from_secs(5));
    assert_eq!(
        received[0],
        json!([
            {"jsonrpc": "2.0", "method": "a"},
            {"jsonrpc": "2.0", "method": "b", "params": [1]}
        ])
    );
    assert_eq!(server.client_closes(), vec![Some((1000, String::new()))]);
}

#[test]
fn a_call_left_out_of_the_answer_is_printed_as_failed_and_exits_2() {
    // Answers only the first call of a batch.
    let server = TestServer::start(|msg| match msg.as_array() {
        Some(items) => Action::Reply(json!([response(&items[0]["id"], json!("only me"))])),
        None => standard(msg),
    });
    let out = run(&[
        "batch",
        &server.url(),
        r#"[{"method": "a"}, {"method": "b"}, {"method": "c"}]"#,
    ]);
    assert_eq!(out.code, 2, "{out:#?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:#?}");
    assert_eq!(lines[0], r#"{"result":"only me"}"#);
    for line in &lines[1..] {
        let failed: Value = serde_json::from_str(line).unwrap();
        assert!(
            failed["failed"].as_str().unwrap().contains("no response"),
            "{out:#?}"
        );
    }
    let errors = out.stderr_lines();
    assert_eq!(errors.len(), 1, "{out:#?}");
    assert!(errors[0].starts_with("error: "), "{out:#?}");
    assert!(errors[0].contains("'b'"), "{out:#?}");
    assert!(
        errors[0].ends_with("(and 1 more call(s) got no answer)"),
        "{out:#?}"
    );
}

#[test]
fn a_connection_dropped_during_a_batch_exits_2() {
    let server = TestServer::start(|msg| match msg {
        Value::Array(_) => Action::Drop,
        _ => standard(msg),
    });
    let out = run(&["batch", &server.url(), r#"[{"method": "a"}]"#]);
    assert_eq!(out.code, 2, "{out:#?}");
    let errors = out.stderr_lines();
    assert_eq!(errors.len(), 1, "{out:#?}");
    assert!(errors[0].contains("connection lost"), "{out:#?}");
    let failed: Value = serde_json::from_str(out.stdout.trim_end()).unwrap();
    assert!(failed["failed"].is_string(), "{out:#?}");
}

#[test]
fn invalid_batch_json_is_a_usage_error() {
    let bad = |json: &str, what: &str| run(&["batch", NOWHERE, json]).assert_usage_error(what);
    bad("[{", "not valid JSON");
    bad(r#"{"method": "a"}"#, "JSON array");
    bad("[]", "empty");
    bad(r#"[{"method": "a"}, 5]"#, "entry 2 must be an object");
    bad(r#"[{"params": [1]}]"#, "entry 1: missing field `method`");
    bad(r#"[{"method": 5}]"#, "entry 1: invalid type");
    bad(
        r#"[{"method": "a", "params": 5}]"#,
        "entry 1: params must be",
    );
    bad(
        r#"[{"method": "a", "params": null}]"#,
        "entry 1: params must be",
    );
    bad(r#"[{"method": "a", "id": 1}]"#, "unknown field `id`");
    bad(
        r#"[{"method": "a", "notification": "yes"}]"#,
        "entry 1: invalid type",
    );
    bad(r#"[{"method": "a", "method": "b"}]"#, "duplicate field");
    run(&["batch", NOWHERE]).assert_usage_error("<JSON>");
}

// ---- subscribe --reconnect, --heartbeat ------------------------------------

/// How long a live run may take to print its next line.
const LINE_LIMIT: Duration = Duration::from_secs(15);

/// A run of the binary that the test talks to while it runs, reading its
/// output line by line. Killed when dropped, so a failed assertion never
/// leaves it behind.
struct Live {
    args: Vec<String>,
    child: std::process::Child,
    stdout: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::mpsc::Receiver<String>,
    /// Every line read so far, without its line break.
    out_lines: Vec<String>,
    err_lines: Vec<String>,
}

impl Live {
    /// Starts the binary with `args` (RUST_LOG unset).
    fn start(args: &[&str]) -> Live {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jsonrpc-ws"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("could not start jsonrpc-ws");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Live {
            args: args.iter().map(|a| a.to_string()).collect(),
            child,
            stdout,
            stderr,
            out_lines: Vec::new(),
            err_lines: Vec::new(),
        }
    }

    /// The next line on stdout; panics after [`LINE_LIMIT`].
    fn stdout_line(&mut self) -> String {
        let line = self.next(true);
        self.out_lines.push(line.clone());
        line
    }

    /// The next line on stderr; panics after [`LINE_LIMIT`].
    fn stderr_line(&mut self) -> String {
        let line = self.next(false);
        self.err_lines.push(line.clone());
        line
    }

    fn next(&self, stdout: bool) -> String {
        let (pipe, name) = if stdout {
            (&self.stdout, "stdout")
        } else {
            (&self.stderr, "stderr")
        };
        match pipe.recv_timeout(LINE_LIMIT) {
            Ok(line) => line,
            Err(err) => panic!(
                "jsonrpc-ws {:?}: no line on {name} ({err:?}); so far stdout {:?}, stderr {:?} (and {:?})",
                self.args,
                self.out_lines,
                self.err_lines,
                self.stderr.try_iter().collect::<Vec<_>>()
            ),
        }
    }

    /// Waits (bounded by [`RUN_LIMIT`]) for the exit; every line it
    /// printed, read or not.
    fn finish(mut self) -> Run {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for jsonrpc-ws") {
                break status;
            }
            if started.elapsed() > RUN_LIMIT {
                panic!(
                    "jsonrpc-ws {:?} did not exit within {RUN_LIMIT:?}; stdout {:?}, stderr {:?}",
                    self.args, self.out_lines, self.err_lines
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The pipes end with the process: what is left is already there.
        let rest = |pipe: &std::sync::mpsc::Receiver<String>, seen: &[String]| {
            let mut text: String = seen.iter().map(|l| format!("{l}\n")).collect();
            while let Ok(line) = pipe.recv_timeout(Duration::from_secs(5)) {
                text.push_str(&line);
                text.push('\n');
            }
            text
        };
        Run {
            code: status.code().expect("jsonrpc-ws was killed by a signal"),
            stdout: rest(&self.stdout, &self.out_lines),
            stderr: rest(&self.stderr, &self.err_lines),
            took: started.elapsed(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends each line of a pipe (without its line break) as it comes, from a
/// thread of its own; the channel closes at the end of the pipe.
fn lines(pipe: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A server for subscriptions of `sub`: each subscribe call is answered
/// with the next id of `ids` (the last one again once they run out), `unsub`
/// with `true`.
fn feed(ids: &[&str]) -> impl Fn(&Value) -> Action + Send + Sync + 'static {
    let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    move |msg| match msg["method"].as_str() {
        Some("sub") => {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let id = &ids[n.min(ids.len() - 1)];
            Action::Reply(response(&msg["id"], json!(id)))
        }
        Some("unsub") => Action::Reply(response(&msg["id"], json!(true))),
        _ => standard(msg),
    }
}

/// A notification of subscription `id` of `sub` carrying `result`.
fn note(id: &str, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": "sub", "params": {"subscription": id, "result": result}})
}

/// Asserts that `line` is one gap line for subscription `id`.
fn assert_gap(line: &str, id: &str) {
    let gap: Value =
        serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"));
    let fields = gap["gap"]
        .as_object()
        .unwrap_or_else(|| panic!("not a gap: {line}"));
    assert_eq!(fields.len(), 2, "{line}");
    assert_eq!(gap["gap"]["subscription"], json!(id), "{line}");
    assert!(gap["gap"]["down_for_ms"].is_u64(), "{line}");
}

/// Waits (bounded) until the server has received `n` messages.
fn received(server: &TestServer, n: usize) {
    server.wait_received(n, Duration::from_secs(10));
}

#[test]
fn subscribe_reconnect_keeps_the_subscription_across_server_restarts() {
    let server = TestServer::start(feed(&["a"]));
    let addr = server.addr();
    let mut live = Live::start(&[
        "subscribe",
        &server.url(),
        "sub",
        r#"["x"]"#,
        "--unsubscribe",
        "unsub",
        "--count",
        "6",
        "--reconnect",
    ]);
    received(&server, 1);
    server.push(note("a", json!(1)));
    server.push(note("a", json!(2)));
    assert_eq!(live.stdout_line(), "1");
    assert_eq!(live.stdout_line(), "2");

    // Gone, and back on the same port: the subscription is made again (the
    // gap line says so) under the server's new id.
    drop(server);
    let server = TestServer::start_at(addr, feed(&["b"]));
    assert_gap(&live.stderr_line(), "a");
    server.push(note("b", json!(3)));
    server.push(note("b", json!({"k": [4]})));
    assert_eq!(live.stdout_line(), "3");
    assert_eq!(live.stdout_line(), r#"{"k":[4]}"#);

    drop(server);
    let server = TestServer::start_at(addr, feed(&["c"]));
    assert_gap(&live.stderr_line(), "a");
    server.push(note("c", json!(5)));
    server.push(note("c", json!(6)));

    // --count counts the items of every connection.
    let out = live.finish();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "1\n2\n3\n{\"k\":[4]}\n5\n6\n", "{out:#?}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 2, "one line per gap, nothing else: {out:#?}");
    // Made again with the same params; unsubscribed under the newest id.
    assert_eq!(last_request(&server, "sub")["params"], json!(["x"]));
    assert_eq!(last_request(&server, "unsub")["params"], json!(["c"]));
}

#[test]
fn subscribe_reconnect_keeps_the_subscription_across_a_dropped_connection() {
    let server = TestServer::start(feed(&["s1", "s2"]));
    let proxy = support::FaultProxy::start(server.addr());
    let mut live = Live::start(&[
        "subscribe",
        &proxy.url(),
        "sub",
        "--unsubscribe",
        "unsub",
        "--count",
        "4",
        "--reconnect",
    ]);
    received(&server, 1);
    server.push(note("s1", json!("one")));
    assert_eq!(live.stdout_line(), r#""one""#);

    // Cut without a close frame; the server itself stays up.
    assert_eq!(proxy.drop_all(), 1);
    assert_gap(&live.stderr_line(), "s1");
    for item in ["two", "three", "four"] {
        server.push(note("s2", json!(item)));
    }
    let out = live.finish();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(
        out.stdout, "\"one\"\n\"two\"\n\"three\"\n\"four\"\n",
        "{out:#?}"
    );
    assert_eq!(out.stderr_lines().len(), 1, "{out:#?}");
    assert_eq!(last_request(&server, "unsub")["params"], json!(["s2"]));
}

#[test]
fn subscribe_reconnect_exits_1_when_the_server_refuses_to_subscribe_again() {
    let server = TestServer::start(feed(&["a"]));
    let addr = server.addr();
    let mut live = Live::start(&[
        "subscribe",
        &server.url(),
        "sub",
        "--unsubscribe",
        "unsub",
        "--reconnect",
    ]);
    received(&server, 1);
    server.push(note("a", json!(1)));
    assert_eq!(live.stdout_line(), "1");

    drop(server);
    let _server = TestServer::start_at(addr, |msg: &Value| match msg["method"].as_str() {
        Some("sub") => Action::Reply(json!({
            "jsonrpc": "2.0",
            "id": msg["id"],
            "error": {"code": -32001, "message": "no such feed"}
        })),
        _ => standard(msg),
    });
    let out = live.finish();
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(out.stdout, "1\n", "{out:#?}");
    assert_eq!(
        out.stderr_lines(),
        [
            r#"error: subscription "a" could not be made again after reconnecting: {"code":-32001,"message":"no such feed"}"#
        ],
        "{out:#?}"
    );
}

#[test]
fn the_heartbeat_finds_a_vanished_server_and_subscribe_reconnect_goes_on() {
    let server = TestServer::start(feed(&["s1", "s2"]));
    let proxy = support::FaultProxy::start(server.addr());
    let mut live = Live::start(&[
        "subscribe",
        &proxy.url(),
        "sub",
        "--unsubscribe",
        "unsub",
        "--count",
        "2",
        "--reconnect",
        "--heartbeat",
        "0.2",
        // Generous: only a black hole may be taken for a dead server.
        "--heartbeat-timeout",
        "2",
    ]);
    received(&server, 1);
    server.push(note("s1", json!(1)));
    assert_eq!(live.stdout_line(), "1");

    // Nothing gets through any more, and nothing closes: only the
    // heartbeat can tell. New connections are forwarded normally.
    assert_eq!(proxy.black_hole(), 1);
    assert_gap(&live.stderr_line(), "s1");
    server.push(note("s2", json!(2)));
    let out = live.finish();
    assert_eq!((out.code, out.stdout.as_str()), (0, "1\n2\n"), "{out:#?}");
    assert_eq!(out.stderr_lines().len(), 1, "{out:#?}");
}

#[test]
fn heartbeat_options_reach_the_connection() {
    // Answers the call after 1 s and never answers a ping.
    let deaf = || {
        RawServer::start(|mut conn| async move {
            while let Some(frame) = conn.read_frame().await {
                if frame.opcode == OP_TEXT {
                    let id = members(std::str::from_utf8(&frame.payload).unwrap())["id"]
                        .get()
                        .to_owned();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let answer = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":"late"}}"#);
                    conn.send_text(&answer).await;
                }
            }
        })
    };
    // Pings every 0.2 s, unanswered for 0.5 s: given up before the answer.
    let server = deaf();
    let out = run(&[
        "call",
        &server.url(),
        "echo",
        "--heartbeat",
        "0.2",
        "--heartbeat-timeout",
        "0.5",
    ]);
    out.assert_failure("heartbeat");
    // Off: nothing to answer, and the late answer is printed.
    let server = deaf();
    let out = run(&[
        "call",
        &server.url(),
        "echo",
        "--heartbeat",
        "0",
        "--heartbeat-timeout",
        "0.5",
    ]);
    assert_eq!(
        (out.code, out.stdout.as_str(), out.stderr.as_str()),
        (0, "\"late\"\n", ""),
        "{out:#?}"
    );
    // A plain call with the heartbeat off.
    let server = TestServer::start(standard);
    let out = run(&["call", &server.url(), "echo", "[1]", "--heartbeat", "0"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "[1]\n"), "{out:#?}");
}

#[test]
fn reconnect_and_heartbeat_usage_errors() {
    for bad in ["-1", "0.001", "soon", "NaN"] {
        run(&["call", NOWHERE, "echo", "--heartbeat", bad]).assert_usage_error("--heartbeat");
    }
    run(&["call", NOWHERE, "echo", "--heartbeat-timeout", "0"])
        .assert_usage_error("--heartbeat-timeout");
    // Only `subscribe` reconnects.
    run(&["call", NOWHERE, "echo", "--reconnect"]).assert_usage_error("--reconnect");

    let out = run(&["subscribe", "--help"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("--reconnect"), "{out:#?}");
    assert!(
        out.stdout
            .contains(r#"{"gap":{"subscription":<ID>,"down_for_ms":<N>}}"#),
        "{out:#?}"
    );
    assert!(out.stdout.contains("--heartbeat <SECS>"), "{out:#?}");
}

// ---- proxy -------------------------------------------------------------------------

/// A running `jsonrpc-ws proxy` and the address it printed.
struct Proxy {
    live: Live,
    addr: String,
}

impl Proxy {
    /// Starts `jsonrpc-ws proxy --listen 127.0.0.1:0 ARGS..` and reads the
    /// address from its `listening on` line.
    fn start(args: &[&str]) -> Proxy {
        let mut all = vec!["proxy", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut live = Live::start(&all);
        let line = live.stdout_line();
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("not a `listening on` line: {line:?}"))
            .to_owned();
        assert!(!addr.ends_with(":0"), "the real port is printed: {line}");
        Proxy { live, addr }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Sends it a signal (`TERM`, `INT`) with kill(1).
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.live.child.id().to_string())
            .status()
            .expect("could not run kill");
        assert!(status.success(), "kill -{name}: {status}");
    }

    /// Sends `signal` and waits (bounded) for it to exit.
    fn stop(self, signal: &str) -> Run {
        self.signal(signal);
        self.live.finish()
    }
}

/// What an HTTP request to the proxy got.
#[derive(Debug)]
struct HttpReply {
    status: u16,
    body: String,
}

/// One HTTP request with awc (a real HTTP client) on an actix system of
/// its own, bounded.
fn http(method: &str, url: &str, body: &str) -> HttpReply {
    let (method, url, body) = (method.to_owned(), url.to_owned(), body.to_owned());
    jsonrpc_websocket::actix::System::new().block_on(async move {
        let client = awc::Client::builder().timeout(RUN_LIMIT).finish();
        let request = match method.as_str() {
            "GET" => client.get(&url),
            "PUT" => client.put(&url),
            _ => client
                .post(&url)
                .insert_header(("content-type", "application/json")),
        };
        let mut response = request
            .send_body(body)
            .await
            .unwrap_or_else(|err| panic!("{method} {url}: {err}"));
        let bytes = response
            .body()
            .limit(16 << 20)
            .await
            .unwrap_or_else(|err| panic!("reading the answer of {url}: {err}"));
        HttpReply {
            status: response.status().as_u16(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    })
}

fn post(proxy: &Proxy, body: &str) -> HttpReply {
    http("POST", &proxy.url(), body)
}

#[test]
fn proxy_forwards_http_calls_batches_and_notifications_to_its_upstream() {
    let server = TestServer::start(standard);
    let proxy = Proxy::start(&[
        "--upstream",
        &server.url(),
        "--metrics",
        "-H",
        "X-Node: a",
        "--bearer",
        "t0ken",
    ]);

    // The client's id comes back exactly as written.
    let reply = post(
        &proxy,
        r#"{"jsonrpc":"2.0","id":12345678901234567890123,"method":"add","params":[2,3]}"#,
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.body,
        r#"{"jsonrpc":"2.0","id":12345678901234567890123,"result":5}"#
    );
    // A batch in order, one entry failing, a notification in it.
    let reply = post(
        &proxy,
        r#"[{"jsonrpc":"2.0","id":"a","method":"echo","params":{"k":[1]}},
            {"jsonrpc":"2.0","id":"b","method":"error"},
            {"jsonrpc":"2.0","method":"log.write","params":["x"]},
            {"jsonrpc":"2.0","id":"c","method":"sleep","params":[10]}]"#,
    );
    assert_eq!(
        reply.body,
        concat!(
            r#"[{"jsonrpc":"2.0","id":"a","result":{"k":[1]}},"#,
            r#"{"jsonrpc":"2.0","id":"b","error":{"code":-32000,"message":"boom","data":{"detail":"x"}}},"#,
            r#"{"jsonrpc":"2.0","id":"c","result":"slept"}]"#
        ),
        "{reply:?}"
    );
    // Notifications only: 204.
    let reply = post(
        &proxy,
        r#"{"jsonrpc":"2.0","method":"log.write","params":["y"]}"#,
    );
    assert_eq!((reply.status, reply.body.as_str()), (204, ""), "{reply:?}");
    let received = server.wait_received(6, Duration::from_secs(10));
    for text in [r#"["x"]"#, r#"["y"]"#] {
        let params: Value = serde_json::from_str(text).unwrap();
        assert!(
            received
                .iter()
                .any(|m| m["method"] == "log.write" && m["params"] == params),
            "{received:?}"
        );
    }
    // The upstream options reached the upstream's handshake.
    assert_eq!(handshake_header(&server, "x-node").as_deref(), Some("a"));
    assert_eq!(
        handshake_header(&server, "authorization").as_deref(),
        Some("Bearer t0ken")
    );
    // Not JSON: -32700, to this client.
    let reply = post(&proxy, "{not json");
    let answer: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(answer["error"]["code"], -32700, "{reply:?}");

    let metrics = http("GET", &format!("http://{}/metrics", proxy.addr), "");
    assert_eq!(metrics.status, 200);
    for line in [
        "jsonrpc_proxy_messages_total 4",
        "jsonrpc_proxy_forwarded_total 4",
        "jsonrpc_proxy_notifications_total 2",
        "jsonrpc_proxy_invalid_total 1",
        "jsonrpc_proxy_upstream_up{upstream=\"0\"} 1",
        "jsonrpc_proxy_upstream_latency_seconds_count{upstream=\"0\"} 4",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "no {line:?} in:\n{}",
            metrics.body
        );
    }

    // Ctrl-C: a clean exit, and the upstream connection closed properly.
    let out = proxy.stop("INT");
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:#?}");
    assert_eq!(server.client_closes(), vec![Some((1000, String::new()))]);
}

#[test]
fn proxy_without_metrics_does_not_serve_them_and_answers_only_posts() {
    let server = TestServer::start(standard);
    let proxy = Proxy::start(&["--upstream", &server.url()]);
    assert_eq!(
        http("GET", &format!("http://{}/metrics", proxy.addr), "").status,
        404
    );
    // A GET without an upgrade is no websocket handshake, and a PUT no
    // JSON-RPC at all.
    assert_eq!(http("GET", &proxy.url(), "").status, 400);
    assert_eq!(http("PUT", &proxy.url(), "").status, 405);
    let out = proxy.stop("TERM");
    assert_eq!(out.code, 0, "{out:#?}");
}

#[test]
fn proxy_finishes_requests_in_flight_on_sigterm_then_exits_0() {
    let server = TestServer::start(standard);
    let proxy = Proxy::start(&["--upstream", &server.url()]);
    let url = proxy.url();
    let in_flight = std::thread::spawn(move || {
        http(
            "POST",
            &url,
            r#"{"jsonrpc":"2.0","id":"slow","method":"sleep","params":[300]}"#,
        )
    });
    // The request is upstream (the proxy holds it) when the signal comes.
    server.wait_received(1, Duration::from_secs(10));
    let out = proxy.stop("TERM");
    let reply = in_flight.join().expect("the request's thread");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, r#"{"jsonrpc":"2.0","id":"slow","result":"slept"}"#),
        "{out:#?}"
    );
    assert_eq!((out.code, out.stdout.lines().count()), (0, 1), "{out:#?}");
    assert_eq!(out.stderr, "", "{out:#?}");
}

#[test]
fn proxy_fails_over_to_its_second_upstream() {
    let first = TestServer::start(standard);
    let second = TestServer::start(standard);
    let proxy = Proxy::start(&[
        "--upstream",
        &first.url(),
        "--upstream",
        &second.url(),
        "--metrics",
    ]);
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"add","params":[1,1]}"#;
    assert_eq!(
        post(&proxy, call).body,
        r#"{"jsonrpc":"2.0","id":1,"result":2}"#
    );
    drop(first);
    // Until the proxy has seen the first go, a request may still be sent
    // its way (and fail with -32002); bounded.
    let metrics_url = format!("http://{}/metrics", proxy.addr);
    let started = Instant::now();
    while !http("GET", &metrics_url, "")
        .body
        .contains("jsonrpc_proxy_upstream_up{upstream=\"0\"} 0")
    {
        assert!(
            started.elapsed() < RUN_LIMIT,
            "the proxy never saw the first upstream go"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..5 {
        assert_eq!(
            post(&proxy, call).body,
            r#"{"jsonrpc":"2.0","id":1,"result":2}"#
        );
    }
    assert_eq!(
        second
            .received()
            .iter()
            .filter(|m| m["method"] == "add")
            .count(),
        5
    );
    let out = proxy.stop("TERM");
    assert_eq!(out.code, 0, "{out:#?}");
}

#[test]
fn proxy_limits_come_from_the_options() {
    let server = TestServer::start(standard);
    let proxy = Proxy::start(&[
        "--upstream",
        &server.url(),
        "--max-body",
        "200",
        "--max-batch",
        "2",
        "--timeout",
        "0.3",
    ]);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"echo","params":["{}"]}}"#,
        "x".repeat(300)
    );
    let reply = post(&proxy, &big);
    assert_eq!(reply.status, 413, "{reply:?}");
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"add","params":[1]},
        {"jsonrpc":"2.0","id":2,"method":"add","params":[2]},
        {"jsonrpc":"2.0","id":3,"method":"add","params":[3]}]"#;
    let reply = post(&proxy, batch);
    let answer: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(answer["error"]["code"], -32005, "{reply:?}");
    // --timeout bounds each request.
    let reply = post(&proxy, r#"{"jsonrpc":"2.0","id":9,"method":"silent"}"#);
    let answer: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        (answer["id"].clone(), answer["error"]["code"].clone()),
        (json!(9), json!(-32001)),
        "{reply:?}"
    );
    assert!(server.received().iter().all(|m| m["method"] != "echo"));
    let out = proxy.stop("TERM");
    assert_eq!(out.code, 0, "{out:#?}");
}

#[test]
fn proxy_startup_failures() {
    // No upstream at all.
    run(&["proxy", "--listen", "127.0.0.1:0"]).assert_usage_error("--upstream");
    for (flag, bad) in [
        ("--max-body", "0"),
        ("--max-batch", "0"),
        ("--per-client-in-flight", "lots"),
    ] {
        run(&["proxy", "--upstream", NOWHERE, flag, bad]).assert_usage_error(flag);
    }
    // An upstream that cannot be reached: nothing is served.
    let out = run(&["proxy", "--listen", "127.0.0.1:0", "--upstream", NOWHERE]);
    out.assert_failure(&format!("upstream {NOWHERE}"));
    // An address that cannot be listened on.
    let server = TestServer::start(standard);
    let out = run(&["proxy", "--listen", "nowhere", "--upstream", &server.url()]);
    out.assert_failure("cannot listen on nowhere");
    // A port taken: the server's own.
    let taken = server.addr().to_string();
    let out = run(&["proxy", "--listen", &taken, "--upstream", &server.url()]);
    out.assert_failure(&format!("cannot listen on {taken}"));

    let out = run(&["proxy", "--help"]);
    assert_eq!(out.code, 0, "{out:#?}");
    for text in [
        "--upstream <URL>",
        "--max-body",
        "--metrics",
        "listening on <ADDR>",
    ] {
        assert!(out.stdout.contains(text), "{text:?}: {out:#?}");
    }
}

#[test]
fn proxy_serves_websocket_clients_at_the_same_path() {
    let server = TestServer::start(standard);
    let proxy = Proxy::start(&["--upstream", &server.url()]);
    // This very binary as the websocket client.
    let ws = format!("ws://{}/", proxy.addr);
    let out = run(&["call", &ws, "add", "[2,3]"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "5\n"), "{out:#?}");
    // HTTP at the same path, to the same upstream connection.
    let reply = post(
        &proxy,
        r#"{"jsonrpc":"2.0","id":"h","method":"add","params":[1,1]}"#,
    );
    assert_eq!(reply.body, r#"{"jsonrpc":"2.0","id":"h","result":2}"#);
    assert_eq!(server.connections(), 1, "one upstream connection for both");
    let out = run(&[
        "batch",
        &ws,
        r#"[{"method":"echo","params":[1]},{"method":"error"}]"#,
    ]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stdout.lines().next(),
        Some(r#"{"result":[1]}"#),
        "{out:#?}"
    );
    let out = proxy.stop("TERM");
    assert_eq!(out.code, 0, "{out:#?}");
}

#[test]
fn proxy_closes_websocket_clients_with_1001_on_sigterm_after_answering_what_is_in_flight() {
    let server = TestServer::start(standard);
    let proxy = Proxy::start(&["--upstream", &server.url()]);
    let ws = format!("ws://{}/", proxy.addr);
    let pid = proxy.live.child.id();
    let upstream = &server;
    let (slow, refused, closed) = jsonrpc_websocket::actix::System::new().block_on(async move {
        use jsonrpc_websocket::params;
        let connect = || async {
            jsonrpc_websocket::RpcConnection::builder(&ws)
                .connect()
                .await
                .unwrap_or_else(|err| panic!("connecting to the proxy: {err}"))
        };
        let (busy, idle) = (connect().await, connect().await);
        let sum: i64 = busy
            .call("add", params![1, 2])
            .await
            .unwrap_or_else(|err| panic!("a call through the proxy: {err}"));
        assert_eq!(sum, 3);
        // A call in flight (upstream) when the signal comes.
        let slow = busy.call::<String>("sleep", params![500]);
        let signalled = async {
            upstream.wait_received_async(2, RUN_LIMIT).await;
            let status = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .expect("could not run kill");
            assert!(status.success());
            // The idle one is closed at once; a new call of the busy one
            // is refused.
            let idle_closed = tokio::time::timeout(RUN_LIMIT, idle.closed())
                .await
                .unwrap_or_else(|_| panic!("the proxy did not close the idle websocket"));
            assert_eq!(idle_closed.code, Some(1001), "{idle_closed:?}");
            busy.call::<i64>("add", params![1, 1]).await
        };
        let (slow, refused) =
            tokio::time::timeout(RUN_LIMIT, async { tokio::join!(slow, signalled) })
                .await
                .unwrap_or_else(|_| panic!("the call in flight got no answer"));
        let closed = tokio::time::timeout(RUN_LIMIT, busy.closed())
            .await
            .unwrap_or_else(|_| panic!("the proxy did not close the websocket"));
        (slow, refused, closed)
    });
    assert_eq!(slow.as_deref().ok(), Some("slept"), "{slow:?}");
    match refused {
        Err(jsonrpc_websocket::Error::Rpc { error, .. }) => assert_eq!(error.code, -32002),
        other => panic!("expected -32002, got {other:?}"),
    }
    assert_eq!(closed.code, Some(1001), "{closed:?}");
    let out = proxy.live.finish();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stderr, "", "{out:#?}");
    assert_eq!(count(&server, "sleep"), 1);
}

/// `standard`, plus `eth_subscribe` (answers `"0xup"`) and `eth_unsubscribe`
/// (`true`).
fn with_subscriptions(msg: &Value) -> Action {
    match msg["method"].as_str() {
        Some("eth_subscribe") => Action::Reply(response(&msg["id"], json!("0xup"))),
        Some("eth_unsubscribe") => Action::Reply(response(&msg["id"], json!(true))),
        _ => standard(msg),
    }
}

fn count(server: &TestServer, method: &str) -> usize {
    server
        .received()
        .iter()
        .filter(|m| m["method"] == method)
        .count()
}

#[test]
fn proxy_fans_one_upstream_subscription_out_to_websocket_subscribers() {
    let server = TestServer::start(with_subscriptions);
    let proxy = Proxy::start(&["--upstream", &server.url(), "--metrics"]);
    let ws = format!("ws://{}/", proxy.addr);
    // Two of this very binary subscribe through the proxy, the same params
    // written two ways.
    let subscribers: Vec<_> = [
        r#"["newHeads",{"a":1,"b":2}]"#,
        r#"[ "newHeads", {"b":2, "a":1} ]"#,
    ]
    .into_iter()
    .map(|params| {
        let ws = ws.clone();
        std::thread::spawn(move || {
            run(&[
                "subscribe",
                &ws,
                "eth_subscribe",
                params,
                "--unsubscribe",
                "eth_unsubscribe",
                "--count",
                "2",
            ])
        })
    })
    .collect();
    let metrics_url = format!("http://{}/metrics", proxy.addr);
    let started = Instant::now();
    while !http("GET", &metrics_url, "")
        .body
        .contains("jsonrpc_proxy_downstream_subscriptions 2")
    {
        assert!(
            started.elapsed() < RUN_LIMIT,
            "the subscribers never both subscribed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        count(&server, "eth_subscribe"),
        1,
        "one upstream subscription"
    );
    for n in [1, 2] {
        server.push(json!({"jsonrpc": "2.0", "method": "eth_subscription",
                           "params": {"subscription": "0xup", "result": {"number": n}}}));
    }
    for subscriber in subscribers {
        let out = subscriber.join().expect("a subscriber's thread");
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "{\"number\":1}\n{\"number\":2}\n"),
            "{out:#?}"
        );
    }
    // Both unsubscribed: the last one ended the upstream subscription.
    let received = server.wait_received(2, RUN_LIMIT);
    let unsubscribes: Vec<&Value> = received
        .iter()
        .filter(|m| m["method"] == "eth_unsubscribe")
        .collect();
    assert_eq!(unsubscribes.len(), 1, "{received:?}");
    assert_eq!(unsubscribes[0]["params"], json!(["0xup"]));
    let out = proxy.stop("TERM");
    assert_eq!(out.code, 0, "{out:#?}");
}

#[test]
fn a_second_signal_stops_the_proxy_at_once_with_exit_130() {
    let server = TestServer::start(standard);
    let proxy = Proxy::start(&["--upstream", &server.url()]);
    let url = proxy.url();
    // Held by the upstream far longer than the test waits.
    let in_flight = std::thread::spawn(move || {
        let _ = std::panic::catch_unwind(|| {
            http(
                "POST",
                &url,
                r#"{"jsonrpc":"2.0","id":1,"method":"sleep","params":[15000]}"#,
            )
        });
    });
    server.wait_received(1, Duration::from_secs(10));
    proxy.signal("TERM");
    let out = proxy.stop("INT");
    assert_eq!(out.code, 130, "{out:#?}");
    assert_eq!(out.stderr_lines().len(), 1, "{out:#?}");
    assert!(out.stderr.contains("second signal"), "{out:#?}");
    let _ = in_flight.join();
}
