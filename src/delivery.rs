//! Bounded queues between the connection and each consumer of what the
//! server pushes (a notification listener now, subscriptions later), with a
//! policy for "full" that is never silent: every item dropped is counted and
//! the consumer is told how many it missed.
//!
//! No actix in here; the sending half lives with the connection, the
//! receiving half with whoever consumes (any thread).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use futures_util::Stream;

/// What a consumer's full queue does with one more item.
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::{Overflow, RegisterListener, ServerNotification};
///
/// let listener = RegisterListener::func("ticker.", |n: ServerNotification| {
///     if n.missed > 0 {
///         eprintln!("missed {} ticks", n.missed);
///     }
/// })
/// .capacity(64)
/// .overflow(Overflow::DropOldest);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the oldest queued item to make room for the new one. The next
    /// item the consumer gets says how many it missed. The default: a
    /// consumer that falls behind resumes with the freshest items.
    #[default]
    DropOldest,
    /// Drop the new item. The next item the consumer gets says how many it
    /// missed.
    DropNewest,
    /// Stop delivering: the consumer gets what was queued and then ends
    /// (a listener is removed, a subscription ends with
    /// [`SubscriptionEnd::Lagged`](crate::SubscriptionEnd::Lagged)), with the
    /// overflow logged.
    Close,
    /// Keep only the newest item (a queue of one, whatever the capacity
    /// says): for feeds where only the latest value matters (prices, chain
    /// heads). The next item says how many were replaced.
    KeepLatest,
}

/// An item with the number of items dropped just before it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delivered<T> {
    pub item: T,
    pub missed: u64,
}

/// What became of one pushed item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued without loss.
    Queued,
    /// The queue was full: an item was dropped (the new one or the oldest).
    Dropped,
    /// The queue was full and closes now ([`Overflow::Close`]); the item was dropped.
    Overflowed,
    /// The queue is closed, or its consumer is gone; the item was dropped.
    Closed,
}

/// One queued item.
struct Slot<T> {
    item: T,
    /// Items dropped just before it.
    missed: u64,
    /// A marker ([`Sender::push_marker`]): never dropped, not counted
    /// against the capacity.
    marker: bool,
}

struct State<T> {
    items: VecDeque<Slot<T>>,
    /// How many of `items` are markers.
    markers: usize,
    capacity: usize,
    overflow: Overflow,
    /// Dropped after the last queued item: told with the next one pushed,
    /// or at the end.
    missed_at_tail: u64,
    /// Dropped in all.
    missed: u64,
    /// No more items will come (the sender closed, or overflowed with `Close`).
    closed: bool,
    /// The receiver was dropped.
    receiver_gone: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// The consumer's waker.
    waker: AtomicWaker,
}

