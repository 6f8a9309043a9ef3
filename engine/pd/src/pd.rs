//! The PD state machine: every request in, one answer out, state persisted before the
//! answer leaves.

use crate::ids::{AllocOutcome, IdAllocator};
use crate::meta;
use crate::region_tree::{RegionEntry, RegionTree};
use crate::scheduler::{manual_plan, Cluster, OperatorCounters, OperatorKind, Scheduler};
use crate::tso::{Tso, TsoFailure};
use crate::{Error, PdConfig, ID_ALLOC_COUNT_MAX, MAX_REPLICAS_MAX, TSO_COUNT_MAX};
use keel_storage::{Engine, WriteBatch};
use keel_types::proto::pd::{
    ManualOperator, Operator, OperatorStatus, PdError, PdRequest, PdResponse, PdResult, RegionHeartbeat, RegionInfo,
    Store, StoreState, StoreStats,
};
use keel_types::{trace_event, Clock, Peer, PeerRole, Region, RegionEpoch, RegionId, StoreId, Timestamp};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The scheduler's view of the cluster, built from disjoint fields of a `Pd` so the
/// scheduler (another field) can be borrowed mutably beside it.
macro_rules! cluster {
    ($pd:expr, $now_ms:expr) => {
        Cluster {
            config: &$pd.config,
            now_ms: $now_ms,
            started_ms: $pd.started_ms,
            stores: &$pd.stores,
            status: &$pd.store_status,
            regions: &$pd.regions,
        }
    };
}

/// What PD last heard from a store (kept in memory; rebuilt by heartbeats after a restart).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStatus {
    /// The last reported statistics.
    pub stats: StoreStats,
    /// When the last heartbeat arrived, by this PD's monotonic clock ([`Clock::elapsed_ms`]:
    /// a jump of the wall clock must never make a dead store look alive, or a live one dead).
    pub last_heartbeat_ms: u64,
}

/// A region's load as its leader last reported it (kept in memory).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionStats {
    /// Peers the leader has not heard from recently, with seconds since last contact.
    pub down_peers: Vec<(Peer, u64)>,
    /// Peers catching up.
    pub pending_peers: Vec<Peer>,
    /// Approximate bytes.
    pub approximate_size_bytes: u64,
    /// Approximate keys.
    pub approximate_keys: u64,
    /// Bytes written since the previous heartbeat.
    pub written_bytes: u64,
}

/// The placement driver's state: cluster id, id allocator, TSO, stores, regions and GC
/// safe point, persisted in its own storage engine.
///
/// Synchronous and single-owner: callers serialise access (the service keeps it behind a
/// mutex and never holds the lock across an `.await`). After a storage write fails the PD
/// is *failed*: it answers every request with `PdError::Unavailable` until it is reopened
/// from disk (see [`Pd::failure`]).
pub struct Pd {
    config: PdConfig,
    engine: Arc<dyn Engine>,
    clock: Clock,
    cluster_id: u64,
    ids: IdAllocator,
    tso: Tso,
    stores: BTreeMap<StoreId, Store>,
    store_status: BTreeMap<StoreId, StoreStatus>,
    regions: RegionTree,
    bootstrap_region: Option<Region>,
    gc_safe_point: Timestamp,
    failure: Option<String>,
    /// When this PD opened (by its monotonic clock): stores not heard from since are silent
    /// from then.
    started_ms: u64,
    scheduler: Scheduler,
}

impl std::fmt::Debug for Pd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pd")
            .field("cluster_id", &self.cluster_id)
            .field("stores", &self.stores.len())
            .field("regions", &self.regions.len())
            .field("bootstrapped", &self.bootstrap_region.is_some())
            .field("failure", &self.failure)
            .finish()
    }
}

/// Why a region report was not applied.
enum Rejected {
    /// PD knows a newer epoch of this region, or of a region overlapping it.
    Stale,
    /// A storage failure (the PD is now failed).
    Failed(PdError),
}

