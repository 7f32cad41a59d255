//! The pending-call table: id → who is waiting, and until when.
//!
//! A call is either *sent* (its frame is queued for the socket; it waits for
//! the response) or *unsent* (a bound was full: it waits, first come first
//! served, with its frame ready, to be sent). Both kinds share deadlines,
//! responders and cancellation, so a call waiting for room ends like any
//! other: result, error, timeout or disconnect.
//!
//! No actix in here: the actor decides when to call [`PendingCalls::expire`]
//! and [`PendingCalls::cancel`]; this type keeps the books and its own gauge
//! (`Stats::pending`), so every path is unit-tested.
//!
//! A caller that stops waiting (drops its future) must not leave its entry
//! behind until the timeout. Each waiting caller's reply channel is asked to
//! wake a [`CancelWaker`] when its receiving side is dropped; the waker
//! queues the id in [`Cancellations`], which the actor drains.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;

use crate::error::{CallInfo, Error};
use crate::message::Reply;
use crate::protocol::ErrorObject;
use crate::protocol::RawResult;
use crate::stats::{self, Metrics};

/// Told the outcome of one call, once.
pub(crate) trait Responder {
    /// Delivers the outcome.
    fn respond(self: Box<Self>, outcome: Result<Reply, Error>);
    /// Ready once the caller has stopped waiting; otherwise `cx`'s waker is
    /// woken when it does.
    fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// The caller stopped waiting for call `id`, whose entry is gone: a
    /// late answer will match nothing. For calls whose answer must still be
    /// acted on (a subscribe call creates something on the server).
    fn abandoned(self: Box<Self>, _id: u64) {}
}

/// Told the outcomes of one batch's calls, each by its place in the batch.
/// One serves the whole batch (its calls share one caller), so a batch's
/// calls need no allocation each.
pub(crate) trait BatchResponder {
    /// Delivers the outcome of the batch's call number `index`.
    fn respond(&self, index: usize, outcome: Result<Reply, Error>);
    /// Ready once the batch's caller has stopped waiting; otherwise `cx`'s
    /// waker is woken when it does.
    fn poll_gone(&self, cx: &mut Context<'_>) -> Poll<()>;
    /// The caller stopped waiting and the batch's calls are gone from the
    /// table (told once per call).
    fn abandoned(&self) {}
}

/// Who waits for one call.
enum Waiter {
    /// A caller of its own.
    One(Box<dyn Responder>),
    /// The caller of the batch the call is number `index` of.
    InBatch {
        batch: Rc<dyn BatchResponder>,
        index: usize,
    },
}

impl Waiter {
    fn respond(self, outcome: Result<Reply, Error>) {
        match self {
            Waiter::One(responder) => responder.respond(outcome),
            Waiter::InBatch { batch, index } => batch.respond(index, outcome),
        }
    }

    fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Waiter::One(responder) => responder.poll_gone(cx),
            Waiter::InBatch { batch, .. } => batch.poll_gone(cx),
        }
    }

    /// See [`Responder::abandoned`] and [`BatchResponder::abandoned`].
    fn abandoned(self, id: u64) {
        match self {
            Waiter::One(responder) => responder.abandoned(id),
            Waiter::InBatch { batch, .. } => batch.abandoned(),
        }
    }
}

struct Entry {
    call: CallInfo,
    deadline: Instant,
    timeout: Duration,
    /// `None` until attached, and for calls nobody waits for (`do_send`).
    responder: Option<Waiter>,
    /// The frame of a call not sent yet.
    unsent: Option<Bytes>,
    /// The batch the call was sent in (the id of its first call).
    group: Option<u64>,
    /// The frame of a call that may be sent again on a new connection
    /// ([`Call::retry_on_reconnect`](crate::Call::retry_on_reconnect)); taken
    /// when it is, so it is sent again once at most.
    retry: Option<Bytes>,
}

impl Entry {
    fn tell(self, outcome: impl FnOnce(CallInfo) -> Result<Reply, Error>) {
        if let Some(responder) = self.responder {
            responder.respond(outcome(self.call));
        }
    }
}

/// Our ids are sequential integers: a multiplicative hash spreads them well
/// and costs one instruction, where SipHash costs dozens.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Table = HashMap<u64, Entry, BuildHasherDefault<IdHasher>>;

/// Ids of calls whose callers went away, queued from any thread.
#[derive(Default)]
pub(crate) struct Cancellations {
    ids: Mutex<Vec<u64>>,
    waker: AtomicWaker,
}

impl Cancellations {
    /// Takes the queued ids, or registers `cx` to hear of the next.
    pub fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<Vec<u64>> {
        let ids = self.take();
        if !ids.is_empty() {
            return Poll::Ready(ids);
        }
        self.waker.register(cx.waker());
        let ids = self.take();
        if ids.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(ids)
        }
    }

    /// Takes the queued ids without waiting for more.
    pub fn take(&self) -> Vec<u64> {
        std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push(&self, id: u64) {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).push(id);
        self.waker.wake();
    }
}

/// Woken when the caller of call `id` drops its receiving end.
struct CancelWaker {
    id: u64,
    queue: Arc<Cancellations>,
}

impl Wake for CancelWaker {
    fn wake(self: Arc<Self>) {
        self.queue.push(self.id);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.push(self.id);
    }
}

