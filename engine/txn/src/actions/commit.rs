//! Commit: turn this transaction's lock on a key into a commit record at `commit_ts`.
//! Idempotent: a key already committed by the transaction commits again as a no-op.

use super::{put_commit_record, write_of_lock};
use crate::error::Result;
use crate::mvcc::{MvccReader, MvccTxn, TxnCommitRecord};
use keel_types::error::KeyError;
use keel_types::Timestamp;

/// Commits `key` of the transaction `start_ts` at `commit_ts`.
///
/// Fails with `CommitTsExpired` when `commit_ts` is below the lock's min_commit_ts (a
/// reader pushed it, or async commit computed it), `RolledBack` when the transaction was
/// rolled back on this key, and `TxnNotFound` when there is neither a lock nor a record.
pub fn commit(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_>,
    key: &[u8],
    start_ts: Timestamp,
    commit_ts: Timestamp,
) -> Result<()> {
    match reader.load_lock(key)? {
        Some(lock) if lock.start_ts == start_ts => {
            if commit_ts < lock.min_commit_ts {
                return Err(KeyError::CommitTsExpired {
                    start_ts,
                    commit_ts,
                    key: key.to_vec(),
                    min_commit_ts: lock.min_commit_ts,
                }
                .into());
            }
            put_commit_record(txn, reader, key, commit_ts, write_of_lock(&lock))?;
            txn.unlock_key(key);
            Ok(())
        }
        _ => match reader.txn_commit_record(key, start_ts)? {
            TxnCommitRecord::Committed { .. } => Ok(()),
            TxnCommitRecord::RolledBack => Err(KeyError::RolledBack { start_ts }.into()),
            TxnCommitRecord::None => Err(KeyError::TxnNotFound { start_ts, primary: key.to_vec() }.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::test_util::run;
    use crate::actions::{get, prewrite, rollback, PrewriteMode, PrewriteProps};
    use crate::error::Error;
    use keel_storage::SimEngine;
    use keel_types::proto::txn::{Mutation, MutationOp};

    fn lock_key(e: &SimEngine, key: &[u8], start: u64, min_commit: u64) {
        let p = PrewriteProps {
            primary: key.to_vec(),
            start_ts: Timestamp(start),
            ttl_ms: 100,
            txn_size: 1,
            mode: PrewriteMode::TwoPc { min_commit_ts: Timestamp(min_commit) },
        };
        let m = [Mutation { op: MutationOp::Put, key: key.to_vec(), value: b"v".to_vec() }];
        assert!(run(e, |t, r| prewrite(t, r, &p, &m)).unwrap().errors.is_empty());
    }

    #[test]
    fn commits_idempotently_and_checks_min_commit_ts() {
        let e = SimEngine::new();
        lock_key(&e, b"k", 10, 20);
        let err = run(&e, |t, r| commit(t, r, b"k", Timestamp(10), Timestamp(15))).unwrap_err();
        assert!(matches!(err, Error::Key(KeyError::CommitTsExpired { .. })));
        run(&e, |t, r| commit(t, r, b"k", Timestamp(10), Timestamp(20))).unwrap();
        run(&e, |t, r| commit(t, r, b"k", Timestamp(10), Timestamp(20))).unwrap();
        assert_eq!(run(&e, |_, r| get(r, b"k", Timestamp(20))).unwrap(), Some(b"v".to_vec()));
        assert_eq!(run(&e, |_, r| get(r, b"k", Timestamp(19))).unwrap(), None);
        // A rollback of the committed txn is refused.
        let err = run(&e, |t, r| rollback(t, r, b"k", Timestamp(10))).unwrap_err();
        assert!(matches!(err, Error::Key(KeyError::Committed { commit_ts: Timestamp(20), .. })));
    }

    #[test]
    fn rolled_back_or_missing_fails() {
        let e = SimEngine::new();
        lock_key(&e, b"k", 10, 11);
        run(&e, |t, r| rollback(t, r, b"k", Timestamp(10))).unwrap();
        let err = run(&e, |t, r| commit(t, r, b"k", Timestamp(10), Timestamp(12))).unwrap_err();
        assert!(matches!(err, Error::Key(KeyError::RolledBack { .. })));
        let err = run(&e, |t, r| commit(t, r, b"x", Timestamp(10), Timestamp(12))).unwrap_err();
        assert!(matches!(err, Error::Key(KeyError::TxnNotFound { .. })));
    }

    #[test]
    fn commit_over_another_txns_rollback_keeps_it() {
        // Txn 20 is rolled back on k (record at 20) while txn 10 holds the lock; txn 10
        // then commits k at 20, the same storage key.
        let e = SimEngine::new();
        lock_key(&e, b"k", 10, 11);
        run(&e, |t, r| rollback(t, r, b"k", Timestamp(20))).unwrap();
        run(&e, |t, r| commit(t, r, b"k", Timestamp(10), Timestamp(20))).unwrap();
        assert_eq!(run(&e, |_, r| get(r, b"k", Timestamp(20))).unwrap(), Some(b"v".to_vec()));
        let rec = run(&e, |_, r| r.txn_commit_record(b"k", Timestamp(20))).unwrap();
        assert_eq!(rec, TxnCommitRecord::RolledBack);
        let rec = run(&e, |_, r| r.txn_commit_record(b"k", Timestamp(10))).unwrap();
        assert!(matches!(rec, TxnCommitRecord::Committed { commit_ts: Timestamp(20), .. }));
    }

    #[test]
    fn rollback_over_another_txns_commit_keeps_it() {
        // Txn 10 commits k at 20; then txn 20 is rolled back on k: same storage key.
        let e = SimEngine::new();
        lock_key(&e, b"k", 10, 11);
        run(&e, |t, r| commit(t, r, b"k", Timestamp(10), Timestamp(20))).unwrap();
        run(&e, |t, r| rollback(t, r, b"k", Timestamp(20))).unwrap();
        assert_eq!(run(&e, |_, r| get(r, b"k", Timestamp(20))).unwrap(), Some(b"v".to_vec()));
        let rec = run(&e, |_, r| r.txn_commit_record(b"k", Timestamp(20))).unwrap();
        assert_eq!(rec, TxnCommitRecord::RolledBack);
    }
}
