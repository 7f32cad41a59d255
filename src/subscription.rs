//! Subscriptions: a server's stream of notifications for one subscribe call,
//! as a [`Subscription`] handle that is a `Stream` (or whose items go to an
//! actor), bounded with an explicit policy for a subscriber that falls
//! behind.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix::{Message, Recipient};
use futures_util::task::AtomicWaker;
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::delivery::{Delivered, Receiver};
use crate::error::{Error, SubscriptionInfo};
use crate::protocol::{Id, RawResult};

/// What a subscription yields, in order.
///
/// A stream of [`Subscription<T>`] yields items decoded as `T`; an actor
/// registered with [`Subscribe::deliver_to`](crate::Subscribe::deliver_to)
/// gets `SubscriptionItem<Value>` messages, the last of them
/// [`Closed`](Self::Closed).
///
/// # Examples
///
/// ```
/// use futures_util::StreamExt;
/// use jsonrpc_websocket::{params, Client, Error, SubscriptionItem};
///
/// # async fn demo(client: Client) -> Result<(), Error> {
/// let mut heads = client
///     .subscribe::<serde_json::Value>("eth_subscribe", params!["newHeads"], "eth_unsubscribe")
///     .await?;
/// while let Some(item) = heads.next().await {
///     match item {
///         SubscriptionItem::Item(head) => println!("head {}", head["number"]),
///         SubscriptionItem::Lagged { missed } => eprintln!("missed {missed} heads; backfill"),
///         other => eprintln!("{other:?}"),
///     }
/// }
/// println!("ended: {:?}", heads.close_reason());
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SubscriptionItem<T = Value> {
    /// One notification's `result`.
    Item(T),
    /// The subscriber's queue was full: this many items were dropped just
    /// before the next one (policies [`Overflow::DropOldest`] and
    /// [`Overflow::KeepLatest`](crate::Overflow::KeepLatest)).
    ///
    /// [`Overflow::DropOldest`]: crate::Overflow::DropOldest
    Lagged {
        /// How many items were dropped.
        missed: u64,
    },
    /// A notification whose result could not be decoded as `T`
    /// ([`Error::ItemDecode`]); the subscription goes on. (Also what a
    /// [`blocking::Subscription`](crate::blocking::Subscription) yields,
    /// once, when iterated inside an async runtime:
    /// [`Error::BlockingInAsync`].)
    Invalid(Error),
    /// The connection was lost and came back (see
    /// [`ReconnectPolicy`](crate::ReconnectPolicy)), and the subscription was
    /// made again with its original params: items the server sent while it
    /// was down were never received. Backfill what you need.
    Resubscribed {
        /// How long the subscription was down: from the moment the
        /// connection was lost to the server's answer to the new subscribe
        /// call.
        down_for: Duration,
    },
    /// The subscription ended (only sent to an actor, as its last message;
    /// a stream ends instead, and [`Subscription::close_reason`] says why).
    Closed(SubscriptionEnd),
}

impl<T: 'static> Message for SubscriptionItem<T> {
    type Result = ();
}

/// Why a subscription ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionEnd {
    /// We unsubscribed: [`Subscription::unsubscribe`], or the handle was
    /// dropped.
    Unsubscribed,
    /// The server ended it with a notification carrying an `error` (its raw
    /// JSON text).
    ServerClosed {
        /// The `error` member of the server's last notification.
        error: String,
    },
    /// The subscriber fell behind and its overflow policy is
    /// [`Overflow::Close`](crate::Overflow::Close).
    Lagged {
        /// How many items it missed.
        missed: u64,
    },
    /// The connection ended (closed by either side, or lost and not
    /// reconnected).
    Disconnected {
        /// How it ended.
        reason: String,
    },
    /// After a reconnect, the server refused (or did not answer) the
    /// subscribe call that was to make the subscription again.
    ResubscribeFailed {
        /// The server's error object as JSON text, or what went wrong.
        error: String,
    },
}

impl fmt::Display for SubscriptionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionEnd::Unsubscribed => f.write_str("unsubscribed"),
            SubscriptionEnd::ServerClosed { error } => {
                write!(f, "closed by the server: {error}")
            }
            SubscriptionEnd::Lagged { missed } => {
                write!(
                    f,
                    "closed after the subscriber fell behind ({missed} missed)"
                )
            }
            SubscriptionEnd::Disconnected { reason } => write!(f, "disconnected: {reason}"),
            SubscriptionEnd::ResubscribeFailed { error } => {
                write!(f, "could not subscribe again after reconnecting: {error}")
            }
        }
    }
}

