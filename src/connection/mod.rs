//! The [`RpcConnection`] actor: one websocket, its pending calls and its
//! lifecycle.

mod dialer;
mod dispatch;
mod frames;
mod lifecycle;
mod listeners;
mod outbox;
mod pacing;
mod pending;
mod reconnect;
mod session;
mod subscriptions;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::dev::{MessageResponse, OneshotSender};
use actix::prelude::*;
use bytes::Bytes;
use bytestring::ByteString;
use futures_channel::oneshot;
use serde::de::DeserializeOwned;

pub use dialer::{awc_client, awc_connector};

#[cfg(feature = "rustls")]
pub(crate) use dialer::rustls_client;
pub(crate) use dialer::{split_userinfo, Auth, Dialer, Endpoint, Socket};
use dispatch::{Answer, AnswerText, Limits, ServerRequests};
use frames::{Frame, FrameError};
use listeners::Listeners;
use outbox::{Outbox, Refused};
use pacing::PacingLink;
use pending::{BatchResponder, PendingCalls, Responder};
use reconnect::Backoff;
use session::{Session, WriterEnd, WriterEnded};
use subscriptions::{Link, Routed, Subscriptions};

use crate::batch::{Batch, BatchResults};
use crate::config::{Backpressure, Config, WhileReconnecting};
use crate::delivery::{self, Overflow};
use crate::error::SubscriptionInfo;
use crate::error::{Bound, CallInfo, Error};
use crate::events::{WatchEvents, Watchers};
use crate::message::Subscribe;
use crate::message::{
    fit_close_reason, may_send_close_code, Call, Close, Disconnect, GetStats, Initiator, Notify,
    RawCall, RegisterHandler, RegisterListener, Reply, UnregisterHandler, UnregisterListeners,
};
use crate::protocol::Id;
use crate::protocol::{self, ErrorObject, Inbound, Message as RpcMessage, RawResult};
use crate::registry::Registry;
use crate::stats::{self, Metrics};
use crate::subscription::{self, Subscription, SubscriptionEnd, SubscriptionItem, Unsubscribe};
use std::cell::RefCell;
use std::rc::Rc;

/// What every handle of a connection shares with the actor: thread-safe,
/// so a [`Client`](crate::Client) can queue notifications without a
/// round trip through the actor, and read the counters and the ending
/// after the actor has stopped.
pub(crate) struct Shared {
    pub metrics: Arc<Metrics>,
    pub outbox: Arc<Outbox>,
    /// `Some` once the connection has ended.
    pub ended: tokio::sync::watch::Sender<Option<Disconnect>>,
    pub request_timeout: Duration,
    pub max_message_size: usize,
    pub backpressure: Backpressure,
    /// Keys of subscriptions whose handle was dropped.
    pub dropped_subscriptions: Arc<subscription::Dropped>,
    /// Who hears of the connection's events.
    pub watchers: std::sync::Mutex<Watchers>,
    /// Set while the connection is down and dialling again.
    pub reconnecting: std::sync::atomic::AtomicBool,
    /// Calls and notifications fail at once while reconnecting.
    pub fail_fast: bool,
}

impl Shared {
    /// The event watchers (a poisoned lock still holds a usable list).
    pub fn watchers(&self) -> std::sync::MutexGuard<'_, Watchers> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Shared {
    /// Encodes and queues a notification: the work of [`Notify`], done in
    /// the caller's task.
    pub async fn notify(
        &self,
        method: Cow<'static, str>,
        params: &protocol::Params,
    ) -> Result<(), Error> {
        match self.notify_now(method, params) {
            Queued::Done(outcome) => outcome,
            Queued::Wait(method, frame) => self.notify_later(method, frame).await,
        }
    }

    /// Queues a notification if that can be decided now.
    fn notify_now(&self, method: Cow<'static, str>, params: &protocol::Params) -> Queued {
        if self.fail_fast && self.reconnecting.load(std::sync::atomic::Ordering::Relaxed) {
            return Queued::Done(Err(Error::NotConnected { method }));
        }
        let frame = match encode_notification(&method, params, self.max_message_size) {
            Ok(frame) => frame,
            Err(err) => return Queued::Done(Err(err)),
        };
        match self.outbox.try_push(&frame) {
            Err(Refused::Full) if self.backpressure == Backpressure::Wait => {
                Queued::Wait(method, frame)
            }
            outcome => Queued::Done(self.notified(method, outcome)),
        }
    }

    /// Waits for room for a notification, up to the request timeout.
    async fn notify_later(&self, method: Cow<'static, str>, frame: Bytes) -> Result<(), Error> {
        stats::add(&self.metrics.backpressure_waits, 1);
        let outcome =
            match tokio::time::timeout(self.request_timeout, self.outbox.push(frame)).await {
                Ok(queued) => queued,
                Err(_elapsed) => Err(Refused::Full),
            };
        self.notified(method, outcome)
    }

    fn notified(
        &self,
        method: Cow<'static, str>,
        outcome: Result<(), Refused>,
    ) -> Result<(), Error> {
        match outcome {
            Ok(()) => {
                stats::add(&self.metrics.notifications_sent, 1);
                Ok(())
            }
            Err(Refused::Full) => {
                stats::add(&self.metrics.overloaded, 1);
                Err(Error::Overloaded {
                    bound: Bound::QueuedBytes(self.outbox.limit()),
                    method,
                })
            }
            Err(Refused::Closed) => Err(Error::NotConnected { method }),
        }
    }
}

