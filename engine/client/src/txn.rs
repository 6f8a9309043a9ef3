//! The transactional client: Percolator transactions with snapshot isolation over keel's
//! TxnKV protocol (`keel_types::proto::txn`).
//!
//! A [`Transaction`] reads at its `start_ts` (from PD's TSO) and buffers its writes; `commit`
//! runs two-phase commit grouped by region — the primary key's region first (the primary is
//! the smallest key), then the others — takes a commit timestamp from the TSO, commits the
//! primary (the commit point) and then the secondaries. With
//! [`TransactionOptions::async_commit`] the primary lock lists every secondary, every
//! region is prewritten at once, and the transaction is committed as soon as every prewrite
//! succeeded (at the largest `min_commit_ts` the regions answered); with [`TransactionOptions::try_one_pc`] a
//! transaction whose keys all live in one region commits in its single prewrite. The client
//! falls back to plain 2PC whenever a node says so (a zero `min_commit_ts` /
//! `one_pc_commit_ts`).
//!
//! # Locks met on the way
//! A read that finds another transaction's lock asks the lock's primary for the
//! transaction's status (`CheckTxnStatus`, which rolls back an expired primary and pushes a
//! live one's min_commit_ts above the reader), then commits or rolls back the lock
//! (`ResolveLock`), or backs off while the owner is alive. An async-commit primary is
//! decided by its secondaries (`CheckSecondaryLocks`). A prewrite that meets a lock resolves
//! it the same way and retries; a live lock or a write conflict ends the commit with
//! [`ClientError::Conflict`] after rolling the prewritten keys back — unless an earlier
//! attempt of that prewrite got no answer: for async commit and 1PC it may have committed
//! the transaction, so the outcome is then unknown.
//!
//! # Outcomes
//! `commit` returns the commit timestamp, or: [`ClientError::Conflict`] (nothing took
//! effect; retry from `begin`), [`ClientError::Failed`] (nothing took effect),
//! [`ClientError::OutcomeUnknown`] (the commit point's fate is unknown: the primary commit —
//! or, for async commit, a prewrite — got no definite answer; a later read tells).

use crate::error::{ClientError, Result};
use crate::live_txns::{LiveGuard, LiveTxns};
use crate::lock_backoff::LockBackoff;
use crate::pd::PdClient;
use crate::raw::{
    check_batch, check_key, check_limit, check_range, check_value, clip_end, next_start, region_bounds, Kind, KvPair,
    Op, RawClient, RawClientConfig, Target,
};
use keel_types::error::{KeyError, LockInfo};
use keel_types::limits::SCAN_LIMIT_MAX;
use keel_types::planted::{enabled, PlantedBug};
use keel_types::proto::txn::{Mutation, MutationOp, SecondaryLocksStatus, TxnCommand, TxnResponse, TxnStatus};
use keel_types::{Region, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Lock time to live a transaction starts with, on top of the time it has already run.
pub const LOCK_TTL_MS_DEFAULT: u64 = 3_000;
/// Times a commit retries the primary with a newer commit timestamp after a reader pushed
/// the primary's min_commit_ts.
const COMMIT_TS_RETRIES_MAX: u32 = 8;
/// Times a prewrite of one region group resolves the locks it met and tries again.
const PREWRITE_LOCK_RETRIES_MAX: u32 = 3;
/// How stale the timestamp a lock's TTL is judged by may be: resolving a lock needs "now",
/// and a recent timestamp saves a PD round trip per lock at the cost of noticing an expired
/// lock this much later (a lock lives [`LOCK_TTL_MS_DEFAULT`]).
const NOW_TS_AGE_MAX: Duration = Duration::from_millis(100);
/// Decided transactions (start_ts → commit_ts) a client remembers, so the many locks of one
/// decided transaction cost one `CheckTxnStatus`, not one each.
const DECIDED_CACHE_MAX: usize = 4096;

/// How a transaction commits.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TransactionOptions {
    /// Async commit: the transaction is committed once every key is prewritten.
    pub async_commit: bool,
    /// One-phase commit when every key lives in one region.
    pub try_one_pc: bool,
    /// Lock time to live (ms) on top of the time since `begin`.
    pub lock_ttl_ms: u64,
}

impl Default for TransactionOptions {
    fn default() -> Self {
        TransactionOptions { async_commit: false, try_one_pc: false, lock_ttl_ms: LOCK_TTL_MS_DEFAULT }
    }
}

/// Counters of what a [`TransactionClient`] (and its clones) did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TransactionStats {
    /// Transactions committed (read-only ones included).
    pub committed: u64,
    /// Commits that ended in [`ClientError::Conflict`].
    pub conflicts: u64,
    /// Commits whose outcome is unknown.
    pub unknown: u64,
    /// Commits that failed otherwise (nothing applied).
    pub failed: u64,
    /// Locks of other transactions resolved (committed or rolled back by this client).
    pub locks_resolved: u64,
    /// Times a reader or writer backed off from a live lock.
    pub lock_waits: u64,
    /// Commits done in one phase.
    pub one_pc: u64,
    /// Commits done by async commit.
    pub async_commits: u64,
    /// Async-commit / 1PC attempts a node turned into plain 2PC.
    pub fallbacks: u64,
    /// Commits that retried the primary with a newer commit_ts (a reader pushed it).
    pub commit_ts_retries: u64,
}

#[derive(Default)]
struct Counters {
    committed: AtomicU64,
    conflicts: AtomicU64,
    unknown: AtomicU64,
    failed: AtomicU64,
    locks_resolved: AtomicU64,
    lock_waits: AtomicU64,
    one_pc: AtomicU64,
    async_commits: AtomicU64,
    fallbacks: AtomicU64,
    commit_ts_retries: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A transactional client. Cheap to clone; clones share routing, connections, the TSO
/// batcher and the counters.
#[derive(Clone)]
pub struct TransactionClient {
    pub(crate) raw: RawClient,
    counters: Arc<Counters>,
    /// Outcomes of other transactions learnt while resolving their locks (ZERO: rolled
    /// back); at most [`DECIDED_CACHE_MAX`], the oldest forgotten first.
    decided: Arc<Mutex<BTreeMap<Timestamp, Timestamp>>>,
    /// The transactions handed out and not yet dropped.
    live: LiveTxns,
}

impl std::fmt::Debug for TransactionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionClient").field("raw", &self.raw).finish()
    }
}

