//! `SimEngine`: the simulated disk.
//!
//! Everything is in memory and deterministic: persistent ordered maps (`imbl`),
//! no threads, no I/O, no clocks, randomness only from the caller's RNG.
//!
//! The disk keeps one image, `visible` (what the running node reads: every
//! acknowledged batch), plus the `pending` batches written since the last sync, in
//! order, each with an undo log (the previous value of every key it touched). A
//! synced batch or `sync()` drops the undo logs: everything is durable. A crash
//! rolls back a suffix of `pending` (possibly empty, possibly all of it), leaving
//! a prefix (a torn tail), and the handle then acts as the reopened disk.
//!
//! Snapshots clone the five maps' roots (O(1)); writes while a snapshot is alive
//! copy only the touched tree paths. Keeping no separate durable image means a
//! synced write does not pay for path copies.

use crate::batch::check_key;
use crate::checksum::kv_checksum;
use crate::engine::range_is_empty;
use crate::{
    CfName, Engine, Error, KvIter, RangeStats, Result, Snapshot, WriteBatch, WriteOp, WriteOptions,
    SIM_PENDING_BATCHES_MAX,
};
use bytes::Bytes;
use imbl::OrdMap;
use rand::Rng;
use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A stored value with the checksum computed when it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stored {
    value: Blob,
    checksum: u64,
}

/// Keys and values are `Arc<[u8]>`: cloning a tree node (when a snapshot or an
/// undo record shares it) is then one plain reference-count increment per entry.
type Blob = Arc<[u8]>;

type CfMap = OrdMap<Blob, Stored>;

/// One image of all column families.
#[derive(Clone, Default)]
struct Cfs([CfMap; CfName::ALL.len()]);

impl Cfs {
    fn cf(&self, cf: CfName) -> &CfMap {
        &self.0[cf.index()]
    }

    /// Applies `batch`, appending to `undo` what restores the previous state.
    fn apply(&mut self, batch: &WriteBatch, undo: &mut Vec<Undo>) {
        for op in batch.ops() {
            let cf = op.cf();
            let map = &mut self.0[cf.index()];
            match op {
                WriteOp::Put { key, value, .. } => {
                    let checksum = kv_checksum(key, value);
                    let key: Blob = Arc::from(key.as_ref());
                    let old = map.insert(key.clone(), Stored { value: Arc::from(value.as_ref()), checksum });
                    undo.push((cf, key, old));
                }
                WriteOp::Delete { key, .. } => {
                    if let Some((key, old)) = map.remove_with_key::<[u8]>(key) {
                        undo.push((cf, key, Some(old)));
                    }
                }
                WriteOp::DeleteRange { start, end, .. } => {
                    let lower = Bound::Included(start.as_ref());
                    let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
                    if range_is_empty(lower, upper) {
                        continue;
                    }
                    let doomed: Vec<Blob> = map.range::<_, [u8]>((lower, upper)).map(|(k, _)| k.clone()).collect();
                    for k in doomed {
                        if let Some(old) = map.remove::<[u8]>(&k) {
                            undo.push((cf, k, Some(old)));
                        }
                    }
                }
            }
        }
    }
    /// Reverts the effects recorded in `undo`.
    fn roll_back(&mut self, undo: &[Undo]) {
        for (cf, key, old) in undo.iter().rev() {
            let map = &mut self.0[cf.index()];
            match old {
                Some(old) => {
                    map.insert(key.clone(), old.clone());
                }
                None => {
                    map.remove::<[u8]>(key);
                }
            }
        }
    }
}

/// The previous value of a key a batch touched (`None`: it was absent).
type Undo = (CfName, Blob, Option<Stored>);

/// An unsynced batch: what a crash may drop.
struct Pending {
    undo: Vec<Undo>,
    /// Kept only for the planted "keep an unsynced batch" bug.
    #[cfg(feature = "planted-bugs")]
    batch: WriteBatch,
}

const LIVE: u8 = 0;
const POISONED: u8 = 1;
const CLOSED: u8 = 2;
const CORRUPT: u8 = 3;

