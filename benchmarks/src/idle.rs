//! The `idle` scenario: N idle connections from one process, measured in
//! processes of their own so that RSS counts only the client.
//!
//! - The server runs in a child process (`--serve-idle`): the same jsonrpsee
//!   server as the other scenarios, started by this binary re-executed. It
//!   prints `port <n>` and runs until its stdin closes, so it never outlives
//!   the parent.
//! - Each measured run is a child process too (`--idle-child <client> <url>
//!   <n> <limit-secs>`): it opens one warm-up connection, reads RSS, opens N
//!   connections (at most 64 handshakes in flight), makes one `echo` call on
//!   each, waits 200 ms, reads RSS again, closes them and prints one JSON line.
//!   Earlier runs, glibc arenas, and the parent's own heap do not pollute it.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use futures_util::{stream, StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};

use crate::alloc::{self, Snapshot};
use crate::clients::{jsonrpsee::Jsonrpsee, ours::OursClient, raw_awc};
use crate::scenarios::{ClientKind, Plan, RpcBench, Sample};

/// Handshakes in flight while opening, for every client.
pub const HANDSHAKES_IN_FLIGHT: usize = 64;
/// Settling time between the last `echo` and reading RSS.
const SETTLE: Duration = Duration::from_millis(200);

pub const SERVE_ARG: &str = "--serve-idle";
pub const CHILD_ARG: &str = "--idle-child";

/// Raise the soft limit of open files to the hard limit (1,000 connections
/// need more than the usual 1,024 descriptors with everything else open).
pub fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Resident set size of this process, in KiB (`/proc/self/statm`).
fn rss_kib() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .context("short /proc/self/statm")?
        .parse()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    ensure!(page > 0, "no page size");
    Ok(resident * page as u64 / 1024)
}

// ---------------------------------------------------------------- server

/// The idle server process; killed (after its stdin is closed) on drop.
pub struct IdleServer {
    child: Child,
    stdin: Option<ChildStdin>,
    pub url: String,
}

impl IdleServer {
    pub fn start() -> Result<IdleServer> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg(SERVE_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the idle server process")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the port line, then drains stdout until the process exits.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let mut server = IdleServer {
            child,
            stdin,
            url: String::new(),
        };
        let line = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => bail!("the idle server exited without printing its port"),
            Err(_) => bail!("the idle server did not print its port in 15 s"),
        };
        let port: u16 = line
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .with_context(|| format!("unexpected line from the idle server: {line:?}"))?;
        server.url = format!("ws://127.0.0.1:{port}");
        Ok(server)
    }
}

