//! A soak test: one reconnecting client under steady load for a fixed time
//! (60 s by default) while the server's side of the network misbehaves at
//! random — connections cut, closed with assorted codes, black-holed then
//! healed, stalled, refused for a moment, the server restarted, garbage
//! frames, fragmented, binary and delayed replies. At the end it checks that
//! the books balance: every call ended exactly once and with the right
//! answer, nothing is left pending, the faults made it reconnect, no call
//! reached the server again unless it opted in, and memory did not grow in
//! the second half of the run. It exits with status 1, saying why, if not.
//!
//! Run it with `cargo run --release --example soak` (or `-- --seconds 10`
//! for a short run, `--seed N` to replay a fault schedule, `--verbose` to
//! see each fault and connection event as it happens).
//!
//! The server and the fault-injecting proxy run in a child process (this
//! same program, re-run with a hidden `--serve`), so that the RSS figures
//! are the client's alone. The child prints its port and one line per fault
//! on stdout; it starts its faults on "GO", stops them on "STOP" and exits
//! when its stdin closes — or on its own after the run's time plus a margin.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use jsonrpc_websocket::{
    params, Call, Client, ConnectionEvent, Error, Overflow, ReconnectPolicy, RpcConnection,
    Subscribe, SubscriptionItem,
};
use serde_json::{json, Value};
use test_support::{response, standard, Action, FaultProxy, TestServer};
use tokio::time::Instant;

/// Tasks making calls, each one call at a time.
const CALLERS: u64 = 32;
/// Subscriptions, one task each; the last one reads slowly (see `subscriber`).
const TOPICS: [&str; 4] = ["a", "b", "c", "slow"];
/// The slow subscriber's queue: small, so that it overflows and says so.
const SLOW_CAPACITY: usize = 16;
/// How often the server pushes one item to each live subscription.
const PUSH_EVERY: Duration = Duration::from_millis(10);
/// The client's default call timeout; calls marked short use `SHORT_TIMEOUT`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const SHORT_TIMEOUT: Duration = Duration::from_millis(150);
/// A call with no outcome this long after the longest call timeout
/// (`REQUEST_TIMEOUT`) is counted as hung (a library bug: a call must
/// always end) and dropped.
const HUNG_AFTER: Duration = Duration::from_secs(5);
/// Heartbeat: a black-holed connection is noticed within interval + timeout.
const HEARTBEAT: Duration = Duration::from_millis(500);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest share of RSS growth from the middle to the end of the run.
const RSS_GROWTH_LIMIT: f64 = 0.10;
/// Calls allowed per second of the run, at most (the count bound; the
/// paced callers stay well below it).
const CALLS_PER_SECOND_BOUND: u64 = 25_000;
/// How long the child may outlive the run's time before it exits anyway.
const CHILD_MARGIN: Duration = Duration::from_secs(120);
/// Bounds on the plumbing: the child's start, its exit, the client's close.
const CHILD_START: Duration = Duration::from_secs(30);
const CHILD_EXIT: Duration = Duration::from_secs(15);
const CLOSE_BOUND: Duration = Duration::from_secs(5);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- arguments -------------------------------------------------------------

struct Args {
    seconds: u64,
    seed: u64,
    max_calls: u64,
    verbose: bool,
    /// Run as the child: the server and the proxy.
    serve: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 60,
        seed: clock_seed(),
        max_calls: 0,
        verbose: false,
        serve: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let text = it.next().ok_or(format!("{name} needs a number"))?;
            text.parse()
                .map_err(|_| format!("{name} needs a number, not {text:?}"))
        };
        match arg.as_str() {
            "--seconds" => args.seconds = number("--seconds")?.max(2),
            "--seed" => args.seed = number("--seed")?,
            "--max-calls" => args.max_calls = number("--max-calls")?,
            "--verbose" => args.verbose = true,
            "--serve" => args.serve = true,
            other => {
                return Err(format!(
                "unknown argument {other:?} (use --seconds N, --seed N, --max-calls N, --verbose)"
            ))
            }
        }
    }
    if args.max_calls == 0 {
        args.max_calls = CALLS_PER_SECOND_BOUND * args.seconds;
    }
    Ok(args)
}

fn clock_seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    mix(now.as_nanos() as u64 ^ u64::from(std::process::id()))
}

// ---- randomness ------------------------------------------------------------

/// SplitMix64's output function: a well-spread number from any input, so
/// that everything random here follows from the seed (and a counter).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small seeded generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(mix(seed ^ mix(stream)))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// In `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// In `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        ms(self.between(lo, hi))
    }
}

// ---- the child: server, proxy and faults -----------------------------------

/// What the parent says on the child's stdin.
enum Word {
    Go,
    Stop,
    /// Stdin closed: the parent is done (or gone).
    Exit,
}

/// Subscriptions the server is pushing to: topic → current subscription id.
type Topics = Arc<Mutex<BTreeMap<String, String>>>;

/// How often the server saw the same call: each echo carries a tag unique
/// to the call, `p…` for a plain call, `r…` for one that opted in to being
/// sent again after a reconnect.
#[derive(Default)]
struct Resends {
    /// Tags seen lately: when first, and how many times.
    seen: HashMap<String, (std::time::Instant, u32)>,
    pruned: Option<std::time::Instant>,
    /// Opted-in calls that reached the server a second time.
    opted_in: u64,
    /// Plain calls that reached the server a second time: never allowed.
    plain: u64,
    /// Calls that reached it a third time: never allowed.
    thrice: u64,
}

