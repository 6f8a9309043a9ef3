//! The one place a node reads wall-clock time, so the simulator can skew it per node.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A node's wall clock: the (simulated, under madsim) system time plus an offset the
/// simulator's clock-skew nemesis controls. Cloning shares the offset.
///
/// Monotonic durations (timeouts, ticks) must use `tokio::time`, never this clock.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
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
        (real + self.offset_ms.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Sets the skew applied to every later reading (simulator only in practice).
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
}