impl<T> State<T> {
    fn push_back(&mut self, item: T, marker: bool) {
        let missed = std::mem::take(&mut self.missed_at_tail);
        self.items.push_back(Slot {
            item,
            missed,
            marker,
        });
        if marker {
            self.markers += 1;
        }
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock leaves consistent state (every
        // mutation is a single step), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bounded queue of at most `capacity` items (at least 1).
pub(crate) fn channel<T>(capacity: usize, overflow: Overflow) -> (Sender<T>, Receiver<T>) {
    let capacity = match overflow {
        Overflow::KeepLatest => 1,
        _ => capacity.max(1),
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            markers: 0,
            capacity,
            overflow,
            missed_at_tail: 0,
            missed: 0,
            closed: false,
            receiver_gone: false,
        }),
        waker: AtomicWaker::new(),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

/// The producing half.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item` under the queue's overflow policy.
    pub fn push(&self, item: T) -> Pushed {
        let pushed = {
            let mut state = self.shared.lock();
            if state.closed || state.receiver_gone {
                return Pushed::Closed;
            }
            if state.items.len() - state.markers < state.capacity {
                state.push_back(item, false);
                Pushed::Queued
            } else {
                match state.overflow {
                    Overflow::DropOldest | Overflow::KeepLatest => {
                        // The oldest item (never a marker) goes; the one
                        // after it was preceded by it and by what it was
                        // preceded by.
                        let oldest = state.items.iter().position(|slot| !slot.marker);
                        let dropped = oldest.and_then(|at| {
                            state.items.remove(at).map(|slot| (at, slot.missed + 1))
                        });
                        state.push_back(item, false);
                        if let Some((at, dropped)) = dropped {
                            if let Some(next) = state.items.get_mut(at) {
                                next.missed += dropped;
                            }
                        }
                        state.missed += 1;
                        Pushed::Dropped
                    }
                    Overflow::DropNewest => {
                        state.missed_at_tail += 1;
                        state.missed += 1;
                        Pushed::Dropped
                    }
                    Overflow::Close => {
                        state.missed += 1;
                        state.closed = true;
                        Pushed::Overflowed
                    }
                }
            }
        };
        self.shared.waker.wake();
        pushed
    }

    /// Queues `marker`, an item no overflow policy drops (it is not counted
    /// against the capacity): the end of a gap must reach a consumer that is
    /// behind. A marker right behind another is merged into it by `merge`
    /// instead, so markers never outnumber the items between them (the
    /// queue stays bounded at twice its capacity, plus one).
    pub fn push_marker(&self, marker: T, merge: impl FnOnce(&mut T, T)) -> Pushed {
        {
            let mut state = self.shared.lock();
            if state.closed || state.receiver_gone {
                return Pushed::Closed;
            }
            let merge_into_last =
                state.missed_at_tail == 0 && state.items.back().is_some_and(|slot| slot.marker);
            match state.items.back_mut() {
                Some(last) if merge_into_last => merge(&mut last.item, marker),
                _ => state.push_back(marker, true),
            }
        }
        self.shared.waker.wake();
        Pushed::Queued
    }

    /// Whether the consumer has gone away or the queue has closed.
    pub fn is_closed(&self) -> bool {
        let state = self.shared.lock();
        state.closed || state.receiver_gone
    }

    /// Ends the queue: the consumer gets what is queued, then the end.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.waker.wake();
    }

    /// How many items were dropped in all.
    pub fn missed(&self) -> u64 {
        self.shared.lock().missed
    }

    /// Items queued now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// The consuming half: a stream of items, each with how many were missed
/// just before it. It ends once the queue is closed and drained.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    fn take(&self) -> Poll<Option<Delivered<T>>> {
        let mut state = self.shared.lock();
        if let Some(Slot {
            item,
            missed,
            marker,
        }) = state.items.pop_front()
        {
            if marker {
                state.markers -= 1;
            }
            return Poll::Ready(Some(Delivered { item, missed }));
        }
        if state.closed {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

impl<T> Receiver<T> {
    /// Items dropped after the last one delivered, once the queue has ended
    /// (only [`Overflow::DropNewest`] leaves any; a queue that closed on
    /// overflow says so by ending).
    pub fn missed_at_end(&self) -> u64 {
        self.shared.lock().missed_at_tail
    }
}

impl<T> Stream for Receiver<T> {
    type Item = Delivered<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(next) = self.take() {
            return Poll::Ready(next);
        }
        // Registered before looking again, so a push in between is not missed.
        self.shared.waker.register(cx.waker());
        self.take()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        // What was queued can never be delivered now: free it.
        state.items.clear();
        state.markers = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn drain<T>(rx: &mut Receiver<T>) -> Vec<Delivered<T>> {
        let mut out = Vec::new();
        while let Poll::Ready(Some(d)) = rx.take() {
            out.push(d);
        }
        out
    }

    fn delivered(items: &[(u32, u64)]) -> Vec<Delivered<u32>> {
        items
            .iter()
            .map(|&(item, missed)| Delivered { item, missed })
            .collect()
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_says_how_many_were_missed() {
        let (tx, mut rx) = channel(3, Overflow::DropOldest);
        let pushed: Vec<Pushed> = (1..=5).map(|i| tx.push(i)).collect();
        assert_eq!(pushed[..3], [Pushed::Queued; 3]);
        assert_eq!(pushed[3..], [Pushed::Dropped; 2]);
        assert_eq!(tx.len(), 3);
        assert_eq!(drain(&mut rx), delivered(&[(3, 2), (4, 0), (5, 0)]));
        tx.push(6);
        assert_eq!(drain(&mut rx), delivered(&[(6, 0)]));
        assert_eq!(tx.missed(), 2);
    }

    #[test]
    fn keep_latest_keeps_one() {
        let (tx, mut rx) = channel(100, Overflow::KeepLatest);
        for i in 1..=5 {
            tx.push(i);
        }
        assert_eq!(drain(&mut rx), delivered(&[(5, 4)]));
        tx.push(6);
        assert_eq!(drain(&mut rx), delivered(&[(6, 0)]));
    }

    #[test]
    fn drop_newest_keeps_the_oldest() {
        let (tx, mut rx) = channel(2, Overflow::DropNewest);
        for i in 1..=5 {
            tx.push(i);
        }
        // The drops came after 2: the next item pushed says so.
        assert_eq!(drain(&mut rx), delivered(&[(1, 0), (2, 0)]));
        tx.push(9);
        assert_eq!(drain(&mut rx), delivered(&[(9, 3)]));
        tx.push(10);
        tx.push(11);
        tx.push(12);
        drop(tx);
        assert_eq!(drain(&mut rx), delivered(&[(10, 0), (11, 0)]));
        assert_eq!(rx.missed_at_end(), 1);
    }

    /// Polls the stream to its end with a waker that must never be needed.
    fn collect_ready<T>(mut rx: Receiver<T>) -> Vec<Delivered<T>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut rx).poll_next(&mut cx) {
                Poll::Ready(Some(d)) => out.push(d),
                Poll::Ready(None) => return out,
                Poll::Pending => panic!("the stream waits although it should have ended"),
            }
        }
    }

    #[test]
    fn close_policy_delivers_what_was_queued_then_ends() {
        let (tx, rx) = channel(2, Overflow::Close);
        assert_eq!(tx.push(1), Pushed::Queued);
        assert_eq!(tx.push(2), Pushed::Queued);
        assert_eq!(tx.push(3), Pushed::Overflowed);
        assert_eq!(tx.push(4), Pushed::Closed);
        assert!(tx.is_closed());
        assert_eq!(tx.missed(), 1);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut rx = rx;
        assert!(matches!(
            Pin::new(&mut rx).poll_next(&mut cx),
            Poll::Ready(Some(_))
        ));
        assert_eq!(rx.missed_at_end(), 0, "the end itself says why");
        assert_eq!(collect_ready(rx), delivered(&[(2, 0)]));
    }

    #[test]
    fn a_gone_receiver_frees_the_queue_and_refuses_more() {
        let (tx, rx) = channel(8, Overflow::DropOldest);
        tx.push(String::from("a"));
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.push(String::from("b")), Pushed::Closed);
        assert_eq!(tx.len(), 0);
    }

