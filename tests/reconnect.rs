//! Resilience over real sockets: a server that restarts on the same port, a
//! peer that goes silent (black hole), close codes and handshake statuses
//! that forbid or slow reconnecting, failover, the bounded wait while
//! reconnecting, calls opted in to being sent again, and subscriptions made
//! again with an explicit gap item.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jsonrpc_websocket::{
    params, Bound, Call, Client, ConnectionBuilder, ConnectionEvent, Error, EventStream,
    ReconnectPolicy, RpcConnection, SubscriptionEnd, SubscriptionItem, WhileReconnecting,
};
use test_support::{
    assert_no_pending, connect_with, json, response, standard, within, Action, FaultProxy,
    TestServer, Value, BOUND,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Quick retries, so that tests spend little time waiting.
fn quick() -> ReconnectPolicy {
    ReconnectPolicy::new()
        .initial_delay(ms(20))
        .max_delay(ms(200))
}

fn builder(url: &str) -> ConnectionBuilder {
    RpcConnection::builder(url)
        .reconnect(quick())
        .request_timeout(Duration::from_secs(8))
}

/// The next event, bounded.
async fn event(events: &mut EventStream) -> ConnectionEvent {
    within("the next event", events.next())
        .await
        .expect("the event stream ended")
}

/// Skips events until one matches; returns it and what was skipped.
async fn until(
    events: &mut EventStream,
    what: &str,
    wanted: impl Fn(&ConnectionEvent) -> bool,
) -> (ConnectionEvent, Vec<ConnectionEvent>) {
    let mut skipped = Vec::new();
    loop {
        let event = within(what, events.next())
            .await
            .unwrap_or_else(|| panic!("the events ended before {what}: {skipped:?}"));
        if wanted(&event) {
            return (event, skipped);
        }
        skipped.push(event);
    }
}

async fn reconnected(events: &mut EventStream) -> Vec<ConnectionEvent> {
    let (_, skipped) = until(events, "Reconnected", |e| {
        matches!(e, ConnectionEvent::Reconnected)
    })
    .await;
    skipped
}

/// How many of the server's received messages called `method`.
fn count(server: &TestServer, method: &str) -> usize {
    server
        .received()
        .iter()
        .filter(|m| m["method"] == method)
        .count()
}

async fn echo(client: &Client, n: u64) -> Result<Value, Error> {
    client.call("echo", params![n]).await
}

#[actix_rt::test]
async fn a_server_restarting_on_the_same_port_is_reconnected_to() {
    let server = TestServer::start(standard);
    let addr = server.addr();
    let client = connect_with(builder(&server.url())).await;
    let mut events = client.events();
    assert!(matches!(
        event(&mut events).await,
        ConnectionEvent::Connected { .. }
    ));

    // Two calls are pending when the server goes away.
    let pending: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            actix_rt::spawn(async move { client.call::<Value>("sleep", params![60_000]).await })
        })
        .collect();
    server.wait_received_async(2, BOUND).await;
    drop(server);
    for call in pending {
        let err = within("the pending call", call).await.unwrap().unwrap_err();
        assert!(err.is_disconnect(), "{err}");
        assert!(err.call().is_some_and(|c| c.method == "sleep"), "{err}");
    }
    let (disconnected, _) = until(&mut events, "Disconnected", |e| {
        matches!(e, ConnectionEvent::Disconnected { .. })
    })
    .await;
    assert!(matches!(
        disconnected,
        ConnectionEvent::Disconnected { code: None, .. }
    ));
    // It keeps trying (with growing delays) while nothing listens.
    let (first_try, _) = until(&mut events, "attempt 1", |e| {
        matches!(e, ConnectionEvent::Reconnecting { attempt: 1, .. })
    })
    .await;
    let (third_try, _) = until(&mut events, "attempt 3", |e| {
        matches!(e, ConnectionEvent::Reconnecting { attempt: 3, .. })
    })
    .await;
    assert!(client.is_reconnecting());
    for event in [first_try, third_try] {
        let ConnectionEvent::Reconnecting { delay, .. } = event else {
            unreachable!()
        };
        assert!(delay <= ms(200), "within the policy's maximum: {delay:?}");
    }

    let server = TestServer::start_at(addr, standard);
    let skipped = reconnected(&mut events).await;
    assert!(
        matches!(skipped.last(), Some(ConnectionEvent::Connected { url }) if url.contains(&addr.port().to_string())),
        "Connected comes right before Reconnected: {skipped:?}"
    );
    assert!(
        skipped.iter().all(|e| matches!(
            e,
            ConnectionEvent::Reconnecting { .. } | ConnectionEvent::Connected { .. }
        )),
        "{skipped:?}"
    );
    assert_eq!(
        within("a new call", echo(&client, 7)).await.unwrap(),
        json!([7])
    );
    assert_eq!(
        count(&server, "sleep"),
        0,
        "calls pending at the drop are never sent again"
    );
    let stats = client.stats();
    assert_eq!(stats.reconnects, 1);
    assert!(!client.is_reconnecting());
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_call_that_opted_in_is_sent_again_once_and_others_fail() {
    // The first `once` goes unanswered; later ones are answered.
    let seen = Arc::new(AtomicUsize::new(0));
    let handler_seen = Arc::clone(&seen);
    let server = TestServer::start(move |msg: &Value| match msg["method"].as_str() {
        Some("once") if handler_seen.fetch_add(1, Ordering::SeqCst) == 0 => Action::Nothing,
        Some("once") => Action::Reply(response(&msg["id"], json!("answered"))),
        _ => standard(msg),
    });
    let proxy = FaultProxy::start(server.addr());
    let client = connect_with(builder(&proxy.url())).await;
    let mut events = client.events();

    let retried = {
        let client = client.clone();
        actix_rt::spawn(async move {
            client
                .send(
                    Call::new("once", params![])
                        .retry_on_reconnect()
                        .typed::<String>(),
                )
                .await
        })
    };
    let plain = {
        let client = client.clone();
        actix_rt::spawn(async move { client.call::<Value>("sleep", params![60_000]).await })
    };
    server.wait_received_async(2, BOUND).await;
    proxy.drop_all();
    let err = within("the plain call", plain).await.unwrap().unwrap_err();
    assert!(err.is_disconnect(), "{err}");
    reconnected(&mut events).await;
    let answer = within("the retried call", retried).await.unwrap().unwrap();
    assert_eq!(answer, "answered");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "sent exactly twice: once per connection"
    );
    assert_eq!(
        count(&server, "sleep"),
        1,
        "the plain call was not sent again"
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_call_sent_again_fails_if_the_connection_is_lost_a_second_time() {
    let server = TestServer::start(|msg: &Value| match msg["method"].as_str() {
        Some("never") => Action::Nothing,
        _ => standard(msg),
    });
    let proxy = FaultProxy::start(server.addr());
    let client = connect_with(builder(&proxy.url())).await;
    let mut events = client.events();
    let retried = {
        let client = client.clone();
        actix_rt::spawn(async move {
            client
                .send(Call::new("never", params![]).retry_on_reconnect())
                .await
        })
    };
    server.wait_received_async(1, BOUND).await;
    proxy.drop_all();
    reconnected(&mut events).await;
    server.wait_received_async(2, BOUND).await;
    proxy.drop_all();
    let err = within("the retried call", retried)
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_disconnect(), "{err}");
    reconnected(&mut events).await;
    assert_eq!(count(&server, "never"), 2);
    assert_no_pending(&client);
}

