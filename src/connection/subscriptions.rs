//! Subscriptions on the connection's side: which subscription id feeds which
//! queue, what to do with notifications that arrive before their subscribe
//! answer, which subscriptions still need an unsubscribe call, and which
//! must be made again after a reconnect.
//!
//! Each subscription has a key of the connection's own: the server's id
//! changes when a reconnect makes the subscription again, the key (and so the
//! subscriber's handle) does not.
//!
//! No actix in here; the actor routes each notification through
//! [`Subscriptions::route`] and sends the calls it is handed.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use crate::delivery::{Pushed, Sender};
use crate::protocol::{scan, Id, IdHasher, Params, RawResult};
use crate::stats::{self, Metrics};
use crate::subscription::{Notice, Shared, SubscriptionEnd};

/// Notifications held while subscribe calls are pending, at most.
const HOLD: usize = 1024;

/// Subscribe calls given up on (whose answer must still be unsubscribed),
/// remembered at most.
const ORPHANS: usize = 1024;

/// One subscription's queue, how it was made, and what ends it.
pub(crate) struct Route {
    pub queue: Sender<Notice>,
    pub shared: Arc<Shared>,
    pub unsubscribe: Cow<'static, str>,
    /// The subscribe call, sent again after a reconnect.
    pub method: Cow<'static, str>,
    pub params: Params,
    pub timeout: Option<std::time::Duration>,
    pub link: Link,
    /// The method of its last notification, shared with each item: nearly
    /// every server uses one method for all of them, so this is one
    /// allocation per subscription, not per item.
    pub notification_method: Option<Arc<str>>,
}

/// Where a subscription stands with the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Link {
    /// Live under this id.
    Live(Id),
    /// The connection was lost at `since`: to be made again.
    Down { since: Instant },
    /// Its subscribe call was sent again; down since `since`.
    Resubscribing { since: Instant },
}

/// A notification naming a subscription not known yet.
pub(crate) struct Held {
    pub id: Id,
    pub method: String,
    pub params: ByteString,
}

/// What became of a notification.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Routed {
    /// It went to its subscription (or ended it).
    Delivered,
    /// Held until a pending subscribe call is answered.
    Held,
    /// Not a subscription's: it goes to the listeners.
    NotOurs,
}

/// A subscribe call to send again after a reconnect.
pub(crate) struct Resubscribe {
    pub key: u64,
    pub method: Cow<'static, str>,
    pub params: Params,
    pub timeout: Option<std::time::Duration>,
    pub unsubscribe: Cow<'static, str>,
}

/// A map with a cheap hash: every notification looks up its id and then
/// its route (see [`IdHasher`]).
type Map<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

