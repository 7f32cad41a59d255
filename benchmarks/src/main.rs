//! Side-by-side benchmarks of `jsonrpc-websocket` against jsonrpsee's
//! WebSocket client and two raw floors (tokio-tungstenite, and awc as the
//! library uses it), all talking to one jsonrpsee server; and of the
//! library's proxy against a jsonrpsee-based one (`proxy/`). See
//! `benchmarks/README.md`.

mod alloc;
mod clients;
mod cpu;
mod idle;
mod proxy;
mod report;
mod scenarios;
mod server;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use proxy::{ProxyArgs, ProxyScenario, Side};
use report::Outcome;
use scenarios::{ClientKind, Env, Plan, Scenario, BATCH};

#[global_allocator]
static GLOBAL: alloc::CountingAlloc = alloc::CountingAlloc;

const DEFAULT_CALLS: u64 = 40_000;
const SMOKE_CALLS: u64 = 50;
const DEFAULT_IDLE: u64 = 1_000;
const SMOKE_IDLE: u64 = 50;
const DEFAULT_SUBSCRIBERS: u64 = 1_000;
const SMOKE_SUBSCRIBERS: u64 = 20;
const DEFAULT_FEED: u64 = 1_000;
const SMOKE_FEED: u64 = 20;

const USAGE: &str = "\
usage: cargo run -p benchmarks --release -- [SCENARIO...] [OPTIONS]

scenarios (default: all):
  seq inflight16 inflight256 blob1m upload1m notify connect server_request memory idle
  sub_ticks sub_ticks_lean batch100 batch100_lean
  proxy_http_seq proxy_http_inflight16 proxy_http_inflight256
  proxy_ws_seq proxy_ws_inflight16 proxy_ws_inflight256 proxy_fanout

options:
  --repeat N        runs per client and scenario; the median is reported (default 5, smoke 1)
  --calls N         base count N (default 40000, smoke 50): seq makes N calls,
                    inflight16/inflight256/notify/server_request 3N, blob1m/upload1m
                    N/80 (min 3), connect N/50 (min 3), sub_ticks 5N/4
                    notifications, batch100 3N calls (batches of 100, min 2);
                    a _lean scenario does its base's work against the lean server
  --pending N       outstanding calls in `memory` (default 10000, smoke 500)
  --idle N          connections held open in `idle` (default 1000, smoke 50)
  --time-limit S    wall-time bound of each measured run in seconds (default 10, smoke 5)
  --clients LIST    comma-separated subset of:
                    ours-client,ours-addr,jsonrpsee,raw-tungstenite (or raw),raw-awc
  --sides LIST      the proxy scenarios' sides, a comma-separated subset of:
                    ours-proxy,jsonrpsee-proxy,direct
  --subscribers N   downstream clients in proxy_fanout (default 1000, smoke 20)
  --feed N          items the feed sends each of them (default 1000, smoke 20)
  --smoke           tiny counts and 1 repeat, for CI (seconds)
  --json PATH       JSON-lines output (default: $CARGO_TARGET_DIR or the
                    workspace target/, then benchmarks.jsonl)
  -h, --help        this text
";

struct Args {
    scenarios: Vec<Scenario>,
    clients: Vec<ClientKind>,
    repeat: usize,
    calls: u64,
    pending: u64,
    idle: u64,
    limit: Duration,
    smoke: bool,
    json: PathBuf,
    proxy: ProxyArgs,
}