/// Ends a subscription: local routing stops at once, the server is sent the
/// unsubscribe call, and its answer is returned. Sent by
/// [`Subscription::unsubscribe`].
#[derive(Debug)]
pub struct Unsubscribe {
    /// The connection's own key for the subscription: the server's id
    /// changes when a reconnect makes the subscription again.
    pub(crate) key: u64,
}

impl Message for Unsubscribe {
    type Result = Result<Value, Error>;
}

/// What travels through a subscription's queue.
#[derive(Debug)]
pub(crate) enum Notice {
    /// One notification's result, and the method the notification came
    /// with (see [`Subscription::notification_method`]).
    Item { result: RawResult, method: Arc<str> },
    /// Made again after a reconnect; see [`SubscriptionItem::Resubscribed`].
    Resubscribed { down_for: Duration },
}

/// Keys of subscriptions whose handle was dropped, queued from any thread
/// for the connection to unsubscribe.
#[derive(Default)]
pub(crate) struct Dropped {
    ids: Mutex<Vec<u64>>,
    waker: AtomicWaker,
}

impl Dropped {
    fn push(&self, key: u64) {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).push(key);
        self.waker.wake();
    }

    /// Takes the queued keys, or registers `cx` to hear of the next.
    pub fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<Vec<u64>> {
        let take = || std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()));
        let ids = take();
        if !ids.is_empty() {
            return Poll::Ready(ids);
        }
        self.waker.register(cx.waker());
        let ids = take();
        if ids.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(ids)
        }
    }
}

/// What a subscription's handle shares with its route in the connection.
#[derive(Default)]
pub(crate) struct Shared {
    /// Set once, by whatever ends the subscription.
    pub end: OnceLock<SubscriptionEnd>,
    /// The server's id after a reconnect made the subscription again.
    pub current: Mutex<Option<Id>>,
}

/// The control half of a subscription: its id, and what dropping it does.
struct Handle {
    info: SubscriptionInfo,
    /// The connection's key for it (see [`Unsubscribe`]).
    key: u64,
    shared: Arc<Shared>,
    /// Keeps the connection alive while the subscription lives; carries
    /// [`Unsubscribe`].
    control: Recipient<Unsubscribe>,
    dropped: Arc<Dropped>,
    /// `false` once unsubscribed: dropping then does nothing more.
    live: bool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.live && self.shared.end.get().is_none() {
            // NOTE: best effort and without waiting: the connection removes
            // the route and sends the unsubscribe call on its next turn.
            self.dropped.push(self.key);
        }
    }
}

/// A live subscription: the handle that keeps it (dropping it unsubscribes)
/// and, unless its items go to an actor, a [`Stream`] of them.
///
/// Items arrive through a bounded queue of the subscription's own; when the
/// subscriber falls behind, its [`Overflow`](crate::Overflow) policy decides
/// and says so: [`SubscriptionItem::Lagged`] before the next item, or the end
/// of the stream with [`SubscriptionEnd::Lagged`]. Nothing is dropped
/// silently. The stream ends when the subscription does;
/// [`close_reason`](Self::close_reason) says why.
///
/// # Examples
///
/// ```
/// use futures_util::StreamExt;
/// use jsonrpc_websocket::{params, Client, Error, SubscriptionItem};
///
/// # async fn demo(client: Client) -> Result<(), Error> {
/// let mut ticks = client.subscribe::<u64>("subscribe_ticks", params![], "unsubscribe_ticks").await?;
/// if let Some(SubscriptionItem::Item(tick)) = ticks.next().await {
///     println!("first tick: {tick}");
/// }
/// let answer = ticks.unsubscribe().await?; // the server's answer, e.g. `true`
/// # Ok(()) }
/// ```
///
/// # Cancel safety
///
/// Dropping the handle ends the subscription: local routing stops at once
/// and the unsubscribe call is sent without waiting for its answer.
pub struct Subscription<T = Value> {
    handle: Handle,
    /// `None` when the items go to an actor.
    items: Option<Receiver<Notice>>,
    /// An item held back while the `Lagged` before it is yielded.
    held: Option<Notice>,
    /// Whether the end of the queue has been seen (and its last `Lagged`
    /// told).
    ended: bool,
    /// The method of the notification the last item yielded came in.
    last_method: Option<Arc<str>>,
    item_type: PhantomData<fn() -> T>,
}

