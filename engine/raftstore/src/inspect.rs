//! Read-only inspection of a store's disk: which region replicas it holds and a digest of
//! each replica's data. The simulator's end-of-run consistency check uses it to prove that
//! every replica of every region holds the same data and that no store keeps data outside
//! the regions it hosts.

use crate::keys;
use crate::peer_storage::{read, ApplyState, PeerState, RegionLocalState};
use crate::snapshot::{key_in_region, region_bounds, DATA_CFS};
use keel_storage::{CfName, Engine};
use keel_types::trace::fnv1a;
use keel_types::Region;

/// One region replica as a store's disk records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReplica {
    /// The region as this replica last applied it (range, epoch, peers).
    pub region: Region,
    /// False for a tombstone (a removed replica whose data is gone).
    pub live: bool,
    /// Highest applied log index.
    pub applied_index: u64,
}

/// Every region replica recorded on `engine` (live and tombstones), in region id order.
pub fn local_replicas(engine: &dyn Engine) -> Result<Vec<LocalReplica>, String> {
    let (lo, hi) = keys::region_meta_bounds();
    let metas = engine.snapshot().scan(CfName::Raft, &lo, Some(&hi), false, usize::MAX).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for (key, _) in metas {
        let Some(region_id) = keys::parse_region_state_key(&key) else { continue };
        let state: RegionLocalState = read(engine, &key)?.ok_or("region state vanished")?;
        let apply: Option<ApplyState> = read(engine, &keys::apply_state_key(region_id))?;
        out.push(LocalReplica {
            region: state.region,
            live: state.state != PeerState::Tombstone,
            applied_index: apply.map_or(0, |a| a.applied_index),
        });
    }
    Ok(out)
}

/// A digest of every data pair in `region`'s range on `engine` (all data column families)
/// and how many pairs there are: equal digests mean equal replicas.
pub fn region_digest(engine: &dyn Engine, region: &Region) -> Result<(u64, usize), String> {
    let snap = engine.snapshot();
    let (mut digest, mut count) = (0xcbf2_9ce4_8422_2325_u64, 0);
    for cf in DATA_CFS {
        let (start, end) = region_bounds(cf, region);
        let end = (!end.is_empty()).then_some(end.as_slice());
        for (k, v) in snap.scan(cf, &start, end, false, usize::MAX).map_err(|e| e.to_string())? {
            digest = fnv1a(fnv1a(fnv1a(digest, &[cf as u8]), &k), &v);
            digest = fnv1a(digest, &(k.len() as u64).to_le_bytes());
            count += 1;
        }
    }
    Ok((digest, count))
}

/// Data keys on `engine` that lie in none of `regions` (leftovers of a replica that was
/// removed or moved without its data going too), at most `limit`.
pub fn orphan_keys(engine: &dyn Engine, regions: &[Region], limit: usize) -> Result<Vec<(CfName, Vec<u8>)>, String> {
    let snap = engine.snapshot();
    let mut out = Vec::new();
    for cf in DATA_CFS {
        for (k, _) in snap.scan(cf, b"", None, false, usize::MAX).map_err(|e| e.to_string())? {
            if !regions.iter().any(|r| key_in_region(cf, &k, r)) {
                out.push((cf, k));
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}
