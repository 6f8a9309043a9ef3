//! The store loop: one task owns every region peer on this store. Each round it takes a
//! batch of inbox messages, ticks when due, collects every peer's raft Ready, sends the
//! messages that need no persistence (a leader's appends: followers then sync in parallel
//! with the leader), writes all of their log entries, hard states and applied data in ONE
//! synced batch (group commit), and only then sends the messages that must follow
//! persistence and answers clients. Only the peers that may have a Ready — ticked, stepped,
//! proposed to this round — are looked at, so sleeping regions (see `peer/hibernate.rs`)
//! cost nothing per round.

mod hibernate;

use crate::apply::Overlay;
use crate::cmd::{CmdBody, CmdResult, RaftCmd};
use crate::cmd::{ConfChangeCmd, ConfChangeKind};
use crate::config::StoreConfig;
use crate::keys;
use crate::liveness::StoreLiveness;
use crate::peer::{ApplyEffects, Peer, ProposeReply, ReadReply};
use crate::peer_storage::{read, read_tombstone, PeerState, PeerStorage, RegionLocalState};
use crate::split_check::{middle_key, region_stats};
use crate::ticker::RaftTicker;
use crate::ReadView;
use hibernate::wake_for_work;
use keel_storage::{CfName, Engine, WriteBatch, WriteOptions};
use keel_types::codec::encode;
use keel_types::proto::pd::{Operator, RegionHeartbeat};
use keel_types::proto::store::{Context, ExtraMessage, PeerCheck, RaftEnvelope, StoreError};
use keel_types::{trace, trace_event, Clock, PeerRole, Region, RegionError, RegionId, StoreId};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use raft::StateRole;
use raft::Storage as _;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Carries raft messages to other stores. Best effort: raft tolerates loss and reordering.
pub trait Transport: Send + Sync + 'static {
    /// Sends `msgs` to store `to`, without waiting.
    fn send(&self, to: StoreId, msgs: Vec<RaftEnvelope>);
}

/// Tells PD what this store's leaders see. Best effort, never blocks the store loop.
pub trait PdReporter: Send + Sync + 'static {
    /// A leader's periodic (or on-election) report.
    fn region_heartbeat(&self, hb: RegionHeartbeat);
    /// A split was applied on the leader.
    fn report_split(&self, left: Region, right: Region);
    /// The leader found `region` too large: split it at `split_key` (asks PD for ids, then
    /// proposes the split). Best effort; the next check asks again if it did not happen.
    fn ask_split(&self, region: Region, split_key: Vec<u8>);
    /// This store's replica just became `region`'s leader (the transaction layer must then
    /// sync its max_ts from PD before accepting async-commit prewrites).
    fn became_leader(&self, region: &Region);
    /// This store's replica `peer` of `region` has heard from no other peer for a long time:
    /// it may have been removed while cut off. Ask PD, and if PD's newer region no longer
    /// lists the peer, destroy it with [`StoreHandle::destroy_stale_peer`].
    fn check_stale_peer(&self, region: &Region, peer: keel_types::Peer);
    /// This store's replica `peer` of `region_id` applied its own removal and waits for the
    /// region's voters: ask PD which peers of the region are down, and pass the answer to
    /// [`StoreHandle::down_peers`].
    fn check_removal(&self, region_id: RegionId, peer: keel_types::Peer);
}

/// A region's state as the store loop reports it (for heartbeats, status pages and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionStatus {
    /// The region.
    pub region: Region,
    /// Whether this store's peer leads it.
    pub is_leader: bool,
    /// Raft term.
    pub term: u64,
    /// Applied index.
    pub applied_index: u64,
    /// First index still in the log (truncation point + 1).
    pub first_index: u64,
    /// Whether this replica sleeps (hibernation).
    pub idle: bool,
}

enum StoreMsg {
    Raft(Vec<RaftEnvelope>),
    Propose { ctx: Context, body: CmdBody, reply: ProposeReply },
    Read { ctx: Context, reply: ReadReply, for_write: bool },
    CreateRegion { region: Region, reply: oneshot::Sender<Result<bool, String>> },
    Operator { region_id: RegionId, op: Operator },
    DestroyStale { region_id: RegionId, peer_id: u64, conf_ver: u64 },
    DownPeers { region_id: RegionId, peer_id: u64, down: Vec<u64> },
    Status { reply: oneshot::Sender<Vec<RegionStatus>> },
}

/// The handle servers use to talk to the store loop. Cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<StoreMsg>,
    store_id: StoreId,
}

fn stopped() -> StoreError {
    StoreError::Unavailable("store loop stopped".into())
}

fn stopped_after_send() -> StoreError {
    StoreError::OutcomeUnknown("store loop stopped while the command was in flight".into())
}

impl StoreHandle {
    /// This store's id.
    pub fn store_id(&self) -> StoreId {
        self.store_id
    }

