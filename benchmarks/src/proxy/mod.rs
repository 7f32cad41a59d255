//! The proxy scenarios: the same `echo` calls through our proxy
//! (`jsonrpc_websocket::proxy` on actix-web), through a proxy built the
//! obvious way on jsonrpsee, and straight at the upstream; and N websocket
//! clients subscribed to one feed through each. See `benchmarks/README.md`,
//! "Proxy scenarios".
//!
//! - `front`: the two proxies, each on one thread, and the probe that reads
//!   a proxy thread's CPU time and live heap.
//! - `client`: the downstream client, the same for every side.
//! - `feed`: the upstream of `proxy_fanout`.
//! - `fanout`: the `proxy_fanout` run.

mod client;
mod fanout;
mod feed;
mod front;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::json;

use crate::report::{fmt_num, median};
use crate::scenarios::{Metric, Plan, Sample};
use client::{Load, Target};
use fanout::FanoutPlan;
use feed::FeedServer;
use front::{Front, FrontOptions, Prober};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyScenario {
    HttpSeq,
    HttpInflight16,
    HttpInflight256,
    WsSeq,
    WsInflight16,
    WsInflight256,
    Fanout,
}

/// What a side's figures are compared with in the "vs direct" column.
#[derive(Clone, Copy, PartialEq, Eq)]
enum VsDirect {
    /// The difference (latency a proxy adds).
    Added,
    /// The ratio side / direct.
    Ratio,
    None,
}

const fn metric(
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

const CPU: Metric = metric("proxy_cpu_per_op", "proxy thread CPU per call", "µs", false);
const SEQ: [Metric; 3] = [
    metric("p50_latency", "p50 latency, sequential calls", "µs", false),
    metric("p99_latency", "p99 latency, sequential calls", "µs", false),
    CPU,
];
const INFLIGHT: [Metric; 2] = [metric("throughput", "throughput", "calls/s", true), CPU];
const FANOUT: [Metric; 5] = [
    metric(
        "delivery",
        "notifications delivered, all downstreams together",
        "notes/s",
        true,
    ),
    metric(
        "heap_per_downstream",
        "proxy thread live heap per subscribed downstream",
        "KiB",
        false,
    ),
    metric(
        "upstream_subscriptions",
        "subscriptions the upstream saw",
        "subs",
        false,
    ),
    metric(
        "proxy_cpu_per_note",
        "proxy thread CPU per notification delivered",
        "µs",
        false,
    ),
    metric(
        "subscribe_ms",
        "time for all downstreams to connect and subscribe",
        "ms",
        false,
    ),
];

impl ProxyScenario {
    pub const ALL: [ProxyScenario; 7] = [
        ProxyScenario::HttpSeq,
        ProxyScenario::HttpInflight16,
        ProxyScenario::HttpInflight256,
        ProxyScenario::WsSeq,
        ProxyScenario::WsInflight16,
        ProxyScenario::WsInflight256,
        ProxyScenario::Fanout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProxyScenario::HttpSeq => "proxy_http_seq",
            ProxyScenario::HttpInflight16 => "proxy_http_inflight16",
            ProxyScenario::HttpInflight256 => "proxy_http_inflight256",
            ProxyScenario::WsSeq => "proxy_ws_seq",
            ProxyScenario::WsInflight16 => "proxy_ws_inflight16",
            ProxyScenario::WsInflight256 => "proxy_ws_inflight256",
            ProxyScenario::Fanout => "proxy_fanout",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The calls made, or `None` for `proxy_fanout`.
    fn load(self) -> Option<Load> {
        match self {
            ProxyScenario::HttpSeq | ProxyScenario::WsSeq => Some(Load::Seq),
            ProxyScenario::HttpInflight16 | ProxyScenario::WsInflight16 => Some(Load::InFlight(16)),
            ProxyScenario::HttpInflight256 | ProxyScenario::WsInflight256 => {
                Some(Load::InFlight(256))
            }
            ProxyScenario::Fanout => None,
        }
    }

    /// Whether the downstream speaks HTTP to the proxies.
    fn http(self) -> bool {
        matches!(
            self,
            ProxyScenario::HttpSeq | ProxyScenario::HttpInflight16 | ProxyScenario::HttpInflight256
        )
    }

    fn metrics(self) -> &'static [Metric] {
        match self.load() {
            Some(Load::Seq) => &SEQ,
            Some(Load::InFlight(_)) => &INFLIGHT,
            None => &FANOUT,
        }
    }

    fn vs_direct(self, metric: usize) -> VsDirect {
        match (self.load(), metric) {
            (Some(Load::Seq), 0 | 1) => VsDirect::Added,
            (Some(Load::InFlight(_)), 0) | (None, 0) => VsDirect::Ratio,
            _ => VsDirect::None,
        }
    }

    fn op_name(self) -> &'static str {
        match self {
            ProxyScenario::Fanout => "notes",
            _ => "calls",
        }
    }
}

