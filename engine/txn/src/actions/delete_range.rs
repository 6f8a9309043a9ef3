//! DeleteRange: drop every record of a user-key range — committed versions, rollbacks, long
//! values and locks — whatever their timestamps. TiKV's `KvDeleteRange`, a maintenance
//! operation for data no transaction will read again (a dropped table); unlike GC it keeps
//! nothing, and unlike a transactional delete it leaves no tombstone.

use crate::mvcc::MvccTxn;

/// Collects the range deletions for the user keys in `[start, end)` (`end` empty: unbounded).
pub fn delete_range(txn: &mut MvccTxn, start: &[u8], end: &[u8]) {
    txn.delete_range(start, end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::get;
    use crate::actions::test_util::{run, write_one};
    use crate::mvcc::SHORT_VALUE_MAX_BYTES;
    use keel_storage::{CfName, Engine, SimEngine};
    use keel_types::proto::txn::MutationOp;
    use keel_types::Timestamp;

    fn prewrite_put(e: &SimEngine, key: &[u8], value: Vec<u8>, start: u64) {
        write_one(e, key, MutationOp::Put, value, start, None);
    }

    fn put(e: &SimEngine, key: &[u8], value: Vec<u8>, start: u64) {
        write_one(e, key, MutationOp::Put, value, start, Some(start + 1));
    }

    fn records(e: &SimEngine, cf: CfName) -> usize {
        e.snapshot().scan(cf, b"", None, false, usize::MAX).unwrap().len()
    }

    #[test]
    fn removes_every_record_of_the_range_and_nothing_else() {
        let e = SimEngine::new();
        let long = vec![7u8; SHORT_VALUE_MAX_BYTES + 1];
        for key in [b"a".as_slice(), b"b", b"b\0", b"bz", b"c"] {
            put(&e, key, long.clone(), 10);
            put(&e, key, b"short".to_vec(), 20);
        }
        prewrite_put(&e, b"bb", long.clone(), 30);
        prewrite_put(&e, b"c", b"locked".to_vec(), 30);

        run(&e, |t, _| delete_range(t, b"b", b"c"));
        for key in [b"b".as_slice(), b"b\0", b"bb", b"bz"] {
            assert_eq!(run(&e, |_, r| r.all_writes(key)).unwrap(), vec![], "{key:?}");
            assert_eq!(run(&e, |_, r| r.load_lock(key)).unwrap(), None, "{key:?}");
            assert_eq!(run(&e, |_, r| get(r, key, Timestamp(15))).unwrap(), None, "{key:?} at an old ts");
        }
        // a and c keep their versions (two each), long values (one each) and c its lock.
        assert_eq!(run(&e, |_, r| get(r, b"a", Timestamp(15))).unwrap(), Some(long));
        assert_eq!(run(&e, |_, r| r.all_writes(b"c")).unwrap().len(), 2);
        assert!(run(&e, |_, r| r.load_lock(b"c")).unwrap().is_some());
        assert_eq!(records(&e, CfName::Write), 4);
        assert_eq!(records(&e, CfName::Default), 2);
        assert_eq!(records(&e, CfName::Lock), 1);

        // An empty end reaches the end of the key space.
        run(&e, |t, _| delete_range(t, b"b", b""));
        assert_eq!((records(&e, CfName::Write), records(&e, CfName::Default), records(&e, CfName::Lock)), (2, 1, 0));
    }
}