/// A notification decided now, or one that must wait for room.
enum Queued {
    Done(Result<(), Error>),
    Wait(Cow<'static, str>, Bytes),
}

/// A notification's frame, or why it cannot be sent.
fn encode_notification(
    method: &str,
    params: &protocol::Params,
    limit: usize,
) -> Result<Bytes, Error> {
    let params = params.wire().map_err(|reason| Error::InvalidParams {
        method: method.to_owned().into(),
        reason: reason.to_owned(),
    })?;
    let mut buf =
        frames::frame_buffer(protocol::REQUEST_ROOM + method.len() + params.map_or(0, <[u8]>::len));
    protocol::write_request(&mut buf, None, method, params);
    let size = buf.len() - frames::HEADER_ROOM;
    if size > limit {
        return Err(Error::MessageTooLarge {
            size: size as u64,
            limit,
            inbound: false,
            call: None,
        });
    }
    Ok(frames::seal(buf, actix_http::ws::OpCode::Text))
}

/// The actor that owns one websocket connection to a JSON-RPC server.
///
/// Create it with [`RpcConnection::builder`]; talk to it with
/// [`Call`], [`Notify`], [`Close`] and [`GetStats`] messages, or through the
/// [`Client`](crate::Client) handle returned by
/// [`connect`](crate::ConnectionBuilder::connect).
///
/// # Actor lifecycle
///
/// ## Open
/// Starts once the handshake has succeeded (there is no "connecting" actor:
/// `connect()` fails instead). Calls are written as they arrive and wait in
/// the pending table for their response or their deadline; a call that finds
/// a bound full (`max_in_flight`, `max_queued_bytes`) waits in the same
/// table for room, or fails, as [`Backpressure`](crate::Backpressure) says.
/// A caller that stops waiting frees its call at once. Responses complete
/// their call; unknown ids and invalid messages are logged, counted and
/// skipped; pings are answered; the server's requests go to their handlers
/// and its notifications to their listeners' queues.
///
/// A ping goes out every heartbeat interval (default 15 s); no frame at all
/// from the server within the heartbeat timeout of one means the socket is
/// dead (see [`ConnectionBuilder::heartbeat`](crate::ConnectionBuilder::heartbeat)).
///
/// ## Reconnecting (only with a [`ReconnectPolicy`](crate::ReconnectPolicy))
/// Entered instead of *Draining* when the socket is lost or closed by the
/// server and the policy allows another attempt (not after 1008, a 401/403
/// handshake, or attempts used up). The socket is let go (the server's close
/// frame still gets its answer); calls sent on it fail at once with a
/// disconnect error ([`Error::Closed`] or [`Error::Disconnected`]), except
/// those made with [`Call::retry_on_reconnect`], which wait to be sent once
/// more; handler work for its requests is dropped. Calls made meanwhile wait
/// in the line of unsent calls (bounded by `max_in_flight`, each up to its
/// timeout) or fail with [`Error::NotConnected`], as
/// [`WhileReconnecting`](crate::WhileReconnecting) says. The endpoints are
/// dialled in turn after a backoff with full jitter; on success the state is
/// *Open* again, waiting calls go out and subscriptions are made again. Every
/// step is a [`ConnectionEvent`](crate::ConnectionEvent).
///
/// ## Draining
/// Entered on the first of these, each failing every pending call at once
/// (and every later call with [`Error::NotConnected`]) — when no reconnect
/// policy applies:
/// - [`Close`], or every [`Client`](crate::Client) and `Addr` dropped: our
///   close frame is queued behind what is already queued; calls fail with
///   [`Error::Closed`].
/// - The server's close frame: it is answered; calls fail with
///   [`Error::Closed`] carrying its code and reason.
/// - A message over the size limit: close code 1009; calls fail with
///   [`Error::MessageTooLarge`]. The message is discarded as it arrives.
/// - A websocket protocol violation: close code 1002; calls fail with
///   [`Error::Disconnected`] naming the violation.
///
/// After our close frame nothing else is sent (no answers, no pongs).
/// Reading goes on, so the server's close frame is heard and its unread data
/// does not turn our close into a reset.
///
/// ## Stopped
/// Once our close frame is written and the server has closed its side, or
/// after the close timeout (default 1 s), or at once when the socket drops
/// or fails ([`Error::Disconnected`]). The pending table is empty: every
/// call has ended with its result or an error. Handler work still running
/// is dropped. [`Client::closed`](crate::Client::closed) resolves with how it
/// ended, and the last event is
/// [`ConnectionEvent::Closed`](crate::ConnectionEvent::Closed).
pub struct RpcConnection {
    config: Config,
    /// Kept for reconnecting: the same URLs, headers and credentials.
    dialer: Rc<Dialer>,
    /// The endpoint the socket is open to, or the next dial goes to.
    endpoint: usize,
    /// `Some` when a reconnect policy is set.
    backoff: Option<Backoff>,
    /// The timer before the next dial, or the dial itself.
    redial: Option<SpawnHandle>,
    /// When the connection was lost, while it is being dialled again.
    down_since: Option<Instant>,
    /// How the last socket ended, while the connection is dialled again.
    last_loss: Option<Disconnect>,
    /// Why the connection ended for good, for the `Closed` event.
    final_reason: Option<String>,
    /// Frames read from the current socket: the heartbeat's sign of life.
    frames_in: u64,
    /// The heartbeat's timer, while a socket is open.
    heartbeat: Option<SpawnHandle>,
    /// Cancelled when the current socket is given up: handler work for its
    /// requests is dropped (the answer would reach a server that never
    /// asked).
    session_token: tokio_util::sync::CancellationToken,
    shared: Arc<Shared>,
    session: Option<Session>,
    pending: PendingCalls,
    /// What the reader needs to know to pace a notification flood.
    pacing: PacingLink,
    /// Where the ids of calls whose callers went away are queued.
    cancellations: Arc<pending::Cancellations>,
    next_id: u64,
    state: State,
    /// The deadline the expiry timer is armed for, and its handle.
    timer: Option<(Instant, SpawnHandle)>,
    requests: ServerRequests,
    listeners: Listeners,
    subscriptions: Subscriptions,
    /// Cancelled when the actor stops, ending handler tasks still running.
    stopped: tokio_util::sync::CancellationToken,
    /// Held by [`Close`] callers; told the outcome when the actor stops.
    close_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    /// How the connection is ending, once it is.
    ending: Option<Disconnect>,
    /// How long draining may take before the actor stops anyway.
    drain_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The socket was lost and a reconnect policy says to dial again: calls
    /// wait (or fail fast), nothing is read or written.
    Reconnecting,
    /// Closing or closed: every call has failed; our close frame (if any)
    /// is being written and the server's end awaited. The actor stops when
    /// both are done (or only the first, when `await_peer` is false), or
    /// after the close timeout.
    Draining {
        flushed: bool,
        peer_done: bool,
        await_peer: bool,
    },
}

/// How one call is to be made.
#[derive(Debug, Clone, Copy, Default)]
struct CallOptions {
    /// Overrides the request timeout.
    timeout: Option<Duration>,
    /// Send it again once after a reconnect (see [`Call::retry_on_reconnect`]).
    retry: bool,
    /// The connection's own call (a resubscribe): it goes ahead of the
    /// calls waiting in line, and waits for room rather than fail.
    ahead: bool,
}

/// Everything a connection is started with.
pub(crate) struct Parts {
    pub config: Config,
    pub dialer: Dialer,
    pub socket: Socket,
    pub handlers: Registry<crate::message::RequestHandler>,
    pub listeners: Vec<RegisterListener>,
    /// The endpoint `socket` is open to.
    pub endpoint: usize,
    /// Actors told the connection's events from the start.
    pub watchers: Vec<Recipient<crate::ConnectionEvent>>,
}

impl RpcConnection {
    /// Starts the actor on the current arbiter with an open socket.
    pub(crate) fn start(parts: Parts) -> (Addr<RpcConnection>, Arc<Shared>) {
        let Parts {
            config,
            dialer,
            socket,
            handlers,
            listeners,
            endpoint,
            watchers,
        } = parts;
        let metrics = Arc::new(Metrics::default());
        let outbox = Outbox::new(config.max_queued_bytes, Arc::clone(&metrics));
        let shared = Arc::new(Shared {
            metrics: Arc::clone(&metrics),
            outbox,
            ended: tokio::sync::watch::Sender::new(None),
            request_timeout: config.request_timeout,
            max_message_size: config.max_message_size,
            backpressure: config.backpressure,
            dropped_subscriptions: Arc::default(),
            watchers: std::sync::Mutex::new(Watchers::new(
                config.events_capacity,
                dialer.url(endpoint).to_owned(),
            )),
            reconnecting: std::sync::atomic::AtomicBool::new(false),
            fail_fast: config.while_reconnecting == WhileReconnecting::FailFast,
        });
        let actor_shared = Arc::clone(&shared);
        let addr = RpcConnection::create(move |ctx| {
            ctx.set_mailbox_capacity(1024);
            let limits = Limits {
                in_progress: config.max_server_requests,
                timeout: config.request_timeout,
                answer_size: config.max_message_size,
            };
            let mut listener_table = Listeners::new(
                listeners::Defaults {
                    capacity: config.listener_capacity,
                    overflow: config.listener_overflow,
                },
                Arc::clone(&metrics),
            );
            for listener in listeners {
                listener_table.add(listener);
            }
            let pending = PendingCalls::new(Arc::clone(&metrics));
            let pacing = PacingLink::new(config.read_pacing, pending.clone(), Arc::clone(&metrics));
            let session = Session::start(
                socket.io,
                socket.early,
                Arc::clone(&actor_shared.outbox),
                config.max_message_size,
                pacing.clone(),
                ctx,
            );
            ctx.spawn(Housekeeping);
            for watcher in watchers {
                actor_shared.watchers().actor(watcher);
            }
            let config_close_timeout = config.close_timeout;
            let stopped = tokio_util::sync::CancellationToken::new();
            RpcConnection {
                backoff: config.reconnect.clone().map(|policy| {
                    let mut backoff = Backoff::new(policy);
                    backoff.connected(Instant::now());
                    backoff
                }),
                dialer: Rc::new(dialer),
                endpoint,
                redial: None,
                down_since: None,
                last_loss: None,
                final_reason: None,
                frames_in: 0,
                heartbeat: None,
                session_token: stopped.child_token(),
                cancellations: pending.cancellations(),
                subscriptions: Subscriptions::new(Arc::clone(&metrics)),
                requests: ServerRequests::new(handlers, limits, Arc::clone(&metrics)),
                listeners: listener_table,
                config,
                shared: actor_shared,
                session: Some(session),
                pending,
                pacing,
                next_id: 1,
                state: State::Open,
                timer: None,
                stopped,
                close_waiters: Vec::new(),
                ending: None,
                drain_timeout: config_close_timeout,
            }
        });
        (addr, shared)
    }

    fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Registers a call and queues its request (or, when a bound is full
    /// and the policy is to wait, its place in line); returns its id. The
    /// pending entry exists before the frame can be written, so no response
    /// can overtake it; the caller's responder is attached right after, in
    /// the same turn of the actor (see [`CallReply`]).
    fn start_call(
        &mut self,
        method: Cow<'static, str>,
        params: &protocol::Params,
        options: CallOptions,
        ctx: &mut Context<Self>,
    ) -> Result<u64, Error> {
        // While reconnecting, calls wait in the line of unsent calls.
        let reconnecting = match self.state {
            State::Open => false,
            State::Reconnecting if self.config.while_reconnecting == WhileReconnecting::Wait => {
                true
            }
            _ => return Err(Error::NotConnected { method }),
        };
        let params = params.wire().map_err(|reason| Error::InvalidParams {
            method: method.clone(),
            reason: reason.to_owned(),
        })?;
        let limit = self.config.max_message_size;
        let mut buf = frames::frame_buffer(
            protocol::REQUEST_ROOM + method.len() + params.map_or(0, <[u8]>::len),
        );
        let id = self.next_id;
        protocol::write_request(&mut buf, Some(id), &method, params);
        let size = buf.len() - frames::HEADER_ROOM;
        let call = CallInfo { method, id };
        if size > limit {
            return Err(Error::MessageTooLarge {
                size: size as u64,
                limit,
                inbound: false,
                call: Some(call),
            });
        }
        let frame = frames::seal(buf, actix_http::ws::OpCode::Text);
        let timeout = options.timeout.unwrap_or(self.config.request_timeout);
        let retry = options.retry.then(|| frame.clone());
        let now = Instant::now();
        let max_in_flight = self.config.max_in_flight;
        if self.pending.sent() >= max_in_flight {
            // Callers that gave up may not have been counted out yet.
            for id in self.cancellations.take() {
                self.pending.cancel(id);
            }
        }
        let in_line = (self.pending.unsent() > 0 && !options.ahead) || reconnecting;
        let refused = if self.pending.sent() >= max_in_flight || in_line {
            Refused::Full
        } else {
            match self.shared.outbox.try_push_call(&frame, id) {
                Ok(()) => {
                    self.next_id += 1;
                    let deadline = self.pending.insert(call, now, timeout);
                    if let Some(frame) = retry {
                        self.pending.keep_for_retry(id, frame);
                    }
                    self.arm_timer(deadline, ctx);
                    stats::add(&self.metrics().calls_sent, 1);
                    return Ok(id);
                }
                Err(refused) => refused,
            }
        };
        let wait = reconnecting || options.ahead || self.config.backpressure == Backpressure::Wait;
        match refused {
            Refused::Closed => Err(Error::NotConnected {
                method: call.method,
            }),
            // The line of waiting calls has the same bound as the calls in flight.
            Refused::Full if wait && self.pending.unsent() < max_in_flight => {
                self.next_id += 1;
                if !reconnecting {
                    stats::add(&self.metrics().backpressure_waits, 1);
                }
                let deadline = self.pending.insert_unsent(call, frame, now, timeout);
                if let Some(frame) = retry {
                    self.pending.keep_for_retry(id, frame);
                }
                self.arm_timer(deadline, ctx);
                Ok(id)
            }
            Refused::Full => {
                stats::add(&self.metrics().overloaded, 1);
                let bound = if self.pending.sent() >= max_in_flight || in_line {
                    Bound::InFlight(max_in_flight)
                } else {
                    Bound::QueuedBytes(self.shared.outbox.limit())
                };
                Err(Error::Overloaded {
                    bound,
                    method: call.method,
                })
            }
        }
    }

    /// Frees the entries of calls whose callers stopped waiting; `task` is
    /// woken when more do.
    fn cancel_abandoned_calls(&mut self, task: &mut std::task::Context<'_>) {
        while let Poll::Ready(ids) = self.cancellations.poll_drain(task) {
            for id in ids {
                self.pending.cancel(id);
            }
        }
    }

    /// Ends the subscriptions whose handles were dropped, sends the
    /// unsubscribe calls owed, and hands held notifications nobody can
    /// claim any more to the listeners. `task` is woken when more handles
    /// are dropped.
    fn end_dropped_subscriptions(
        &mut self,
        task: &mut std::task::Context<'_>,
        ctx: &mut Context<Self>,
    ) {
        let dropped = Arc::clone(&self.shared.dropped_subscriptions);
        while let Poll::Ready(keys) = dropped.poll_drain(task) {
            for key in keys {
                self.subscriptions.dropped(key);
            }
        }
        for (method, id) in self.subscriptions.take_unsubscribes() {
            // Best effort: nobody waits for the answer, and it is read and
            // dropped like any other (or the call times out).
            let params = protocol::Params::from_json(format!("[{id}]"));
            if let Err(err) = self.start_call(method, &params, CallOptions::default(), ctx) {
                log::debug!("could not unsubscribe {id}: {err}");
            }
        }
        for held in self.subscriptions.release_held() {
            log::debug!(
                "a notification for subscription {} matched none; given to the listeners",
                held.id
            );
            self.listeners.tell(protocol::Notification {
                method: held.method.into(),
                params: Some(&held.params),
                params_members: None,
            });
        }
    }

    /// Sends waiting calls while there is room for them, in order. `false`
    /// when one is still waiting for room in the outbound queue.
    fn send_waiting(&mut self) -> bool {
        while self.state == State::Open && self.pending.sent() < self.config.max_in_flight {
            let Some((id, frame)) = self.pending.next_unsent() else {
                return true;
            };
            match self.shared.outbox.try_push_call(&frame, id) {
                Ok(()) => {
                    self.pending.mark_sent(id);
                    stats::add(&self.metrics().calls_sent, 1);
                }
                Err(_) => return false,
            }
        }
        true
    }

    /// Makes sure the expiry timer fires no later than `deadline`. One timer
    /// serves all calls: with a common timeout, new deadlines are later than
    /// the armed one and cost nothing.
    fn arm_timer(&mut self, deadline: Instant, ctx: &mut Context<Self>) {
        if let Some((armed, handle)) = self.timer {
            if armed <= deadline {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = deadline.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            let (_, next) = act.pending.expire(Instant::now());
            if let Some(next) = next {
                act.arm_timer(next, ctx);
            }
        });
        self.timer = Some((deadline, handle));
    }

    fn on_message_bytes(&mut self, bytes: Bytes) {
        stats::add(&self.metrics().bytes_received, bytes.len() as u64);
        // Validated once; results are then slices of this text, not copies.
        let Ok(text) = ByteString::try_from(bytes) else {
            self.skip("message is not valid UTF-8");
            return;
        };
        let parsed = protocol::parse(&text);
        self.pacing.saw(matches!(
            parsed,
            Inbound::Single(RpcMessage::Notification(_))
        ));
        match parsed {
            Inbound::Single(message) => {
                if let Some(message) = self.refused_batch(message) {
                    if let Some(answer) = self.on_rpc_message(message, &text, &mut Vec::new()) {
                        self.send_answer(answer);
                    }
                }
            }
            Inbound::Batch(messages) => {
                // The batches of ours this answers: calls of theirs missing
                // from it fail at once instead of waiting for the timeout.
                let mut batches: Vec<u64> = Vec::new();
                let answers: Vec<Answer> = messages
                    .into_iter()
                    .filter_map(|m| self.on_rpc_message(m, &text, &mut batches))
                    .collect();
                self.send_batch_answer(answers);
                for batch in batches {
                    let missing = self.pending.fail_missing(batch);
                    if missing > 0 {
                        log::warn!(
                            "the server's answer to batch {batch} left out {missing} call(s)"
                        );
                    }
                }
            }
            Inbound::Garbage(reason) => self.skip(&reason),
        }
    }

    /// A lone error with a `null` id while a batch of ours waits with no
    /// answer at all is the server refusing that batch (servers that do not
    /// take batches answer so): every call in it fails with that error.
    /// Returns the message when it is not that.
    fn refused_batch<'a>(&mut self, message: RpcMessage<'a>) -> Option<RpcMessage<'a>> {
        if let RpcMessage::Response(response) = &message {
            if let (true, Err(error)) = (response.id.is_null(), &response.outcome) {
                if let Some(batch) = self.pending.oldest_unanswered_batch() {
                    log::warn!("the server refused batch {batch}: {error}");
                    self.pending.fail_batch(batch, |call| Error::Rpc {
                        call,
                        error: Box::new(error.clone()),
                    });
                    return None;
                }
            }
        }
        Some(message)
    }