struct Table {
    routes: Map<u64, Route>,
    /// Live subscriptions' keys by the server's id.
    keys: Map<Id, u64>,
    next_key: u64,
    /// Subscribe calls whose answer has not been read yet.
    pending: usize,
    held: VecDeque<Held>,
    /// Subscriptions to end with an unsubscribe call: (method, id).
    to_unsubscribe: Vec<(Cow<'static, str>, Id)>,
    /// Subscribe calls whose caller gave up (or timed out) before the
    /// answer, by call id: the unsubscribe method, and until when an answer
    /// is worth waiting for.
    orphans: HashMap<u64, (Cow<'static, str>, Instant)>,
    metrics: Arc<Metrics>,
}

impl Table {
    fn set_gauge(&self) {
        stats::set(&self.metrics.subscriptions, self.routes.len());
    }

    /// Delivers the result (or the end) carried by a notification's params
    /// to the live subscription `key`.
    fn deliver(
        &mut self,
        key: u64,
        method: &str,
        params: scan::SubscriptionParams<'_>,
        text: &ByteString,
    ) {
        let Some(route) = self.routes.get_mut(&key) else {
            return;
        };
        if let Some(error) = params.error.filter(|_| params.result.is_none()) {
            let end = SubscriptionEnd::ServerClosed {
                error: error.to_owned(),
            };
            log::debug!("the server ended subscription {key}: {error}");
            self.end(key, end);
            return;
        }
        let result = params.result.unwrap_or("null");
        let raw = RawResult {
            text: if params.result.is_some() {
                text.slice_ref(result)
            } else {
                ByteString::from_static("null")
            },
            unescaped: params.result_unescaped,
        };
        let method = match &route.notification_method {
            Some(known) if **known == *method => Arc::clone(known),
            _ => {
                let method: Arc<str> = Arc::from(method);
                route.notification_method = Some(Arc::clone(&method));
                method
            }
        };
        match route.queue.push(Notice::Item {
            result: raw,
            method,
        }) {
            Pushed::Queued => {}
            Pushed::Dropped => stats::add(&self.metrics.subscription_items_dropped, 1),
            Pushed::Overflowed => {
                stats::add(&self.metrics.subscription_items_dropped, 1);
                log::warn!(
                    "subscription {key} fell behind and was closed (its overflow policy is Close)"
                );
                let missed = route.queue.missed();
                self.end_and_unsubscribe(key, SubscriptionEnd::Lagged { missed });
            }
            Pushed::Closed => {
                // The subscriber is gone and has not been counted out yet.
                self.end_and_unsubscribe(key, SubscriptionEnd::Unsubscribed);
            }
        }
    }

    /// Removes the route of `key`, recording `end` for its subscriber.
    fn end(&mut self, key: u64, end: SubscriptionEnd) -> Option<Route> {
        let route = self.routes.remove(&key)?;
        if let Link::Live(id) = &route.link {
            self.keys.remove(id);
        }
        let _ = route.shared.end.set(end);
        route.queue.close();
        self.set_gauge();
        Some(route)
    }

    /// [`end`](Self::end), and owes the server an unsubscribe call if the
    /// subscription is live there.
    fn end_and_unsubscribe(&mut self, key: u64, end: SubscriptionEnd) {
        if let Some(Route {
            link: Link::Live(id),
            unsubscribe,
            ..
        }) = self.end(key, end)
        {
            self.to_unsubscribe.push((unsubscribe, id));
        }
    }

    /// Delivers what was held for `id`, now routed to `key`.
    fn deliver_held(&mut self, id: &Id, key: u64) {
        let (mine, others): (Vec<Held>, Vec<Held>) =
            self.held.drain(..).partition(|held| held.id == *id);
        self.held.extend(others);
        for held in mine {
            if let Some(params) = scan::subscription_params(&held.params) {
                self.deliver(key, &held.method, params, &held.params);
            }
        }
    }
}

/// Two gaps with no item between them are one gap, as long as both.
fn merge_gaps(first: &mut Notice, second: Notice) {
    if let (Notice::Resubscribed { down_for }, Notice::Resubscribed { down_for: more }) =
        (first, second)
    {
        *down_for += more;
    }
}

/// The connection's subscriptions. A cheap handle: the actor holds one, and
/// each pending subscribe call holds one to register its route when the
/// answer is read.
#[derive(Clone)]
pub(crate) struct Subscriptions {
    inner: Rc<RefCell<Table>>,
}

/// Counts one subscribe call as pending while it lives.
pub(crate) struct PendingSubscribe {
    subscriptions: Subscriptions,
}

impl Drop for PendingSubscribe {
    fn drop(&mut self) {
        let mut table = self.subscriptions.inner.borrow_mut();
        table.pending = table.pending.saturating_sub(1);
    }
}

impl Subscriptions {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Subscriptions {
            inner: Rc::new(RefCell::new(Table {
                routes: Map::default(),
                keys: Map::default(),
                next_key: 1,
                pending: 0,
                held: VecDeque::new(),
                to_unsubscribe: Vec::new(),
                orphans: HashMap::new(),
                metrics,
            })),
        }
    }

    /// A subscribe call is on its way: notifications for unknown
    /// subscriptions are held until its answer is read.
    pub fn begin(&self) -> PendingSubscribe {
        self.inner.borrow_mut().pending += 1;
        PendingSubscribe {
            subscriptions: self.clone(),
        }
    }

    /// Starts routing `id` to `route` (whose link is set to live), first
    /// delivering what was held for it; returns the subscription's key.
    /// `None` when another live subscription has that id already: a server
    /// that hands out one id twice cannot say whose its items are.
    pub fn register(&self, id: Id, mut route: Route) -> Option<u64> {
        let mut table = self.inner.borrow_mut();
        if table.keys.contains_key(&id) {
            return None;
        }
        let key = table.next_key;
        table.next_key += 1;
        route.link = Link::Live(id.clone());
        table.routes.insert(key, route);
        table.keys.insert(id.clone(), key);
        table.set_gauge();
        table.deliver_held(&id, key);
        Some(key)
    }

    /// Routes one notification by its `params.subscription`. `members` are
    /// the params' subscription members when the envelope's scan read them
    /// already; otherwise `params` is scanned here.
    pub fn route(
        &self,
        method: &str,
        params: Option<&str>,
        members: Option<scan::SubscriptionParams<'_>>,
        text: &ByteString,
    ) -> Routed {
        let Some(params_text) = params else {
            return Routed::NotOurs;
        };
        let Some(params) = members.or_else(|| scan::subscription_params(params_text)) else {
            return Routed::NotOurs;
        };
        let Some(id) = params.subscription.and_then(Id::from_json) else {
            return Routed::NotOurs;
        };
        let mut table = self.inner.borrow_mut();
        if let Some(&key) = table.keys.get(&id) {
            table.deliver(key, method, params, text);
            return Routed::Delivered;
        }
        if table.pending > 0 && table.held.len() < HOLD {
            table.held.push_back(Held {
                id,
                method: method.to_owned(),
                params: text.slice_ref(params_text),
            });
            return Routed::Held;
        }
        Routed::NotOurs
    }

    /// Held notifications no pending subscribe call can claim any more: once
    /// no subscribe call is pending, every one of them (they go to the
    /// listeners).
    pub fn release_held(&self) -> Vec<Held> {
        let mut table = self.inner.borrow_mut();
        if table.pending > 0 {
            return Vec::new();
        }
        table.held.drain(..).collect()
    }

    /// Ends subscription `key` from our side; returns its route if it was
    /// still there.
    pub fn remove(&self, key: u64, end: SubscriptionEnd) -> Option<Route> {
        self.inner.borrow_mut().end(key, end)
    }

    /// Subscription `key`'s handle was dropped: end it, and unsubscribe if
    /// the server holds it.
    pub fn dropped(&self, key: u64) {
        self.inner
            .borrow_mut()
            .end_and_unsubscribe(key, SubscriptionEnd::Unsubscribed);
    }

    /// The unsubscribe calls owed: (method, subscription id).
    pub fn take_unsubscribes(&self) -> Vec<(Cow<'static, str>, Id)> {
        std::mem::take(&mut self.inner.borrow_mut().to_unsubscribe)
    }

    /// Subscribe call `call` was given up on before its answer: if the
    /// answer comes by `until`, the subscription it creates on the server is
    /// ended at once.
    pub fn orphan(&self, call: u64, unsubscribe: Cow<'static, str>, until: Instant) {
        let mut table = self.inner.borrow_mut();
        let now = Instant::now();
        table.orphans.retain(|_, (_, until)| *until > now);
        if table.orphans.len() >= ORPHANS {
            log::warn!("too many abandoned subscribe calls; the answer to call {call} will not be unsubscribed");
            return;
        }
        table.orphans.insert(call, (unsubscribe, until));
    }

    /// The answer to call `call` matched no pending call: if it was an
    /// abandoned subscribe call, its subscription (the `result`) is owed an
    /// unsubscribe call. Returns whether it was one.
    pub fn claim_orphan(&self, call: u64, result: Option<&str>) -> bool {
        let mut table = self.inner.borrow_mut();
        let Some((unsubscribe, until)) = table.orphans.remove(&call) else {
            return false;
        };
        if until < Instant::now() {
            return false;
        }
        if let Some(id) = result.and_then(Id::from_json).filter(|id| !id.is_null()) {
            log::debug!("subscribe call {call} was given up on; unsubscribing {id}");
            table.to_unsubscribe.push((unsubscribe, id));
        }
        true
    }

    /// Ends every subscription (the connection has ended for good).
    pub fn close_all(&self, end: &SubscriptionEnd) {
        let mut table = self.inner.borrow_mut();
        let keys: Vec<u64> = table.routes.keys().copied().collect();
        for key in keys {
            table.end(key, end.clone());
        }
        table.to_unsubscribe.clear();
        table.orphans.clear();
        table.held.clear();
    }

    /// The connection was lost at `now` and will be dialled again: every
    /// subscription is down (the server forgot them with the socket), and
    /// nothing is owed to the old server.
    pub fn disconnected(&self, now: Instant) {
        let mut table = self.inner.borrow_mut();
        for route in table.routes.values_mut() {
            route.link = match route.link {
                Link::Live(_) => Link::Down { since: now },
                Link::Down { since } | Link::Resubscribing { since } => Link::Down { since },
            };
        }
        table.keys.clear();
        table.to_unsubscribe.clear();
        table.orphans.clear();
        table.held.clear();
    }

    /// The subscriptions to make again on a new connection; each is marked
    /// as being made.
    pub fn take_resubscribes(&self) -> Vec<Resubscribe> {
        let mut table = self.inner.borrow_mut();
        let mut calls: Vec<Resubscribe> = Vec::new();
        for (&key, route) in table.routes.iter_mut() {
            if let Link::Down { since } = route.link {
                route.link = Link::Resubscribing { since };
                calls.push(Resubscribe {
                    key,
                    method: route.method.clone(),
                    params: route.params.clone(),
                    timeout: route.timeout,
                    unsubscribe: route.unsubscribe.clone(),
                });
            }
        }
        // Oldest first, so the server sees them in the order they were made.
        calls.sort_by_key(|call| call.key);
        calls
    }

    /// The server answered subscription `key`'s new subscribe call with
    /// `id` at `now`: it is live again, and its subscriber is told how long
    /// it was down. A subscription dropped meanwhile is unsubscribed.
    pub fn resubscribed(&self, key: u64, id: Id, unsubscribe: Cow<'static, str>, now: Instant) {
        let mut table = self.inner.borrow_mut();
        let Some(route) = table.routes.get_mut(&key) else {
            table.to_unsubscribe.push((unsubscribe, id));
            return;
        };
        let Link::Resubscribing { since } = route.link else {
            return;
        };
        if table.keys.contains_key(&id) {
            let error = format!(
                "the server answered with subscription id {id}, which another subscription has"
            );
            log::warn!("subscription {key} could not be made again: {error}");
            table.end(key, SubscriptionEnd::ResubscribeFailed { error });
            return;
        }
        let Some(route) = table.routes.get_mut(&key) else {
            return;
        };
        route.link = Link::Live(id.clone());
        *route
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
        let down_for = now.saturating_duration_since(since);
        // A marker: the gap must reach a subscriber that is behind, whatever
        // its overflow policy.
        let gap = Notice::Resubscribed { down_for };
        match route.queue.push_marker(gap, merge_gaps) {
            Pushed::Queued => {}
            Pushed::Dropped => stats::add(&table.metrics.subscription_items_dropped, 1),
            Pushed::Overflowed | Pushed::Closed => {
                // Ended before it was told; nothing to keep live.
                let end = SubscriptionEnd::Lagged {
                    missed: route.queue.missed(),
                };
                table.keys.insert(id.clone(), key);
                table.end_and_unsubscribe(key, end);
                return;
            }
        }
        table.keys.insert(id.clone(), key);
        table.deliver_held(&id, key);
    }

    /// Subscription `key`'s new subscribe call failed with `error`. A lost
    /// connection leaves it down, to be made again on the next one; any
    /// other failure (the server refused, or did not answer in time) ends it.
    pub fn resubscribe_failed(&self, key: u64, error: &crate::Error) {
        let mut table = self.inner.borrow_mut();
        if error.is_disconnect() {
            if let Some(route) = table.routes.get_mut(&key) {
                if let Link::Resubscribing { since } = route.link {
                    route.link = Link::Down { since };
                }
            }
            return;
        }
        let error = match error.rpc_error() {
            Some(object) => serde_json::to_string(object).unwrap_or_else(|_| error.to_string()),
            None => error.to_string(),
        };
        log::warn!("subscription {key} could not be made again after reconnecting: {error}");
        table.end(key, SubscriptionEnd::ResubscribeFailed { error });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{channel, Overflow, Receiver};
    use std::time::Duration;

    fn table() -> (Subscriptions, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (Subscriptions::new(Arc::clone(&metrics)), metrics)
    }

    fn route(capacity: usize, overflow: Overflow) -> (Route, Receiver<Notice>, Arc<Shared>) {
        let (queue, rx) = channel(capacity, overflow);
        let shared = Arc::new(Shared::default());
        let route = Route {
            queue,
            shared: Arc::clone(&shared),
            unsubscribe: "unsub".into(),
            method: "sub".into(),
            params: Params::from_json("[]"),
            timeout: None,
            link: Link::Down {
                since: Instant::now(),
            },
            notification_method: None,
        };
        (route, rx, shared)
    }

    fn params(sub: &str, result: &str) -> ByteString {
        ByteString::from(format!(r#"{{"subscription":{sub},"result":{result}}}"#))
    }

    fn items(rx: &mut Receiver<Notice>) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        while let std::task::Poll::Ready(Some(d)) =
            futures_util::Stream::poll_next(std::pin::Pin::new(&mut *rx), &mut cx)
        {
            let text = match d.item {
                Notice::Item { result, .. } => result.text.to_string(),
                Notice::Resubscribed { .. } => "resubscribed".to_owned(),
            };
            out.push((text, d.missed));
        }
        out
    }

    fn route_text(subs: &Subscriptions, text: &ByteString) -> Routed {
        subs.route("m", Some(text), None, text)
    }

    #[test]
    fn each_subscription_gets_only_its_own_items_compared_exactly() {
        let (subs, metrics) = table();
        let (a, mut rx_a, _) = route(8, Overflow::DropOldest);
        let (b, mut rx_b, _) = route(8, Overflow::DropOldest);
        subs.register(Id::from_json("1").unwrap(), a);
        subs.register(Id::from_json(r#""0x1""#).unwrap(), b);
        assert_eq!(route_text(&subs, &params("1", "10")), Routed::Delivered);
        assert_eq!(
            route_text(&subs, &params(r#""0x1""#, "20")),
            Routed::Delivered
        );
        assert_eq!(route_text(&subs, &params(r#""1""#, "30")), Routed::NotOurs);
        assert_eq!(route_text(&subs, &params("1.0", "40")), Routed::NotOurs);
        assert_eq!(items(&mut rx_a), [("10".to_owned(), 0)]);
        assert_eq!(items(&mut rx_b), [("20".to_owned(), 0)]);
        assert_eq!(metrics.snapshot().subscriptions, 2);
    }

    #[test]
    fn notifications_before_the_answer_are_held_then_delivered_in_order() {
        let (subs, _) = table();
        let pending = subs.begin();
        for n in 1..=3 {
            assert_eq!(
                route_text(&subs, &params("7", &n.to_string())),
                Routed::Held
            );
        }
        let (r, mut rx, _) = route(8, Overflow::DropOldest);
        subs.register(Id::from(7), r);
        drop(pending);
        assert_eq!(
            items(&mut rx),
            [
                ("1".to_owned(), 0),
                ("2".to_owned(), 0),
                ("3".to_owned(), 0)
            ]
        );
        assert!(subs.release_held().is_empty());
    }

    #[test]
    fn held_notifications_nobody_claims_go_to_the_listeners() {
        let (subs, _) = table();
        let pending = subs.begin();
        assert_eq!(route_text(&subs, &params("9", "1")), Routed::Held);
        assert!(subs.release_held().is_empty(), "still pending");
        drop(pending);
        let released = subs.release_held();
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].id, Id::from(9));
        assert_eq!(route_text(&subs, &params("9", "2")), Routed::NotOurs);
    }

    #[test]
    fn an_error_from_the_server_ends_the_subscription() {
        let (subs, _) = table();
        let (r, _rx, shared) = route(8, Overflow::DropOldest);
        subs.register(Id::from(5), r);
        let closing = ByteString::from(r#"{"subscription":5,"error":{"code":-1}}"#);
        assert_eq!(route_text(&subs, &closing), Routed::Delivered);
        assert_eq!(
            shared.end.get(),
            Some(&SubscriptionEnd::ServerClosed {
                error: r#"{"code":-1}"#.into()
            })
        );
        assert!(subs.take_unsubscribes().is_empty(), "the server ended it");
        assert_eq!(route_text(&subs, &params("5", "1")), Routed::NotOurs);
    }

    #[test]
    fn a_subscriber_too_slow_under_close_is_ended_and_unsubscribed() {
        let (subs, metrics) = table();
        let (r, _rx, shared) = route(2, Overflow::Close);
        subs.register(Id::from(3), r);
        for n in 0..3 {
            assert_eq!(
                route_text(&subs, &params("3", &n.to_string())),
                Routed::Delivered
            );
        }
        assert_eq!(
            shared.end.get(),
            Some(&SubscriptionEnd::Lagged { missed: 1 })
        );
        assert_eq!(subs.take_unsubscribes(), [("unsub".into(), Id::from(3))]);
        assert_eq!(metrics.snapshot().subscription_items_dropped, 1);
    }

    #[test]
    fn a_dropped_handle_unsubscribes_once() {
        let (subs, metrics) = table();
        let (r, _rx, _) = route(2, Overflow::DropOldest);
        let key = subs.register(Id::from(4), r).unwrap();
        subs.dropped(key);
        subs.dropped(key);
        assert_eq!(subs.take_unsubscribes(), [("unsub".into(), Id::from(4))]);
        assert_eq!(metrics.snapshot().subscriptions, 0);
    }

    #[test]
    fn after_a_reconnect_a_subscription_is_made_again_under_the_same_key() {
        let (subs, _) = table();
        let (r, mut rx, shared) = route(8, Overflow::DropOldest);
        let key = subs.register(Id::from(1), r).unwrap();
        let lost = Instant::now();
        subs.disconnected(lost);
        assert_eq!(
            route_text(&subs, &params("1", "10")),
            Routed::NotOurs,
            "old ids are void"
        );
        let calls = subs.take_resubscribes();
        assert_eq!(calls.len(), 1);
        assert_eq!((calls[0].key, &*calls[0].method), (key, "sub"));
        assert!(subs.take_resubscribes().is_empty(), "asked once");
        // A notification for the new id before the answer is held, then delivered.
        let pending = subs.begin();
        assert_eq!(route_text(&subs, &params("2", "20")), Routed::Held);
        subs.resubscribed(
            key,
            Id::from(2),
            "unsub".into(),
            lost + Duration::from_millis(1500),
        );
        drop(pending);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let first = futures_util::Stream::poll_next(std::pin::Pin::new(&mut rx), &mut cx);
        match first {
            std::task::Poll::Ready(Some(d)) => match d.item {
                Notice::Resubscribed { down_for } => {
                    assert_eq!(down_for, Duration::from_millis(1500))
                }
                Notice::Item { result, .. } => panic!("an item first: {}", result.text),
            },
            _ => panic!("nothing told"),
        }
        assert_eq!(items(&mut rx), [("20".to_owned(), 0)]);
        assert_eq!(route_text(&subs, &params("2", "21")), Routed::Delivered);
        assert!(shared.end.get().is_none());
        subs.dropped(key);
        assert_eq!(
            subs.take_unsubscribes(),
            [("unsub".into(), Id::from(2))],
            "the new id"
        );
    }

    #[test]
    fn a_resubscribe_lost_with_the_connection_is_tried_again_and_a_refused_one_ends() {
        let (subs, _) = table();
        let (a, _rx_a, shared_a) = route(8, Overflow::DropOldest);
        let (b, _rx_b, shared_b) = route(8, Overflow::DropOldest);
        let key_a = subs.register(Id::from(1), a).unwrap();
        let key_b = subs.register(Id::from(2), b).unwrap();
        subs.disconnected(Instant::now());
        assert_eq!(subs.take_resubscribes().len(), 2);
        let lost = crate::Error::Disconnected {
            call: None,
            source: None,
        };
        subs.resubscribe_failed(key_a, &lost);
        let refused = crate::Error::Rpc {
            call: crate::error::CallInfo {
                method: "sub".into(),
                id: 9,
            },
            error: Box::new(crate::ErrorObject::new(-32601, "no such method")),
        };
        subs.resubscribe_failed(key_b, &refused);
        assert!(
            shared_a.end.get().is_none(),
            "still waiting for the next connection"
        );
        match shared_b.end.get() {
            Some(SubscriptionEnd::ResubscribeFailed { error }) => {
                assert!(error.contains("-32601"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        let again = subs.take_resubscribes();
        assert_eq!(again.iter().map(|c| c.key).collect::<Vec<_>>(), [key_a]);
    }

    /// Every notice waiting in `rx`, gaps with how long they were.
    fn notices(rx: &mut Receiver<Notice>) -> Vec<String> {
        let mut out = Vec::new();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        while let std::task::Poll::Ready(Some(d)) =
            futures_util::Stream::poll_next(std::pin::Pin::new(&mut *rx), &mut cx)
        {
            out.push(match d.item {
                Notice::Item { result, .. } => result.text.to_string(),
                Notice::Resubscribed { down_for } => format!("gap {down_for:?}"),
            });
        }
        out
    }

    #[test]
    fn two_reconnects_with_no_item_between_are_one_gap_as_long_as_both() {
        let (subs, _) = table();
        let (r, mut rx, _) = route(8, Overflow::DropOldest);
        let key = subs.register(Id::from(1), r).unwrap();
        let t0 = Instant::now();
        subs.disconnected(t0);
        assert_eq!(subs.take_resubscribes().len(), 1);
        subs.resubscribed(
            key,
            Id::from(2),
            "unsub".into(),
            t0 + Duration::from_secs(1),
        );
        let t1 = t0 + Duration::from_secs(5);
        subs.disconnected(t1);
        assert_eq!(subs.take_resubscribes().len(), 1);
        subs.resubscribed(
            key,
            Id::from(3),
            "unsub".into(),
            t1 + Duration::from_secs(2),
        );
        assert_eq!(route_text(&subs, &params("3", "30")), Routed::Delivered);
        assert_eq!(notices(&mut rx), ["gap 3s", "30"]);
    }

    #[test]
    fn a_resubscribe_answered_with_an_id_in_use_ends_that_subscription() {
        let (subs, _) = table();
        let (a, _rx_a, shared_a) = route(8, Overflow::DropOldest);
        let (b, _rx_b, shared_b) = route(8, Overflow::DropOldest);
        let key_a = subs.register(Id::from(1), a).unwrap();
        let key_b = subs.register(Id::from(2), b).unwrap();
        let now = Instant::now();
        subs.disconnected(now);
        assert_eq!(subs.take_resubscribes().len(), 2);
        subs.resubscribed(key_a, Id::from(5), "unsub".into(), now);
        subs.resubscribed(key_b, Id::from(5), "unsub".into(), now);
        assert!(shared_a.end.get().is_none(), "the first keeps the id");
        assert_eq!(
            shared_b.end.get(),
            Some(&SubscriptionEnd::ResubscribeFailed {
                error: "the server answered with subscription id 5, which another subscription has"
                    .into()
            })
        );
        assert_eq!(route_text(&subs, &params("5", "50")), Routed::Delivered);
    }

    #[test]
    fn a_gap_reaches_a_subscriber_whose_queue_is_full_whatever_its_policy() {
        for overflow in [Overflow::DropNewest, Overflow::Close, Overflow::DropOldest] {
            let (subs, metrics) = table();
            let (r, mut rx, shared) = route(1, overflow);
            let key = subs.register(Id::from(1), r).unwrap();
            assert_eq!(route_text(&subs, &params("1", "10")), Routed::Delivered);
            let now = Instant::now();
            subs.disconnected(now);
            subs.take_resubscribes();
            subs.resubscribed(
                key,
                Id::from(2),
                "unsub".into(),
                now + Duration::from_secs(1),
            );
            assert!(shared.end.get().is_none(), "{overflow:?}");
            assert_eq!(metrics.snapshot().subscription_items_dropped, 0);
            assert_eq!(notices(&mut rx), ["10", "gap 1s"], "{overflow:?}");
        }
    }

    #[test]
    fn a_subscriber_gone_while_down_has_its_new_id_unsubscribed_at_once() {
        let (subs, _) = table();
        let (r, rx, _shared) = route(4, Overflow::DropOldest);
        let key = subs.register(Id::from(1), r).unwrap();
        let now = Instant::now();
        subs.disconnected(now);
        subs.take_resubscribes();
        drop(rx);
        subs.resubscribed(key, Id::from(2), "unsub".into(), now);
        assert_eq!(subs.take_unsubscribes(), [("unsub".into(), Id::from(2))]);
        assert_eq!(route_text(&subs, &params("2", "20")), Routed::NotOurs);
    }

    #[test]
    fn a_subscription_dropped_while_being_made_again_is_unsubscribed_on_its_answer() {
        let (subs, _) = table();
        let (r, _rx, _) = route(8, Overflow::DropOldest);
        let key = subs.register(Id::from(1), r).unwrap();
        subs.disconnected(Instant::now());
        let _ = subs.take_resubscribes();
        subs.dropped(key);
        assert!(
            subs.take_unsubscribes().is_empty(),
            "nothing live on the server"
        );
        subs.resubscribed(key, Id::from(5), "unsub".into(), Instant::now());
        assert_eq!(subs.take_unsubscribes(), [("unsub".into(), Id::from(5))]);
    }

    #[test]
    fn answers_to_abandoned_subscribe_calls_are_unsubscribed_while_worth_waiting_for() {
        let (subs, _) = table();
        let later = Instant::now() + Duration::from_secs(60);
        subs.orphan(7, "unsub".into(), later);
        subs.orphan(8, "unsub".into(), Instant::now());
        subs.orphan(9, "unsub".into(), later);
        assert!(subs.claim_orphan(7, Some(r#""abc""#)));
        assert!(!subs.claim_orphan(7, Some(r#""abc""#)), "once");
        assert!(!subs.claim_orphan(8, Some("1")), "too late");
        assert!(
            subs.claim_orphan(9, None),
            "an error answer creates nothing"
        );
        assert_eq!(
            subs.take_unsubscribes(),
            [("unsub".into(), Id::from("abc"))]
        );
        subs.orphan(10, "unsub".into(), later);
        subs.disconnected(Instant::now());
        assert!(
            !subs.claim_orphan(10, Some("1")),
            "gone with the connection"
        );
        for call in 0..2 * ORPHANS as u64 {
            subs.orphan(100 + call, "unsub".into(), later);
        }
        assert_eq!(subs.inner.borrow().orphans.len(), ORPHANS, "bounded");
    }

    /// One step of the table's life, as the actor drives it.
    #[derive(Debug, Clone)]
    enum Step {
        Subscribe(u8),
        Notify(u8),
        Drop(u8),
        Remove(u8),
        Lost,
        Reconnected,
        Answer(u8, u8),
        Refused(u8),
        LostAgain(u8),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..6).prop_map(Step::Subscribe),
            (0u8..12).prop_map(Step::Notify),
            (0u8..8).prop_map(Step::Drop),
            (0u8..8).prop_map(Step::Remove),
            Just(Step::Lost),
            Just(Step::Reconnected),
            ((0u8..8), (0u8..12)).prop_map(|(k, id)| Step::Answer(k, id)),
            (0u8..8).prop_map(Step::Refused),
            (0u8..8).prop_map(Step::LostAgain),
        ]
    }

    /// Whatever the order of events, the table stays consistent: the gauge
    /// counts its routes, live ids map to exactly their routes, and each
    /// subscription's queue sees a gap item only after a loss.
    fn stays_consistent(steps: Vec<Step>) -> Result<(), proptest::test_runner::TestCaseError> {
        use proptest::prop_assert;
        let (subs, metrics) = table();
        let mut keys: Vec<u64> = Vec::new();
        let mut queues = Vec::new();
        let now = Instant::now();
        for step in steps {
            match step {
                Step::Subscribe(id) => {
                    let (r, rx, _) = route(4, Overflow::DropOldest);
                    // An id in use is refused; the refused route is dropped.
                    if let Some(key) = subs.register(Id::from(u64::from(id) + 100), r) {
                        keys.push(key);
                        queues.push(rx);
                    }
                }
                Step::Notify(id) => {
                    let _ = route_text(&subs, &params(&id.to_string(), "1"));
                }
                Step::Drop(k) => {
                    if let Some(&key) = keys.get(usize::from(k)) {
                        subs.dropped(key);
                    }
                }
                Step::Remove(k) => {
                    if let Some(&key) = keys.get(usize::from(k)) {
                        let _ = subs.remove(key, SubscriptionEnd::Unsubscribed);
                    }
                }
                Step::Lost => subs.disconnected(now),
                Step::Reconnected => {
                    let _ = subs.take_resubscribes();
                }
                Step::Answer(k, id) => {
                    if let Some(&key) = keys.get(usize::from(k)) {
                        subs.resubscribed(key, Id::from(u64::from(id)), "unsub".into(), now);
                    }
                }
                Step::Refused(k) => {
                    if let Some(&key) = keys.get(usize::from(k)) {
                        let refused = crate::Error::Timeout {
                            call: crate::error::CallInfo {
                                method: "sub".into(),
                                id: 1,
                            },
                            after: Duration::from_secs(1),
                        };
                        subs.resubscribe_failed(key, &refused);
                    }
                }
                Step::LostAgain(k) => {
                    if let Some(&key) = keys.get(usize::from(k)) {
                        let lost = crate::Error::Disconnected {
                            call: None,
                            source: None,
                        };
                        subs.resubscribe_failed(key, &lost);
                    }
                }
            }
            let _ = subs.take_unsubscribes();
            let table = subs.inner.borrow();
            prop_assert!(metrics.snapshot().subscriptions == table.routes.len() as u64);
            for (id, key) in &table.keys {
                let route = table.routes.get(key);
                prop_assert!(
                    route.is_some_and(|r| r.link == Link::Live(id.clone())),
                    "id {id} maps to a route that is not live under it"
                );
            }
            let live = table
                .routes
                .values()
                .filter(|r| matches!(r.link, Link::Live(_)))
                .count();
            prop_assert!(live == table.keys.len(), "live routes and ids differ");
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn any_order_of_events_keeps_the_table_consistent(
            steps in proptest::collection::vec(step(), 0..60)
        ) {
            stays_consistent(steps)?;
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(20_000))]
        /// The long run: `cargo test -- --ignored`.
        #[test]
        #[ignore = "long: many more cases"]
        fn any_order_of_events_keeps_the_table_consistent_long(
            steps in proptest::collection::vec(step(), 0..200)
        ) {
            stays_consistent(steps)?;
        }
    }
}