fn parse_args() -> Result<Option<Args>> {
    let mut scenarios = Vec::new();
    let mut proxy_scenarios = Vec::new();
    let mut clients = ClientKind::ALL.to_vec();
    let mut sides = Side::ALL.to_vec();
    let (mut subscribers, mut feed) = (None, None);
    let (mut repeat, mut calls, mut pending, mut idle, mut limit, mut json) =
        (None, None, None, None, None, None);
    let mut smoke = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--smoke" => smoke = true,
            "--repeat" => repeat = Some(value("--repeat")?.parse::<usize>()?.max(1)),
            "--calls" => calls = Some(value("--calls")?.parse::<u64>()?.max(1)),
            "--pending" => pending = Some(value("--pending")?.parse::<u64>()?.max(1)),
            "--idle" => idle = Some(value("--idle")?.parse::<u64>()?.max(1)),
            "--time-limit" => {
                limit = Some(Duration::from_secs_f64(value("--time-limit")?.parse()?))
            }
            "--json" => json = Some(PathBuf::from(value("--json")?)),
            "--clients" => {
                clients = value("--clients")?
                    .split(',')
                    .map(|n| {
                        ClientKind::from_name(n.trim())
                            .with_context(|| format!("unknown client {n:?}"))
                    })
                    .collect::<Result<_>>()?;
            }
            "--sides" => sides = Side::parse_list(&value("--sides")?)?,
            "--subscribers" => subscribers = Some(value("--subscribers")?.parse::<u64>()?.max(1)),
            "--feed" => feed = Some(value("--feed")?.parse::<u64>()?.max(1)),
            name if !name.starts_with('-') => {
                if let Some(p) = ProxyScenario::from_name(name) {
                    if !proxy_scenarios.contains(&p) {
                        proxy_scenarios.push(p);
                    }
                    continue;
                }
                let s = Scenario::from_name(name)
                    .with_context(|| format!("unknown scenario {name:?}\n\n{USAGE}"))?;
                if !scenarios.contains(&s) {
                    scenarios.push(s);
                }
            }
            other => bail!("unknown option {other:?}\n\n{USAGE}"),
        }
    }
    if scenarios.is_empty() && proxy_scenarios.is_empty() {
        scenarios = Scenario::ALL.to_vec();
        proxy_scenarios = ProxyScenario::ALL.to_vec();
    }
    let json = json.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")))
            .join("benchmarks.jsonl")
    });
    let repeat = repeat.unwrap_or(if smoke { 1 } else { 5 });
    let calls = calls.unwrap_or(if smoke { SMOKE_CALLS } else { DEFAULT_CALLS });
    let limit = limit.unwrap_or(Duration::from_secs(if smoke { 5 } else { 10 }));
    let proxy = ProxyArgs {
        scenarios: proxy_scenarios,
        sides,
        calls,
        subscribers: subscribers.unwrap_or(if smoke {
            SMOKE_SUBSCRIBERS
        } else {
            DEFAULT_SUBSCRIBERS
        }),
        feed: feed.unwrap_or(if smoke { SMOKE_FEED } else { DEFAULT_FEED }),
        repeat,
        limit,
        smoke,
    };
    Ok(Some(Args {
        scenarios,
        clients,
        repeat,
        calls,
        pending: pending.unwrap_or(if smoke { 500 } else { 10_000 }),
        idle: idle.unwrap_or(if smoke { SMOKE_IDLE } else { DEFAULT_IDLE }),
        limit,
        smoke,
        json,
        proxy,
    }))
}

fn plan(s: Scenario, args: &Args) -> Plan {
    let n = args.calls;
    let warm = |count: u64| (count / 10).clamp(10, 1_000);
    let (count, warmup) = match s.work() {
        Scenario::Seq => (n, warm(n)),
        Scenario::ServerRequest => (3 * n, warm(3 * n)),
        Scenario::Inflight16 => (3 * n, warm(3 * n).max(32)),
        Scenario::Inflight256 => (3 * n, warm(3 * n).max(512)),
        Scenario::Notify => (3 * n, warm(3 * n)),
        Scenario::Blob1m | Scenario::Upload1m => ((n / 80).max(3), 2),
        Scenario::Connect => ((n / 50).max(3), 2),
        Scenario::Memory => (args.pending, 100),
        Scenario::SubTicks => {
            let count = (n * 5 / 4).max(1);
            (count, warm(count))
        }
        // In calls, whole batches of 100 (at least 2).
        Scenario::Batch100 => {
            let batches = |calls: u64| calls.div_ceil(BATCH).max(2) * BATCH;
            (batches(3 * n), batches(warm(3 * n)))
        }
        // One warm-up connection (opened, called, closed) before measuring.
        Scenario::Idle => (args.idle, 1),
        Scenario::SubTicksLean | Scenario::Batch100Lean => unreachable!("work() of a base"),
    };
    Plan {
        count,
        warmup,
        limit: args.limit,
    }
}

