//! Subscriptions on the connection's side: which subscription id feeds which
//! queue, what to do with notifications that arrive before their subscribe
//! answer, and which subscriptions still need an unsubscribe call.
//!
//! No actix in here; the actor routes each notification through
//! [`Subscriptions::route`] and sends the unsubscribe calls it is handed.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use bytestring::ByteString;

use crate::delivery::{Pushed, Sender};
use crate::protocol::{scan, Id, RawResult};
use crate::stats::{self, Metrics};
use crate::subscription::{Notice, Shared, SubscriptionEnd};

/// Notifications held while subscribe calls are pending, at most.
const HOLD: usize = 1024;

/// One live subscription's queue and what ends it.
pub(crate) struct Route {
    pub queue: Sender<Notice>,
    pub shared: Arc<Shared>,
    pub unsubscribe: Cow<'static, str>,
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

struct Table {
    routes: HashMap<Id, Route>,
    /// Subscribe calls whose answer has not been read yet.
    pending: usize,
    held: VecDeque<Held>,
    /// Subscriptions to end with an unsubscribe call: (method, id).
    to_unsubscribe: Vec<(Cow<'static, str>, Id)>,
    metrics: Arc<Metrics>,
}

impl Table {
    fn set_gauge(&self) {
        stats::set(&self.metrics.subscriptions, self.routes.len());
    }

    /// Delivers the result (or the end) carried by a notification's params
    /// to the subscription `id`, which must be known.
    fn deliver(&mut self, id: &Id, params: scan::SubscriptionParams<'_>, text: &ByteString) {
        let Some(route) = self.routes.get(id) else {
            return;
        };
        if let Some(error) = params.error.filter(|_| params.result.is_none()) {
            let end = SubscriptionEnd::ServerClosed {
                error: error.to_owned(),
            };
            log::debug!("the server ended subscription {id}: {error}");
            self.end(id, end);
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
        match route.queue.push(Notice::Item(raw)) {
            Pushed::Queued => {}
            Pushed::Dropped => stats::add(&self.metrics.subscription_items_dropped, 1),
            Pushed::Overflowed => {
                stats::add(&self.metrics.subscription_items_dropped, 1);
                log::warn!(
                    "subscription {id} fell behind and was closed (its overflow policy is Close)"
                );
                let unsubscribe = route.unsubscribe.clone();
                let missed = route.queue.missed();
                self.end(id, SubscriptionEnd::Lagged { missed });
                self.to_unsubscribe.push((unsubscribe, id.clone()));
            }
            Pushed::Closed => {
                // The subscriber is gone and has not been counted out yet.
                if let Some(route) = self.end(id, SubscriptionEnd::Unsubscribed) {
                    self.to_unsubscribe.push((route.unsubscribe, id.clone()));
                }
            }
        }
    }

    /// Removes the route of `id`, recording `end` for its subscriber.
    fn end(&mut self, id: &Id, end: SubscriptionEnd) -> Option<Route> {
        let route = self.routes.remove(id)?;
        let _ = route.shared.end.set(end);
        route.queue.close();
        self.set_gauge();
        Some(route)
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
                routes: HashMap::new(),
                pending: 0,
                held: VecDeque::new(),
                to_unsubscribe: Vec::new(),
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

    /// Starts routing `id` to `route`, first delivering what was held for it.
    pub fn register(&self, id: Id, route: Route) {
        let mut table = self.inner.borrow_mut();
        table.routes.insert(id.clone(), route);
        table.set_gauge();
        let (mine, others): (Vec<Held>, Vec<Held>) =
            table.held.drain(..).partition(|held| held.id == id);
        table.held.extend(others);
        for held in mine {
            if let Some(params) = scan::subscription_params(&held.params) {
                table.deliver(&id, params, &held.params);
            }
        }
    }

    /// Routes one notification by its `params.subscription`.
    pub fn route(&self, method: &str, params: Option<&str>, text: &ByteString) -> Routed {
        let Some(params_text) = params else {
            return Routed::NotOurs;
        };
        let Some(params) = scan::subscription_params(params_text) else {
            return Routed::NotOurs;
        };
        let Some(id) = params.subscription.and_then(Id::from_json) else {
            return Routed::NotOurs;
        };
        let mut table = self.inner.borrow_mut();
        if table.routes.contains_key(&id) {
            table.deliver(&id, params, text);
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

    /// Ends subscription `id` from our side; returns its route if it was live.
    pub fn remove(&self, id: &Id, end: SubscriptionEnd) -> Option<Route> {
        self.inner.borrow_mut().end(id, end)
    }

    /// Subscription `id`'s handle was dropped: end it, and unsubscribe.
    pub fn dropped(&self, id: &Id) {
        let mut table = self.inner.borrow_mut();
        if let Some(route) = table.end(id, SubscriptionEnd::Unsubscribed) {
            table.to_unsubscribe.push((route.unsubscribe, id.clone()));
        }
    }

    /// The unsubscribe calls owed: (method, subscription id).
    pub fn take_unsubscribes(&self) -> Vec<(Cow<'static, str>, Id)> {
        std::mem::take(&mut self.inner.borrow_mut().to_unsubscribe)
    }

    /// Ends every subscription (the connection has ended).
    pub fn close_all(&self, end: &SubscriptionEnd) {
        let mut table = self.inner.borrow_mut();
        let ids: Vec<Id> = table.routes.keys().cloned().collect();
        for id in ids {
            table.end(&id, end.clone());
        }
        table.to_unsubscribe.clear();
        table.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{channel, Overflow, Receiver};
    use std::sync::OnceLock;

    fn table() -> (Subscriptions, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (Subscriptions::new(Arc::clone(&metrics)), metrics)
    }

    fn route(capacity: usize, overflow: Overflow) -> (Route, Receiver<Notice>, Arc<Shared>) {
        let (queue, rx) = channel(capacity, overflow);
        let shared = Arc::new(Shared {
            end: OnceLock::new(),
        });
        let route = Route {
            queue,
            shared: Arc::clone(&shared),
            unsubscribe: "unsub".into(),
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
            let Notice::Item(raw) = d.item;
            out.push((raw.text.to_string(), d.missed));
        }
        out
    }

    fn route_text(subs: &Subscriptions, text: &ByteString) -> Routed {
        subs.route("m", Some(text), text)
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
        subs.register(Id::from(4), r);
        subs.dropped(&Id::from(4));
        subs.dropped(&Id::from(4));
        assert_eq!(subs.take_unsubscribes(), [("unsub".into(), Id::from(4))]);
        assert_eq!(metrics.snapshot().subscriptions, 0);
    }
}
