//! `jsonrpc-ws`: call a method, send a notification, follow a subscription
//! or send a batch on any JSON-RPC 2.0 websocket server from the command
//! line.
//!
//! ```text
//! jsonrpc-ws call      <URL> <METHOD> [PARAMS] [OPTIONS]
//! jsonrpc-ws notify    <URL> <METHOD> [PARAMS] [OPTIONS]
//! jsonrpc-ws subscribe <URL> <METHOD> [PARAMS] --unsubscribe <METHOD> [--count N] [--reconnect] [OPTIONS]
//! jsonrpc-ws batch     <URL> <JSON> [OPTIONS]
//! jsonrpc-ws proxy     --upstream <URL>... [--listen ADDR] [--metrics] [OPTIONS]
//! ```
//!
//! Exit status: 0 success, 1 the server answered with a JSON-RPC error (or
//! ended the subscription), 2 transport/protocol/timeout/disconnect errors,
//! 64 usage errors.

mod proxy;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use awc::http::header::{HeaderName, HeaderValue};
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use jsonrpc_websocket::serde_json::{self, value::RawValue};
use jsonrpc_websocket::{
    Client, ConnectionBuilder, Error, ErrorObject, Id, Params, ReconnectPolicy, Route,
    RpcConnection, ServerNotification, ServerRequest, Subscription, SubscriptionEnd,
    SubscriptionItem,
};

/// The server answered with a JSON-RPC error object.
const EXIT_RPC_ERROR: u8 = 1;
/// Transport, protocol, timeout or disconnect errors.
const EXIT_FAILURE: u8 = 2;
/// Usage errors (`EX_USAGE` from sysexits.h).
const EXIT_USAGE: u8 = 64;

/// The largest `--timeout` accepted, in seconds (about 136 years).
const MAX_TIMEOUT_SECS: f64 = u32::MAX as f64;

/// The shortest `--heartbeat` other than 0 (off), in seconds: a ping every
/// few microseconds would only keep the connection busy.
const MIN_HEARTBEAT_SECS: f64 = 0.01;

/// `subscribe --reconnect`'s and the proxy's upstreams' backoff: the first
/// step (it then doubles). Both steps are quoted in `subscribe --help` and
/// `proxy --help`.
const RECONNECT_INITIAL_DELAY: Duration = Duration::from_millis(100);
/// The same backoff's largest step. Short enough that a
/// restarted server is found again within seconds.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "jsonrpc-ws",
    version,
    about = "Call methods, send notifications, follow subscriptions and send batches on a JSON-RPC 2.0 websocket server, or proxy JSON-RPC over HTTP and websocket to such servers",
    after_help = "\
PARAMS is JSON: an array for positional params, an object for named params;
leave it out to send no params. PARAMS and --reply results are sent exactly
as written. Options may come before or after the subcommand's arguments.

