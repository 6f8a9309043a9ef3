//! The store loop's part in hibernation (the replica's part is `peer/hibernate.rs`): it
//! carries the leaders' requests to sleep and the followers' answers, sends the liveness
//! beacons, and wakes the sleeping regions that depend on a store gone silent.

use super::Store;
use crate::peer::Peer;
use keel_types::proto::store::{ExtraMessage, RaftEnvelope};
use keel_types::{trace_event, Peer as PeerMeta, PeerRole, RegionId, StoreId};
use std::collections::{BTreeMap, BTreeSet};

impl Store {
    /// The hibernation handshake (a beacon needs nothing past `on_raft`'s note of its sender).
    pub(super) fn on_extra(&mut self, env: &RaftEnvelope, extra: ExtraMessage) {
        let Some(peer) = self.peers.get_mut(&env.region_id).filter(|p| p.meta.id == env.to_peer.id) else { return };
        match extra {
            ExtraMessage::HibernateRequest { term, index } => {
                if peer.on_hibernate_request(env.from_peer.id, term, index, &self.cfg) {
                    let reply = ExtraMessage::HibernateResponse { term, index };
                    self.transport.send(env.from_peer.store_id, vec![extra_envelope(peer, env.from_peer, reply)]);
                }
            }
            ExtraMessage::HibernateResponse { term, index } => {
                if peer.on_hibernate_response(env.from_peer.id, term, index) {
                    trace_event!("raft.hibernate", "s{} {} at {index}", self.cfg.store_id, env.region_id);
                }
            }
            ExtraMessage::StoreBeacon => {}
        }
    }

    /// Sends each leader's pending request to sleep to every other peer of its region.
    pub(super) fn send_hibernate_requests(&mut self) {
        if self.hibernate_requests.is_empty() {
            return;
        }
        let mut by_store: BTreeMap<StoreId, Vec<RaftEnvelope>> = BTreeMap::new();
        for (region_id, request) in std::mem::take(&mut self.hibernate_requests) {
            let Some(peer) = self.peers.get(&region_id) else { continue };
            for to in peer.region().peers.iter().filter(|p| p.id != peer.meta.id) {
                by_store.entry(to.store_id).or_default().push(extra_envelope(peer, *to, request));
            }
        }
        for (store_id, envs) in by_store {
            self.transport.send(store_id, envs);
        }
    }

    /// Every heartbeat interval, a beacon to each store this one shares a region with; and
    /// the sleeping regions that depend on a store silent for an election timeout wake.
    pub(super) fn beacon_and_wake(&mut self) {
        let me = self.cfg.store_id;
        if self.ticks.is_multiple_of(self.cfg.heartbeat_ticks as u64) {
            let mut stores: BTreeSet<StoreId> =
                self.peers.values().flat_map(|p| p.region().peers.iter().map(|m| m.store_id)).collect();
            stores.remove(&me);
            self.liveness.watch(&stores, self.ticks);
            let from = PeerMeta { id: 0, store_id: me, role: PeerRole::Voter };
            for store_id in stores {
                let to = PeerMeta { store_id, ..from };
                let beacon = RaftEnvelope {
                    region_id: 0,
                    from_peer: from,
                    to_peer: to,
                    region_epoch: Default::default(),
                    start_key: vec![],
                    end_key: vec![],
                    message: vec![],
                    check: None,
                    extra: Some(ExtraMessage::StoreBeacon),
                };
                self.transport.send(store_id, vec![beacon]);
            }
        }
        for lost in self.liveness.newly_lost(self.ticks, self.cfg.election_ticks as u64) {
            let mut woken = 0;
            for (&region_id, peer) in self.peers.iter_mut() {
                if peer.is_idle() && peer.depends_on_store(lost) && peer.wake() {
                    self.active.insert(region_id);
                    woken += 1;
                }
            }
            trace_event!("store.lost", "s{me} lost s{lost}: {woken} sleeping regions woken");
        }
    }
}

/// Wakes a sleeping leader that work (a proposal, a read, an operator) arrived at, and marks
/// the peer for the next round. A follower stays asleep: it only answers NotLeader, and a
/// misrouted client must not wake a healthy region.
pub(super) fn wake_for_work(peer: &mut Peer, active: &mut BTreeSet<RegionId>) {
    if peer.is_leader() {
        peer.wake();
    }
    active.insert(peer.region_id());
}

/// An envelope carrying `extra` from `peer` to `to`.
fn extra_envelope(peer: &Peer, to: PeerMeta, extra: ExtraMessage) -> RaftEnvelope {
    RaftEnvelope { extra: Some(extra), ..peer.envelope_to(to, Vec::new()) }
}
