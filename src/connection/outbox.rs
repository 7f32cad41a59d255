//! The outbound queue: every frame for the socket waits here, already
//! encoded and masked, until the writer task has written it.
//!
//! It is the one place outbound memory is bounded. Frames that someone can
//! wait for (calls, notifications) take room from a byte budget
//! (`max_queued_bytes`) and give it back once written; a sender that finds
//! no room waits for it, first come first served, or is refused. Frames the
//! connection owes the server (answers to its requests) are never refused,
//! but once they alone exceed the budget the connection stops *reading* until
//! they drain, so a peer that sends requests and never reads the answers
//! cannot grow our memory. Pongs keep one slot: only the latest ping needs an
//! answer (RFC 6455 §5.5.3). After the close frame nothing more is accepted.
//!
//! Thread-safe: [`Client`](crate::Client) handles push notifications from
//! any thread; the writer task and the connection run on the connection's.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::sync::Semaphore;

use crate::stats::{self, Metrics};

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No room within the byte budget right now.
    Full,
    /// The close frame is queued or the connection has stopped.
    Closed,
}

/// One queued frame.
#[derive(Debug)]
pub(crate) struct Queued {
    pub frame: Bytes,
    /// Budget taken by this frame, returned once it is written.
    room: u32,
    /// Queued by the connection itself (counts toward pausing the reader).
    owed: bool,
    /// The call this frame carries, if it is one call's request: a frame
    /// never written can be sent again on a new socket.
    call: Option<u64>,
}

/// What the writer gets from [`Outbox::poll_take`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// Frames to write, in order (a pong first, if one is owed).
    Frames,
    /// The frames end with our close frame: write them, then shut down.
    Close,
    /// The connection has stopped: write nothing more.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// The close frame is queued; it is the last frame.
    Closing,
    /// The close frame has been handed to the writer.
    CloseTaken,
    /// The connection has stopped.
    Stopped,
}

struct State {
    frames: VecDeque<Queued>,
    /// The pong owed for the latest ping.
    pong: Option<Bytes>,
    /// Our heartbeat's ping, not yet written.
    ping: Option<Bytes>,
    /// Which socket the frames are for: a reset starts a new generation,
    /// and a writer of an older one stops.
    generation: u64,
    /// The last frame for the socket of an older generation (a close frame
    /// answering the server's): its writer writes it, then stops.
    farewell: Option<(u64, Bytes)>,
    /// Bytes in `frames` (and the pong).
    queued: usize,
    /// Bytes of frames the connection queued itself, in `frames`.
    owed: usize,
    phase: Phase,
}

pub(crate) struct Outbox {
    state: Mutex<State>,
    /// The byte budget for frames someone can wait for (replaced by a reset:
    /// a closed semaphore cannot open again).
    room: Mutex<Arc<Semaphore>>,
    limit: usize,
    writer: AtomicWaker,
    reader: AtomicWaker,
    /// Woken when room is returned to the budget (calls waiting in line).
    room_freed: AtomicWaker,
    metrics: Arc<Metrics>,
}

