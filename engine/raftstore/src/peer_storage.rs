//! A region peer's raft storage: raft-rs's `Storage` over the `raft` column family, plus the
//! staging of log appends, hard state, snapshots and log truncation into the store loop's
//! write batch. In-memory positions are updated as changes are staged; the store loop
//! writes the batch before anything can observe them (and stops if the write fails).

use crate::keys;
use crate::merge::MergeState;
use crate::snapshot::SnapshotData;
use keel_storage::{CfName, Engine, WriteBatch};
use keel_types::codec::{decode, encode};
use keel_types::{PeerRole, Region, RegionEpoch};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

/// Index of the first real entry's predecessor for regions created at bootstrap or split
/// (as TiKV: a fresh region starts as if a snapshot at index 5, term 5 were applied).
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
/// Term of that initial position.
pub const RAFT_INIT_LOG_TERM: u64 = 5;

/// Hard state and last log position, persisted together with each append.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftLocalState {
    /// Current term.
    pub term: u64,
    /// Vote in the current term.
    pub vote: u64,
    /// Highest known committed index.
    pub commit: u64,
    /// Index of the last log entry.
    pub last_index: u64,
    /// Term of the last log entry.
    pub last_term: u64,
}

/// What has been applied and where the log starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyState {
    /// Highest applied index; written atomically with the data it applied.
    pub applied_index: u64,
    /// Entries up to here were removed from the log.
    pub truncated_index: u64,
    /// Term of the truncated index.
    pub truncated_term: u64,
}

/// Lifecycle of a peer on this store.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerState {
    /// Serving.
    #[default]
    Normal,
    /// Removed from the region; kept so a stale message cannot recreate it.
    Tombstone,
    /// This replica (the peer given: the region no longer lists it) applied its own removal
    /// and keeps voting until the rest of the region has applied it too (see `removal.rs`).
    Removed(keel_types::Peer),
    /// The source of a merge: frozen until the target absorbs it or it rolls back (its
    /// [`MergeState`] is under [`keys::merge_state_key`], written in the same batch).
    Merging,
}

/// The region as this store knows it, persisted with every change to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionLocalState {
    /// Range, epoch and peers.
    pub region: Region,
    /// Lifecycle.
    pub state: PeerState,
    /// See [`PeerStorage::applied_from`].
    pub applied_from: RegionEpoch,
}

/// The raft conf state implied by a region's peers (no joint configuration).
pub fn conf_state_of(region: &Region) -> ConfState {
    let mut cs = ConfState::default();
    for p in &region.peers {
        match p.role {
            PeerRole::Voter => cs.voters.push(p.id),
            PeerRole::Learner => cs.learners.push(p.id),
        }
    }
    cs
}

/// One peer's raft storage.
///
/// raft-rs treats any storage error other than "compacted" as a bug and panics, so no disk
/// error reaches it: log terms are answered from memory ([`PeerStorage::terms`]), a failed
/// entry read answers with the entries before the failure (as if a size limit had cut it
/// short), a failed snapshot build answers "temporarily unavailable", and each failure is
/// kept in [`PeerStorage::fault`] for the store loop, which stops before anything derived
/// from the short answer is persisted or sent.
pub struct PeerStorage {
    engine: Arc<dyn Engine>,
    /// The region.
    pub region: Region,
    /// Persisted raft state.
    pub raft_state: RaftLocalState,
    /// Persisted apply state.
    pub apply_state: ApplyState,
    /// Set while this region is the source of a merge (applied its PrepareMerge).
    pub merge_state: Option<MergeState>,
    /// The region's epoch where this replica's unbroken in-order apply of the log began: at
    /// its creation (bootstrap or split) or its last snapshot. Every epoch from here to the
    /// current one was applied entry by entry, so a merge source may trust this replica's
    /// word that an epoch in that span was left without absorbing it (see [`crate::merge`]);
    /// an epoch a snapshot skipped over proves nothing.
    pub applied_from: RegionEpoch,
    /// Term of every log entry after the truncated index, as runs: first index of a run →
    /// its term (an index before the first run has the truncated term). Built at load by
    /// reading the whole log (so a corrupt entry is found before the peer starts).
    terms: BTreeMap<u64, u64>,
    /// The first disk error a raft-rs read met (the store loop must stop).
    fault: RefCell<Option<String>>,
}

