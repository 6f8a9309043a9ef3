//! Translations between keel's vocabulary (`keel-types`) and kvproto messages, shared by the
//! PD and storage-node adapters.
//!
//! Key encoding: keel keeps region boundaries as raw user keys. TiKV's transactional clients
//! expect them memcomparable-encoded (the form TiKV stores transactional keys in), raw
//! clients as they are; every function that emits boundaries takes `encoded`.

use crate::{errorpb, kvrpcpb, metapb};
use keel_types::error::{KeyError, LockInfo, RegionError};
use keel_types::keys::{decode_bytes, encode_bytes};
use keel_types::proto::store::Context;
use keel_types::{Peer, PeerRole, Region, RegionEpoch, Timestamp};

/// A region boundary as a client expects it: memcomparable-encoded when `encoded`, except the
/// empty key (the key space's open end), which stays empty in both forms.
pub fn boundary_to_pb(key: &[u8], encoded: bool) -> Vec<u8> {
    if encoded && !key.is_empty() {
        encode_bytes(key)
    } else {
        key.to_vec()
    }
}

/// Reads a key a client sent to PD: `Some(user key)` with `true` when it is a complete
/// memcomparable encoding (a transactional client's), else the key as it is with `false`
/// (a raw client's). A raw key that happens to be a valid encoding is misread; raw keys of a
/// multiple of 9 bytes whose every 9th byte is 0xf7..=0xff are that rare case.
pub fn key_from_pd_query(key: &[u8]) -> (Vec<u8>, bool) {
    match decode_bytes(key) {
        Some((user, used)) if !key.is_empty() && used == key.len() => (user, true),
        _ => (key.to_vec(), false),
    }
}

/// keel peer → metapb peer.
pub fn peer_to_pb(peer: &Peer) -> metapb::Peer {
    let role = match peer.role {
        PeerRole::Voter => metapb::PeerRole::Voter,
        PeerRole::Learner => metapb::PeerRole::Learner,
    };
    metapb::Peer { id: peer.id, store_id: peer.store_id, role: role as i32, is_witness: false }
}

/// metapb peer → keel peer (joint-consensus roles count as voters).
pub fn peer_from_pb(peer: &metapb::Peer) -> Peer {
    let role = if peer.role == metapb::PeerRole::Learner as i32 { PeerRole::Learner } else { PeerRole::Voter };
    Peer { id: peer.id, store_id: peer.store_id, role }
}

/// keel region → metapb region, boundaries in the client's encoding.
pub fn region_to_pb(region: &Region, encoded: bool) -> metapb::Region {
    metapb::Region {
        id: region.id,
        start_key: boundary_to_pb(&region.start_key, encoded),
        end_key: boundary_to_pb(&region.end_key, encoded),
        region_epoch: Some(metapb::RegionEpoch { conf_ver: region.epoch.conf_ver, version: region.epoch.version }),
        peers: region.peers.iter().map(peer_to_pb).collect(),
    }
}

/// A kvrpcpb request context → keel's routing context. `None` (a request without context)
/// is bad input.
pub fn context_from_pb(ctx: Option<kvrpcpb::Context>) -> Result<Context, String> {
    let ctx = ctx.ok_or("request has no context (region id, epoch, peer)")?;
    let epoch = ctx.region_epoch.unwrap_or_default();
    Ok(Context {
        region_id: ctx.region_id,
        region_epoch: RegionEpoch { conf_ver: epoch.conf_ver, version: epoch.version },
        peer: ctx.peer.as_ref().map(peer_from_pb),
    })
}

/// keel region error → errorpb, region boundaries in the client's encoding.
pub fn region_error_to_pb(err: &RegionError, encoded: bool) -> errorpb::Error {
    let mut pb = errorpb::Error { message: err.to_string(), ..Default::default() };
    match err {
        RegionError::NotLeader { region_id, leader } => {
            pb.not_leader = Some(errorpb::NotLeader { region_id: *region_id, leader: leader.as_ref().map(peer_to_pb) })
        }
        RegionError::EpochNotMatch { current_regions } => {
            pb.epoch_not_match = Some(errorpb::EpochNotMatch {
                current_regions: current_regions.iter().map(|r| region_to_pb(r, encoded)).collect(),
            })
        }
        RegionError::RegionNotFound { region_id } => {
            pb.region_not_found = Some(errorpb::RegionNotFound { region_id: *region_id })
        }
        RegionError::KeyNotInRegion { key, region_id, start_key, end_key } => {
            pb.key_not_in_region = Some(errorpb::KeyNotInRegion {
                key: key.clone(),
                region_id: *region_id,
                start_key: boundary_to_pb(start_key, encoded),
                end_key: boundary_to_pb(end_key, encoded),
            })
        }
        RegionError::ServerIsBusy { reason } => {
            pb.server_is_busy = Some(errorpb::ServerIsBusy { reason: reason.clone(), backoff_ms: 0 })
        }
        RegionError::StaleCommand => pb.stale_command = Some(errorpb::StaleCommand {}),
        RegionError::RaftEntryTooLarge { region_id, entry_size } => {
            pb.raft_entry_too_large =
                Some(errorpb::RaftEntryTooLarge { region_id: *region_id, entry_size: *entry_size })
        }
        // A region error keel may add later: a message-only errorpb makes clients refresh
        // their routing and retry.
        _ => {}
    }
    pb
}

