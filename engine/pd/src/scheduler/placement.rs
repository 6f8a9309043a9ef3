//! Replica placement: label isolation across location levels (e.g. zone, rack, host) and
//! the choice of a target store for a new replica.
//!
//! Two stores *share* the leading location levels on which their labels are equal (a
//! missing label counts as the empty value). A candidate's isolation against a set of
//! stores is the list of levels it shares with each, sorted largest first; a smaller list
//! (lexicographically) is better isolated. So a candidate in a new zone beats one in a
//! used zone on a new host, which beats one on a used host; among equals, fewer peers
//! sharing a level wins.

use super::{Cluster, Loads};
use keel_types::proto::pd::Store;
use keel_types::{Region, StoreId};

fn label<'a>(store: &'a Store, key: &str) -> &'a str {
    store.labels.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
}

/// How many leading location levels `a` and `b` share.
pub(crate) fn shared_levels(a: &Store, b: &Store, levels: &[String]) -> usize {
    levels.iter().take_while(|key| label(a, key) == label(b, key)).count()
}

/// `candidate`'s isolation against `others` (smaller is better).
pub(crate) fn isolation(candidate: &Store, others: &[Store], levels: &[String]) -> Vec<usize> {
    let mut shared: Vec<usize> = others.iter().map(|o| shared_levels(candidate, o, levels)).collect();
    shared.sort_unstable_by(|a, b| b.cmp(a));
    shared
}

/// The best store for a new replica of `region` next to `keep` (the stores of the peers
/// that stay): one that accepts replicas, holds no peer of the region and has room under
/// the store limit; best isolated, then fewest regions (counting in-flight moves), then
/// lowest id. `no_worse_than` additionally requires isolation at least as good as that
/// (balance must not degrade placement).
pub(crate) fn best_target(
    cluster: &Cluster<'_>,
    loads: &Loads,
    region: &Region,
    keep: &[Store],
    no_worse_than: Option<&[usize]>,
) -> Option<StoreId> {
    let levels = &cluster.config.schedule.location_labels;
    cluster
        .stores
        .values()
        .filter(|s| region.peer_on_store(s.id).is_none())
        .filter(|s| cluster.store_accepts(s.id) && loads.store_has_room(cluster, s.id))
        .map(|s| (isolation(s, keep, levels), loads.regions(cluster, s.id), s.id))
        .filter(|(iso, _, _)| no_worse_than.is_none_or(|limit| iso.as_slice() <= limit))
        .min()
        .map(|(_, _, id)| id)
}

/// The stores of `region`'s peers other than those on `except`.
pub(crate) fn peer_stores(cluster: &Cluster<'_>, region: &Region, except: &[StoreId]) -> Vec<Store> {
    region.peers.iter().filter(|p| !except.contains(&p.store_id)).map(|p| cluster.store(p.store_id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: StoreId, labels: &[(&str, &str)]) -> Store {
        Store { id, labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Store::default() }
    }

    #[test]
    fn isolation_prefers_a_new_zone_then_a_new_host_then_fewer_sharers() {
        let levels: Vec<String> = ["zone", "rack", "host"].map(String::from).to_vec();
        let a1 = store(1, &[("zone", "a"), ("host", "h1")]);
        let b2 = store(2, &[("zone", "b"), ("host", "h2")]);
        let keep = [a1.clone(), b2];
        let new_zone = store(3, &[("zone", "c"), ("host", "h3")]);
        let used_zone = store(4, &[("zone", "a"), ("host", "h4")]);
        let used_host = store(5, &[("zone", "a"), ("host", "h1")]);
        assert_eq!(shared_levels(&a1, &used_host, &levels), 3);
        assert_eq!(shared_levels(&a1, &used_zone, &levels), 2, "zone and the (missing) rack");
        assert_eq!(isolation(&new_zone, &keep, &levels), vec![0, 0]);
        assert!(isolation(&new_zone, &keep, &levels) < isolation(&used_zone, &keep, &levels));
        assert!(isolation(&used_zone, &keep, &levels) < isolation(&used_host, &keep, &levels));
        // No labels at all: every candidate ties (and load decides).
        let bare = [store(1, &[]), store(2, &[])];
        assert_eq!(isolation(&store(3, &[]), &bare, &levels), isolation(&store(4, &[]), &bare, &levels));
    }
}