impl PeerStorage {
    /// Loads a peer's storage; `None` when the region has no raft state yet.
    pub fn load(engine: Arc<dyn Engine>, region: Region) -> Result<PeerStorage, String> {
        let id = region.id;
        let raft_state: RaftLocalState = read(&*engine, &keys::raft_state_key(id))?.ok_or("missing raft state")?;
        let apply_state: ApplyState = read(&*engine, &keys::apply_state_key(id))?.ok_or("missing apply state")?;
        let mut terms = BTreeMap::new();
        let (first, last) = (apply_state.truncated_index + 1, raft_state.last_index);
        if first <= last {
            let log = engine
                .snapshot()
                .scan(CfName::Raft, &keys::log_key(id, first), Some(&keys::log_key(id, last + 1)), false, usize::MAX)
                .map_err(|e| format!("region {id}: raft log unreadable: {e}"))?;
            let mut prev = apply_state.truncated_term;
            for (i, (_, bytes)) in log.iter().enumerate() {
                let e = Entry::parse_from_bytes(bytes).map_err(|e| format!("region {id}: bad log entry: {e}"))?;
                if e.index != first + i as u64 {
                    return Err(format!("region {id}: raft log hole at {}", first + i as u64));
                }
                if e.term != prev {
                    terms.insert(e.index, e.term);
                    prev = e.term;
                }
            }
            if log.len() as u64 != last + 1 - first {
                return Err(format!("region {id}: raft log ends at {} before {last}", first + log.len() as u64 - 1));
            }
        }
        let merge_state = read(&*engine, &keys::merge_state_key(id))?;
        let applied_from =
            read::<RegionLocalState>(&*engine, &keys::region_state_key(id))?.map_or(region.epoch, |s| s.applied_from);
        Ok(PeerStorage {
            engine,
            region,
            raft_state,
            apply_state,
            merge_state,
            applied_from,
            terms,
            fault: RefCell::default(),
        })
    }

    /// Storage of a peer created by a message from a region's leader before this store has any
    /// of the region's data: an empty log at index 0, no range, no peers. It is filled by the
    /// first snapshot and written to disk only then.
    pub fn uninitialized(engine: Arc<dyn Engine>, region_id: keel_types::RegionId) -> PeerStorage {
        PeerStorage {
            engine,
            region: Region { id: region_id, ..Default::default() },
            raft_state: RaftLocalState::default(),
            apply_state: ApplyState::default(),
            merge_state: None,
            applied_from: RegionEpoch::default(),
            terms: BTreeMap::new(),
            fault: RefCell::default(),
        }
    }

    /// The disk error a raft-rs read met, if one did: the store loop must stop, as it does
    /// for a failed write (raft-rs was given a short answer and must not act on it).
    pub fn fault(&self) -> Option<String> {
        self.fault.borrow().clone()
    }

    /// Remembers the first disk error a raft-rs read met.
    fn record_fault(&self, what: impl std::fmt::Display) {
        let mut fault = self.fault.borrow_mut();
        if fault.is_none() {
            tracing::error!(region_id = self.region.id, %what, "raft storage read failed; the store must stop");
            *fault = Some(format!("region {}: {what}", self.region.id));
        }
    }

    /// False until the peer has its region's metadata (from bootstrap, a split or a snapshot).
    pub fn is_initialized(&self) -> bool {
        !self.region.peers.is_empty()
    }

    /// Stages the initial state of a region created at bootstrap or by a split: an empty
    /// log positioned at [`RAFT_INIT_LOG_INDEX`].
    pub fn write_initial_state(batch: &mut WriteBatch, region: &Region) {
        let raft_state = RaftLocalState {
            term: RAFT_INIT_LOG_TERM,
            vote: 0,
            commit: RAFT_INIT_LOG_INDEX,
            last_index: RAFT_INIT_LOG_INDEX,
            last_term: RAFT_INIT_LOG_TERM,
        };
        let apply_state = ApplyState {
            applied_index: RAFT_INIT_LOG_INDEX,
            truncated_index: RAFT_INIT_LOG_INDEX,
            truncated_term: RAFT_INIT_LOG_TERM,
        };
        put(batch, &keys::raft_state_key(region.id), &raft_state);
        put(batch, &keys::apply_state_key(region.id), &apply_state);
        put(
            batch,
            &keys::region_state_key(region.id),
            &RegionLocalState { region: region.clone(), state: PeerState::Normal, applied_from: region.epoch },
        );
    }

    /// The engine underneath.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// First index still in the log.
    pub fn first_index_(&self) -> u64 {
        self.apply_state.truncated_index + 1
    }

