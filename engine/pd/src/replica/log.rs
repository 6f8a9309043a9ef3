//! A PD member's raft log: raft-rs's `Storage` over an in-memory copy of the log, with every
//! change staged into a write batch for the member's engine (keys under `pdraft/`, beside
//! the `pd/` state they replicate).
//!
//! | key                        | value                                                  |
//! |----------------------------|--------------------------------------------------------|
//! | `pdraft/state`             | [`LogState`]: hard state, log bounds, snapshot position |
//! | `pdraft/applied`           | u64: the last entry whose writes are in `pd/`           |
//! | `pdraft/log/<idx: u64 BE>` | encoded `eraftpb::Entry`                                |
//!
//! `pdraft/applied` is written in the same batch as the writes it covers, so after a crash
//! the member resumes applying exactly where its state stops. A snapshot is the whole `pd/`
//! key space at the applied index: PD's state is small (stores, regions, counters).

use crate::meta;
use crate::Error;
use keel_storage::{Engine, WriteBatch};
use keel_types::codec::{decode, encode};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const STATE: &[u8] = b"pdraft/state";
const APPLIED: &[u8] = b"pdraft/applied";
const LOG_PREFIX: &[u8] = b"pdraft/log/";
/// Where PD's replicated state lives (a snapshot carries exactly this range).
const PD_PREFIX: &[u8] = b"pd/";

/// What survives a restart besides the entries themselves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LogState {
    term: u64,
    vote: u64,
    commit: u64,
    /// The log holds `snap_index + 1 ..= last_index`.
    last_index: u64,
    /// The position of the last snapshot applied or of the last compaction.
    snap_index: u64,
    snap_term: u64,
}

/// The member's raft log and the engine its state machine lives in.
pub(crate) struct PdLog {
    engine: Arc<dyn Engine>,
    conf: ConfState,
    hard: HardState,
    snap_index: u64,
    snap_term: u64,
    /// Entries `snap_index + 1 ..`.
    entries: Vec<Entry>,
    applied: u64,
}

impl PdLog {
    /// Loads the log from `engine` (empty at first start) for a group of `voters`.
    pub(crate) fn load(engine: Arc<dyn Engine>, voters: Vec<u64>) -> Result<PdLog, Error> {
        let state: LogState = meta::read_record(engine.as_ref(), STATE)?.unwrap_or_default();
        let applied = meta::read_u64(engine.as_ref(), APPLIED)?.unwrap_or(state.snap_index);
        let mut entries = Vec::with_capacity((state.last_index - state.snap_index) as usize);
        for index in state.snap_index + 1..=state.last_index {
            let key = meta::id_key(LOG_PREFIX, index);
            let bytes = engine
                .get(meta::CF, &key)?
                .ok_or_else(|| Error::Corrupt(format!("pd raft log: entry {index} missing")))?;
            let entry = Entry::parse_from_bytes(&bytes)
                .map_err(|e| Error::Corrupt(format!("pd raft log entry {index}: {e}")))?;
            entries.push(entry);
        }
        if applied < state.snap_index || applied > state.last_index.max(state.snap_index) {
            return Err(Error::Corrupt(format!(
                "pd raft log: applied {applied} outside {}..={}",
                state.snap_index, state.last_index
            )));
        }
        let hard = HardState { term: state.term, vote: state.vote, commit: state.commit, ..Default::default() };
        let conf = ConfState { voters, ..Default::default() };
        Ok(PdLog { engine, conf, hard, snap_index: state.snap_index, snap_term: state.snap_term, entries, applied })
    }

    /// The last applied index.
    pub(crate) fn applied(&self) -> u64 {
        self.applied
    }

    /// Stages `entries` (which may overwrite a suffix of the log).
    pub(crate) fn append(&mut self, new: &[Entry], batch: &mut WriteBatch) {
        let Some(first) = new.first() else { return };
        debug_assert!(first.index > self.snap_index && first.index <= self.last() + 1);
        self.entries.truncate((first.index - self.snap_index - 1) as usize);
        for entry in new {
            batch.put(
                meta::CF,
                &meta::id_key(LOG_PREFIX, entry.index),
                &entry.write_to_bytes().expect("entry encodes"),
            );
        }
        self.entries.extend_from_slice(new);
    }

    /// Records a new hard state (staged by [`PdLog::stage_state`]).
    pub(crate) fn set_hard_state(&mut self, hard: &HardState) {
        self.hard = hard.clone();
    }

    /// Records a new commit index.
    pub(crate) fn set_commit(&mut self, commit: u64) {
        self.hard.commit = commit;
    }