    /// Proposes a command in the context's region and waits until it is applied.
    pub async fn propose(&self, ctx: Context, body: CmdBody) -> Result<CmdResult, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(StoreMsg::Propose { ctx, body, reply }).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped_after_send())?
    }

    /// A linearizable view of the context's region (ReadIndex, then wait for apply).
    pub async fn read(&self, ctx: Context) -> Result<ReadView, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(StoreMsg::Read { ctx, reply, for_write: false }).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// A view of the context's region to compute a write from, without a ReadIndex round
    /// when the leader has applied an entry of its current term (see
    /// [`crate::peer::Peer::read_for_write`]); otherwise as [`StoreHandle::read`]. Only for a
    /// command that proposes what it computed and holds latches on its keys until that
    /// applies, or whose answers that write nothing hold on any prefix of the log (facts no
    /// later entry undoes, such as "transaction T committed"): any other answer that writes
    /// nothing must come from [`StoreHandle::read`].
    pub async fn read_for_write(&self, ctx: Context) -> Result<ReadView, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(StoreMsg::Read { ctx, reply, for_write: true }).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Hands raft messages from the network to the store loop.
    pub async fn raft(&self, msgs: Vec<RaftEnvelope>) -> Result<(), StoreError> {
        self.tx.send(StoreMsg::Raft(msgs)).await.map_err(|_| stopped())
    }

    /// Hands raft messages to the store loop without waiting, so messages handed over one
    /// after another are queued in that order. A full inbox drops them (raft retransmits,
    /// as it does for a batch the sender's full queue dropped).
    pub fn try_raft(&self, msgs: Vec<RaftEnvelope>) -> Result<(), StoreError> {
        self.tx.try_send(StoreMsg::Raft(msgs)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                StoreError::Unavailable("store inbox full; raft batch dropped".into())
            }
            mpsc::error::TrySendError::Closed(_) => stopped(),
        })
    }

    /// Creates this store's peer of a region at its initial state (bootstrap). Returns
    /// false when the region already exists here (then nothing changes).
    pub async fn create_region(&self, region: Region) -> Result<bool, String> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(StoreMsg::CreateRegion { region, reply }).await.map_err(|_| "store loop stopped".to_string())?;
        rx.await.map_err(|_| "store loop stopped".to_string())?
    }

    /// Starts one scheduling step from PD on the region's leader here (ignored elsewhere).
    pub async fn operator(&self, region_id: RegionId, op: Operator) {
        let _ = self.tx.send(StoreMsg::Operator { region_id, op }).await;
    }

    /// Destroys this store's replica `peer_id` of `region_id` if its membership version is
    /// older than `conf_ver` (PD's region has moved on without it).
    pub async fn destroy_stale_peer(&self, region_id: RegionId, peer_id: u64, conf_ver: u64) {
        let _ = self.tx.send(StoreMsg::DestroyStale { region_id, peer_id, conf_ver }).await;
    }

    /// Tells this store's removed replica `peer_id` of `region_id` which peers of the
    /// region PD judges down (PD's answer to [`PdReporter::check_removal`]).
    pub async fn down_peers(&self, region_id: RegionId, peer_id: u64, down: Vec<u64>) {
        let _ = self.tx.send(StoreMsg::DownPeers { region_id, peer_id, down }).await;
    }

    /// Every region on this store.
    pub async fn status(&self) -> Vec<RegionStatus> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(StoreMsg::Status { reply }).await.is_err() {
            return vec![];
        }
        rx.await.unwrap_or_default()
    }
}

/// The store loop's state.
pub struct Store {
    cfg: StoreConfig,
    engine: Arc<dyn Engine>,
    peers: BTreeMap<RegionId, Peer>,
    transport: Arc<dyn Transport>,
    pd: Arc<dyn PdReporter>,
    rx: mpsc::Receiver<StoreMsg>,
    overlay: Overlay,
    /// Planted bug [`LogPersistedAfterSend`](keel_types::planted::PlantedBug): an earlier
    /// round's log still waits for its sync.
    sync_owed: bool,
    /// Vote requests for regions this store will create by applying a split it has not
    /// applied yet (they overlap a region it holds), oldest first, at most
    /// [`SPLIT_VOTES_HELD_MAX`]: handed to the new replica once the split creates it (TiKV's
    /// `pending_msgs`). Dropping them left every new region leaderless until its candidate's
    /// next election timeout (1-2 s in which no command of the range could run).
    split_votes: VecDeque<RaftEnvelope>,
    /// Ticks of the store loop (the liveness clock).
    ticks: u64,
    /// Which other stores were heard from lately (hibernation's safety net).
    liveness: StoreLiveness,
    /// Peers that may have a Ready: the next round looks at these only.
    active: BTreeSet<RegionId>,
    /// Leaders' requests to sleep, sent after the round's raft messages.
    hibernate_requests: Vec<(RegionId, ExtraMessage)>,
    /// Targets whose apply waits on a CommitMerge (see [`crate::merge::resolve`]): every
    /// round looks at them, whether or not they have a Ready.
    merge_blocked: BTreeSet<RegionId>,
}

/// Most vote requests held for replicas a split has yet to create.
const SPLIT_VOTES_HELD_MAX: usize = 64;

impl Store {
    /// Loads every region peer this store has on disk and returns the loop (to be run with
    /// [`Store::run`]) and its handle.
    pub fn load(
        cfg: StoreConfig,
        engine: Arc<dyn Engine>,
        transport: Arc<dyn Transport>,
        pd: Arc<dyn PdReporter>,
    ) -> Result<(Store, StoreHandle), String> {
        let (lo, hi) = keys::region_meta_bounds();
        let metas =
            engine.snapshot().scan(CfName::Raft, &lo, Some(&hi), false, usize::MAX).map_err(|e| e.to_string())?;
        let mut peers = BTreeMap::new();
        for (key, _) in metas {
            let Some(region_id) = keys::parse_region_state_key(&key) else { continue };
            let state: RegionLocalState = read(&*engine, &key)?.ok_or("region state vanished")?;
            let peer = match state.state {
                PeerState::Tombstone => continue,
                // A merge source's merge state is under its own key (read by the load).
                PeerState::Normal | PeerState::Merging => {
                    Peer::new(&cfg, PeerStorage::load(engine.clone(), state.region)?)?
                }
                PeerState::Removed(meta) => {
                    Peer::removed(&cfg, PeerStorage::load(engine.clone(), state.region)?, meta)?
                }
            };
            peers.insert(region_id, peer);
        }
        let (tx, rx) = mpsc::channel(cfg.inbox_capacity);
        let handle = StoreHandle { tx, store_id: cfg.store_id };
        let active = peers.keys().copied().collect();
        let store = Store {
            cfg,
            engine,
            peers,
            transport,
            pd,
            rx,
            overlay: Overlay::default(),
            sync_owed: false,
            split_votes: VecDeque::new(),
            ticks: 0,
            liveness: StoreLiveness::default(),
            active,
            hibernate_requests: Vec::new(),
            merge_blocked: BTreeSet::new(),
        };
        Ok((store, handle))
    }

    /// Runs the loop until every handle is dropped (Ok) or the disk fails (Err: the node
    /// must stop and restart from disk — never carry on after a failed write). Raft ticks at
    /// the rate of the node's `clock` (see [`RaftTicker`]).
    pub async fn run(mut self, clock: Clock) -> Result<(), String> {
        let mut ticker = RaftTicker::new(self.cfg.tick_interval, clock);
        loop {
            // `biased`: tokio's select! otherwise picks among ready branches with an RNG
            // madsim does not control (BUGGIFY's skipped rounds made that visible as a
            // nondeterministic trace). The tick comes first: it is ready once per interval,
            // so it can never starve the inbox, and a busy inbox can never starve it.
            tokio::select! {
                biased;
                _ = ticker.tick() => self.tick()?,
                msg = self.rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return Ok(()),
                },
            }
            for _ in 0..self.cfg.round_msgs_max {
                match self.rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            // BUGGIFY: leave this round's Ready to the next round (a slow store loop).
            if keel_types::buggify!(0.05) {
                continue;
            }
            self.process_ready().await?;
            // After the round's raft messages: a request to sleep must not overtake the
            // heartbeats sent before it (they would wake the follower it put to sleep).
            self.send_hibernate_requests();
        }
    }