    /// Handles one JSON-RPC object; returns the answer owed, if any. A
    /// response to a call of one of our batches adds that batch to
    /// `batches` (once).
    fn on_rpc_message(
        &mut self,
        message: RpcMessage<'_>,
        text: &ByteString,
        batches: &mut Vec<u64>,
    ) -> Option<Answer> {
        match message {
            RpcMessage::Response(response) => {
                if response.id.is_null() {
                    if let Err(error) = &response.outcome {
                        stats::add(&self.metrics().null_id_errors, 1);
                        log::warn!("the server could not process one of our messages: {error}");
                        return None;
                    }
                }
                let unescaped = response.unescaped;
                let outcome = response.outcome.map(|raw| RawResult {
                    text: text.slice_ref(raw),
                    unescaped,
                });
                let known = response.id.as_u64().is_some_and(|id| {
                    match self.pending.try_complete(id, outcome) {
                        Ok(batch) => {
                            if let Some(batch) = batch.filter(|b| !batches.contains(b)) {
                                batches.push(batch);
                            }
                            true
                        }
                        Err(outcome) => {
                            let result = outcome.as_ref().ok().map(|raw| &*raw.text);
                            self.subscriptions.claim_orphan(id, result)
                        }
                    }
                });
                if !known {
                    stats::add(&self.metrics().unknown_ids, 1);
                    log::warn!(
                        "ignored a response with id {} that matches no pending call",
                        response.id
                    );
                }
                None
            }
            RpcMessage::InvalidResponse { id, reason } => {
                if let Some(id) = id.as_ref().and_then(|id| id.as_u64()) {
                    self.pending.fail(id, |call| Error::InvalidResponse {
                        call,
                        reason: reason.clone(),
                    });
                }
                self.skip(&format!("invalid response: {reason}"));
                None
            }
            RpcMessage::Request(request) => Some(self.requests.route(request)),
            RpcMessage::Notification(notification) => {
                let routed = self.subscriptions.route(
                    &notification.method,
                    notification.params,
                    notification.params_members,
                    text,
                );
                match routed {
                    Routed::NotOurs => self.listeners.tell(notification),
                    Routed::Delivered | Routed::Held => {
                        stats::add(&self.metrics().server_notifications, 1);
                    }
                }
                None
            }
            RpcMessage::InvalidRequest { id, reason } => {
                self.skip(&format!("invalid request: {reason}"));
                id.map(|id| {
                    Answer::Now(dispatch::error(&id, &ErrorObject::invalid_request(reason)))
                })
            }
        }
    }

    fn skip(&self, reason: &str) {
        stats::add(&self.metrics().invalid_messages, 1);
        log::warn!("skipped an invalid message from the server: {reason}");
    }

    /// Sends one answer now, or once its handler is done.
    fn send_answer(&mut self, answer: Answer) {
        match answer.now_or_later() {
            Answer::Now(text) => queue_answer(&self.shared.outbox, &text),
            Answer::Later(work) => self.answer_later(work),
        }
    }

    /// Sends the answers to a batch as one batch, in request order, once
    /// all are ready.
    fn send_batch_answer(&mut self, answers: Vec<Answer>) {
        if answers.is_empty() {
            return;
        }
        let answers: Vec<Answer> = answers.into_iter().map(Answer::now_or_later).collect();
        if answers.iter().all(|a| matches!(a, Answer::Now(_))) {
            let texts = answers.into_iter().filter_map(|a| match a {
                Answer::Now(text) => Some(text),
                Answer::Later(_) => None,
            });
            queue_answer(&self.shared.outbox, &join_batch(texts));
            return;
        }
        let all = futures_util::future::join_all(answers.into_iter().map(|answer| match answer {
            Answer::Now(text) => Box::pin(std::future::ready(text))
                as Pin<Box<dyn std::future::Future<Output = AnswerText>>>,
            Answer::Later(work) => work,
        }));
        self.answer_later(async move { join_batch(all.await) });
    }

    /// Runs handler work as a task of its own (a future on the actor's
    /// context would be polled on every event of the connection; a task is
    /// polled only when woken). When the connection stops, work still
    /// running is dropped: its answer would have nowhere to go.
    fn answer_later(&self, work: impl std::future::Future<Output = AnswerText> + 'static) {
        let outbox = Arc::clone(&self.shared.outbox);
        let gone = self.session_token.clone();
        actix::spawn(async move {
            tokio::select! {
                // Checked first: an answer must not reach a later socket.
                biased;
                () = gone.cancelled() => {}
                text = work => queue_answer(&outbox, &text),
            }
        });
    }

    /// Ends the connection: fails every pending call with `error`, queues a
    /// close frame if there is one to send, and lets the actor stop once it
    /// is written and the server is done (or after the close timeout).
    /// Reading goes on meanwhile, so the server's close frame is still heard
    /// and our socket is not reset under data the server has yet to read.
    fn shut_down(
        &mut self,
        error: Error,
        close: Option<(u16, String)>,
        ending: Disconnect,
        await_peer: bool,
        ctx: &mut Context<Self>,
    ) {
        let drain = self.config.close_timeout;
        self.shut_down_within(error, close, ending, await_peer, drain, ctx);
    }

    /// [`shut_down`](Self::shut_down), stopping after `drain` at the latest.
    fn shut_down_within(
        &mut self,
        error: Error,
        close: Option<(u16, String)>,
        ending: Disconnect,
        await_peer: bool,
        drain: Duration,
        ctx: &mut Context<Self>,
    ) {
        if self.state != State::Open {
            return;
        }
        self.drain_timeout = drain;
        let failed = self.pending.fail_all(&error);
        if failed > 0 {
            log::debug!("{failed} pending call(s) failed: {error}");
        }
        self.subscriptions
            .close_all(&SubscriptionEnd::Disconnected {
                reason: ending.to_string(),
            });
        self.ending = Some(ending);
        let flushed = match close {
            Some((code, reason)) => {
                let frame = frames::close_frame(code, &reason);
                !self.shared.outbox.push_close(frame)
            }
            None => {
                self.shared.outbox.stop();
                true
            }
        };
        self.state = State::Draining {
            flushed,
            peer_done: false,
            await_peer,
        };
        ctx.run_later(drain, |_, ctx| ctx.stop());
    }

    /// Closes from our side with a close frame (a [`Close`], or every handle
    /// gone), waiting up to `drain` for the closing handshake.
    fn close(
        &mut self,
        code: u16,
        reason: String,
        await_peer: bool,
        drain: Duration,
        ctx: &mut Context<Self>,
    ) {
        let error = Error::Closed {
            code,
            reason: if reason.is_empty() {
                "closed by the client".to_owned()
            } else {
                reason.clone()
            },
            call: None,
        };
        let ending = Disconnect {
            initiator: Initiator::Client,
            code: Some(code),
            reason: reason.clone(),
            clean: false,
        };
        match self.state {
            State::Open => {
                self.tell_disconnected(&ending, None);
                self.shut_down_within(error, Some((code, reason)), ending, await_peer, drain, ctx);
            }
            State::Reconnecting => self.give_up("closed by the client".into(), Some(ending), ctx),
            State::Draining { .. } => {}
        }
    }

    /// The socket is gone or unusable: no closing handshake is possible.
    fn lost(&mut self, cause: Option<crate::error::BoxError>, ctx: &mut Context<Self>) {
        let cause = cause.map(crate::events::shared_cause);
        let reason = cause
            .as_deref()
            .map(|c| crate::error::chain_text(c))
            .unwrap_or_else(|| "the server closed the socket without a close frame".to_owned());
        let record = Disconnect {
            initiator: Initiator::Transport,
            code: None,
            reason,
            clean: false,
        };
        let error = Error::Disconnected {
            call: None,
            source: cause
                .as_deref()
                .map(|c| Box::new(crate::error::Cause::of(c)) as crate::error::BoxError),
        };
        self.socket_lost(
            lifecycle::Loss {
                ended: reconnect::Ended::Lost,
                record,
                close: None,
                cause,
            },
            error,
            ctx,
        );
    }

