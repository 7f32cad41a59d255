//! What happens to the connection itself — connected, lost, reconnecting,
//! back, closed for good — as [`ConnectionEvent`]s: a `Stream` from
//! [`Client::events`](crate::Client::events), or messages to actors
//! registered with [`WatchEvents`] or
//! [`ConnectionBuilder::watch_events`](crate::ConnectionBuilder::watch_events).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix::{Message, Recipient};
use futures_util::{Stream, StreamExt as _};

use crate::delivery::{self, Delivered, Overflow, Pushed};
use crate::error::BoxError;

/// Something that happened to the connection, in the order it happened.
///
/// A reconnecting connection goes through `Disconnected`, then one
/// `Reconnecting` per attempt, then `Connected` and `Reconnected` (or
/// `Closed` when it gives up). A watcher that starts late first gets the
/// state the connection is in: `Connected` when it is up, the pending
/// `Reconnecting` when it is down, `Closed` when it has ended.
///
/// # Examples
///
/// ```
/// use futures_util::StreamExt;
/// use jsonrpc_websocket::{Client, ConnectionEvent};
///
/// # async fn demo(client: Client) {
/// let mut events = client.events();
/// while let Some(event) = events.next().await {
///     match event {
///         ConnectionEvent::Disconnected { reason, .. } => eprintln!("lost: {reason}"),
///         ConnectionEvent::Reconnecting { attempt, delay } => {
///             eprintln!("attempt {attempt} in {delay:?}")
///         }
///         ConnectionEvent::Closed { reason } => {
///             eprintln!("gave up: {reason}");
///             break;
///         }
///         other => eprintln!("{other}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The websocket is open (the first time, and after each reconnect).
    Connected {
        /// The endpoint it is open to.
        url: String,
    },
    /// The websocket closed or was lost. Calls sent on it have failed.
    Disconnected {
        /// The close code sent or received; `None` when the socket was lost
        /// without a closing handshake (dropped, failed, heartbeat timeout).
        code: Option<u16>,
        /// The close reason, or what went wrong.
        reason: String,
        /// The error that ended it, when there was one (an I/O error, the
        /// heartbeat timeout, a protocol violation).
        cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// The connection will be dialled again after `delay`.
    Reconnecting {
        /// Which attempt in a row this is, from 1.
        attempt: u32,
        /// How long it waits first.
        delay: Duration,
    },
    /// A reconnect succeeded (it follows `Connected`): waiting calls are
    /// being sent and subscriptions made again.
    Reconnected,
    /// The connection has ended for good; nothing follows.
    Closed {
        /// Why: closed by us, refused with a code or status that forbids
        /// reconnecting, attempts used up, or no reconnect policy.
        reason: String,
    },
    /// This watcher fell behind and missed this many events (its queue
    /// keeps the newest).
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

impl Message for ConnectionEvent {
    type Result = ();
}

impl fmt::Display for ConnectionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionEvent::Connected { url } => write!(f, "connected to {url}"),
            ConnectionEvent::Disconnected { code, reason, .. } => match code {
                Some(code) => write!(f, "disconnected (code {code}): {reason}"),
                None => write!(f, "disconnected: {reason}"),
            },
            ConnectionEvent::Reconnecting { attempt, delay } => {
                write!(f, "reconnecting in {delay:?} (attempt {attempt})")
            }
            ConnectionEvent::Reconnected => f.write_str("reconnected"),
            ConnectionEvent::Closed { reason } => write!(f, "closed: {reason}"),
            ConnectionEvent::Lagged { missed } => write!(f, "missed {missed} events"),
        }
    }
}

/// Sends the connection's events to an actor, starting with the state the
/// connection is in; send it to the connection's address.
///
/// ```
/// use actix::prelude::*;
/// use jsonrpc_websocket::{ConnectionEvent, RpcConnection, WatchEvents};
///
/// struct Monitor;
/// impl Actor for Monitor {
///     type Context = Context<Self>;
/// }
/// impl Handler<ConnectionEvent> for Monitor {
///     type Result = ();
///     fn handle(&mut self, event: ConnectionEvent, _: &mut Context<Self>) {
///         println!("{event}");
///     }
/// }
///
/// # fn demo(conn: Addr<RpcConnection>) {
/// let monitor = Monitor.start();
/// conn.do_send(WatchEvents(monitor.recipient()));
/// # }
/// ```
#[derive(Debug)]
pub struct WatchEvents(pub Recipient<ConnectionEvent>);