/// The lifetime of one "process" using the disk: poisoned by a failed sync, stopped by
/// a corrupt record it read, closed by a crash. Snapshots hold it so they stop working
/// with their process.
#[derive(Debug, Default)]
struct Incarnation(AtomicU8);

impl Incarnation {
    fn check(&self) -> Result<()> {
        match self.0.load(Ordering::Acquire) {
            LIVE => Ok(()),
            POISONED => Err(Error::Poisoned),
            CORRUPT => Err(Error::CorruptionFound),
            _ => Err(Error::Closed),
        }
    }

    /// Verifies a stored record; a bad one stops this incarnation (fail-stop: nothing
    /// more is served from a disk known to hold a bad block).
    fn verify(&self, cf: CfName, key: &[u8], stored: &Stored) -> Result<Vec<u8>> {
        let checked = verify(cf, key, stored);
        if checked.is_err() {
            // Only a live incarnation turns corrupt; a closed or poisoned one stays so.
            let _ = self.0.compare_exchange(LIVE, CORRUPT, Ordering::AcqRel, Ordering::Acquire);
            tracing::error!(%cf, "simulated disk: corrupt record found, engine stopped");
        }
        checked
    }
}

/// Counters of what the simulated disk has done (for traces and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SimStats {
    /// Non-empty batches written.
    pub batches: u64,
    /// Batches written with `sync: true` that succeeded.
    pub synced_batches: u64,
    /// Successful sync points (synced batches and `sync()` calls).
    pub syncs: u64,
    /// Syncs that failed (injected) and poisoned the engine.
    pub failed_syncs: u64,
    /// Crashes.
    pub crashes: u64,
    /// Pending batches dropped by crashes.
    pub batches_lost: u64,
    /// Pending batches written back because more than
    /// [`SIM_PENDING_BATCHES_MAX`] were pending.
    pub written_back: u64,
    /// Values corrupted by [`SimEngine::corrupt_random_value`].
    pub corruptions: u64,
    /// Syncs that stalled (a slow-sync fault was on).
    pub slow_syncs: u64,
    /// Times the disk was replaced by a blank one ([`SimEngine::replace`]).
    pub replacements: u64,
}

struct Disk {
    visible: Cfs,
    pending: VecDeque<Pending>,
    incarnation: Arc<Incarnation>,
    fail_next_sync: bool,
    /// How long a sync takes when the disk is healthy (see [`Engine::sync_latency`]).
    sync_latency: Duration,
    /// While set, every sync takes this long instead (the slow-sync fault).
    slow_sync: Option<Duration>,
    stats: SimStats,
    #[cfg(feature = "planted-bugs")]
    bug: Option<crate::PlantedBug>,
}

impl Disk {
    fn planted(&self, _bug: &str) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            use crate::PlantedBug::*;
            return match self.bug {
                Some(SimKeepUnsyncedAfterCrash) => _bug == "keep-unsynced",
                Some(SimIgnoreSync) => _bug == "ignore-sync",
                _ => false,
            };
        }
        #[allow(unreachable_code)]
        false
    }

    fn sync(&mut self) -> Result<()> {
        if self.planted("ignore-sync") {
            return Ok(());
        }
        if self.fail_next_sync {
            self.fail_next_sync = false;
            self.stats.failed_syncs += 1;
            self.incarnation.0.store(POISONED, Ordering::Release);
            tracing::warn!("simulated disk: injected sync failure, engine poisoned");
            return Err(Error::Io(std::io::Error::other("injected sync failure")));
        }
        self.pending.clear();
        self.stats.syncs += 1;
        Ok(())
    }
}

/// The simulated disk engine: a cheap `Clone` handle (all clones share one disk)
/// that the simulation harness keeps per node across kill/restart.
///
/// After [`SimEngine::crash`], the same handle acts as the freshly reopened disk;
/// snapshots taken before the crash fail with [`Error::Closed`].
#[derive(Clone)]
pub struct SimEngine {
    disk: Arc<Mutex<Disk>>,
}

