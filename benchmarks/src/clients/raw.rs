//! The practical floor: tokio-tungstenite sending pre-serialised requests and
//! matching responses by counting (ids are ignored), with no JSON parsing of
//! results. Writes are batched: a burst of ready responses is answered with a
//! burst of requests and one flush.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::alloc::Snapshot;
use crate::clients::raw_awc::{batch_request, subscribe_ticks_request, unsubscribe_ticks_request};
use crate::scenarios::{
    memory_sample, server_request_sample, ticks_within, wait_for_held, Env, Measure, Plan, Sample,
    Scenario, BATCH,
};
use crate::server::BLOB_LEN;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const ECHO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"echo","params":["bench",42]}"#;
const BLOB: &str = r#"{"jsonrpc":"2.0","id":1,"method":"blob"}"#;
const COUNT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"count"}"#;
const HOLD: &str = r#"{"jsonrpc":"2.0","id":1,"method":"hold"}"#;
const NOTE: &str = r#"{"jsonrpc":"2.0","method":"note","params":[1]}"#;

const READ_BUFFER: usize = 16 * 1024;

fn msg(text: &'static str) -> Message {
    Message::Text(Utf8Bytes::from_static(text))
}

async fn connect(url: &str) -> Result<Ws> {
    // tungstenite zero-fills its read buffer before every socket read; at the
    // 128 KiB default that memset costs several µs per read, which is not a
    // floor. 16 KiB keeps reads cheap and 1 MiB messages at 64 reads.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    // `true`: TCP_NODELAY, like the other clients.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    Ok(ws)
}

/// The next text message (pings are answered by tungstenite itself).
async fn next_text(ws: &mut Ws) -> Result<Utf8Bytes> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t),
            Some(Ok(Message::Close(_))) | None => bail!("connection closed"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// A text message if one is ready without waiting.
fn ready_text(ws: &mut Ws) -> Result<Option<Utf8Bytes>> {
    loop {
        match ws.next().now_or_never() {
            None => return Ok(None),
            Some(Some(Ok(Message::Text(t)))) => return Ok(Some(t)),
            Some(Some(Ok(Message::Close(_)))) | Some(None) => bail!("connection closed"),
            Some(Some(Ok(_))) => {}
            Some(Some(Err(e))) => return Err(e.into()),
        }
    }
}

async fn rpc(ws: &mut Ws, request: &Message) -> Result<Utf8Bytes> {
    ws.send(request.clone()).await?;
    next_text(ws).await
}

async fn count(ws: &mut Ws) -> Result<u64> {
    let text = rpc(ws, &msg(COUNT)).await?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["result"]
        .as_u64()
        .ok_or_else(|| anyhow!("count response {text}"))
}

pub async fn run(scenario: Scenario, plan: &Plan, env: &Env) -> Result<Sample> {
    match scenario {
        Scenario::Connect => return connect_loop(&env.rpc_url, plan).await,
        Scenario::ServerRequest => return server_request(env, plan).await,
        Scenario::Idle => bail!("raw-tungstenite does not take part in idle"),
        _ => {}
    }
    let url = env.url(scenario);
    let mut ws = connect(url).await?;
    let sample = match scenario.work() {
        Scenario::Seq => seq(&mut ws, plan).await?,
        Scenario::Inflight16 => inflight(&mut ws, 16, plan).await?,
        Scenario::Inflight256 => inflight(&mut ws, 256, plan).await?,
        Scenario::Blob1m => big(&mut ws, plan, msg(BLOB), BLOB_LEN + 30).await?,
        Scenario::Upload1m => {
            let text = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"upload","params":["{}"]}}"#,
                crate::server::blob_string()
            );
            big(&mut ws, plan, Message::text(text), 0).await?
        }
        Scenario::Notify => notify(&mut ws, plan).await?,
        Scenario::Memory => memory(&mut ws, plan, env).await?,
        Scenario::SubTicks => sub_ticks(&mut ws, plan).await?,
        Scenario::Batch100 => batch100(&mut ws, plan).await?,
        Scenario::Connect
        | Scenario::ServerRequest
        | Scenario::Idle
        | Scenario::SubTicksLean
        | Scenario::Batch100Lean => unreachable!(),
    };
    close(ws).await?;
    Ok(sample)
}

/// Close and wait for the server's close frame.
async fn close(mut ws: Ws) -> Result<()> {
    ws.close(None).await?;
    while let Some(m) = ws.next().await {
        if m.is_err() {
            break;
        }
    }
    Ok(())
}

async fn seq(ws: &mut Ws, plan: &Plan) -> Result<Sample> {
    let echo = msg(ECHO);
    for _ in 0..plan.warmup {
        rpc(ws, &echo).await?;
    }
    let mut lat = Vec::with_capacity(plan.count as usize);
    let measure = Measure::start();
    let deadline = measure.start + plan.limit;
    while (lat.len() as u64) < plan.count {
        let t = Instant::now();
        rpc(ws, &echo).await?;
        let now = Instant::now();
        lat.push(now - t);
        if now >= deadline {
            break;
        }
    }
    Ok(measure.latency(lat, plan.count))
}

