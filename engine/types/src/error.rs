//! Typed errors that cross the wire. Clients key their retry logic on [`RegionError`];
//! transactions key theirs on [`KeyError`].

use crate::{Peer, Region, RegionId, Timestamp};
use serde::{Deserialize, Serialize};

/// The request reached the wrong replica or a stale view of a region. Always retryable
/// after refreshing routing information.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// This peer is not the leader; `leader` is a hint when known.
    #[error("region {region_id}: not leader (hint: {leader:?})")]
    NotLeader {
        /// Region addressed.
        region_id: RegionId,
        /// The leader this peer believes in, if any.
        leader: Option<Peer>,
    },
    /// The request's epoch is stale; the current regions covering its range are attached.
    #[error("epoch not match; current regions: {}", current_regions.len())]
    EpochNotMatch {
        /// Regions that now cover the old region's range.
        current_regions: Vec<Region>,
    },
    /// No peer of this region lives on this store.
    #[error("region {region_id} not found")]
    RegionNotFound {
        /// Region addressed.
        region_id: RegionId,
    },
    /// A key of the request lies outside the region's range.
    #[error("key not in region {region_id}")]
    KeyNotInRegion {
        /// The offending key.
        key: Vec<u8>,
        /// Region addressed.
        region_id: RegionId,
        /// Region's start key.
        start_key: Vec<u8>,
        /// Region's end key.
        end_key: Vec<u8>,
    },
    /// The store is overloaded (or not ready); back off and retry.
    #[error("server is busy: {reason}")]
    ServerIsBusy {
        /// Why.
        reason: String,
    },
    /// The command was superseded: another entry took its place in the raft log (leadership
    /// changed before it committed), so it certainly did not take effect. Safe to retry.
    #[error("stale command")]
    StaleCommand,
    /// The proposal is larger than a raft entry may be.
    #[error("raft entry too large: {entry_size} bytes in region {region_id}")]
    RaftEntryTooLarge {
        /// Region addressed.
        region_id: RegionId,
        /// Size of the rejected entry.
        entry_size: u64,
    },
}

/// A transactional lock as readers and resolvers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The locked key.
    pub key: Vec<u8>,
    /// The transaction's primary key (where its status lives).
    pub primary: Vec<u8>,
    /// The owning transaction's start timestamp.
    pub start_ts: Timestamp,
    /// Time to live in milliseconds, measured from `start_ts`'s physical time.
    pub ttl_ms: u64,
    /// Smallest commit timestamp the transaction may use (async commit).
    pub min_commit_ts: Timestamp,
    /// Secondaries listed on an async-commit primary lock.
    pub secondaries: Vec<Vec<u8>>,
    /// Whether the transaction uses async commit.
    pub use_async_commit: bool,
}

/// A per-key transactional error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is locked by another transaction.
    #[error("key is locked by txn {}", lock.start_ts)]
    Locked {
        /// The conflicting lock.
        lock: LockInfo,
    },
    /// A write newer than this transaction's start_ts exists.
    #[error("write conflict on txn {start_ts}: committed at {conflict_commit_ts}")]
    WriteConflict {
        /// This transaction's start timestamp.
        start_ts: Timestamp,
        /// Start of the conflicting transaction.
        conflict_start_ts: Timestamp,
        /// Commit timestamp of the conflicting write.
        conflict_commit_ts: Timestamp,
        /// The key.
        key: Vec<u8>,
        /// This transaction's primary.
        primary: Vec<u8>,
    },
    /// An insert found the key present.
    #[error("key already exists")]
    AlreadyExist {
        /// The key.
        key: Vec<u8>,
    },
    /// The transaction's status could not be found (its primary lock is gone and no
    /// commit or rollback record exists).
    #[error("txn {start_ts} not found")]
    TxnNotFound {
        /// Start timestamp of the transaction.
        start_ts: Timestamp,
        /// Its primary key.
        primary: Vec<u8>,
    },
    /// The commit timestamp is below the lock's min_commit_ts.
    #[error("commit ts {commit_ts} expired; min_commit_ts is {min_commit_ts}")]
    CommitTsExpired {
        /// This transaction's start timestamp.
        start_ts: Timestamp,
        /// The proposed commit timestamp.
        commit_ts: Timestamp,
        /// The key.
        key: Vec<u8>,
        /// Minimum acceptable commit timestamp.
        min_commit_ts: Timestamp,
    },
    /// The transaction was already rolled back.
    #[error("txn {start_ts} was rolled back")]
    RolledBack {
        /// Start timestamp of the transaction.
        start_ts: Timestamp,
    },
    /// A rollback found the transaction already committed.
    #[error("txn {start_ts} already committed at {commit_ts}")]
    Committed {
        /// Start timestamp of the transaction.
        start_ts: Timestamp,
        /// Its commit timestamp.
        commit_ts: Timestamp,
        /// The key.
        key: Vec<u8>,
    },
}

/// An invalid request: never retried, always a clear message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("invalid argument: {0}")]
pub struct InvalidArgument(pub String);
