//! The placement driver's protocol: timestamps, ids, stores, regions, heartbeats.

use crate::{Peer, PeerId, Region, RegionId, StoreId, Timestamp};
use serde::{Deserialize, Serialize};

/// Lifecycle of a store as PD sees it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoreState {
    /// Serving.
    #[default]
    Up,
    /// Being drained by `remove-store`: PD moves its replicas away.
    Offline,
    /// Removed for good; it must never rejoin.
    Tombstone,
}

/// A storage node's registration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    /// Id allocated by PD when the store first registered.
    pub id: StoreId,
    /// Address peers and clients dial (`ip:port`).
    pub address: String,
    /// Address of the status HTTP server, if any.
    pub status_address: String,
    /// Placement labels, e.g. `zone=a`, `host=h1`; sorted by key.
    pub labels: Vec<(String, String)>,
    /// Lifecycle state.
    pub state: StoreState,
}

/// What a store reports about itself every heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// The reporting store.
    pub store_id: StoreId,
    /// Disk capacity in bytes (0 when unknown).
    pub capacity_bytes: u64,
    /// Free disk bytes (0 when unknown).
    pub available_bytes: u64,
    /// Regions with a peer on this store.
    pub region_count: u64,
    /// Regions led by this store.
    pub leader_count: u64,
    /// Snapshots being sent.
    pub sending_snapshots: u64,
    /// Snapshots being received.
    pub receiving_snapshots: u64,
}

/// What a region's leader reports every heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionHeartbeat {
    /// The region as the leader knows it.
    pub region: Region,
    /// The reporting leader.
    pub leader: Option<Peer>,
    /// The leader's raft term (orders reports from successive leaders).
    pub term: u64,
    /// Peers the leader has not heard from recently, with seconds since last contact.
    pub down_peers: Vec<(Peer, u64)>,
    /// Peers whose log lags far behind (catching up).
    pub pending_peers: Vec<Peer>,
    /// Approximate bytes in the region.
    pub approximate_size_bytes: u64,
    /// Approximate keys in the region.
    pub approximate_keys: u64,
    /// Bytes written since the last heartbeat.
    pub written_bytes: u64,
}

/// One scheduling step PD asks a region's leader to take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    /// Add a learner on a store.
    AddLearner(Peer),
    /// Promote a learner to voter.
    PromoteLearner(Peer),
    /// Remove a peer.
    RemovePeer(Peer),
    /// Hand leadership to a peer.
    TransferLeader(Peer),
    /// Split the region at a key.
    Split {
        /// Split key (becomes the new right region's start).
        key: Vec<u8>,
    },
    /// Merge the region (the source) into `target`, an adjacent region with peers on the
    /// same stores: the source's leader proposes PrepareMerge, then the target absorbs it.
    Merge {
        /// The region to merge into, as PD knows it.
        target: Region,
    },
}

/// An operator a person or tool asks PD to run on one region (as with TiKV's
/// `pd-ctl operator add`): PD runs it with the same step machinery as its own checkers'
/// operators, so a manual move is as safe as a scheduled one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManualOperator {
    /// Hand the region's leadership to its voter on this store.
    TransferLeader {
        /// Store of the voter that should lead.
        to_store: StoreId,
    },
    /// Add a replica on a store that has none (a learner, caught up, then promoted).
    AddPeer {
        /// Store to add the replica on.
        store: StoreId,
    },
    /// Remove the region's replica on a store (the leader's is transferred away first).
    /// The region may drop below `max_replicas`; the replica checker then adds one back.
    RemovePeer {
        /// Store whose replica goes.
        store: StoreId,
    },
    /// Move a replica: add one on `to_store`, promote it, then remove the one on `from_store`.
    MovePeer {
        /// Store whose replica goes.
        from_store: StoreId,
        /// Store that gains one.
        to_store: StoreId,
    },
}

