//! Region snapshots: a consistent copy of a region's data at its applied index, sent to a
//! peer that fell behind the leader's truncated log (or that is new), and installed there
//! atomically — one write batch replaces the old state, so a crash leaves old or new.

use crate::peer_storage::{conf_state_of, PeerStorage};
use keel_storage::{CfName, KvPair, WriteBatch};
use keel_types::codec::encode;
use keel_types::keys::{decode_bytes, storage_bound};
use keel_types::Region;
use raft::eraftpb::Snapshot;
use serde::{Deserialize, Serialize};

/// The column families that hold a region's data (everything but the raft CF).
pub const DATA_CFS: [CfName; 5] = [CfName::Default, CfName::Lock, CfName::Write, CfName::Raw, CfName::RawTtl];

/// The payload of a raft snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotData {
    /// The region as of the snapshot.
    pub region: Region,
    /// Every data pair of the region, per column family.
    pub cfs: Vec<(CfName, Vec<KvPair>)>,
    /// The region's merge state as of the snapshot: a replica that catches up past a
    /// PrepareMerge this way must know it is frozen, as the replicas that applied it do.
    pub merge: Option<crate::merge::MergeState>,
}

/// True when `cf` stores memcomparable-encoded user keys (the transactional CFs).
pub fn cf_is_encoded(cf: CfName) -> bool {
    matches!(cf, CfName::Default | CfName::Lock | CfName::Write)
}

/// `region`'s range in `cf`'s storage key space: `(start, end)`, empty end = unbounded.
pub fn region_bounds(cf: CfName, region: &Region) -> (Vec<u8>, Vec<u8>) {
    let encoded = cf_is_encoded(cf);
    (storage_bound(&region.start_key, encoded, false), storage_bound(&region.end_key, encoded, true))
}

/// True when the stored `key` of `cf` belongs to `region`.
pub fn key_in_region(cf: CfName, key: &[u8], region: &Region) -> bool {
    if cf_is_encoded(cf) {
        decode_bytes(key).is_some_and(|(user, _)| region.contains(&user))
    } else {
        region.contains(key)
    }
}

/// Builds a snapshot of `storage`'s region at its applied index.
pub fn generate(storage: &PeerStorage) -> Result<Snapshot, String> {
    let applied = storage.apply_state.applied_index;
    let term = raft::Storage::term(storage, applied).map_err(|e| e.to_string())?;
    let snap = storage.engine().snapshot();
    let region = storage.region.clone();
    let mut cfs = Vec::with_capacity(DATA_CFS.len());
    for cf in DATA_CFS {
        let (start, end) = region_bounds(cf, &region);
        let end = (!end.is_empty()).then_some(end.as_slice());
        let pairs = snap.scan(cf, &start, end, false, usize::MAX).map_err(|e| e.to_string())?;
        cfs.push((cf, pairs));
    }
    let mut out = Snapshot::default();
    out.mut_metadata().index = applied;
    out.mut_metadata().term = term;
    out.mut_metadata().set_conf_state(conf_state_of(&region));
    let merge = storage.merge_state.clone();
    out.data = encode(&SnapshotData { region, cfs, merge }).map_err(|e| e.to_string())?.into();
    Ok(out)
}

/// The region a snapshot message carries, read before raft accepts it (the store refuses
/// snapshots whose range overlaps another replica it holds).
pub fn region_of(snap: &Snapshot) -> Result<Region, String> {
    let data: SnapshotData = keel_types::codec::decode(snap.get_data()).map_err(|e| e.to_string())?;
    Ok(data.region)
}

/// Stages deleting every data key of `region`'s range.
pub fn clear_range(batch: &mut WriteBatch, region: &Region) {
    for cf in DATA_CFS {
        let (start, end) = region_bounds(cf, region);
        if end.is_empty() {
            batch.delete_from(cf, &start);
        } else {
            batch.delete_range(cf, &start, &end);
        }
    }
}