struct Inner {
    entries: Table,
    /// Every call's (deadline, id), and every batch's (deadline, batch id)
    /// once for all its calls, in deadline order: expiring is a walk from
    /// the front, whatever the mix of timeouts.
    deadlines: BTreeSet<(Instant, u64)>,
    /// Ids of unsent calls in arrival order; ids of calls that ended while
    /// waiting are skipped when met, and compacted away when they pile up.
    unsent: VecDeque<u64>,
    /// How many entries are unsent.
    unsent_count: usize,
    /// Batches with calls still pending, by the id of their first call.
    groups: HashMap<u64, Group, BuildHasherDefault<IdHasher>>,
    metrics: Arc<Metrics>,
    cancellations: Arc<Cancellations>,
    /// Entries `expire` has looked at, for the test that keeps it from
    /// scanning the whole table on every tick.
    #[cfg(test)]
    examined: usize,
}

/// The calls of one batch, which share one deadline.
struct Group {
    /// Their ids: a batch's calls take consecutive ids.
    ids: Range<u64>,
    /// How many are still pending.
    left: usize,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        match entry.group {
            // The batch's deadline goes with its last call.
            Some(group) => {
                if let Some(g) = self.groups.get_mut(&group) {
                    g.left -= 1;
                    if g.left == 0 {
                        self.groups.remove(&group);
                        self.deadlines.remove(&(entry.deadline, group));
                    }
                }
            }
            None => {
                self.deadlines.remove(&(entry.deadline, id));
            }
        }
        if entry.unsent.is_some() {
            self.unsent_count -= 1;
            if self.unsent.len() > 2 * self.unsent_count + 16 {
                let entries = &self.entries;
                self.unsent
                    .retain(|id| entries.get(id).is_some_and(|e| e.unsent.is_some()));
            }
        }
        self.update_gauges();
        Some(entry)
    }

    fn update_gauges(&self) {
        stats::set(&self.metrics.pending, self.entries.len());
        stats::set(&self.metrics.queued_calls, self.unsent_count);
    }

    fn insert(
        &mut self,
        call: CallInfo,
        deadline: Instant,
        timeout: Duration,
        unsent: Option<Bytes>,
    ) {
        let id = call.id;
        if unsent.is_some() {
            self.unsent.push_back(id);
            self.unsent_count += 1;
        }
        self.deadlines.insert((deadline, id));
        self.entries
            .insert(id, Entry::new(call, deadline, timeout, unsent, None));
        self.update_gauges();
    }

    /// Removes every call of batch `group` still pending.
    fn remove_group(&mut self, group: u64) -> Vec<Entry> {
        let ids = self.groups.get(&group).map(|g| g.ids.clone());
        ids.unwrap_or_default()
            .filter_map(|id| self.remove(id))
            .collect()
    }
}

impl Entry {
    fn new(
        call: CallInfo,
        deadline: Instant,
        timeout: Duration,
        unsent: Option<Bytes>,
        group: Option<u64>,
    ) -> Self {
        Entry {
            deadline,
            timeout,
            call,
            responder: None,
            unsent,
            group,
            retry: None,
        }
    }
}

/// Calls sent and not yet answered. A cheap handle: the actor holds one, and
/// each call's reply holds one just long enough to attach its responder
/// (actix hands over the reply channel after the handler has returned).
#[derive(Clone)]
pub(crate) struct PendingCalls {
    inner: Rc<RefCell<Inner>>,
}