/// A call to PD.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PdRequest {
    /// The cluster id and the PD leader's address.
    GetMembers,
    /// Whether the cluster has been bootstrapped, and its first region if so.
    GetBootstrapRegion,
    /// Allocate `count` consecutive ids (stores, regions, peers share one id space).
    AllocId {
        /// How many ids.
        count: u32,
    },
    /// Register or update a store.
    PutStore(Store),
    /// Look up one store.
    GetStore(StoreId),
    /// All stores, tombstones included.
    GetAllStores,
    /// A store's periodic report.
    StoreHeartbeat(StoreStats),
    /// A region leader's periodic report.
    RegionHeartbeat(RegionHeartbeat),
    /// The region containing `key` and its leader.
    GetRegion {
        /// Any key.
        key: Vec<u8>,
    },
    /// The region with this id and its leader.
    GetRegionById(RegionId),
    /// Regions overlapping `[start_key, end_key)` in key order, at most `limit`.
    ScanRegions {
        /// Inclusive start.
        start_key: Vec<u8>,
        /// Exclusive end; empty means unbounded.
        end_key: Vec<u8>,
        /// Most regions returned (0 means no limit).
        limit: u32,
    },
    /// `count` fresh timestamps; the answer is the last of them.
    Tso {
        /// How many timestamps.
        count: u32,
    },
    /// The current GC safe point.
    GetGcSafePoint,
    /// Advance the GC safe point (it never moves backwards).
    UpdateGcSafePoint(Timestamp),
    /// Ids for splitting `region`: a new region id and one peer id per current peer.
    AskSplit {
        /// The region to split.
        region: Region,
    },
    /// A split has been applied: PD learns both halves.
    ReportSplit {
        /// Left half (keeps the original id).
        left: Region,
        /// Right half.
        right: Region,
    },
    /// Run a manual operator on a region. Refused while the region has another operator
    /// in flight, or when the operator cannot apply to the region as PD knows it.
    AddOperator {
        /// The region.
        region_id: RegionId,
        /// What to do to it.
        op: ManualOperator,
    },
    /// How busy the schedulers are: operators in flight now, and created since PD opened.
    /// Tests use it to assert scheduling has settled (nothing runs, nothing new starts).
    GetOperatorStatus,
    /// Between the members of a replicated PD: one encoded raft-rs `eraftpb::Message` of the
    /// PD's own raft group (this crate does not depend on raft). Answered `Ok` once queued.
    RaftMessage(Vec<u8>),
}

/// PD's scheduling activity ([`PdRequest::GetOperatorStatus`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorStatus {
    /// Operators in flight (at most one per region).
    pub in_flight: u64,
    /// Operators created since this PD opened, of every kind.
    pub created: u64,
}

/// A region with its leader, as routing needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionInfo {
    /// The region.
    pub region: Region,
    /// Its leader, if PD knows one.
    pub leader: Option<Peer>,
    /// Peers PD judges down and will replace: on a store that is gone or silent for longer
    /// than `max_store_down_time`, or reported unreachable that long by the leader. A
    /// replica that applied its own removal stops waiting for these (raftstore's
    /// `removal` module says why that is safe).
    pub down_peers: Vec<Peer>,
}

/// PD's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PdResponse {
    /// Answer to `GetMembers`.
    Members {
        /// Stable cluster id.
        cluster_id: u64,
        /// Address of the PD leader.
        leader: String,
    },
    /// Answer to `GetBootstrapRegion`: `None` until the cluster has been bootstrapped.
    BootstrapRegion(Option<Region>),
    /// Answer to `AllocId`: ids `first .. first + count`.
    Ids {
        /// First id.
        first: u64,
        /// How many.
        count: u32,
    },
    /// Success with nothing to return.
    Ok,
    /// Answer to `GetStore`.
    Store(Option<Store>),
    /// Answer to `GetAllStores`.
    Stores(Vec<Store>),
    /// Answer to `RegionHeartbeat`: at most one step to take.
    Operator(Option<Operator>),
    /// Answer to `GetRegion` / `GetRegionById`.
    Region(Option<RegionInfo>),
    /// Answer to `ScanRegions`.
    Regions(Vec<RegionInfo>),
    /// Answer to `Tso`: the last timestamp of the batch; the batch is `ts - count + 1 ..= ts`.
    Tso {
        /// Last timestamp of the batch.
        ts: Timestamp,
        /// Batch size.
        count: u32,
    },
    /// Answer to `GetGcSafePoint` / `UpdateGcSafePoint`.
    GcSafePoint(Timestamp),
    /// Answer to `AskSplit`.
    SplitIds {
        /// Id of the new (right) region.
        new_region_id: RegionId,
        /// New peer ids, one per peer of the region, in the region's peer order.
        new_peer_ids: Vec<PeerId>,
    },
    /// Answer to `GetOperatorStatus`.
    OperatorStatus(OperatorStatus),
}

/// Why PD refused a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum PdError {
    /// The cluster has not been bootstrapped yet (too few stores).
    #[error("cluster not bootstrapped")]
    NotBootstrapped,
    /// The store was removed and may not come back.
    #[error("store {0} is tombstone")]
    StoreTombstone(StoreId),
    /// A bad request.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// PD could not do it now (e.g. its disk failed); retry later.
    #[error("pd unavailable: {0}")]
    Unavailable(String),
}

/// What every PD call returns.
pub type PdResult = Result<PdResponse, PdError>;
