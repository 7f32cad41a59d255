//! A small JSON-RPC 2.0 websocket server for the examples (actix-web +
//! actix-ws), listening on 127.0.0.1 on a free port.
//!
//! Methods: `math.add` (positional), `math.divide` (named; error -32000 when
//! dividing by zero), `app.users.getUsers`, `log.write` (a notification it
//! prints), and `demo.askClient`: the server then calls `client.confirm` on
//! the client (a server→client request) and answers with what the client said.
//! `demo.ping` sends the client a `ui.ping` request and a `news.headline`
//! notification and answers once the client has answered the request.

use std::net::SocketAddr;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use actix_ws::{AggregatedMessage, Session};
use serde_json::{json, Value};

/// Starts the server on the current actix system; returns its address.
pub fn start() -> std::io::Result<SocketAddr> {
    let server = HttpServer::new(|| App::new().route("/", web::get().to(accept)))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))?;
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    Ok(addr)
}

async fn accept(req: HttpRequest, body: web::Payload) -> actix_web::Result<HttpResponse> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream.aggregate_continuations();
    actix_web::rt::spawn(serve(session, stream));
    Ok(response)
}

/// One connection: answers requests; at most one server→client request is
/// outstanding at a time, remembered with the call it serves.
async fn serve(mut session: Session, mut stream: actix_ws::AggregatedMessageStream) {
    let mut waiting_for_client: Option<Value> = None;
    while let Some(Ok(msg)) = stream.recv().await {
        let text = match msg {
            AggregatedMessage::Text(text) => text.to_string(),
            AggregatedMessage::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            AggregatedMessage::Ping(payload) => {
                let _ = session.pong(&payload).await;
                continue;
            }
            AggregatedMessage::Pong(_) => continue,
            AggregatedMessage::Close(reason) => {
                let _ = session.close(reason).await;
                return;
            }
        };
        let Ok(msg) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        // The client's answer to our request: finish the call that asked for it.
        if msg.get("method").is_none() {
            if let Some(call_id) = waiting_for_client.take() {
                let said = msg
                    .get("result")
                    .cloned()
                    .unwrap_or_else(|| msg["error"].clone());
                let reply =
                    json!({"jsonrpc": "2.0", "id": call_id, "result": {"client said": said}});
                let _ = session.text(reply.to_string()).await;
            }
            continue;
        }
        let method = msg["method"].as_str().unwrap_or_default();
        let params = &msg["params"];
        let Some(id) = msg.get("id").cloned() else {
            println!("  [server] notification {method} {params}");
            continue;
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
                    let _ = session.text(event.to_string()).await;
                }
                let ask = json!({"jsonrpc": "2.0", "id": "server-1", "method": request, "params": params});
                waiting_for_client = Some(id);
                let _ = session.text(ask.to_string()).await;
                continue;
            }
            _ => Err((-32601, "method not found")),
        };
        let reply = match outcome {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err((code, message)) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            }
        };
        if session.text(reply.to_string()).await.is_err() {
            return;
        }
    }
}
