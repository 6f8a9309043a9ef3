//! The client's routing table: which region holds a key, at which epoch, which peer leads
//! it, and where each store listens.
//!
//! Regions are kept in a `BTreeMap` keyed by start key; the cached regions never overlap
//! (inserting one drops every entry it overlaps). Misses load from PD. Region errors from
//! stores refresh the table: `EpochNotMatch` inserts the regions the store sent,
//! `NotLeader` moves the leader to the hint (or to the next peer), `RegionNotFound` and
//! unreachable stores invalidate. Everything is ordered (no `HashMap`), so the same
//! sequence of answers routes the same way in the simulator.

use crate::pd::{PdClient, PdClientError};
use keel_types::proto::pd::{RegionInfo, StoreState};
use keel_types::{Peer, PeerRole, Region, RegionId, StoreId};
use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::{Arc, Mutex};

/// A cached region and the peer requests go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedRegion {
    /// The region as last learned (from PD or from a store's `EpochNotMatch`).
    pub region: Region,
    /// The peer believed to lead; `None` when unknown (then the first voter is tried).
    pub leader: Option<Peer>,
}

impl CachedRegion {
    /// The peer to address: the leader if known and still a peer, else the first voter,
    /// else the first peer. `None` only for a region without peers.
    pub fn target_peer(&self) -> Option<Peer> {
        if let Some(leader) = self.leader {
            if self.region.peer(leader.id).is_some() {
                return Some(leader);
            }
        }
        self.region.peers.iter().find(|p| p.role == PeerRole::Voter).or(self.region.peers.first()).copied()
    }
}

/// Why a lookup could not produce a route. Always a definite failure (nothing was sent
/// to a store); callers retry until their deadline.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// PD could not be asked.
    #[error("pd: {0}")]
    Pd(#[from] PdClientError),
    /// PD knows no region (or store) for the lookup.
    #[error("{0}")]
    NotFound(String),
}

#[derive(Default)]
struct State {
    /// Start key → region. Entries never overlap.
    regions: BTreeMap<Vec<u8>, CachedRegion>,
    /// Region id → start key of its entry in `regions`.
    ids: BTreeMap<RegionId, Vec<u8>>,
    /// Store id → address.
    stores: BTreeMap<StoreId, String>,
}

impl State {
    fn remove_id(&mut self, id: RegionId) -> Option<CachedRegion> {
        let start = self.ids.remove(&id)?;
        self.regions.remove(&start)
    }

    fn get_id(&self, id: RegionId) -> Option<&CachedRegion> {
        self.ids.get(&id).and_then(|start| self.regions.get(start))
    }

    fn get_id_mut(&mut self, id: RegionId) -> Option<&mut CachedRegion> {
        let start = self.ids.get(&id)?;
        self.regions.get_mut(start)
    }

