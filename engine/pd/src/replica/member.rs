//! One member of a replicated PD: a raft-rs group over the members' `pd/` state, whose
//! leader runs the [`Pd`] state machine and proposes every write it makes.
//!
//! How a request is answered (see [`Member::call`]): on the leader, the `Pd` handles it at
//! once under a lock (so answers are computed in one order), its writes are proposed in that
//! same order, and the answer leaves only when everything proposed up to it has been applied
//! and the leader still holds its lease. A follower answers `Unavailable` naming the leader
//! (clients move on to the next endpoint), except `GetMembers`, which it answers itself.
//!
//! **Leadership and the TSO.** A new leader opens its `Pd` from the applied state only after
//! applying every entry before its own first one, so its TSO resumes above the window the
//! last leader persisted and its id allocator above the last high-water mark. A deposed
//! leader that has not noticed yet must not serve timestamps below ones the new leader has
//! served: every answer needs a *lease*, renewed by a read-index round each tick and valid
//! for [`LEASE`] after the round was sent. No other member can win an election inside it:
//! the quorum that acknowledged the round ignores votes for an election timeout after
//! hearing from the leader (raft-rs `check_quorum`), and a restarted member (which has
//! forgotten whom it heard from) stays silent for an election timeout before it starts.

use super::log::{encode_writes, PdLog};
use super::staging::StagingEngine;
use crate::{meta, Error, Pd, PdConfig};
use keel_rpc::RpcClient;
use keel_storage::{Engine, WriteBatch, WriteOptions};
use keel_types::proto::pd::{PdError, PdRequest, PdResponse, PdResult};
use keel_types::{trace_event, Clock};
use protobuf::Message as _;
use raft::eraftpb::Message;
use raft::{RawNode, StateRole};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

/// One raft tick.
const TICK: Duration = Duration::from_millis(100);
/// Ticks without a leader before a follower campaigns (raft-rs draws from twice this).
const ELECTION_TICKS: usize = 10;
const HEARTBEAT_TICKS: usize = 2;
/// How long a leader may serve after a read-index round it sent was acknowledged by a
/// quorum: an election timeout less two ticks of slack for tick phase.
const LEASE: Duration = Duration::from_millis(100 * (ELECTION_TICKS as u64 - 2));
/// How long an answer may wait for its writes to apply or for a lease before it is given up.
const ANSWER_DEADLINE: Duration = Duration::from_secs(2);
/// Raft messages queued per peer before new ones are dropped (raft retransmits).
const PEER_QUEUE_MAX: usize = 256;
/// The log is compacted down to this many applied entries once it holds twice as many.
const LOG_KEEP: usize = 512;
/// How long a message to a peer may take before it is given up.
const PEER_CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// Messages to one peer awaiting their ack at once.
const PEER_CALLS_IN_FLIGHT_MAX: usize = 8;

