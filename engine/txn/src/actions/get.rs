//! Snapshot reads of single keys: the value visible at a read timestamp, unless a lock of a
//! transaction that may still commit at or below it hides the key.

use crate::error::Result;
use crate::mvcc::{Lock, MvccReader};
use keel_types::error::{KeyError, LockInfo};
use keel_types::planted::{enabled, PlantedBug};
use keel_types::proto::txn::LockedRead;
use keel_types::Timestamp;

/// The lock on `key` that blocks a read at `ts`, if any.
pub(crate) fn blocking_lock(reader: &MvccReader<'_>, key: &[u8], ts: Timestamp) -> Result<Option<Lock>> {
    if enabled(PlantedBug::ReadIgnoresLock) {
        return Ok(None);
    }
    Ok(reader.load_lock(key)?.filter(|l| l.blocks_read(ts)))
}

/// The value of `key` at `ts`; `Locked` when a lock blocks the read.
pub fn get(reader: &MvccReader<'_>, key: &[u8], ts: Timestamp) -> Result<Option<Vec<u8>>> {
    if let Some(lock) = blocking_lock(reader, key, ts)? {
        return Err(KeyError::Locked { lock: lock.info(key) }.into());
    }
    reader.get(key, ts)
}

/// What a multi-key read found: visible pairs and the locks that hid other keys.
pub type ReadResult = (Vec<(Vec<u8>, Vec<u8>)>, Vec<LockInfo>);

/// What a multi-key read found: the visible pairs, the locks that hid other keys, and for
/// each lock both values its key may have for the reader ([`LockedRead`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchRead {
    /// Keys found and their values, in request order.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Locks that block the read.
    pub locks: Vec<LockInfo>,
    /// One per lock, in the same order.
    pub locked_reads: Vec<LockedRead>,
}

/// The found pairs of `keys` at `ts` (in request order), and the locks that block some,
/// each with the values its key may have. Locks of the transactions in `resolved` (known to
/// commit after `ts`) are skipped.
pub fn batch_get(
    reader: &MvccReader<'_>,
    keys: &[Vec<u8>],
    ts: Timestamp,
    resolved: &[Timestamp],
) -> Result<BatchRead> {
    let mut read = BatchRead::default();
    for key in keys {
        if let Some(lock) = blocking_lock(reader, key, ts)?.filter(|l| !resolved.contains(&l.start_ts)) {
            let locked = LockedRead { below: reader.get(key, ts)?, written: reader.lock_value(key, &lock)? };
            read.locked_reads.push(locked);
            read.locks.push(lock.info(key));
        } else if let Some(v) = reader.get(key, ts)? {
            read.pairs.push((key.clone(), v));
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::test_util::run;
    use crate::actions::{commit, prewrite, PrewriteMode, PrewriteProps};
    use crate::error::Error;
    use keel_storage::SimEngine;
    use keel_types::proto::txn::{Mutation, MutationOp};

    fn lock(e: &SimEngine, key: &[u8], op: MutationOp, start: u64, min_commit: u64) {
        let p = PrewriteProps {
            primary: key.to_vec(),
            start_ts: Timestamp(start),
            ttl_ms: 1,
            txn_size: 1,
            mode: PrewriteMode::TwoPc { min_commit_ts: Timestamp(min_commit) },
        };
        let m = [Mutation { op, key: key.to_vec(), value: b"v".to_vec() }];
        assert!(run(e, |t, r| prewrite(t, r, &p, &m)).unwrap().errors.is_empty());
    }

    #[test]
    fn locks_block_only_reads_they_may_commit_under() {
        let e = SimEngine::new();
        lock(&e, b"a", MutationOp::Put, 10, 11);
        lock(&e, b"b", MutationOp::Put, 10, 50);
        lock(&e, b"c", MutationOp::Lock, 10, 11);
        assert_eq!(run(&e, |_, r| get(r, b"a", Timestamp(9))).unwrap(), None);
        let err = run(&e, |_, r| get(r, b"a", Timestamp(20))).unwrap_err();
        assert!(matches!(err, Error::Key(KeyError::Locked { .. })));
        // min_commit_ts above the read: the txn commits after it.
        assert_eq!(run(&e, |_, r| get(r, b"b", Timestamp(20))).unwrap(), None);
        assert_eq!(run(&e, |_, r| get(r, b"c", Timestamp(20))).unwrap(), None);
        run(&e, |t, r| commit(t, r, b"a", Timestamp(10), Timestamp(12))).unwrap();
        let keys = vec![b"a".to_vec(), b"b".to_vec(), b"z".to_vec()];
        let read = run(&e, |_, r| batch_get(r, &keys, Timestamp(60), &[])).unwrap();
        assert_eq!(read.pairs, vec![(b"a".to_vec(), b"v".to_vec())]);
        assert_eq!(read.locks.len(), 1);
        assert_eq!(read.locks[0].key, b"b".to_vec());
        // Both values the locked key may have: none committed below, "v" once b's txn commits.
        assert_eq!(read.locked_reads, vec![LockedRead { below: None, written: Some(b"v".to_vec()) }]);
        // A read told the lock's transaction commits after it skips the lock (and sees the
        // older version: none here).
        let read = run(&e, |_, r| batch_get(r, &keys, Timestamp(60), &[Timestamp(10)])).unwrap();
        assert_eq!(read.pairs, vec![(b"a".to_vec(), b"v".to_vec())]);
        assert!(read.locks.is_empty() && read.locked_reads.is_empty());
    }

    #[test]
    fn a_locked_read_carries_the_value_below_and_the_value_written() {
        let e = SimEngine::new();
        lock(&e, b"a", MutationOp::Put, 10, 11);
        run(&e, |t, r| commit(t, r, b"a", Timestamp(10), Timestamp(12))).unwrap();
        lock(&e, b"a", MutationOp::Delete, 20, 21);
        let long = vec![7u8; 300];
        let p = PrewriteProps {
            primary: b"b".to_vec(),
            start_ts: Timestamp(20),
            ttl_ms: 1,
            txn_size: 1,
            mode: PrewriteMode::TwoPc { min_commit_ts: Timestamp(21) },
        };
        let m = [Mutation { op: MutationOp::Put, key: b"b".to_vec(), value: long.clone() }];
        assert!(run(&e, |t, r| prewrite(t, r, &p, &m)).unwrap().errors.is_empty());
        let keys = vec![b"a".to_vec(), b"b".to_vec()];
        let read = run(&e, |_, r| batch_get(r, &keys, Timestamp(30), &[])).unwrap();
        assert!(read.pairs.is_empty());
        assert_eq!(read.locks.iter().map(|l| l.key.clone()).collect::<Vec<_>>(), keys);
        assert_eq!(
            read.locked_reads,
            vec![
                LockedRead { below: Some(b"v".to_vec()), written: None },
                LockedRead { below: None, written: Some(long) },
            ]
        );
    }
}