impl Outbox {
    /// A queue with a budget of `limit` bytes (at least 1, at most
    /// `u32::MAX`: the semaphore counts in `u32`).
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Arc<Outbox> {
        let limit = limit.clamp(1, u32::MAX as usize);
        Arc::new(Outbox {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                pong: None,
                ping: None,
                generation: 0,
                farewell: None,
                queued: 0,
                owed: 0,
                phase: Phase::Open,
            }),
            room: Mutex::new(Arc::new(Semaphore::new(limit))),
            limit,
            writer: AtomicWaker::new(),
            reader: AtomicWaker::new(),
            room_freed: AtomicWaker::new(),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation below is complete before anything can panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn room(&self) -> Arc<Semaphore> {
        Arc::clone(&self.room.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The current generation: what a writer started now is for.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Starts over for a new socket: drops every frame queued for the old
    /// one, refuses senders waiting for its room (they were waiting for a
    /// connection that is gone), and opens a fresh budget. The old
    /// generation's writer writes `farewell`, if any, then stops. Returns
    /// the calls whose request frames were dropped without ever being taken
    /// by the writer, with their frames: the server cannot have seen them.
    pub fn reset(&self, farewell: Option<Bytes>) -> Vec<(u64, Bytes)> {
        let old = {
            let mut room = self.room.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *room, Arc::new(Semaphore::new(self.limit)))
        };
        old.close();
        let unwritten;
        {
            let mut state = self.lock();
            unwritten = state
                .frames
                .drain(..)
                .filter_map(|queued| queued.call.map(|id| (id, queued.frame)))
                .collect();
            state.pong = None;
            state.ping = None;
            state.queued = 0;
            state.owed = 0;
            state.phase = Phase::Open;
            state.farewell = farewell.map(|frame| (state.generation, frame));
            state.generation += 1;
            stats::set(&self.metrics.queued_bytes, 0);
        }
        self.writer.wake();
        self.reader.wake();
        self.room_freed.wake();
        unwritten
    }

    /// The configured budget.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Budget a frame takes: its length, but never more than the whole
    /// budget, so a frame larger than the budget still goes (alone).
    fn room_for(&self, frame: &Bytes) -> u32 {
        frame.len().min(self.limit) as u32
    }

    /// Queues a frame if there is room now.
    pub fn try_push(&self, frame: &Bytes) -> Result<(), Refused> {
        self.try_push_for(frame, None)
    }

    /// Queues call `id`'s request frame if there is room now.
    pub fn try_push_call(&self, frame: &Bytes, id: u64) -> Result<(), Refused> {
        self.try_push_for(frame, Some(id))
    }

    fn try_push_for(&self, frame: &Bytes, call: Option<u64>) -> Result<(), Refused> {
        let room = self.room_for(frame);
        match self.room().try_acquire_many(room) {
            Ok(permit) => permit.forget(),
            Err(tokio::sync::TryAcquireError::NoPermits) => return Err(Refused::Full),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Refused::Closed),
        }
        self.enqueue(frame.clone(), room, false, call)
    }

    /// Wakes `cx` the next time room is returned to the budget.
    pub fn register_room_waker(&self, cx: &Context<'_>) {
        self.room_freed.register(cx.waker());
    }

    /// Queues a frame, waiting for room first come first served. Cancel safe:
    /// dropping the future gives up the place in line and queues nothing.
    pub async fn push(&self, frame: Bytes) -> Result<(), Refused> {
        let room = self.room_for(&frame);
        let budget = self.room();
        match budget.acquire_many(room).await {
            Ok(permit) => permit.forget(),
            Err(_closed) => return Err(Refused::Closed),
        }
        if !Arc::ptr_eq(&budget, &self.room()) {
            // The budget was replaced while we waited: our room is void.
            return Err(Refused::Closed);
        }
        self.enqueue(frame, room, false, None)
    }

    /// Queues a frame the connection owes the server (an answer). Never
    /// refused for room; see the module doc for how these are bounded.
    pub fn push_owed(&self, frame: Bytes) -> Result<(), Refused> {
        self.enqueue(frame, 0, true, None)
    }

    fn enqueue(
        &self,
        frame: Bytes,
        room: u32,
        owed: bool,
        call: Option<u64>,
    ) -> Result<(), Refused> {
        {
            let mut state = self.lock();
            if state.phase != Phase::Open {
                drop(state);
                self.room().add_permits(room as usize);
                return Err(Refused::Closed);
            }
            state.queued += frame.len();
            if owed {
                state.owed += frame.len();
            }
            state.frames.push_back(Queued {
                frame,
                room,
                owed,
                call,
            });
            stats::set(&self.metrics.queued_bytes, state.queued);
        }
        self.writer.wake();
        Ok(())
    }

    /// Owes a pong, replacing one not yet written.
    pub fn push_pong(&self, frame: Bytes) {
        {
            let mut state = self.lock();
            if state.phase != Phase::Open {
                return;
            }
            let replaced = state.pong.replace(frame);
            let len = state.pong.as_ref().map_or(0, Bytes::len);
            state.queued = state.queued + len - replaced.map_or(0, |p| p.len());
            stats::set(&self.metrics.queued_bytes, state.queued);
        }
        self.writer.wake();
    }

    /// Queues our heartbeat's ping, ahead of data, replacing one not yet
    /// written.
    pub fn push_ping(&self, frame: Bytes) {
        {
            let mut state = self.lock();
            if state.phase != Phase::Open {
                return;
            }
            let len = frame.len();
            let replaced = state.ping.replace(frame);
            state.queued = state.queued + len - replaced.map_or(0, |p| p.len());
            stats::set(&self.metrics.queued_bytes, state.queued);
        }
        self.writer.wake();
    }

    /// Queues our close frame behind everything queued: the last frame.
    /// Waiting senders are refused from now on. `false` if already closing.
    pub fn push_close(&self, frame: Bytes) -> bool {
        {
            let mut state = self.lock();
            if state.phase != Phase::Open {
                return false;
            }
            state.phase = Phase::Closing;
            state.queued += frame.len();
            state.frames.push_back(Queued {
                frame,
                room: 0,
                owed: false,
                call: None,
            });
        }
        self.room().close();
        self.writer.wake();
        true
    }

    /// The connection has stopped: drop what is queued and let the writer end.
    pub fn stop(&self) {
        {
            let mut state = self.lock();
            state.phase = Phase::Stopped;
            state.frames.clear();
            state.pong = None;
            state.ping = None;
            state.queued = 0;
            state.owed = 0;
            stats::set(&self.metrics.queued_bytes, 0);
        }
        self.room().close();
        self.writer.wake();
        self.reader.wake();
    }

    /// For the reader: whether reading may go on, i.e. the frames the
    /// connection owes are within the budget. When not, the reader's waker
    /// is woken once they are.
    pub fn poll_read_allowed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read_allowed() {
            return Poll::Ready(());
        }
        self.reader.register(cx.waker());
        if self.read_allowed() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn read_allowed(&self) -> bool {
        let state = self.lock();
        state.owed <= self.limit || state.phase == Phase::Stopped
    }

    /// For the writer of generation `generation`: moves every queued frame
    /// into `out` (control frames first).
    pub fn poll_take(
        &self,
        cx: &mut Context<'_>,
        generation: u64,
        out: &mut Vec<Queued>,
    ) -> Poll<Take> {
        if let Poll::Ready(take) = self.take(generation, out) {
            return Poll::Ready(take);
        }
        self.writer.register(cx.waker());
        self.take(generation, out)
    }

    fn take(&self, generation: u64, out: &mut Vec<Queued>) -> Poll<Take> {
        let mut state = self.lock();
        if state.generation != generation {
            return match state.farewell.take_if(|(g, _)| *g == generation) {
                Some((_, frame)) => {
                    out.push(Queued {
                        frame,
                        room: 0,
                        owed: false,
                        call: None,
                    });
                    Poll::Ready(Take::Close)
                }
                None => Poll::Ready(Take::Stop),
            };
        }
        match state.phase {
            Phase::Stopped | Phase::CloseTaken => return Poll::Ready(Take::Stop),
            Phase::Open | Phase::Closing => {}
        }
        if let Some(ping) = state.ping.take() {
            out.push(Queued {
                frame: ping,
                room: 0,
                owed: false,
                call: None,
            });
        }
        if let Some(pong) = state.pong.take() {
            out.push(Queued {
                frame: pong,
                room: 0,
                owed: false,
                call: None,
            });
        }
        out.extend(state.frames.drain(..));
        if state.phase == Phase::Closing {
            state.phase = Phase::CloseTaken;
            return Poll::Ready(Take::Close);
        }
        if out.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Take::Frames)
        }
    }

    /// For the writer: these frames are written; their budget is free again.
    pub fn written(&self, generation: u64, frames: &[Queued]) {
        let (bytes, room, owed) = frames.iter().fold((0, 0, 0), |(b, r, o), q| {
            let len = q.frame.len();
            (
                b + len,
                r + q.room as usize,
                o + if q.owed { len } else { 0 },
            )
        });
        stats::add(&self.metrics.bytes_sent, bytes as u64);
        let reader_was_paused;
        {
            let mut state = self.lock();
            if state.generation != generation {
                // Frames of a socket given up on: their room and bytes were
                // written off by the reset.
                return;
            }
            reader_was_paused = state.owed > self.limit;
            state.queued = state.queued.saturating_sub(bytes);
            state.owed = state.owed.saturating_sub(owed);
            stats::set(&self.metrics.queued_bytes, state.queued);
        }
        if room > 0 {
            self.room().add_permits(room);
            self.room_freed.wake();
        }
        if reader_was_paused {
            self.reader.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    fn take_now(outbox: &Outbox) -> (Poll<Take>, Vec<Queued>) {
        let mut out = Vec::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let generation = outbox.generation();
        (outbox.poll_take(&mut cx, generation, &mut out), out)
    }

    fn outbox(limit: usize) -> (Arc<Outbox>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (Outbox::new(limit, Arc::clone(&metrics)), metrics)
    }

    #[test]
    fn the_budget_refuses_beyond_the_limit_and_comes_back_when_written() {
        let (outbox, metrics) = outbox(100);
        assert_eq!(outbox.try_push(&frame(60)), Ok(()));
        assert_eq!(outbox.try_push(&frame(60)), Err(Refused::Full));
        assert_eq!(outbox.try_push(&frame(40)), Ok(()));
        assert_eq!(metrics.snapshot().queued_bytes, 100);
        let (take, frames) = take_now(&outbox);
        assert_eq!((take, frames.len()), (Poll::Ready(Take::Frames), 2));
        assert_eq!(
            outbox.try_push(&frame(1)),
            Err(Refused::Full),
            "not written yet"
        );
        outbox.written(outbox.generation(), &frames);
        assert_eq!(metrics.snapshot().queued_bytes, 0);
        assert_eq!(metrics.snapshot().bytes_sent, 100);
        assert_eq!(outbox.try_push(&frame(100)), Ok(()));
    }

    #[test]
    fn a_frame_larger_than_the_budget_goes_alone() {
        let (outbox, _) = outbox(100);
        assert_eq!(outbox.try_push(&frame(1000)), Ok(()));
        assert_eq!(outbox.try_push(&frame(1)), Err(Refused::Full));
        let (_, frames) = take_now(&outbox);
        outbox.written(outbox.generation(), &frames);
        assert_eq!(outbox.try_push(&frame(1)), Ok(()));
    }

    #[actix_rt::test]
    async fn a_waiting_sender_gets_room_once_frames_are_written() {
        let (outbox, _) = outbox(100);
        outbox.try_push(&frame(100)).unwrap();
        let waiting = {
            let outbox = Arc::clone(&outbox);
            actix_rt::spawn(async move { outbox.push(frame(50)).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let (_, frames) = take_now(&outbox);
        outbox.written(outbox.generation(), &frames);
        assert_eq!(waiting.await.unwrap(), Ok(()));
        let (_, frames) = take_now(&outbox);
        assert_eq!(frames.len(), 1);
    }

    #[actix_rt::test]
    async fn closing_refuses_waiting_and_later_senders() {
        let (outbox, _) = outbox(10);
        outbox.try_push(&frame(10)).unwrap();
        let waiting = {
            let outbox = Arc::clone(&outbox);
            actix_rt::spawn(async move { outbox.push(frame(5)).await })
        };
        tokio::task::yield_now().await;
        assert!(outbox.push_close(frame(4)));
        assert!(!outbox.push_close(frame(4)), "only one close frame");
        assert_eq!(waiting.await.unwrap(), Err(Refused::Closed));
        assert_eq!(outbox.try_push(&frame(1)), Err(Refused::Closed));
        assert_eq!(outbox.push_owed(frame(1)), Err(Refused::Closed));
        outbox.push_pong(frame(2));
        let (take, frames) = take_now(&outbox);
        assert_eq!(take, Poll::Ready(Take::Close));
        let lens: Vec<usize> = frames.iter().map(|q| q.frame.len()).collect();
        assert_eq!(
            lens,
            [10, 4],
            "queued data, then the close frame, nothing after"
        );
        let (take, _) = take_now(&outbox);
        assert_eq!(take, Poll::Ready(Take::Stop));
    }

    #[test]
    fn only_the_latest_pong_is_kept_and_it_goes_first() {
        let (outbox, metrics) = outbox(100);
        outbox.try_push(&frame(10)).unwrap();
        outbox.push_pong(Bytes::from_static(b"p1"));
        outbox.push_pong(Bytes::from_static(b"p22"));
        assert_eq!(metrics.snapshot().queued_bytes, 13);
        let (_, frames) = take_now(&outbox);
        let first: &[u8] = &frames[0].frame;
        assert_eq!((frames.len(), first), (2, &b"p22"[..]));
        outbox.written(outbox.generation(), &frames);
        assert_eq!(metrics.snapshot().queued_bytes, 0);
    }

    #[test]
    fn owed_frames_beyond_the_budget_pause_reading_until_written() {
        let (outbox, _) = outbox(100);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        outbox.push_owed(frame(80)).unwrap();
        assert!(outbox.poll_read_allowed(&mut cx).is_ready());
        outbox.push_owed(frame(80)).unwrap();
        assert!(outbox.poll_read_allowed(&mut cx).is_pending());
        // Frames of waiting senders never pause reading.
        let (other, _) = self::outbox(10);
        other.try_push(&frame(10)).unwrap();
        assert!(other.poll_read_allowed(&mut cx).is_ready());
        let (_, frames) = take_now(&outbox);
        outbox.written(outbox.generation(), &frames);
        assert!(outbox.poll_read_allowed(&mut cx).is_ready());
    }

    #[test]
    fn stop_drops_everything_and_ends_the_writer() {
        let (outbox, metrics) = outbox(100);
        outbox.try_push(&frame(10)).unwrap();
        outbox.stop();
        assert_eq!(metrics.snapshot().queued_bytes, 0);
        let (take, frames) = take_now(&outbox);
        assert_eq!((take, frames.len()), (Poll::Ready(Take::Stop), 0));
        assert_eq!(outbox.try_push(&frame(1)), Err(Refused::Closed));
    }

    #[actix_rt::test]
    async fn a_reset_starts_over_for_a_new_socket() {
        let (outbox, metrics) = outbox(10);
        let old_writer = outbox.generation();
        outbox.try_push(&frame(10)).unwrap();
        let waiting = {
            let outbox = Arc::clone(&outbox);
            actix_rt::spawn(async move { outbox.push(frame(5)).await })
        };
        tokio::task::yield_now().await;
        outbox.push_close(frame(2));
        let _ = outbox.reset(None);
        assert_eq!(
            waiting.await.unwrap(),
            Err(Refused::Closed),
            "it waited for the old socket"
        );
        assert_eq!(metrics.snapshot().queued_bytes, 0);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        assert_eq!(
            outbox.poll_take(&mut cx, old_writer, &mut out),
            Poll::Ready(Take::Stop)
        );
        assert_eq!(
            outbox.try_push(&frame(10)),
            Ok(()),
            "a fresh budget, open again"
        );
        outbox.push_ping(Bytes::from_static(b"ping"));
        let (take, frames) = take_now(&outbox);
        assert_eq!(take, Poll::Ready(Take::Frames));
        let first: &[u8] = &frames[0].frame;
        assert_eq!((frames.len(), first), (2, &b"ping"[..]));
    }

    #[test]
    fn the_old_socket_gets_its_farewell_and_its_late_writes_cost_the_new_one_nothing() {
        let (outbox, metrics) = outbox(10);
        let old = outbox.generation();
        outbox.try_push(&frame(8)).unwrap();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut in_flight = Vec::new();
        assert_eq!(
            outbox.poll_take(&mut cx, old, &mut in_flight),
            Poll::Ready(Take::Frames)
        );
        let _ = outbox.reset(Some(Bytes::from_static(b"bye")));
        outbox.try_push(&frame(9)).unwrap();
        // The old writer finishes what it had taken: no room comes back from it.
        outbox.written(old, &in_flight);
        assert_eq!(
            outbox.try_push(&frame(2)),
            Err(Refused::Full),
            "the new budget is not inflated"
        );
        assert_eq!(metrics.snapshot().queued_bytes, 9);
        let mut last = Vec::new();
        assert_eq!(
            outbox.poll_take(&mut cx, old, &mut last),
            Poll::Ready(Take::Close)
        );
        let bye: &[u8] = &last[0].frame;
        assert_eq!(bye, b"bye");
        assert_eq!(
            outbox.poll_take(&mut cx, old, &mut Vec::new()),
            Poll::Ready(Take::Stop),
            "once"
        );
    }

    #[test]
    fn a_reset_hands_back_the_call_frames_never_taken() {
        let (outbox, _) = outbox(100);
        let old = outbox.generation();
        outbox.try_push_call(&frame(5), 1).unwrap();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut taken = Vec::new();
        let _ = outbox.poll_take(&mut cx, old, &mut taken);
        outbox.try_push_call(&frame(6), 2).unwrap();
        outbox.try_push(&frame(7)).unwrap(); // a notification
        outbox.try_push_call(&frame(8), 3).unwrap();
        let unwritten: Vec<(u64, usize)> = outbox
            .reset(None)
            .into_iter()
            .map(|(id, frame)| (id, frame.len()))
            .collect();
        assert_eq!(
            unwritten,
            [(2, 6), (3, 8)],
            "call 1 was taken by the writer"
        );
    }

    #[test]
    fn nothing_to_write_waits() {
        let (outbox, _) = outbox(100);
        let (take, frames) = take_now(&outbox);
        assert!(take.is_pending() && frames.is_empty());
    }
}