    fn check_context(&self, ctx: &Context) -> Result<(), StoreError> {
        let Some(peer) = self.peers.get(&ctx.region_id).filter(|p| p.is_initialized() && p.removal.is_none()) else {
            return Err(RegionError::RegionNotFound { region_id: ctx.region_id }.into());
        };
        if ctx.peer.is_some_and(|p| p.id != peer.meta.id) {
            return Err(RegionError::RegionNotFound { region_id: ctx.region_id }.into());
        }
        // A merge source is frozen: nothing is proposed or read until it is merged (the
        // client then finds the target) or rolled back.
        if peer.is_merge_source() {
            return Err(RegionError::ServerIsBusy { reason: format!("region {} is merging", ctx.region_id) }.into());
        }
        let current = peer.region().epoch;
        let stale = ctx.region_epoch.version != current.version || ctx.region_epoch.conf_ver < current.conf_ver;
        if stale && !keel_types::planted::enabled(keel_types::planted::PlantedBug::SkipEpochCheck) {
            // The region and, if this store has it, its right neighbour (a split's other half).
            let region = peer.region().clone();
            let mut current_regions = vec![region.clone()];
            if !region.end_key.is_empty() {
                if let Some(right) =
                    self.peers.values().find(|p| p.is_initialized() && p.region().start_key == region.end_key)
                {
                    current_regions.push(right.region().clone());
                }
            }
            return Err(RegionError::EpochNotMatch { current_regions }.into());
        }
        Ok(())
    }

    fn handle(&mut self, msg: StoreMsg) {
        match msg {
            StoreMsg::Raft(envs) => {
                for env in envs {
                    self.on_raft(env);
                }
            }
            StoreMsg::Propose { ctx, body, reply } => {
                if let Err(e) = self.check_context(&ctx) {
                    let _ = reply.send(Err(e));
                    return;
                }
                let peer = self.peers.get_mut(&ctx.region_id).expect("checked");
                wake_for_work(peer, &mut self.active);
                let cmd = RaftCmd { region_id: ctx.region_id, epoch: peer.region().epoch, body };
                match encode(&cmd) {
                    Ok(data) => {
                        keel_metrics::RAFT_PROPOSALS.inc();
                        peer.propose(data, reply)
                    }
                    Err(e) => {
                        let _ = reply.send(Err(StoreError::Unavailable(format!("command does not encode: {e}"))));
                    }
                }
            }
            StoreMsg::Read { ctx, reply, for_write } => match self.check_context(&ctx) {
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
                Ok(()) => {
                    let peer = self.peers.get_mut(&ctx.region_id).expect("checked");
                    wake_for_work(peer, &mut self.active);
                    if for_write {
                        peer.read_for_write(reply)
                    } else {
                        peer.read(reply)
                    }
                }
            },
            StoreMsg::CreateRegion { region, reply } => {
                let _ = reply.send(self.create_region(region));
            }
            StoreMsg::Operator { region_id, op } => self.on_operator(region_id, op),
            StoreMsg::DestroyStale { region_id, peer_id, conf_ver } => {
                let stale = self.peers.get(&region_id).is_some_and(|p| {
                    // A removed replica decides for itself (PD's view is not enough).
                    p.meta.id == peer_id
                        && !p.is_leader()
                        && p.removal.is_none()
                        && p.region().epoch.conf_ver < conf_ver
                });
                if stale {
                    if let Err(e) = self.destroy_peers(&[region_id]) {
                        tracing::error!(%e, "destroying a stale peer failed");
                    }
                }
            }
            StoreMsg::DownPeers { region_id, peer_id, down } => {
                let removal =
                    self.peers.get_mut(&region_id).filter(|p| p.meta.id == peer_id).and_then(|p| p.removal.as_mut());
                if let Some(removal) = removal {
                    removal.pd_reports_down(down);
                }
            }
            StoreMsg::Status { reply } => {
                let status = self
                    .peers
                    .values()
                    .map(|p| RegionStatus {
                        region: p.region().clone(),
                        is_leader: p.is_leader(),
                        term: p.raw.raft.term,
                        applied_index: p.raw.store().apply_state.applied_index,
                        first_index: p.raw.store().first_index_(),
                        idle: p.is_idle(),
                    })
                    .collect();
                let _ = reply.send(status);
            }
        }
    }

    fn create_region(&mut self, region: Region) -> Result<bool, String> {
        if self.peers.contains_key(&region.id)
            || read::<RegionLocalState>(&*self.engine, &keys::region_state_key(region.id))?.is_some()
        {
            return Ok(false);
        }
        // Never over a replica this store already holds: a store that restarted before it
        // ever created the bootstrap region may meanwhile have received (by snapshot) a
        // region split off it; creating the whole-range bootstrap region over that, then
        // catching it up by snapshot, cleared the old (whole) range and wiped the newer
        // replica's data (list-append swarm seed 34: lost appends, an SI violation). The
        // region's leader creates this store's replica by message instead.
        if let Some(other) = self.peers.values().find(|p| p.is_initialized() && p.region().overlaps(&region)) {
            trace_event!("store.create_refused", "s{} {}: overlaps {:?}", self.cfg.store_id, region.id, other.region());
            return Ok(false);
        }
        let mut batch = WriteBatch::new();
        PeerStorage::write_initial_state(&mut batch, &region);
        self.engine.write(batch, WriteOptions::SYNC).map_err(|e| e.to_string())?;
        let storage = PeerStorage::load(self.engine.clone(), region.clone())?;
        self.peers.insert(region.id, Peer::new(&self.cfg, storage)?);
        self.active.insert(region.id);
        trace_event!("store.create_region", "s{} {} {:?}", self.cfg.store_id, region.id, region.epoch);
        Ok(true)
    }