/// Who answers the downstream client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Our proxy (actix-web, `proxy::resource`, one `Forward`).
    Ours,
    /// The jsonrpsee server forwarding over a jsonrpsee client.
    Jsonrpsee,
    /// No proxy: the upstream itself, over websocket (it speaks nothing
    /// else), the reference for what a proxy adds.
    Direct,
}

impl Side {
    pub const ALL: [Side; 3] = [Side::Ours, Side::Jsonrpsee, Side::Direct];

    pub fn name(self) -> &'static str {
        match self {
            Side::Ours => "ours-proxy",
            Side::Jsonrpsee => "jsonrpsee-proxy",
            Side::Direct => "direct",
        }
    }

    /// A comma-separated list of side names.
    pub fn parse_list(list: &str) -> Result<Vec<Side>> {
        list.split(',')
            .map(|name| {
                let name = name.trim();
                Side::ALL
                    .into_iter()
                    .find(|s| s.name() == name)
                    .with_context(|| format!("unknown side {name:?}"))
            })
            .collect()
    }
}

/// What the proxy scenarios are asked to do.
pub struct ProxyArgs {
    pub scenarios: Vec<ProxyScenario>,
    pub sides: Vec<Side>,
    /// The base count: `*_seq` make N calls, `*_inflight*` 3N.
    pub calls: u64,
    /// Downstream clients in `proxy_fanout`.
    pub subscribers: u64,
    /// Items the feed sends to each in `proxy_fanout`.
    pub feed: u64,
    pub repeat: usize,
    pub limit: Duration,
    pub smoke: bool,
}

/// What the proxy scenarios report back.
#[derive(Default)]
pub struct ProxyReport {
    pub json_lines: Vec<String>,
    pub summary: String,
    pub failures: usize,
}

/// All runs of one side in one scenario.
struct Outcome {
    side: Side,
    runs: Vec<Result<Sample, String>>,
}

impl Outcome {
    fn ok(&self) -> impl Iterator<Item = &Sample> {
        self.runs.iter().filter_map(|r| r.as_ref().ok())
    }

    fn samples(&self, metric: usize) -> Vec<f64> {
        self.ok().map(|s| s.values[metric]).collect()
    }

    fn median(&self, metric: usize) -> Option<f64> {
        median(self.samples(metric))
    }
}

/// The medians of one scenario, by side.
struct Medians<'a>(&'a [Outcome]);

impl Medians<'_> {
    fn get(&self, side: Side, metric: usize) -> Option<f64> {
        self.0
            .iter()
            .find(|o| o.side == side)
            .and_then(|o| o.median(metric))
    }

    fn ratio(&self, a: Side, b: Side, metric: usize) -> Option<f64> {
        match (self.get(a, metric), self.get(b, metric)) {
            (Some(x), Some(y)) if y.abs() > f64::EPSILON => Some(x / y),
            _ => None,
        }
    }

    /// `side`'s median minus direct's.
    fn added(&self, side: Side, metric: usize) -> Option<f64> {
        Some(self.get(side, metric)? - self.get(Side::Direct, metric)?)
    }
}

/// Runs every proxy scenario asked for, printing tables as it goes.
pub fn run(args: &ProxyArgs, upstream: &str) -> ProxyReport {
    let mut report = ProxyReport::default();
    let mut done: Vec<(ProxyScenario, Vec<Outcome>)> = Vec::new();
    for &scenario in &args.scenarios {
        let mut outcomes: Vec<Outcome> = args
            .sides
            .iter()
            .map(|&side| Outcome {
                side,
                runs: Vec::new(),
            })
            .collect();
        if outcomes.is_empty() {
            continue;
        }
        let started = Instant::now();
        for r in 0..args.repeat {
            // Interleaved, the order rotating each repeat.
            for i in 0..outcomes.len() {
                let ix = (i + r) % outcomes.len();
                let side = outcomes[ix].side;
                let t = Instant::now();
                let result = run_once(scenario, side, args, upstream).map_err(|e| format!("{e:#}"));
                match &result {
                    Ok(s) => eprintln!(
                        "  {:<22} {}/{} {:<16} {:>12} {} ({} {}, {:.1}s)",
                        scenario.name(),
                        r + 1,
                        args.repeat,
                        side.name(),
                        fmt_num(s.values[0]),
                        scenario.metrics()[0].unit,
                        s.ops,
                        scenario.op_name(),
                        t.elapsed().as_secs_f64()
                    ),
                    Err(e) => {
                        report.failures += 1;
                        eprintln!(
                            "  {:<22} {}/{} {:<16} ERROR {e}",
                            scenario.name(),
                            r + 1,
                            args.repeat,
                            side.name()
                        );
                    }
                }
                outcomes[ix].runs.push(result);
            }
        }
        println!();
        for ix in 0..scenario.metrics().len() {
            println!("{}", table(scenario, ix, &outcomes, args.repeat));
        }
        println!(
            "  ({} in {:.1}s)",
            scenario.name(),
            started.elapsed().as_secs_f64()
        );
        report
            .json_lines
            .extend(json_lines(scenario, &outcomes, args.repeat, args.smoke));
        done.push((scenario, outcomes));
    }
    report.summary = summary(&done);
    report
}

