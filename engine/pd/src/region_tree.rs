//! Regions indexed by id and by start key, with the overlap queries routing and heartbeats
//! need. Pure data structure: no persistence, no epoch rules (those live in `pd.rs`).

use keel_types::{Peer, Region, RegionId, StoreId};
use std::collections::BTreeMap;
use std::ops::Bound;

/// What PD knows about one region besides its metadata: the leader and its load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RegionEntry {
    pub region: Region,
    pub leader: Option<Peer>,
    /// Raft term of the report that named `leader` (0: a hint PD made up, e.g. after a split).
    pub term: u64,
    pub stats: crate::RegionStats,
    /// When PD learned this epoch of the region (its monotonic clock; 0: at start-up).
    pub since_ms: u64,
}

#[derive(Debug, Default)]
pub(crate) struct RegionTree {
    by_id: BTreeMap<RegionId, RegionEntry>,
    /// start key → region id. Regions in the tree never overlap.
    by_start: BTreeMap<Vec<u8>, RegionId>,
    /// store → peers (any role) it hosts, kept in step with `by_id`.
    store_regions: BTreeMap<StoreId, usize>,
    /// store → regions whose known leader it hosts, kept in step with `by_id`.
    store_leaders: BTreeMap<StoreId, usize>,
}

/// The entry's leader, if it is one of the region's peers.
fn leader_store(entry: &RegionEntry) -> Option<StoreId> {
    entry.leader.filter(|l| entry.region.peer(l.id).is_some()).map(|l| l.store_id)
}

fn bump(counts: &mut BTreeMap<StoreId, usize>, store: StoreId, up: bool) {
    if up {
        *counts.entry(store).or_default() += 1;
    } else {
        let n = counts.get_mut(&store).expect("counted store");
        *n -= 1;
        if *n == 0 {
            counts.remove(&store);
        }
    }
}

/// Whether `[start, end)` and the region's range share a key (empty end: unbounded).
fn overlaps(region: &Region, start: &[u8], end: &[u8]) -> bool {
    (end.is_empty() || region.start_key.as_slice() < end)
        && (region.end_key.is_empty() || start < region.end_key.as_slice())
}

impl RegionTree {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get(&self, id: RegionId) -> Option<&RegionEntry> {
        self.by_id.get(&id)
    }

    /// Updates a region's leader and stats without touching its metadata.
    pub(crate) fn set_leader_and_stats(
        &mut self,
        id: RegionId,
        leader: Option<Peer>,
        term: u64,
        stats: crate::RegionStats,
    ) {
        let Some(entry) = self.by_id.get_mut(&id) else { return };
        if let Some(old) = leader_store(entry) {
            bump(&mut self.store_leaders, old, false);
        }
        entry.leader = leader;
        entry.term = term;
        entry.stats = stats;
        if let Some(new) = leader_store(entry) {
            bump(&mut self.store_leaders, new, true);
        }
    }

    /// Replicas (any role) on `store`.
    pub(crate) fn store_region_count(&self, store: StoreId) -> usize {
        self.store_regions.get(&store).copied().unwrap_or(0)
    }

    /// Leaders on `store`.
    pub(crate) fn store_leader_count(&self, store: StoreId) -> usize {
        self.store_leaders.get(&store).copied().unwrap_or(0)
    }

    fn account(&mut self, entry: &RegionEntry, up: bool) {
        for p in &entry.region.peers {
            bump(&mut self.store_regions, p.store_id, up);
        }
        if let Some(store) = leader_store(entry) {
            bump(&mut self.store_leaders, store, up);
        }
    }

    /// The region containing `key`.
    pub(crate) fn get_by_key(&self, key: &[u8]) -> Option<&RegionEntry> {
        let (_, id) = self.by_start.range::<[u8], _>((Bound::Unbounded, Bound::Included(key))).next_back()?;
        let entry = &self.by_id[id];
        entry.region.contains(key).then_some(entry)
    }

    /// Ids of the regions overlapping `[start, end)` (empty end: unbounded), in key order.
    pub(crate) fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<RegionId> {
        self.scan(start, end, usize::MAX).map(|e| e.region.id).collect()
    }

    /// Regions overlapping `[start, end)` in key order, at most `limit`.
    pub(crate) fn scan<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
        limit: usize,
    ) -> impl Iterator<Item = &'a RegionEntry> + 'a {
        let before = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(start)))
            .next_back()
            .map(|(_, id)| &self.by_id[id])
            .filter(|e| overlaps(&e.region, start, end));
        let after = self
            .by_start
            .range::<[u8], _>((Bound::Excluded(start), Bound::Unbounded))
            .map(|(_, id)| &self.by_id[id])
            .take_while(move |e| overlaps(&e.region, start, end));
        before.into_iter().chain(after).take(limit)
    }

    /// Inserts or replaces the entry for its region id. The caller has removed every
    /// other region overlapping it.
    pub(crate) fn insert(&mut self, entry: RegionEntry) {
        let id = entry.region.id;
        self.remove(id);
        debug_assert!(
            self.overlapping(&entry.region.start_key, &entry.region.end_key).is_empty(),
            "region {id} inserted over others"
        );
        self.by_start.insert(entry.region.start_key.clone(), id);
        self.account(&entry, true);
        self.by_id.insert(id, entry);
    }

    pub(crate) fn remove(&mut self, id: RegionId) -> Option<RegionEntry> {
        let entry = self.by_id.remove(&id)?;
        let removed = self.by_start.remove(&entry.region.start_key);
        debug_assert_eq!(removed, Some(id));
        self.account(&entry, false);
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: RegionId, start: &[u8], end: &[u8]) -> RegionEntry {
        RegionEntry {
            region: Region { id, start_key: start.to_vec(), end_key: end.to_vec(), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn lookups_and_overlaps() {
        let mut tree = RegionTree::default();
        tree.insert(entry(1, b"", b"b"));
        tree.insert(entry(2, b"b", b"d"));
        tree.insert(entry(3, b"f", b""));
        assert_eq!(tree.get_by_key(b"").unwrap().region.id, 1);
        assert_eq!(tree.get_by_key(b"a\xff").unwrap().region.id, 1);
        assert_eq!(tree.get_by_key(b"b").unwrap().region.id, 2);
        assert!(tree.get_by_key(b"e").is_none(), "hole between d and f");
        assert_eq!(tree.get_by_key(b"zzz").unwrap().region.id, 3);
        assert_eq!(tree.overlapping(b"", b""), vec![1, 2, 3]);
        assert_eq!(tree.overlapping(b"a", b"b"), vec![1]);
        assert_eq!(tree.overlapping(b"a", b"b\0"), vec![1, 2]);
        assert_eq!(tree.overlapping(b"d", b"f"), Vec::<u64>::new());
        assert_eq!(tree.overlapping(b"c", b""), vec![2, 3]);
        assert_eq!(tree.scan(b"", b"", 2).count(), 2);
        tree.remove(2);
        assert_eq!(tree.overlapping(b"", b""), vec![1, 3]);
        assert_eq!(tree.len(), 2);
    }
}
