//! What an action can fail with: a transactional conflict for the client, or a storage
//! failure (an unreadable engine or a corrupt record) that the node cannot serve past.

use keel_types::error::KeyError;
use keel_types::proto::store::StoreError;

/// An action's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A transactional conflict, reported to the client.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The engine failed a read.
    #[error("storage: {0}")]
    Storage(#[from] keel_storage::Error),
    /// A stored record does not decode.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Result of an action.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for StoreError {
    fn from(e: Error) -> StoreError {
        match e {
            Error::Key(k) => StoreError::Key(k),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}
