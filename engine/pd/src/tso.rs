//! The timestamp oracle: `physical_ms << 18 | logical`, strictly increasing for the whole
//! life of the cluster.
//!
//! Timestamps are plain `u64`s, so a batch is a run of consecutive integers; when the
//! logical part of a run would pass `LOGICAL_MAX` it carries into the physical part
//! (the physical clock advances by 1 ms), which keeps every logical value `< 2^18`.
//!
//! Invariant: every timestamp served has a physical part strictly below the persisted
//! window end. After a restart serving resumes at `window_end << 18`, above everything
//! served before, whatever the clock says. If the clock jumps backwards the TSO keeps
//! counting up from the last timestamp served.

use crate::meta;
use crate::{Error, TSO_WINDOW_MS};
use keel_storage::{Engine, WriteBatch};
use keel_types::timestamp::LOGICAL_BITS;
use keel_types::{Clock, Timestamp};

#[derive(Debug)]
pub(crate) struct Tso {
    /// The last timestamp served (0 before the first).
    last: u64,
    /// Persisted: every served timestamp's physical part is below this, in ms.
    window_end_ms: u64,
}

impl Tso {
    pub(crate) fn load(engine: &dyn Engine) -> Result<Self, Error> {
        let window_end_ms = meta::read_u64(engine, meta::TSO)?.unwrap_or(0);
        if window_end_ms >= 1 << (64 - LOGICAL_BITS) {
            return Err(Error::Corrupt(format!("tso window end {window_end_ms} ms out of range")));
        }
        let last = Timestamp::compose(window_end_ms, 0).0.saturating_sub(1);
        Ok(Tso { last, window_end_ms })
    }

    /// Serves `count` timestamps and returns the last; the batch is `last - count + 1 ..= last`.
    pub(crate) fn alloc(&mut self, engine: &dyn Engine, clock: &Clock, count: u64) -> Result<Timestamp, TsoFailure> {
        debug_assert!(count > 0);
        let now_ms = clock.now_ms();
        let from_clock = Timestamp::compose(now_ms.min(physical_max()), 0).0;
        let first = from_clock.max(self.last.checked_add(1).ok_or(TsoFailure::Exhausted)?);
        let last = first.checked_add(count - 1).ok_or(TsoFailure::Exhausted)?;
        let last_physical = Timestamp(last).physical_ms();
        if last_physical >= self.window_end_ms {
            let new_end = last_physical.max(now_ms).saturating_add(1 + TSO_WINDOW_MS).min(physical_max());
            if last_physical >= new_end {
                return Err(TsoFailure::Exhausted);
            }
            let mut batch = WriteBatch::new();
            meta::put_u64(&mut batch, meta::TSO, new_end);
            meta::write_synced(engine, batch).map_err(TsoFailure::Storage)?;
            self.window_end_ms = new_end;
        }
        debug_assert!(last > self.last && Timestamp(last).physical_ms() < self.window_end_ms);
        self.last = last;
        Ok(Timestamp(last))
    }

    /// The last timestamp served (zero before the first).
    pub(crate) fn last(&self) -> Timestamp {
        Timestamp(self.last)
    }
}

/// Largest physical part a timestamp can carry.
fn physical_max() -> u64 {
    (1 << (64 - LOGICAL_BITS)) - 1
}

pub(crate) enum TsoFailure {
    /// Persisting the window failed.
    Storage(keel_storage::Error),
    /// The timestamp space is exhausted (only with a clock thousands of years ahead).
    Exhausted,
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_storage::SimEngine;
    use keel_types::timestamp::LOGICAL_MAX;

    fn alloc(tso: &mut Tso, engine: &SimEngine, clock: &Clock, count: u64) -> Timestamp {
        match tso.alloc(engine, clock, count) {
            Ok(ts) => ts,
            Err(_) => panic!("tso failed"),
        }
    }

    #[test]
    fn logical_overflow_carries_into_physical() {
        let engine = SimEngine::new();
        // A clock a minute ahead of the real one would also do; skew it far back so
        // the physical part stays put and only the logical counter moves.
        let clock = Clock::new();
        let mut tso = Tso::load(&engine).unwrap();
        let a = alloc(&mut tso, &engine, &clock, 1);
        clock.set_offset_ms(-600_000);
        let b = alloc(&mut tso, &engine, &clock, LOGICAL_MAX + 1);
        assert!(b > a);
        assert!(b.logical() <= LOGICAL_MAX);
        assert!(b.physical_ms() > a.physical_ms(), "batch of 2^18 must carry: {a:?} {b:?}");
        let c = alloc(&mut tso, &engine, &clock, 3);
        assert_eq!(c.0, b.0 + 3);
    }

    #[test]
    fn window_is_persisted_before_serving() {
        let engine = SimEngine::new();
        let clock = Clock::new();
        let mut tso = Tso::load(&engine).unwrap();
        let ts = alloc(&mut tso, &engine, &clock, 10);
        let saved = meta::read_u64(&engine, meta::TSO).unwrap().unwrap();
        assert!(ts.physical_ms() < saved);
        assert!(saved <= clock.now_ms() + TSO_WINDOW_MS + 1);
        assert_eq!(tso.last(), ts);
    }
}
