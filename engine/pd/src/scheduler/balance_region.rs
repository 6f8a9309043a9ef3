//! Balance-region: moves a replica from a store with many regions to one with few (add a
//! learner on the target, promote it, remove the source), when their region counts
//! (counting in-flight moves) differ by more than the balance tolerance, and only to a
//! store that keeps the region at least as well isolated across location labels.

use super::placement::{isolation, peer_stores};
use super::{split_roles, Cluster, Loads, OperatorKind, Plan};
use crate::region_tree::RegionEntry;
use keel_types::proto::pd::StoreState;

/// Whether the region is in a state balance may touch: exactly `max_replicas` voters, no
/// learners, no down, pending or unreachable peer, every peer on an Up store.
pub(crate) fn region_is_settled(cluster: &Cluster<'_>, entry: &RegionEntry) -> bool {
    let (voters, learners) = split_roles(entry);
    voters.len() == cluster.config.max_replicas
        && learners.is_empty()
        && entry.stats.pending_peers.is_empty()
        && entry.stats.down_peers.is_empty()
        && entry.region.peers.iter().all(|p| {
            !cluster.store_down(p.store_id)
                && cluster.stores.get(&p.store_id).is_some_and(|s| s.state == StoreState::Up)
        })
}

pub(crate) fn check(cluster: &Cluster<'_>, loads: &Loads, entry: &RegionEntry) -> Option<Plan> {
    if !region_is_settled(cluster, entry) {
        return None;
    }
    let levels = &cluster.config.schedule.location_labels;
    let tolerance = cluster.config.schedule.balance_tolerance(cluster.regions.len()) as i64;
    let leader = entry.leader.map(|l| l.id);
    // Sources: the region's peers, most loaded store first; a follower before the leader
    // (moving the leader's replica costs a leader transfer).
    let mut sources = entry.region.peers.clone();
    sources.sort_by_key(|p| (std::cmp::Reverse(loads.regions(cluster, p.store_id)), leader == Some(p.id), p.store_id));
    for source in sources {
        if !loads.store_has_room(cluster, source.store_id) {
            continue;
        }
        let from = loads.regions(cluster, source.store_id);
        let keep = peer_stores(cluster, &entry.region, &[source.store_id]);
        let limit = isolation(&cluster.store(source.store_id), &keep, levels);
        let target = cluster
            .stores
            .values()
            .filter(|s| entry.region.peer_on_store(s.id).is_none())
            .filter(|s| cluster.store_accepts(s.id) && loads.store_has_room(cluster, s.id))
            .map(|s| (loads.regions(cluster, s.id), isolation(s, &keep, levels), s.id))
            .filter(|(_, iso, _)| *iso <= limit)
            .min();
        if let Some((to, _, target)) = target {
            if from - to > tolerance {
                let mut plan = Plan::new(OperatorKind::BalanceRegion);
                plan.add_on = Some(target);
                plan.remove = Some(source);
                return Some(plan);
            }
        }
    }
    None
}