impl Resends {
    /// A call is sent again within its timeout or not at all, so tags older
    /// than `FORGET_TAGS` are forgotten: the table stays bounded.
    fn saw(&mut self, tag: &str) {
        const FORGET_TAGS: Duration = Duration::from_secs(30);
        let now = std::time::Instant::now();
        if self
            .pruned
            .is_none_or(|at| now - at > Duration::from_secs(1))
        {
            self.seen.retain(|_, (first, _)| now - *first < FORGET_TAGS);
            self.pruned = Some(now);
        }
        let times = &mut self.seen.entry(tag.to_owned()).or_insert((now, 0)).1;
        *times += 1;
        match (*times, tag.starts_with('r')) {
            (2, true) => self.opted_in += 1,
            (2, false) => self.plain += 1,
            (3.., _) => self.thrice += 1,
            _ => {}
        }
    }
}

/// The server's handler: subscriptions of its own, `standard` for the rest
/// (echoes' tags counted); and, chosen from the seed, some replies
/// fragmented, sent as binary frames, or delayed.
fn handler(
    seed: u64,
    topics: Topics,
    resends: Arc<Mutex<Resends>>,
) -> impl Fn(&Value) -> Action + Send + Sync + 'static {
    let count = AtomicU64::new(0);
    let made = AtomicU64::new(0);
    move |msg: &Value| {
        let roll = mix(seed ^ count.fetch_add(1, Ordering::Relaxed));
        let id = &msg["id"];
        if let (Some("echo"), Some(tag)) = (msg["method"].as_str(), msg["params"][1].as_str()) {
            lock(&resends).saw(tag);
        }
        let action = match msg["method"].as_str() {
            Some("soak.subscribe") => {
                let topic = msg["params"][0].as_str().unwrap_or("?").to_owned();
                // A new id each time, as a real server gives: after a
                // reconnect the client must route by the new one.
                let sub = format!("{topic}-{}", made.fetch_add(1, Ordering::Relaxed));
                lock(&topics).insert(topic, sub.clone());
                Action::Reply(response(id, json!(sub)))
            }
            Some("soak.unsubscribe") => {
                let sub = msg["params"][0].as_str().unwrap_or_default();
                let mut topics = lock(&topics);
                let before = topics.len();
                topics.retain(|_, live| live != sub);
                Action::Reply(response(id, json!(topics.len() < before)))
            }
            _ => standard(msg),
        };
        shape(action, roll)
    }
}

/// Sends one reply in ten as continuation frames, one in a hundred late
/// (by up to 400 ms: short-timeout calls time out), three in a hundred as
/// binary frames.
fn shape(action: Action, roll: u64) -> Action {
    let Action::Reply(reply) = action else {
        return action;
    };
    let detail = roll >> 8;
    match roll % 100 {
        0..=9 => Action::ReplyFragmented(reply, 16 + (detail % 500) as usize),
        10 => Action::Delay(ms(20 + detail % 400), Box::new(Action::Reply(reply))),
        11..=13 => Action::ReplyBinary(reply),
        _ => Action::Reply(reply),
    }
}

/// Performs `action` on every connection of the server, if it is up.
fn broadcast(server: &Mutex<Option<TestServer>>, action: Action) {
    if let Some(server) = lock(server).as_ref() {
        server.broadcast(action);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One line to the parent. A parent that is gone cannot be told; the
/// child then exits when it notices stdin closed.
fn tell(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The child's main: prints `PORT <proxy port>`, then `FAULT <kind>|<detail>`
/// lines, until stdin closes or the run's time plus `CHILD_MARGIN` is over.
fn serve(args: &Args) -> ExitCode {
    let ends_anyway = std::time::Instant::now() + Duration::from_secs(args.seconds) + CHILD_MARGIN;
    let topics: Topics = Arc::default();
    let resends: Arc<Mutex<Resends>> = Arc::default();
    let handler = Arc::new(handler(
        args.seed,
        Arc::clone(&topics),
        Arc::clone(&resends),
    ));
    let start = |at: Option<std::net::SocketAddr>| {
        let handler = Arc::clone(&handler);
        // Recording every message would grow with the run.
        let builder = TestServer::builder().record_received(false);
        let serve = move |msg: &Value| handler(msg);
        match at {
            None => builder.start(serve),
            Some(addr) => builder.start_at(addr, serve),
        }
    };
    let first = start(None);
    let backend = first.addr();
    // `None` while the server is restarting.
    let server = Arc::new(Mutex::new(Some(first)));
    let proxy = FaultProxy::start(backend);
    tell(&format!("PORT {}", proxy.addr().port()));

    let (words, heard) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let word = match line.as_deref().map(str::trim) {
                Ok("GO") => Word::Go,
                Ok("STOP") => Word::Stop,
                Ok(_) => continue,
                Err(_) => break,
            };
            if words.send(word).is_err() {
                return;
            }
        }
        let _ = words.send(Word::Exit);
    });

    let pushing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pusher = {
        let (server, topics, pushing) = (Arc::clone(&server), topics, Arc::clone(&pushing));
        std::thread::spawn(move || push_items(&server, &topics, &pushing, ends_anyway))
    };

    // Sleeps up to `d`; `Some` when the parent spoke meanwhile.
    let wait = |d: Duration| -> Option<Word> {
        let d = d.min(ends_anyway.saturating_duration_since(std::time::Instant::now()));
        match heard.recv_timeout(d) {
            Ok(word) => Some(word),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(Word::Exit),
        }
    };
    let out_of_time = || std::time::Instant::now() >= ends_anyway;

    // Nothing happens before the parent is connected and subscribed.
    let mut faulting = false;
    while !faulting && !out_of_time() {
        match wait(Duration::from_secs(1)) {
            Some(Word::Go) => faulting = true,
            Some(Word::Exit) => return stop_serving(proxy, server, &resends, pushing, pusher),
            _ => {}
        }
    }
    let mut rng = Rng::new(args.seed, 0xFA17);
    let mut first = true;
    while !out_of_time() {
        if faulting {
            match wait(rng.millis(200, 1200)) {
                Some(Word::Stop) => faulting = false,
                Some(Word::Exit) => break,
                Some(Word::Go) | None => {
                    // The first fault always cuts the connection, so that
                    // even the shortest run reconnects at least once.
                    let roll = if first { 0 } else { rng.below(100) };
                    first = false;
                    match fault(roll, &mut rng, &proxy, &server, backend, &start, &wait) {
                        Some(Word::Exit) => break,
                        Some(Word::Stop) => faulting = false,
                        _ => {}
                    }
                }
            }
        } else {
            // Faults are over: everything healthy for the wind-down.
            proxy.heal();
            proxy.stall(Duration::ZERO);
            proxy.refuse(false);
            match wait(Duration::from_secs(1)) {
                Some(Word::Exit) => break,
                Some(Word::Go) => faulting = true,
                _ => {}
            }
        }
    }
    stop_serving(proxy, server, &resends, pushing, pusher)
}