/// A region error with only a message: clients drop their cached route and retry. For
/// failures that certainly did not take effect (the store is stopping, PD unreachable).
pub fn retryable_region_error(message: String) -> errorpb::Error {
    errorpb::Error { message, ..Default::default() }
}

/// keel lock → kvrpcpb lock.
pub fn lock_to_pb(lock: &LockInfo) -> kvrpcpb::LockInfo {
    kvrpcpb::LockInfo {
        primary_lock: lock.primary.clone(),
        lock_version: lock.start_ts.0,
        key: lock.key.clone(),
        lock_ttl: lock.ttl_ms,
        txn_size: 0,
        lock_type: kvrpcpb::Op::Put as i32,
        lock_for_update_ts: 0,
        use_async_commit: lock.use_async_commit,
        min_commit_ts: lock.min_commit_ts.0,
        secondaries: lock.secondaries.clone(),
    }
}

/// keel transactional error → kvrpcpb key error.
pub fn key_error_to_pb(err: &KeyError) -> kvrpcpb::KeyError {
    let mut pb = kvrpcpb::KeyError::default();
    match err {
        KeyError::Locked { lock } => pb.locked = Some(lock_to_pb(lock)),
        KeyError::WriteConflict { start_ts, conflict_start_ts, conflict_commit_ts, key, primary } => {
            pb.conflict = Some(kvrpcpb::WriteConflict {
                start_ts: start_ts.0,
                conflict_ts: conflict_start_ts.0,
                key: key.clone(),
                primary: primary.clone(),
                conflict_commit_ts: conflict_commit_ts.0,
            })
        }
        KeyError::AlreadyExist { key } => pb.already_exist = Some(kvrpcpb::AlreadyExist { key: key.clone() }),
        KeyError::TxnNotFound { start_ts, primary } => {
            pb.txn_not_found = Some(kvrpcpb::TxnNotFound { start_ts: start_ts.0, primary_key: primary.clone() })
        }
        KeyError::CommitTsExpired { start_ts, commit_ts, key, min_commit_ts } => {
            pb.commit_ts_expired = Some(kvrpcpb::CommitTsExpired {
                start_ts: start_ts.0,
                attempted_commit_ts: commit_ts.0,
                key: key.clone(),
                min_commit_ts: min_commit_ts.0,
            })
        }
        // Rolled back / already committed (and anything keel adds later): TiKV reports these
        // as `abort` with a message; the client gives up on the transaction.
        _ => pb.abort = err.to_string(),
    }
    pb
}