    /// Moves the draining state forward; stops once nothing is left to wait for.
    fn drained(&mut self, now_flushed: bool, now_peer_done: bool, ctx: &mut Context<Self>) {
        if let State::Draining {
            flushed,
            peer_done,
            await_peer,
        } = self.state
        {
            let (flushed, peer_done) = (flushed || now_flushed, peer_done || now_peer_done);
            self.state = State::Draining {
                flushed,
                peer_done,
                await_peer,
            };
            if flushed && (peer_done || !await_peer) {
                ctx.stop();
            }
        }
    }

    fn on_close_frame(
        &mut self,
        reason: Option<actix_http::ws::CloseReason>,
        ctx: &mut Context<Self>,
    ) {
        if self.state == State::Open {
            let code = reason.as_ref().map_or(1005, |r| u16::from(r.code));
            let text = reason
                .as_ref()
                .and_then(|r| r.description.clone())
                .unwrap_or_default();
            log::debug!("server closed the connection (code {code}: {text})");
            let error = Error::Closed {
                code,
                reason: text.clone(),
                call: None,
            };
            let ending = Disconnect {
                initiator: Initiator::Server,
                code: Some(code),
                reason: text,
                clean: false,
            };
            // RFC 6455 §5.5.1: answer a close frame with a close frame,
            // echoing its code when it may be sent (1005 "no code" may not).
            let echo = if may_send_close_code(code) {
                code
            } else {
                1000
            };
            let loss = lifecycle::Loss {
                ended: reconnect::Ended::CloseCode(code),
                record: ending,
                close: Some((echo, String::new())),
                cause: None,
            };
            self.socket_lost(loss, error, ctx);
        }
        self.drained(false, true, ctx);
    }

    /// Every `Client` and `Addr` is gone: nothing can use the connection, so
    /// it closes cleanly instead of living on through its read stream.
    fn abandoned(&mut self, ctx: &mut Context<Self>) {
        if matches!(self.state, State::Open | State::Reconnecting) {
            log::debug!("every handle of the connection was dropped; closing it");
            let drain = self.config.close_timeout;
            self.close(1000, String::new(), true, drain, ctx);
        }
    }
}

/// Queues an answer the connection owes the server.
fn queue_answer(outbox: &Outbox, text: &[u8]) {
    if outbox.push_owed(frames::text_frame(text)).is_err() {
        log::debug!("dropped an answer to the server: the connection is closing");
    }
}

/// `[a,b,…]`.
fn join_batch(texts: impl IntoIterator<Item = AnswerText>) -> AnswerText {
    let mut out = vec![b'['];
    for (i, text) in texts.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&text);
    }
    out.push(b']');
    out
}

/// Checks run on every turn of the actor, each a few loads when there is
/// nothing to do: are all handles gone, did callers give up, can waiting
/// calls go now.
struct Housekeeping;

impl ActorFuture<RpcConnection> for Housekeeping {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut RpcConnection,
        ctx: &mut Context<RpcConnection>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        if !ctx.connected() {
            act.abandoned(ctx);
        }
        act.cancel_abandoned_calls(task);
        act.end_dropped_subscriptions(task, ctx);
        if act.pending.unsent() > 0 && !act.send_waiting() {
            // Woken when the writer frees room in the outbound queue.
            act.shared.outbox.register_room_waker(task);
            act.send_waiting();
        }
        if matches!(act.state, State::Draining { .. }) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Actor for RpcConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.start_heartbeat(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        // Whatever path led here, no call may be left waiting.
        let error = Error::Disconnected {
            call: None,
            source: None,
        };
        self.pending.fail_all(&error);
        Running::Stop
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.stopped.cancel();
        self.shared.outbox.stop();
        if let Some(session) = self.session.take() {
            session.end(ctx);
        }
        let (flushed, peer_done, await_peer) = match self.state {
            State::Draining {
                flushed,
                peer_done,
                await_peer,
            } => (flushed, peer_done, await_peer),
            State::Open | State::Reconnecting => (false, false, true),
        };
        let mut ending = self.ending.take().unwrap_or(Disconnect {
            initiator: Initiator::Transport,
            code: None,
            reason: "the connection stopped".to_owned(),
            clean: false,
        });
        ending.clean = ending.code.is_some() && flushed && peer_done;
        // Tell `Close` callers whether the closing handshake finished.
        for waiter in self.close_waiters.drain(..) {
            let outcome = if ending.clean
                || (ending.initiator == Initiator::Client && flushed && !await_peer)
            {
                Ok(())
            } else if ending.code.is_some() {
                Err(Error::CloseTimeout {
                    after: self.drain_timeout,
                })
            } else {
                Err(Error::Disconnected {
                    call: None,
                    source: Some(ending.reason.clone().into()),
                })
            };
            let _ = waiter.send(outcome);
        }
        let reason = self
            .final_reason
            .take()
            .unwrap_or_else(|| ending.to_string());
        self.shared.watchers().close(reason);
        self.shared
            .reconnecting
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.shared.ended.send_replace(Some(ending));
    }
}

impl StreamHandler<Result<Frame, FrameError>> for RpcConnection {
    fn handle(&mut self, item: Result<Frame, FrameError>, ctx: &mut Self::Context) {
        // Any frame is a sign of life for the heartbeat.
        self.frames_in = self.frames_in.wrapping_add(1);
        match item {
            Ok(Frame::Message(bytes)) => self.on_message_bytes(bytes),
            Ok(Frame::Ping(payload)) => {
                // Refused once our close frame is queued: nothing follows it.
                self.shared.outbox.push_pong(frames::pong_frame(&payload));
            }
            Ok(Frame::Pong(_)) => {}
            Ok(Frame::Close(reason)) => self.on_close_frame(reason, ctx),
            Ok(Frame::TooLarge { size, limit }) => {
                log::warn!("closing: the server sent a message of {size} bytes (limit {limit})");
                let error = Error::MessageTooLarge {
                    size,
                    limit,
                    inbound: true,
                    call: None,
                };
                let reason = format!("message exceeds {limit} bytes");
                let ending = Disconnect {
                    initiator: Initiator::Client,
                    code: Some(1009),
                    reason: reason.clone(),
                    clean: false,
                };
                let loss = lifecycle::Loss {
                    ended: reconnect::Ended::Lost,
                    record: ending,
                    close: Some((1009, reason)),
                    cause: None,
                };
                self.socket_lost(loss, error, ctx);
            }
            Err(FrameError::Protocol(reason)) => {
                log::warn!("closing: {reason}");
                let ending = Disconnect {
                    initiator: Initiator::Client,
                    code: Some(1002),
                    reason: reason.clone(),
                    clean: false,
                };
                let close = (1002, fit_close_reason(&reason));
                let error = Error::Disconnected {
                    call: None,
                    source: Some(reason.clone().into()),
                };
                let loss = lifecycle::Loss {
                    ended: reconnect::Ended::Lost,
                    record: ending,
                    close: Some(close),
                    cause: Some(crate::events::shared_cause(reason.into())),
                };
                // The stream ends after an error: `finished` follows.
                self.socket_lost(loss, error, ctx);
            }
            Err(FrameError::Io(err)) => self.lost(Some(Box::new(err)), ctx),
        }
    }

    /// The socket reached EOF (or the stream ended after an error).
    fn finished(&mut self, ctx: &mut Self::Context) {
        if self.state == State::Open {
            // The peer vanished without a close frame: nothing left to say.
            self.lost(None, ctx);
        } else {
            self.drained(false, true, ctx);
        }
    }
}

impl Handler<WriterEnded> for RpcConnection {
    type Result = ();

    fn handle(&mut self, msg: WriterEnded, ctx: &mut Self::Context) {
        if self.session.as_ref().map(Session::generation) != Some(msg.generation) {
            // A socket given up on, finishing its farewell.
            return;
        }
        match msg.end {
            WriterEnd::CloseSent => self.drained(true, false, ctx),
            WriterEnd::Stopped => {}
            WriterEnd::Failed(err) => {
                if self.state == State::Open {
                    self.lost(Some(Box::new(err)), ctx);
                } else {
                    // Our close frame cannot go out: nothing left to wait for.
                    ctx.stop();
                }
            }
        }
    }
}

/// Tells an actix reply channel the decoded outcome of a [`Call`].
struct Decoding<T>(OneshotSender<Result<T, Error>>);

