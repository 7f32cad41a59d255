//! A small JSON-RPC 2.0 websocket server for the examples (actix-web +
//! actix-ws), listening on 127.0.0.1 on a free port.
//!
//! Methods: `math.add` (positional), `math.divide` (named; error -32000 when
//! dividing by zero), `app.users.getUsers`, `log.write` (a notification it
//! prints), and `demo.askClient`: the server then calls `client.confirm` on
//! the client (a server→client request) and answers with what the client said.
//! `demo.ping` sends the client a `ui.ping` request and a `news.headline`
//! notification and answers once the client has answered the request.
//!
//! Subscriptions: `demo.subscribe_ticks` (params `[n]`, optional) answers
//! with a subscription id, then sends `demo.tick` notifications
//! `{"subscription": id, "result": k}` for k = 1, 2, … every 20 ms; after
//! `n` ticks (when given) it ends the subscription with a notification
//! carrying an `error`. `demo.unsubscribe_ticks` (`[id]`) stops them and
//! answers `true` (`false` for a subscription that is not running).
//!
//! `demo.sleep` (`[ms]`) answers `"slept"` after that many milliseconds,
//! without holding up the connection's other messages.
//!
//! Batches (a JSON array) are answered with one array holding a response
//! for each call, in reverse order (JSON-RPC allows any order; the client
//! puts them back in place); notifications in a batch get none.
//!
//! [`start`] is enough for most examples ([`start_in_background`] for those
//! without an actix system); [`DemoServer`] can also be stopped and started
//! again on the same address (the reconnect example).

// NOTE: every example includes this file and uses a different part of it;
// the rest would be dead code there.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::rt::task::JoinHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_ws::{AggregatedMessage, Session};
use serde_json::{json, Value};

/// How often a subscription ticks.
const TICK: Duration = Duration::from_millis(20);

/// How long [`DemoServer::restart`] keeps trying to bind an address that is
/// still in use.
const REBIND_FOR: Duration = Duration::from_secs(5);

/// Starts the server on the current actix system; returns its address.
pub fn start() -> std::io::Result<SocketAddr> {
    DemoServer::start().map(|server| server.addr())
}

/// Starts the server on a thread of its own, with an actix system of its
/// own, for examples that have none (`#[tokio::main]`, plain `fn main`);
/// returns its address. It runs until the process exits.
pub fn start_in_background() -> std::io::Result<SocketAddr> {
    let (started, address) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("demo-server".into())
        .spawn(move || {
            let system = actix_web::rt::System::new();
            let _ = started.send(system.block_on(async { start() }));
            let _ = system.run();
        })?;
    address
        .recv()
        .map_err(|_| std::io::Error::other("the demo server's thread ended before it started"))?
}

/// The demo server, running on the current actix system until stopped
/// (dropping this handle leaves it running).
pub struct DemoServer {
    addr: SocketAddr,
    /// `None` while stopped.
    running: Option<ServerHandle>,
}

impl DemoServer {
    /// Starts the server on a free port of 127.0.0.1.
    pub fn start() -> std::io::Result<DemoServer> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let running = Some(serve_on(listener)?);
        Ok(DemoServer { addr, running })
    }

    /// The address it listens on, the same after a restart.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server at once: open connections are dropped without a
    /// close frame, as when its process dies. Returns once it has stopped.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop(false).await;
        }
    }

    /// Starts the server again on the same address, fresh (subscription ids
    /// start again at 1). Binding is retried for a few seconds should the
    /// address still be in use.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.stop().await;
        let started = Instant::now();
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(listener) => break listener,
                Err(err)
                    if err.kind() == std::io::ErrorKind::AddrInUse
                        && started.elapsed() < REBIND_FOR =>
                {
                    actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => return Err(err),
            }
        };
        self.running = Some(serve_on(listener)?);
        Ok(())
    }
}

/// Serves on `listener` (one worker, no signal handling: the examples end
/// by themselves).
fn serve_on(listener: std::net::TcpListener) -> std::io::Result<ServerHandle> {
    let server = HttpServer::new(|| App::new().route("/", web::get().to(accept)))
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Ok(handle)
}

