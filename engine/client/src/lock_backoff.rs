//! How long a reader or writer pauses for other transactions' live locks before looking
//! again. Most locks live for a few round trips (a commit in flight), so the first pause is
//! short; it doubles while the same transactions keep blocking (a slow or dead owner, whose
//! lock ends with its TTL), and starts over when the blockers change, so a caller that
//! meets a stream of different short-lived locks never ends up waiting like one stuck
//! behind a dead transaction.

use keel_types::Timestamp;
use std::collections::BTreeSet;
use std::time::Duration;

/// First pause for a set of blocking transactions.
pub(crate) const LOCK_BACKOFF_INITIAL: Duration = Duration::from_millis(10);
/// Longest pause.
pub(crate) const LOCK_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The pause schedule of one caller (one region group of a read or a prewrite).
#[derive(Debug)]
pub(crate) struct LockBackoff {
    next: Duration,
    /// Start timestamps of the transactions that blocked last time.
    blocking: BTreeSet<Timestamp>,
}

impl LockBackoff {
    /// A schedule that has not paused yet.
    pub(crate) fn new() -> LockBackoff {
        LockBackoff { next: LOCK_BACKOFF_INITIAL, blocking: BTreeSet::new() }
    }

    /// The pause before looking again while the transactions `blocking` hold live locks;
    /// advances the schedule.
    pub(crate) fn pause(&mut self, blocking: BTreeSet<Timestamp>) -> Duration {
        if blocking != self.blocking {
            self.next = LOCK_BACKOFF_INITIAL;
            self.blocking = blocking;
        }
        let pause = self.next;
        self.next = (self.next * 2).min(LOCK_BACKOFF_MAX);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txns(ts: &[u64]) -> BTreeSet<Timestamp> {
        ts.iter().copied().map(Timestamp).collect()
    }

    #[test]
    fn doubles_for_the_same_blockers_and_starts_over_for_new_ones() {
        let mut b = LockBackoff::new();
        assert_eq!(b.pause(txns(&[5])), LOCK_BACKOFF_INITIAL);
        assert_eq!(b.pause(txns(&[5])), LOCK_BACKOFF_INITIAL * 2);
        assert_eq!(b.pause(txns(&[5])), LOCK_BACKOFF_INITIAL * 4);
        assert_eq!(b.pause(txns(&[5, 7])), LOCK_BACKOFF_INITIAL, "a new blocker starts over");
        assert_eq!(b.pause(txns(&[5, 7])), LOCK_BACKOFF_INITIAL * 2);
        for _ in 0..20 {
            b.pause(txns(&[5, 7]));
        }
        assert_eq!(b.pause(txns(&[5, 7])), LOCK_BACKOFF_MAX, "capped");
    }
}
