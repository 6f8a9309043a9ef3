//! Cleanup: roll back one key's lock of a transaction once its TTL has expired (or
//! unconditionally), reporting the commit timestamp instead if the transaction committed.

use super::{put_rollback_record, rollback_lock};
use crate::error::Result;
use crate::mvcc::{MvccReader, MvccTxn, TxnCommitRecord};
use keel_types::error::KeyError;
use keel_types::Timestamp;

/// Cleans up `key` of the transaction `start_ts`. With `now_ms`, a live lock (TTL not
/// expired at that physical time) fails with `Locked`; without, it is rolled back anyway.
/// Returns `Some(commit_ts)` when the transaction had committed the key (nothing done).
pub fn cleanup(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_>,
    key: &[u8],
    start_ts: Timestamp,
    now_ms: Option<u64>,
) -> Result<Option<Timestamp>> {
    match reader.load_lock(key)? {
        Some(lock) if lock.start_ts == start_ts => {
            if now_ms.is_some_and(|now| !lock.is_expired(now)) {
                return Err(KeyError::Locked { lock: lock.info(key) }.into());
            }
            rollback_lock(txn, reader, key, &lock)?;
            Ok(None)
        }
        _ => match reader.txn_commit_record(key, start_ts)? {
            TxnCommitRecord::Committed { commit_ts, .. } => Ok(Some(commit_ts)),
            TxnCommitRecord::RolledBack => Ok(None),
            TxnCommitRecord::None => put_rollback_record(txn, reader, key, start_ts).map(|()| None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::test_util::run;
    use crate::actions::{commit, prewrite, PrewriteMode, PrewriteProps};
    use crate::error::Error;
    use keel_storage::SimEngine;
    use keel_types::proto::txn::{Mutation, MutationOp};

    #[test]
    fn respects_ttl_and_reports_commits() {
        let e = SimEngine::new();
        let start = Timestamp::compose(1000, 0);
        let p = PrewriteProps {
            primary: b"k".to_vec(),
            start_ts: start,
            ttl_ms: 100,
            txn_size: 1,
            mode: PrewriteMode::TwoPc { min_commit_ts: start.next() },
        };
        let m = [Mutation { op: MutationOp::Put, key: b"k".to_vec(), value: b"v".to_vec() }];
        run(&e, |t, r| prewrite(t, r, &p, &m)).unwrap();
        let err = run(&e, |t, r| cleanup(t, r, b"k", start, Some(1100))).unwrap_err();
        assert!(matches!(err, Error::Key(KeyError::Locked { .. })));
        assert_eq!(run(&e, |t, r| cleanup(t, r, b"k", start, Some(1101))).unwrap(), None);
        assert!(run(&e, |_, r| r.load_lock(b"k")).unwrap().is_none());

        let start2 = Timestamp::compose(2000, 0);
        let p2 = PrewriteProps { start_ts: start2, mode: PrewriteMode::TwoPc { min_commit_ts: start2.next() }, ..p };
        run(&e, |t, r| prewrite(t, r, &p2, &m)).unwrap();
        run(&e, |t, r| commit(t, r, b"k", start2, start2.next())).unwrap();
        assert_eq!(run(&e, |t, r| cleanup(t, r, b"k", start2, None)).unwrap(), Some(start2.next()));
    }
}
