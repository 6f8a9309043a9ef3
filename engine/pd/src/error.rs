//! Why a PD could not start or had to stop.

/// A PD that cannot (or can no longer) serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the PD's own storage failed.
    #[error("pd storage: {0}")]
    Storage(#[from] keel_storage::Error),
    /// The PD's persisted state does not decode or breaks an invariant.
    #[error("pd state corrupt: {0}")]
    Corrupt(String),
    /// The configuration is unusable.
    #[error("pd config: {0}")]
    Config(String),
    /// A write failed while serving; the PD stopped and must restart from disk.
    #[error("pd stopped after a storage failure: {0}")]
    Stopped(String),
}