    /// Start keys of entries overlapping `[start, end)` (empty end: unbounded), ascending.
    fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if let Some((k, c)) = self.regions.range::<[u8], _>((Unbounded, Excluded(start))).next_back() {
            if c.region.end_key.is_empty() || c.region.end_key.as_slice() > start {
                out.push(k.clone());
            }
        }
        let upper = if end.is_empty() { Unbounded } else { Excluded(end) };
        out.extend(self.regions.range::<[u8], _>((Included(start), upper)).map(|(k, _)| k.clone()));
        out
    }

    /// Inserts `region`, dropping the entries it overlaps. Refused (returns false) when the
    /// cache already holds a newer view: the same region with a newer epoch, or an
    /// overlapping region with a larger `version` (it was split or merged after this view).
    ///
    /// With `force`, the region is installed whatever the cache holds: a lookup that missed
    /// must route by PD's answer and remember the leader hints it gets, even if PD lags (the
    /// store then answers `EpochNotMatch` with the current regions).
    fn insert(&mut self, region: Region, leader: Option<Peer>, force: bool) -> bool {
        let mut leader = leader.filter(|l| region.peer(l.id).is_some());
        if let Some(old) = self.get_id(region.id) {
            if !force && region.epoch.is_stale_against(&old.region.epoch) {
                return false;
            }
            if leader.is_none() && old.region.epoch == region.epoch {
                leader = old.leader;
            }
        }
        let overlapped = self.overlapping(&region.start_key, &region.end_key);
        for start in &overlapped {
            let other = &self.regions[start].region;
            if !force && other.id != region.id && other.epoch.version > region.epoch.version {
                return false;
            }
        }
        self.remove_id(region.id);
        for start in overlapped {
            if let Some(old) = self.regions.remove(&start) {
                self.ids.remove(&old.region.id);
            }
        }
        self.ids.insert(region.id, region.start_key.clone());
        self.regions.insert(region.start_key.clone(), CachedRegion { region, leader });
        true
    }

    fn lookup_key(&self, key: &[u8]) -> Option<&CachedRegion> {
        let (_, c) = self.regions.range::<[u8], _>((Unbounded, Included(key))).next_back()?;
        c.region.contains(key).then_some(c)
    }

    fn lookup_before(&self, end: &[u8]) -> Option<&CachedRegion> {
        if end.is_empty() {
            let (_, c) = self.regions.iter().next_back()?;
            return c.region.end_key.is_empty().then_some(c);
        }
        let (_, c) = self.regions.range::<[u8], _>((Unbounded, Excluded(end))).next_back()?;
        (c.region.end_key.is_empty() || c.region.end_key.as_slice() >= end).then_some(c)
    }
}

/// Region and store routing shared by all clones of a client. Cheap to clone.
#[derive(Clone)]
pub struct RegionCache {
    pd: PdClient,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for RegionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionCache").field("regions", &self.region_count()).finish()
    }
}

impl RegionCache {
    /// An empty cache loading from `pd`.
    pub fn new(pd: PdClient) -> RegionCache {
        RegionCache { pd, state: Arc::default() }
    }