impl Default for SimEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for SimEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.lock();
        f.debug_struct("SimEngine").field("pending", &d.pending.len()).field("stats", &d.stats).finish()
    }
}

impl SimEngine {
    /// An empty disk.
    pub fn new() -> Self {
        SimEngine {
            disk: Arc::new(Mutex::new(Disk {
                visible: Cfs::default(),
                pending: VecDeque::new(),
                incarnation: Arc::default(),
                fail_next_sync: false,
                sync_latency: Duration::ZERO,
                slow_sync: None,
                stats: SimStats::default(),
                #[cfg(feature = "planted-bugs")]
                bug: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        // No code panics while holding the lock; if one did, the data is still
        // consistent (every mutation is a single assignment at the end).
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Simulates a crash (power loss / kill) and reopens the disk. Unsynced batches
    /// are dropped, all kept, or a random prefix kept (a torn tail), each with
    /// probability 1/3, drawn from `rng`. Clears poisoning. Returns how many
    /// pending batches survived.
    pub fn crash<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let pending = self.lock().pending.len();
        let keep = match rng.gen_range(0..3u8) {
            _ if pending == 0 => 0,
            0 => 0,
            1 => pending,
            _ => rng.gen_range(0..=pending),
        };
        self.crash_keeping(keep)
    }

    /// Like [`SimEngine::crash`], keeping exactly the first `keep` pending batches
    /// (clamped to the number pending). Returns how many survived.
    pub fn crash_keeping(&self, keep: usize) -> usize {
        let mut d = self.lock();
        let d = &mut *d;
        let keep = keep.min(d.pending.len());
        #[cfg(feature = "planted-bugs")]
        let resurrect = (keep + 1 < d.pending.len() && d.planted("keep-unsynced"))
            .then(|| d.pending.back().map(|p| p.batch.clone()))
            .flatten();
        for p in d.pending.iter().skip(keep).rev() {
            d.visible.roll_back(&p.undo);
        }
        #[cfg(feature = "planted-bugs")]
        if let Some(batch) = resurrect {
            d.visible.apply(&batch, &mut Vec::new());
        }
        d.stats.crashes += 1;
        d.stats.batches_lost += (d.pending.len() - keep) as u64;
        d.pending.clear();
        d.fail_next_sync = false;
        d.incarnation.0.store(CLOSED, Ordering::Release);
        d.incarnation = Arc::default();
        tracing::debug!(kept = keep, "simulated disk: crash");
        keep
    }

    /// Makes the next sync (explicit or a synced batch) fail with an I/O error and
    /// poison the engine until the next crash/reopen.
    pub fn fail_next_sync(&self) {
        self.lock().fail_next_sync = true;
    }

    /// Sets how long every sync of this healthy disk takes ([`Engine::sync_latency`]; zero,
    /// the default, makes syncs instant). Outlives crashes: it is the disk.
    pub fn set_sync_latency(&self, latency: Duration) {
        self.lock().sync_latency = latency;
    }

    /// Makes every later sync slow (`Some(stall)`: each takes that long instead of the
    /// healthy latency) or normal again (`None`). Outlives crashes: it is the disk.
    pub fn set_slow_sync(&self, stall: Option<Duration>) {
        self.lock().slow_sync = stall;
    }

    /// Every stored record that fails its checksum, in column family and key order: the
    /// offline disk check an operator runs before trusting a disk again.
    pub fn scrub(&self) -> Vec<(CfName, Vec<u8>)> {
        let d = self.lock();
        let mut bad = Vec::new();
        for cf in CfName::ALL {
            for (k, v) in d.visible.cf(cf).iter() {
                if verify(cf, k, v).is_err() {
                    bad.push((cf, k.to_vec()));
                }
            }
        }
        bad
    }

    /// Throws the disk's contents away and puts a blank disk in its place (an operator
    /// replacing a bad drive; the node must be down). Faults set on the old disk go with it.
    pub fn replace(&self) {
        let mut d = self.lock();
        d.visible = Cfs::default();
        d.pending.clear();
        d.fail_next_sync = false;
        d.slow_sync = None;
        d.incarnation.0.store(CLOSED, Ordering::Release);
        d.incarnation = Arc::default();
        d.stats.replacements += 1;
        tracing::info!("simulated disk: replaced by a blank one");
    }

    /// Whether the current incarnation stopped because it read a corrupt record.
    pub fn corruption_found(&self) -> bool {
        self.lock().incarnation.0.load(Ordering::Acquire) == CORRUPT
    }

    /// Whether a failed sync has poisoned the current incarnation.
    pub fn is_poisoned(&self) -> bool {
        self.lock().incarnation.0.load(Ordering::Acquire) == POISONED
    }

    /// Flips one bit of a randomly chosen stored value (or of its checksum, for an
    /// empty value) on the disk, among the records `eligible` accepts: the first read
    /// of it returns [`Error::Corruption`] and stops the engine (every later call fails
    /// with [`Error::CorruptionFound`] until the node restarts). (If a crash later rolls
    /// back the batch that wrote that value, the older value it replaced comes back
    /// intact.) Returns the column family and key hit, or `None` if nothing is eligible.
    pub fn corrupt_random_value<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        eligible: &dyn Fn(CfName, &[u8]) -> bool,
    ) -> Option<(CfName, Vec<u8>)> {
        let mut d = self.lock();
        let d = &mut *d;
        let candidates: Vec<(CfName, Blob, Stored)> = CfName::ALL
            .iter()
            .flat_map(|&cf| d.visible.cf(cf).iter().map(move |(k, v)| (cf, k, v)))
            .filter(|(cf, k, _)| eligible(*cf, k))
            .map(|(cf, k, v)| (cf, k.clone(), v.clone()))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (cf, key, stored) = candidates[rng.gen_range(0..candidates.len())].clone();
        let mut bad = stored.clone();
        if stored.value.is_empty() {
            bad.checksum ^= 1 << rng.gen_range(0..64);
        } else {
            let mut v = stored.value.to_vec();
            let i = rng.gen_range(0..v.len());
            v[i] ^= 1 << rng.gen_range(0..8);
            bad.value = Arc::from(v);
        }
        d.visible.0[cf.index()].insert(key.clone(), bad);
        d.stats.corruptions += 1;
        Some((cf, key.to_vec()))
    }

    /// Number of batches written since the last sync point.
    pub fn pending_batches(&self) -> usize {
        self.lock().pending.len()
    }

    /// Counters of what this disk has done.
    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// A deterministic digest of the visible state of every column family (for
    /// determinism checks and trace hashes). O(size of the data).
    pub fn digest(&self) -> u64 {
        let d = self.lock();
        let mut h = 0u64;
        for cf in CfName::ALL {
            for (k, v) in d.visible.cf(cf).iter() {
                h = kv_checksum(&h.to_le_bytes(), &v.checksum.to_le_bytes()) ^ kv_checksum(k, &[cf.index() as u8]);
            }
        }
        h
    }

    /// Switches a planted bug on (or off with `None`) for this disk.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_bug(&self, bug: Option<crate::PlantedBug>) {
        self.lock().bug = bug;
    }
}

fn verify(cf: CfName, key: &[u8], stored: &Stored) -> Result<Vec<u8>> {
    if kv_checksum(key, &stored.value) != stored.checksum {
        return Err(Error::Corruption {
            cf,
            detail: format!("checksum mismatch for key {:?}", Bytes::copy_from_slice(key)),
        });
    }
    Ok(stored.value.to_vec())
}

fn stats_of(map: &CfMap, start: &[u8], end: Option<&[u8]>) -> RangeStats {
    let lower = Bound::Included(start);
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    let mut stats = RangeStats::default();
    if range_is_empty(lower, upper) {
        return stats;
    }
    for (k, v) in map.range::<_, [u8]>((lower, upper)) {
        stats.keys += 1;
        stats.bytes += (k.len() + v.value.len()) as u64;
    }
    stats
}

impl Engine for SimEngine {
    fn write(&self, batch: WriteBatch, opts: WriteOptions) -> Result<()> {
        let mut d = self.lock();
        d.incarnation.check()?;
        batch.validate()?;
        if !batch.is_empty() {
            let mut undo = Vec::with_capacity(batch.len());
            d.visible.apply(&batch, &mut undo);
            d.pending.push_back(Pending {
                undo,
                #[cfg(feature = "planted-bugs")]
                batch,
            });
            d.stats.batches += 1;
            if d.pending.len() > SIM_PENDING_BATCHES_MAX {
                // Written back: the oldest batch can no longer be lost.
                d.pending.pop_front();
                d.stats.written_back += 1;
            }
        }
        if opts.sync {
            d.sync()?;
            d.stats.synced_batches += 1;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let mut d = self.lock();
        d.incarnation.check()?;
        d.sync()
    }

    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let d = self.lock();
        d.incarnation.check()?;
        check_key(key)?;
        d.visible.cf(cf).get(key).map(|s| d.incarnation.verify(cf, key, s)).transpose()
    }

    fn snapshot(&self) -> Box<dyn Snapshot> {
        let d = self.lock();
        Box::new(SimSnapshot { cfs: d.visible.clone(), incarnation: d.incarnation.clone() })
    }

    fn approximate_size(&self, cf: CfName, start: &[u8], end: Option<&[u8]>) -> Result<RangeStats> {
        let d = self.lock();
        d.incarnation.check()?;
        Ok(stats_of(d.visible.cf(cf), start, end))
    }

    fn sync_latency(&self) -> Option<Duration> {
        let mut d = self.lock();
        if let Some(stall) = d.slow_sync {
            d.stats.slow_syncs += 1;
            return Some(stall);
        }
        Some(d.sync_latency).filter(|l| !l.is_zero())
    }
}

struct SimSnapshot {
    cfs: Cfs,
    incarnation: Arc<Incarnation>,
}

impl Snapshot for SimSnapshot {
    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.incarnation.check()?;
        check_key(key)?;
        self.cfs.cf(cf).get(key).map(|s| self.incarnation.verify(cf, key, s)).transpose()
    }

    fn iter(&self, cf: CfName, lower: Bound<&[u8]>, upper: Bound<&[u8]>, reverse: bool) -> KvIter<'_> {
        if let Err(e) = self.incarnation.check() {
            return Box::new(std::iter::once(Err(e)));
        }
        if range_is_empty(lower, upper) {
            return Box::new(std::iter::empty());
        }
        let range = self.cfs.cf(cf).range::<_, [u8]>((lower, upper));
        let incarnation = &self.incarnation;
        let check = move |(k, s): (&Blob, &Stored)| incarnation.verify(cf, k, s).map(|v| (k.to_vec(), v));
        let iter: KvIter<'_> = if reverse { Box::new(range.rev().map(check)) } else { Box::new(range.map(check)) };
        Box::new(StopAfterError { inner: iter, done: false })
    }
}

