//! The pending-call table: id → who is waiting, and until when.
//!
//! No actix in here: the actor decides when to call [`PendingCalls::expire`];
//! this type only keeps the books, so every path is unit-tested.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use futures_channel::oneshot;
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

/// Where the outcome of one call is sent.
pub(crate) type Responder = oneshot::Sender<Result<Reply, Error>>;

struct Entry {
    call: CallInfo,
    deadline: Instant,
    timeout: Duration,
    responder: Responder,
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

/// Calls sent and not yet answered.
#[derive(Default)]
pub(crate) struct PendingCalls {
    entries: HashMap<u64, Entry, BuildHasherDefault<IdHasher>>,
}

impl PendingCalls {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Registers a call that must end by `now + timeout`.
    pub fn insert(
        &mut self,
        call: CallInfo,
        now: Instant,
        timeout: Duration,
        responder: Responder,
    ) {
        let entry = Entry {
            deadline: now + timeout,
            timeout,
            call,
            responder,
        };
        self.entries.insert(entry.call.id, entry);
    }

    /// Delivers the server's answer. Returns `false` for an id nobody waits for.
    pub fn complete(&mut self, id: u64, outcome: Result<Box<RawValue>, ErrorObject>) -> bool {
        let Some(Entry {
            call, responder, ..
        }) = self.entries.remove(&id)
        else {
            return false;
        };
        let message = match outcome {
            Ok(result) => Ok(Reply { call, result }),
            Err(error) => Err(Error::Rpc {
                call,
                error: Box::new(error),
            }),
        };
        // NOTE: the caller may have stopped waiting (dropped its future); that is normal.
        let _ = responder.send(message);
        true
    }

    /// Fails one call with an error built from its [`CallInfo`].
    pub fn fail(&mut self, id: u64, error: impl FnOnce(CallInfo) -> Error) -> bool {
        let Some(Entry {
            call, responder, ..
        }) = self.entries.remove(&id)
        else {
            return false;
        };
        let _ = responder.send(Err(error(call)));
        true
    }

    /// Fails every call whose deadline is at or before `now` with
    /// [`Error::Timeout`]; returns how many, and the next deadline among the
    /// calls left.
    pub fn expire(&mut self, now: Instant) -> (usize, Option<Instant>) {
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        for (id, entry) in &self.entries {
            if entry.deadline <= now {
                expired.push(*id);
            } else {
                next = Some(next.map_or(entry.deadline, |n| n.min(entry.deadline)));
            }
        }
        for id in &expired {
            if let Some(entry) = self.entries.remove(id) {
                let error = Error::Timeout {
                    call: entry.call,
                    after: entry.timeout,
                };
                let _ = entry.responder.send(Err(error));
            }
        }
        (expired.len(), next)
    }

    /// Fails every call with (a copy of) `error`; the table is empty afterwards.
    pub fn fail_all(&mut self, error: &Error) -> usize {
        let n = self.entries.len();
        for (_, entry) in self.entries.drain() {
            let _ = entry.responder.send(Err(error.for_call(entry.call)));
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: u64) -> CallInfo {
        CallInfo {
            method: format!("m{id}"),
            id,
        }
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn each_call_gets_its_own_answer_once() {
        let mut table = PendingCalls::default();
        let now = Instant::now();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        table.insert(call(1), now, Duration::from_secs(1), tx1);
        table.insert(call(2), now, Duration::from_secs(1), tx2);
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
    fn expire_fails_only_due_calls_and_reports_the_next_deadline() {
        let mut table = PendingCalls::default();
        let now = Instant::now();
        let (tx_short, mut rx_short) = oneshot::channel();
        let (tx_long, mut rx_long) = oneshot::channel();
        table.insert(call(1), now, Duration::from_millis(10), tx_short);
        table.insert(call(2), now, Duration::from_secs(5), tx_long);
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
        let mut table = PendingCalls::default();
        let now = Instant::now();
        let mut receivers = Vec::new();
        for id in 0..100 {
            let (tx, rx) = oneshot::channel();
            table.insert(call(id), now, Duration::from_secs(1), tx);
            receivers.push(rx);
        }
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
        let mut table = PendingCalls::default();
        let (tx, mut rx) = oneshot::channel();
        table.insert(call(7), Instant::now(), Duration::from_secs(1), tx);
        assert!(table.fail(7, |call| Error::InvalidResponse {
            call,
            reason: "bad".into()
        }));
        assert!(!table.fail(7, |_| unreachable!()));
        let err = rx.try_recv().unwrap().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "invalid response to 'm7' (id 7): bad");
    }
}
