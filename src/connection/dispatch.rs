//! Requests from the server: routing each to its handler, bounding how many
//! are in progress, and turning every outcome (a result, an error object, a
//! stopped actor, a panic, a timeout, an answer too large to send) into the
//! JSON answer the server is owed.
//!
//! No socket in here: [`ServerRequests::route`] gives an [`Answer`] to send
//! now or a future of one, and the connection writes it.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::MailboxError;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt as _;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::message::{RequestHandler, ServerRequest};
use crate::protocol::{self, ErrorObject, Id, Request};
use crate::registry::{Registry, Route};
use crate::stats::{self, Metrics};

/// The JSON text of one answer.
pub(crate) type AnswerText = Vec<u8>;

/// The answer to one request: ready now, or once its handler finishes.
pub(crate) enum Answer {
    Now(AnswerText),
    Later(LocalBoxFuture<'static, AnswerText>),
}

impl Answer {
    /// Polls a `Later` answer once (handlers that answer without waiting
    /// are common): a future re-registers its waker each time it is polled,
    /// so this poll with a no-op waker loses nothing.
    pub fn now_or_later(self) -> Answer {
        match self {
            Answer::Later(mut work) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match work.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(text) => Answer::Now(text),
                    std::task::Poll::Pending => Answer::Later(work),
                }
            }
            now => now,
        }
    }
}

/// The limits a dispatcher enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Requests in the hands of handlers at once.
    pub in_progress: usize,
    /// How long a handler may take.
    pub timeout: Duration,
    /// The largest answer that may be sent.
    pub answer_size: usize,
}

/// Routes, the count of requests in progress, and the limits.
pub(crate) struct ServerRequests {
    handlers: Registry<RequestHandler>,
    in_progress: Rc<Cell<usize>>,
    limits: Limits,
    metrics: Arc<Metrics>,
}

/// Holds one of the `in_progress` places until dropped (answered, timed
/// out, or dropped with the connection).
struct Place {
    in_progress: Rc<Cell<usize>>,
    metrics: Arc<Metrics>,
}

impl Place {
    fn take(in_progress: &Rc<Cell<usize>>, metrics: &Arc<Metrics>) -> Place {
        in_progress.set(in_progress.get() + 1);
        stats::set(&metrics.server_requests_in_progress, in_progress.get());
        Place {
            in_progress: Rc::clone(in_progress),
            metrics: Arc::clone(metrics),
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let n = self.in_progress.get().saturating_sub(1);
        self.in_progress.set(n);
        stats::set(&self.metrics.server_requests_in_progress, n);
    }
}

impl ServerRequests {
    pub fn new(handlers: Registry<RequestHandler>, limits: Limits, metrics: Arc<Metrics>) -> Self {
        ServerRequests {
            handlers,
            in_progress: Rc::default(),
            limits,
            metrics,
        }
    }

    /// Puts a handler at `route`, replacing the one there.
    pub fn register(&mut self, route: Route, handler: RequestHandler) {
        self.handlers.insert(route, handler);
    }

    /// Removes the handler at exactly `route`.
    pub fn unregister(&mut self, route: &Route) {
        self.handlers.remove(route);
    }

    /// Requests in the hands of handlers now.
    #[cfg(test)]
    pub fn in_progress(&self) -> usize {
        self.in_progress.get()
    }

