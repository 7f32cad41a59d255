//! Subscription fan-out: downstream websocket subscribers of the same
//! (method, canonical params) share one upstream subscription, a *topic*,
//! made lazily for the first subscriber and ended with the last.
//!
//! - [`Table`] is the state (topics, who subscribed to what, in which
//!   session), with no I/O: unit-tested below.
//! - [`run_topic`] is one topic's task: it subscribes upstream, passes each
//!   item to every subscriber's own bounded queue, applies the
//!   [`UpstreamLoss`] policy, moves to a healthy upstream when its own is
//!   lost, and unsubscribes when the last subscriber leaves.
//!
//! Each downstream subscriber has its own queue (the configured capacity
//! and overflow policy), so a slow downstream never holds up the topic, the
//! other subscribers or the upstream connection. The session's writer
//! renders each queued [`Event`] with the subscriber's own id.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytestring::ByteString;
use futures_util::StreamExt as _;
use serde_json::Value;
use tokio::sync::{watch, Notify};

use super::codes;
use super::config::UpstreamLoss;
use super::forward::Forward;
use super::metrics::{bump, Metrics};
use crate::delivery::{self, Overflow, Pushed};
use crate::events::ConnectionEvent;
use crate::message::{may_send_close_code, Subscribe};
use crate::protocol::{ErrorObject, Params};
use crate::subscription::{RawItem, Subscription, SubscriptionEnd};

/// A downstream subscription id: `0x` and 32 hex digits, as Ethereum nodes
/// write theirs. Unique in the process (a counter), and not guessable
/// across processes (a random half); a session can only end its own anyway.
pub(crate) type DownId = Arc<str>;

/// Makes the next downstream subscription id.
fn next_id() -> DownId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    static SALT: OnceLock<u64> = OnceLock::new();
    let salt = *SALT.get_or_init(rand::random::<u64>);
    Arc::from(format!("0x{salt:016x}{:016x}", NEXT.fetch_add(1, Relaxed)))
}

/// What two subscribe calls must share to share an upstream subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub method: String,
    /// The params, canonical (see [`canonical`]); empty when there are none.
    pub params: String,
}

/// The params of a subscribe call as a key: parsed and written again with
/// every object's keys sorted and no whitespace, so that `{"a":1, "b":2}`
/// and `{"b":2,"a":1}` share. Numbers and strings are written as
/// serde_json writes them. Params nested deeper than serde_json allows
/// (128 levels) are refused.
pub(crate) fn canonical(params: Option<&str>) -> Result<String, ErrorObject> {
    let Some(text) = params else {
        return Ok(String::new());
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|err| ErrorObject::invalid_params(format!("params are not valid JSON: {err}")))?;
    if !value.is_array() && !value.is_object() {
        return Err(ErrorObject::invalid_params(
            "params must be a JSON array or object",
        ));
    }
    let mut out = String::with_capacity(text.len());
    write_canonical(&value, &mut out);
    Ok(out)
}

/// Recursion is bounded by the parser's own depth limit.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (n, (key, value)) in members.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

/// What a topic passes to each of its subscribers (shared by all of them;
/// each session's writer renders it with the subscriber's id).
#[derive(Debug)]
pub(crate) enum Event {
    /// A notification: its method as JSON text, and its `result` as sent.
    Item {
        method: Arc<str>,
        result: ByteString,
    },
    /// The upstream subscription was made again (after a reconnect, or on
    /// another upstream): items sent meanwhile are lost.
    Gap {
        method: Arc<str>,
        down_for: Duration,
    },
    /// The topic's own queue from the upstream connection dropped this
    /// many items.
    Lagged { method: Arc<str>, missed: u64 },
}

impl Event {
    /// The method (as JSON text) of the notification it becomes.
    pub fn method(&self) -> &Arc<str> {
        match self {
            Event::Item { method, .. }
            | Event::Gap { method, .. }
            | Event::Lagged { method, .. } => method,
        }
    }

