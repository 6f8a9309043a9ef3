//! PD configuration.

use std::time::Duration;

/// How a PD runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdConfig {
    /// The address clients and stores reach this PD at (`GetMembers` answers it).
    pub advertise_addr: String,
    /// Replicas per region; the cluster bootstraps once this many stores are up.
    pub max_replicas: usize,
    /// The cluster id to take at first start. `None` derives one from the clock and the
    /// advertised address (deterministic under the simulator). Ignored once the cluster
    /// has an id on disk.
    pub cluster_id: Option<u64>,
    /// The schedulers' knobs.
    pub schedule: ScheduleConfig,
    /// Every member of a replicated PD, by the address each advertises (this PD's own
    /// `advertise_addr` among them), in the same order on every member: the order gives the
    /// members' raft ids, so it must never change once the group has started. Empty (or just
    /// this PD) runs a lone PD that writes its own disk.
    pub members: Vec<String>,
}

impl Default for PdConfig {
    fn default() -> Self {
        PdConfig {
            advertise_addr: "127.0.0.1:2379".to_string(),
            max_replicas: 3,
            cluster_id: None,
            schedule: ScheduleConfig::default(),
            members: Vec::new(),
        }
    }
}

impl PdConfig {
    /// The default (production) configuration advertising `addr`.
    pub fn new(advertise_addr: impl Into<String>) -> Self {
        PdConfig { advertise_addr: advertise_addr.into(), ..PdConfig::default() }
    }

    /// The simulator's configuration advertising `addr`: production everything except the
    /// schedulers, which use [`ScheduleConfig::test_min`] (short down time, short
    /// timeouts, small limits) so repair and balancing happen within a short simulated run.
    pub fn test_min(advertise_addr: impl Into<String>) -> Self {
        PdConfig { schedule: ScheduleConfig::test_min(), ..PdConfig::new(advertise_addr) }
    }

    /// Whether this PD is one member of a replicated group.
    pub fn is_replicated(&self) -> bool {
        self.members.len() > 1
    }
}

/// Scheduling knobs: when a store counts as down, how long operators may take, and how
/// many may run at once. Production values follow TiKV's PD; [`ScheduleConfig::test_min`]
/// shrinks the times for the simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Run the replica checker (repair down/offline/missing replicas, remove extra ones).
    pub replica_checker: bool,
    /// Run the balance-leader scheduler.
    pub balance_leader: bool,
    /// Run the balance-region scheduler.
    pub balance_region: bool,
    /// Run the merge checker: merge a small region into a small adjacent one whose peers
    /// are on the same stores. On in [`ScheduleConfig::test_min`] (every checked simulator
    /// scenario runs with it); off by default until merges have run in the real-process
    /// tests (TiKV runs it by default).
    pub merge_checker: bool,
    /// A region merges only with at most this many bytes... (TiKV: `max-merge-region-size`,
    /// 20 MiB.) The region it merges into must be this small too.
    pub max_merge_region_size_bytes: u64,
    /// ...and at most this many keys. (TiKV: `max-merge-region-keys`, 200,000.)
    pub max_merge_region_keys: u64,
    /// Neither region of a merge may have changed shape (split, merged) for this long, so
    /// a split is not undone at once. (TiKV: `split-merge-interval`, 1 h.)
    pub split_merge_interval: Duration,
    /// Most merge operators in flight at once.
    pub merge_schedule_limit: usize,
    /// Store label keys, most significant first, that replica placement isolates across.
    pub location_labels: Vec<String>,
    /// A store that has not heartbeated for this long is down: its replicas are replaced.
    /// (TiKV: `max-store-down-time`, 30 min.)
    pub max_store_down_time: Duration,
    /// A store that has not heartbeated for this long is not given new replicas or
    /// leaders (it is not yet down). Must exceed two store heartbeat intervals.
    pub store_disconnect_time: Duration,
    /// How long a membership operator (add learner → promote → remove) may run before it
    /// is dropped (and retried later by whichever checker wants it).
    pub region_operator_timeout: Duration,
    /// How long a leader transfer operator may run before it is dropped.
    pub leader_operator_timeout: Duration,
    /// Most replica-checker operators in flight at once.
    pub replica_schedule_limit: usize,
    /// Most balance-region operators in flight at once.
    pub region_schedule_limit: usize,
    /// Most balance-leader operators in flight at once.
    pub leader_schedule_limit: usize,
    /// Most operator-owned learners not yet promoted plus pending removals (of a store
    /// that is not down) per store, across all operators: bounds the snapshots one store
    /// receives at once.
    pub store_limit: usize,
    /// Balance only moves between two stores whose counts differ by more than this...
    pub balance_tolerance_min: u64,
    /// ...and by more than this percentage of the cluster's region count.
    pub balance_tolerance_percent: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            replica_checker: true,
            balance_leader: true,
            balance_region: true,
            merge_checker: false,
            max_merge_region_size_bytes: 20 * 1024 * 1024,
            max_merge_region_keys: 200_000,
            split_merge_interval: Duration::from_secs(60 * 60),
            merge_schedule_limit: 8,
            location_labels: ["zone", "rack", "host"].map(String::from).to_vec(),
            max_store_down_time: Duration::from_secs(30 * 60),
            store_disconnect_time: Duration::from_secs(20),
            region_operator_timeout: Duration::from_secs(10 * 60),
            leader_operator_timeout: Duration::from_secs(10),
            replica_schedule_limit: 64,
            region_schedule_limit: 16,
            leader_schedule_limit: 4,
            store_limit: 8,
            balance_tolerance_min: 1,
            balance_tolerance_percent: 5,
        }
    }
}

