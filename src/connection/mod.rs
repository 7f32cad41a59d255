//! The [`RpcConnection`] actor: one websocket, its pending calls and its
//! lifecycle.

mod builder;
mod dispatch;
mod frames;
mod metrics;
mod pending;
mod transport;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::dev::{MessageResponse, OneshotSender};
use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use actix_codec::Framed;
use actix_http::ws::{CloseCode, CloseReason, Codec};
use awc::BoxedSocket;
use bytes::Bytes;
use futures_channel::oneshot;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, WriteHalf};
use tokio_util::codec::FramedRead;

pub use builder::ConnectionBuilder;
pub use metrics::Stats;

pub(crate) use builder::Config;
use dispatch::Answer;
pub(crate) use dispatch::{Listener, RequestHandler, Routes};
use frames::{Frame, FrameAssembler, FrameError, Outbound, OutboundCodec};
use metrics::Metrics;
use pending::{PendingCalls, Reply};

use crate::client::Client;
use crate::error::{CallInfo, Error};
use crate::message::{Call, Close, GetStats, Notify};
use crate::protocol::{self, ErrorObject, Id, Inbound, Message as RpcMessage};

/// Write buffer bounds: beyond `HIGH` bytes queued the actor stops taking
/// new messages until the socket drains below `LOW`. Both leave room for a
/// full-size message so one large call never stalls the reading side.
const WRITE_BUFFER_LOW: usize = 256 * 1024;

/// The actor that owns one websocket connection to a JSON-RPC server.
///
/// Create it with [`RpcConnection::builder`]; talk to it with
/// [`Call`], [`Notify`], [`Close`] and [`GetStats`] messages, or through the
/// [`Client`] handle returned by [`connect`](ConnectionBuilder::connect).
///
/// # Actor lifecycle
///
/// ## Open
/// Starts once the handshake has succeeded (there is no "connecting" actor:
/// `connect()` fails instead). Calls are written as they arrive and wait in
/// the pending table for their response or their deadline. Responses
/// complete their call; unknown ids and invalid messages are logged, counted
/// and skipped; pings are answered; the server's requests go to their
/// handlers and its notifications to their listeners.
///
/// ## Draining
/// Entered on the first of these, each failing every pending call at once
/// (and every later call with [`Error::NotConnected`]):
/// - [`Close`]: our close frame is sent; calls fail with [`Error::Closed`].
/// - The server's close frame: it is echoed; calls fail with
///   [`Error::Closed`] carrying its code and reason.
/// - A message over the size limit: close code 1009; calls fail with
///   [`Error::MessageTooLarge`]. The message is discarded as it arrives.
/// - A websocket protocol violation: close code 1002; calls fail with
///   [`Error::Disconnected`] naming the violation.
///
/// Reading goes on, so the server's close frame is heard and its unread data
/// does not turn our close into a reset.
///
/// ## Stopped
/// Once our close frame is flushed and the server has closed its side, or
/// after the close timeout (default 1 s), or at once when the socket drops
/// or fails ([`Error::Disconnected`]). The pending table is empty: every
/// call has ended with its result or an error. Calls are never re-sent.
pub struct RpcConnection {
    config: Config,
    writer: FramedWrite<Outbound, WriteHalf<BoxedSocket>, OutboundCodec>,
    pending: PendingCalls,
    metrics: Arc<Metrics>,
    next_id: u64,
    state: State,
    /// The deadline the expiry timer is armed for, and its handle.
    timer: Option<(Instant, SpawnHandle)>,
    /// Handlers and listeners for what the server sends us.
    routes: Routes,
    /// Server requests whose handlers have not answered yet.
    handlers_running: usize,
    /// Where handler tasks send their answers (read as a stream by the actor).
    answers: futures_channel::mpsc::UnboundedSender<dispatch::Delivery>,
    /// Cancelled when the actor stops, ending handler tasks still running.
    stopped: tokio_util::sync::CancellationToken,
    /// Held by [`Close`] callers; told the outcome when the actor stops.
    close_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Closing or closed: every call has failed, our close frame (if any) is
    /// being flushed and the server's end of the conversation awaited. The
    /// actor stops when both are done, or after the close timeout.
    Draining {
        flushed: bool,
        peer_done: bool,
    },
}