    /// The notification for subscriber `id` (a hex id: no escaping).
    pub fn render(&self, id: &str) -> String {
        match self {
            Event::Item { method, result } => {
                let mut out = String::with_capacity(80 + method.len() + result.len());
                out.push_str(r#"{"jsonrpc":"2.0","method":"#);
                out.push_str(method);
                let _ = write!(out, r#","params":{{"subscription":"{id}","result":"#);
                out.push_str(result);
                out.push_str("}}");
                out
            }
            Event::Gap { method, down_for } => format!(
                r#"{{"jsonrpc":"2.0","method":{method},"params":{{"subscription":"{id}","gap":{{"down_for_ms":{}}}}}}}"#,
                down_for.as_millis()
            ),
            Event::Lagged { method, missed } => render_lagged(method, id, *missed),
        }
    }
}

/// `{"subscription":id,"lagged":{"missed":n}}`: items dropped for a
/// subscriber that fell behind (or for the topic itself).
pub(crate) fn render_lagged(method: &str, id: &str, missed: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":{method},"params":{{"subscription":"{id}","lagged":{{"missed":{missed}}}}}}}"#
    )
}

/// `{"subscription":id,"error":{..}}`: the subscription has ended.
pub(crate) fn render_end(method: &str, id: &str, error: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","method":{method},"params":{{"subscription":"{id}","error":{error}}}}}"#
    )
}

/// Why a subscriber's queue ended, set before it is closed.
#[derive(Debug, Clone)]
pub(crate) enum FeedEnd {
    /// It unsubscribed (or its session ended): nothing more is said.
    Unsubscribed,
    /// The proxy ended it: the subscriber is told with this error, as a
    /// notification of this method (JSON text).
    Error { method: Arc<str>, error: String },
}

/// How the fan-out reaches a downstream session: to close it (policy
/// [`UpstreamLoss::Close`]).
#[derive(Debug)]
pub(crate) struct SessionLink {
    pub id: u64,
    close: watch::Sender<Option<(u16, String)>>,
}

impl SessionLink {
    pub fn new(id: u64) -> (Arc<SessionLink>, watch::Receiver<Option<(u16, String)>>) {
        let (close, closed) = watch::channel(None);
        (Arc::new(SessionLink { id, close }), closed)
    }

    /// Asks the session to close with `code`; the first request wins
    /// (`true` for it).
    pub fn close(&self, code: u16, reason: &str) -> bool {
        self.close.send_if_modified(|state| {
            if state.is_some() {
                return false;
            }
            *state = Some((code, reason.to_owned()));
            true
        })
    }
}

/// One downstream subscriber of a topic.
struct Subscriber {
    queue: delivery::Sender<Arc<Event>>,
    end: Arc<OnceLock<FeedEnd>>,
    session: Arc<SessionLink>,
}

impl Subscriber {
    /// Ends its queue, saying why first.
    fn finish(self, end: FeedEnd) {
        let _ = self.end.set(end);
        self.queue.close();
    }
}

/// Where a topic's upstream subscription stands.
#[derive(Debug, Clone)]
pub(crate) enum Status {
    /// Being made.
    Pending,
    /// Made: its subscribers' answers can go out.
    Live,
    /// Refused or failed: every subscriber waiting gets this error.
    Failed(ErrorObject),
}

/// One shared upstream subscription and its subscribers.
struct Topic {
    /// Which topic of this key (a key's topic may end and a new one start).
    serial: u64,
    subscribers: HashMap<DownId, Subscriber>,
    status: watch::Sender<Status>,
    /// Tells the topic's task that its last subscriber left.
    done: Arc<Notify>,
    live: bool,
}

/// Who holds a downstream subscription.
struct Owner {
    key: Key,
    serial: u64,
    session: u64,
}

/// A subscriber just added: its id and queue, how to learn the topic's
/// status, and, for the first subscriber of a topic, what its task needs.
pub(crate) struct Joined {
    pub id: DownId,
    pub feed: Feed,
    pub status: watch::Receiver<Status>,
    pub start: Option<Start>,
}

/// What a new topic's task is started with.
pub(crate) struct Start {
    pub serial: u64,
    pub done: Arc<Notify>,
}

/// The subscriptions of one [`Forward`]: which topic each downstream
/// subscription belongs to, in which session.
#[derive(Default)]
pub(crate) struct Fanout {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    topics: HashMap<Key, Topic>,
    owners: HashMap<DownId, Owner>,
    by_session: HashMap<u64, HashSet<DownId>>,
    next_serial: u64,
    /// Topics whose upstream subscription is live.
    live: usize,
}

impl Fanout {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every change is made in one step under the lock; a panic cannot
        // leave it half done, so poisoning is ignored.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many subscriptions `session` holds.
    pub fn count(&self, session: u64) -> usize {
        self.lock().by_session.get(&session).map_or(0, HashSet::len)
    }

