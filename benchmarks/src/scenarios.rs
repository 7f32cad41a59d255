//! Scenarios, their plans and metrics, and the scenario loops shared by every
//! client that exposes an awaitable call (ours ×2 and jsonrpsee; the raw
//! clients have their own loops in `clients::raw` and `clients::raw_awc`, and
//! `idle` runs in child processes, see `idle.rs`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;

use crate::alloc::Snapshot;
use crate::server::{RpcState, ServerRequestState, BLOB_LEN};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    Seq,
    Inflight16,
    Inflight256,
    Blob1m,
    Upload1m,
    Notify,
    Connect,
    ServerRequest,
    Memory,
    Idle,
    SubTicks,
    Batch100,
    /// `sub_ticks` against the lean server (see `server::start_lean`).
    SubTicksLean,
    /// `batch100` against the lean server.
    Batch100Lean,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKind {
    OursClient,
    OursAddr,
    Jsonrpsee,
    Raw,
    RawAwc,
}

impl ClientKind {
    pub const ALL: [ClientKind; 5] = [
        ClientKind::OursClient,
        ClientKind::OursAddr,
        ClientKind::Jsonrpsee,
        ClientKind::Raw,
        ClientKind::RawAwc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClientKind::OursClient => "ours-client",
            ClientKind::OursAddr => "ours-addr",
            ClientKind::Jsonrpsee => "jsonrpsee",
            ClientKind::Raw => "raw-tungstenite",
            ClientKind::RawAwc => "raw-awc",
        }
    }

    pub fn is_ours(self) -> bool {
        matches!(self, ClientKind::OursClient | ClientKind::OursAddr)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name || (name == "raw" && *k == ClientKind::Raw))
    }
}

/// One figure a scenario reports.
pub struct Metric {
    pub key: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
}

impl Scenario {
    pub const ALL: [Scenario; 14] = [
        Scenario::Seq,
        Scenario::Inflight16,
        Scenario::Inflight256,
        Scenario::Blob1m,
        Scenario::Upload1m,
        Scenario::Notify,
        Scenario::Connect,
        Scenario::ServerRequest,
        Scenario::Memory,
        Scenario::Idle,
        Scenario::SubTicks,
        Scenario::SubTicksLean,
        Scenario::Batch100,
        Scenario::Batch100Lean,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Seq => "seq",
            Scenario::Inflight16 => "inflight16",
            Scenario::Inflight256 => "inflight256",
            Scenario::Blob1m => "blob1m",
            Scenario::Upload1m => "upload1m",
            Scenario::Notify => "notify",
            Scenario::Connect => "connect",
            Scenario::ServerRequest => "server_request",
            Scenario::Memory => "memory",
            Scenario::Idle => "idle",
            Scenario::SubTicks => "sub_ticks",
            Scenario::Batch100 => "batch100",
            Scenario::SubTicksLean => "sub_ticks_lean",
            Scenario::Batch100Lean => "batch100_lean",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The scenario whose work this one does (a `_lean` variant does its
    /// base scenario's work against the lean server).
    pub fn work(self) -> Scenario {
        match self {
            Scenario::SubTicksLean => Scenario::SubTicks,
            Scenario::Batch100Lean => Scenario::Batch100,
            other => other,
        }
    }

    /// The clients that take part. jsonrpsee's client cannot answer
    /// server→client requests, and for them `ours-addr` would be the same
    /// connection as `ours-client` (the handler is registered on the builder);
    /// an idle `ours-addr` connection is an idle `ours-client` one, and the
    /// idle floor is raw-awc (the library's socket stack).
    pub fn clients(self) -> &'static [ClientKind] {
        match self {
            Scenario::ServerRequest => {
                &[ClientKind::OursClient, ClientKind::Raw, ClientKind::RawAwc]
            }
            Scenario::Idle => &[
                ClientKind::OursClient,
                ClientKind::Jsonrpsee,
                ClientKind::RawAwc,
            ],
            _ => &ClientKind::ALL,
        }
    }

    /// What the scenario counts, for the "done" column.
    pub fn op_name(self) -> &'static str {
        match self {
            Scenario::Notify | Scenario::SubTicks | Scenario::SubTicksLean => "notes",
            Scenario::Connect | Scenario::Idle => "conns",
            Scenario::ServerRequest => "requests",
            Scenario::Memory => "pending",
            _ => "calls",
        }
    }

