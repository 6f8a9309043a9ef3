//! A small, fast, deterministic checksum for simulated-disk values.
//!
//! Each step `h = mix(h ^ word)` is a bijection of `h`, so any change confined to
//! one 8-byte word (in particular any single flipped bit or byte) always changes
//! the result; wider changes are caught with probability 1 - 2^-64.

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const MUL: u64 = 0xff51_afd7_ed55_8ccd;

#[inline]
fn mix(mut h: u64) -> u64 {
    h = h.wrapping_mul(MUL);
    h ^ (h >> 32)
}

#[inline]
fn update(mut h: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    mix(h ^ bytes.len() as u64)
}

/// Checksum of a key/value pair (the key is included so a value stored under the
/// wrong key is caught too).
pub(crate) fn kv_checksum(key: &[u8], value: &[u8]) -> u64 {
    update(update(SEED, key), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_bit_flip_is_detected() {
        let key = b"some-key".to_vec();
        let value: Vec<u8> = (0..37u8).collect();
        let good = kv_checksum(&key, &value);
        for i in 0..value.len() {
            for bit in 0..8 {
                let mut v = value.clone();
                v[i] ^= 1 << bit;
                assert_ne!(kv_checksum(&key, &v), good, "byte {i} bit {bit}");
            }
        }
        assert_ne!(kv_checksum(b"some-kez", &value), good);
        assert_ne!(kv_checksum(&key, &value[..36]), good);
        assert_ne!(kv_checksum(b"ab", b""), kv_checksum(b"a", b"b"));
    }
}
