//! Multi-raft: every region replica on a store is a raft-rs node driven by one store loop
//! that persists all of them in one synced batch per round (group commit), applies
//! committed commands to the data column families, serves linearizable reads through
//! ReadIndex, truncates logs and ships snapshots to peers that fell behind.
//!
//! Layering: depends on `keel-types` and `keel-storage` only. It knows nothing of RPC,
//! PD clients or transactions: the server injects a [`Transport`] and a [`PdReporter`].

mod apply;
pub mod cmd;
mod config;
pub mod inspect;
pub mod keys;
mod liveness;
mod merge;
mod peer;
mod peer_storage;
pub mod raw_ttl;
mod removal;
mod snapshot;
mod split_check;
mod store;
mod ticker;

pub use config::StoreConfig;
pub use peer_storage::{RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};
pub use snapshot::{cf_is_encoded, key_in_region, region_bounds, DATA_CFS};
pub use store::{PdReporter, RegionStatus, Store, StoreHandle, Transport};

use keel_types::Region;

/// A linearizable view of a region for a read: the region as of the read (to check keys
/// against) and an engine snapshot that contains every write acknowledged before the read.
pub struct ReadView {
    /// The region.
    pub region: Region,
    /// The data.
    pub snapshot: Box<dyn keel_storage::Snapshot>,
}