    pub fn metrics(self) -> &'static [Metric] {
        const fn m(
            key: &'static str,
            title: &'static str,
            unit: &'static str,
            higher_is_better: bool,
        ) -> Metric {
            Metric {
                key,
                title,
                unit,
                higher_is_better,
            }
        }
        const CPU: Metric = m("cpu_per_op", "client thread CPU per operation", "µs", false);
        const SEQ: [Metric; 3] = [
            m("p50_latency", "p50 latency", "µs", false),
            m("p99_latency", "p99 latency", "µs", false),
            CPU,
        ];
        const INFLIGHT: [Metric; 2] = [m("throughput", "throughput", "calls/s", true), CPU];
        const BLOB: [Metric; 2] = [m("download", "1 MiB results", "MB/s", true), CPU];
        const UPLOAD: [Metric; 2] = [m("upload", "1 MiB params", "MB/s", true), CPU];
        const NOTIFY: [Metric; 2] = [
            m(
                "notifications",
                "notifications then a barrier call",
                "notes/s",
                true,
            ),
            CPU,
        ];
        const SUB_TICKS: [Metric; 2] = [
            m(
                "notifications",
                "one subscription's notifications, subscribe to last",
                "notes/s",
                true,
            ),
            CPU,
        ];
        const BATCH: [Metric; 2] = [
            m(
                "throughput",
                "sequential batches of 100 calls",
                "calls/s",
                true,
            ),
            CPU,
        ];
        const CONNECT: [Metric; 2] = [m("connect", "connect + call + close", "conns/s", true), CPU];
        const SERVER_REQUEST: [Metric; 2] = [
            m(
                "round_trips",
                "server→client request round trips",
                "requests/s",
                true,
            ),
            CPU,
        ];
        const MEMORY: [Metric; 2] = [
            m(
                "bytes_per_pending",
                "live heap per pending call",
                "bytes",
                false,
            ),
            m(
                "allocs_per_pending",
                "allocations per pending call",
                "allocs",
                false,
            ),
        ];
        const IDLE: [Metric; 4] = [
            m(
                "rss_per_conn",
                "RSS per idle connection (own process)",
                "KiB",
                false,
            ),
            m(
                "heap_per_conn",
                "live heap per idle connection",
                "KiB",
                false,
            ),
            m(
                "open_rate",
                "opening them, 64 handshakes in flight",
                "conns/s",
                true,
            ),
            m("open_ms", "time to open them all", "ms", false),
        ];
        match self {
            Scenario::Seq => &SEQ,
            Scenario::Inflight16 | Scenario::Inflight256 => &INFLIGHT,
            Scenario::Blob1m => &BLOB,
            Scenario::Upload1m => &UPLOAD,
            Scenario::Notify => &NOTIFY,
            Scenario::Connect => &CONNECT,
            Scenario::ServerRequest => &SERVER_REQUEST,
            Scenario::Memory => &MEMORY,
            Scenario::Idle => &IDLE,
            Scenario::SubTicks | Scenario::SubTicksLean => &SUB_TICKS,
            Scenario::Batch100 | Scenario::Batch100Lean => &BATCH,
        }
    }
}

/// How much one run of a scenario does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Calls (notifications, connections, pending calls) measured.
    pub count: u64,
    /// Untimed calls first, on the same connection.
    pub warmup: u64,
    /// Wall-time bound of the measured part: the run stops issuing new work
    /// when it passes.
    pub limit: Duration,
}

