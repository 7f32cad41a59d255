//! Dropping every handle closes the connection cleanly.

use jsonrpc_websocket::params;

use crate::support::{connect, standard, within, TestServer, Value};

#[actix_rt::test]
async fn the_socket_closes_with_1000_when_the_last_client_is_dropped() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let other = client.clone();
    let _: Value = within("call", client.call("echo", params![1]))
        .await
        .unwrap();
    drop(client);
    // One handle left: still open.
    let _: Value = within("call", other.call("echo", params![2]))
        .await
        .unwrap();
    drop(other);
    let closes = server
        .wait_client_closes_async(1, crate::support::BOUND)
        .await;
    assert_eq!(closes[0], Some((1000, String::new())));
    server
        .wait_connections_async(0, crate::support::BOUND)
        .await;
}

#[actix_rt::test]
async fn an_addr_alone_keeps_the_connection_open() {
    let server = TestServer::start(standard);
    let client = connect(&server.url()).await;
    let addr = client.addr().clone();
    drop(client);
    let v = within(
        "call through the addr",
        addr.send(jsonrpc_websocket::Call::new("echo", params![3])),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(v, serde_json::json!([3]));
    assert!(server.client_closes().is_empty());
    drop(addr);
    let closes = server
        .wait_client_closes_async(1, crate::support::BOUND)
        .await;
    assert_eq!(closes[0], Some((1000, String::new())));
}
