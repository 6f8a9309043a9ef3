//! Regions: a key range `[start, end)` replicated by one raft group.

use crate::{PeerId, RegionId, StoreId};
use serde::{Deserialize, Serialize};

/// Version of a region's shape. `conf_ver` bumps on membership change, `version` on
/// split or merge. A request whose epoch is stale gets `EpochNotMatch`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegionEpoch {
    /// Bumped by every membership change.
    pub conf_ver: u64,
    /// Bumped by every split and merge.
    pub version: u64,
}

impl RegionEpoch {
    /// True when `self` is older than `other` in either dimension.
    pub fn is_stale_against(&self, other: &RegionEpoch) -> bool {
        self.conf_ver < other.conf_ver || self.version < other.version
    }
}

/// The role of a replica in its raft group.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PeerRole {
    /// Votes and may lead.
    #[default]
    Voter,
    /// Receives the log but does not vote (a replica being caught up).
    Learner,
}

/// One replica of a region.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer {
    /// Cluster-unique peer id (the raft node id).
    pub id: PeerId,
    /// The store that hosts it.
    pub store_id: StoreId,
    /// Voter or learner.
    pub role: PeerRole,
}

/// A region's metadata as PD and the stores know it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region {
    /// Region id.
    pub id: RegionId,
    /// Inclusive start key; empty means the beginning of the key space.
    pub start_key: Vec<u8>,
    /// Exclusive end key; empty means the end of the key space.
    pub end_key: Vec<u8>,
    /// Shape version.
    pub epoch: RegionEpoch,
    /// Replicas.
    pub peers: Vec<Peer>,
}

impl Region {
    /// True when the two regions' ranges share a key (an empty end is unbounded).
    pub fn overlaps(&self, other: &Region) -> bool {
        (other.end_key.is_empty() || self.start_key < other.end_key)
            && (self.end_key.is_empty() || other.start_key < self.end_key)
    }

    /// True when `key` lies in `[start_key, end_key)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start_key.as_slice() && (self.end_key.is_empty() || key < self.end_key.as_slice())
    }

    /// The peer of this region hosted on `store_id`, if any.
    pub fn peer_on_store(&self, store_id: StoreId) -> Option<&Peer> {
        self.peers.iter().find(|p| p.store_id == store_id)
    }

    /// The peer with raft id `peer_id`, if any.
    pub fn peer(&self, peer_id: PeerId) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == peer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_respects_open_ends() {
        let r = Region { start_key: b"b".to_vec(), end_key: b"d".to_vec(), ..Default::default() };
        assert!(!r.contains(b"a"));
        assert!(r.contains(b"b"));
        assert!(r.contains(b"c\xff"));
        assert!(!r.contains(b"d"));
        let all = Region::default();
        assert!(all.contains(b""));
        assert!(all.contains(b"\xff\xff"));
    }

    #[test]
    fn epoch_staleness() {
        let a = RegionEpoch { conf_ver: 1, version: 2 };
        assert!(a.is_stale_against(&RegionEpoch { conf_ver: 2, version: 2 }));
        assert!(a.is_stale_against(&RegionEpoch { conf_ver: 1, version: 3 }));
        assert!(!a.is_stale_against(&a));
    }
}