    /// Adds a subscriber of `key` in `session`, with a queue of its own;
    /// the topic is created when it is the first.
    pub fn join(
        &self,
        key: Key,
        session: &Arc<SessionLink>,
        capacity: usize,
        overflow: Overflow,
        metrics: &Metrics,
    ) -> Joined {
        let mut table = self.lock();
        let id = next_id();
        let (queue, rx) = delivery::channel(capacity, overflow);
        let end = Arc::new(OnceLock::new());
        let subscriber = Subscriber {
            queue,
            end: Arc::clone(&end),
            session: Arc::clone(session),
        };
        let mut start = None;
        if !table.topics.contains_key(&key) {
            table.next_serial += 1;
            let serial = table.next_serial;
            let done = Arc::new(Notify::new());
            start = Some(Start {
                serial,
                done: Arc::clone(&done),
            });
            let topic = Topic {
                serial,
                subscribers: HashMap::new(),
                status: watch::Sender::new(Status::Pending),
                done,
                live: false,
            };
            table.topics.insert(key.clone(), topic);
        }
        let Some(topic) = table.topics.get_mut(&key) else {
            unreachable!("the topic was inserted above when missing");
        };
        topic.subscribers.insert(Arc::clone(&id), subscriber);
        let status = topic.status.subscribe();
        let serial = topic.serial;
        table.owners.insert(
            Arc::clone(&id),
            Owner {
                key,
                serial,
                session: session.id,
            },
        );
        table
            .by_session
            .entry(session.id)
            .or_default()
            .insert(Arc::clone(&id));
        table.gauges(metrics);
        Joined {
            feed: Feed::new(Arc::clone(&id), rx, end),
            id,
            status,
            start,
        }
    }

    /// The topic's upstream subscription is made. `false` when nobody
    /// waits for it any more (the task must unsubscribe at once).
    pub fn live(&self, key: &Key, serial: u64, metrics: &Metrics) -> bool {
        let mut table = self.lock();
        let Some(topic) = table.topic_mut(key, serial) else {
            return false;
        };
        topic.live = true;
        topic.status.send_replace(Status::Live);
        table.live += 1;
        table.gauges(metrics);
        true
    }

    /// The topic could not be made: its subscribers get `error` and are
    /// removed.
    pub fn fail(&self, key: &Key, serial: u64, error: ErrorObject, metrics: &Metrics) {
        let mut table = self.lock();
        if let Some(topic) = table.remove_topic(key, serial) {
            topic.status.send_replace(Status::Failed(error));
            for (_, subscriber) in topic.subscribers {
                subscriber.finish(FeedEnd::Unsubscribed);
            }
        }
        table.gauges(metrics);
    }

    /// Downstream subscription `id` of `session` ends (its unsubscribe
    /// call). `None` when the session holds no such subscription;
    /// otherwise whether it was the topic's last subscriber (the topic's
    /// task then unsubscribes upstream).
    pub fn leave(&self, session: u64, id: &str, metrics: &Metrics) -> Option<bool> {
        let mut table = self.lock();
        if table.owners.get(id)?.session != session {
            return None;
        }
        let last = table.remove_subscriber(id, FeedEnd::Unsubscribed);
        table.gauges(metrics);
        Some(last)
    }

    /// A session ended: each of its subscriptions ends as if unsubscribed.
    pub fn session_ended(&self, session: u64, metrics: &Metrics) {
        let mut table = self.lock();
        let ids = table.by_session.remove(&session).unwrap_or_default();
        for id in ids {
            table.remove_subscriber(&id, FeedEnd::Unsubscribed);
        }
        table.gauges(metrics);
    }

    /// Queues `event` for every subscriber of the topic. A subscriber whose
    /// queue overflows under [`Overflow::Close`] is ended with an error;
    /// one whose session is gone is removed.
    pub fn broadcast(&self, key: &Key, serial: u64, event: Event, metrics: &Metrics) {
        let event = Arc::new(event);
        let mut table = self.lock();
        let Some(topic) = table.topic_mut(key, serial) else {
            return;
        };
        let mut ended = Vec::new();
        for (id, subscriber) in &topic.subscribers {
            match subscriber.queue.push(Arc::clone(&event)) {
                Pushed::Queued => {}
                Pushed::Dropped => bump(&metrics.subscription_items_dropped),
                Pushed::Overflowed => {
                    bump(&metrics.subscription_items_dropped);
                    let missed = subscriber.queue.missed();
                    let error = ErrorObject::new(
                        codes::LIMIT_EXCEEDED,
                        format!("the subscriber fell behind ({missed} notifications dropped); the subscription is ended"),
                    );
                    ended.push((
                        Arc::clone(id),
                        FeedEnd::Error {
                            method: Arc::clone(event.method()),
                            error: error_json(&error),
                        },
                    ));
                }
                Pushed::Closed => ended.push((Arc::clone(id), FeedEnd::Unsubscribed)),
            }
        }
        for (id, end) in ended {
            log::debug!("downstream subscription {id} ended: {end:?}");
            table.remove_subscriber(&id, end);
        }
        table.gauges(metrics);
    }