impl<T: DeserializeOwned> Responder for Decoding<T> {
    fn respond(self: Box<Self>, outcome: Result<Reply, Error>) {
        // NOTE: the caller may have stopped waiting; the channel then drops
        // the outcome, which is normal.
        let _ = self.0.send(outcome.and_then(Reply::decode::<T>));
    }
    fn poll_gone(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        self.0.poll_closed(cx)
    }
}

/// Tells an actix reply channel the raw outcome of a [`RawCall`]; the
/// caller decodes it in its own task.
struct Raw(OneshotSender<Result<Reply, Error>>);

impl Responder for Raw {
    fn respond(self: Box<Self>, outcome: Result<Reply, Error>) {
        let _ = self.0.send(outcome);
    }
    fn poll_gone(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        self.0.poll_closed(cx)
    }
}

/// The connection's answer to a [`Call`]: actix passes it the sender's reply
/// channel, which goes straight into the pending-call table, so the result
/// travels from the socket to the caller with no task or channel between.
#[doc(hidden)]
pub struct CallReply<M> {
    started: Result<(PendingCalls, u64), Error>,
    message: PhantomData<fn() -> M>,
}

impl<M> CallReply<M> {
    fn deliver<R>(
        self,
        tx: Option<OneshotSender<Result<R, Error>>>,
        responder: impl FnOnce(OneshotSender<Result<R, Error>>) -> Box<dyn Responder>,
    ) {
        // `None`: sent with `do_send`; nobody waits for the outcome.
        let Some(tx) = tx else { return };
        match self.started {
            Ok((pending, id)) => pending.attach(id, responder(tx)),
            Err(error) => {
                let _ = tx.send(Err(error));
            }
        }
    }
}

impl<T> Handler<Call<T>> for RpcConnection
where
    T: DeserializeOwned + 'static,
{
    type Result = CallReply<Call<T>>;

    fn handle(&mut self, msg: Call<T>, ctx: &mut Self::Context) -> Self::Result {
        CallReply {
            started: self
                .start_call(
                    msg.method,
                    &msg.params,
                    CallOptions {
                        timeout: msg.timeout,
                        retry: msg.retry,
                        ahead: false,
                    },
                    ctx,
                )
                .map(|id| (self.pending.clone(), id)),
            message: PhantomData,
        }
    }
}

impl<T> MessageResponse<RpcConnection, Call<T>> for CallReply<Call<T>>
where
    T: DeserializeOwned + 'static,
{
    fn handle(self, _: &mut Context<RpcConnection>, tx: Option<OneshotSender<Result<T, Error>>>) {
        self.deliver(tx, |tx| Box::new(Decoding(tx)));
    }
}

impl Handler<RawCall> for RpcConnection {
    type Result = CallReply<RawCall>;

    fn handle(&mut self, msg: RawCall, ctx: &mut Self::Context) -> Self::Result {
        CallReply {
            started: self
                .start_call(
                    msg.method,
                    &msg.params,
                    CallOptions {
                        timeout: msg.timeout,
                        retry: msg.retry,
                        ahead: false,
                    },
                    ctx,
                )
                .map(|id| (self.pending.clone(), id)),
            message: PhantomData,
        }
    }
}

impl MessageResponse<RpcConnection, RawCall> for CallReply<RawCall> {
    fn handle(
        self,
        _: &mut Context<RpcConnection>,
        tx: Option<OneshotSender<Result<Reply, Error>>>,
    ) {
        self.deliver(tx, |tx| Box::new(Raw(tx)));
    }
}

impl RpcConnection {
    /// Registers a batch's calls and queues its one frame; returns their ids
    /// in submission order.
    fn start_batch(&mut self, batch: Batch, ctx: &mut Context<Self>) -> Result<BatchStart, Error> {
        let method = || Cow::Borrowed("batch");
        // While reconnecting (and told to wait), the batch's frame waits in
        // the outbound queue for the new socket.
        let waits = self.state == State::Reconnecting
            && self.config.while_reconnecting == WhileReconnecting::Wait;
        if self.state != State::Open && !waits {
            return Err(Error::NotConnected { method: method() });
        }
        if batch.is_empty() {
            return Ok(BatchStart::default());
        }
        let notifications = batch.entries.len() - batch.calls;
        let max_in_flight = self.config.max_in_flight;
        if self.pending.sent() + batch.calls > max_in_flight {
            for id in self.cancellations.take() {
                self.pending.cancel(id);
            }
            if self.pending.sent() + batch.calls > max_in_flight {
                stats::add(&self.metrics().overloaded, 1);
                return Err(Error::Overloaded {
                    bound: Bound::InFlight(max_in_flight),
                    method: method(),
                });
            }
        }
        // Room enough that the frame is never regrown (a copy of all
        // written so far).
        let size: usize = batch
            .entries
            .iter()
            .map(|e| protocol::REQUEST_ROOM + e.method.len() + e.params.wire_len())
            .sum();
        let mut buf = frames::frame_buffer(size + 2);
        let mut calls = Vec::with_capacity(batch.calls);
        let mut id = self.next_id;
        buf.push(b'[');
        for (i, entry) in batch.entries.into_iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            let params = entry.params.wire().map_err(|reason| Error::InvalidParams {
                method: entry.method.clone(),
                reason: reason.to_owned(),
            })?;
            if entry.call {
                protocol::write_request(&mut buf, Some(id), &entry.method, params);
                calls.push(CallInfo {
                    method: entry.method,
                    id,
                });
                id += 1;
            } else {
                protocol::write_request(&mut buf, None, &entry.method, params);
            }
        }
        buf.push(b']');
        let size = buf.len() - frames::HEADER_ROOM;
        let limit = self.config.max_message_size;
        if size > limit {
            return Err(Error::MessageTooLarge {
                size: size as u64,
                limit,
                inbound: false,
                call: None,
            });
        }
        let frame = frames::seal(buf, actix_http::ws::OpCode::Text);
        let timeout = batch.timeout.unwrap_or(self.config.request_timeout);
        let mut waiting = None;
        match self.shared.outbox.try_push(&frame) {
            Ok(()) => {}
            Err(Refused::Full) if self.config.backpressure == Backpressure::Wait => {
                // The calls are registered now, so no answer can overtake
                // them; the frame waits for room in the caller's stead, up
                // to the timeout (see `BatchReply`).
                stats::add(&self.metrics().backpressure_waits, 1);
                waiting = Some(frame);
            }
            Err(Refused::Full) => {
                stats::add(&self.metrics().overloaded, 1);
                return Err(Error::Overloaded {
                    bound: Bound::QueuedBytes(self.shared.outbox.limit()),
                    method: method(),
                });
            }
            Err(Refused::Closed) => return Err(Error::NotConnected { method: method() }),
        }
        // A batch's calls take consecutive ids.
        let ids = self.next_id..id;
        stats::add(&self.metrics().calls_sent, calls.len() as u64);
        stats::add(&self.metrics().notifications_sent, notifications as u64);
        self.next_id = id;
        if !calls.is_empty() {
            let deadline = self.pending.insert_batch(calls, Instant::now(), timeout);
            self.arm_timer(deadline, ctx);
        }
        Ok(BatchStart {
            ids,
            waiting: waiting.map(|frame| Waiting {
                frame,
                timeout,
                outbox: Arc::clone(&self.shared.outbox),
                metrics: Arc::clone(&self.shared.metrics),
            }),
        })
    }
}

/// What starting a batch gave: its calls' ids (consecutive), and its frame
/// if it must wait for room in the outbound queue.
#[derive(Default)]
struct BatchStart {
    ids: std::ops::Range<u64>,
    waiting: Option<Waiting>,
}

/// A batch frame waiting for room.
struct Waiting {
    frame: Bytes,
    timeout: Duration,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
}

impl Handler<Batch> for RpcConnection {
    type Result = BatchReply;

    fn handle(&mut self, batch: Batch, ctx: &mut Self::Context) -> Self::Result {
        BatchReply {
            started: self
                .start_batch(batch, ctx)
                .map(|start| (self.pending.clone(), start)),
        }
    }
}

/// The connection's answer to a [`Batch`]: one responder per call, all
/// filling one [`BatchResults`] sent when the last is in.
#[doc(hidden)]
pub struct BatchReply {
    started: Result<(PendingCalls, BatchStart), Error>,
}

