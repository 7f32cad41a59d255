//! The floor on the library's own socket stack: awc's websocket handshake
//! (connector with TCP_NODELAY, 32 MiB max frame size) and awc's
//! `Framed<BoxedSocket, Codec>`, driven directly. Requests are pre-serialised
//! text frames; responses are matched by scanning the text for `"id":` and
//! reading the digits. Results are neither parsed nor UTF-8 checked. Pings
//! are answered. Runs inside an actix `System` on the client thread.

use std::time::{Duration, Instant};

use actix_codec::Framed;
use actix_http::ws::Item;
use actix_service::ServiceExt as _;
use actix_tls::connect::{Connection, Connector as TcpConnector, Resolver};
use anyhow::{anyhow, bail, ensure, Context as _, Result};
use awc::http::Uri;
use awc::ws::{CloseCode, Codec, Frame, Message};
use awc::BoxedSocket;
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{FutureExt, SinkExt, StreamExt};

use crate::alloc::Snapshot;
use crate::scenarios::{
    memory_sample, server_request_sample, ticks_within, wait_for_held, Env, Measure, Plan, Sample,
    Scenario, BATCH,
};
use crate::server::{BLOB_LEN, MAX_MESSAGE};

/// Pre-serialised requests with a fixed id, for the scenarios that have one
/// call outstanding at a time.
const ECHO_1: &str = r#"{"jsonrpc":"2.0","id":1,"method":"echo","params":["bench",42]}"#;
const BLOB_1: &str = r#"{"jsonrpc":"2.0","id":1,"method":"blob"}"#;
const COUNT_1: &str = r#"{"jsonrpc":"2.0","id":1,"method":"count"}"#;
const NOTE: &str = r#"{"jsonrpc":"2.0","method":"note","params":[1]}"#;
/// Pre-serialised requests missing only the id and the closing brace, for the
/// scenarios with many calls outstanding (each gets its own id).
const ECHO_PREFIX: &str = r#"{"jsonrpc":"2.0","method":"echo","params":["bench",42],"id":"#;
const HOLD_PREFIX: &str = r#"{"jsonrpc":"2.0","method":"hold","id":"#;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn text(s: &'static str) -> Message {
    Message::Text(ByteString::from_static(s))
}

/// `prefix` + decimal `id` + `}`.
fn with_id(prefix: &str, id: u64) -> Message {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = id;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut s = String::with_capacity(prefix.len() + digits.len() - i + 1);
    s.push_str(prefix);
    // The digits are ASCII.
    s.extend(digits[i..].iter().map(|&d| d as char));
    s.push('}');
    Message::Text(ByteString::from(s))
}

/// Position just after the first occurrence of `needle` in `hay`.
fn after(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while let Some(p) = hay[from..].iter().position(|&b| b == first) {
        let at = from + p;
        if hay[at..].starts_with(needle) {
            return Some(at + needle.len());
        }
        from = at + 1;
    }
    None
}

/// The unsigned integer that follows `key` (e.g. `"id":`), spaces allowed.
fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let mut i = after(hay, key)?;
    while hay.get(i) == Some(&b' ') {
        i += 1;
    }
    let start = i;
    let mut n: u64 = 0;
    while let Some(&d) = hay.get(i).filter(|d| d.is_ascii_digit()) {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        i += 1;
    }
    (i > start).then_some(n)
}