    /// Routes one request; the answer keeps the request's id exactly.
    pub fn route(&mut self, request: Request<'_>) -> Answer {
        stats::add(&self.metrics.server_requests, 1);
        let Request { id, method, params } = request;
        // The route first: an unknown method is -32601 even when busy.
        let Some((route, handler)) = self.handlers.resolve(&method) else {
            log::debug!("no handler for the server's request '{method}' (id {id})");
            return Answer::Now(error(&id, &ErrorObject::method_not_found(&method)));
        };
        if !handler.is_alive() {
            self.handlers.remove(&route);
            log::warn!("the handler at {route} has stopped; dropped it");
            return Answer::Now(error(&id, &handler_stopped(&method)));
        }
        let limit = self.limits.in_progress;
        if self.in_progress.get() >= limit {
            stats::add(&self.metrics.server_requests_refused, 1);
            log::warn!(
                "refused the server's request '{method}' (id {id}): {limit} already in progress"
            );
            let busy = ErrorObject::new(
                -32000,
                format!("too many requests in progress (limit {limit})"),
            );
            return Answer::Now(error(&id, &busy));
        }
        let params = match params.map(serde_json::from_str::<Value>) {
            None => Value::Null,
            Some(Ok(params)) => params,
            Some(Err(err)) => return Answer::Now(error(&id, &ErrorObject::invalid_params(err))),
        };
        let place = Place::take(&self.in_progress, &self.metrics);
        let method = method.into_owned();
        let request = ServerRequest {
            method: method.clone(),
            params,
            id: id.clone(),
        };
        let work = start(handler, request);
        let (limits, metrics) = (self.limits, Arc::clone(&self.metrics));
        Answer::Later(Box::pin(async move {
            let outcome = match tokio::time::timeout(limits.timeout, work).await {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_panic)) => {
                    stats::add(&metrics.handler_panics, 1);
                    log::error!("the handler for '{method}' (id {id}) panicked");
                    Err(ErrorObject::internal(format!(
                        "the handler for '{method}' panicked"
                    )))
                }
                Err(_elapsed) => Err(ErrorObject::internal(format!(
                    "the handler for '{method}' did not answer within {:?}",
                    limits.timeout
                ))),
            };
            drop(place);
            let text = match outcome {
                Ok(result) => {
                    let mut out = Vec::with_capacity(40 + result.get().len());
                    protocol::write_result_response(&mut out, &id, result.get());
                    out
                }
                Err(err) => error(&id, &err),
            };
            if text.len() > limits.answer_size {
                log::warn!(
                    "the answer to '{method}' (id {id}) is {} bytes, over the limit of {}",
                    text.len(),
                    limits.answer_size
                );
                let too_large = ErrorObject::internal(format!(
                    "response too large ({} bytes, limit {})",
                    text.len(),
                    limits.answer_size
                ));
                return error(&id, &too_large);
            }
            text
        }))
    }
}

type Outcome = Result<Box<RawValue>, ErrorObject>;

/// Starts the handler's work; a panic, now or while it runs, is an `Err`.
fn start(
    handler: &RequestHandler,
    request: ServerRequest,
) -> LocalBoxFuture<'static, Result<Outcome, Box<dyn std::any::Any + Send>>> {
    match handler {
        RequestHandler::Actor(recipient) => {
            let method = request.method.clone();
            let sent = recipient.send(request);
            Box::pin(async move {
                Ok(match sent.await {
                    Ok(Ok(value)) => serde_json::value::to_raw_value(&value)
                        .map_err(|err| ErrorObject::internal(format!("result is not JSON: {err}"))),
                    Ok(Err(error)) => Err(error),
                    Err(MailboxError::Closed) => Err(handler_stopped(&method)),
                    Err(MailboxError::Timeout) => {
                        Err(ErrorObject::internal("handler mailbox timed out"))
                    }
                })
            })
        }
        RequestHandler::Func(f) => {
            match std::panic::catch_unwind(AssertUnwindSafe(|| f(request))) {
                Ok(work) => Box::pin(AssertUnwindSafe(work).catch_unwind()),
                Err(panic) => Box::pin(std::future::ready(Err(panic))),
            }
        }
    }
}

/// The JSON text of an error answer.
pub(crate) fn error(id: &Id, error: &ErrorObject) -> AnswerText {
    let mut out = Vec::with_capacity(96);
    protocol::write_error_response(&mut out, id, error);
    out
}

