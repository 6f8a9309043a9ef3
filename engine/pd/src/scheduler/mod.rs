//! Scheduling: the replica checker and the balance schedulers propose multi-step operators
//! for a region; the operator bookkeeping here advances them as the region's leader
//! reports its state, answering at most one step per heartbeat.
//!
//! Everything is driven by region heartbeats (no timers of its own): a heartbeat first
//! expires operators past their deadline, then advances the region's in-flight operator
//! (if any), and only if the region has none asks the checkers — replica checker first,
//! then balance-leader, then balance-region — for a new one. Each checker is bounded by
//! a limit on its operators in flight and by a per-store limit, so none can storm.
//!
//! Deterministic: `BTreeMap`s only, no randomness, time from the caller (PD's `Clock`).
//! Operators live in memory only; after a PD restart the replica checker cleans up what
//! a lost operator left behind (an orphan learner is promoted or removed).

mod balance_leader;
mod balance_region;
mod manual;
mod merge_checker;
mod operator;
mod placement;
mod replica_checker;

use crate::region_tree::{RegionEntry, RegionTree};
use crate::{PdConfig, StoreStatus};
use keel_types::proto::pd::{Operator, Store, StoreState};
use keel_types::{trace_event, Peer, PeerId, PeerRole, Region, RegionId, StoreId};
pub(crate) use manual::plan as manual_plan;
use operator::{Advance, InFlight, Step};
use std::collections::BTreeMap;

/// Why an operator was created: which checker or scheduler, and what for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OperatorKind {
    /// The region has fewer voters than `max_replicas`: add one (or promote an orphan learner).
    AddReplica,
    /// A voter sits on a down store: add a replacement, promote it, remove the down peer.
    ReplaceDownPeer,
    /// A voter sits on an Offline store: move it away the same way.
    ReplaceOfflinePeer,
    /// More voters than `max_replicas`: remove the one on the worst store.
    RemoveExtraReplica,
    /// A learner no operator is waiting for (left by a dropped operator or a PD restart)
    /// that cannot be promoted: remove it.
    RemoveOrphanLearner,
    /// Move a leader from a store with many leaders to one with few.
    BalanceLeader,
    /// Move a replica from a store with many regions to one with few.
    BalanceRegion,
    /// Asked for by a person or tool ([`keel_types::proto::pd::ManualOperator`]).
    Manual,
    /// Merge a small region into a small adjacent one on the same stores.
    Merge,
}

impl OperatorKind {
    /// Every kind, in order.
    pub const ALL: [OperatorKind; 9] = [
        OperatorKind::AddReplica,
        OperatorKind::ReplaceDownPeer,
        OperatorKind::ReplaceOfflinePeer,
        OperatorKind::RemoveExtraReplica,
        OperatorKind::RemoveOrphanLearner,
        OperatorKind::BalanceLeader,
        OperatorKind::BalanceRegion,
        OperatorKind::Manual,
        OperatorKind::Merge,
    ];

    /// Which limit group the kind counts against.
    fn group(self) -> Group {
        match self {
            OperatorKind::BalanceLeader => Group::Leader,
            OperatorKind::BalanceRegion => Group::Region,
            OperatorKind::Merge => Group::Merge,
            _ => Group::Replica,
        }
    }
}

/// What happened to operators of one kind since PD started.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorCounters {
    /// Operators created.
    pub created: u64,
    /// Operators whose every step was observed done.
    pub finished: u64,
    /// Operators dropped at their deadline.
    pub timed_out: u64,
    /// Operators dropped because the region changed under them so a step became impossible.
    pub cancelled: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Replica,
    Leader,
    Region,
    Merge,
}

/// What a checker wants done to a region; the scheduler turns it into steps (in this
/// order: add learner and promote it, promote an existing learner, remove, transfer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub kind: OperatorKind,
    /// Add a learner on this store (PD allocates its peer id), then promote it.
    pub add_on: Option<StoreId>,
    /// Promote this existing learner.
    pub promote: Option<Peer>,
    /// Remove this peer (after the additions).
    pub remove: Option<Peer>,
    /// Transfer leadership from the first store to this peer.
    pub transfer: Option<(StoreId, Peer)>,
    /// Merge the region into this adjacent one (nothing else in the plan).
    pub merge_into: Option<Region>,
}

