//! TxnHeartBeat: a long transaction keeps its primary lock alive by extending its TTL.

use crate::error::Result;
use crate::mvcc::{MvccReader, MvccTxn};
use keel_types::error::KeyError;
use keel_types::Timestamp;

/// Raises the TTL of the primary lock of `start_ts` to `advise_ttl_ms` (never lowers it);
/// returns the TTL now. `TxnNotFound` when the lock is gone (committed or rolled back).
pub fn txn_heartbeat(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_>,
    primary: &[u8],
    start_ts: Timestamp,
    advise_ttl_ms: u64,
) -> Result<u64> {
    match reader.load_lock(primary)? {
        Some(mut lock) if lock.start_ts == start_ts => {
            if advise_ttl_ms > lock.ttl_ms {
                lock.ttl_ms = advise_ttl_ms;
                txn.put_lock(primary, &lock);
            }
            Ok(lock.ttl_ms)
        }
        _ => Err(KeyError::TxnNotFound { start_ts, primary: primary.to_vec() }.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::test_util::run;
    use crate::actions::{prewrite, PrewriteMode, PrewriteProps};
    use crate::error::Error;
    use keel_storage::SimEngine;
    use keel_types::proto::txn::{Mutation, MutationOp};

    #[test]
    fn extends_never_shortens() {
        let e = SimEngine::new();
        let p = PrewriteProps {
            primary: b"p".to_vec(),
            start_ts: Timestamp(10),
            ttl_ms: 100,
            txn_size: 1,
            mode: PrewriteMode::TwoPc { min_commit_ts: Timestamp(11) },
        };
        let m = [Mutation { op: MutationOp::Lock, key: b"p".to_vec(), value: vec![] }];
        run(&e, |t, r| prewrite(t, r, &p, &m)).unwrap();
        assert_eq!(run(&e, |t, r| txn_heartbeat(t, r, b"p", Timestamp(10), 500)).unwrap(), 500);
        assert_eq!(run(&e, |t, r| txn_heartbeat(t, r, b"p", Timestamp(10), 200)).unwrap(), 500);
        let err = run(&e, |t, r| txn_heartbeat(t, r, b"p", Timestamp(11), 200)).unwrap_err();
        assert!(matches!(err, Error::Key(KeyError::TxnNotFound { .. })));
    }
}
