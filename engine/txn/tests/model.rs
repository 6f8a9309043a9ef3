//! Model-based test: random single-node sequences of transactional commands run through
//! `TxnService::execute` on a `SimEngine` (the collected writes applied directly, no raft)
//! and through a small reference MVCC model — maps of locks, commits and rollbacks with
//! none of the storage encoding. After every command the answers must agree, and the
//! engine's decoded lock / write / default CFs must equal the model's state.
//!
//! Timestamps come from a tiny range on purpose, so commit_ts collides with other
//! transactions' start_ts (overlapped rollbacks), commits race rollbacks, prewrites arrive
//! after their transaction was rolled back, and reads land on every side of every lock.
//!
//! `PROPTEST_CASES` overrides the case count (default 1500).

use keel_raftstore::cmd::Request;
use keel_storage::{CfName, Engine, SimEngine, Snapshot, WriteBatch, WriteOptions};
use keel_txn::mvcc::{Lock, LockKind, Write, WriteKind};
use keel_txn::{ConcurrencyManager, TxnService};
use keel_types::error::{KeyError, LockInfo};
use keel_types::keys::{decode_bytes, split_versioned_key};
use keel_types::proto::store::StoreError;
use keel_types::proto::txn::{
    LockedRead, Mutation, MutationOp, RollbackReason, SecondaryLocksStatus, TxnCommand, TxnResponse, TxnStatus,
};
use keel_types::{Region, Timestamp};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

type Key = Vec<u8>;

