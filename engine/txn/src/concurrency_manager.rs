//! The per-node concurrency manager that makes async commit and 1PC safe.
//!
//! Those transactions pick their commit timestamp on the storage node (no TSO round trip),
//! so the node must guarantee it is above every snapshot read that could have missed the
//! writes. Two mechanisms, under one mutex:
//! - `max_ts`: every read bumps it to its start_ts *before* taking its snapshot; an
//!   async-commit / 1PC prewrite takes `min_commit_ts > max_ts`.
//! - the memory lock table: such a prewrite publishes its locks here *before* computing
//!   min_commit_ts and keeps them until its writes are applied, so a read that bumped
//!   max_ts too late to be counted still sees the lock (and reports `Locked`).
//!
//! A node that just became leader of a region has not seen the reads served by the old
//! leader: its max_ts must first be raised to a fresh PD timestamp. Until then it refuses
//! async-commit and 1PC prewrites (see [`ConcurrencyManager::begin_max_ts_sync`]).

use crate::mvcc::lock::blocks_read;
use keel_types::error::LockInfo;
use keel_types::Timestamp;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The node's concurrency manager. Cheap to clone (shared).
#[derive(Clone)]
pub struct ConcurrencyManager {
    inner: Arc<Inner>,
}

struct Inner {
    max_ts: AtomicU64,
    synced: AtomicBool,
    sync_generation: AtomicU64,
    table: Mutex<BTreeMap<Vec<u8>, LockInfo>>,
}

/// In-memory locks of one prewrite; dropping it removes them (after the writes applied).
pub struct MemoryLockGuard {
    inner: Arc<Inner>,
    keys: Vec<Vec<u8>>,
    start_ts: Timestamp,
}