fn main() -> ExitCode {
    // The hidden modes of the `idle` scenario: this binary re-executed.
    let argv: Vec<String> = std::env::args().collect();
    let hidden = match argv.get(1).map(String::as_str) {
        Some(idle::SERVE_ARG) => Some(idle::serve_main()),
        Some(idle::CHILD_ARG) => Some(idle::child_main(&argv[2..])),
        _ => None,
    };
    if let Some(result) = hidden {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<bool> {
    let Some(args) = parse_args()? else {
        return Ok(true);
    };
    let started = Instant::now();
    idle::raise_nofile();
    let servers = server::start()?;
    let env = Env {
        rpc_url: servers.rpc_url.clone(),
        sreq_url: servers.sreq_url.clone(),
        sink_url: servers.sink_url.clone(),
        lean_url: servers.lean_url.clone(),
        rpc: servers.rpc.clone(),
        sreq: servers.sreq.clone(),
    };
    eprintln!(
        "server: jsonrpsee at {}, server-request server at {}, lean server at {}; repeat {}, time limit {:?}/run{}",
        env.rpc_url,
        env.sreq_url,
        env.lean_url,
        args.repeat,
        args.limit,
        if args.smoke { ", smoke" } else { "" }
    );

    let mut json_lines = Vec::new();
    let mut all: HashMap<Scenario, Vec<Outcome>> = HashMap::new();
    let mut failures = 0;
    for &scenario in &args.scenarios {
        let clients: Vec<ClientKind> = scenario
            .clients()
            .iter()
            .copied()
            .filter(|k| args.clients.contains(k))
            .collect();
        if clients.is_empty() {
            continue;
        }
        let plan = plan(scenario, &args);
        // `idle` talks to a server in a process of its own, started here and
        // stopped at the end of the scenario.
        let idle_server = if scenario == Scenario::Idle {
            match idle::IdleServer::start() {
                Ok(s) => Some(s),
                Err(e) => {
                    failures += 1;
                    eprintln!("  idle: ERROR {e:#}");
                    continue;
                }
            }
        } else {
            None
        };
        let mut outcomes: Vec<Outcome> = clients
            .iter()
            .map(|&kind| Outcome {
                kind,
                runs: Vec::new(),
            })
            .collect();
        let scenario_start = Instant::now();
        for r in 0..args.repeat {
            // Interleave, rotating the order each repeat.
            for i in 0..clients.len() {
                let ix = (i + r) % clients.len();
                let kind = clients[ix];
                let t = Instant::now();
                let result = match &idle_server {
                    Some(server) => idle::run_once(kind, &plan, &server.url),
                    None => clients::run_once(kind, scenario, &plan, &env),
                }
                .map_err(|e| format!("{e:#}"));
                match &result {
                    Ok(s) => eprintln!(
                        "  {:<14} {}/{} {:<16} {:>12} {} ({} {}, {:.1}s)",
                        scenario.name(),
                        r + 1,
                        args.repeat,
                        kind.name(),
                        report::fmt_num(s.values[0]),
                        scenario.metrics()[0].unit,
                        s.ops,
                        scenario.op_name(),
                        t.elapsed().as_secs_f64()
                    ),
                    Err(e) => {
                        failures += 1;
                        eprintln!(
                            "  {:<14} {}/{} {:<16} ERROR {e}",
                            scenario.name(),
                            r + 1,
                            args.repeat,
                            kind.name()
                        );
                    }
                }
                outcomes[ix].runs.push(result);
            }
        }
        drop(idle_server);
        println!();
        for ix in 0..scenario.metrics().len() {
            println!("{}", report::table(scenario, ix, &outcomes, args.repeat));
        }
        println!(
            "  ({} in {:.1}s)",
            scenario.name(),
            scenario_start.elapsed().as_secs_f64()
        );
        std::io::stdout().flush()?;
        json_lines.extend(report::json_lines(
            scenario,
            &outcomes,
            args.repeat,
            args.smoke,
        ));
        all.insert(scenario, outcomes);
    }
    let proxied = proxy::run(&args.proxy, &env.rpc_url);
    failures += proxied.failures;
    json_lines.extend(proxied.json_lines);
    drop(servers);

    if !all.is_empty() {
        println!("\n{}", summary(&all));
    }
    if !args.proxy.scenarios.is_empty() {
        println!("\n{}", proxied.summary);
    }
    if let Some(dir) = args.json.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut text = json_lines.join("\n");
    text.push('\n');
    std::fs::write(&args.json, text).with_context(|| format!("writing {}", args.json.display()))?;
    println!(
        "wrote {} ({} lines); total {:.1}s{}",
        args.json.display(),
        json_lines.len(),
        started.elapsed().as_secs_f64(),
        if failures > 0 {
            format!("; {failures} runs FAILED")
        } else {
            String::new()
        }
    );
    Ok(failures == 0)
}

/// What a summary row must reach: its ratio (ours-client / other) at least
/// or at most this.
#[derive(Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
    /// No target; higher (`true`) or lower is better.
    None(bool),
}

impl Target {
    fn text(self) -> String {
        match self {
            Target::AtLeast(t) => format!("target >= {t:.2}"),
            Target::AtMost(t) => format!("target <= {t:.2}"),
            Target::None(true) => "no target, >1 better".into(),
            Target::None(false) => "no target, <1 better".into(),
        }
    }

    fn verdict(self, ratio: Option<f64>) -> &'static str {
        match (self, ratio) {
            (Target::AtLeast(t), Some(r)) if r >= t => "met",
            (Target::AtMost(t), Some(r)) if r <= t => "met",
            (Target::AtLeast(_) | Target::AtMost(_), Some(_)) => "MISSED",
            _ => "",
        }
    }
}

