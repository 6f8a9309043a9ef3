//! `FjallEngine`: the production backend on fjall 3 (one keyspace per CF).
//!
//! Writes are serialised by a mutex: a batch is first normalised (ops applied in
//! order to an overlay, `delete_range` expanded into point tombstones for the keys
//! present at that moment), then committed as one fjall batch, which fjall applies
//! atomically across keyspaces. Synced batches are committed with
//! `PersistMode::SyncAll` (journal flushed and fsynced before `commit` returns);
//! unsynced ones with no persistence at all, so they may sit in fjall's journal
//! buffer and are lost even by a process crash until the next sync.
//!
//! Not compiled under `--cfg madsim`: fjall starts threads and does real I/O.

use crate::batch::check_key;
use crate::engine::{owned_bound, range_is_empty};
use crate::sim::StopAfterError;
use crate::{CfName, Engine, Error, KvIter, KvPair, RangeStats, Result, Snapshot, WriteBatch, WriteOp, WriteOptions};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A normalised batch: the final mutation per key (`None` = delete).
type Overlay = BTreeMap<(CfName, Vec<u8>), Option<Vec<u8>>>;

/// The production storage engine: fjall 3 with one keyspace per [`CfName`].
pub struct FjallEngine {
    db: Database,
    cfs: Arc<[Keyspace; CfName::ALL.len()]>,
    path: PathBuf,
    /// Set by a failed sync; shared with snapshots.
    poisoned: Arc<AtomicBool>,
    /// Serialises writers (needed to expand `delete_range` consistently).
    write_lock: Mutex<()>,
    #[cfg(feature = "planted-bugs")]
    bug: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for FjallEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallEngine").field("path", &self.path).finish()
    }
}

fn map_err(cf: Option<CfName>, e: fjall::Error) -> Error {
    match e {
        fjall::Error::Poisoned => Error::Poisoned,
        fjall::Error::Io(io) => Error::Io(io),
        fjall::Error::Storage(fjall::LsmError::Io(io)) => Error::Io(io),
        e @ (fjall::Error::Decompress(_)
        | fjall::Error::InvalidTrailer
        | fjall::Error::InvalidTag(_)
        | fjall::Error::JournalRecovery(_)
        | fjall::Error::Storage(_)) => match cf {
            Some(cf) => Error::Corruption { cf, detail: e.to_string() },
            None => Error::Backend(e.to_string()),
        },
        e => Error::Backend(e.to_string()),
    }
}

impl FjallEngine {
    /// Opens (creating if needed) the engine in directory `path`, recovering
    /// whatever a previous process made durable.
    pub fn open(path: impl AsRef<Path>) -> Result<FjallEngine> {
        let path = path.as_ref().to_path_buf();
        let db = Database::builder(&path).manual_journal_persist(true).open().map_err(|e| map_err(None, e))?;
        let open =
            |cf: CfName| db.keyspace(cf.as_str(), KeyspaceCreateOptions::default).map_err(|e| map_err(Some(cf), e));
        let cfs = [
            open(CfName::Default)?,
            open(CfName::Lock)?,
            open(CfName::Write)?,
            open(CfName::Raw)?,
            open(CfName::Raft)?,
            open(CfName::RawTtl)?,
        ];
        // Keyspace creation is itself made durable, so the set of CFs never tears.
        db.persist(PersistMode::SyncAll).map_err(|e| map_err(None, e))?;
        Ok(FjallEngine {
            db,
            cfs: Arc::new(cfs),
            path,
            poisoned: Arc::default(),
            write_lock: Mutex::new(()),
            #[cfg(feature = "planted-bugs")]
            bug: Default::default(),
        })
    }

