//! `proxy_fanout`: N downstream websocket clients subscribe to the same
//! feed through the proxy (or straight at the feed server, `direct`), then
//! the feed starts and every client takes its m items.
//!
//! One client thread holds all N connections (tokio-tungstenite, as in the
//! call scenarios), opened with at most 64 handshakes in flight. A run:
//!
//! 1. one warm-up subscriber subscribes and goes; once the feed server has
//!    no subscription left, its count is reset;
//! 2. a probe of the proxy's thread (CPU, live heap);
//! 3. N clients connect and subscribe (each waits for its answer: the proxy
//!    answers once its upstream subscription is live);
//! 4. a second probe: (heap after − heap before) / N is the memory per
//!    downstream; the feed server's count is how many upstream
//!    subscriptions the proxy made;
//! 5. the feed starts; each client takes its m items, checking that they
//!    are notifications (no `lagged`, `gap` or `error`) with results 1..=m
//!    in order; timed from the start to the last item of the last client
//!    (or the time limit, looked at every 64 items);
//! 6. a third probe: proxy CPU per notification delivered; then everything
//!    is closed (not timed, bounded).

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context as _, Result};
use futures_util::future::join_all;
use futures_util::{stream, SinkExt as _, StreamExt as _, TryStreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use super::client::{cpu_per_op_us, next_text, ws_close, ws_connect, Ws};
use super::feed::{FeedState, SUBSCRIBE};
use super::front::Prober;
use crate::scenarios::Sample;

/// Handshakes (and subscribe calls) in flight while subscribing.
const OPENING_IN_FLIGHT: usize = 64;

#[derive(Clone, Debug)]
pub struct FanoutPlan {
    /// Downstream clients.
    pub subscribers: u64,
    /// Items the feed sends to each.
    pub items: u64,
    pub limit: Duration,
}

/// `[notes/s delivered in total, KiB per downstream, upstream
/// subscriptions, proxy CPU per notification (µs), ms to subscribe all]`.
pub async fn run(
    url: &str,
    plan: &FanoutPlan,
    feed: &FeedState,
    prober: &Prober,
) -> Result<Sample> {
    let (n, m) = (plan.subscribers, plan.items);
    let bound = plan.limit * 3 + Duration::from_secs(30);

    let warm = subscribe(url, m).await?;
    ws_close(warm).await;
    let settled = Instant::now() + Duration::from_secs(10);
    while feed.open() > 0 {
        ensure!(
            Instant::now() < settled,
            "the warm-up subscription was not ended upstream in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    feed.reset();

    let before = prober.probe().await?;
    let opening = Instant::now();
    let mut clients: Vec<Ws> = tokio::time::timeout(
        bound,
        stream::iter(0..n)
            .map(|_| subscribe(url, m))
            .buffer_unordered(OPENING_IN_FLIGHT)
            .try_collect(),
    )
    .await
    .map_err(|_| anyhow!("{n} clients did not subscribe within {bound:?}"))??;
    let open_ms = opening.elapsed().as_secs_f64() * 1e3;
    let subscribed = prober.probe().await?;
    let upstream_subscriptions = feed.made();

    let start = Instant::now();
    let deadline = start + plan.limit;
    feed.start();
    let got = tokio::time::timeout(
        bound,
        join_all(clients.iter_mut().map(|ws| take(ws, m, deadline))),
    )
    .await
    .map_err(|_| anyhow!("the feed stopped coming (no end within {bound:?})"))?;
    let elapsed = start.elapsed();
    let delivered_probe = prober.probe().await?;
    let delivered = got.into_iter().sum::<Result<u64>>()?;

    tokio::time::timeout(
        Duration::from_secs(10),
        join_all(clients.into_iter().map(ws_close)),
    )
    .await
    .map_err(|_| anyhow!("closing the clients took over 10 s"))?;

    let heap_kib = match (before, subscribed) {
        (Some(b), Some(s)) => (s.heap.live() - b.heap.live()) as f64 / 1024.0 / n as f64,
        _ => f64::NAN,
    };
    Ok(Sample {
        values: vec![
            delivered as f64 / elapsed.as_secs_f64(),
            heap_kib,
            upstream_subscriptions as f64,
            cpu_per_op_us(subscribed, delivered_probe, delivered),
            open_ms,
        ],
        ops: delivered,
        by_time: delivered < n * m,
    })
}

/// A client subscribed to the feed (its answer read).
async fn subscribe(url: &str, items: u64) -> Result<Ws> {
    let mut ws = ws_connect(url).await?;
    let request =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{SUBSCRIBE}","params":[{items}]}}"#);
    ws.send(Message::text(request)).await?;
    let answer = next_text(&mut ws).await?;
    ensure!(
        answer.contains("\"result\""),
        "subscribe answered {}",
        answer.as_str()
    );
    Ok(ws)
}

/// Takes items until `m` have come or `deadline` has passed (looked at
/// every 64 items); returns how many came.
async fn take(ws: &mut Ws, m: u64, deadline: Instant) -> Result<u64> {
    let mut got = 0;
    while got < m {
        let text = next_text(ws).await?;
        let k = item(&text).with_context(|| format!("not a feed item: {}", text.as_str()))?;
        ensure!(k == got + 1, "item {k} where {} was due", got + 1);
        got += 1;
        if got % 64 == 0 && Instant::now() >= deadline {
            break;
        }
    }
    Ok(got)
}

/// The result of `{…"params":{"subscription":…,"result":k}}`, read from the
/// end: both proxies and the feed server write `result` last.
fn item(text: &str) -> Option<u64> {
    let body = text.strip_suffix("}}")?;
    let at = body.rfind(r#""result":"#)?;
    body[at + r#""result":"#.len()..].parse().ok()
}
