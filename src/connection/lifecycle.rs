//! The connection's life across sockets: what happens when one ends, whether
//! and when to dial again (the [`Backoff`] decides), what a new socket
//! starts with (waiting calls, subscriptions made again), the heartbeat that
//! notices a peer gone silent, and the events that tell all of it.

use std::borrow::Cow;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::pending::Responder;
use super::reconnect::{Ended, Verdict};
use super::session::Session;
use super::subscriptions::{PendingSubscribe, Resubscribe, Subscriptions};
use super::{frames, CallOptions, RpcConnection, Socket, State};
use crate::config::WhileReconnecting;
use crate::error::{BoxError, Error};
use crate::events::ConnectionEvent;
use crate::message::{Disconnect, Initiator, Reply};
use crate::protocol::Id;
use crate::stats;
use crate::subscription::SubscriptionEnd;

/// How a socket ended.
pub(super) struct Loss {
    /// As the backoff sees it.
    pub ended: Ended,
    /// As [`Client::closed`](crate::Client::closed) and the events tell it.
    pub record: Disconnect,
    /// Our close frame for that socket: the answer to the server's, or ours
    /// after a violation. `None` when the socket is beyond use.
    pub close: Option<(u16, String)>,
    /// The error behind it, if any.
    pub cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl RpcConnection {
    /// The socket ended while open. With a reconnect policy that allows it,
    /// the connection lets the socket go and dials again; otherwise it ends
    /// (failing the pending calls with `error`).
    pub(super) fn socket_lost(&mut self, loss: Loss, error: Error, ctx: &mut Context<Self>) {
        if self.state != State::Open {
            if loss.close.is_none() {
                // Nothing left to wait for on a socket beyond use.
                ctx.stop();
            }
            return;
        }
        self.tell_disconnected(&loss.record, loss.cause.clone());
        let verdict = match self.backoff.as_mut() {
            Some(backoff) => backoff.next(&loss.ended, Instant::now(), jitter()),
            None => Verdict::GiveUp(String::new()),
        };
        match verdict {
            Verdict::Retry { attempt, delay } => self.reconnect(loss, &error, attempt, delay, ctx),
            Verdict::GiveUp(reason) => {
                if !reason.is_empty() {
                    log::warn!("not reconnecting: {reason}");
                    let what = without_handshake(&loss.record);
                    self.final_reason = Some(format!("{what}; not reconnecting: {reason}"));
                }
                let beyond_use = loss.close.is_none();
                self.shut_down(error, loss.close, loss.record, true, ctx);
                if beyond_use {
                    ctx.stop();
                }
            }
        }
    }

    /// Tells the watchers that the socket has ended.
    pub(super) fn tell_disconnected(
        &self,
        record: &Disconnect,
        cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
    ) {
        self.shared.watchers().emit(ConnectionEvent::Disconnected {
            code: record.code,
            reason: without_handshake(record),
            cause,
        });
    }

    /// Lets the socket go and schedules the next dial. Calls sent on it
    /// fail with `error` (those that opted in wait to be sent again);
    /// calls not sent yet wait, or fail when the policy is to fail fast;
    /// subscriptions wait to be made again.
    fn reconnect(
        &mut self,
        loss: Loss,
        error: &Error,
        attempt: u32,
        delay: Duration,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        log::warn!(
            "{}; reconnecting (attempt {attempt} in {delay:?})",
            loss.record
        );
        let unwritten = self.let_socket_go(loss.close, ctx);
        // Frames the writer never took cannot have reached the server: their
        // calls are not "pending at the drop", they simply wait.
        let unwritten = self.pending.requeue_unwritten(unwritten);
        let keep_unsent = self.config.while_reconnecting == WhileReconnecting::Wait;
        self.subscriptions.disconnected(now);
        let (failed, requeued) = self.pending.disconnected(error, keep_unsent);
        log::debug!(
            "{failed} pending call(s) failed; {requeued} opted in and {unwritten} never written will be sent"
        );
        self.down_since.get_or_insert(now);
        self.last_loss = Some(loss.record);
        self.shared.reconnecting.store(true, Relaxed);
        self.state = State::Reconnecting;
        self.schedule_dial(attempt, delay, ctx);
    }

    /// Stops reading and writing the current socket; its writer may still
    /// write `close` (within the close timeout). What was queued for it is
    /// dropped, and its handlers' answers will not be sent. Returns the
    /// calls whose frames were dropped unwritten, with their frames.
    fn let_socket_go(
        &mut self,
        close: Option<(u16, String)>,
        ctx: &mut Context<Self>,
    ) -> Vec<(u64, bytes::Bytes)> {
        if let Some(heartbeat) = self.heartbeat.take() {
            ctx.cancel_future(heartbeat);
        }
        self.session_token.cancel();
        self.session_token = self.stopped.child_token();
        let farewell = close.map(|(code, reason)| frames::close_frame(code, &reason));
        let unwritten = self.shared.outbox.reset(farewell);
        if let Some(session) = self.session.take() {
            session.detach(self.config.close_timeout, ctx);
        }
        unwritten
    }

    fn schedule_dial(&mut self, attempt: u32, delay: Duration, ctx: &mut Context<Self>) {
        self.shared
            .watchers()
            .emit(ConnectionEvent::Reconnecting { attempt, delay });
        self.redial = Some(ctx.run_later(delay, |act, ctx| act.dial(ctx)));
    }

    fn dial(&mut self, ctx: &mut Context<Self>) {
        let dialer = Rc::clone(&self.dialer);
        let endpoint = self.endpoint;
        let dialling = async move { dialer.dial(endpoint).await }
            .into_actor(self)
            .map(|dialled, act, ctx| act.dialled(dialled, ctx));
        self.redial = Some(ctx.spawn(dialling));
    }

    fn dialled(&mut self, dialled: Result<Socket, Error>, ctx: &mut Context<Self>) {
        self.redial = None;
        if self.state != State::Reconnecting {
            return;
        }
        let err = match dialled {
            Ok(socket) => return self.reconnected(socket, ctx),
            Err(err) => err,
        };
        let ended = match &err {
            Error::Handshake { status, .. } => Ended::Refused(*status),
            _ => Ended::Lost,
        };
        log::warn!("reconnecting failed: {err}");
        // The next attempt goes to the next endpoint.
        self.endpoint = (self.endpoint + 1) % self.dialer.endpoints.len();
        let verdict = match self.backoff.as_mut() {
            Some(backoff) => backoff.next(&ended, Instant::now(), jitter()),
            None => Verdict::GiveUp("no reconnect policy".into()),
        };
        match verdict {
            Verdict::Retry { attempt, delay } => self.schedule_dial(attempt, delay, ctx),
            Verdict::GiveUp(reason) => {
                let reason = format!("{reason}; the last attempt failed: {err}");
                self.give_up(reason, None, ctx);
            }
        }
    }

    /// A new socket is open: the connection is up again.
    fn reconnected(&mut self, socket: Socket, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.start_session(socket, ctx);
        self.state = State::Open;
        self.shared.reconnecting.store(false, Relaxed);
        if let Some(backoff) = self.backoff.as_mut() {
            backoff.connected(now);
        }
        let down_for = self
            .down_since
            .take()
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        self.last_loss = None;
        stats::add(&self.metrics().reconnects, 1);
        let url = self.dialer.url(self.endpoint).to_owned();
        log::info!("reconnected to {url} after {down_for:?}");
        {
            let mut watchers = self.shared.watchers();
            watchers.emit(ConnectionEvent::Connected { url });
            watchers.emit(ConnectionEvent::Reconnected);
        }
        for resubscribe in self.subscriptions.take_resubscribes() {
            self.resubscribe(resubscribe, ctx);
        }
        self.send_waiting();
    }

    /// Starts reading and writing `socket`, and the heartbeat.
    pub(super) fn start_session(&mut self, socket: Socket, ctx: &mut Context<Self>) {
        let session = Session::start(
            socket.io,
            socket.early,
            Arc::clone(&self.shared.outbox),
            self.config.max_message_size,
            self.pacing.clone(),
            ctx,
        );
        self.session = Some(session);
        self.start_heartbeat(ctx);
    }

    /// Sends subscription `resubscribe`'s subscribe call again.
    fn resubscribe(&mut self, resubscribe: Resubscribe, ctx: &mut Context<Self>) {
        let Resubscribe {
            key,
            method,
            params,
            timeout,
            unsubscribe,
        } = resubscribe;
        let held = self.subscriptions.begin();
        let options = CallOptions {
            timeout,
            retry: false,
            ahead: true,
        };
        match self.start_call(method, &params, options, ctx) {
            Ok(id) => self.pending.attach(
                id,
                Box::new(Resubscribing {
                    key,
                    unsubscribe,
                    subscriptions: self.subscriptions.clone(),
                    _held: held,
                }),
            ),
            Err(err) => self.subscriptions.resubscribe_failed(key, &err),
        }
    }

    /// Ends the connection for good while it has no socket: every waiting
    /// call fails, every subscription ends, and the actor stops.
    pub(super) fn give_up(
        &mut self,
        reason: String,
        record: Option<Disconnect>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(redial) = self.redial.take() {
            ctx.cancel_future(redial);
        }
        log::warn!("the connection has ended: {reason}");
        let record = record
            .or_else(|| self.last_loss.take())
            .unwrap_or_else(|| Disconnect {
                initiator: Initiator::Transport,
                code: None,
                reason: reason.clone(),
                clean: false,
            });
        let error = Error::Disconnected {
            call: None,
            source: Some(reason.clone().into()),
        };
        self.pending.fail_all(&error);
        self.subscriptions
            .close_all(&SubscriptionEnd::Disconnected {
                reason: reason.clone(),
            });
        self.shared.outbox.stop();
        self.final_reason = Some(reason);
        self.ending = Some(record);
        self.state = State::Draining {
            flushed: true,
            peer_done: false,
            await_peer: false,
        };
        ctx.stop();
    }

    /// Pings on a fixed schedule; a socket that shows no sign of life
    /// (no frame at all) within the timeout of a ping is given up.
    pub(super) fn start_heartbeat(&mut self, ctx: &mut Context<Self>) {
        let Some(heartbeat) = self.config.heartbeat else {
            return;
        };
        let handle = ctx.run_interval(heartbeat.interval, move |act, ctx| {
            act.heartbeat_tick(heartbeat.timeout, ctx);
        });
        self.heartbeat = Some(handle);
    }

    fn heartbeat_tick(&mut self, timeout: Duration, ctx: &mut Context<Self>) {
        if self.state != State::Open {
            return;
        }
        let seen = self.frames_in;
        let generation = self.session.as_ref().map(Session::generation);
        self.shared.outbox.push_ping(frames::ping_frame(b""));
        ctx.run_later(timeout, move |act, ctx| {
            let same_socket = act.session.as_ref().map(Session::generation) == generation;
            if act.state == State::Open && same_socket && act.frames_in == seen {
                act.heartbeat_failed(timeout, ctx);
            }
        });
    }

    fn heartbeat_failed(&mut self, timeout: Duration, ctx: &mut Context<Self>) {
        stats::add(&self.metrics().heartbeat_failures, 1);
        let cause: BoxError = Box::new(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("heartbeat timeout after {timeout:?}: nothing from the server since our ping"),
        ));
        log::warn!("{cause}");
        self.lost(Some(cause), ctx);
    }
}

