//! Storage errors.

use crate::CfName;

/// Result of a storage operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a storage engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error from the disk (real or simulated).
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Stored data failed its checksum: the value is never returned.
    #[error("storage corruption in cf {cf}: {detail}")]
    Corruption {
        /// Column family the corrupt data belongs to.
        cf: CfName,
        /// What was found, for the log.
        detail: String,
    },
    /// An earlier sync failed; the engine refuses every operation until the
    /// process (or simulated node) restarts and reopens the disk.
    #[error("storage engine poisoned by an earlier failed sync; restart required")]
    Poisoned,
    /// Corrupt data was found earlier in this incarnation: the engine stopped serving
    /// anything (fail-stop) rather than carry on next to a bad block; the node must stop,
    /// and its disk be checked (and replaced) before it serves again.
    #[error("storage engine stopped after finding corrupt data; the disk must be checked")]
    CorruptionFound,
    /// The engine instance this handle or snapshot belongs to was closed or
    /// crashed (simulator) and the disk has been reopened since.
    #[error("storage engine instance is closed")]
    Closed,
    /// The caller passed something the engine does not accept (empty or oversize
    /// key, oversize value, inverted range). Never a panic.
    #[error("invalid storage argument: {0}")]
    InvalidArgument(String),
    /// Any other backend error, with the backend's description.
    #[error("storage backend error: {0}")]
    Backend(String),
}