    /// The PD client misses load from.
    pub fn pd(&self) -> &PdClient {
        &self.pd
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many regions are cached.
    pub fn region_count(&self) -> usize {
        self.state().regions.len()
    }

    /// Every cached region in key order.
    pub fn regions(&self) -> Vec<CachedRegion> {
        self.state().regions.values().cloned().collect()
    }

    /// Caches `region` with `leader` (if it is one of its peers), dropping overlapped
    /// entries. Returns false (and changes nothing) if the cache holds a newer view.
    pub fn insert(&self, region: Region, leader: Option<Peer>) -> bool {
        self.state().insert(region, leader, false)
    }

    /// The cached region containing `key`, if any.
    pub fn cached_by_key(&self, key: &[u8]) -> Option<CachedRegion> {
        self.state().lookup_key(key).cloned()
    }

    /// The cached region with id `id`, if any.
    pub fn cached_by_id(&self, id: RegionId) -> Option<CachedRegion> {
        self.state().get_id(id).cloned()
    }

    /// The cached region holding the keys just below `end` (empty `end`: the last region),
    /// i.e. the region a reverse scan bounded by `end` reads first.
    pub fn cached_before(&self, end: &[u8]) -> Option<CachedRegion> {
        self.state().lookup_before(end).cloned()
    }

    /// Drops region `id` from the cache (the next lookup asks PD).
    pub fn invalidate_region(&self, id: RegionId) {
        self.state().remove_id(id);
    }

    /// Forgets store `id`'s address (the next lookup asks PD).
    pub fn invalidate_store(&self, id: StoreId) {
        self.state().stores.remove(&id);
    }

    /// A store answered `NotLeader` for region `region_id` when addressed at `tried`.
    /// With a hint that is a peer of the cached region, the hint becomes the leader. A hint
    /// the cached region does not know means the cache is stale: the region is dropped.
    /// Without a hint, the next peer after `tried` is tried.
    pub fn on_not_leader(&self, region_id: RegionId, hint: Option<Peer>, tried: Peer) {
        let mut state = self.state();
        let Some(cached) = state.get_id_mut(region_id) else { return };
        match hint {
            Some(hint) if cached.region.peer(hint.id).is_some() => cached.leader = Some(hint),
            Some(_) => {
                state.remove_id(region_id);
            }
            None => rotate_leader(cached, tried),
        }
    }

    /// The peer `failed` could not be reached or could not serve: address the next peer.
    pub fn switch_peer(&self, region_id: RegionId, failed: Peer) {
        if let Some(cached) = self.state().get_id_mut(region_id) {
            rotate_leader(cached, failed);
        }
    }

    /// A store on `answered_by` said region `stale_id` has a different epoch and sent the
    /// regions now covering its range. They replace the stale entry (and anything else they
    /// overlap); each gets the peer on `answered_by` as its leader guess (after a split the
    /// halves are led from the same store). If the store's view of `stale_id` is older than
    /// ours (a lagging replica), or it sent nothing, the entry is dropped so PD is asked.
    pub fn on_epoch_not_match(&self, stale_id: RegionId, current: Vec<Region>, answered_by: StoreId) {
        let mut state = self.state();
        let ours = state.get_id(stale_id).map(|c| c.region.epoch);
        let behind = current.iter().any(|r| r.id == stale_id && ours.is_some_and(|e| r.epoch.is_stale_against(&e)));
        state.remove_id(stale_id);
        if behind {
            return;
        }
        for region in current {
            let leader = region.peer_on_store(answered_by).copied();
            state.insert(region, leader, false);
        }
    }

    /// The region containing `key`: from the cache, else from PD (and then cached).
    pub async fn locate_key(&self, key: &[u8]) -> Result<CachedRegion, LocateError> {
        if let Some(cached) = self.cached_by_key(key) {
            return Ok(cached);
        }
        match self.pd.get_region(key).await? {
            Some(info) if info.region.contains(key) => Ok(self.load(info)),
            Some(info) => Err(LocateError::NotFound(format!(
                "pd answered region {} which does not contain key {key:?}",
                info.region.id
            ))),
            None => Err(LocateError::NotFound(format!("pd knows no region for key {key:?}"))),
        }
    }

    /// The region holding the keys just below `end` (empty: the last region), looking no
    /// lower than `floor` in PD: from the cache, else from PD (and then cached).
    pub async fn locate_before(&self, end: &[u8], floor: &[u8]) -> Result<CachedRegion, LocateError> {
        if let Some(cached) = self.cached_before(end) {
            return Ok(cached);
        }
        if !end.is_empty() {
            if let Some(info) = self.pd.get_region(end).await? {
                if info.region.contains(end) && info.region.start_key.as_slice() < end {
                    return Ok(self.load(info));
                }
            }
        }
        // PD has no reverse lookup: list the regions between floor and end, keep them all
        // (a reverse scan visits them next) and take the last.
        let infos = self.pd.scan_regions(floor, end, 0).await?;
        let mut found = None;
        for info in infos {
            let covers = info.region.start_key.as_slice() < end || end.is_empty();
            let reaches = info.region.end_key.is_empty() || (!end.is_empty() && info.region.end_key.as_slice() >= end);
            let route = self.load(info);
            if covers && reaches {
                found = Some(route);
            }
        }
        found.ok_or_else(|| LocateError::NotFound(format!("pd knows no region below {end:?}")))
    }

    /// Caches a region PD answered for a lookup that missed, replacing whatever it overlaps
    /// (see [`State::insert`] with `force`), and returns it as this attempt's route.
    fn load(&self, info: RegionInfo) -> CachedRegion {
        let mut state = self.state();
        state.insert(info.region.clone(), info.leader, true);
        state.get_id(info.region.id).cloned().unwrap_or(CachedRegion { region: info.region, leader: info.leader })
    }

    /// The address of store `id`: from the cache, else from PD.
    pub async fn store_address(&self, id: StoreId) -> Result<String, LocateError> {
        if let Some(addr) = self.state().stores.get(&id) {
            return Ok(addr.clone());
        }
        match self.pd.get_store(id).await? {
            Some(store) if store.state != StoreState::Tombstone && !store.address.is_empty() => {
                self.state().stores.insert(id, store.address.clone());
                Ok(store.address)
            }
            Some(_) => Err(LocateError::NotFound(format!("store {id} is tombstone or has no address"))),
            None => Err(LocateError::NotFound(format!("pd knows no store {id}"))),
        }
    }

    /// Caches a store address (tests, or a caller that already knows it).
    pub fn insert_store(&self, id: StoreId, address: String) {
        self.state().stores.insert(id, address);
    }
}

/// Moves the leader guess to the peer after `failed` in the region's peer order (voters
/// only, wrapping around), so successive failures walk every voter in turn.
fn rotate_leader(cached: &mut CachedRegion, failed: Peer) {
    let voters: Vec<Peer> = cached.region.peers.iter().filter(|p| p.role == PeerRole::Voter).copied().collect();
    if voters.is_empty() {
        cached.leader = None;
        return;
    }
    let next = match voters.iter().position(|p| p.id == failed.id) {
        Some(i) => voters[(i + 1) % voters.len()],
        None => voters[0],
    };
    cached.leader = Some(next);
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_types::RegionEpoch;

    fn peers(base: u64) -> Vec<Peer> {
        (0..3).map(|i| Peer { id: base + i, store_id: i + 1, role: PeerRole::Voter }).collect()
    }

    fn region(id: u64, start: &[u8], end: &[u8], version: u64) -> Region {
        Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            epoch: RegionEpoch { conf_ver: 1, version },
            peers: peers(id * 10),
        }
    }