/// What one run measured: one value per [`Scenario::metrics`] entry.
/// The `server_request` figures from the server's tally: round trips per
/// second, and client CPU per request (connecting and warm-up included).
pub fn server_request_sample(
    outcome: crate::server::JobResult,
    measure: &Measure,
    plan: &Plan,
) -> Result<Sample> {
    ensure!(outcome.completed > 0, "no request answered");
    Ok(Sample {
        values: vec![
            outcome.completed as f64 / outcome.elapsed.as_secs_f64(),
            measure.cpu_per_op_us(plan.warmup + outcome.completed),
        ],
        ops: outcome.completed,
        by_time: outcome.by_time,
    })
}

#[derive(Clone, Debug)]
pub struct Sample {
    pub values: Vec<f64>,
    /// Operations completed in the measured part.
    pub ops: u64,
    /// Stopped by the time bound rather than the count.
    pub by_time: bool,
}

/// Wall clock and this thread's CPU time since the measured part began.
pub struct Measure {
    pub start: Instant,
    cpu: Duration,
}

impl Measure {
    pub fn start() -> Measure {
        Measure {
            cpu: crate::cpu::thread_cpu(),
            start: Instant::now(),
        }
    }

    /// Client thread CPU per operation, in µs.
    pub fn cpu_per_op_us(&self, ops: u64) -> f64 {
        (crate::cpu::thread_cpu() - self.cpu).as_secs_f64() * 1e6 / ops.max(1) as f64
    }

    /// `ops × per_op` per second, then CPU per op.
    pub fn rate(&self, ops: u64, planned: u64, per_op: f64) -> Sample {
        let elapsed = self.start.elapsed();
        Sample {
            values: vec![
                ops as f64 * per_op / elapsed.as_secs_f64(),
                self.cpu_per_op_us(ops),
            ],
            ops,
            by_time: ops < planned,
        }
    }

    /// p50 and p99 of `lat`, then CPU per call.
    pub fn latency(&self, mut lat: Vec<Duration>, planned: u64) -> Sample {
        let cpu = self.cpu_per_op_us(lat.len() as u64);
        lat.sort_unstable();
        Sample {
            values: vec![percentile_us(&lat, 50.0), percentile_us(&lat, 99.0), cpu],
            ops: lat.len() as u64,
            by_time: (lat.len() as u64) < planned,
        }
    }
}

/// Everything a client thread needs to know about the servers.
#[derive(Clone)]
pub struct Env {
    pub rpc_url: String,
    pub sreq_url: String,
    /// The notification sink (`notify` only).
    pub sink_url: String,
    /// The lean server (the `_lean` scenarios).
    pub lean_url: String,
    pub rpc: Arc<RpcState>,
    pub sreq: Arc<ServerRequestState>,
}

impl Env {
    /// The server a scenario talks to (`server_request` has its own).
    pub fn url(&self, scenario: Scenario) -> &str {
        match scenario {
            Scenario::Notify => &self.sink_url,
            Scenario::SubTicksLean | Scenario::Batch100Lean => &self.lean_url,
            _ => &self.rpc_url,
        }
    }
}

/// Calls in one `batch100` batch.
pub const BATCH: u64 = 100;

/// A live `subscribe_ticks` subscription: its items are 1, 2, 3, … .
pub trait Ticks {
    /// The next item decoded as a `u64`; `None` once the subscription has
    /// ended. Anything else (a lag report, an undecodable item) is an error.
    async fn next_tick(&mut self) -> Result<Option<u64>>;
    /// Ends the subscription (the server is told).
    async fn unsubscribe(self) -> Result<()>;
}