/// Injects the fault `roll` (0–99) picks; returns what the parent said
/// meanwhile, if anything. Faults that last (black hole, stall, refusal)
/// are undone before it returns, early when the parent speaks.
fn fault(
    roll: u64,
    rng: &mut Rng,
    proxy: &FaultProxy,
    server: &Mutex<Option<TestServer>>,
    backend: std::net::SocketAddr,
    start: &dyn Fn(Option<std::net::SocketAddr>) -> TestServer,
    wait: &dyn Fn(Duration) -> Option<Word>,
) -> Option<Word> {
    const CODES: [u16; 7] = [1000, 1001, 1011, 1012, 1013, 4000, 4001];
    let mut heard = None;
    match roll {
        0..=15 => {
            let cut = proxy.drop_all();
            tell(&format!("FAULT drop|{cut} connection(s) cut"));
        }
        16..=37 => {
            let code = CODES[rng.below(CODES.len() as u64) as usize];
            tell(&format!("FAULT close {code}|"));
            broadcast(server, Action::Close(code, format!("soak {code}")));
        }
        38..=52 => {
            // Sometimes healed before the heartbeat can notice (a brief
            // partition: calls are late, the socket lives), mostly after.
            let hold = rng.millis(200, 3000);
            let held = proxy.black_hole();
            tell(&format!(
                "FAULT black hole|{held} connection(s) silent for {hold:?}"
            ));
            heard = wait(hold);
            proxy.heal();
        }
        53..=64 => {
            let delay = rng.millis(20, 300);
            let hold = rng.millis(500, 2000);
            tell(&format!("FAULT stall|{delay:?} each way for {hold:?}"));
            proxy.stall(delay);
            heard = wait(hold);
            proxy.stall(Duration::ZERO);
        }
        65..=74 => {
            let hold = rng.millis(200, 1500);
            tell(&format!("FAULT refuse|new connections reset for {hold:?}"));
            proxy.refuse(true);
            proxy.drop_all();
            heard = wait(hold);
            proxy.refuse(false);
        }
        75..=89 => {
            const GARBAGE: [&str; 5] = [
                "{not json",
                "[1,2",
                // Ids the client never uses (its own are positive integers).
                r#"{"jsonrpc":"2.0","id":"stray","result":"a stray answer"}"#,
                r#"{"jsonrpc":"2.0","id":-1,"result":1,"error":{"code":1,"message":"both"}}"#,
                r#"{"jsonrpc":"2.0","method":"soak.item","params":{"subscription":"nobody","result":0}}"#,
            ];
            let n = rng.between(1, 5);
            tell(&format!("FAULT garbage|{n} frame(s)"));
            let frames = (0..n)
                .map(|_| {
                    Action::ReplyText(GARBAGE[rng.below(GARBAGE.len() as u64) as usize].to_owned())
                })
                .collect();
            broadcast(server, Action::Many(frames));
        }
        _ => {
            // The server goes away (connections dropped, port closed) and
            // comes back on the same port: the proxy accepts meanwhile, and
            // closes each connection when it cannot reach the server.
            let down = rng.millis(100, 1000);
            tell(&format!("FAULT restart|down for {down:?}"));
            drop(lock(server).take());
            heard = wait(down);
            *lock(server) = Some(start(Some(backend)));
        }
    }
    heard
}

/// Every `PUSH_EVERY`, one item to each live subscription: `{"topic", "seq"}`
/// with `seq` counting up per topic, so that the client can check order.
fn push_items(
    server: &Mutex<Option<TestServer>>,
    topics: &Topics,
    pushing: &std::sync::atomic::AtomicBool,
    ends_anyway: std::time::Instant,
) {
    let mut seqs: BTreeMap<String, u64> = BTreeMap::new();
    let mut n = 0u64;
    while pushing.load(Ordering::Relaxed) && std::time::Instant::now() < ends_anyway {
        std::thread::sleep(PUSH_EVERY);
        let live: Vec<(String, String)> = lock(topics)
            .iter()
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect();
        let server = lock(server);
        let Some(server) = server.as_ref() else {
            continue; // restarting
        };
        for (topic, sub) in live {
            let seq = seqs.entry(topic.clone()).or_default();
            *seq += 1;
            let item = json!({"jsonrpc": "2.0", "method": "soak.item",
                "params": {"subscription": sub, "result": {"topic": topic, "seq": *seq}}});
            n += 1;
            // Some notifications arrive in pieces too.
            if n.is_multiple_of(10) {
                server.broadcast(Action::ReplyFragmented(item, 24));
            } else {
                server.push(item);
            }
        }
    }
}

/// Stops everything and tells the parent how often calls came again:
/// `RESENT <opted in> <plain> <thrice>`.
fn stop_serving(
    proxy: FaultProxy,
    server: Arc<Mutex<Option<TestServer>>>,
    resends: &Mutex<Resends>,
    pushing: Arc<std::sync::atomic::AtomicBool>,
    pusher: std::thread::JoinHandle<()>,
) -> ExitCode {
    pushing.store(false, Ordering::Relaxed);
    let _ = pusher.join();
    drop(proxy);
    drop(server);
    let resends = lock(resends);
    tell(&format!(
        "RESENT {} {} {}",
        resends.opted_in, resends.plain, resends.thrice
    ));
    ExitCode::SUCCESS
}