impl ConcurrencyManager {
    /// A manager whose max_ts starts at `initial_max_ts` (a PD timestamp) and counts as
    /// synced.
    pub fn new(initial_max_ts: Timestamp) -> ConcurrencyManager {
        ConcurrencyManager {
            inner: Arc::new(Inner {
                max_ts: AtomicU64::new(initial_max_ts.0),
                synced: AtomicBool::new(true),
                sync_generation: AtomicU64::new(0),
                table: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, LockInfo>> {
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The largest read timestamp seen (or synced from PD).
    pub fn max_ts(&self) -> Timestamp {
        Timestamp(self.inner.max_ts.load(Ordering::SeqCst))
    }

    /// Raises max_ts to `ts` (never lowers it; `Timestamp::MAX`, "read the latest", is
    /// ignored so it cannot make every later commit timestamp overflow).
    pub fn update_max_ts(&self, ts: Timestamp) {
        if ts != Timestamp::MAX {
            self.inner.max_ts.fetch_max(ts.0, Ordering::SeqCst);
        }
    }

    /// Marks max_ts synced or not. Async-commit and 1PC prewrites are refused while not.
    pub fn set_max_ts_synced(&self, synced: bool) {
        self.inner.synced.store(synced, Ordering::SeqCst);
    }

    /// Whether async-commit and 1PC prewrites may run.
    pub fn is_max_ts_synced(&self) -> bool {
        self.inner.synced.load(Ordering::SeqCst)
    }

    /// Call when this node becomes a region's leader: marks max_ts unsynced and returns a
    /// generation for [`ConcurrencyManager::finish_max_ts_sync`]. Fetch the PD timestamp
    /// *after* this call.
    pub fn begin_max_ts_sync(&self) -> u64 {
        let generation = self.inner.sync_generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.set_max_ts_synced(false);
        generation
    }

    /// Raises max_ts to `pd_ts` and marks it synced, unless another leadership change began
    /// a newer sync meanwhile (that one's PD timestamp is still to come).
    pub fn finish_max_ts_sync(&self, generation: u64, pd_ts: Timestamp) {
        self.update_max_ts(pd_ts);
        if self.inner.sync_generation.load(Ordering::SeqCst) == generation {
            self.set_max_ts_synced(true);
        }
    }

    /// A point read at `ts`: bumps max_ts, then reports an in-memory lock that blocks it.
    pub fn read_key_check(&self, key: &[u8], ts: Timestamp) -> Result<(), LockInfo> {
        let table = self.table();
        self.update_max_ts(ts);
        match table.get(key) {
            Some(l) if blocks_read(l.start_ts, l.min_commit_ts, ts) => Err(l.clone()),
            _ => Ok(()),
        }
    }

    /// A range read of `[start, end)` (`end` empty: unbounded) at `ts`: bumps max_ts, then
    /// lists the in-memory locks in the range that block it.
    pub fn read_range_check(&self, start: &[u8], end: &[u8], ts: Timestamp) -> Vec<LockInfo> {
        let table = self.table();
        self.update_max_ts(ts);
        table
            .range(start.to_vec()..)
            .take_while(|(k, _)| end.is_empty() || k.as_slice() < end)
            .filter(|(_, l)| blocks_read(l.start_ts, l.min_commit_ts, ts))
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Publishes in-memory locks for a prewrite of `start_ts`: under the table's mutex,
    /// `build` gets the current max_ts and returns the locks (with their min_commit_ts).
    pub fn lock_keys(&self, start_ts: Timestamp, build: impl FnOnce(Timestamp) -> Vec<LockInfo>) -> MemoryLockGuard {
        let mut table = self.table();
        let locks = build(self.max_ts());
        let keys = locks.iter().map(|l| l.key.clone()).collect();
        for l in locks {
            debug_assert_eq!(l.start_ts, start_ts);
            table.insert(l.key.clone(), l);
        }
        MemoryLockGuard { inner: self.inner.clone(), keys, start_ts }
    }

    /// Number of in-memory locks (for tests and status).
    pub fn memory_locks(&self) -> usize {
        self.table().len()
    }
}

impl Drop for MemoryLockGuard {
    fn drop(&mut self) {
        let mut table = self.inner.table.lock().unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            if table.get(key).is_some_and(|l| l.start_ts == self.start_ts) {
                table.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(key: &[u8], start: u64, min_commit: u64) -> LockInfo {
        LockInfo {
            key: key.to_vec(),
            primary: key.to_vec(),
            start_ts: Timestamp(start),
            ttl_ms: 1,
            min_commit_ts: Timestamp(min_commit),
            secondaries: vec![],
            use_async_commit: true,
        }
    }

    #[test]
    fn reads_bump_max_ts_and_see_memory_locks() {
        let cm = ConcurrencyManager::new(Timestamp(5));
        assert!(cm.read_key_check(b"a", Timestamp(10)).is_ok());
        assert_eq!(cm.max_ts(), Timestamp(10));
        cm.update_max_ts(Timestamp::MAX);
        assert_eq!(cm.max_ts(), Timestamp(10));
        let mut min = Timestamp::ZERO;
        let guard = cm.lock_keys(Timestamp(8), |max_ts| {
            min = max_ts.next();
            vec![info(b"a", 8, min.0), info(b"c", 8, min.0)]
        });
        assert_eq!(min, Timestamp(11));
        assert!(cm.read_key_check(b"a", Timestamp(10)).is_ok(), "commits above the read");
        assert!(cm.read_key_check(b"a", Timestamp(12)).is_err());
        assert_eq!(cm.read_range_check(b"b", b"", Timestamp(12)).len(), 1);
        assert_eq!(cm.read_range_check(b"a", b"c", Timestamp(12)).len(), 1);
        drop(guard);
        assert_eq!(cm.memory_locks(), 0);
        assert!(cm.read_key_check(b"a", Timestamp(13)).is_ok());
    }

    #[test]
    fn sync_generations() {
        let cm = ConcurrencyManager::new(Timestamp(1));
        let g1 = cm.begin_max_ts_sync();
        let g2 = cm.begin_max_ts_sync();
        cm.finish_max_ts_sync(g1, Timestamp(50));
        assert!(!cm.is_max_ts_synced(), "a newer leadership change is still unsynced");
        cm.finish_max_ts_sync(g2, Timestamp(40));
        assert!(cm.is_max_ts_synced());
        assert_eq!(cm.max_ts(), Timestamp(50));
    }
}