/// A client that exposes every benchmarked operation as an awaitable call.
/// Results are checked (shape or length) so a broken client cannot look fast.
pub trait RpcBench: Sized {
    type Ticks: Ticks;
    async fn connect(url: &str) -> Result<Self>;
    /// Connects with room for `capacity` queued notifications per
    /// subscription, for clients that size subscription queues per
    /// connection (jsonrpsee); by default, [`connect`](Self::connect).
    async fn connect_subscriber(url: &str, capacity: u64) -> Result<Self> {
        let _ = capacity;
        Self::connect(url).await
    }
    /// `subscribe_ticks` with `[n]` (unsubscribe `unsubscribe_ticks`), with
    /// a queue large enough for all `n` items.
    async fn subscribe_ticks(&self, n: u64) -> Result<Self::Ticks>;
    /// One batch of [`BATCH`] `echo` calls with `["bench", 42]`, each result
    /// decoded as a `serde_json::Value` and checked.
    async fn batch100(&self) -> Result<()>;
    /// `echo` with params `["bench", 42]`, result as a `serde_json::Value`.
    async fn echo(&self) -> Result<()>;
    /// `blob`: returns the length of the 1 MiB string result.
    async fn blob(&self) -> Result<usize>;
    /// `upload` with `[data]`: returns the length the server saw.
    async fn upload(&self, data: &str) -> Result<u64>;
    /// Notification `note` with `[1]`.
    async fn note(&self) -> Result<()>;
    /// `count`: notifications the server has received.
    async fn count(&self) -> Result<u64>;
    /// `hold`: answered only when the memory scenario releases it.
    async fn hold(&self) -> Result<u64>;
    async fn close(self) -> Result<()>;
    /// Ends the connection the way this client's users do when they are
    /// done with it (what `connect` measures): by default an awaited close.
    async fn end(self) -> Result<()> {
        self.close().await
    }
}

pub fn check_echo(v: &serde_json::Value) -> Result<()> {
    ensure!(
        v.as_array().is_some_and(|a| a.len() == 2),
        "unexpected echo result {v}"
    );
    Ok(())
}

/// Run one scenario (except `server_request`) with a generic client.
pub async fn run<C: RpcBench>(scenario: Scenario, plan: &Plan, env: &Env) -> Result<Sample> {
    if scenario == Scenario::Connect {
        return connect::<C>(&env.rpc_url, plan).await;
    }
    let url = env.url(scenario);
    let client = if scenario.work() == Scenario::SubTicks {
        C::connect_subscriber(url, plan.count.max(plan.warmup)).await?
    } else {
        C::connect(url).await?
    };
    let sample = match scenario.work() {
        Scenario::Seq => seq(&client, plan).await?,
        Scenario::Inflight16 => inflight(&client, 16, plan).await?,
        Scenario::Inflight256 => inflight(&client, 256, plan).await?,
        Scenario::Blob1m => blob(&client, plan).await?,
        Scenario::Upload1m => upload(&client, plan).await?,
        Scenario::Notify => notify(&client, plan).await?,
        Scenario::Memory => memory(&client, plan, &env.rpc).await?,
        Scenario::SubTicks => sub_ticks(&client, plan).await?,
        Scenario::Batch100 => batch100(&client, plan).await?,
        Scenario::Connect
        | Scenario::ServerRequest
        | Scenario::Idle
        | Scenario::SubTicksLean
        | Scenario::Batch100Lean => unreachable!(),
    };
    client.close().await?;
    Ok(sample)
}

/// Nearest-rank percentile of sorted latencies, in µs.
pub fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e6
}

async fn seq<C: RpcBench>(c: &C, plan: &Plan) -> Result<Sample> {
    for _ in 0..plan.warmup {
        c.echo().await?;
    }
    let mut lat = Vec::with_capacity(plan.count as usize);
    let measure = Measure::start();
    let deadline = measure.start + plan.limit;
    while (lat.len() as u64) < plan.count {
        let t = Instant::now();
        c.echo().await?;
        let now = Instant::now();
        lat.push(now - t);
        if now >= deadline {
            break;
        }
    }
    Ok(measure.latency(lat, plan.count))
}

