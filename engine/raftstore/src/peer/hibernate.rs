//! A region replica's side of hibernation (TiKV's hibernate-regions): when the leader finds
//! the region idle — every peer holds its whole log, committed and applied, and nothing
//! waits — it asks the followers whether they agree; a follower that holds the same log
//! agrees and stops ticking; once all have agreed the leader stops ticking too. Raft then
//! sends nothing until something wakes the region: a proposal, a read or an operator at the
//! leader, any raft message at any peer, or the store loop seeing a peer's store go silent.
//!
//! Safety never depends on this (a sleeping peer only skips ticks; every message is still
//! stepped and reads still go through ReadIndex). Liveness does, which is why a sleeping
//! follower keeps count of the ticks it skipped and replays some of them when it wakes: a
//! follower woken because its leader's store went silent then campaigns within a few ticks,
//! yet not at once, so a leader that is alive has a heartbeat interval to speak up first.

use super::Peer;
use crate::config::StoreConfig;
use keel_types::proto::store::ExtraMessage;
use keel_types::StoreId;
use raft::eraftpb::{Message, MessageType};
use raft::StateRole;
use std::collections::BTreeSet;

/// Whether a replica sleeps, and the leader's handshake in progress.
#[derive(Debug, Default)]
pub(crate) struct Hibernation {
    idle: bool,
    /// Leader only: the handshake round in progress.
    poll: Option<Poll>,
    /// Follower only: ticks skipped while asleep (capped), replayed on waking.
    missing_ticks: usize,
}

/// A leader's request to sleep at `(term, index)`, and the peers that agreed to it.
#[derive(Debug)]
struct Poll {
    term: u64,
    index: u64,
    agreed: BTreeSet<u64>,
}

impl Peer {
    /// True while this replica sleeps (does not tick raft).
    pub fn is_idle(&self) -> bool {
        self.hibernation.idle
    }

    /// One tick of a sleeping replica: a follower counts it, up to the cap past which a
    /// woken follower would campaign before its leader could speak (TiKV keeps
    /// `missing_ticks + 2 + heartbeat_ticks < election_ticks`).
    pub fn idle_tick(&mut self, cfg: &StoreConfig) {
        let cap = cfg.election_ticks.saturating_sub(cfg.heartbeat_ticks + 3);
        if !self.is_leader() && self.hibernation.missing_ticks < cap {
            self.hibernation.missing_ticks += 1;
        }
    }

    /// Wakes the replica if it sleeps: a follower replays the ticks it skipped, and both
    /// restart their silence clocks (peers were silent because the region slept, not
    /// because they were gone). Returns whether it slept.
    pub fn wake(&mut self) -> bool {
        if !self.hibernation.idle {
            return false;
        }
        let missing = std::mem::take(&mut self.hibernation.missing_ticks);
        self.hibernation = Hibernation::default();
        for _ in 0..missing {
            self.raw.tick();
        }
        self.last_message_tick = self.ticks;
        self.reset_last_heard();
        true
    }

    /// Whether a message lets a sleeping replica sleep on (it is still stepped): at a
    /// sleeping leader, a follower's late answer to the heartbeats sent before it slept; at
    /// a sleeping follower, a heartbeat of its leader that brings nothing new (a leader woken
    /// by a read confirms it that way). Anything else — a vote, a higher term, an entry, a
    /// rejection — wakes it.
    pub fn sleeps_through(&self, msg: &Message) -> bool {
        let raft = &self.raw.raft;
        if msg.term != raft.term {
            return false;
        }
        match msg.get_msg_type() {
            MessageType::MsgHeartbeatResponse => self.is_leader(),
            MessageType::MsgAppendResponse => self.is_leader() && !msg.reject,
            MessageType::MsgHeartbeat => {
                !self.is_leader() && msg.from == raft.leader_id && msg.commit <= raft.raft_log.committed
            }
            _ => false,
        }
    }