fn run_once(
    scenario: ProxyScenario,
    side: Side,
    args: &ProxyArgs,
    upstream: &str,
) -> Result<Sample> {
    let Some(load) = scenario.load() else {
        let plan = FanoutPlan {
            subscribers: args.subscribers,
            items: args.feed,
            limit: args.limit,
        };
        return fanout_once(side, plan);
    };
    let n = args.calls;
    let warm = |count: u64| (count / 10).clamp(10, 1_000);
    let plan = match load {
        Load::Seq => Plan {
            count: n,
            warmup: warm(n),
            limit: args.limit,
        },
        Load::InFlight(width) => Plan {
            count: 3 * n,
            warmup: warm(3 * n).max(2 * width),
            limit: args.limit,
        },
    };
    let front = start_front(side, upstream, FrontOptions::default())?;
    let target = match &front {
        None => Target::Ws(upstream.to_owned()),
        Some(front) if scenario.http() => Target::Http(front.addr),
        Some(front) => Target::Ws(front.ws_url()),
    };
    let prober = front.as_ref().map_or(Prober::None, |f| f.prober.clone());
    let limit = plan.limit;
    let result = on_client_thread(side, limit, move || async move {
        client::run(&target, load, &plan, &prober).await
    });
    drop(front);
    result
}

fn fanout_once(side: Side, plan: FanoutPlan) -> Result<Sample> {
    let feed = FeedServer::start()?;
    // Room for the whole feed in every queue: nothing may be dropped.
    let options = FrontOptions {
        queue: (plan.items as usize).max(FrontOptions::default().queue),
    };
    let front = start_front(side, &feed.url, options)?;
    let url = front.as_ref().map_or(feed.url.clone(), Front::ws_url);
    let prober = front.as_ref().map_or(Prober::None, |f| f.prober.clone());
    let state = Arc::clone(&feed.state);
    let limit = plan.limit;
    let sample = on_client_thread(side, limit, move || async move {
        fanout::run(&url, &plan, &state, &prober).await
    });
    drop(front);
    drop(feed);
    let sample = sample?;
    let made = sample.values[2];
    if side == Side::Ours && made != 1.0 {
        bail!("the upstream saw {made} subscriptions through our proxy, not 1");
    }
    Ok(sample)
}

fn start_front(side: Side, upstream: &str, options: FrontOptions) -> Result<Option<Front>> {
    Ok(match side {
        Side::Ours => Some(front::start_ours(upstream, options)?),
        Side::Jsonrpsee => Some(front::start_jsonrpsee(upstream, options)?),
        Side::Direct => None,
    })
}

/// Runs `body` on a fresh thread with a current-thread tokio runtime,
/// bounded in time.
fn on_client_thread<F, Fut>(side: Side, limit: Duration, body: F) -> Result<Sample>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<Sample>>,
{
    let guard = limit * 4 + Duration::from_secs(60);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("bench-to-{}", side.name()))
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(async {
                    tokio::time::timeout(guard, body())
                        .await
                        .unwrap_or_else(|_| Err(anyhow!("run did not finish in {guard:?}")))
                }),
                Err(e) => Err(e.into()),
            };
            let _ = tx.send(result);
        })?;
    rx.recv_timeout(guard + Duration::from_secs(10))
        .map_err(|_| anyhow!("client thread hung (left behind)"))?
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

fn fmt_added(a: Option<f64>) -> String {
    a.map_or("-".into(), |a| format!("{a:+.1}"))
}

