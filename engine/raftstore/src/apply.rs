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
        // Merge steps need the entry's position and the store's other replicas: the peer
        // and the store apply them (see `crate::merge`).
        CmdBody::Admin(admin) => Err(format!("region {}: {admin:?} reached the data apply path", region.id)),
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
        Request::Put { cf, key, value } => put(overlay, batch, cf, key, value),
        Request::Delete { cf, key } => delete(overlay, batch, cf, key),
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
                put(overlay, batch, cf, key, value);
            }
            return Ok(RequestResult::Cas { succeeded, previous });
        }
        Request::RawCompareAndSwap { key, expected, value, expire_ms, now_ms } => {
            let mut previous = overlay.get(engine, CfName::Raw, &key)?;
            if previous.is_some()
                && raw_expiry(engine, overlay, &key)?.is_some_and(|at| raw_ttl::is_expired(at, now_ms))
            {
                previous = None;
            }
            let succeeded = previous == expected;
            if succeeded {
                raw_put(engine, overlay, batch, key, value, expire_ms)?;
            }
            return Ok(RequestResult::Cas { succeeded, previous });
        }
        Request::RawPut { key, value, expire_ms } => raw_put(engine, overlay, batch, key, value, expire_ms)?,
        Request::RawDelete { key } => {
            clear_raw_expiry(engine, overlay, batch, &key)?;
            delete(overlay, batch, CfName::Raw, key);
        }
        Request::RawDeleteExpired { key, now_ms } => {
            if raw_expiry(engine, overlay, &key)?.is_some_and(|at| raw_ttl::is_expired(at, now_ms)) {
                delete(overlay, batch, CfName::RawTtl, key.clone());
                delete(overlay, batch, CfName::Raw, key);
            }
        }
    }
    Ok(RequestResult::Done)
}

fn put(overlay: &mut Overlay, batch: &mut WriteBatch, cf: CfName, key: Vec<u8>, value: Vec<u8>) {
    batch.put(cf, &key, &value);
    overlay.values.insert((cf, key), Some(value));
}

fn delete(overlay: &mut Overlay, batch: &mut WriteBatch, cf: CfName, key: Vec<u8>) {
    batch.delete(cf, &key);
    overlay.values.insert((cf, key), None);
}

/// Raw `key`'s expiry as of the writes before this request.
fn raw_expiry(engine: &dyn Engine, overlay: &Overlay, key: &[u8]) -> Result<Option<u64>, String> {
    overlay.get(engine, CfName::RawTtl, key)?.map(|b| raw_ttl::decode_expiry(&b)).transpose()
}

/// Deletes raw `key`'s expiry if it has one: a read instead of a blind delete, so writes of
/// keys that never had a TTL (the common case) leave the expiry CF untouched.
fn clear_raw_expiry(
    engine: &dyn Engine,
    overlay: &mut Overlay,
    batch: &mut WriteBatch,
    key: &[u8],
) -> Result<(), String> {
    if overlay.get(engine, CfName::RawTtl, key)?.is_some() {
        delete(overlay, batch, CfName::RawTtl, key.to_vec());
    }
    Ok(())
}