impl Plan {
    fn new(kind: OperatorKind) -> Plan {
        Plan { kind, add_on: None, promote: None, remove: None, transfer: None, merge_into: None }
    }
}

/// A read-only view of the cluster at one instant, as the checkers see it.
pub(crate) struct Cluster<'a> {
    pub config: &'a PdConfig,
    /// Now, by PD's monotonic clock (`Clock::elapsed_ms`), like every time below.
    pub now_ms: u64,
    /// When this PD opened: a store not heard from since counts as silent from then.
    pub started_ms: u64,
    pub stores: &'a BTreeMap<StoreId, Store>,
    pub status: &'a BTreeMap<StoreId, StoreStatus>,
    pub regions: &'a RegionTree,
}

impl Cluster<'_> {
    fn silent_ms(&self, store: StoreId) -> u64 {
        let last = self.status.get(&store).map_or(self.started_ms, |s| s.last_heartbeat_ms);
        self.now_ms.saturating_sub(last)
    }

    /// Unknown, tombstone, or silent for longer than `max_store_down_time`.
    pub fn store_down(&self, store: StoreId) -> bool {
        match self.stores.get(&store) {
            None => true,
            Some(s) if s.state == StoreState::Tombstone => true,
            Some(_) => u128::from(self.silent_ms(store)) > self.config.schedule.max_store_down_time.as_millis(),
        }
    }

    /// Whether the store is Offline (being drained).
    pub fn store_offline(&self, store: StoreId) -> bool {
        self.stores.get(&store).is_some_and(|s| s.state == StoreState::Offline)
    }

    /// Whether the store may receive a new replica or leader: Up, and heard from since
    /// PD started and within `store_disconnect_time`.
    pub fn store_accepts(&self, store: StoreId) -> bool {
        self.stores.get(&store).is_some_and(|s| s.state == StoreState::Up)
            && self.status.contains_key(&store)
            && u128::from(self.silent_ms(store)) <= self.config.schedule.store_disconnect_time.as_millis()
    }

    /// Whether the peer should be replaced: its store is down, or the leader has not heard
    /// from it for longer than `max_store_down_time`.
    pub fn peer_down(&self, entry: &RegionEntry, peer: &Peer) -> bool {
        let down_ms = self.config.schedule.max_store_down_time.as_millis();
        self.store_down(peer.store_id)
            || entry.stats.down_peers.iter().any(|(p, secs)| p.id == peer.id && u128::from(*secs) * 1000 > down_ms)
    }

    /// Whether the leader reported the peer as catching up.
    pub fn peer_pending(entry: &RegionEntry, peer: &Peer) -> bool {
        entry.stats.pending_peers.iter().any(|p| p.id == peer.id)
    }

    /// Whether the leader reported the peer as unreachable at all (for any time).
    pub fn peer_unreachable(entry: &RegionEntry, peer: &Peer) -> bool {
        entry.stats.down_peers.iter().any(|(p, _)| p.id == peer.id)
    }

    /// The store's registration (a default, label-less one for an unknown id).
    pub fn store(&self, store: StoreId) -> Store {
        self.stores.get(&store).cloned().unwrap_or(Store { id: store, ..Store::default() })
    }
}

/// Store loads as they will be once every in-flight operator finishes ("influence"), so
/// balance does not overshoot while its own moves are running.
pub(crate) struct Loads {
    region_delta: BTreeMap<StoreId, i64>,
    leader_delta: BTreeMap<StoreId, i64>,
    /// Learners not yet promoted plus pending removals (from stores not down) per store.
    busy: BTreeMap<StoreId, usize>,
    in_flight: BTreeMap<Group, usize>,
}

impl Loads {
    pub fn regions(&self, cluster: &Cluster<'_>, store: StoreId) -> i64 {
        cluster.regions.store_region_count(store) as i64 + self.region_delta.get(&store).copied().unwrap_or(0)
    }

    pub fn leaders(&self, cluster: &Cluster<'_>, store: StoreId) -> i64 {
        cluster.regions.store_leader_count(store) as i64 + self.leader_delta.get(&store).copied().unwrap_or(0)
    }

    /// Whether one more peer addition or removal may involve `store`.
    pub fn store_has_room(&self, cluster: &Cluster<'_>, store: StoreId) -> bool {
        self.busy.get(&store).copied().unwrap_or(0) < cluster.config.schedule.store_limit
    }

