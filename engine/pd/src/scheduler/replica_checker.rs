//! The replica checker: keeps every region at `max_replicas` healthy, well-placed voters.
//!
//! In priority order, for a region without an operator:
//! 1. an orphan learner (no operator waiting for it) is promoted if it is healthy and the
//!    region lacks healthy voters (removing a down or offline voter after, if that leaves
//!    too many), otherwise removed;
//! 2. more voters than `max_replicas`: remove the one on the worst store (down, then
//!    offline, then least isolated, then most loaded);
//! 3. a voter on a down store (or unreachable for longer than `max_store_down_time`):
//!    add a learner on the best store, promote it, remove the down voter;
//! 4. a voter on an Offline store: the same;
//! 5. fewer voters than `max_replicas`: add a learner on the best store and promote it.

use super::placement::{best_target, isolation, peer_stores};
use super::{split_roles, Cluster, Loads, OperatorKind, Plan};
use crate::region_tree::RegionEntry;
use keel_types::Peer;

pub(crate) fn check(cluster: &Cluster<'_>, loads: &Loads, entry: &RegionEntry) -> Option<Plan> {
    let max = cluster.config.max_replicas;
    let (voters, learners) = split_roles(entry);
    let down = |p: &Peer| cluster.peer_down(entry, p);
    let offline = |p: &Peer| cluster.store_offline(p.store_id);
    let healthy = |p: &Peer| !down(p) && !offline(p);

    if let Some(&learner) = learners.first() {
        let healthy_voters = voters.iter().filter(|p| healthy(p)).count();
        if healthy(&learner) && healthy_voters < max {
            let mut plan = Plan::new(OperatorKind::AddReplica);
            plan.promote = Some(learner);
            if voters.len() >= max {
                let worst = worst_voter(cluster, entry, &voters);
                plan.kind = if down(&worst) { OperatorKind::ReplaceDownPeer } else { OperatorKind::ReplaceOfflinePeer };
                plan.remove = Some(worst);
            }
            return Some(plan);
        }
        let mut plan = Plan::new(OperatorKind::RemoveOrphanLearner);
        plan.remove = Some(learner);
        return Some(plan);
    }

    if voters.len() > max {
        let mut plan = Plan::new(OperatorKind::RemoveExtraReplica);
        plan.remove = Some(worst_voter(cluster, entry, &voters));
        return Some(plan);
    }

    let replace = |victim: Peer, kind: OperatorKind| -> Option<Plan> {
        // Place the replacement against the peers that stay and are healthy.
        let gone: Vec<_> =
            entry.region.peers.iter().filter(|p| p.id == victim.id || down(p)).map(|p| p.store_id).collect();
        let keep = peer_stores(cluster, &entry.region, &gone);
        let target = best_target(cluster, loads, &entry.region, &keep, None)?;
        let mut plan = Plan::new(kind);
        plan.add_on = Some(target);
        plan.remove = Some(victim);
        Some(plan)
    };
    if let Some(&victim) = voters.iter().find(|p| down(p)) {
        return replace(victim, OperatorKind::ReplaceDownPeer);
    }
    if let Some(&victim) = voters.iter().find(|p| offline(p)) {
        return replace(victim, OperatorKind::ReplaceOfflinePeer);
    }
    if voters.len() < max {
        let keep = peer_stores(cluster, &entry.region, &[]);
        let target = best_target(cluster, loads, &entry.region, &keep, None)?;
        let mut plan = Plan::new(OperatorKind::AddReplica);
        plan.add_on = Some(target);
        return Some(plan);
    }
    None
}

/// The voter whose removal hurts least: down first, then offline, then the one sharing
/// the most location levels with the others, then the one on the most loaded store, then
/// a follower over the leader, then the highest store id.
pub(crate) fn worst_voter(cluster: &Cluster<'_>, entry: &RegionEntry, voters: &[Peer]) -> Peer {
    let levels = &cluster.config.schedule.location_labels;
    let leader = entry.leader.map(|l| l.id);
    *voters
        .iter()
        .max_by_key(|p| {
            let others: Vec<_> = voters.iter().filter(|q| q.id != p.id).map(|q| cluster.store(q.store_id)).collect();
            (
                cluster.peer_down(entry, p),
                cluster.store_offline(p.store_id),
                isolation(&cluster.store(p.store_id), &others, levels),
                cluster.regions.store_region_count(p.store_id),
                leader != Some(p.id),
                p.store_id,
            )
        })
        .expect("region has voters")
}
