//! The pending-call table: id → who is waiting, and until when.
//!
//! No actix in here: the actor decides when to call [`PendingCalls::expire`];
//! this type only keeps the books, so every path is unit-tested.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use crate::error::{CallInfo, Error};
use crate::protocol::ErrorObject;

/// A successful answer: the raw result, with the call it answers (so the
/// waiting side can name it if decoding fails).
#[derive(Debug)]
pub(crate) struct Reply {
    pub call: CallInfo,
    pub result: Box<RawValue>,
}

/// Told the outcome of one call, once. It decodes the result for its caller
/// and sends it on actix's own reply channel: no second channel, no task.
pub(crate) type Responder = Box<dyn FnOnce(Result<Reply, Error>)>;

struct Entry {
    call: CallInfo,
    deadline: Instant,
    timeout: Duration,
    /// `None` until attached, and for calls nobody waits for (`do_send`).
    responder: Option<Responder>,
}

impl Entry {
    fn tell(self, outcome: impl FnOnce(CallInfo) -> Result<Reply, Error>) {
        if let Some(responder) = self.responder {
            // NOTE: the caller may have stopped waiting; its channel then
            // drops the outcome, which is normal.
            responder(outcome(self.call));
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

/// Calls sent and not yet answered. A cheap handle: the actor holds one, and
/// each call's reply holds one just long enough to attach its responder
/// (actix hands over the reply channel after the handler has returned).
#[derive(Default, Clone)]
pub(crate) struct PendingCalls {
    entries: Rc<RefCell<Table>>,
}

impl PendingCalls {
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }

    /// Registers a call that must end by `now + timeout`; returns that
    /// deadline. A timeout too large to add (`Duration::MAX`) means "a
    /// century", not a panic.
    pub fn insert(&self, call: CallInfo, now: Instant, timeout: Duration) -> Instant {
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        let entry = Entry {
            deadline,
            timeout,
            call,
            responder: None,
        };
        self.entries.borrow_mut().insert(entry.call.id, entry);
        deadline
    }

    /// Says who waits for call `id`.
    pub fn attach(&self, id: u64, responder: Responder) {
        if let Some(entry) = self.entries.borrow_mut().get_mut(&id) {
            entry.responder = Some(responder);
        }
    }

    fn remove(&self, id: u64) -> Option<Entry> {
        self.entries.borrow_mut().remove(&id)
    }

    /// Delivers the server's answer. Returns `false` for an id nobody waits for.
    pub fn complete(&self, id: u64, outcome: Result<Box<RawValue>, ErrorObject>) -> bool {
        let Some(entry) = self.remove(id) else {
            return false;
        };
        entry.tell(|call| match outcome {
            Ok(result) => Ok(Reply { call, result }),
            Err(error) => Err(Error::Rpc {
                call,
                error: Box::new(error),
            }),
        });
        true
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
        let mut next: Option<Instant> = None;
        for (id, entry) in self.entries.borrow().iter() {
            if entry.deadline <= now {
                due.push(*id);
            } else {
                next = Some(next.map_or(entry.deadline, |n| n.min(entry.deadline)));
            }
        }
        // Told outside the borrow: a responder may be anything.
        for id in &due {
            if let Some(entry) = self.remove(*id) {
                let after = entry.timeout;
                entry.tell(|call| Err(Error::Timeout { call, after }));
            }
        }
        (due.len(), next)
    }

    /// Fails every call with (a copy of) `error`; the table is empty afterwards.
    pub fn fail_all(&self, error: &Error) -> usize {
        let entries: Vec<Entry> = self.entries.borrow_mut().drain().map(|(_, e)| e).collect();
        let n = entries.len();
        for entry in entries {
            entry.tell(|call| Err(error.for_call(call)));
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_channel::oneshot;

    fn call(id: u64) -> CallInfo {
        CallInfo {
            method: format!("m{id}").into(),
            id,
        }
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
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
        table.attach(
            id,
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        );
        rx
    }

    #[test]
    fn each_call_gets_its_own_answer_once() {
        let table = PendingCalls::default();
        let now = Instant::now();
        let mut rx1 = waiting(&table, 1, now, Duration::from_secs(1));
        let mut rx2 = waiting(&table, 2, now, Duration::from_secs(1));
        assert!(table.complete(2, Ok(raw("\"two\""))));
        assert!(table.complete(1, Err(ErrorObject::new(-1, "no"))));
        assert!(
            !table.complete(1, Ok(raw("1"))),
            "a second answer is unknown"
        );
        assert!(table.is_empty());
        let two = rx2.try_recv().unwrap().unwrap().unwrap();
        assert_eq!((two.call.id, two.result.get()), (2, "\"two\""));
        let one = rx1.try_recv().unwrap().unwrap().unwrap_err();
        assert_eq!(one.rpc_error().unwrap().code, -1);
    }

    #[test]
    fn a_call_nobody_waits_for_still_completes() {
        let table = PendingCalls::default();
        table.insert(call(9), Instant::now(), Duration::from_secs(1));
        assert!(table.complete(9, Ok(raw("null"))));
        assert!(table.is_empty());
    }

    #[test]
    fn expire_fails_only_due_calls_and_reports_the_next_deadline() {
        let table = PendingCalls::default();
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
    }

    #[test]
    fn fail_all_empties_the_table_and_tells_everyone() {
        let table = PendingCalls::default();
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
        assert_eq!(table.fail_all(&closed), 100);
        assert!(table.is_empty());
        for (id, mut rx) in receivers.into_iter().enumerate() {
            let err = rx.try_recv().unwrap().unwrap().unwrap_err();
            assert_eq!(err.close_code(), Some(1001));
            assert_eq!(err.call().unwrap().id, id as u64);
        }
    }

    #[test]
    fn fail_one_names_the_call() {
        let table = PendingCalls::default();
        let mut rx = waiting(&table, 7, Instant::now(), Duration::from_secs(1));
        assert!(table.fail(7, |call| Error::InvalidResponse {
            call,
            reason: "bad".into()
        }));
        assert!(!table.fail(7, |_| unreachable!()));
        let err = rx.try_recv().unwrap().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "invalid response to 'm7' (id 7): bad");
    }
}
