//! `jsonrpc-ws proxy`: a JSON-RPC proxy on one port, in front of one or
//! more upstream websocket servers, built from the library's `proxy`
//! pieces (`Forward`, `Upstreams`, `proxy::resource` for HTTP and
//! websocket at `/`, `proxy::metrics`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use clap::Args;
use jsonrpc_websocket::proxy::{self, Forward, ProxyConfig, Upstreams};
use jsonrpc_websocket::{Client, Error, ReconnectPolicy, RpcConnection};

// Upstreams reconnect as `subscribe --reconnect` does.
use crate::{
    chain, configure, Options, EXIT_FAILURE, EXIT_USAGE, RECONNECT_INITIAL_DELAY,
    RECONNECT_MAX_DELAY,
};

#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// The address to listen on, HOST:PORT (port 0 picks a free port; the
    /// address really used is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8545")]
    listen: String,

    /// An upstream server's URL (ws://, wss://, http:// or https://);
    /// repeat it for more upstreams.
    #[arg(long = "upstream", value_name = "URL", required = true)]
    upstreams: Vec<String>,

    /// The largest HTTP body or websocket message a client may send, in
    /// bytes; a larger body is answered 413, a larger message closes the
    /// session with 1009 [default: 5 MiB]
    #[arg(
        long,
        value_name = "BYTES",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_body: Option<u64>,

    /// The most entries in one batch; a larger batch is answered with one
    /// error -32005 and nothing is forwarded [default: 1000]
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_batch: Option<u64>,

    /// The most requests one websocket client may have in flight; beyond
    /// it, each is answered -32005 at once [default: 256]
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    per_client_in_flight: Option<u64>,

    /// Serves the proxy's counters, each upstream's state and latency at
    /// `GET /metrics` (Prometheus text).
    #[arg(long)]
    metrics: bool,
}

/// The text of `proxy --help` after the options.
pub(crate) const AFTER_HELP: &str = "\
JSON-RPC over HTTP: a POST to / carries a request, a notification or a
batch; the answer is the response body (a message of notifications only is
answered 204 No Content). JSON-RPC over websocket: a GET upgrading at /
opens a session, whose messages are forwarded side by side and answered as
each answer comes. Every request goes to one upstream connection, which
gives it an id of its own, and comes back with the client's id exactly as
the client wrote it; each batch entry goes on its own, with its own
--timeout, and the answers keep the batch's order.

