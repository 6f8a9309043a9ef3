//! One region's replica on this store: the raft-rs node, the proposals and reads waiting
//! on it, and how its committed entries are applied.

mod hibernate;

use crate::apply::{apply_cmd, ApplyOutcome, Overlay};
use crate::cmd::{AdminRequest, CmdBody, CmdResult, ConfChangeCmd, ConfChangeKind, RaftCmd};
use crate::config::StoreConfig;
use crate::peer_storage::{PeerState, PeerStorage};
use crate::removal::Removal;
use crate::ReadView;
use hibernate::Hibernation;
use keel_storage::WriteBatch;
use keel_types::codec::{decode, encode};
use keel_types::proto::store::{RaftEnvelope, StoreError};
use keel_types::trace_event;
use keel_types::{Peer as PeerMeta, PeerRole, Region, RegionError, RegionId};
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType};
use raft::{RawNode, StateRole};
use std::collections::{BTreeMap, VecDeque};
use tokio::sync::oneshot;

/// Where a proposal's result goes.
pub type ProposeReply = oneshot::Sender<Result<CmdResult, StoreError>>;
/// Where a read's view goes.
pub type ReadReply = oneshot::Sender<Result<ReadView, StoreError>>;

struct Proposal {
    index: u64,
    term: u64,
    reply: ProposeReply,
}

struct WaitingRead {
    since_tick: u64,
    version: u64,
    reply: ReadReply,
    /// Whether the read index request went to raft. A leader that has not committed an
    /// entry of its term yet holds it back: raft-rs drops such a request without a word,
    /// and the read would wait until it expired (while a transactional command holds its
    /// latches).
    sent: bool,
}

/// Replies and follow-ups that must wait until the round's batch is on disk.
#[derive(Default)]
pub struct ApplyEffects {
    /// Proposal results to send.
    pub replies: Vec<(ProposeReply, Result<CmdResult, StoreError>)>,
    /// Regions created by splits applied in this round: (new region, campaign now).
    pub created: Vec<(Region, bool)>,
    /// Splits applied in this round: (left, right), to report to PD.
    pub splits: Vec<(Region, Region)>,
    /// Regions whose membership or shape changed by a membership change or a merge step
    /// in this round (their leaders tell PD at once).
    pub conf_changed: Vec<RegionId>,
    /// Regions whose replica on this store was a learner the region removed: no
    /// configuration ever counted its vote, so it is destroyed at once.
    pub destroyed: Vec<RegionId>,
}

/// A region replica.
pub struct Peer {
    /// The raft node over this peer's storage.
    pub raw: RawNode<PeerStorage>,
    /// This replica's identity.
    pub meta: PeerMeta,
    proposals: VecDeque<Proposal>,
    next_read_ctx: u64,
    waiting_reads: BTreeMap<u64, WaitingRead>,
    ready_reads: VecDeque<(u64, u64, ReadReply)>,
    /// Ticks seen (a clock for expiring reads and pacing heartbeats).
    pub ticks: u64,
    /// Whether this peer led at the end of the last round.
    pub was_leader: bool,
    peer_cache: BTreeMap<u64, PeerMeta>,
    last_heard: BTreeMap<u64, u64>,
    last_message_tick: u64,
    /// The region's size as last measured by the split check (reported in heartbeats).
    pub stats: keel_storage::RangeStats,
    /// Peers the last heartbeat to PD reported pending: when one catches up, the leader
    /// tells PD at once (PD promotes a learner only once it is no longer pending).
    pub reported_pending: Vec<u64>,
    /// Set once this replica applied its own removal: it then only votes and acknowledges
    /// appends until the rest of the region is past the removal (see `removal.rs`).
    pub removal: Option<Removal>,
    hibernation: Hibernation,
    /// Committed entries raft handed out that are not applied yet: they queue behind a
    /// CommitMerge whose source replica on this store is not ready (see [`crate::merge`]).
    pending_apply: VecDeque<Entry>,
    /// True when the front of `pending_apply` is such a CommitMerge.
    pub merge_blocked: bool,
    /// As a merge source's leader: the tick from which [`crate::merge::drive`] acts on it
    /// again, and the tick it first saw the merge (to give up on a commit in time).
    pub merge_next_tick: u64,
    /// See `merge_next_tick`.
    pub merge_seen_tick: Option<u64>,
}

