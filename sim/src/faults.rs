//! The safety phase's faults: the simulated [`Cluster`] as a [`keel_nemesis::Target`], and
//! a thin entry point scenarios call to run the nemesis schedule against it.
//!
//! The run's nemesis options (mean gap between faults) and what fired are kept per thread —
//! one madsim run owns its thread — so scenarios need not plumb them: the runner sets the
//! options before a run ([`set_options`]) and reads the report after it ([`take_report`]).

use crate::cluster::{pd_endpoints, Cluster};
use futures::StreamExt;
use keel_client::PdClient;
use keel_nemesis::{Capability, LocalFuture, NemesisConfig, Report, Target};
use keel_rpc::RpcClient;
use keel_types::proto::pd::{ManualOperator, StoreState};
use keel_types::proto::store::{Context, StoreError, StoreRequest, StoreResponse, StoreResult};
use keel_types::{Peer, PeerRole, Region, RegionError, StoreId};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// The helper node the nemesis asks PD from (never faulted).
const HELPER: &str = "nemesis";
/// Bound on one leader lookup or split call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one split, retries included.
const SPLIT_DEADLINE: Duration = Duration::from_secs(2);
/// Pause before asking PD again when its answer led to no leader.
const SPLIT_RETRY_GAP: Duration = Duration::from_millis(200);
/// Stores one split asks, following redirects, before it asks PD again.
const SPLIT_HOPS_MAX: usize = 6;
/// Splits of one storm in flight at once.
const SPLITS_IN_FLIGHT_MAX: usize = 8;
/// Bound on one leader transfer or membership change asked of PD. A burst's run together,
/// so a dead or cut-off PD costs the nemesis this once per burst (each had 8 s, one after
/// another: a 1.9 s PD isolation could outlast its end by many seconds while they queued).
const REGION_OP_DEADLINE: Duration = Duration::from_secs(2);

/// Per-run nemesis options.
#[derive(Clone, Debug)]
pub struct Options {
    /// Mean simulated time between fault injections.
    pub mean_gap: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { mean_gap: keel_nemesis::MEAN_GAP_DEFAULT }
    }
}

thread_local! {
    static OPTIONS: RefCell<Options> = RefCell::new(Options::default());
    static REPORT: RefCell<Report> = RefCell::new(Report::default());
}

/// Sets the nemesis options for the next run on this thread and clears the report.
pub fn set_options(options: Options) {
    OPTIONS.with(|o| *o.borrow_mut() = options);
    REPORT.with(|r| *r.borrow_mut() = Report::default());
}

/// What the nemesis did in this thread's last run.
pub fn take_report() -> Report {
    REPORT.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// Runs faults from `families` until `until`. `targets` names the servers that may be hurt
/// (clients may still land on either side of a partition): when the scenario has not named
/// its servers ([`Cluster::set_servers`]), `pd` is PD, `store-*` are replicas, and any other
/// node is treated as a single non-replicated server.
/// The nemesis seed comes from `rng`.
pub async fn run(cluster: &mut Cluster, targets: &[String], families: &[String], until: Instant, rng: &mut ChaCha8Rng) {
    if cluster.roles().stores.is_empty() && cluster.roles().pd.is_empty() {
        let stores: Vec<String> = targets.iter().filter(|t| t.starts_with("store-")).cloned().collect();
        let pd = targets.iter().find(|t| *t == "pd").or_else(|| targets.iter().find(|t| !t.starts_with("store-")));
        let pd: Vec<String> = pd.into_iter().cloned().collect();
        cluster.set_servers(&stores, &pd, None);
    }
    let cfg =
        NemesisConfig { mean_gap: OPTIONS.with(|o| o.borrow().mean_gap), ..NemesisConfig::new(rng.gen(), families) };
    let report = keel_nemesis::run(&mut SimTarget { cluster, targets: targets.to_vec() }, &cfg, until).await;
    REPORT.with(|r| {
        let mut r = r.borrow_mut();
        for (family, n) in report.fired {
            *r.fired.entry(family).or_default() += n;
        }
        for (family, n) in report.refused {
            *r.refused.entry(family).or_default() += n;
        }
        for family in report.unsupported {
            if !r.unsupported.contains(&family) {
                r.unsupported.push(family);
            }
        }
    });
}

struct SimTarget<'a> {
    cluster: &'a mut Cluster,
    /// The only servers the scenario lets the nemesis hurt.
    targets: Vec<String>,
}

impl SimTarget<'_> {
    fn helper(&mut self) -> Option<()> {
        self.cluster.roles().pd_addr.as_ref()?;
        if !self.cluster.has_node(HELPER) {
            self.cluster.add_node(HELPER, |_env| std::future::pending::<()>());
        }
        Some(())
    }

    fn node_of_addr(&self, addr: &str) -> Option<String> {
        let addr: SocketAddr = addr.parse().ok()?;
        self.cluster.node_by_ip(addr.ip())
    }
}

