//! Commands proposed through raft and their results. Everything a replica applies comes
//! from here, so every replica computes the same state from the same log.

use keel_storage::CfName;
use keel_types::{Peer, Region, RegionEpoch, RegionId};
use serde::{Deserialize, Serialize};

/// One data change, applied in order within its command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Set a key.
    Put {
        /// Column family.
        cf: CfName,
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove a key.
    Delete {
        /// Column family.
        cf: CfName,
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Remove `[start, end)` (clipped to the region at apply time; empty end = region end).
    DeleteRange {
        /// Column family.
        cf: CfName,
        /// Inclusive start.
        #[serde(with = "serde_bytes")]
        start: Vec<u8>,
        /// Exclusive end.
        #[serde(with = "serde_bytes")]
        end: Vec<u8>,
    },
    /// Set `key` to `value` only if its value equals `expected` (`None`: absent). Evaluated
    /// at apply time, so it is atomic with respect to every other command. keel no longer
    /// proposes it (RawKV uses [`Request::RawCompareAndSwap`]); it stays so raft logs written
    /// before raw TTL existed still apply.
    CompareAndSwap {
        /// Column family.
        cf: CfName,
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Required current value.
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        /// New value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// RawKV compare-and-swap, TTL-aware (see [`crate::raw_ttl`]): a key expired at `now_ms`
    /// counts as absent; on success the key gets `value` and expires at `expire_ms`
    /// (`None`: never). `now_ms` is the proposer's clock, so every replica decides alike.
    RawCompareAndSwap {
        /// Raw key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Required current value.
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        /// New value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Expiry of the new value.
        expire_ms: Option<u64>,
        /// The time expiry is judged at.
        now_ms: u64,
    },
    /// Sets raw `key` to `value`, expiring at `expire_ms` (`None`: never; see
    /// [`crate::raw_ttl`]). An expiry left by an earlier write is deleted only when there is
    /// one, read at apply time, so a put without TTL writes nothing to the expiry CF. The
    /// read is deterministic: every replica applies the same log to the same data.
    RawPut {
        /// Raw key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Expiry of the value.
        expire_ms: Option<u64>,
    },
    /// Deletes raw `key`, and its expiry when it has one (read at apply time, as for
    /// [`Request::RawPut`]).
    RawDelete {
        /// Raw key.
        key: Vec<u8>,
    },
    /// The TTL purge: deletes raw `key` and its expiry only if, when applied, the key has an
    /// expiry at or before `now_ms` — a write between the purge's scan and its apply that
    /// renewed or cleared the TTL keeps the key.
    RawDeleteExpired {
        /// Raw key.
        key: Vec<u8>,
        /// The purging leader's clock when it found the key expired.
        now_ms: u64,
    },
}

impl Request {
    /// The stored key this request touches (range requests: their start) and its CF.
    pub fn key(&self) -> (CfName, &[u8]) {
        match self {
            Request::Put { cf, key, .. } | Request::Delete { cf, key } | Request::CompareAndSwap { cf, key, .. } => {
                (*cf, key)
            }
            Request::RawCompareAndSwap { key, .. }
            | Request::RawPut { key, .. }
            | Request::RawDelete { key }
            | Request::RawDeleteExpired { key, .. } => (CfName::Raw, key),
            Request::DeleteRange { cf, start, .. } => (*cf, start),
        }
    }
}

/// An administrative command that changes the region itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Split at `split_key`: the region keeps `[start, split_key)`, a new region with
    /// `new_region_id` takes `[split_key, end)` with one new peer id per existing peer.
    Split {
        /// First key of the new right region.
        #[serde(with = "serde_bytes")]
        split_key: Vec<u8>,
        /// Id of the new region.
        new_region_id: RegionId,
        /// New peer ids, in the order of the region's peers.
        new_peer_ids: Vec<u64>,
    },
    /// First step of a merge, in the source region: freeze it (no writes, splits or
    /// membership changes from here on), bump both epoch parts and remember `target` and
    /// this entry's position, persisted with the region (see [`crate::merge`]).
    PrepareMerge {
        /// The region to merge into, as validated by the proposer (an adjacent region with
        /// peers on the same stores).
        target: Region,
    },
    /// Second step, in the target region: absorb `source`, which applied its PrepareMerge
    /// at `commit` (with term `commit_term`). Each replica applies it only once the source
    /// replica on its store has applied that entry (catching up from its own log if it must).
    CommitMerge {
        /// The source region as of its PrepareMerge.
        source: Region,
        /// Index of the source's PrepareMerge entry.
        commit: u64,
        /// Term of that entry.
        commit_term: u64,
    },
    /// Abort, in the source region: the target moved on (its epoch changed), so no
    /// CommitMerge of this source can ever apply; unfreeze it.
    RollbackMerge {
        /// Index of the PrepareMerge being rolled back.
        commit: u64,
    },
    /// In the target region: bump the version and nothing else. A source that cannot commit
    /// its merge (a peer stays behind) fences the target this way, so every CommitMerge
    /// still in the target's log fails, and the source may then roll back safely.
    FenceMerge,
}

/// What is proposed through raft: the region and epoch the proposer validated against,
/// and the body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftCmd {
    /// Region the command was proposed in.
    pub region_id: RegionId,
    /// Epoch the proposer checked; a command whose epoch is stale at apply time is skipped.
    pub epoch: RegionEpoch,
    /// The body.
    pub body: CmdBody,
}

/// The body of a [`RaftCmd`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmdBody {
    /// Data changes, applied atomically.
    Write(Vec<Request>),
    /// A region change.
    Admin(AdminRequest),
}

/// The result of applying one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestResult {
    /// Applied.
    Done,
    /// A compare-and-swap: whether it swapped and the value it found.
    Cas {
        /// True when swapped.
        succeeded: bool,
        /// The value before.
        #[serde(with = "serde_bytes")]
        previous: Option<Vec<u8>>,
    },
}

/// The result of applying a whole command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmdResult {
    /// A write, one result per request.
    Write(Vec<RequestResult>),
    /// A split: the regions after it (left, right).
    Split(Vec<Region>),
    /// A membership change: the region after it.
    ConfChange(Region),
    /// A merge step (prepare, commit, rollback or fence): the region after it.
    Merge(Region),
}

/// A membership change of one peer (raft-rs ConfChangeV2 with a single change; carried in
/// the entry's context so every replica learns the peer's store as well as its id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfChangeCmd {
    /// Region.
    pub region_id: RegionId,
    /// Epoch the proposer checked; a change whose conf_ver is stale at apply time is skipped.
    pub epoch: RegionEpoch,
    /// What happens to `peer`.
    pub kind: ConfChangeKind,
    /// The peer.
    pub peer: Peer,
}

/// The kinds of single-peer membership change.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfChangeKind {
    /// Add a non-voting learner (it catches up by snapshot).
    AddLearner,
    /// Promote a learner to voter.
    PromoteLearner,
    /// Remove a peer.
    RemovePeer,
}