    fn cache() -> RegionCache {
        RegionCache::new(PdClient::new(Vec::new()))
    }

    fn ids(cache: &RegionCache) -> Vec<u64> {
        cache.regions().iter().map(|c| c.region.id).collect()
    }

    #[test]
    fn lookup_by_key_respects_open_ends_and_gaps() {
        let c = cache();
        assert!(c.insert(region(1, b"", b"f", 1), None));
        assert!(c.insert(region(2, b"m", b"", 1), None));
        assert_eq!(c.cached_by_key(b"").unwrap().region.id, 1);
        assert_eq!(c.cached_by_key(b"e\xff").unwrap().region.id, 1);
        assert_eq!(c.cached_by_key(b"f"), None, "gap [f, m) is not cached");
        assert_eq!(c.cached_by_key(b"m").unwrap().region.id, 2);
        assert_eq!(c.cached_by_key(b"\xff\xff").unwrap().region.id, 2);
        assert_eq!(c.cached_by_id(2).unwrap().region.start_key, b"m");
    }

    #[test]
    fn lookup_before_finds_the_region_a_reverse_scan_reads_first() {
        let c = cache();
        c.insert(region(1, b"", b"f", 1), None);
        c.insert(region(2, b"f", b"m", 1), None);
        assert_eq!(c.cached_before(b""), None, "last region not cached");
        c.insert(region(3, b"m", b"", 1), None);
        assert_eq!(c.cached_before(b"").unwrap().region.id, 3);
        assert_eq!(c.cached_before(b"m").unwrap().region.id, 2, "end is exclusive");
        assert_eq!(c.cached_before(b"m\x00").unwrap().region.id, 3);
        assert_eq!(c.cached_before(b"f").unwrap().region.id, 1);
        assert_eq!(c.cached_before(b"a").unwrap().region.id, 1);
    }

    #[test]
    fn insert_drops_overlapped_entries() {
        let c = cache();
        c.insert(region(1, b"", b"c", 1), None);
        c.insert(region(2, b"c", b"g", 1), None);
        c.insert(region(3, b"g", b"", 1), None);
        // A merged region covering [b, h) at a newer version replaces all three.
        assert!(c.insert(region(4, b"b", b"h", 2), None));
        assert_eq!(ids(&c), vec![4]);
        assert_eq!(c.cached_by_key(b"a"), None);
        assert_eq!(c.cached_by_id(1), None);
        assert_eq!(c.cached_by_key(b"g").unwrap().region.id, 4);
    }