    fn on_operator(&mut self, region_id: RegionId, op: Operator) {
        let Some(peer) = self.peers.get_mut(&region_id).filter(|p| p.is_leader()) else { return };
        trace_event!("store.operator", "{region_id} {op:?}");
        wake_for_work(peer, &mut self.active);
        let conf_change = |kind, target: keel_types::Peer| ConfChangeCmd {
            region_id,
            epoch: peer.region().epoch,
            kind,
            peer: target,
        };
        let cmd = match op {
            Operator::AddLearner(p) => conf_change(ConfChangeKind::AddLearner, p),
            Operator::PromoteLearner(p) => conf_change(ConfChangeKind::PromoteLearner, p),
            Operator::RemovePeer(p) => conf_change(ConfChangeKind::RemovePeer, p),
            Operator::TransferLeader(p) => {
                if peer.region().peer(p.id).is_some_and(|p| p.role == PeerRole::Voter) {
                    peer.raw.transfer_leader(p.id);
                }
                return;
            }
            Operator::Split { key } => {
                self.pd.ask_split(peer.region().clone(), key);
                return;
            }
            Operator::Merge { target } => {
                // Measured here, not taken from PD (a new leader reports no size until its
                // first split check): the merged region must stay well below a split.
                let (source, engine) = (peer.region().clone(), &*self.engine);
                let size = |r: &Region| {
                    region_stats(engine, r).unwrap_or(keel_storage::RangeStats { bytes: u64::MAX, keys: u64::MAX })
                };
                let (a, b) = (size(&source), size(&target));
                let (keys, bytes) = (a.keys.saturating_add(b.keys), a.bytes.saturating_add(b.bytes));
                if keys > self.cfg.region_split_keys / 2 || bytes > self.cfg.region_split_size_bytes / 2 {
                    trace_event!("merge.prepare_refused", "{region_id} into {}: {keys} keys, {bytes} bytes", target.id);
                    return;
                }
                crate::merge::propose_prepare(&mut self.peers, region_id, target, self.cfg.election_ticks as u64);
                return;
            }
        };
        // Nobody waits for the outcome: PD watches the region's heartbeats instead.
        let (reply, _) = oneshot::channel();
        peer.propose_conf_change(cmd, self.cfg.election_ticks as u64, reply);
    }

    fn on_raft(&mut self, mut env: RaftEnvelope) {
        self.liveness.heard(env.from_peer.store_id, self.ticks);
        if let Some(check) = env.check.take() {
            self.on_peer_check(env, check);
            return;
        }
        if let Some(extra) = env.extra {
            self.on_extra(&env, extra);
            return;
        }
        let Ok(msg) = Message::parse_from_bytes(&env.message) else {
            tracing::warn!(region = env.region_id, "undecodable raft message dropped");
            return;
        };
        let superseded = self
            .peers
            .get(&env.region_id)
            .is_some_and(|p| env.to_peer.store_id == self.cfg.store_id && env.to_peer.id > p.meta.id && !p.is_leader());
        if superseded {
            // PD allocates peer ids in increasing order and a region never has two peers on
            // one store, so a message for a newer peer of this region here means ours was
            // removed while it could not hear of it. Without this, every message for the
            // new peer was dropped until the stale-peer check caught up, and PD kept adding
            // and removing learners that never came to life (register seed 14, membership).
            trace_event!(
                "store.superseded",
                "s{} {} peer {} by {}",
                self.cfg.store_id,
                env.region_id,
                self.peers[&env.region_id].meta.id,
                env.to_peer.id
            );
            if let Err(e) = self.destroy_peers(&[env.region_id]) {
                tracing::error!(%e, "destroying a superseded peer failed");
                return;
            }
        }
        if !self.peers.contains_key(&env.region_id) && !self.maybe_create_peer(&env, &msg) {
            return;
        }
        let peer = self.peers.get_mut(&env.region_id).expect("present or just created");
        if env.to_peer.id != peer.meta.id {
            return;
        }
        if msg.get_msg_type() == MessageType::MsgSnapshot && !self.snapshot_fits(env.region_id, &msg) {
            return;
        }
        let peer = self.peers.get_mut(&env.region_id).expect("checked above");
        if !peer.sleeps_through(&msg) && peer.wake() && peer.is_leader() {
            trace_event!("raft.wake", "s{} {} by {:?}", self.cfg.store_id, env.region_id, msg.get_msg_type());
        }
        self.active.insert(env.region_id);
        peer.remember_peer(env.from_peer);
        trace::record("raft.step", &env.message);
        let _ = peer.raw.step(msg);
    }

    /// True when the snapshot in `msg` for `region_id` overlaps no other initialized replica
    /// of this store, as TiKV's check_snapshot. Applying a snapshot clears the replica's old
    /// range, so initialized replicas must never overlap: a store that created the
    /// whole-range bootstrap region late, while it held an uninitialized replica of a region
    /// split off it, let that replica install its snapshot over the bootstrap region's range;
    /// the bootstrap region's own catch-up snapshot then cleared its old (whole) range and
    /// wiped the newer region's data (list-append seed 34 with isolate-leader, disk-fail and
    /// split: lost appends). A refused snapshot is dropped; the leader sends it again once
    /// the overlapping replica has caught up (shrunk by its own split or snapshot) or been
    /// removed as stale.
    ///
    /// One kind of overlap goes the other way: a replica the snapshot's region has absorbed
    /// by a merge (a source replica here that never learned its merge committed, or whose
    /// target here lags) is destroyed, and the snapshot installed. Absorbed is provable: a
    /// live region always contains its own start key and the version of the region holding
    /// a key only grows, so a snapshot region that holds the replica's start key with a
    /// newer version proves that region dead.
    fn snapshot_fits(&mut self, region_id: RegionId, msg: &Message) -> bool {
        let region = match crate::snapshot::region_of(msg.get_snapshot()) {
            Ok(region) => region,
            Err(e) => {
                tracing::warn!(region = region_id, %e, "undecodable snapshot dropped");
                return false;
            }
        };
        let meta = msg.get_snapshot().get_metadata();
        // raft-rs installs it (rather than dropping it, or fast-forwarding the log it has).
        let installs = self.peers.get(&region_id).is_some_and(|p| {
            meta.index > p.raw.raft.raft_log.committed && p.raw.store().term(meta.index).ok() != Some(meta.term)
        });
        let absorbed: Vec<RegionId> = self
            .peers
            .values()
            .filter(|p| p.region().id != region_id && p.is_initialized() && p.region().overlaps(&region))
            .filter(|p| region.contains(&p.region().start_key) && region.epoch.version > p.region().epoch.version)
            .map(|p| p.region().id)
            .collect();
        if installs && !absorbed.is_empty() {
            trace_event!("store.destroy_absorbed", "s{} {absorbed:?} by {region:?}", self.cfg.store_id);
            if let Err(e) = self.destroy_peers(&absorbed) {
                tracing::error!(%e, "destroying merged replicas failed");
                return false;
            }
        }
        let overlapping = self
            .peers
            .values()
            .find(|p| p.region().id != region_id && p.is_initialized() && p.region().overlaps(&region));
        if let Some(other) = overlapping {
            trace_event!(
                "store.snapshot_refused",
                "s{} {region_id}: {:?}..{:?} overlaps {:?}",
                self.cfg.store_id,
                region.start_key,
                region.end_key,
                other.region()
            );
            return false;
        }
        true
    }