/// The headline ratios, each with its target.
fn summary(all: &HashMap<Scenario, Vec<Outcome>>) -> String {
    use ClientKind::{Jsonrpsee, Raw, RawAwc};
    use Scenario as S;
    let med = |s: Scenario, k: ClientKind, m: usize| {
        all.get(&s)
            .and_then(|os| os.iter().find(|o| o.kind == k))
            .and_then(|o| o.median(m))
    };
    let mut out = String::from("summary (ours-client / other; ours-addr in brackets)\n");
    let rows: [(&str, Scenario, usize, ClientKind, Target); 17] = [
        (
            "inflight16 calls/s vs jsonrpsee",
            S::Inflight16,
            0,
            Jsonrpsee,
            Target::AtLeast(1.0),
        ),
        (
            "inflight256 calls/s vs jsonrpsee",
            S::Inflight256,
            0,
            Jsonrpsee,
            Target::AtLeast(1.0),
        ),
        (
            "seq p50 latency vs jsonrpsee",
            S::Seq,
            0,
            Jsonrpsee,
            Target::AtMost(1.0),
        ),
        (
            "seq p50 latency vs raw",
            S::Seq,
            0,
            Raw,
            Target::AtMost(1.25),
        ),
        (
            "blob1m MB/s vs jsonrpsee",
            S::Blob1m,
            0,
            Jsonrpsee,
            Target::AtLeast(1.0),
        ),
        (
            "blob1m MB/s vs raw-awc",
            S::Blob1m,
            0,
            RawAwc,
            Target::AtLeast(0.8),
        ),
        (
            "upload1m MB/s vs jsonrpsee",
            S::Upload1m,
            0,
            Jsonrpsee,
            Target::AtLeast(1.0),
        ),
        (
            "notify notes/s vs jsonrpsee",
            S::Notify,
            0,
            Jsonrpsee,
            Target::AtLeast(1.5),
        ),
        (
            "connect conns/s vs jsonrpsee",
            S::Connect,
            0,
            Jsonrpsee,
            Target::AtLeast(1.0),
        ),
        (
            "idle KiB/conn vs raw-awc",
            S::Idle,
            0,
            RawAwc,
            Target::AtMost(1.1),
        ),
        (
            "idle open conns/s vs jsonrpsee",
            S::Idle,
            2,
            Jsonrpsee,
            Target::AtLeast(1.0),
        ),
        (
            "memory bytes/pending call vs jsonrpsee",
            S::Memory,
            0,
            Jsonrpsee,
            Target::AtMost(1.0),
        ),
        (
            "sub_ticks notes/s vs jsonrpsee",
            S::SubTicks,
            0,
            Jsonrpsee,
            Target::AtLeast(1.3),
        ),
        (
            "sub_ticks_lean notes/s vs jsonrpsee",
            S::SubTicksLean,
            0,
            Jsonrpsee,
            Target::AtLeast(1.3),
        ),
        (
            "batch100 calls/s vs jsonrpsee",
            S::Batch100,
            0,
            Jsonrpsee,
            Target::AtLeast(1.3),
        ),
        (
            "batch100_lean calls/s vs jsonrpsee",
            S::Batch100Lean,
            0,
            Jsonrpsee,
            Target::AtLeast(1.3),
        ),
        (
            "server_request req/s vs raw",
            S::ServerRequest,
            0,
            Raw,
            Target::None(true),
        ),
    ];
    for (label, s, m, other, target) in rows {
        if !all.contains_key(&s) {
            continue;
        }
        let theirs = med(s, other, m);
        let ratio = |k| match (med(s, k, m), theirs) {
            (Some(a), Some(b)) if b != 0.0 => Some(a / b),
            _ => None,
        };
        let fmt = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}x"));
        let ours = ratio(ClientKind::OursClient);
        let extra = match s {
            S::Memory | S::Idle => format!(
                "  ({} vs {} {})",
                med(s, ClientKind::OursClient, m).map_or("-".into(), report::fmt_num),
                theirs.map_or("-".into(), report::fmt_num),
                s.metrics()[m].unit
            ),
            _ => String::new(),
        };
        let line = format!(
            "  {label:<40} {:>7} {:<9} {:<22} {:<6}{extra}",
            fmt(ours),
            format!("[{}]", fmt(ratio(ClientKind::OursAddr))),
            format!("({})", target.text()),
            target.verdict(ours),
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
