//! Tunables of a store's raft machinery. Every limit has a name; `test_min` shrinks them so
//! the simulator reaches rare paths (log truncation, snapshots) all the time.

use keel_types::StoreId;
use std::time::Duration;

/// Configuration of one store's raft machinery.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// This store's id.
    pub store_id: StoreId,
    /// Interval between raft ticks.
    pub tick_interval: Duration,
    /// Ticks without a leader before a follower campaigns (randomised up to twice this).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Ticks between region heartbeats to PD from each leader.
    pub pd_heartbeat_ticks: u64,
    /// Truncate a region's log once this many applied entries are in it...
    pub raft_log_gc_threshold: u64,
    /// ...keeping this many of the newest applied entries for slightly lagging followers.
    pub raft_log_keep_entries: u64,
    /// A follower silent for this many ticks asks PD whether it is still a member (and
    /// asks again every this many ticks).
    pub stale_peer_check_ticks: u64,
    /// Ticks between a removed replica's probes of whether its region is past its removal.
    pub removed_peer_check_ticks: u64,
    /// Ticks between a leader's split checks.
    pub split_check_ticks: u64,
    /// Split a region once its data exceeds this many bytes...
    pub region_split_size_bytes: u64,
    /// ...or this many keys (all data CFs together).
    pub region_split_keys: u64,
    /// Messages the store loop takes from its inbox before processing a round.
    pub round_msgs_max: usize,
    /// Capacity of the store loop's inbox; senders wait beyond it.
    pub inbox_capacity: usize,
    /// Let idle regions sleep (TiKV's `hibernate-regions`): a leader whose log every peer
    /// holds, committed and applied, stops ticking once they all agree, and so do they, until
    /// a proposal, a read, a message or the loss of a store wakes the region. An idle cluster
    /// then costs next to nothing however many regions it holds.
    pub hibernate_regions: bool,
    /// A merge source whose CommitMerge could not be proposed for this many ticks (a peer
    /// stays behind) fences its target, so it can roll back.
    pub merge_fence_after_ticks: u64,
}

impl StoreConfig {
    /// Production defaults.
    pub fn production(store_id: StoreId) -> StoreConfig {
        StoreConfig {
            store_id,
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            pd_heartbeat_ticks: 20,
            raft_log_gc_threshold: 10_000,
            raft_log_keep_entries: 1_000,
            stale_peer_check_ticks: 600,
            removed_peer_check_ticks: 10,
            split_check_ticks: 100,
            region_split_size_bytes: 256 * 1024 * 1024,
            region_split_keys: 2_560_000,
            round_msgs_max: 4096,
            inbox_capacity: 65_536,
            hibernate_regions: true,
            merge_fence_after_ticks: 600,
        }
    }

    /// Small limits for the simulator: frequent truncation and snapshots.
    pub fn test_min(store_id: StoreId) -> StoreConfig {
        StoreConfig {
            raft_log_gc_threshold: 64,
            raft_log_keep_entries: 8,
            stale_peer_check_ticks: 50,
            split_check_ticks: 10,
            region_split_size_bytes: 16 * 1024,
            region_split_keys: 100,
            round_msgs_max: 64,
            inbox_capacity: 4096,
            merge_fence_after_ticks: 100,
            ..StoreConfig::production(store_id)
        }
    }
}
