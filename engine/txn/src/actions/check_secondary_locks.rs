//! CheckSecondaryLocks: an async-commit transaction is committed iff all its keys are
//! locked, so a resolver asks the secondaries. A secondary with neither lock nor record
//! gets a protected rollback record, so its prewrite can never land afterwards — that is
//! what makes the answer final.

use super::put_rollback_record;
use crate::error::Result;
use crate::mvcc::{MvccReader, MvccTxn, TxnCommitRecord};
use keel_types::proto::txn::SecondaryLocksStatus;
use keel_types::Timestamp;

/// Checks `keys` of the transaction `start_ts`; stops at the first key that is committed
/// or rolled back.
pub fn check_secondary_locks(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_>,
    keys: &[Vec<u8>],
    start_ts: Timestamp,
) -> Result<SecondaryLocksStatus> {
    let mut locks = Vec::with_capacity(keys.len());
    for key in keys {
        match reader.load_lock(key)? {
            Some(lock) if lock.start_ts == start_ts => locks.push(lock.info(key)),
            _ => match reader.txn_commit_record(key, start_ts)? {
                TxnCommitRecord::Committed { commit_ts, .. } => return Ok(SecondaryLocksStatus::Committed(commit_ts)),
                TxnCommitRecord::RolledBack => return Ok(SecondaryLocksStatus::RolledBack),
                TxnCommitRecord::None => {
                    put_rollback_record(txn, reader, key, start_ts)?;
                    return Ok(SecondaryLocksStatus::RolledBack);
                }
            },
        }
    }
    Ok(SecondaryLocksStatus::Locked(locks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::test_util::run;
    use crate::actions::{commit, prewrite, PrewriteMode, PrewriteProps};
    use keel_storage::SimEngine;
    use keel_types::error::KeyError;
    use keel_types::proto::txn::{Mutation, MutationOp};

    fn props(start: u64) -> PrewriteProps {
        PrewriteProps {
            primary: b"a".to_vec(),
            start_ts: Timestamp(start),
            ttl_ms: 100,
            txn_size: 3,
            mode: PrewriteMode::Async {
                min_commit_ts: Timestamp(start + 5),
                secondaries: vec![b"b".to_vec(), b"c".to_vec()],
            },
        }
    }

    fn put(key: &[u8]) -> Mutation {
        Mutation { op: MutationOp::Put, key: key.to_vec(), value: b"v".to_vec() }
    }

    #[test]
    fn locked_committed_and_missing() {
        let e = SimEngine::new();
        run(&e, |t, r| prewrite(t, r, &props(10), &[put(b"a"), put(b"b")])).unwrap();
        let keys = vec![b"b".to_vec()];
        let s = run(&e, |t, r| check_secondary_locks(t, r, &keys, Timestamp(10))).unwrap();
        assert!(
            matches!(s, SecondaryLocksStatus::Locked(ref l) if l.len() == 1 && l[0].min_commit_ts == Timestamp(15))
        );
        // c was never prewritten: rolled back for good.
        let keys = vec![b"b".to_vec(), b"c".to_vec()];
        let s = run(&e, |t, r| check_secondary_locks(t, r, &keys, Timestamp(10))).unwrap();
        assert_eq!(s, SecondaryLocksStatus::RolledBack);
        let late = run(&e, |t, r| prewrite(t, r, &props(10), &[put(b"c")])).unwrap();
        assert!(matches!(late.errors.as_slice(), [KeyError::RolledBack { .. }]));
        // Committed.
        run(&e, |t, r| commit(t, r, b"b", Timestamp(10), Timestamp(15))).unwrap();
        let keys = vec![b"b".to_vec()];
        let s = run(&e, |t, r| check_secondary_locks(t, r, &keys, Timestamp(10))).unwrap();
        assert_eq!(s, SecondaryLocksStatus::Committed(Timestamp(15)));
    }
}