    /// Ends the topic: each subscriber is ended with `end` (after what is
    /// queued); returns their sessions (for policy
    /// [`UpstreamLoss::Close`]).
    pub fn end_topic(
        &self,
        key: &Key,
        serial: u64,
        end: &FeedEnd,
        metrics: &Metrics,
    ) -> Vec<Arc<SessionLink>> {
        let mut table = self.lock();
        let mut sessions = Vec::new();
        if let Some(topic) = table.remove_topic(key, serial) {
            for (_, subscriber) in topic.subscribers {
                sessions.push(Arc::clone(&subscriber.session));
                subscriber.finish(end.clone());
            }
        }
        table.gauges(metrics);
        sessions
    }

    /// A live topic's task has ended (its upstream subscription with it).
    pub fn upstream_ended(&self, metrics: &Metrics) {
        let mut table = self.lock();
        table.live = table.live.saturating_sub(1);
        table.gauges(metrics);
    }
}

impl Table {
    fn topic_mut(&mut self, key: &Key, serial: u64) -> Option<&mut Topic> {
        self.topics.get_mut(key).filter(|t| t.serial == serial)
    }

    /// Removes the topic and its subscribers' ownership (not their queues:
    /// the caller ends those). Its task is told to stop.
    fn remove_topic(&mut self, key: &Key, serial: u64) -> Option<Topic> {
        self.topic_mut(key, serial)?;
        let topic = self.topics.remove(key)?;
        for id in topic.subscribers.keys() {
            if let Some(owner) = self.owners.remove(id) {
                if let Some(ids) = self.by_session.get_mut(&owner.session) {
                    ids.remove(id);
                    if ids.is_empty() {
                        self.by_session.remove(&owner.session);
                    }
                }
            }
        }
        topic.done.notify_one();
        Some(topic)
    }

    /// Removes one subscriber; `true` when it was its topic's last (the
    /// topic is then removed and its task told to stop).
    fn remove_subscriber(&mut self, id: &str, end: FeedEnd) -> bool {
        let Some(owner) = self.owners.remove(id) else {
            return false;
        };
        if let Some(ids) = self.by_session.get_mut(&owner.session) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_session.remove(&owner.session);
            }
        }
        let Some(topic) = self.topic_mut(&owner.key, owner.serial) else {
            return false;
        };
        if let Some(subscriber) = topic.subscribers.remove(id) {
            subscriber.finish(end);
        }
        if !topic.subscribers.is_empty() {
            return false;
        }
        if let Some(topic) = self.topics.remove(&owner.key) {
            topic.done.notify_one();
            // Whoever still waits for its status learns it is gone.
            topic.status.send_replace(Status::Failed(ErrorObject::new(
                codes::UPSTREAM_UNAVAILABLE,
                "the subscription was ended before it was made",
            )));
        }
        true
    }

    fn gauges(&self, metrics: &Metrics) {
        metrics
            .downstream_subscriptions
            .store(self.owners.len() as u64, Relaxed);
        metrics
            .upstream_subscriptions
            .store(self.live as u64, Relaxed);
    }
}

/// An error object as JSON text.
pub(crate) fn error_json(error: &ErrorObject) -> String {
    serde_json::to_string(error)
        .unwrap_or_else(|_| r#"{"code":-32603,"message":"internal error"}"#.to_owned())
}

/// One subscriber's queue, as its session's writer reads it.
pub(crate) struct Feed {
    pub id: DownId,
    rx: delivery::Receiver<Arc<Event>>,
    end: Arc<OnceLock<FeedEnd>>,
    finished: bool,
}

/// What a [`Feed`] yields.
pub(crate) enum FeedItem {
    /// An event, after `missed` were dropped for this subscriber.
    Event { missed: u64, event: Arc<Event> },
    /// The queue has ended: `missed` were dropped after the last event,
    /// and why it ended (`None`: its topic or session went away).
    End { missed: u64, end: Option<FeedEnd> },
}

impl Feed {
    fn new(id: DownId, rx: delivery::Receiver<Arc<Event>>, end: Arc<OnceLock<FeedEnd>>) -> Feed {
        Feed {
            id,
            rx,
            end,
            finished: false,
        }
    }
}

impl futures_util::Stream for Feed {
    type Item = (DownId, FeedItem);

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        match std::task::ready!(std::pin::Pin::new(&mut this.rx).poll_next(cx)) {
            Some(delivered) => Poll::Ready(Some((
                Arc::clone(&this.id),
                FeedItem::Event {
                    missed: delivered.missed,
                    event: delivered.item,
                },
            ))),
            None => {
                this.finished = true;
                Poll::Ready(Some((
                    Arc::clone(&this.id),
                    FeedItem::End {
                        missed: this.rx.missed_at_end(),
                        end: this.end.get().cloned(),
                    },
                )))
            }
        }
    }
}