// ---- the parent: the client under load -------------------------------------

/// How the calls ended. Every call made ends in exactly one of these.
#[derive(Default)]
struct Calls {
    made: u64,
    result: u64,
    rpc_error: u64,
    timeout: u64,
    /// `Error::Closed` and `Error::Disconnected`: lost with the socket.
    disconnect: u64,
    /// `Error::NotConnected`: refused while the connection was stopping.
    not_connected: u64,
    /// Any other kind, by name (e.g. "Overloaded", or "hung" for a call
    /// with no outcome `REQUEST_TIMEOUT + HUNG_AFTER` after it was made).
    other: BTreeMap<String, u64>,
    /// Outcomes that are not what the server does for that call (a wrong
    /// echo, an error for a call that cannot fail, …), with examples.
    wrong: u64,
    wrong_examples: Vec<String>,
    /// Calls sent with `retry_on_reconnect`, and those that got their result.
    retrying: u64,
    retrying_answered: u64,
}

impl Calls {
    fn ended(&self) -> u64 {
        self.result
            + self.rpc_error
            + self.timeout
            + self.disconnect
            + self.not_connected
            + self.other.values().sum::<u64>()
    }

    fn wrong(&mut self, what: String) {
        self.wrong += 1;
        if self.wrong_examples.len() < 5 {
            self.wrong_examples.push(what);
        }
    }
}

/// What the subscribers saw.
#[derive(Default)]
struct Items {
    items: u64,
    /// `Resubscribed` items: gaps the client signalled after reconnects,
    /// by topic.
    gaps: BTreeMap<String, u64>,
    lagged: u64,
    missed: u64,
    invalid: u64,
    /// Items whose `seq` was not above the last one of the same topic.
    out_of_order: u64,
    /// Subscriptions that ended during the run (and were made again), by why.
    ended: BTreeMap<String, u64>,
    subscribe_failures: u64,
    unsubscribe_failures: u64,
}

/// The connection's events, as seen on `Client::events`.
#[derive(Default)]
struct Events {
    disconnected: BTreeMap<String, u64>,
    reconnecting: u64,
    reconnected: u64,
    lagged: u64,
    closed: Option<String>,
}

#[derive(Default)]
struct Tally {
    calls: Calls,
    items: Items,
    events: Events,
}

type Shared = Rc<RefCell<Tally>>;

/// One call of the mix, and what the server will answer to it.
struct Planned {
    call: Call,
    expect: Expect,
    retry: bool,
}

enum Expect {
    /// The result must equal this.
    Result(Value),
    /// An error object with this code.
    RpcError(i64),
    /// `"slept"` (or, likely, a timeout).
    Slept,
}

/// A call picked at random: plain and retried echoes, sums, server errors,
/// unknown methods, fragmented and large results, and sleeps and echoes
/// with a short timeout. Echoes carry `call`, unique to this call, in their
/// tag (see `Resends`).
fn pick(rng: &mut Rng, call: &str) -> Planned {
    let planned = |call, expect| Planned {
        call,
        expect,
        retry: false,
    };
    match rng.below(100) {
        0..=39 => {
            let text = payload(rng);
            let tag = format!("p{call}");
            planned(
                Call::new("echo", params![text.clone(), tag.clone()]),
                Expect::Result(json!([text, tag])),
            )
        }
        40..=54 => {
            let text = payload(rng);
            let tag = format!("r{call}");
            Planned {
                call: Call::new("echo", params![text.clone(), tag.clone()]).retry_on_reconnect(),
                expect: Expect::Result(json!([text, tag])),
                retry: true,
            }
        }
        55..=64 => {
            let (a, b) = (rng.below(1 << 40) as i64, rng.below(1 << 40) as i64);
            planned(
                Call::new("add", params![a, b]),
                Expect::Result(json!(a + b)),
            )
        }
        65..=70 => {
            let code = -32000 - rng.below(99) as i64;
            planned(
                Call::new("error", json!({"code": code, "message": "soak"})),
                Expect::RpcError(code),
            )
        }
        71..=73 => planned(
            Call::new("soak.no_such_method", params![]),
            Expect::RpcError(-32601),
        ),
        74..=80 => {
            let text = payload(rng);
            planned(
                Call::new("fragmented", json!({"text": text})),
                Expect::Result(json!({"text": text})),
            )
        }
        81..=83 => {
            let bytes = rng.between(8 * 1024, 64 * 1024);
            planned(
                Call::new("big", params![bytes]),
                Expect::Result(json!("x".repeat(bytes as usize))),
            )
        }
        84..=85 => planned(
            Call::new("sleep", params![rng.between(10, 300)]).timeout(SHORT_TIMEOUT),
            Expect::Slept,
        ),
        _ => {
            let text = payload(rng);
            let tag = format!("p{call}");
            planned(
                Call::new("echo", params![text.clone(), tag.clone()]).timeout(SHORT_TIMEOUT),
                Expect::Result(json!([text, tag])),
            )
        }
    }
}

/// A string of 1 to 1,024 characters, with quotes, backslashes, control
/// characters and non-ASCII among them (escaping must survive every path).
fn payload(rng: &mut Rng) -> String {
    const ODD: [char; 6] = ['"', '\\', '\n', 'é', '✓', '\u{1}'];
    let len = rng.between(1, 1024);
    (0..len)
        .map(|_| match rng.below(20) {
            0 => ODD[rng.below(ODD.len() as u64) as usize],
            _ => char::from(b'a' + rng.below(26) as u8),
        })
        .collect()
}

