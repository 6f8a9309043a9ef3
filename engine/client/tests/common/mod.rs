//! A scripted fake keel store for RawClient tests, shared by the loopback and simulator
//! tests.
//!
//! The fake stores share one authoritative view of the regions and one data map, and answer
//! like a keel server: `RegionNotFound` for a region without a peer on the store,
//! `NotLeader` with a hint from followers, `EpochNotMatch` with the current regions for a
//! stale epoch, `KeyNotInRegion` for keys outside the region. Faults are scripted per
//! command kind: an error to answer, or a hang (after which the command still applies, as
//! a real store's would). Every applied write is recorded, so a test can check that an
//! operation reported as failed never took effect.
#![allow(dead_code)]

use keel_types::proto::store::{RawCommand, RawResponse, StoreError, StoreRequest, StoreResponse, StoreResult};
use keel_types::{Peer, Region, RegionEpoch, RegionError, StoreId};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A scripted fault for the next command of one kind.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer this error instead of executing.
    Error(StoreError),
    /// Execute, but only answer after this long.
    Hang(Duration),
}

/// The stores' shared state.
#[derive(Default)]
pub struct Fake {
    /// Authoritative regions and their leaders.
    pub regions: Vec<(Region, Peer)>,
    /// The data.
    pub data: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Scripted faults per command kind, consumed in order.
    pub faults: BTreeMap<&'static str, VecDeque<Fault>>,
    /// Every request: (store, command kind, answer kind).
    pub log: Vec<(StoreId, &'static str, String)>,
    /// Every (key, value) a put, batch put or successful CAS applied.
    pub applied: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Fake {
    pub fn count(&self, kind: &str, answer: &str) -> usize {
        self.log.iter().filter(|(_, k, a)| *k == kind && a.starts_with(answer)).count()
    }

    pub fn answers(&self, answer: &str) -> usize {
        self.log.iter().filter(|(_, _, a)| a.starts_with(answer)).count()
    }

    pub fn script(&mut self, kind: &'static str, faults: impl IntoIterator<Item = Fault>) {
        self.faults.entry(kind).or_default().extend(faults);
    }
}

pub type SharedFake = Arc<Mutex<Fake>>;

pub fn kind(cmd: &RawCommand) -> &'static str {
    match cmd {
        RawCommand::Get { .. } => "get",
        RawCommand::BatchGet { .. } => "batch_get",
        RawCommand::Put { .. } => "put",
        RawCommand::BatchPut { .. } => "batch_put",
        RawCommand::Delete { .. } => "delete",
        RawCommand::BatchDelete { .. } => "batch_delete",
        RawCommand::DeleteRange { .. } => "delete_range",
        RawCommand::Scan { .. } => "scan",
        RawCommand::CompareAndSwap { .. } => "cas",
        RawCommand::GetKeyTtl { .. } => "get_key_ttl",
    }
}

pub fn answer_name(result: &StoreResult) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(StoreError::Region(RegionError::NotLeader { .. })) => "not_leader".into(),
        Err(StoreError::Region(RegionError::EpochNotMatch { .. })) => "epoch_not_match".into(),
        Err(StoreError::Region(RegionError::KeyNotInRegion { .. })) => "key_not_in_region".into(),
        Err(StoreError::Region(RegionError::RegionNotFound { .. })) => "region_not_found".into(),
        Err(err) => format!("error {err}"),
    }
}

/// The keys a command touches, and the range it covers (start, end; empty end: region end).
type Touched<'a> = (Vec<&'a [u8]>, Option<(&'a [u8], &'a [u8])>);

pub fn keys_of(cmd: &RawCommand) -> Touched<'_> {
    match cmd {
        RawCommand::Get { key }
        | RawCommand::GetKeyTtl { key }
        | RawCommand::Put { key, .. }
        | RawCommand::Delete { key }
        | RawCommand::CompareAndSwap { key, .. } => (vec![key], None),
        RawCommand::BatchGet { keys } | RawCommand::BatchDelete { keys } => {
            (keys.iter().map(Vec::as_slice).collect(), None)
        }
        RawCommand::BatchPut { pairs, .. } => (pairs.iter().map(|(k, _)| k.as_slice()).collect(), None),
        RawCommand::DeleteRange { start_key, end_key } | RawCommand::Scan { start_key, end_key, .. } => {
            (Vec::new(), Some((start_key, end_key)))
        }
    }
}

pub fn in_region(region: &Region, cmd: &RawCommand) -> Result<(), Vec<u8>> {
    let (keys, range) = keys_of(cmd);
    for key in keys {
        if !region.contains(key) {
            return Err(key.to_vec());
        }
    }
    if let Some((start, end)) = range {
        if !region.contains(start) {
            return Err(start.to_vec());
        }
        let end_ok = if end.is_empty() { true } else { region.end_key.is_empty() || end <= region.end_key.as_slice() };
        if !end_ok || (!end.is_empty() && end <= start) {
            return Err(end.to_vec());
        }
    }
    Ok(())
}

