//! When the reader reads next: at once, or — while the server floods us with
//! notifications and nothing of ours awaits an answer — at most once per
//! interval.
//!
//! Why: a reader that takes each notification the moment it lands keeps
//! going to sleep between them, so every one of the server's writes must
//! wake it, and it acknowledges every small TCP segment as it reads it, so
//! the server's kernel sends each notification as a segment of its own. On
//! loopback, where the server's kernel also does our side's receiving, that
//! doubled the server's cost per notification (see docs/performance.md).
//! Reading a flood at most once per interval, staying runnable in between
//! (a yield, not a sleep), lets the server's writes gather into large
//! segments and wakes nobody; the price is at most one interval of added
//! latency per notification, and only during a flood. Answers to our calls
//! are never held back: any call in flight, or any message that is not a
//! notification, turns pacing off until the flood is seen again.
//!
//! [`ReadPacer`] is the decision alone, with no clock and no I/O: the reader
//! tells it when reads happen and frames arrive, and asks when to read.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pending::PendingCalls;
use crate::stats::{self, Metrics};

/// Frames per interval that make a flood: fewer than this and every read
/// happens at once. With the default interval of 200 µs, a flood is
/// 80,000 messages a second or more; slower streams are read as they come.
pub(crate) const FLOOD_FRAMES: u32 = 16;

/// Tracks the inbound rate and decides when to read.
#[derive(Debug)]
pub(crate) struct ReadPacer {
    /// `None`: never pace.
    interval: Option<Duration>,
    /// When the last read that returned data happened.
    last_read: Option<Instant>,
    /// The current rate window: when it began and the frames seen since.
    window_start: Option<Instant>,
    window_frames: u32,
    /// Whether the last completed window was a flood.
    flooding: bool,
    /// Whether the last read filled all the room it was given (more is
    /// waiting in the socket: read again at once).
    behind: bool,
}

impl ReadPacer {
    /// A pacer reading at most once per `interval` during a flood (`None`:
    /// always at once).
    pub fn new(interval: Option<Duration>) -> Self {
        ReadPacer {
            interval: interval.filter(|i| !i.is_zero()),
            last_read: None,
            window_start: None,
            window_frames: 0,
            flooding: false,
            behind: false,
        }
    }

    /// Whether a flood is under way: when not, reads happen at once and the
    /// reader need not ask [`next_read`](Self::next_read) nor report empty
    /// reads (no clock read, no look at the actor's state).
    pub fn flooding(&self) -> bool {
        self.flooding
    }

    /// A whole frame was decoded.
    pub fn frame(&mut self) {
        self.window_frames = self.window_frames.saturating_add(1);
    }

    /// A read returned data at `now`; `filled` tells whether it took all the
    /// room it was offered.
    pub fn read(&mut self, now: Instant, filled: bool) {
        self.behind = filled;
        self.last_read = Some(now);
        let Some(interval) = self.interval else {
            return;
        };
        match self.window_start {
            None => self.start_window(now),
            Some(start) => {
                let elapsed = now.saturating_duration_since(start);
                if elapsed >= interval {
                    // Frames per interval, in integers: frames × interval ≥
                    // FLOOD_FRAMES × elapsed.
                    let seen = u128::from(self.window_frames) * interval.as_nanos();
                    self.flooding = seen >= u128::from(FLOOD_FRAMES) * elapsed.as_nanos();
                    self.start_window(now);
                }
            }
        }
    }

    /// A read found nothing at `now`. After a whole interval without data
    /// the flood is over.
    pub fn empty(&mut self, now: Instant) {
        let (Some(interval), Some(last)) = (self.interval, self.last_read) else {
            return;
        };
        if now.saturating_duration_since(last) >= interval {
            self.flooding = false;
            self.window_start = None;
        }
    }

    /// When the next read may happen (`None`: now). `quiet` says whether
    /// only notifications have been arriving and no call awaits an answer.
    pub fn next_read(&self, quiet: bool) -> Option<Instant> {
        if !self.flooding || self.behind || !quiet {
            return None;
        }
        Some(self.last_read? + self.interval?)
    }

    fn start_window(&mut self, now: Instant) {
        self.window_start = Some(now);
        self.window_frames = 0;
    }
}

/// What the reader needs from the actor to pace: the interval, whether only
/// notifications have been arriving (set by the actor per message), whether
/// any call awaits an answer, and where to count a read put off. A cheap
/// handle; the reader and the actor share one thread.
#[derive(Clone)]
pub(crate) struct PacingLink {
    interval: Option<Duration>,
    pushes_only: Rc<Cell<bool>>,
    pending: PendingCalls,
    metrics: Arc<Metrics>,
}

