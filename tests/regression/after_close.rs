//! After our close frame nothing is sent but the close handshake.

use std::time::Duration;

use jsonrpc_websocket::{Close, ErrorObject, RpcConnection, ServerRequest};

use crate::support::raw::{OP_CLOSE, OP_PING};
use crate::support::{connect_with, json, within, RawConn, RawServer};

#[actix_rt::test]
async fn no_answer_and_no_pong_follows_our_close_frame() {
    let (got_close, mut close_seen) = tokio::sync::mpsc::unbounded_channel::<()>();
    let server = RawServer::start(move |mut conn: RawConn| {
        let got_close = got_close.clone();
        async move {
            conn.send_text(r#"{"jsonrpc":"2.0","id":1,"method":"hold"}"#)
                .await;
            loop {
                let frame = conn.read_frame().await.expect("our close frame");
                if frame.opcode == OP_CLOSE {
                    break;
                }
            }
            let _ = got_close.send(());
            // Everything here would have been answered while open.
            conn.send_frame(true, OP_PING, b"late ping").await;
            conn.send_text(r#"{"jsonrpc":"2.0","id":2,"method":"unknown"}"#)
                .await;
            conn.send_text(r#"{"jsonrpc":"2.0","id":3,"method":"fine"}"#)
                .await;
            conn.send_text(r#"[{"jsonrpc":"2.0","id":4,"method":"fine"}]"#)
                .await;
            conn.send_text(r#"{"jsonrpc":"2.0","id":5,"method":7}"#)
                .await;
            conn.send_close(1000, "").await;
            let mut after = Vec::new();
            while let Some(frame) = conn.read_frame().await {
                after.push((
                    frame.opcode,
                    String::from_utf8_lossy(&frame.payload).into_owned(),
                ));
            }
            assert!(after.is_empty(), "sent after our close frame: {after:?}");
        }
    });
    let (release, released) = tokio::sync::watch::channel(false);
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
    let client = connect_with(
        RpcConnection::builder(server.url())
            .register_fn("hold", move |_: ServerRequest| {
                let mut released = released.clone();
                let _ = started_tx.send(());
                async move {
                    let _ = released.wait_for(|go| *go).await;
                    Ok::<_, ErrorObject>(json!("too late"))
                }
            })
            .register_fn("fine", |_: ServerRequest| async {
                Ok::<_, ErrorObject>(json!("fine"))
            }),
    )
    .await;
    within("handler start", started.recv()).await.unwrap();
    let closing = {
        let client = client.clone();
        actix_rt::spawn(async move {
            client
                .close_with(Close::new().timeout(Duration::from_secs(5)))
                .await
        })
    };
    within("our close frame", close_seen.recv()).await.unwrap();
    release.send(true).unwrap();
    within("close", closing)
        .await
        .unwrap()
        .expect("a clean close");
    // Dropping the server joins its script and re-raises its assertion.
    drop(server);
}