/// The table of one metric of one scenario.
fn table(scenario: ProxyScenario, ix: usize, outcomes: &[Outcome], repeat: usize) -> String {
    let metric = &scenario.metrics()[ix];
    let medians = Medians(outcomes);
    let direction = if metric.higher_is_better {
        "higher is better; ours/x > 1 means ours is better"
    } else {
        "lower is better; ours/x < 1 means ours is better"
    };
    let vs = scenario.vs_direct(ix);
    let vs_title = match vs {
        VsDirect::Added => format!("added ({})", metric.unit),
        VsDirect::Ratio => "x/direct".to_owned(),
        VsDirect::None => String::new(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — {} ({}, {direction}, median of {repeat})",
        scenario.name(),
        metric.title,
        metric.unit
    );
    let _ = writeln!(
        out,
        "  {:<18}{:>12}{:>16}{:>14}{:>12}  stopped by",
        "side",
        "median",
        "ours-proxy/x",
        vs_title,
        scenario.op_name()
    );
    for o in outcomes {
        let ours = if o.side == Side::Ours {
            String::new()
        } else {
            fmt_ratio(medians.ratio(Side::Ours, o.side, ix))
        };
        let versus = match (vs, o.side) {
            (_, Side::Direct) | (VsDirect::None, _) => String::new(),
            (VsDirect::Added, side) => fmt_added(medians.added(side, ix)),
            (VsDirect::Ratio, side) => fmt_ratio(medians.ratio(side, Side::Direct, ix)),
        };
        let ok = o.ok().count();
        let by_time = o.ok().filter(|s| s.by_time).count();
        let stop = match by_time {
            0 => "count".to_string(),
            n => format!("time ({n}/{ok} runs)"),
        };
        let ops = median(o.ok().map(|s| s.ops as f64).collect());
        let _ = writeln!(
            out,
            "  {:<18}{:>12}{ours:>16}{versus:>14}{:>12}  {stop}",
            o.side.name(),
            match o.median(ix) {
                Some(m) => fmt_num(m),
                // Runs that succeeded but have no such figure (no proxy).
                None if ok > 0 => "-".into(),
                None => "ERROR".into(),
            },
            ops.map_or("-".into(), |x| format!("{x:.0}")),
        );
    }
    if ix == 0 {
        for o in outcomes {
            for (i, r) in o.runs.iter().enumerate() {
                if let Err(e) = r {
                    let _ = writeln!(out, "  ! {} run {}: {e}", o.side.name(), i + 1);
                }
            }
        }
    }
    out
}

/// One JSON object per scenario × side × metric, in the shape of the
/// other scenarios' lines (`client` is the side).
fn json_lines(
    scenario: ProxyScenario,
    outcomes: &[Outcome],
    repeat: usize,
    smoke: bool,
) -> Vec<String> {
    let medians = Medians(outcomes);
    let mut lines = Vec::new();
    for (ix, metric) in scenario.metrics().iter().enumerate() {
        for o in outcomes {
            let ours = o.side == Side::Ours;
            let added = (scenario.vs_direct(ix) == VsDirect::Added && o.side != Side::Direct)
                .then(|| medians.added(o.side, ix))
                .flatten();
            let line = json!({
                "name": format!("{}/{}/{}", scenario.name(), o.side.name(), metric.key),
                "scenario": scenario.name(),
                "client": o.side.name(),
                "metric": metric.key,
                "unit": metric.unit,
                "higher_is_better": metric.higher_is_better,
                "median": o.median(ix),
                "samples": o.samples(ix),
                "ops": o.ok().map(|s| s.ops).collect::<Vec<_>>(),
                "stopped_by": o.ok().map(|s| if s.by_time { "time" } else { "count" }).collect::<Vec<_>>(),
                "errors": o.runs.iter().filter_map(|r| r.as_ref().err()).collect::<Vec<_>>(),
                "ours_over_jsonrpsee": ours.then(|| medians.ratio(Side::Ours, Side::Jsonrpsee, ix)).flatten(),
                "ours_over_direct": ours.then(|| medians.ratio(Side::Ours, Side::Direct, ix)).flatten(),
                "added_over_direct": added,
                "repeat": repeat,
                "smoke": smoke,
            });
            lines.push(line.to_string());
        }
    }
    lines
}

/// What a summary row asks of its ratio (ours-proxy / jsonrpsee-proxy).
#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    Below(f64),
    /// Exactly this many (a count, not a ratio).
    Exactly(f64),
    None(bool),
}