/// Keep `window` calls outstanding until `count` have been issued or
/// `deadline` passes; returns how many completed.
async fn window<'a, C, F, Fut>(
    window: u64,
    count: u64,
    deadline: Instant,
    c: &'a C,
    f: F,
) -> Result<u64>
where
    F: Fn(&'a C) -> Fut,
    Fut: Future<Output = Result<()>> + 'a,
{
    let mut pending = FuturesUnordered::new();
    let mut issued = 0;
    while issued < count.min(window) {
        pending.push(f(c));
        issued += 1;
    }
    let mut done = 0;
    while let Some(r) = pending.next().await {
        r?;
        done += 1;
        if issued < count && Instant::now() < deadline {
            pending.push(f(c));
            issued += 1;
        }
    }
    Ok(done)
}

async fn inflight<C: RpcBench>(c: &C, width: u64, plan: &Plan) -> Result<Sample> {
    let far = Instant::now() + plan.limit * 3;
    window(width, plan.warmup, far, c, |c| c.echo()).await?;
    let measure = Measure::start();
    let start = measure.start;
    let done = window(width, plan.count, start + plan.limit, c, |c| c.echo()).await?;
    Ok(measure.rate(done, plan.count, 1.0))
}

async fn blob<C: RpcBench>(c: &C, plan: &Plan) -> Result<Sample> {
    for _ in 0..plan.warmup {
        ensure!(c.blob().await? == BLOB_LEN, "short blob");
    }
    let measure = Measure::start();
    let start = measure.start;
    let deadline = start + plan.limit;
    let mut done = 0;
    while done < plan.count {
        ensure!(c.blob().await? == BLOB_LEN, "short blob");
        done += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(measure.rate(done, plan.count, BLOB_LEN as f64 / 1e6))
}

async fn upload<C: RpcBench>(c: &C, plan: &Plan) -> Result<Sample> {
    let data = crate::server::blob_string();
    for _ in 0..plan.warmup {
        ensure!(c.upload(&data).await? == BLOB_LEN as u64, "short upload");
    }
    let measure = Measure::start();
    let start = measure.start;
    let deadline = start + plan.limit;
    let mut done = 0;
    while done < plan.count {
        ensure!(c.upload(&data).await? == BLOB_LEN as u64, "short upload");
        done += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(measure.rate(done, plan.count, BLOB_LEN as f64 / 1e6))
}

/// Call `count` until the server reports `target` notifications. The server
/// runs every incoming message as its own task, so a `count` call can overtake
/// the last few notifications; asking again closes that gap.
async fn barrier<C: RpcBench>(c: &C, target: u64) -> Result<()> {
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

async fn notify<C: RpcBench>(c: &C, plan: &Plan) -> Result<Sample> {
    let base = c.count().await?;
    for _ in 0..plan.warmup {
        c.note().await?;
    }
    barrier(c, base + plan.warmup).await?;
    let base = base + plan.warmup;
    let measure = Measure::start();
    let start = measure.start;
    let deadline = start + plan.limit;
    let mut sent = 0;
    while sent < plan.count {
        c.note().await?;
        sent += 1;
        if sent % 64 == 0 && Instant::now() >= deadline {
            break;
        }
    }
    barrier(c, base + sent).await?;
    Ok(measure.rate(sent, plan.count, 1.0))
}

async fn connect<C: RpcBench>(url: &str, plan: &Plan) -> Result<Sample> {
    async fn once<C: RpcBench>(url: &str) -> Result<()> {
        let c = C::connect(url).await?;
        c.echo().await?;
        c.end().await
    }
    for _ in 0..plan.warmup {
        once::<C>(url).await?;
    }
    let measure = Measure::start();
    let start = measure.start;
    let deadline = start + plan.limit;
    let mut done = 0;
    while done < plan.count {
        once::<C>(url).await?;
        done += 1;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(measure.rate(done, plan.count, 1.0))
}

/// Poll `state` until `n` `hold` calls have arrived at the server.
pub async fn wait_for_held(state: &RpcState, n: u64, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while state.held() < n {
        if Instant::now() >= deadline {
            bail!("server saw {} of {n} held calls in {limit:?}", state.held());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Live heap (and allocations) on this thread per pending call, from before
/// issuing `plan.count` `hold` calls to when the server has seen them all.
pub fn memory_sample(before: Snapshot, after: Snapshot, n: u64) -> Sample {
    Sample {
        values: vec![
            (after.live() - before.live()) as f64 / n as f64,
            after.allocations.wrapping_sub(before.allocations) as f64 / n as f64,
        ],
        ops: n,
        by_time: false,
    }
}

async fn memory<C: RpcBench>(c: &C, plan: &Plan, state: &RpcState) -> Result<Sample> {
    for _ in 0..plan.warmup {
        c.echo().await?;
    }
    let n = plan.count;
    state.reset_hold();
    let before = Snapshot::now();
    let mut pending: FuturesUnordered<_> = (0..n).map(|_| c.hold()).collect();
    // Drive the calls (they must be polled to be sent) until the server has
    // them all; none may complete before the release.
    tokio::select! {
        r = pending.next() => bail!("a held call completed before the release: {:?}", r.map(|r| r.map_err(|e| e.to_string()))),
        r = wait_for_held(state, n, plan.limit) => r?,
    }
    let after = Snapshot::now();
    state.release_hold();
    let drained = tokio::time::timeout(plan.limit + Duration::from_secs(30), async {
        while let Some(r) = pending.next().await {
            r?;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await;
    match drained {
        Ok(r) => r?,
        Err(_) => bail!("held calls did not complete after the release"),
    }
    Ok(memory_sample(before, after, n))
}

/// Takes the items of a `subscribe_ticks` subscription until `n` have come
/// or `deadline` has passed (looked at every 64 items), checking that they
/// are 1, 2, 3, … in order; returns how many came.
async fn take_ticks<T: Ticks>(ticks: &mut T, n: u64, deadline: Instant) -> Result<u64> {
    let mut got = 0;
    while got < n {
        match ticks.next_tick().await? {
            Some(tick) => ensure!(tick == got + 1, "tick {tick} where {} was due", got + 1),
            None => bail!("the subscription ended after {got} of {n} ticks"),
        }
        got += 1;
        if got % 64 == 0 && Instant::now() >= deadline {
            break;
        }
    }
    Ok(got)
}

/// Bounds a wait for ticks: items that stop coming fail the run.
pub async fn ticks_within<F: Future<Output = Result<u64>>>(limit: Duration, f: F) -> Result<u64> {
    let bound = limit + Duration::from_secs(30);
    tokio::time::timeout(bound, f)
        .await
        .map_err(|_| anyhow::anyhow!("ticks stopped coming (no end within {bound:?})"))?
}

/// One subscription delivering `plan.count` items as fast as the server
/// sends them, timed from the subscribe call to the last item (a warm-up
/// subscription of `plan.warmup` items first). Unsubscribing is not timed.
async fn sub_ticks<C: RpcBench>(c: &C, plan: &Plan) -> Result<Sample> {
    let far = Instant::now() + plan.limit * 3;
    let mut warm = c.subscribe_ticks(plan.warmup).await?;
    let got = ticks_within(plan.limit * 3, take_ticks(&mut warm, plan.warmup, far)).await?;
    ensure!(
        got == plan.warmup,
        "warm-up: {got} of {} ticks",
        plan.warmup
    );
    warm.unsubscribe().await?;
    let measure = Measure::start();
    let deadline = measure.start + plan.limit;
    let mut ticks = c.subscribe_ticks(plan.count).await?;
    let got = ticks_within(plan.limit, take_ticks(&mut ticks, plan.count, deadline)).await?;
    let sample = measure.rate(got, plan.count, 1.0);
    ticks.unsubscribe().await?;
    Ok(sample)
}

/// Sequential batches of [`BATCH`] `echo` calls; `plan.count` and
/// `plan.warmup` are in calls (multiples of [`BATCH`]).
async fn batch100<C: RpcBench>(c: &C, plan: &Plan) -> Result<Sample> {
    for _ in 0..plan.warmup.div_ceil(BATCH) {
        c.batch100().await?;
    }
    let measure = Measure::start();
    let deadline = measure.start + plan.limit;
    let mut done = 0;
    while done < plan.count {
        c.batch100().await?;
        done += BATCH;
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(measure.rate(done, plan.count, 1.0))
}