/// One caller: one call at a time until the deadline or the call budget.
///
/// NOTE: the load is paced (1–3 ms between a caller's calls: at most
/// ~16,000 calls/s from 32 callers) and its mix holds slow calls (sleeps,
/// late replies), so latency, not CPU, sets the rate: the client uses a
/// fraction of one core. A load at the CPU's limit would measure the
/// scheduler (timers late, heartbeats failing for want of CPU) and swing
/// with whatever else the machine runs; this one is the same in the first
/// and second halves of the run, which is what makes comparing their memory
/// meaningful, and it leaves headroom for the debug build in CI.
async fn caller(
    client: Client,
    me: u64,
    mut rng: Rng,
    deadline: Instant,
    max_calls: u64,
    tally: Shared,
) {
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        {
            let mut tally = tally.borrow_mut();
            if tally.calls.made >= max_calls {
                return;
            }
            tally.calls.made += 1;
        }
        let Planned {
            call,
            expect,
            retry,
        } = pick(&mut rng, &format!("{me}.{n}"));
        let method = call.method().to_owned();
        // Every call has a timeout of at most REQUEST_TIMEOUT; this bound
        // only catches a call that never ends.
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT + HUNG_AFTER, client.send(call)).await;
        let outcome = outcome.map_err(|_elapsed| Hung);
        note_call(
            &mut tally.borrow_mut().calls,
            &method,
            outcome,
            &expect,
            retry,
        );
        tokio::time::sleep(rng.millis(1, 3)).await;
    }
}

/// A call with no outcome `REQUEST_TIMEOUT + HUNG_AFTER` after it was made.
struct Hung;

/// Counts how one call ended, and whether that is what the server does.
fn note_call(
    calls: &mut Calls,
    method: &str,
    outcome: Result<Result<Value, Error>, Hung>,
    expect: &Expect,
    retry: bool,
) {
    calls.retrying += u64::from(retry);
    match outcome {
        Err(Hung) => *calls.other.entry("hung".into()).or_default() += 1,
        Ok(Ok(value)) => {
            calls.result += 1;
            calls.retrying_answered += u64::from(retry);
            match expect {
                Expect::Result(expected) if *expected == value => {}
                Expect::Slept if value == json!("slept") => {}
                _ => calls.wrong(format!("{method}: a wrong result {}", clip(&value))),
            }
        }
        Ok(Err(Error::Rpc { error, .. })) => {
            calls.rpc_error += 1;
            if !matches!(expect, Expect::RpcError(code) if *code == error.code) {
                calls.wrong(format!("{method}: an unexpected error {}", error.code));
            }
        }
        Ok(Err(err)) if err.is_timeout() => calls.timeout += 1,
        Ok(Err(Error::NotConnected { .. })) => calls.not_connected += 1,
        Ok(Err(err)) if err.is_disconnect() => calls.disconnect += 1,
        Ok(Err(err)) => *calls.other.entry(kind(&err)).or_default() += 1,
    }
}