impl RpcConnection {
    /// Starts configuring a connection to `url` (`ws://` or `wss://`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use jsonrpc_websocket::{Error, RpcConnection};
    /// # async fn demo() -> Result<(), Error> {
    /// let client = RpcConnection::builder("ws://127.0.0.1:9090").connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(url: impl Into<String>) -> ConnectionBuilder {
        ConnectionBuilder::new(url.into())
    }

    fn start(framed: Framed<BoxedSocket, Codec>, config: Config, routes: Routes) -> Client {
        let parts = framed.into_parts();
        let (read, write) = tokio::io::split(parts.io);
        // Bytes that arrived with the handshake response are the first frames.
        // They go in front of the socket (not into the decoder's buffer, which
        // is only decoded after the next read: a server that speaks first and
        // then waits would never be heard).
        let early = std::io::Cursor::new(parts.read_buf.freeze());
        let reader = FramedRead::new(
            early.chain(read),
            FrameAssembler::new(config.max_message_size),
        );
        let metrics = Arc::new(Metrics::default());
        let shared = Arc::clone(&metrics);
        let addr = RpcConnection::create(move |ctx| {
            ctx.set_mailbox_capacity(1024);
            ctx.add_stream(reader);
            let (answers, answered) = futures_channel::mpsc::unbounded();
            ctx.add_stream(answered);
            let mut writer = FramedWrite::new(write, OutboundCodec, ctx);
            let high = config
                .max_message_size
                .saturating_mul(2)
                .max(4 * WRITE_BUFFER_LOW);
            writer.set_buffer_capacity(WRITE_BUFFER_LOW, high);
            RpcConnection {
                config,
                writer,
                pending: PendingCalls::default(),
                metrics: shared,
                next_id: 1,
                state: State::Open,
                timer: None,
                routes,
                handlers_running: 0,
                answers,
                stopped: tokio_util::sync::CancellationToken::new(),
                close_waiters: Vec::new(),
            }
        });
        Client::new(addr, metrics)
    }

    fn write(&mut self, item: Outbound) {
        if let Outbound::Text(text) = &item {
            Metrics::add(&self.metrics.bytes_sent, text.len() as u64);
        }
        self.writer.write(item);
    }

    /// Registers a call and writes its request; returns its id. The pending
    /// entry exists before the frame is written, so no response can
    /// overtake it; the reply's responder is attached right after, in the
    /// same turn of the actor (see [`CallReply`]).
    fn start_call(
        &mut self,
        method: Cow<'static, str>,
        params: &protocol::Params,
        timeout: Option<Duration>,
        ctx: &mut Context<Self>,
    ) -> Result<u64, Error> {
        if self.state != State::Open {
            return Err(Error::NotConnected { method });
        }
        let params = match params.wire() {
            Ok(params) => params,
            Err(reason) => {
                return Err(Error::InvalidParams {
                    method,
                    reason: reason.to_owned(),
                })
            }
        };
        if self.pending.len() >= self.config.max_in_flight {
            return Err(Error::Overloaded {
                limit: self.config.max_in_flight,
                method,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let text = protocol::encode_request(Some(id), &method, params);
        let call = CallInfo { method, id };
        if text.len() > self.config.max_message_size {
            return Err(Error::MessageTooLarge {
                size: text.len() as u64,
                limit: self.config.max_message_size,
                inbound: false,
                call: Some(call),
            });
        }
        let timeout = timeout.unwrap_or(self.config.request_timeout);
        let now = Instant::now();
        let deadline = self.pending.insert(call, now, timeout);
        self.metrics.set_pending(self.pending.len());
        self.arm_timer(deadline, ctx);
        self.write(Outbound::Text(text));
        Metrics::add(&self.metrics.calls_sent, 1);
        Ok(id)
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
            let (expired, next) = act.pending.expire(Instant::now());
            if expired > 0 {
                Metrics::add(&act.metrics.timeouts, expired as u64);
                act.metrics.set_pending(act.pending.len());
            }
            if let Some(next) = next {
                act.arm_timer(next, ctx);
            }
        });
        self.timer = Some((deadline, handle));
    }

    fn on_message_bytes(&mut self, bytes: Bytes) {
        Metrics::add(&self.metrics.bytes_received, bytes.len() as u64);
        let Ok(text) = std::str::from_utf8(&bytes) else {
            self.skip("message is not valid UTF-8");
            return;
        };
        match protocol::parse(text) {
            Inbound::Single(message) => {
                let answers = self.on_rpc_message(message).into_iter().collect();
                self.send_answers(answers, false);
            }
            Inbound::Batch(messages) => {
                let answers = messages
                    .into_iter()
                    .filter_map(|m| self.on_rpc_message(m))
                    .collect();
                self.send_answers(answers, true);
            }
            Inbound::Garbage(reason) => self.skip(&reason),
        }
    }

    /// Handles one JSON-RPC object; returns the answer owed, if any.
    fn on_rpc_message(&mut self, message: RpcMessage) -> Option<Answer> {
        match message {
            RpcMessage::Response(response) => {
                let known = response
                    .id
                    .as_u64()
                    .is_some_and(|id| self.pending.complete(id, response.outcome));
                if known {
                    Metrics::add(&self.metrics.responses, 1);
                    self.metrics.set_pending(self.pending.len());
                } else {
                    Metrics::add(&self.metrics.unknown_ids, 1);
                    log::warn!(
                        "ignored a response with id {} that matches no pending call",
                        response.id
                    );
                }
                None
            }
            RpcMessage::InvalidResponse { id, reason } => {
                let pending_id = id.as_ref().and_then(Id::as_u64);
                let failed = pending_id.is_some_and(|id| {
                    self.pending.fail(id, |call| Error::InvalidResponse {
                        call,
                        reason: reason.clone(),
                    })
                });
                if failed {
                    self.metrics.set_pending(self.pending.len());
                }
                self.skip(&format!("invalid response: {reason}"));
                None
            }
            RpcMessage::Request(request) => Some(self.answer_request(request)),
            RpcMessage::Notification(notification) => {
                self.tell_listeners(notification);
                None
            }
            RpcMessage::InvalidRequest { id, reason } => {
                self.skip(&format!("invalid request: {reason}"));
                id.map(|id| {
                    let error = ErrorObject::invalid_request(reason);
                    Answer::Now(protocol::encode_error_response(&id, &error))
                })
            }
        }
    }

    fn skip(&self, reason: &str) {
        Metrics::add(&self.metrics.invalid_messages, 1);
        log::warn!("skipped an invalid message from the server: {reason}");
    }

    /// Ends the connection: fails every pending call with `error`, writes a
    /// close frame if there is one to write, and lets the actor stop once it
    /// is flushed and the server is done (or after the close timeout).
    /// Reading goes on meanwhile, so the server's close frame is still heard
    /// and our socket is not reset under data the server has yet to read.
    fn shut_down(&mut self, error: Error, close: Option<CloseReason>, ctx: &mut Context<Self>) {
        if self.state != State::Open {
            return;
        }
        let failed = self.pending.fail_all(&error);
        if failed > 0 {
            log::debug!("{failed} pending call(s) failed: {error}");
        }
        self.metrics.set_pending(0);
        let flushed = match close {
            Some(reason) => {
                self.write(Outbound::Close(Some(reason)));
                self.writer.close();
                false
            }
            None => true,
        };
        self.state = State::Draining {
            flushed,
            peer_done: false,
        };
        ctx.run_later(self.config.close_timeout, |_, ctx| ctx.stop());
    }

    /// The server has closed its side (close frame or EOF).
    fn peer_done(&mut self, ctx: &mut Context<Self>) {
        if let State::Draining { flushed, .. } = self.state {
            self.state = State::Draining {
                flushed,
                peer_done: true,
            };
            if flushed {
                ctx.stop();
            }
        }
    }

    fn on_close_frame(&mut self, reason: Option<CloseReason>, ctx: &mut Context<Self>) {
        if self.state == State::Open {
            let code = reason.as_ref().map_or(1005, |r| u16::from(r.code));
            let text = reason
                .as_ref()
                .and_then(|r| r.description.clone())
                .unwrap_or_default();
            log::debug!("server closed the connection (code {code}: {text})");
            let error = Error::Closed {
                code,
                reason: text,
                call: None,
            };
            // RFC 6455 §5.5.1: answer a close frame with a close frame,
            // echoing its code (1005 "no code" itself may not be sent).
            let echo = CloseReason::from(reason.map_or(CloseCode::Normal, |r| r.code));
            self.shut_down(error, Some(echo), ctx);
        }
        self.peer_done(ctx);
    }
}