async fn accept(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream.aggregate_continuations();
    actix_web::rt::spawn(serve(session, stream));
    Ok(response)
}

/// One connection's state.
struct Conn {
    session: Session,
    /// At most one server→client request is outstanding at a time,
    /// remembered with the id of the call it serves.
    waiting_for_client: Option<Value>,
    /// The running subscriptions, by id.
    ticks: HashMap<u64, JoinHandle<()>>,
    next_subscription: u64,
    /// Subscriptions answered in the message being handled, started once
    /// the answer is sent: (id, how many ticks).
    starting: Vec<(u64, Option<u64>)>,
}

/// What one request of the client gets.
enum Outcome {
    /// A response.
    Answer(Value),
    /// A request to the client first; the answer comes once the client has
    /// answered (`demo.askClient`, `demo.ping`).
    AskClient,
    /// This answer, after a while (`demo.sleep`).
    Later(Duration, Value),
}

async fn serve(session: Session, mut stream: actix_ws::AggregatedMessageStream) {
    let mut conn = Conn {
        session,
        waiting_for_client: None,
        ticks: HashMap::new(),
        next_subscription: 1,
        starting: Vec::new(),
    };
    while let Some(Ok(msg)) = stream.recv().await {
        let text = match msg {
            AggregatedMessage::Text(text) => text.to_string(),
            AggregatedMessage::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            AggregatedMessage::Ping(payload) => {
                let _ = conn.session.pong(&payload).await;
                continue;
            }
            AggregatedMessage::Pong(_) => continue,
            AggregatedMessage::Close(reason) => {
                let _ = conn.session.clone().close(reason).await;
                break;
            }
        };
        let Ok(msg) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if !conn.handle(msg).await {
            break;
        }
    }
    for (_, ticking) in conn.ticks.drain() {
        ticking.abort();
    }
}

impl Conn {
    /// Handles one message; `false` once the connection is gone.
    async fn handle(&mut self, msg: Value) -> bool {
        let reply = match msg {
            Value::Array(batch) if batch.is_empty() => {
                Some(error(&Value::Null, -32600, "empty batch"))
            }
            Value::Array(batch) => {
                let mut answers = Vec::new();
                for entry in &batch {
                    match self.request(entry, true).await {
                        Some(Outcome::Answer(answer)) => answers.push(answer),
                        Some(Outcome::AskClient | Outcome::Later(..)) | None => {}
                    }
                }
                answers.reverse();
                (!answers.is_empty()).then_some(Value::Array(answers))
            }
            msg => match self.request(&msg, false).await {
                Some(Outcome::Answer(answer)) => Some(answer),
                Some(Outcome::Later(after, answer)) => {
                    let mut session = self.session.clone();
                    actix_web::rt::spawn(async move {
                        actix_web::rt::time::sleep(after).await;
                        // The connection may have gone meanwhile.
                        let _ = session.text(answer.to_string()).await;
                    });
                    None
                }
                Some(Outcome::AskClient) | None => None,
            },
        };
        if let Some(reply) = reply {
            if self.session.text(reply.to_string()).await.is_err() {
                return false;
            }
        }
        // Ticks start after the answer that names their subscription.
        for (id, limit) in std::mem::take(&mut self.starting) {
            let ticking = actix_web::rt::spawn(tick(self.session.clone(), id, limit));
            self.ticks.insert(id, ticking);
        }
        true
    }