/// What a subscription's queue yields, before decoding: for whoever
/// passes items on as they came (the proxy's fan-out).
#[cfg_attr(not(feature = "proxy"), allow(dead_code))]
#[derive(Debug)]
pub(crate) enum RawItem {
    /// One notification: its raw `result` and its method.
    Item { result: RawResult, method: Arc<str> },
    /// This many items were dropped just before the next one (or at the end).
    Lagged { missed: u64 },
    /// Made again after a reconnect.
    Resubscribed { down_for: Duration },
}

impl Subscription<Value> {
    pub(crate) fn new(
        info: SubscriptionInfo,
        key: u64,
        shared: Arc<Shared>,
        items: Option<Receiver<Notice>>,
        control: Recipient<Unsubscribe>,
        dropped: Arc<Dropped>,
    ) -> Self {
        Subscription {
            handle: Handle {
                info,
                key,
                shared,
                control,
                dropped,
                live: true,
            },
            items,
            held: None,
            ended: false,
            last_method: None,
            item_type: PhantomData,
        }
    }
}

impl<T> Subscription<T> {
    /// The subscription id the server returned. After a reconnect the
    /// server knows the subscription by a new id; the handle, its stream and
    /// [`unsubscribe`](Self::unsubscribe) go on working unchanged.
    pub fn id(&self) -> &Id {
        &self.handle.info.id
    }

    /// The subscribe method.
    pub fn method(&self) -> &str {
        &self.handle.info.method
    }

    /// The id the server knows the subscription by now: [`id`](Self::id)
    /// until a reconnect makes it again under a new one.
    pub fn current_id(&self) -> Id {
        let current = self
            .handle
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        current
            .clone()
            .unwrap_or_else(|| self.handle.info.id.clone())
    }

    /// The method of the notification that carried the last
    /// [`Item`](SubscriptionItem::Item) (or [`Invalid`](SubscriptionItem::Invalid))
    /// this handle yielded, exactly as the server wrote it: `eth_subscription`
    /// for an Ethereum node, the server's own name for jsonrpsee. `None`
    /// until the first item. Items are routed by their subscription id
    /// whatever their method, so this is how to learn it (to pass
    /// notifications on unchanged, as a proxy does).
    ///
    /// ```
    /// # use jsonrpc_websocket::{params, Client, Error, SubscriptionItem};
    /// # async fn demo(client: Client) -> Result<(), Error> {
    /// let mut heads = client.subscribe::<serde_json::Value>("eth_subscribe", params!["newHeads"], "eth_unsubscribe").await?;
    /// if let Some(SubscriptionItem::Item(_)) = heads.next().await {
    ///     assert_eq!(heads.notification_method(), Some("eth_subscription"));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn notification_method(&self) -> Option<&str> {
        self.last_method.as_deref()
    }

    /// Why the subscription ended, once it has.
    pub fn close_reason(&self) -> Option<SubscriptionEnd> {
        self.handle.shared.end.get().cloned()
    }

    /// Decodes items as `U` instead.
    pub fn typed<U>(self) -> Subscription<U> {
        Subscription {
            handle: self.handle,
            items: self.items,
            held: self.held,
            ended: self.ended,
            last_method: self.last_method,
            item_type: PhantomData,
        }
    }

    /// Ends the subscription and returns the server's answer to the
    /// unsubscribe call (for most servers `true`).
    ///
    /// # Errors
    ///
    /// The call's errors ([`Error::Rpc`], [`Error::Timeout`], …);
    /// [`Error::NotConnected`] when the connection has stopped. While the
    /// connection is down and reconnecting, the server holds no such
    /// subscription: it ends here and the answer is `null`.
    pub async fn unsubscribe(mut self) -> Result<Value, Error> {
        self.handle.live = false;
        let key = self.handle.key;
        match self.handle.control.send(Unsubscribe { key }).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::NotConnected {
                method: Cow::Owned(format!("unsubscribe of {}", self.handle.info)),
            }),
        }
    }
}