/// The response's id, found by scanning (jsonrpsee writes `"id"` before the
/// result, so this stops near the front even for a 1 MiB result).
pub fn response_id(text: &[u8]) -> Option<u64> {
    number_after(text, br#""id":"#)
}

/// An awc client whose connector sets TCP_NODELAY, as the library's default
/// connector does, and with no limit on simultaneous connections (awc's pool
/// holds a permit for as long as a websocket lives; the default limit is 100).
pub fn awc_client() -> awc::Client {
    let tcp = TcpConnector::new(Resolver::default()).service().map(
        |conn: Connection<Uri, tokio::net::TcpStream>| {
            let _ = conn.io_ref().set_nodelay(true);
            conn
        },
    );
    let connector = awc::Connector::new()
        .connector(tcp)
        .limit(0)
        .timeout(CONNECT_TIMEOUT);
    awc::Client::builder()
        .connector(connector)
        .timeout(CONNECT_TIMEOUT)
        .finish()
}

/// One websocket: awc's framed stream, plus a message being reassembled from
/// continuation frames and pongs owed to the server.
pub struct Conn {
    ws: Framed<BoxedSocket, Codec>,
    partial: Option<BytesMut>,
    pongs: Vec<Bytes>,
}

impl Conn {
    pub async fn connect(client: &awc::Client, url: &str) -> Result<Conn> {
        let request = client.ws(url).max_frame_size(MAX_MESSAGE as usize);
        let (_response, ws) = tokio::time::timeout(CONNECT_TIMEOUT, request.connect())
            .await
            .map_err(|_| anyhow!("no websocket handshake with {url} in {CONNECT_TIMEOUT:?}"))?
            // awc's error is not Send: keep its text.
            .map_err(|e| anyhow!("could not connect to {url}: {e}"))?;
        Ok(Conn {
            ws,
            partial: None,
            pongs: Vec::new(),
        })
    }

    /// A whole data message, if `frame` completes one.
    fn take(&mut self, frame: Frame) -> Result<Option<Bytes>> {
        Ok(match frame {
            Frame::Text(b) | Frame::Binary(b) => Some(b),
            Frame::Continuation(Item::FirstText(b) | Item::FirstBinary(b)) => {
                self.partial = Some(BytesMut::from(&b[..]));
                None
            }
            Frame::Continuation(Item::Continue(b)) => {
                self.partial
                    .as_mut()
                    .context("continuation without a first frame")?
                    .extend_from_slice(&b);
                None
            }
            Frame::Continuation(Item::Last(b)) => {
                let mut m = self
                    .partial
                    .take()
                    .context("continuation without a first frame")?;
                m.extend_from_slice(&b);
                Some(m.freeze())
            }
            Frame::Ping(p) => {
                self.pongs.push(p);
                None
            }
            Frame::Pong(_) => None,
            Frame::Close(_) => bail!("connection closed by the server"),
        })
    }

    /// The next data message (answering pings on the way).
    pub async fn next_text(&mut self) -> Result<Bytes> {
        loop {
            let frame = match self.ws.next().await {
                Some(f) => f?,
                None => bail!("connection closed"),
            };
            if let Some(m) = self.take(frame)? {
                return Ok(m);
            }
            if !self.pongs.is_empty() {
                self.flush().await?;
            }
        }
    }

    /// A data message if one is ready without waiting.
    pub fn ready_text(&mut self) -> Result<Option<Bytes>> {
        loop {
            let frame = match self.ws.next().now_or_never() {
                None => return Ok(None),
                Some(None) => bail!("connection closed"),
                Some(Some(f)) => f?,
            };
            if let Some(m) = self.take(frame)? {
                return Ok(Some(m));
            }
        }
    }

    /// Queue a frame (written out when the write buffer passes 8 KiB or at
    /// the next flush).
    pub async fn feed(&mut self, m: Message) -> Result<()> {
        Ok(self.ws.feed(m).await?)
    }

    /// Write out everything queued, pongs first.
    pub async fn flush(&mut self) -> Result<()> {
        for p in std::mem::take(&mut self.pongs) {
            self.ws.feed(Message::Pong(p)).await?;
        }
        Ok(self.ws.flush().await?)
    }

    /// Send one request and wait for the next message.
    pub async fn rpc(&mut self, request: Message) -> Result<Bytes> {
        self.feed(request).await?;
        self.flush().await?;
        self.next_text().await
    }

    /// `echo` with id `id`; checks the answer's id.
    pub async fn echo(&mut self, id: u64) -> Result<()> {
        let r = self.rpc(with_id(ECHO_PREFIX, id)).await?;
        ensure!(response_id(&r) == Some(id), "echo: unexpected response");
        Ok(())
    }

    async fn count(&mut self) -> Result<u64> {
        let r = self.rpc(text(COUNT_1)).await?;
        ensure!(response_id(&r) == Some(1), "count: unexpected response");
        number_after(&r, br#""result":"#).context("count: no result")
    }

    /// Send a close frame and wait (bounded) for the server's.
    pub async fn close(mut self) -> Result<()> {
        self.ws
            .send(Message::Close(Some(CloseCode::Normal.into())))
            .await?;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(f)) = self.ws.next().await {
                if matches!(f, Frame::Close(_)) {
                    break;
                }
            }
        })
        .await;
        Ok(())
    }
}

