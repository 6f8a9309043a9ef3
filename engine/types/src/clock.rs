//! The one place a node reads wall-clock time, so the simulator can skew it per node.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A node's clocks: the wall clock — the (simulated, under madsim) system time plus an offset
/// the simulator's clock-skew nemesis controls — and a monotonic reading no skew or jump
/// moves. Cloning shares both.
///
/// Timeouts and ticks inside async code use `tokio::time`; [`Clock::elapsed_ms`] is for
/// synchronous components that measure how long something lasted (PD: how long a store has
/// been silent), which must never take a wall-clock jump for time passing.
#[derive(Clone, Debug)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    /// Time moved on by hand ([`Clock::advance_ms`]); both readings include it.
    passed_ms: Arc<AtomicU64>,
    /// Where the monotonic reading starts.
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock { offset_ms: Arc::default(), passed_ms: Arc::default(), start: Instant::now() }
    }
}

impl Clock {
    /// A clock with no skew.
    pub fn new() -> Clock {
        Clock::default()
    }

    /// Milliseconds since the Unix epoch as this node believes them.
    pub fn now_ms(&self) -> u64 {
        // Reading SystemTime here is the one sanctioned wall-clock read (DESIGN.md §2);
        // madsim intercepts it in the simulator.
        let real = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        (real + self.offset_ms.load(Ordering::Relaxed) + self.passed_ms.load(Ordering::Relaxed) as i64).max(0) as u64
    }

    /// Milliseconds since this clock was created, by a monotonic clock (simulated under
    /// madsim): skew and jumps of the wall clock never move it.
    pub fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + self.passed_ms.load(Ordering::Relaxed)
    }

    /// Moves both readings on by `ms`, as if that much time had passed: for tests that drive
    /// a synchronous component (PD) round by round without a runtime.
    pub fn advance_ms(&self, ms: u64) {
        self.passed_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Sets the skew applied to every later wall-clock reading (simulator only in practice).
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Relaxed);
    }

    /// The current skew.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_is_shared_by_clones_and_applied() {
        let a = Clock::new();
        let b = a.clone();
        let before = a.now_ms();
        b.set_offset_ms(60_000);
        let after = a.now_ms();
        assert!(after >= before + 59_000, "{before} -> {after}");
        assert_eq!(a.offset_ms(), 60_000);
    }

    #[test]
    fn skew_never_moves_the_monotonic_reading() {
        let a = Clock::new();
        let b = a.clone();
        let before = a.elapsed_ms();
        b.set_offset_ms(3_600_000);
        assert!(a.elapsed_ms() < before + 1_000, "a jump ahead is not time passing");
        b.set_offset_ms(-3_600_000);
        assert!(a.elapsed_ms() >= before, "nor is a jump back");
        let wall = a.now_ms();
        b.advance_ms(10_000);
        assert!(a.elapsed_ms() >= before + 10_000);
        assert!(a.now_ms() >= wall + 10_000, "time passing moves the wall clock too");
    }
}