/// Ends an iterator after its first error item.
pub(crate) struct StopAfterError<'a> {
    pub(crate) inner: KvIter<'a>,
    pub(crate) done: bool,
}

impl Iterator for StopAfterError<'_> {
    type Item = Result<crate::KvPair>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.inner.next();
        if matches!(item, Some(Err(_)) | None) {
            self.done = true;
        }
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn put(e: &SimEngine, k: &[u8], v: &[u8], sync: bool) {
        let mut b = WriteBatch::new();
        b.put(CfName::Raw, k, v);
        e.write(b, WriteOptions { sync }).unwrap();
    }

    #[test]
    fn crash_drops_unsynced_and_keeps_synced() {
        let e = SimEngine::new();
        put(&e, b"a", b"1", true);
        put(&e, b"b", b"2", false);
        put(&e, b"c", b"3", false);
        assert_eq!(e.pending_batches(), 2);
        let old = e.snapshot();
        assert_eq!(e.crash_keeping(1), 1);
        assert_eq!(e.get(CfName::Raw, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(e.get(CfName::Raw, b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(e.get(CfName::Raw, b"c").unwrap(), None);
        assert!(matches!(old.get(CfName::Raw, b"a"), Err(Error::Closed)));
        e.crash_keeping(0);
        assert_eq!(e.get(CfName::Raw, b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(e.stats().crashes, 2);
    }

    #[test]
    fn failed_sync_poisons_until_crash() {
        let e = SimEngine::new();
        put(&e, b"a", b"1", true);
        e.fail_next_sync();
        let mut b = WriteBatch::new();
        b.put(CfName::Raw, b"b", b"2");
        assert!(matches!(e.write(b, WriteOptions::SYNC), Err(Error::Io(_))));
        assert!(e.is_poisoned());
        assert!(matches!(e.get(CfName::Raw, b"a"), Err(Error::Poisoned)));
        assert!(matches!(e.sync(), Err(Error::Poisoned)));
        assert!(matches!(e.snapshot().get(CfName::Raw, b"a"), Err(Error::Poisoned)));
        e.crash_keeping(0);
        assert!(!e.is_poisoned());
        assert_eq!(e.get(CfName::Raw, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(e.get(CfName::Raw, b"b").unwrap(), None);
        e.sync().unwrap();
    }

    #[test]
    fn corruption_is_detected_never_returned() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let any = |_: CfName, _: &[u8]| true;
        let e = SimEngine::new();
        assert!(e.corrupt_random_value(&mut rng, &any).is_none());
        put(&e, b"a", b"value-a", true);
        put(&e, b"e", b"", true);
        let mut corrupted = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let (cf, key) = e.corrupt_random_value(&mut rng, &any).unwrap();
            assert_eq!(cf, CfName::Raw);
            corrupted.insert(key);
        }
        assert_eq!(corrupted.len(), 2, "both keys hit in 20 draws");
        assert_eq!(e.scrub(), vec![(CfName::Raw, b"a".to_vec()), (CfName::Raw, b"e".to_vec())]);
        // Unread corruption stops nothing; the first read of it stops the engine.
        assert!(!e.corruption_found());
        assert!(matches!(e.get(CfName::Raw, b"a"), Err(Error::Corruption { .. })));
        assert!(e.corruption_found());
        assert!(matches!(e.get(CfName::Raw, b"e"), Err(Error::CorruptionFound)));
        let mut b = WriteBatch::new();
        b.put(CfName::Raw, b"z", b"1");
        assert!(matches!(e.write(b, WriteOptions::SYNC), Err(Error::CorruptionFound)));
        // The corruption is on the durable image: it survives a crash, and a scan finds it.
        e.crash_keeping(0);
        assert!(!e.corruption_found());
        let snap = e.snapshot();
        let items: Vec<_> = snap.iter(CfName::Raw, Bound::Unbounded, Bound::Unbounded, false).collect();
        assert_eq!(items.len(), 1);
        assert!(matches!(items[0], Err(Error::Corruption { .. })));
        assert!(e.corruption_found(), "a scan that meets it stops the engine too");
        // Overwriting repairs it.
        e.crash_keeping(0);
        put(&e, b"a", b"fresh", false);
        put(&e, b"e", b"", false);
        assert_eq!(e.get(CfName::Raw, b"a").unwrap(), Some(b"fresh".to_vec()));
        assert!(e.scrub().is_empty());
        // A replaced disk is blank, and old snapshots of it are closed.
        let old = e.snapshot();
        e.replace();
        assert_eq!(e.get(CfName::Raw, b"a").unwrap(), None);
        assert!(matches!(old.get(CfName::Raw, b"a"), Err(Error::Closed)));
        assert_eq!(e.stats().replacements, 1);
    }

    #[test]
    fn corruption_hits_only_eligible_records() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let e = SimEngine::new();
        put(&e, b"a", b"1", true);
        put(&e, b"b", b"2", true);
        for _ in 0..10 {
            assert_eq!(e.corrupt_random_value(&mut rng, &|_, k| k == b"b"), Some((CfName::Raw, b"b".to_vec())));
        }
        assert_eq!(e.get(CfName::Raw, b"a").unwrap(), Some(b"1".to_vec()));
        assert!(e.corrupt_random_value(&mut rng, &|_, _| false).is_none());
    }

    #[test]
    fn sync_latency_is_the_disks_or_the_slow_sync_faults() {
        let e = SimEngine::new();
        assert_eq!(e.sync_latency(), None, "a new disk syncs instantly");
        e.set_sync_latency(Duration::from_micros(700));
        assert_eq!(e.sync_latency(), Some(Duration::from_micros(700)));
        e.set_slow_sync(Some(Duration::from_millis(40)));
        assert_eq!(e.sync_latency(), Some(Duration::from_millis(40)));
        e.set_slow_sync(None);
        assert_eq!(e.sync_latency(), Some(Duration::from_micros(700)));
        assert_eq!(e.stats().slow_syncs, 1);
        e.crash_keeping(0);
        assert_eq!(e.sync_latency(), Some(Duration::from_micros(700)), "the latency is the disk's");
    }

    #[test]
    fn a_crash_during_a_syncs_latency_loses_the_write() {
        // The store loop's sequence: write unsynced, wait the latency, sync. A crash while
        // it waits may drop the write; one after the sync cannot.
        let e = SimEngine::new();
        put(&e, b"a", b"1", false);
        e.crash_keeping(0);
        assert_eq!(e.get(CfName::Raw, b"a").unwrap(), None);
        put(&e, b"a", b"1", false);
        e.sync().unwrap();
        e.crash_keeping(0);
        assert_eq!(e.get(CfName::Raw, b"a").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn invalid_arguments_are_errors_not_poison() {
        let e = SimEngine::new();
        for bad in [&b""[..], &vec![0u8; crate::KEY_LEN_MAX + 1]] {
            let mut b = WriteBatch::new();
            b.put(CfName::Raw, b"ok", b"v");
            b.put(CfName::Raw, bad, b"v");
            assert!(matches!(e.write(b, WriteOptions::SYNC), Err(Error::InvalidArgument(_))));
            assert!(matches!(e.get(CfName::Raw, bad), Err(Error::InvalidArgument(_))));
        }
        let mut b = WriteBatch::new();
        b.put(CfName::Raw, b"big", &vec![0u8; crate::VALUE_LEN_MAX + 1]);
        assert!(matches!(e.write(b, WriteOptions::NO_SYNC), Err(Error::InvalidArgument(_))));
        // Nothing of the rejected batches was applied, and the engine still works.
        assert_eq!(e.get(CfName::Raw, b"ok").unwrap(), None);
        assert_eq!(e.pending_batches(), 0);
        put(&e, b"ok", b"v", true);
        let snap = e.snapshot();
        assert_eq!(snap.scan(CfName::Raw, b"z", Some(b"a"), false, 10).unwrap(), vec![]);
        assert_eq!(snap.scan(CfName::Raw, b"a", None, true, 0).unwrap(), vec![]);
    }

    #[test]
    fn pending_is_bounded_by_write_back() {
        let e = SimEngine::new();
        for i in 0..(SIM_PENDING_BATCHES_MAX + 10) {
            put(&e, format!("k{i:06}").as_bytes(), b"v", false);
        }
        assert_eq!(e.pending_batches(), SIM_PENDING_BATCHES_MAX);
        assert_eq!(e.stats().written_back, 10);
        e.crash_keeping(0);
        assert_eq!(e.approximate_size(CfName::Raw, b"", None).unwrap().keys, 10);
    }

    #[test]
    fn crash_choice_is_deterministic_per_seed() {
        let run = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let e = SimEngine::new();
            let mut kept = Vec::new();
            for round in 0..20u32 {
                for i in 0..5u32 {
                    put(&e, &[round as u8, i as u8 + 1], b"v", false);
                }
                kept.push(e.crash(&mut rng));
            }
            (kept, e.digest())
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