    /// Creates an uninitialized replica for a message from a region's leader that this store
    /// does not host yet (a peer PD just added here); it then catches up by snapshot.
    /// Vote requests create one too (as TiKV's do): when the only replica that applied a
    /// split is the one that lived through a crash, its siblings got the parent region by
    /// snapshot and never created their halves, so the survivor can only win an election
    /// if its vote requests bring them to life (register seed 22). Stale
    /// messages for removed replicas, and messages whose range overlaps a region this store
    /// still holds (a split not yet applied here), create nothing.
    fn maybe_create_peer(&mut self, env: &RaftEnvelope, msg: &Message) -> bool {
        if env.to_peer.store_id != self.cfg.store_id
            || !matches!(
                msg.get_msg_type(),
                MessageType::MsgAppend
                    | MessageType::MsgHeartbeat
                    | MessageType::MsgSnapshot
                    | MessageType::MsgRequestVote
                    | MessageType::MsgRequestPreVote
            )
        {
            return false;
        }
        match read::<RegionLocalState>(&*self.engine, &keys::region_state_key(env.region_id)) {
            Ok(None) => {}
            Ok(Some(old)) if old.state == PeerState::Tombstone && recreates_over_tombstone(&old, env) => {}
            other => {
                trace_event!(
                    "store.create_refused",
                    "s{} {} peer {}: state {other:?}",
                    self.cfg.store_id,
                    env.region_id,
                    env.to_peer.id
                );
                return false;
            }
        }
        let overlapping = self.peers.values().find(|p| {
            let r = p.region();
            p.is_initialized()
                && (env.end_key.is_empty() || r.start_key < env.end_key)
                && (r.end_key.is_empty() || env.start_key < r.end_key)
        });
        if let Some(other) = overlapping {
            trace_event!(
                "store.create_refused",
                "s{} {} peer {}: overlaps {:?}",
                self.cfg.store_id,
                env.region_id,
                env.to_peer.id,
                other.region()
            );
            if matches!(msg.get_msg_type(), MessageType::MsgRequestVote | MessageType::MsgRequestPreVote) {
                if self.split_votes.len() >= SPLIT_VOTES_HELD_MAX {
                    self.split_votes.pop_front();
                }
                self.split_votes.push_back(env.clone());
            }
            return false;
        }
        let storage = PeerStorage::uninitialized(self.engine.clone(), env.region_id);
        match Peer::uninitialized(&self.cfg, storage, env.to_peer) {
            Ok(peer) => {
                trace_event!(
                    "store.create_uninitialized",
                    "s{} {} peer {}",
                    self.cfg.store_id,
                    env.region_id,
                    env.to_peer.id
                );
                self.peers.insert(env.region_id, peer);
                true
            }
            Err(e) => {
                tracing::warn!(region = env.region_id, %e, "could not create a peer");
                false
            }
        }
    }

    fn tick(&mut self) -> Result<(), String> {
        self.ticks += 1;
        let mut gc_batch = WriteBatch::new();
        let (mut done, mut probes) = (Vec::new(), Vec::new());
        for (&region_id, peer) in self.peers.iter_mut() {
            peer.ticks += 1;
            if peer.is_idle() {
                // Asleep: no raft tick, no checks (nothing changes); a leader still reports
                // to PD, whose answers (operators) are how scheduling reaches idle regions.
                peer.idle_tick(&self.cfg);
                if peer.is_leader() && peer.ticks % self.cfg.pd_heartbeat_ticks == 0 {
                    self.pd.region_heartbeat(heartbeat(peer, &self.cfg));
                }
                continue;
            }
            // Once an election timeout, as TiKV's check_before_tick: may the region sleep?
            let may_sleep = self.cfg.hibernate_regions
                && peer.is_leader()
                && peer.raw.raft.election_elapsed + 1 >= self.cfg.election_ticks;
            peer.raw.tick();
            self.active.insert(region_id);
            if may_sleep {
                match peer.hibernate_request() {
                    Some(request) => self.hibernate_requests.push((region_id, request)),
                    None if peer.is_idle() => trace_event!("raft.hibernate", "s{} {region_id}", self.cfg.store_id),
                    None => {}
                }
            }
            peer.expire_reads(self.cfg.election_ticks as u64 * 2);
            // Periodically, and as soon as a peer the last heartbeat called pending has caught
            // up (TiKV: any_new_peer_catch_up), so PD can promote a learner without waiting.
            if peer.is_leader()
                && (peer.ticks % self.cfg.pd_heartbeat_ticks == 0 || caught_up(peer, &peer.reported_pending))
            {
                self.pd.region_heartbeat(heartbeat(peer, &self.cfg));
            }
            if let Some(removal) = peer.removal.as_mut() {
                if peer.ticks % self.cfg.removed_peer_check_ticks == 0 {
                    if removal.done() {
                        trace_event!(
                            "store.removed_done",
                            "s{} {}: the region is past the removal (given up as down: {:?})",
                            self.cfg.store_id,
                            region_id,
                            removal.given_up()
                        );
                        done.push(region_id);
                    } else {
                        // Every voter, not only those still awaited: the answers also bring
                        // newer configurations (a dead voter is awaited until one replaces it).
                        let voters = removal.voters();
                        removal.probed();
                        probes.extend(voters.into_iter().map(|to| probe(peer, to)));
                        // And PD, which knows which of them are down for good.
                        self.pd.check_removal(peer.region_id(), peer.meta);
                    }
                }
            } else if !peer.is_leader()
                && peer.is_initialized()
                && peer.silent_ticks() > self.cfg.stale_peer_check_ticks
                && peer.ticks % self.cfg.stale_peer_check_ticks == 0
            {
                self.pd.check_stale_peer(peer.region(), peer.meta);
            }
            let merging = peer.is_merge_source();
            if peer.is_leader() && !merging && peer.ticks % self.cfg.split_check_ticks == 0 {
                // Measuring scans the region: done here, at the split check's pace, and the
                // result reused by heartbeats.
                let stats = region_stats(&*self.engine, peer.region())?;
                peer.stats = stats;
                let region = peer.region();
                if stats.bytes > self.cfg.region_split_size_bytes || stats.keys > self.cfg.region_split_keys {
                    if let Some(key) = middle_key(&*self.engine, region)? {
                        trace::record("split.ask", &region.id.to_be_bytes());
                        self.pd.ask_split(region.clone(), key);
                    }
                }
            }
            let store = peer.raw.mut_store();
            let applied = store.apply_state.applied_index;
            // BUGGIFY: now and then truncate right up to the applied index, so lagging
            // followers need snapshots.
            let eager = applied > store.apply_state.truncated_index && keel_types::buggify!(0.02);
            if eager || applied.saturating_sub(store.apply_state.truncated_index) > self.cfg.raft_log_gc_threshold {
                let keep = if eager { 0 } else { self.cfg.raft_log_keep_entries };
                store.compact_to(&mut gc_batch, applied - keep).map_err(|e| e.to_string())?;
            }
        }
        let proposed = crate::merge::drive(
            &mut self.peers,
            &*self.engine,
            self.cfg.store_id,
            self.cfg.heartbeat_ticks as u64,
            self.cfg.merge_fence_after_ticks,
        );
        for region_id in proposed {
            if let Some(peer) = self.peers.get_mut(&region_id) {
                wake_for_work(peer, &mut self.active);
            }
        }
        if !gc_batch.is_empty() {
            self.engine.write(gc_batch, WriteOptions::NO_SYNC).map_err(|e| format!("log gc write failed: {e}"))?;
        }
        self.send_envelopes(probes);
        if !done.is_empty() {
            self.destroy_peers(&done)?;
        }
        if self.cfg.hibernate_regions {
            self.beacon_and_wake();
        }
        Ok(())
    }