/// What the RPC handlers hand the member loop.
enum Command {
    Raft(Box<Message>),
    /// Writes of the leader's `Pd` opened as `generation`, to be answered once applied.
    Propose {
        generation: u64,
        data: Vec<u8>,
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    /// An answer of `Pd` `generation` that wrote nothing: ready once every earlier proposal
    /// has applied.
    Barrier {
        generation: u64,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// What followers say about the group.
#[derive(Default)]
struct View {
    leader: Option<String>,
    cluster_id: Option<u64>,
}

/// The part of a member the RPC handlers share with its loop.
pub(crate) struct Member {
    /// The leader's state machine and its generation (one per opening); `None` on followers
    /// and while a leader catches up. Commands carry the generation of the `Pd` that made
    /// them, so writes of a dropped `Pd` are never proposed under a later one.
    pd: Mutex<Option<(u64, Pd)>>,
    staging: Arc<StagingEngine>,
    commands: mpsc::UnboundedSender<Command>,
    view: Mutex<View>,
    /// This member's advertised address.
    addr: String,
}

impl Member {
    /// Answers one request (see the module docs).
    pub(crate) async fn call(&self, req: PdRequest) -> PdResult {
        if let PdRequest::RaftMessage(bytes) = req {
            let msg = Message::parse_from_bytes(&bytes).map_err(|e| PdError::Invalid(format!("raft message: {e}")))?;
            let _ = self.commands.send(Command::Raft(Box::new(msg)));
            return Ok(PdResponse::Ok);
        }
        let (result, done) = {
            let mut guard = self.pd.lock().unwrap_or_else(|e| e.into_inner());
            let Some((generation, pd)) = guard.as_mut() else {
                drop(guard);
                return self.answer_as_follower(req);
            };
            let generation = *generation;
            let result = pd.handle(req);
            let writes = self.staging.take();
            let (tx, rx) = oneshot::channel();
            let command = if writes.is_empty() {
                Command::Barrier { generation, done: tx }
            } else {
                Command::Propose { generation, data: encode_writes(&writes), done: Some(tx) }
            };
            if self.commands.send(command).is_err() {
                return Err(PdError::Unavailable("pd member stopped".into()));
            }
            (result, rx)
        };
        match tokio::time::timeout(ANSWER_DEADLINE, done).await {
            Ok(Ok(Ok(()))) => result,
            Ok(Ok(Err(reason))) => Err(PdError::Unavailable(reason)),
            _ => Err(PdError::Unavailable("pd leader could not replicate the answer in time".into())),
        }
    }

    /// The address of the member this one last knew as leader.
    pub(crate) fn leader(&self) -> Option<String> {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).leader.clone()
    }

    /// Runs `f` on the leader's state machine, if this member serves as leader.
    pub(crate) fn with_pd<R>(&self, f: impl FnOnce(&mut Pd) -> R) -> Option<R> {
        self.pd.lock().unwrap_or_else(|e| e.into_inner()).as_mut().map(|(_, pd)| f(pd))
    }

    /// The cluster id, once this member has applied it.
    #[cfg(not(madsim))]
    pub(crate) fn cluster_id(&self) -> Option<u64> {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).cluster_id
    }

    fn answer_as_follower(&self, req: PdRequest) -> PdResult {
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        match (req, &view.leader, view.cluster_id) {
            (PdRequest::GetMembers, Some(leader), Some(cluster_id)) => {
                Ok(PdResponse::Members { cluster_id, leader: leader.clone() })
            }
            (_, Some(leader), _) if *leader == self.addr => {
                Err(PdError::Unavailable("this pd member was just elected and is catching up".into()))
            }
            (_, Some(leader), _) => Err(PdError::Unavailable(format!("not the pd leader; the leader is {leader}"))),
            (_, None, _) => Err(PdError::Unavailable("pd has no leader yet".into())),
        }
    }
}

/// A request waiting for its writes (or earlier ones) to apply.
struct Waiter {
    index: u64,
    term: u64,
    done: oneshot::Sender<Result<(), String>>,
    deadline: Instant,
}

/// The member's raft loop: owns the raft node, applies, and decides when answers may leave.
struct Replica {
    member: Arc<Member>,
    raw: RawNode<PdLog>,
    engine: Arc<dyn Engine>,
    config: PdConfig,
    clock: Clock,
    /// Peer id → outbound queue.
    peers: BTreeMap<u64, mpsc::Sender<Message>>,
    /// Index of the empty entry this member appended on becoming leader (its `Pd` opens once
    /// that is applied), or `None` when not leader.
    leader_from: Option<(u64, u64)>,
    waiters: VecDeque<Waiter>,
    /// Read-index rounds in flight: context → when sent.
    rounds: BTreeMap<u64, Instant>,
    next_round: u64,
    lease_until: Option<Instant>,
    /// Generation of the last `Pd` opened.
    generation: u64,
}

/// Starts a member of the PD group `config.members` (this one is `config.advertise_addr`):
/// returns the handle the RPC handlers call and the loop to run (which ends only on a storage
/// failure).
pub(crate) fn start(
    config: PdConfig,
    engine: Arc<dyn Engine>,
    clock: Clock,
) -> Result<(Arc<Member>, impl std::future::Future<Output = Result<(), Error>>), Error> {
    let me = config.members.iter().position(|a| *a == config.advertise_addr).ok_or_else(|| {
        Error::Config(format!("{} is not one of the pd members {:?}", config.advertise_addr, config.members))
    })? as u64
        + 1;
    let voters: Vec<u64> = (1..=config.members.len() as u64).collect();
    let log = PdLog::load(engine.clone(), voters)?;
    let raft_cfg = raft::Config {
        id: me,
        election_tick: ELECTION_TICKS,
        heartbeat_tick: HEARTBEAT_TICKS,
        applied: log.applied(),
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    raft_cfg.validate().map_err(|e| Error::Config(e.to_string()))?;
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let raw = RawNode::new(&raft_cfg, log, &logger).map_err(|e| Error::Config(e.to_string()))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let member = Arc::new(Member {
        pd: Mutex::new(None),
        staging: Arc::new(StagingEngine::new(engine.clone())),
        commands: tx,
        view: Mutex::new(View { leader: None, cluster_id: meta::read_u64(engine.as_ref(), meta::CLUSTER_ID)? }),
        addr: config.advertise_addr.clone(),
    });
    let mut peers = BTreeMap::new();
    for (i, addr) in config.members.iter().enumerate() {
        let id = i as u64 + 1;
        if id != me {
            peers.insert(id, spawn_sender(RpcClient::new(addr.clone())));
        }
    }
    let mut replica = Replica {
        member: member.clone(),
        raw,
        engine,
        config,
        clock,
        peers,
        leader_from: None,
        waiters: VecDeque::new(),
        rounds: BTreeMap::new(),
        next_round: 1,
        lease_until: None,
        generation: 0,
    };
    Ok((member, async move { replica.run(rx).await }))
}

/// A task that sends one peer's raft messages in order, dropping them while it cannot. Up to
/// [`PEER_CALLS_IN_FLIGHT_MAX`] calls are on the wire at once; awaiting their acks is what
/// notices a dead connection (and makes the next call reconnect).
fn spawn_sender(client: RpcClient<PdRequest, PdResult>) -> mpsc::Sender<Message> {
    let (tx, mut rx) = mpsc::channel::<Message>(PEER_QUEUE_MAX);
    tokio::spawn(async move {
        let in_flight = Arc::new(Semaphore::new(PEER_CALLS_IN_FLIGHT_MAX));
        while let Some(msg) = rx.recv().await {
            let bytes = msg.write_to_bytes().expect("raft message encodes");
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
            if let Ok(call) = client.start(PdRequest::RaftMessage(bytes), PEER_CALL_TIMEOUT).await {
                tokio::spawn(async move {
                    let _ = call.reply().await;
                    drop(permit);
                });
            }
        }
    });
    tx
}

impl Replica {
    async fn run(&mut self, mut commands: mpsc::UnboundedReceiver<Command>) -> Result<(), Error> {
        // A restarted member has forgotten which leader it last heard from, so it would vote at
        // once; staying silent for an election timeout keeps every lease it acknowledged valid.
        // (A member still at term 0 never acknowledged anything: a follower persists the term
        // it learns before it answers.)
        if self.raw.raft.term > 0 {
            tokio::time::sleep(TICK * ELECTION_TICKS as u32).await;
            while commands.try_recv().is_ok() {}
        }
        let mut ticker = tokio::time::interval(TICK);
        loop {
            // `biased`: an unbiased select! draws from an RNG madsim does not control.
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return Ok(()),
                },
                _ = ticker.tick() => self.on_tick(),
            }
            while let Ok(command) = commands.try_recv() {
                self.on_command(command);
            }
            self.on_ready()?;
            self.settle()?;
        }
    }