    /// The directory this engine lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    fn ks(&self, cf: CfName) -> &Keyspace {
        &self.cfs[cf.index()]
    }

    fn poison(&self, e: fjall::Error) -> Error {
        tracing::error!(error = %e, path = %self.path.display(), "fjall sync failed; engine poisoned");
        self.poisoned.store(true, Ordering::Release);
        map_err(None, e)
    }

    fn skip_sync(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            return self.bug.load(Ordering::Relaxed);
        }
        #[allow(unreachable_code)]
        false
    }

    /// Switches a planted bug on (or off with `None`). Only
    /// [`crate::PlantedBug::FjallSkipSync`] applies to this engine.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_bug(&self, bug: Option<crate::PlantedBug>) {
        self.bug.store(bug == Some(crate::PlantedBug::FjallSkipSync), Ordering::Relaxed);
    }

    /// Applies the batch's ops in order to an overlay of the current state and
    /// returns the final mutation per key (`None` = delete).
    fn normalise(&self, batch: &WriteBatch) -> Result<Overlay> {
        let mut overlay = Overlay::new();
        for op in batch.ops() {
            match op {
                WriteOp::Put { cf, key, value } => {
                    overlay.insert((*cf, key.to_vec()), Some(value.to_vec()));
                }
                WriteOp::Delete { cf, key } => {
                    overlay.insert((*cf, key.to_vec()), None);
                }
                WriteOp::DeleteRange { cf, start, end } => {
                    let lower = Bound::Included(start.as_ref());
                    let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                    if range_is_empty(lower, upper) {
                        continue;
                    }
                    let range = (owned_bound(lower), owned_bound(upper));
                    for guard in self.ks(*cf).range::<Vec<u8>, _>(range) {
                        let key = guard.key().map_err(|e| map_err(Some(*cf), e))?;
                        overlay.insert((*cf, key.to_vec()), None);
                    }
                    let lo = (*cf, start.to_vec());
                    let keys: Vec<_> = match end {
                        Some(end) => overlay.range(lo..(*cf, end.to_vec())).map(|(k, _)| k.clone()).collect(),
                        None => overlay.range(lo..).take_while(|((c, _), _)| c == cf).map(|(k, _)| k.clone()).collect(),
                    };
                    for k in keys {
                        overlay.insert(k, None);
                    }
                }
            }
        }
        Ok(overlay)
    }
}

impl Engine for FjallEngine {
    fn write(&self, batch: WriteBatch, opts: WriteOptions) -> Result<()> {
        self.check()?;
        batch.validate()?;
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.check()?;
        if batch.is_empty() {
            return if opts.sync { self.sync() } else { Ok(()) };
        }
        let overlay = self.normalise(&batch)?;
        if overlay.is_empty() {
            // Nothing to write (e.g. a delete_range over no keys). fjall's commit
            // of an empty batch returns without persisting, so sync explicitly:
            // earlier unsynced batches must become durable all the same.
            return if opts.sync { self.sync() } else { Ok(()) };
        }
        let durability = (opts.sync && !self.skip_sync()).then_some(PersistMode::SyncAll);
        let mut fb = self.db.batch().durability(durability);
        for ((cf, key), value) in overlay {
            match value {
                Some(v) => fb.insert(self.ks(cf), key, v),
                None => fb.remove(self.ks(cf), key),
            }
        }
        match fb.commit() {
            Ok(()) => Ok(()),
            // fjall poisons itself on any journal write/persist failure; so do we.
            Err(e) => Err(self.poison(e)),
        }
    }

    fn sync(&self) -> Result<()> {
        self.check()?;
        if self.skip_sync() {
            return Ok(());
        }
        self.db.persist(PersistMode::SyncAll).map_err(|e| self.poison(e))
    }

    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check()?;
        check_key(key)?;
        self.ks(cf).get(key).map(|v| v.map(|v| v.to_vec())).map_err(|e| map_err(Some(cf), e))
    }

    fn snapshot(&self) -> Box<dyn Snapshot> {
        Box::new(FjallSnapshot { snap: self.db.snapshot(), cfs: self.cfs.clone(), poisoned: self.poisoned.clone() })
    }

    /// Exact today (a scan of the range); will use table metadata for large ranges.
    fn approximate_size(&self, cf: CfName, start: &[u8], end: Option<&[u8]>) -> Result<RangeStats> {
        self.check()?;
        let snap = self.snapshot();
        let mut stats = RangeStats::default();
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        for item in snap.iter(cf, Bound::Included(start), upper, false) {
            let (k, v) = item?;
            stats.keys += 1;
            stats.bytes += (k.len() + v.len()) as u64;
        }
        Ok(stats)
    }
}

