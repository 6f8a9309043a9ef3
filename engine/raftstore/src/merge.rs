//! Region merge: a small region (the source) is absorbed by an adjacent one (the target)
//! whose peers sit on the same stores, in three raft commands (as TiKV's):
//!
//! 1. PrepareMerge, in the source's log: the source freezes (no writes, splits or
//!    membership changes apply after it), bumps `version` and `conf_ver`, and persists a
//!    [`MergeState`] with its region state in one batch.
//! 2. CommitMerge, in the target's log, proposed by the source's leader through the target's
//!    leader on the same store once every source peer holds the PrepareMerge entry. Each
//!    target replica applies it only when the source replica on its store has applied the
//!    PrepareMerge — catching it up from its own log if it must (the entries up to the
//!    PrepareMerge are committed: the target's log says so); until then the target's apply
//!    waits (the store loop does not). Applying it extends the target's range, bumps its
//!    version and tombstones the source replica, keeping its data, in one batch.
//! 3. RollbackMerge, in the source's log, only on proof that no CommitMerge of it can ever
//!    apply (the rule below). A source whose commit cannot happen (a peer stays behind)
//!    fences the target first (FenceMerge bumps its version), so it can then roll back.
//!
//! # When a source may roll back
//!
//! A CommitMerge carries the target epoch `E` the source prepared against and applies only
//! at that epoch; the target's epoch only grows, one log entry at a time. So once the target
//! has left `E` by an entry that was not this CommitMerge, no CommitMerge of this source can
//! apply anywhere, ever — and then, only then, the source may roll back.
//!
//! The proof must come from a target replica that *applied* the target's log across `E`,
//! entry by entry: one that reached a newer epoch by a snapshot may have skipped the very
//! CommitMerge (taken after the merge, and after the merged range was split away again, the
//! snapshot's region no longer even shows it). Rolling back on that word unfroze a range
//! that the target already owned elsewhere: two regions serving the same keys. Each replica
//! therefore keeps the epoch where its unbroken in-order apply began
//! ([`PeerStorage::applied_from`], persisted with its region state); the source's leader
//! rolls back only when the target replica on its store is past `E` and its `applied_from`
//! is at or before `E`. A leader whose target replica cannot prove it hands the source's
//! leadership on to the next source peer, whose store may. A target merged away into a
//! third region first (its own PrepareMerge froze it past `E`) leaves a tombstone with its
//! last epoch and `applied_from`, which proves the same (TiKV asks a quorum of source
//! peers to want the rollback instead; with keel's log compaction a quorum of target
//! replicas can skip the CommitMerge by snapshots, so a quorum of wishes proves nothing).
//!
//! The decisions that must agree across replicas (a command's validity) read only the log
//! and the region; the local waits decide only *when* a replica applies, never *what*.

use crate::apply::{ApplyOutcome, Overlay};
use crate::cmd::{AdminRequest, CmdBody, CmdResult, RaftCmd};
use crate::peer::{ApplyEffects, Peer};
use crate::peer_storage::{read_tombstone, PeerStorage};
use keel_storage::{Engine, WriteBatch};
use keel_types::codec::{decode, encode};
use keel_types::{trace_event, PeerRole, Region, RegionEpoch, RegionError, RegionId, StoreId};
use raft::eraftpb::Entry;
use raft::{GetEntriesContext, Storage as _};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::oneshot;

/// What a merge source remembers from its PrepareMerge, persisted with its region state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeState {
    /// The region it merges into, as of the PrepareMerge.
    pub target: Region,
    /// Index of the PrepareMerge entry.
    pub commit: u64,
    /// Its term.
    pub commit_term: u64,
}

