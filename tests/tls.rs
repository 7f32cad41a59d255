//! `wss://` with the `rustls` feature: the connector is built (rustls has a
//! crypto provider) and TLS failures are transport errors, never panics.
#![cfg(feature = "rustls")]

use test_support as support;

use jsonrpc_websocket::{Error, RpcConnection};
use support::{chain, within};

#[actix_rt::test]
async fn wss_to_a_server_that_does_not_speak_tls_is_a_transport_error() {
    // Answers the TLS client hello with plain HTTP: no handshake can succeed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://{}/", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut socket, _) = listener.accept().unwrap();
        let mut hello = [0u8; 512];
        let _ = socket.read(&mut hello);
        let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let err = within("connect", RpcConnection::builder(&url).connect())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    let causes = chain(&err);
    assert!(
        causes.len() >= 2,
        "the TLS failure is the source: {causes:?}"
    );
    server.join().unwrap();
}