impl TransactionClient {
    /// Connects to the cluster through PD at `pd_endpoints` with default timeouts.
    pub async fn connect(pd_endpoints: Vec<String>) -> Result<TransactionClient> {
        Ok(TransactionClient::with_raw(RawClient::connect(pd_endpoints).await?))
    }

    /// Connects with explicit timeouts (the deadline bounds each command, retries included).
    pub async fn connect_with_config(pd_endpoints: Vec<String>, config: RawClientConfig) -> Result<TransactionClient> {
        Ok(TransactionClient::with_raw(RawClient::connect_with_config(pd_endpoints, config).await?))
    }

    /// A transactional client sharing `raw`'s routing and connections. Does no I/O.
    pub fn with_raw(raw: RawClient) -> TransactionClient {
        TransactionClient { raw, counters: Arc::default(), decided: Arc::default(), live: LiveTxns::default() }
    }

    /// The PD client (timestamps).
    pub fn pd(&self) -> &PdClient {
        self.raw.region_cache().pd()
    }

    /// What this client and its clones did so far.
    pub fn stats(&self) -> TransactionStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TransactionStats {
            committed: l(&c.committed),
            conflicts: l(&c.conflicts),
            unknown: l(&c.unknown),
            failed: l(&c.failed),
            locks_resolved: l(&c.locks_resolved),
            lock_waits: l(&c.lock_waits),
            one_pc: l(&c.one_pc),
            async_commits: l(&c.async_commits),
            fallbacks: l(&c.fallbacks),
            commit_ts_retries: l(&c.commit_ts_retries),
        }
    }

    /// When the oldest transaction this client (and its clones) handed out and that is not
    /// dropped yet began — asked PD for its start_ts, or for [`TransactionClient::snapshot_at`],
    /// was created; `None` when there is none. Every live transaction's start_ts is above any
    /// timestamp PD handed out before that instant (a snapshot at a chosen timestamp aside),
    /// so a GC safe point taken from PD earlier than it cannot hide anything they read.
    pub fn oldest_live_txn_began(&self) -> Option<Instant> {
        self.live.oldest()
    }

    /// Starts a 2PC transaction at a fresh timestamp.
    pub async fn begin(&self) -> Result<Transaction> {
        self.begin_with_options(TransactionOptions::default()).await
    }

    /// Starts a transaction at a fresh timestamp with the given commit options.
    pub async fn begin_with_options(&self, options: TransactionOptions) -> Result<Transaction> {
        let live = self.live.enter();
        let start_ts = self.timestamp("begin").await?;
        Ok(self.transaction(start_ts, options, live))
    }

    /// A transaction reading at `start_ts` (a snapshot at a chosen timestamp). Writing
    /// through it is allowed but will conflict with anything committed after `start_ts`.
    pub fn snapshot_at(&self, start_ts: Timestamp, options: TransactionOptions) -> Transaction {
        self.transaction(start_ts, options, self.live.enter())
    }

    fn transaction(&self, start_ts: Timestamp, options: TransactionOptions, live: LiveGuard) -> Transaction {
        Transaction {
            client: self.clone(),
            start_ts,
            began: Instant::now(),
            options,
            mutations: BTreeMap::new(),
            state: State::Active,
            resolved_locks: Mutex::default(),
            _live: live,
        }
    }

    async fn timestamp(&self, op: &'static str) -> Result<Timestamp> {
        let started = Instant::now();
        self.pd().get_ts().await.map_err(|e| ClientError::Failed {
            op,
            attempts: 0,
            elapsed_ms: started.elapsed().as_millis() as u64,
            reason: format!("no timestamp from PD: {e}"),
        })
    }

    /// "Now" for TTL checks of other transactions' locks: a timestamp from PD at most
    /// [`NOW_TS_AGE_MAX`] old (a lock then expires at most that late), else a fresh one.
    async fn now_ts(&self, op: &'static str) -> Result<Timestamp> {
        match self.pd().low_resolution_ts(NOW_TS_AGE_MAX) {
            Some(ts) => Ok(ts),
            None => self.timestamp(op).await,
        }
    }

    pub(crate) fn op(&self, name: &'static str, kind: Kind, key: &[u8]) -> Op {
        // Every transactional command is idempotent, so retrying one after an attempt with
        // an unknown outcome is safe: a retry of an applied command answers the same.
        self.raw.op_with(name, kind, true, key)
    }

    /// Runs `make(keys of the region)` in the region holding `pending`'s first key; returns
    /// the keys it covered and the answer.
    async fn run_group<F>(
        &self,
        op: &mut Op,
        pending: &BTreeSet<Vec<u8>>,
        make: F,
    ) -> Result<(Vec<Vec<u8>>, std::result::Result<TxnResponse, KeyError>)>
    where
        F: Fn(Vec<Vec<u8>>) -> TxnCommand,
    {
        let first = pending.first().expect("a group has keys").clone();
        let (region, answer) = self
            .raw
            .dispatch(op, Target::Key(&first), |r: &Region| {
                make(pending.range::<[u8], _>(region_bounds(r)).cloned().collect())
            })
            .await?;
        let keys = pending.range::<[u8], _>(region_bounds(&region)).cloned().collect();
        Ok((keys, answer))
    }

    /// Splits `keys` into one set per region as the region cache knows them (asking PD for
    /// regions it does not know). A key whose region cannot be found joins the last set:
    /// a group routes key by key anyway, so grouping only buys parallelism.
    async fn group_by_region(&self, keys: &BTreeSet<Vec<u8>>) -> Vec<BTreeSet<Vec<u8>>> {
        let mut groups: Vec<BTreeSet<Vec<u8>>> = Vec::new();
        let mut rest = keys.clone();
        while let Some(first) = rest.first().cloned() {
            let group: BTreeSet<Vec<u8>> = match self.raw.region_cache().locate_key(&first).await {
                Ok(located) => rest.range::<[u8], _>(region_bounds(&located.region)).cloned().collect(),
                Err(_) => std::mem::take(&mut rest),
            };
            // A stale cache entry may not cover `first`; never loop on an empty group.
            let group = if group.is_empty() { BTreeSet::from([first]) } else { group };
            rest.retain(|k| !group.contains(k));
            groups.push(group);
        }
        groups
    }

    /// Commits `keys` of a transaction whose commit point has passed, in a background task:
    /// the caller's commit is already decided, and a lock left behind (the task fails or
    /// the process exits) is resolved by the next reader from the primary's record.
    fn commit_in_background(&self, keys: BTreeSet<Vec<u8>>, start_ts: Timestamp, commit_ts: Timestamp) {
        self.each_region_in_background("commit", keys, move |keys| TxnCommand::Commit { keys, start_ts, commit_ts });
    }

    /// [`TransactionClient::each_region`] in a background task, for work whose outcome the
    /// caller does not wait for: it must not decide anything (a lock it leaves behind is
    /// settled by the next reader from the primary's record).
    fn each_region_in_background<F>(&self, name: &'static str, keys: BTreeSet<Vec<u8>>, make: F)
    where
        F: Fn(Vec<Vec<u8>>) -> TxnCommand + Send + Sync + 'static,
    {
        if keys.is_empty() {
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            let _ = client.each_region(name, &keys, make).await;
        });
    }

    /// Sends `make(keys)` to every region holding some of `keys`, the regions in parallel,
    /// ignoring key errors (best effort: commits of secondaries, rollbacks, resolves).
    /// Returns the first client error.
    async fn each_region<F>(&self, name: &'static str, keys: &BTreeSet<Vec<u8>>, make: F) -> Result<()>
    where
        F: Fn(Vec<Vec<u8>>) -> TxnCommand + Sync,
    {
        let groups = self.group_by_region(keys).await;
        let results = futures::future::join_all(groups.into_iter().map(|g| self.each_region_of(name, g, &make))).await;
        results.into_iter().collect()
    }

    /// [`TransactionClient::each_region`] for the keys of one region (region by region if
    /// it split meanwhile).
    async fn each_region_of<F>(&self, name: &'static str, mut pending: BTreeSet<Vec<u8>>, make: &F) -> Result<()>
    where
        F: Fn(Vec<Vec<u8>>) -> TxnCommand + Sync,
    {
        let Some(first) = pending.first() else { return Ok(()) };
        let mut op = self.op(name, Kind::Write, first);
        while !pending.is_empty() {
            let (done, answer) = self.run_group(&mut op, &pending, make).await?;
            if let Err(err) = answer {
                tracing::debug!(op = name, %err, "txn client: key error ignored");
            }
            for k in done {
                pending.remove(&k);
            }
        }
        Ok(())
    }

    /// Settles `locks` (all met in one region) for a caller reading at `caller_start_ts`
    /// (ZERO: a writer): one resolution per transaction, the transactions in parallel.
    /// Returns each transaction's fate. A reader that holds each lock's written value passes
    /// `read_through` and may get [`LockFate::Visible`] instead of waiting for the resolution.
    pub(crate) async fn resolve_locks(
        &self,
        locks: &[LockInfo],
        caller_start_ts: Timestamp,
        read_through: bool,
    ) -> Result<Vec<(Timestamp, LockFate)>> {
        let mut by_txn: BTreeMap<Timestamp, &LockInfo> = BTreeMap::new();
        for lock in locks {
            by_txn.entry(lock.start_ts).or_insert(lock);
        }
        let fates =
            futures::future::join_all(by_txn.values().map(|l| self.resolve_lock(l, caller_start_ts, read_through)))
                .await;
        by_txn.keys().copied().zip(fates).map(|(ts, fate)| fate.map(|f| (ts, f))).collect()
    }

    /// Settles `lock` if its transaction is decided (or expired); see [`LockFate`].
    async fn resolve_lock(&self, lock: &LockInfo, caller_start_ts: Timestamp, read_through: bool) -> Result<LockFate> {
        if let Some(commit_ts) = self.decided(lock.start_ts) {
            return self.settle_decided(lock, commit_ts, caller_start_ts, read_through).await;
        }
        // A push of a live 2PC primary goes above "now", covering the other readers of the
        // moment too: worth a fresh timestamp. Otherwise "now" only judges the TTL.
        let pushes =
            !lock.use_async_commit && caller_start_ts != Timestamp::ZERO && lock.min_commit_ts <= caller_start_ts;
        let current_ts =
            if pushes { self.timestamp("resolve_lock").await? } else { self.now_ts("resolve_lock").await? };
        let expired = ttl_ran_out(lock, current_ts);
        let status = self.check_txn_status(lock, caller_start_ts, current_ts, expired, false).await?;
        let Some(status) = status else { return Ok(LockFate::Alive) };
        match status {
            TxnStatus::Committed { commit_ts } => {
                self.remember_decided(lock.start_ts, commit_ts);
                self.settle_decided(lock, commit_ts, caller_start_ts, read_through).await
            }
            TxnStatus::RolledBack { .. } => {
                self.remember_decided(lock.start_ts, Timestamp::ZERO);
                self.settle_decided(lock, Timestamp::ZERO, caller_start_ts, read_through).await
            }
            TxnStatus::Locked { lock: primary, .. } => {
                if primary.use_async_commit && ttl_ran_out(&primary, current_ts) {
                    self.resolve_async(lock, &primary, current_ts).await
                } else if !primary.use_async_commit
                    && caller_start_ts != Timestamp::ZERO
                    && primary.min_commit_ts > caller_start_ts
                {
                    Ok(LockFate::Invisible)
                } else {
                    Ok(LockFate::Alive)
                }
            }
        }
    }

    /// Resolves the locks of `lock`'s decided transaction (committed at `commit_ts`, or
    /// rolled back: ZERO) in its region. A reader whose snapshot cannot see the outcome (a
    /// rollback, or a commit after `caller_start_ts`) skips the lock at once and leaves the
    /// resolution to a background task, and so does a reader that sees the commit and holds
    /// the written value (`read_through`); a writer, or a reader that needs the value, waits.
    async fn settle_decided(
        &self,
        lock: &LockInfo,
        commit_ts: Timestamp,
        caller_start_ts: Timestamp,
        read_through: bool,
    ) -> Result<LockFate> {
        let fate = if caller_start_ts == Timestamp::ZERO {
            LockFate::Gone
        } else if commit_ts == Timestamp::ZERO || commit_ts > caller_start_ts {
            LockFate::Invisible
        } else if read_through {
            LockFate::Visible
        } else {
            LockFate::Gone
        };
        if fate == LockFate::Gone {
            return self.resolve_region_of(lock, commit_ts).await.map(|()| LockFate::Gone);
        }
        // The owner clears its own locks right after deciding (secondaries committed or
        // rolled back in the background). A reader that does not need the lock gone leaves a
        // live owner's lock to it and resolves only once the TTL says the owner may be gone:
        // else every reader that meets the lock writes the same resolution through raft.
        if self.owner_may_be_gone(lock) {
            let client = self.clone();
            let lock = lock.clone();
            tokio::spawn(async move {
                let _ = client.resolve_region_of(&lock, commit_ts).await;
            });
        }
        Ok(fate)
    }

    /// Whether `lock`'s TTL has run out by a recent PD timestamp (or none is at hand).
    fn owner_may_be_gone(&self, lock: &LockInfo) -> bool {
        self.pd().low_resolution_ts(NOW_TS_AGE_MAX).is_none_or(|now| ttl_ran_out(lock, now))
    }

    /// The remembered outcome of transaction `start_ts`: its commit_ts, ZERO if rolled back.
    fn decided(&self, start_ts: Timestamp) -> Option<Timestamp> {
        self.decided.lock().unwrap_or_else(|e| e.into_inner()).get(&start_ts).copied()
    }

    /// Remembers a final outcome (so the transaction's other locks skip `CheckTxnStatus`),
    /// forgetting the oldest transactions beyond [`DECIDED_CACHE_MAX`].
    fn remember_decided(&self, start_ts: Timestamp, commit_ts: Timestamp) {
        let mut decided = self.decided.lock().unwrap_or_else(|e| e.into_inner());
        decided.insert(start_ts, commit_ts);
        while decided.len() > DECIDED_CACHE_MAX {
            decided.pop_first();
        }
    }

    /// `CheckTxnStatus` on `lock`'s primary; `None` when the transaction is not found (its
    /// primary is not written yet: treat it as alive).
    async fn check_txn_status(
        &self,
        lock: &LockInfo,
        caller_start_ts: Timestamp,
        current_ts: Timestamp,
        rollback_if_not_exist: bool,
        force_sync_commit: bool,
    ) -> Result<Option<TxnStatus>> {
        let mut op = self.op("check_txn_status", Kind::Write, &lock.primary);
        let make = |_: &Region| TxnCommand::CheckTxnStatus {
            primary: lock.primary.clone(),
            lock_ts: lock.start_ts,
            caller_start_ts,
            current_ts,
            rollback_if_not_exist,
            force_sync_commit,
        };
        let (_, answer) = self.raw.dispatch(&mut op, Target::Key(&lock.primary), make).await?;
        match answer {
            Ok(TxnResponse::TxnStatus(status)) => Ok(Some(status)),
            Err(KeyError::TxnNotFound { .. }) => Ok(None),
            Ok(other) => Err(op.unexpected(&other)),
            Err(err) => Err(op.error(format!("check_txn_status: {err}"))),
        }
    }

    /// Commits (`commit_ts > 0`) or rolls back every lock of `lock`'s transaction in the
    /// region holding `lock.key`.
    async fn resolve_region_of(&self, lock: &LockInfo, commit_ts: Timestamp) -> Result<()> {
        let mut op = self.op("resolve_lock", Kind::Write, &lock.key);
        let make = |_: &Region| TxnCommand::ResolveLock { start_ts: lock.start_ts, commit_ts, keys: vec![] };
        let (_, answer) = self.raw.dispatch(&mut op, Target::Key(&lock.key), make).await?;
        match answer {
            Ok(TxnResponse::Done) => {
                bump(&self.counters.locks_resolved);
                Ok(())
            }
            Ok(other) => Err(op.unexpected(&other)),
            Err(err) => Err(op.error(format!("resolve_lock: {err}"))),
        }
    }

    /// An expired async-commit transaction: its secondaries decide. Committed iff every key
    /// is (still) locked by it — at the largest min_commit_ts — or already committed.
    async fn resolve_async(&self, lock: &LockInfo, primary: &LockInfo, current_ts: Timestamp) -> Result<LockFate> {
        let secondaries: BTreeSet<Vec<u8>> = primary.secondaries.iter().cloned().collect();
        let mut commit_ts = primary.min_commit_ts;
        let mut decided: Option<Timestamp> = None; // Some(ZERO): rolled back
        if let Some(first) = secondaries.first() {
            let mut op = self.op("check_secondary_locks", Kind::Write, first);
            let mut pending = secondaries.clone();
            while !pending.is_empty() && decided.is_none() {
                let (done, answer) = self
                    .run_group(&mut op, &pending, |keys| TxnCommand::CheckSecondaryLocks {
                        keys,
                        start_ts: primary.start_ts,
                    })
                    .await?;
                match answer {
                    Ok(TxnResponse::SecondaryLocks(SecondaryLocksStatus::Locked(locks))) => {
                        if locks.iter().any(|l| !l.use_async_commit) {
                            // Fell back to 2PC: the primary decides, by its TTL.
                            let status = self.check_txn_status(lock, Timestamp::ZERO, current_ts, true, true).await?;
                            return match status {
                                Some(TxnStatus::Committed { commit_ts }) => {
                                    self.resolve_region_of(lock, commit_ts).await.map(|()| LockFate::Gone)
                                }
                                Some(TxnStatus::RolledBack { .. }) => {
                                    self.resolve_region_of(lock, Timestamp::ZERO).await.map(|()| LockFate::Gone)
                                }
                                _ => Ok(LockFate::Alive),
                            };
                        }
                        commit_ts = locks.iter().map(|l| l.min_commit_ts).fold(commit_ts, Timestamp::max);
                    }
                    Ok(TxnResponse::SecondaryLocks(SecondaryLocksStatus::Committed(ts))) => decided = Some(ts),
                    Ok(TxnResponse::SecondaryLocks(SecondaryLocksStatus::RolledBack)) => {
                        decided = Some(Timestamp::ZERO)
                    }
                    Ok(other) => return Err(op.unexpected(&other)),
                    Err(err) => return Err(op.error(format!("check_secondary_locks: {err}"))),
                }
                for k in done {
                    pending.remove(&k);
                }
            }
        }
        let commit_ts = decided.unwrap_or(commit_ts);
        let mut keys = secondaries;
        keys.insert(lock.primary.clone());
        keys.insert(lock.key.clone());
        let start_ts = primary.start_ts;
        self.each_region("resolve_lock", &keys, |keys| TxnCommand::ResolveLock { start_ts, commit_ts, keys }).await?;
        bump(&self.counters.locks_resolved);
        self.remember_decided(start_ts, commit_ts);
        Ok(LockFate::Gone)
    }
}

/// The error of a prewrite group refused by a store: [`ClientError::Conflict`] (nothing of
/// the group took effect), unless an earlier attempt of the group got no answer. That
/// attempt may have locked the keys (async commit: the transaction may then be committed,
/// by a resolver) or committed them (1PC) before another transaction's lock or write made
/// the retry fail, so the outcome is unknown (a 2PC commit turns it into a failure: its
/// primary was never committed).
fn refusal(op: &Op, reason: String) -> ClientError {
    if op.unknown {
        op.error(reason)
    } else {
        ClientError::Conflict(reason)
    }
}

/// Whether `lock`'s TTL (measured from its start_ts's physical time) has run out at `now`.
fn ttl_ran_out(lock: &LockInfo, now: Timestamp) -> bool {
    now.physical_ms() >= lock.start_ts.physical_ms().saturating_add(lock.ttl_ms)
}

/// What settling another transaction's lock came to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum LockFate {
    /// The lock is gone (committed or rolled back, by this client or another).
    Gone,
    /// Its transaction is alive and may commit at or below the caller: back off.
    Alive,
    /// Its write is invisible to the caller's read timestamp: the transaction rolled back,
    /// committed after it, or (2PC, alive) its primary's min_commit_ts is above it so it
    /// will. A reader skips its locks.
    Invisible,
    /// It committed at or below the caller's read timestamp and its locks are being
    /// resolved in the background: a reader that holds the lock's written value
    /// ([`LockedRead`]) reads it; only a caller that asked for this gets it.
    Visible,
}