/// Asks PD for the region of `key` and the address of its leader's store.
async fn leader_of(pd_addr: String, key: Vec<u8>) -> Option<(keel_types::Region, keel_types::Peer, String)> {
    let pd = PdClient::new(pd_endpoints(&pd_addr));
    let lookup = async {
        let info = pd.get_region(&key).await.ok()??;
        let leader = info.leader?;
        let store = pd.get_store(leader.store_id).await.ok()??;
        Some((info.region, leader, store.address))
    };
    tokio::time::timeout(CALL_TIMEOUT, lookup).await.ok().flatten()
}

/// Splits the region of `key` at `key`, done when `key` starts a region (a key that already
/// does is not split again). Starts at the leader PD knows (or any peer), follows the leader a
/// NotLeader names and the current region an EpochNotMatch carries, tries the region's other
/// peers when one has no leader or no replica, and asks PD again (after a short pause) only
/// when its answer led nowhere. Gives up after [`SPLIT_DEADLINE`]: behind a partition, a
/// leaderless half stays leaderless, and a storm must not hang on it.
pub(crate) async fn split_at(pd_addr: String, key: Vec<u8>) -> Result<(), String> {
    let pd = PdClient::new(pd_endpoints(&pd_addr));
    let deadline = Instant::now() + SPLIT_DEADLINE;
    let mut last = String::from("no attempt made");
    while Instant::now() < deadline {
        let info = pd.get_region(&key).await.map_err(|e| e.to_string())?.ok_or("no region")?;
        match split_from(&pd, info.region, info.leader, &key, deadline).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(SPLIT_RETRY_GAP).await;
    }
    Err(last)
}

/// One round of [`split_at`] from PD's answer `region` (led by `leader`, if PD knows).
async fn split_from(
    pd: &PdClient,
    mut region: Region,
    leader: Option<Peer>,
    key: &[u8],
    deadline: Instant,
) -> Result<(), String> {
    let mut untried: Vec<Peer> = region.peers.clone();
    let mut next = leader.or_else(|| untried.first().copied());
    let mut last = String::from("no peer to ask");
    for _ in 0..SPLIT_HOPS_MAX {
        if region.start_key == key {
            return Ok(());
        }
        let Some(peer) = next.take() else { break };
        untried.retain(|p| p.id != peer.id);
        let Ok(Some(store)) = pd.get_store(peer.store_id).await else {
            next = untried.first().copied();
            continue;
        };
        let ctx = Context { region_id: region.id, region_epoch: region.epoch, peer: Some(peer) };
        let client: RpcClient<StoreRequest, StoreResult> = RpcClient::new(store.address);
        let timeout = deadline.saturating_duration_since(Instant::now()).min(CALL_TIMEOUT);
        match client.call(StoreRequest::SplitRegion { ctx, key: key.to_vec() }, timeout).await {
            Ok(Ok(StoreResponse::Split(_))) => return Ok(()),
            Ok(Ok(other)) => return Err(format!("unexpected answer {other:?}")),
            Ok(Err(StoreError::Region(RegionError::NotLeader { leader: Some(l), .. }))) if l.id != peer.id => {
                last = format!("region {}: not leader, redirected to peer {}", region.id, l.id);
                next = Some(l);
            }
            // The region moved on since PD looked (a split or membership change): carry on
            // with the current region that holds the key, at the store that answered.
            Ok(Err(StoreError::Region(RegionError::EpochNotMatch { current_regions }))) => {
                let Some(current) = current_regions.into_iter().find(|r| r.contains(key)) else {
                    return Err("epoch not match without the key's region".into());
                };
                next = current.peer_on_store(peer.store_id).copied();
                untried = current.peers.clone();
                region = current;
                last = format!("region {}: epoch moved on", region.id);
            }
            Ok(Err(e @ StoreError::Invalid(_))) => return Err(e.to_string()),
            Ok(Err(e)) => {
                last = e.to_string();
                next = untried.first().copied();
            }
            Err(e) => {
                last = e.to_string();
                next = untried.first().copied();
            }
        }
    }
    Err(last)
}

/// Runs [`split_at`] for every key with at most [`SPLITS_IN_FLIGHT_MAX`] in flight, so a
/// storm's splits that wait on a leaderless region do not hold up the others. Results come
/// back in the order of `keys`.
pub(crate) async fn split_all(pd_addr: String, keys: Vec<Vec<u8>>) -> Vec<Result<(), String>> {
    futures::stream::iter(keys)
        .map(|key| async {
            // PD itself may be down: its client's own retries must not stretch the split.
            match tokio::time::timeout(SPLIT_DEADLINE, split_at(pd_addr.clone(), key)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no split within {SPLIT_DEADLINE:?}")),
            }
        })
        .buffered(SPLITS_IN_FLIGHT_MAX)
        .collect()
        .await
}

