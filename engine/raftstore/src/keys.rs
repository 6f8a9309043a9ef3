//! Layout of the `raft` column family: per-region raft log, raft state, apply state and
//! region state, plus store-wide identity. Big-endian ids and indexes keep each region's
//! keys contiguous and its log in index order.

use keel_types::RegionId;

const REGION_PREFIX: u8 = b'r';
const STORE_IDENT_KEY: &[u8] = b"s/ident";

const LOG_SUFFIX: u8 = b'l';
const RAFT_STATE_SUFFIX: u8 = b'h';
const APPLY_STATE_SUFFIX: u8 = b'a';
const REGION_STATE_SUFFIX: u8 = b'm';
const MERGE_STATE_SUFFIX: u8 = b'g';

fn region_key(region_id: RegionId, suffix: u8) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.push(REGION_PREFIX);
    key.extend_from_slice(&region_id.to_be_bytes());
    key.push(suffix);
    key
}

/// Key of log entry `index` of `region_id`.
pub fn log_key(region_id: RegionId, index: u64) -> Vec<u8> {
    let mut key = region_key(region_id, LOG_SUFFIX);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// Key of the region's raft state (hard state and last log position).
pub fn raft_state_key(region_id: RegionId) -> Vec<u8> {
    region_key(region_id, RAFT_STATE_SUFFIX)
}

/// Key of the region's apply state (applied index, truncated log position).
pub fn apply_state_key(region_id: RegionId) -> Vec<u8> {
    region_key(region_id, APPLY_STATE_SUFFIX)
}

/// Key of the region's metadata (range, epoch, peers, lifecycle).
pub fn region_state_key(region_id: RegionId) -> Vec<u8> {
    region_key(region_id, REGION_STATE_SUFFIX)
}

/// Key of the region's merge state (present only while it is the source of a merge).
pub fn merge_state_key(region_id: RegionId) -> Vec<u8> {
    region_key(region_id, MERGE_STATE_SUFFIX)
}

/// True when `key` is some region's state key; returns the region id.
pub fn parse_region_state_key(key: &[u8]) -> Option<RegionId> {
    if key.len() == 10 && key[0] == REGION_PREFIX && key[9] == REGION_STATE_SUFFIX {
        Some(RegionId::from_be_bytes(key[1..9].try_into().ok()?))
    } else {
        None
    }
}

/// Where the store remembers its id and cluster.
pub fn store_ident_key() -> &'static [u8] {
    STORE_IDENT_KEY
}

/// Bounds covering every region state key, for scanning all regions at start-up.
pub fn region_meta_bounds() -> (Vec<u8>, Vec<u8>) {
    (vec![REGION_PREFIX], vec![REGION_PREFIX + 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_region_then_index() {
        assert!(log_key(1, 255) < log_key(1, 256));
        assert!(log_key(1, u64::MAX) < log_key(2, 0));
        assert_eq!(parse_region_state_key(&region_state_key(77)), Some(77));
        assert_eq!(parse_region_state_key(&log_key(77, 1)), None);
        let (lo, hi) = region_meta_bounds();
        assert!(region_state_key(u64::MAX).as_slice() < hi.as_slice());
        assert!(region_state_key(0).as_slice() > lo.as_slice());
    }
}