/// Why `source` cannot merge into `target`, if it cannot: they must be adjacent, distinct,
/// and have voters (only) on exactly the same stores.
pub fn check_mergeable(source: &Region, target: &Region) -> Result<(), &'static str> {
    if source.id == target.id {
        return Err("a region cannot merge into itself");
    }
    let left_of = !source.end_key.is_empty() && source.end_key == target.start_key;
    let right_of = !target.end_key.is_empty() && target.end_key == source.start_key;
    if !left_of && !right_of {
        return Err("regions are not adjacent");
    }
    let stores = |r: &Region| -> Option<Vec<StoreId>> {
        let mut s: Vec<StoreId> = r.peers.iter().filter(|p| p.role == PeerRole::Voter).map(|p| p.store_id).collect();
        s.sort_unstable();
        (s.len() == r.peers.len() && !s.is_empty()).then_some(s)
    };
    match (stores(source), stores(target)) {
        (Some(a), Some(b)) if a == b => Ok(()),
        _ => Err("peers are not all voters on the same stores"),
    }
}

/// The target after absorbing `source`: the union of the ranges, a version past both.
pub fn merged_region(target: &Region, source: &Region) -> Region {
    let mut merged = target.clone();
    // The source is on the left (an empty end key is the end of the key space, never
    // adjacent to anything on its right).
    if !source.end_key.is_empty() && source.end_key == target.start_key {
        merged.start_key = source.start_key.clone();
    } else {
        merged.end_key = source.end_key.clone();
    }
    merged.epoch.version = target.epoch.version.max(source.epoch.version) + 1;
    merged
}

/// Applies a PrepareMerge, RollbackMerge or FenceMerge at `entry` to the region in
/// `store`, staging the new region state (and merge state) in `batch`.
pub fn apply_step(store: &mut PeerStorage, cmd: RaftCmd, entry: &Entry, batch: &mut WriteBatch) -> ApplyOutcome {
    let region = store.region.clone();
    let stale = || Err(RegionError::EpochNotMatch { current_regions: vec![region.clone()] });
    if cmd.epoch != region.epoch {
        return stale();
    }
    let CmdBody::Admin(admin) = cmd.body else { return stale() };
    match admin {
        AdminRequest::PrepareMerge { target } => {
            if store.merge_state.is_some() || check_mergeable(&region, &target).is_err() {
                return stale();
            }
            store.region.epoch.version += 1;
            store.region.epoch.conf_ver += 1;
            store.merge_state = Some(MergeState { target, commit: entry.index, commit_term: entry.term });
        }
        AdminRequest::RollbackMerge { commit } => {
            if store.merge_state.as_ref().is_none_or(|m| m.commit != commit) {
                return stale();
            }
            store.region.epoch.version += 1;
            store.merge_state = None;
        }
        AdminRequest::FenceMerge => store.region.epoch.version += 1,
        AdminRequest::Split { .. } | AdminRequest::CommitMerge { .. } => return stale(),
    }
    store.stage_live_state(batch);
    trace_event!("merge.step", "{} at {}: {:?} {:?}", region.id, entry.index, store.region.epoch, store.merge_state);
    Ok(CmdResult::Merge(store.region.clone()))
}

/// Applies every blocked CommitMerge (the targets in `blocked`) whose source replica on this
/// store is ready (or can be caught up), in the round's batch: the target's range grows and
/// the source replica is tombstoned in the same write. Targets whose source is not ready stay
/// in `blocked`. Returns every region whose storage this read or wrote.
pub fn resolve(
    peers: &mut BTreeMap<RegionId, Peer>,
    blocked: &mut BTreeSet<RegionId>,
    batch: &mut WriteBatch,
    overlay: &mut Overlay,
    effects: &mut ApplyEffects,
) -> Result<Vec<RegionId>, String> {
    let mut touched = Vec::new();
    // A source caught up here may itself block on a CommitMerge, and a commit may unblock
    // another target: go round until a pass resolves nothing.
    loop {
        let mut progressed = false;
        for target_id in std::mem::take(blocked) {
            if !peers.get(&target_id).is_some_and(|p| p.merge_blocked) {
                continue; // resolved, destroyed, or reset by a snapshot
            }
            touched.push(target_id);
            progressed |= resolve_one(peers, target_id, batch, overlay, effects, &mut touched)?;
        }
        blocked.extend(touched.iter().copied().filter(|id| peers.get(id).is_some_and(|p| p.merge_blocked)));
        if !progressed {
            return Ok(touched);
        }
    }
}