impl ScheduleConfig {
    /// Knobs for the simulator: a store is down after 10 s of silence, operators time out
    /// within seconds, limits are small enough to be reached.
    pub fn test_min() -> Self {
        ScheduleConfig {
            max_store_down_time: Duration::from_secs(10),
            store_disconnect_time: Duration::from_secs(3),
            region_operator_timeout: Duration::from_secs(30),
            leader_operator_timeout: Duration::from_secs(5),
            replica_schedule_limit: 16,
            region_schedule_limit: 4,
            leader_schedule_limit: 4,
            store_limit: 2,
            merge_checker: true,
            max_merge_region_size_bytes: 4 * 1024,
            max_merge_region_keys: 20,
            split_merge_interval: Duration::from_secs(10),
            merge_schedule_limit: 2,
            ..ScheduleConfig::default()
        }
    }

    /// No scheduler runs: region heartbeats are only recorded.
    pub fn disabled() -> Self {
        ScheduleConfig {
            replica_checker: false,
            balance_leader: false,
            balance_region: false,
            merge_checker: false,
            ..Self::default()
        }
    }

    /// Balance tolerance for a cluster of `regions` regions: a move needs a difference
    /// strictly above this. Never below 1, so a move (which shifts the difference by 2)
    /// can never be undone by the opposite move.
    pub fn balance_tolerance(&self, regions: usize) -> u64 {
        self.balance_tolerance_min.max(regions as u64 * self.balance_tolerance_percent / 100).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_tolerance_is_at_least_one_and_grows_with_regions() {
        let s = ScheduleConfig::default();
        assert_eq!(s.balance_tolerance(0), 1);
        assert_eq!(s.balance_tolerance(30), 1);
        assert_eq!(s.balance_tolerance(100), 5);
        assert_eq!(s.balance_tolerance(1000), 50);
        let zero = ScheduleConfig { balance_tolerance_min: 0, balance_tolerance_percent: 0, ..s };
        assert_eq!(zero.balance_tolerance(1000), 1, "a move must never be undoable");
        let t = ScheduleConfig::test_min();
        assert!(t.store_disconnect_time < t.max_store_down_time);
        assert!(t.leader_operator_timeout < t.region_operator_timeout);
    }
}
