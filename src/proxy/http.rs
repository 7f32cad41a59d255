//! The HTTP front end: JSON-RPC over `POST`, and `GET /metrics`.

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt as _;

use super::codes;
use super::forward::{error_text, Forward};
use super::hook::{Origin, Transport};
use super::metrics::bump;
use crate::protocol::{self, ErrorObject, Id};

/// Serves JSON-RPC over HTTP: the body of a `POST` (a request, a
/// notification or a batch) is forwarded, and the answer is the response
/// body (`application/json`); a message of notifications only is answered
/// `204 No Content`. A body over [`ProxyConfig::max_body`](super::ProxyConfig::max_body)
/// is answered `413` (its bytes are not kept); a body that is not UTF-8 or
/// not JSON gets -32700, one that is no request -32600, as the JSON-RPC
/// specification says (with status 200, as Ethereum nodes answer).
///
/// Register it with a [`Forward`] as app data:
///
/// ```no_run
/// use actix_web::{web, App, HttpServer};
/// use jsonrpc_websocket::proxy::{self, Forward, Upstreams};
/// # async fn demo(forward: Forward) -> std::io::Result<()> {
/// HttpServer::new(move || {
///     App::new()
///         .app_data(web::Data::new(forward.clone()))
///         .route("/", web::post().to(proxy::http))
///         .route("/metrics", web::get().to(proxy::metrics))
/// })
/// .bind("127.0.0.1:8545")?
/// .run()
/// .await
/// # }
/// ```
pub async fn http(
    req: HttpRequest,
    mut payload: web::Payload,
    forward: web::Data<Forward>,
) -> HttpResponse {
    let limit = forward.proxy_config().max_body;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => {
                bump(&forward.metrics().messages);
                bump(&forward.metrics().invalid);
                log::debug!("a downstream HTTP body could not be read: {err}");
                return HttpResponse::BadRequest().finish();
            }
        };
        if body.len() + chunk.len() > limit {
            bump(&forward.metrics().messages);
            bump(&forward.metrics().limited);
            let error = ErrorObject::new(
                codes::LIMIT_EXCEEDED,
                format!("the body is over the limit of {limit} bytes"),
            );
            return json(
                StatusCode::PAYLOAD_TOO_LARGE,
                error_text(&Id::null(), &error),
            );
        }
        body.extend_from_slice(&chunk);
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        bump(&forward.metrics().messages);
        bump(&forward.metrics().invalid);
        let error = ErrorObject::new(
            protocol::codes::PARSE_ERROR,
            "parse error: the body is not UTF-8",
        );
        return json(StatusCode::OK, error_text(&Id::null(), &error));
    };
    let mut origin = Origin::new(Transport::Http);
    origin.peer = req.peer_addr();
    if forward.has_hook() {
        origin.headers = req.headers().clone();
    }
    match forward.message(text, &origin).await {
        Some(answer) => json(StatusCode::OK, answer),
        None => HttpResponse::NoContent().finish(),
    }
}

/// Serves the proxy's counters, each upstream's state and latency
/// histogram in the Prometheus text format; route `GET /metrics` to it
/// (see [`http`]).
pub async fn metrics(forward: web::Data<Forward>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/plain; version=0.0.4"))
        .body(forward.prometheus())
}

fn json(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(ContentType::json())
        .body(body)
}