    /// Answers a removed replica's probe, or takes an answer to this store's.
    fn on_peer_check(&mut self, env: RaftEnvelope, check: PeerCheck) {
        match check {
            PeerCheck::Removed => {
                let (region, live) = match self.peers.get(&env.region_id) {
                    Some(p) if p.meta.id == env.to_peer.id && p.is_initialized() => (p.region().clone(), true),
                    // The asked peer was superseded here by a newer one (ids only grow).
                    Some(p) if p.meta.id > env.to_peer.id => (p.region().clone(), false),
                    Some(_) => return,
                    None => match read_tombstone(&*self.engine, env.region_id) {
                        Some(old) => (old.region, false),
                        None => return,
                    },
                };
                let reply = RaftEnvelope {
                    region_id: env.region_id,
                    from_peer: env.to_peer,
                    to_peer: env.from_peer,
                    region_epoch: region.epoch,
                    start_key: region.start_key.clone(),
                    end_key: region.end_key.clone(),
                    message: Vec::new(),
                    check: Some(if live { PeerCheck::Applied(region) } else { PeerCheck::Destroyed(region) }),
                    extra: None,
                };
                self.send_envelopes(vec![reply]);
            }
            PeerCheck::Applied(region) => self.on_probe_answer(&env, &region, true),
            PeerCheck::Destroyed(region) => self.on_probe_answer(&env, &region, false),
        }
    }

    fn on_probe_answer(&mut self, env: &RaftEnvelope, region: &Region, live: bool) {
        let removal =
            self.peers.get_mut(&env.region_id).filter(|p| p.meta.id == env.to_peer.id).and_then(|p| p.removal.as_mut());
        if let Some(removal) = removal {
            removal.heard(env.from_peer.id, region, live);
        }
    }