/// What a topic's task needs to know.
pub(crate) struct TopicTask {
    pub forward: Forward,
    pub key: Key,
    pub serial: u64,
    pub params: Params,
    pub unsubscribe: String,
    pub done: Arc<Notify>,
}

/// `"method"`: a method name as JSON text.
pub(crate) fn json_string(text: &str) -> Arc<str> {
    Arc::from(Value::from(text).to_string())
}

/// Runs one topic: subscribes upstream, fans out, applies the upstream
/// loss policy, fails over, and unsubscribes when the last subscriber
/// leaves. Every wait is bounded by the proxy's timeout or by an event.
pub(crate) async fn run_topic(task: TopicTask) {
    let TopicTask {
        forward,
        key,
        serial,
        params,
        unsubscribe,
        done,
    } = task;
    let fanout = forward.fanout();
    let metrics = forward.metrics();
    let config = forward.proxy_config().clone();
    let subscribe = |client: crate::Client| {
        let call = Subscribe::new(key.method.clone(), params.clone(), unsubscribe.clone())
            .timeout(config.timeout)
            .capacity(config.subscription_capacity)
            // NOTE: the topic's own queue only ever drops (each subscriber's
            // queue has the configured policy): told to all as `lagged`.
            .overflow(Overflow::DropOldest);
        async move {
            match tokio::time::timeout(config.timeout, client.subscribe_with(call)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(crate::Error::Timeout {
                    call: crate::CallInfo {
                        method: "subscribe".into(),
                        id: 0,
                    },
                    after: config.timeout,
                }),
            }
        }
    };

    let Some((mut current, upstream)) = forward.upstreams().pick() else {
        bump(&metrics.unavailable);
        let error = ErrorObject::new(codes::UPSTREAM_UNAVAILABLE, "no upstream is connected");
        fanout.fail(&key, serial, error, metrics);
        return;
    };
    bump(&metrics.forwarded);
    let mut client = upstream.client.clone();
    let mut sub = match subscribe(client.clone()).await {
        Ok(sub) => sub,
        Err(err) => {
            let error = match err.rpc_error() {
                Some(object) => {
                    bump(&metrics.upstream_errors);
                    object.clone()
                }
                None => forward.upstream_failure(&err),
            };
            fanout.fail(&key, serial, error, metrics);
            return;
        }
    };
    if !fanout.live(&key, serial, metrics) {
        // Everyone left while it was being made.
        end_upstream(sub, config.timeout).await;
        return;
    }
    let gap_method = config.gap_method.as_deref().map(json_string);
    let fallback_method = json_string(&key.method);
    // The last notification's method as sent, and as JSON text.
    let mut last_raw: Option<Arc<str>> = None;
    let mut last_method: Option<Arc<str>> = None;
    let mut events = client.events();
    let mut watching = true;
    // The method of the notifications the proxy makes up: the items' own
    // (the last one's), or the subscribe method before any item came; a
    // gap may have a method of its own.
    let item_method =
        |last: &Option<Arc<str>>| last.clone().unwrap_or_else(|| Arc::clone(&fallback_method));
    let gap_method_for =
        |last: &Option<Arc<str>>| gap_method.clone().unwrap_or_else(|| item_method(last));

    // The loop ends with whether the upstream subscription is still ours
    // to end.
    let keep: Option<Subscription> = loop {
        tokio::select! {
            () = done.notified() => break Some(sub),
            item = sub.next_raw() => match item {
                Some(RawItem::Item { result, method }) => {
                    // The method's JSON text is made once per method, not per item.
                    let json = match &last_raw {
                        Some(raw) if **raw == *method => last_method.clone(),
                        _ => None,
                    };
                    let json = json.unwrap_or_else(|| json_string(&method));
                    last_raw = Some(method);
                    last_method = Some(Arc::clone(&json));
                    fanout.broadcast(&key, serial, Event::Item { method: json, result: result.text }, metrics);
                }
                Some(RawItem::Lagged { missed }) => {
                    let method = item_method(&last_method);
                    fanout.broadcast(&key, serial, Event::Lagged { method, missed }, metrics);
                }
                Some(RawItem::Resubscribed { down_for }) => {
                    let method = gap_method_for(&last_method);
                    fanout.broadcast(&key, serial, Event::Gap { method, down_for }, metrics);
                }
                None => {
                    // The library ended it: the server did, a resubscribe
                    // was refused, or the connection ended for good.
                    let reason = sub.close_reason();
                    let sessions_close = matches!(config.upstream_loss, UpstreamLoss::Close(_))
                        && matches!(reason, Some(SubscriptionEnd::Disconnected { .. }));
                    let error = match reason {
                        Some(SubscriptionEnd::ServerClosed { error }) => error,
                        Some(other) => error_json(&ErrorObject::new(codes::UPSTREAM_UNAVAILABLE, format!("the upstream subscription ended: {other}"))),
                        None => error_json(&ErrorObject::new(codes::UPSTREAM_UNAVAILABLE, "the upstream subscription ended")),
                    };
                    let end = FeedEnd::Error { method: item_method(&last_method), error };
                    let sessions = fanout.end_topic(&key, serial, &end, metrics);
                    if sessions_close {
                        close_sessions(&sessions, config.upstream_loss);
                    }
                    break None;
                }
            },
            event = events.next(), if watching => match event {
                Some(ConnectionEvent::Disconnected { .. }) => {
                    let lost = Instant::now();
                    // Whatever the policy, another healthy upstream takes the
                    // subscription over first: the subscribers see a gap.
                    if let Some((index, other)) = healthy_other(&forward, current) {
                        let other_client = other.client.clone();
                        bump(&metrics.forwarded);
                        match subscribe(other_client.clone()).await {
                            Ok(moved) => {
                                log::info!("subscription {} moved to upstream {index}", key.method);
                                // The old one is down with its connection:
                                // dropping it owes its server nothing.
                                drop(std::mem::replace(&mut sub, moved));
                                current = index;
                                client = other_client;
                                events = client.events();
                                let method = gap_method_for(&last_method);
                                let down_for = lost.elapsed();
                                fanout.broadcast(&key, serial, Event::Gap { method, down_for }, metrics);
                                continue;
                            }
                            Err(err) => log::warn!(
                                "subscription {} could not move to upstream {index}: {err}",
                                key.method
                            ),
                        }
                    }
                    match config.upstream_loss {
                        UpstreamLoss::ErrorNotification => {
                            let error = error_json(&ErrorObject::new(
                                codes::UPSTREAM_UNAVAILABLE,
                                "the upstream connection was lost; the subscription is ended",
                            ));
                            let end = FeedEnd::Error { method: item_method(&last_method), error };
                            fanout.end_topic(&key, serial, &end, metrics);
                            break None;
                        }
                        UpstreamLoss::Close(_) => {
                            let sessions = fanout.end_topic(&key, serial, &FeedEnd::Unsubscribed, metrics);
                            close_sessions(&sessions, config.upstream_loss);
                            break None;
                        }
                        // Resubscribe (and anything added later): the library
                        // makes it again when its connection is back.
                        _ => {}
                    }
                }
                Some(_) => {}
                None => watching = false,
            },
        }
    };
    if let Some(sub) = keep {
        end_upstream(sub, config.timeout).await;
    }
    fanout.upstream_ended(metrics);
}