    #[test]
    fn the_stream_ends_when_the_sender_goes() {
        let (tx, rx) = channel(8, Overflow::DropOldest);
        tx.push(1);
        drop(tx);
        assert_eq!(collect_ready(rx), delivered(&[(1, 0)]));
    }

    #[test]
    fn a_waiting_consumer_is_woken_by_a_push() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(Default::default()));
        let waker = std::task::Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = channel(8, Overflow::DropOldest);
        assert!(Pin::new(&mut rx).poll_next(&mut cx).is_pending());
        tx.push(7);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(
            Pin::new(&mut rx).poll_next(&mut cx),
            Poll::Ready(Some(Delivered { item: 7, missed: 0 }))
        );
    }

    #[test]
    fn markers_survive_every_policy_and_do_not_pile_up() {
        for overflow in [
            Overflow::DropOldest,
            Overflow::KeepLatest,
            Overflow::DropNewest,
        ] {
            let (tx, mut rx) = channel::<u32>(2, overflow);
            tx.push(1);
            tx.push(2);
            tx.push_marker(100, |a, b| *a += b);
            tx.push_marker(200, |a, b| *a += b);
            for n in 3..10 {
                tx.push(n);
            }
            let got: Vec<u32> = drain(&mut rx).into_iter().map(|d| d.item).collect();
            assert!(
                got.contains(&300),
                "{overflow:?}: the marker was lost: {got:?}"
            );
            assert_eq!(
                got.iter().filter(|&&n| n >= 100).count(),
                1,
                "{overflow:?}: merged"
            );
            assert!(got.len() <= 2 * 2 + 1, "{overflow:?}: bounded: {got:?}");
        }
    }

    #[test]
    fn a_marker_keeps_its_place_and_the_missed_counts_stay_exact() {
        let (tx, mut rx) = channel::<u32>(2, Overflow::DropOldest);
        tx.push(1);
        tx.push_marker(100, |a, b| *a += b);
        tx.push(2);
        tx.push(3); // drops 1
        tx.push(4); // drops 2
        assert_eq!(delivered(&[(100, 1), (3, 1), (4, 0)]), drain(&mut rx));
    }
}
