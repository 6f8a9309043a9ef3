//! Merge checker: a small region merges into a small adjacent region whose peers are
//! voters on exactly the same stores (keel does not move peers to line regions up; the
//! balance schedulers' moves make such pairs common enough). Both must be settled, have
//! kept their shape for `split_merge_interval` (a fresh split is not undone), and have no
//! operator of their own. The next region (right neighbour) is preferred, as TiKV's PD does.

use super::balance_region::region_is_settled;
use super::{Cluster, OperatorKind, Plan};
use crate::region_tree::RegionEntry;
use keel_types::RegionId;

pub(crate) fn check(cluster: &Cluster<'_>, entry: &RegionEntry, busy: impl Fn(RegionId) -> bool) -> Option<Plan> {
    if !mergeable(cluster, entry) {
        return None;
    }
    let region = &entry.region;
    let next = (!region.end_key.is_empty())
        .then(|| cluster.regions.get_by_key(&region.end_key))
        .flatten()
        .filter(|n| n.region.start_key == region.end_key);
    let prev = (!region.start_key.is_empty())
        .then(|| cluster.regions.scan(b"", &region.start_key, usize::MAX).last())
        .flatten()
        .filter(|p| p.region.end_key == region.start_key);
    let target = [next, prev]
        .into_iter()
        .flatten()
        .find(|t| !busy(t.region.id) && mergeable(cluster, t) && same_stores(entry, t) && t.leader.is_some())?;
    let mut plan = Plan::new(OperatorKind::Merge);
    plan.merge_into = Some(target.region.clone());
    Some(plan)
}

/// Small, settled, with a known leader, and unchanged for `split_merge_interval`.
fn mergeable(cluster: &Cluster<'_>, entry: &RegionEntry) -> bool {
    let s = &cluster.config.schedule;
    entry.leader.is_some()
        && region_is_settled(cluster, entry)
        && entry.stats.approximate_keys <= s.max_merge_region_keys
        && entry.stats.approximate_size_bytes <= s.max_merge_region_size_bytes
        && u128::from(cluster.now_ms.saturating_sub(entry.since_ms)) >= s.split_merge_interval.as_millis()
}

fn same_stores(a: &RegionEntry, b: &RegionEntry) -> bool {
    let stores = |e: &RegionEntry| {
        let mut s: Vec<_> = e.region.peers.iter().map(|p| p.store_id).collect();
        s.sort_unstable();
        s
    };
    stores(a) == stores(b)
}