/// A healthy upstream other than `current`, the least loaded.
fn healthy_other(forward: &Forward, current: usize) -> Option<(usize, &super::upstream::Upstream)> {
    forward
        .upstreams()
        .all()
        .iter()
        .enumerate()
        .filter(|(n, u)| *n != current && u.client.is_connected() && !u.client.is_reconnecting())
        .min_by_key(|(_, u)| u.client.pending_now())
}

fn close_sessions(sessions: &[Arc<SessionLink>], policy: UpstreamLoss) {
    let UpstreamLoss::Close(code) = policy else {
        return;
    };
    // A code a server may not send would make an invalid close frame.
    let code = if may_send_close_code(code) {
        code
    } else {
        1011
    };
    for session in sessions {
        let _ = session.close(code, "the upstream connection was lost");
    }
}

/// Unsubscribes upstream, bounded; nobody waits for the answer.
async fn end_upstream(sub: Subscription, timeout: Duration) {
    match tokio::time::timeout(timeout, sub.unsubscribe()).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => log::debug!("an upstream unsubscribe failed: {err}"),
        Err(_) => log::debug!("an upstream unsubscribe got no answer within {timeout:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::default()
    }

    fn key(params: &str) -> Key {
        Key {
            method: "eth_subscribe".into(),
            params: canonical(Some(params)).unwrap(),
        }
    }

    #[test]
    fn canonical_params_sort_keys_at_every_depth_and_drop_whitespace() {
        let a = canonical(Some(
            r#"["logs", {"topics": [{"b":1,"a":2}], "address": "0x1"}]"#,
        ));
        let b = canonical(Some(
            r#"["logs",{"address":"0x1","topics":[{"a":2,"b":1}]}]"#,
        ));
        assert_eq!(a, b);
        assert_eq!(
            a.unwrap(),
            r#"["logs",{"address":"0x1","topics":[{"a":2,"b":1}]}]"#
        );
        assert_ne!(canonical(Some("[1,2]")), canonical(Some("[2,1]")));
        assert_eq!(canonical(None).unwrap(), "");
        assert_eq!(canonical(Some("[1,")).unwrap_err().code, -32602);
        assert_eq!(canonical(Some("5")).unwrap_err().code, -32602);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(canonical(Some(&deep)).unwrap_err().code, -32602);
    }

    #[test]
    fn ids_are_unique_hex() {
        let a = next_id();
        let b = next_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 34);
        assert!(a.starts_with("0x") && a[2..].bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn events_render_with_the_subscribers_id_and_the_result_as_sent() {
        let item = Event::Item {
            method: json_string("eth_subscription"),
            result: ByteString::from_static(r#"{"b":1, "a":[2]}"#),
        };
        assert_eq!(
            item.render("0x1"),
            r#"{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x1","result":{"b":1, "a":[2]}}}"#
        );
        let gap = Event::Gap {
            method: json_string("gap\"s"),
            down_for: Duration::from_millis(1500),
        };
        assert_eq!(
            gap.render("0x2"),
            r#"{"jsonrpc":"2.0","method":"gap\"s","params":{"subscription":"0x2","gap":{"down_for_ms":1500}}}"#
        );
        assert_eq!(
            render_lagged(r#""m""#, "0x3", 7),
            r#"{"jsonrpc":"2.0","method":"m","params":{"subscription":"0x3","lagged":{"missed":7}}}"#
        );
        assert_eq!(
            render_end(r#""m""#, "0x4", r#"{"code":-32002,"message":"lost"}"#),
            r#"{"jsonrpc":"2.0","method":"m","params":{"subscription":"0x4","error":{"code":-32002,"message":"lost"}}}"#
        );
        for text in [item.render("0x1"), gap.render("0x2")] {
            serde_json::from_str::<Value>(&text).unwrap();
        }
    }

    fn drain(feed: &mut Feed) -> Vec<FeedItem> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        while let std::task::Poll::Ready(Some((_, item))) =
            futures_util::Stream::poll_next(std::pin::Pin::new(&mut *feed), &mut cx)
        {
            out.push(item);
        }
        out
    }

    fn item(n: u32) -> Event {
        Event::Item {
            method: json_string("m"),
            result: ByteString::from(n.to_string()),
        }
    }

    #[test]
    fn identical_subscribes_share_one_topic_until_the_last_leaves() {
        let fanout = Fanout::default();
        let m = metrics();
        let (s1, _) = SessionLink::new(1);
        let (s2, _) = SessionLink::new(2);
        let a = fanout.join(
            key(r#"["x",{"a":1,"b":2}]"#),
            &s1,
            8,
            Overflow::DropOldest,
            &m,
        );
        let b = fanout.join(
            key(r#"["x",{"b":2,"a":1}]"#),
            &s2,
            8,
            Overflow::DropOldest,
            &m,
        );
        let c = fanout.join(key(r#"["y"]"#), &s2, 8, Overflow::DropOldest, &m);
        let start = a.start.expect("the first starts the topic");
        assert!(b.start.is_none(), "the second shares it");
        let c_start = c.start.expect("other params, another topic");
        assert_ne!(a.id, b.id);
        assert_eq!(m.snapshot().downstream_subscriptions, 3);
        let k = key(r#"["x",{"a":1,"b":2}]"#);
        assert!(fanout.live(&k, start.serial, &m));
        assert!(matches!(*b.status.borrow(), Status::Live));
        assert_eq!(m.snapshot().upstream_subscriptions, 1);

        fanout.broadcast(&k, start.serial, item(1), &m);
        let (mut fa, mut fb, mut fc) = (a.feed, b.feed, c.feed);
        assert_eq!(drain(&mut fa).len(), 1);
        assert_eq!(drain(&mut fb).len(), 1);
        assert_eq!(drain(&mut fc).len(), 0, "only its subscribers");

        assert_eq!(fanout.leave(2, &a.id, &m), None, "not session 2's");
        assert_eq!(fanout.leave(1, &a.id, &m), Some(false), "b still there");
        assert!(matches!(
            drain(&mut fa).as_slice(),
            [FeedItem::End {
                end: Some(FeedEnd::Unsubscribed),
                ..
            }]
        ));
        assert_eq!(fanout.leave(1, &a.id, &m), None, "once");
        fanout.session_ended(2, &m);
        assert_eq!(m.snapshot().downstream_subscriptions, 0);
        assert_eq!(fanout.count(2), 0);
        // Both topics were told to stop: a permit is stored for each task.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for done in [&start.done, &c_start.done] {
            let notified = done.notified();
            futures_util::pin_mut!(notified);
            assert!(std::future::Future::poll(notified, &mut cx).is_ready());
        }
        // A new subscribe with the same key makes a new topic.
        let again = fanout.join(k.clone(), &s1, 8, Overflow::DropOldest, &m);
        assert!(again.start.is_some_and(|s| s.serial != start.serial));
        // The old topic's late calls do not touch the new one.
        assert!(!fanout.live(&k, start.serial, &m));
        fanout.broadcast(&k, start.serial, item(2), &m);
        let mut f = again.feed;
        assert_eq!(drain(&mut f).len(), 0);
    }

    #[test]
    fn a_failed_topic_tells_every_waiting_subscriber() {
        let fanout = Fanout::default();
        let m = metrics();
        let (s1, _) = SessionLink::new(1);
        let a = fanout.join(key("[1]"), &s1, 8, Overflow::DropOldest, &m);
        let b = fanout.join(key("[1]"), &s1, 8, Overflow::DropOldest, &m);
        let serial = a.start.unwrap().serial;
        fanout.fail(&key("[1]"), serial, ErrorObject::new(-32601, "nope"), &m);
        for status in [&a.status, &b.status] {
            assert!(matches!(&*status.borrow(), Status::Failed(e) if e.code == -32601));
        }
        assert_eq!(fanout.count(1), 0);
        assert_eq!(m.snapshot().downstream_subscriptions, 0);
    }

    #[test]
    fn a_subscriber_too_slow_under_close_is_ended_alone_with_an_error() {
        let fanout = Fanout::default();
        let m = metrics();
        let (s1, _) = SessionLink::new(1);
        let (s2, _) = SessionLink::new(2);
        let slow = fanout.join(key("[1]"), &s1, 2, Overflow::Close, &m);
        let fast = fanout.join(key("[1]"), &s2, 8, Overflow::Close, &m);
        let serial = slow.start.unwrap().serial;
        assert!(fanout.live(&key("[1]"), serial, &m));
        for n in 0..3 {
            fanout.broadcast(&key("[1]"), serial, item(n), &m);
        }
        let mut f = slow.feed;
        let items = drain(&mut f);
        assert_eq!(items.len(), 3, "two items, then the end");
        match &items[2] {
            FeedItem::End {
                end: Some(FeedEnd::Error { error, .. }),
                ..
            } => assert!(error.contains("-32005"), "{error}"),
            _ => panic!("no error end"),
        }
        let mut f = fast.feed;
        assert_eq!(
            drain(&mut f).len(),
            3,
            "the other subscriber got everything"
        );
        assert_eq!(fanout.count(1), 0);
        assert_eq!(fanout.count(2), 1);
        assert_eq!(m.snapshot().subscription_items_dropped, 1);
    }

    #[test]
    fn ending_a_topic_tells_each_subscriber_and_names_their_sessions() {
        let fanout = Fanout::default();
        let m = metrics();
        let (s1, mut closed1) = SessionLink::new(1);
        let a = fanout.join(key("[1]"), &s1, 8, Overflow::DropOldest, &m);
        let serial = a.start.unwrap().serial;
        assert!(fanout.live(&key("[1]"), serial, &m));
        fanout.broadcast(&key("[1]"), serial, item(1), &m);
        let end = FeedEnd::Error {
            method: json_string("m"),
            error: "{}".into(),
        };
        let sessions = fanout.end_topic(&key("[1]"), serial, &end, &m);
        assert_eq!(sessions.len(), 1);
        assert!(sessions[0].close(1012, "restart"));
        assert!(!sessions[0].close(1013, "second"));
        assert_eq!(
            closed1.borrow_and_update().clone(),
            Some((1012, "restart".to_owned())),
            "the first close wins"
        );
        let mut f = a.feed;
        let items = drain(&mut f);
        assert!(matches!(
            items.as_slice(),
            [
                FeedItem::Event { .. },
                FeedItem::End {
                    end: Some(FeedEnd::Error { .. }),
                    ..
                }
            ]
        ));
        fanout.upstream_ended(&m);
        assert_eq!(m.snapshot().upstream_subscriptions, 0);
    }
}
