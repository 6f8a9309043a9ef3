//! How PD state lies on disk: keys under the `pd/` prefix of `CfName::Default`, fixed-width
//! big-endian integers for counters and bincode (standard config) for records.
//!
//! | key                        | value                                         |
//! |----------------------------|-----------------------------------------------|
//! | `pd/cluster_id`            | u64                                           |
//! | `pd/alloc_id`              | u64: ids below it may have been handed out    |
//! | `pd/tso`                   | u64: ms; every served timestamp's physical is below it |
//! | `pd/gc_safe_point`         | u64                                           |
//! | `pd/bootstrap`             | `Region`: the first region, once bootstrapped |
//! | `pd/store/<id: u64 BE>`    | `Store`                                       |
//! | `pd/region/<id: u64 BE>`   | `Region`                                      |

use crate::Error;
use keel_storage::{CfName, Engine, WriteBatch, WriteOptions};
use serde::{de::DeserializeOwned, Serialize};

/// The column family PD uses.
pub(crate) const CF: CfName = CfName::Default;

pub(crate) const CLUSTER_ID: &[u8] = b"pd/cluster_id";
pub(crate) const ALLOC_ID: &[u8] = b"pd/alloc_id";
pub(crate) const TSO: &[u8] = b"pd/tso";
pub(crate) const GC_SAFE_POINT: &[u8] = b"pd/gc_safe_point";
pub(crate) const BOOTSTRAP: &[u8] = b"pd/bootstrap";
pub(crate) const STORE_PREFIX: &[u8] = b"pd/store/";
pub(crate) const REGION_PREFIX: &[u8] = b"pd/region/";

/// `prefix` followed by `id` big-endian (so keys sort by id).
pub(crate) fn id_key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The end of `prefix`'s key range (prefixes here end in `/`, so bumping the last byte works).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    let last = end.last_mut().expect("non-empty prefix");
    *last += 1;
    end
}

pub(crate) fn read_u64(engine: &dyn Engine, key: &[u8]) -> Result<Option<u64>, Error> {
    match engine.get(CF, key)? {
        None => Ok(None),
        Some(bytes) => {
            let raw: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                Error::Corrupt(format!("{}: expected 8 bytes, found {}", String::from_utf8_lossy(key), bytes.len()))
            })?;
            Ok(Some(u64::from_be_bytes(raw)))
        }
    }
}

pub(crate) fn put_u64(batch: &mut WriteBatch, key: &[u8], value: u64) {
    batch.put(CF, key, &value.to_be_bytes());
}

pub(crate) fn put_record<T: Serialize>(batch: &mut WriteBatch, key: &[u8], value: &T) {
    let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("PD records always encode");
    batch.put(CF, key, &bytes);
}

pub(crate) fn decode_record<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, Error> {
    let corrupt = |detail: String| Error::Corrupt(format!("{}: {detail}", String::from_utf8_lossy(key)));
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map_err(|e| corrupt(e.to_string()))?;
    if used != bytes.len() {
        return Err(corrupt(format!("{} trailing bytes", bytes.len() - used)));
    }
    Ok(value)
}

pub(crate) fn read_record<T: DeserializeOwned>(engine: &dyn Engine, key: &[u8]) -> Result<Option<T>, Error> {
    engine.get(CF, key)?.map(|bytes| decode_record(key, &bytes)).transpose()
}

/// Every record under `prefix`, in key (= id) order.
pub(crate) fn scan_records<T: DeserializeOwned>(engine: &dyn Engine, prefix: &[u8]) -> Result<Vec<T>, Error> {
    let end = prefix_end(prefix);
    let pairs = engine.snapshot().scan(CF, prefix, Some(&end), false, usize::MAX)?;
    pairs.iter().map(|(k, v)| decode_record(k, v)).collect()
}

/// Writes `batch` synced: it is durable when this returns `Ok`.
pub(crate) fn write_synced(engine: &dyn Engine, batch: WriteBatch) -> Result<(), keel_storage::Error> {
    engine.write(batch, WriteOptions::SYNC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_keys_sort_by_id_and_stay_in_prefix() {
        let a = id_key(STORE_PREFIX, 2);
        let b = id_key(STORE_PREFIX, 256);
        assert!(a < b);
        let end = prefix_end(STORE_PREFIX);
        assert!(a.as_slice() >= STORE_PREFIX && b < end);
        assert!(id_key(REGION_PREFIX, 1) >= end || id_key(REGION_PREFIX, 1) < STORE_PREFIX.to_vec());
    }
}