pub fn execute(fake: &mut Fake, region: &Region, cmd: RawCommand) -> RawResponse {
    let data = &mut fake.data;
    let range_end = |end: Vec<u8>| if end.is_empty() { region.end_key.clone() } else { end };
    let in_range = |k: &[u8], start: &[u8], end: &[u8]| k >= start && (end.is_empty() || k < end);
    match cmd {
        RawCommand::Get { key } => RawResponse::Value(data.get(&key).cloned()),
        RawCommand::BatchGet { keys } => {
            RawResponse::Pairs(keys.into_iter().filter_map(|k| data.get(&k).map(|v| (k, v.clone()))).collect())
        }
        // The fake keeps no expiry: what it holds never expires.
        RawCommand::GetKeyTtl { key } => RawResponse::Ttl(data.get(&key).map(|_| 0)),
        RawCommand::Put { key, value, .. } => {
            fake.applied.push((key.clone(), value.clone()));
            data.insert(key, value);
            RawResponse::Done
        }
        RawCommand::BatchPut { pairs, .. } => {
            fake.applied.extend(pairs.iter().cloned());
            data.extend(pairs);
            RawResponse::Done
        }
        RawCommand::Delete { key } => {
            data.remove(&key);
            RawResponse::Done
        }
        RawCommand::BatchDelete { keys } => {
            for k in keys {
                data.remove(&k);
            }
            RawResponse::Done
        }
        RawCommand::DeleteRange { start_key, end_key } => {
            let end = range_end(end_key);
            data.retain(|k, _| !in_range(k, &start_key, &end));
            RawResponse::Done
        }
        RawCommand::Scan { start_key, end_key, limit, reverse, key_only } => {
            let end = range_end(end_key);
            let mut pairs: Vec<_> = data.iter().filter(|(k, _)| in_range(k, &start_key, &end)).collect();
            if reverse {
                pairs.reverse();
            }
            RawResponse::Pairs(
                pairs
                    .into_iter()
                    .take(limit as usize)
                    .map(|(k, v)| (k.clone(), if key_only { Vec::new() } else { v.clone() }))
                    .collect(),
            )
        }
        RawCommand::CompareAndSwap { key, expected, value, .. } => {
            let previous = data.get(&key).cloned();
            let succeeded = previous == expected;
            if succeeded {
                fake.applied.push((key.clone(), value.clone()));
                data.insert(key, value);
            }
            RawResponse::Cas { succeeded, previous }
        }
    }
}

/// Answers one request on store `store` like a keel server would.
pub fn decide(fake: &mut Fake, store: StoreId, ctx_region: u64, epoch: RegionEpoch, cmd: RawCommand) -> StoreResult {
    let Some((region, leader)) = fake.regions.iter().find(|(r, _)| r.id == ctx_region).cloned() else {
        return Err(RegionError::RegionNotFound { region_id: ctx_region }.into());
    };
    if region.peer_on_store(store).is_none() {
        return Err(RegionError::RegionNotFound { region_id: ctx_region }.into());
    }
    if leader.store_id != store {
        return Err(RegionError::NotLeader { region_id: region.id, leader: Some(leader) }.into());
    }
    if epoch != region.epoch {
        let current_regions = fake.regions.iter().map(|(r, _)| r.clone()).collect();
        return Err(RegionError::EpochNotMatch { current_regions }.into());
    }
    if let Err(key) = in_region(&region, &cmd) {
        return Err(RegionError::KeyNotInRegion {
            key,
            region_id: region.id,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
        }
        .into());
    }
    Ok(StoreResponse::Raw(execute(fake, &region, cmd)))
}

pub async fn handle(fake: SharedFake, store: StoreId, req: StoreRequest) -> StoreResult {
    let StoreRequest::Raw { ctx, cmd } = req else {
        return Err(StoreError::Unavailable("fake store serves raw commands only".into()));
    };
    let kind = kind(&cmd);
    let (result, hang) = {
        let mut fake = fake.lock().unwrap();
        let fault = fake.faults.get_mut(kind).and_then(VecDeque::pop_front);
        let (result, hang) = match fault {
            Some(Fault::Error(err)) => (Err(err), None),
            Some(Fault::Hang(after)) => (decide(&mut fake, store, ctx.region_id, ctx.region_epoch, cmd), Some(after)),
            None => (decide(&mut fake, store, ctx.region_id, ctx.region_epoch, cmd), None),
        };
        let answer = if hang.is_some() { format!("hang {}", answer_name(&result)) } else { answer_name(&result) };
        fake.log.push((store, kind, answer));
        (result, hang)
    };
    if let Some(after) = hang {
        tokio::time::sleep(after).await;
    }
    result
}