impl Actor for RpcConnection {
    type Context = Context<Self>;

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        // Whatever path led here, no call may be left waiting.
        let error = Error::Disconnected {
            call: None,
            source: None,
        };
        self.pending.fail_all(&error);
        self.metrics.set_pending(0);
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.stopped.cancel();
        // Tell `Close` callers whether the server finished the handshake.
        let clean = matches!(
            self.state,
            State::Draining {
                peer_done: true,
                ..
            }
        );
        for waiter in self.close_waiters.drain(..) {
            let outcome = if clean {
                Ok(())
            } else {
                Err(Error::CloseTimeout {
                    after: self.config.close_timeout,
                })
            };
            let _ = waiter.send(outcome);
        }
    }
}

impl StreamHandler<Result<Frame, FrameError>> for RpcConnection {
    fn handle(&mut self, item: Result<Frame, FrameError>, ctx: &mut Self::Context) {
        match item {
            Ok(Frame::Message(bytes)) => self.on_message_bytes(bytes),
            Ok(Frame::Ping(payload)) => self.write(Outbound::Pong(payload)),
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
                let close = CloseReason {
                    code: CloseCode::Size,
                    description: Some(format!("message exceeds {limit} bytes")),
                };
                self.shut_down(error, Some(close), ctx);
            }
            Err(FrameError::Protocol(reason)) => {
                log::warn!("closing: {reason}");
                let close = CloseReason {
                    code: CloseCode::Protocol,
                    description: Some(reason.clone()),
                };
                let error = Error::Disconnected {
                    call: None,
                    source: Some(reason.into()),
                };
                // The stream ends after an error: `finished` follows.
                self.shut_down(error, Some(close), ctx);
            }
            Err(FrameError::Io(err)) => {
                let error = Error::Disconnected {
                    call: None,
                    source: Some(Box::new(err)),
                };
                self.shut_down(error, None, ctx);
                ctx.stop();
            }
        }
    }

    /// The socket reached EOF (or the stream ended after an error).
    fn finished(&mut self, ctx: &mut Self::Context) {
        if self.state == State::Open {
            // The peer vanished without a close frame: nothing left to say.
            let error = Error::Disconnected {
                call: None,
                source: None,
            };
            self.shut_down(error, None, ctx);
            ctx.stop();
        } else {
            self.peer_done(ctx);
        }
    }
}

