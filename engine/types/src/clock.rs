//! The one place a node reads wall-clock time, so the simulator can skew it per node.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The rate of a clock that keeps true time, in thousandths.
pub const RATE_PERMILLE_TRUE: u64 = 1_000;

/// A node's clocks: the wall clock — the (simulated, under madsim) system time plus an offset
/// the simulator's clock-skew nemesis controls — and a monotonic reading no skew or jump
/// moves. Cloning shares both.
///
/// The monotonic reading runs at a rate ([`Clock::set_rate_permille`]), true by default: a
/// node whose clock source runs slow sees less time pass than the others do, while NTP keeps
/// stepping its wall clock right (a monotonic clock is never stepped). Work paced by the node's
/// own sense of time — raft's ticks (`keel_raftstore`), PD's silence detection — follows it.
///
/// Timeouts inside async code use `tokio::time`; [`Clock::elapsed_ms`] is for synchronous
/// components that measure how long something lasted (PD: how long a store has been silent),
/// which must never take a wall-clock jump for time passing.
#[derive(Clone, Debug)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    /// Time moved on by hand ([`Clock::advance_ms`]); both readings include it.
    passed_ms: Arc<AtomicU64>,
    /// The monotonic reading's rate and where it last changed.
    rate: Arc<Mutex<Rate>>,
    /// Where the monotonic reading starts.
    start: Instant,
}

/// The monotonic reading is `reading_ms + (true elapsed - since_ms) * permille / 1000`.
#[derive(Clone, Copy, Debug)]
struct Rate {
    permille: u64,
    /// True milliseconds since `start` when the rate last changed.
    since_ms: u64,
    /// The monotonic reading then (without `passed_ms`).
    reading_ms: u64,
}

impl Rate {
    fn reading_at(&self, true_ms: u64) -> u64 {
        self.reading_ms + true_ms.saturating_sub(self.since_ms) * self.permille / RATE_PERMILLE_TRUE
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            offset_ms: Arc::default(),
            passed_ms: Arc::default(),
            rate: Arc::new(Mutex::new(Rate { permille: RATE_PERMILLE_TRUE, since_ms: 0, reading_ms: 0 })),
            start: Instant::now(),
        }
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
    /// It runs at this clock's rate.
    pub fn elapsed_ms(&self) -> u64 {
        let true_ms = self.start.elapsed().as_millis() as u64;
        self.rate.lock().expect("clock rate lock").reading_at(true_ms) + self.passed_ms.load(Ordering::Relaxed)
    }

    /// Makes the monotonic reading run at `permille` thousandths of true time from now on
    /// ([`RATE_PERMILLE_TRUE`]: true time again; the time it lost stays lost, as a monotonic
    /// clock is never stepped). Simulator only in practice.
    pub fn set_rate_permille(&self, permille: u64) {
        let true_ms = self.start.elapsed().as_millis() as u64;
        let mut rate = self.rate.lock().expect("clock rate lock");
        *rate = Rate { permille, since_ms: true_ms, reading_ms: rate.reading_at(true_ms) };
    }

    /// The monotonic reading's current rate in thousandths of true time.
    pub fn rate_permille(&self) -> u64 {
        self.rate.lock().expect("clock rate lock").permille
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

    #[test]
    fn rate_is_shared_and_a_slow_spell_stays_lost() {
        let a = Clock::new();
        let b = a.clone();
        assert_eq!(a.rate_permille(), RATE_PERMILLE_TRUE);
        let r = Rate { permille: 250, since_ms: 1_000, reading_ms: 1_000 };
        assert_eq!(r.reading_at(1_000), 1_000);
        assert_eq!(r.reading_at(3_000), 1_500, "a quarter of the time passes");
        assert_eq!(r.reading_at(500), 1_000, "never before the change");
        b.set_rate_permille(250);
        assert_eq!(a.rate_permille(), 250);
        let before = a.elapsed_ms();
        b.set_rate_permille(RATE_PERMILLE_TRUE);
        assert!(a.elapsed_ms() >= before, "a rate change never moves the reading back");
    }
}
