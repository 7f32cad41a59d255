//! Requests and notifications from the server: routing them to handlers and
//! listeners, and writing the handlers' answers back.
//!
//! Every handler runs as its own future on the connection's thread, so a
//! slow handler delays nothing but its own answer.

use std::future::Future;

use actix::prelude::*;
use futures_util::future::{join_all, LocalBoxFuture};
use serde_json::Value;

use super::frames::Outbound;
use super::metrics::Metrics;
use super::{RpcConnection, State};
use crate::message::{
    RegisterHandler, RegisterListener, ServerNotification, ServerRequest, UnregisterHandler,
    UnregisterListeners,
};
use crate::protocol::{self, ErrorObject, Id, Notification, Request};
use crate::registry::Registry;

/// What answers the requests matching one route.
pub(crate) enum RequestHandler {
    Actor(Recipient<ServerRequest>),
    Func(Box<dyn Fn(Value) -> LocalBoxFuture<'static, Result<Value, ErrorObject>> + Send>),
}

impl RequestHandler {
    pub(crate) fn func<F, Fut>(f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, ErrorObject>> + 'static,
    {
        RequestHandler::Func(Box::new(move |params| Box::pin(f(params))))
    }

    fn is_alive(&self) -> bool {
        match self {
            RequestHandler::Actor(recipient) => recipient.connected(),
            RequestHandler::Func(_) => true,
        }
    }
}

/// What is told of the notifications matching one route.
pub(crate) enum Listener {
    Actor(Recipient<ServerNotification>),
    Func(Box<dyn Fn(ServerNotification) + Send>),
}

impl Listener {
    fn is_alive(&self) -> bool {
        match self {
            Listener::Actor(recipient) => recipient.connected(),
            Listener::Func(_) => true,
        }
    }
}

/// Handlers and listeners, registered in the builder or by message.
#[derive(Default)]
pub(crate) struct Routes {
    pub handlers: Registry<RequestHandler>,
    pub listeners: Registry<Vec<Listener>>,
}

impl Routes {
    pub fn add_listener(&mut self, message: RegisterListener) {
        self.listeners
            .entry(message.route, Vec::new)
            .push(message.listener);
    }
}

/// The answer to one request: ready now, or once its handler finishes.
pub(crate) enum Answer {
    Now(String),
    Later(LocalBoxFuture<'static, Answered>),
}

/// Answers coming back from handler tasks.
pub(crate) struct Delivery {
    answered: Vec<Answered>,
    batch: bool,
}

impl StreamHandler<Delivery> for RpcConnection {
    fn handle(&mut self, delivery: Delivery, _: &mut Self::Context) {
        self.deliver(delivery.answered, delivery.batch);
    }

    /// The actor holds a sender itself, so this stream ends only with it.
    fn finished(&mut self, _: &mut Self::Context) {}
}

/// A handler's answer, whether it found its handler actor gone, and whether
/// it counted against `max_server_requests`.
pub(crate) struct Answered {
    text: String,
    handler_gone: bool,
    counted: bool,
}

impl RpcConnection {
    /// Routes one request to its handler; the answer keeps the request's id.
    pub(super) fn answer_request(&mut self, request: Request) -> Answer {
        Metrics::add(&self.metrics.server_requests, 1);
        let Request { id, method, params } = request;
        let params = match params.map(|raw| serde_json::from_str::<Value>(raw.get())) {
            None => Value::Null,
            Some(Ok(params)) => params,
            Some(Err(err)) => {
                return Answer::Now(error_text(&id, &ErrorObject::invalid_params(err)))
            }
        };
        if self.handlers_running >= self.config.max_server_requests {
            let limit = self.config.max_server_requests;
            log::warn!(
                "refused the server's request '{method}' (id {id}): {limit} already in progress"
            );
            let busy = ErrorObject::new(
                -32000,
                format!("too many requests in progress (limit {limit})"),
            );
            return Answer::Now(error_text(&id, &busy));
        }
        let Some((route, handler)) = self.routes.handlers.resolve(&method) else {
            log::debug!("no handler for the server's request '{method}' (id {id})");
            return Answer::Now(error_text(&id, &ErrorObject::method_not_found(&method)));
        };
        if !handler.is_alive() {
            self.routes.handlers.remove(&route);
            log::warn!("the handler at {route} has stopped; dropped it");
            return Answer::Now(error_text(&id, &handler_stopped(&method)));
        }
        self.handlers_running += 1;
        let limit = self.config.request_timeout;
        let work: LocalBoxFuture<'static, (Result<Value, ErrorObject>, bool)> = match handler {
            RequestHandler::Actor(recipient) => {
                let sent = recipient.send(ServerRequest {
                    method: method.clone(),
                    params,
                    id: id.clone(),
                });
                let method = method.clone();
                Box::pin(async move {
                    match sent.await {
                        Ok(outcome) => (outcome, false),
                        Err(MailboxError::Closed) => (Err(handler_stopped(&method)), true),
                        Err(MailboxError::Timeout) => (
                            Err(ErrorObject::internal("handler mailbox timed out")),
                            false,
                        ),
                    }
                })
            }
            RequestHandler::Func(f) => {
                let fut = f(params);
                Box::pin(async move { (fut.await, false) })
            }
        };
        Answer::Later(Box::pin(async move {
            let (outcome, handler_gone) = match tokio::time::timeout(limit, work).await {
                Ok(done) => done,
                Err(_) => {
                    let reason =
                        format!("the handler for '{method}' did not answer within {limit:?}");
                    (Err(ErrorObject::internal(reason)), false)
                }
            };
            let text = match outcome {
                Ok(result) => match serde_json::to_string(&result) {
                    Ok(result) => protocol::encode_result_response(&id, &result),
                    Err(err) => error_text(&id, &ErrorObject::internal(err)),
                },
                Err(error) => error_text(&id, &error),
            };
            Answered {
                text,
                handler_gone,
                counted: true,
            }
        }))
    }