    /// Stages appending `entries` (which may overwrite a conflicting tail).
    pub fn append(&mut self, batch: &mut WriteBatch, entries: &[Entry]) {
        let Some(last) = entries.last() else { return };
        let id = self.region.id;
        // Terms from the first new entry on are replaced.
        let first = entries[0].index;
        self.terms.split_off(&first);
        let mut prev = self.term_in_memory(first - 1);
        for e in entries {
            batch.put(CfName::Raft, &keys::log_key(id, e.index), &e.write_to_bytes().expect("entry encodes"));
            if e.term != prev {
                self.terms.insert(e.index, e.term);
                prev = e.term;
            }
        }
        // A new leader's entries can replace a longer conflicting tail: drop the rest.
        if last.index < self.raft_state.last_index {
            batch.delete_range(
                CfName::Raft,
                &keys::log_key(id, last.index + 1),
                &keys::log_key(id, self.raft_state.last_index + 1),
            );
        }
        self.raft_state.last_index = last.index;
        self.raft_state.last_term = last.term;
    }

    /// Stages a new hard state.
    pub fn set_hard_state(&mut self, hs: &HardState) {
        self.raft_state.term = hs.term;
        self.raft_state.vote = hs.vote;
        self.raft_state.commit = hs.commit;
    }

    /// Stages a new commit index (from a light ready).
    pub fn set_commit(&mut self, commit: u64) {
        self.raft_state.commit = commit;
    }

    /// Stages the raft state key (call once per round after the changes above).
    pub fn stage_raft_state(&self, batch: &mut WriteBatch) {
        put(batch, &keys::raft_state_key(self.region.id), &self.raft_state);
    }

    /// Stages the apply state and region state keys.
    pub fn stage_apply_state(&self, batch: &mut WriteBatch) {
        put(batch, &keys::apply_state_key(self.region.id), &self.apply_state);
    }

    /// Stages the region meta.
    pub fn stage_region_state(&self, batch: &mut WriteBatch, state: PeerState) {
        let state = RegionLocalState { region: self.region.clone(), state, applied_from: self.applied_from };
        put(batch, &keys::region_state_key(self.region.id), &state);
    }

    /// Stages the region meta of a live peer together with its merge state: `Merging` with
    /// the state while it is a merge source, `Normal` (and no merge state) otherwise. One
    /// batch, so a crash never separates the two.
    pub fn stage_live_state(&self, batch: &mut WriteBatch) {
        let key = keys::merge_state_key(self.region.id);
        match &self.merge_state {
            Some(state) => {
                put(batch, &key, state);
                self.stage_region_state(batch, PeerState::Merging);
            }
            None => {
                batch.delete(CfName::Raft, &key);
                self.stage_region_state(batch, PeerState::Normal);
            }
        }
    }

    /// Stages destroying this peer: its data range, log and raft state go, and a tombstone
    /// records the region as last known so stale messages cannot recreate it.
    pub fn destroy(&mut self, batch: &mut WriteBatch) {
        if self.is_initialized() {
            crate::snapshot::clear_range(batch, &self.region);
        }
        self.destroy_keeping_data(batch);
    }

    /// Stages destroying this peer but not its data: a merge source whose range the target
    /// on this store has just taken over (in the same batch).
    pub fn destroy_keeping_data(&mut self, batch: &mut WriteBatch) {
        let id = self.region.id;
        batch.delete_range(CfName::Raft, &keys::log_key(id, 0), &keys::log_key(id, u64::MAX));
        self.terms.clear();
        batch.delete(CfName::Raft, &keys::raft_state_key(id));
        batch.delete(CfName::Raft, &keys::apply_state_key(id));
        batch.delete(CfName::Raft, &keys::merge_state_key(id));
        self.merge_state = None;
        self.stage_region_state(batch, PeerState::Tombstone);
    }

    /// Stages truncating the log up to and including `index` (must be applied).
    pub fn compact_to(&mut self, batch: &mut WriteBatch, index: u64) -> Result<(), raft::Error> {
        if index <= self.apply_state.truncated_index {
            return Ok(());
        }
        assert!(index <= self.apply_state.applied_index, "compacting unapplied entries: {index}");
        let term = self.term_(index)?;
        batch.delete_range(
            CfName::Raft,
            &keys::log_key(self.region.id, self.apply_state.truncated_index + 1),
            &keys::log_key(self.region.id, index + 1),
        );
        self.apply_state.truncated_index = index;
        self.apply_state.truncated_term = term;
        // Runs starting at or before `index` are gone; one that covered `index + 1` has
        // `term` (the truncated term) and needs no entry.
        self.terms = self.terms.split_off(&(index + 1));
        self.stage_apply_state(batch);
        Ok(())
    }

