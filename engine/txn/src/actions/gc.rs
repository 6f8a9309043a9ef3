//! GC: drop the versions no reader at or after the safe point can see. Per key, the newest
//! `Put` at or below the safe point stays (it is what such readers see); everything older,
//! and every rollback / lock record or delete at or below the safe point, goes — with the
//! long values of dropped puts. Locks are never touched: the GC worker resolves locks older
//! than the safe point before it runs this.

use crate::error::Result;
use crate::mvcc::{MvccReader, MvccTxn, WriteKind};
use keel_types::Timestamp;

/// Most records one GC command deletes, so its raft entry stays small; the caller runs GC
/// again while it reports `more`.
pub const GC_DELETES_MAX: usize = 4096;

/// Collects the deletions for the user-key range `[start, end)` (`end` empty: unbounded).
/// Returns the number of records deleted and whether it stopped at [`GC_DELETES_MAX`].
pub fn gc(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_>,
    start: &[u8],
    end: &[u8],
    safe_point: Timestamp,
) -> Result<(u64, bool)> {
    gc_bounded(txn, reader, start, end, safe_point, GC_DELETES_MAX)
}

/// [`gc`] with at most `deletes_max` deletions. A key whose newest version at or below the
/// safe point is a delete keeps that tombstone until its older versions are all deleted in
/// the same command: a command that stopped between the two would show readers above the
/// safe point an older value.
fn gc_bounded(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_>,
    start: &[u8],
    end: &[u8],
    safe_point: Timestamp,
    deletes_max: usize,
) -> Result<(u64, bool)> {
    let mut deleted = 0usize;
    // The key being walked, whether its newest Put/Delete at or below the safe point has
    // been passed already, and that version's commit_ts when it is a delete (deleted last).
    let mut current: Option<Vec<u8>> = None;
    let mut passed_visible = false;
    let mut tombstone: Option<Timestamp> = None;
    for item in reader.write_records(start, end) {
        let (key, commit_ts, write) = item?;
        if current.as_ref() != Some(&key) {
            if let (Some(done), Some(ts)) = (current.take(), tombstone.take()) {
                if deleted + 1 > deletes_max {
                    return Ok((deleted as u64, true));
                }
                txn.delete_write(&done, ts);
                deleted += 1;
            }
            current = Some(key.clone());
            passed_visible = false;
        }
        if commit_ts > safe_point {
            continue;
        }
        let keep = !passed_visible && write.kind == WriteKind::Put;
        let visible_delete = !passed_visible && write.kind == WriteKind::Delete;
        if write.is_data() {
            passed_visible = true;
        }
        if keep {
            continue;
        }
        if visible_delete {
            tombstone = Some(commit_ts);
            continue;
        }
        if deleted + 2 > deletes_max {
            return Ok((deleted as u64, true));
        }
        txn.delete_write(&key, commit_ts);
        deleted += 1;
        if write.kind == WriteKind::Put && write.short_value.is_none() {
            txn.delete_value(&key, write.start_ts);
            deleted += 1;
        }
    }
    if let (Some(done), Some(ts)) = (current, tombstone) {
        if deleted + 1 > deletes_max {
            return Ok((deleted as u64, true));
        }
        txn.delete_write(&done, ts);
        deleted += 1;
    }
    Ok((deleted as u64, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::test_util::{run, write_one};
    use crate::actions::{get, rollback};
    use crate::mvcc::SHORT_VALUE_MAX_BYTES;
    use keel_storage::SimEngine;
    use keel_types::proto::txn::MutationOp;

    fn write(e: &SimEngine, key: &[u8], op: MutationOp, value: Vec<u8>, start: u64, commit_at: u64) {
        write_one(e, key, op, value, start, Some(commit_at));
    }

    #[test]
    fn keeps_the_newest_visible_put() {
        let e = SimEngine::new();
        let long = vec![1u8; SHORT_VALUE_MAX_BYTES + 1];
        write(&e, b"a", MutationOp::Put, long.clone(), 10, 11);
        write(&e, b"a", MutationOp::Put, b"2".to_vec(), 20, 21);
        run(&e, |t, r| rollback(t, r, b"a", Timestamp(25))).unwrap();
        write(&e, b"a", MutationOp::Lock, vec![], 30, 31);
        write(&e, b"a", MutationOp::Put, b"4".to_vec(), 40, 41);
        write(&e, b"b", MutationOp::Put, b"1".to_vec(), 10, 11);
        write(&e, b"b", MutationOp::Delete, vec![], 20, 21);
        let (deleted, more) = run(&e, |t, r| gc(t, r, b"", b"", Timestamp(35))).unwrap();
        assert!(!more);
        // a: 11 (+ its long value), rollback 25, lock 31; b: 11 and 21.
        assert_eq!(deleted, 6);
        let versions =
            |k: &[u8]| run(&e, |_, r| r.all_writes(k)).unwrap().into_iter().map(|(ts, _)| ts.0).collect::<Vec<_>>();
        assert_eq!(versions(b"a"), vec![41, 21]);
        assert!(versions(b"b").is_empty());
        assert_eq!(run(&e, |_, r| get(r, b"a", Timestamp(35))).unwrap(), Some(b"2".to_vec()));
        assert_eq!(run(&e, |_, r| get(r, b"a", Timestamp(50))).unwrap(), Some(b"4".to_vec()));
        // Idempotent.
        assert_eq!(run(&e, |t, r| gc(t, r, b"", b"", Timestamp(35))).unwrap(), (0, false));
    }

    #[test]
    fn a_tombstone_outlives_the_versions_it_hides_across_bounded_rounds() {
        let e = SimEngine::new();
        for i in 1..=5u64 {
            write(&e, b"k", MutationOp::Put, i.to_string().into_bytes(), i * 10, i * 10 + 1);
        }
        write(&e, b"k", MutationOp::Delete, vec![], 60, 61);
        let mut rounds = 0;
        loop {
            let (_, more) = run(&e, |t, r| gc_bounded(t, r, b"", b"", Timestamp(100), 2)).unwrap();
            rounds += 1;
            // After every round a reader above the safe point still finds the key deleted.
            assert_eq!(run(&e, |_, r| get(r, b"k", Timestamp(100))).unwrap(), None, "round {rounds}");
            if !more {
                break;
            }
        }
        assert!(rounds > 2, "the bound split the work ({rounds} rounds)");
        assert!(run(&e, |_, r| r.all_writes(b"k")).unwrap().is_empty());
    }
}