impl<T: DeserializeOwned> Subscription<T> {
    /// The next item, or `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<SubscriptionItem<T>> {
        futures_util::StreamExt::next(self).await
    }

    fn item(&mut self, notice: Notice) -> SubscriptionItem<T> {
        match notice {
            Notice::Item { result, method } => {
                self.last_method = Some(method);
                match result.decode::<T>() {
                    Ok(item) => SubscriptionItem::Item(item),
                    Err(source) => SubscriptionItem::Invalid(Error::ItemDecode {
                        subscription: Box::new(self.handle.info.clone()),
                        target: std::any::type_name::<T>(),
                        source,
                    }),
                }
            }
            Notice::Resubscribed { down_for } => SubscriptionItem::Resubscribed { down_for },
        }
    }
}

/// One step of a subscription's queue: a notice, or how many were dropped
/// before the next (or at the end).
enum Step {
    Notice(Notice),
    Lagged(u64),
}

impl<T> Subscription<T> {
    /// The queue's next step; `None` once it has ended. A notice preceded by
    /// drops is held back while the `Lagged` before it is told.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Step>> {
        if let Some(notice) = self.held.take() {
            return Poll::Ready(Some(Step::Notice(notice)));
        }
        let Some(items) = self.items.as_mut().filter(|_| !self.ended) else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(&mut *items).poll_next(cx)) {
            Some(Delivered { item, missed: 0 }) => Poll::Ready(Some(Step::Notice(item))),
            Some(Delivered { item, missed }) => {
                self.held = Some(item);
                Poll::Ready(Some(Step::Lagged(missed)))
            }
            None => {
                self.ended = true;
                // Items dropped after the last one delivered are told too.
                match items.missed_at_end() {
                    0 => Poll::Ready(None),
                    missed => Poll::Ready(Some(Step::Lagged(missed))),
                }
            }
        }
    }

    /// The next item as it came, undecoded; `None` once the subscription
    /// has ended.
    #[cfg_attr(not(feature = "proxy"), allow(dead_code))]
    pub(crate) fn poll_raw(&mut self, cx: &mut Context<'_>) -> Poll<Option<RawItem>> {
        Poll::Ready(ready!(self.poll_step(cx)).map(|step| match step {
            Step::Lagged(missed) => RawItem::Lagged { missed },
            Step::Notice(Notice::Item { result, method }) => {
                self.last_method = Some(Arc::clone(&method));
                RawItem::Item { result, method }
            }
            Step::Notice(Notice::Resubscribed { down_for }) => RawItem::Resubscribed { down_for },
        }))
    }

    /// [`poll_raw`](Self::poll_raw) as a future.
    #[cfg_attr(not(feature = "proxy"), allow(dead_code))]
    pub(crate) async fn next_raw(&mut self) -> Option<RawItem> {
        std::future::poll_fn(|cx| self.poll_raw(cx)).await
    }
}

impl<T: DeserializeOwned> Stream for Subscription<T> {
    type Item = SubscriptionItem<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        Poll::Ready(ready!(this.poll_step(cx)).map(|step| match step {
            Step::Notice(notice) => this.item(notice),
            Step::Lagged(missed) => SubscriptionItem::Lagged { missed },
        }))
    }
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.handle.info.id)
            .field("method", &self.handle.info.method)
            .field("ended", &self.handle.shared.end.get())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_end_says_why_the_subscription_ended() {
        let table = [
            (SubscriptionEnd::Unsubscribed, "unsubscribed"),
            (
                SubscriptionEnd::ServerClosed {
                    error: r#"{"code":-32000,"message":"gone"}"#.into(),
                },
                r#"closed by the server: {"code":-32000,"message":"gone"}"#,
            ),
            (
                SubscriptionEnd::Lagged { missed: 5 },
                "closed after the subscriber fell behind (5 missed)",
            ),
            (
                SubscriptionEnd::Disconnected {
                    reason: "closed by the client".into(),
                },
                "disconnected: closed by the client",
            ),
            (
                SubscriptionEnd::ResubscribeFailed {
                    error: "timed out".into(),
                },
                "could not subscribe again after reconnecting: timed out",
            ),
        ];
        for (end, text) in table {
            assert_eq!(end.to_string(), text);
        }
    }
}