impl PacingLink {
    pub fn new(interval: Option<Duration>, pending: PendingCalls, metrics: Arc<Metrics>) -> Self {
        PacingLink {
            interval,
            pushes_only: Rc::new(Cell::new(false)),
            pending,
            metrics,
        }
    }

    /// A pacer for a new socket's reader.
    pub fn pacer(&self) -> ReadPacer {
        ReadPacer::new(self.interval)
    }

    /// The actor's note of the message it just handled: a notification, or
    /// anything else (an answer, a request, a batch, garbage).
    pub fn saw(&self, notification: bool) {
        self.pushes_only.set(notification);
    }

    /// Whether reads may be paced: only notifications have been arriving
    /// and no call awaits an answer.
    pub fn quiet(&self) -> bool {
        self.pushes_only.get() && self.pending.sent() == 0
    }

    /// A read was put off.
    pub fn count_paced_read(&self) {
        stats::add(&self.metrics.paced_reads, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_micros(200);

    /// Reads every `gap`, each bringing `frames` frames, `n` times from `t`.
    fn feed(p: &mut ReadPacer, t: &mut Instant, gap: Duration, frames: u32, n: u32) {
        for _ in 0..n {
            *t += gap;
            p.read(*t, false);
            for _ in 0..frames {
                p.frame();
            }
        }
    }

    #[test]
    fn a_slow_stream_is_read_at_once() {
        let mut p = ReadPacer::new(Some(I));
        let mut t = Instant::now();
        // One frame fewer per interval than a flood has.
        feed(&mut p, &mut t, I, FLOOD_FRAMES - 1, 50);
        assert_eq!(p.next_read(true), None);
    }

    #[test]
    fn a_flood_is_read_once_per_interval() {
        let mut p = ReadPacer::new(Some(I));
        let mut t = Instant::now();
        feed(&mut p, &mut t, Duration::from_micros(10), 4, 50);
        assert_eq!(p.next_read(true), Some(t + I));
    }

    #[test]
    fn the_rate_threshold_is_exact() {
        for (frames, flood) in [(FLOOD_FRAMES - 1, false), (FLOOD_FRAMES, true)] {
            let mut p = ReadPacer::new(Some(I));
            let mut t = Instant::now();
            feed(&mut p, &mut t, I, frames, 5);
            assert_eq!(p.next_read(true).is_some(), flood, "{frames} frames");
        }
    }

    #[test]
    fn calls_in_flight_or_other_messages_are_never_held_back() {
        let mut p = ReadPacer::new(Some(I));
        let mut t = Instant::now();
        feed(&mut p, &mut t, Duration::from_micros(10), 4, 50);
        assert_eq!(p.next_read(false), None);
    }

    #[test]
    fn a_full_read_means_read_again_at_once() {
        let mut p = ReadPacer::new(Some(I));
        let mut t = Instant::now();
        feed(&mut p, &mut t, Duration::from_micros(10), 4, 50);
        t += I;
        p.read(t, true);
        (0..40).for_each(|_| p.frame());
        assert_eq!(p.next_read(true), None);
        t += I;
        p.read(t, false);
        assert_eq!(p.next_read(true), Some(t + I));
    }

    #[test]
    fn an_empty_interval_ends_the_flood() {
        let mut p = ReadPacer::new(Some(I));
        let mut t = Instant::now();
        feed(&mut p, &mut t, Duration::from_micros(10), 4, 50);
        // Empty reads sooner than an interval after the last data (the
        // reader caught up between two writes) do not end it.
        p.empty(t + Duration::from_micros(50));
        assert!(p.next_read(true).is_some());
        p.empty(t + I);
        assert_eq!(p.next_read(true), None);
        // Nor does the first read after the pause count as a flood.
        t += Duration::from_millis(50);
        p.read(t, false);
        p.frame();
        assert_eq!(p.next_read(true), None);
    }

    #[test]
    fn a_pause_inside_a_window_brings_the_rate_down() {
        let mut p = ReadPacer::new(Some(I));
        let mut t = Instant::now();
        feed(&mut p, &mut t, Duration::from_micros(10), 4, 50);
        // One frame after 1 ms: the window's rate is far below a flood.
        feed(&mut p, &mut t, Duration::from_millis(1), 1, 2);
        assert_eq!(p.next_read(true), None);
    }

    #[test]
    fn no_interval_never_paces() {
        for interval in [None, Some(Duration::ZERO)] {
            let mut p = ReadPacer::new(interval);
            let mut t = Instant::now();
            feed(&mut p, &mut t, Duration::from_micros(1), 100, 100);
            assert_eq!(p.next_read(true), None);
        }
    }
}
