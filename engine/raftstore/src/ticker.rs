//! The store loop's raft clock: a real-time interval whose ticks are passed on only as the
//! node's [`Clock`] — its monotonic reading — moves on by a tick's worth. On a healthy node
//! that is every tick (and the burst of missed ticks after a stall); on a node whose clock
//! source runs slow, or stood still while the machine was suspended, raft's election and
//! check-quorum timers come late by as much — the hazard a leader lease has and ReadIndex
//! must not.

use keel_types::Clock;
use std::time::Duration;
use tokio::time::Interval;

/// Raft ticks paced by the node's clock.
pub(crate) struct RaftTicker {
    interval: Interval,
    clock: Clock,
    period_ms: u64,
    /// The clock's monotonic reading at which the next tick is due.
    next_ms: u64,
}

impl RaftTicker {
    /// Ticks every `period` of `clock`'s time.
    pub(crate) fn new(period: Duration, clock: Clock) -> RaftTicker {
        let next_ms = clock.elapsed_ms();
        RaftTicker { interval: tokio::time::interval(period), clock, period_ms: period.as_millis() as u64, next_ms }
    }

    /// Waits for the next tick. Cancel-safe (state changes only between awaits), so it can
    /// sit in a `select!`. Missed ticks come in a burst, one per call, as `Interval`'s do.
    pub(crate) async fn tick(&mut self) {
        loop {
            self.interval.tick().await;
            if self.clock.elapsed_ms() >= self.next_ms {
                self.next_ms += self.period_ms;
                return;
            }
        }
    }
}

#[cfg(all(test, madsim))]
mod tests {
    use super::*;
    use keel_types::clock::RATE_PERMILLE_TRUE;
    use madsim::runtime::Runtime;

    #[test]
    fn a_slow_clock_ticks_slowly_and_recovers() {
        Runtime::new().block_on(async {
            let clock = Clock::new();
            let mut ticker = RaftTicker::new(Duration::from_millis(100), clock.clone());
            let start = tokio::time::Instant::now();
            let mut n = 0;
            while start.elapsed() < Duration::from_millis(1_000) {
                ticker.tick().await;
                n += 1;
            }
            assert!((10..=11).contains(&n), "true clock: a tick per period, got {n}");
            clock.set_rate_permille(250);
            let start = tokio::time::Instant::now();
            for _ in 0..5 {
                ticker.tick().await;
            }
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(1_900) && took <= Duration::from_millis(2_100), "{took:?}");
            clock.set_rate_permille(RATE_PERMILLE_TRUE);
            let start = tokio::time::Instant::now();
            for _ in 0..5 {
                ticker.tick().await;
            }
            assert!(start.elapsed() <= Duration::from_millis(500), "back to true time");
            // A clock that stood still while the task could not run: no burst of missed ticks
            // afterwards (a running clock gets one, as Interval's).
            clock.set_rate_permille(0);
            tokio::time::sleep(Duration::from_millis(3_000)).await;
            clock.set_rate_permille(RATE_PERMILLE_TRUE);
            let start = tokio::time::Instant::now();
            ticker.tick().await;
            ticker.tick().await;
            assert!(start.elapsed() >= Duration::from_millis(90), "no burst after a stopped clock");
            tokio::time::sleep(Duration::from_millis(3_000)).await;
            let start = tokio::time::Instant::now();
            for _ in 0..20 {
                ticker.tick().await;
            }
            assert!(start.elapsed() < Duration::from_millis(100), "a burst after a running clock");
        });
    }
}