/// What applying one entry came to.
enum Applied {
    /// Applied (`None`: an empty entry).
    Outcome(Option<ApplyOutcome>),
    /// A CommitMerge: the store applies it once the source replica here is ready.
    WaitForSource,
}

impl Peer {
    /// Starts a replica over its loaded storage.
    pub fn new(cfg: &StoreConfig, storage: PeerStorage) -> Result<Peer, String> {
        let meta = *storage
            .region
            .peer_on_store(cfg.store_id)
            .ok_or_else(|| format!("region {} has no peer on store {}", storage.region.id, cfg.store_id))?;
        Peer::with_meta(cfg, storage, meta)
    }

    /// A replica that applied its own removal before its store restarted (`meta` is its
    /// identity: the region no longer lists it).
    pub fn removed(cfg: &StoreConfig, storage: PeerStorage, meta: PeerMeta) -> Result<Peer, String> {
        let removal = Removal::new(&storage.region);
        let mut peer = Peer::with_meta(cfg, storage, meta)?;
        peer.removal = Some(removal);
        Ok(peer)
    }

    /// A replica created by a message from its region's leader before this store holds any
    /// of the region: it waits for a snapshot.
    pub fn uninitialized(cfg: &StoreConfig, storage: PeerStorage, meta: PeerMeta) -> Result<Peer, String> {
        Peer::with_meta(cfg, storage, meta)
    }

    fn with_meta(cfg: &StoreConfig, storage: PeerStorage, meta: PeerMeta) -> Result<Peer, String> {
        let raft_cfg = raft::Config {
            id: meta.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: storage.apply_state.applied_index,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_cfg.validate().map_err(|e| e.to_string())?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&raft_cfg, storage, &logger).map_err(|e| e.to_string())?;
        Ok(Peer {
            raw,
            meta,
            proposals: VecDeque::new(),
            next_read_ctx: 1,
            waiting_reads: BTreeMap::new(),
            ready_reads: VecDeque::new(),
            ticks: 0,
            was_leader: false,
            peer_cache: BTreeMap::new(),
            last_heard: BTreeMap::new(),
            last_message_tick: 0,
            stats: keel_storage::RangeStats::default(),
            reported_pending: Vec::new(),
            removal: None,
            hibernation: Hibernation::default(),
            pending_apply: VecDeque::new(),
            merge_blocked: false,
            merge_next_tick: 0,
            merge_seen_tick: None,
        })
    }

    /// False until the replica holds its region's metadata and data.
    pub fn is_initialized(&self) -> bool {
        self.raw.store().is_initialized()
    }

    /// Remembers a peer seen in a message, so replies reach peers the region metadata here
    /// does not list yet (an uninitialized replica knows no peers at all), and when it was
    /// last heard from (for the leader's down-peer report).
    pub fn remember_peer(&mut self, peer: PeerMeta) {
        self.peer_cache.insert(peer.id, peer);
        self.last_heard.insert(peer.id, self.ticks);
        self.last_message_tick = self.ticks;
    }

    /// Starts the down-peer clock of every peer afresh: a new leader has heard from nobody
    /// yet, and must not report peers down for silence that predates its leadership.
    pub fn reset_last_heard(&mut self) {
        let now = self.ticks;
        for p in &self.raw.store().region.peers {
            self.last_heard.insert(p.id, now);
        }
    }

    /// Ticks since this replica last heard from any other peer of its region. A follower
    /// that hears nothing for long may have been removed while it was cut off.
    pub fn silent_ticks(&self) -> u64 {
        self.ticks.saturating_sub(self.last_message_tick)
    }