impl WriteHandler<std::io::Error> for RpcConnection {
    fn error(&mut self, err: std::io::Error, ctx: &mut Self::Context) -> Running {
        let error = Error::Disconnected {
            call: None,
            source: Some(Box::new(err)),
        };
        self.shut_down(error, None, ctx);
        ctx.stop();
        Running::Stop
    }

    /// Our close frame has been flushed.
    fn finished(&mut self, ctx: &mut Self::Context) {
        if let State::Draining { peer_done, .. } = self.state {
            self.state = State::Draining {
                flushed: true,
                peer_done,
            };
            if peer_done {
                ctx.stop();
            }
        }
    }
}

impl<T> Handler<Call<T>> for RpcConnection
where
    T: DeserializeOwned + 'static,
{
    type Result = CallReply<T>;

    fn handle(&mut self, msg: Call<T>, ctx: &mut Self::Context) -> Self::Result {
        CallReply {
            started: self
                .start_call(msg.method, &msg.params, msg.timeout, ctx)
                .map(|id| (self.pending.clone(), id)),
            result: PhantomData,
        }
    }
}

/// The connection's answer to a [`Call`]: actix passes it the sender's reply
/// channel, which goes straight into the pending-call table, so the result
/// travels from the socket to the caller with no task or channel between.
pub struct CallReply<T> {
    started: Result<(PendingCalls, u64), Error>,
    result: PhantomData<fn() -> T>,
}