    fn on_tick(&mut self) {
        self.raw.tick();
        if self.raw.raft.state == StateRole::Leader {
            let round = self.next_round;
            self.next_round += 1;
            self.rounds.insert(round, Instant::now());
            self.raw.read_index(round.to_be_bytes().to_vec());
            // Rounds that never came back (lost messages) are forgotten after a lease.
            if let Some(stale) = Instant::now().checked_sub(LEASE) {
                self.rounds.retain(|_, sent| *sent >= stale);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Raft(msg) => {
                let _ = self.raw.step(*msg);
            }
            Command::Propose { generation, data, done } => {
                let term = self.raw.raft.term;
                let before = self.raw.raft.raft_log.last_index();
                if !self.serving(generation) {
                    if let Some(done) = done {
                        let _ = done.send(Err("pd leadership changed before the write was proposed".into()));
                    }
                    return;
                }
                let proposed = self.raw.propose(vec![], data).is_ok();
                let index = self.raw.raft.raft_log.last_index();
                if proposed && index > before {
                    if let Some(done) = done {
                        self.wait(index, term, done);
                    }
                    return;
                }
                if let Some(done) = done {
                    let _ = done.send(Err("pd leadership changed before the write was proposed".into()));
                }
                // The `Pd` already holds the lost write in memory (a TSO window, an id
                // high-water mark): it must not answer from it. Reopen it from what raft applies.
                if self.raw.raft.state == StateRole::Leader {
                    self.reopen_pd();
                }
            }
            Command::Barrier { generation, done } => {
                if self.serving(generation) {
                    let (index, term) = (self.raw.raft.raft_log.last_index(), self.raw.raft.term);
                    self.wait(index, term, done);
                } else {
                    let _ = done.send(Err("pd leadership changed".into()));
                }
            }
        }
    }

    fn wait(&mut self, index: u64, term: u64, done: oneshot::Sender<Result<(), String>>) {
        self.waiters.push_back(Waiter { index, term, done, deadline: Instant::now() + ANSWER_DEADLINE });
    }

    /// Whether this member is the leader and serves from the `Pd` of `generation`.
    fn serving(&self, generation: u64) -> bool {
        self.raw.raft.state == StateRole::Leader
            && self.member.pd.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|(g, _)| *g == generation)
    }

