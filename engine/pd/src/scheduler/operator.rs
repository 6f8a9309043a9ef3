//! An in-flight operator: a list of steps, each observed done (or impossible) from the
//! region's state in its leader's heartbeats.
//!
//! A step's done-condition is read off the region, never assumed from having been sent:
//! - `AddLearner(p)`: done when `p.id` is among the region's peers (any role).
//! - `Promote(p)`: done when `p` is a voter; sent only once `p` is a learner that the
//!   leader reports neither pending (catching up) nor unreachable.
//! - `Remove(p)`: done when `p.id` is gone. While `p` leads, the step sends a leader
//!   transfer to another healthy voter instead. Never the last voter; a healthy voter only
//!   if the region keeps `max_replicas` voters (manual operators may go below).
//! - `TransferLeader { to }`: done when the region's leader is on `to`'s store.
//! - `Merge { target }`: done when the source's epoch moved on (its PrepareMerge applied;
//!   the raftstore drives the rest, and the merged target's heartbeat removes the source).
//!   Sent with the target as PD knows it now; cancelled if the target changed shape.
//!
//! An undone step is sent again on every leader heartbeat until it is observed done (a
//! lost answer costs one heartbeat), so the raftstore must treat a repeated step as a
//! no-op while the change it asked for is in progress.

use super::{Cluster, OperatorKind};
use crate::region_tree::RegionEntry;
use keel_types::proto::pd::Operator;
use keel_types::{Peer, PeerRole, Region, RegionEpoch, StoreId};

/// One step of an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    AddLearner(Peer),
    Promote(Peer),
    Remove(Peer),
    TransferLeader { from: StoreId, to: Peer },
    Merge { target: Region, source_epoch: RegionEpoch },
}

/// What a heartbeat makes of an operator.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Advance {
    /// Answer this step.
    Emit(Operator),
    /// The current step cannot be sent yet (e.g. the learner is still catching up).
    Wait,
    /// Every step is done.
    Finished,
    /// A step became impossible; drop the operator.
    Cancel(&'static str),
}

enum StepState {
    Done,
    Emit(Operator),
    Wait,
    Cancel(&'static str),
}

#[derive(Debug)]
pub(crate) struct InFlight {
    pub kind: OperatorKind,
    pub steps: Vec<Step>,
    /// Index of the first step not yet observed done.
    pub next: usize,
    pub deadline_ms: u64,
}

impl InFlight {
    /// Skips every step the region shows done and reports what the first undone one needs.
    pub fn advance(&mut self, cluster: &Cluster<'_>, entry: &RegionEntry) -> Advance {
        while let Some(step) = self.steps.get(self.next) {
            match step_state(self.kind, step, cluster, entry) {
                StepState::Done => self.next += 1,
                StepState::Emit(op) => return Advance::Emit(op),
                StepState::Wait => return Advance::Wait,
                StepState::Cancel(why) => return Advance::Cancel(why),
            }
        }
        Advance::Finished
    }
}

fn step_state(kind: OperatorKind, step: &Step, cluster: &Cluster<'_>, entry: &RegionEntry) -> StepState {
    let region = &entry.region;
    match *step {
        Step::AddLearner(p) => {
            if region.peer(p.id).is_some() {
                StepState::Done
            } else if region.peer_on_store(p.store_id).is_some() {
                StepState::Cancel("another peer of the region appeared on the target store")
            } else if !cluster.store_accepts(p.store_id) {
                StepState::Cancel("target store no longer accepts replicas")
            } else {
                StepState::Emit(Operator::AddLearner(Peer { role: PeerRole::Learner, ..p }))
            }
        }
        Step::Promote(p) => match region.peer(p.id) {
            None => StepState::Cancel("learner to promote is gone"),
            Some(now) if now.role == PeerRole::Voter => StepState::Done,
            Some(now) => {
                if cluster.peer_down(entry, now) || cluster.store_offline(now.store_id) {
                    StepState::Cancel("learner to promote is down or offline")
                } else if Cluster::peer_pending(entry, now) || Cluster::peer_unreachable(entry, now) {
                    StepState::Wait
                } else {
                    StepState::Emit(Operator::PromoteLearner(Peer { role: PeerRole::Voter, ..*now }))
                }
            }
        },
        Step::Remove(p) => {
            let Some(now) = region.peer(p.id) else { return StepState::Done };
            let voters: Vec<&Peer> = region.peers.iter().filter(|q| q.role == PeerRole::Voter).collect();
            if now.role == PeerRole::Voter && voters.len() <= 1 {
                return StepState::Cancel("the peer to remove is the last voter");
            }
            if now.role == PeerRole::Voter && !cluster.peer_down(entry, now) && !cluster.store_offline(now.store_id) {
                // Removing a healthy voter must not leave the region short of healthy voters
                // (unless a person asked for exactly that; the replica checker re-adds one).
                if kind != OperatorKind::Manual && voters.len() <= cluster.config.max_replicas {
                    return StepState::Cancel("removing a healthy voter would leave too few voters");
                }
                if voters.iter().any(|q| q.id != p.id && cluster.peer_down(entry, q)) {
                    return StepState::Cancel("another voter is down; repair that first");
                }
            }
            if entry.leader.map(|l| l.id) == Some(p.id) {
                // A leader does not remove itself: hand leadership to the healthy voter on
                // the store with the fewest leaders, then remove.
                let target = voters
                    .iter()
                    .filter(|q| q.id != p.id)
                    .filter(|q| {
                        !cluster.peer_down(entry, q)
                            && !Cluster::peer_pending(entry, q)
                            && !Cluster::peer_unreachable(entry, q)
                            && cluster.store_accepts(q.store_id)
                    })
                    .min_by_key(|q| (cluster.regions.store_leader_count(q.store_id), q.store_id));
                return match target {
                    Some(t) => StepState::Emit(Operator::TransferLeader(**t)),
                    None => StepState::Wait,
                };
            }
            StepState::Emit(Operator::RemovePeer(*now))
        }
        Step::Merge { ref target, source_epoch } => {
            if region.epoch != source_epoch {
                return StepState::Done;
            }
            match cluster.regions.get(target.id) {
                Some(now) if now.region == *target => StepState::Emit(Operator::Merge { target: target.clone() }),
                _ => StepState::Cancel("the merge target changed"),
            }
        }
        Step::TransferLeader { to, .. } => {
            if entry.leader.is_some_and(|l| l.store_id == to.store_id) {
                return StepState::Done;
            }
            match region.peer(to.id) {
                Some(now) if now.role == PeerRole::Voter => {
                    if cluster.peer_down(entry, now)
                        || Cluster::peer_pending(entry, now)
                        || Cluster::peer_unreachable(entry, now)
                        || !cluster.store_accepts(now.store_id)
                    {
                        StepState::Cancel("transfer target is unhealthy")
                    } else {
                        StepState::Emit(Operator::TransferLeader(*now))
                    }
                }
                _ => StepState::Cancel("transfer target is not a voter"),
            }
        }
    }
}