const KEYS: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];
/// Node clock for commands whose current_ts is zero.
const NODE_NOW_MS: u64 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Val {
    Put(Vec<u8>),
    Del,
    Lock,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MLock {
    start: u64,
    primary: Key,
    val: Val,
    ttl: u64,
    min_commit: u64,
    async_commit: bool,
    secondaries: Vec<Key>,
    txn_size: u64,
}

impl MLock {
    fn info(&self, key: &[u8]) -> LockInfo {
        LockInfo {
            key: key.to_vec(),
            primary: self.primary.clone(),
            start_ts: Timestamp(self.start),
            ttl_ms: self.ttl,
            min_commit_ts: Timestamp(self.min_commit),
            secondaries: self.secondaries.clone(),
            use_async_commit: self.async_commit,
        }
    }

    fn expired(&self, now_ms: u64) -> bool {
        Timestamp(self.start).physical_ms() + self.ttl < now_ms
    }

    fn blocks(&self, ts: u64) -> bool {
        self.val != Val::Lock && self.start <= ts && self.min_commit <= ts
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MCommit {
    start: u64,
    val: Val,
}

enum Rec {
    Committed(u64),
    RolledBack,
    None,
}

/// The reference: what the transactional state means, with no storage layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    locks: BTreeMap<Key, MLock>,
    commits: BTreeMap<Key, BTreeMap<u64, MCommit>>,
    rollbacks: BTreeSet<(Key, u64)>,
}

type Answer = Result<TxnResponse, KeyError>;

struct ModelNode {
    state: Model,
    max_ts: u64,
}

impl Model {
    fn record(&self, key: &[u8], start: u64) -> Rec {
        if let Some((c, _)) = self.commits.get(key).and_then(|m| m.iter().find(|(_, w)| w.start == start)) {
            return Rec::Committed(*c);
        }
        if self.rollbacks.contains(&(key.to_vec(), start)) {
            return Rec::RolledBack;
        }
        Rec::None
    }

    fn visible(&self, key: &[u8], ts: u64) -> Option<Vec<u8>> {
        let commits = self.commits.get(key)?;
        for (_, w) in commits.range(..=ts).rev() {
            match &w.val {
                Val::Put(v) => return Some(v.clone()),
                Val::Del => return None,
                Val::Lock => {}
            }
        }
        None
    }

    fn own_lock(&self, key: &[u8], start: u64) -> Option<MLock> {
        self.locks.get(key).filter(|l| l.start == start).cloned()
    }

    fn rollback_key(&mut self, key: &[u8], start: u64) -> Result<(), KeyError> {
        if self.own_lock(key, start).is_some() {
            self.locks.remove(key);
            self.rollbacks.insert((key.to_vec(), start));
            return Ok(());
        }
        match self.record(key, start) {
            Rec::Committed(c) => {
                Err(KeyError::Committed { start_ts: Timestamp(start), commit_ts: Timestamp(c), key: key.to_vec() })
            }
            Rec::RolledBack => Ok(()),
            Rec::None => {
                self.rollbacks.insert((key.to_vec(), start));
                Ok(())
            }
        }
    }

    fn commit_key(&mut self, key: &[u8], start: u64, commit: u64) -> Result<(), KeyError> {
        if let Some(lock) = self.own_lock(key, start) {
            if commit < lock.min_commit {
                return Err(KeyError::CommitTsExpired {
                    start_ts: Timestamp(start),
                    commit_ts: Timestamp(commit),
                    key: key.to_vec(),
                    min_commit_ts: Timestamp(lock.min_commit),
                });
            }
            self.locks.remove(key);
            self.commits.entry(key.to_vec()).or_default().insert(commit, MCommit { start, val: lock.val });
            return Ok(());
        }
        match self.record(key, start) {
            Rec::Committed(_) => Ok(()),
            Rec::RolledBack => Err(KeyError::RolledBack { start_ts: Timestamp(start) }),
            Rec::None => Err(KeyError::TxnNotFound { start_ts: Timestamp(start), primary: key.to_vec() }),
        }
    }

    fn gc(&mut self, sp: u64) {
        for (key, commits) in self.commits.iter_mut() {
            let mut kept = None;
            let mut passed = false;
            let below: Vec<u64> = commits.range(..=sp).rev().map(|(c, _)| *c).collect();
            for c in below {
                let val = commits[&c].val.clone();
                let keep = !passed && matches!(val, Val::Put(_));
                if matches!(val, Val::Put(_) | Val::Del) {
                    passed = true;
                }
                if keep {
                    kept = Some(c);
                } else {
                    commits.remove(&c);
                }
            }
            // Rollbacks at or below the safe point go, unless recorded on the kept put.
            let gone: Vec<u64> = self
                .rollbacks
                .iter()
                .filter(|(k, s)| k == key && *s <= sp && Some(*s) != kept)
                .map(|(_, s)| *s)
                .collect();
            for s in gone {
                self.rollbacks.remove(&(key.clone(), s));
            }
        }
        // Rollbacks of keys without any commit.
        let commits = &self.commits;
        self.rollbacks.retain(|(k, s)| *s > sp || commits.get(k).is_some_and(|m| m.contains_key(s)));
        self.commits.retain(|_, m| !m.is_empty());
    }
}

impl ModelNode {
    fn bump(&mut self, ts: u64) {
        if ts != u64::MAX {
            self.max_ts = self.max_ts.max(ts);
        }
    }

    /// Runs `cmd` on a copy of the state and keeps it only on success (commands are atomic).
    fn run(&mut self, cmd: &TxnCommand) -> Answer {
        let mut m = self.state.clone();
        let out = self.apply(&mut m, cmd);
        if out.is_ok() {
            self.state = m;
        }
        out
    }

    fn read_key(&self, m: &Model, key: &[u8], ts: u64) -> Result<Option<Vec<u8>>, LockInfo> {
        match m.locks.get(key) {
            Some(l) if l.blocks(ts) => Err(l.info(key)),
            _ => Ok(m.visible(key, ts)),
        }
    }

    fn apply(&mut self, m: &mut Model, cmd: &TxnCommand) -> Answer {
        match cmd {
            TxnCommand::Get { key, start_ts } => {
                self.bump(start_ts.0);
                match self.read_key(m, key, start_ts.0) {
                    Ok(v) => Ok(TxnResponse::Value(v)),
                    Err(lock) => Err(KeyError::Locked { lock }),
                }
            }
            TxnCommand::BatchGet { keys, start_ts, resolved_locks } => {
                self.bump(start_ts.0);
                let (mut pairs, mut locks, mut locked_reads) = (vec![], vec![], vec![]);
                for k in keys {
                    match self.read_key(m, k, start_ts.0) {
                        Ok(Some(v)) => pairs.push((k.clone(), v)),
                        Ok(None) => {}
                        Err(l) if resolved_locks.contains(&l.start_ts) => {
                            pairs.extend(m.visible(k, start_ts.0).map(|v| (k.clone(), v)))
                        }
                        Err(l) => {
                            let written = match &m.locks[k].val {
                                Val::Put(v) => Some(v.clone()),
                                Val::Del | Val::Lock => None,
                            };
                            locked_reads.push(LockedRead { below: m.visible(k, start_ts.0), written });
                            locks.push(l);
                        }
                    }
                }
                Ok(TxnResponse::Pairs { pairs, locks, locked_reads })
            }
            TxnCommand::Scan { start_key, end_key, limit, start_ts, reverse, key_only } => {
                self.bump(start_ts.0);
                let in_range = |k: &Key| k >= start_key && (end_key.is_empty() || k < end_key);
                let mut keys: BTreeSet<Key> = m.locks.keys().filter(|k| in_range(k)).cloned().collect();
                keys.extend(m.commits.keys().filter(|k| in_range(k)).cloned());
                let mut ordered: Vec<Key> = keys.into_iter().collect();
                if *reverse {
                    ordered.reverse();
                }
                let (mut pairs, mut locks) = (vec![], vec![]);
                for k in ordered {
                    match self.read_key(m, &k, start_ts.0) {
                        Ok(Some(v)) => pairs.push((k.clone(), if *key_only { vec![] } else { v })),
                        Ok(None) => continue,
                        Err(l) => locks.push(l),
                    }
                    if pairs.len() + locks.len() >= *limit as usize {
                        break;
                    }
                }
                Ok(TxnResponse::Pairs { pairs, locks, locked_reads: vec![] })
            }
            TxnCommand::ScanLock { max_ts, start_key, end_key, limit } => {
                let locks = m
                    .locks
                    .iter()
                    .filter(|(k, l)| *k >= start_key && (end_key.is_empty() || *k < end_key) && l.start <= max_ts.0)
                    .take(*limit as usize)
                    .map(|(k, l)| l.info(k))
                    .collect();
                Ok(TxnResponse::Locks(locks))
            }
            TxnCommand::Prewrite {
                mutations,
                primary,
                start_ts,
                lock_ttl_ms,
                txn_size,
                min_commit_ts,
                use_async_commit,
                secondaries,
                try_one_pc,
                max_commit_ts,
            } => {
                #[derive(PartialEq)]
                enum Mode {
                    TwoPc(u64),
                    Async(u64),
                    OnePc(u64),
                }
                let s = start_ts.0;
                let base = min_commit_ts.0.max(s + 1);
                let mut mode = Mode::TwoPc(base);
                if *use_async_commit || *try_one_pc {
                    let computed = (self.max_ts + 1).max(base);
                    if !(max_commit_ts.0 != 0 && computed > max_commit_ts.0) {
                        mode = if *try_one_pc { Mode::OnePc(computed) } else { Mode::Async(computed) };
                    }
                }
                if let Mode::OnePc(c) = mode {
                    if mutations.iter().any(|mu| m.own_lock(&mu.key, s).is_some()) {
                        mode = Mode::TwoPc(c);
                    }
                }
                let mut errors = vec![];
                let (mut all_async, mut written, mut max_min, mut committed_at) = (true, false, 0u64, None);
                let mut to_write = vec![];
                for mu in mutations {
                    let k = &mu.key;
                    if let Some(l) = m.locks.get(k) {
                        if l.start == s {
                            all_async &= l.async_commit;
                            max_min = max_min.max(l.min_commit);
                            continue;
                        }
                        errors.push(KeyError::Locked { lock: l.info(k) });
                        continue;
                    }
                    if let Rec::Committed(c) = m.record(k, s) {
                        max_min = max_min.max(c);
                        committed_at = Some(c);
                        continue;
                    }
                    if m.rollbacks.contains(&(k.clone(), s)) {
                        errors.push(KeyError::RolledBack { start_ts: *start_ts });
                        break;
                    }
                    let newest_commit = m.commits.get(k).and_then(|c| c.iter().next_back()).filter(|(c, _)| **c > s);
                    let newest_rb = m.rollbacks.iter().filter(|(rk, rs)| rk == k && *rs > s).map(|(_, rs)| *rs).max();
                    let conflict = match (newest_commit, newest_rb) {
                        (Some((c, _)), Some(r)) if r > *c => Some((r, r)),
                        (Some((c, w)), _) => Some((w.start, *c)),
                        (None, Some(r)) => Some((r, r)),
                        (None, None) => None,
                    };
                    if let Some((cs, cc)) = conflict {
                        errors.push(KeyError::WriteConflict {
                            start_ts: *start_ts,
                            conflict_start_ts: Timestamp(cs),
                            conflict_commit_ts: Timestamp(cc),
                            key: k.clone(),
                            primary: primary.clone(),
                        });
                        break;
                    }
                    if mu.op == MutationOp::Insert && m.visible(k, u64::MAX).is_some() {
                        errors.push(KeyError::AlreadyExist { key: k.clone() });
                        break;
                    }
                    written = true;
                    match mode {
                        Mode::Async(c) => max_min = max_min.max(c),
                        _ => all_async = false,
                    }
                    to_write.push(mu.clone());
                }
                let mut resp_min = 0;
                let mut one_pc = 0;
                if errors.is_empty() {
                    match mode {
                        Mode::OnePc(c) => one_pc = committed_at.unwrap_or(c),
                        Mode::Async(_) if all_async => resp_min = max_min,
                        Mode::TwoPc(_) if all_async && !written => resp_min = max_min,
                        _ => {}
                    }
                    if !(matches!(mode, Mode::OnePc(_)) && committed_at.is_some()) {
                        for mu in to_write {
                            let val = match mu.op {
                                MutationOp::Put | MutationOp::Insert => Val::Put(mu.value.clone()),
                                MutationOp::Delete => Val::Del,
                                MutationOp::Lock => Val::Lock,
                            };
                            match mode {
                                Mode::OnePc(c) => {
                                    m.commits.entry(mu.key.clone()).or_default().insert(c, MCommit { start: s, val });
                                }
                                Mode::TwoPc(min) | Mode::Async(min) => {
                                    let is_async = matches!(mode, Mode::Async(_));
                                    let lock = MLock {
                                        start: s,
                                        primary: primary.clone(),
                                        val,
                                        ttl: *lock_ttl_ms,
                                        min_commit: min.max(s + 1),
                                        async_commit: is_async,
                                        secondaries: if is_async && mu.key == *primary {
                                            secondaries.clone()
                                        } else {
                                            vec![]
                                        },
                                        txn_size: *txn_size,
                                    };
                                    m.locks.insert(mu.key.clone(), lock);
                                }
                            }
                        }
                    }
                }
                if !*use_async_commit {
                    resp_min = 0;
                }
                Ok(TxnResponse::Prewrite {
                    errors,
                    min_commit_ts: Timestamp(resp_min),
                    one_pc_commit_ts: Timestamp(one_pc),
                })
            }
            TxnCommand::Commit { keys, start_ts, commit_ts } => {
                for k in dedup(keys) {
                    m.commit_key(&k, start_ts.0, commit_ts.0)?;
                }
                Ok(TxnResponse::Done)
            }
            TxnCommand::BatchRollback { keys, start_ts } => {
                for k in dedup(keys) {
                    m.rollback_key(&k, start_ts.0)?;
                }
                Ok(TxnResponse::Done)
            }
            TxnCommand::Cleanup { key, start_ts, current_ts } => {
                let s = start_ts.0;
                if let Some(l) = m.own_lock(key, s) {
                    if current_ts.0 != 0 && !l.expired(current_ts.physical_ms()) {
                        return Err(KeyError::Locked { lock: l.info(key) });
                    }
                    m.rollback_key(key, s)?;
                    return Ok(TxnResponse::Cleanup(None));
                }
                match m.record(key, s) {
                    Rec::Committed(c) => Ok(TxnResponse::Cleanup(Some(Timestamp(c)))),
                    _ => {
                        m.rollbacks.insert((key.clone(), s));
                        Ok(TxnResponse::Cleanup(None))
                    }
                }
            }
            TxnCommand::CheckTxnStatus {
                primary,
                lock_ts,
                caller_start_ts,
                current_ts,
                rollback_if_not_exist,
                force_sync_commit,
            } => {
                self.bump(caller_start_ts.0);
                let now = if current_ts.0 == 0 { NODE_NOW_MS } else { current_ts.physical_ms() };
                let s = lock_ts.0;
                if let Some(mut l) = m.own_lock(primary, s) {
                    if l.async_commit && !force_sync_commit {
                        return Ok(TxnResponse::TxnStatus(TxnStatus::Locked {
                            lock: l.info(primary),
                            min_commit_ts_pushed: false,
                        }));
                    }
                    if l.expired(now) {
                        m.rollback_key(primary, s)?;
                        return Ok(TxnResponse::TxnStatus(TxnStatus::RolledBack {
                            reason: RollbackReason::TtlExpired,
                        }));
                    }
                    let c = caller_start_ts.0;
                    let pushed = c != 0 && c != u64::MAX && l.min_commit <= c;
                    if pushed {
                        l.min_commit = (c + 1).max(current_ts.0);
                        m.locks.insert(primary.clone(), l.clone());
                    }
                    return Ok(TxnResponse::TxnStatus(TxnStatus::Locked {
                        lock: l.info(primary),
                        min_commit_ts_pushed: pushed,
                    }));
                }
                match m.record(primary, s) {
                    Rec::Committed(c) => Ok(TxnResponse::TxnStatus(TxnStatus::Committed { commit_ts: Timestamp(c) })),
                    Rec::RolledBack => {
                        Ok(TxnResponse::TxnStatus(TxnStatus::RolledBack { reason: RollbackReason::AlreadyRolledBack }))
                    }
                    Rec::None if *rollback_if_not_exist => {
                        m.rollbacks.insert((primary.clone(), s));
                        Ok(TxnResponse::TxnStatus(TxnStatus::RolledBack { reason: RollbackReason::LockNotExist }))
                    }
                    Rec::None => Err(KeyError::TxnNotFound { start_ts: *lock_ts, primary: primary.clone() }),
                }
            }
            TxnCommand::CheckSecondaryLocks { keys, start_ts } => {
                let s = start_ts.0;
                let mut locks = vec![];
                for k in dedup(keys) {
                    if let Some(l) = m.own_lock(&k, s) {
                        locks.push(l.info(&k));
                        continue;
                    }
                    let status = match m.record(&k, s) {
                        Rec::Committed(c) => SecondaryLocksStatus::Committed(Timestamp(c)),
                        Rec::RolledBack => SecondaryLocksStatus::RolledBack,
                        Rec::None => {
                            m.rollbacks.insert((k.clone(), s));
                            SecondaryLocksStatus::RolledBack
                        }
                    };
                    return Ok(TxnResponse::SecondaryLocks(status));
                }
                Ok(TxnResponse::SecondaryLocks(SecondaryLocksStatus::Locked(locks)))
            }
            TxnCommand::ResolveLock { start_ts, commit_ts, keys } => {
                let keys: Vec<Key> = if keys.is_empty() {
                    m.locks.iter().filter(|(_, l)| l.start == start_ts.0).map(|(k, _)| k.clone()).collect()
                } else {
                    dedup(keys)
                };
                for k in keys {
                    if commit_ts.0 == 0 {
                        m.rollback_key(&k, start_ts.0)?;
                    } else {
                        m.commit_key(&k, start_ts.0, commit_ts.0)?;
                    }
                }
                Ok(TxnResponse::Done)
            }
            TxnCommand::TxnHeartBeat { primary, start_ts, advise_ttl_ms } => match m.own_lock(primary, start_ts.0) {
                Some(mut l) => {
                    if *advise_ttl_ms > l.ttl {
                        l.ttl = *advise_ttl_ms;
                        m.locks.insert(primary.clone(), l.clone());
                    }
                    Ok(TxnResponse::HeartBeat { lock_ttl_ms: l.ttl })
                }
                None => Err(KeyError::TxnNotFound { start_ts: *start_ts, primary: primary.clone() }),
            },
            TxnCommand::Gc { safe_point } => {
                m.gc(safe_point.0);
                Ok(TxnResponse::Gc { deleted: 0, more: false })
            }
            TxnCommand::DeleteRange { start_key, end_key } => {
                let in_range = |k: &Key| k >= start_key && (end_key.is_empty() || k < end_key);
                m.locks.retain(|k, _| !in_range(k));
                m.commits.retain(|k, _| !in_range(k));
                m.rollbacks.retain(|(k, _)| !in_range(k));
                Ok(TxnResponse::Done)
            }
        }
    }
}

fn dedup(keys: &[Key]) -> Vec<Key> {
    let mut seen = BTreeSet::new();
    keys.iter().filter(|k| seen.insert((*k).clone())).cloned().collect()
}

/// The engine's transactional CFs decoded into the model's shape.
fn decode_state(engine: &SimEngine) -> Model {
    let snap: Box<dyn Snapshot> = engine.snapshot();
    let mut m = Model::default();
    let mut referenced = BTreeSet::new();
    let value_of = |key: &[u8], start: u64, short: &Option<Vec<u8>>| -> Vec<u8> {
        short.clone().unwrap_or_else(|| {
            snap.get(CfName::Default, &keel_types::keys::versioned_key(key, Timestamp(start)))
                .unwrap()
                .expect("long value present")
        })
    };
    for (k, v) in snap.scan(CfName::Lock, b"", None, false, usize::MAX).unwrap() {
        let (key, _) = decode_bytes(&k).unwrap();
        let l = Lock::from_bytes(&v).unwrap();
        let val = match l.kind {
            LockKind::Put => {
                if l.short_value.is_none() {
                    referenced.insert((key.clone(), l.start_ts.0));
                }
                Val::Put(value_of(&key, l.start_ts.0, &l.short_value))
            }
            LockKind::Delete => Val::Del,
            LockKind::Lock => Val::Lock,
        };
        let lock = MLock {
            start: l.start_ts.0,
            primary: l.primary,
            val,
            ttl: l.ttl_ms,
            min_commit: l.min_commit_ts.0,
            async_commit: l.use_async_commit,
            secondaries: l.secondaries,
            txn_size: l.txn_size,
        };
        m.locks.insert(key, lock);
    }
    for (k, v) in snap.scan(CfName::Write, b"", None, false, usize::MAX).unwrap() {
        let (key, ts) = split_versioned_key(&k).unwrap();
        let w = Write::from_bytes(&v).unwrap();
        if w.kind == WriteKind::Rollback {
            assert_eq!(w.start_ts, ts, "rollback stored at its start_ts");
            m.rollbacks.insert((key, ts.0));
            continue;
        }
        if w.overlapped_rollback {
            m.rollbacks.insert((key.clone(), ts.0));
        }
        let val = match w.kind {
            WriteKind::Put => {
                if w.short_value.is_none() {
                    referenced.insert((key.clone(), w.start_ts.0));
                }
                Val::Put(value_of(&key, w.start_ts.0, &w.short_value))
            }
            WriteKind::Delete => Val::Del,
            _ => Val::Lock,
        };
        m.commits.entry(key).or_default().insert(ts.0, MCommit { start: w.start_ts.0, val });
    }
    // No orphaned long values.
    for (k, _) in snap.scan(CfName::Default, b"", None, false, usize::MAX).unwrap() {
        let (key, ts) = split_versioned_key(&k).unwrap();
        assert!(referenced.contains(&(key.clone(), ts.0)), "orphaned default-CF value {key:?}@{ts}");
    }
    m
}

fn apply(engine: &SimEngine, requests: Vec<Request>) {
    let mut batch = WriteBatch::new();
    for r in requests {
        match r {
            Request::Put { cf, key, value } => batch.put(cf, &key, &value),
            Request::Delete { cf, key } => batch.delete(cf, &key),
            Request::DeleteRange { cf, start, end } if end.is_empty() => batch.delete_from(cf, &start),
            Request::DeleteRange { cf, start, end } => batch.delete_range(cf, &start, &end),
            other => panic!("txn never proposes {other:?}"),
        }
    }
    engine.write(batch, WriteOptions::NO_SYNC).unwrap();
}

// ---- generation ----

fn key() -> impl Strategy<Value = Key> {
    (0..KEYS.len()).prop_map(|i| KEYS[i].to_vec())
}

fn keys() -> impl Strategy<Value = Vec<Key>> {
    proptest::collection::vec(key(), 1..4)
}

/// Start timestamps from a small pool (so commands meet the same transactions); other
/// timestamps from the same small range (so they collide with start timestamps).
fn start() -> impl Strategy<Value = u64> {
    (1u64..=12).prop_map(|i| i * 2)
}

fn ts() -> impl Strategy<Value = u64> {
    1u64..=30
}

fn now_ts() -> impl Strategy<Value = Timestamp> {
    prop_oneof![Just(Timestamp::ZERO), (0u64..4).prop_map(|ms| Timestamp::compose(ms, 0))]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => (0u8..4).prop_map(|b| vec![b]), 1 => (0u8..4).prop_map(|b| vec![b; 300])]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (key(), 0..4u8, value()).prop_map(|(key, op, value)| {
        let op = [MutationOp::Put, MutationOp::Delete, MutationOp::Lock, MutationOp::Insert][op as usize];
        let value = if matches!(op, MutationOp::Put | MutationOp::Insert) { value } else { vec![] };
        Mutation { op, key, value }
    })
}

fn prewrite() -> impl Strategy<Value = TxnCommand> {
    (
        proptest::collection::vec(mutation(), 1..4),
        start(),
        0u64..3,
        prop_oneof![Just(0u64), ts()],
        0..3u8,
        prop_oneof![3 => Just(0u64), 1 => ts()],
    )
        .prop_map(|(muts, s, ttl, min_commit, mode, max_commit)| {
            let mut seen = BTreeSet::new();
            let mutations: Vec<Mutation> = muts.into_iter().filter(|m| seen.insert(m.key.clone())).collect();
            let primary = mutations[0].key.clone();
            let secondaries = mutations[1..].iter().map(|m| m.key.clone()).collect();
            TxnCommand::Prewrite {
                mutations,
                primary,
                start_ts: Timestamp(s),
                lock_ttl_ms: ttl,
                txn_size: seen.len() as u64,
                min_commit_ts: Timestamp(min_commit),
                use_async_commit: mode == 1,
                secondaries: if mode == 1 { secondaries } else { vec![] },
                try_one_pc: mode == 2,
                max_commit_ts: Timestamp(max_commit),
            }
        })
}

fn command() -> impl Strategy<Value = TxnCommand> {
    prop_oneof![
        6 => prewrite(),
        5 => (keys(), start(), ts()).prop_map(|(keys, s, c)| TxnCommand::Commit {
            keys,
            start_ts: Timestamp(s),
            commit_ts: Timestamp(s + 1 + c % 8),
        }),
        2 => (keys(), start()).prop_map(|(keys, s)| TxnCommand::BatchRollback { keys, start_ts: Timestamp(s) }),
        1 => (key(), start(), now_ts()).prop_map(|(key, s, current_ts)| TxnCommand::Cleanup {
            key,
            start_ts: Timestamp(s),
            current_ts
        }),
        3 => (key(), start(), prop_oneof![Just(0u64), ts(), Just(u64::MAX)], now_ts(), any::<bool>(), any::<bool>())
            .prop_map(|(primary, s, caller, current_ts, rollback_if_not_exist, force_sync_commit)| {
                TxnCommand::CheckTxnStatus {
                    primary,
                    lock_ts: Timestamp(s),
                    caller_start_ts: Timestamp(caller),
                    current_ts,
                    rollback_if_not_exist,
                    force_sync_commit,
                }
            }),
        2 => (keys(), start()).prop_map(|(keys, s)| TxnCommand::CheckSecondaryLocks { keys, start_ts: Timestamp(s) }),
        2 => (start(), prop_oneof![Just(0u64), 1u64..8], prop_oneof![Just(vec![]), keys()]).prop_map(|(s, c, keys)| {
            TxnCommand::ResolveLock { start_ts: Timestamp(s), commit_ts: Timestamp(if c == 0 { 0 } else { s + c }), keys }
        }),
        1 => (key(), start(), 0u64..5).prop_map(|(primary, s, ttl)| TxnCommand::TxnHeartBeat {
            primary,
            start_ts: Timestamp(s),
            advise_ttl_ms: ttl
        }),
        4 => (key(), prop_oneof![ts(), Just(u64::MAX)]).prop_map(|(key, t)| TxnCommand::Get { key, start_ts: Timestamp(t) }),
        1 => (keys(), ts(), prop_oneof![Just(vec![]), prop::collection::vec(start(), 1..3)]).prop_map(|(keys, t, resolved)| {
            TxnCommand::BatchGet { keys, start_ts: Timestamp(t), resolved_locks: resolved.into_iter().map(Timestamp).collect() }
        }),
        2 => (key(), prop_oneof![Just(vec![]), key()], 1u32..5, ts(), any::<bool>(), any::<bool>()).prop_filter_map(
            "start below end",
            |(start_key, end_key, limit, t, reverse, key_only)| {
                (end_key.is_empty() || start_key < end_key).then_some(TxnCommand::Scan {
                    start_key,
                    end_key,
                    limit,
                    start_ts: Timestamp(t),
                    reverse,
                    key_only,
                })
            }
        ),
        1 => (ts(), 1u32..5).prop_map(|(t, limit)| TxnCommand::ScanLock {
            max_ts: Timestamp(t),
            start_key: vec![],
            end_key: vec![],
            limit
        }),
        1 => ts().prop_map(|sp| TxnCommand::Gc { safe_point: Timestamp(sp) }),
        1 => (key(), prop_oneof![Just(vec![]), key()]).prop_filter_map("start below end", |(start_key, end_key)| {
            (end_key.is_empty() || start_key < end_key).then_some(TxnCommand::DeleteRange { start_key, end_key })
        }),
    ]
}

/// After GC at `sp`, no transaction at or below it may act any more (the GC safe point is
/// below every live transaction): skip commands that would.
fn allowed_after_gc(cmd: &TxnCommand, sp: u64) -> bool {
    match cmd {
        TxnCommand::Prewrite { start_ts, .. } => start_ts.0 > sp,
        TxnCommand::Commit { start_ts, commit_ts, .. } => start_ts.0 > sp && commit_ts.0 > sp,
        TxnCommand::ResolveLock { start_ts, .. }
        | TxnCommand::BatchRollback { start_ts, .. }
        | TxnCommand::CheckSecondaryLocks { start_ts, .. }
        | TxnCommand::Cleanup { start_ts, .. }
        | TxnCommand::TxnHeartBeat { start_ts, .. } => start_ts.0 > sp,
        TxnCommand::CheckTxnStatus { lock_ts, .. } => lock_ts.0 > sp,
        TxnCommand::Gc { safe_point } => safe_point.0 >= sp,
        _ => true,
    }
}

fn run_case(cmds: Vec<TxnCommand>) -> Result<(), TestCaseError> {
    let engine = SimEngine::new();
    let service = TxnService::new(ConcurrencyManager::new(Timestamp(1)));
    let region = Region::default();
    let mut model = ModelNode { state: Model::default(), max_ts: 1 };
    let mut sp = 0;
    for (i, cmd) in cmds.iter().enumerate() {
        if !allowed_after_gc(cmd, sp) {
            continue;
        }
        if let TxnCommand::Gc { safe_point } = cmd {
            sp = safe_point.0;
        }
        keel_txn::validate(cmd).map_err(|e| TestCaseError::fail(format!("generated invalid {cmd:?}: {e}")))?;
        let got: Answer = match service.check_memory_locks(cmd) {
            Ok(Some(r)) => Ok(r),
            Err(StoreError::Key(e)) => Err(e),
            Err(e) => return Err(TestCaseError::fail(format!("{cmd:?}: {e}"))),
            Ok(None) => {
                let snap = engine.snapshot();
                match service.execute(&region, &*snap, cmd, NODE_NOW_MS) {
                    Ok(ex) => {
                        apply(&engine, ex.requests);
                        Ok(ex.response)
                    }
                    Err(StoreError::Key(e)) => Err(e),
                    Err(e) => return Err(TestCaseError::fail(format!("{cmd:?}: {e}"))),
                }
            }
        };
        let got = match got {
            Ok(TxnResponse::Gc { more, .. }) => Ok(TxnResponse::Gc { deleted: 0, more }),
            other => other,
        };
        let want = model.run(cmd);
        prop_assert_eq!(&got, &want, "step {}: {:?}", i, cmd);
        prop_assert_eq!(service.concurrency_manager().memory_locks(), 0);
        prop_assert_eq!(service.concurrency_manager().max_ts(), Timestamp(model.max_ts), "max_ts after step {}", i);
        let stored = decode_state(&engine);
        prop_assert_eq!(&stored, &model.state, "state after step {}: {:?}", i, cmd);
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1500)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 4096, ..ProptestConfig::default() })]

    #[test]
    fn txn_matches_reference_model(cmds in proptest::collection::vec(command(), 1..60)) {
        run_case(cmds)?;
    }
}