/// The headline figures of the proxy scenarios, each with its target.
fn summary(done: &[(ProxyScenario, Vec<Outcome>)]) -> String {
    use ProxyScenario as P;
    let mut out = String::from(
        "proxy summary (ours-proxy / jsonrpsee-proxy; ours-proxy / direct in brackets)\n",
    );
    let rows: [(&str, ProxyScenario, usize, Goal); 9] = [
        (
            "proxy_http_inflight16 calls/s",
            P::HttpInflight16,
            0,
            Goal::AtLeast(1.5),
        ),
        (
            "proxy_http_inflight256 calls/s",
            P::HttpInflight256,
            0,
            Goal::AtLeast(1.5),
        ),
        (
            "proxy_ws_inflight16 calls/s",
            P::WsInflight16,
            0,
            Goal::AtLeast(1.5),
        ),
        (
            "proxy_ws_inflight256 calls/s",
            P::WsInflight256,
            0,
            Goal::AtLeast(1.5),
        ),
        (
            "proxy_http_seq added p50 latency",
            P::HttpSeq,
            0,
            Goal::Below(1.0),
        ),
        (
            "proxy_ws_seq added p50 latency",
            P::WsSeq,
            0,
            Goal::Below(1.0),
        ),
        (
            "proxy_fanout upstream subscriptions",
            P::Fanout,
            2,
            Goal::Exactly(1.0),
        ),
        (
            "proxy_fanout notes/s delivered",
            P::Fanout,
            0,
            Goal::None(true),
        ),
        (
            "proxy_fanout KiB per downstream",
            P::Fanout,
            1,
            Goal::None(false),
        ),
    ];
    for (label, scenario, ix, goal) in rows {
        let Some((_, outcomes)) = done.iter().find(|(s, _)| *s == scenario) else {
            continue;
        };
        let m = Medians(outcomes);
        let unit = scenario.metrics()[ix].unit;
        let both = |a: Option<f64>, b: Option<f64>| {
            format!(
                "({} vs {} {unit})",
                a.map_or("-".into(), fmt_num),
                b.map_or("-".into(), fmt_num)
            )
        };
        let (shown, value, extra) = match goal {
            Goal::Below(_) => {
                let (ours, theirs) = (m.added(Side::Ours, ix), m.added(Side::Jsonrpsee, ix));
                let ratio = match (ours, theirs) {
                    (Some(a), Some(b)) if b.abs() > f64::EPSILON => Some(a / b),
                    _ => None,
                };
                let extra = format!("({} vs {} {unit})", fmt_added(ours), fmt_added(theirs));
                (fmt_ratio(ratio), ratio, extra)
            }
            Goal::Exactly(_) => {
                let ours = m.get(Side::Ours, ix);
                let extra = format!(
                    "(jsonrpsee-proxy {}, direct {})",
                    m.get(Side::Jsonrpsee, ix)
                        .map_or("-".into(), |n| format!("{n:.0}")),
                    m.get(Side::Direct, ix)
                        .map_or("-".into(), |n| format!("{n:.0}"))
                );
                (ours.map_or("-".into(), |n| format!("{n:.0}")), ours, extra)
            }
            Goal::AtLeast(_) | Goal::None(_) => {
                let ratio = m.ratio(Side::Ours, Side::Jsonrpsee, ix);
                let direct = match scenario.vs_direct(ix) {
                    VsDirect::Ratio => {
                        format!("[{}]", fmt_ratio(m.ratio(Side::Ours, Side::Direct, ix)))
                    }
                    _ => String::new(),
                };
                let extra = both(m.get(Side::Ours, ix), m.get(Side::Jsonrpsee, ix));
                (format!("{} {direct}", fmt_ratio(ratio)), ratio, extra)
            }
        };
        let (target, verdict) = match (goal, value) {
            (Goal::AtLeast(t), v) => (
                format!("target >= {t:.2}"),
                if v.is_some_and(|v| v >= t) {
                    "met"
                } else {
                    "MISSED"
                },
            ),
            (Goal::Below(t), v) => (
                format!("target < {t:.2}"),
                if v.is_some_and(|v| v < t) {
                    "met"
                } else {
                    "MISSED"
                },
            ),
            (Goal::Exactly(t), v) => (
                format!("target = {t}"),
                if v == Some(t) { "met" } else { "MISSED" },
            ),
            (Goal::None(true), _) => ("no target, >1 better".into(), ""),
            (Goal::None(false), _) => ("no target, <1 better".into(), ""),
        };
        let line = format!(
            "  {label:<38} {shown:<16} {:<24} {verdict:<6} {extra}",
            format!("({target})")
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