pub async fn run(scenario: Scenario, plan: &Plan, env: &Env) -> Result<Sample> {
    let client = awc_client();
    match scenario {
        Scenario::Connect => return connect_loop(&client, &env.rpc_url, plan).await,
        Scenario::ServerRequest => return server_request(&client, env, plan).await,
        Scenario::Idle => bail!("idle runs in its own process (see idle.rs)"),
        _ => {}
    }
    let url = env.url(scenario);
    let mut c = Conn::connect(&client, url).await?;
    let sample = match scenario.work() {
        Scenario::Seq => seq(&mut c, plan).await?,
        Scenario::Inflight16 => inflight(&mut c, 16, plan).await?,
        Scenario::Inflight256 => inflight(&mut c, 256, plan).await?,
        Scenario::Blob1m => big(&mut c, plan, text(BLOB_1), BLOB_LEN + 30).await?,
        Scenario::Upload1m => {
            let request = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"upload","params":["{}"]}}"#,
                crate::server::blob_string()
            );
            big(&mut c, plan, Message::Text(request.into()), 0).await?
        }
        Scenario::Notify => notify(&mut c, plan).await?,
        Scenario::Memory => memory(&mut c, plan, env).await?,
        Scenario::SubTicks => sub_ticks(&mut c, plan).await?,
        Scenario::Batch100 => batch100(&mut c, plan).await?,
        Scenario::Connect
        | Scenario::ServerRequest
        | Scenario::Idle
        | Scenario::SubTicksLean
        | Scenario::Batch100Lean => unreachable!(),
    };
    c.close().await?;
    Ok(sample)
}

async fn seq(c: &mut Conn, plan: &Plan) -> Result<Sample> {
    for _ in 0..plan.warmup {
        let r = c.rpc(text(ECHO_1)).await?;
        ensure!(response_id(&r) == Some(1), "echo: unexpected response");
    }
    let mut lat = Vec::with_capacity(plan.count as usize);
    let measure = Measure::start();
    let deadline = measure.start + plan.limit;
    while (lat.len() as u64) < plan.count {
        let t = Instant::now();
        let r = c.rpc(text(ECHO_1)).await?;
        ensure!(response_id(&r) == Some(1), "echo: unexpected response");
        let now = Instant::now();
        lat.push(now - t);
        if now >= deadline {
            break;
        }
    }
    Ok(measure.latency(lat, plan.count))
}

/// Outstanding ids `first..first + count`, one flag each.
struct Tally {
    first: u64,
    open: Vec<bool>,
}

impl Tally {
    fn new(first: u64, count: u64) -> Tally {
        Tally {
            first,
            open: vec![false; count as usize],
        }
    }

    fn sent(&mut self, id: u64) {
        self.open[(id - self.first) as usize] = true;
    }

    /// Marks the response's id answered; an unknown or repeated id is an error.
    fn answered(&mut self, response: &[u8]) -> Result<()> {
        let id = response_id(response).context("response without an id")?;
        let slot = id
            .checked_sub(self.first)
            .and_then(|i| self.open.get_mut(i as usize))
            .filter(|open| **open)
            .with_context(|| format!("response to id {id}, which is not outstanding"))?;
        *slot = false;
        Ok(())
    }
}

