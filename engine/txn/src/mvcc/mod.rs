//! The MVCC layer: stored records ([`Lock`], [`Write`]), a reader over an engine snapshot
//! ([`MvccReader`]) and the mutation collector every action writes through ([`MvccTxn`]).

pub(crate) mod lock;
mod reader;
mod txn;
mod write;

pub use lock::{Lock, LockKind};
pub use reader::{MvccReader, TxnCommitRecord};
pub use txn::MvccTxn;
pub use write::{Write, WriteKind};

/// Values up to this many bytes are stored inline in the lock / write record; longer ones
/// go to the default CF under `versioned_key(key, start_ts)`.
pub const SHORT_VALUE_MAX_BYTES: usize = 255;
