//! Percolator MVCC over the `lock`, `write` and `default` column families: the
//! transactional half of a storage node.
//!
//! - [`mvcc`]: the stored records ([`mvcc::Lock`], [`mvcc::Write`]), the
//!   [`mvcc::MvccReader`] over an engine snapshot and the [`mvcc::MvccTxn`] that collects a
//!   command's writes — actions never write themselves.
//! - [`actions`]: one file per transactional action (prewrite, commit, rollback, cleanup,
//!   check_txn_status, check_secondary_locks, resolve_lock, txn_heartbeat, scan_lock, gc,
//!   get / batch_get / scan).
//! - [`Latches`] serialize write commands on overlapping keys; the
//!   [`ConcurrencyManager`] (max_ts and the in-memory lock table) makes async commit and
//!   1PC safe.
//! - [`TxnService::handle`] is what the server calls per command: validate, latch, read a
//!   linearizable snapshot, run the action, propose its writes through raft as one batch.
//!
//! Layering: depends on `keel-types`, `keel-storage` and `keel-raftstore` only. It must
//! never depend on the server, the client, RPC or PD crates: time comes in as arguments,
//! PD timestamps are pushed in by the server.

pub mod actions;
mod concurrency_manager;
mod error;
mod latches;
pub mod mvcc;
mod service;

pub use concurrency_manager::{ConcurrencyManager, MemoryLockGuard};
pub use error::{Error, Result};
pub use latches::{LatchGuard, Latches, LATCH_SLOTS_DEFAULT};
pub use service::{validate, Executed, TxnService, RESOLVE_LOCK_BATCH_MAX};
