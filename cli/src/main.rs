//! `jsonrpc-ws`: call a method or send a notification on any JSON-RPC 2.0
//! websocket server from the command line.
//!
//! ```text
//! jsonrpc-ws call   <URL> <METHOD> [PARAMS] [OPTIONS]
//! jsonrpc-ws notify <URL> <METHOD> [PARAMS] [OPTIONS]
//! ```
//!
//! Exit status: 0 success, 1 the server answered with a JSON-RPC error,
//! 2 transport/protocol/timeout/disconnect errors, 64 usage errors.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use awc::http::header::{HeaderName, HeaderValue};
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use jsonrpc_websocket::serde_json::{self, value::RawValue};
use jsonrpc_websocket::{
    ConnectionBuilder, Error, ErrorObject, Params, Route, RpcConnection, ServerNotification,
    ServerRequest,
};

/// The server answered with a JSON-RPC error object.
const EXIT_RPC_ERROR: u8 = 1;
/// Transport, protocol, timeout or disconnect errors.
const EXIT_FAILURE: u8 = 2;
/// Usage errors (`EX_USAGE` from sysexits.h).
const EXIT_USAGE: u8 = 64;

/// The largest `--timeout` accepted, in seconds (about 136 years).
const MAX_TIMEOUT_SECS: f64 = u32::MAX as f64;

#[derive(Debug, Parser)]
#[command(
    name = "jsonrpc-ws",
    version,
    about = "Call methods and send notifications on a JSON-RPC 2.0 websocket server",
    after_help = "\
PARAMS is JSON: an array for positional params, an object for named params;
leave it out to send no params. PARAMS and --reply results are sent exactly
as written. Options may come before or after the subcommand's arguments.

Exit status: 0 success, 1 the server answered with a JSON-RPC error
(`error <code>: <message>` and `data: <json>` on stderr), 2 transport,
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
    let (target, is_call) = match command {
        Command::Call(target) => (target, true),
        Command::Notify(target) => (target, false),
    };
    let builder = configure(RpcConnection::builder(target.url.as_str()), options);
    let client = match builder.connect().await {
        Ok(client) => client,
        Err(err) => return fail(&err),
    };
    let params = target.params.map_or_else(Params::none, Params::from_json);
    let code = if is_call {
        // The raw result keeps the server's key order and number spelling.
        match client.call::<Box<RawValue>>(target.method, params).await {
            Ok(result) => print_result(&compact(result.get())),
            Err(err) => fail(&err),
        }
    } else {
        match client.notify(target.method, params).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err),
        }
    };
    // Waits for the closing handshake (bounded by the close timeout); a
    // notification queued above is flushed before the close frame. A
    // notification counts as delivered only if the socket closed cleanly.
    match client.close().await {
        Err(err) if !is_call && code == ExitCode::SUCCESS => fail(&err),
        _ => code,
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
    } = options;
    let mut builder = builder
        .request_timeout(timeout)
        .connect_timeout(timeout)
        .headers(headers);
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
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{result}").and_then(|()| stdout.flush()) {
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
    use super::compact;

    #[test]
    fn compact_drops_only_whitespace_outside_strings() {
        assert_eq!(
            compact("{ \"b\" : [1, 2],\n \"a\": \" x \\\" y \" }"),
            r#"{"b":[1,2],"a":" x \" y "}"#
        );
        assert_eq!(compact("1.50e3"), "1.50e3");
    }
}