    /// Stages installing a snapshot received from the leader: the region's data replaced
    /// by the snapshot's, the log emptied and positioned at the snapshot.
    pub fn apply_snapshot(&mut self, batch: &mut WriteBatch, snap: &Snapshot) -> Result<(), String> {
        let meta = snap.get_metadata();
        let data: SnapshotData = decode(snap.get_data()).map_err(|e| e.to_string())?;
        let id = self.region.id;
        // Old log entries and old data of the (old and new) range go away.
        batch.delete_range(CfName::Raft, &keys::log_key(id, 0), &keys::log_key(id, u64::MAX));
        self.terms.clear();
        if self.is_initialized() {
            // An uninitialized peer's "range" is empty metadata, not the whole key space.
            crate::snapshot::clear_range(batch, &self.region);
        }
        crate::snapshot::clear_range(batch, &data.region);
        for (cf, pairs) in &data.cfs {
            for (k, v) in pairs {
                batch.put(*cf, k, v);
            }
        }
        self.region = data.region;
        self.applied_from = self.region.epoch;
        self.merge_state = data.merge;
        self.raft_state.last_index = meta.index;
        self.raft_state.last_term = meta.term;
        self.raft_state.commit = self.raft_state.commit.max(meta.index);
        self.apply_state =
            ApplyState { applied_index: meta.index, truncated_index: meta.index, truncated_term: meta.term };
        self.stage_apply_state(batch);
        self.stage_live_state(batch);
        self.stage_raft_state(batch);
        Ok(())
    }

    fn term_(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.apply_state.truncated_index {
            return Ok(self.apply_state.truncated_term);
        }
        if idx < self.apply_state.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.raft_state.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if idx == self.raft_state.last_index {
            return Ok(self.raft_state.last_term);
        }
        Ok(self.term_in_memory(idx))
    }

    /// The term of log position `idx`, for `truncated_index <= idx <= last_index`.
    fn term_in_memory(&self, idx: u64) -> u64 {
        if idx <= self.apply_state.truncated_index {
            return self.apply_state.truncated_term;
        }
        self.terms.range(..=idx).next_back().map_or(self.apply_state.truncated_term, |(_, &t)| t)
    }
}

impl raft::Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let hs = HardState {
            term: self.raft_state.term,
            vote: self.raft_state.vote,
            commit: self.raft_state.commit,
            ..Default::default()
        };
        Ok(RaftState { hard_state: hs, conf_state: conf_state_of(&self.region) })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.apply_state.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.raft_state.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let snap = self.engine.snapshot();
        let mut out = Vec::new();
        let mut size = 0u64;
        let iter = snap.iter(
            CfName::Raft,
            Bound::Included(&keys::log_key(self.region.id, low)),
            Bound::Excluded(&keys::log_key(self.region.id, high)),
            false,
        );
        // A read that fails answers with the entries before the failure (see the type's
        // doc); the store loop stops on the recorded fault.
        for (i, item) in iter.enumerate() {
            let expected = low + i as u64;
            let entry = item
                .map_err(|e| e.to_string())
                .and_then(|(_, v)| Entry::parse_from_bytes(&v).map(|e| (e, v.len())).map_err(|e| e.to_string()))
                .and_then(|(e, len)| match e.index == expected {
                    true => Ok((e, len)),
                    false => Err(format!("log hole at {expected} (found {})", e.index)),
                });
            let (e, len) = match entry {
                Ok(found) => found,
                Err(why) => {
                    self.record_fault(format!("raft log entry {expected}: {why}"));
                    return Ok(out);
                }
            };
            size += len as u64;
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e);
        }
        if out.is_empty() && high > low {
            self.record_fault(format!("raft log entries {low}..{high} missing"));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.term_(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index_())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.raft_state.last_index)
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        crate::snapshot::generate(self).map_err(|e| {
            self.record_fault(format!("snapshot: {e}"));
            raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)
        })
    }
}

/// Reads and decodes one record from the raft CF.
pub fn read<T: serde::de::DeserializeOwned>(engine: &dyn Engine, key: &[u8]) -> Result<Option<T>, String> {
    match engine.get(CfName::Raft, key).map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(bytes) => decode(&bytes).map(Some).map_err(|e| e.to_string()),
    }
}

