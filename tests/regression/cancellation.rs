//! A caller that stops waiting frees its call at once.

use std::time::Duration;

use jsonrpc_websocket::{params, Backpressure, Call, RpcConnection};

use crate::support::{assert_no_pending, connect_with, json, standard, within, TestServer, Value};

/// Gives up on `call` after it has reached the server.
async fn abandon<F: std::future::Future>(server: &TestServer, seen: usize, call: F) {
    tokio::select! {
        _ = call => panic!("a silent call answered"),
        _ = server.wait_received_async(seen + 1, crate::support::BOUND) => {}
    }
}

#[actix_rt::test]
async fn a_dropped_call_frees_its_place_at_once() {
    for policy in [Backpressure::Wait, Backpressure::Fail] {
        let server = TestServer::start(standard);
        let client = connect_with(
            RpcConnection::builder(server.url())
                .max_in_flight(1)
                .backpressure(policy)
                // Long enough that only cancelling can free the place in time.
                .request_timeout(Duration::from_secs(3600)),
        )
        .await;
        abandon(&server, 0, client.call::<Value>("silent", params![])).await;
        let echoed: Value = within("the next call", client.call("echo", params![1]))
            .await
            .unwrap_or_else(|err| panic!("{policy:?}: {err}"));
        assert_eq!(echoed, json!([1]));
        let stats = client.stats();
        assert_eq!(
            (stats.cancelled, stats.timeouts),
            (1, 0),
            "{policy:?}: {stats:?}"
        );
        assert_no_pending(&client);
    }
}

#[actix_rt::test]
async fn a_dropped_actor_call_frees_its_entry_too() {
    let server = TestServer::start(standard);
    let client = connect_with(
        RpcConnection::builder(server.url()).request_timeout(Duration::from_secs(3600)),
    )
    .await;
    let addr = client.addr().clone();
    abandon(&server, 0, addr.send(Call::new("silent", params![]))).await;
    within("the entry is freed", async {
        while client.stats().pending > 0 {
            // Awaits the actor's turn: it frees the entry when told the caller left.
            let _ = client.addr().send(jsonrpc_websocket::GetStats).await;
        }
    })
    .await;
    assert_eq!(client.stats().cancelled, 1);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_call_waiting_for_room_that_is_dropped_leaves_the_line() {
    let server = TestServer::start(standard);
    let client = connect_with(
        RpcConnection::builder(server.url())
            .max_in_flight(1)
            .request_timeout(Duration::from_secs(3600)),
    )
    .await;
    let first = {
        let client = client.clone();
        actix_rt::spawn(async move { client.call::<Value>("sleep", params![200]).await })
    };
    server.wait_received_async(1, crate::support::BOUND).await;
    // This one waits in line behind the first; give up on it.
    let waiting = client.call::<Value>("echo", params!["never sent"]);
    let gave_up = tokio::time::timeout(Duration::from_millis(50), waiting).await;
    assert!(gave_up.is_err(), "it should have been waiting");
    assert_eq!(
        within("first", first).await.unwrap().unwrap(),
        json!("slept")
    );
    let after: Value = within("after", client.call("echo", params![2]))
        .await
        .unwrap();
    assert_eq!(after, json!([2]));
    assert!(
        server
            .received()
            .iter()
            .all(|m| m["params"] != json!(["never sent"])),
        "a call given up while waiting was sent anyway"
    );
    assert_eq!(client.stats().cancelled, 1);
    assert_no_pending(&client);
}
