//! The engine and snapshot traits.

use crate::{CfName, Result, WriteBatch};
use std::ops::Bound;

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// An iterator over a snapshot's key range; stops after the first error.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<KvPair>> + 'a>;

/// Options for [`Engine::write`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WriteOptions {
    /// Make this batch, and every batch written before it, durable before
    /// returning (fsync). A failure poisons the engine.
    pub sync: bool,
}

impl WriteOptions {
    /// A synced write.
    pub const SYNC: WriteOptions = WriteOptions { sync: true };
    /// An unsynced write: visible at once, durable only after a later sync.
    pub const NO_SYNC: WriteOptions = WriteOptions { sync: false };
}

/// Size of a key range, for split checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RangeStats {
    /// Approximate bytes of keys plus values.
    pub bytes: u64,
    /// Approximate number of keys.
    pub keys: u64,
}

/// A consistent, immutable point-in-time view of every column family.
///
/// Cheap to take and to hold; later writes are never visible through it.
pub trait Snapshot: Send + Sync {
    /// The value of `key` in `cf`, if present.
    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Iterates the keys of `cf` within `(lower, upper)`, ascending, or descending
    /// when `reverse`. An empty or inverted range yields nothing. A corrupt entry
    /// yields an error item (and the iterator ends there).
    fn iter(&self, cf: CfName, lower: Bound<&[u8]>, upper: Bound<&[u8]>, reverse: bool) -> KvIter<'_>;

    /// At most `limit` pairs of `cf` in `[start, end)` (`end == None`: to the end of
    /// the CF), ascending, or descending from the end of the range when `reverse`.
    /// `limit == 0` returns nothing; pass `usize::MAX` for no limit.
    fn scan(&self, cf: CfName, start: &[u8], end: Option<&[u8]>, reverse: bool, limit: usize) -> Result<Vec<KvPair>> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let mut iter = self.iter(cf, Bound::Included(start), upper, reverse);
        if limit == 0 {
            // Still surface a poisoned/closed engine or a corrupt first entry.
            return match iter.next() {
                Some(Err(e)) => Err(e),
                _ => Ok(Vec::new()),
            };
        }
        iter.take(limit).collect()
    }
}

/// A storage engine: named column families, atomic write batches with a sync flag,
/// point reads, snapshots and range size estimates. Shared as `Arc<dyn Engine>`.
///
/// See the crate documentation for the durability contract.
pub trait Engine: Send + Sync + 'static {
    /// Applies `batch` atomically across column families. With `opts.sync`, the
    /// batch and everything written before it are durable when this returns `Ok`.
    /// An empty batch is accepted (and with `sync`, acts as [`Engine::sync`]).
    fn write(&self, batch: WriteBatch, opts: WriteOptions) -> Result<()>;

    /// Makes every earlier write durable. A failure poisons the engine.
    fn sync(&self) -> Result<()>;

    /// The current value of `key` in `cf`, if present.
    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// A consistent view of the current state. Reads through it fail once the
    /// engine is poisoned or closed.
    fn snapshot(&self) -> Box<dyn Snapshot>;

    /// Approximate bytes and keys of `cf` in `[start, end)` (`end == None`: to the
    /// end of the CF).
    fn approximate_size(&self, cf: CfName, start: &[u8], end: Option<&[u8]>) -> Result<RangeStats>;

    /// How long the next sync takes on the simulated clock, if it takes any. The simulated
    /// disk never sleeps itself (it is synchronous); a caller that must wait for durability
    /// (the store loop) writes unsynced, waits this long, then syncs, so a crash can land
    /// while its write is in flight. Each call counts as one sync started. A real engine's
    /// syncs take their real time: `None`.
    fn sync_latency(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Whether `(lower, upper)` contains no key at all (also guards against
/// `BTreeMap::range`-style panics on inverted bounds).
pub(crate) fn range_is_empty(lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u))
        | (Bound::Excluded(l), Bound::Excluded(u)) => l >= u,
        (_, Bound::Excluded(u)) => u.is_empty(),
        _ => false,
    }
}

/// Owned copy of a bound.
#[cfg(not(madsim))]
pub(crate) fn owned_bound(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