/// Resolves the blocked CommitMerge of `target_id` if it can; returns whether it did.
fn resolve_one(
    peers: &mut BTreeMap<RegionId, Peer>,
    target_id: RegionId,
    batch: &mut WriteBatch,
    overlay: &mut Overlay,
    effects: &mut ApplyEffects,
    touched: &mut Vec<RegionId>,
) -> Result<bool, String> {
    let Some(entry) = peers.get(&target_id).and_then(Peer::blocked_entry).cloned() else { return Ok(false) };
    let cmd: RaftCmd = decode(&entry.data).map_err(|e| format!("undecodable entry {}: {e}", entry.index))?;
    let CmdBody::Admin(AdminRequest::CommitMerge { source, commit, commit_term }) = cmd.body else {
        return Err(format!("region {target_id}: blocked on a non-merge entry {}", entry.index));
    };
    let target_region = peers[&target_id].region().clone();
    // Validity: the same answer on every replica (the log and the region only).
    let valid = cmd.epoch == target_region.epoch && check_mergeable(&source, &target_region).is_ok();
    if !valid {
        trace_event!("merge.commit_stale", "{target_id} at {}: source {}", entry.index, source.id);
        let outcome = Err(RegionError::EpochNotMatch { current_regions: vec![target_region] });
        let target = peers.get_mut(&target_id).expect("blocked peer exists");
        target.finish_blocked(outcome, batch, overlay, effects)?;
        return Ok(true);
    }
    touched.push(source.id);
    if !source_ready(peers, &source, commit, commit_term, batch, overlay, effects)? {
        return Ok(false);
    }
    let mut src = peers.remove(&source.id).expect("source ready");
    src.fail_pending(RegionError::RegionNotFound { region_id: source.id });
    src.raw.mut_store().destroy_keeping_data(batch);
    let merged = merged_region(&target_region, &source);
    let target = peers.get_mut(&target_id).expect("blocked peer exists");
    target.raw.mut_store().region = merged.clone();
    target.raw.mut_store().stage_live_state(batch);
    target.stats.bytes += src.stats.bytes;
    target.stats.keys += src.stats.keys;
    trace_event!("merge.commit", "{target_id} at {} absorbs {}: {merged:?}", entry.index, source.id);
    effects.conf_changed.push(target_id);
    target.finish_blocked(Ok(CmdResult::Merge(merged)), batch, overlay, effects)?;
    Ok(true)
}

/// Whether the source replica on this store has applied the PrepareMerge at `commit`,
/// catching it up from its own log first if that log holds the entry (same term: then
/// every entry before it is the committed one too). An error is a broken merge invariant.
fn source_ready(
    peers: &mut BTreeMap<RegionId, Peer>,
    source: &Region,
    commit: u64,
    commit_term: u64,
    batch: &mut WriteBatch,
    overlay: &mut Overlay,
    effects: &mut ApplyEffects,
) -> Result<bool, String> {
    let Some(src) = peers.get_mut(&source.id).filter(|p| p.is_initialized() && !p.merge_blocked) else {
        trace_event!("merge.wait_source", "source {} missing here", source.id);
        return Ok(false);
    };
    let applied = src.applied_index();
    if applied < commit {
        let store = src.raw.store();
        if store.term(commit).ok() != Some(commit_term) {
            trace_event!("merge.wait_source", "source {} applied {applied} < {commit}, log lacks it", source.id);
            return Ok(false);
        }
        let entries = store
            .entries(applied + 1, commit + 1, None, GetEntriesContext::empty(false))
            .map_err(|e| format!("source {} log read: {e}", source.id))?;
        if entries.len() as u64 != commit - applied {
            return Ok(false);
        }
        trace_event!("merge.catch_up", "source {} from {applied} to {commit}", source.id);
        src.apply_committed(entries, batch, overlay, effects)?;
        if src.merge_blocked {
            // It waits on a merge into it first: resolved on a later pass.
            return Ok(false);
        }
    }
    match &src.raw.store().merge_state {
        Some(m) if m.commit == commit && src.region() == source => Ok(true),
        other => Err(format!(
            "merge invariant broken: a CommitMerge of source {} at {commit} applies, but the source replica here \
             (applied {}, region {:?}) has merge state {other:?}",
            source.id,
            src.applied_index(),
            src.region()
        )),
    }
}

