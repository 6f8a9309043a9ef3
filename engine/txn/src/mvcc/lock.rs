//! The lock CF record: a prewritten, not yet committed (or rolled back) key.

use crate::error::{Error, Result};
use keel_types::codec;
use keel_types::error::LockInfo;
use keel_types::Timestamp;
use serde::{Deserialize, Serialize};

/// What the locked key becomes when the transaction commits.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// A new value (inline in `short_value`, or in the default CF at `start_ts`).
    Put,
    /// A deletion.
    Delete,
    /// No change (a read key locked for conflict detection); never blocks readers.
    Lock,
}

/// A lock record, stored under `encode_bytes(key)` in the lock CF.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// What the key becomes on commit.
    pub kind: LockKind,
    /// The transaction's primary key.
    pub primary: Vec<u8>,
    /// The transaction's start timestamp.
    pub start_ts: Timestamp,
    /// Time to live, ms from `start_ts`'s physical time.
    pub ttl_ms: u64,
    /// The value when it is short (a `Put` with a long value keeps it in the default CF).
    pub short_value: Option<Vec<u8>>,
    /// The transaction may only commit at or above this.
    pub min_commit_ts: Timestamp,
    /// Async commit: the transaction is committed once all its keys are locked.
    pub use_async_commit: bool,
    /// Async commit, primary lock only: every secondary key.
    pub secondaries: Vec<Vec<u8>>,
    /// Keys the whole transaction writes (a hint).
    pub txn_size: u64,
}

impl Lock {
    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self).expect("a lock always encodes")
    }

    /// Parses stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Lock> {
        codec::decode(bytes).map_err(|e| Error::Corrupt(format!("lock: {e}")))
    }

    /// The lock as clients see it.
    pub fn info(&self, key: &[u8]) -> LockInfo {
        LockInfo {
            key: key.to_vec(),
            primary: self.primary.clone(),
            start_ts: self.start_ts,
            ttl_ms: self.ttl_ms,
            min_commit_ts: self.min_commit_ts,
            secondaries: self.secondaries.clone(),
            use_async_commit: self.use_async_commit,
        }
    }

    /// Whether the TTL has run out at physical time `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.start_ts.physical_ms().saturating_add(self.ttl_ms) < now_ms
    }

    /// Whether this lock hides the key from a snapshot read at `read_ts`: the transaction
    /// started at or before it and may still commit at or below it. `Lock` locks never
    /// block (they change nothing).
    pub fn blocks_read(&self, read_ts: Timestamp) -> bool {
        self.kind != LockKind::Lock && blocks_read(self.start_ts, self.min_commit_ts, read_ts)
    }
}

/// The read-blocking rule shared by stored and in-memory locks.
pub(crate) fn blocks_read(start_ts: Timestamp, min_commit_ts: Timestamp, read_ts: Timestamp) -> bool {
    start_ts <= read_ts && min_commit_ts <= read_ts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> Lock {
        Lock {
            kind: LockKind::Put,
            primary: b"p".to_vec(),
            start_ts: Timestamp::compose(1000, 0),
            ttl_ms: 50,
            short_value: Some(b"v".to_vec()),
            min_commit_ts: Timestamp::compose(1000, 1),
            use_async_commit: true,
            secondaries: vec![b"s".to_vec()],
            txn_size: 2,
        }
    }

    #[test]
    fn round_trips_and_rejects_garbage() {
        let l = lock();
        assert_eq!(Lock::from_bytes(&l.to_bytes()).unwrap(), l);
        assert!(Lock::from_bytes(b"\xff\xff").is_err());
    }

    #[test]
    fn expiry_and_read_blocking() {
        let l = lock();
        assert!(!l.is_expired(1050));
        assert!(l.is_expired(1051));
        assert!(!l.blocks_read(Timestamp::compose(999, 0)));
        assert!(!l.blocks_read(l.start_ts), "min_commit_ts above the read");
        assert!(l.blocks_read(l.min_commit_ts));
        let lock_kind = Lock { kind: LockKind::Lock, ..l };
        assert!(!lock_kind.blocks_read(Timestamp::MAX));
    }
}
