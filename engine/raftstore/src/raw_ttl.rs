//! How RawKV keys expire. A key written with a TTL has its expiry time — milliseconds since
//! the Unix epoch, as the leader that accepted the write read its node's clock — in
//! [`CfName::RawTtl`] under the same raw key; a key with no entry there never expires. The
//! value in [`CfName::Raw`] stays exactly the bytes the client wrote, so data written before
//! TTL existed reads back unchanged. (TiKV's api-v1ttl appends the expiry to every value
//! instead; that format cannot tell an older plain value from one that carries an expiry.)
//! Writes go through [`Request::RawPut`] and [`Request::RawDelete`], which touch the expiry
//! CF only for keys that have (or get) an expiry.
//!
//! An expired key is absent to every reader and to compare-and-swap. Its entries stay on disk
//! until the key is written or deleted again, or until the leader's periodic purge (the
//! server's `raw_ttl_purge`) finds it with [`expired_keys`] and proposes
//! [`Request::RawDeleteExpired`] for it through raft.

use crate::cmd::Request;
use keel_storage::{CfName, Snapshot};
use std::ops::Bound;

/// Encodes an expiry time for [`CfName::RawTtl`].
pub fn encode_expiry(expire_ms: u64) -> Vec<u8> {
    expire_ms.to_be_bytes().to_vec()
}

/// Decodes a [`CfName::RawTtl`] value.
pub fn decode_expiry(bytes: &[u8]) -> Result<u64, String> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| format!("raw expiry of {} bytes, not 8", bytes.len()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// True when a key expiring at `expire_ms` is gone at `now_ms`.
pub fn is_expired(expire_ms: u64, now_ms: u64) -> bool {
    now_ms >= expire_ms
}

/// The expiry time of a write at `now_ms` with a TTL of `ttl_ms` (0: never expires).
pub fn expiry_of(now_ms: u64, ttl_ms: u64) -> Option<u64> {
    (ttl_ms != 0).then(|| now_ms.saturating_add(ttl_ms))
}

/// The requests that delete raw keys in `[start, end)` (empty end: the region's end) and
/// their expiries.
pub fn delete_range_requests(start: Vec<u8>, end: Vec<u8>) -> [Request; 2] {
    [
        Request::DeleteRange { cf: CfName::Raw, start: start.clone(), end: end.clone() },
        Request::DeleteRange { cf: CfName::RawTtl, start, end },
    ]
}

/// What one step of the TTL purge found.
#[derive(Debug, PartialEq, Eq)]
pub struct PurgeStep {
    /// Expired keys, ascending.
    pub keys: Vec<Vec<u8>>,
    /// Where the next step starts (`None`: the range is done).
    pub next: Option<Vec<u8>>,
}

/// One step of the TTL purge over `[start, end)` of the raw key space (empty end:
/// unbounded): the keys whose expiry is at or before `now_ms`, looking at no more than
/// `scan_max` expiries and returning no more than `keys_max` keys, and where the next step
/// starts, so a region full of expiries is covered in bounded steps.
pub fn expired_keys(
    snapshot: &dyn Snapshot,
    start: &[u8],
    end: &[u8],
    now_ms: u64,
    scan_max: usize,
    keys_max: usize,
) -> Result<PurgeStep, String> {
    let upper = if end.is_empty() { Bound::Unbounded } else { Bound::Excluded(end) };
    let mut keys = Vec::new();
    for (scanned, item) in snapshot.iter(CfName::RawTtl, Bound::Included(start), upper, false).enumerate() {
        let (key, value) = item.map_err(|e| e.to_string())?;
        if scanned == scan_max || keys.len() == keys_max {
            return Ok(PurgeStep { keys, next: Some(key) });
        }
        if is_expired(decode_expiry(&value)?, now_ms) {
            keys.push(key);
        }
    }
    Ok(PurgeStep { keys, next: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_round_trips_and_rejects_bad_lengths() {
        assert_eq!(decode_expiry(&encode_expiry(0x0102_0304_0506_0708)), Ok(0x0102_0304_0506_0708));
        assert!(decode_expiry(b"short").is_err());
        assert!(decode_expiry(&[0; 9]).is_err());
    }

    #[test]
    fn a_key_expires_at_its_expiry_time() {
        assert!(!is_expired(1_000, 999));
        assert!(is_expired(1_000, 1_000));
        assert_eq!(expiry_of(5_000, 0), None);
        assert_eq!(expiry_of(5_000, 250), Some(5_250));
        assert_eq!(expiry_of(u64::MAX - 1, 10), Some(u64::MAX));
    }

    #[test]
    fn the_purge_finds_expired_keys_in_bounded_steps() {
        use keel_storage::{Engine, SimEngine, WriteBatch, WriteOptions};
        let engine = SimEngine::new();
        let mut b = WriteBatch::new();
        for (key, at) in [(&b"a"[..], 10), (b"b", 99), (b"c", 100), (b"d", 101), (b"e", 5), (b"f", 1)] {
            b.put(CfName::RawTtl, key, &encode_expiry(at));
        }
        b.put(CfName::Raw, b"g", b"no expiry");
        engine.write(b, WriteOptions::SYNC).unwrap();
        let snap = engine.snapshot();
        let step = |start: &[u8], end: &[u8], scan_max, keys_max| {
            let found = expired_keys(&*snap, start, end, 100, scan_max, keys_max).unwrap();
            (found.keys, found.next)
        };
        let keys = |names: &[&str]| names.iter().map(|n| n.as_bytes().to_vec()).collect::<Vec<_>>();

        // Everything at once: expired at 100 are a, b, c (at 100 exactly), e and f; d is not.
        assert_eq!(step(b"", b"", 100, 100), (keys(&["a", "b", "c", "e", "f"]), None));
        // A range: its end is exclusive.
        assert_eq!(step(b"b", b"e", 100, 100), (keys(&["b", "c"]), None));
        // Bounded by expiries looked at: three (a, b, c), then d is where the next step starts.
        assert_eq!(step(b"", b"", 3, 100), (keys(&["a", "b", "c"]), Some(b"d".to_vec())));
        // Bounded by keys found: two (a, b); c is next.
        assert_eq!(step(b"", b"", 100, 2), (keys(&["a", "b"]), Some(b"c".to_vec())));
        // The edge: exactly as many keys as allowed and nothing after them is done.
        assert_eq!(step(b"e", b"", 100, 2), (keys(&["e", "f"]), None));
        // Resuming from a cursor.
        assert_eq!(step(b"d", b"", 2, 100), (keys(&["e"]), Some(b"f".to_vec())));
    }
}