/// Told the answer to a subscribe call sent again after a reconnect.
struct Resubscribing {
    key: u64,
    unsubscribe: Cow<'static, str>,
    subscriptions: Subscriptions,
    /// Holds notifications for unknown subscriptions back while it lives.
    _held: PendingSubscribe,
}

impl Responder for Resubscribing {
    fn respond(self: Box<Self>, outcome: Result<Reply, Error>) {
        let reply = match outcome {
            Ok(reply) => reply,
            Err(err) => return self.subscriptions.resubscribe_failed(self.key, &err),
        };
        match Id::from_json(&reply.result.text).filter(|id| !id.is_null()) {
            Some(id) => {
                self.subscriptions
                    .resubscribed(self.key, id, self.unsubscribe, Instant::now());
            }
            None => {
                let err = Error::InvalidResponse {
                    reason: format!(
                        "a subscription id must be a number or a string, not {}",
                        reply.result.text
                    ),
                    call: reply.call,
                };
                self.subscriptions.resubscribe_failed(self.key, &err);
            }
        }
    }

    fn poll_gone(&mut self, _: &mut std::task::Context<'_>) -> Poll<()> {
        // The connection itself waits for it.
        Poll::Pending
    }
}

/// How a socket ended, told when it ends: whether the closing handshake
/// completes is not known yet.
fn without_handshake(record: &Disconnect) -> String {
    Disconnect {
        clean: true,
        ..record.clone()
    }
    .to_string()
}

/// A number in `[0, 1)` for the backoff's jitter.
fn jitter() -> f64 {
    rand::random::<f64>()
}