/// An error's variant name, from its `Debug` form ("Overloaded { .. }").
fn kind(err: &Error) -> String {
    let debug = format!("{err:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("unknown")
        .to_owned()
}

fn clip(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// One subscriber: reads every item as it comes (the slow one pauses), and
/// subscribes again if its subscription ends; unsubscribes at the deadline.
async fn subscriber(client: Client, topic: &'static str, deadline: Instant, tally: Shared) {
    let slow = topic == "slow";
    let mut last_seq = 0u64;
    while Instant::now() < deadline {
        let mut request = Subscribe::new("soak.subscribe", params![topic], "soak.unsubscribe");
        if slow {
            request = request
                .capacity(SLOW_CAPACITY)
                .overflow(Overflow::DropOldest);
        }
        // The subscribe call has the request timeout; this bound is for a
        // call that never ends.
        let subscribed =
            tokio::time::timeout(REQUEST_TIMEOUT + HUNG_AFTER, client.subscribe_with(request))
                .await;
        let Ok(Ok(subscription)) = subscribed else {
            tally.borrow_mut().items.subscribe_failures += 1;
            tokio::time::sleep(ms(100)).await;
            continue;
        };
        let mut sub = subscription.typed::<Value>();
        let mut read = 0u64;
        loop {
            let item = tokio::select! {
                item = sub.next() => item,
                () = tokio::time::sleep_until(deadline) => {
                    let answer = tokio::time::timeout(REQUEST_TIMEOUT + HUNG_AFTER, sub.unsubscribe()).await;
                    if !matches!(answer, Ok(Ok(_))) {
                        tally.borrow_mut().items.unsubscribe_failures += 1;
                    }
                    return;
                }
            };
            let Some(item) = item else {
                let why = sub
                    .close_reason()
                    .map_or("no reason".to_owned(), |end| end_kind(&end.to_string()));
                *tally.borrow_mut().items.ended.entry(why).or_default() += 1;
                break;
            };
            let read_one = note_item(&mut tally.borrow_mut().items, item, topic, &mut last_seq);
            read += u64::from(read_one);
            if slow && read_one && read.is_multiple_of(8) {
                // Slower than the pushes (8 items per 100 ms against 10):
                // its queue overflows, and it is told how much it missed.
                tokio::time::sleep(ms(100)).await;
            }
        }
    }
}

/// Counts one subscription item; `true` for an item proper. An item must
/// be of the topic and come after the last one (`seq` counts up).
fn note_item(
    items: &mut Items,
    item: SubscriptionItem<Value>,
    topic: &str,
    last_seq: &mut u64,
) -> bool {
    match item {
        SubscriptionItem::Item(value) => {
            items.items += 1;
            let seq = value["seq"].as_u64().unwrap_or(0);
            if seq <= *last_seq || value["topic"] != topic {
                items.out_of_order += 1;
            }
            *last_seq = (*last_seq).max(seq);
            return true;
        }
        SubscriptionItem::Lagged { missed } => {
            items.lagged += 1;
            items.missed += missed;
        }
        SubscriptionItem::Resubscribed { .. } => {
            *items.gaps.entry(topic.to_owned()).or_default() += 1;
        }
        SubscriptionItem::Invalid(_) => items.invalid += 1,
        _ => {}
    }
    false
}

/// The first words of a subscription's end, without ids and numbers.
fn end_kind(end: &str) -> String {
    end.split(':').next().unwrap_or(end).to_owned()
}

/// Tallies the connection's events until their stream ends (after the
/// client is closed).
async fn watch(client: Client, origin: Instant, verbose: bool, tally: Shared) {
    let mut events = client.events();
    drop(client);
    while let Some(event) = events.next().await {
        if verbose {
            println!("{:>8.3}s  event: {event}", origin.elapsed().as_secs_f64());
        }
        let mut tally = tally.borrow_mut();
        let seen = &mut tally.events;
        match event {
            ConnectionEvent::Disconnected { code, reason, .. } => {
                let why = match code {
                    Some(_) if reason.starts_with("closed by the client") => "our close".into(),
                    Some(code) => format!("close {code}"),
                    None if reason.contains("heartbeat timeout") => "heartbeat timeout".into(),
                    None => "lost".into(),
                };
                *seen.disconnected.entry(why).or_default() += 1;
            }
            ConnectionEvent::Reconnecting { .. } => seen.reconnecting += 1,
            ConnectionEvent::Reconnected => seen.reconnected += 1,
            ConnectionEvent::Lagged { missed } => seen.lagged += missed,
            ConnectionEvent::Closed { reason } => seen.closed = Some(reason),
            _ => {}
        }
    }
}

// ---- memory ----------------------------------------------------------------

/// This process's resident set now and its peak, in KiB (Linux only).
#[derive(Clone, Copy)]
struct Rss {
    now: u64,
    peak: u64,
}

impl Rss {
    #[cfg(target_os = "linux")]
    fn sample() -> Option<Rss> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        };
        Some(Rss {
            now: field("VmRSS:")?,
            peak: field("VmHWM:")?,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn sample() -> Option<Rss> {
        None
    }
}

fn mib(rss: Option<Rss>) -> String {
    rss.map_or("n/a".to_owned(), |r| {
        format!("{:.1} MiB", r.now as f64 / 1024.0)
    })
}

// ---- the run ---------------------------------------------------------------

struct Samples {
    launch: Option<Rss>,
    start: Option<Rss>,
    middle: Option<Rss>,
    end: Option<Rss>,
    warm_up: Duration,
}

struct Outcome {
    tally: Tally,
    stats: jsonrpc_websocket::Stats,
    /// The pending gauge right after every caller and subscriber was done,
    /// and once it settled (internal unsubscribe calls may still be out).
    pending_first: u64,
    pending: u64,
    pending_settled_in: Duration,
    /// Tasks that had not finished within their bound (and were aborted).
    stuck_tasks: usize,
    samples: Samples,
    ran_for: Duration,
}

/// Writes a word to the child; a child that is gone has nothing to hear.
fn say(stdin: &mut ChildStdin, word: &str) {
    let _ = writeln!(stdin, "{word}");
    let _ = stdin.flush();
}

/// Connects, runs the load until the deadline, winds down and counts.
/// `origin` is when the program started (the time base of `--verbose`).
async fn run(
    args: &Args,
    port: u16,
    mut child: ChildStdin,
    launch: Option<Rss>,
    origin: std::time::Instant,
) -> Result<Outcome, String> {
    let url = format!("ws://127.0.0.1:{port}/");
    let connecting = RpcConnection::builder(&url)
        .reconnect(
            ReconnectPolicy::new()
                .initial_delay(ms(50))
                .max_delay(Duration::from_secs(1))
                .busy_delay(Duration::from_secs(1))
                .reset_after(Duration::from_secs(5)),
        )
        .heartbeat(HEARTBEAT)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .request_timeout(REQUEST_TIMEOUT)
        .connect();
    let client = match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(err)) => return Err(format!("could not connect to {url}: {err}")),
        Err(_) => return Err(format!("connecting to {url} took over 10 s")),
    };
    let tally: Shared = Rc::default();
    let started = Instant::now();
    let seconds = Duration::from_secs(args.seconds);
    let deadline = started + seconds;
    let watcher = actix::spawn(watch(
        client.clone(),
        Instant::from_std(origin),
        args.verbose,
        Rc::clone(&tally),
    ));
    let mut tasks = Vec::new();
    for topic in TOPICS {
        tasks.push(actix::spawn(subscriber(
            client.clone(),
            topic,
            deadline,
            Rc::clone(&tally),
        )));
    }
    for n in 0..CALLERS {
        let rng = Rng::new(args.seed, 1 + n);
        tasks.push(actix::spawn(caller(
            client.clone(),
            n,
            rng,
            deadline,
            args.max_calls,
            Rc::clone(&tally),
        )));
    }
    say(&mut child, "GO");
    if args.verbose {
        // A line every twelfth of the run: how memory and the connection go.
        let (client, every) = (client.clone(), (seconds / 12).max(Duration::from_secs(1)));
        let origin = Instant::from_std(origin);
        actix::spawn(async move {
            while Instant::now() + every <= deadline {
                tokio::time::sleep(every).await;
                let stats = client.stats();
                println!(
                    "{:>8.3}s  rss {}, pending {}, reconnects {}",
                    origin.elapsed().as_secs_f64(),
                    mib(Rss::sample()),
                    stats.pending,
                    stats.reconnects
                );
            }
        });
    }

    // NOTE: "start" is sampled after a warm-up under full load and faults
    // (a tenth of the run, 1 to 6 s): the allocator's arenas, the pending
    // table, the subscription queues, the outbound buffers and the first
    // reconnects' dial and handshake buffers reach their working size then.
    // The verdict compares "end" with "middle": both taken under the same
    // paced load after many reconnects, so growth between them is growth
    // with time — a leak — not setting up.
    let warm_up = (seconds / 10).clamp(Duration::from_secs(1), Duration::from_secs(6));
    tokio::time::sleep_until(started + warm_up).await;
    let start = Rss::sample();
    tokio::time::sleep_until(started + seconds / 2).await;
    let middle = Rss::sample();
    tokio::time::sleep_until(deadline).await;
    let end = Rss::sample();
    say(&mut child, "STOP");

    // Each task ends within a call's bound of the deadline.
    let mut stuck_tasks = 0;
    let bound = Instant::now() + REQUEST_TIMEOUT + HUNG_AFTER + Duration::from_secs(2);
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout_at(bound, task).await.is_err() {
            abort.abort();
            stuck_tasks += 1;
        }
    }
    let pending_first = client.stats().pending;
    let settling = Instant::now();
    let mut pending = pending_first;
    while pending > 0 && settling.elapsed() < REQUEST_TIMEOUT + Duration::from_secs(1) {
        tokio::time::sleep(ms(10)).await;
        pending = client.stats().pending;
    }
    let pending_settled_in = settling.elapsed();
    let ran_for = started.elapsed();
    if tokio::time::timeout(CLOSE_BOUND, client.close())
        .await
        .is_err()
    {
        eprintln!("soak: closing the client took over {CLOSE_BOUND:?}");
    }
    // The counters once closed: a reconnect that completed during the
    // wind-down is in both these and the events.
    let stats = client.stats();
    drop(client);
    if tokio::time::timeout(CLOSE_BOUND, watcher).await.is_err() {
        eprintln!("soak: the event stream did not end within {CLOSE_BOUND:?} of the close");
    }
    drop(child);
    let tally = std::mem::take(&mut *tally.borrow_mut());
    Ok(Outcome {
        tally,
        stats,
        pending_first,
        pending,
        pending_settled_in,
        stuck_tasks,
        samples: Samples {
            launch,
            start,
            middle,
            end,
            warm_up,
        },
        ran_for,
    })
}