struct FjallSnapshot {
    snap: fjall::Snapshot,
    cfs: Arc<[Keyspace; CfName::ALL.len()]>,
    poisoned: Arc<AtomicBool>,
}

impl FjallSnapshot {
    fn check(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }
}

impl Snapshot for FjallSnapshot {
    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check()?;
        check_key(key)?;
        self.snap.get(&self.cfs[cf.index()], key).map(|v| v.map(|v| v.to_vec())).map_err(|e| map_err(Some(cf), e))
    }

    fn iter(&self, cf: CfName, lower: Bound<&[u8]>, upper: Bound<&[u8]>, reverse: bool) -> KvIter<'_> {
        if let Err(e) = self.check() {
            return Box::new(std::iter::once(Err(e)));
        }
        if range_is_empty(lower, upper) {
            return Box::new(std::iter::empty());
        }
        let range = (owned_bound(lower), owned_bound(upper));
        let it = self.snap.range::<Vec<u8>, _>(&self.cfs[cf.index()], range);
        let conv = move |g: fjall::Guard| -> Result<KvPair> {
            let (k, v) = g.into_inner().map_err(|e| map_err(Some(cf), e))?;
            Ok((k.to_vec(), v.to_vec()))
        };
        let inner: KvIter<'_> = if reverse { Box::new(it.rev().map(conv)) } else { Box::new(it.map(conv)) };
        Box::new(StopAfterError { inner, done: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = FjallEngine::open(dir.path()).unwrap();
            let mut b = WriteBatch::new();
            b.put(CfName::Raw, b"a", b"1");
            b.put(CfName::Raw, b"b", b"2");
            b.put(CfName::Lock, b"a", b"L");
            b.put(CfName::Raw, b"c", b"3");
            b.delete_range(CfName::Raw, b"b", b"c");
            e.write(b, WriteOptions::SYNC).unwrap();
            assert_eq!(e.get(CfName::Raw, b"b").unwrap(), None);
            let snap = e.snapshot();
            let mut b = WriteBatch::new();
            b.delete_from(CfName::Raw, b"");
            e.write(b, WriteOptions::NO_SYNC).unwrap();
            assert_eq!(e.get(CfName::Raw, b"a").unwrap(), None);
            let all = snap.scan(CfName::Raw, b"", None, true, usize::MAX).unwrap();
            assert_eq!(all, vec![(b"c".to_vec(), b"3".to_vec()), (b"a".to_vec(), b"1".to_vec())]);
            e.sync().unwrap();
        }
        let e = FjallEngine::open(dir.path()).unwrap();
        assert_eq!(e.get(CfName::Raw, b"a").unwrap(), None);
        assert_eq!(e.get(CfName::Lock, b"a").unwrap(), Some(b"L".to_vec()));
        assert!(matches!(e.get(CfName::Lock, b""), Err(Error::InvalidArgument(_))));
        let mut b = WriteBatch::new();
        b.put(CfName::Raw, b"x", b"1");
        b.delete_range(CfName::Raw, b"b", b"a");
        assert!(matches!(e.write(b, WriteOptions::SYNC), Err(Error::InvalidArgument(_))));
        assert_eq!(e.get(CfName::Raw, b"x").unwrap(), None);
        let stats = e.approximate_size(CfName::Lock, b"", None).unwrap();
        assert_eq!(stats, RangeStats { keys: 1, bytes: 2 });
    }
}