/// A TSO timestamp → pdpb's (physical ms, logical) pair.
pub fn timestamp_to_pb(ts: Timestamp) -> crate::pdpb::Timestamp {
    crate::pdpb::Timestamp { physical: ts.physical_ms() as i64, logical: ts.logical() as i64, suffix_bits: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pd_query_keys_are_read_in_the_senders_encoding() {
        assert_eq!(key_from_pd_query(&encode_bytes(b"k1")), (b"k1".to_vec(), true));
        assert_eq!(key_from_pd_query(&encode_bytes(b"")), (vec![], true));
        assert_eq!(key_from_pd_query(b"k1"), (b"k1".to_vec(), false));
        assert_eq!(key_from_pd_query(b""), (vec![], false));
        assert_eq!(key_from_pd_query(b"key000001"), (b"key000001".to_vec(), false));
    }

    #[test]
    fn region_errors_take_errorpb_shape_in_the_clients_encoding() {
        let leader = Peer { id: 5, store_id: 2, role: PeerRole::Voter };
        let pb = region_error_to_pb(&RegionError::NotLeader { region_id: 3, leader: Some(leader) }, false);
        assert_eq!(pb.not_leader, Some(errorpb::NotLeader { region_id: 3, leader: Some(peer_to_pb(&leader)) }));

        let region = Region { id: 3, start_key: b"a".to_vec(), end_key: b"m".to_vec(), ..Default::default() };
        let stale = RegionError::EpochNotMatch { current_regions: vec![region.clone()] };
        let current = region_error_to_pb(&stale, true).epoch_not_match.expect("epoch_not_match").current_regions;
        assert_eq!(current, vec![region_to_pb(&region, true)]);
        assert_eq!(
            (current[0].start_key.clone(), current[0].end_key.clone()),
            (encode_bytes(b"a"), encode_bytes(b"m"))
        );
        let raw = region_error_to_pb(&stale, false).epoch_not_match.expect("epoch_not_match").current_regions;
        assert_eq!(raw[0].start_key, b"a".to_vec());

        let pb = region_error_to_pb(&RegionError::RegionNotFound { region_id: 9 }, false);
        assert_eq!(pb.region_not_found, Some(errorpb::RegionNotFound { region_id: 9 }));

        let outside = RegionError::KeyNotInRegion {
            key: b"z".to_vec(),
            region_id: 3,
            start_key: b"a".to_vec(),
            end_key: b"m".to_vec(),
        };
        let pb = region_error_to_pb(&outside, true).key_not_in_region.expect("key_not_in_region");
        assert_eq!((pb.key, pb.region_id), (b"z".to_vec(), 3));
        assert_eq!((pb.start_key, pb.end_key), (encode_bytes(b"a"), encode_bytes(b"m")));

        let busy = region_error_to_pb(&RegionError::ServerIsBusy { reason: "max_ts".into() }, true);
        assert_eq!(busy.server_is_busy.expect("server_is_busy").reason, "max_ts");
        assert!(busy.message.contains("max_ts"), "{}", busy.message);
    }

    #[test]
    fn key_errors_take_kvrpcpb_shape() {
        let lock = LockInfo {
            key: b"k".to_vec(),
            primary: b"p".to_vec(),
            start_ts: Timestamp(10),
            ttl_ms: 3000,
            min_commit_ts: Timestamp(11),
            secondaries: vec![b"s".to_vec()],
            use_async_commit: true,
        };
        let locked = key_error_to_pb(&KeyError::Locked { lock: lock.clone() }).locked.expect("locked");
        assert_eq!((locked.key, locked.primary_lock, locked.lock_version), (b"k".to_vec(), b"p".to_vec(), 10));
        assert_eq!((locked.lock_ttl, locked.min_commit_ts, locked.use_async_commit), (3000, 11, true));
        assert_eq!(locked.secondaries, vec![b"s".to_vec()]);

        let conflict = KeyError::WriteConflict {
            start_ts: Timestamp(5),
            conflict_start_ts: Timestamp(6),
            conflict_commit_ts: Timestamp(7),
            key: b"k".to_vec(),
            primary: b"p".to_vec(),
        };
        let pb = key_error_to_pb(&conflict).conflict.expect("conflict");
        assert_eq!((pb.start_ts, pb.conflict_ts, pb.conflict_commit_ts), (5, 6, 7));
        assert_eq!((pb.key, pb.primary), (b"k".to_vec(), b"p".to_vec()));

        let pb = key_error_to_pb(&KeyError::AlreadyExist { key: b"k".to_vec() });
        assert_eq!(pb.already_exist, Some(kvrpcpb::AlreadyExist { key: b"k".to_vec() }));

        let expired = KeyError::CommitTsExpired {
            start_ts: Timestamp(5),
            commit_ts: Timestamp(6),
            key: b"k".to_vec(),
            min_commit_ts: Timestamp(8),
        };
        let pb = key_error_to_pb(&expired).commit_ts_expired.expect("commit_ts_expired");
        assert_eq!((pb.start_ts, pb.attempted_commit_ts, pb.min_commit_ts), (5, 6, 8));

        let pb = key_error_to_pb(&KeyError::TxnNotFound { start_ts: Timestamp(5), primary: b"p".to_vec() });
        assert_eq!(pb.txn_not_found, Some(kvrpcpb::TxnNotFound { start_ts: 5, primary_key: b"p".to_vec() }));

        let pb = key_error_to_pb(&KeyError::RolledBack { start_ts: Timestamp(5) });
        assert!(!pb.abort.is_empty() && pb.locked.is_none() && pb.conflict.is_none(), "{pb:?}");
    }

    #[test]
    fn boundaries_keep_the_open_end_empty() {
        let region = Region { id: 7, start_key: b"a".to_vec(), end_key: vec![], ..Default::default() };
        let pb = region_to_pb(&region, true);
        assert_eq!(pb.start_key, encode_bytes(b"a"));
        assert!(pb.end_key.is_empty());
        assert_eq!(region_to_pb(&region, false).start_key, b"a".to_vec());
    }
}