/// Where a transaction is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    Active,
    Committed,
    RolledBack,
    /// Commit was called and did not succeed (or its outcome is unknown).
    Ended,
}

/// One transaction: reads at `start_ts`, buffered writes, `commit` or `rollback`.
pub struct Transaction {
    client: TransactionClient,
    start_ts: Timestamp,
    began: Instant,
    options: TransactionOptions,
    /// Buffered writes by key.
    mutations: BTreeMap<Vec<u8>, Mutation>,
    state: State,
    /// Transactions whose locks this transaction's reads skip: they commit after `start_ts`
    /// (a resolver pushed their primary's min_commit_ts past it).
    resolved_locks: Mutex<BTreeSet<Timestamp>>,
    /// Keeps the transaction in its client's live set (GC safe points stay below it).
    _live: LiveGuard,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("start_ts", &self.start_ts)
            .field("options", &self.options)
            .field("mutations", &self.mutations.len())
            .field("state", &self.state)
            .finish()
    }
}

/// What every region group of one prewrite phase shares.
struct PrewriteCtx<'a> {
    primary: &'a [u8],
    /// Every key but the primary (listed in an async-commit primary lock).
    secondaries: &'a [Vec<u8>],
    /// Keys in the transaction.
    all: usize,
    ttl: u64,
    async_commit: bool,
    one_pc: bool,
}