    /// Peers the leader has not heard from for more than `down_after_ticks`, with the ticks
    /// since it last did. None while the region sleeps: every peer agreed to sleep, and
    /// silence is then what is expected (a store that goes silent wakes the region).
    pub fn down_peers(&self, down_after_ticks: u64) -> Vec<(PeerMeta, u64)> {
        if self.is_idle() {
            return Vec::new();
        }
        self.region()
            .peers
            .iter()
            .filter(|p| p.id != self.meta.id)
            .filter_map(|p| {
                let silent = self.ticks.saturating_sub(self.last_heard.get(&p.id).copied().unwrap_or(0));
                (silent > down_after_ticks).then_some((*p, silent))
            })
            .collect()
    }

    /// Peers whose log lags the leader's commit index by more than `lag_max` entries (a
    /// learner still catching up, or a follower that fell behind).
    pub fn pending_peers(&self, lag_max: u64) -> Vec<PeerMeta> {
        let committed = self.raw.raft.raft_log.committed;
        self.region()
            .peers
            .iter()
            .filter(|p| p.id != self.meta.id)
            .filter(|p| {
                self.raw.raft.prs().get(p.id).is_none_or(|pr| pr.matched == 0 || pr.matched + lag_max < committed)
            })
            .copied()
            .collect()
    }

    /// The peer with raft id `id`, from the region or from messages seen.
    pub fn find_peer(&self, id: u64) -> Option<PeerMeta> {
        self.region().peer(id).copied().or_else(|| self.peer_cache.get(&id).copied())
    }