impl Pd {
    /// Opens the PD over `engine`, loading whatever an earlier run persisted, or initialising
    /// a new cluster (choosing its id) on an empty engine.
    pub fn open(config: PdConfig, engine: Arc<dyn Engine>, clock: Clock) -> Result<Pd, Error> {
        if config.max_replicas == 0 || config.max_replicas > MAX_REPLICAS_MAX {
            return Err(Error::Config(format!(
                "max_replicas must be 1..={MAX_REPLICAS_MAX}, not {}",
                config.max_replicas
            )));
        }
        let cluster_id = match meta::read_u64(engine.as_ref(), meta::CLUSTER_ID)? {
            Some(id) => id,
            None => {
                let id = config.cluster_id.filter(|&id| id != 0).unwrap_or_else(|| derive_cluster_id(&config, &clock));
                let mut batch = WriteBatch::new();
                meta::put_u64(&mut batch, meta::CLUSTER_ID, id);
                meta::write_synced(engine.as_ref(), batch)?;
                tracing::info!(cluster_id = id, "pd: new cluster");
                id
            }
        };
        let ids = IdAllocator::load(engine.as_ref())?;
        let tso = Tso::load(engine.as_ref())?;
        let gc_safe_point = Timestamp(meta::read_u64(engine.as_ref(), meta::GC_SAFE_POINT)?.unwrap_or(0));
        let bootstrap_region: Option<Region> = meta::read_record(engine.as_ref(), meta::BOOTSTRAP)?;
        let mut stores = BTreeMap::new();
        for store in meta::scan_records::<Store>(engine.as_ref(), meta::STORE_PREFIX)? {
            stores.insert(store.id, store);
        }
        let mut regions = RegionTree::default();
        for region in meta::scan_records::<Region>(engine.as_ref(), meta::REGION_PREFIX)? {
            if !regions.overlapping(&region.start_key, &region.end_key).is_empty() {
                return Err(Error::Corrupt(format!("persisted region {} overlaps another", region.id)));
            }
            regions.insert(RegionEntry { region, ..Default::default() });
        }
        trace_event!("pd.open", "cluster {cluster_id} stores {} regions {}", stores.len(), regions.len());
        let started_ms = clock.elapsed_ms();
        Ok(Pd {
            config,
            engine,
            clock,
            cluster_id,
            ids,
            tso,
            stores,
            store_status: BTreeMap::new(),
            regions,
            bootstrap_region,
            gc_safe_point,
            failure: None,
            started_ms,
            scheduler: Scheduler::default(),
        })
    }

    /// The stable cluster id.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The configuration this PD runs with.
    pub fn config(&self) -> &PdConfig {
        &self.config
    }

