//! ScanLock: the locks a GC worker (or a tool) must resolve: every lock of a transaction
//! that started at or before `max_ts` in a key range.

use crate::error::Result;
use crate::mvcc::MvccReader;
use keel_types::error::LockInfo;
use keel_types::Timestamp;

/// Locks with `start_ts <= max_ts` in `[start, end)` (`end` empty: unbounded), at most
/// `limit`, in key order.
pub fn scan_lock(
    reader: &MvccReader<'_>,
    start: &[u8],
    end: &[u8],
    max_ts: Timestamp,
    limit: usize,
) -> Result<Vec<LockInfo>> {
    let locks = reader.scan_locks(start, end, |l| l.start_ts <= max_ts, limit)?;
    Ok(locks.into_iter().map(|(k, l)| l.info(&k)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::test_util::run;
    use crate::actions::{prewrite, PrewriteMode, PrewriteProps};
    use keel_storage::SimEngine;
    use keel_types::proto::txn::{Mutation, MutationOp};

    #[test]
    fn filters_by_ts_range_and_limit() {
        let e = SimEngine::new();
        for (i, key) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            let start = Timestamp(10 * (i as u64 + 1));
            let p = PrewriteProps {
                primary: key.to_vec(),
                start_ts: start,
                ttl_ms: 1,
                txn_size: 1,
                mode: PrewriteMode::TwoPc { min_commit_ts: start.next() },
            };
            let m = [Mutation { op: MutationOp::Put, key: key.to_vec(), value: vec![] }];
            run(&e, |t, r| prewrite(t, r, &p, &m)).unwrap();
        }
        let keys = |v: Vec<LockInfo>| v.into_iter().map(|l| l.key).collect::<Vec<_>>();
        let all = run(&e, |_, r| scan_lock(r, b"", b"", Timestamp(30), 10)).unwrap();
        assert_eq!(keys(all), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        let some = run(&e, |_, r| scan_lock(r, b"b", b"d", Timestamp::MAX, 1)).unwrap();
        assert_eq!(keys(some), vec![b"b".to_vec()]);
    }
}