/// A hand-written sequence for the races the random one must also reach: a commit racing a
/// rollback on the primary, and a prewrite arriving after its transaction was rolled back.
#[test]
fn commit_rollback_race_and_late_prewrite() {
    let put = |k: &[u8]| Mutation { op: MutationOp::Put, key: k.to_vec(), value: b"v".to_vec() };
    let pw = |s: u64, muts: Vec<Mutation>| TxnCommand::Prewrite {
        primary: muts[0].key.clone(),
        mutations: muts,
        start_ts: Timestamp(s),
        lock_ttl_ms: 0,
        txn_size: 2,
        min_commit_ts: Timestamp::ZERO,
        use_async_commit: false,
        secondaries: vec![],
        try_one_pc: false,
        max_commit_ts: Timestamp::ZERO,
    };
    let cmds = vec![
        pw(10, vec![put(b"a"), put(b"b")]),
        // A reader finds the primary expired and rolls it back...
        TxnCommand::CheckTxnStatus {
            primary: b"a".to_vec(),
            lock_ts: Timestamp(10),
            caller_start_ts: Timestamp(12),
            current_ts: Timestamp::compose(5, 0),
            rollback_if_not_exist: false,
            force_sync_commit: false,
        },
        // ...so the writer's commit of the primary fails,
        TxnCommand::Commit { keys: vec![b"a".to_vec()], start_ts: Timestamp(10), commit_ts: Timestamp(11) },
        // the secondary is resolved as rolled back,
        TxnCommand::ResolveLock { start_ts: Timestamp(10), commit_ts: Timestamp::ZERO, keys: vec![] },
        // and a duplicated prewrite arriving late cannot resurrect it.
        pw(10, vec![put(b"a"), put(b"b")]),
        TxnCommand::Get { key: b"a".to_vec(), start_ts: Timestamp(30) },
    ];
    run_case(cmds).unwrap();
}
