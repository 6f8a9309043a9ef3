//! Reading RawKV data as of a moment: a key whose TTL has run out is absent (the layout is in
//! [`keel_raftstore::raw_ttl`]). Pure functions over an engine snapshot, so every read
//! command shares them.

use keel_raftstore::raw_ttl::{decode_expiry, is_expired};
use keel_storage::{CfName, KvPair, Snapshot};
use keel_types::proto::store::StoreError;
use std::iter::Peekable;
use std::ops::Bound;

fn read_failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("read failed: {e}"))
}

fn expiry(snapshot: &dyn Snapshot, key: &[u8]) -> Result<Option<u64>, StoreError> {
    snapshot.get(CfName::RawTtl, key).map_err(read_failed)?.map(|b| decode_expiry(&b).map_err(read_failed)).transpose()
}

/// The live value of `key` at `now_ms`.
pub fn get(snapshot: &dyn Snapshot, key: &[u8], now_ms: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(value) = snapshot.get(CfName::Raw, key).map_err(read_failed)? else {
        return Ok(None);
    };
    match expiry(snapshot, key)? {
        Some(at) if is_expired(at, now_ms) => Ok(None),
        _ => Ok(Some(value)),
    }
}

/// `key`'s remaining time to live at `now_ms`, as [`keel_types::proto::store::RawResponse::Ttl`]
/// reports it.
pub fn ttl(snapshot: &dyn Snapshot, key: &[u8], now_ms: u64) -> Result<Option<u64>, StoreError> {
    if snapshot.get(CfName::Raw, key).map_err(read_failed)?.is_none() {
        return Ok(None);
    }
    Ok(match expiry(snapshot, key)? {
        None => Some(0),
        Some(at) if is_expired(at, now_ms) => None,
        Some(at) => Some(at - now_ms),
    })
}

/// At most `limit` live pairs in `[start, end)` (`end == None`: unbounded), ascending, or
/// descending from the end when `reverse`. Expired keys are skipped, not counted.
pub fn scan(
    snapshot: &dyn Snapshot,
    start: &[u8],
    end: Option<&[u8]>,
    reverse: bool,
    limit: usize,
    now_ms: u64,
) -> Result<Vec<KvPair>, StoreError> {
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    let values = snapshot.iter(CfName::Raw, Bound::Included(start), upper, reverse);
    let mut expiries = snapshot.iter(CfName::RawTtl, Bound::Included(start), upper, reverse).peekable();
    let mut pairs = Vec::new();
    for item in values {
        if pairs.len() >= limit {
            break;
        }
        let (key, value) = item.map_err(read_failed)?;
        match expiry_in_step(&mut expiries, &key, reverse)? {
            Some(at) if is_expired(at, now_ms) => {}
            _ => pairs.push((key, value)),
        }
    }
    Ok(pairs)
}

/// Advances `expiries` (sorted like the value scan) past keys before `key` and returns
/// `key`'s expiry if it has one.
fn expiry_in_step<I: Iterator<Item = keel_storage::Result<KvPair>>>(
    expiries: &mut Peekable<I>,
    key: &[u8],
    reverse: bool,
) -> Result<Option<u64>, StoreError> {
    loop {
        let behind = match expiries.peek() {
            None => return Ok(None),
            Some(Ok((k, _))) => k.as_slice() != key && (k.as_slice() < key) != reverse,
            Some(Err(_)) => true,
        };
        if !behind {
            break;
        }
        if let Some(Err(e)) = expiries.next() {
            return Err(read_failed(e));
        }
    }
    match expiries.peek() {
        Some(Ok((k, v))) if k.as_slice() == key => decode_expiry(v).map(Some).map_err(read_failed),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_raftstore::raw_ttl::encode_expiry;
    use keel_storage::{Engine, SimEngine, WriteBatch, WriteOptions};

    const NOW: u64 = 1_000_000;

    /// `a`, `c`, `e` never expire; `b` expired at NOW; `d` expires at NOW + 500; an orphan
    /// expiry for `f` (no value) and one for `0` before every key.
    fn engine() -> SimEngine {
        let e = SimEngine::new();
        let mut b = WriteBatch::default();
        for k in ["a", "b", "c", "d", "e"] {
            b.put(CfName::Raw, k.as_bytes(), format!("v{k}").as_bytes());
        }
        b.put(CfName::RawTtl, b"b", &encode_expiry(NOW));
        b.put(CfName::RawTtl, b"d", &encode_expiry(NOW + 500));
        b.put(CfName::RawTtl, b"f", &encode_expiry(NOW + 500));
        b.put(CfName::RawTtl, b"0", &encode_expiry(NOW - 1));
        e.write(b, WriteOptions::SYNC).unwrap();
        e
    }

    fn keys(pairs: &[KvPair]) -> String {
        pairs.iter().map(|(k, _)| String::from_utf8_lossy(k).into_owned()).collect()
    }

    #[test]
    fn expired_keys_are_absent_to_get_and_ttl() {
        let snap = engine().snapshot();
        assert_eq!(get(&*snap, b"a", NOW).unwrap(), Some(b"va".to_vec()));
        assert_eq!(get(&*snap, b"b", NOW - 1).unwrap(), Some(b"vb".to_vec()));
        assert_eq!(get(&*snap, b"b", NOW).unwrap(), None);
        assert_eq!(get(&*snap, b"f", NOW).unwrap(), None, "an expiry without a value is no key");
        assert_eq!(ttl(&*snap, b"a", NOW).unwrap(), Some(0), "no TTL");
        assert_eq!(ttl(&*snap, b"b", NOW - 1).unwrap(), Some(1));
        assert_eq!(ttl(&*snap, b"b", NOW).unwrap(), None);
        assert_eq!(ttl(&*snap, b"d", NOW).unwrap(), Some(500));
        assert_eq!(ttl(&*snap, b"f", NOW).unwrap(), None);
        assert_eq!(ttl(&*snap, b"zz", NOW).unwrap(), None);
    }

    #[test]
    fn scans_skip_expired_keys_both_ways_and_fill_the_limit() {
        let snap = engine().snapshot();
        assert_eq!(keys(&scan(&*snap, b"", None, false, 10, NOW).unwrap()), "acde");
        assert_eq!(keys(&scan(&*snap, b"", None, true, 10, NOW).unwrap()), "edca");
        assert_eq!(keys(&scan(&*snap, b"", None, false, 2, NOW).unwrap()), "ac", "b is skipped, not counted");
        assert_eq!(keys(&scan(&*snap, b"b", Some(b"e"), true, 2, NOW).unwrap()), "dc");
        assert_eq!(keys(&scan(&*snap, b"", None, false, 10, NOW + 500).unwrap()), "ace");
        assert_eq!(keys(&scan(&*snap, b"", None, true, 10, NOW + 500).unwrap()), "eca");
        assert_eq!(keys(&scan(&*snap, b"", None, false, 10, NOW - 1).unwrap()), "abcde");
        assert_eq!(keys(&scan(&*snap, b"c", Some(b"d"), false, 10, NOW).unwrap()), "c");
        assert!(scan(&*snap, b"", None, false, 0, NOW).unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_expiry_is_a_read_failure() {
        let e = engine();
        let mut b = WriteBatch::default();
        b.put(CfName::RawTtl, b"c", b"bad");
        e.write(b, WriteOptions::SYNC).unwrap();
        let snap = e.snapshot();
        assert!(matches!(get(&*snap, b"c", NOW), Err(StoreError::Unavailable(_))));
        assert!(matches!(scan(&*snap, b"", None, false, 10, NOW), Err(StoreError::Unavailable(_))));
    }
}
