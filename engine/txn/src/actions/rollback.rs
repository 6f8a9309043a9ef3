//! Rollback: abort the transaction on a key. Removes its lock (and long value) and leaves a
//! protected rollback record at `start_ts`, so a prewrite of the transaction that arrives
//! late finds it and fails.

use super::{put_rollback_record, rollback_lock};
use crate::error::Result;
use crate::mvcc::{MvccReader, MvccTxn, TxnCommitRecord};
use keel_types::error::KeyError;
use keel_types::Timestamp;

/// Rolls back `key` of the transaction `start_ts`. Idempotent; fails with `Committed`
/// if the transaction already committed the key.
pub fn rollback(txn: &mut MvccTxn, reader: &MvccReader<'_>, key: &[u8], start_ts: Timestamp) -> Result<()> {
    match reader.load_lock(key)? {
        Some(lock) if lock.start_ts == start_ts => rollback_lock(txn, reader, key, &lock),
        _ => match reader.txn_commit_record(key, start_ts)? {
            TxnCommitRecord::Committed { commit_ts, .. } => {
                Err(KeyError::Committed { start_ts, commit_ts, key: key.to_vec() }.into())
            }
            TxnCommitRecord::RolledBack => Ok(()),
            TxnCommitRecord::None => put_rollback_record(txn, reader, key, start_ts),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::test_util::run;
    use crate::mvcc::WriteKind;
    use keel_storage::SimEngine;

    #[test]
    fn rollback_without_lock_leaves_a_protected_record_once() {
        let e = SimEngine::new();
        run(&e, |t, r| rollback(t, r, b"k", Timestamp(5))).unwrap();
        let writes = run(&e, |_, r| r.all_writes(b"k")).unwrap();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].0, Timestamp(5));
        assert_eq!(writes[0].1.kind, WriteKind::Rollback);
        assert!(writes[0].1.protected);
        // Idempotent: nothing more is written.
        let n = run(&e, |t, r| {
            rollback(t, r, b"k", Timestamp(5)).unwrap();
            t.len()
        });
        assert_eq!(n, 0);
    }
}
