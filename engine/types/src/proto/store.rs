//! A storage node's protocol: raft traffic between peers and client commands.

use crate::error::{InvalidArgument, KeyError, RegionError};
use crate::proto::txn::{TxnCommand, TxnResponse};
use crate::{Peer, Region, RegionEpoch, RegionId};
use serde::{Deserialize, Serialize};

/// Where a client command is aimed: the region, the epoch the client believes in and the
/// peer it thinks leads. A stale epoch or a wrong peer gets a typed region error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// Target region.
    pub region_id: RegionId,
    /// The client's view of the region's epoch.
    pub region_epoch: RegionEpoch,
    /// The peer the client addresses (its store id must be this store's).
    pub peer: Option<Peer>,
}

/// A raft message between two peers of one region. The raft payload is the protobuf
/// encoding of raft-rs's `eraftpb::Message` (this crate does not depend on raft).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftEnvelope {
    /// The region.
    pub region_id: RegionId,
    /// Sender.
    pub from_peer: Peer,
    /// Receiver.
    pub to_peer: Peer,
    /// The sender's view of the region epoch.
    pub region_epoch: RegionEpoch,
    /// The sender's region range start, so a receiver that does not know the region yet
    /// can create an uninitialised peer for it.
    #[serde(with = "serde_bytes")]
    pub start_key: Vec<u8>,
    /// The sender's region range end.
    #[serde(with = "serde_bytes")]
    pub end_key: Vec<u8>,
    /// Encoded `eraftpb::Message`; empty when `check` or `extra` is set.
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
    /// A membership question or answer between replicas in place of a raft message (TiKV's
    /// `ExtraMessage`): raft-rs never sees it.
    pub check: Option<PeerCheck>,
    /// A hibernation handshake or store beacon in place of a raft message (TiKV's
    /// `ExtraMessage` too): raft-rs never sees it.
    pub extra: Option<ExtraMessage>,
}

/// The membership exchange a replica that applied its own removal uses to learn when the
/// rest of its region no longer needs its vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerCheck {
    /// From a removed replica to a peer of its region: "which configuration have you applied?"
    Removed,
    /// The answer of the asked replica: its region as it has applied it.
    Applied(Region),
    /// The answer of a store where the asked replica no longer lives (destroyed, or
    /// superseded by a newer peer of the region): the last region it knows there, a hint of
    /// a newer configuration to ask.
    Destroyed(Region),
}

/// Messages between stores that raft itself knows nothing of: the hibernation handshake of
/// an idle region, and the beacon by which a store knows another is alive while the regions
/// they share are asleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExtraMessage {
    /// Leader to follower: the region is idle at `(term, index)`; may it sleep?
    HibernateRequest {
        /// The leader's term.
        term: u64,
        /// The leader's last log index, committed and applied.
        index: u64,
    },
    /// Follower to leader: agreed; the follower holds, committed and applied, the same log.
    HibernateResponse {
        /// The term of the request agreed to.
        term: u64,
        /// The index of the request agreed to.
        index: u64,
    },
    /// Store to store, every few ticks while hibernation is on (region 0, peers with id 0):
    /// "this store is alive". A store that stops hearing from another wakes the sleeping
    /// regions that share a peer with it, so they elect or report the loss.
    StoreBeacon,
}

/// A RawKV command. Keys live in the `raw` column family, apart from transactional data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RawCommand {
    /// Read one key.
    Get {
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Read many keys (all in the context's region).
    BatchGet {
        /// Keys.
        keys: Vec<Vec<u8>>,
    },
    /// Write one key.
    Put {
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Time to live in milliseconds from the write; 0: the key never expires.
        ttl_ms: u64,
    },
    /// Write many keys atomically (all in the context's region).
    BatchPut {
        /// Pairs.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        /// Empty (no key expires), or one time to live in milliseconds per pair (0: never
        /// expires).
        ttls_ms: Vec<u64>,
    },
    /// Delete one key.
    Delete {
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Delete many keys atomically.
    BatchDelete {
        /// Keys.
        keys: Vec<Vec<u8>>,
    },
    /// Delete every key in `[start_key, end_key)` (clipped to the region by the client).
    DeleteRange {
        /// Inclusive start.
        #[serde(with = "serde_bytes")]
        start_key: Vec<u8>,
        /// Exclusive end; empty means the region's end.
        #[serde(with = "serde_bytes")]
        end_key: Vec<u8>,
    },
    /// Keys in `[start_key, end_key)` in order (descending when `reverse`), at most `limit`.
    Scan {
        /// Inclusive start.
        #[serde(with = "serde_bytes")]
        start_key: Vec<u8>,
        /// Exclusive end; empty means the region's end.
        #[serde(with = "serde_bytes")]
        end_key: Vec<u8>,
        /// Most pairs returned (1 ..= SCAN_LIMIT_MAX).
        limit: u32,
        /// Newest-first from `end_key` downwards.
        reverse: bool,
        /// Return empty values.
        key_only: bool,
    },
    /// Atomically set `key` to `value` if its current value equals `expected`
    /// (`None`: the key must be absent).
    CompareAndSwap {
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Required current value (an expired key is absent).
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        /// New value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Time to live of the new value in milliseconds; 0: never expires.
        ttl_ms: u64,
    },
    /// The remaining time to live of a key.
    GetKeyTtl {
        /// Key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

/// The result of a RawKV command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RawResponse {
    /// `Get`.
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// `BatchGet`: found pairs only, in request order.
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    /// A write succeeded.
    Done,
    /// `CompareAndSwap`: whether it swapped, and the value found.
    Cas {
        /// True when the value was swapped.
        succeeded: bool,
        /// The value before the command.
        #[serde(with = "serde_bytes")]
        previous: Option<Vec<u8>>,
    },
    /// `GetKeyTtl`: `None` when the key is absent (or expired); `Some(0)` when it never
    /// expires; otherwise the milliseconds it has left (at least 1).
    Ttl(Option<u64>),
}

/// A call to a storage node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreRequest {
    /// Raft messages for peers on this store (answered with `Ack` once queued).
    Raft(Vec<RaftEnvelope>),
    /// A RawKV command.
    Raw {
        /// Routing context.
        ctx: Context,
        /// The command.
        cmd: RawCommand,
    },
    /// A transactional command (see [`crate::proto::txn`]).
    Txn {
        /// Routing context.
        ctx: Context,
        /// The command.
        cmd: TxnCommand,
    },
    /// Split the context's region at `key` (manual split, `keel ctl split`).
    SplitRegion {
        /// Routing context.
        ctx: Context,
        /// Split key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

/// Why a storage node refused or failed a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StoreError {
    /// Routing is stale: refresh and retry.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// A transactional conflict.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Bad input: never retried.
    #[error(transparent)]
    Invalid(#[from] InvalidArgument),
    /// The store cannot serve right now (e.g. its disk failed and it is stopping); the
    /// command did not take effect.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The command was handed to raft but the store stopped before it could tell whether it
    /// applied: it may or may not have taken effect.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
}

/// A storage node's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoreResponse {
    /// Raft messages were accepted.
    Ack,
    /// A RawKV result.
    Raw(RawResponse),
    /// A split result: the regions after the split.
    Split(Vec<Region>),
    /// A transactional result.
    Txn(TxnResponse),
}

/// What every store call returns.
pub type StoreResult = Result<StoreResponse, StoreError>;