impl PendingCalls {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        PendingCalls {
            inner: Rc::new(RefCell::new(Inner {
                entries: Table::default(),
                deadlines: BTreeSet::new(),
                unsent: VecDeque::new(),
                unsent_count: 0,
                groups: HashMap::default(),
                metrics,
                cancellations: Arc::default(),
                #[cfg(test)]
                examined: 0,
            })),
        }
    }

    /// Calls in the table, sent or not.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.borrow().entries.len()
    }

    /// Calls sent and waiting for their response.
    pub fn sent(&self) -> usize {
        let inner = self.inner.borrow();
        inner.entries.len() - inner.unsent_count
    }

    /// Calls waiting to be sent.
    pub fn unsent(&self) -> usize {
        self.inner.borrow().unsent_count
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the ids of abandoned calls are queued.
    pub fn cancellations(&self) -> Arc<Cancellations> {
        Arc::clone(&self.inner.borrow().cancellations)
    }

    /// Registers a sent call that must end by `now + timeout`; returns that
    /// deadline. A timeout too large to add (`Duration::MAX`) means "a
    /// century", not a panic.
    pub fn insert(&self, call: CallInfo, now: Instant, timeout: Duration) -> Instant {
        let deadline = deadline(now, timeout);
        self.inner
            .borrow_mut()
            .insert(call, deadline, timeout, None);
        deadline
    }

    /// Registers a call that waits to be sent, behind every other such call.
    pub fn insert_unsent(
        &self,
        call: CallInfo,
        frame: Bytes,
        now: Instant,
        timeout: Duration,
    ) -> Instant {
        let deadline = deadline(now, timeout);
        self.inner
            .borrow_mut()
            .insert(call, deadline, timeout, Some(frame));
        deadline
    }

    /// Registers the calls of one batch, sent together with one deadline;
    /// returns that deadline. Their ids are consecutive (the batch is known
    /// by its first call's id).
    pub fn insert_batch(&self, calls: Vec<CallInfo>, now: Instant, timeout: Duration) -> Instant {
        let deadline = deadline(now, timeout);
        let mut inner = self.inner.borrow_mut();
        let Some(group) = calls.first().map(|call| call.id) else {
            return deadline;
        };
        let ids = group..group + calls.len() as u64;
        debug_assert!(calls.iter().map(|call| call.id).eq(ids.clone()));
        inner.entries.reserve(calls.len());
        for call in calls {
            let entry = Entry::new(call, deadline, timeout, None, Some(group));
            inner.entries.insert(entry.call.id, entry);
        }
        let left = ids.clone().count();
        inner.groups.insert(group, Group { ids, left });
        // One deadline for the whole batch.
        inner.deadlines.insert((deadline, group));
        inner.update_gauges();
        deadline
    }

    /// Fails the calls of batch `group` still pending: the server's answer
    /// to the batch has come without them.
    pub fn fail_missing(&self, group: u64) -> usize {
        self.fail_batch(group, |call| Error::MissingResponse { call })
    }

    /// The oldest batch none of whose calls has been answered: the one a
    /// lone error with a `null` id most likely answers.
    pub fn oldest_unanswered_batch(&self) -> Option<u64> {
        let inner = self.inner.borrow();
        inner
            .groups
            .iter()
            .filter(|(_, g)| g.left as u64 == g.ids.end - g.ids.start)
            .map(|(&group, _)| group)
            .min()
    }

    /// Fails every call of batch `group` with an error made from its call.
    pub fn fail_batch(&self, group: u64, error: impl Fn(CallInfo) -> Error) -> usize {
        let entries = self.inner.borrow_mut().remove_group(group);
        let n = entries.len();
        // Told outside the borrow: a responder may be anything.
        for entry in entries {
            entry.tell(|call| Err(error(call)));
        }
        n
    }

    /// Keeps call `id`'s frame to send it again if the connection is lost
    /// before its answer.
    pub fn keep_for_retry(&self, id: u64, frame: Bytes) {
        if let Some(entry) = self.inner.borrow_mut().entries.get_mut(&id) {
            entry.retry = Some(frame);
        }
    }

    /// Calls whose request frames were dropped unwritten with a lost socket
    /// (the server never saw them) wait to be sent again, at the front of
    /// the line, in id order.
    pub fn requeue_unwritten(&self, frames: Vec<(u64, Bytes)>) -> usize {
        let mut inner = self.inner.borrow_mut();
        let mut requeued: Vec<u64> = Vec::new();
        for (id, frame) in frames {
            if let Some(entry) = inner.entries.get_mut(&id) {
                if entry.unsent.is_none() {
                    entry.unsent = Some(frame);
                    requeued.push(id);
                }
            }
        }
        requeued.sort_unstable();
        inner.unsent_count += requeued.len();
        let mut line: VecDeque<u64> = requeued.iter().copied().collect();
        line.extend(inner.unsent.drain(..));
        inner.unsent = line;
        inner.update_gauges();
        requeued.len()
    }

    /// The connection was lost and will be dialled again. Calls sent on it
    /// fail with (a copy of) `error`, except those that opted in to being
    /// sent again, which go to the front of the unsent line (once: a second
    /// loss fails them). Unsent calls never reached the server: they keep
    /// waiting if `keep_unsent`, else fail too. Returns how many failed and
    /// how many will be sent again.
    pub fn disconnected(&self, error: &Error, keep_unsent: bool) -> (usize, usize) {
        let (failed, requeued) = {
            let mut inner = self.inner.borrow_mut();
            let mut fail: Vec<u64> = Vec::new();
            let mut requeued: Vec<u64> = Vec::new();
            for (&id, entry) in inner.entries.iter_mut() {
                if entry.unsent.is_some() {
                    if !keep_unsent {
                        fail.push(id);
                    }
                } else if let Some(frame) = entry.retry.take() {
                    entry.unsent = Some(frame);
                    requeued.push(id);
                } else {
                    fail.push(id);
                }
            }
            requeued.sort_unstable();
            inner.unsent_count += requeued.len();
            let mut line: VecDeque<u64> = requeued.iter().copied().collect();
            line.extend(inner.unsent.drain(..));
            inner.unsent = line;
            let failed: Vec<Entry> = fail.into_iter().filter_map(|id| inner.remove(id)).collect();
            inner.update_gauges();
            (failed, requeued.len())
        };
        let n = failed.len();
        for entry in failed {
            entry.tell(|call| Err(error.for_call(call)));
        }
        (n, requeued)
    }

    /// The oldest unsent call: its id and frame.
    pub fn next_unsent(&self) -> Option<(u64, Bytes)> {
        let mut inner = self.inner.borrow_mut();
        while let Some(&id) = inner.unsent.front() {
            if let Some(frame) = inner.entries.get(&id).and_then(|e| e.unsent.clone()) {
                return Some((id, frame));
            }
            inner.unsent.pop_front();
        }
        None
    }

    /// Marks the oldest unsent call, `id`, as sent.
    pub fn mark_sent(&self, id: u64) {
        let mut inner = self.inner.borrow_mut();
        let was_unsent = inner
            .entries
            .get_mut(&id)
            .and_then(|e| e.unsent.take())
            .is_some();
        if was_unsent {
            inner.unsent_count -= 1;
            if inner.unsent.front() == Some(&id) {
                inner.unsent.pop_front();
            }
            inner.update_gauges();
        }
    }

    /// Says who waits for call `id`. A caller that is already gone frees
    /// the entry at once.
    pub fn attach(&self, id: u64, mut responder: Box<dyn Responder>) {
        let queue = self.cancellations();
        let waker = Waker::from(Arc::new(CancelWaker { id, queue }));
        let gone = responder
            .poll_gone(&mut Context::from_waker(&waker))
            .is_ready();
        let mut inner = self.inner.borrow_mut();
        if gone {
            if inner.remove(id).is_some() {
                stats::add(&inner.metrics.cancelled, 1);
                drop(inner);
                responder.abandoned(id);
            }
            return;
        }
        if let Some(entry) = inner.entries.get_mut(&id) {
            entry.responder = Some(Waiter::One(responder));
        }
    }

    /// Says who waits for the calls of the batch whose ids are `ids` (the
    /// first names the batch; `batch` is told each outcome by its place in
    /// `ids`). One watcher serves the whole batch: it queues the batch's
    /// id, and [`cancel`](Self::cancel) frees every call of a batch whose
    /// caller has gone. A caller that is already gone frees every entry at
    /// once, and `false` is returned: nobody waits for the batch. The
    /// watcher is the only one polling the caller's channel (it holds one
    /// waker); others learn of the caller going through
    /// [`BatchResponder::abandoned`].
    pub fn attach_batch(&self, ids: Range<u64>, batch: Rc<dyn BatchResponder>) -> bool {
        let group = ids.start;
        if ids.is_empty() {
            return true;
        }
        let queue = self.cancellations();
        let waker = Waker::from(Arc::new(CancelWaker { id: group, queue }));
        let gone = batch.poll_gone(&mut Context::from_waker(&waker)).is_ready();
        let mut inner = self.inner.borrow_mut();
        if gone {
            let freed = ids.filter(|&id| inner.remove(id).is_some()).count();
            stats::add(&inner.metrics.cancelled, freed as u64);
            return false;
        }
        for (index, id) in ids.enumerate() {
            if let Some(entry) = inner.entries.get_mut(&id) {
                entry.responder = Some(Waiter::InBatch {
                    batch: Rc::clone(&batch),
                    index,
                });
            }
        }
        true
    }

    /// Frees the entry of call `id` if its caller has stopped waiting; for
    /// a call of a batch, or a batch's id ([`attach_batch`](Self::attach_batch)),
    /// every call of the batch still pending (they share that caller).
    /// Returns whether it freed any.
    pub fn cancel(&self, id: u64) -> bool {
        let ids = {
            let inner = self.inner.borrow();
            let group = match inner.entries.get(&id) {
                Some(entry) => entry.group,
                // The batch's first call may have been answered already.
                None => Some(id),
            };
            group.and_then(|group| inner.groups.get(&group).map(|g| g.ids.clone()))
        };
        match ids {
            Some(ids) => ids.fold(false, |freed, id| self.cancel_one(id) | freed),
            None => self.cancel_one(id),
        }
    }

    fn cancel_one(&self, id: u64) -> bool {
        let mut inner = self.inner.borrow_mut();
        let gone = match inner.entries.get_mut(&id) {
            Some(entry) => entry.responder.as_mut().is_some_and(|r| {
                r.poll_gone(&mut Context::from_waker(Waker::noop()))
                    .is_ready()
            }),
            None => false,
        };
        if !gone {
            return false;
        }
        let Some(entry) = inner.remove(id) else {
            return false;
        };
        stats::add(&inner.metrics.cancelled, 1);
        drop(inner);
        // Told outside the borrow: a responder may be anything.
        if let Some(responder) = entry.responder {
            responder.abandoned(id);
        }
        true
    }

    fn remove(&self, id: u64) -> Option<Entry> {
        self.inner.borrow_mut().remove(id)
    }

    /// Delivers the server's answer. Returns `false` for an id nobody waits for.
    #[cfg(test)]
    pub fn complete(&self, id: u64, outcome: Result<RawResult, ErrorObject>) -> bool {
        self.try_complete(id, outcome).is_ok()
    }

    /// Delivers the server's answer; returns the batch the call was sent
    /// in, if it was, and hands the answer back when no call has that id.
    pub fn try_complete(
        &self,
        id: u64,
        outcome: Result<RawResult, ErrorObject>,
    ) -> Result<Option<u64>, Result<RawResult, ErrorObject>> {
        let Some(entry) = self.remove(id) else {
            return Err(outcome);
        };
        let group = entry.group;
        stats::add(&self.inner.borrow().metrics.responses, 1);
        // Told outside the borrow: a responder may be anything.
        entry.tell(|call| match outcome {
            Ok(result) => Ok(Reply { call, result }),
            Err(error) => Err(Error::Rpc {
                call,
                error: Box::new(error),
            }),
        });
        Ok(group)
    }

    /// Removes calls without telling anyone (their caller is told otherwise).
    pub fn withdraw(&self, ids: Range<u64>) {
        let mut inner = self.inner.borrow_mut();
        for id in ids {
            inner.remove(id);
        }
    }

    /// Fails one call with an error built from its [`CallInfo`].
    pub fn fail(&self, id: u64, error: impl FnOnce(CallInfo) -> Error) -> bool {
        let Some(entry) = self.remove(id) else {
            return false;
        };
        entry.tell(|call| Err(error(call)));
        true
    }

    /// Fails every call whose deadline is at or before `now` with
    /// [`Error::Timeout`]; returns how many, and the next deadline among the
    /// calls left.
    pub fn expire(&self, now: Instant) -> (usize, Option<Instant>) {
        let mut due = Vec::new();
        let next = {
            let mut inner = self.inner.borrow_mut();
            while let Some(&(deadline, id)) = inner.deadlines.first() {
                #[cfg(test)]
                {
                    inner.examined += 1;
                }
                if deadline > now {
                    break;
                }
                if inner.groups.contains_key(&id) {
                    // A batch's deadline: every call of it still pending.
                    due.extend(inner.remove_group(id));
                } else if let Some(entry) = inner.remove(id) {
                    due.push(entry);
                }
                // Removing the last entry of its key removed the key; this
                // only guards the walk against a key left behind.
                if inner.deadlines.first() == Some(&(deadline, id)) {
                    inner.deadlines.pop_first();
                }
            }
            stats::add(&inner.metrics.timeouts, due.len() as u64);
            inner.deadlines.first().map(|&(deadline, _)| deadline)
        };
        let n = due.len();
        for entry in due {
            let after = entry.timeout;
            entry.tell(|call| Err(Error::Timeout { call, after }));
        }
        (n, next)
    }

    /// Fails every call with (a copy of) `error`; the table is empty afterwards.
    pub fn fail_all(&self, error: &Error) -> usize {
        let entries: Vec<Entry> = {
            let mut inner = self.inner.borrow_mut();
            inner.deadlines.clear();
            inner.unsent.clear();
            inner.unsent_count = 0;
            inner.groups.clear();
            let entries = inner.entries.drain().map(|(_, e)| e).collect();
            inner.update_gauges();
            entries
        };
        let n = entries.len();
        for entry in entries {
            entry.tell(|call| Err(error.for_call(call)));
        }
        n
    }
}

