//! What a nemesis needs from a cluster: the [`Target`] trait (the simulator's `Cluster`
//! implements it) and the [`Action`]s a fault is made of.

use rand::RngCore;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future that need not be `Send` (a madsim run is single-threaded).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Optional abilities of a target; a family that needs one the target lacks is skipped and
/// reported as unsupported.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Find the store that leads the region of a key ([`Target::region_leader`]).
    RegionLeader,
    /// Split a region at a key ([`Target::split_regions`]).
    Split,
    /// Hand a region's leadership to another replica ([`Target::transfer_leaders`]).
    TransferLeader,
    /// Add, remove and move replicas ([`Target::change_memberships`]).
    Membership,
    /// Make a node's next disk sync fail ([`Target::fail_next_sync`]).
    FailSync,
    /// Make a node's disk syncs slow ([`Target::set_slow_sync`]).
    SlowSync,
    /// Flip a bit in a value stored on a node's disk ([`Target::corrupt_value`]).
    Corrupt,
    /// Change the network's per-message latency ([`Target::set_latency`]).
    Latency,
    /// Make a node's clock run slow ([`Target::set_clock_rate`]).
    ClockRate,
}

/// A cluster a nemesis can hurt. Node names are the target's own; storage nodes hold the
/// replicas the fault budget protects, PD and client nodes do not count against it.
///
/// Every method must be deterministic given the calls made (the simulator's is).
pub trait Target {
    /// Storage nodes (each holds a replica of every region).
    fn stores(&self) -> Vec<String>;
    /// Replicas per region (the fault budget is a minority of these); all stores by default.
    fn replicas(&self) -> usize {
        self.stores().len()
    }
    /// The placement driver's nodes: its members when replicated, none if the cluster has no PD.
    fn pd(&self) -> Vec<String>;
    /// Client nodes (may be put on either side of a partition).
    fn clients(&self) -> Vec<String>;
    /// Whether the target can do `cap`.
    fn supports(&self, cap: Capability) -> bool;
    /// Kills a node; its disk loses unsynced writes (a torn tail drawn from `rng`).
    fn kill(&mut self, node: &str, rng: &mut dyn RngCore);
    /// Restarts a killed node from its disk.
    fn restart(&mut self, node: &str);
    /// Freezes a node's tasks.
    fn pause(&mut self, node: &str);
    /// Unfreezes a node.
    fn resume(&mut self, node: &str);
    /// Stops traffic from `from` to `to` (it stalls; TCP delivers it after unclogging).
    fn clog_link(&mut self, from: &str, to: &str);
    /// Lets traffic from `from` to `to` flow again.
    fn unclog_link(&mut self, from: &str, to: &str);
    /// Sets the network-wide packet loss rate (0.0 – 1.0).
    fn set_packet_loss(&mut self, rate: f64);
    /// Sets the network-wide per-message latency (`None`: the default).
    fn set_latency(&mut self, latency: Option<Range<Duration>>) {
        let _ = latency;
    }
    /// Sets a node's wall-clock offset from true (simulated) time.
    fn set_clock_offset(&mut self, node: &str, offset_ms: i64);
    /// Makes a node's monotonic clock — and everything it paces, raft's ticks among them —
    /// run at `permille` thousandths of true time (1000: true time again).
    fn set_clock_rate(&mut self, node: &str, permille: u64) {
        let _ = (node, permille);
    }
    /// Makes the node's next disk sync fail: the node must stop and be restarted.
    fn fail_next_sync(&mut self, node: &str) {
        let _ = node;
    }
    /// Makes every sync of the node's disk take `stall` (`None`: fast again).
    fn set_slow_sync(&mut self, node: &str, stall: Option<Duration>) {
        let _ = (node, stall);
    }
    /// Flips a bit in a value on the node's disk; returns what was hit.
    fn corrupt_value(&mut self, node: &str, rng: &mut dyn RngCore) -> Option<String> {
        let _ = (node, rng);
        None
    }
    /// The operator's disk check of a stopped node: when its disk holds a record that fails
    /// its checksum, the disk is replaced by a blank one (the node then joins as a new store
    /// and its replicas are rebuilt from their peers). Returns whether it was replaced.
    fn replace_disk_if_corrupt(&mut self, node: &str) -> bool {
        let _ = node;
        false
    }
    /// Whether every region has its full set of voters and nothing else (a disk may then be
    /// lost without losing a majority of any region).
    fn fully_replicated(&mut self) -> LocalFuture<'_, bool> {
        Box::pin(async { true })
    }
    /// Keys the workload uses (targets for leader lookups and split points).
    fn keys(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
    /// The storage node leading the region of `key`, if one is known.
    fn region_leader<'a>(&'a mut self, key: &'a [u8]) -> LocalFuture<'a, Option<String>> {
        let _ = key;
        Box::pin(async { None })
    }
    /// Splits the region holding each key at that key, several at once if the target can
    /// (a storm's splits are independent); one result per key, in the order of `keys`.
    fn split_regions<'a>(&'a mut self, keys: Vec<Vec<u8>>) -> LocalFuture<'a, Vec<Result<(), String>>> {
        let n = keys.len();
        Box::pin(async move { vec![Err("split is not supported".to_string()); n] })
    }
    /// Moves the leadership of each `(key, seed)`'s region to another voter (`seed` picks
    /// which), all at once if the target can; one result per pair, in order. Each must be
    /// bounded by a short deadline: a burst held up by a dead or cut-off PD would hold the
    /// nemesis, and with it the end of every fault it started.
    fn transfer_leaders<'a>(&'a mut self, ops: Vec<(Vec<u8>, u64)>) -> LocalFuture<'a, Vec<Result<(), String>>> {
        let n = ops.len();
        Box::pin(async move { vec![Err("leader transfer is not supported".to_string()); n] })
    }
    /// Removes, adds or moves a replica of each `(key, seed)`'s region (`seed` picks what and
    /// where), all at once if the target can, bounded as [`Target::transfer_leaders`].
    fn change_memberships<'a>(&'a mut self, ops: Vec<(Vec<u8>, u64)>) -> LocalFuture<'a, Vec<Result<(), String>>> {
        let n = ops.len();
        Box::pin(async move { vec![Err("membership change is not supported".to_string()); n] })
    }
}