// ---- main ------------------------------------------------------------------

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("soak: {err}");
            return ExitCode::from(2);
        }
    };
    if args.serve {
        return serve(&args);
    }
    let origin = std::time::Instant::now();
    let launch = Rss::sample();
    println!(
        "soak: {} s, {} build, seed {} (replay its faults with --seed {}), {CALLERS} callers, {} subscribers, at most {} calls",
        args.seconds,
        if cfg!(debug_assertions) { "debug" } else { "release" },
        args.seed,
        args.seed,
        TOPICS.len(),
        args.max_calls
    );
    let child = std::env::current_exe()
        .map_err(|e| e.to_string())
        .and_then(|exe| {
            Command::new(exe)
                .args(["--serve", "--seed", &args.seed.to_string()])
                .args(["--seconds", &args.seconds.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| e.to_string())
        });
    let mut child = match child {
        Ok(child) => child,
        Err(err) => {
            eprintln!("soak: could not start the server process: {err}");
            return ExitCode::from(2);
        }
    };
    let faults: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let resent: Arc<Mutex<Option<Resent>>> = Arc::default();
    let (port_tx, port_rx) = mpsc::channel();
    let reader = {
        let stdout = child.stdout.take().expect("stdout is piped");
        let (faults, resent, verbose) = (Arc::clone(&faults), Arc::clone(&resent), args.verbose);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("PORT ") {
                    let _ = port_tx.send(port.trim().parse::<u16>().ok());
                } else if let Some(counts) = line.strip_prefix("RESENT ") {
                    let n: Vec<u64> = counts.split(' ').filter_map(|n| n.parse().ok()).collect();
                    if let [opted_in, plain, thrice] = n[..] {
                        *lock(&resent) = Some(Resent {
                            opted_in,
                            plain,
                            thrice,
                        });
                    }
                } else if let Some(fault) = line.strip_prefix("FAULT ") {
                    let (kind, detail) = fault.split_once('|').unwrap_or((fault, ""));
                    *lock(&faults).entry(kind.to_owned()).or_default() += 1;
                    if verbose {
                        println!(
                            "{:>8.3}s  fault: {kind} {detail}",
                            origin.elapsed().as_secs_f64()
                        );
                    }
                }
            }
        })
    };
    let stdin = child.stdin.take().expect("stdin is piped");
    let outcome = match port_rx.recv_timeout(CHILD_START) {
        Ok(Some(port)) => actix::System::new().block_on(run(&args, port, stdin, launch, origin)),
        _ => Err(format!(
            "the server process gave no port within {CHILD_START:?}"
        )),
    };
    let child_ended = stop_child(&mut child);
    let _ = reader.join();
    let faults = std::mem::take(&mut *lock(&faults));
    let resent = lock(&resent).take();
    match outcome {
        Ok(outcome) => report(&outcome, &faults, resent, child_ended),
        Err(err) => {
            eprintln!("soak: {err}");
            ExitCode::from(2)
        }
    }
}