/// Keep `width` `echo` calls outstanding (ids from `first`) until `count`
/// were sent or `deadline` passed; returns how many were answered.
async fn window(
    c: &mut Conn,
    first: u64,
    width: u64,
    count: u64,
    deadline: Instant,
) -> Result<u64> {
    let mut tally = Tally::new(first, count);
    let (mut sent, mut answered) = (0u64, 0u64);
    while sent < count.min(width) {
        c.feed(with_id(ECHO_PREFIX, first + sent)).await?;
        tally.sent(first + sent);
        sent += 1;
    }
    c.flush().await?;
    while answered < sent {
        // Take every response that is ready, then write as many requests
        // and flush once.
        let r = c.next_text().await?;
        tally.answered(&r)?;
        let mut burst = 1;
        while let Some(r) = c.ready_text()? {
            tally.answered(&r)?;
            burst += 1;
        }
        answered += burst;
        let more = burst.min(count - sent);
        if more > 0 && Instant::now() < deadline {
            for _ in 0..more {
                c.feed(with_id(ECHO_PREFIX, first + sent)).await?;
                tally.sent(first + sent);
                sent += 1;
            }
        }
        c.flush().await?;
    }
    Ok(answered)
}

async fn inflight(c: &mut Conn, width: u64, plan: &Plan) -> Result<Sample> {
    let far = Instant::now() + plan.limit * 3;
    window(c, 1, width, plan.warmup, far).await?;
    let measure = Measure::start();
    let start = measure.start;
    let done = window(c, 1 + plan.warmup, width, plan.count, start + plan.limit).await?;
    Ok(measure.rate(done, plan.count, 1.0))
}

/// Sequential 1 MiB calls with id 1; `min_len` checks the response size (the
/// floor does not parse results).
async fn big(c: &mut Conn, plan: &Plan, request: Message, min_len: usize) -> Result<Sample> {
    let request = match request {
        Message::Text(t) => t,
        _ => unreachable!(),
    };
    for _ in 0..plan.warmup {
        let r = c.rpc(Message::Text(request.clone())).await?;
        ensure!(
            r.len() >= min_len && response_id(&r) == Some(1) && after(&r, b"\"result\"").is_some(),
            "bad response"
        );
    }
    let measure = Measure::start();
    let start = measure.start;
    let deadline = start + plan.limit;
    let mut done = 0;
    while done < plan.count {
        let r = c.rpc(Message::Text(request.clone())).await?;
        ensure!(
            r.len() >= min_len && response_id(&r) == Some(1),
            "short response or wrong id"
        );
        done += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(measure.rate(done, plan.count, BLOB_LEN as f64 / 1e6))
}

async fn barrier(c: &mut Conn, target: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = c.count().await?;
        if n >= target {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("server saw {n} of {target} notifications after 30 s");
        }
    }
}

async fn notify(c: &mut Conn, plan: &Plan) -> Result<Sample> {
    let base = c.count().await?;
    for _ in 0..plan.warmup {
        c.feed(text(NOTE)).await?;
    }
    c.flush().await?;
    barrier(c, base + plan.warmup).await?;
    let base = base + plan.warmup;
    let measure = Measure::start();
    let start = measure.start;
    let deadline = start + plan.limit;
    let mut sent = 0;
    while sent < plan.count {
        // Written out whenever the write buffer passes 8 KiB.
        c.feed(text(NOTE)).await?;
        sent += 1;
        if sent % 64 == 0 && Instant::now() >= deadline {
            break;
        }
    }
    c.flush().await?;
    barrier(c, base + sent).await?;
    Ok(measure.rate(sent, plan.count, 1.0))
}