/// Keep `width` requests outstanding until `count` were sent or `deadline`
/// passed; returns how many were answered.
async fn window(
    ws: &mut Ws,
    request: &Message,
    width: u64,
    count: u64,
    deadline: Instant,
) -> Result<u64> {
    let (mut sent, mut answered) = (0u64, 0u64);
    while sent < count.min(width) {
        ws.feed(request.clone()).await?;
        sent += 1;
    }
    ws.flush().await?;
    while answered < sent {
        // Take every response that is ready, then write as many requests in
        // one flush. (Reading first matters: each tungstenite read writes
        // out whatever was fed before it.)
        next_text(ws).await?;
        let mut burst = 1;
        while ready_text(ws)?.is_some() {
            burst += 1;
        }
        answered += burst;
        let more = burst.min(count - sent);
        if more > 0 && Instant::now() < deadline {
            for _ in 0..more {
                ws.feed(request.clone()).await?;
            }
            sent += more;
            ws.flush().await?;
        }
    }
    Ok(answered)
}

async fn inflight(ws: &mut Ws, width: u64, plan: &Plan) -> Result<Sample> {
    let echo = msg(ECHO);
    let far = Instant::now() + plan.limit * 3;
    window(ws, &echo, width, plan.warmup, far).await?;
    let measure = Measure::start();
    let start = measure.start;
    let done = window(ws, &echo, width, plan.count, start + plan.limit).await?;
    Ok(measure.rate(done, plan.count, 1.0))
}

/// Sequential 1 MiB calls; `min_len` checks the response size (the floor
/// does not parse results).
async fn big(ws: &mut Ws, plan: &Plan, request: Message, min_len: usize) -> Result<Sample> {
    for _ in 0..plan.warmup {
        let r = rpc(ws, &request).await?;
        ensure!(
            r.len() >= min_len && r.contains("\"result\""),
            "bad response"
        );
    }
    let measure = Measure::start();
    let start = measure.start;
    let deadline = start + plan.limit;
    let mut done = 0;
    while done < plan.count {
        let r = rpc(ws, &request).await?;
        ensure!(r.len() >= min_len, "short response");
        done += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(measure.rate(done, plan.count, BLOB_LEN as f64 / 1e6))
}

async fn barrier(ws: &mut Ws, target: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = count(ws).await?;
        if n >= target {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("server saw {n} of {target} notifications after 30 s");
        }
    }
}

async fn notify(ws: &mut Ws, plan: &Plan) -> Result<Sample> {
    let note = msg(NOTE);
    let base = count(ws).await?;
    for _ in 0..plan.warmup {
        ws.feed(note.clone()).await?;
    }
    ws.flush().await?;
    barrier(ws, base + plan.warmup).await?;
    let base = base + plan.warmup;
    let measure = Measure::start();
    let start = measure.start;
    let deadline = start + plan.limit;
    let mut sent = 0;
    while sent < plan.count {
        // Written out whenever tungstenite's write buffer fills.
        ws.feed(note.clone()).await?;
        sent += 1;
        if sent % 64 == 0 && Instant::now() >= deadline {
            break;
        }
    }
    ws.flush().await?;
    barrier(ws, base + sent).await?;
    Ok(measure.rate(sent, plan.count, 1.0))
}