    /// Stages the hard state and log bounds.
    pub(crate) fn stage_state(&self, batch: &mut WriteBatch) {
        let state = LogState {
            term: self.hard.term,
            vote: self.hard.vote,
            commit: self.hard.commit,
            last_index: self.last(),
            snap_index: self.snap_index,
            snap_term: self.snap_term,
        };
        meta::put_record(batch, STATE, &state);
    }

    /// Stages the writes of committed `entry` and moves the applied index to it.
    pub(crate) fn apply(&mut self, entry: &Entry, batch: &mut WriteBatch) -> Result<(), Error> {
        if !entry.data.is_empty() {
            let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> =
                decode(&entry.data).map_err(|e| Error::Corrupt(format!("pd raft entry {}: {e}", entry.index)))?;
            for (key, value) in writes {
                match value {
                    Some(value) => batch.put(meta::CF, &key, &value),
                    None => batch.delete(meta::CF, &key),
                }
            }
        }
        self.applied = entry.index;
        meta::put_u64(batch, APPLIED, entry.index);
        Ok(())
    }

    /// Replaces the log and the state with `snap` (from the leader's [`raft::Storage::snapshot`]).
    pub(crate) fn apply_snapshot(&mut self, snap: &Snapshot, batch: &mut WriteBatch) -> Result<(), Error> {
        let meta = snap.get_metadata();
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            decode(&snap.data).map_err(|e| Error::Corrupt(format!("pd raft snapshot {}: {e}", meta.index)))?;
        batch.delete_range(meta::CF, LOG_PREFIX, &meta::prefix_end(LOG_PREFIX));
        batch.delete_range(meta::CF, PD_PREFIX, &meta::prefix_end(PD_PREFIX));
        for (key, value) in pairs {
            batch.put(meta::CF, &key, &value);
        }
        self.entries.clear();
        self.snap_index = meta.index;
        self.snap_term = meta.term;
        self.hard.commit = self.hard.commit.max(meta.index);
        self.hard.term = self.hard.term.max(meta.term);
        self.applied = meta.index;
        meta::put_u64(batch, APPLIED, meta.index);
        Ok(())
    }

    /// Drops entries up to `keep_from - 1` (all applied) from memory and disk.
    pub(crate) fn compact(&mut self, keep_from: u64, batch: &mut WriteBatch) {
        let upto = keep_from.saturating_sub(1).min(self.applied);
        if upto <= self.snap_index {
            return;
        }
        self.snap_term = self.term_of(upto).expect("compacting inside the log");
        let drop = (upto - self.snap_index) as usize;
        self.entries.drain(..drop);
        batch.delete_range(
            meta::CF,
            &meta::id_key(LOG_PREFIX, self.snap_index + 1),
            &meta::id_key(LOG_PREFIX, upto + 1),
        );
        self.snap_index = upto;
    }

    /// How many entries the log holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn last(&self) -> u64 {
        self.snap_index + self.entries.len() as u64
    }

    fn term_of(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snap_index {
            return Ok(self.snap_term);
        }
        if idx < self.snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.entries.get((idx - self.snap_index - 1) as usize) {
            Some(e) => Ok(e.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }
}

impl raft::Storage for PdLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard.clone(), self.conf.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let from = (low - self.snap_index - 1) as usize;
        let to = (high - self.snap_index - 1) as usize;
        let mut out = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.term_of(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snap_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    /// The whole `pd/` state at the applied index (the member applies synchronously, so the
    /// engine holds exactly that state whenever raft asks).
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let unavailable = |_| raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        let end = meta::prefix_end(PD_PREFIX);
        let pairs =
            self.engine.snapshot().scan(meta::CF, PD_PREFIX, Some(&end), false, usize::MAX).map_err(unavailable)?;
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = pairs.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        let mut snap = Snapshot { data: encode(&pairs).expect("pd snapshot encodes").into(), ..Default::default() };
        let meta = snap.mut_metadata();
        meta.index = self.applied;
        meta.term = self.term_of(self.applied)?;
        meta.set_conf_state(self.conf.clone());
        Ok(snap)
    }
}

