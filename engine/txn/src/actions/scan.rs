//! Snapshot range scans: the visible pairs of a key range at a read timestamp, and the
//! locks that hide keys in it.

use super::get::{blocking_lock, ReadResult};
use crate::error::Result;
use crate::mvcc::MvccReader;
use keel_types::Timestamp;

/// The arguments of [`scan`].
#[derive(Clone, Debug)]
pub struct ScanArgs<'a> {
    /// Inclusive start user key.
    pub start: &'a [u8],
    /// Exclusive end user key; empty: unbounded.
    pub end: &'a [u8],
    /// Read timestamp.
    pub ts: Timestamp,
    /// Most entries (pairs plus locks).
    pub limit: usize,
    /// Descending.
    pub reverse: bool,
    /// Return empty values.
    pub key_only: bool,
}

/// Pairs visible at `args.ts` in the range, in scan order, and the blocking locks. Locks
/// count towards the limit, so pairs and locks together are a prefix of the range.
pub fn scan(reader: &MvccReader<'_>, args: &ScanArgs<'_>) -> Result<ReadResult> {
    let mut pairs = Vec::new();
    let mut locks = Vec::new();
    if args.limit == 0 {
        return Ok((pairs, locks));
    }
    for key in reader.user_keys(args.start, args.end, args.reverse) {
        let key = key?;
        if let Some(lock) = blocking_lock(reader, &key, args.ts)? {
            locks.push(lock.info(&key));
        } else if let Some(v) = reader.get(&key, args.ts)? {
            pairs.push((key, if args.key_only { vec![] } else { v }));
        } else {
            continue;
        }
        if pairs.len() + locks.len() >= args.limit {
            break;
        }
    }
    Ok((pairs, locks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::test_util::{run, write_one};
    use keel_storage::SimEngine;
    use keel_types::proto::txn::MutationOp;

    fn write(e: &SimEngine, key: &[u8], op: MutationOp, start: u64, commit_at: Option<u64>) {
        write_one(e, key, op, key.to_vec(), start, commit_at);
    }

    #[test]
    fn merges_locks_and_versions_both_ways() {
        let e = SimEngine::new();
        write(&e, b"a", MutationOp::Put, 10, Some(11));
        write(&e, b"b", MutationOp::Put, 10, Some(11));
        write(&e, b"b", MutationOp::Delete, 20, Some(21));
        write(&e, b"c", MutationOp::Put, 30, None);
        write(&e, b"d", MutationOp::Put, 10, Some(11));
        write(&e, b"e", MutationOp::Put, 40, Some(41));
        let args = ScanArgs { start: b"", end: b"", ts: Timestamp(35), limit: 10, reverse: false, key_only: false };
        let (pairs, locks) = run(&e, |_, r| scan(r, &args)).unwrap();
        let keys: Vec<&[u8]> = pairs.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, vec![b"a".as_slice(), b"d"]);
        assert_eq!(locks.iter().map(|l| l.key.clone()).collect::<Vec<_>>(), vec![b"c".to_vec()]);
        let rev = ScanArgs { reverse: true, limit: 2, ts: Timestamp(50), ..args.clone() };
        let (pairs, locks) = run(&e, |_, r| scan(r, &rev)).unwrap();
        assert_eq!(pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), vec![b"e".to_vec(), b"d".to_vec()]);
        assert!(locks.is_empty());
        let bounded = ScanArgs { start: b"b", end: b"d", ts: Timestamp(25), ..args };
        let (pairs, locks) = run(&e, |_, r| scan(r, &bounded)).unwrap();
        assert!(pairs.is_empty() && locks.is_empty());
    }
}