/// `now + timeout`, or a century from now when that does not fit.
pub(crate) fn deadline(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;
    use futures_channel::oneshot;

    fn raw(text: &'static str) -> RawResult {
        RawResult {
            text: ByteString::from_static(text),
            unescaped: false,
        }
    }

    fn call(id: u64) -> CallInfo {
        CallInfo {
            method: format!("m{id}").into(),
            id,
        }
    }

    struct Channel(oneshot::Sender<Result<Reply, Error>>);

    impl Responder for Channel {
        fn respond(self: Box<Self>, outcome: Result<Reply, Error>) {
            let _ = self.0.send(outcome);
        }
        fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
            self.0.poll_canceled(cx)
        }
    }

    fn table() -> (PendingCalls, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (PendingCalls::new(Arc::clone(&metrics)), metrics)
    }

    /// Inserts call `id` with a responder that forwards to the returned channel.
    fn waiting(
        table: &PendingCalls,
        id: u64,
        now: Instant,
        timeout: Duration,
    ) -> oneshot::Receiver<Result<Reply, Error>> {
        let (tx, rx) = oneshot::channel();
        table.insert(call(id), now, timeout);
        table.attach(id, Box::new(Channel(tx)));
        rx
    }

    #[test]
    fn each_call_gets_its_own_answer_once_and_the_gauge_follows() {
        let (table, metrics) = table();
        let now = Instant::now();
        let mut rx1 = waiting(&table, 1, now, Duration::from_secs(1));
        let mut rx2 = waiting(&table, 2, now, Duration::from_secs(1));
        assert_eq!(metrics.snapshot().pending, 2);
        assert!(table.complete(2, Ok(raw("\"two\""))));
        assert!(table.complete(1, Err(ErrorObject::new(-1, "no"))));
        assert!(
            !table.complete(1, Ok(raw("1"))),
            "a second answer is unknown"
        );
        assert!(table.is_empty());
        let stats = metrics.snapshot();
        assert_eq!((stats.pending, stats.responses), (0, 2));
        let two = rx2.try_recv().unwrap().unwrap().unwrap();
        assert_eq!((two.call.id, &*two.result.text), (2, "\"two\""));
        let one = rx1.try_recv().unwrap().unwrap().unwrap_err();
        assert_eq!(one.rpc_error().unwrap().code, -1);
    }

    #[test]
    fn a_call_nobody_waits_for_still_completes() {
        let (table, _) = table();
        table.insert(call(9), Instant::now(), Duration::from_secs(1));
        assert!(table.complete(9, Ok(raw("null"))));
        assert!(table.is_empty());
    }

    #[test]
    fn expire_fails_only_due_calls_and_reports_the_next_deadline() {
        let (table, metrics) = table();
        let now = Instant::now();
        let mut rx_short = waiting(&table, 1, now, Duration::from_millis(10));
        let mut rx_long = waiting(&table, 2, now, Duration::from_secs(5));
        assert_eq!(
            table.expire(now),
            (0, Some(now + Duration::from_millis(10)))
        );
        let (n, next) = table.expire(now + Duration::from_millis(10));
        assert_eq!((n, next), (1, Some(now + Duration::from_secs(5))));
        let err = rx_short.try_recv().unwrap().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 10ms waiting for 'm1' (id 1)"
        );
        assert!(rx_long.try_recv().unwrap().is_none());
        assert_eq!(table.len(), 1);
        assert_eq!(metrics.snapshot().timeouts, 1);
    }

    #[test]
    fn expiry_walks_deadlines_in_order_whatever_the_insertion_order() {
        let (table, _) = table();
        let now = Instant::now();
        // Staggered: later ids get earlier deadlines.
        for id in 0..1000u64 {
            table.insert(call(id), now, Duration::from_millis(1000 - id));
        }
        let (n, next) = table.expire(now + Duration::from_millis(500));
        assert_eq!(n, 500, "ids 500..1000 had timeouts of at most 500 ms");
        assert_eq!(next, Some(now + Duration::from_millis(501)));
        assert_eq!(table.len(), 500);
        // Completed calls leave the deadline index too.
        for id in 0..500u64 {
            assert!(table.complete(id, Ok(raw("1"))));
        }
        assert!(table.inner.borrow().deadlines.is_empty());
        assert_eq!(table.expire(now + Duration::from_secs(9)), (0, None));
    }

    #[test]
    fn each_expiry_tick_looks_only_at_what_is_due() {
        // Staggered deadlines used to make every tick scan the whole table:
        // n calls, n ticks, n² looks.
        let (table, _) = table();
        let now = Instant::now();
        const N: u64 = 20_000;
        for id in 0..N {
            table.insert(call(id), now, Duration::from_millis(N - id));
        }
        for tick in 1..=N {
            table.inner.borrow_mut().examined = 0;
            let (expired, _) = table.expire(now + Duration::from_millis(tick));
            assert_eq!(expired, 1);
            let examined = table.inner.borrow().examined;
            assert!(examined <= 2, "tick {tick} looked at {examined} entries");
        }
        assert!(table.is_empty());
    }

    #[test]
    fn fail_all_empties_the_table_and_tells_everyone() {
        let (table, metrics) = table();
        let now = Instant::now();
        let mut receivers: Vec<_> = (0..100)
            .map(|id| waiting(&table, id, now, Duration::from_secs(1)))
            .collect();
        drop(receivers.pop()); // a caller that gave up must not disturb the others
        let closed = Error::Closed {
            code: 1001,
            reason: "away".into(),
            call: None,
        };
        // The caller that left is only queued for cancelling; the actor would
        // have freed it, but failing it too is harmless.
        assert_eq!(table.fail_all(&closed), 100);
        assert!(table.is_empty());
        assert!(table.inner.borrow().deadlines.is_empty());
        assert_eq!(metrics.snapshot().pending, 0);
        for (id, mut rx) in receivers.into_iter().enumerate() {
            let err = rx.try_recv().unwrap().unwrap().unwrap_err();
            assert_eq!(err.close_code(), Some(1001));
            assert_eq!(err.call().unwrap().id, id as u64);
        }
    }

    #[test]
    fn fail_one_names_the_call() {
        let (table, _) = table();
        let mut rx = waiting(&table, 7, Instant::now(), Duration::from_secs(1));
        assert!(table.fail(7, |call| Error::InvalidResponse {
            call,
            reason: "bad".into()
        }));
        assert!(!table.fail(7, |_| unreachable!()));
        let err = rx.try_recv().unwrap().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "invalid response to 'm7' (id 7): bad");
    }

    #[test]
    fn a_caller_that_goes_away_queues_its_id_and_cancel_frees_the_entry() {
        let (table, metrics) = table();
        let now = Instant::now();
        let rx = waiting(&table, 3, now, Duration::from_secs(3600));
        let _kept = waiting(&table, 4, now, Duration::from_secs(3600));
        let queue = table.cancellations();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(queue.poll_drain(&mut cx).is_pending());
        drop(rx);
        let Poll::Ready(ids) = queue.poll_drain(&mut cx) else {
            panic!("the dropped receiver queued nothing");
        };
        assert_eq!(ids, [3]);
        assert!(table.cancel(3));
        assert!(!table.cancel(3), "already freed");
        assert!(!table.cancel(4), "its caller still waits");
        assert_eq!(table.len(), 1);
        let stats = metrics.snapshot();
        assert_eq!((stats.pending, stats.cancelled), (1, 1));
        assert_eq!(table.inner.borrow().deadlines.len(), 1);
    }

    #[test]
    fn a_caller_gone_before_attaching_frees_the_entry_at_once() {
        let (table, metrics) = table();
        let (tx, rx) = oneshot::channel();
        drop(rx);
        table.insert(call(5), Instant::now(), Duration::from_secs(1));
        table.attach(5, Box::new(Channel(tx)));
        assert!(table.is_empty());
        assert_eq!(metrics.snapshot().cancelled, 1);
    }

    #[test]
    fn unsent_calls_wait_in_order_and_end_like_any_other() {
        let (table, metrics) = table();
        let now = Instant::now();
        table.insert(call(1), now, Duration::from_secs(5));
        for id in 2..=4 {
            table.insert_unsent(
                call(id),
                Bytes::from(vec![id as u8]),
                now,
                Duration::from_secs(id),
            );
        }
        let stats = metrics.snapshot();
        assert_eq!((stats.pending, stats.queued_calls), (4, 3));
        assert_eq!((table.sent(), table.unsent()), (1, 3));
        // The first in line times out while waiting; the next is then first.
        let (n, _) = table.expire(now + Duration::from_secs(2));
        assert_eq!(n, 1);
        let (id, frame) = table.next_unsent().unwrap();
        assert_eq!((id, &frame[..]), (3, &[3u8][..]));
        table.mark_sent(3);
        assert_eq!((table.sent(), table.unsent()), (2, 1));
        assert_eq!(table.next_unsent().map(|(id, _)| id), Some(4));
        assert!(table.complete(3, Ok(raw("1"))));
        assert_eq!(
            table.fail_all(&Error::NotConnected { method: "x".into() }),
            2
        );
        assert!(table.next_unsent().is_none());
        let stats = metrics.snapshot();
        assert_eq!((stats.pending, stats.queued_calls), (0, 0));
    }

    #[test]
    fn a_lost_connection_fails_sent_calls_and_sends_opted_in_ones_again_once() {
        let (table, metrics) = table();
        let now = Instant::now();
        let mut plain = waiting(&table, 1, now, Duration::from_secs(5));
        let mut retried = waiting(&table, 2, now, Duration::from_secs(5));
        table.keep_for_retry(2, Bytes::from_static(b"two"));
        table.insert_unsent(
            call(3),
            Bytes::from_static(b"three"),
            now,
            Duration::from_secs(5),
        );
        let lost = Error::Disconnected {
            call: None,
            source: None,
        };
        assert_eq!(table.disconnected(&lost, true), (1, 1));
        let err = plain.try_recv().unwrap().unwrap().unwrap_err();
        assert!(
            matches!(err, Error::Disconnected { call: Some(ref c), .. } if c.id == 1),
            "{err}"
        );
        assert!(retried.try_recv().unwrap().is_none(), "still waiting");
        // The retried call goes first, ahead of the calls that waited.
        assert_eq!(table.next_unsent(), Some((2, Bytes::from_static(b"two"))));
        table.mark_sent(2);
        assert_eq!(table.next_unsent().map(|(id, _)| id), Some(3));
        table.mark_sent(3);
        let stats = metrics.snapshot();
        assert_eq!((stats.pending, stats.queued_calls), (2, 0));
        // Lost again: sent once more already, so it fails now; fail-fast
        // fails the unsent ones too.
        table.insert_unsent(
            call(4),
            Bytes::from_static(b"four"),
            now,
            Duration::from_secs(5),
        );
        assert_eq!(table.disconnected(&lost, false), (3, 0));
        assert!(retried.try_recv().unwrap().unwrap().is_err());
        assert!(table.is_empty());
        let stats = metrics.snapshot();
        assert_eq!((stats.pending, stats.queued_calls), (0, 0));
    }

    #[test]
    fn the_line_of_unsent_ids_does_not_pile_up_with_ended_calls() {
        let (table, _) = table();
        let now = Instant::now();
        table.insert_unsent(call(0), Bytes::new(), now, Duration::from_secs(60));
        for id in 1..10_000 {
            table.insert_unsent(call(id), Bytes::new(), now, Duration::from_secs(60));
            assert!(table.fail(id, |call| Error::Timeout {
                call,
                after: Duration::ZERO
            }));
        }
        assert!(table.inner.borrow().unsent.len() < 100);
        assert_eq!(table.next_unsent().map(|(id, _)| id), Some(0));
    }

    #[test]
    fn a_batch_answer_without_some_calls_fails_only_those() {
        let (table, _) = table();
        let now = Instant::now();
        let mut receivers = Vec::new();
        let calls: Vec<CallInfo> = (10..13).map(call).collect();
        table.insert_batch(calls, now, Duration::from_secs(5));
        for id in 10..13 {
            let (tx, rx) = oneshot::channel();
            table.attach(id, Box::new(Channel(tx)));
            receivers.push(rx);
        }
        assert_eq!(table.oldest_unanswered_batch(), Some(10));
        assert_eq!(
            table.try_complete(11, Ok(raw("1"))).ok(),
            Some(Some(10)),
            "completing a call of a batch names the batch"
        );
        assert_eq!(table.oldest_unanswered_batch(), None, "one was answered");
        assert_eq!(table.fail_missing(10), 2);
        assert!(table.is_empty());
        let errors: Vec<String> = [0, 2]
            .iter()
            .map(|&i| {
                receivers[i]
                    .try_recv()
                    .unwrap()
                    .unwrap()
                    .unwrap_err()
                    .to_string()
            })
            .collect();
        assert_eq!(
            errors,
            [
                "the server's answer to the batch had no response for 'm10' (id 10)",
                "the server's answer to the batch had no response for 'm12' (id 12)"
            ]
        );
        assert!(table.inner.borrow().groups.is_empty());
    }

    /// A batch's caller: the outcomes by place, and a channel whose
    /// receiver going away means the caller has gone.
    struct Collected {
        tx: RefCell<oneshot::Sender<()>>,
        outcomes: RefCell<Vec<(usize, bool)>>,
    }

    impl BatchResponder for Collected {
        fn respond(&self, index: usize, outcome: Result<Reply, Error>) {
            self.outcomes.borrow_mut().push((index, outcome.is_ok()));
        }
        fn poll_gone(&self, cx: &mut Context<'_>) -> Poll<()> {
            self.tx.borrow_mut().poll_canceled(cx)
        }
    }

    fn collected() -> (Rc<Collected>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let collected = Collected {
            tx: RefCell::new(tx),
            outcomes: RefCell::default(),
        };
        (Rc::new(collected), rx)
    }

    /// Batch `ids` with one batch responder (as the connection's batch
    /// collector is).
    fn waiting_batch(
        table: &PendingCalls,
        ids: std::ops::Range<u64>,
        now: Instant,
    ) -> (Rc<Collected>, oneshot::Receiver<()>) {
        let (collected, rx) = collected();
        table.insert_batch(
            ids.clone().map(call).collect(),
            now,
            Duration::from_secs(60),
        );
        table.attach_batch(ids, Rc::clone(&collected) as Rc<dyn BatchResponder>);
        (collected, rx)
    }

    #[test]
    fn a_batch_responder_is_told_each_outcome_by_its_place() {
        let (table, _) = table();
        let now = Instant::now();
        let (collected, _rx) = waiting_batch(&table, 11..14, now);
        assert!(table.complete(13, Ok(raw("3"))));
        assert!(table.complete(11, Err(ErrorObject::new(-1, "no"))));
        assert_eq!(table.fail_missing(11), 1);
        assert!(table.is_empty());
        assert_eq!(
            *collected.outcomes.borrow(),
            [(2, true), (0, false), (1, false)]
        );
    }

    #[test]
    fn a_batch_has_one_watcher_and_its_caller_going_frees_every_call() {
        let (table, metrics) = table();
        let now = Instant::now();
        let (_, rx) = waiting_batch(&table, 1..101, now);
        let _kept = waiting_batch(&table, 101..111, now);
        // The first call is answered before the caller goes: the batch is
        // still known by its id.
        assert!(table.complete(1, Ok(raw("1"))));
        drop(rx);
        let queue = table.cancellations();
        let Poll::Ready(ids) = queue.poll_drain(&mut Context::from_waker(Waker::noop())) else {
            panic!("the dropped receiver queued nothing");
        };
        assert_eq!(ids, [1], "one watcher, named by the batch");
        assert!(table.cancel(1));
        assert_eq!(table.len(), 10, "only the other batch is left");
        assert_eq!(metrics.snapshot().cancelled, 99);
        assert!(!table.cancel(1), "already freed");
        assert!(!table.cancel(101), "its caller still waits");
        assert_eq!(table.len(), 10);
    }

    #[test]
    fn a_batch_whose_caller_is_gone_before_attaching_frees_every_call_at_once() {
        let (table, metrics) = table();
        table.insert_batch(
            (1..4).map(call).collect(),
            Instant::now(),
            Duration::from_secs(1),
        );
        let (collected, rx) = collected();
        drop(rx);
        table.attach_batch(1..4, collected);
        assert!(table.is_empty());
        assert!(table.inner.borrow().groups.is_empty());
        assert_eq!(metrics.snapshot().cancelled, 3);
    }

    #[test]
    fn batch_groups_do_not_outlive_their_calls() {
        let (table, _) = table();
        let now = Instant::now();
        table.insert_batch((1..4).map(call).collect(), now, Duration::from_millis(5));
        for id in 1..4 {
            assert!(table.complete(id, Ok(raw("1"))));
        }
        assert!(table.inner.borrow().groups.is_empty());
        table.insert_batch((4..6).map(call).collect(), now, Duration::from_millis(5));
        assert_eq!(table.expire(now + Duration::from_secs(1)).0, 2);
        assert!(table.inner.borrow().groups.is_empty());
        assert!(table.inner.borrow().deadlines.is_empty());
    }

    #[test]
    fn a_batch_has_one_deadline_that_leaves_with_its_last_call() {
        let (table, metrics) = table();
        let now = Instant::now();
        table.insert(call(1), now, Duration::from_millis(30));
        table.insert_batch((2..102).map(call).collect(), now, Duration::from_millis(10));
        table.insert_batch(
            (102..105).map(call).collect(),
            now,
            Duration::from_millis(20),
        );
        assert_eq!(table.inner.borrow().deadlines.len(), 3);
        assert_eq!(metrics.snapshot().pending, 104);
        // Answered in part, failed in part, the first batch's deadline goes
        // with the last of its calls.
        for id in 2..50 {
            assert!(table.complete(id, Ok(raw("1"))));
        }
        assert_eq!(table.inner.borrow().deadlines.len(), 3);
        assert_eq!(table.fail_missing(2), 52);
        assert_eq!(table.inner.borrow().deadlines.len(), 2);
        // The second batch expires whole, after its first call was answered.
        assert!(table.complete(102, Ok(raw("1"))));
        let (n, next) = table.expire(now + Duration::from_millis(25));
        assert_eq!((n, next), (2, Some(now + Duration::from_millis(30))));
        assert!(table.inner.borrow().groups.is_empty());
        let (n, next) = table.expire(now + Duration::from_millis(30));
        assert_eq!((n, next), (1, None));
        assert!(table.is_empty());
        assert!(table.inner.borrow().deadlines.is_empty());
        assert_eq!(metrics.snapshot().timeouts, 3);
    }

    #[test]
    fn a_refused_batch_fails_every_call_and_leaves_nothing_behind() {
        let (table, _) = table();
        let now = Instant::now();
        table.insert_batch((1..4).map(call).collect(), now, Duration::from_secs(5));
        assert_eq!(
            table.fail_batch(1, |call| Error::MissingResponse { call }),
            3
        );
        assert!(table.is_empty());
        let inner = table.inner.borrow();
        assert!(inner.groups.is_empty() && inner.deadlines.is_empty());
    }

    #[test]
    fn endless_timeouts_do_not_overflow() {
        let (table, _) = table();
        let now = Instant::now();
        let at = table.insert(call(1), now, Duration::MAX);
        assert!(at > now + Duration::from_secs(3600 * 24 * 365));
    }
}
