//! Notifications from the server: every listener whose route matches gets
//! one, through a bounded queue of its own drained by a task of its own, so
//! a slow listener delays nobody and cannot grow memory (its queue's
//! [`Overflow`] policy decides, and counts, what it misses).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::StreamExt as _;
use serde_json::Value;

use crate::delivery::{self, Overflow, Pushed};
use crate::message::{ListenerKind, RegisterListener, ServerNotification};
use crate::protocol::Notification;
use crate::registry::{Registry, Route};
use crate::stats::{self, Metrics};

/// The queue capacity and overflow policy of listeners that do not choose.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Defaults {
    pub capacity: usize,
    pub overflow: Overflow,
}

/// The sending end of one listener's queue.
struct Listener {
    queue: delivery::Sender<ServerNotification>,
}

/// Listeners by route.
pub(crate) struct Listeners {
    routes: Registry<Vec<Listener>>,
    defaults: Defaults,
    metrics: Arc<Metrics>,
}

impl Listeners {
    pub fn new(defaults: Defaults, metrics: Arc<Metrics>) -> Self {
        Listeners {
            routes: Registry::default(),
            defaults,
            metrics,
        }
    }

    /// Adds a listener and starts the task that drains its queue. Must run
    /// inside the connection's arbiter (the task is local to its thread).
    pub fn add(&mut self, message: RegisterListener) {
        let capacity = message.capacity.unwrap_or(self.defaults.capacity);
        let overflow = message.overflow.unwrap_or(self.defaults.overflow);
        let (queue, mut rx) = delivery::channel::<ServerNotification>(capacity, overflow);
        let metrics = Arc::clone(&self.metrics);
        let route = message.route.clone();
        match message.listener {
            ListenerKind::Actor(recipient) => {
                actix::spawn(async move {
                    while let Some(delivered) = rx.next().await {
                        let mut notification = delivered.item;
                        notification.missed = delivered.missed;
                        // One at a time: the next waits until this one is handled.
                        if recipient.send(notification).await.is_err() {
                            log::debug!("the listener actor at {route} has stopped");
                            break;
                        }
                    }
                });
            }
            ListenerKind::Func(f) => {
                actix::spawn(async move {
                    while let Some(delivered) = rx.next().await {
                        let mut notification = delivered.item;
                        notification.missed = delivered.missed;
                        let method = notification.method.clone();
                        if std::panic::catch_unwind(AssertUnwindSafe(|| f(notification))).is_err() {
                            stats::add(&metrics.handler_panics, 1);
                            log::error!(
                                "the listener at {route} panicked on a '{method}' notification"
                            );
                        }
                    }
                });
            }
        }
        self.routes
            .entry(message.route, Vec::new)
            .push(Listener { queue });
    }

    /// Removes every listener at exactly `route` (each still gets what is
    /// already in its queue).
    pub fn remove(&mut self, route: &Route) {
        self.routes.remove(route);
    }

    /// Queues the notification for every matching listener.
    pub fn tell(&mut self, notification: Notification<'_>) {
        stats::add(&self.metrics.server_notifications, 1);
        let Notification { method, params, .. } = notification;
        let params = match params.map(serde_json::from_str::<Value>) {
            None => Value::Null,
            Some(Ok(params)) => params,
            Some(Err(err)) => {
                stats::add(&self.metrics.invalid_messages, 1);
                log::warn!("skipped the server's notification '{method}': its params cannot be read ({err})");
                return;
            }
        };
        let message = ServerNotification::new(method, params);
        let mut told = 0;
        let mut closed = false;
        for (route, listeners) in self.routes.matching(&message.method) {
            for listener in listeners.iter() {
                match listener.queue.push(message.clone()) {
                    Pushed::Queued => told += 1,
                    Pushed::Dropped => {
                        told += 1;
                        stats::add(&self.metrics.notifications_dropped, 1);
                    }
                    Pushed::Overflowed => {
                        stats::add(&self.metrics.notifications_dropped, 1);
                        log::warn!(
                            "a listener at {route} fell behind and was closed (its overflow policy is Close)"
                        );
                        closed = true;
                    }
                    Pushed::Closed => closed = true,
                }
            }
        }
        if closed {
            self.routes.retain(|listeners| {
                listeners.retain(|l| !l.queue.is_closed());
                !listeners.is_empty()
            });
        }
        if told == 0 {
            log::debug!("server notification '{}' has no listener", message.method);
        }
    }
}
