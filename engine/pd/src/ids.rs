//! The id allocator: one id space for stores, regions and peers.
//!
//! Invariant: every id handed out is below the persisted high-water mark, so after a
//! restart allocation resumes at the mark and never repeats an id (the unused rest of the
//! old window becomes a gap, which is fine).

use crate::meta;
use crate::{Error, ID_PERSIST_AHEAD};
use keel_storage::{Engine, WriteBatch};

/// Id 0 means "none" everywhere, so allocation starts here.
const FIRST_ID: u64 = 1;

#[derive(Debug)]
pub(crate) struct IdAllocator {
    /// Next id to hand out.
    next: u64,
    /// Persisted high-water mark: ids `< end` may have been handed out.
    end: u64,
}

impl IdAllocator {
    pub(crate) fn load(engine: &dyn Engine) -> Result<Self, Error> {
        let end = meta::read_u64(engine, meta::ALLOC_ID)?.unwrap_or(FIRST_ID).max(FIRST_ID);
        Ok(IdAllocator { next: end, end })
    }

    /// Allocates `count` consecutive ids and returns the first, persisting a new
    /// high-water mark first when the current one does not cover them.
    pub(crate) fn alloc(&mut self, engine: &dyn Engine, count: u64) -> Result<AllocOutcome, keel_storage::Error> {
        debug_assert!(count > 0);
        let Some(after) = self.next.checked_add(count) else {
            return Ok(AllocOutcome::Exhausted);
        };
        if after > self.end {
            let new_end = after.saturating_add(ID_PERSIST_AHEAD);
            let mut batch = WriteBatch::new();
            meta::put_u64(&mut batch, meta::ALLOC_ID, new_end);
            meta::write_synced(engine, batch)?;
            self.end = new_end;
        }
        let first = self.next;
        self.next = after;
        debug_assert!(self.next <= self.end);
        Ok(AllocOutcome::Ids(first))
    }

    /// Next id to hand out (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn next(&self) -> u64 {
        self.next
    }
}

pub(crate) enum AllocOutcome {
    /// The first of the allocated ids.
    Ids(u64),
    /// The id space is exhausted (u64 overflow).
    Exhausted,
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_storage::SimEngine;

    fn alloc(ids: &mut IdAllocator, engine: &SimEngine, count: u64) -> u64 {
        match ids.alloc(engine, count).unwrap() {
            AllocOutcome::Ids(first) => first,
            AllocOutcome::Exhausted => panic!("exhausted"),
        }
    }

    #[test]
    fn resumes_past_persisted_mark_after_reopen() {
        let engine = SimEngine::new();
        let mut ids = IdAllocator::load(&engine).unwrap();
        assert_eq!(alloc(&mut ids, &engine, 1), 1);
        assert_eq!(alloc(&mut ids, &engine, 5), 2);
        assert_eq!(ids.next(), 7);
        engine.crash_keeping(0);
        let mut ids = IdAllocator::load(&engine).unwrap();
        let first = alloc(&mut ids, &engine, 1);
        assert!(first >= 7, "reused id {first}");
        assert_eq!(first, 2 + ID_PERSIST_AHEAD);
        // A request larger than the persisted window forces a new mark first.
        let big = alloc(&mut ids, &engine, ID_PERSIST_AHEAD * 2);
        engine.crash_keeping(0);
        let mut ids = IdAllocator::load(&engine).unwrap();
        assert!(alloc(&mut ids, &engine, 1) >= big + ID_PERSIST_AHEAD * 2);
    }
}
