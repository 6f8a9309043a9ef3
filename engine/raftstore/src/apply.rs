//! Applying committed commands to the data column families. Deterministic: every replica
//! turns the same entries into the same writes.

use crate::cmd::{AdminRequest, CmdBody, CmdResult, RaftCmd, Request, RequestResult};
use crate::raw_ttl;
use crate::snapshot::{key_in_region, region_bounds};
use keel_storage::{CfName, Engine, WriteBatch};
use keel_types::{Peer, Region, RegionError};
use std::collections::BTreeMap;

/// The outcome of applying one command.
pub type ApplyOutcome = Result<CmdResult, RegionError>;

/// Keys written earlier in the same not-yet-written batch, so a later command in the batch
/// (a compare-and-swap) reads its predecessors' effects.
#[derive(Default)]
pub struct Overlay {
    /// Point writes, newest wins; `None` is a delete.
    values: BTreeMap<(CfName, Vec<u8>), Option<Vec<u8>>>,
    /// Range deletes `[start, end)` (empty end: unbounded). A point write after a range
    /// delete is in `values`, which take precedence.
    ranges: Vec<(CfName, Vec<u8>, Vec<u8>)>,
}

impl Overlay {
    fn get(&self, engine: &dyn Engine, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if let Some(v) = self.values.get(&(cf, key.to_vec())) {
            return Ok(v.clone());
        }
        let deleted = self
            .ranges
            .iter()
            .any(|(rcf, start, end)| *rcf == cf && key >= start.as_slice() && (end.is_empty() || key < end.as_slice()));
        if deleted {
            return Ok(None);
        }
        engine.get(cf, key).map_err(|e| e.to_string())
    }

    fn delete_range(&mut self, cf: CfName, start: &[u8], end: &[u8]) {
        for ((vcf, k), v) in self.values.iter_mut() {
            if *vcf == cf && k.as_slice() >= start && (end.is_empty() || k.as_slice() < end) {
                *v = None;
            }
        }
        self.ranges.push((cf, start.to_vec(), end.to_vec()));
    }

    /// Forgets everything (the batch it shadowed was written).
    pub fn clear(&mut self) {
        self.values.clear();
        self.ranges.clear();
    }
}

/// Applies one decoded command to `region`, staging its writes in `batch`.
/// Returns the command's result, or the region error that made it a no-op.
/// A split also returns the new right region in `CmdResult::Split`.
pub fn apply_cmd(
    engine: &dyn Engine,
    overlay: &mut Overlay,
    batch: &mut WriteBatch,
    region: &mut Region,
    cmd: RaftCmd,
) -> Result<ApplyOutcome, String> {
    if cmd.epoch.version != region.epoch.version || cmd.epoch.is_stale_against(&region.epoch) {
        return Ok(Err(RegionError::EpochNotMatch { current_regions: vec![region.clone()] }));
    }
    match cmd.body {
        CmdBody::Write(requests) => {
            let outside = requests.iter().find(|r| match r {
                // A range delete is clipped to the region instead.
                Request::DeleteRange { .. } => false,
                _ => !key_in_region(r.key().0, r.key().1, region),
            });
            if let Some(bad) = outside {
                return Ok(Err(RegionError::KeyNotInRegion {
                    key: bad.key().1.to_vec(),
                    region_id: region.id,
                    start_key: region.start_key.clone(),
                    end_key: region.end_key.clone(),
                }));
            }
            let mut results = Vec::with_capacity(requests.len());
            for req in requests {
                results.push(apply_request(engine, overlay, batch, region, req)?);
            }
            Ok(Ok(CmdResult::Write(results)))
        }
        CmdBody::Admin(AdminRequest::Split { split_key, new_region_id, new_peer_ids }) => {
            if !region.contains(&split_key) || split_key == region.start_key {
                return Ok(Err(RegionError::KeyNotInRegion {
                    key: split_key,
                    region_id: region.id,
                    start_key: region.start_key.clone(),
                    end_key: region.end_key.clone(),
                }));
            }
            if new_peer_ids.len() != region.peers.len() {
                return Err(format!(
                    "split of region {} with {} peer ids for {} peers",
                    region.id,
                    new_peer_ids.len(),
                    region.peers.len()
                ));
            }
            if !keel_types::planted::enabled(keel_types::planted::PlantedBug::SplitWithoutEpochBump) {
                region.epoch.version += 1;
            }
            let right = Region {
                id: new_region_id,
                start_key: split_key.clone(),
                end_key: std::mem::replace(&mut region.end_key, split_key),
                epoch: region.epoch,
                peers: region
                    .peers
                    .iter()
                    .zip(&new_peer_ids)
                    .map(|(p, id)| Peer { id: *id, store_id: p.store_id, role: p.role })
                    .collect(),
            };
            Ok(Ok(CmdResult::Split(vec![region.clone(), right])))
        }
    }
}