    fn group_has_room(&self, cluster: &Cluster<'_>, group: Group) -> bool {
        let s = &cluster.config.schedule;
        let limit = match group {
            Group::Replica => s.replica_schedule_limit,
            Group::Leader => s.leader_schedule_limit,
            Group::Region => s.region_schedule_limit,
            Group::Merge => s.merge_schedule_limit,
        };
        self.in_flight.get(&group).copied().unwrap_or(0) < limit
    }
}

/// Every in-flight operator and the counters, owned by the [`crate::Pd`].
#[derive(Debug, Default)]
pub(crate) struct Scheduler {
    ops: BTreeMap<RegionId, InFlight>,
    counters: BTreeMap<OperatorKind, OperatorCounters>,
    steps_sent: u64,
}

impl Scheduler {
    pub fn in_flight(&self) -> usize {
        self.ops.len()
    }

    pub fn kind_of(&self, region: RegionId) -> Option<OperatorKind> {
        self.ops.get(&region).map(|op| op.kind)
    }

    pub fn counters(&self, kind: OperatorKind) -> OperatorCounters {
        self.counters.get(&kind).copied().unwrap_or_default()
    }

    pub fn steps_sent(&self) -> u64 {
        self.steps_sent
    }

    fn count(&mut self, kind: OperatorKind) -> &mut OperatorCounters {
        self.counters.entry(kind).or_default()
    }

    /// Drops every operator past its deadline.
    pub fn expire(&mut self, now_ms: u64) {
        let expired: Vec<RegionId> =
            self.ops.iter().filter(|(_, op)| now_ms >= op.deadline_ms).map(|(&id, _)| id).collect();
        for id in expired {
            let op = self.ops.remove(&id).expect("expired op exists");
            tracing::info!(region = id, kind = ?op.kind, "pd: operator timed out");
            trace_event!("pd.op.timeout", "{id} {:?}", op.kind);
            self.count(op.kind).timed_out += 1;
        }
    }

    /// Advances the region's in-flight operator against the region's current state.
    /// `Some(step)`: answer it. `None` with an operator still in flight: wait. `None`
    /// without one (never had one, or it just finished or was cancelled): the caller may
    /// ask the checkers.
    pub fn advance(&mut self, cluster: &Cluster<'_>, entry: &RegionEntry) -> Option<Operator> {
        let id = entry.region.id;
        let op = self.ops.get_mut(&id)?;
        match op.advance(cluster, entry) {
            Advance::Emit(step) => {
                trace_event!("pd.op.step", "{id} {:?} {step:?}", op.kind);
                self.steps_sent += 1;
                Some(step)
            }
            Advance::Wait => None,
            Advance::Finished => {
                let op = self.ops.remove(&id).expect("op exists");
                trace_event!("pd.op.finish", "{id} {:?}", op.kind);
                self.count(op.kind).finished += 1;
                None
            }
            Advance::Cancel(why) => {
                let op = self.ops.remove(&id).expect("op exists");
                tracing::info!(region = id, kind = ?op.kind, why, "pd: operator cancelled");
                trace_event!("pd.op.cancel", "{id} {:?} {why}", op.kind);
                self.count(op.kind).cancelled += 1;
                None
            }
        }
    }

    /// Drops the operator of a region that no longer exists (merged or overlapped by a
    /// newer region), as cancelled.
    pub fn forget(&mut self, region: RegionId) {
        if let Some(op) = self.ops.remove(&region) {
            trace_event!("pd.op.cancel", "{region} {:?} region gone", op.kind);
            self.count(op.kind).cancelled += 1;
        }
    }

    /// Whether the region has an operator in flight.
    pub fn busy(&self, region: RegionId) -> bool {
        self.ops.contains_key(&region)
    }

    /// Whether the region has an operator in flight or is the target of a merge in flight.
    fn busy_or_merge_target(&self, region: RegionId) -> bool {
        self.busy(region)
            || self
                .ops
                .values()
                .any(|op| op.steps.iter().any(|s| matches!(s, Step::Merge { target, .. } if target.id == region)))
    }