impl Message for WatchEvents {
    type Result = ();
}

/// The connection's events as a `Stream`; from
/// [`Client::events`](crate::Client::events). It ends after
/// [`ConnectionEvent::Closed`]. Its queue is bounded (64 events); a reader
/// that falls behind gets [`ConnectionEvent::Lagged`] before the next.
pub struct EventStream {
    rx: delivery::Receiver<ConnectionEvent>,
    /// An event held back while the `Lagged` before it is yielded.
    held: Option<ConnectionEvent>,
}

impl Stream for EventStream {
    type Item = ConnectionEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ConnectionEvent>> {
        let this = self.get_mut();
        if let Some(event) = this.held.take() {
            return Poll::Ready(Some(event));
        }
        match this.rx.poll_next_unpin(cx) {
            Poll::Ready(Some(Delivered { item, missed: 0 })) => Poll::Ready(Some(item)),
            Poll::Ready(Some(Delivered { item, missed })) => {
                this.held = Some(item);
                Poll::Ready(Some(ConnectionEvent::Lagged { missed }))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

/// The connection's side: every watcher's queue, and the state a new
/// watcher is told first.
pub(crate) struct Watchers {
    queues: Vec<delivery::Sender<ConnectionEvent>>,
    capacity: usize,
    /// The latest `Connected`, `Reconnecting` or `Closed`.
    current: ConnectionEvent,
}

impl Watchers {
    /// Watchers of a connection open to `url`.
    pub fn new(capacity: usize, url: String) -> Self {
        Watchers {
            queues: Vec::new(),
            capacity: capacity.max(1),
            current: ConnectionEvent::Connected { url },
        }
    }

    /// A new stream, told the current state first.
    pub fn stream(&mut self) -> EventStream {
        let (tx, rx) = delivery::channel(self.capacity, Overflow::DropOldest);
        self.add(tx);
        EventStream { rx, held: None }
    }

    /// A new actor watcher, told the current state first. Must run inside
    /// the connection's arbiter (its task is local to the thread).
    pub fn actor(&mut self, recipient: Recipient<ConnectionEvent>) {
        let (tx, mut rx) = delivery::channel(self.capacity, Overflow::DropOldest);
        self.add(tx);
        actix::spawn(async move {
            while let Some(Delivered { item, missed }) = rx.next().await {
                if missed > 0
                    && recipient
                        .send(ConnectionEvent::Lagged { missed })
                        .await
                        .is_err()
                {
                    return;
                }
                // One at a time: the actor sees them in order.
                if recipient.send(item).await.is_err() {
                    return;
                }
            }
        });
    }

    fn add(&mut self, tx: delivery::Sender<ConnectionEvent>) {
        // Streams dropped since the last event go now: watching in a loop
        // on a quiet connection must not pile them up.
        self.queues.retain(|queue| !queue.is_closed());
        let closed = matches!(self.current, ConnectionEvent::Closed { .. });
        tx.push(self.current.clone());
        if closed {
            tx.close();
        } else {
            self.queues.push(tx);
        }
    }

    /// Tells every watcher; forgets those that have gone.
    pub fn emit(&mut self, event: ConnectionEvent) {
        log::debug!("connection event: {event}");
        if matches!(
            event,
            ConnectionEvent::Connected { .. }
                | ConnectionEvent::Reconnecting { .. }
                | ConnectionEvent::Closed { .. }
        ) {
            self.current = event.clone();
        }
        self.queues.retain(|queue| match queue.push(event.clone()) {
            Pushed::Queued | Pushed::Dropped => true,
            Pushed::Overflowed | Pushed::Closed => false,
        });
    }

    /// Whether the connection has ended for good.
    pub fn is_closed(&self) -> bool {
        matches!(self.current, ConnectionEvent::Closed { .. })
    }

    /// Tells every watcher the last event, and ends their streams.
    pub fn close(&mut self, reason: String) {
        if self.is_closed() {
            return;
        }
        self.emit(ConnectionEvent::Closed { reason });
        for queue in self.queues.drain(..) {
            queue.close();
        }
    }
}

/// A boxed error as an event's shareable cause.
pub(crate) fn shared_cause(cause: BoxError) -> Arc<dyn std::error::Error + Send + Sync> {
    Arc::from(cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(stream: &mut EventStream) -> Vec<String> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        while let Poll::Ready(Some(event)) = Pin::new(&mut *stream).poll_next(&mut cx) {
            out.push(event.to_string());
        }
        out
    }

    #[test]
    fn a_stream_starts_with_the_state_and_ends_after_closed() {
        let mut watchers = Watchers::new(8, "ws://a".into());
        let mut stream = watchers.stream();
        watchers.emit(ConnectionEvent::Disconnected {
            code: None,
            reason: "cut".into(),
            cause: None,
        });
        watchers.emit(ConnectionEvent::Reconnecting {
            attempt: 1,
            delay: Duration::from_millis(5),
        });
        watchers.close("gave up".into());
        assert_eq!(
            drain(&mut stream),
            [
                "connected to ws://a",
                "disconnected: cut",
                "reconnecting in 5ms (attempt 1)",
                "closed: gave up"
            ]
        );
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert_eq!(
            Pin::new(&mut stream)
                .poll_next(&mut cx)
                .map(|e| e.is_none()),
            Poll::Ready(true)
        );
    }

    #[test]
    fn events_read_as_sentences() {
        let table = [
            (
                ConnectionEvent::Disconnected {
                    code: Some(1011),
                    reason: "overloaded".into(),
                    cause: None,
                },
                "disconnected (code 1011): overloaded",
            ),
            (ConnectionEvent::Reconnected, "reconnected"),
            (ConnectionEvent::Lagged { missed: 3 }, "missed 3 events"),
        ];
        for (event, text) in table {
            assert_eq!(event.to_string(), text);
        }
    }

    #[test]
    fn closing_twice_tells_watchers_once() {
        let mut watchers = Watchers::new(8, "ws://a".into());
        let mut stream = watchers.stream();
        watchers.close("first".into());
        watchers.close("second".into());
        assert_eq!(drain(&mut stream), ["connected to ws://a", "closed: first"]);
    }

    #[test]
    fn a_slow_watcher_is_told_how_many_it_missed() {
        let mut watchers = Watchers::new(2, "ws://a".into());
        let mut stream = watchers.stream();
        for attempt in 1..=5 {
            watchers.emit(ConnectionEvent::Reconnecting {
                attempt,
                delay: Duration::ZERO,
            });
        }
        assert_eq!(
            drain(&mut stream),
            [
                "missed 4 events",
                "reconnecting in 0ns (attempt 4)",
                "reconnecting in 0ns (attempt 5)"
            ]
        );
    }

    #[test]
    fn dropped_streams_do_not_pile_up_on_a_quiet_connection() {
        let mut watchers = Watchers::new(4, "ws://a".into());
        for _ in 0..1000 {
            drop(watchers.stream());
        }
        let _kept = watchers.stream();
        assert_eq!(watchers.queues.len(), 1);
    }

    #[test]
    fn a_watcher_of_a_closed_connection_gets_closed_and_the_end() {
        let mut watchers = Watchers::new(2, "ws://a".into());
        watchers.close("done".into());
        let mut stream = watchers.stream();
        assert_eq!(drain(&mut stream), ["closed: done"]);
        assert!(watchers.queues.is_empty());
        // A late watcher of a reconnecting connection hears of the attempt.
        let mut watchers = Watchers::new(2, "ws://a".into());
        watchers.emit(ConnectionEvent::Reconnecting {
            attempt: 3,
            delay: Duration::from_secs(1),
        });
        assert_eq!(
            drain(&mut watchers.stream()),
            ["reconnecting in 1s (attempt 3)"]
        );
    }
}
