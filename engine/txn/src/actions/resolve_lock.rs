//! ResolveLock: once a transaction's fate is known (from its primary or, for async commit,
//! its secondaries), commit or roll back its remaining locks.

use super::{commit, rollback};
use crate::error::Result;
use crate::mvcc::{MvccReader, MvccTxn};
use keel_types::Timestamp;

/// Commits (`commit_ts > 0`) or rolls back (`commit_ts == 0`) `keys` of the transaction
/// `start_ts`. Keys whose lock is already gone are settled idempotently.
pub fn resolve_lock(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_>,
    keys: &[Vec<u8>],
    start_ts: Timestamp,
    commit_ts: Timestamp,
) -> Result<()> {
    for key in keys {
        if commit_ts == Timestamp::ZERO {
            rollback(txn, reader, key, start_ts)?;
        } else {
            commit(txn, reader, key, start_ts, commit_ts)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::test_util::run;
    use crate::actions::{get, prewrite, PrewriteMode, PrewriteProps};
    use keel_storage::SimEngine;
    use keel_types::proto::txn::{Mutation, MutationOp};

    #[test]
    fn commits_or_rolls_back_all_keys() {
        let e = SimEngine::new();
        for (start, keys) in [(10u64, [b"a", b"b"]), (20, [b"c", b"d"])] {
            let p = PrewriteProps {
                primary: keys[0].to_vec(),
                start_ts: Timestamp(start),
                ttl_ms: 100,
                txn_size: 2,
                mode: PrewriteMode::TwoPc { min_commit_ts: Timestamp(start + 1) },
            };
            let m: Vec<Mutation> =
                keys.iter().map(|k| Mutation { op: MutationOp::Put, key: k.to_vec(), value: b"v".to_vec() }).collect();
            run(&e, |t, r| prewrite(t, r, &p, &m)).unwrap();
        }
        let ab = vec![b"a".to_vec(), b"b".to_vec()];
        let cd = vec![b"c".to_vec(), b"d".to_vec()];
        run(&e, |t, r| resolve_lock(t, r, &ab, Timestamp(10), Timestamp(12))).unwrap();
        run(&e, |t, r| resolve_lock(t, r, &cd, Timestamp(20), Timestamp::ZERO)).unwrap();
        // Again: idempotent.
        run(&e, |t, r| resolve_lock(t, r, &ab, Timestamp(10), Timestamp(12))).unwrap();
        run(&e, |t, r| resolve_lock(t, r, &cd, Timestamp(20), Timestamp::ZERO)).unwrap();
        for k in [b"a", b"b"] {
            assert_eq!(run(&e, |_, r| get(r, k, Timestamp(30))).unwrap(), Some(b"v".to_vec()));
        }
        for k in [b"c", b"d"] {
            assert_eq!(run(&e, |_, r| get(r, k, Timestamp(30))).unwrap(), None);
            assert!(run(&e, |_, r| r.load_lock(k)).unwrap().is_none());
        }
    }
}