    /// Proposes a membership change; the reply comes when it applies (or is superseded).
    pub fn propose_conf_change(&mut self, cmd: ConfChangeCmd, healthy_within_ticks: u64, reply: ProposeReply) {
        if !self.is_leader() {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        if let Err(why) = self.check_conf_change_safe(&cmd, healthy_within_ticks) {
            trace_event!("raft.conf_change_refused", "peer {} {} {:?}: {why}", self.meta.id, cmd.region_id, cmd.kind);
            let _ = reply.send(Err(StoreError::Unavailable(why)));
            return;
        }
        let change_type = match cmd.kind {
            ConfChangeKind::AddLearner => ConfChangeType::AddLearnerNode,
            ConfChangeKind::PromoteLearner => ConfChangeType::AddNode,
            ConfChangeKind::RemovePeer => ConfChangeType::RemoveNode,
        };
        let mut cc = ConfChangeV2::default();
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change_type);
        single.node_id = cmd.peer.id;
        cc.mut_changes().push(single);
        let context = match encode(&cmd) {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Err(StoreError::Unavailable(format!("conf change does not encode: {e}"))));
                return;
            }
        };
        let before = self.raw.raft.raft_log.last_index();
        if self.raw.propose_conf_change(context, cc).is_err() || self.raw.raft.raft_log.last_index() == before {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        self.proposals.push_back(Proposal {
            index: self.raw.raft.raft_log.last_index(),
            term: self.raw.raft.term,
            reply,
        });
    }

    /// Refuses a voter removal or promotion after which the healthy voters would not be a
    /// quorum (TiKV's "unsafe conf change" check). Healthy: the leader itself, or a voter
    /// that has acknowledged entries in this leader's term and was heard from within
    /// `healthy_within_ticks`. Without it, PD could remove a healthy voter while another
    /// had never come to life (its store missed the split that created it), leaving a
    /// two-voter region that could never elect a leader again (register seed 104).
    fn check_conf_change_safe(&self, cmd: &ConfChangeCmd, healthy_within_ticks: u64) -> Result<(), String> {
        let region = self.region();
        let mut voters: Vec<u64> = region.peers.iter().filter(|p| p.role == PeerRole::Voter).map(|p| p.id).collect();
        match cmd.kind {
            ConfChangeKind::AddLearner => return Ok(()),
            ConfChangeKind::RemovePeer => voters.retain(|&id| id != cmd.peer.id),
            ConfChangeKind::PromoteLearner => voters.push(cmd.peer.id),
        }
        let healthy = |id: u64| {
            id == self.meta.id
                || (self.raw.raft.prs().get(id).is_some_and(|pr| pr.matched > 0)
                    && self.last_heard.get(&id).is_some_and(|&t| self.ticks.saturating_sub(t) <= healthy_within_ticks))
        };
        let up = voters.iter().filter(|&&id| healthy(id)).count();
        if voters.is_empty() || up <= voters.len() / 2 {
            return Err(format!(
                "unsafe conf change: only {up} of the {} voters after it are healthy (voters {voters:?})",
                voters.len()
            ));
        }
        Ok(())
    }

    /// The region id.
    pub fn region_id(&self) -> RegionId {
        self.raw.store().region.id
    }

    /// An envelope from this replica to `to` carrying the raft `message` (empty for the side
    /// channels: a removed replica's probe, hibernation requests), under the region's current
    /// epoch and range.
    pub fn envelope_to(&self, to: PeerMeta, message: Vec<u8>) -> RaftEnvelope {
        let region = self.region();
        RaftEnvelope {
            region_id: region.id,
            from_peer: self.meta,
            to_peer: to,
            region_epoch: region.epoch,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
            message,
            check: None,
            extra: None,
        }
    }

    /// The region as this replica knows it.
    pub fn region(&self) -> &Region {
        &self.raw.store().region
    }

    /// True while this replica's region is the source of a merge (it applied the
    /// PrepareMerge and is frozen until CommitMerge or RollbackMerge).
    pub fn is_merge_source(&self) -> bool {
        self.raw.store().merge_state.is_some()
    }

    /// True when this replica leads its region.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this replica believes in, if any.
    pub fn leader(&self) -> Option<PeerMeta> {
        let id = self.raw.raft.leader_id;
        self.region().peer(id).copied()
    }

    /// The error to answer a client that reached a non-leader.
    pub fn not_leader(&self) -> StoreError {
        RegionError::NotLeader { region_id: self.region_id(), leader: self.leader() }.into()
    }

    /// Proposes an encoded command; the reply comes when it applies (or is superseded).
    pub fn propose(&mut self, data: Vec<u8>, reply: ProposeReply) {
        if !self.is_leader() {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        let before = self.raw.raft.raft_log.last_index();
        if self.raw.propose(vec![], data).is_err() || self.raw.raft.raft_log.last_index() == before {
            // Dropped (e.g. a leader transfer is in progress).
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        if keel_types::planted::enabled(keel_types::planted::PlantedBug::AckBeforeCommit) {
            let _ = reply.send(Ok(CmdResult::Write(vec![])));
            return;
        }
        self.proposals.push_back(Proposal {
            index: self.raw.raft.raft_log.last_index(),
            term: self.raw.raft.term,
            reply,
        });
    }

    /// Starts a linearizable read: the view is handed out once the read index is applied.
    ///
    /// The view is refused with `EpochNotMatch` if the region's version changed while the read
    /// waited (a split applied first): the caller routed by the old range, and a view of the
    /// narrower region would silently drop part of what it asked for.
    pub fn read(&mut self, reply: ReadReply) {
        if !self.is_leader() {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        if keel_types::planted::enabled(keel_types::planted::PlantedBug::SkipReadIndex) {
            let view = ReadView { region: self.region().clone(), snapshot: self.raw.store().engine().snapshot() };
            let _ = reply.send(Ok(view));
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let sent = self.raw.raft.commit_to_current_term();
        if sent {
            self.raw.read_index(ctx.to_be_bytes().to_vec());
        }
        let version = self.region().epoch.version;
        self.waiting_reads.insert(ctx, WaitingRead { since_tick: self.ticks, version, reply, sent });
    }

    /// A view for computing a write that will be proposed: the applied state at once when
    /// this leader has applied an entry of its own term (so every entry of earlier terms is
    /// applied: TiKV's applied_term == term), else a linearizable read ([`Peer::read`]).
    /// Sound only for a command that proposes what it computed and keeps its keys latched
    /// until that applies: its entry then follows, in the log, every applied write of its
    /// keys, and it commits only if no later leader ordered anything before it (a deposed
    /// leader's entry commits, if ever, before the next leader's first own entry, which
    /// that leader applies before computing anything).
    pub fn read_for_write(&mut self, reply: ReadReply) {
        let applied = self.raw.store().apply_state.applied_index;
        let term = self.raw.raft.term;
        if self.is_leader() && self.raw.raft.raft_log.term(applied).is_ok_and(|t| t == term) {
            let view = ReadView { region: self.region().clone(), snapshot: self.raw.store().engine().snapshot() };
            let _ = reply.send(Ok(view));
            return;
        }
        self.read(reply)
    }

    /// Sends the read index requests held back until this leader committed an entry of its
    /// term (see [`Peer::read`]). Call before collecting the round's readies.
    pub fn send_held_reads(&mut self) {
        if !self.is_leader() || !self.raw.raft.commit_to_current_term() {
            return;
        }
        for (ctx, w) in self.waiting_reads.iter_mut().filter(|(_, w)| !w.sent) {
            w.sent = true;
            self.raw.read_index(ctx.to_be_bytes().to_vec());
        }
    }

    /// True while read index requests are held back for this leader's first commit: the
    /// store loop must look at the peer again next round to send them.
    pub fn holds_reads(&self) -> bool {
        self.waiting_reads.values().any(|w| !w.sent)
    }

    /// Moves confirmed reads (from a ready's read states) to the apply queue.
    pub fn on_read_states(&mut self, states: Vec<raft::ReadState>) {
        for rs in states {
            let Ok(bytes) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else { continue };
            if let Some(w) = self.waiting_reads.remove(&u64::from_be_bytes(bytes)) {
                self.ready_reads.push_back((rs.index, w.version, w.reply));
            }
        }
    }

    /// Fails reads that waited too long (raft may drop a read index silently) or that can
    /// no longer be confirmed because this peer stopped leading.
    pub fn expire_reads(&mut self, max_wait_ticks: u64) {
        let leader = self.is_leader();
        let now = self.ticks;
        let expired: Vec<u64> = self
            .waiting_reads
            .iter()
            .filter(|(_, w)| !leader || now.saturating_sub(w.since_tick) > max_wait_ticks)
            .map(|(ctx, _)| *ctx)
            .collect();
        for ctx in expired {
            if let Some(w) = self.waiting_reads.remove(&ctx) {
                let _ = w.reply.send(Err(self.not_leader()));
            }
        }
    }

    /// Answers every waiting proposal and read: the replica is going away. A read gets `err`
    /// (it changed nothing). A proposal's outcome is unknown: it is in the log, and the rest
    /// of the region may have committed and applied it while this replica, cut off, never
    /// learnt of it before it was found removed. A region error says "did not apply, retry":
    /// a CAS answered so was retried and could be reported failed although it had applied.
    pub fn fail_pending(&mut self, err: RegionError) {
        let region_id = self.region_id();
        for p in self.proposals.drain(..) {
            let reason =
                format!("proposal {}/{} undecided: region {region_id}'s replica was destroyed", p.index, p.term);
            let _ = p.reply.send(Err(StoreError::OutcomeUnknown(reason)));
        }
        for (_, w) in std::mem::take(&mut self.waiting_reads) {
            let _ = w.reply.send(Err(err.clone().into()));
        }
        for (_, _, reply) in self.ready_reads.drain(..) {
            let _ = reply.send(Err(err.clone().into()));
        }
    }

    /// Hands out every read whose index has been applied. Call after the round's writes.
    pub fn serve_ready_reads(&mut self) {
        let applied = self.raw.store().apply_state.applied_index;
        while self.ready_reads.front().is_some_and(|(index, _, _)| *index <= applied) {
            let (_, version, reply) = self.ready_reads.pop_front().expect("front exists");
            let skip = keel_types::planted::enabled(keel_types::planted::PlantedBug::SkipEpochCheck);
            if version != self.region().epoch.version && !skip {
                let _ =
                    reply.send(Err(RegionError::EpochNotMatch { current_regions: vec![self.region().clone()] }.into()));
                continue;
            }
            let view = ReadView { region: self.region().clone(), snapshot: self.raw.store().engine().snapshot() };
            let _ = reply.send(Ok(view));
        }
    }

    /// Applies committed entries into `batch`; results are collected in `effects` and must
    /// only be released after the batch is written.
    pub fn apply_committed(
        &mut self,
        entries: Vec<Entry>,
        batch: &mut WriteBatch,
        overlay: &mut Overlay,
        effects: &mut ApplyEffects,
    ) -> Result<(), String> {
        // A merge target may have caught this replica up from its own log (see
        // `merge::resolve`) past what raft-rs knows was applied: those entries come again.
        let seen = self.pending_apply.back().map_or(self.applied_index(), |e| e.index);
        self.pending_apply.extend(entries.into_iter().filter(|e| e.index > seen));
        self.apply_pending(batch, overlay, effects)
    }

    /// Applies queued committed entries in order, stopping at a CommitMerge (left at the
    /// front, [`Peer::merge_blocked`] set) for the store to resolve.
    pub fn apply_pending(
        &mut self,
        batch: &mut WriteBatch,
        overlay: &mut Overlay,
        effects: &mut ApplyEffects,
    ) -> Result<(), String> {
        let mut applied_any = false;
        while !self.merge_blocked {
            if self.removal.is_some() {
                // Removed: what follows its removal is no longer this replica's to apply (a
                // split would create replicas on this store the region no longer places here).
                self.pending_apply.clear();
                break;
            }
            let Some(entry) = self.pending_apply.pop_front() else { break };
            match self.apply_entry(&entry, batch, overlay, effects)? {
                Applied::Outcome(outcome) => {
                    self.raw.mut_store().apply_state.applied_index = entry.index;
                    self.answer(entry.index, entry.term, outcome, effects);
                    applied_any = true;
                }
                Applied::WaitForSource => {
                    self.pending_apply.push_front(entry);
                    self.merge_blocked = true;
                }
            }
        }
        if applied_any {
            self.raw.store().stage_apply_state(batch);
        }
        Ok(())
    }

    /// The CommitMerge entry this peer's apply waits on, if it is blocked.
    pub fn blocked_entry(&self) -> Option<&Entry> {
        self.pending_apply.front().filter(|_| self.merge_blocked)
    }

    /// Records the outcome of the blocked CommitMerge (its effects are staged by the
    /// caller) and applies what queued behind it.
    pub fn finish_blocked(
        &mut self,
        outcome: ApplyOutcome,
        batch: &mut WriteBatch,
        overlay: &mut Overlay,
        effects: &mut ApplyEffects,
    ) -> Result<(), String> {
        let entry = self.pending_apply.pop_front().ok_or("no blocked entry")?;
        self.merge_blocked = false;
        self.raw.mut_store().apply_state.applied_index = entry.index;
        self.answer(entry.index, entry.term, Some(outcome), effects);
        self.raw.store().stage_apply_state(batch);
        self.apply_pending(batch, overlay, effects)
    }

    /// Drops queued entries: a snapshot past them is being installed.
    pub fn clear_pending_apply(&mut self) {
        self.pending_apply.clear();
        self.merge_blocked = false;
    }

    /// The highest applied index.
    pub fn applied_index(&self) -> u64 {
        self.raw.store().apply_state.applied_index
    }

    fn apply_entry(
        &mut self,
        entry: &Entry,
        batch: &mut WriteBatch,
        overlay: &mut Overlay,
        effects: &mut ApplyEffects,
    ) -> Result<Applied, String> {
        match entry.get_entry_type() {
            EntryType::EntryNormal if entry.data.is_empty() => Ok(Applied::Outcome(None)),
            EntryType::EntryNormal => {
                let cmd: RaftCmd =
                    decode(&entry.data).map_err(|e| format!("undecodable entry {}: {e}", entry.index))?;
                let merging = self.is_merge_source();
                match &cmd.body {
                    // A merge source is frozen: only its rollback applies.
                    _ if merging && !matches!(cmd.body, CmdBody::Admin(AdminRequest::RollbackMerge { .. })) => {
                        let current_regions = vec![self.region().clone()];
                        return Ok(Applied::Outcome(Some(Err(RegionError::EpochNotMatch { current_regions }))));
                    }
                    CmdBody::Admin(AdminRequest::CommitMerge { .. }) => return Ok(Applied::WaitForSource),
                    CmdBody::Admin(
                        AdminRequest::PrepareMerge { .. }
                        | AdminRequest::RollbackMerge { .. }
                        | AdminRequest::FenceMerge,
                    ) => {
                        let outcome = crate::merge::apply_step(self.raw.mut_store(), cmd, entry, batch);
                        if outcome.is_ok() {
                            effects.conf_changed.push(self.region_id());
                        }
                        return Ok(Applied::Outcome(Some(outcome)));
                    }
                    _ => {}
                }
                let was_leader = self.is_leader();
                let store = self.raw.mut_store();
                let engine = store.engine().clone();
                let outcome = apply_cmd(&*engine, overlay, batch, &mut store.region, cmd)?;
                if let Ok(CmdResult::Split(regions)) = &outcome {
                    store.stage_region_state(batch, PeerState::Normal);
                    let right = regions[1].clone();
                    PeerStorage::write_initial_state(batch, &right);
                    effects.created.push((right, was_leader));
                    effects.splits.push((regions[0].clone(), regions[1].clone()));
                }
                Ok(Applied::Outcome(Some(outcome)))
            }
            EntryType::EntryConfChangeV2 => Ok(Applied::Outcome(Some(self.apply_conf_change(entry, batch, effects)?))),
            other => Err(format!("region {}: unsupported entry type {other:?} at {}", self.region_id(), entry.index)),
        }
    }

    fn apply_conf_change(
        &mut self,
        entry: &Entry,
        batch: &mut WriteBatch,
        effects: &mut ApplyEffects,
    ) -> Result<ApplyOutcome, String> {
        let cc = ConfChangeV2::parse_from_bytes(&entry.data)
            .map_err(|e| format!("undecodable conf change at {}: {e}", entry.index))?;
        let cmd: ConfChangeCmd =
            decode(&entry.context).map_err(|e| format!("undecodable conf change context at {}: {e}", entry.index))?;
        let region = self.region().clone();
        let existing = region.peer(cmd.peer.id).copied();
        let valid = match cmd.kind {
            ConfChangeKind::AddLearner => existing.is_none() && region.peer_on_store(cmd.peer.store_id).is_none(),
            ConfChangeKind::PromoteLearner => existing.is_some_and(|p| p.role == PeerRole::Learner),
            ConfChangeKind::RemovePeer => existing.is_some(),
        };
        // A merge source's membership is frozen (its PrepareMerge bumped conf_ver too).
        let frozen = self.is_merge_source();
        if cmd.epoch.conf_ver != region.epoch.conf_ver || !valid || frozen {
            // Rejected: raft-rs must then not be told about it at all.
            return Ok(Err(RegionError::EpochNotMatch { current_regions: vec![region] }));
        }
        self.raw
            .apply_conf_change(&cc)
            .map_err(|e| format!("region {}: conf change rejected by raft: {e}", region.id))?;
        let store = self.raw.mut_store();
        let r = &mut store.region;
        r.epoch.conf_ver += 1;
        match cmd.kind {
            ConfChangeKind::AddLearner => r.peers.push(PeerMeta { role: PeerRole::Learner, ..cmd.peer }),
            ConfChangeKind::PromoteLearner => {
                r.peers.iter_mut().filter(|p| p.id == cmd.peer.id).for_each(|p| p.role = PeerRole::Voter)
            }
            ConfChangeKind::RemovePeer => r.peers.retain(|p| p.id != cmd.peer.id),
        }
        let region = r.clone();
        let removed_self = cmd.kind == ConfChangeKind::RemovePeer && cmd.peer.id == self.meta.id;
        store.stage_region_state(batch, if removed_self { PeerState::Removed(self.meta) } else { PeerState::Normal });
        if cmd.kind == ConfChangeKind::AddLearner {
            // A new peer is silent until it has been created and caught up; it is not down.
            self.last_heard.insert(cmd.peer.id, self.ticks);
        }
        effects.conf_changed.push(region.id);
        if removed_self && existing.is_some_and(|p| p.role == PeerRole::Learner) {
            // Only added as a learner and never promoted (no membership change demotes): no
            // survivor's configuration counts its vote. It applies nothing more and goes.
            self.removal = Some(Removal::new(&region));
            effects.destroyed.push(region.id);
        } else if removed_self {
            self.removal = Some(Removal::new(&region));
            if self.is_leader() {
                // raft-rs lets a leader outside its configuration lead on, refusing every
                // proposal; stepping down (same term, vote kept) lets the voters elect one
                // of themselves. PD hands leadership away before removing a leader, so this
                // only follows a transfer that raced the removal.
                let term = self.raw.raft.term;
                self.raw.raft.become_follower(term, raft::INVALID_ID);
            }
            trace_event!(
                "store.removed",
                "peer {} {} {:?}: votes on until the region is past it",
                self.meta.id,
                region.id,
                region.epoch
            );
        }
        trace_event!("raft.conf_change", "peer {} {} {:?} {:?}", self.meta.id, region.id, cmd.kind, cmd.peer);
        Ok(Ok(CmdResult::ConfChange(region)))
    }

    /// Answers the proposals that entry `(index, term)`, just applied, decides.
    ///
    /// The queue is in proposal order, which is `(term, index)` order — not index order: a
    /// leader that lost its leadership with proposals still queued (its uncommitted tail
    /// truncated by the next leader) and then won again proposes at indexes at or below the
    /// old ones. So every proposal up to `(term, index)` in that order is decided here, as
    /// TiKV's `pop_normal`; comparing indexes alone left the new term's proposals stuck
    /// behind the old term's, to be answered `StaleCommand` long after they had applied
    /// (register seed 27 under suspend: a CAS that took effect was retried and reported
    /// failed).
    fn answer(&mut self, index: u64, term: u64, outcome: Option<ApplyOutcome>, effects: &mut ApplyEffects) {
        while let Some(p) = self.proposals.front() {
            if (p.term, p.index) > (term, index) {
                break;
            }
            let p = self.proposals.pop_front().expect("front exists");
            let result = if p.index == index && p.term == term {
                match &outcome {
                    Some(Ok(r)) => Ok(r.clone()),
                    Some(Err(e)) => Err(e.clone().into()),
                    None => Err(RegionError::StaleCommand.into()),
                }
            } else if p.index >= index {
                // The committed log holds an entry of term `term` or later at `p.index` (terms
                // never decrease along the log), not this proposal of an earlier term.
                Err(RegionError::StaleCommand.into())
            } else {
                // Its index went by without deciding it: a snapshot covered it (it may well
                // have been committed), or an entry of an earlier term than its own was
                // applied there. This replica cannot tell which.
                Err(StoreError::OutcomeUnknown(format!(
                    "proposal {}/{} undecided: its index went by in a snapshot or under an entry of an earlier term",
                    p.index, p.term
                )))
            };
            effects.replies.push((p.reply, result));
        }
    }
}
