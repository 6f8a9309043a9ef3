//! The transactional (Percolator) protocol of a storage node: commands a
//! `TransactionClient` and lock resolvers send, and what the node answers.
//!
//! Keys are *user* keys; every key of a command must lie in the context's region (else
//! `RegionError::KeyNotInRegion`). Timestamps come from PD's TSO. Transactional conflicts
//! are reported as [`KeyError`]s: per key inside [`TxnResponse::Prewrite`] (and as lock lists
//! in read answers), and for every other command as the call's error
//! (`StoreError::Key`), because those commands stop at the first one.

use crate::error::{KeyError, LockInfo};
use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// What a prewrite does to one key.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MutationOp {
    /// Write `value`.
    Put,
    /// Delete the key.
    Delete,
    /// Lock the key without changing it (conflict detection for a key only read; commits a
    /// `Lock` record that readers skip).
    Lock,
    /// Write `value`, failing with `KeyError::AlreadyExist` if the key has a value.
    Insert,
}

/// One key of a prewrite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutation {
    /// What to do.
    pub op: MutationOp,
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The value (`Put` and `Insert`; empty otherwise).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// A transactional command, addressed to one region (see `StoreRequest::Txn`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnCommand {
    /// Snapshot read of one key at `start_ts`. Answer: [`TxnResponse::Value`]; a lock of a
    /// transaction that may commit at or below `start_ts` fails the call with
    /// `KeyError::Locked`.
    Get {
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Read timestamp.
        start_ts: Timestamp,
    },
    /// Snapshot read of many keys at `start_ts`. Answer: [`TxnResponse::Pairs`].
    BatchGet {
        /// Keys (1 ..= BATCH_KEYS_MAX).
        keys: Vec<Vec<u8>>,
        /// Read timestamp.
        start_ts: Timestamp,
        /// Start timestamps of transactions whose locks this read skips: the reader pushed
        /// their (2PC) primary's min_commit_ts above `start_ts`, so they commit after the
        /// read, and waiting for them would only stall it (TiKV's `resolved_locks`).
        resolved_locks: Vec<Timestamp>,
    },
    /// Snapshot scan of `[start_key, end_key)` clipped to the region, at `start_ts`.
    /// Answer: [`TxnResponse::Pairs`]; locked keys count towards `limit`.
    Scan {
        /// Inclusive start.
        #[serde(with = "serde_bytes")]
        start_key: Vec<u8>,
        /// Exclusive end; empty means the region's end.
        #[serde(with = "serde_bytes")]
        end_key: Vec<u8>,
        /// Most entries (pairs plus locks), 1 ..= SCAN_LIMIT_MAX.
        limit: u32,
        /// Read timestamp.
        start_ts: Timestamp,
        /// Descending from `end_key`.
        reverse: bool,
        /// Return empty values.
        key_only: bool,
    },
    /// First phase of two-phase commit: lock every mutation's key. All or nothing: when any
    /// key fails, nothing is written and the errors are listed.
    /// Answer: [`TxnResponse::Prewrite`].
    Prewrite {
        /// The keys and what to do with them (distinct keys, 1 ..= BATCH_KEYS_MAX).
        mutations: Vec<Mutation>,
        /// The transaction's primary key (may live in another region).
        #[serde(with = "serde_bytes")]
        primary: Vec<u8>,
        /// The transaction's start timestamp.
        start_ts: Timestamp,
        /// Lock time to live, ms from `start_ts`'s physical time.
        lock_ttl_ms: u64,
        /// Number of keys the whole transaction writes (a hint for resolvers).
        txn_size: u64,
        /// Smallest commit timestamp the client will accept (0: `start_ts + 1`).
        min_commit_ts: Timestamp,
        /// Async commit: the transaction is committed once every key is prewritten.
        use_async_commit: bool,
        /// Async commit: every secondary key (only sent with the primary's region).
        secondaries: Vec<Vec<u8>>,
        /// One-phase commit: every key of the transaction is in this command; commit
        /// directly without locks.
        try_one_pc: bool,
        /// Async commit / 1PC: the largest commit timestamp the client accepts (0: no
        /// bound). When the computed commit timestamp would exceed it, the node falls back
        /// to a plain 2PC prewrite.
        max_commit_ts: Timestamp,
    },
    /// Second phase: commit `keys` of the transaction `start_ts` at `commit_ts`.
    /// Idempotent. Answer: [`TxnResponse::Done`].
    Commit {
        /// Keys (the primary first, alone, then the secondaries).
        keys: Vec<Vec<u8>>,
        /// The transaction's start timestamp.
        start_ts: Timestamp,
        /// Commit timestamp (> `start_ts`, ≥ every lock's min_commit_ts).
        commit_ts: Timestamp,
    },
    /// Roll back `keys` of the transaction `start_ts` (protected rollback records, so a
    /// late prewrite cannot succeed). Idempotent; fails with [`KeyError::Committed`] if a
    /// key was already committed. Answer: [`TxnResponse::Done`].
    BatchRollback {
        /// Keys.
        keys: Vec<Vec<u8>>,
        /// The transaction's start timestamp.
        start_ts: Timestamp,
    },
    /// Roll back one key's lock of `start_ts` if its TTL expired at `current_ts` (0: no TTL
    /// check). Answer: [`TxnResponse::Cleanup`].
    Cleanup {
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The transaction's start timestamp.
        start_ts: Timestamp,
        /// The caller's current TSO timestamp (physical part compared with the TTL).
        current_ts: Timestamp,
    },
    /// Find out (and settle, when the primary's TTL has expired) the status of the
    /// transaction `lock_ts` from its primary key. Answer: [`TxnResponse::TxnStatus`].
    CheckTxnStatus {
        /// The transaction's primary key.
        #[serde(with = "serde_bytes")]
        primary: Vec<u8>,
        /// The transaction's start timestamp.
        lock_ts: Timestamp,
        /// The reader's start timestamp: a live primary's min_commit_ts is pushed above it
        /// (0 or `Timestamp::MAX`: no push).
        caller_start_ts: Timestamp,
        /// The caller's current TSO timestamp, for the TTL check.
        current_ts: Timestamp,
        /// With no lock and no commit/rollback record, write a rollback record instead of
        /// failing with `KeyError::TxnNotFound`.
        rollback_if_not_exist: bool,
        /// Treat an async-commit primary as a plain 2PC one (roll it back when expired):
        /// the resolver found a secondary that fell back to 2PC.
        force_sync_commit: bool,
    },
    /// Async commit: the status of the transaction `start_ts` from its secondary keys.
    /// A missing lock with no commit record gets a protected rollback record (so the
    /// prewrite can never land). Answer: [`TxnResponse::SecondaryLocks`].
    CheckSecondaryLocks {
        /// Keys.
        keys: Vec<Vec<u8>>,
        /// The transaction's start timestamp.
        start_ts: Timestamp,
    },
    /// Commit (`commit_ts > 0`) or roll back (`commit_ts == 0`) the locks of the
    /// transaction `start_ts`: the given `keys`, or every such lock in the region when
    /// `keys` is empty. Answer: [`TxnResponse::Done`].
    ResolveLock {
        /// The transaction's start timestamp.
        start_ts: Timestamp,
        /// Its commit timestamp, or 0 to roll back.
        commit_ts: Timestamp,
        /// Keys to resolve; empty: all locks of `start_ts` in the region.
        keys: Vec<Vec<u8>>,
    },
    /// Extend the TTL of the primary lock of `start_ts` to `advise_ttl_ms` (never
    /// shortens). Answer: [`TxnResponse::HeartBeat`].
    TxnHeartBeat {
        /// The transaction's primary key.
        #[serde(with = "serde_bytes")]
        primary: Vec<u8>,
        /// The transaction's start timestamp.
        start_ts: Timestamp,
        /// Wanted TTL in ms from `start_ts`'s physical time.
        advise_ttl_ms: u64,
    },
    /// Locks with `start_ts ≤ max_ts` in `[start_key, end_key)` clipped to the region.
    /// Answer: [`TxnResponse::Locks`].
    ScanLock {
        /// Only locks of transactions that started at or before this.
        max_ts: Timestamp,
        /// Inclusive start.
        #[serde(with = "serde_bytes")]
        start_key: Vec<u8>,
        /// Exclusive end; empty means the region's end.
        #[serde(with = "serde_bytes")]
        end_key: Vec<u8>,
        /// Most locks, 1 ..= SCAN_LIMIT_MAX.
        limit: u32,
    },
    /// Garbage-collect the region's versions below `safe_point`: keep the newest `Put` at or
    /// below it per key, drop everything older and every rollback / lock record / delete at
    /// or below it. Locks are never touched (resolve them first). Answer:
    /// [`TxnResponse::Gc`]; call again while it reports `more`.
    Gc {
        /// Versions that no reader at or after this timestamp needs are removed.
        safe_point: Timestamp,
    },
    /// Delete every transactional record — versions, long values and locks — of the user
    /// keys in `[start_key, end_key)` clipped to the region, regardless of timestamps. A
    /// maintenance operation (TiKV's `KvDeleteRange`, e.g. after a table is dropped), not a
    /// transaction: readers at any timestamp see the keys gone. Answer: [`TxnResponse::Done`].
    DeleteRange {
        /// Inclusive start.
        #[serde(with = "serde_bytes")]
        start_key: Vec<u8>,
        /// Exclusive end; empty means the region's end.
        #[serde(with = "serde_bytes")]
        end_key: Vec<u8>,
    },
}