Exit status: 0 success, 1 the server answered with a JSON-RPC error
(`error <code>: <message>` and `data: <json>` on stderr; for `batch`, an
entry's error object on stdout) or ended the subscription, 2 transport,
protocol, timeout or disconnect errors (one `error: ...` line on stderr),
64 usage errors.

Set RUST_LOG (e.g. RUST_LOG=debug) to see what the connection does."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    #[command(flatten)]
    options: Options,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Call METHOD and print its result as one line of compact JSON.
    Call(Target),
    /// Send METHOD as a notification (no reply); exits once it is written
    /// and the connection is closed.
    Notify(Target),
    /// Subscribe with METHOD and print each item's result as one line of
    /// compact JSON, until --count items, the end of the subscription or
    /// of the connection (with --reconnect: across lost connections).
    #[command(after_help = "\
Each item is printed as the server sent it (compacted) and flushed at once.
`lagged: missed N items` on stderr says that items were dropped because
they came faster than they could be printed.

With --count N: after N items, unsubscribes (waiting for the answer),
closes and exits 0; so does a closed stdout (e.g. `| head -n 3`). Without
it: runs until the subscription or the connection ends. The server ending
the subscription exits 1 (`error: subscription <ID> closed by the server:
<error>`), the connection ending exits 2. --timeout bounds the connection,
the subscribe and the unsubscribe calls, not the wait for items.

With --reconnect, a connection that is closed or dropped by the server, or
found dead by the heartbeat (see --heartbeat), is dialled again after
100 ms, then after steps doubling up to 5 s (each wait a random part of its
step), for as long as it takes; then the subscription is made again with
the same params and its items go on, on stdout, as before. --count counts
the items of every connection. Each gap is one JSON line on stderr, and
nothing else is printed on stderr about it:

  {\"gap\":{\"subscription\":<ID>,\"down_for_ms\":<N>}}

<ID> is the subscription id the server first answered, as JSON (the one
in error messages; the server's new id may differ); <N> is how long the
subscription was down, in milliseconds, from the loss of the connection to
the answer to the new subscribe call. Items the server sent meanwhile are
lost. A server that refuses to make the subscription again exits 1
(`error: subscription <ID> could not be made again after reconnecting:
<error>`); one that does not answer within --timeout exits 2, and so do
close code 1008 and a handshake refused with HTTP 401 or 403 (never
retried). The first connection is not retried: a server that cannot be
reached at the start exits 2.")]
    Subscribe(SubscribeArgs),
    /// Send a batch of calls and notifications as one message and print
    /// one line per call, in the order given.
    #[command(after_help = "\
JSON is an array of entries, each an object: {\"method\": \"m\", \"params\": [..]}
for a call, with \"notification\": true for a notification. \"params\" (an
array or an object) may be left out; it is sent exactly as written.

Each call prints one line on stdout, in the order of the entries, whatever
order the server answers in: {\"result\": <the result as sent>}, or
{\"error\": <the server's error object>}, or {\"failed\": \"<why>\"} when the
call got no answer (timeout, lost connection, left out of the server's
answer). Notifications print nothing.

Exit status: 0 every call succeeded; 1 some call got an error object; 2 some
call got no answer (with one `error: ...` line on stderr), or the batch could
not be sent; 64 JSON that is not such an array.")]
    Batch(BatchArgs),
    /// Serve JSON-RPC over HTTP and websocket on one port and forward it to
    /// upstream websocket servers, until Ctrl-C or SIGTERM.
    #[command(after_help = proxy::AFTER_HELP)]
    Proxy(proxy::ProxyArgs),
}

#[derive(Debug, Args)]
struct Target {
    /// The server's URL (ws://, wss://, http:// or https://).
    url: String,

    /// The method to call or notify.
    method: String,

    /// The params as JSON: an array (positional) or an object (named),
    /// sent exactly as written.
    #[arg(value_parser = parse_params)]
    params: Option<String>,
}

#[derive(Debug, Args)]
struct SubscribeArgs {
    /// The server's URL (ws://, wss://, http:// or https://).
    url: String,

    /// The subscribe method.
    method: String,

    /// The subscribe call's params as JSON: an array (positional) or an
    /// object (named), sent exactly as written.
    #[arg(value_parser = parse_params)]
    params: Option<String>,

    /// The method that ends the subscription (called with the subscription
    /// id as its only param).
    #[arg(long, value_name = "METHOD")]
    unsubscribe: String,

    /// Exit after this many items, unsubscribing first.
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    count: Option<u64>,

    /// Keep the subscription across dropped connections and server restarts:
    /// reconnect (100 ms doubling up to 5 s, forever) and subscribe again;
    /// one `{"gap":...}` line on stderr per gap (see below).
    #[arg(long)]
    reconnect: bool,
}

#[derive(Debug, Args)]
struct BatchArgs {
    /// The server's URL (ws://, wss://, http:// or https://).
    url: String,

    /// The batch as a JSON array of {"method": .., "params": ..,
    /// "notification": true|false} objects (see below).
    #[arg(value_name = "JSON", value_parser = parse_batch)]
    entries: Entries,
}

/// `batch`'s entries, in order (a type of its own: clap would take a `Vec`
/// for a repeatable argument).
#[derive(Debug, Clone)]
struct Entries(Vec<Entry>);

/// One entry of `batch`'s JSON.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    method: String,
    /// Present whenever the member is, even as `null` (which is refused).
    #[serde(default, deserialize_with = "present")]
    params: Option<Box<RawValue>>,
    #[serde(default)]
    notification: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    <Box<RawValue> as serde::Deserialize>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Args)]
struct Options {
    /// How long to wait for the connection and for the response, in seconds
    /// (fractions allowed, e.g. 0.5).
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        default_value = "30",
        value_parser = parse_timeout,
        allow_negative_numbers = true
    )]
    timeout: Duration,

    /// Adds a header to the websocket handshake (repeatable).
    #[arg(
        short = 'H',
        long = "header",
        global = true,
        value_name = "'NAME: VALUE'",
        value_parser = parse_header
    )]
    headers: Vec<(HeaderName, HeaderValue)>,

    /// Sends `Authorization: Basic ...` with the handshake.
    #[arg(
        long,
        global = true,
        value_name = "USER:PASS",
        value_parser = parse_basic_auth,
        conflicts_with = "bearer"
    )]
    basic_auth: Option<(String, String)>,

    /// Sends `Authorization: Bearer <TOKEN>` with the handshake.
    #[arg(long, global = true, value_name = "TOKEN")]
    bearer: Option<String>,

    /// The largest message sent or accepted, in bytes [default: 16 MiB].
    #[arg(
        long,
        global = true,
        value_name = "BYTES",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_message_size: Option<u64>,

    /// Answers the server's requests for METHOD with this JSON result, sent
    /// exactly as written, while waiting (repeatable; the last one for a
    /// METHOD wins). METHOD may be
    /// `*` (every method) or end with `.` (every method under a prefix).
    /// Requests nothing answers get error -32601.
    #[arg(
        long = "reply",
        global = true,
        value_name = "METHOD=JSON",
        value_parser = parse_reply
    )]
    replies: Vec<(String, Box<RawValue>)>,

    /// Prints each notification from the server as one JSON line on stderr:
    /// {"method":...,"params":...}.
    #[arg(long, global = true)]
    print_notifications: bool,

    /// Pings the server every SECS seconds (fractions allowed, e.g. 0.5; at
    /// least 0.01; 0 turns it off); a server silent for --heartbeat-timeout
    /// after a ping is taken as gone (the connection is lost; with
    /// `subscribe --reconnect`, dialled again) [default: 15]
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        value_parser = parse_heartbeat,
        allow_negative_numbers = true
    )]
    heartbeat: Option<Duration>,

    /// How long the server may stay silent after a ping, in seconds
    /// (fractions allowed; no effect with --heartbeat 0) [default: 10]
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        value_parser = parse_timeout,
        allow_negative_numbers = true
    )]
    heartbeat_timeout: Option<Duration>,
}

