//! The downstream client of the proxy scenarios, the same for both proxies
//! and for the upstream called directly: pre-serialised `echo` requests
//! and no JSON parsing, so that the proxy, not the client, sets the pace.
//!
//! - HTTP: a raw HTTP/1.1 client on tokio `TcpStream`s (TCP_NODELAY), one
//!   keep-alive connection per call in flight (HTTP/1.1 has one request
//!   per connection at a time): it writes the request, reads the head,
//!   takes the body by its `Content-Length`, and checks the status and the
//!   echoed result.
//! - websocket: tokio-tungstenite (TCP_NODELAY, 16 KiB read buffer, as the
//!   raw floor of the other scenarios), one connection with all its calls
//!   in flight; a burst of ready answers is answered with a burst of
//!   requests and one flush. Each answer must hold the echoed result.
//!
//! Each measured part is framed by two [`Prober`] readings, which give the
//! proxy thread's CPU per call.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use bytes::{Buf as _, BytesMut};
use futures_util::future::try_join_all;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::front::{Probe, Prober};
use crate::scenarios::{percentile_us, Plan, Sample};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const ECHO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"echo","params":["bench",42]}"#;
/// What every answer must contain.
const ECHOED: &[u8] = br#""result":["bench",42]"#;
/// The most a response head may take.
const MAX_HEAD: usize = 16 * 1024;

/// Where the client sends its calls.
#[derive(Clone, Debug)]
pub enum Target {
    Http(SocketAddr),
    Ws(String),
}

/// Sequential calls, or this many in flight.
#[derive(Clone, Copy, Debug)]
pub enum Load {
    Seq,
    InFlight(u64),
}

/// Runs `load` against `target`: `[p50, p99, proxy CPU per call]` for
/// `Seq`, `[calls/s, proxy CPU per call]` otherwise.
pub async fn run(target: &Target, load: Load, plan: &Plan, prober: &Prober) -> Result<Sample> {
    match (target, load) {
        (Target::Http(addr), Load::Seq) => {
            let mut conn = HttpConn::connect(*addr).await?;
            seq(&mut conn, plan, prober).await
        }
        (Target::Http(addr), Load::InFlight(width)) => {
            let mut conns = try_join_all((0..width).map(|_| HttpConn::connect(*addr))).await?;
            let far = Instant::now() + plan.limit * 3;
            http_window(&mut conns, plan.warmup, far).await?;
            let before = prober.probe().await?;
            let start = Instant::now();
            let done = http_window(&mut conns, plan.count, start + plan.limit).await?;
            rate(done, plan, start, before, prober).await
        }
        (Target::Ws(url), Load::Seq) => {
            let mut ws = ws_connect(url).await?;
            let sample = seq(&mut ws, plan, prober).await?;
            ws_close(ws).await;
            Ok(sample)
        }
        (Target::Ws(url), Load::InFlight(width)) => {
            let mut ws = ws_connect(url).await?;
            let far = Instant::now() + plan.limit * 3;
            ws_window(&mut ws, width, plan.warmup, far).await?;
            let before = prober.probe().await?;
            let start = Instant::now();
            let done = ws_window(&mut ws, width, plan.count, start + plan.limit).await?;
            let sample = rate(done, plan, start, before, prober).await?;
            ws_close(ws).await;
            Ok(sample)
        }
    }
}

/// Proxy thread CPU per operation between two probes, in µs (NaN without
/// a proxy).
pub fn cpu_per_op_us(before: Option<Probe>, after: Option<Probe>, ops: u64) -> f64 {
    match (before, after) {
        (Some(b), Some(a)) => (a.cpu - b.cpu).as_secs_f64() * 1e6 / ops.max(1) as f64,
        _ => f64::NAN,
    }
}

/// One `echo` call, its answer checked.
trait Echo {
    async fn echo(&mut self) -> Result<()>;
}

async fn seq<C: Echo>(c: &mut C, plan: &Plan, prober: &Prober) -> Result<Sample> {
    for _ in 0..plan.warmup {
        c.echo().await?;
    }
    let mut lat = Vec::with_capacity(plan.count as usize);
    let before = prober.probe().await?;
    let deadline = Instant::now() + plan.limit;
    while (lat.len() as u64) < plan.count {
        let t = Instant::now();
        c.echo().await?;
        let now = Instant::now();
        lat.push(now - t);
        if now >= deadline {
            break;
        }
    }
    let after = prober.probe().await?;
    let ops = lat.len() as u64;
    lat.sort_unstable();
    Ok(Sample {
        values: vec![
            percentile_us(&lat, 50.0),
            percentile_us(&lat, 99.0),
            cpu_per_op_us(before, after, ops),
        ],
        ops,
        by_time: ops < plan.count,
    })
}