/// The status of a transaction as its primary key tells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnStatus {
    /// The primary lock is alive (or is an async-commit lock whose fate the secondaries
    /// decide). `lock.min_commit_ts` is the possibly pushed value.
    Locked {
        /// The primary lock.
        lock: LockInfo,
        /// Whether this call pushed its min_commit_ts above `caller_start_ts`.
        min_commit_ts_pushed: bool,
    },
    /// The transaction committed.
    Committed {
        /// Its commit timestamp.
        commit_ts: Timestamp,
    },
    /// The transaction is rolled back (now or earlier).
    RolledBack {
        /// What happened in this call.
        reason: RollbackReason,
    },
}

/// Why [`TxnStatus::RolledBack`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RollbackReason {
    /// A rollback record already existed.
    AlreadyRolledBack,
    /// This call rolled back the primary lock because its TTL expired.
    TtlExpired,
    /// This call found no lock and no record and wrote a rollback record.
    LockNotExist,
}

/// The status of an async-commit transaction as its secondaries tell it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecondaryLocksStatus {
    /// Every key still holds the transaction's lock (listed in request order). If all of
    /// them are async-commit locks (and the primary's too), the transaction is committed at
    /// the largest min_commit_ts; a lock with `use_async_commit == false` means the
    /// transaction fell back to 2PC.
    Locked(Vec<LockInfo>),
    /// A key was already committed at this timestamp.
    Committed(Timestamp),
    /// A key was rolled back (now or earlier): the transaction can never commit.
    RolledBack,
}