fn apply_request(
    engine: &dyn Engine,
    overlay: &mut Overlay,
    batch: &mut WriteBatch,
    region: &Region,
    req: Request,
) -> Result<RequestResult, String> {
    match req {
        Request::Put { cf, key, value } => {
            batch.put(cf, &key, &value);
            overlay.values.insert((cf, key), Some(value));
        }
        Request::Delete { cf, key } => {
            batch.delete(cf, &key);
            overlay.values.insert((cf, key), None);
        }
        Request::DeleteRange { cf, start, end } => {
            let (region_start, region_end) = region_bounds(cf, region);
            let start = start.max(region_start);
            let end = match (end.is_empty(), region_end.is_empty()) {
                (true, _) => region_end,
                (false, true) => end,
                (false, false) => end.min(region_end),
            };
            if end.is_empty() {
                batch.delete_from(cf, &start);
            } else if start < end {
                batch.delete_range(cf, &start, &end);
            }
            if end.is_empty() || start < end {
                overlay.delete_range(cf, &start, &end);
            }
        }
        Request::CompareAndSwap { cf, key, expected, value } => {
            let previous = overlay.get(engine, cf, &key)?;
            let succeeded = previous == expected;
            if succeeded {
                batch.put(cf, &key, &value);
                overlay.values.insert((cf, key), Some(value));
            }
            return Ok(RequestResult::Cas { succeeded, previous });
        }
        Request::RawCompareAndSwap { key, expected, value, expire_ms, now_ms } => {
            let mut previous = overlay.get(engine, CfName::Raw, &key)?;
            if previous.is_some() {
                if let Some(expiry) = overlay.get(engine, CfName::RawTtl, &key)? {
                    if raw_ttl::is_expired(raw_ttl::decode_expiry(&expiry)?, now_ms) {
                        previous = None;
                    }
                }
            }
            let succeeded = previous == expected;
            if succeeded {
                for req in raw_ttl::put_requests(key, value, expire_ms) {
                    apply_request(engine, overlay, batch, region, req)?;
                }
            }
            return Ok(RequestResult::Cas { succeeded, previous });
        }
    }
    Ok(RequestResult::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw_ttl::encode_expiry;
    use keel_storage::{SimEngine, WriteOptions};

    fn cas(expected: Option<&[u8]>, value: &[u8], expire_ms: Option<u64>, now_ms: u64) -> RaftCmd {
        RaftCmd {
            region_id: 0,
            epoch: Default::default(),
            body: CmdBody::Write(vec![Request::RawCompareAndSwap {
                key: b"k".to_vec(),
                expected: expected.map(<[u8]>::to_vec),
                value: value.to_vec(),
                expire_ms,
                now_ms,
            }]),
        }
    }

    /// Applies `cmds` as one batch; returns each CAS's (succeeded, previous).
    fn apply_all(engine: &SimEngine, cmds: Vec<RaftCmd>) -> Vec<(bool, Option<Vec<u8>>)> {
        let (mut overlay, mut batch, mut region) = (Overlay::default(), WriteBatch::new(), Region::default());
        let results = cmds
            .into_iter()
            .map(|cmd| match apply_cmd(engine, &mut overlay, &mut batch, &mut region, cmd) {
                Ok(Ok(CmdResult::Write(r))) => match &r[..] {
                    [RequestResult::Cas { succeeded, previous }] => (*succeeded, previous.clone()),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .collect();
        engine.write(batch, WriteOptions::SYNC).unwrap();
        results
    }

    #[test]
    fn raw_cas_treats_an_expired_key_as_absent_and_sets_the_new_expiry() {
        let engine = SimEngine::new();
        let mut b = WriteBatch::new();
        b.put(CfName::Raw, b"k", b"old");
        b.put(CfName::RawTtl, b"k", &encode_expiry(100));
        engine.write(b, WriteOptions::SYNC).unwrap();

        // Not yet expired at 99: the value counts.
        assert_eq!(apply_all(&engine, vec![cas(None, b"x", None, 99)]), vec![(false, Some(b"old".to_vec()))]);
        // Expired at 100: absent, so a CAS expecting absence swaps in a value expiring at 500;
        // a second CAS in the same batch sees that value (through the overlay), not expired
        // at 499, and swaps in one that never expires.
        let got = apply_all(&engine, vec![cas(None, b"new", Some(500), 100), cas(Some(b"new"), b"last", None, 499)]);
        assert_eq!(got, vec![(true, None), (true, Some(b"new".to_vec()))]);
        assert_eq!(engine.get(CfName::Raw, b"k").unwrap(), Some(b"last".to_vec()));
        assert_eq!(engine.get(CfName::RawTtl, b"k").unwrap(), None, "a swap without TTL clears the expiry");
        // Never expires now.
        assert_eq!(
            apply_all(&engine, vec![cas(Some(b"last"), b"v", Some(7), u64::MAX)]),
            vec![(true, Some(b"last".to_vec()))]
        );
        assert_eq!(engine.get(CfName::RawTtl, b"k").unwrap(), Some(encode_expiry(7)));
    }
}
