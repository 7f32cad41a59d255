//! Read pacing (see `ConnectionBuilder::read_pacing`) over a real socket:
//! whatever the pacing, a notification flood arrives whole and in order, and
//! calls made in the middle of it are answered in the middle of it — pacing
//! never holds an answer back until the flood is over.

use std::time::Duration;

use jsonrpc_websocket::{params, RpcConnection, Subscribe, SubscriptionItem};
use test_support::{assert_no_pending, connect_with, json, response, within, RawConn, RawServer};

const FLOOD: u64 = 30_000;
/// The server stops after every this many items until the client's call
/// arrives, and answers it before going on.
const EVERY: u64 = 5_000;

/// Answers `subscribe` with `"flood-1"`, then sends FLOOD items one frame
/// (and one write) each; after every EVERY-th it reads the client's `mid`
/// call and answers it with the number of items sent so far, mid-flood.
/// Then it answers the unsubscribe.
fn flood_server() -> RawServer {
    RawServer::start(|mut conn: RawConn| async move {
        let subscribe = conn.read_json().await.expect("the subscribe call");
        conn.send_json(&response(&subscribe["id"], json!("flood-1")))
            .await;
        for n in 1..=FLOOD {
            let item = format!(
                r#"{{"jsonrpc":"2.0","method":"tick","params":{{"subscription":"flood-1","result":{n}}}}}"#
            );
            conn.send_text(&item).await;
            if n % EVERY == 0 {
                let call = conn.read_json().await.expect("the mid-flood call");
                assert_eq!(call["method"], "mid");
                conn.send_json(&response(&call["id"], json!(n))).await;
            }
        }
        let unsubscribe = conn.read_json().await.expect("the unsubscribe call");
        conn.send_json(&response(&unsubscribe["id"], json!(true)))
            .await;
        conn.idle(Duration::from_secs(10)).await;
    })
}

async fn flood_with_calls_in_the_middle(pacing: Duration) {
    let server = flood_server();
    let client = connect_with(RpcConnection::builder(server.url()).read_pacing(pacing)).await;
    let mut sub = within(
        "subscribe",
        client.subscribe_with(
            Subscribe::new("subscribe", params![], "unsubscribe").capacity(FLOOD as usize),
        ),
    )
    .await
    .unwrap()
    .typed::<u64>();
    for n in 1..=FLOOD {
        match within("an item", sub.next()).await {
            Some(SubscriptionItem::Item(got)) => assert_eq!(got, n, "pacing {pacing:?}"),
            other => panic!("item {n} (pacing {pacing:?}): {other:?}"),
        }
        if n % EVERY == 0 {
            // The server sends nothing more until this is answered: a reader
            // holding answers back would never see it.
            let sent: u64 = within("the mid-flood call", client.call("mid", params![]))
                .await
                .unwrap();
            assert_eq!(sent, n);
        }
    }
    assert_eq!(
        within("unsubscribe", sub.unsubscribe()).await.unwrap(),
        json!(true)
    );
    let stats = client.stats();
    assert_eq!(stats.subscription_items_dropped, 0, "{stats:?}");
    assert_eq!(stats.server_notifications, FLOOD, "{stats:?}");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_flood_arrives_whole_and_calls_in_its_middle_are_answered() {
    // The default pacing, one far longer than the gaps between the items,
    // and none.
    for pacing in [
        Duration::from_micros(200),
        Duration::from_millis(1),
        Duration::ZERO,
    ] {
        flood_with_calls_in_the_middle(pacing).await;
    }
}

const BURSTS: u64 = 60;
const PER_BURST: u64 = 80;

/// Answers `subscribe` with `"b"`, then sends BURSTS bursts of PER_BURST
/// items, each burst one write (about 5.6 KB, less than a read takes), a
/// millisecond apart; then answers the unsubscribe.
fn burst_server() -> RawServer {
    RawServer::start(|mut conn: RawConn| async move {
        let subscribe = conn.read_json().await.expect("the subscribe call");
        conn.send_json(&response(&subscribe["id"], json!("b")))
            .await;
        let mut n = 0;
        for _ in 0..BURSTS {
            let mut burst = Vec::new();
            for _ in 0..PER_BURST {
                n += 1;
                let item = format!(
                    r#"{{"jsonrpc":"2.0","method":"t","params":{{"subscription":"b","result":{n}}}}}"#
                );
                burst.extend(RawConn::frame_header(true, 0x1, item.len() as u64));
                burst.extend(item.as_bytes());
            }
            conn.send_raw(&burst).await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let unsubscribe = conn.read_json().await.expect("the unsubscribe call");
        conn.send_json(&response(&unsubscribe["id"], json!(true)))
            .await;
        conn.idle(Duration::from_secs(10)).await;
    })
}

/// Takes the bursts with the given pacing; returns the reads put off.
async fn bursts(pacing: Duration) -> u64 {
    let server = burst_server();
    let client = connect_with(RpcConnection::builder(server.url()).read_pacing(pacing)).await;
    let mut sub = within(
        "subscribe",
        client.subscribe_with(
            Subscribe::new("subscribe", params![], "unsubscribe")
                .capacity((BURSTS * PER_BURST) as usize),
        ),
    )
    .await
    .unwrap()
    .typed::<u64>();
    for n in 1..=BURSTS * PER_BURST {
        match within("an item", sub.next()).await {
            Some(SubscriptionItem::Item(got)) => assert_eq!(got, n, "pacing {pacing:?}"),
            other => panic!("item {n} (pacing {pacing:?}): {other:?}"),
        }
    }
    assert_eq!(
        within("unsubscribe", sub.unsubscribe()).await.unwrap(),
        json!(true)
    );
    assert_no_pending(&client);
    client.stats().paced_reads
}

#[actix_rt::test]
async fn a_flood_is_read_at_the_pace_asked_and_not_at_all_with_zero() {
    // 80 items a millisecond is a flood for a 10 ms pace (8 per 10 ms
    // would do), whatever the load on the machine running the test.
    let paced = bursts(Duration::from_millis(10)).await;
    assert!(paced > 0, "no read was put off");
    assert_eq!(bursts(Duration::ZERO).await, 0);
}