/// Both values a locked key may have for the reader that met the lock, so that once the
/// reader learns the lock's fate it needs no second read (TiKV reads again with
/// `resolved_locks` / `committed_locks`; keel answers both sides at once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedRead {
    /// The newest value committed at or below the read's timestamp, the lock set aside
    /// (`None`: absent): the key's value if the lock's transaction rolls back or commits
    /// above the read. Nothing else can commit the key at or below the read's timestamp
    /// while the lock is held.
    pub below: Option<Vec<u8>>,
    /// What the key holds once the lock's transaction commits (`None`: deleted): its value
    /// for a reader above that commit.
    pub written: Option<Vec<u8>>,
}

/// A node's answer to a [`TxnCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResponse {
    /// `Get`: the value visible at `start_ts`.
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// `BatchGet` / `Scan`: the visible pairs (request order / scan order), and the locks
    /// that hid some keys. If `locks` is not empty, resolve them and read again — only the
    /// keys still unsettled when `locked_reads` answers every lock (see [`LockedRead`]).
    Pairs {
        /// Found pairs.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        /// Blocking locks.
        locks: Vec<LockInfo>,
        /// A `BatchGet` read from the region's data: one entry per lock (same order), and
        /// `pairs` holds every other key. Empty for scans and for answers from in-flight
        /// async-commit locks, which leave the other keys out: read the whole group again.
        locked_reads: Vec<LockedRead>,
    },
    /// `Prewrite`.
    Prewrite {
        /// Per-key errors; when not empty, nothing was written.
        errors: Vec<KeyError>,
        /// Async commit: the smallest commit timestamp this region's keys accept (the
        /// transaction commits at the maximum over its regions). `ZERO` when the prewrite
        /// was not async or fell back to 2PC (then commit with a TSO timestamp).
        min_commit_ts: Timestamp,
        /// 1PC: the transaction is committed at this timestamp. `ZERO` when it was not
        /// committed by 1PC (it fell back to a 2PC prewrite, or failed).
        one_pc_commit_ts: Timestamp,
    },
    /// A write command that has nothing else to say succeeded.
    Done,
    /// `Cleanup`: `Some(commit_ts)` when the transaction had committed (nothing was
    /// done); `None` when it is rolled back.
    Cleanup(Option<Timestamp>),
    /// `CheckTxnStatus`.
    TxnStatus(TxnStatus),
    /// `CheckSecondaryLocks`.
    SecondaryLocks(SecondaryLocksStatus),
    /// `TxnHeartBeat`: the lock's TTL now.
    HeartBeat {
        /// TTL in ms.
        lock_ttl_ms: u64,
    },
    /// `ScanLock`: the locks found, in key order.
    Locks(Vec<LockInfo>),
    /// `Gc`.
    Gc {
        /// Records removed (write and default CF).
        deleted: u64,
        /// The command stopped at its size cap; call again.
        more: bool,
    },
}
