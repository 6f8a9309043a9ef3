//! How RawKV keys expire. A key written with a TTL has its expiry time — milliseconds since
//! the Unix epoch, as the leader that accepted the write read its node's clock — in
//! [`CfName::RawTtl`] under the same raw key; a key with no entry there never expires. The
//! value in [`CfName::Raw`] stays exactly the bytes the client wrote, so data written before
//! TTL existed reads back unchanged. (TiKV's api-v1ttl appends the expiry to every value
//! instead; that format cannot tell an older plain value from one that carries an expiry.)
//!
//! An expired key is absent to every reader and to compare-and-swap; its entries stay on
//! disk until the key is written or deleted again.

use crate::cmd::Request;
use keel_storage::CfName;

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

/// The requests that set raw `key` to `value`, expiring at `expire_ms` (`None`: never; an
/// expiry left by an earlier write is removed).
pub fn put_requests(key: Vec<u8>, value: Vec<u8>, expire_ms: Option<u64>) -> [Request; 2] {
    let expiry = match expire_ms {
        Some(at) => Request::Put { cf: CfName::RawTtl, key: key.clone(), value: encode_expiry(at) },
        None => Request::Delete { cf: CfName::RawTtl, key: key.clone() },
    };
    [Request::Put { cf: CfName::Raw, key, value }, expiry]
}

/// The requests that delete raw `key` and its expiry.
pub fn delete_requests(key: Vec<u8>) -> [Request; 2] {
    [Request::Delete { cf: CfName::Raw, key: key.clone() }, Request::Delete { cf: CfName::RawTtl, key }]
}

/// The requests that delete raw keys in `[start, end)` (empty end: the region's end) and
/// their expiries.
pub fn delete_range_requests(start: Vec<u8>, end: Vec<u8>) -> [Request; 2] {
    [
        Request::DeleteRange { cf: CfName::Raw, start: start.clone(), end: end.clone() },
        Request::DeleteRange { cf: CfName::RawTtl, start, end },
    ]
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
    fn a_put_without_ttl_clears_an_old_expiry() {
        let [value, expiry] = put_requests(b"k".to_vec(), b"v".to_vec(), None);
        assert_eq!(value, Request::Put { cf: CfName::Raw, key: b"k".to_vec(), value: b"v".to_vec() });
        assert_eq!(expiry, Request::Delete { cf: CfName::RawTtl, key: b"k".to_vec() });
        let [_, expiry] = put_requests(b"k".to_vec(), b"v".to_vec(), Some(7));
        assert_eq!(expiry, Request::Put { cf: CfName::RawTtl, key: b"k".to_vec(), value: encode_expiry(7) });
    }
}
