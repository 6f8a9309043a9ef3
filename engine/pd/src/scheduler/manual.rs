//! Manual operators: a person's or tool's request (transfer a leader; add, remove or move a
//! replica) checked against the region as PD knows it and turned into a [`Plan`], which
//! then runs through the same step machinery as the checkers' operators.

use super::{Cluster, OperatorKind, Plan};
use crate::region_tree::RegionEntry;
use keel_types::proto::pd::ManualOperator;
use keel_types::{Peer, PeerRole, StoreId};

/// The plan for `op` on the region, or why it cannot apply.
pub(crate) fn plan(cluster: &Cluster<'_>, entry: &RegionEntry, op: &ManualOperator) -> Result<Plan, String> {
    let region = &entry.region;
    let peer_on = |store: StoreId| -> Result<Peer, String> {
        region.peer_on_store(store).copied().ok_or_else(|| format!("region {} has no peer on store {store}", region.id))
    };
    let can_receive = |store: StoreId| -> Result<(), String> {
        if let Some(p) = region.peer_on_store(store) {
            return Err(format!("region {} already has peer {} on store {store}", region.id, p.id));
        }
        if !cluster.store_accepts(store) {
            return Err(format!("store {store} does not accept replicas (unknown, not Up, or not heard from)"));
        }
        Ok(())
    };
    let mut plan = Plan::new(OperatorKind::Manual);
    match *op {
        ManualOperator::TransferLeader { to_store } => {
            let to = peer_on(to_store)?;
            if to.role != PeerRole::Voter {
                return Err(format!("peer {} on store {to_store} is a learner; only voters lead", to.id));
            }
            let from = entry.leader.ok_or_else(|| format!("region {} has no known leader", region.id))?;
            if from.store_id == to_store {
                return Err(format!("store {to_store} already leads region {}", region.id));
            }
            plan.transfer = Some((from.store_id, to));
        }
        ManualOperator::AddPeer { store } => {
            can_receive(store)?;
            plan.add_on = Some(store);
        }
        ManualOperator::RemovePeer { store } => {
            let peer = peer_on(store)?;
            let voters = region.peers.iter().filter(|p| p.role == PeerRole::Voter).count();
            if peer.role == PeerRole::Voter && voters <= 1 {
                return Err(format!("peer {} is region {}'s last voter", peer.id, region.id));
            }
            plan.remove = Some(peer);
        }
        ManualOperator::MovePeer { from_store, to_store } => {
            let peer = peer_on(from_store)?;
            can_receive(to_store)?;
            plan.add_on = Some(to_store);
            plan.remove = Some(peer);
        }
    }
    Ok(plan)
}