/// The writes of `batch` as a raft entry's payload (PD writes only puts and deletes).
pub(crate) fn encode_writes(batch: &WriteBatch) -> Vec<u8> {
    let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = batch
        .ops()
        .iter()
        .map(|op| match op {
            keel_storage::WriteOp::Put { key, value, .. } => (key.to_vec(), Some(value.to_vec())),
            keel_storage::WriteOp::Delete { key, .. } => (key.to_vec(), None),
            keel_storage::WriteOp::DeleteRange { .. } => unreachable!("PD state is written key by key"),
        })
        .collect();
    encode(&writes).expect("pd writes encode")
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_storage::{CfName, SimEngine, WriteOptions};
    use raft::Storage as _;

    fn entry(index: u64, term: u64, writes: &[(&[u8], &[u8])]) -> Entry {
        let mut batch = WriteBatch::new();
        for (k, v) in writes {
            batch.put(CfName::Default, k, v);
        }
        Entry { index, term, data: encode_writes(&batch).into(), ..Default::default() }
    }

    #[test]
    fn log_and_applied_state_survive_a_restart() {
        let engine: Arc<dyn Engine> = Arc::new(SimEngine::new());
        let mut log = PdLog::load(engine.clone(), vec![1, 2, 3]).unwrap();
        let mut batch = WriteBatch::new();
        log.append(&[entry(1, 1, &[(b"pd/a", b"1")]), entry(2, 1, &[(b"pd/b", b"2")]), entry(3, 1, &[])], &mut batch);
        let hard = HardState { term: 1, vote: 2, commit: 2, ..Default::default() };
        log.set_hard_state(&hard);
        let first = log.entries(1, 2, None, GetEntriesContext::empty(false)).unwrap();
        log.apply(&first[0], &mut batch).unwrap();
        log.stage_state(&mut batch);
        engine.write(batch, WriteOptions::SYNC).unwrap();

        let again = PdLog::load(engine.clone(), vec![1, 2, 3]).unwrap();
        assert_eq!(again.applied(), 1);
        assert_eq!(again.last_index().unwrap(), 3);
        assert_eq!(again.initial_state().unwrap().hard_state, hard);
        assert_eq!(engine.get(CfName::Default, b"pd/a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(engine.get(CfName::Default, b"pd/b").unwrap(), None, "entry 2 is not applied yet");
    }

    #[test]
    fn an_overwritten_suffix_is_not_reloaded_and_compaction_keeps_terms() {
        let engine: Arc<dyn Engine> = Arc::new(SimEngine::new());
        let mut log = PdLog::load(engine.clone(), vec![1]).unwrap();
        let mut batch = WriteBatch::new();
        log.append(&[entry(1, 1, &[]), entry(2, 1, &[]), entry(3, 1, &[])], &mut batch);
        log.append(&[entry(2, 2, &[])], &mut batch);
        for i in 1..=2 {
            let e = log.entries(i, i + 1, None, GetEntriesContext::empty(false)).unwrap().remove(0);
            log.apply(&e, &mut batch).unwrap();
        }
        log.compact(2, &mut batch);
        log.stage_state(&mut batch);
        engine.write(batch, WriteOptions::SYNC).unwrap();
        let again = PdLog::load(engine, vec![1]).unwrap();
        assert_eq!((again.first_index().unwrap(), again.last_index().unwrap()), (2, 2));
        assert_eq!(again.term(1).unwrap(), 1);
        assert_eq!(again.term(2).unwrap(), 2);
        assert!(again.term(0).is_err());
    }

    #[test]
    fn a_snapshot_carries_the_pd_state_and_replaces_a_followers() {
        let leader_engine: Arc<dyn Engine> = Arc::new(SimEngine::new());
        let mut leader = PdLog::load(leader_engine.clone(), vec![1, 2]).unwrap();
        let mut batch = WriteBatch::new();
        let e = entry(1, 1, &[(b"pd/x", b"leader")]);
        leader.append(std::slice::from_ref(&e), &mut batch);
        leader.apply(&e, &mut batch).unwrap();
        leader_engine.write(batch, WriteOptions::SYNC).unwrap();
        let snap = leader.snapshot(0, 2).unwrap();
        assert_eq!((snap.get_metadata().index, snap.get_metadata().term), (1, 1));

        let follower_engine: Arc<dyn Engine> = Arc::new(SimEngine::new());
        let mut stale = WriteBatch::new();
        stale.put(CfName::Default, b"pd/stale", b"gone");
        follower_engine.write(stale, WriteOptions::SYNC).unwrap();
        let mut follower = PdLog::load(follower_engine.clone(), vec![1, 2]).unwrap();
        let mut batch = WriteBatch::new();
        follower.apply_snapshot(&snap, &mut batch).unwrap();
        follower.stage_state(&mut batch);
        follower_engine.write(batch, WriteOptions::SYNC).unwrap();
        assert_eq!(follower_engine.get(CfName::Default, b"pd/x").unwrap().as_deref(), Some(&b"leader"[..]));
        assert_eq!(follower_engine.get(CfName::Default, b"pd/stale").unwrap(), None);
        let again = PdLog::load(follower_engine, vec![1, 2]).unwrap();
        assert_eq!((again.applied(), again.first_index().unwrap()), (1, 2));
    }
}