/// `subscribe [topic]` answers a new id per call (`"s1"`, `"s2"`, …).
fn subscribing_server(refuse_after: Option<usize>) -> TestServer {
    let subscribes = Arc::new(AtomicUsize::new(0));
    TestServer::start(move |msg: &Value| match msg["method"].as_str() {
        Some("subscribe") => {
            let n = subscribes.fetch_add(1, Ordering::SeqCst) + 1;
            if refuse_after.is_some_and(|limit| n > limit) {
                Action::Reply(json!({"jsonrpc": "2.0", "id": msg["id"],
                    "error": {"code": -32001, "message": "no more subscriptions"}}))
            } else {
                Action::Reply(response(&msg["id"], json!(format!("s{n}"))))
            }
        }
        Some("unsubscribe") => Action::Reply(response(&msg["id"], json!(true))),
        _ => standard(msg),
    })
}

fn tick(subscription: &str, n: u64) -> Value {
    json!({"jsonrpc": "2.0", "method": "tick",
        "params": {"subscription": subscription, "result": n}})
}

async fn next_item(sub: &mut jsonrpc_websocket::Subscription<u64>) -> SubscriptionItem<u64> {
    within("the next item", sub.next())
        .await
        .expect("the subscription ended")
}

#[actix_rt::test]
async fn a_subscription_is_made_again_and_its_stream_shows_the_gap() {
    let server = subscribing_server(None);
    let proxy = FaultProxy::start(server.addr());
    let client = connect_with(builder(&proxy.url())).await;
    let mut events = client.events();
    let mut sub = within(
        "subscribe",
        client.subscribe::<u64>(
            "subscribe",
            params!["heads", json!({"full": true})],
            "unsubscribe",
        ),
    )
    .await
    .unwrap();
    server.push(tick("s1", 1));
    assert!(matches!(
        next_item(&mut sub).await,
        SubscriptionItem::Item(1)
    ));

    proxy.drop_all();
    reconnected(&mut events).await;
    match next_item(&mut sub).await {
        SubscriptionItem::Resubscribed { down_for } => {
            assert!(down_for > Duration::ZERO, "{down_for:?}")
        }
        other => panic!("expected the gap item first, got {other:?}"),
    }
    let subscribes: Vec<Value> = server
        .received()
        .into_iter()
        .filter(|m| m["method"] == "subscribe")
        .collect();
    assert_eq!(subscribes.len(), 2);
    assert_eq!(
        subscribes[0]["params"], subscribes[1]["params"],
        "the original params"
    );
    server.push(tick("s1", 99)); // the old id means nothing now
    server.push(tick("s2", 2));
    assert!(matches!(
        next_item(&mut sub).await,
        SubscriptionItem::Item(2)
    ));
    assert_eq!(
        sub.id(),
        &jsonrpc_websocket::Id::from("s1"),
        "the handle is the same"
    );
    assert_eq!(sub.current_id(), jsonrpc_websocket::Id::from("s2"));
    assert_eq!(client.stats().subscriptions, 1);

    // Unsubscribing uses the server's new id.
    assert_eq!(
        within("unsubscribe", sub.unsubscribe()).await.unwrap(),
        json!(true)
    );
    let unsubscribe = server
        .received()
        .into_iter()
        .rfind(|m| m["method"] == "unsubscribe")
        .unwrap();
    assert_eq!(unsubscribe["params"], json!(["s2"]));
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

/// Waits (bounded) until the connection has routed `n` notifications in all.
async fn routed(client: &Client, n: u64) {
    let deadline = Instant::now() + BOUND;
    while client.stats().server_notifications < n {
        assert!(Instant::now() < deadline, "{:?}", client.stats());
        tokio::time::sleep(ms(5)).await;
    }
}

/// Regression (found by the soak): the gap item went through the
/// subscription's bounded queue like any item, so the overflow policy could
/// drop it: the subscriber saw `Lagged`, 2, 3 and was never told of the
/// reconnect. It is now a marker no policy drops.
#[actix_rt::test]
async fn the_gap_item_is_not_lost_to_a_full_queue() {
    let server = subscribing_server(None);
    let proxy = FaultProxy::start(server.addr());
    let client = connect_with(builder(&proxy.url())).await;
    let mut events = client.events();
    let mut sub = within(
        "subscribe",
        client.subscribe_with(
            jsonrpc_websocket::Subscribe::new("subscribe", params!["heads"], "unsubscribe")
                .capacity(2),
        ),
    )
    .await
    .unwrap()
    .typed::<u64>();
    server.push(tick("s1", 1));
    routed(&client, 1).await; // queued, not read

    proxy.drop_all();
    reconnected(&mut events).await;
    server.wait_received_async(2, BOUND).await; // the second subscribe call
    server.push(tick("s2", 2));
    server.push(tick("s2", 3));
    routed(&client, 3).await;

    let mut seen = Vec::new();
    loop {
        let item = next_item(&mut sub).await;
        let last = matches!(item, SubscriptionItem::Item(3));
        seen.push(format!("{item:?}"));
        if last {
            break;
        }
    }
    assert!(
        seen.iter().any(|item| item.starts_with("Resubscribed")),
        "the subscriber was never told of the reconnect: {seen:?}"
    );
}

/// Regression (found while documenting the soak): with `Backpressure::Fail`,
/// a call waiting at the reconnect made the resubscribe (started before the
/// waiting line is sent) fail with `Overloaded`, ending the subscription.
/// The connection's own calls now go ahead of the line.
#[actix_rt::test]
async fn a_subscription_is_made_again_when_calls_wait_under_backpressure_fail() {
    let server = subscribing_server(None);
    let proxy = FaultProxy::start(server.addr());
    let client =
        connect_with(builder(&proxy.url()).backpressure(jsonrpc_websocket::Backpressure::Fail))
            .await;
    let mut events = client.events();
    let mut sub = within(
        "subscribe",
        client.subscribe::<u64>("subscribe", params!["heads"], "unsubscribe"),
    )
    .await
    .unwrap();
    down(&proxy, &mut events).await;
    let waiting = {
        let client = client.clone();
        actix_rt::spawn(async move { echo(&client, 1).await })
    };
    let deadline = Instant::now() + BOUND;
    while client.stats().queued_calls < 1 {
        assert!(Instant::now() < deadline, "{:?}", client.stats());
        tokio::time::sleep(ms(5)).await;
    }
    proxy.refuse(false);
    reconnected(&mut events).await;
    assert_eq!(
        within("the waiting call", waiting).await.unwrap().unwrap(),
        json!([1])
    );
    match within("the gap item", sub.next()).await {
        Some(SubscriptionItem::Resubscribed { .. }) => {}
        other => panic!(
            "expected the gap item, got {other:?}; the subscription ended: {:?}",
            sub.close_reason()
        ),
    }
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_resubscribe_the_server_refuses_ends_the_subscription_with_its_error() {
    let server = subscribing_server(Some(1));
    let proxy = FaultProxy::start(server.addr());
    let client = connect_with(builder(&proxy.url())).await;
    let mut events = client.events();
    let mut sub = within(
        "subscribe",
        client.subscribe::<u64>("subscribe", params!["heads"], "unsubscribe"),
    )
    .await
    .unwrap();
    proxy.drop_all();
    reconnected(&mut events).await;
    assert!(within("the end", sub.next()).await.is_none());
    match sub.close_reason() {
        Some(SubscriptionEnd::ResubscribeFailed { error }) => {
            assert!(
                error.contains("-32001") && error.contains("no more subscriptions"),
                "{error}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.stats().subscriptions, 0);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn a_black_holed_peer_is_detected_by_the_heartbeat_and_left() {
    let server = TestServer::start(standard);
    let proxy = FaultProxy::start(server.addr());
    let (interval, timeout) = (ms(200), ms(300));
    let client = connect_with(
        builder(&proxy.url())
            .heartbeat(interval)
            .heartbeat_timeout(timeout),
    )
    .await;
    let mut events = client.events();
    assert!(matches!(
        event(&mut events).await,
        ConnectionEvent::Connected { .. }
    ));
    // While the server answers our pings, nothing fails.
    tokio::time::sleep(interval * 4).await;
    assert_eq!(client.stats().heartbeat_failures, 0);
    assert!(!client.is_reconnecting());

    let pending = {
        let client = client.clone();
        actix_rt::spawn(async move { client.call::<Value>("sleep", params![60_000]).await })
    };
    server.wait_received_async(1, BOUND).await;
    let silenced = Instant::now();
    proxy.black_hole();
    // The bound is the heartbeat's promise plus room for a loaded machine;
    // the actual time is printed.
    let limit = interval + timeout + Duration::from_secs(2);
    let disconnected = tokio::time::timeout(
        limit,
        until(&mut events, "Disconnected", |e| {
            matches!(e, ConnectionEvent::Disconnected { .. })
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("a silent peer went unnoticed for {limit:?}"))
    .0;
    eprintln!("silent peer noticed after {:?}", silenced.elapsed());
    let ConnectionEvent::Disconnected { reason, cause, .. } = disconnected else {
        unreachable!()
    };
    assert!(reason.contains("heartbeat timeout after"), "{reason}");
    assert!(cause.is_some_and(|c| c.to_string().contains("heartbeat timeout")));
    let err = within("the pending call", pending)
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_disconnect(), "{err}");
    assert!(
        test_support::chain(&err)
            .iter()
            .any(|t| t.contains("heartbeat timeout")),
        "{:?}",
        test_support::chain(&err)
    );
    assert_eq!(client.stats().heartbeat_failures, 1);
    // New connections through the proxy are forwarded: it comes back.
    reconnected(&mut events).await;
    assert_eq!(
        within("a call", echo(&client, 1)).await.unwrap(),
        json!([1])
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn without_a_reconnect_policy_a_silent_peer_ends_the_connection() {
    let server = TestServer::start(standard);
    let proxy = FaultProxy::start(server.addr());
    let client = connect_with(
        RpcConnection::builder(proxy.url())
            .heartbeat(ms(100))
            .heartbeat_timeout(ms(200)),
    )
    .await;
    proxy.black_hole();
    let end = within("the end", client.closed()).await;
    assert!(end.reason.contains("heartbeat timeout"), "{end}");
    let mut events = client.events();
    assert!(matches!(
        event(&mut events).await,
        ConnectionEvent::Closed { .. }
    ));
    assert!(within("the end of the events", events.next())
        .await
        .is_none());
}

#[actix_rt::test]
async fn close_code_1008_is_never_reconnected() {
    let server = TestServer::start(standard);
    let client = connect_with(builder(&server.url())).await;
    let mut events = client.events();
    let _ = client
        .call::<Value>("close", json!({"code": 1008, "reason": "banned"}))
        .await;
    let (_, skipped) = until(&mut events, "Closed", |e| {
        matches!(e, ConnectionEvent::Closed { .. })
    })
    .await;
    assert!(
        skipped.iter().any(|e| matches!(
            e,
            ConnectionEvent::Disconnected {
                code: Some(1008),
                ..
            }
        )),
        "{skipped:?}"
    );
    assert!(
        !skipped
            .iter()
            .any(|e| matches!(e, ConnectionEvent::Reconnecting { .. })),
        "{skipped:?}"
    );
    let end = within("the end", client.closed()).await;
    assert_eq!(end.code, Some(1008));
    let mut late = client.events();
    match event(&mut late).await {
        ConnectionEvent::Closed { reason } => {
            assert!(
                reason.contains("1008") && reason.contains("not reconnecting"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.stats().reconnects, 0);
    assert_eq!(server.handshakes().len(), 1);
}

#[actix_rt::test]
async fn a_handshake_refused_with_401_is_never_retried() {
    let server = TestServer::start(standard);
    let addr = server.addr();
    let client = connect_with(builder(&server.url())).await;
    let mut events = client.events();
    drop(server);
    let refusing = TestServer::builder()
        .reject_with(401)
        .start_at(addr, standard);
    let (closed, skipped) = until(&mut events, "Closed", |e| {
        matches!(e, ConnectionEvent::Closed { .. })
    })
    .await;
    let ConnectionEvent::Closed { reason } = closed else {
        unreachable!()
    };
    assert!(reason.contains("401"), "{reason}");
    let attempts = refusing.handshake_attempts().len();
    assert_eq!(
        attempts, 1,
        "one refused handshake, then no more: {skipped:?}"
    );
    let err = echo(&client, 1).await.unwrap_err();
    assert!(matches!(err, Error::NotConnected { .. }), "{err}");
}

#[actix_rt::test]
async fn try_again_later_1013_waits_at_least_the_busy_delay() {
    let server = TestServer::start(standard);
    let busy = ms(300);
    let client =
        connect_with(RpcConnection::builder(server.url()).reconnect(quick().busy_delay(busy)))
            .await;
    let mut events = client.events();
    let _ = client
        .call::<Value>("close", json!({"code": 1013, "reason": "overloaded"}))
        .await;
    let (reconnecting, _) = until(&mut events, "Reconnecting", |e| {
        matches!(e, ConnectionEvent::Reconnecting { .. })
    })
    .await;
    let ConnectionEvent::Reconnecting { attempt, delay } = reconnecting else {
        unreachable!()
    };
    assert_eq!(attempt, 1);
    assert!(delay >= busy, "{delay:?} is shorter than the busy delay");
    reconnected(&mut events).await;
    assert_eq!(
        within("a call", echo(&client, 3)).await.unwrap(),
        json!([3])
    );
}

#[actix_rt::test]
async fn a_lost_endpoint_fails_over_to_the_next() {
    let first = TestServer::start(standard);
    let second = TestServer::start(standard);
    let client = connect_with(builder(&first.url()).endpoint(second.url())).await;
    let mut events = client.events();
    drop(first);
    let (_, skipped) = until(&mut events, "Reconnected", |e| {
        matches!(e, ConnectionEvent::Reconnected)
    })
    .await;
    match skipped.last() {
        Some(ConnectionEvent::Connected { url }) => assert_eq!(url, &second.url()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        within("a call", echo(&client, 5)).await.unwrap(),
        json!([5])
    );
    assert_eq!(count(&second, "echo"), 1);
}

#[actix_rt::test]
async fn the_first_connect_tries_each_endpoint_in_turn() {
    let down = TestServer::start(standard);
    let down_url = down.url();
    drop(down);
    let up = TestServer::start(standard);
    let client = connect_with(RpcConnection::builder(down_url).endpoint(up.url())).await;
    assert_eq!(
        within("a call", echo(&client, 9)).await.unwrap(),
        json!([9])
    );
}

/// A connection that is down until `proxy.refuse(false)`.
async fn down(proxy: &FaultProxy, events: &mut EventStream) {
    proxy.refuse(true);
    proxy.drop_all();
    until(events, "Reconnecting", |e| {
        matches!(e, ConnectionEvent::Reconnecting { .. })
    })
    .await;
}

#[actix_rt::test]
async fn while_reconnecting_calls_wait_in_a_bounded_queue_then_go() {
    let server = TestServer::start(standard);
    let proxy = FaultProxy::start(server.addr());
    let client = connect_with(builder(&proxy.url()).max_in_flight(4)).await;
    let mut events = client.events();
    down(&proxy, &mut events).await;

    let waiting: Vec<_> = (0..4u64)
        .map(|n| {
            let client = client.clone();
            actix_rt::spawn(async move { echo(&client, n).await })
        })
        .collect();
    let short = client.send(Call::new("echo", params![]).timeout(ms(50)));
    let deadline = Instant::now() + BOUND;
    while client.stats().queued_calls < 4 {
        assert!(Instant::now() < deadline, "{:?}", client.stats());
        tokio::time::sleep(ms(5)).await;
    }
    let err = echo(&client, 99).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Overloaded {
                bound: Bound::InFlight(4),
                ..
            }
        ),
        "beyond the queue's bound: {err}"
    );
    let err = within("a call that waits too long", short)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Overloaded { .. } | Error::Timeout { .. }),
        "{err}"
    );
    // A notification waits in the outbound queue for the new socket.
    within("notify", client.notify("note", params!["while down"]))
        .await
        .unwrap();

    proxy.refuse(false);
    reconnected(&mut events).await;
    for (n, call) in waiting.into_iter().enumerate() {
        let answer = within("a waiting call", call).await.unwrap().unwrap();
        assert_eq!(answer, json!([n]));
    }
    server.wait_received_async(5, BOUND).await;
    assert_eq!(count(&server, "note"), 1);
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn while_reconnecting_fail_fast_refuses_at_once() {
    let server = TestServer::start(standard);
    let proxy = FaultProxy::start(server.addr());
    let client =
        connect_with(builder(&proxy.url()).while_reconnecting(WhileReconnecting::FailFast)).await;
    let mut events = client.events();
    down(&proxy, &mut events).await;
    let err = echo(&client, 1).await.unwrap_err();
    assert!(matches!(err, Error::NotConnected { .. }), "{err}");
    let err = client.notify("note", params![]).await.unwrap_err();
    assert!(matches!(err, Error::NotConnected { .. }), "{err}");
    assert_eq!(client.stats().queued_calls, 0);
    proxy.refuse(false);
    reconnected(&mut events).await;
    assert_eq!(
        within("a call", echo(&client, 2)).await.unwrap(),
        json!([2])
    );
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn closing_while_reconnecting_stops_for_good() {
    let server = TestServer::start(standard);
    let proxy = FaultProxy::start(server.addr());
    let client = connect_with(builder(&proxy.url())).await;
    let mut events = client.events();
    down(&proxy, &mut events).await;
    let waiting = {
        let client = client.clone();
        actix_rt::spawn(async move { echo(&client, 1).await })
    };
    while client.stats().queued_calls < 1 {
        tokio::time::sleep(ms(5)).await;
    }
    within("close", client.close()).await.unwrap();
    let err = within("the waiting call", waiting)
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_disconnect(), "{err}");
    let (closed, _) = until(&mut events, "Closed", |e| {
        matches!(e, ConnectionEvent::Closed { .. })
    })
    .await;
    assert!(
        matches!(closed, ConnectionEvent::Closed { ref reason } if reason.contains("closed by the client"))
    );
    let refused = proxy.refused();
    tokio::time::sleep(ms(300)).await; // several retry periods
    assert_eq!(proxy.refused(), refused, "no attempts after close");
    assert_no_pending(&client);
}

#[actix_rt::test]
async fn attempts_run_out_and_the_connection_ends() {
    let server = TestServer::start(standard);
    let proxy = FaultProxy::start(server.addr());
    let client =
        connect_with(RpcConnection::builder(proxy.url()).reconnect(quick().max_attempts(3))).await;
    let mut events = client.events();
    proxy.refuse(true);
    proxy.drop_all();
    let (closed, skipped) = until(&mut events, "Closed", |e| {
        matches!(e, ConnectionEvent::Closed { .. })
    })
    .await;
    let attempts: Vec<u32> = skipped
        .iter()
        .filter_map(|e| match e {
            ConnectionEvent::Reconnecting { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(
        matches!(closed, ConnectionEvent::Closed { ref reason } if reason.contains("gave up after 3 attempts")),
        "{closed:?}"
    );
    assert_eq!(proxy.refused(), 3);
    within("the end", client.closed()).await;
}

/// Regression: the event for our own clean close said "closing handshake
/// incomplete" (it was told before the handshake ran).
#[actix_rt::test]
async fn closing_cleanly_is_told_as_such() {
    let server = TestServer::start(standard);
    let client = connect_with(builder(&server.url())).await;
    let mut events = client.events();
    within("close", client.close()).await.unwrap();
    let (disconnected, _) = until(&mut events, "Disconnected", |e| {
        matches!(e, ConnectionEvent::Disconnected { .. })
    })
    .await;
    let ConnectionEvent::Disconnected {
        code,
        reason,
        cause,
    } = disconnected
    else {
        unreachable!()
    };
    assert_eq!(
        (code, reason.as_str()),
        (Some(1000), "closed by the client (code 1000)")
    );
    assert!(cause.is_none());
    let (closed, _) = until(&mut events, "Closed", |e| {
        matches!(e, ConnectionEvent::Closed { .. })
    })
    .await;
    assert!(
        matches!(closed, ConnectionEvent::Closed { ref reason } if reason == "closed by the client (code 1000)"),
        "{closed:?}"
    );
    assert!(within("the end", events.next()).await.is_none());
}

/// Calls whose frames were still in our own outbound queue when the socket
/// died never reached the server: they are sent on the new socket, not
/// failed. Those the writer had taken may have reached it, and fail. Here
/// the server stops reading (black hole) until our writer is stuck and
/// frames pile up behind it, then the connection is cut.
#[actix_rt::test]
async fn calls_never_written_are_sent_on_the_new_socket() {
    let server = TestServer::start(standard);
    let proxy = FaultProxy::start(server.addr());
    let client = connect_with(builder(&proxy.url()).max_queued_bytes(64 << 20)).await;
    let mut events = client.events();
    proxy.black_hole();
    let big = "x".repeat(256 * 1024);
    let call = |n: u64| {
        let client = client.clone();
        let params = params![n, big.clone()];
        actix_rt::spawn(async move { client.call::<Value>("echo", params).await })
    };
    // First calls: the writer takes them and gets stuck on the full socket.
    let mut calls: Vec<_> = (0..32u64).map(call).collect();
    let deadline = Instant::now() + BOUND;
    let mut last = 0;
    loop {
        tokio::time::sleep(ms(50)).await;
        let queued = client.stats().queued_bytes;
        if queued > 0 && queued == last {
            break; // nothing moves: stuck
        }
        assert!(Instant::now() < deadline, "{:?}", client.stats());
        last = queued;
    }
    // More calls: their frames wait behind the stuck writer, never taken.
    calls.extend((32..64u64).map(call));
    while client.stats().pending < 64 {
        assert!(Instant::now() < deadline, "{:?}", client.stats());
        tokio::time::sleep(ms(5)).await;
    }
    proxy.drop_all();
    reconnected(&mut events).await;
    let (mut answered, mut failed) = (0, 0);
    for call in calls {
        match within("a call", call).await.unwrap() {
            Ok(_) => answered += 1,
            Err(err) => {
                assert!(err.is_disconnect(), "{err}");
                failed += 1;
            }
        }
    }
    eprintln!("{answered} answered on the new socket, {failed} failed");
    assert!(
        answered > 0,
        "none was sent on the new socket ({failed} failed)"
    );
    assert_eq!(answered + failed, 64);
    assert_eq!(
        count(&server, "echo"),
        answered,
        "each answered call reached the server once"
    );
    assert_no_pending(&client);
}
