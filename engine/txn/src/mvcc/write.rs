//! The write CF record: a commit (or rollback) of one key by one transaction.

use crate::error::{Error, Result};
use keel_types::codec;
use keel_types::Timestamp;
use serde::{Deserialize, Serialize};

/// What a write record says happened.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteKind {
    /// The key got a value.
    Put,
    /// The key was deleted.
    Delete,
    /// The transaction `start_ts` was rolled back on this key (stored at `start_ts`).
    Rollback,
    /// The key was locked but not changed; readers look past it.
    Lock,
}

/// A write record, stored under `versioned_key(key, commit_ts)` in the write CF
/// (a rollback under `versioned_key(key, start_ts)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    /// What happened.
    pub kind: WriteKind,
    /// The writing transaction's start timestamp.
    pub start_ts: Timestamp,
    /// A `Put`'s value when short (else it is in the default CF at `start_ts`).
    pub short_value: Option<Vec<u8>>,
    /// A rollback that must never be dropped (keel writes every rollback protected: a
    /// late prewrite of the rolled-back transaction must always find it).
    pub protected: bool,
    /// Another transaction whose `start_ts` equals this record's commit_ts was rolled back
    /// on this key: its rollback record would have had this very storage key, so the
    /// rollback is recorded here instead.
    pub overlapped_rollback: bool,
}

impl Write {
    /// A commit record of `kind`.
    pub fn new(kind: WriteKind, start_ts: Timestamp, short_value: Option<Vec<u8>>) -> Write {
        Write { kind, start_ts, short_value, protected: false, overlapped_rollback: false }
    }

    /// A (protected) rollback record of the transaction `start_ts`.
    pub fn rollback(start_ts: Timestamp) -> Write {
        Write { kind: WriteKind::Rollback, start_ts, short_value: None, protected: true, overlapped_rollback: false }
    }

    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self).expect("a write record always encodes")
    }

    /// Parses stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Write> {
        codec::decode(bytes).map_err(|e| Error::Corrupt(format!("write: {e}")))
    }

    /// True for records that say what the key's value is (`Put`, `Delete`).
    pub fn is_data(&self) -> bool {
        matches!(self.kind, WriteKind::Put | WriteKind::Delete)
    }

    /// Whether the record at `commit_ts` says the transaction `start_ts == commit_ts` was
    /// rolled back on this key.
    pub fn rolls_back(&self, commit_ts: Timestamp, start_ts: Timestamp) -> bool {
        commit_ts == start_ts && (self.kind == WriteKind::Rollback || self.overlapped_rollback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let w = Write::new(WriteKind::Put, Timestamp(5), Some(b"v".to_vec()));
        assert_eq!(Write::from_bytes(&w.to_bytes()).unwrap(), w);
        let r = Write::rollback(Timestamp(7));
        assert_eq!(Write::from_bytes(&r.to_bytes()).unwrap(), r);
        assert!(r.rolls_back(Timestamp(7), Timestamp(7)));
        assert!(!w.rolls_back(Timestamp(7), Timestamp(7)));
        assert!(Write { overlapped_rollback: true, ..w }.rolls_back(Timestamp(7), Timestamp(7)));
    }
}