    fn on_ready(&mut self) -> Result<(), Error> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            let (role, leader) = (ss.raft_state, ss.leader_id);
            self.on_role(role, leader);
        }
        self.send(rd.take_messages());
        let mut batch = WriteBatch::new();
        if !rd.snapshot().is_empty() {
            self.raw.mut_store().apply_snapshot(rd.snapshot(), &mut batch)?;
            trace_event!("pd.member.snapshot", "applied snapshot at {}", rd.snapshot().get_metadata().index);
        }
        for entry in rd.take_committed_entries() {
            self.raw.mut_store().apply(&entry, &mut batch)?;
        }
        let store = self.raw.mut_store();
        store.append(rd.entries(), &mut batch);
        if let Some(hs) = rd.hs() {
            store.set_hard_state(hs);
        }
        store.stage_state(&mut batch);
        self.write(batch)?;
        let now = Instant::now();
        for state in rd.take_read_states() {
            let Ok(round) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else { continue };
            if let Some(sent) = self.rounds.remove(&u64::from_be_bytes(round)) {
                let until = sent + LEASE;
                if until > now {
                    self.lease_until = Some(self.lease_until.map_or(until, |l| l.max(until)));
                }
            }
        }
        self.send(rd.take_persisted_messages());
        let mut light = self.raw.advance(rd);
        let mut batch = WriteBatch::new();
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        self.send(light.take_messages());
        for entry in light.take_committed_entries() {
            self.raw.mut_store().apply(&entry, &mut batch)?;
        }
        self.raw.advance_apply();
        let store = self.raw.mut_store();
        if store.len() >= 2 * LOG_KEEP {
            let applied = store.applied();
            store.compact(applied.saturating_sub(LOG_KEEP as u64) + 1, &mut batch);
        }
        store.stage_state(&mut batch);
        self.write(batch)?;
        self.refresh_cluster_id()?;
        Ok(())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), Error> {
        self.engine.write(batch, WriteOptions::SYNC).map_err(|e| {
            trace_event!("pd.failed", "{e}");
            Error::Storage(e)
        })
    }

    fn send(&self, msgs: Vec<Message>) {
        for msg in msgs {
            if let Some(queue) = self.peers.get(&msg.to) {
                let _ = queue.try_send(msg);
            }
        }
    }

    fn on_role(&mut self, role: StateRole, leader: u64) {
        let leader_addr = leader.checked_sub(1).and_then(|i| self.config.members.get(i as usize)).cloned();
        self.member.view.lock().unwrap_or_else(|e| e.into_inner()).leader = leader_addr;
        if role == StateRole::Leader {
            if self.leader_from.is_none() {
                self.leader_from = Some((self.raw.raft.raft_log.last_index(), self.raw.raft.term));
                trace_event!("pd.member.leader", "{} leads term {}", self.config.advertise_addr, self.raw.raft.term);
            }
        } else if self.leader_from.take().is_some() {
            trace_event!("pd.member.step_down", "{} term {}", self.config.advertise_addr, self.raw.raft.term);
            self.drop_pd();
            self.lease_until = None;
            self.rounds.clear();
            for waiter in self.waiters.drain(..) {
                let _ = waiter.done.send(Err("pd leadership changed".into()));
            }
        }
    }

    /// Drops the leader's `Pd` and whatever it staged and did not propose.
    fn drop_pd(&self) {
        *self.member.pd.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let _ = self.member.staging.take();
    }

    /// Drops the leader's `Pd` and opens a new one once everything proposed so far applied.
    fn reopen_pd(&mut self) {
        trace_event!("pd.member.reopen", "{} drops a write it could not propose", self.config.advertise_addr);
        self.drop_pd();
        self.leader_from = Some((self.raw.raft.raft_log.last_index(), self.raw.raft.term));
    }

    fn refresh_cluster_id(&self) -> Result<(), Error> {
        let mut view = self.member.view.lock().unwrap_or_else(|e| e.into_inner());
        if view.cluster_id.is_none() {
            view.cluster_id = meta::read_u64(self.engine.as_ref(), meta::CLUSTER_ID)?;
        }
        Ok(())
    }

    /// Opens the leader's `Pd` once it has applied everything before its term, and answers
    /// the waiters that may be answered.
    fn settle(&mut self) -> Result<(), Error> {
        let applied = self.raw.store().applied();
        if let Some((from, term)) = self.leader_from {
            let mut pd = self.member.pd.lock().unwrap_or_else(|e| e.into_inner());
            if pd.is_none() && applied >= from && self.raw.raft.term == term {
                let opened = Pd::open(self.config.clone(), self.member.staging.clone(), self.clock.clone())?;
                trace_event!("pd.member.serving", "{} from index {applied}", self.config.advertise_addr);
                self.generation += 1;
                let generation = self.generation;
                *pd = Some((generation, opened));
                let writes = self.member.staging.take();
                drop(pd);
                if !writes.is_empty() {
                    self.on_command(Command::Propose { generation, data: encode_writes(&writes), done: None });
                }
            }
        }
        let now = Instant::now();
        let leased = self.lease_until.is_some_and(|until| now < until);
        let term = self.raw.raft.term;
        let leader = self.raw.raft.state == StateRole::Leader;
        let mut kept = VecDeque::with_capacity(self.waiters.len());
        for waiter in self.waiters.drain(..) {
            if !leader || waiter.term != term {
                let _ = waiter.done.send(Err("pd leadership changed".into()));
            } else if waiter.index <= applied && leased {
                let _ = waiter.done.send(Ok(()));
            } else if now >= waiter.deadline {
                let _ = waiter.done.send(Err("pd leader lost its lease".into()));
            } else {
                kept.push_back(waiter);
            }
        }
        self.waiters = kept;
        Ok(())
    }
}