/// Proposes PrepareMerge of `source_id` into `target` (PD's Merge step) if this store's
/// replica leads the source, the target replica here matches PD's view, both are mergeable,
/// and every source peer is caught up and heard from within `healthy_within_ticks`.
pub fn propose_prepare(
    peers: &mut BTreeMap<RegionId, Peer>,
    source_id: RegionId,
    target: Region,
    healthy_within_ticks: u64,
) {
    let Some(src) = peers.get(&source_id) else { return };
    let local_target = peers.get(&target.id).filter(|t| t.is_initialized());
    let refuse = if !src.is_leader() || src.is_merge_source() || src.merge_blocked {
        Some("source not a leader, or busy")
    } else if peers.values().any(|p| p.raw.store().merge_state.as_ref().is_some_and(|m| m.target.id == source_id)) {
        // A region that another is merging into stays put until that merge ends: had it
        // merged away first, the other's CommitMerge would fail and, with no target left
        // here to prove it, the other could never roll back (scan seed 28).
        Some("another region is merging into the source")
    } else if local_target.is_none_or(|t| t.region() != &target || t.is_merge_source()) {
        Some("the target replica here differs from PD's")
    } else if let Err(why) = check_mergeable(src.region(), &target) {
        Some(why)
    } else if !src.down_peers(healthy_within_ticks).is_empty() || !src.pending_peers(0).is_empty() {
        Some("a source peer is down or behind")
    } else {
        None
    };
    if let Some(why) = refuse {
        trace_event!("merge.prepare_refused", "{source_id} into {}: {why}", target.id);
        return;
    }
    let src = peers.get_mut(&source_id).expect("checked");
    let epoch = src.region().epoch;
    trace_event!("merge.prepare", "{source_id} into {}", target.id);
    propose(src, source_id, epoch, AdminRequest::PrepareMerge { target });
}

/// What a merge source's leader does next.
enum Next {
    Wait,
    Commit,
    Fence,
    Rollback,
    TransferTo(keel_types::Peer),
}