/// Collects the outcomes of one batch's calls.
struct Collector {
    tx: Option<OneshotSender<Result<BatchResults, Error>>>,
    outcomes: Vec<Option<Result<Reply, Error>>>,
    left: usize,
    /// Whether the caller went and the calls were freed (see
    /// [`wait_for_room`], which must not send the batch then).
    abandoned: bool,
    /// Woken when `abandoned` becomes true.
    waiting: Option<std::task::Waker>,
}

/// One collector answers for all of its batch's calls (no allocation per
/// call).
impl BatchResponder for RefCell<Collector> {
    fn respond(&self, index: usize, outcome: Result<Reply, Error>) {
        let mut collector = self.borrow_mut();
        if let Some(slot) = collector.outcomes.get_mut(index) {
            *slot = Some(outcome);
        }
        collector.left -= 1;
        if collector.left == 0 {
            let outcomes = std::mem::take(&mut collector.outcomes);
            if let Some(tx) = collector.tx.take() {
                // NOTE: the caller may have stopped waiting; that is normal.
                let _ = tx.send(Ok(BatchResults::new(outcomes)));
            }
        }
    }
    fn poll_gone(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        match self.borrow_mut().tx.as_mut() {
            Some(tx) => tx.poll_closed(cx),
            None => Poll::Ready(()),
        }
    }
    fn abandoned(&self) {
        let mut collector = self.borrow_mut();
        collector.abandoned = true;
        if let Some(waker) = collector.waiting.take() {
            waker.wake();
        }
    }
}

impl MessageResponse<RpcConnection, Batch> for BatchReply {
    fn handle(
        self,
        _: &mut Context<RpcConnection>,
        tx: Option<OneshotSender<Result<BatchResults, Error>>>,
    ) {
        let (pending, BatchStart { ids, waiting }) = match self.started {
            Ok(started) => started,
            Err(error) => {
                if let Some(tx) = tx {
                    let _ = tx.send(Err(error));
                }
                return;
            }
        };
        let collector = Rc::new(RefCell::new(Collector {
            tx,
            outcomes: ids.clone().map(|_| None).collect(),
            left: ids.clone().count(),
            abandoned: false,
            waiting: None,
        }));
        let attached =
            pending.attach_batch(ids.clone(), Rc::clone(&collector) as Rc<dyn BatchResponder>);
        match waiting {
            // The caller went before the batch was queued: its calls are
            // freed, and its frame goes with them.
            Some(_) if !attached => {}
            Some(waiting) => wait_for_room(waiting, pending, ids, collector),
            None if ids.is_empty() => {
                // Notifications only: done once queued.
                if let Some(tx) = collector.borrow_mut().tx.take() {
                    let _ = tx.send(Ok(BatchResults::new(Vec::new())));
                }
            }
            None => {}
        }
    }
}

/// Queues a batch frame once there is room, for at most its timeout and
/// only while its caller waits; then tells a notification-only batch's
/// caller it is done. When there is no room in time, the batch is refused
/// as a whole (`Overloaded`) and its calls withdrawn: nothing of it waits
/// beyond its timeout, and nothing waits for a caller that has gone.
fn wait_for_room(
    waiting: Waiting,
    pending: PendingCalls,
    ids: std::ops::Range<u64>,
    collector: Rc<RefCell<Collector>>,
) {
    let Waiting {
        frame,
        timeout,
        outbox,
        metrics,
    } = waiting;
    actix::spawn(async move {
        let gone = std::future::poll_fn(|cx| {
            let mut collector = collector.borrow_mut();
            if ids.is_empty() {
                // Notifications only: no calls, so nobody else watches the
                // caller.
                return match collector.tx.as_mut() {
                    Some(tx) => tx.poll_closed(cx),
                    None => Poll::Ready(()),
                };
            }
            // The pending table's watcher holds the caller's only waker slot
            // and tells the collector when the caller has gone.
            if collector.abandoned {
                return Poll::Ready(());
            }
            collector.waiting = Some(cx.waker().clone());
            Poll::Pending
        });
        let queued = tokio::select! {
            queued = tokio::time::timeout(timeout, outbox.push(frame)) => {
                matches!(queued, Ok(Ok(())))
            }
            // The calls are freed (and counted as cancelled) already; the
            // frame is dropped unsent.
            () = gone => return,
        };
        if queued {
            if ids.is_empty() {
                if let Some(tx) = collector.borrow_mut().tx.take() {
                    let _ = tx.send(Ok(BatchResults::new(Vec::new())));
                }
            }
            return;
        }
        pending.withdraw(ids);
        stats::add(&metrics.overloaded, 1);
        let tx = collector.borrow_mut().tx.take();
        if let Some(tx) = tx {
            let _ = tx.send(Err(Error::Overloaded {
                bound: Bound::QueuedBytes(outbox.limit()),
                method: Cow::Borrowed("batch"),
            }));
        }
    });
}

impl Handler<Subscribe> for RpcConnection {
    type Result = SubscribeReply;

    fn handle(&mut self, msg: Subscribe, ctx: &mut Self::Context) -> Self::Result {
        let pending = self.subscriptions.begin();
        let started = self
            .start_call(
                msg.method.clone(),
                &msg.params,
                CallOptions {
                    timeout: msg.timeout,
                    ..CallOptions::default()
                },
                ctx,
            )
            .map(|id| (self.pending.clone(), id));
        SubscribeReply {
            started,
            request: Some(SubscribeRequest {
                method: msg.method,
                params: msg.params,
                timeout: msg.timeout,
                unsubscribe: msg.unsubscribe,
                capacity: msg.capacity.unwrap_or(self.config.subscription_capacity),
                overflow: msg.overflow.unwrap_or(self.config.subscription_overflow),
                deliver_to: msg.deliver_to,
                subscriptions: self.subscriptions.clone(),
                control: ctx.address().recipient(),
                dropped: Arc::clone(&self.shared.dropped_subscriptions),
                grace: msg.timeout.map_or(self.config.request_timeout, |t| {
                    t.max(self.config.request_timeout)
                }),
                _pending: pending,
            }),
        }
    }
}

/// What a subscribe call needs once its answer is read.
struct SubscribeRequest {
    method: Cow<'static, str>,
    /// Kept to subscribe again after a reconnect.
    params: protocol::Params,
    timeout: Option<Duration>,
    unsubscribe: Cow<'static, str>,
    capacity: usize,
    overflow: Overflow,
    deliver_to: Option<Recipient<SubscriptionItem>>,
    subscriptions: Subscriptions,
    control: Recipient<Unsubscribe>,
    dropped: Arc<subscription::Dropped>,
    /// How long an answer is worth waiting for once the caller has given
    /// up or timed out: the call's timeout, and at least the connection's.
    grace: Duration,
    /// Holds notifications for unknown subscriptions back while it lives.
    _pending: subscriptions::PendingSubscribe,
}

impl SubscribeRequest {
    /// Its call `id` was given up on: the answer, if it comes, is
    /// unsubscribed at once.
    fn orphaned(&self, id: u64) {
        let until = pending::deadline(Instant::now(), self.grace);
        self.subscriptions
            .orphan(id, self.unsubscribe.clone(), until);
    }

    /// Registers the subscription the server answered with, in the turn
    /// that read the answer (so no later notification misses its route).
    fn subscribed(self, reply: Reply) -> Result<Subscription, Error> {
        let Some(id) = Id::from_json(&reply.result.text).filter(|id| !id.is_null()) else {
            return Err(Error::InvalidResponse {
                call: reply.call,
                reason: format!(
                    "a subscription id must be a number or a string, not {}",
                    reply.result.text
                ),
            });
        };
        let (queue, items) = delivery::channel(self.capacity, self.overflow);
        let shared = Arc::new(subscription::Shared::default());
        let registered = self.subscriptions.register(
            id.clone(),
            subscriptions::Route {
                queue,
                shared: Arc::clone(&shared),
                unsubscribe: self.unsubscribe,
                method: self.method.clone(),
                params: self.params,
                timeout: self.timeout,
                link: Link::Live(id.clone()),
                notification_method: None,
            },
        );
        let Some(key) = registered else {
            return Err(Error::InvalidResponse {
                call: reply.call,
                reason: format!(
                    "the server answered with subscription id {id}, which another subscription has"
                ),
            });
        };
        let items = match self.deliver_to {
            Some(recipient) => {
                deliver_to_actor(items, Arc::clone(&shared), recipient);
                None
            }
            None => Some(items),
        };
        let info = SubscriptionInfo {
            method: self.method,
            id,
        };
        Ok(Subscription::new(
            info,
            key,
            shared,
            items,
            self.control,
            self.dropped,
        ))
    }
}

