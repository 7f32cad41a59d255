//! The server's ids go back byte for byte.

use jsonrpc_websocket::{ErrorObject, RpcConnection, ServerRequest};

use crate::support::{connect_with, json, within, RawConn, RawServer};

#[actix_rt::test]
async fn ids_that_serde_would_rewrite_are_echoed_exactly() {
    const IDS: [&str; 7] = [
        "12345678901234567890123",
        "1e2",
        "-0",
        "2.50",
        r#""\u00e9""#,
        r#""a\/b""#,
        "18446744073709551616",
    ];
    let (tx, mut answers) = tokio::sync::mpsc::unbounded_channel::<String>();
    let server = RawServer::start(move |mut conn: RawConn| {
        let tx = tx.clone();
        async move {
            for id in IDS {
                let request = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"m","params":[]}}"#);
                conn.send_text(&request).await;
                // Unknown methods are answered without a handler too.
                let unknown = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"nope.x"}}"#);
                conn.send_text(&unknown).await;
            }
            for _ in 0..2 * IDS.len() {
                let frame = conn.read_frame().await.expect("an answer");
                let _ = tx.send(String::from_utf8(frame.payload).unwrap());
            }
            conn.idle(std::time::Duration::from_secs(5)).await;
        }
    });
    let _client = connect_with(
        RpcConnection::builder(server.url()).register_fn("m", |req: ServerRequest| async move {
            Ok::<_, ErrorObject>(json!(req.id.to_string()))
        }),
    )
    .await;
    let mut got = Vec::new();
    for _ in 0..2 * IDS.len() {
        got.push(within("an answer", answers.recv()).await.unwrap());
    }
    for id in IDS {
        let prefix = format!(r#"{{"jsonrpc":"2.0","id":{id},"#);
        let both: Vec<&String> = got.iter().filter(|a| a.starts_with(&prefix)).collect();
        assert_eq!(both.len(), 2, "id {id} not echoed exactly: {got:#?}");
        assert!(both.iter().any(|a| a.contains(r#""result":"#)), "{both:?}");
        assert!(both.iter().any(|a| a.contains("-32601")), "{both:?}");
    }
}