/// Moves every merge this store's source leaders are in forward, at most once per
/// `retry_ticks` each: commit through the target's leader here, roll back once the target
/// replica here proves the target moved on (see the module doc), fence the target if the
/// commit waited `fence_after_ticks`, or move the source's leadership to a store that can
/// go on. Returns the regions it proposed to (asleep, they must wake).
pub fn drive(
    peers: &mut BTreeMap<RegionId, Peer>,
    engine: &dyn Engine,
    store_id: StoreId,
    retry_ticks: u64,
    fence_after_ticks: u64,
) -> Vec<RegionId> {
    let sources: Vec<RegionId> = peers
        .iter()
        .filter(|(_, p)| p.is_leader() && p.is_merge_source() && p.ticks >= p.merge_next_tick)
        .map(|(id, _)| *id)
        .collect();
    let mut proposed = Vec::new();
    for source_id in sources {
        let src = &peers[&source_id];
        let state = src.raw.store().merge_state.clone().expect("merging");
        let seen = src.merge_seen_tick.unwrap_or(src.ticks);
        let all_hold_it =
            src.region().peers.iter().all(|p| {
                p.id == src.meta.id || src.raw.raft.prs().get(p.id).is_some_and(|pr| pr.matched >= state.commit)
            });
        let expected = state.target.epoch;
        // The target replica here, live or (merged away, removed) tombstoned: its epoch and
        // where its in-order apply began.
        let local = match peers.get(&state.target.id).filter(|t| t.is_initialized()) {
            Some(t) => Some((t.region().epoch, t.raw.store().applied_from)),
            None => read_tombstone(engine, state.target.id).map(|s| (s.region.epoch, s.applied_from)),
        };
        let live = peers.get(&state.target.id).filter(|t| t.is_initialized());
        let next = match (local, live) {
            (Some((epoch, applied_from)), _) if expected.is_stale_against(&epoch) => {
                if moved_on_provably(expected, applied_from) {
                    Next::Rollback
                } else {
                    // A snapshot took the target replica here past the merge's epoch: it
                    // cannot tell whether the CommitMerge applied. Another store may.
                    trace_event!("merge.rollback_unproven", "{source_id}: target {epoch:?}");
                    next_source_peer(src.region(), src.meta.id).map_or(Next::Wait, Next::TransferTo)
                }
            }
            (_, None) => Next::Wait,
            (_, Some(t)) if t.region().epoch != expected || t.merge_blocked => Next::Wait,
            (_, Some(t)) if t.is_leader() && all_hold_it => Next::Commit,
            (_, Some(t)) if t.is_leader() && src.ticks.saturating_sub(seen) > fence_after_ticks => Next::Fence,
            (_, Some(t)) => match t.leader().and_then(|l| src.region().peer_on_store(l.store_id).copied()) {
                Some(p) if p.store_id != store_id => Next::TransferTo(p),
                _ => Next::Wait,
            },
        };
        let src = peers.get_mut(&source_id).expect("listed");
        src.merge_seen_tick = Some(seen);
        src.merge_next_tick = src.ticks + retry_ticks;
        let source = src.region().clone();
        match next {
            Next::Wait => {}
            Next::Rollback => {
                trace_event!("merge.rollback", "{source_id} at {}", state.commit);
                propose(src, source_id, source.epoch, AdminRequest::RollbackMerge { commit: state.commit });
                proposed.push(source_id);
            }
            Next::TransferTo(p) => src.raw.transfer_leader(p.id),
            Next::Commit | Next::Fence => {
                let target = peers.get_mut(&state.target.id).expect("matched above");
                let body = match next {
                    Next::Commit => {
                        trace_event!("merge.propose_commit", "{} absorbs {source_id}", state.target.id);
                        AdminRequest::CommitMerge { source, commit: state.commit, commit_term: state.commit_term }
                    }
                    _ => {
                        trace_event!("merge.fence", "{} for {source_id}", state.target.id);
                        AdminRequest::FenceMerge
                    }
                };
                propose(target, state.target.id, state.target.epoch, body);
                proposed.push(state.target.id);
            }
        }
    }
    proposed
}

/// Whether a target replica now past the merge's target epoch `expected` proves that no
/// CommitMerge of it applied: only if its in-order apply began at or before `expected`
/// (see the module doc).
fn moved_on_provably(expected: RegionEpoch, applied_from: RegionEpoch) -> bool {
    !expected.is_stale_against(&applied_from)
}

/// The source peer after `me` in peer-id order (round robin), if there is another.
fn next_source_peer(region: &Region, me: u64) -> Option<keel_types::Peer> {
    let mut others: Vec<keel_types::Peer> = region.peers.iter().filter(|p| p.id != me).copied().collect();
    others.sort_by_key(|p| p.id);
    others.iter().find(|p| p.id > me).or(others.first()).copied()
}

