//! keel's shared vocabulary: keys, timestamps, regions and epochs, typed errors, named
//! limits, the per-node clock and the determinism trace.
//!
//! Every other keel crate depends on this one, so it must never depend on any of them,
//! nor on an async runtime, a storage engine or a network stack.
#![deny(missing_docs)]

pub mod buggify;
pub mod clock;
pub mod codec;
pub mod error;
pub mod keys;
pub mod limits;
pub mod planted;
pub mod proto;
pub mod region;
pub mod timestamp;
pub mod trace;

pub use clock::Clock;
pub use error::{KeyError, RegionError};
pub use region::{Peer, PeerRole, Region, RegionEpoch};
pub use timestamp::Timestamp;

/// Identifies a region (one raft group over a key range). Allocated by PD.
pub type RegionId = u64;
/// Identifies one replica of a region. Allocated by PD; unique across the cluster.
pub type PeerId = u64;
/// Identifies a storage node. Allocated by PD when the node first registers.
pub type StoreId = u64;
