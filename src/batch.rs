//! Batches: several calls and notifications sent as one JSON-RPC batch, each
//! call's outcome in its own typed slot.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use actix::Message;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Error;
use crate::message::Reply;
use crate::protocol::Params;

/// One entry of a batch.
#[derive(Debug)]
pub(crate) struct Entry {
    pub method: Cow<'static, str>,
    pub params: Params,
    /// A call (it gets an id and an answer) or a notification.
    pub call: bool,
}

/// A batch of calls and notifications, sent as one message. Each call
/// returns a [`Slot`] for its outcome; the outcomes come back in submission
/// order whatever order the server answers in, each on its own: one entry's
/// error, or its absence from the server's answer, fails that entry alone.
///
/// The whole batch has one timeout, and each call counts against
/// `max_in_flight` (a batch that does not fit is refused with
/// [`Error::Overloaded`] rather than waiting). A batch of notifications only
/// expects no answer and completes once it is queued.
///
/// Send it with [`Client::batch`](crate::Client::batch) (a builder with
/// `send`) or, from an actor, with `addr.send(batch)`.
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::{params, Batch, Error, RpcConnection};
///
/// # async fn demo(addr: actix::Addr<RpcConnection>) -> Result<(), Box<dyn std::error::Error>> {
/// let mut batch = Batch::new();
/// let sum = batch.call::<i64>("math.add", params![1, 2]);
/// let name = batch.call::<String>("users.name", params![7]);
/// batch.notify("log.write", params!["batch sent"]);
/// let mut results = addr.send(batch).await??;
/// println!("{} {}", results.take(sum)?, results.take(name)?);
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
#[must_use = "a Batch does nothing until it is sent"]
pub struct Batch {
    pub(crate) entries: Vec<Entry>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) calls: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds a call of `method`; its outcome, decoded as `T`, is taken from
    /// the [`BatchResults`] with the slot returned.
    pub fn call<T>(
        &mut self,
        method: impl Into<Cow<'static, str>>,
        params: impl Into<Params>,
    ) -> Slot<T> {
        self.entries.push(Entry {
            method: method.into(),
            params: params.into(),
            call: true,
        });
        self.calls += 1;
        Slot {
            index: self.calls - 1,
            result: PhantomData,
        }
    }

    /// Adds a notification (no id, no answer).
    pub fn notify(&mut self, method: impl Into<Cow<'static, str>>, params: impl Into<Params>) {
        self.entries.push(Entry {
            method: method.into(),
            params: params.into(),
            call: false,
        });
    }

    /// How long the batch may wait for its answers. Default: the request
    /// timeout.
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many entries the batch holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Message for Batch {
    type Result = Result<BatchResults, Error>;
}

/// Where the outcome of one call of a [`Batch`] is found.
pub struct Slot<T> {
    index: usize,
    result: PhantomData<fn() -> T>,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Slot<T> {}

impl<T> fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slot({})", self.index)
    }
}

impl<T> Slot<T> {
    /// The call's place among the batch's calls (notifications are not
    /// counted).
    pub fn index(&self) -> usize {
        self.index
    }
}

/// The outcomes of a batch's calls, in submission order.
#[derive(Debug)]
pub struct BatchResults {
    outcomes: Vec<Option<Result<Reply, Error>>>,
}

impl BatchResults {
    pub(crate) fn new(outcomes: Vec<Option<Result<Reply, Error>>>) -> Self {
        BatchResults { outcomes }
    }

    /// Takes the outcome of the call at `slot`, decoded as `T` (in the
    /// caller's task).
    ///
    /// # Errors
    ///
    /// The call's own error ([`Error::Rpc`], [`Error::MissingResponse`],
    /// [`Error::Timeout`], [`Error::Decode`], …); [`Error::InvalidConfig`]
    /// for a slot of another batch, or one taken already.
    pub fn take<T: DeserializeOwned>(&mut self, slot: Slot<T>) -> Result<T, Error> {
        let outcome = self
            .outcomes
            .get_mut(slot.index)
            .and_then(Option::take)
            .ok_or_else(|| Error::InvalidConfig {
                reason: format!(
                    "batch slot {} was taken already or belongs to another batch",
                    slot.index
                ),
            })?;
        outcome?.decode()
    }

    /// How many calls the batch had.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// Whether the batch had no call.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// Every outcome not taken yet, in submission order, as JSON values.
    pub fn into_values(self) -> Vec<Result<Value, Error>> {
        self.outcomes
            .into_iter()
            .flatten()
            .map(|outcome| outcome.and_then(Reply::decode))
            .collect()
    }
}