    /// One message of the client (alone or in a batch): its outcome, or
    /// `None` for a notification or the client's answer to our request.
    async fn request(&mut self, msg: &Value, in_batch: bool) -> Option<Outcome> {
        if !msg.is_object() {
            return Some(Outcome::Answer(error(
                &Value::Null,
                -32600,
                "not an object",
            )));
        }
        // The client's answer to our request: finish the call that asked for it.
        if msg.get("method").is_none() {
            if let Some(call_id) = self.waiting_for_client.take() {
                let said = msg
                    .get("result")
                    .cloned()
                    .unwrap_or_else(|| msg["error"].clone());
                let reply =
                    json!({"jsonrpc": "2.0", "id": call_id, "result": {"client said": said}});
                let _ = self.session.text(reply.to_string()).await;
            }
            return None;
        }
        let method = msg["method"].as_str().unwrap_or_default();
        let params = &msg["params"];
        let Some(id) = msg.get("id").cloned() else {
            println!("  [server] notification {method} {params}");
            return None;
        };
        let outcome: Result<Value, (i64, &str)> = match method {
            "math.add" => Ok(json!(params
                .as_array()
                .map_or(0.0, |a| a.iter().filter_map(Value::as_f64).sum()))),
            "math.divide" => match (params["a"].as_f64(), params["b"].as_f64()) {
                (Some(_), Some(0.0)) => Err((-32000, "division by zero")),
                (Some(a), Some(b)) => Ok(json!(a / b)),
                _ => Err((-32602, "expected {\"a\": number, \"b\": number}")),
            },
            "app.users.getUsers" => Ok(json!([{"name": "ann"}, {"name": "bob"}])),
            "demo.subscribe_ticks" => match params.get(0).map(Value::as_u64) {
                None | Some(Some(_)) => {
                    let subscription = self.next_subscription;
                    self.next_subscription += 1;
                    let limit = params.get(0).and_then(Value::as_u64);
                    self.starting.push((subscription, limit));
                    Ok(json!(subscription))
                }
                Some(None) => Err((-32602, "expected [n]: how many ticks")),
            },
            "demo.unsubscribe_ticks" => {
                let ticking = params
                    .get(0)
                    .and_then(Value::as_u64)
                    .and_then(|subscription| self.ticks.remove(&subscription));
                Ok(json!(match ticking {
                    Some(ticking) => {
                        let running = !ticking.is_finished();
                        ticking.abort();
                        running
                    }
                    None => false,
                }))
            }
            "demo.sleep" if in_batch => Err((-32600, "demo.sleep is not for batches")),
            "demo.sleep" => match params.get(0).and_then(Value::as_u64) {
                Some(ms) => {
                    let answer = json!({"jsonrpc": "2.0", "id": id, "result": "slept"});
                    return Some(Outcome::Later(Duration::from_millis(ms), answer));
                }
                None => Err((-32602, "expected [ms]")),
            },
            "demo.askClient" | "demo.ping" if in_batch => {
                Err((-32600, "the server asks the client back: not in a batch"))
            }
            "demo.askClient" | "demo.ping" => {
                let (request, event) = if method == "demo.askClient" {
                    ("client.confirm", None)
                } else {
                    (
                        "ui.ping",
                        Some(
                            json!({"jsonrpc": "2.0", "method": "news.headline", "params": {"text": "actix rocks"}}),
                        ),
                    )
                };
                if let Some(event) = event {
                    let _ = self.session.text(event.to_string()).await;
                }
                let ask = json!({"jsonrpc": "2.0", "id": "server-1", "method": request, "params": params});
                self.waiting_for_client = Some(id);
                let _ = self.session.text(ask.to_string()).await;
                return Some(Outcome::AskClient);
            }
            _ => Err((-32601, "method not found")),
        };
        Some(Outcome::Answer(match outcome {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err((code, message)) => error(&id, code, message),
        }))
    }
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Sends subscription `id`'s ticks until `limit` (then ends it with an
/// error notification), the connection's end, or being aborted.
async fn tick(mut session: Session, id: u64, limit: Option<u64>) {
    let mut every = actix_web::rt::time::interval(TICK);
    every.tick().await; // the first tick of an interval is immediate
    let mut k: u64 = 1;
    loop {
        every.tick().await;
        let params = match limit {
            Some(limit) if k > limit => {
                json!({"subscription": id, "error": {"code": -32000, "message": format!("no more ticks after {limit}")}})
            }
            _ => json!({"subscription": id, "result": k}),
        };
        let last = params.get("error").is_some();
        let notification = json!({"jsonrpc": "2.0", "method": "demo.tick", "params": params});
        if session.text(notification.to_string()).await.is_err() || last {
            return;
        }
        k += 1;
    }
}