    /// Why the PD stopped serving, if a storage write failed.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Whether the cluster has been bootstrapped.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrap_region.is_some()
    }

    /// Number of regions PD knows.
    pub fn region_count(&self) -> usize {
        self.regions.len()
    }

    /// What PD last heard from store `id`, if it has heartbeated since PD started.
    pub fn store_status(&self, id: StoreId) -> Option<&StoreStatus> {
        self.store_status.get(&id)
    }

    /// The last reported load of region `id`, if known.
    pub fn region_stats(&self, id: RegionId) -> Option<&RegionStats> {
        self.regions.get(id).map(|e| &e.stats)
    }

    /// Operators in flight (at most one per region).
    pub fn operators_in_flight(&self) -> usize {
        self.scheduler.in_flight()
    }

    /// The kind of the operator in flight on region `id`, if any.
    pub fn operator_in_flight(&self, id: RegionId) -> Option<OperatorKind> {
        self.scheduler.kind_of(id)
    }

    /// What happened to operators of `kind` since this PD opened.
    pub fn operator_counters(&self, kind: OperatorKind) -> OperatorCounters {
        self.scheduler.counters(kind)
    }

    /// Operator steps answered to region heartbeats since this PD opened.
    pub fn operator_steps_sent(&self) -> u64 {
        self.scheduler.steps_sent()
    }

    /// Whether PD considers store `id` down now: unknown, tombstone, or silent for longer
    /// than `max_store_down_time` (counting from PD's start if it never heartbeated since).
    pub fn store_is_down(&self, id: StoreId) -> bool {
        self.cluster(self.clock.elapsed_ms()).store_down(id)
    }

    /// Replicas (any role) PD's region metadata places on store `id`.
    pub fn store_region_count(&self, id: StoreId) -> usize {
        self.regions.store_region_count(id)
    }

    /// Regions whose known leader is on store `id`.
    pub fn store_leader_count(&self, id: StoreId) -> usize {
        self.regions.store_leader_count(id)
    }

    fn cluster(&self, now_ms: u64) -> Cluster<'_> {
        cluster!(self, now_ms)
    }

    /// The last timestamp served (zero before the first since this PD opened, unless
    /// restored from the persisted window).
    pub fn last_timestamp(&self) -> Timestamp {
        self.tso.last()
    }

    /// Answers one request.
    pub fn handle(&mut self, req: PdRequest) -> PdResult {
        if let Some(reason) = &self.failure {
            return Err(PdError::Unavailable(format!("pd stopped after a storage failure: {reason}")));
        }
        match req {
            PdRequest::GetMembers => {
                Ok(PdResponse::Members { cluster_id: self.cluster_id, leader: self.config.advertise_addr.clone() })
            }
            PdRequest::GetBootstrapRegion => Ok(PdResponse::BootstrapRegion(self.bootstrap_region.clone())),
            PdRequest::AllocId { count } => {
                if count == 0 || count > ID_ALLOC_COUNT_MAX {
                    return Err(PdError::Invalid(format!(
                        "AllocId count must be 1..={ID_ALLOC_COUNT_MAX}, not {count}"
                    )));
                }
                let first = self.alloc_ids(u64::from(count))?;
                Ok(PdResponse::Ids { first, count })
            }
            PdRequest::PutStore(store) => self.put_store(store),
            PdRequest::GetStore(id) => Ok(PdResponse::Store(self.stores.get(&id).cloned())),
            PdRequest::GetAllStores => Ok(PdResponse::Stores(self.stores.values().cloned().collect())),
            PdRequest::StoreHeartbeat(stats) => self.store_heartbeat(stats),
            PdRequest::RegionHeartbeat(hb) => self.region_heartbeat(hb),
            PdRequest::GetRegion { key } => {
                let cluster = self.cluster(self.clock.elapsed_ms());
                Ok(PdResponse::Region(self.regions.get_by_key(&key).map(|e| info(&cluster, e))))
            }
            PdRequest::GetRegionById(id) => {
                let cluster = self.cluster(self.clock.elapsed_ms());
                Ok(PdResponse::Region(self.regions.get(id).map(|e| info(&cluster, e))))
            }
            PdRequest::ScanRegions { start_key, end_key, limit } => {
                if !end_key.is_empty() && start_key >= end_key {
                    return Ok(PdResponse::Regions(Vec::new()));
                }
                let limit = if limit == 0 { usize::MAX } else { limit as usize };
                let cluster = self.cluster(self.clock.elapsed_ms());
                Ok(PdResponse::Regions(
                    self.regions.scan(&start_key, &end_key, limit).map(|e| info(&cluster, e)).collect(),
                ))
            }
            PdRequest::Tso { count } => {
                if count == 0 || count > TSO_COUNT_MAX {
                    return Err(PdError::Invalid(format!("Tso count must be 1..={TSO_COUNT_MAX}, not {count}")));
                }
                match self.tso.alloc(self.engine.as_ref(), &self.clock, u64::from(count)) {
                    Ok(ts) => Ok(PdResponse::Tso { ts, count }),
                    Err(TsoFailure::Storage(err)) => Err(self.fail(err)),
                    Err(TsoFailure::Exhausted) => Err(PdError::Unavailable("timestamp space exhausted".into())),
                }
            }
            PdRequest::GetGcSafePoint => Ok(PdResponse::GcSafePoint(self.gc_safe_point)),
            PdRequest::UpdateGcSafePoint(ts) => {
                if ts > self.gc_safe_point {
                    let mut batch = WriteBatch::new();
                    meta::put_u64(&mut batch, meta::GC_SAFE_POINT, ts.0);
                    self.persist(batch)?;
                    self.gc_safe_point = ts;
                }
                Ok(PdResponse::GcSafePoint(self.gc_safe_point))
            }
            PdRequest::AskSplit { region } => {
                if region.peers.is_empty() || region.id == 0 {
                    return Err(PdError::Invalid(format!("AskSplit: region {} has no peers", region.id)));
                }
                let n = region.peers.len() as u64;
                let first = self.alloc_ids(1 + n)?;
                Ok(PdResponse::SplitIds { new_region_id: first, new_peer_ids: (first + 1..=first + n).collect() })
            }
            PdRequest::ReportSplit { left, right } => self.report_split(left, right),
            PdRequest::AddOperator { region_id, op } => self.add_operator(region_id, &op),
            PdRequest::GetOperatorStatus => Ok(PdResponse::OperatorStatus(OperatorStatus {
                in_flight: self.operators_in_flight() as u64,
                created: OperatorKind::ALL.iter().map(|k| self.operator_counters(*k).created).sum(),
            })),
            PdRequest::RaftMessage(_) => {
                Err(PdError::Invalid("raft message sent to a PD that is not replicated".into()))
            }
        }
    }

    /// Marks the PD failed after a storage error and returns the answer for the caller.
    fn fail(&mut self, err: keel_storage::Error) -> PdError {
        tracing::error!(%err, "pd: storage write failed; stopping");
        trace_event!("pd.failed", "{err}");
        let reason = err.to_string();
        self.failure = Some(reason.clone());
        PdError::Unavailable(reason)
    }

    fn persist(&mut self, batch: WriteBatch) -> Result<(), PdError> {
        meta::write_synced(self.engine.as_ref(), batch).map_err(|e| self.fail(e))
    }

    fn alloc_ids(&mut self, count: u64) -> Result<u64, PdError> {
        match self.ids.alloc(self.engine.as_ref(), count) {
            Ok(AllocOutcome::Ids(first)) => Ok(first),
            Ok(AllocOutcome::Exhausted) => Err(PdError::Unavailable("id space exhausted".into())),
            Err(err) => Err(self.fail(err)),
        }
    }

    /// Registers or updates a store. A store's state only moves forward
    /// (Up → Offline → Tombstone): a restarting store that re-registers as Up does not
    /// cancel its own removal.
    fn put_store(&mut self, mut store: Store) -> PdResult {
        if store.id == 0 {
            return Err(PdError::Invalid("store id 0 (allocate one with AllocId first)".into()));
        }
        if store.address.is_empty() {
            return Err(PdError::Invalid(format!("store {} has no address", store.id)));
        }
        if let Some(old) = self.stores.get(&store.id) {
            if old.state == StoreState::Tombstone {
                return Err(PdError::StoreTombstone(store.id));
            }
            store.state = later_state(old.state, store.state);
        }
        if let Some(other) = self
            .stores
            .values()
            .find(|s| s.id != store.id && s.address == store.address && s.state != StoreState::Tombstone)
        {
            return Err(PdError::Invalid(format!(
                "address {} already belongs to live store {} (not {})",
                store.address, other.id, store.id
            )));
        }
        store.labels.sort();
        if self.stores.get(&store.id) != Some(&store) {
            let mut batch = WriteBatch::new();
            meta::put_record(&mut batch, &meta::id_key(meta::STORE_PREFIX, store.id), &store);
            self.persist(batch)?;
            trace_event!("pd.store", "{} {} {:?}", store.id, store.address, store.state);
            self.stores.insert(store.id, store);
        }
        self.maybe_bootstrap()?;
        Ok(PdResponse::Ok)
    }

    /// Creates the first region once `max_replicas` stores are up.
    fn maybe_bootstrap(&mut self) -> Result<(), PdError> {
        if self.bootstrap_region.is_some() {
            return Ok(());
        }
        let replicas = self.config.max_replicas;
        let up: Vec<StoreId> =
            self.stores.values().filter(|s| s.state == StoreState::Up).map(|s| s.id).take(replicas).collect();
        if up.len() < replicas {
            return Ok(());
        }
        let first = self.alloc_ids(1 + replicas as u64)?;
        let region = Region {
            id: first,
            start_key: Vec::new(),
            end_key: Vec::new(),
            epoch: RegionEpoch { conf_ver: 1, version: 1 },
            peers: up
                .iter()
                .zip(first + 1..)
                .map(|(&store_id, id)| Peer { id, store_id, role: PeerRole::Voter })
                .collect(),
        };
        let mut batch = WriteBatch::new();
        meta::put_record(&mut batch, &meta::id_key(meta::REGION_PREFIX, region.id), &region);
        meta::put_record(&mut batch, meta::BOOTSTRAP, &region);
        self.persist(batch)?;
        tracing::info!(region = region.id, stores = ?up, "pd: cluster bootstrapped");
        trace_event!("pd.bootstrap", "{region:?}");
        debug_assert!(self.regions.len() == 0, "regions known before bootstrap");
        self.regions.insert(RegionEntry { region: region.clone(), ..Default::default() });
        self.bootstrap_region = Some(region);
        Ok(())
    }

    fn store_heartbeat(&mut self, stats: StoreStats) -> PdResult {
        match self.stores.get(&stats.store_id) {
            None => Err(PdError::Invalid(format!("store {} is not registered", stats.store_id))),
            Some(store) if store.state == StoreState::Tombstone => Err(PdError::StoreTombstone(store.id)),
            Some(_) => {
                let now_ms = self.clock.elapsed_ms();
                let status = StoreStatus { last_heartbeat_ms: now_ms, stats };
                self.store_status.insert(status.stats.store_id, status);
                self.scheduler.expire(now_ms);
                self.tombstone_drained_stores()?;
                Ok(PdResponse::Ok)
            }
        }
    }

    /// Every Offline store that no longer hosts a peer of any region becomes Tombstone.
    fn tombstone_drained_stores(&mut self) -> Result<(), PdError> {
        let drained: Vec<Store> = self
            .stores
            .values()
            .filter(|s| s.state == StoreState::Offline && self.regions.store_region_count(s.id) == 0)
            .cloned()
            .collect();
        for mut store in drained {
            store.state = StoreState::Tombstone;
            let mut batch = WriteBatch::new();
            meta::put_record(&mut batch, &meta::id_key(meta::STORE_PREFIX, store.id), &store);
            self.persist(batch)?;
            tracing::info!(store = store.id, "pd: offline store drained; now tombstone");
            trace_event!("pd.store", "{} {} {:?}", store.id, store.address, store.state);
            self.stores.insert(store.id, store);
        }
        Ok(())
    }

    /// Advances the region's operator or asks the checkers for one, after a heartbeat from
    /// `reporter` has been applied; at most one step comes back.
    fn schedule(&mut self, id: RegionId, reporter: Option<Peer>, term: u64) -> Result<Option<Operator>, PdError> {
        let now_ms = self.clock.elapsed_ms();
        self.scheduler.expire(now_ms);
        let Some(entry) = self.regions.get(id) else { return Ok(None) };
        // Only the current leader's report is acted on: one PD knows of (same peer, a term
        // not older than the one PD holds) and one of the region's peers.
        let Some(reporter) = reporter else { return Ok(None) };
        if entry.leader != Some(reporter) || term < entry.term || entry.region.peer(reporter.id).is_none() {
            return Ok(None);
        }
        let cluster = cluster!(self, now_ms);
        if let Some(step) = self.scheduler.advance(&cluster, entry) {
            return Ok(Some(step));
        }
        let s = &self.config.schedule;
        if self.scheduler.busy(id) || !(s.replica_checker || s.balance_leader || s.balance_region || s.merge_checker) {
            return Ok(None);
        }
        let Some(plan) = self.scheduler.plan(&cluster, entry) else { return Ok(None) };
        let new_peer = match plan.add_on {
            Some(_) => Some(self.alloc_ids(1)?),
            None => None,
        };
        let cluster = cluster!(self, now_ms);
        let entry = self.regions.get(id).expect("region still known");
        self.scheduler.start(&cluster, entry, plan, new_peer);
        Ok(self.scheduler.advance(&cluster, entry))
    }

    /// Starts a manual operator on a region; its steps go out with the leader's next
    /// heartbeats like any other operator's.
    fn add_operator(&mut self, id: RegionId, op: &ManualOperator) -> PdResult {
        let now_ms = self.clock.elapsed_ms();
        self.scheduler.expire(now_ms);
        let Some(entry) = self.regions.get(id) else {
            return Err(PdError::Invalid(format!("region {id} is unknown")));
        };
        if let Some(kind) = self.scheduler.kind_of(id) {
            return Err(PdError::Invalid(format!("region {id} already has a {kind:?} operator in flight")));
        }
        let plan = manual_plan(&cluster!(self, now_ms), entry, op).map_err(PdError::Invalid)?;
        let new_peer = match plan.add_on {
            Some(_) => Some(self.alloc_ids(1)?),
            None => None,
        };
        let entry = self.regions.get(id).expect("region still known");
        self.scheduler.start(&cluster!(self, now_ms), entry, plan, new_peer);
        Ok(PdResponse::Ok)
    }

    fn region_heartbeat(&mut self, hb: RegionHeartbeat) -> PdResult {
        validate_region(&hb.region)?;
        let stats = RegionStats {
            down_peers: hb.down_peers,
            pending_peers: hb.pending_peers,
            approximate_size_bytes: hb.approximate_size_bytes,
            approximate_keys: hb.approximate_keys,
            written_bytes: hb.written_bytes,
        };
        let (id, reporter, term) = (hb.region.id, hb.leader, hb.term);
        let entry = RegionEntry { region: hb.region, leader: hb.leader, term: hb.term, stats, since_ms: 0 };
        match self.update_region(entry) {
            Ok(()) => {}
            Err(Rejected::Stale) => return Ok(PdResponse::Operator(None)),
            Err(Rejected::Failed(err)) => return Err(err),
        }
        self.tombstone_drained_stores()?;
        Ok(PdResponse::Operator(self.schedule(id, reporter, term)?))
    }

    /// Applies a report about a region under the epoch rules:
    /// - an epoch older than PD's in either dimension is ignored (stale);
    /// - an equal epoch updates only the leader (if the term is not older) and the stats;
    /// - a newer epoch (or an unknown region) replaces the metadata and removes every
    ///   region it overlaps, unless one of those has a newer `version` (then it is stale).
    fn update_region(&mut self, mut new: RegionEntry) -> Result<(), Rejected> {
        let id = new.region.id;
        new.since_ms = self.clock.elapsed_ms();
        if let Some(old) = self.regions.get(id) {
            if new.region.epoch.is_stale_against(&old.region.epoch) {
                trace_event!("pd.region.stale", "{id} {:?} < {:?}", new.region.epoch, old.region.epoch);
                return Err(Rejected::Stale);
            }
            if new.region.epoch == old.region.epoch {
                if new.region != old.region {
                    tracing::warn!(region = id, "pd: same epoch, different metadata; keeping the first seen");
                }
                let (leader, term) = if new.term >= old.term { (new.leader, new.term) } else { (old.leader, old.term) };
                self.regions.set_leader_and_stats(id, leader, term, new.stats);
                return Ok(());
            }
        }
        let overlapped: Vec<RegionId> = self
            .regions
            .overlapping(&new.region.start_key, &new.region.end_key)
            .into_iter()
            .filter(|&o| o != id)
            .collect();
        for &o in &overlapped {
            let other = &self.regions.get(o).expect("overlapping id is in the tree").region;
            if other.epoch.version > new.region.epoch.version {
                trace_event!("pd.region.stale", "{id} overlaps newer {o}");
                return Err(Rejected::Stale);
            }
        }
        let mut batch = WriteBatch::new();
        for &o in &overlapped {
            batch.delete(meta::CF, &meta::id_key(meta::REGION_PREFIX, o));
        }
        meta::put_record(&mut batch, &meta::id_key(meta::REGION_PREFIX, id), &new.region);
        self.persist(batch).map_err(Rejected::Failed)?;
        trace_event!("pd.region", "{id} {:?} removes {overlapped:?}", new.region.epoch);
        for o in overlapped {
            self.regions.remove(o);
            self.scheduler.forget(o);
        }
        self.regions.insert(new);
        Ok(())
    }

    fn report_split(&mut self, left: Region, right: Region) -> PdResult {
        validate_region(&left)?;
        validate_region(&right)?;
        if left.id == right.id || right.start_key.is_empty() || left.end_key != right.start_key {
            return Err(PdError::Invalid(format!(
                "ReportSplit: regions {} and {} are not adjacent halves",
                left.id, right.id
            )));
        }
        // Keep the left half's leader if its peer is still there; hint that the right
        // half's leader is on the same store (as right after a split). Term 0 lets any
        // real heartbeat replace the hint.
        let old = self.regions.get(left.id);
        let left_leader = old.and_then(|e| e.leader).filter(|l| left.peer(l.id).is_some());
        let left_term = old.map_or(0, |e| e.term);
        let right_leader = left_leader.and_then(|l| right.peer_on_store(l.store_id).copied());
        for entry in [
            RegionEntry {
                region: left,
                leader: left_leader,
                term: left_term,
                stats: RegionStats::default(),
                since_ms: 0,
            },
            RegionEntry { region: right, leader: right_leader, term: 0, stats: RegionStats::default(), since_ms: 0 },
        ] {
            match self.update_region(entry) {
                Ok(()) | Err(Rejected::Stale) => {}
                Err(Rejected::Failed(err)) => return Err(err),
            }
        }
        Ok(PdResponse::Ok)
    }
}