impl Target for SimTarget<'_> {
    fn stores(&self) -> Vec<String> {
        self.cluster.roles().stores.iter().filter(|s| self.targets.contains(s)).cloned().collect()
    }

    fn replicas(&self) -> usize {
        match self.cluster.roles().replicas {
            0 => self.stores().len(),
            n => n,
        }
    }

    fn pd(&self) -> Vec<String> {
        self.cluster.roles().pd.iter().filter(|p| self.targets.contains(p)).cloned().collect()
    }

    fn clients(&self) -> Vec<String> {
        self.cluster.roles().clients.clone()
    }

    fn supports(&self, cap: Capability) -> bool {
        let keel = self.cluster.roles().pd_addr.is_some();
        match cap {
            Capability::Latency | Capability::FailSync | Capability::SlowSync | Capability::ClockRate => true,
            // A replaced disk is rebuilt from its replicas' peers: keel stores only.
            Capability::RegionLeader
            | Capability::Split
            | Capability::TransferLeader
            | Capability::Membership
            | Capability::Corrupt => keel,
        }
    }

    fn kill(&mut self, node: &str, rng: &mut dyn RngCore) {
        if self.cluster.env(node).disk.corruption_found() {
            // The node had read a corrupt record and stopped itself (fail-stop).
            crate::runner::add_stat("stopped_on_corruption", 1);
        }
        self.cluster.kill(node, rng);
    }

    fn restart(&mut self, node: &str) {
        self.cluster.restart(node);
    }

    fn pause(&mut self, node: &str) {
        self.cluster.pause(node);
    }

    fn resume(&mut self, node: &str) {
        self.cluster.resume(node);
    }

    fn clog_link(&mut self, from: &str, to: &str) {
        self.cluster.clog_link(from, to);
    }

    fn unclog_link(&mut self, from: &str, to: &str) {
        self.cluster.unclog_link(from, to);
    }

    fn set_packet_loss(&mut self, rate: f64) {
        self.cluster.set_packet_loss(rate);
    }

    fn set_latency(&mut self, latency: Option<std::ops::Range<Duration>>) {
        self.cluster.set_latency(latency);
    }

    fn set_clock_offset(&mut self, node: &str, offset_ms: i64) {
        self.cluster.skew_clock(node, offset_ms);
    }

    fn set_clock_rate(&mut self, node: &str, permille: u64) {
        self.cluster.set_clock_rate(node, permille);
    }

    fn fail_next_sync(&mut self, node: &str) {
        keel_types::trace_event!("sim.fail_sync", "{node}");
        self.cluster.env(node).disk.fail_next_sync();
    }

    fn set_slow_sync(&mut self, node: &str, stall: Option<Duration>) {
        keel_types::trace_event!("sim.slow_sync", "{node} {stall:?}");
        self.cluster.env(node).disk.set_slow_sync(stall);
    }

    fn corrupt_value(&mut self, node: &str, rng: &mut dyn RngCore) -> Option<String> {
        let hit = self.cluster.env(node).disk.corrupt_random_value(rng, &|_, _| true);
        keel_types::trace_event!("sim.corrupt", "{node} {hit:?}");
        hit.map(|(cf, key)| format!("{cf:?} {key:?}"))
    }

    fn replace_disk_if_corrupt(&mut self, node: &str) -> bool {
        let disk = &self.cluster.env(node).disk;
        let bad = disk.scrub();
        keel_types::trace_event!("sim.disk_check", "{node} {} corrupt records", bad.len());
        if bad.is_empty() {
            return false;
        }
        disk.replace();
        crate::runner::add_stat("disks_replaced", 1);
        true
    }

    fn keys(&self) -> Vec<Vec<u8>> {
        self.cluster.roles().keys.clone()
    }

    fn fully_replicated(&mut self) -> LocalFuture<'_, bool> {
        let replicas = self.replicas();
        Box::pin(async move {
            let full = self
                .on_helper_with(CALL_TIMEOUT, move |pd_addr| async move {
                    let pd = PdClient::new(pd_endpoints(&pd_addr));
                    let regions = pd.scan_regions(b"", b"", 0).await.map_err(|e| e.to_string())?;
                    let full = regions.iter().all(|r| {
                        r.region.peers.len() == replicas && r.region.peers.iter().all(|p| p.role == PeerRole::Voter)
                    });
                    Ok::<bool, String>(full)
                })
                .await;
            matches!(full, Ok(Ok(true)))
        })
    }

    fn region_leader<'a>(&'a mut self, key: &'a [u8]) -> LocalFuture<'a, Option<String>> {
        Box::pin(async move {
            self.helper()?;
            let pd_addr = self.cluster.roles().pd_addr.clone()?;
            let found = self.cluster.spawn_on(HELPER, leader_of(pd_addr, key.to_vec())).await.ok()??;
            self.node_of_addr(&found.2).filter(|n| self.cluster.roles().stores.contains(n))
        })
    }

    fn split_regions<'a>(&'a mut self, keys: Vec<Vec<u8>>) -> LocalFuture<'a, Vec<Result<(), String>>> {
        Box::pin(async move {
            let n = keys.len();
            let all = self.on_helper_with(SPLIT_DEADLINE * n as u32, move |pd_addr| split_all(pd_addr, keys)).await;
            all.unwrap_or_else(|e| vec![Err(e); n])
        })
    }

    fn transfer_leaders<'a>(&'a mut self, ops: Vec<(Vec<u8>, u64)>) -> LocalFuture<'a, Vec<Result<(), String>>> {
        Box::pin(self.region_ops(ops, transfer_leader))
    }

    fn change_memberships<'a>(&'a mut self, ops: Vec<(Vec<u8>, u64)>) -> LocalFuture<'a, Vec<Result<(), String>>> {
        Box::pin(self.region_ops(ops, change_membership))
    }
}