/// The outcome of a prewrite phase.
enum Prewritten {
    /// Every key is locked (2PC); `min_commit_ts` is `Some` when every region accepted
    /// async commit (the transaction is then committed at it).
    Locked { async_commit_ts: Option<Timestamp> },
    /// Committed by 1PC.
    OnePc(Timestamp),
}

impl Transaction {
    /// The snapshot timestamp.
    pub fn start_ts(&self) -> Timestamp {
        self.start_ts
    }

    fn resolved_locks(&self) -> Vec<Timestamp> {
        self.resolved_locks.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect()
    }

    fn check_active(&self) -> Result<()> {
        match self.state {
            State::Active => Ok(()),
            state => Err(ClientError::Invalid(format!("transaction is no longer active ({state:?})"))),
        }
    }

    /// The value of `key` in this transaction's snapshot, its own writes included.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        let key = key.into();
        check_key(&key)?;
        let pairs = self.batch_get([key.clone()]).await?;
        Ok(pairs.into_iter().find(|(k, _)| *k == key).map(|(_, v)| v))
    }

    /// The pairs found among `keys` (absent ones left out), in key order, own writes included.
    pub async fn batch_get(&self, keys: impl IntoIterator<Item = impl Into<Vec<u8>>>) -> Result<Vec<KvPair>> {
        self.check_active()?;
        let keys: Vec<Vec<u8>> = keys.into_iter().map(Into::into).collect();
        check_batch(keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        let mut out: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut from_store = BTreeSet::new();
        for key in keys {
            match self.mutations.get(&key) {
                Some(m) if m.op == MutationOp::Put || m.op == MutationOp::Insert => {
                    out.insert(key, m.value.clone());
                }
                Some(m) if m.op == MutationOp::Delete => {}
                _ => {
                    from_store.insert(key);
                }
            }
        }
        if !from_store.is_empty() {
            out.extend(self.read_keys(from_store).await?);
        }
        Ok(out.into_iter().collect())
    }

    /// Reads `keys` from the stores at `start_ts`, resolving the locks met.
    async fn read_keys(&self, keys: BTreeSet<Vec<u8>>) -> Result<Vec<KvPair>> {
        let groups = self.client.group_by_region(&keys).await;
        let mut out = Vec::new();
        for pairs in futures::future::join_all(groups.into_iter().map(|g| self.read_group(g))).await {
            out.extend(pairs?);
        }
        out.sort();
        Ok(out)
    }

    /// Reads `pending` (keys of one region, unless it split meanwhile: then region by
    /// region), resolving the locks met.
    async fn read_group(&self, mut pending: BTreeSet<Vec<u8>>) -> Result<Vec<KvPair>> {
        let client = &self.client;
        let mut op = client.op("txn_get", Kind::Read, pending.first().expect("keys"));
        let mut out = Vec::new();
        let mut backoff = LockBackoff::new();
        let start_ts = self.start_ts;
        while !pending.is_empty() {
            let (done, answer) = client
                .run_group(&mut op, &pending, |keys| TxnCommand::BatchGet {
                    keys,
                    start_ts,
                    resolved_locks: self.resolved_locks(),
                })
                .await?;
            let (pairs, locks, locked_reads) = match answer {
                Ok(TxnResponse::Pairs { pairs, locks, locked_reads }) => (pairs, locks, locked_reads),
                Ok(other) => return Err(op.unexpected(&other)),
                Err(KeyError::Locked { lock }) => (vec![], vec![lock], vec![]),
                Err(err) => return Err(op.error(format!("batch_get: {err}"))),
            };
            // With a `LockedRead` per lock the answer holds every other key; without (a node's
            // in-memory locks answer the locks alone) read the whole group again.
            let complete = locked_reads.len() == locks.len();
            if complete {
                out.extend(pairs);
                for k in done {
                    pending.remove(&k);
                }
                for lock in &locks {
                    pending.insert(lock.key.clone());
                }
            }
            if locks.is_empty() {
                continue;
            }
            let Some(fates) = self.resolve_all(&mut op, &locks, &mut backoff, complete).await? else {
                return Err(op.give_up());
            };
            // A lock whose fate is known needs no second read: its key has the value below
            // it, or the written one for a commit this snapshot sees.
            for (lock, read) in locks.iter().zip(locked_reads) {
                let value = match fates.get(&lock.start_ts) {
                    Some(LockFate::Invisible) => read.below,
                    Some(LockFate::Visible) => read.written,
                    _ => continue,
                };
                pending.remove(&lock.key);
                out.extend(value.map(|v| (lock.key.clone(), v)));
            }
        }
        Ok(out)
    }

    /// Resolves `locks` (a reader holding each lock's [`LockedRead`] passes `read_through`);
    /// backs off when some are alive. Returns each transaction's fate, `None` when the
    /// deadline passed.
    async fn resolve_all(
        &self,
        op: &mut Op,
        locks: &[LockInfo],
        backoff: &mut LockBackoff,
        read_through: bool,
    ) -> Result<Option<BTreeMap<Timestamp, LockFate>>> {
        let mut alive = BTreeSet::new();
        let fates = self.client.resolve_locks(locks, self.start_ts, read_through).await?;
        for &(start_ts, fate) in &fates {
            match fate {
                LockFate::Gone | LockFate::Visible => {}
                LockFate::Alive => {
                    alive.insert(start_ts);
                }
                LockFate::Invisible => {
                    self.resolved_locks.lock().unwrap_or_else(|e| e.into_inner()).insert(start_ts);
                }
            }
        }
        if let Some(first) = alive.first() {
            bump(&self.client.counters.lock_waits);
            op.last = format!("waiting for live locks, e.g. of txn {first}");
            let pause = backoff.pause(alive);
            if op.remaining() <= pause {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
        }
        Ok((op.remaining() > Duration::from_millis(5)).then(|| fates.into_iter().collect()))
    }

    /// At most `limit` pairs with keys in `[start, end)` (empty `end`: no bound) in key order,
    /// in this transaction's snapshot with its own writes applied. Spans regions.
    pub async fn scan(&self, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>, limit: u32) -> Result<Vec<KvPair>> {
        self.check_active()?;
        let (start, end) = (start.into(), end.into());
        check_range(&start, &end)?;
        check_limit(limit)?;
        let mut found: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        if end.is_empty() || start < end {
            let in_range = |k: &Vec<u8>| *k >= start && (end.is_empty() || *k < end);
            let deletes = self.mutations.values().filter(|m| m.op == MutationOp::Delete && in_range(&m.key)).count();
            let want = (limit as usize + deletes).min(SCAN_LIMIT_MAX);
            found = self.scan_store(&start, &end, want).await?.into_iter().collect();
            for m in self.mutations.values().filter(|m| in_range(&m.key)) {
                match m.op {
                    MutationOp::Put | MutationOp::Insert => {
                        found.insert(m.key.clone(), m.value.clone());
                    }
                    MutationOp::Delete => {
                        found.remove(&m.key);
                    }
                    MutationOp::Lock => {}
                }
            }
        }
        Ok(found.into_iter().take(limit as usize).collect())
    }

    async fn scan_store(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>> {
        let client = &self.client;
        let mut op = client.op("txn_scan", Kind::Read, start);
        let mut out = Vec::new();
        let mut cursor = start.to_vec();
        let mut backoff = LockBackoff::new();
        let start_ts = self.start_ts;
        loop {
            let want = (limit - out.len()) as u32;
            let make = |r: &Region| TxnCommand::Scan {
                start_key: cursor.clone(),
                end_key: clip_end(r, end),
                limit: want,
                start_ts,
                reverse: false,
                key_only: false,
            };
            let (region, answer) = client.raw.dispatch(&mut op, Target::Key(&cursor), make).await?;
            match answer {
                Ok(TxnResponse::Pairs { pairs, locks, .. }) if locks.is_empty() => out.extend(pairs),
                Ok(TxnResponse::Pairs { locks, .. }) => {
                    // Read this region again once the locks are settled.
                    if self.resolve_all(&mut op, &locks, &mut backoff, false).await?.is_none() {
                        return Err(op.give_up());
                    }
                    continue;
                }
                Ok(other) => return Err(op.unexpected(&other)),
                Err(err) => return Err(op.error(format!("scan: {err}"))),
            }
            if out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            match next_start(&region, end) {
                Some(next) => cursor = next,
                None => return Ok(out),
            }
        }
    }

    fn buffer(&mut self, op: MutationOp, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.check_active()?;
        check_key(&key)?;
        check_value(&value)?;
        self.mutations.insert(key.clone(), Mutation { op, key, value });
        Ok(())
    }

    /// Sets `key` to `value` when the transaction commits.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<()> {
        self.buffer(MutationOp::Put, key.into(), value.into())
    }

    /// Deletes `key` when the transaction commits.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> Result<()> {
        self.buffer(MutationOp::Delete, key.into(), Vec::new())
    }

    /// Locks `keys` without writing them: the commit fails if another transaction wrote any
    /// of them after `start_ts` (turns read skew on them into a conflict).
    pub fn lock_keys(&mut self, keys: impl IntoIterator<Item = impl Into<Vec<u8>>>) -> Result<()> {
        self.check_active()?;
        for key in keys {
            let key = key.into();
            check_key(&key)?;
            self.mutations.entry(key.clone()).or_insert(Mutation { op: MutationOp::Lock, key, value: Vec::new() });
        }
        Ok(())
    }

    /// Abandons the transaction. Nothing was written before `commit`, so this does no I/O.
    pub async fn rollback(&mut self) -> Result<()> {
        self.check_active()?;
        self.state = State::RolledBack;
        self.mutations.clear();
        Ok(())
    }

    /// Commits the buffered writes; returns the commit timestamp (`start_ts` for a
    /// transaction that wrote nothing). See the module docs for the error outcomes.
    pub async fn commit(&mut self) -> Result<Timestamp> {
        self.check_active()?;
        self.state = State::Ended;
        let counters = self.client.counters.clone();
        let result = if self.mutations.is_empty() { Ok(self.start_ts) } else { self.commit_writes().await };
        match &result {
            Ok(_) => {
                self.state = State::Committed;
                bump(&counters.committed);
            }
            Err(ClientError::Conflict(_)) => bump(&counters.conflicts),
            Err(e) if e.outcome_unknown() => bump(&counters.unknown),
            Err(_) => bump(&counters.failed),
        }
        result
    }

    fn primary(&self) -> Vec<u8> {
        self.mutations.keys().next().expect("mutations").clone()
    }

    fn lock_ttl_ms(&self) -> u64 {
        self.began.elapsed().as_millis() as u64 + self.options.lock_ttl_ms
    }

    async fn commit_writes(&mut self) -> Result<Timestamp> {
        let client = self.client.clone();
        let keys: BTreeSet<Vec<u8>> = self.mutations.keys().cloned().collect();
        let primary = self.primary();
        let one_pc = self.options.try_one_pc && {
            let located = client.raw.region_cache().locate_key(&primary).await;
            located.is_ok_and(|r| r.region.contains(keys.last().expect("keys")))
        };
        let async_commit = self.options.async_commit && !one_pc;
        let prewritten = match self.prewrite(&keys, &primary, async_commit, one_pc).await {
            Ok(p) => p,
            Err(err) => return Err(self.after_failed_prewrite(err, &keys, &primary, async_commit, one_pc).await),
        };
        let start_ts = self.start_ts;
        let commit_ts = match prewritten {
            Prewritten::OnePc(commit_ts) => {
                bump(&client.counters.one_pc);
                return Ok(commit_ts);
            }
            Prewritten::Locked { async_commit_ts: Some(commit_ts) } => {
                // Committed already; committing the keys only clears the locks.
                bump(&client.counters.async_commits);
                client.commit_in_background(keys, start_ts, commit_ts);
                return Ok(commit_ts);
            }
            Prewritten::Locked { async_commit_ts: None } => {
                if async_commit || one_pc {
                    bump(&client.counters.fallbacks);
                }
                let secondaries: BTreeSet<Vec<u8>> = keys.iter().filter(|k| **k != primary).cloned().collect();
                if enabled(PlantedBug::SecondariesBeforePrimary) {
                    // Planted bug: secondaries committed before the commit point.
                    let commit_ts = client.timestamp("commit").await?;
                    let _ = client
                        .each_region("commit", &secondaries, |keys| TxnCommand::Commit { keys, start_ts, commit_ts })
                        .await;
                    self.commit_primary(&primary, Some(commit_ts)).await?
                } else {
                    let commit_ts = self.commit_primary(&primary, None).await?;
                    client.commit_in_background(secondaries, start_ts, commit_ts);
                    commit_ts
                }
            }
        };
        Ok(commit_ts)
    }

    /// Commits the primary key: the commit point. Retries with a newer timestamp while
    /// readers push the primary's min_commit_ts.
    async fn commit_primary(&self, primary: &[u8], first_ts: Option<Timestamp>) -> Result<Timestamp> {
        let client = &self.client;
        let start_ts = self.start_ts;
        let mut op = client.op("commit", Kind::Write, primary);
        let mut commit_ts = match first_ts {
            Some(ts) => ts,
            None => client.timestamp("commit").await?,
        };
        for _ in 0..COMMIT_TS_RETRIES_MAX {
            let make = |_: &Region| TxnCommand::Commit { keys: vec![primary.to_vec()], start_ts, commit_ts };
            let (_, answer) = client.raw.dispatch(&mut op, Target::Key(primary), make).await?;
            match answer {
                Ok(TxnResponse::Done) => return Ok(commit_ts),
                Ok(other) => return Err(op.unexpected(&other)),
                Err(KeyError::CommitTsExpired { min_commit_ts, .. }) => {
                    bump(&client.counters.commit_ts_retries);
                    let fresh = client.timestamp("commit").await.map_err(|e| op.error(e.to_string()))?;
                    commit_ts = fresh.max(min_commit_ts);
                }
                Err(err @ (KeyError::RolledBack { .. } | KeyError::TxnNotFound { .. })) => {
                    // A resolver rolled the transaction back (its locks expired); a retry of
                    // an applied commit would have answered Done.
                    return Err(ClientError::Conflict(format!(
                        "txn {start_ts} was rolled back before its commit: {err}"
                    )));
                }
                Err(err) => return Err(op.error(format!("commit: {err}"))),
            }
        }
        Err(op.error(format!("commit_ts pushed {COMMIT_TS_RETRIES_MAX} times in a row")))
    }

    /// Prewrites every key: one group per region (as the region cache knows them). 2PC
    /// prewrites the primary's group first, then the others in parallel: a reader meeting
    /// a secondary lock pushes the primary's min_commit_ts above itself and reads past the
    /// lock, which it can only do once the primary is locked (before that it finds no
    /// transaction there and must wait). Async commit and 1PC prewrite every group at once,
    /// as TiKV's client does: their locks cannot be pushed, so a reader waits for them
    /// either way, and the commit is decided one round trip sooner.
    async fn prewrite(
        &self,
        keys: &BTreeSet<Vec<u8>>,
        primary: &[u8],
        async_commit: bool,
        one_pc: bool,
    ) -> Result<Prewritten> {
        let groups = self.client.group_by_region(keys).await;
        let secondaries: Vec<Vec<u8>> = keys.iter().filter(|k| k.as_slice() != primary).cloned().collect();
        let ttl = self.lock_ttl_ms();
        let ctx = PrewriteCtx { primary, secondaries: &secondaries, all: keys.len(), ttl, async_commit, one_pc };
        let (first, rest): (Vec<_>, Vec<_>) = if async_commit || one_pc {
            (Vec::new(), groups)
        } else {
            groups.into_iter().partition(|g| g.contains(primary))
        };
        let mut results = Vec::new();
        for group in first {
            let result = self.prewrite_group(group, &ctx).await;
            let failed = result.is_err();
            results.push(result);
            if failed {
                break;
            }
        }
        if results.iter().all(|r| r.is_ok()) {
            results.extend(futures::future::join_all(rest.into_iter().map(|g| self.prewrite_group(g, &ctx))).await);
        }
        let mut async_ts = Some(Timestamp::ZERO);
        let mut first_err: Option<ClientError> = None;
        for result in results {
            match result {
                Ok(Prewritten::OnePc(ts)) => return Ok(Prewritten::OnePc(ts)),
                Ok(Prewritten::Locked { async_commit_ts }) => {
                    async_ts = async_ts.zip(async_commit_ts).map(|(a, b)| a.max(b));
                }
                // A definite refusal wins over an unknown outcome: the refused key was never
                // locked by this transaction, so it cannot have committed.
                Err(err) => match &first_err {
                    Some(ClientError::Conflict(_)) => {}
                    Some(e) if e.outcome_unknown() && !matches!(err, ClientError::Conflict(_)) => {}
                    _ => first_err = Some(err),
                },
            }
        }
        if let Some(err) = first_err {
            return Err(err);
        }
        let async_commit_ts = if async_commit { async_ts.filter(|ts| *ts != Timestamp::ZERO) } else { None };
        Ok(Prewritten::Locked { async_commit_ts })
    }

    /// Prewrites `pending` (keys of one region, unless it split meanwhile: then region by
    /// region), resolving the locks met. `Locked { async_commit_ts }` carries the largest
    /// `min_commit_ts` the regions answered, `None` if one of them refused async commit.
    async fn prewrite_group(&self, mut pending: BTreeSet<Vec<u8>>, ctx: &PrewriteCtx<'_>) -> Result<Prewritten> {
        let client = &self.client;
        let first = pending.first().expect("a group has keys").clone();
        let mut op = client.op("prewrite", Kind::Write, &first);
        let mut async_ts = Some(Timestamp::ZERO);
        let mut lock_retries = 0;
        let mut backoff = LockBackoff::new();
        let start_ts = self.start_ts;
        while !pending.is_empty() {
            let make = |keys: Vec<Vec<u8>>| {
                let has_primary = keys.iter().any(|k| k.as_slice() == ctx.primary);
                let whole = keys.len() == ctx.all;
                TxnCommand::Prewrite {
                    mutations: keys.iter().map(|k| self.mutations[k].clone()).collect(),
                    primary: ctx.primary.to_vec(),
                    start_ts,
                    lock_ttl_ms: ctx.ttl,
                    txn_size: ctx.all as u64,
                    min_commit_ts: Timestamp::ZERO,
                    use_async_commit: ctx.async_commit,
                    secondaries: if ctx.async_commit && has_primary { ctx.secondaries.to_vec() } else { vec![] },
                    try_one_pc: ctx.one_pc && whole,
                    max_commit_ts: Timestamp::ZERO,
                }
            };
            let (done, answer) = client.run_group(&mut op, &pending, make).await?;
            let (errors, min_commit_ts, one_pc_commit_ts) = match answer {
                Ok(TxnResponse::Prewrite { errors, min_commit_ts, one_pc_commit_ts }) => {
                    (errors, min_commit_ts, one_pc_commit_ts)
                }
                Ok(other) => return Err(op.unexpected(&other)),
                Err(err) => return Err(op.error(format!("prewrite: {err}"))),
            };
            if !errors.is_empty() {
                let mut locks = Vec::new();
                for err in errors {
                    match err {
                        KeyError::Locked { lock } => locks.push(lock),
                        KeyError::WriteConflict { .. } | KeyError::RolledBack { .. } | KeyError::Committed { .. } => {
                            return Err(refusal(&op, format!("prewrite: {err}")))
                        }
                        err => return Err(op.error(format!("prewrite: {err}"))),
                    }
                }
                lock_retries += 1;
                // A writer must wait for every live lock, wherever its commit_ts lands.
                let fates = client.resolve_locks(&locks, Timestamp::ZERO, false).await?;
                let alive: BTreeSet<Timestamp> =
                    fates.iter().filter(|(_, fate)| *fate != LockFate::Gone).map(|(ts, _)| *ts).collect();
                let pause = if alive.is_empty() { Duration::ZERO } else { backoff.pause(alive) };
                if lock_retries > PREWRITE_LOCK_RETRIES_MAX || op.remaining() <= pause {
                    return Err(refusal(
                        &op,
                        format!(
                            "prewrite: key {:?} locked by txn {}",
                            String::from_utf8_lossy(&locks[0].key),
                            locks[0].start_ts
                        ),
                    ));
                }
                if pause > Duration::ZERO {
                    bump(&client.counters.lock_waits);
                    tokio::time::sleep(pause).await;
                }
                continue;
            }
            if one_pc_commit_ts != Timestamp::ZERO {
                debug_assert_eq!(done.len(), ctx.all);
                return Ok(Prewritten::OnePc(one_pc_commit_ts));
            }
            async_ts = match (async_ts, min_commit_ts) {
                (Some(ts), m) if m != Timestamp::ZERO => Some(ts.max(m)),
                _ => None,
            };
            for k in done {
                pending.remove(&k);
            }
        }
        Ok(Prewritten::Locked { async_commit_ts: async_ts })
    }

    /// Cleans up after a prewrite phase that did not complete and says what the commit came
    /// to. 2PC: the primary was never committed, so the transaction cannot commit; roll the
    /// keys back (best effort, in the background). Async commit and 1PC: a prewrite with an
    /// unknown outcome may have completed the transaction, so the outcome stays unknown.
    async fn after_failed_prewrite(
        &self,
        err: ClientError,
        keys: &BTreeSet<Vec<u8>>,
        primary: &[u8],
        async_commit: bool,
        one_pc: bool,
    ) -> ClientError {
        let client = &self.client;
        let start_ts = self.start_ts;
        if (async_commit || one_pc) && err.outcome_unknown() {
            // The prewrite that got no answer may have completed the transaction.
            return err;
        }
        if async_commit {
            // Roll the primary back first: if a resolver already committed the transaction
            // (every key was locked after all), the rollback says so.
            let mut op = client.op("rollback", Kind::Write, primary);
            let make = |_: &Region| TxnCommand::BatchRollback { keys: vec![primary.to_vec()], start_ts };
            match client.raw.dispatch(&mut op, Target::Key(primary), make).await {
                Ok((_, Ok(_))) => {}
                Ok((_, Err(KeyError::Committed { commit_ts, .. }))) => {
                    return ClientError::OutcomeUnknown {
                        op: "commit",
                        attempts: op.attempts,
                        elapsed_ms: 0,
                        reason: format!("prewrite failed ({err}) yet a resolver committed the txn at {commit_ts}"),
                    }
                }
                Ok((_, Err(e))) => tracing::debug!(%e, "txn client: rollback of the primary refused"),
                Err(e) => {
                    return ClientError::OutcomeUnknown {
                        op: "commit",
                        attempts: op.attempts,
                        elapsed_ms: 0,
                        reason: format!("prewrite failed ({err}); rollback of the primary failed too: {e}"),
                    }
                }
            }
        }
        // The transaction cannot commit any more (2PC: its primary was never committed; async
        // commit: the primary is rolled back above): report it now, clear its locks behind.
        client.each_region_in_background("rollback", keys.clone(), move |keys| TxnCommand::BatchRollback {
            keys,
            start_ts,
        });
        match err {
            // A 2PC prewrite whose outcome is unknown never reached the commit point.
            ClientError::OutcomeUnknown { op, attempts, elapsed_ms, reason } => {
                ClientError::Failed { op, attempts, elapsed_ms, reason }
            }
            err => err,
        }
    }
}