async fn rate(
    done: u64,
    plan: &Plan,
    start: Instant,
    before: Option<Probe>,
    prober: &Prober,
) -> Result<Sample> {
    let elapsed = start.elapsed();
    let after = prober.probe().await?;
    Ok(Sample {
        values: vec![
            done as f64 / elapsed.as_secs_f64(),
            cpu_per_op_us(before, after, done),
        ],
        ops: done,
        by_time: done < plan.count,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn check_answer(body: &[u8]) -> Result<()> {
    ensure!(
        contains(body, ECHOED),
        "unexpected answer {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    Ok(())
}

// ------------------------------------------------------------------ HTTP

/// One keep-alive HTTP/1.1 connection.
struct HttpConn {
    stream: TcpStream,
    request: Vec<u8>,
    buf: BytesMut,
}

impl HttpConn {
    async fn connect(addr: SocketAddr) -> Result<HttpConn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{ECHO}",
            ECHO.len()
        )
        .into_bytes();
        Ok(HttpConn {
            stream,
            request,
            buf: BytesMut::with_capacity(4096),
        })
    }

    async fn read(&mut self) -> Result<()> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        ensure!(n > 0, "the server closed the connection");
        Ok(())
    }
}

impl Echo for HttpConn {
    async fn echo(&mut self) -> Result<()> {
        self.stream.write_all(&self.request).await?;
        let (head, body) = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break (end + 4, content_length(&self.buf[..end])?);
            }
            ensure!(
                self.buf.len() < MAX_HEAD,
                "a response head over {MAX_HEAD} bytes"
            );
            self.read().await?;
        };
        while self.buf.len() < head + body {
            self.read().await?;
        }
        ensure!(
            self.buf.starts_with(b"HTTP/1.1 200 "),
            "unexpected status: {}",
            String::from_utf8_lossy(&self.buf[..head.min(100)])
        );
        check_answer(&self.buf[head..head + body])?;
        self.buf.advance(head + body);
        Ok(())
    }
}

/// The `Content-Length` of a response head (a chunked body is refused:
/// neither server sends one for these answers).
fn content_length(head: &[u8]) -> Result<usize> {
    let head = std::str::from_utf8(head).context("a response head that is not UTF-8")?;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            return Ok(value.trim().parse()?);
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("a chunked response: {head}");
        }
    }
    bail!("a response without Content-Length: {head}")
}

/// Each connection makes calls one after the other until `count` calls
/// have been issued (across all of them) or `deadline` has passed; returns
/// how many were answered.
async fn http_window(conns: &mut [HttpConn], count: u64, deadline: Instant) -> Result<u64> {
    let issued = Cell::new(0u64);
    let done = try_join_all(conns.iter_mut().map(|conn| {
        let issued = &issued;
        async move {
            let mut done = 0u64;
            while issued.get() < count && Instant::now() < deadline {
                issued.set(issued.get() + 1);
                conn.echo().await?;
                done += 1;
            }
            Ok::<_, anyhow::Error>(done)
        }
    }))
    .await?;
    Ok(done.iter().sum())
}

// ------------------------------------------------------------- websocket

pub async fn ws_connect(url: &str) -> Result<Ws> {
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    Ok(ws)
}

/// Closes and waits (at most 2 s) for the server's close frame, not for
/// the end of the TCP connection: actix-http ends it only when the client
/// has (or after its 1 s `client_disconnect_timeout`), and
/// tokio-tungstenite, as a client, waits for the server to.
pub async fn ws_close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        ws.close(None).await?;
        while let Some(m) = ws.next().await {
            if let Message::Close(_) = m? {
                break;
            }
        }
        Ok::<_, anyhow::Error>(())
    })
    .await;
}

/// The next text message (pings are answered by tungstenite itself).
pub async fn next_text(ws: &mut Ws) -> Result<Utf8Bytes> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t),
            Some(Ok(Message::Close(c))) => bail!("connection closed: {c:?}"),
            None => bail!("connection closed"),
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

fn echo() -> Message {
    Message::Text(Utf8Bytes::from_static(ECHO))
}

impl Echo for Ws {
    async fn echo(&mut self) -> Result<()> {
        self.send(echo()).await?;
        check_answer(next_text(self).await?.as_bytes())
    }
}

/// Keeps `width` calls outstanding until `count` were sent or `deadline`
/// passed; returns how many were answered.
async fn ws_window(ws: &mut Ws, width: u64, count: u64, deadline: Instant) -> Result<u64> {
    let (mut sent, mut answered) = (0u64, 0u64);
    while sent < count.min(width) {
        ws.feed(echo()).await?;
        sent += 1;
    }
    ws.flush().await?;
    while answered < sent {
        // Every answer that is ready, then as many requests in one flush.
        check_answer(next_text(ws).await?.as_bytes())?;
        let mut burst = 1;
        while let Some(text) = ready_text(ws)? {
            check_answer(text.as_bytes())?;
            burst += 1;
        }
        answered += burst;
        let more = burst.min(count - sent);
        if more > 0 && Instant::now() < deadline {
            for _ in 0..more {
                ws.feed(echo()).await?;
            }
            sent += more;
            ws.flush().await?;
        }
    }
    Ok(answered)
}