/// Asks PD to move the leadership of `key`'s region to another voter (`seed` picks which).
async fn transfer_leader(pd_addr: String, key: Vec<u8>, seed: u64) -> Result<(), String> {
    let pd = PdClient::new(pd_endpoints(&pd_addr));
    let info = pd.get_region(&key).await.map_err(|e| e.to_string())?.ok_or("no region")?;
    let leader = info.leader.ok_or("no leader known")?;
    let others: Vec<&Peer> =
        info.region.peers.iter().filter(|p| p.role == PeerRole::Voter && p.id != leader.id).collect();
    let to = others.choose(&mut ChaCha8Rng::seed_from_u64(seed)).ok_or("no other voter")?;
    let op = ManualOperator::TransferLeader { to_store: to.store_id };
    pd.add_operator(info.region.id, op).await.map_err(|e| e.to_string())
}

/// Asks PD to remove, add or move a replica of `key`'s region (`seed` picks what and where).
async fn change_membership(pd_addr: String, key: Vec<u8>, seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pd = PdClient::new(pd_endpoints(&pd_addr));
    let info = pd.get_region(&key).await.map_err(|e| e.to_string())?.ok_or("no region")?;
    let stores = pd.get_all_stores().await.map_err(|e| e.to_string())?;
    let spare: Vec<StoreId> = stores
        .iter()
        .filter(|s| s.state == StoreState::Up && info.region.peer_on_store(s.id).is_none())
        .map(|s| s.id)
        .collect();
    let peer = info.region.peers.choose(&mut rng).ok_or("region has no peers")?;
    let op = match spare.choose(&mut rng) {
        Some(&to) if rng.gen_bool(0.5) => ManualOperator::MovePeer { from_store: peer.store_id, to_store: to },
        Some(&to) if rng.gen_bool(0.3) => ManualOperator::AddPeer { store: to },
        _ => ManualOperator::RemovePeer { store: peer.store_id },
    };
    keel_types::trace_event!("sim.membership", "{} {op:?}", info.region.id);
    pd.add_operator(info.region.id, op).await.map_err(|e| e.to_string())
}

impl SimTarget<'_> {
    /// Runs `op` for every `(key, seed)` at once on the helper node, each bounded by
    /// [`REGION_OP_DEADLINE`]; results in the order of `ops`.
    async fn region_ops<F, Fut>(&mut self, ops: Vec<(Vec<u8>, u64)>, op: F) -> Vec<Result<(), String>>
    where
        F: Fn(String, Vec<u8>, u64) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let n = ops.len();
        let all = self
            .on_helper_with(REGION_OP_DEADLINE, move |pd_addr| {
                futures::future::join_all(ops.into_iter().map(move |(key, seed)| {
                    let call = op(pd_addr.clone(), key, seed);
                    async move {
                        match tokio::time::timeout(REGION_OP_DEADLINE, call).await {
                            Ok(result) => result,
                            Err(_) => Err(format!("no answer within {REGION_OP_DEADLINE:?}")),
                        }
                    }
                }))
            })
            .await;
        all.unwrap_or_else(|e| vec![Err(e); n])
    }

    /// Runs a call against PD on the helper node, bounded by `limit`.
    async fn on_helper_with<F, Fut, T>(&mut self, limit: Duration, call: F) -> Result<T, String>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.helper().ok_or("no PD to ask")?;
        let pd_addr = self.cluster.roles().pd_addr.clone().ok_or("no PD address")?;
        let bounded = tokio::time::timeout(limit, call(pd_addr));
        match self.cluster.spawn_on(HELPER, bounded).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(format!("no answer within {limit:?}")),
            Err(e) => Err(format!("helper task: {e}")),
        }
    }
}
