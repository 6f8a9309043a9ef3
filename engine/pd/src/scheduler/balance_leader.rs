//! Balance-leader: moves a leader from a store with many leaders to a voter's store with
//! few, when their leader counts (counting in-flight transfers) differ by more than the
//! balance tolerance. Every move shrinks the spread, and no move happens within the
//! tolerance, so it converges and stops.

use super::{split_roles, Cluster, Loads, OperatorKind, Plan};
use crate::region_tree::RegionEntry;

pub(crate) fn check(cluster: &Cluster<'_>, loads: &Loads, entry: &RegionEntry) -> Option<Plan> {
    let leader = entry.leader?;
    if !super::balance_region::region_is_settled(cluster, entry) {
        return None;
    }
    let (voters, _) = split_roles(entry);
    let target = voters
        .iter()
        .filter(|p| p.id != leader.id && cluster.store_accepts(p.store_id))
        .min_by_key(|p| (loads.leaders(cluster, p.store_id), p.store_id))?;
    let from = loads.leaders(cluster, leader.store_id);
    let to = loads.leaders(cluster, target.store_id);
    let tolerance = cluster.config.schedule.balance_tolerance(cluster.regions.len()) as i64;
    if from - to <= tolerance {
        return None;
    }
    let mut plan = Plan::new(OperatorKind::BalanceLeader);
    plan.transfer = Some((leader.store_id, *target));
    Some(plan)
}