/// The state a destroyed replica of `region_id` left on this store, if it left one (an
/// unreadable record counts as none). It answers a removed replica's probe, and a merge
/// target merged away into a third region (or removed) leaves its last epoch here: past the
/// merge's, it proves as a live replica would (the target's own PrepareMerge froze it, and a
/// frozen region applies no CommitMerge).
pub fn read_tombstone(engine: &dyn Engine, region_id: u64) -> Option<RegionLocalState> {
    read::<RegionLocalState>(engine, &keys::region_state_key(region_id))
        .ok()
        .flatten()
        .filter(|s| s.state == PeerState::Tombstone)
}

/// Stages one encoded record into the raft CF.
pub fn put<T: Serialize>(batch: &mut WriteBatch, key: &[u8], value: &T) {
    batch.put(CfName::Raft, key, &encode(value).expect("raft record encodes"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_storage::{SimEngine, WriteOptions};
    use raft::Storage as _;

    fn entries(terms: &[(u64, u64)]) -> Vec<Entry> {
        terms.iter().map(|&(index, term)| Entry { index, term, ..Default::default() }).collect()
    }

    fn storage(engine: &SimEngine) -> PeerStorage {
        let region = Region {
            id: 2,
            peers: vec![keel_types::Peer { id: 3, store_id: 1, role: PeerRole::Voter }],
            ..Default::default()
        };
        let mut batch = WriteBatch::new();
        PeerStorage::write_initial_state(&mut batch, &region);
        engine.write(batch, WriteOptions::SYNC).unwrap();
        PeerStorage::load(Arc::new(engine.clone()), region).unwrap()
    }

    fn terms_of(s: &PeerStorage, range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
        range.map(|i| s.term(i).unwrap()).collect()
    }

    #[test]
    fn terms_come_from_memory_and_survive_reload() {
        let engine = SimEngine::new();
        let mut s = storage(&engine);
        let mut batch = WriteBatch::new();
        s.append(&mut batch, &entries(&[(6, 6), (7, 6), (8, 7), (9, 7), (10, 8)]));
        assert_eq!(terms_of(&s, 5..=10), [5, 6, 6, 7, 7, 8]);
        // A new leader's entries replace a conflicting tail.
        s.append(&mut batch, &entries(&[(9, 9)]));
        assert_eq!(terms_of(&s, 5..=9), [5, 6, 6, 7, 9]);
        assert!(s.term(10).is_err());
        s.stage_raft_state(&mut batch);
        s.apply_state.applied_index = 8;
        s.compact_to(&mut batch, 7).unwrap();
        assert!(s.term(6).is_err(), "compacted");
        assert_eq!(terms_of(&s, 7..=9), [6, 7, 9]);
        engine.write(batch, WriteOptions::SYNC).unwrap();
        let reloaded = PeerStorage::load(Arc::new(engine.clone()), s.region.clone()).unwrap();
        assert_eq!(terms_of(&reloaded, 7..=9), [6, 7, 9]);
        let read = reloaded.entries(8, 10, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(read.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(), [(8, 7), (9, 9)]);
        assert_eq!(reloaded.fault(), None);
    }

    #[test]
    fn a_corrupt_log_entry_is_a_fault_never_an_error_for_raft() {
        use rand::SeedableRng;
        let engine = SimEngine::new();
        let mut s = storage(&engine);
        let mut batch = WriteBatch::new();
        s.append(&mut batch, &entries(&[(6, 6), (7, 6), (8, 6)]));
        s.stage_raft_state(&mut batch);
        engine.write(batch, WriteOptions::SYNC).unwrap();
        let bad = keys::log_key(2, 7);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        engine.corrupt_random_value(&mut rng, &|_, k| k == bad.as_slice()).unwrap();
        // raft-rs gets the entries before the bad one; the store loop gets the fault.
        let read = s.entries(6, 9, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(read.len(), 1);
        assert!(s.fault().unwrap().contains("raft log entry 7"), "{:?}", s.fault());
        assert_eq!(terms_of(&s, 6..=8), [6, 6, 6], "terms never touch the disk");
        // A restarted node finds it before serving.
        engine.crash_keeping(0);
        let err = PeerStorage::load(Arc::new(engine.clone()), s.region.clone()).err().unwrap();
        assert!(err.contains("raft log unreadable"), "{err}");
    }
}
