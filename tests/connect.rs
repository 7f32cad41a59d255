//! Opening connections: transport failures, rejected handshakes, headers
//! and credentials.

use test_support as support;

use std::time::Duration;

use jsonrpc_websocket::{params, Error, RpcConnection};
use support::{
    assert_no_pending, chain, connect_with, standard, within, RawServer, TestServer, Value,
};

#[actix_rt::test]
async fn connecting_to_a_closed_port_is_a_transport_error_with_its_cause() {
    // Bind then drop a listener: the port is free and nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/");
    let err = within("connect", RpcConnection::builder(&url).connect())
        .await
        .unwrap_err();
    let Error::Transport { context, .. } = &err else {
        panic!("expected Error::Transport, got {err:?}");
    };
    assert_eq!(context, &format!("could not connect to {url}"));
    let causes = chain(&err);
    assert!(
        causes.len() >= 2,
        "the awc error must be the source: {causes:?}"
    );
    assert!(
        causes.iter().any(|c| c.to_lowercase().contains("refused")),
        "the cause names the refusal: {causes:?}"
    );
    // Each level says something new: no level repeats the one beneath it.
    for pair in causes.windows(2) {
        assert!(!pair[0].contains(&pair[1]), "repeated cause: {causes:?}");
    }
}

#[actix_rt::test]
async fn many_connections_share_the_default_client_without_a_cap() {
    // awc's default connector stops at 100 open connections.
    let server = TestServer::start(standard);
    let connects = (0..120).map(|_| RpcConnection::builder(server.url()).connect());
    let clients = within("120 connects", futures_util::future::join_all(connects)).await;
    let clients: Vec<_> = clients
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|err| panic!("{err}"));
    server.wait_connections_async(120, support::BOUND).await;
    for client in &clients {
        within("close", client.close())
            .await
            .expect("a clean close");
        assert_no_pending(client);
    }
}

#[actix_rt::test]
async fn a_rejected_handshake_reports_the_http_status() {
    let server = TestServer::builder().reject_with(401).start(standard);
    let err = within("connect", RpcConnection::builder(server.url()).connect())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Handshake { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(err.status(), Some(401));
    assert!(err.to_string().contains("401"), "{err}");
}

#[actix_rt::test]
async fn missing_credentials_get_401_and_right_ones_get_in() {
    let server = TestServer::builder()
        .require_header("authorization", "Bearer t0ken")
        .start(standard);
    let err = within("connect", RpcConnection::builder(server.url()).connect())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
    let client = connect_with(RpcConnection::builder(server.url()).bearer_auth("t0ken")).await;
    let v: Value = within("call", client.call("echo", params![1]))
        .await
        .unwrap();
    assert_eq!(v, support::json!([1]));
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn headers_and_basic_auth_reach_the_server() {
    let server = TestServer::start(standard);
    let client = connect_with(
        RpcConnection::builder(server.url())
            .header("X-Api-Key", "k1")
            .headers([("X-Trace", "on"), ("X-Trace", "twice")])
            .basic_auth("ann", "s3cret"),
    )
    .await;
    let headers = &server.handshakes()[0];
    let get = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("x-api-key"), ["k1"]);
    assert_eq!(get("x-trace"), ["on", "twice"]);
    // base64("ann:s3cret")
    assert_eq!(get("authorization"), ["Basic YW5uOnMzY3JldA=="]);
    client.close().await.expect("a clean close");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn bearer_auth_reaches_the_server() {
    let server = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(server.url()).bearer_auth("abc")).await;
    let auth: Vec<String> = server.handshakes()[0]
        .iter()
        .filter(|(n, _)| n == "authorization")
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(auth, ["Bearer abc"]);
    client.close().await.expect("a clean close");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn an_external_awc_client_is_used_as_given() {
    let server = TestServer::start(standard);
    let awc_client = awc::Client::builder()
        .add_default_header(("X-From", "outside"))
        .finish();
    let client = connect_with(RpcConnection::builder(server.url()).client(awc_client)).await;
    let headers = &server.handshakes()[0];
    assert!(
        headers.contains(&("x-from".into(), "outside".into())),
        "{headers:?}"
    );
    let sum: i64 = within("call", client.call("add", params![1, 2]))
        .await
        .unwrap();
    assert_eq!(sum, 3);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn bad_configuration_is_reported_before_connecting() {
    let err = within("connect", RpcConnection::builder("localhost:9").connect())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err:?}");
    let err = within(
        "connect",
        RpcConnection::builder("ws://127.0.0.1:9/")
            .header("X", "a\u{0}b")
            .connect(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("bad header value"), "{err}");
}

#[actix_rt::test]
async fn a_server_that_never_answers_the_handshake_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let err = within(
        "connect",
        RpcConnection::builder(url)
            .connect_timeout(Duration::from_millis(200))
            .connect(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    drop(listener);
}

#[actix_rt::test]
async fn a_non_websocket_answer_is_a_transport_error() {
    let server = RawServer::respond_raw("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi");
    let err = within("connect", RpcConnection::builder(server.url()).connect())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(200), "{err:?}");
    let server = RawServer::respond_raw("garbage\r\n\r\n");
    let err = within("connect", RpcConnection::builder(server.url()).connect())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
}

#[actix_rt::test]
async fn subprotocols_are_offered_in_the_handshake() {
    let server = TestServer::start(standard);
    let client =
        connect_with(RpcConnection::builder(server.url()).subprotocols(["jsonrpc", "json-rpc.v2"]))
            .await;
    let offered: Vec<String> = server.handshakes()[0]
        .iter()
        .filter(|(n, _)| n == "sec-websocket-protocol")
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(offered, ["jsonrpc,json-rpc.v2"]);
    client.close().await.expect("a clean close");
    assert_no_pending(&client);
}
