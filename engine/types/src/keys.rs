//! How user keys become storage keys.
//!
//! Region boundaries are *user* keys. Raw data is stored under the user key itself (`raw`
//! CF). Transactional data is stored under the memcomparable encoding of the user key —
//! followed by a descending timestamp in the `write` and `default` CFs — so that versions of
//! one key sort together, newest first, and a region's user-key range `[start, end)` is
//! exactly the storage range `[encode(start), encode(end))` in every transactional CF.
//!
//! Memcomparable encoding (as TiKV's): the key in groups of 8 bytes, each padded with zeros
//! and followed by a marker byte `0xff - padding`. It preserves order and is prefix-free, so
//! `encode(a) < encode(b)` iff `a < b`, and appending a suffix never crosses a boundary.

use crate::Timestamp;

const GROUP: usize = 8;
const MARKER: u8 = 0xff;

/// Memcomparable encoding of `key`.
pub fn encode_bytes(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((key.len() / GROUP + 1) * (GROUP + 1));
    for chunk in key.chunks(GROUP) {
        out.extend_from_slice(chunk);
        let pad = GROUP - chunk.len();
        out.extend(std::iter::repeat_n(0, pad));
        out.push(MARKER - pad as u8);
        if pad > 0 {
            return out;
        }
    }
    // Length is a multiple of GROUP (including empty): a final all-padding group.
    out.extend_from_slice(&[0; GROUP]);
    out.push(MARKER - GROUP as u8);
    out
}

/// Decodes a memcomparable prefix of `encoded`; returns the key and the bytes consumed.
pub fn decode_bytes(encoded: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut key = Vec::new();
    let mut pos = 0;
    loop {
        let group = encoded.get(pos..pos + GROUP + 1)?;
        let marker = group[GROUP];
        let pad = (MARKER - marker) as usize;
        if pad > GROUP {
            return None;
        }
        key.extend_from_slice(&group[..GROUP - pad]);
        pos += GROUP + 1;
        if pad > 0 {
            if group[GROUP - pad..GROUP].iter().any(|b| *b != 0) {
                return None;
            }
            return Some((key, pos));
        }
    }
}

/// A versioned storage key: `encode_bytes(key)` then `!ts` big-endian (newest first).
pub fn versioned_key(key: &[u8], ts: Timestamp) -> Vec<u8> {
    let mut out = encode_bytes(key);
    out.extend_from_slice(&(!ts.0).to_be_bytes());
    out
}

/// Splits a versioned key into the user key and its timestamp.
pub fn split_versioned_key(stored: &[u8]) -> Option<(Vec<u8>, Timestamp)> {
    let (key, used) = decode_bytes(stored)?;
    let ts: [u8; 8] = stored.get(used..)?.try_into().ok()?;
    Some((key, Timestamp(!u64::from_be_bytes(ts))))
}

/// The storage bound of a user-key region boundary in a CF that stores user keys encoded
/// (`encoded == true`) or as they are. An empty bound (the key space's end) stays empty.
pub fn storage_bound(user_bound: &[u8], encoded: bool, is_end: bool) -> Vec<u8> {
    if !encoded || (is_end && user_bound.is_empty()) {
        user_bound.to_vec()
    } else {
        encode_bytes(user_bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_preserves_order_and_is_prefix_free() {
        let keys: Vec<&[u8]> =
            vec![b"", b"\x00", b"a", b"a\x00", b"ab", b"abcdefgh", b"abcdefgh\x00", b"abcdefgi", b"b"];
        for w in keys.windows(2) {
            assert!(encode_bytes(w[0]) < encode_bytes(w[1]), "{:?} vs {:?}", w[0], w[1]);
            // Any suffix on the smaller key keeps it below the larger.
            let mut with_suffix = encode_bytes(w[0]);
            with_suffix.extend_from_slice(&[0xff; 8]);
            assert!(with_suffix < encode_bytes(w[1]));
        }
        for k in keys {
            assert_eq!(decode_bytes(&encode_bytes(k)), Some((k.to_vec(), encode_bytes(k).len())));
        }
    }

    #[test]
    fn versions_sort_newest_first() {
        let old = versioned_key(b"k", Timestamp(10));
        let new = versioned_key(b"k", Timestamp(20));
        assert!(new < old);
        assert_eq!(split_versioned_key(&new), Some((b"k".to_vec(), Timestamp(20))));
        assert!(versioned_key(b"k", Timestamp::MAX) < versioned_key(b"k\x00", Timestamp(0)));
    }

    #[test]
    fn decode_rejects_garbage() {
        assert_eq!(decode_bytes(b"abc"), None);
        assert_eq!(decode_bytes(&[1, 2, 3, 4, 5, 6, 7, 8, 0x00]), None);
    }
}