fn info(cluster: &Cluster<'_>, entry: &RegionEntry) -> RegionInfo {
    let down_peers = entry.region.peers.iter().filter(|p| cluster.peer_down(entry, p)).copied().collect();
    RegionInfo { region: entry.region.clone(), leader: entry.leader, down_peers }
}

fn validate_region(region: &Region) -> Result<(), PdError> {
    if region.id == 0 {
        return Err(PdError::Invalid("region id 0".into()));
    }
    if !region.end_key.is_empty() && region.start_key >= region.end_key {
        return Err(PdError::Invalid(format!("region {} has an empty or inverted range", region.id)));
    }
    Ok(())
}

/// The later of two store states in lifecycle order Up → Offline → Tombstone.
fn later_state(a: StoreState, b: StoreState) -> StoreState {
    fn rank(s: StoreState) -> u8 {
        match s {
            StoreState::Up => 0,
            StoreState::Offline => 1,
            StoreState::Tombstone => 2,
        }
    }
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// A new cluster's id when none is configured: the clock's seconds in the high 32 bits
/// (as TiKV's PD does) and a mix of the clock's milliseconds and the advertised address in
/// the low 32. Deterministic under the simulator, whose clock is seeded.
fn derive_cluster_id(config: &PdConfig, clock: &Clock) -> u64 {
    let now_ms = clock.now_ms();
    let mut x = keel_types::trace::fnv1a(now_ms.wrapping_mul(0x9e37_79b9_7f4a_7c15), config.advertise_addr.as_bytes());
    // splitmix64 finaliser.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let id = ((now_ms / 1000) << 32) | (x & 0xffff_ffff);
    id.max(1)
}
