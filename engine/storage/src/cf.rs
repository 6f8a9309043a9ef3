//! Column families.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A named column family: an independent, ordered key space inside one engine.
///
/// Raw and transactional data live in separate column families so they can never
/// collide; the raft log and raft state live in [`CfName::Raft`]. The variants'
/// order is fixed: a new column family goes last, so existing indexes never move.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CfName {
    /// Transactional values too large to inline in a write record (`key + start_ts`).
    Default,
    /// Transactional locks (`key → Lock`).
    Lock,
    /// Transactional commit records (`key + commit_ts → Write`).
    Write,
    /// RawKV data.
    Raw,
    /// Raft log entries, hard state and region-local metadata.
    Raft,
    /// Expiry times of RawKV keys written with a TTL (raw key → expiry). Apart from
    /// [`CfName::Raw`], so values written without a TTL are stored exactly as given.
    RawTtl,
}

impl CfName {
    /// Every column family, in a fixed order (also the order of [`CfName::index`]).
    pub const ALL: [CfName; 6] =
        [CfName::Default, CfName::Lock, CfName::Write, CfName::Raw, CfName::Raft, CfName::RawTtl];

    /// The stable lower-case name, also used as the on-disk keyspace name.
    pub const fn as_str(self) -> &'static str {
        match self {
            CfName::Default => "default",
            CfName::Lock => "lock",
            CfName::Write => "write",
            CfName::Raw => "raw",
            CfName::Raft => "raft",
            CfName::RawTtl => "raw_ttl",
        }
    }

    /// Position of this column family in [`CfName::ALL`].
    pub const fn index(self) -> usize {
        match self {
            CfName::Default => 0,
            CfName::Lock => 1,
            CfName::Write => 2,
            CfName::Raw => 3,
            CfName::Raft => 4,
            CfName::RawTtl => 5,
        }
    }

    /// Parses a name produced by [`CfName::as_str`].
    pub fn from_name(name: &str) -> Option<CfName> {
        CfName::ALL.into_iter().find(|cf| cf.as_str() == name)
    }
}

impl fmt::Display for CfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_indexes_round_trip() {
        for (i, cf) in CfName::ALL.into_iter().enumerate() {
            assert_eq!(cf.index(), i);
            assert_eq!(CfName::from_name(cf.as_str()), Some(cf));
        }
        assert_eq!(CfName::from_name("nope"), None);
    }
}
