//! When to dial again after a connection ends, and how long to wait first:
//! the [`ReconnectPolicy`] as a state machine with no I/O and no clock of its
//! own (times are passed in), so every path is unit- and property-tested.

use std::time::{Duration, Instant};

use crate::config::ReconnectPolicy;

/// Why a connection ended, as far as reconnecting cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The server sent a close frame with this code.
    CloseCode(u16),
    /// The handshake was refused with this HTTP status.
    Refused(u16),
    /// The socket failed, was cut, or stopped answering (heartbeat).
    Lost,
}

/// What to do after a connection ended or an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Dial again after `delay`; this is attempt number `attempt` (from 1).
    Retry { attempt: u32, delay: Duration },
    /// Do not reconnect, for this reason.
    GiveUp(String),
}

/// The backoff's state across connections.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: ReconnectPolicy,
    /// Failed attempts in a row (the dial that ended the last connection
    /// not counted).
    attempts: u32,
    /// When the current connection came up.
    up_since: Option<Instant>,
}

impl Backoff {
    pub fn new(policy: ReconnectPolicy) -> Self {
        Backoff {
            policy,
            attempts: 0,
            up_since: None,
        }
    }

    /// A connection is up.
    pub fn connected(&mut self, now: Instant) {
        self.up_since = Some(now);
    }

    /// The connection ended (`ended`), or an attempt failed; `random` is a
    /// number in `[0, 1)` for the jitter.
    pub fn next(&mut self, ended: &Ended, now: Instant, random: f64) -> Verdict {
        match ended {
            Ended::CloseCode(1008) => {
                return Verdict::GiveUp("the server closed with 1008 (policy violation)".into())
            }
            Ended::Refused(status @ (401 | 403)) => {
                return Verdict::GiveUp(format!(
                    "the server refused the handshake with HTTP {status}"
                ))
            }
            _ => {}
        }
        // A connection that stayed up long enough starts the count again.
        if let Some(since) = self.up_since.take() {
            if now.saturating_duration_since(since) >= self.policy.reset_after {
                self.attempts = 0;
            }
        }
        if let Some(max) = self.policy.max_attempts {
            if self.attempts >= max {
                return Verdict::GiveUp(format!("gave up after {max} attempts"));
            }
        }
        self.attempts += 1;
        let step = self
            .policy
            .initial_delay
            .saturating_mul(1u32.checked_shl(self.attempts - 1).unwrap_or(u32::MAX))
            .min(self.policy.max_delay);
        // Full jitter: anywhere between zero and the step, so that many
        // clients dropped at once do not come back at once.
        let mut delay = step.mul_f64(random.clamp(0.0, 1.0));
        if matches!(ended, Ended::CloseCode(1013) | Ended::Refused(503)) {
            delay = delay.max(self.policy.busy_delay);
        }
        Verdict::Retry {
            attempt: self.attempts,
            delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy::new()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(2))
            .reset_after(Duration::from_secs(10))
    }