    /// Sends answers once they are all ready: one message for a single
    /// request, one batch (in request order) for a batch.
    pub(super) fn send_answers(&mut self, mut answers: Vec<Answer>, batch: bool) {
        if answers.is_empty() {
            return;
        }
        if !batch {
            if let Some(answer) = answers.pop() {
                match answer {
                    Answer::Now(text) => self.write(Outbound::Text(text)),
                    Answer::Later(fut) => {
                        self.answer_when_ready(async move { vec![fut.await] }, false)
                    }
                }
            }
            return;
        }
        let all = join_all(answers.into_iter().map(|answer| match answer {
            Answer::Now(text) => Box::pin(async move {
                Answered {
                    text,
                    handler_gone: false,
                    counted: false,
                }
            }),
            Answer::Later(fut) => fut,
        }));
        self.answer_when_ready(all, true);
    }

    /// Delivers at once what handlers answer without waiting (most closures
    /// do); spawns a task for the rest.
    fn answer_when_ready(
        &mut self,
        work: impl Future<Output = Vec<Answered>> + 'static,
        batch: bool,
    ) {
        let mut work = Box::pin(work);
        // A future re-registers its waker each time it is polled, so one poll
        // with a no-op waker before the task's own first poll loses nothing.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match work.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(answered) => self.deliver(answered, batch),
            std::task::Poll::Pending => self.spawn_answer(work, batch),
        }
    }

    /// Runs handler work as its own task, which comes back through the
    /// answers channel. (A future spawned on the actor's context would be
    /// polled on every event of the connection; a task is polled only when
    /// it is woken.)
    fn spawn_answer(&self, work: impl Future<Output = Vec<Answered>> + 'static, batch: bool) {
        let answers = self.answers.clone();
        let stopped = self.stopped.clone();
        actix::spawn(async move {
            // When the connection stops, handler work it still owns is
            // dropped: its answer would have nowhere to go.
            tokio::select! {
                answered = work => {
                    let _ = answers.unbounded_send(Delivery { answered, batch });
                }
                () = stopped.cancelled() => {}
            }
        });
    }

    fn deliver(&mut self, answered: Vec<Answered>, batch: bool) {
        self.handlers_running -= answered.iter().filter(|a| a.counted).count();
        if answered.iter().any(|a| a.handler_gone) {
            self.routes.handlers.retain(|h| h.is_alive());
        }
        if self.state != State::Open {
            log::debug!(
                "dropped {} answer(s): the connection is closing",
                answered.len()
            );
            return;
        }
        let texts: Vec<String> = answered.into_iter().map(|a| a.text).collect();
        let text = if batch {
            format!("[{}]", texts.join(","))
        } else {
            texts.concat()
        };
        self.write(Outbound::Text(text));
    }

    /// Tells every matching listener; notifications are never answered.
    pub(super) fn tell_listeners(&mut self, notification: Notification) {
        Metrics::add(&self.metrics.server_notifications, 1);
        let Notification { method, params } = notification;
        let params = params
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
            .unwrap_or(Value::Null);
        let message = ServerNotification { method, params };
        let mut told = 0;
        let mut gone = false;
        for (_, listeners) in self.routes.listeners.matching(&message.method) {
            for listener in listeners.iter() {
                match listener {
                    Listener::Actor(recipient) if recipient.connected() => {
                        recipient.do_send(message.clone());
                        told += 1;
                    }
                    Listener::Actor(_) => gone = true,
                    Listener::Func(f) => {
                        f(message.clone());
                        told += 1;
                    }
                }
            }
        }
        if gone {
            self.routes.listeners.retain(|listeners| {
                listeners.retain(Listener::is_alive);
                !listeners.is_empty()
            });
        }
        if told == 0 {
            log::debug!("server notification '{}' has no listener", message.method);
        }
    }
}

fn error_text(id: &Id, error: &ErrorObject) -> String {
    protocol::encode_error_response(id, error)
}

fn handler_stopped(method: &str) -> ErrorObject {
    ErrorObject::internal(format!("the handler for '{method}' has stopped"))
}

impl Handler<RegisterHandler> for RpcConnection {
    type Result = ();

    fn handle(&mut self, msg: RegisterHandler, _: &mut Self::Context) {
        self.routes.handlers.insert(msg.route, msg.handler);
    }
}

impl Handler<UnregisterHandler> for RpcConnection {
    type Result = ();

    fn handle(&mut self, msg: UnregisterHandler, _: &mut Self::Context) {
        self.routes.handlers.remove(&msg.0);
    }
}

impl Handler<RegisterListener> for RpcConnection {
    type Result = ();

    fn handle(&mut self, msg: RegisterListener, _: &mut Self::Context) {
        self.routes.add_listener(msg);
    }
}

impl Handler<UnregisterListeners> for RpcConnection {
    type Result = ();

    fn handle(&mut self, msg: UnregisterListeners, _: &mut Self::Context) {
        self.routes.listeners.remove(&msg.0);
    }
}