    /// What the checkers want done to a region without an operator, if anything.
    pub fn plan(&self, cluster: &Cluster<'_>, entry: &RegionEntry) -> Option<Plan> {
        debug_assert!(!self.busy(entry.region.id));
        let loads = self.loads(cluster);
        let schedule = &cluster.config.schedule;
        let mut plan = None;
        if schedule.replica_checker && loads.group_has_room(cluster, Group::Replica) {
            plan = replica_checker::check(cluster, &loads, entry);
        }
        if plan.is_none() && schedule.balance_leader && loads.group_has_room(cluster, Group::Leader) {
            plan = balance_leader::check(cluster, &loads, entry);
        }
        if plan.is_none() && schedule.balance_region && loads.group_has_room(cluster, Group::Region) {
            plan = balance_region::check(cluster, &loads, entry);
        }
        if plan.is_none()
            && schedule.merge_checker
            && loads.group_has_room(cluster, Group::Merge)
            && !self.busy_or_merge_target(entry.region.id)
        {
            plan = merge_checker::check(cluster, entry, |id| self.busy_or_merge_target(id));
        }
        plan
    }

    /// Starts an operator from `plan`; `new_peer` is the peer id PD allocated when the plan
    /// adds a learner.
    pub fn start(&mut self, cluster: &Cluster<'_>, entry: &RegionEntry, plan: Plan, new_peer: Option<PeerId>) {
        let id = entry.region.id;
        debug_assert!(!self.busy(id));
        debug_assert_eq!(plan.add_on.is_some(), new_peer.is_some());
        let mut steps = Vec::new();
        if let (Some(store_id), Some(peer_id)) = (plan.add_on, new_peer) {
            let peer = Peer { id: peer_id, store_id, role: PeerRole::Learner };
            steps.push(Step::AddLearner(peer));
            steps.push(Step::Promote(peer));
        }
        if let Some(learner) = plan.promote {
            steps.push(Step::Promote(learner));
        }
        if let Some(peer) = plan.remove {
            steps.push(Step::Remove(peer));
        }
        if let Some((from, to)) = plan.transfer {
            steps.push(Step::TransferLeader { from, to });
        }
        if let Some(target) = plan.merge_into.clone() {
            steps.push(Step::Merge { target, source_epoch: entry.region.epoch });
        }
        assert!(!steps.is_empty(), "empty plan {plan:?}");
        let s = &cluster.config.schedule;
        let timeout = if plan.kind == OperatorKind::BalanceLeader {
            s.leader_operator_timeout
        } else {
            s.region_operator_timeout
        };
        let deadline_ms = cluster.now_ms.saturating_add(timeout.as_millis() as u64);
        tracing::debug!(region = id, kind = ?plan.kind, ?steps, "pd: operator created");
        trace_event!("pd.op.create", "{id} {:?} {steps:?}", plan.kind);
        self.count(plan.kind).created += 1;
        self.ops.insert(id, InFlight { kind: plan.kind, steps, next: 0, deadline_ms });
    }

    /// Store loads including the influence of every in-flight operator's remaining steps.
    fn loads(&self, cluster: &Cluster<'_>) -> Loads {
        let mut loads = Loads {
            region_delta: BTreeMap::new(),
            leader_delta: BTreeMap::new(),
            busy: BTreeMap::new(),
            in_flight: BTreeMap::new(),
        };
        for op in self.ops.values() {
            *loads.in_flight.entry(op.kind.group()).or_default() += 1;
            for step in &op.steps[op.next..] {
                match step {
                    Step::AddLearner(p) => {
                        *loads.region_delta.entry(p.store_id).or_default() += 1;
                    }
                    // A learner being added or caught up keeps its store busy until promoted.
                    Step::Promote(p) => *loads.busy.entry(p.store_id).or_default() += 1,
                    Step::Remove(p) => {
                        *loads.region_delta.entry(p.store_id).or_default() -= 1;
                        if !cluster.store_down(p.store_id) {
                            *loads.busy.entry(p.store_id).or_default() += 1;
                        }
                    }
                    Step::TransferLeader { from, to } => {
                        *loads.leader_delta.entry(*from).or_default() -= 1;
                        *loads.leader_delta.entry(to.store_id).or_default() += 1;
                    }
                    Step::Merge { .. } => {}
                }
            }
        }
        loads
    }
}

/// The region's voters and learners, in peer order.
pub(crate) fn split_roles(entry: &RegionEntry) -> (Vec<Peer>, Vec<Peer>) {
    entry.region.peers.iter().partition(|p| p.role == PeerRole::Voter)
}