    #[test]
    fn stale_views_are_refused() {
        let c = cache();
        c.insert(region(1, b"", b"m", 3), None);
        // The same region at an older epoch.
        assert!(!c.insert(region(1, b"", b"", 2), None));
        // An overlapping region at an older version (PD lagging behind a split).
        assert!(!c.insert(region(9, b"", b"", 2), None));
        assert_eq!(c.cached_by_id(1).unwrap().region.end_key, b"m");
        // ...unless forced (a lookup that missed routes by PD's answer, stale or not).
        assert!(c.state().insert(region(9, b"m", b"", 2), None, true));
        assert_eq!(ids(&c), vec![1, 9]);
        assert!(c.state().insert(region(1, b"", b"", 2), None, true));
        assert_eq!(ids(&c), vec![1]);
        assert!(c.insert(region(1, b"", b"m", 3), None));
        // The same epoch again keeps the known leader unless a new one is given.
        let leader = c.cached_by_id(1).unwrap().region.peers[2];
        c.on_not_leader(1, Some(leader), leader);
        assert!(c.insert(region(1, b"", b"m", 3), None));
        assert_eq!(c.cached_by_id(1).unwrap().leader, Some(leader));
    }

    #[test]
    fn epoch_not_match_installs_the_split_halves() {
        let c = cache();
        c.insert(region(1, b"", b"", 1), None);
        let left = region(1, b"", b"m", 2);
        let mut right = region(2, b"m", b"", 2);
        right.peers = peers(20);
        c.on_epoch_not_match(1, vec![left.clone(), right.clone()], 2);
        assert_eq!(ids(&c), vec![1, 2]);
        let l = c.cached_by_key(b"a").unwrap();
        assert_eq!(l.region, left);
        assert_eq!(l.leader.unwrap().store_id, 2, "leader guessed on the answering store");
        let r = c.cached_by_key(b"z").unwrap();
        assert_eq!(r.region, right);
        assert_eq!(r.target_peer().unwrap().store_id, 2);
    }

    #[test]
    fn epoch_not_match_from_a_lagging_store_drops_the_entry() {
        let c = cache();
        c.insert(region(1, b"", b"m", 3), None);
        c.insert(region(2, b"m", b"", 3), None);
        c.on_epoch_not_match(1, vec![region(1, b"", b"", 1)], 1);
        assert_eq!(ids(&c), vec![2], "stale answer not installed; entry dropped for PD to refresh");
        c.on_epoch_not_match(2, Vec::new(), 1);
        assert_eq!(c.region_count(), 0);
    }

    #[test]
    fn not_leader_follows_hints_and_rotates_without_one() {
        let c = cache();
        let r = region(1, b"", b"", 1);
        let [p0, p1, p2] = [r.peers[0], r.peers[1], r.peers[2]];
        c.insert(r.clone(), None);
        assert_eq!(c.cached_by_id(1).unwrap().target_peer(), Some(p0), "first voter without a leader");
        c.on_not_leader(1, Some(p2), p0);
        assert_eq!(c.cached_by_id(1).unwrap().target_peer(), Some(p2));
        c.on_not_leader(1, None, p2);
        assert_eq!(c.cached_by_id(1).unwrap().target_peer(), Some(p0), "wraps around");
        c.switch_peer(1, p0);
        assert_eq!(c.cached_by_id(1).unwrap().target_peer(), Some(p1));
        // A hint naming a peer the cached region does not have: the cache is stale.
        c.on_not_leader(1, Some(Peer { id: 99, store_id: 9, role: PeerRole::Voter }), p1);
        assert_eq!(c.cached_by_id(1), None);
    }

    #[test]
    fn learners_are_never_targeted() {
        let mut r = region(1, b"", b"", 1);
        r.peers[0].role = PeerRole::Learner;
        let c = cache();
        c.insert(r.clone(), None);
        assert_eq!(c.cached_by_id(1).unwrap().target_peer(), Some(r.peers[1]));
        c.switch_peer(1, r.peers[2]);
        assert_eq!(c.cached_by_id(1).unwrap().target_peer(), Some(r.peers[1]));
    }

    #[test]
    fn stores_are_cached_and_invalidated() {
        let c = cache();
        c.insert_store(1, "a:1".into());
        assert_eq!(c.state().stores.get(&1).map(String::as_str), Some("a:1"));
        c.invalidate_store(1);
        assert!(c.state().stores.is_empty());
    }
}