/// Waits (bounded) for the child, whose stdin is closed by now; kills it
/// if it does not exit in time. Returns how it ended.
fn stop_child(child: &mut Child) -> String {
    let since = std::time::Instant::now();
    while since.elapsed() < CHILD_EXIT {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return "exited".into(),
            Ok(Some(status)) => return format!("exited with {status}"),
            Ok(None) => std::thread::sleep(ms(50)),
            Err(err) => return format!("could not be waited for: {err}"),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    format!("killed after {CHILD_EXIT:?}")
}

/// What the server saw of calls sent more than once (see `Resends`).
struct Resent {
    opted_in: u64,
    plain: u64,
    thrice: u64,
}

/// Prints the results and decides: `SUCCESS` only if the books balance.
fn report(
    outcome: &Outcome,
    faults: &BTreeMap<String, u64>,
    resent: Option<Resent>,
    child_ended: String,
) -> ExitCode {
    let Outcome {
        tally,
        stats,
        samples,
        ..
    } = outcome;
    let calls = &tally.calls;
    let items = &tally.items;
    let events = &tally.events;
    let list = |map: &BTreeMap<String, u64>| -> String {
        if map.is_empty() {
            return "none".into();
        }
        map.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "ran for {:.1} s; server process {child_ended}",
        outcome.ran_for.as_secs_f64()
    );
    println!(
        "faults injected: {} ({})",
        faults.values().sum::<u64>(),
        list(faults)
    );
    println!("calls made:            {:>9}", calls.made);
    println!("  ended with a result: {:>9}", calls.result);
    println!("  with an rpc error:   {:>9}", calls.rpc_error);
    println!("  with a timeout:      {:>9}", calls.timeout);
    println!("  with a disconnect:   {:>9}", calls.disconnect);
    println!("  not connected:       {:>9}", calls.not_connected);
    for (kind, n) in &calls.other {
        println!("  {:<20} {n:>9}", format!("{kind}:"));
    }
    println!("  sum:                 {:>9}", calls.ended());
    println!(
        "  wrong answers: {}; retry_on_reconnect calls {} ({} answered)",
        calls.wrong, calls.retrying, calls.retrying_answered
    );
    for example in &calls.wrong_examples {
        println!("    e.g. {example}");
    }
    match &resent {
        Some(r) => println!(
            "  seen twice by the server: {} opted in, {} plain; three times: {}",
            r.opted_in, r.plain, r.thrice
        ),
        None => println!("  seen twice by the server: n/a (the server process did not say)"),
    }
    if outcome.pending_first == outcome.pending {
        println!("pending at the end:    {:>9}", outcome.pending);
    } else {
        println!(
            "pending at the end:    {:>9} (first reading {}, settled within {:?})",
            outcome.pending, outcome.pending_first, outcome.pending_settled_in
        );
    }
    println!(
        "reconnects: {} (Reconnected events {}); heartbeat failures: {}",
        stats.reconnects, events.reconnected, stats.heartbeat_failures
    );
    println!(
        "disconnects: {} ({}); reconnect attempts {}; events missed {}",
        events.disconnected.values().sum::<u64>(),
        list(&events.disconnected),
        events.reconnecting,
        events.lagged
    );
    println!(
        "client stats: calls sent {}, timeouts {}, unknown ids {}, invalid messages {}, bytes sent {}, bytes received {}",
        stats.calls_sent,
        stats.timeouts,
        stats.unknown_ids,
        stats.invalid_messages,
        stats.bytes_sent,
        stats.bytes_received
    );
    println!(
        "subscription items: {}; gaps signalled (Resubscribed): {} ({}); lagged: {} times, {} missed; out of order: {}; undecodable: {}",
        items.items,
        items.gaps.values().sum::<u64>(),
        list(&items.gaps),
        items.lagged,
        items.missed,
        items.out_of_order,
        items.invalid
    );
    println!(
        "subscriptions ended and made anew: {}; subscribe failures {}, unsubscribe failures {}",
        list(&items.ended),
        items.subscribe_failures,
        items.unsubscribe_failures
    );
    let growth = match (samples.middle, samples.end) {
        (Some(middle), Some(end)) => Some(end.now as f64 / middle.now as f64 - 1.0),
        _ => None,
    };
    println!(
        "RSS (client process): launch {}, start {} (after {} s of warm-up), middle {}, end {}{}, peak {}",
        mib(samples.launch),
        mib(samples.start),
        samples.warm_up.as_secs(),
        mib(samples.middle),
        mib(samples.end),
        growth.map_or(String::new(), |g| format!(" ({:+.1}% over middle)", g * 100.0)),
        samples.end.map_or("n/a".to_owned(), |r| format!(
            "{:.1} MiB",
            r.peak as f64 / 1024.0
        )),
    );

    let mut failures = Vec::new();
    if calls.ended() != calls.made {
        failures.push(format!(
            "{} calls made but {} ended ({} task(s) did not finish)",
            calls.made,
            calls.ended(),
            outcome.stuck_tasks
        ));
    }
    if outcome.stuck_tasks > 0 {
        failures.push(format!(
            "{} task(s) had not finished {:?} after the deadline",
            outcome.stuck_tasks,
            REQUEST_TIMEOUT + HUNG_AFTER + Duration::from_secs(2)
        ));
    }
    if let Some(hung) = calls.other.get("hung") {
        failures.push(format!(
            "{hung} call(s) had no outcome within {:?}",
            REQUEST_TIMEOUT + HUNG_AFTER
        ));
    }
    if outcome.pending != 0 {
        failures.push(format!(
            "{} call(s) still pending {:?} after the last caller was done",
            outcome.pending, outcome.pending_settled_in
        ));
    }
    if stats.reconnects == 0 {
        failures.push("no reconnect happened: the faults did not bite".into());
    }
    if events.lagged == 0 && stats.reconnects != events.reconnected {
        failures.push(format!(
            "stats count {} reconnects but the events told {}",
            stats.reconnects, events.reconnected
        ));
    }
    if let Some(growth) = growth.filter(|g| *g > RSS_GROWTH_LIMIT) {
        failures.push(format!(
            "RSS grew {:.1}% from the middle to the end (limit {:.0}%)",
            growth * 100.0,
            RSS_GROWTH_LIMIT * 100.0
        ));
    }
    match &resent {
        Some(r) if r.plain > 0 => failures.push(format!(
            "{} call(s) that did not opt in reached the server twice",
            r.plain
        )),
        Some(r) if r.thrice > 0 => failures.push(format!(
            "{} call(s) reached the server three times or more",
            r.thrice
        )),
        Some(_) => {}
        None => failures.push("the server process did not report the calls it saw again".into()),
    }
    if calls.wrong > 0 {
        failures.push(format!("{} wrong answer(s)", calls.wrong));
    }
    if items.out_of_order > 0 {
        failures.push(format!(
            "{} subscription item(s) out of order",
            items.out_of_order
        ));
    }
    if failures.is_empty() {
        println!("PASS");
        ExitCode::SUCCESS
    } else {
        for failure in &failures {
            println!("FAIL: {failure}");
        }
        ExitCode::FAILURE
    }
}
