//! Reads of the transactional CFs through one engine snapshot.

use super::{Lock, LockKind, Write, WriteKind};
use crate::error::{Error, Result};
use keel_storage::{CfName, Snapshot};
use keel_types::keys::{decode_bytes, encode_bytes, split_versioned_key, versioned_key};
use keel_types::Timestamp;
use std::ops::Bound;

/// What the write CF says about one transaction on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnCommitRecord {
    /// Committed at `commit_ts` with this record.
    Committed {
        /// Commit timestamp.
        commit_ts: Timestamp,
        /// The record.
        write: Write,
    },
    /// Rolled back (a rollback record, or an overlapped one).
    RolledBack,
    /// No record: the transaction never committed nor rolled back this key.
    None,
}

/// Reads locks, write records and values through a snapshot. Holds no state of its own.
pub struct MvccReader<'a> {
    snap: &'a dyn Snapshot,
}

impl<'a> MvccReader<'a> {
    /// A reader over `snap`.
    pub fn new(snap: &'a dyn Snapshot) -> MvccReader<'a> {
        MvccReader { snap }
    }

    /// The lock on `key`, if any.
    pub fn load_lock(&self, key: &[u8]) -> Result<Option<Lock>> {
        self.snap.get(CfName::Lock, &encode_bytes(key))?.map(|b| Lock::from_bytes(&b)).transpose()
    }

    /// The write record at exactly `commit_ts`.
    pub fn get_write(&self, key: &[u8], commit_ts: Timestamp) -> Result<Option<Write>> {
        self.snap.get(CfName::Write, &versioned_key(key, commit_ts))?.map(|b| Write::from_bytes(&b)).transpose()
    }

    /// Every write record of `key` with `commit_ts` in `[low, high]`, newest first.
    pub fn writes_between(&self, key: &[u8], low: Timestamp, high: Timestamp) -> Result<Vec<(Timestamp, Write)>> {
        let (lower, upper) = (versioned_key(key, high), versioned_key(key, low));
        let mut out = Vec::new();
        for item in self.snap.iter(CfName::Write, Bound::Included(&lower), Bound::Included(&upper), false) {
            let (k, v) = item?;
            out.push((commit_ts_of(&k)?, Write::from_bytes(&v)?));
        }
        Ok(out)
    }

    /// Every write record of `key`, newest first.
    pub fn all_writes(&self, key: &[u8]) -> Result<Vec<(Timestamp, Write)>> {
        self.writes_between(key, Timestamp::ZERO, Timestamp::MAX)
    }

    /// The newest `Put`/`Delete` record at or below `ts` (rollback and lock records are
    /// looked past).
    pub fn seek_data_write(&self, key: &[u8], ts: Timestamp) -> Result<Option<(Timestamp, Write)>> {
        let (lower, upper) = (versioned_key(key, ts), versioned_key(key, Timestamp::ZERO));
        for item in self.snap.iter(CfName::Write, Bound::Included(&lower), Bound::Included(&upper), false) {
            let (k, v) = item?;
            let write = Write::from_bytes(&v)?;
            if write.is_data() {
                return Ok(Some((commit_ts_of(&k)?, write)));
            }
        }
        Ok(None)
    }

    /// The value `key` has for a snapshot read at `ts` (locks are not checked here).
    pub fn get(&self, key: &[u8], ts: Timestamp) -> Result<Option<Vec<u8>>> {
        match self.seek_data_write(key, ts)? {
            Some((_, write)) if write.kind == WriteKind::Put => self.load_value(key, &write).map(Some),
            _ => Ok(None),
        }
    }

    /// The value a `Put` record stands for (inline, or from the default CF).
    pub fn load_value(&self, key: &[u8], write: &Write) -> Result<Vec<u8>> {
        debug_assert_eq!(write.kind, WriteKind::Put);
        if let Some(v) = &write.short_value {
            return Ok(v.clone());
        }
        self.snap.get(CfName::Default, &versioned_key(key, write.start_ts))?.ok_or_else(|| {
            Error::Corrupt(format!("value of {key:?} at {} missing from the default CF", write.start_ts))
        })
    }

    /// What `key` holds once `lock`'s transaction commits: its value for a `Put` (inline, or
    /// from the default CF), `None` for a `Delete` or a `Lock`.
    pub fn lock_value(&self, key: &[u8], lock: &Lock) -> Result<Option<Vec<u8>>> {
        match lock.kind {
            LockKind::Put => {
                self.load_value(key, &Write::new(WriteKind::Put, lock.start_ts, lock.short_value.clone())).map(Some)
            }
            LockKind::Delete | LockKind::Lock => Ok(None),
        }
    }

    /// Whether the transaction `start_ts` committed or rolled back `key`. Looks at every
    /// record at or above `start_ts` (a transaction's commit_ts is never below it).
    pub fn txn_commit_record(&self, key: &[u8], start_ts: Timestamp) -> Result<TxnCommitRecord> {
        for (commit_ts, write) in self.writes_between(key, start_ts, Timestamp::MAX)? {
            if write.rolls_back(commit_ts, start_ts) {
                return Ok(TxnCommitRecord::RolledBack);
            }
            if write.start_ts == start_ts && write.kind != WriteKind::Rollback {
                return Ok(TxnCommitRecord::Committed { commit_ts, write });
            }
        }
        Ok(TxnCommitRecord::None)
    }

    /// Locks in the user-key range `[start, end)` (`end` empty: unbounded) that satisfy
    /// `filter`, in key order, at most `limit`.
    pub fn scan_locks(
        &self,
        start: &[u8],
        end: &[u8],
        filter: impl Fn(&Lock) -> bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Lock)>> {
        let lower = encode_bytes(start);
        let upper = (!end.is_empty()).then(|| encode_bytes(end));
        let upper_bound = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for item in self.snap.iter(CfName::Lock, Bound::Included(&lower), upper_bound, false) {
            let (k, v) = item?;
            let lock = Lock::from_bytes(&v)?;
            if filter(&lock) {
                out.push((user_key_of(&k)?, lock));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every write record in the user-key range `[start, end)` (`end` empty: unbounded):
    /// `(user key, commit_ts, record)`, keys ascending, each key's versions newest first.
    pub fn write_records(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Timestamp, Write)>> + '_ {
        let lower = encode_bytes(start);
        let upper = (!end.is_empty()).then(|| encode_bytes(end));
        let upper_bound = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        self.snap.iter(CfName::Write, Bound::Included(&lower), upper_bound, false).map(|item| {
            let (k, v) = item?;
            let (key, ts) = split_versioned_key(&k).ok_or_else(|| Error::Corrupt(format!("write key {k:?}")))?;
            Ok((key, ts, Write::from_bytes(&v)?))
        })
    }

    /// The distinct user keys that have a lock or a write record in `[start, end)`
    /// (`end` empty: unbounded), ascending (descending when `reverse`), lazily.
    pub fn user_keys(&self, start: &[u8], end: &[u8], reverse: bool) -> impl Iterator<Item = Result<Vec<u8>>> + '_ {
        let lower = encode_bytes(start);
        let upper = (!end.is_empty()).then(|| encode_bytes(end));
        let upper_bound = || upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let locks = self.snap.iter(CfName::Lock, Bound::Included(&lower), upper_bound(), reverse);
        let writes = self.snap.iter(CfName::Write, Bound::Included(&lower), upper_bound(), reverse);
        MergedKeys {
            locks: locks.map(|r| r.map_err(Error::from).and_then(|(k, _)| user_key_of(&k))).peekable(),
            writes: writes.map(|r| r.map_err(Error::from).and_then(|(k, _)| user_key_of(&k))).peekable(),
            reverse,
            last: None,
        }
    }
}

/// Merges two sorted streams of user keys, dropping duplicates.
struct MergedKeys<L: Iterator<Item = Result<Vec<u8>>>, W: Iterator<Item = Result<Vec<u8>>>> {
    locks: std::iter::Peekable<L>,
    writes: std::iter::Peekable<W>,
    reverse: bool,
    last: Option<Vec<u8>>,
}

impl<L: Iterator<Item = Result<Vec<u8>>>, W: Iterator<Item = Result<Vec<u8>>>> Iterator for MergedKeys<L, W> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        loop {
            let take_lock = match (self.locks.peek(), self.writes.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) | (Some(_), None) => true,
                (None, Some(_)) | (_, Some(Err(_))) => false,
                (Some(Ok(l)), Some(Ok(w))) => (l < w) != self.reverse || l == w,
            };
            let next = if take_lock { self.locks.next() } else { self.writes.next() }?;
            match next {
                Ok(key) if self.last.as_ref() == Some(&key) => continue,
                Ok(key) => {
                    self.last = Some(key.clone());
                    return Some(Ok(key));
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

fn commit_ts_of(stored: &[u8]) -> Result<Timestamp> {
    split_versioned_key(stored).map(|(_, ts)| ts).ok_or_else(|| Error::Corrupt(format!("write key {stored:?}")))
}

fn user_key_of(stored: &[u8]) -> Result<Vec<u8>> {
    decode_bytes(stored).map(|(k, _)| k).ok_or_else(|| Error::Corrupt(format!("stored key {stored:?}")))
}