    /// One round of raft-rs's Ready protocol for every peer, with a single synced write.
    async fn process_ready(&mut self) -> Result<(), String> {
        let mut batch = WriteBatch::new();
        let mut must_sync = false;
        let mut outbox: Vec<(RegionId, Vec<Message>)> = Vec::new();
        let mut readies = Vec::new();
        let mut effects = ApplyEffects::default();
        let mut new_leaders = Vec::new();
        self.overlay.clear();
        let candidates: Vec<RegionId> = std::mem::take(&mut self.active).into_iter().collect();
        for &region_id in &candidates {
            let Some(peer) = self.peers.get_mut(&region_id) else { continue };
            peer.send_held_reads();
            if !peer.raw.has_ready() {
                continue;
            }
            let mut rd = peer.raw.ready();
            outbox.push((region_id, rd.take_messages()));
            if let Some(ss) = rd.ss() {
                if ss.raft_state == StateRole::Leader && !peer.was_leader {
                    peer.was_leader = true;
                    peer.reset_last_heard();
                    new_leaders.push(region_id);
                    trace_event!("raft.leader", "s{} {region_id}", self.cfg.store_id);
                } else if ss.raft_state != StateRole::Leader {
                    peer.was_leader = false;
                }
            }
            peer.on_read_states(rd.take_read_states());
            if !rd.snapshot().is_empty() {
                // Past every committed entry still queued behind a CommitMerge.
                peer.clear_pending_apply();
                let before = peer.region().clone();
                peer.raw.mut_store().apply_snapshot(&mut batch, rd.snapshot())?;
                trace_event!(
                    "store.apply_snapshot",
                    "s{} {region_id} peer {} {:?}..{:?} -> {:?}",
                    self.cfg.store_id,
                    peer.meta.id,
                    before.start_key,
                    before.end_key,
                    peer.region()
                );
                must_sync = true;
            }
            apply_measured(peer, rd.take_committed_entries(), &mut batch, &mut self.overlay, &mut effects)?;
            if peer.merge_blocked {
                self.merge_blocked.insert(region_id);
            }
            let store = peer.raw.mut_store();
            store.append(&mut batch, rd.entries());
            if let Some(hs) = rd.hs() {
                store.set_hard_state(hs);
            }
            store.stage_raft_state(&mut batch);
            must_sync |= rd.must_sync();
            readies.push((region_id, rd));
        }
        if readies.is_empty() && self.merge_blocked.is_empty() {
            return Ok(());
        }
        self.check_storage_faults(&candidates)?;
        // A Ready's `messages` do not depend on its own entries being persisted (raft-rs
        // documents them as sendable at once; the Raft thesis §10.2.1): the leader's appends
        // go out before its sync, so followers sync in parallel with it rather than after it.
        // Only `persisted_messages` (votes, append responses) must wait for the sync below.
        self.send(outbox);
        // Planted bug: the log is synced a round late, after its persisted messages (append
        // responses, votes) went out and the entries they committed were answered.
        let late = keel_types::planted::enabled(keel_types::planted::PlantedBug::LogPersistedAfterSend);
        if late {
            self.write(batch, false)?;
        } else {
            self.persist(batch, must_sync).await?;
        }

        // After persistence: persisted messages, advance, and whatever became committed.
        let mut batch = WriteBatch::new();
        let mut outbox = Vec::new();
        let mut processed = Vec::with_capacity(readies.len());
        self.overlay.clear();
        for (region_id, mut rd) in readies {
            let peer = self.peers.get_mut(&region_id).expect("peer of a ready");
            let mut msgs = rd.take_persisted_messages();
            let mut light = peer.raw.advance(rd);
            if let Some(commit) = light.commit_index() {
                peer.raw.mut_store().set_commit(commit);
                peer.raw.store().stage_raft_state(&mut batch);
            }
            msgs.extend(light.take_messages());
            outbox.push((region_id, msgs));
            apply_measured(peer, light.take_committed_entries(), &mut batch, &mut self.overlay, &mut effects)?;
            peer.raw.advance_apply();
            if peer.merge_blocked {
                self.merge_blocked.insert(region_id);
            }
            if peer.raw.has_ready() || peer.holds_reads() {
                self.active.insert(region_id);
            }
            processed.push(region_id);
        }
        // CommitMerges whose source replica here has now applied its PrepareMerge.
        processed.extend(crate::merge::resolve(
            &mut self.peers,
            &mut self.merge_blocked,
            &mut batch,
            &mut self.overlay,
            &mut effects,
        )?);
        self.check_storage_faults(&processed)?;
        if !batch.is_empty() {
            self.write(batch, false)?;
        }
        self.send(outbox);
        self.finish_round(effects, new_leaders, &processed)?;
        if late && std::mem::replace(&mut self.sync_owed, must_sync) {
            self.persist(WriteBatch::new(), true).await?;
        }
        Ok(())
    }

    /// Stops the loop when a raft-rs read of the storage of one of `regions` (the peers this
    /// round touched: only they read their storage) failed (a corrupt log entry, say):
    /// raft-rs got a short answer, so nothing of this round may be persisted or sent — the
    /// node stops as it does for a failed write.
    fn check_storage_faults(&self, regions: &[RegionId]) -> Result<(), String> {
        match regions.iter().filter_map(|id| self.peers.get(id)).find_map(|p| p.raw.store().fault()) {
            Some(fault) => Err(format!("store {}: disk read failed, stopping: {fault}", self.cfg.store_id)),
            None => Ok(()),
        }
    }

