//! A region peer's raft storage: raft-rs's `Storage` over the `raft` column family, plus the
//! staging of log appends, hard state, snapshots and log truncation into the store loop's
//! write batch. In-memory positions are updated as changes are staged; the store loop
//! writes the batch before anything can observe them (and stops if the write fails).

use crate::keys;
use crate::snapshot::SnapshotData;
use keel_storage::{CfName, Engine, WriteBatch};
use keel_types::codec::{decode, encode};
use keel_types::{PeerRole, Region};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use serde::{Deserialize, Serialize};
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
}

/// The region as this store knows it, persisted with every change to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionLocalState {
    /// Range, epoch and peers.
    pub region: Region,
    /// Lifecycle.
    pub state: PeerState,
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

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

/// One peer's raft storage.
pub struct PeerStorage {
    engine: Arc<dyn Engine>,
    /// The region.
    pub region: Region,
    /// Persisted raft state.
    pub raft_state: RaftLocalState,
    /// Persisted apply state.
    pub apply_state: ApplyState,
}

impl PeerStorage {
    /// Loads a peer's storage; `None` when the region has no raft state yet.
    pub fn load(engine: Arc<dyn Engine>, region: Region) -> Result<PeerStorage, String> {
        let id = region.id;
        let raft_state = read(&*engine, &keys::raft_state_key(id))?.ok_or("missing raft state")?;
        let apply_state = read(&*engine, &keys::apply_state_key(id))?.ok_or("missing apply state")?;
        Ok(PeerStorage { engine, region, raft_state, apply_state })
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
            &RegionLocalState { region: region.clone(), state: PeerState::Normal },
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
        for e in entries {
            batch.put(CfName::Raft, &keys::log_key(id, e.index), &e.write_to_bytes().expect("entry encodes"));
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
        put(batch, &keys::region_state_key(self.region.id), &RegionLocalState { region: self.region.clone(), state });
    }

    /// Stages destroying this peer: its data range, log and raft state go, and a tombstone
    /// records the region as last known so stale messages cannot recreate it.
    pub fn destroy(&mut self, batch: &mut WriteBatch) {
        let id = self.region.id;
        batch.delete_range(CfName::Raft, &keys::log_key(id, 0), &keys::log_key(id, u64::MAX));
        batch.delete(CfName::Raft, &keys::raft_state_key(id));
        batch.delete(CfName::Raft, &keys::apply_state_key(id));
        if self.is_initialized() {
            crate::snapshot::clear_range(batch, &self.region);
        }
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
        self.raft_state.last_index = meta.index;
        self.raft_state.last_term = meta.term;
        self.raft_state.commit = self.raft_state.commit.max(meta.index);
        self.apply_state =
            ApplyState { applied_index: meta.index, truncated_index: meta.index, truncated_term: meta.term };
        self.stage_apply_state(batch);
        self.stage_region_state(batch, PeerState::Normal);
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
        Ok(self.entry(idx)?.term)
    }

    fn entry(&self, idx: u64) -> raft::Result<Entry> {
        let bytes = self
            .engine
            .get(CfName::Raft, &keys::log_key(self.region.id, idx))
            .map_err(storage_err)?
            .ok_or(raft::Error::Store(StorageError::Unavailable))?;
        Entry::parse_from_bytes(&bytes).map_err(storage_err)
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
        let pairs = snap
            .scan(
                CfName::Raft,
                &keys::log_key(self.region.id, low),
                Some(&keys::log_key(self.region.id, high)),
                false,
                (high - low) as usize,
            )
            .map_err(storage_err)?;
        let mut out = Vec::with_capacity(pairs.len());
        let mut size = 0u64;
        for (i, (_, v)) in pairs.iter().enumerate() {
            let e = Entry::parse_from_bytes(v).map_err(storage_err)?;
            if e.index != low + i as u64 {
                return Err(storage_err(format!("log hole at {} (found {})", low + i as u64, e.index)));
            }
            size += v.len() as u64;
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e);
        }
        if out.is_empty() && high > low {
            return Err(raft::Error::Store(StorageError::Unavailable));
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
        crate::snapshot::generate(self).map_err(storage_err)
    }
}

/// Reads and decodes one record from the raft CF.
pub fn read<T: serde::de::DeserializeOwned>(engine: &dyn Engine, key: &[u8]) -> Result<Option<T>, String> {
    match engine.get(CfName::Raft, key).map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(bytes) => decode(&bytes).map(Some).map_err(|e| e.to_string()),
    }
}

/// Stages one encoded record into the raft CF.
pub fn put<T: Serialize>(batch: &mut WriteBatch, key: &[u8], value: &T) {
    batch.put(CfName::Raft, key, &encode(value).expect("raft record encodes"));
}
