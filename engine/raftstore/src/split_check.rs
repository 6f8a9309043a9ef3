//! Split checking: a leader measures its region now and then and, once it is larger than the
//! configured size or key count, picks a split key near the middle and asks for a split
//! (PD allocates the ids; the split itself is an admin command through raft).

use crate::snapshot::{cf_is_encoded, region_bounds, DATA_CFS};
use keel_storage::{Engine, RangeStats};
use keel_types::keys::decode_bytes;
use keel_types::Region;

/// A region's size across its data column families.
pub fn region_stats(engine: &dyn Engine, region: &Region) -> Result<RangeStats, String> {
    let mut total = RangeStats::default();
    for cf in DATA_CFS {
        let (start, end) = region_bounds(cf, region);
        let end = (!end.is_empty()).then_some(end.as_slice());
        let s = engine.approximate_size(cf, &start, end).map_err(|e| e.to_string())?;
        total.bytes += s.bytes;
        total.keys += s.keys;
    }
    Ok(total)
}

/// A user key near the middle of the region's largest column family, strictly inside the
/// region (never its start), or `None` when the region holds too few distinct keys.
pub fn middle_key(engine: &dyn Engine, region: &Region) -> Result<Option<Vec<u8>>, String> {
    let snap = engine.snapshot();
    let mut best: Option<(u64, keel_storage::CfName)> = None;
    for cf in DATA_CFS {
        let (start, end) = region_bounds(cf, region);
        let end = (!end.is_empty()).then_some(end.as_slice());
        let keys = engine.approximate_size(cf, &start, end).map_err(|e| e.to_string())?.keys;
        if best.is_none_or(|(k, _)| keys > k) {
            best = Some((keys, cf));
        }
    }
    let Some((keys, cf)) = best else { return Ok(None) };
    if keys < 2 {
        return Ok(None);
    }
    let (start, end) = region_bounds(cf, region);
    let end = (!end.is_empty()).then_some(end.as_slice());
    let pairs = snap.scan(cf, &start, end, false, (keys / 2 + 1) as usize).map_err(|e| e.to_string())?;
    let Some((stored, _)) = pairs.last() else { return Ok(None) };
    let user_key = if cf_is_encoded(cf) {
        match decode_bytes(stored) {
            Some((k, _)) => k,
            None => return Ok(None),
        }
    } else {
        stored.clone()
    };
    Ok((region.contains(&user_key) && user_key != region.start_key).then_some(user_key))
}