fn raw_put(
    engine: &dyn Engine,
    overlay: &mut Overlay,
    batch: &mut WriteBatch,
    key: Vec<u8>,
    value: Vec<u8>,
    expire_ms: Option<u64>,
) -> Result<(), String> {
    match expire_ms {
        Some(at) => put(overlay, batch, CfName::RawTtl, key.clone(), raw_ttl::encode_expiry(at)),
        None => clear_raw_expiry(engine, overlay, batch, &key)?,
    }
    put(overlay, batch, CfName::Raw, key, value);
    Ok(())
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

    /// Applies `reqs` as one command in one batch; returns the batch's ops per CF touched.
    fn apply_write(engine: &SimEngine, reqs: Vec<Request>) -> Vec<CfName> {
        let (mut overlay, mut batch, mut region) = (Overlay::default(), WriteBatch::new(), Region::default());
        let cmd = RaftCmd { region_id: 0, epoch: Default::default(), body: CmdBody::Write(reqs) };
        assert!(matches!(apply_cmd(engine, &mut overlay, &mut batch, &mut region, cmd), Ok(Ok(CmdResult::Write(_)))));
        let cfs = batch.ops().iter().map(|op| op.cf()).collect();
        engine.write(batch, WriteOptions::SYNC).unwrap();
        cfs
    }

    fn raw_put(key: &[u8], expire_ms: Option<u64>) -> Request {
        Request::RawPut { key: key.to_vec(), value: b"v".to_vec(), expire_ms }
    }

    #[test]
    fn raw_writes_touch_the_expiry_cf_only_for_keys_with_an_expiry() {
        let engine = SimEngine::new();
        // No expiry anywhere: a plain put and a delete write the value CF alone.
        assert_eq!(apply_write(&engine, vec![raw_put(b"k", None)]), vec![CfName::Raw]);
        assert_eq!(apply_write(&engine, vec![Request::RawDelete { key: b"k".to_vec() }]), vec![CfName::Raw]);
        // A put with TTL writes both; a later plain put removes the expiry it finds.
        assert_eq!(apply_write(&engine, vec![raw_put(b"k", Some(9))]), vec![CfName::RawTtl, CfName::Raw]);
        assert_eq!(engine.get(CfName::RawTtl, b"k").unwrap(), Some(encode_expiry(9)));
        assert_eq!(apply_write(&engine, vec![raw_put(b"k", None)]), vec![CfName::RawTtl, CfName::Raw]);
        assert_eq!(engine.get(CfName::RawTtl, b"k").unwrap(), None);
        assert_eq!(engine.get(CfName::Raw, b"k").unwrap(), Some(b"v".to_vec()));
        // Within one batch the read sees the earlier requests (through the overlay): a TTL put
        // then a plain put leave no expiry; a TTL put then a delete leave nothing.
        apply_write(&engine, vec![raw_put(b"j", Some(9)), raw_put(b"j", None)]);
        assert_eq!(engine.get(CfName::RawTtl, b"j").unwrap(), None);
        apply_write(&engine, vec![raw_put(b"i", Some(9)), Request::RawDelete { key: b"i".to_vec() }]);
        assert_eq!(engine.get(CfName::RawTtl, b"i").unwrap(), None);
        assert_eq!(engine.get(CfName::Raw, b"i").unwrap(), None);
        // A key with an expiry: the delete removes both.
        apply_write(&engine, vec![raw_put(b"h", Some(9))]);
        assert_eq!(
            apply_write(&engine, vec![Request::RawDelete { key: b"h".to_vec() }]),
            vec![CfName::RawTtl, CfName::Raw]
        );
        assert_eq!(engine.get(CfName::RawTtl, b"h").unwrap(), None);
    }

    #[test]
    fn the_purge_deletes_a_key_only_if_it_is_still_expired() {
        let engine = SimEngine::new();
        apply_write(&engine, vec![raw_put(b"a", Some(100)), raw_put(b"b", Some(100)), raw_put(b"c", None)]);
        let purge = |key: &[u8], now_ms| Request::RawDeleteExpired { key: key.to_vec(), now_ms };
        // Not yet expired at 99, never expiring, or absent: nothing is written.
        assert_eq!(apply_write(&engine, vec![purge(b"a", 99), purge(b"c", 1_000), purge(b"z", 1_000)]), vec![]);
        // A write renewed b's TTL after the purge found it expired: b stays (the renewal is in
        // the same batch, ahead of the purge, so the overlay must answer the read).
        apply_write(&engine, vec![raw_put(b"b", Some(500)), purge(b"b", 100), purge(b"a", 100)]);
        assert_eq!(engine.get(CfName::Raw, b"b").unwrap(), Some(b"v".to_vec()));
        assert_eq!(engine.get(CfName::RawTtl, b"b").unwrap(), Some(encode_expiry(500)));
        // a was expired at 100: value and expiry are gone.
        assert_eq!(engine.get(CfName::Raw, b"a").unwrap(), None);
        assert_eq!(engine.get(CfName::RawTtl, b"a").unwrap(), None);
        assert_eq!(engine.get(CfName::Raw, b"c").unwrap(), Some(b"v".to_vec()));
    }
}
