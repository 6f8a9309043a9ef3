//! keel's storage engine seam: the [`Engine`] trait every upper layer (raftstore,
//! txn, pd) writes and reads through, and its two backends.
//!
//! - [`FjallEngine`] (production, not built under `--cfg madsim`): fjall 3, one
//!   keyspace per column family; synced batches are fsynced before `write` returns.
//! - [`SimEngine`] (simulator): in-memory and deterministic, modelling a disk that
//!   outlives a node's kill/restart, with pending (unsynced) writes that a crash
//!   drops or tears, failed and slow syncs, corrupted values and disk replacement.
//!
//! Both are held to the same behaviour by a model-based test (`tests/model.rs`)
//! against a `BTreeMap` reference, including crash/reopen. For fjall, "crash" there
//! means the file image a `kill -9` leaves (a copy of the directory taken while the
//! engine is open): it proves synced data left the process and unsynced tails are
//! recovered as a batch prefix, but in-process it cannot tell an fsync from a mere
//! `write(2)` to the page cache; power loss is modelled only by `SimEngine`.
//!
//! Layering: this crate must never depend on another keel crate (not even
//! `keel-types`): it knows bytes, column families and durability, nothing about
//! regions, raft or MVCC. Under `--cfg madsim` it must not compile fjall or do any
//! real I/O, spawn threads or read clocks.
//!
//! Durability contract (both engines):
//! - `write` is atomic across column families: after any crash a batch is either
//!   wholly present or wholly absent.
//! - A batch written with `sync: true` (or any batch followed by a successful
//!   [`Engine::sync`]) survives any crash, together with every batch before it.
//! - After a crash the engine holds the state at *some* batch boundary between the
//!   last successful sync and the last write: a prefix of the unsynced batches
//!   survives, never a subset with holes.
//! - A failed sync poisons the engine: every later call fails with
//!   [`Error::Poisoned`] until the process (or, in the simulator, the node)
//!   restarts and reopens the disk.
//! - Every record carries a checksum; a record that fails it is never returned
//!   ([`Error::Corruption`]). The simulated disk then also stops serving anything
//!   ([`Error::CorruptionFound`]) until the node restarts: a node must not carry on
//!   next to a bad block. Its syncs take simulated time ([`Engine::sync_latency`]), a slow-sync fault more.

mod batch;
mod cf;
mod checksum;
mod engine;
mod error;
#[cfg(not(madsim))]
mod fjall_engine;
mod sim;

pub use batch::{WriteBatch, WriteOp};
pub use cf::CfName;
pub use engine::{Engine, KvIter, KvPair, RangeStats, Snapshot, WriteOptions};
pub use error::{Error, Result};
#[cfg(not(madsim))]
pub use fjall_engine::FjallEngine;
pub use sim::{SimEngine, SimStats};

/// Largest accepted key, in bytes. Keys must also be non-empty.
pub const KEY_LEN_MAX: usize = 8 * 1024;

/// Largest accepted value, in bytes.
pub const VALUE_LEN_MAX: usize = 32 * 1024 * 1024;

/// Most unsynced batches the simulated disk keeps pending; beyond that the oldest
/// is written back (becomes durable), as an OS flushes dirty pages eventually.
pub const SIM_PENDING_BATCHES_MAX: usize = 4096;

/// Bugs that can be switched on at run time to prove the model-based test catches
/// them (negative tests). Only compiled with the `planted-bugs` feature.
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// `SimEngine::crash` keeps the last unsynced batch even when it drops an
    /// earlier one: the surviving state has a hole.
    SimKeepUnsyncedAfterCrash,
    /// `SimEngine` treats synced batches and `sync()` as unsynced: acknowledged
    /// durable writes can be lost in a crash.
    SimIgnoreSync,
    /// `FjallEngine` commits synced batches without persisting the journal (and
    /// `sync()` does nothing): the data stays in fjall's user-space journal buffer.
    FjallSkipSync,
}