/// Connect + one `echo` + close, repeated; one awc client for the run (a
/// floor: the library builds one per connection).
async fn connect_loop(client: &awc::Client, url: &str, plan: &Plan) -> Result<Sample> {
    async fn once(client: &awc::Client, url: &str) -> Result<()> {
        let mut c = Conn::connect(client, url).await?;
        c.echo(1).await?;
        c.close().await
    }
    for _ in 0..plan.warmup {
        once(client, url).await?;
    }
    let measure = Measure::start();
    let start = measure.start;
    let deadline = start + plan.limit;
    let mut done = 0;
    while done < plan.count {
        once(client, url).await?;
        done += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(measure.rate(done, plan.count, 1.0))
}

async fn memory(c: &mut Conn, plan: &Plan, env: &Env) -> Result<Sample> {
    for i in 0..plan.warmup {
        c.echo(i + 1).await?;
    }
    let n = plan.count;
    let first = plan.warmup + 1;
    env.rpc.reset_hold();
    let before = Snapshot::now();
    // The tally (one byte per call) is counted: it is the floor's only
    // per-call state.
    let mut tally = Tally::new(first, n);
    for id in first..first + n {
        c.feed(with_id(HOLD_PREFIX, id)).await?;
        tally.sent(id);
    }
    c.flush().await?;
    wait_for_held(&env.rpc, n, plan.limit).await?;
    let after = Snapshot::now();
    env.rpc.release_hold();
    tokio::time::timeout(plan.limit + Duration::from_secs(30), async {
        for _ in 0..n {
            let r = c.next_text().await?;
            tally.answered(&r)?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("held calls did not complete after the release")??;
    Ok(memory_sample(before, after, n))
}

/// How many times `needle` occurs in `hay` (not overlapping).
fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    let (mut n, mut from) = (0, 0);
    while let Some(end) = after(&hay[from..], needle) {
        n += 1;
        from += end;
    }
    n
}

/// `subscribe_ticks` with `[n]` and id 1, pre-serialised.
pub fn subscribe_ticks_request(n: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"subscribe_ticks","params":[{n}]}}"#)
}

/// `unsubscribe_ticks` of subscription `sub` with id 2.
pub fn unsubscribe_ticks_request(sub: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":2,"method":"unsubscribe_ticks","params":[{sub}]}}"#)
}

/// The batch of [`BATCH`] `echo` calls, ids 1..=100, pre-serialised.
pub fn batch_request() -> String {
    let calls: Vec<String> = (1..=BATCH)
        .map(|id| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"echo","params":["bench",42]}}"#))
        .collect();
    format!("[{}]", calls.join(","))
}

/// Counts notification frames (found by scanning for `"subscription"`)
/// until `n` have come or `deadline` passed (looked at every 64); the last
/// of all `n` must carry `"result":n`.
async fn count_ticks(c: &mut Conn, n: u64, deadline: Instant) -> Result<u64> {
    let mut got = 0;
    while got < n {
        let m = c.next_text().await?;
        if after(&m, br#""subscription""#).is_none() {
            bail!("not a notification: {}", String::from_utf8_lossy(&m));
        }
        got += 1;
        if got == n {
            ensure!(
                number_after(&m, br#""result":"#) == Some(n),
                "the last tick is not {n}"
            );
        } else if got % 64 == 0 && Instant::now() >= deadline {
            break;
        }
    }
    Ok(got)
}

/// Subscribes (the request pre-serialised), counts `n` ticks, and returns
/// how many came and the subscription id.
async fn ticks(c: &mut Conn, request: Message, n: u64, limit: Duration) -> Result<(u64, u64)> {
    let deadline = Instant::now() + limit;
    let r = c.rpc(request).await?;
    ensure!(response_id(&r) == Some(1), "subscribe: unexpected response");
    let sub = number_after(&r, br#""result":"#).context("subscribe: no numeric id")?;
    let got = ticks_within(limit, count_ticks(c, n, deadline)).await?;
    Ok((got, sub))
}

/// Unsubscribes and waits for the answer (id 2), skipping ticks still
/// under way.
async fn unsubscribe_ticks(c: &mut Conn, sub: u64) -> Result<()> {
    c.feed(Message::Text(unsubscribe_ticks_request(sub).into()))
        .await?;
    c.flush().await?;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let r = c.next_text().await?;
            if response_id(&r) == Some(2) {
                ensure!(
                    after(&r, br#""result":true"#).is_some(),
                    "unsubscribe refused"
                );
                return Ok(());
            }
        }
    })
    .await
    .context("no answer to unsubscribe")?
}

async fn sub_ticks(c: &mut Conn, plan: &Plan) -> Result<Sample> {
    let warm = Message::Text(subscribe_ticks_request(plan.warmup).into());
    let (got, sub) = ticks(c, warm, plan.warmup, plan.limit * 3).await?;
    ensure!(
        got == plan.warmup,
        "warm-up: {got} of {} ticks",
        plan.warmup
    );
    unsubscribe_ticks(c, sub).await?;
    let request = Message::Text(subscribe_ticks_request(plan.count).into());
    let measure = Measure::start();
    let (got, sub) = ticks(c, request, plan.count, plan.limit).await?;
    let sample = measure.rate(got, plan.count, 1.0);
    unsubscribe_ticks(c, sub).await?;
    Ok(sample)
}

