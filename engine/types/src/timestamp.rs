//! Hybrid timestamps handed out by PD's TSO: `physical_ms << 18 | logical`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Number of low bits that hold the logical counter.
pub const LOGICAL_BITS: u32 = 18;
/// Largest logical value within one physical millisecond.
pub const LOGICAL_MAX: u64 = (1 << LOGICAL_BITS) - 1;

/// A TSO timestamp. Ordered as a `u64`; zero means "none".
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The absent timestamp.
    pub const ZERO: Timestamp = Timestamp(0);
    /// The largest timestamp: reads at it see everything committed.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// Builds a timestamp from its physical (milliseconds) and logical parts.
    pub fn compose(physical_ms: u64, logical: u64) -> Timestamp {
        debug_assert!(logical <= LOGICAL_MAX, "logical part overflows: {logical}");
        Timestamp((physical_ms << LOGICAL_BITS) | logical)
    }

    /// Milliseconds part.
    pub fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// Logical counter part.
    pub fn logical(self) -> u64 {
        self.0 & LOGICAL_MAX
    }

    /// The next timestamp (used for `min_commit_ts = start_ts + 1` and similar).
    pub fn next(self) -> Timestamp {
        Timestamp(self.0 + 1)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_round_trips_and_orders() {
        let a = Timestamp::compose(1_700_000_000_000, 5);
        assert_eq!(a.physical_ms(), 1_700_000_000_000);
        assert_eq!(a.logical(), 5);
        assert!(Timestamp::compose(1_700_000_000_000, LOGICAL_MAX) < Timestamp::compose(1_700_000_000_001, 0));
        assert_eq!(a.next().logical(), 6);
    }
}