    fn retry(verdict: Verdict) -> (u32, Duration) {
        match verdict {
            Verdict::Retry { attempt, delay } => (attempt, delay),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn steps_double_up_to_the_maximum_with_full_jitter() {
        let mut backoff = Backoff::new(policy());
        let now = Instant::now();
        let steps: Vec<(u32, Duration)> = (0..7)
            .map(|_| retry(backoff.next(&Ended::Lost, now, 0.999_999)))
            .collect();
        let millis: Vec<u128> = steps.iter().map(|(_, d)| d.as_millis()).collect();
        assert_eq!(millis, [99, 199, 399, 799, 1599, 1999, 1999]);
        assert_eq!(steps.last().map(|s| s.0), Some(7));
        assert_eq!(
            retry(backoff.next(&Ended::Lost, now, 0.0)).1,
            Duration::ZERO
        );
    }

    #[test]
    fn some_endings_never_reconnect() {
        let now = Instant::now();
        for ended in [
            Ended::CloseCode(1008),
            Ended::Refused(401),
            Ended::Refused(403),
        ] {
            let verdict = Backoff::new(policy()).next(&ended, now, 0.5);
            assert!(
                matches!(verdict, Verdict::GiveUp(_)),
                "{ended:?}: {verdict:?}"
            );
        }
        for ended in [
            Ended::CloseCode(1001),
            Ended::CloseCode(1011),
            Ended::Refused(500),
            Ended::Lost,
        ] {
            let verdict = Backoff::new(policy()).next(&ended, now, 0.5);
            assert!(
                matches!(verdict, Verdict::Retry { .. }),
                "{ended:?}: {verdict:?}"
            );
        }
    }

    #[test]
    fn try_again_later_waits_longer() {
        let now = Instant::now();
        for ended in [Ended::CloseCode(1013), Ended::Refused(503)] {
            let (_, delay) = retry(Backoff::new(policy()).next(&ended, now, 0.0));
            assert_eq!(delay, Duration::from_secs(5), "{ended:?}");
        }
    }

    #[test]
    fn the_budget_runs_out_and_starts_again_after_a_stable_connection() {
        let mut backoff = Backoff::new(policy().max_attempts(3));
        let now = Instant::now();
        for attempt in 1..=3 {
            assert_eq!(retry(backoff.next(&Ended::Lost, now, 0.5)).0, attempt);
        }
        assert!(matches!(
            backoff.next(&Ended::Lost, now, 0.5),
            Verdict::GiveUp(_)
        ));
        // Up for a short while only: still spent.
        backoff.connected(now);
        let soon = now + Duration::from_secs(1);
        assert!(matches!(
            backoff.next(&Ended::Lost, soon, 0.5),
            Verdict::GiveUp(_)
        ));
        // Up long enough: a fresh budget.
        backoff.connected(now);
        let later = now + Duration::from_secs(11);
        assert_eq!(retry(backoff.next(&Ended::Lost, later, 0.5)).0, 1);
    }

    fn keeps_the_rules(events: Vec<(u8, u16, f64, u64)>) -> Result<(), TestCaseError> {
        let policy = policy().max_attempts(5);
        let mut backoff = Backoff::new(policy.clone());
        let mut now = Instant::now();
        let mut in_a_row = 0u32;
        for (kind, code, random, advance_ms) in events {
            now += Duration::from_millis(advance_ms);
            if kind == 5 {
                backoff.connected(now);
                continue;
            }
            let ended = match kind {
                0 | 1 => Ended::CloseCode(code),
                2 => Ended::Refused(code),
                _ => Ended::Lost,
            };
            match backoff.next(&ended, now, random) {
                Verdict::Retry { attempt, delay } => {
                    prop_assert!((1..=5).contains(&attempt));
                    in_a_row = attempt;
                    let busy = matches!(ended, Ended::CloseCode(1013) | Ended::Refused(503));
                    let cap = if busy {
                        policy.busy_delay.max(policy.max_delay)
                    } else {
                        policy.max_delay
                    };
                    prop_assert!(delay <= cap, "{delay:?}");
                    if busy {
                        prop_assert!(delay >= policy.busy_delay);
                    }
                    prop_assert!(!matches!(
                        ended,
                        Ended::CloseCode(1008) | Ended::Refused(401 | 403)
                    ));
                }
                Verdict::GiveUp(reason) => {
                    prop_assert!(!reason.is_empty());
                    let forbidden =
                        matches!(ended, Ended::CloseCode(1008) | Ended::Refused(401 | 403));
                    prop_assert!(forbidden || in_a_row == 5, "gave up early: {reason}");
                }
            }
        }
        Ok(())
    }

    fn events() -> impl Strategy<Value = Vec<(u8, u16, f64, u64)>> {
        prop::collection::vec((0u8..6, any::<u16>(), 0.0f64..1.0, 0u64..100_000), 0..200)
    }

    proptest! {
        #[test]
        fn any_order_of_events_keeps_the_rules(events in events()) {
            keeps_the_rules(events)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100_000))]
        /// The long run: `cargo test -- --ignored`.
        #[test]
        #[ignore = "long: many more cases"]
        fn any_order_of_events_keeps_the_rules_long(events in events()) {
            keeps_the_rules(events)?;
        }
    }
}
