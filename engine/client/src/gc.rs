//! Resolving the locks a GC safe point leaves behind. Before versions below a safe point may
//! be collected, every lock of a transaction that started below it must be settled: once
//! GC drops a primary's commit record, a leftover secondary lock of that transaction would
//! find its primary "not found" and be rolled back — half a committed transaction undone.
//! PD's safe point is advanced only after this ran over the whole key space (as TiDB's GC
//! leader does), and each node's GC worker runs it again over a region before collecting it.

use crate::error::Result;
use crate::raw::{clip_end, next_start, Kind, Target};
use crate::txn::{LockFate, TransactionClient};
use keel_types::proto::txn::{TxnCommand, TxnResponse};
use keel_types::{Region, Timestamp};

/// Locks one `ScanLock` returns (one round of resolution).
const GC_SCAN_LOCK_LIMIT: u32 = 256;

impl TransactionClient {
    /// Settles every lock in `[start, end)` (empty `end`: unbounded) whose transaction started
    /// below `safe_point`, through the same resolution a reader uses (`CheckTxnStatus` on the
    /// primary, then `ResolveLock`), region by region. Returns how many transactions still
    /// hold such locks because they may yet commit (their primary's TTL has not run out):
    /// collecting below `safe_point` must wait while that is nonzero.
    pub async fn resolve_locks_below(&self, safe_point: Timestamp, start: &[u8], end: &[u8]) -> Result<u64> {
        let Some(max_ts) = safe_point.0.checked_sub(1).map(Timestamp) else { return Ok(0) };
        let mut cursor = start.to_vec();
        let mut alive = 0u64;
        loop {
            // One deadline per round, so a long walk over many regions does not run out of it.
            let mut op = self.op("gc_resolve_locks", Kind::Read, &cursor);
            let make = |r: &Region| TxnCommand::ScanLock {
                max_ts,
                start_key: cursor.clone(),
                end_key: clip_end(r, end),
                limit: GC_SCAN_LOCK_LIMIT,
            };
            let (region, answer) = self.raw.dispatch(&mut op, Target::Key(&cursor), make).await?;
            let locks = match answer {
                Ok(TxnResponse::Locks(locks)) => locks,
                Ok(other) => return Err(op.unexpected(&other)),
                Err(err) => return Err(op.error(format!("scan_lock: {err}"))),
            };
            let fates = self.resolve_locks(&locks, Timestamp::ZERO, false).await?;
            alive += fates.iter().filter(|(_, fate)| *fate == LockFate::Alive).count() as u64;
            if locks.len() as u32 >= GC_SCAN_LOCK_LIMIT {
                // Resolved ones are gone; live ones are counted: go on past the last.
                let mut next = locks.last().expect("a full batch").key.clone();
                next.push(0);
                cursor = next;
                continue;
            }
            match next_start(&region, end) {
                Some(next) => cursor = next,
                None => return Ok(alive),
            }
        }
    }
}