// ---- argument parsers: every failure is a usage error (exit 64) -----------

/// Checks PARAMS and keeps its text, to be sent as written (numbers keep
/// their digits, objects their key order).
fn parse_params(text: &str) -> Result<String, String> {
    let raw = serde_json::from_str::<&RawValue>(text)
        .map_err(|err| format!("PARAMS is not valid JSON: {err}"))?;
    match raw.get().as_bytes().first() {
        Some(b'[' | b'{') => Ok(raw.get().to_owned()),
        _ => Err("PARAMS must be a JSON array (positional) or object (named)".into()),
    }
}

/// Checks `batch`'s JSON: a non-empty array of entries, each with a method
/// and params that are an array or an object (kept as written).
fn parse_batch(text: &str) -> Result<Entries, String> {
    let raw = serde_json::from_str::<&RawValue>(text)
        .map_err(|err| format!("the batch is not valid JSON: {err}"))?;
    let items: Vec<&RawValue> = match raw.get().as_bytes().first() {
        Some(b'[') => serde_json::from_str(raw.get()).map_err(|err| err.to_string())?,
        _ => return Err("the batch must be a JSON array of entries".into()),
    };
    if items.is_empty() {
        return Err("the batch is empty (JSON-RPC forbids an empty batch)".into());
    }
    let mut entries = Vec::with_capacity(items.len());
    for (n, item) in items.into_iter().enumerate() {
        let n = n + 1;
        if !item.get().starts_with('{') {
            return Err(format!(
                "entry {n} must be an object like {{\"method\": \"m\", \"params\": [..]}}"
            ));
        }
        let entry: Entry =
            serde_json::from_str(item.get()).map_err(|err| format!("entry {n}: {err}"))?;
        if let Some(params) = &entry.params {
            if !matches!(params.get().as_bytes().first(), Some(b'[' | b'{')) {
                return Err(format!(
                    "entry {n}: params must be a JSON array (positional) or object (named)"
                ));
            }
        }
        entries.push(entry);
    }
    Ok(Entries(entries))
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| "expected a number of seconds, e.g. 30 or 0.5".to_owned())?;
    if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
        return Err(format!(
            "must be greater than 0 and at most {MAX_TIMEOUT_SECS} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--heartbeat`: 0 (off), or an interval the connection can keep up with.
fn parse_heartbeat(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| "expected a number of seconds, e.g. 15 or 0.5 (0 turns it off)".to_owned())?;
    if secs == 0.0 {
        return Ok(Duration::ZERO);
    }
    if !(MIN_HEARTBEAT_SECS..=MAX_TIMEOUT_SECS).contains(&secs) {
        return Err(format!(
            "must be 0 (off) or from {MIN_HEARTBEAT_SECS} to {MAX_TIMEOUT_SECS} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| "expected 'Name: value' (no colon found)".to_owned())?;
    let name = HeaderName::try_from(name.trim())
        .map_err(|_| format!("invalid header name {:?}", name.trim()))?;
    let value = HeaderValue::try_from(value.trim())
        .map_err(|_| format!("invalid value for header {name}"))?;
    Ok((name, value))
}

fn parse_basic_auth(text: &str) -> Result<(String, String), String> {
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| "expected USER:PASS (no colon found)".to_owned())?;
    Ok((user.to_owned(), password.to_owned()))
}

/// Checks the JSON and keeps its text: the answer is sent as written.
fn parse_reply(text: &str) -> Result<(String, Box<RawValue>), String> {
    let (method, json) = text
        .split_once('=')
        .ok_or_else(|| "expected METHOD=JSON (no '=' found)".to_owned())?;
    if method.is_empty() {
        return Err("expected METHOD=JSON (empty METHOD)".into());
    }
    let result = serde_json::from_str(json)
        .map_err(|err| format!("the result for {method:?} is not valid JSON: {err}"))?;
    Ok((method.to_owned(), result))
}

// ---- running ---------------------------------------------------------------

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version go to stdout, usage errors to stderr.
            let _ = err.print();
            return match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    // Quiet by default so that failures are one line; RUST_LOG turns logs on.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off"))
        .target(env_logger::Target::Stderr)
        .init();
    jsonrpc_websocket::actix::System::new().block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let Cli { command, options } = cli;
    // One connection per upstream, and a server: none of what follows.
    if let Command::Proxy(args) = command {
        return proxy::run(args, options).await;
    }
    let url = match &command {
        Command::Call(target) | Command::Notify(target) => target.url.as_str(),
        Command::Subscribe(args) => args.url.as_str(),
        Command::Batch(args) => args.url.as_str(),
        Command::Proxy(_) => unreachable!("the proxy returned above"),
    };
    let mut builder = configure(RpcConnection::builder(url), options);
    if matches!(&command, Command::Subscribe(args) if args.reconnect) {
        builder = builder.reconnect(
            ReconnectPolicy::new()
                .initial_delay(RECONNECT_INITIAL_DELAY)
                .max_delay(RECONNECT_MAX_DELAY)
                .forever(),
        );
    }
    let client = match builder.connect().await {
        Ok(client) => client,
        Err(err) => return fail(&err),
    };
    match command {
        Command::Call(target) => call(&client, target).await,
        Command::Notify(target) => notify(&client, target).await,
        Command::Subscribe(args) => subscribe(&client, args).await,
        Command::Batch(args) => batch(&client, args.entries.0).await,
        Command::Proxy(_) => unreachable!("the proxy returned above"),
    }
}

async fn call(client: &Client, target: Target) -> ExitCode {
    let params = target.params.map_or_else(Params::none, Params::from_json);
    // The raw result keeps the server's key order and number spelling.
    let code = match client.call::<Box<RawValue>>(target.method, params).await {
        Ok(result) => print_result(&compact(result.get())),
        Err(err) => fail(&err),
    };
    // Waits for the closing handshake (bounded by the close timeout).
    let _ = client.close().await;
    code
}

async fn notify(client: &Client, target: Target) -> ExitCode {
    let params = target.params.map_or_else(Params::none, Params::from_json);
    if let Err(err) = client.notify(target.method, params).await {
        let _ = client.close().await;
        return fail(&err);
    }
    closed_cleanly(client).await
}

/// Closes, waiting for the closing handshake (bounded by the close
/// timeout); what was queued before is flushed before the close frame. A
/// notification counts as delivered only if the socket closed cleanly.
async fn closed_cleanly(client: &Client) -> ExitCode {
    match client.close().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

// ---- subscribe ---------------------------------------------------------------

/// How following a subscription stopped.
enum Stop {
    /// `--count` items were printed, or stdout was closed: unsubscribe.
    Enough,
    /// The subscription ended on its own.
    Ended,
    /// Writing to stdout failed.
    Write(std::io::Error),
}

async fn subscribe(client: &Client, args: SubscribeArgs) -> ExitCode {
    let SubscribeArgs {
        method,
        params,
        unsubscribe,
        count,
        ..
    } = args;
    let params = params.map_or_else(Params::none, Params::from_json);
    let mut subscription = match client
        .subscribe::<Box<RawValue>>(method, params, unsubscribe)
        .await
    {
        Ok(subscription) => subscription,
        Err(err) => {
            let code = fail(&err);
            let _ = client.close().await;
            return code;
        }
    };
    let code = match follow(&mut subscription, count).await {
        // Ended just after the last item wanted: nothing to unsubscribe
        // (the library would send the call to a method named `unsubscribe`).
        Stop::Enough if subscription.close_reason().is_some() => ExitCode::SUCCESS,
        Stop::Enough => match subscription.unsubscribe().await {
            Ok(_) => ExitCode::SUCCESS,
            Err(err) => fail(&err),
        },
        Stop::Ended => ended(&subscription),
        Stop::Write(err) => {
            eprintln!("error: could not write an item to stdout: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
    };
    let _ = client.close().await;
    code
}

/// Prints the subscription's items, one line each, until `count` of them,
/// a closed stdout or the end of the subscription.
async fn follow(subscription: &mut Subscription<Box<RawValue>>, count: Option<u64>) -> Stop {
    let mut printed: u64 = 0;
    loop {
        if count.is_some_and(|count| printed >= count) {
            return Stop::Enough;
        }
        match subscription.next().await {
            Some(SubscriptionItem::Item(result)) => {
                let mut stdout = std::io::stdout().lock();
                let written =
                    writeln!(stdout, "{}", compact(result.get())).and_then(|()| stdout.flush());
                match written {
                    Ok(()) => printed += 1,
                    // `| head -n 3`: whoever reads has had enough.
                    Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
                        return Stop::Enough;
                    }
                    Err(err) => return Stop::Write(err),
                }
            }
            Some(SubscriptionItem::Lagged { missed }) => {
                eprintln!("lagged: missed {missed} items");
            }
            Some(SubscriptionItem::Invalid(err)) => {
                eprintln!("invalid item: {}", chain(&err));
            }
            // Only with --reconnect.
            Some(SubscriptionItem::Resubscribed { down_for }) => {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "{}",
                    gap_line(subscription.id(), down_for)
                );
            }
            // `Closed` is only sent to actors; a stream ends instead.
            Some(_) => {}
            None => return Stop::Ended,
        }
    }
}

/// `{"gap":{"subscription":<id>,"down_for_ms":<n>}}`: the subscription was
/// down for `down_for` and has been made again.
fn gap_line(id: &Id, down_for: Duration) -> String {
    // `Id` displays as its exact JSON text.
    format!(
        r#"{{"gap":{{"subscription":{id},"down_for_ms":{}}}}}"#,
        down_for.as_millis()
    )
}

/// Reports how a subscription ended on its own and picks the exit status.
fn ended(subscription: &Subscription<Box<RawValue>>) -> ExitCode {
    let id = subscription.id();
    match subscription.close_reason() {
        Some(SubscriptionEnd::ServerClosed { error }) => {
            eprintln!(
                "error: subscription {id} closed by the server: {}",
                compact(&error)
            );
            ExitCode::from(EXIT_RPC_ERROR)
        }
        Some(SubscriptionEnd::Disconnected { reason }) => {
            eprintln!("error: subscription {id} ended: {reason}");
            ExitCode::from(EXIT_FAILURE)
        }
        Some(SubscriptionEnd::ResubscribeFailed { error }) => {
            // The library keeps the server's error object as JSON text, and
            // says what went wrong otherwise (e.g. no answer in time).
            let refused = serde_json::from_str::<ErrorObject>(&error).is_ok();
            eprintln!(
                "error: subscription {id} could not be made again after reconnecting: {}",
                if refused { compact(&error) } else { error }
            );
            ExitCode::from(if refused {
                EXIT_RPC_ERROR
            } else {
                EXIT_FAILURE
            })
        }
        Some(end) => {
            eprintln!("error: subscription {id} ended: {end}");
            ExitCode::from(EXIT_FAILURE)
        }
        None => {
            eprintln!("error: subscription {id} ended without a reason");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

// ---- batch -------------------------------------------------------------------

async fn batch(client: &Client, entries: Vec<Entry>) -> ExitCode {
    let mut batch = client.batch();
    let mut slots = Vec::new();
    for entry in entries {
        let params = entry
            .params
            .map_or_else(Params::none, |params| Params::from_json(params.get()));
        if entry.notification {
            batch.notify(entry.method, params);
        } else {
            slots.push(batch.call::<Box<RawValue>>(entry.method, params));
        }
    }
    let mut results = match batch.send().await {
        Ok(results) => results,
        Err(err) => {
            let _ = client.close().await;
            return fail(&err);
        }
    };
    if slots.is_empty() {
        // Notifications only: delivered once the socket closed cleanly.
        return closed_cleanly(client).await;
    }
    let (mut lines, mut rpc_errors, mut failures) = (String::new(), 0, Vec::new());
    for slot in slots {
        let line = match results.take(slot) {
            Ok(result) => format!(r#"{{"result":{}}}"#, compact(result.get())),
            Err(Error::Rpc { error, .. }) => {
                rpc_errors += 1;
                let error = serde_json::to_string(&error).unwrap_or_default();
                format!(r#"{{"error":{}}}"#, compact(&error))
            }
            Err(err) => {
                let why = serde_json::Value::String(chain(&err));
                failures.push(err);
                format!(r#"{{"failed":{why}}}"#)
            }
        };
        lines.push_str(&line);
        lines.push('\n');
    }
    let printed = print_lines(&lines);
    let _ = client.close().await;
    if let Some(first) = failures.first() {
        let more = match failures.len() - 1 {
            0 => String::new(),
            n => format!(" (and {n} more call(s) got no answer)"),
        };
        eprintln!("error: {}{more}", chain(first));
        ExitCode::from(EXIT_FAILURE)
    } else if printed != ExitCode::SUCCESS {
        printed
    } else if rpc_errors > 0 {
        ExitCode::from(EXIT_RPC_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

fn configure(builder: ConnectionBuilder, options: Options) -> ConnectionBuilder {
    let Options {
        timeout,
        headers,
        basic_auth,
        bearer,
        max_message_size,
        replies,
        print_notifications,
        heartbeat,
        heartbeat_timeout,
    } = options;
    let mut builder = builder
        .request_timeout(timeout)
        .connect_timeout(timeout)
        .headers(headers);
    // Unset: the library's defaults. The interval first: with it off, the
    // library has no timeout to set.
    if let Some(interval) = heartbeat {
        builder = builder.heartbeat(interval);
    }
    if let Some(limit) = heartbeat_timeout {
        builder = builder.heartbeat_timeout(limit);
    }
    if let Some((user, password)) = basic_auth {
        builder = builder.basic_auth(user, password);
    }
    if let Some(token) = bearer {
        builder = builder.bearer_auth(token);
    }
    if let Some(bytes) = max_message_size {
        builder = builder.max_message_size(usize::try_from(bytes).unwrap_or(usize::MAX));
    }
    handle_server_messages(builder, replies, print_notifications)
}

/// `--reply` and `--print-notifications`: answers and shows what the server
/// sends on its own while a call waits.
fn handle_server_messages(
    mut builder: ConnectionBuilder,
    replies: Vec<(String, Box<RawValue>)>,
    print_notifications: bool,
) -> ConnectionBuilder {
    // A later handler at the same route replaces an earlier one.
    for (method, result) in replies {
        builder = builder.register_fn(Route::from(method), move |_: ServerRequest| {
            let result = result.clone();
            async move { Ok::<_, ErrorObject>(result) }
        });
    }
    if print_notifications {
        builder = builder.on_notification("*", |notification: ServerNotification| {
            let line = serde_json::json!({
                "method": notification.method,
                "params": notification.params,
            });
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        });
    }
    builder
}

/// `json` without insignificant whitespace, otherwise exactly as sent.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

fn print_result(result: &str) -> ExitCode {
    print_lines(&format!("{result}\n"))
}

/// Writes `lines` (each ending with a line break) to stdout.
fn print_lines(lines: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(lines.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: could not write the result to stdout: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Reports `err` on stderr and picks the exit status.
fn fail(err: &Error) -> ExitCode {
    match err {
        Error::Rpc { error, .. } => {
            print_error_object(error);
            ExitCode::from(EXIT_RPC_ERROR)
        }
        // Only reachable with a value the argument parsers let through.
        Error::InvalidConfig { .. } | Error::InvalidParams { .. } => {
            eprintln!("error: {}", chain(err));
            ExitCode::from(EXIT_USAGE)
        }
        _ => {
            eprintln!("error: {}", chain(err));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `error <code>: <message>` and, when there is data, `data: <compact JSON>`.
fn print_error_object(error: &ErrorObject) {
    // A message with line breaks must still be one line.
    let message = error.message.replace('\r', "\\r").replace('\n', "\\n");
    let mut text = format!("error {}: {message}\n", error.code);
    if let Some(data) = &error.data {
        text.push_str(&format!("data: {}\n", compact(data.get())));
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// The error's text and that of each `source()`, joined with ": ". A cause
/// whose text its parent already ends with (awc's "…: Connection refused"
/// over the io error "Connection refused") is not repeated.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{compact, gap_line, parse_heartbeat};
    use jsonrpc_websocket::Id;
    use std::time::Duration;

    #[test]
    fn a_gap_line_is_one_json_object_with_the_id_as_sent() {
        assert_eq!(
            gap_line(&Id::from("ab"), Duration::from_micros(1_234_999)),
            r#"{"gap":{"subscription":"ab","down_for_ms":1234}}"#
        );
        let id = Id::from_json("12345678901234567890123").unwrap();
        assert_eq!(
            gap_line(&id, Duration::ZERO),
            r#"{"gap":{"subscription":12345678901234567890123,"down_for_ms":0}}"#
        );
    }

    #[test]
    fn heartbeat_is_zero_or_a_sensible_interval() {
        assert_eq!(parse_heartbeat("0"), Ok(Duration::ZERO));
        assert_eq!(parse_heartbeat("0.0"), Ok(Duration::ZERO));
        assert_eq!(parse_heartbeat("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_heartbeat(" 15 "), Ok(Duration::from_secs(15)));
        for bad in ["-1", "0.001", "NaN", "inf", "soon", ""] {
            assert!(parse_heartbeat(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn compact_drops_only_whitespace_outside_strings() {
        assert_eq!(
            compact("{ \"b\" : [1, 2],\n \"a\": \" x \\\" y \" }"),
            r#"{"b":[1,2],"a":" x \" y "}"#
        );
        assert_eq!(compact("1.50e3"), "1.50e3");
    }
}