/// One step of a fault, applied to a [`Target`] by the scheduler.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Kill a node; the seed draws its torn tail.
    Kill(String, u64),
    /// Restart a killed node.
    Restart(String),
    /// Pause a node.
    Pause(String),
    /// Resume a paused node.
    Resume(String),
    /// Clog these directed links (reference-counted: overlapping faults compose).
    Cut(Vec<(String, String)>),
    /// Undo a [`Action::Cut`].
    Uncut(Vec<(String, String)>),
    /// Network-wide packet loss.
    Loss(f64),
    /// Network-wide latency (`None`: default).
    Latency(Option<Range<Duration>>),
    /// A node's clock offset, milliseconds.
    Clock(String, i64),
    /// A node's clock rate, thousandths of true time.
    ClockRate(String, u64),
    /// The node's next sync fails.
    FailSync(String),
    /// Every sync of the node's disk takes this long (`None`: fast again).
    SlowSync(String, Option<Duration>),
    /// Check the (stopped) node's disk and replace it if it holds a corrupt record.
    ReplaceCorruptDisk(String),
    /// Corrupt a stored value on the node; the seed picks it.
    Corrupt(String, u64),
    /// Split the region holding the key at the key.
    Split(Vec<u8>),
    /// Transfer the leadership of the key's region; the seed picks the new leader.
    TransferLeader(Vec<u8>, u64),
    /// Remove, add or move a replica of the key's region; the seed picks which.
    ChangeMembership(Vec<u8>, u64),
}