/// Sends a subscription's items to an actor, one at a time, then its end.
fn deliver_to_actor(
    mut items: delivery::Receiver<subscription::Notice>,
    shared: Arc<subscription::Shared>,
    recipient: Recipient<SubscriptionItem>,
) {
    actix::spawn(async move {
        use futures_util::StreamExt as _;
        while let Some(delivered) = items.next().await {
            if delivered.missed > 0 {
                let lagged = SubscriptionItem::Lagged {
                    missed: delivered.missed,
                };
                if recipient.send(lagged).await.is_err() {
                    return;
                }
            }
            let item = match delivered.item {
                subscription::Notice::Item { result, .. } => {
                    match result.decode::<serde_json::Value>() {
                        Ok(value) => SubscriptionItem::Item(value),
                        Err(err) => {
                            log::warn!("a subscription item is not JSON a Value can hold: {err}");
                            continue;
                        }
                    }
                }
                subscription::Notice::Resubscribed { down_for } => {
                    SubscriptionItem::Resubscribed { down_for }
                }
            };
            if recipient.send(item).await.is_err() {
                return;
            }
        }
        let missed = items.missed_at_end();
        if missed > 0
            && recipient
                .send(SubscriptionItem::Lagged { missed })
                .await
                .is_err()
        {
            return;
        }
        let end = shared
            .end
            .get()
            .cloned()
            .unwrap_or(SubscriptionEnd::Unsubscribed);
        let _ = recipient.send(SubscriptionItem::Closed(end)).await;
    });
}

/// Tells a subscribe call's caller its [`Subscription`].
struct Subscribing {
    tx: OneshotSender<Result<Subscription, Error>>,
    request: SubscribeRequest,
}

impl Responder for Subscribing {
    fn respond(self: Box<Self>, outcome: Result<Reply, Error>) {
        let Subscribing { tx, request } = *self;
        if let Err(Error::Timeout { call, .. }) = &outcome {
            // The server may still answer, and create the subscription.
            request.orphaned(call.id);
        }
        let outcome = outcome.and_then(|reply| request.subscribed(reply));
        // NOTE: a caller that has gone drops the handle with the error
        // value, which unsubscribes.
        let _ = tx.send(outcome);
    }
    fn poll_gone(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        self.tx.poll_closed(cx)
    }
    fn abandoned(self: Box<Self>, id: u64) {
        self.request.orphaned(id);
    }
}

/// The connection's answer to a [`Subscribe`]; see [`CallReply`].
#[doc(hidden)]
pub struct SubscribeReply {
    started: Result<(PendingCalls, u64), Error>,
    request: Option<SubscribeRequest>,
}

impl MessageResponse<RpcConnection, Subscribe> for SubscribeReply {
    fn handle(
        self,
        _: &mut Context<RpcConnection>,
        tx: Option<OneshotSender<Result<Subscription, Error>>>,
    ) {
        let Some(tx) = tx else { return };
        match (self.started, self.request) {
            (Ok((pending, id)), Some(request)) => {
                pending.attach(id, Box::new(Subscribing { tx, request }));
            }
            (Err(error), _) => {
                let _ = tx.send(Err(error));
            }
            (Ok(_), None) => {}
        }
    }
}

impl Handler<Unsubscribe> for RpcConnection {
    type Result = UnsubscribeReply;

    fn handle(&mut self, msg: Unsubscribe, ctx: &mut Self::Context) -> Self::Result {
        let route = self
            .subscriptions
            .remove(msg.key, SubscriptionEnd::Unsubscribed);
        let Some(subscriptions::Route {
            link: Link::Live(id),
            unsubscribe,
            ..
        }) = route
        else {
            // Ended already, or down with the connection: the server holds
            // nothing to unsubscribe from.
            return UnsubscribeReply { started: Ok(None) };
        };
        let params = protocol::Params::from_json(format!("[{id}]"));
        UnsubscribeReply {
            started: self
                .start_call(unsubscribe, &params, CallOptions::default(), ctx)
                .map(|id| Some((self.pending.clone(), id))),
        }
    }
}

/// The connection's answer to an [`Unsubscribe`]: the server's answer to
/// the unsubscribe call, or `null` at once when there is nothing to call.
#[doc(hidden)]
pub struct UnsubscribeReply {
    started: Result<Option<(PendingCalls, u64)>, Error>,
}

impl MessageResponse<RpcConnection, Unsubscribe> for UnsubscribeReply {
    fn handle(
        self,
        _: &mut Context<RpcConnection>,
        tx: Option<OneshotSender<Result<serde_json::Value, Error>>>,
    ) {
        let Some(tx) = tx else { return };
        match self.started {
            Ok(Some((pending, id))) => pending.attach(id, Box::new(Decoding(tx))),
            Ok(None) => {
                let _ = tx.send(Ok(serde_json::Value::Null));
            }
            Err(error) => {
                let _ = tx.send(Err(error));
            }
        }
    }
}

impl Handler<Notify> for RpcConnection {
    type Result = NotifyReply;

    fn handle(&mut self, msg: Notify, _: &mut Self::Context) -> Self::Result {
        NotifyReply {
            shared: Arc::clone(&self.shared),
            queued: self.shared.notify_now(msg.method, &msg.params),
        }
    }
}

/// The connection's answer to a [`Notify`]: told at once when the frame was
/// queued (or refused) at once; only a notification that waits for room
/// gets a task of its own.
#[doc(hidden)]
pub struct NotifyReply {
    shared: Arc<Shared>,
    queued: Queued,
}

impl MessageResponse<RpcConnection, Notify> for NotifyReply {
    fn handle(self, _: &mut Context<RpcConnection>, tx: Option<OneshotSender<Result<(), Error>>>) {
        match self.queued {
            Queued::Done(outcome) => {
                if let Some(tx) = tx {
                    let _ = tx.send(outcome);
                }
            }
            Queued::Wait(method, frame) => {
                let shared = self.shared;
                actix::spawn(async move {
                    let outcome = shared.notify_later(method, frame).await;
                    if let Some(tx) = tx {
                        let _ = tx.send(outcome);
                    }
                });
            }
        }
    }
}

impl Handler<Close> for RpcConnection {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: Close, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.close_waiters.push(tx);
        // A zero timeout: do not wait for the server, but still give our
        // close frame the usual time to be written.
        let await_peer = msg.timeout != Some(Duration::ZERO);
        let drain = msg
            .timeout
            .filter(|t| !t.is_zero())
            .unwrap_or(self.config.close_timeout);
        self.close(msg.code, msg.reason, await_peer, drain, ctx);
        // Resolves when the actor stops (see `stopped`).
        Box::pin(async move { rx.await.unwrap_or(Ok(())) })
    }
}

impl Handler<WatchEvents> for RpcConnection {
    type Result = ();

    fn handle(&mut self, msg: WatchEvents, _: &mut Self::Context) {
        self.shared.watchers().actor(msg.0);
    }
}

impl Handler<GetStats> for RpcConnection {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.metrics().snapshot())
    }
}

impl Handler<RegisterHandler> for RpcConnection {
    type Result = ();

    fn handle(&mut self, msg: RegisterHandler, _: &mut Self::Context) {
        self.requests.register(msg.route, msg.handler);
    }
}

impl Handler<UnregisterHandler> for RpcConnection {
    type Result = ();

    fn handle(&mut self, msg: UnregisterHandler, _: &mut Self::Context) {
        self.requests.unregister(&msg.0);
    }
}

impl Handler<RegisterListener> for RpcConnection {
    type Result = ();

    fn handle(&mut self, msg: RegisterListener, _: &mut Self::Context) {
        self.listeners.add(msg);
    }
}

impl Handler<UnregisterListeners> for RpcConnection {
    type Result = ();

    fn handle(&mut self, msg: UnregisterListeners, _: &mut Self::Context) {
        self.listeners.remove(&msg.0);
    }
}