impl<T> MessageResponse<RpcConnection, Call<T>> for CallReply<T>
where
    T: DeserializeOwned + 'static,
{
    fn handle(self, _: &mut Context<RpcConnection>, tx: Option<OneshotSender<Result<T, Error>>>) {
        // `None`: sent with `do_send`; nobody waits for the outcome.
        let Some(tx) = tx else { return };
        match self.started {
            Ok((pending, id)) => pending.attach(
                id,
                Box::new(move |outcome| {
                    let _ = tx.send(outcome.and_then(decode::<T>));
                }),
            ),
            Err(error) => {
                let _ = tx.send(Err(error));
            }
        }
    }
}

/// Decodes a raw result into the caller's type.
fn decode<T: DeserializeOwned>(reply: Reply) -> Result<T, Error> {
    serde_json::from_str(reply.result.get()).map_err(|source| Error::Decode {
        call: reply.call,
        target: std::any::type_name::<T>(),
        source,
    })
}

impl Handler<Notify> for RpcConnection {
    type Result = Result<(), Error>;

    fn handle(&mut self, msg: Notify, _: &mut Self::Context) -> Self::Result {
        let Notify { method, params } = msg;
        if self.state != State::Open {
            return Err(Error::NotConnected { method });
        }
        let params = params.wire().map_err(|reason| Error::InvalidParams {
            method: method.clone(),
            reason: reason.to_owned(),
        })?;
        let text = protocol::encode_request(None, &method, params);
        if text.len() > self.config.max_message_size {
            return Err(Error::MessageTooLarge {
                size: text.len() as u64,
                limit: self.config.max_message_size,
                inbound: false,
                call: None,
            });
        }
        self.write(Outbound::Text(text));
        Metrics::add(&self.metrics.notifications_sent, 1);
        Ok(())
    }
}

impl Handler<Close> for RpcConnection {
    type Result = ResponseFuture<Result<(), Error>>;

    fn handle(&mut self, msg: Close, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.close_waiters.push(tx);
        let error = Error::Closed {
            code: msg.code,
            reason: if msg.reason.is_empty() {
                "closed by the client".to_owned()
            } else {
                msg.reason.clone()
            },
            call: None,
        };
        let reason = CloseReason {
            code: CloseCode::from(msg.code),
            description: (!msg.reason.is_empty()).then_some(msg.reason),
        };
        self.shut_down(error, Some(reason), ctx);
        // Resolves when the actor stops (see `stopped`).
        Box::pin(async move { rx.await.unwrap_or(Ok(())) })
    }
}

impl Handler<GetStats> for RpcConnection {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.metrics.snapshot())
    }
}

pub(crate) use metrics::Metrics as SharedMetrics;