async fn connect_loop(url: &str, plan: &Plan) -> Result<Sample> {
    async fn once(url: &str) -> Result<()> {
        let mut ws = connect(url).await?;
        rpc(&mut ws, &msg(ECHO)).await?;
        close(ws).await
    }
    for _ in 0..plan.warmup {
        once(url).await?;
    }
    let measure = Measure::start();
    let start = measure.start;
    let deadline = start + plan.limit;
    let mut done = 0;
    while done < plan.count {
        once(url).await?;
        done += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(measure.rate(done, plan.count, 1.0))
}

async fn memory(ws: &mut Ws, plan: &Plan, env: &Env) -> Result<Sample> {
    let echo = msg(ECHO);
    for _ in 0..plan.warmup {
        rpc(ws, &echo).await?;
    }
    let n = plan.count;
    let hold = msg(HOLD);
    env.rpc.reset_hold();
    let before = Snapshot::now();
    for _ in 0..n {
        ws.feed(hold.clone()).await?;
    }
    ws.flush().await?;
    wait_for_held(&env.rpc, n, plan.limit).await?;
    let after = Snapshot::now();
    env.rpc.release_hold();
    tokio::time::timeout(plan.limit + Duration::from_secs(30), async {
        for _ in 0..n {
            next_text(ws).await?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("held calls did not complete after the release")??;
    Ok(memory_sample(before, after, n))
}

/// Counts notification messages (`"subscription"` found in the text) until
/// `n` have come or `deadline` passed (looked at every 64); the last of all
/// `n` must end with `"result":n}}`.
async fn count_ticks(ws: &mut Ws, n: u64, deadline: Instant) -> Result<u64> {
    let mut got = 0;
    while got < n {
        let text = next_text(ws).await?;
        ensure!(
            text.contains("\"subscription\""),
            "not a notification: {text}"
        );
        got += 1;
        if got == n {
            let last = format!("\"result\":{n}}}}}");
            ensure!(text.ends_with(&last), "the last tick is not {n}: {text}");
        } else if got % 64 == 0 && Instant::now() >= deadline {
            break;
        }
    }
    Ok(got)
}

/// Subscribes (pre-serialised request, id 1), counts `n` ticks; returns how
/// many came and the subscription id.
async fn ticks(ws: &mut Ws, request: &Message, n: u64, limit: Duration) -> Result<(u64, u64)> {
    let deadline = Instant::now() + limit;
    let answer = rpc(ws, request).await?;
    let v: serde_json::Value = serde_json::from_str(&answer)?;
    let sub = v["result"]
        .as_u64()
        .ok_or_else(|| anyhow!("subscribe answer {answer}"))?;
    let got = ticks_within(limit, count_ticks(ws, n, deadline)).await?;
    Ok((got, sub))
}

/// Unsubscribes (id 2) and waits for the answer, skipping ticks still under way.
async fn unsubscribe_ticks(ws: &mut Ws, sub: u64) -> Result<()> {
    ws.send(Message::text(unsubscribe_ticks_request(sub)))
        .await?;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let text = next_text(ws).await?;
            if !text.contains("\"subscription\"") {
                ensure!(text.contains("\"result\":true"), "unsubscribe: {text}");
                return Ok(());
            }
        }
    })
    .await
    .context("no answer to unsubscribe")?
}

async fn sub_ticks(ws: &mut Ws, plan: &Plan) -> Result<Sample> {
    let warm = Message::text(subscribe_ticks_request(plan.warmup));
    let (got, sub) = ticks(ws, &warm, plan.warmup, plan.limit * 3).await?;
    ensure!(
        got == plan.warmup,
        "warm-up: {got} of {} ticks",
        plan.warmup
    );
    unsubscribe_ticks(ws, sub).await?;
    let request = Message::text(subscribe_ticks_request(plan.count));
    let measure = Measure::start();
    let (got, sub) = ticks(ws, &request, plan.count, plan.limit).await?;
    let sample = measure.rate(got, plan.count, 1.0);
    unsubscribe_ticks(ws, sub).await?;
    Ok(sample)
}

/// Sequential pre-serialised batches; each answer must be an array with
/// [`BATCH`] `"result":` members (not parsed).
async fn batch100(ws: &mut Ws, plan: &Plan) -> Result<Sample> {
    async fn once(ws: &mut Ws, request: &Message) -> Result<()> {
        let text = rpc(ws, request).await?;
        ensure!(
            text.starts_with('[') && text.matches("\"result\":").count() == BATCH as usize,
            "bad batch answer"
        );
        Ok(())
    }
    let request = Message::text(batch_request());
    for _ in 0..plan.warmup.div_ceil(BATCH) {
        once(ws, &request).await?;
    }
    let measure = Measure::start();
    let deadline = measure.start + plan.limit;
    let mut done = 0;
    while done < plan.count {
        once(ws, &request).await?;
        done += BATCH;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(measure.rate(done, plan.count, 1.0))
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

/// `server_request`: answer each `bench.ping` with its params, parsing only
/// the id and params (borrowed, unparsed).
async fn server_request(env: &Env, plan: &Plan) -> Result<Sample> {
    let result = env.sreq.start(plan.warmup, plan.count, plan.limit);
    let measure = Measure::start();
    let mut ws = connect(&env.sreq_url).await?;
    let answer = async {
        let mut answers = Vec::new();
        loop {
            let first = match ws.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => return Ok::<_, anyhow::Error>(()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            };
            // Answer every request that is ready, then write the answers in
            // one flush (each tungstenite read writes out what was fed
            // before it, so read everything first). An error while taking
            // ready requests is the server closing when done: the next read
            // reports it.
            let mut next = Some(first);
            while let Some(text) = next {
                let req: Request = serde_json::from_str(&text)?;
                let params = req.params.map_or("null", |p| p.get());
                answers.push(format!(
                    r#"{{"jsonrpc":"2.0","id":{},"result":{params}}}"#,
                    req.id.get()
                ));
                next = ready_text(&mut ws).unwrap_or_default();
            }
            for answer in answers.drain(..) {
                ws.feed(Message::text(answer)).await?;
            }
            ws.flush().await?;
        }
    };
    tokio::time::timeout(plan.limit * 3 + Duration::from_secs(30), answer)
        .await
        .context("server_request did not finish")??;
    let outcome = result
        .await
        .map_err(|_| anyhow!("server_request server dropped the job"))?
        .map_err(|e| anyhow!("server side: {e}"))?;
    server_request_sample(outcome, &measure, plan)
}