Subscriptions (websocket only; eth_subscribe/eth_unsubscribe): identical
subscribe calls (the same method and params) share one upstream
subscription, made on the first and ended with the last subscriber; each
client gets its own subscription id. When the upstream is lost, the
subscription is made again (on another upstream if one is healthy) and
each subscriber is sent {\"subscription\":<ID>,\"gap\":{\"down_for_ms\":<N>}}
before its items go on.

Errors the proxy answers with itself: -32700 not JSON, -32600 not a
request, -32001 the upstream did not answer within --timeout, -32002 no
upstream could take it (or it was lost before answering), -32005 a limit
(--max-batch, --per-client-in-flight; a body over --max-body is answered
HTTP 413, a websocket message over it closes the session with 1009).

Upstreams: each is one websocket connection, opened before `listening on`
is printed (an upstream that cannot be reached then exits 2). --header,
--basic-auth, --bearer, --max-message-size, --heartbeat and
--heartbeat-timeout apply to every upstream connection (and --reply and
--print-notifications to what the upstreams send on their own). A lost
upstream is
dialled again after 100 ms, then after steps doubling up to 5 s, for as
long as it takes; meanwhile requests go to the other upstreams (the one
with the fewest requests pending), or wait for it (up to --timeout) when
none is left.

Prints `listening on <ADDR>` on stdout once it accepts connections. Ctrl-C
or SIGTERM stops it: no new connections, requests in flight are answered
(for up to --timeout), websocket clients get -32002 for new requests and
are then closed with 1001, and it exits 0; a second signal exits 130 at
once.";

/// Runs the proxy until Ctrl-C or SIGTERM.
pub(crate) async fn run(args: ProxyArgs, options: Options) -> ExitCode {
    let timeout = options.timeout;
    let clients = match connect_upstreams(&args.upstreams, &options).await {
        Ok(clients) => clients,
        Err(code) => return code,
    };
    let forward =
        Forward::new(Upstreams::new(clients.iter().cloned())).config(config(&args, timeout));
    let data = web::Data::new(forward.clone());
    let metrics = args.metrics;
    let server = HttpServer::new(move || {
        // A POST is JSON-RPC over HTTP, an upgrade a websocket session.
        let app = App::new()
            .app_data(data.clone())
            .service(proxy::resource("/"));
        if metrics {
            app.route("/metrics", web::get().to(proxy::metrics))
        } else {
            app
        }
    })
    // NOTE: actix-web's own handlers stop at once on Ctrl-C; ours finish
    // what is in flight first (see `shutdown_on_signals`).
    .disable_signals()
    // Answers go out at once, not held back by Nagle's algorithm waiting
    // for the client's ACK (tens of ms on a small answer).
    .tcp_nodelay(true)
    // Every request is answered within --timeout (batch entries run side
    // by side); a second more for the answer (and a websocket's close) to
    // be written.
    .shutdown_timeout(timeout.as_secs().saturating_add(1));
    let server = match server.bind(&args.listen) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", args.listen);
            close_all(&clients).await;
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // Listening before the line is printed, so a signal right after it is
    // ours, not the default that kills the process.
    let signals = match Signals::new() {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("error: cannot listen for signals: {err}");
            close_all(&clients).await;
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let addrs = server.addrs();
    let server = server.run();
    let stopper = actix_web::rt::spawn(shutdown_on_signals(signals, server.handle(), forward));
    print_listening(&addrs);
    let served = server.await;
    stopper.abort();
    close_all(&clients).await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: the server failed: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Opens one reconnecting connection per upstream, in order; the first
/// that cannot be opened is reported (and those already open are closed).
async fn connect_upstreams(urls: &[String], options: &Options) -> Result<Vec<Client>, ExitCode> {
    let mut clients = Vec::with_capacity(urls.len());
    for url in urls {
        let builder = configure(RpcConnection::builder(url), options.clone()).reconnect(
            ReconnectPolicy::new()
                .initial_delay(RECONNECT_INITIAL_DELAY)
                .max_delay(RECONNECT_MAX_DELAY)
                .forever(),
        );
        match builder.connect().await {
            Ok(client) => clients.push(client),
            Err(err) => {
                let code = upstream_failed(url, &err);
                close_all(&clients).await;
                return Err(code);
            }
        }
    }
    Ok(clients)
}

/// `listening on <ADDR>`, one line per address bound.
fn print_listening(addrs: &[std::net::SocketAddr]) {
    let mut stdout = std::io::stdout().lock();
    for addr in addrs {
        // Whoever started us may not read stdout; the proxy works anyway.
        let _ = writeln!(stdout, "listening on {addr}");
    }
    let _ = stdout.flush();
}

/// The limits from the options; the rest are the library's defaults.
fn config(args: &ProxyArgs, timeout: Duration) -> ProxyConfig {
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let mut config = ProxyConfig::new().timeout(timeout);
    if let Some(bytes) = args.max_body {
        config = config.max_body(size(bytes));
    }
    if let Some(entries) = args.max_batch {
        config = config.max_batch(size(entries));
    }
    if let Some(requests) = args.per_client_in_flight {
        config = config.per_client_in_flight(size(requests));
    }
    config
}

/// Reports an upstream that could not be reached at the start and picks
/// the exit status (64 for what the arguments got wrong, e.g. the URL).
fn upstream_failed(url: &str, err: &Error) -> ExitCode {
    eprintln!("error: upstream {url}: {}", chain(err));
    match err {
        Error::InvalidConfig { .. } => ExitCode::from(EXIT_USAGE),
        _ => ExitCode::from(EXIT_FAILURE),
    }
}

/// Closes the upstream connections, each waiting for its closing handshake
/// (bounded by the library's close timeout).
async fn close_all(clients: &[Client]) {
    for client in clients {
        let _ = client.close().await;
    }
}

/// Ctrl-C and SIGTERM, registered as soon as this is made.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// The next Ctrl-C or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            // Ctrl-C is all there is; failing to listen for it means
            // running until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// On the first signal: stop accepting, let requests in flight finish, and
/// close each websocket session with 1001 once its own are answered (the
/// server's future then ends). On a second: exit at once.
async fn shutdown_on_signals(mut signals: Signals, server: ServerHandle, forward: Forward) {
    signals.next().await;
    // Sessions first: the server's graceful stop waits for their
    // connections, which end only when the sessions close.
    forward.close_websockets(1001, "the proxy is shutting down");
    // Not awaited here: the server's own future ends when it has stopped,
    // and a second signal must still be heard meanwhile.
    actix_web::rt::spawn(async move { server.stop(true).await });
    signals.next().await;
    eprintln!("error: stopped at once by a second signal; requests in flight were dropped");
    std::process::exit(130);
}