impl Drop for IdleServer {
    fn drop(&mut self) {
        // Closing stdin asks it to stop; kill it if it has not within 3 s.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--serve-idle`: the jsonrpsee server until stdin closes.
pub fn serve_main() -> Result<()> {
    raise_nofile();
    let servers = crate::server::start()?;
    let port = servers
        .rpc_url
        .rsplit(':')
        .next()
        .context("server URL without a port")?
        .to_owned();
    let mut out = std::io::stdout().lock();
    writeln!(out, "port {port}")?;
    out.flush()?;
    drop(out);
    // Until the parent closes our stdin (or exits).
    let mut sink = [0u8; 64];
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    drop(servers);
    Ok(())
}

// ----------------------------------------------------------------- parent

/// What one child run reports.
#[derive(Serialize, Deserialize, Debug)]
struct ChildReport {
    n: u64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    /// Live heap on the client thread, after − before (the counting
    /// allocator; the client runs on that one thread).
    heap_bytes: i64,
    allocations: u64,
    open_secs: f64,
}

/// One measured run: a child process, bounded in time (killed past it).
pub fn run_once(kind: ClientKind, plan: &Plan, url: &str) -> Result<Sample> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg(CHILD_ARG)
        .arg(kind.name())
        .arg(url)
        .arg(plan.count.to_string())
        .arg(plan.limit.as_secs_f64().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting an idle child process")?;
    let read_all = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read_all(Box::new(child.stdout.take().context("no stdout")?));
    let err = read_all(Box::new(child.stderr.take().context("no stderr")?));
    let limit = child_limit(plan) + Duration::from_secs(15);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("idle child did not finish in {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if !status.success() {
        let last = err.lines().rev().find(|l| !l.trim().is_empty());
        bail!(
            "idle child failed ({status}): {}",
            last.unwrap_or("no message")
        );
    }
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("idle child printed no report")?;
    let r: ChildReport = serde_json::from_str(line)?;
    ensure!(
        r.n == plan.count && r.n > 0,
        "idle child opened {} connections",
        r.n
    );
    let n = r.n as f64;
    Ok(Sample {
        values: vec![
            (r.rss_after_kib as f64 - r.rss_before_kib as f64) / n,
            r.heap_bytes as f64 / 1024.0 / n,
            n / r.open_secs,
            r.open_secs * 1e3,
        ],
        ops: r.n,
        by_time: false,
    })
}

/// The child's own bound on everything it does.
fn child_limit(plan: &Plan) -> Duration {
    plan.limit * 3 + Duration::from_secs(30)
}

// ------------------------------------------------------------------ child

/// A client as the idle scenario uses it.
trait IdleClient: Sized {
    /// Shared by all connections of a run (raw-awc: one awc client).
    type Ctx;
    fn context() -> Self::Ctx;
    async fn open(ctx: &Self::Ctx, url: &str) -> Result<Self>;
    async fn echo(&mut self, id: u64) -> Result<()>;
    async fn close(self) -> Result<()>;
}

/// A typed client through the same `RpcBench` code as the other scenarios
/// (same builder settings).
struct Typed<C>(C);

impl<C: RpcBench> IdleClient for Typed<C> {
    type Ctx = ();
    fn context() {}
    async fn open(_: &(), url: &str) -> Result<Self> {
        Ok(Typed(C::connect(url).await?))
    }
    async fn echo(&mut self, _: u64) -> Result<()> {
        self.0.echo().await
    }
    async fn close(self) -> Result<()> {
        self.0.close().await
    }
}

impl IdleClient for raw_awc::Conn {
    type Ctx = awc::Client;
    fn context() -> awc::Client {
        raw_awc::awc_client()
    }
    async fn open(ctx: &awc::Client, url: &str) -> Result<Self> {
        raw_awc::Conn::connect(ctx, url).await
    }
    async fn echo(&mut self, id: u64) -> Result<()> {
        raw_awc::Conn::echo(self, id).await
    }
    async fn close(self) -> Result<()> {
        raw_awc::Conn::close(self).await
    }
}

/// `--idle-child <client> <url> <n> <limit-secs>`: one measured run; prints
/// one JSON line.
pub fn child_main(args: &[String]) -> Result<()> {
    let [client, url, n, limit] = args else {
        bail!("usage: {CHILD_ARG} <client> <url> <n> <limit-secs>");
    };
    let kind = ClientKind::from_name(client).with_context(|| format!("unknown client {client}"))?;
    let n: u64 = n.parse()?;
    let limit = Duration::from_secs_f64(limit.parse()?);
    raise_nofile();
    // Everything the client does runs on this thread.
    alloc::count_this_thread();
    let guard = child_limit(&Plan {
        count: n,
        warmup: 1,
        limit,
    });
    let url = url.as_str();
    let bounded = async move {
        let body = async {
            match kind {
                ClientKind::OursClient => measure::<Typed<OursClient>>(url, n, limit).await,
                ClientKind::Jsonrpsee => measure::<Typed<Jsonrpsee>>(url, n, limit).await,
                ClientKind::RawAwc => measure::<raw_awc::Conn>(url, n, limit).await,
                other => bail!("{} does not take part in idle", other.name()),
            }
        };
        tokio::time::timeout(guard, body)
            .await
            .unwrap_or_else(|_| Err(anyhow!("idle run did not finish in {guard:?}")))
    };
    let report = match kind {
        ClientKind::Jsonrpsee => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(bounded),
        _ => actix_rt::System::new().block_on(bounded),
    }?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn measure<C: IdleClient>(url: &str, n: u64, limit: Duration) -> Result<ChildReport> {
    let ctx = C::context();
    // One warm-up connection first, so one-time costs (lazy statics, the
    // runtime's first allocations, awc's client) are not counted.
    let mut warm = C::open(&ctx, url).await?;
    warm.echo(1).await?;
    warm.close().await?;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let rss_before_kib = rss_kib()?;
    let heap_before = Snapshot::now();
    let start = Instant::now();
    let open = stream::iter(0..n)
        .map(|_| C::open(&ctx, url))
        .buffer_unordered(HANDSHAKES_IN_FLIGHT)
        .try_collect::<Vec<C>>();
    let mut conns = tokio::time::timeout(limit * 2, open)
        .await
        .map_err(|_| anyhow!("{n} connections not open in {:?}", limit * 2))??;
    let open_secs = start.elapsed().as_secs_f64();

    // One call on each, so each is known to work.
    let calls = stream::iter(conns.iter_mut())
        .map(|c| c.echo(2))
        .buffer_unordered(HANDSHAKES_IN_FLIGHT)
        .try_for_each(|()| async { Ok(()) });
    tokio::time::timeout(limit, calls)
        .await
        .map_err(|_| anyhow!("echo on {n} connections not done in {limit:?}"))??;
    tokio::time::sleep(SETTLE).await;
    let rss_after_kib = rss_kib()?;
    let heap_after = Snapshot::now();

    // Close them all (bounded; failures here do not change the figures).
    let closing = stream::iter(conns)
        .map(C::close)
        .buffer_unordered(HANDSHAKES_IN_FLIGHT)
        .for_each(|_| async {});
    let _ = tokio::time::timeout(Duration::from_secs(10), closing).await;

    Ok(ChildReport {
        n,
        rss_before_kib,
        rss_after_kib,
        heap_bytes: heap_after.live() - heap_before.live(),
        allocations: heap_after.allocations.wrapping_sub(heap_before.allocations),
        open_secs,
    })
}
