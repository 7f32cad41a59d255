//! Memory bounds: each test floods one path and asserts that the live heap
//! of this process grows by less than a bound. A counting allocator keeps
//! the figure; the tests take turns (a lock), so one flood is measured at a
//! time. (The in-process servers allocate too; their share is small and
//! freed, and the bounds leave room for it.)

use test_support as support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use jsonrpc_websocket::{
    params, Backpressure, Error, Overflow, RegisterListener, RpcConnection, ServerNotification,
};
use support::{assert_no_pending, connect_with, json, within, RawConn, RawServer};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The live heap of allocations made and freed on threads that asked to be
/// tracked: the client's alone, without the in-process servers' threads.
static LIVE_HERE: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static TRACKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn here(n: isize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    if TRACKED.try_with(std::cell::Cell::get).unwrap_or(false) {
        LIVE_HERE.fetch_add(n, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged; only
// the size is counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        here(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        here(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        here(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

/// One flood at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: isize = 1024 * 1024;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn assert_grew_less_than(before: isize, bound: isize, what: &str) {
    let grown = live() - before;
    assert!(
        grown < bound,
        "{what}: the heap grew by {} KiB (bound {} KiB)",
        grown / 1024,
        bound / 1024
    );
}

#[actix_rt::test]
async fn notifications_to_a_server_that_does_not_read_are_bounded() {
    let _turn = TURN.lock().await;
    let server = support::silent_peer();
    let client = connect_with(
        RpcConnection::builder(server.url())
            .max_queued_bytes(4 << 20)
            .backpressure(Backpressure::Fail),
    )
    .await;
    let big = params!["n".repeat(1 << 20)];
    let before = live();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..60 {
        match within("notify", client.notify("upload", big.clone())).await {
            Ok(()) => accepted += 1,
            Err(Error::Overloaded { .. }) => refused += 1,
            Err(err) => panic!("{err}"),
        }
        assert!(
            client.stats().queued_bytes <= 5 << 20,
            "{:?}",
            client.stats()
        );
    }
    // Before the fix all 300 were accepted and kept: ~300 MiB.
    assert!(
        refused > 0 && accepted < 300,
        "accepted {accepted}, refused {refused}"
    );
    assert_grew_less_than(before, 16 * MIB, "300 x 1 MiB notifications");
    assert_eq!(client.stats().overloaded, refused);
}

#[actix_rt::test]
async fn a_waiting_notification_gives_up_after_the_request_timeout() {
    let _turn = TURN.lock().await;
    let server = support::silent_peer();
    let client = connect_with(
        RpcConnection::builder(server.url())
            .max_queued_bytes(1 << 20)
            .request_timeout(Duration::from_millis(50)),
    )
    .await;
    let before = live();
    let big = "w".repeat(1 << 20);
    let mut sent = 0;
    let refused = loop {
        match within("notify", client.notify("upload", params![big])).await {
            Ok(()) => sent += 1,
            Err(err) => break err,
        }
        assert!(
            sent < 100,
            "100 MiB accepted by a server that does not read"
        );
    };
    assert!(matches!(refused, Error::Overloaded { .. }), "{refused:?}");
    assert!(client.stats().backpressure_waits >= 1);
    assert_grew_less_than(before, 16 * MIB, "notifications waiting for room");
}

#[actix_rt::test]
async fn calls_that_time_out_do_not_leave_their_bytes_behind() {
    let _turn = TURN.lock().await;
    let server = support::silent_peer();
    let client = connect_with(
        RpcConnection::builder(server.url()).request_timeout(Duration::from_millis(200)),
    )
    .await;
    let before = live();
    // Serialized once: 64 serializations of 1 MiB take seconds in a debug
    // build, and the silent peer hangs up after 5 s.
    let big = params!["c".repeat(1 << 20)];
    let calls = (0..64).map(|_| client.call::<serde_json::Value>("upload", big.clone()));
    let results = within("calls", futures_util::future::join_all(calls)).await;
    let not_timeouts: Vec<String> = results
        .iter()
        .filter(|r| !matches!(r, Err(e) if e.is_timeout()))
        .map(|r| format!("{r:?}"))
        .collect();
    assert!(not_timeouts.is_empty(), "{not_timeouts:?}");
    drop(results);
    // Only what fits the outbound queue stays (until the socket takes it).
    assert!(
        client.stats().queued_bytes <= 5 << 20,
        "{:?}",
        client.stats()
    );
    assert_grew_less_than(before, 16 * MIB, "64 timed-out 1 MiB calls");
    assert_no_pending(&client);
}

/// A listener that cannot keep up: each notification takes until released.
struct Slow {
    released: tokio::sync::watch::Receiver<bool>,
    got: std::sync::Arc<(AtomicIsize, AtomicIsize, tokio::sync::Notify)>,
}

impl actix::Actor for Slow {
    type Context = actix::Context<Self>;
}

impl actix::Handler<ServerNotification> for Slow {
    type Result = actix::ResponseFuture<()>;

    fn handle(&mut self, n: ServerNotification, _: &mut Self::Context) -> Self::Result {
        let (got, missed, changed) = &*self.got;
        got.fetch_add(1, Ordering::SeqCst);
        missed.fetch_add(n.missed as isize, Ordering::SeqCst);
        changed.notify_one();
        let mut released = self.released.clone();
        Box::pin(async move {
            let _ = released.wait_for(|go| *go).await;
        })
    }
}

#[actix_rt::test]
async fn a_slow_listener_under_a_flood_stays_within_its_queue() {
    use actix::Actor as _;
    let _turn = TURN.lock().await;
    const FLOOD: isize = 20_000;
    // The flood is written straight to the socket, one frame at a time, in
    // answer to a "flood" call; the answer comes after the last one.
    let server = RawServer::start(|mut conn: RawConn| async move {
        let request = conn.read_json().await.expect("the flood call");
        let payload = "p".repeat(4096);
        for i in 0..FLOOD {
            let n = format!(r#"{{"jsonrpc":"2.0","method":"feed","params":[{i},"{payload}"]}}"#);
            conn.send_text(&n).await;
        }
        conn.send_json(&support::response(&request["id"], json!("flooded")))
            .await;
        conn.idle(Duration::from_secs(10)).await;
    });
    let (release, released) = tokio::sync::watch::channel(false);
    let got = std::sync::Arc::new((
        AtomicIsize::new(0),
        AtomicIsize::new(0),
        tokio::sync::Notify::new(),
    ));
    let listener = Slow {
        released,
        got: std::sync::Arc::clone(&got),
    }
    .start();
    let client = connect_with(
        RpcConnection::builder(server.url()).listener(
            RegisterListener::actor("feed", listener.recipient())
                .capacity(1024)
                .overflow(Overflow::DropOldest),
        ),
    )
    .await;
    let before = live();
    let answer: serde_json::Value = within("the flood", client.call("flood", params![]))
        .await
        .unwrap();
    assert_eq!(answer, json!("flooded"));
    // Before the fix every notification waited in the listener's mailbox (~90 MB).
    assert_grew_less_than(
        before,
        24 * MIB,
        "20,000 x 4 KB notifications to a stalled listener",
    );
    release.send(true).unwrap();
    let (delivered, missed, changed) = &*got;
    within("every notification delivered or counted", async {
        while delivered.load(Ordering::SeqCst) + missed.load(Ordering::SeqCst) < FLOOD {
            changed.notified().await;
        }
    })
    .await;
    let (delivered, missed) = (
        delivered.load(Ordering::SeqCst),
        missed.load(Ordering::SeqCst),
    );
    assert_eq!(delivered + missed, FLOOD);
    // The one being handled, then a full queue; the rest were dropped oldest first.
    assert!((1024..=1025).contains(&delivered), "{delivered} delivered");
    assert_eq!(client.stats().notifications_dropped, missed as u64);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_peer_that_floods_requests_and_never_reads_cannot_grow_our_memory() {
    let _turn = TURN.lock().await;
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let server = RawServer::start(move |mut conn: RawConn| {
        let done_tx = done_tx.clone();
        async move {
            // Requests for an unknown method (answered at once) and pings,
            // as fast as we take them, never reading an answer.
            let request = r#"{"jsonrpc":"2.0","id":1,"method":"no.such.method.with.a.long.name"}"#;
            let mut sent = 0;
            let flood = async {
                for _ in 0..200_000 {
                    conn.send_text(request).await;
                    conn.send_frame(true, support::raw::OP_PING, b"ping").await;
                    sent += 1;
                }
            };
            // Our client stops reading once the answers it owes fill its
            // budget, so this blocks; the bound ends it.
            let _ = tokio::time::timeout(Duration::from_secs(3), flood).await;
            let _ = done_tx.send(sent);
            conn.idle(Duration::from_secs(5)).await;
        }
    });
    let before = live();
    let client = connect_with(RpcConnection::builder(server.url()).max_queued_bytes(1 << 20)).await;
    let sent = within("the flood", done.recv()).await.unwrap();
    assert!(sent < 200_000, "the peer was never slowed down");
    assert_grew_less_than(
        before,
        16 * MIB,
        "a flood of requests nobody reads the answers to",
    );
    assert!(
        client.stats().queued_bytes <= 3 << 20,
        "{:?}",
        client.stats()
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_stalled_subscriber_under_a_flood_stays_at_its_bound() {
    let _turn = TURN.lock().await;
    const FLOOD: u64 = 100_000;
    // Subscribe, then a "flood" call: the server sends FLOOD items for the
    // subscription, then answers the call.
    let server = RawServer::start(|mut conn: RawConn| async move {
        let subscribe = conn.read_json().await.expect("the subscribe call");
        conn.send_json(&support::response(&subscribe["id"], json!("flood-1")))
            .await;
        let flood = conn.read_json().await.expect("the flood call");
        for n in 1..=FLOOD {
            let item = format!(
                r#"{{"jsonrpc":"2.0","method":"tick","params":{{"subscription":"flood-1","result":{n}}}}}"#
            );
            conn.send_text(&item).await;
        }
        conn.send_json(&support::response(&flood["id"], json!("flooded")))
            .await;
        conn.idle(Duration::from_secs(10)).await;
    });
    let client = connect_with(RpcConnection::builder(server.url())).await;
    let mut sub = within(
        "subscribe",
        client.subscribe::<u64>("subscribe", params![], "unsubscribe"),
    )
    .await
    .unwrap();
    let before = live();
    let flooded: serde_json::Value = within("the flood", client.call("flood", params![]))
        .await
        .unwrap();
    assert_eq!(flooded, json!("flooded"));
    assert_grew_less_than(before, 16 * MIB, "100,000 items to a stalled subscriber");
    // The default queue (1,024, drop oldest): one Lagged, then the newest.
    let missed = FLOOD - 1024;
    match within("lagged", sub.next()).await {
        Some(jsonrpc_websocket::SubscriptionItem::Lagged { missed: m }) => assert_eq!(m, missed),
        other => panic!("{other:?}"),
    }
    for n in missed + 1..=FLOOD {
        match within("item", sub.next()).await {
            Some(jsonrpc_websocket::SubscriptionItem::Item(got)) => assert_eq!(got, n),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(client.stats().subscription_items_dropped, missed);
    drop(sub);
    assert_no_pending(&client);
}

/// Reconnecting over and over, with a subscription made again each time and
/// calls failing at each drop, leaves nothing behind. Counted on the test's
/// thread only (the client's), since the in-process server keeps a record
/// of every message and handshake.
#[actix_rt::test]
async fn reconnecting_again_and_again_is_bounded() {
    use futures_util::StreamExt;
    use jsonrpc_websocket::{ConnectionEvent, ReconnectPolicy, SubscriptionItem};
    use support::{response, standard, Action, FaultProxy, TestServer, Value};

    let _turn = TURN.lock().await;
    TRACKED.with(|t| t.set(true));
    let here = || LIVE_HERE.load(Ordering::Relaxed);
    let subscribes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let server = TestServer::start(move |msg: &Value| match msg["method"].as_str() {
        Some("subscribe") => {
            let n = subscribes.fetch_add(1, Ordering::Relaxed);
            Action::Reply(response(&msg["id"], json!(format!("s{n}"))))
        }
        _ => standard(msg),
    });
    let proxy = FaultProxy::start(server.addr());
    let client = connect_with(
        RpcConnection::builder(proxy.url())
            .close_timeout(Duration::from_millis(50))
            .reconnect(
                ReconnectPolicy::new()
                    .initial_delay(Duration::from_millis(1))
                    .max_delay(Duration::from_millis(5)),
            ),
    )
    .await;
    let mut events = client.events();
    let mut sub = within(
        "subscribe",
        client.subscribe::<u64>("subscribe", params![], "unsubscribe"),
    )
    .await
    .unwrap();
    let mut marks = Vec::new();
    for n in 0..250 {
        if n % 50 == 0 {
            // Let the old sockets' last tasks (each bounded by the close
            // timeout) end before measuring.
            tokio::time::sleep(Duration::from_millis(100)).await;
            marks.push(here());
        }
        let pending = {
            let client = client.clone();
            actix_rt::spawn(async move { client.call::<Value>("sleep", params![60_000]).await })
        };
        while client.stats().pending == 0 {
            tokio::task::yield_now().await;
        }
        proxy.drop_all();
        let err = within("the pending call", pending)
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.is_disconnect(), "{err}");
        loop {
            match within("an event", events.next()).await {
                Some(ConnectionEvent::Reconnected) => break,
                Some(_) => {}
                None => panic!("the connection ended"),
            }
        }
        match within("the gap item", sub.next()).await {
            Some(SubscriptionItem::Resubscribed { .. }) => {}
            other => panic!("round {n}: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    marks.push(here());
    TRACKED.with(|t| t.set(false));
    assert_no_pending(&client);
    assert_eq!(client.stats().reconnects, 250);
    let kib: Vec<isize> = marks.iter().map(|m| m / 1024).collect();
    eprintln!("the client's heap every 50 reconnects (KiB): {kib:?}");
    // From the first mark after warming up to the last: 200 reconnects. A
    // leak of 1 KiB per reconnect would cross the bound.
    let grown = marks[marks.len() - 1] - marks[1];
    assert!(
        grown < 200 * 1024,
        "200 reconnects grew the client's heap by {} KiB: {kib:?}",
        grown / 1024
    );
}

/// An idle connection holds no read buffer: the room reserved for a read
/// that finds nothing goes back at once. Counted on the test's thread only
/// (the client's). Before the fix every idle connection kept an 8 KiB read
/// buffer, about 15 KiB of heap in all; it now takes about 7.
#[actix_rt::test]
async fn an_idle_connection_holds_no_read_buffer() {
    use support::{standard, TestServer, Value};

    const CONNECTIONS: isize = 100;
    let _turn = TURN.lock().await;
    let server = TestServer::start(standard);
    let here = || LIVE_HERE.load(Ordering::Relaxed);
    // One connection first, so one-time costs (the shared awc client, lazy
    // statics, the runtime's first allocations) are not counted.
    let warm = support::connect(&server.url()).await;
    let _: Value = within("echo", warm.call("echo", params![1])).await.unwrap();
    TRACKED.with(|t| t.set(true));
    let before = here();
    let mut idle = Vec::new();
    for n in 0..CONNECTIONS {
        let client = support::connect(&server.url()).await;
        let _: Value = within("echo", client.call("echo", params![n]))
            .await
            .unwrap();
        idle.push(client);
    }
    // Let each reader come back to waiting for a frame that does not come.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_connection = (here() - before) / CONNECTIONS;
    eprintln!("the client's heap per idle connection: {per_connection} bytes");
    TRACKED.with(|t| t.set(false));
    for client in &idle {
        assert_no_pending(client);
    }
    assert!(
        per_connection < 12 * 1024,
        "an idle connection holds {} bytes of the client's heap (bound 12 KiB)",
        per_connection
    );
}