    /// Leader, once an election timeout: if the region is idle, the request to send every
    /// other peer (the same round again until all have agreed); `None` when it is not idle,
    /// or when this leader has no one to ask and has just fallen asleep.
    pub fn hibernate_request(&mut self) -> Option<ExtraMessage> {
        if !self.up_to_date() {
            self.hibernation.poll = None;
            return None;
        }
        let (term, index) = (self.raw.raft.term, self.raw.raft.raft_log.last_index());
        if self.hibernation.poll.as_ref().is_none_or(|p| (p.term, p.index) != (term, index)) {
            self.hibernation.poll = Some(Poll { term, index, agreed: BTreeSet::new() });
        }
        if self.all_agreed() {
            self.sleep();
            return None;
        }
        Some(ExtraMessage::HibernateRequest { term, index })
    }

    /// Follower: agrees to sleep (and falls asleep) when the request comes from the leader
    /// it follows, at its term, and it holds exactly the leader's log, committed and applied.
    pub fn on_hibernate_request(&mut self, from: u64, term: u64, index: u64, cfg: &StoreConfig) -> bool {
        let raft = &self.raw.raft;
        let agree = cfg.hibernate_regions
            && self.is_initialized()
            && self.removal.is_none()
            && !self.in_merge()
            && raft.state == StateRole::Follower
            && raft.term == term
            && raft.leader_id == from
            && raft.raft_log.last_index() == index
            && raft.raft_log.last_term() == term
            && raft.raft_log.committed == index
            && self.raw.store().apply_state.applied_index == index;
        if agree && !self.hibernation.idle {
            self.sleep();
        }
        agree
    }

    /// Leader: counts a follower's agreement to the round in progress; falls asleep when
    /// every other peer has agreed and the region is still idle. Returns whether it did.
    pub fn on_hibernate_response(&mut self, from: u64, term: u64, index: u64) -> bool {
        if self.hibernation.idle || self.region().peer(from).is_none() {
            return false;
        }
        let Some(poll) = self.hibernation.poll.as_mut().filter(|p| (p.term, p.index) == (term, index)) else {
            return false;
        };
        poll.agreed.insert(from);
        if self.all_agreed() && self.up_to_date() {
            self.sleep();
            return true;
        }
        false
    }

    /// The stores a sleeping replica depends on: for a leader every other peer's, for a
    /// follower its leader's. If one goes silent the replica must wake.
    pub fn depends_on_store(&self, store: StoreId) -> bool {
        if self.is_leader() {
            self.region().peers.iter().any(|p| p.store_id == store && p.id != self.meta.id)
        } else {
            self.leader().is_some_and(|l| l.store_id == store)
        }
    }

    /// A merge source (frozen until its merge commits or rolls back, which its leader drives
    /// on ticks) or a target whose apply waits on a CommitMerge: neither may sleep.
    fn in_merge(&self) -> bool {
        self.is_merge_source() || self.merge_blocked
    }

    fn sleep(&mut self) {
        self.hibernation = Hibernation { idle: true, poll: None, missing_ticks: 0 };
    }

    fn all_agreed(&self) -> bool {
        let Some(poll) = &self.hibernation.poll else { return false };
        self.region().peers.iter().all(|p| p.id == self.meta.id || poll.agreed.contains(&p.id))
    }

    /// Leader: every peer holds the whole log, which is committed and applied here, and
    /// nothing waits on the region (proposals, reads, a leader transfer).
    fn up_to_date(&self) -> bool {
        let raft = &self.raw.raft;
        let last = raft.raft_log.last_index();
        self.is_leader()
            && self.is_initialized()
            && !self.in_merge()
            && raft.raft_log.committed == last
            && self.raw.store().apply_state.applied_index == last
            && raft.lead_transferee.is_none()
            && raft.pending_read_count() == 0
            && self.proposals.is_empty()
            && self.waiting_reads.is_empty()
            && self.ready_reads.is_empty()
            && self
                .region()
                .peers
                .iter()
                .all(|p| p.id == self.meta.id || raft.prs().get(p.id).is_some_and(|pr| pr.matched == last))
    }
}