fn handler_stopped(method: &str) -> ErrorObject {
    ErrorObject::internal(format!("the handler for '{method}' has stopped"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse, Inbound, Message};
    use serde_json::json;
    use std::future::Future;

    fn dispatcher(limit: usize) -> (ServerRequests, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let limits = Limits {
            in_progress: limit,
            timeout: Duration::from_secs(5),
            answer_size: 200,
        };
        (
            ServerRequests::new(Registry::default(), limits, Arc::clone(&metrics)),
            metrics,
        )
    }

    /// Routes the request in `text` and returns the answer as JSON, if it
    /// is ready without waiting.
    fn route_now(d: &mut ServerRequests, text: &str) -> Option<Value> {
        let Inbound::Single(Message::Request(request)) = parse(text) else {
            panic!("not a request: {text}");
        };
        match d.route(request).now_or_later() {
            Answer::Now(text) => Some(serde_json::from_slice(&text).unwrap()),
            Answer::Later(_) => None,
        }
    }

    fn req(id: &str, method: &str) -> String {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":[1]}}"#)
    }

    fn func<F, Fut>(f: F) -> RequestHandler
    where
        F: Fn(ServerRequest) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, ErrorObject>> + 'static,
    {
        RequestHandler::func(f)
    }

    #[actix_rt::test]
    async fn closures_get_the_whole_request_and_answer_with_its_exact_id() {
        let (mut d, metrics) = dispatcher(4);
        d.register(
            Route::from("ui."),
            func(|r: ServerRequest| async move {
                Ok(json!({"method": r.method, "params": r.params, "id": r.id.to_string()}))
            }),
        );
        let answer = route_now(&mut d, &req("1e2", "ui.open")).unwrap();
        assert_eq!(
            answer["result"],
            json!({"method": "ui.open", "params": [1], "id": "1e2"})
        );
        let stats = metrics.snapshot();
        assert_eq!(
            (stats.server_requests, stats.server_requests_in_progress),
            (1, 0)
        );
    }

    #[actix_rt::test]
    async fn unknown_methods_get_32601_even_when_busy() {
        let (mut d, metrics) = dispatcher(1);
        d.register(
            Route::from("slow"),
            func(|_| std::future::pending::<Result<Value, ErrorObject>>()),
        );
        let text = req("1", "slow");
        let Inbound::Single(Message::Request(request)) = parse(&text) else {
            unreachable!()
        };
        // Held: the slow handler keeps the only place while its work lives.
        let _working = d.route(request);
        let unknown = route_now(&mut d, &req("2", "nope")).unwrap();
        assert_eq!(unknown["error"]["code"], -32601);
        let busy = route_now(&mut d, &req("3", "slow")).unwrap();
        assert_eq!(busy["error"]["code"], -32000);
        assert_eq!(metrics.snapshot().server_requests_refused, 1);
    }

    #[actix_rt::test]
    async fn a_place_is_returned_when_the_work_is_dropped() {
        let (mut d, metrics) = dispatcher(1);
        d.register(
            Route::from("slow"),
            func(|_| std::future::pending::<Result<Value, ErrorObject>>()),
        );
        let text = req("1", "slow");
        let Inbound::Single(Message::Request(request)) = parse(&text) else {
            unreachable!()
        };
        let answer = d.route(request);
        assert_eq!(
            (
                d.in_progress(),
                metrics.snapshot().server_requests_in_progress
            ),
            (1, 1)
        );
        drop(answer);
        assert_eq!(
            (
                d.in_progress(),
                metrics.snapshot().server_requests_in_progress
            ),
            (0, 0)
        );
    }

    #[actix_rt::test]
    async fn a_panic_before_or_after_the_first_poll_is_a_32603_answer() {
        let (mut d, metrics) = dispatcher(4);
        d.register(
            Route::from("at_once"),
            RequestHandler::func(
                |_: ServerRequest| -> std::future::Ready<Result<Value, ErrorObject>> {
                    panic!("boom at once")
                },
            ),
        );
        d.register(
            Route::from("in_future"),
            func(|_| async { panic!("boom inside") }),
        );
        for method in ["at_once", "in_future"] {
            let answer = route_now(&mut d, &req("7", method)).unwrap();
            assert_eq!(answer["id"], 7);
            assert_eq!(answer["error"]["code"], -32603, "{method}: {answer}");
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("panicked"),
                "{answer}"
            );
        }
        let stats = metrics.snapshot();
        assert_eq!(
            (stats.handler_panics, stats.server_requests_in_progress),
            (2, 0)
        );
        assert_eq!(d.in_progress(), 0, "the places came back");
    }

    #[actix_rt::test]
    async fn an_answer_over_the_size_limit_becomes_32603() {
        let (mut d, _) = dispatcher(4);
        d.register(
            Route::from("big"),
            func(|_| async { Ok(json!("x".repeat(500))) }),
        );
        let answer = route_now(&mut d, &req("1", "big")).unwrap();
        assert_eq!(answer["error"]["code"], -32603);
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("response too large"),
            "{answer}"
        );
    }

    #[actix_rt::test]
    async fn params_that_cannot_become_a_value_get_32602() {
        let (mut d, _) = dispatcher(4);
        d.register(Route::from("m"), func(|_| async { Ok(json!(1)) }));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let text = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{deep}}}"#);
        let answer = route_now(&mut d, &text).unwrap();
        assert_eq!(answer["error"]["code"], -32602);
    }

    #[actix_rt::test]
    async fn results_that_are_raw_json_are_sent_exactly() {
        let (mut d, _) = dispatcher(4);
        d.register(
            Route::from("exact"),
            RequestHandler::func(|_: ServerRequest| async {
                RawValue::from_string("[12345678901234567890123,1e2]".to_owned())
                    .map_err(ErrorObject::internal)
            }),
        );
        let text = req("1", "exact");
        let Inbound::Single(Message::Request(request)) = parse(&text) else {
            unreachable!()
        };
        let Answer::Now(text) = d.route(request).now_or_later() else {
            panic!("not answered at once");
        };
        assert_eq!(
            String::from_utf8(text).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"result":[12345678901234567890123,1e2]}"#
        );
    }
}