/// Proposes an admin command nobody waits for (the merge is watched from the regions).
fn propose(peer: &mut Peer, region_id: RegionId, epoch: RegionEpoch, admin: AdminRequest) {
    let cmd = RaftCmd { region_id, epoch, body: CmdBody::Admin(admin) };
    match encode(&cmd) {
        Ok(data) => peer.propose(data, oneshot::channel().0),
        Err(e) => tracing::error!(region = region_id, %e, "merge command does not encode"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_types::Peer as PeerMeta;

    fn region(id: RegionId, start: &[u8], end: &[u8], stores: &[StoreId]) -> Region {
        Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            epoch: RegionEpoch { conf_ver: 2, version: id },
            peers: stores.iter().map(|&s| PeerMeta { id: id * 10 + s, store_id: s, role: PeerRole::Voter }).collect(),
        }
    }

    #[test]
    fn only_adjacent_colocated_voter_regions_merge() {
        let a = region(1, b"", b"m", &[1, 2, 3]);
        let b = region(2, b"m", b"", &[3, 2, 1]);
        assert_eq!(check_mergeable(&a, &b), Ok(()));
        assert_eq!(check_mergeable(&b, &a), Ok(()));
        assert!(check_mergeable(&a, &a).is_err());
        assert!(check_mergeable(&a, &region(2, b"n", b"", &[1, 2, 3])).is_err(), "a gap");
        assert!(check_mergeable(&a, &region(2, b"m", b"", &[1, 2, 4])).is_err(), "other stores");
        let mut learner = b.clone();
        learner.peers[0].role = PeerRole::Learner;
        assert!(check_mergeable(&a, &learner).is_err());
        // The end of the key space is not adjacent to its start.
        assert!(check_mergeable(&region(3, b"x", b"", &[1]), &region(4, b"", b"c", &[1])).is_err());
    }

    #[test]
    fn only_a_replica_that_applied_across_the_merge_epoch_proves_the_target_moved_on() {
        let e = |conf_ver, version| RegionEpoch { conf_ver, version };
        // Applied in order from its creation, or from a snapshot at the very epoch.
        assert!(moved_on_provably(e(2, 5), e(1, 1)));
        assert!(moved_on_provably(e(2, 5), e(2, 5)));
        // A snapshot past the epoch (the merge then a split since, say): no proof either way.
        assert!(!moved_on_provably(e(2, 5), e(2, 6)));
        assert!(!moved_on_provably(e(2, 5), e(3, 5)));
    }

    #[test]
    fn the_source_leadership_goes_round_the_other_peers() {
        let r = region(1, b"", b"m", &[1, 2, 3]);
        let ids: Vec<u64> = r.peers.iter().map(|p| p.id).collect();
        assert_eq!(next_source_peer(&r, ids[0]).map(|p| p.id), Some(ids[1]));
        assert_eq!(next_source_peer(&r, ids[2]).map(|p| p.id), Some(ids[0]));
        assert_eq!(next_source_peer(&region(1, b"", b"m", &[1]), 11), None);
    }

    #[test]
    fn the_merged_region_spans_both_with_a_newer_version() {
        let left = region(7, b"a", b"m", &[1]);
        let right = region(3, b"m", b"z", &[1]);
        let m = merged_region(&right, &left);
        assert_eq!((m.id, m.start_key.as_slice(), m.end_key.as_slice()), (3, &b"a"[..], &b"z"[..]));
        assert_eq!(m.epoch.version, 8);
        let m = merged_region(&left, &right);
        assert_eq!((m.id, m.start_key.as_slice(), m.end_key.as_slice()), (7, &b"a"[..], &b"z"[..]));
        assert_eq!(m.epoch, RegionEpoch { conf_ver: 2, version: 8 });
        // The last region merging into the first-but-one: its empty end is the key space's.
        let m = merged_region(&region(1, b"", b"m", &[1]), &region(2, b"m", b"", &[1]));
        assert_eq!((m.start_key.as_slice(), m.end_key.as_slice()), (&b""[..], &b""[..]));
    }
}