    /// Writes `batch`, durably with `sync`. A sync takes the disk's time: the batch is
    /// written, the loop waits out the sync latency (the write is in flight — a crash now may
    /// lose it), and only then is it durable and may the round go on.
    async fn persist(&mut self, batch: WriteBatch, sync: bool) -> Result<(), String> {
        match if sync { self.engine.sync_latency() } else { None } {
            Some(latency) => {
                self.write(batch, false)?;
                tokio::time::sleep(latency).await;
                self.write(WriteBatch::new(), true)
            }
            None => self.write(batch, sync),
        }
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), String> {
        trace::record("store.write", &[batch.len() as u8, sync as u8]);
        let start = tokio::time::Instant::now();
        self.engine
            .write(batch, WriteOptions { sync })
            .map_err(|e| format!("store {}: disk write failed, stopping: {e}", self.cfg.store_id))?;
        if sync {
            keel_metrics::SYNC_DURATION.observe(start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn finish_round(
        &mut self,
        effects: ApplyEffects,
        new_leaders: Vec<RegionId>,
        processed: &[RegionId],
    ) -> Result<(), String> {
        for (reply, result) in effects.replies {
            let _ = reply.send(result);
        }
        for (region, campaign) in effects.created {
            if self.peers.contains_key(&region.id) {
                continue;
            }
            let storage = PeerStorage::load(self.engine.clone(), region.clone())?;
            let mut peer = Peer::new(&self.cfg, storage)?;
            if campaign {
                let _ = peer.raw.campaign();
            }
            self.peers.insert(region.id, peer);
            let (held, rest) =
                std::mem::take(&mut self.split_votes).into_iter().partition(|e| e.region_id == region.id);
            self.split_votes = rest;
            for env in held {
                self.on_raft(env);
            }
            self.active.insert(region.id);
        }
        for (left, right) in effects.splits {
            if self.peers.get(&left.id).is_some_and(Peer::is_leader) {
                self.pd.report_split(left, right);
            }
        }
        // A leader tells PD of a membership change at once (as TiKV's does), so the next
        // step of PD's operator (promote the learner, remove the old peer) need not wait for
        // the next periodic heartbeat: repairing many regions went at one step per two
        // heartbeat intervals (scan seed 176: 192 regions left at two voters).
        for region_id in effects.conf_changed {
            if let Some(peer) = self.peers.get_mut(&region_id).filter(|p| p.is_leader()) {
                self.pd.region_heartbeat(heartbeat(peer, &self.cfg));
            }
        }
        if !effects.destroyed.is_empty() {
            self.destroy_peers(&effects.destroyed)?;
        }
        // Reads become servable only as their peer applies, which happens in its Ready.
        for region_id in processed {
            if let Some(peer) = self.peers.get_mut(region_id) {
                peer.serve_ready_reads();
            }
        }
        // A new leader tells PD at once, so clients find it without waiting for a tick.
        for region_id in new_leaders {
            if let Some(peer) = self.peers.get_mut(&region_id).filter(|p| p.is_leader()) {
                self.pd.became_leader(peer.region());
                self.pd.region_heartbeat(heartbeat(peer, &self.cfg));
            }
        }
        Ok(())
    }

    /// Removes replicas from this store: data, log and state go; a tombstone stays.
    fn destroy_peers(&mut self, regions: &[RegionId]) -> Result<(), String> {
        let mut batch = WriteBatch::new();
        for region_id in regions {
            if let Some(mut peer) = self.peers.remove(region_id) {
                peer.fail_pending(RegionError::RegionNotFound { region_id: *region_id });
                peer.raw.mut_store().destroy(&mut batch);
                trace_event!(
                    "store.destroy",
                    "s{} {region_id} peer {} {:?}",
                    self.cfg.store_id,
                    peer.meta.id,
                    peer.region().epoch
                );
            }
        }
        self.write(batch, true)
    }

    /// Sends the round's messages, then tells raft each snapshot it sent is finished.
    ///
    /// The transport is best effort: a snapshot message can be lost (a dropped batch, a
    /// connection cut by a crash). raft-rs keeps a follower in the Snapshot state, sending it
    /// nothing, until the application reports the snapshot's fate — so a lost snapshot left
    /// the follower behind forever (replicas diverged under kill/partition/loss, register
    /// seeds 19, 117, 132, 143, 179, 186). Reporting it finished moves the follower to Probe:
    /// if the snapshot did arrive, the next append matches; if it was lost, the probe is
    /// rejected, the log is truncated below it, and raft sends a new snapshot.
    fn send(&mut self, outbox: Vec<(RegionId, Vec<Message>)>) {
        let snapshots: Vec<(RegionId, u64)> = outbox
            .iter()
            .flat_map(|(region_id, msgs)| {
                msgs.iter().filter(|m| m.get_msg_type() == MessageType::MsgSnapshot).map(move |m| (*region_id, m.to))
            })
            .collect();
        self.send_messages(outbox);
        for (region_id, to) in snapshots {
            if let Some(peer) = self.peers.get_mut(&region_id) {
                peer.raw.report_snapshot(to, raft::SnapshotStatus::Finish);
                self.active.insert(region_id);
            }
        }
    }

    fn send_messages(&self, outbox: Vec<(RegionId, Vec<Message>)>) {
        let mut envs = Vec::new();
        for (region_id, msgs) in outbox {
            let Some(peer) = self.peers.get(&region_id) else { continue };
            for msg in msgs {
                let Some(to) = peer.find_peer(msg.to) else { continue };
                envs.push(peer.envelope_to(to, msg.write_to_bytes().expect("raft message encodes")));
            }
        }
        self.send_envelopes(envs);
    }

    /// Sends envelopes, one batch per store.
    fn send_envelopes(&self, envs: Vec<RaftEnvelope>) {
        let mut by_store: BTreeMap<StoreId, Vec<RaftEnvelope>> = BTreeMap::new();
        for env in envs {
            by_store.entry(env.to_peer.store_id).or_default().push(env);
        }
        for (store_id, envs) in by_store {
            self.transport.send(store_id, envs);
        }
    }
}

/// A removed replica's question to peer `to` of its region: which configuration it applied.
fn probe(peer: &Peer, to: keel_types::Peer) -> RaftEnvelope {
    RaftEnvelope { check: Some(PeerCheck::Removed), ..peer.envelope_to(to, Vec::new()) }
}

/// Entries a follower may lag the commit index before PD counts it as pending.
const PENDING_LAG_MAX: u64 = 64;

/// True when a peer in `reported` (pending at the last heartbeat) is no longer pending.
fn caught_up(peer: &Peer, reported: &[u64]) -> bool {
    !reported.is_empty() && {
        let now: Vec<u64> = peer.pending_peers(PENDING_LAG_MAX).iter().map(|p| p.id).collect();
        reported.iter().any(|id| !now.contains(id))
    }
}

/// The leader's heartbeat to PD; remembers which peers it reported pending.
fn heartbeat(peer: &mut Peer, cfg: &StoreConfig) -> RegionHeartbeat {
    let stats = peer.stats;
    let tick_ms = cfg.tick_interval.as_millis().max(1) as u64;
    let pending_peers = peer.pending_peers(PENDING_LAG_MAX);
    peer.reported_pending = pending_peers.iter().map(|p| p.id).collect();
    RegionHeartbeat {
        region: peer.region().clone(),
        leader: Some(peer.meta),
        term: peer.raw.raft.term,
        // Silent for two election timeouts: down (PD decides when down is down for good).
        down_peers: peer
            .down_peers(2 * cfg.election_ticks as u64)
            .into_iter()
            .map(|(p, ticks)| (p, ticks * tick_ms / 1000))
            .collect(),
        pending_peers,
        approximate_size_bytes: stats.bytes,
        approximate_keys: stats.keys,
        ..Default::default()
    }
}

/// Applies a peer's committed entries, counting them and timing the apply for `/metrics`.
fn apply_measured(
    peer: &mut Peer,
    entries: Vec<raft::eraftpb::Entry>,
    batch: &mut WriteBatch,
    overlay: &mut Overlay,
    effects: &mut ApplyEffects,
) -> Result<(), String> {
    if entries.is_empty() {
        return Ok(());
    }
    let count = entries.len() as u64;
    keel_metrics::RAFT_COMMITS.inc_by(count);
    let start = tokio::time::Instant::now();
    peer.apply_committed(entries, batch, overlay, effects)?;
    keel_metrics::APPLY_DURATION.observe(start.elapsed().as_secs_f64());
    keel_metrics::RAFT_APPLIES.inc_by(count);
    Ok(())
}

/// True when a message may create a replica of a region whose replica on this store was
/// destroyed (tombstoned): it must come from a newer configuration, and address a newer peer
/// than the destroyed one. Peer ids are never reused, so a message for the destroyed peer's
/// own id is from a leader that has not yet applied its removal; recreating that peer empty
/// let the leader's heartbeat commit an index the new incarnation never had, and raft-rs
/// panicked (bank swarm seed 459: a replica removed while behind, destroyed as stale, then
/// brought back by a message carrying a newer conf_ver but the old peer id).
fn recreates_over_tombstone(old: &RegionLocalState, env: &RaftEnvelope) -> bool {
    let newer_config = env.region_epoch.conf_ver > old.region.epoch.conf_ver;
    let newer_peer = old.region.peer_on_store(env.to_peer.store_id).is_none_or(|p| env.to_peer.id > p.id);
    newer_config && newer_peer
}