/// Sequential pre-serialised batches; each answer must be an array with
/// [`BATCH`] `"result":` members (results neither parsed nor matched to ids).
async fn batch100(c: &mut Conn, plan: &Plan) -> Result<Sample> {
    async fn once(c: &mut Conn, request: &ByteString) -> Result<()> {
        let r = c.rpc(Message::Text(request.clone())).await?;
        ensure!(
            r.first() == Some(&b'[') && occurrences(&r, br#""result":"#) == BATCH as usize,
            "bad batch answer"
        );
        Ok(())
    }
    let request = ByteString::from(batch_request());
    for _ in 0..plan.warmup.div_ceil(BATCH) {
        once(c, &request).await?;
    }
    let measure = Measure::start();
    let deadline = measure.start + plan.limit;
    let mut done = 0;
    while done < plan.count {
        once(c, &request).await?;
        done += BATCH;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(measure.rate(done, plan.count, 1.0))
}

/// `server_request`: answer each `bench.ping` with its params, found by
/// scanning (`"id":` digits, and everything from `"params":` to the closing
/// brace).
async fn server_request(client: &awc::Client, env: &Env, plan: &Plan) -> Result<Sample> {
    let result = env.sreq.start(plan.warmup, plan.count, plan.limit);
    let measure = Measure::start();
    let mut c = Conn::connect(client, &env.sreq_url).await?;
    let answer = async {
        loop {
            // The server closes the connection when done.
            let Ok(first) = c.next_text().await else {
                return Ok::<_, anyhow::Error>(());
            };
            // Answer every request that is ready, then flush once. An error
            // while taking ready requests is the server closing when done:
            // the next read reports it.
            let mut next = Some(first);
            while let Some(req) = next {
                c.feed(answer_ping(&req)?).await?;
                next = c.ready_text().unwrap_or_default();
            }
            c.flush().await?;
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

fn answer_ping(req: &[u8]) -> Result<Message> {
    let id = response_id(req).context("request without a numeric id")?;
    let start = after(req, br#""params":"#).context("request without params")?;
    let end = req
        .iter()
        .rposition(|&b| b == b'}')
        .filter(|&e| e >= start)
        .context("request without a closing brace")?;
    let params = std::str::from_utf8(&req[start..end])?;
    Ok(Message::Text(
        format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{params}}}"#).into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_ids() {
        assert_eq!(
            response_id(br#"{"jsonrpc":"2.0","id":42,"result":1}"#),
            Some(42)
        );
        assert_eq!(response_id(br#"{"id": 7}"#), Some(7));
        assert_eq!(response_id(br#"{"jsonrpc":"2.0","result":1}"#), None);
        assert_eq!(response_id(br#"{"id":"x"}"#), None);
        assert_eq!(
            number_after(br#"{"id":1,"result":12345}"#, br#""result":"#),
            Some(12345)
        );
    }

    #[test]
    fn builds_requests() {
        let Message::Text(t) = with_id(ECHO_PREFIX, 1234567) else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["id"], 1234567);
        let Message::Text(t) = with_id(HOLD_PREFIX, 0) else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["id"], 0);
    }

    #[test]
    fn builds_batches_and_counts() {
        let v: serde_json::Value = serde_json::from_str(&batch_request()).unwrap();
        assert_eq!(v.as_array().unwrap().len(), BATCH as usize);
        assert_eq!(v[99]["id"], 100);
        assert_eq!(
            occurrences(br#"[{"result":1},{"result":2}]"#, br#""result":"#),
            2
        );
        assert_eq!(occurrences(b"", b"x"), 0);
    }

    #[test]
    fn answers_pings() {
        let Message::Text(t) =
            answer_ping(br#"{"jsonrpc":"2.0","id":9,"method":"bench.ping","params":[9]}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(&*t, r#"{"jsonrpc":"2.0","id":9,"result":[9]}"#);
    }
}
