//! The RawKV client: single-key and batch reads and writes (optionally with a time to
//! live), range deletes, forward and reverse scans and compare-and-swap, routed through the [`RegionCache`] and retried with
//! bounded exponential backoff under an overall per-operation deadline.
//!
//! # Spanning regions
//! Batches are split per region and sent region by region in key order; scans and range
//! deletes walk the regions of their range. Results come back in key order (descending for
//! `scan_reverse`). A batch write is atomic **per region only**: if it spans regions and
//! fails part-way, some regions may have applied their part — the error then says the
//! outcome is unknown. A scan spanning regions is not a snapshot: each region is read at
//! its own moment.
//!
//! # Outcomes
//! Every attempt is classified. Refusals (region errors, `ServerIsBusy`, `StaleCommand`,
//! `Unavailable`) and unreachable stores are definite: the command did not apply, so it is
//! retried. An attempt without a definite answer (RPC timeout, lost connection, the store's
//! `OutcomeUnknown`) may have applied: reads retry; writes return
//! [`ClientError::OutcomeUnknown`] at once unless [`RawClientConfig::retry_writes_after_unknown`]
//! is on (it is off by default: a retried write can apply twice); `compare_and_swap` never
//! retries after one. When the deadline passes,
//! the error is `OutcomeUnknown` if any attempt's outcome was unknown (or a part of a
//! multi-region write applied), and `Failed` only if no attempt can have taken effect.

use crate::error::{ClientError, Result};
use crate::pd::{PdClient, PdClientConfig};
use crate::region_cache::{CachedRegion, RegionCache};
use keel_rpc::{RpcClient, RpcError};
use keel_types::error::KeyError;
use keel_types::limits::{BATCH_KEYS_MAX, KEY_SIZE_MAX_BYTES, SCAN_LIMIT_MAX, VALUE_SIZE_MAX_BYTES};
use keel_types::proto::store::{
    Context, RawCommand, RawResponse, StoreError, StoreRequest, StoreResponse, StoreResult,
};
use keel_types::proto::txn::{TxnCommand, TxnResponse};
use keel_types::{Peer, Region, RegionError};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// Retries without a pause in a row (after a leader hint or fresh regions) before the
/// client backs off anyway, so two confused stores cannot make it spin.
const FAST_RETRIES_MAX: u32 = 3;
/// An attempt is not started with less time than this left before the deadline.
const ATTEMPT_TIME_MIN: Duration = Duration::from_millis(5);

/// Timeouts, backoff and retry policy of a [`RawClient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawClientConfig {
    /// Overall deadline of one operation, every retry and PD lookup included.
    pub deadline: Duration,
    /// Timeout of one RPC to a store (capped by what is left of the deadline).
    pub rpc_timeout: Duration,
    /// First pause before a retry that needs one.
    pub backoff_initial: Duration,
    /// Longest pause between retries (the pause doubles up to it, with deterministic jitter).
    pub backoff_max: Duration,
    /// Whether idempotent writes (put, batch_put, delete, batch_delete, delete_range) are
    /// retried after an attempt whose outcome is unknown. Retrying is what a TiKV client
    /// does and makes writes succeed through faults, but the write may then apply twice;
    /// if another client wrote the key in between, a reader can see the value come back,
    /// which a linearizability checker reports (the simulator found exactly that: seeds 128
    /// and 135 of the register swarm). Off by default, so writes are linearizable: the
    /// first unknown attempt returns `OutcomeUnknown`. `compare_and_swap` never retries
    /// after one.
    pub retry_writes_after_unknown: bool,
}

impl Default for RawClientConfig {
    fn default() -> Self {
        RawClientConfig {
            deadline: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(500),
            retry_writes_after_unknown: false,
        }
    }
}

type StoreClient = RpcClient<StoreRequest, StoreResult>;

struct Inner {
    cache: RegionCache,
    config: RawClientConfig,
    /// One RPC client per store address.
    stores: Mutex<BTreeMap<String, StoreClient>>,
}

/// A RawKV client. Cheap to clone; clones share the region cache and connections.
#[derive(Clone)]
pub struct RawClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawClient").field("pd", self.inner.cache.pd()).field("config", &self.inner.config).finish()
    }
}

/// How an operation may be retried after an attempt whose outcome is unknown.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No effect: always retried.
    Read,
    /// Applying twice leaves the same state: retried if the config allows.
    Write,
    /// Not idempotent: never retried after an unknown outcome.
    Cas,
}

/// Where an attempt goes.
pub(crate) enum Target<'a> {
    /// The region containing this key.
    Key(&'a [u8]),
    /// The region holding the keys just below `end` (empty: the last region), for a reverse
    /// scan that reads no lower than `floor`.
    Before { end: &'a [u8], floor: &'a [u8] },
}

/// The retry state of one operation.
pub(crate) struct Op {
    pub(crate) name: &'static str,
    kind: Kind,
    retry_after_unknown: bool,
    started: Instant,
    deadline: Instant,
    pub(crate) attempts: u32,
    /// Some attempt got no definite answer: it may have applied.
    pub(crate) unknown: bool,
    /// Some part of a multi-region write certainly applied.
    applied: bool,
    backoff: Duration,
    backoff_max: Duration,
    fast_retries: u32,
    pub(crate) last: String,
    /// Seeds the backoff jitter (a hash of the operation's first key): deterministic, yet
    /// different operations do not retry in lockstep.
    seed: u64,
}

/// A command family a store serves (`StoreRequest::Raw` / `StoreRequest::Txn`): how it is
/// wrapped into a request and its answer unwrapped.
pub(crate) trait Wire {
    /// The family's answer.
    type Resp: std::fmt::Debug;
    /// Wraps the command for its region.
    fn request(self, ctx: Context) -> StoreRequest;
    /// Unwraps an answer of this family (`Err`: an answer of another kind).
    fn response(resp: StoreResponse) -> std::result::Result<Self::Resp, StoreResponse>;
}

impl Wire for RawCommand {
    type Resp = RawResponse;
    fn request(self, ctx: Context) -> StoreRequest {
        StoreRequest::Raw { ctx, cmd: self }
    }
    fn response(resp: StoreResponse) -> std::result::Result<RawResponse, StoreResponse> {
        match resp {
            StoreResponse::Raw(r) => Ok(r),
            other => Err(other),
        }
    }
}

impl Wire for TxnCommand {
    type Resp = TxnResponse;
    fn request(self, ctx: Context) -> StoreRequest {
        StoreRequest::Txn { ctx, cmd: self }
    }
    fn response(resp: StoreResponse) -> std::result::Result<TxnResponse, StoreResponse> {
        match resp {
            StoreResponse::Txn(r) => Ok(r),
            other => Err(other),
        }
    }
}

/// What one attempt came to.
enum Step<R> {
    Done(R),
    /// A transactional refusal: the command did not apply; the caller decides.
    Key(KeyError),
    /// Retry; `fast` skips the pause (fresh routing information arrived).
    Retry {
        fast: bool,
    },
    Stop(ClientError),
}

impl Op {
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The terminal error: unknown if anything may have applied, failed otherwise.
    pub(crate) fn error(&self, reason: String) -> ClientError {
        let (op, attempts, elapsed_ms) = (self.name, self.attempts, self.elapsed_ms());
        if self.unknown {
            ClientError::OutcomeUnknown { op, attempts, elapsed_ms, reason }
        } else if self.applied {
            let reason = format!("{reason} (after other regions had applied their part)");
            ClientError::OutcomeUnknown { op, attempts, elapsed_ms, reason }
        } else {
            ClientError::Failed { op, attempts, elapsed_ms, reason }
        }
    }

    /// A refusal of the arguments: `Invalid` unless an earlier attempt may have applied.
    fn invalid(&self, reason: String) -> ClientError {
        if self.unknown || self.applied {
            self.error(format!("invalid argument: {reason}"))
        } else {
            ClientError::Invalid(reason)
        }
    }

    pub(crate) fn give_up(&self) -> ClientError {
        let deadline_ms = (self.deadline - self.started).as_millis();
        self.error(format!("deadline of {deadline_ms} ms passed; last error: {}", self.last))
    }

    /// A store answered with a response of the wrong kind (a protocol bug). A write may have
    /// applied before the bogus answer was produced.
    pub(crate) fn unexpected(&mut self, response: &impl std::fmt::Debug) -> ClientError {
        self.unknown |= self.kind != Kind::Read;
        self.error(format!("unexpected response {response:?}"))
    }

    /// Pauses before the next retry: not at all after fresh routing information (up to
    /// [`FAST_RETRIES_MAX`] times in a row), else the current backoff with jitter in
    /// `[1/2, 1)`, which then doubles up to the maximum. Never past the deadline.
    pub(crate) async fn pause(&mut self, fast: bool) {
        if fast && self.fast_retries < FAST_RETRIES_MAX {
            self.fast_retries += 1;
            return;
        }
        self.fast_retries = 0;
        let mix = splitmix(self.seed ^ u64::from(self.attempts));
        let jittered = self.backoff.mul_f64(0.5 + (mix % 512) as f64 / 1024.0);
        tokio::time::sleep(jittered.min(self.remaining())).await;
        self.backoff = (self.backoff * 2).min(self.backoff_max);
    }
}

impl RawClient {
    /// Connects to the cluster through PD at `pd_endpoints` (`ip:port`) with the default
    /// configuration. Fails if no PD endpoint answers within the deadline.
    pub async fn connect(pd_endpoints: Vec<String>) -> Result<RawClient> {
        RawClient::connect_with_config(pd_endpoints, RawClientConfig::default()).await
    }

    /// Connects with an explicit configuration (PD calls use its RPC timeout and deadline).
    pub async fn connect_with_config(pd_endpoints: Vec<String>, config: RawClientConfig) -> Result<RawClient> {
        if pd_endpoints.is_empty() {
            return Err(ClientError::Invalid("no pd endpoints given".into()));
        }
        let started = Instant::now();
        let pd_config =
            PdClientConfig { call_timeout: config.rpc_timeout, deadline: config.deadline, ..PdClientConfig::default() };
        let pd = PdClient::with_config(pd_endpoints, pd_config);
        if let Err(err) = pd.get_members().await {
            return Err(ClientError::Failed {
                op: "connect",
                attempts: 0,
                elapsed_ms: started.elapsed().as_millis() as u64,
                reason: err.to_string(),
            });
        }
        Ok(RawClient::with_pd_and_config(pd, config))
    }

    /// A client over an existing PD client, default configuration. Does no I/O.
    pub fn with_pd(pd: PdClient) -> RawClient {
        RawClient::with_pd_and_config(pd, RawClientConfig::default())
    }

    /// A client over an existing PD client with an explicit configuration. Does no I/O.
    pub fn with_pd_and_config(pd: PdClient, config: RawClientConfig) -> RawClient {
        RawClient {
            inner: Arc::new(Inner { cache: RegionCache::new(pd), config, stores: Mutex::new(BTreeMap::new()) }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RawClientConfig {
        &self.inner.config
    }

    /// The routing table (shared by clones).
    pub fn region_cache(&self) -> &RegionCache {
        &self.inner.cache
    }

    /// The value of `key`, `None` if absent.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        let key = key.into();
        check_key(&key)?;
        let mut op = self.op("get", Kind::Read, &key);
        let (_, resp) = self.run(&mut op, Target::Key(&key), |_| RawCommand::Get { key: key.clone() }).await?;
        match resp {
            RawResponse::Value(value) => Ok(value),
            other => Err(op.unexpected(&other)),
        }
    }

    /// The pairs found among `keys` (absent keys are left out), in key order, each key at
    /// most once. Keys may span regions.
    pub async fn batch_get(&self, keys: impl IntoIterator<Item = impl Into<Vec<u8>>>) -> Result<Vec<KvPair>> {
        let keys: Vec<Vec<u8>> = keys.into_iter().map(Into::into).collect();
        check_batch(keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        let mut pending: BTreeSet<Vec<u8>> = keys.into_iter().collect();
        let mut op = self.op("batch_get", Kind::Read, pending.first().expect("batch is not empty"));
        let mut out = Vec::new();
        while let Some(first) = pending.first().cloned() {
            let make = |r: &Region| RawCommand::BatchGet {
                keys: pending.range::<[u8], _>(region_bounds(r)).cloned().collect(),
            };
            let (region, resp) = self.run(&mut op, Target::Key(&first), make).await?;
            match resp {
                RawResponse::Pairs(pairs) => out.extend(pairs),
                other => return Err(op.unexpected(&other)),
            }
            remove_in_region(&mut pending, &region);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Sets `key` to `value`.
    pub async fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<()> {
        self.put_expiring(key.into(), value.into(), 0).await
    }

    /// Sets `key` to `value` for `ttl` (whole milliseconds, at least 1): after that the key
    /// is gone for every reader. The clock is the leader's that accepts the write.
    pub async fn put_with_ttl(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, ttl: Duration) -> Result<()> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if ttl_ms == 0 {
            return Err(ClientError::Invalid(format!("ttl {ttl:?} is under 1 ms")));
        }
        self.put_expiring(key.into(), value.into(), ttl_ms).await
    }

    async fn put_expiring(&self, key: Vec<u8>, value: Vec<u8>, ttl_ms: u64) -> Result<()> {
        check_key(&key)?;
        check_value(&value)?;
        let mut op = self.op("put", Kind::Write, &key);
        let make = |_: &Region| RawCommand::Put { key: key.clone(), value: value.clone(), ttl_ms };
        let (_, resp) = self.run(&mut op, Target::Key(&key), make).await?;
        expect_done(&mut op, resp)
    }

    /// How long `key` has left: `None` if it is absent (or expired), `Some(Duration::ZERO)`
    /// if it never expires.
    pub async fn get_key_ttl(&self, key: impl Into<Vec<u8>>) -> Result<Option<Duration>> {
        let key = key.into();
        check_key(&key)?;
        let mut op = self.op("get_key_ttl", Kind::Read, &key);
        let (_, resp) = self.run(&mut op, Target::Key(&key), |_| RawCommand::GetKeyTtl { key: key.clone() }).await?;
        match resp {
            RawResponse::Ttl(ttl_ms) => Ok(ttl_ms.map(Duration::from_millis)),
            other => Err(op.unexpected(&other)),
        }
    }

    /// Sets every pair (a key given twice takes its last value). Atomic per region only: a
    /// batch spanning regions is written region by region, and an error after some regions
    /// applied says the outcome is unknown.
    pub async fn batch_put(
        &self,
        pairs: impl IntoIterator<Item = (impl Into<Vec<u8>>, impl Into<Vec<u8>>)>,
    ) -> Result<()> {
        let pairs: Vec<KvPair> = pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        check_batch(pairs.len())?;
        pairs.iter().try_for_each(|(k, v)| check_key(k).and_then(|()| check_value(v)))?;
        let mut pending: BTreeMap<Vec<u8>, Vec<u8>> = pairs.into_iter().collect();
        let first = pending.keys().next().expect("batch is not empty").clone();
        let mut op = self.op("batch_put", Kind::Write, &first);
        while let Some(first) = pending.keys().next().cloned() {
            let make = |r: &Region| RawCommand::BatchPut {
                pairs: pending.range::<[u8], _>(region_bounds(r)).map(|(k, v)| (k.clone(), v.clone())).collect(),
                ttls_ms: vec![],
            };
            let (region, resp) = self.run(&mut op, Target::Key(&first), make).await?;
            expect_done(&mut op, resp)?;
            op.applied = true;
            let done: Vec<Vec<u8>> = pending.range::<[u8], _>(region_bounds(&region)).map(|(k, _)| k.clone()).collect();
            for key in done {
                pending.remove(&key);
            }
        }
        Ok(())
    }

    /// Deletes `key` (absent is fine).
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<()> {
        let key = key.into();
        check_key(&key)?;
        let mut op = self.op("delete", Kind::Write, &key);
        let (_, resp) = self.run(&mut op, Target::Key(&key), |_| RawCommand::Delete { key: key.clone() }).await?;
        expect_done(&mut op, resp)
    }

    /// Deletes every key of `keys`. Atomic per region only (see [`RawClient::batch_put`]).
    pub async fn batch_delete(&self, keys: impl IntoIterator<Item = impl Into<Vec<u8>>>) -> Result<()> {
        let keys: Vec<Vec<u8>> = keys.into_iter().map(Into::into).collect();
        check_batch(keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        let mut pending: BTreeSet<Vec<u8>> = keys.into_iter().collect();
        let mut op = self.op("batch_delete", Kind::Write, pending.first().expect("batch is not empty"));
        while let Some(first) = pending.first().cloned() {
            let make = |r: &Region| RawCommand::BatchDelete {
                keys: pending.range::<[u8], _>(region_bounds(r)).cloned().collect(),
            };
            let (region, resp) = self.run(&mut op, Target::Key(&first), make).await?;
            expect_done(&mut op, resp)?;
            op.applied = true;
            remove_in_region(&mut pending, &region);
        }
        Ok(())
    }

    /// Deletes every key in `[start, end)`; an empty `end` means the end of the key space
    /// (an empty `start`, its beginning). Region by region: atomic per region only.
    pub async fn delete_range(&self, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Result<()> {
        let (start, end) = (start.into(), end.into());
        check_range(&start, &end)?;
        if !end.is_empty() && start == end {
            return Ok(());
        }
        let mut op = self.op("delete_range", Kind::Write, &start);
        let mut cursor = start;
        loop {
            let make = |r: &Region| RawCommand::DeleteRange { start_key: cursor.clone(), end_key: clip_end(r, &end) };
            let (region, resp) = self.run(&mut op, Target::Key(&cursor), make).await?;
            expect_done(&mut op, resp)?;
            op.applied = true;
            match next_start(&region, &end) {
                Some(next) => cursor = next,
                None => return Ok(()),
            }
        }
    }

    /// At most `limit` pairs with keys in `[start, end)` in ascending order (empty `end`:
    /// no upper bound), continuing through the regions of the range.
    pub async fn scan(&self, start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>, limit: u32) -> Result<Vec<KvPair>> {
        self.scan_regions(start.into(), end.into(), limit, false).await
    }

    /// At most `limit` pairs with keys in `[start, end)` in descending order, starting from
    /// `end` (empty: the end of the key space), continuing down through the regions.
    pub async fn scan_reverse(
        &self,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
        limit: u32,
    ) -> Result<Vec<KvPair>> {
        self.scan_regions(start.into(), end.into(), limit, true).await
    }

    /// The walk behind [`RawClient::scan`] and [`RawClient::scan_reverse`]: region by region,
    /// the part of `[start, end)` not yet read shrinks from its low end (ascending) or from
    /// its high end (`reverse`) until `limit` pairs are in or the range is done.
    async fn scan_regions(&self, start: Vec<u8>, end: Vec<u8>, limit: u32, reverse: bool) -> Result<Vec<KvPair>> {
        check_range(&start, &end)?;
        check_limit(limit)?;
        let limit = limit as usize;
        let mut out = Vec::new();
        if !end.is_empty() && start == end {
            return Ok(out);
        }
        let mut op =
            if reverse { self.op("scan_reverse", Kind::Read, &end) } else { self.op("scan", Kind::Read, &start) };
        let (mut lower, mut upper) = (start, end);
        loop {
            let want = (limit - out.len()) as u32;
            let make = |r: &Region| RawCommand::Scan {
                start_key: clip_start(r, &lower),
                end_key: clip_end(r, &upper),
                limit: want,
                reverse,
                key_only: false,
            };
            let target = if reverse { Target::Before { end: &upper, floor: &lower } } else { Target::Key(&lower) };
            let (region, resp) = self.run(&mut op, target, make).await?;
            match resp {
                RawResponse::Pairs(pairs) => out.extend(pairs),
                other => return Err(op.unexpected(&other)),
            }
            if out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            if reverse {
                if region.start_key.is_empty() || region.start_key <= lower {
                    return Ok(out);
                }
                upper = region.start_key;
            } else {
                match next_start(&region, &upper) {
                    Some(next) => lower = next,
                    None => return Ok(out),
                }
            }
        }
    }

    /// Atomically sets `key` to `new` if its current value equals `expected` (`None`: the
    /// key must be absent). Returns the value found before and whether it swapped. Never
    /// retried after an attempt whose outcome is unknown: that attempt's error is returned
    /// (`outcome_unknown() == true`) because a retry could not tell its own swap apart.
    pub async fn compare_and_swap(
        &self,
        key: impl Into<Vec<u8>>,
        expected: Option<Vec<u8>>,
        new: impl Into<Vec<u8>>,
    ) -> Result<(Option<Vec<u8>>, bool)> {
        let (key, value) = (key.into(), new.into());
        check_key(&key)?;
        check_value(&value)?;
        if let Some(expected) = &expected {
            check_value(expected)?;
        }
        let mut op = self.op("compare_and_swap", Kind::Cas, &key);
        let make = |_: &Region| RawCommand::CompareAndSwap {
            key: key.clone(),
            expected: expected.clone(),
            value: value.clone(),
            ttl_ms: 0,
        };
        let (_, resp) = self.run(&mut op, Target::Key(&key), make).await?;
        match resp {
            RawResponse::Cas { succeeded, previous } => Ok((previous, succeeded)),
            other => Err(op.unexpected(&other)),
        }
    }

    fn op(&self, name: &'static str, kind: Kind, key: &[u8]) -> Op {
        let retry_after_unknown = match kind {
            Kind::Read => true,
            Kind::Write => self.inner.config.retry_writes_after_unknown,
            Kind::Cas => false,
        };
        self.op_with(name, kind, retry_after_unknown, key)
    }

    /// A new operation with an explicit retry policy after unknown outcomes (transactional
    /// commands are idempotent and always retry).
    pub(crate) fn op_with(&self, name: &'static str, kind: Kind, retry_after_unknown: bool, key: &[u8]) -> Op {
        let config = &self.inner.config;
        let started = Instant::now();
        Op {
            name,
            kind,
            retry_after_unknown,
            started,
            deadline: started + config.deadline,
            attempts: 0,
            unknown: false,
            applied: false,
            backoff: config.backoff_initial,
            backoff_max: config.backoff_max,
            fast_retries: 0,
            last: "no attempt made".into(),
            seed: fnv1a(key) ^ fnv1a(name.as_bytes()),
        }
    }

    fn store_client(&self, addr: &str) -> StoreClient {
        let mut stores = self.inner.stores.lock().unwrap_or_else(|e| e.into_inner());
        stores.entry(addr.to_string()).or_insert_with(|| RpcClient::new(addr)).clone()
    }

    /// Runs the command `make` builds for the region of `target` until it gets an answer,
    /// refreshing routing and backing off between attempts. Returns the region it ran in.
    async fn run<F>(&self, op: &mut Op, target: Target<'_>, make: F) -> Result<(Region, RawResponse)>
    where
        F: Fn(&Region) -> RawCommand,
    {
        let (region, resp) = self.dispatch(op, target, make).await?;
        match resp {
            Ok(resp) => Ok((region, resp)),
            Err(err) => Err(op.error(format!("unexpected key error: {err}"))),
        }
    }

    /// [`RawClient::run`] for any command family: runs the command `make` builds for the
    /// region of `target` until a store answers it (a key error is an answer: the command
    /// did not apply), refreshing routing and backing off between attempts. Returns the
    /// region it ran in.
    pub(crate) async fn dispatch<C, F>(
        &self,
        op: &mut Op,
        target: Target<'_>,
        make: F,
    ) -> Result<(Region, std::result::Result<C::Resp, KeyError>)>
    where
        C: Wire,
        F: Fn(&Region) -> C,
    {
        loop {
            if op.remaining() < ATTEMPT_TIME_MIN {
                return Err(op.give_up());
            }
            let (cached, peer, addr) = match self.route(op, &target).await {
                Ok(route) => route,
                Err(reason) => {
                    tracing::debug!(op = op.name, %reason, "raw client: no route");
                    op.last = reason;
                    op.pause(false).await;
                    continue;
                }
            };
            let cmd = make(&cached.region);
            match self.attempt(op, &cached.region, peer, &addr, cmd).await {
                Step::Done(resp) => return Ok((cached.region, Ok(resp))),
                Step::Key(err) => return Ok((cached.region, Err(err))),
                Step::Retry { fast } => {
                    tracing::debug!(op = op.name, last = %op.last, "raw client: retrying");
                    op.pause(fast).await;
                }
                Step::Stop(err) => return Err(err),
            }
        }
    }

    /// The region, peer and store address for `target` (PD lookups bounded by the deadline).
    async fn route(&self, op: &Op, target: &Target<'_>) -> std::result::Result<(CachedRegion, Peer, String), String> {
        let cache = &self.inner.cache;
        let located = match target {
            Target::Key(key) => tokio::time::timeout(op.remaining(), cache.locate_key(key)).await,
            Target::Before { end, floor } => {
                tokio::time::timeout(op.remaining(), cache.locate_before(end, floor)).await
            }
        };
        let cached = located.map_err(|_| "region lookup timed out".to_string())?.map_err(|e| e.to_string())?;
        let Some(peer) = cached.target_peer() else {
            cache.invalidate_region(cached.region.id);
            return Err(format!("region {} has no peers", cached.region.id));
        };
        match tokio::time::timeout(op.remaining(), cache.store_address(peer.store_id)).await {
            Ok(Ok(addr)) => Ok((cached, peer, addr)),
            Ok(Err(err)) => {
                cache.switch_peer(cached.region.id, peer);
                Err(err.to_string())
            }
            Err(_) => Err("store lookup timed out".to_string()),
        }
    }

    /// One RPC to a store, classified.
    async fn attempt<C: Wire>(&self, op: &mut Op, region: &Region, peer: Peer, addr: &str, cmd: C) -> Step<C::Resp> {
        let cache = &self.inner.cache;
        let ctx = Context { region_id: region.id, region_epoch: region.epoch, peer: Some(peer) };
        let timeout = self.inner.config.rpc_timeout.min(op.remaining());
        op.attempts += 1;
        let result = self.store_client(addr).call(cmd.request(ctx), timeout).await;
        match result {
            Ok(Ok(resp)) => match C::response(resp) {
                Ok(resp) => Step::Done(resp),
                Err(other) => {
                    op.unknown |= op.kind != Kind::Read;
                    Step::Stop(op.error(format!("{addr}: unexpected response {other:?}")))
                }
            },
            Ok(Err(StoreError::Region(err))) => {
                op.last = format!("{addr}: {err}");
                self.on_region_error(op, region, peer, err)
            }
            Ok(Err(StoreError::Invalid(err))) => Step::Stop(op.invalid(err.0)),
            Ok(Err(StoreError::Key(err))) => {
                op.last = format!("{addr}: {err}");
                Step::Key(err)
            }
            Ok(Err(StoreError::Unavailable(reason))) => {
                op.last = format!("{addr}: store unavailable: {reason}");
                cache.switch_peer(region.id, peer);
                Step::Retry { fast: false }
            }
            Ok(Err(StoreError::OutcomeUnknown(reason))) => {
                self.unknown_attempt(op, region, peer, format!("{addr}: store lost track of the command: {reason}"))
            }
            Err(RpcError::Encode(reason)) => Step::Stop(op.invalid(format!("request cannot be encoded: {reason}"))),
            Err(err @ RpcError::Unreachable { .. }) => {
                op.last = err.to_string();
                cache.invalidate_store(peer.store_id);
                cache.switch_peer(region.id, peer);
                Step::Retry { fast: false }
            }
            Err(err) => {
                debug_assert!(err.outcome_unknown());
                self.unknown_attempt(op, region, peer, err.to_string())
            }
        }
    }

    /// An attempt that may have applied: stop unless this operation may retry after one.
    fn unknown_attempt<R>(&self, op: &mut Op, region: &Region, peer: Peer, reason: String) -> Step<R> {
        op.unknown = true;
        if !op.retry_after_unknown {
            return Step::Stop(op.error(reason));
        }
        op.last = reason;
        // The peer may be partitioned away or gone; another peer redirects if it still leads.
        self.inner.cache.switch_peer(region.id, peer);
        Step::Retry { fast: false }
    }

    /// Updates routing from a region error; every one of them means the command did not apply.
    fn on_region_error<R>(&self, op: &mut Op, region: &Region, peer: Peer, err: RegionError) -> Step<R> {
        let cache = &self.inner.cache;
        match err {
            RegionError::NotLeader { leader, .. } => {
                cache.on_not_leader(region.id, leader, peer);
                Step::Retry { fast: leader.is_some() }
            }
            RegionError::EpochNotMatch { current_regions } => {
                let fast = !current_regions.is_empty();
                cache.on_epoch_not_match(region.id, current_regions, peer.store_id);
                Step::Retry { fast }
            }
            RegionError::RegionNotFound { .. } | RegionError::KeyNotInRegion { .. } => {
                cache.invalidate_region(region.id);
                Step::Retry { fast: true }
            }
            RegionError::ServerIsBusy { .. } | RegionError::StaleCommand => Step::Retry { fast: false },
            err @ RegionError::RaftEntryTooLarge { .. } => Step::Stop(op.invalid(err.to_string())),
            _ => {
                cache.invalidate_region(region.id);
                Step::Retry { fast: false }
            }
        }
    }
}

fn expect_done(op: &mut Op, resp: RawResponse) -> Result<()> {
    match resp {
        RawResponse::Done => Ok(()),
        other => Err(op.unexpected(&other)),
    }
}

pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(ClientError::Invalid("key is empty".into()));
    }
    check_bound(key)
}

/// A range bound may be empty (unbounded) but not oversize.
fn check_bound(key: &[u8]) -> Result<()> {
    if key.len() > KEY_SIZE_MAX_BYTES {
        return Err(ClientError::Invalid(format!("key of {} bytes exceeds {KEY_SIZE_MAX_BYTES} bytes", key.len())));
    }
    Ok(())
}

pub(crate) fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > VALUE_SIZE_MAX_BYTES {
        return Err(ClientError::Invalid(format!(
            "value of {} bytes exceeds {VALUE_SIZE_MAX_BYTES} bytes",
            value.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_range(start: &[u8], end: &[u8]) -> Result<()> {
    check_bound(start)?;
    check_bound(end)?;
    if !end.is_empty() && start > end {
        return Err(ClientError::Invalid(format!("range start {start:?} is after its end {end:?}")));
    }
    Ok(())
}

pub(crate) fn check_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit as usize > SCAN_LIMIT_MAX {
        return Err(ClientError::Invalid(format!("scan limit {limit} is not in 1..={SCAN_LIMIT_MAX}")));
    }
    Ok(())
}

pub(crate) fn check_batch(len: usize) -> Result<()> {
    if len == 0 {
        return Err(ClientError::Invalid("batch is empty".into()));
    }
    if len > BATCH_KEYS_MAX {
        return Err(ClientError::Invalid(format!("batch of {len} keys exceeds {BATCH_KEYS_MAX}")));
    }
    Ok(())
}

/// The bounds of `region`'s range, for `BTreeMap::range` over keys.
pub(crate) fn region_bounds(region: &Region) -> (Bound<&[u8]>, Bound<&[u8]>) {
    let end = if region.end_key.is_empty() { Unbounded } else { Excluded(region.end_key.as_slice()) };
    (Included(region.start_key.as_slice()), end)
}

fn remove_in_region(keys: &mut BTreeSet<Vec<u8>>, region: &Region) {
    let done: Vec<Vec<u8>> = keys.range::<[u8], _>(region_bounds(region)).cloned().collect();
    for key in done {
        keys.remove(&key);
    }
}

/// The end of `[.., end)` clipped to `region` (empty: unbounded / the region's end).
pub(crate) fn clip_end(region: &Region, end: &[u8]) -> Vec<u8> {
    match (region.end_key.is_empty(), end.is_empty()) {
        (_, true) => region.end_key.clone(),
        (true, false) => end.to_vec(),
        (false, false) => region.end_key.as_slice().min(end).to_vec(),
    }
}

/// The start of `[start, ..)` clipped to `region`.
fn clip_start(region: &Region, start: &[u8]) -> Vec<u8> {
    region.start_key.as_slice().max(start).to_vec()
}

/// Where a forward walk of `[.., end)` continues after `region`, if it does.
pub(crate) fn next_start(region: &Region, end: &[u8]) -> Option<Vec<u8>> {
    if region.end_key.is_empty() || (!end.is_empty() && region.end_key.as_slice() >= end) {
        None
    } else {
        Some(region.end_key.clone())
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    fn region(start: &[u8], end: &[u8]) -> Region {
        Region { id: 1, start_key: start.to_vec(), end_key: end.to_vec(), ..Default::default() }
    }

    #[test]
    fn clipping_ranges_to_regions() {
        let mid = region(b"c", b"m");
        let last = region(b"m", b"");
        assert_eq!(clip_end(&mid, b""), b"m");
        assert_eq!(clip_end(&mid, b"f"), b"f");
        assert_eq!(clip_end(&mid, b"x"), b"m");
        assert_eq!(clip_end(&last, b""), b"");
        assert_eq!(clip_end(&last, b"x"), b"x");
        assert_eq!(clip_start(&mid, b""), b"c");
        assert_eq!(clip_start(&mid, b"d"), b"d");
        assert_eq!(next_start(&mid, b""), Some(b"m".to_vec()));
        assert_eq!(next_start(&mid, b"m"), None, "end reached exactly at the region end");
        assert_eq!(next_start(&mid, b"m\x00"), Some(b"m".to_vec()));
        assert_eq!(next_start(&mid, b"d"), None);
        assert_eq!(next_start(&last, b""), None);
    }

    #[test]
    fn splitting_keys_across_regions() {
        let regions = [region(b"", b"c"), region(b"c", b"m"), region(b"m", b"")];
        let mut keys: BTreeSet<Vec<u8>> =
            [&b"a"[..], b"b", b"c", b"l\xff", b"m", b"zz"].iter().map(|k| k.to_vec()).collect();
        let groups: Vec<Vec<Vec<u8>>> =
            regions.iter().map(|r| keys.range::<[u8], _>(region_bounds(r)).cloned().collect()).collect();
        assert_eq!(groups[0], vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(groups[1], vec![b"c".to_vec(), b"l\xff".to_vec()]);
        assert_eq!(groups[2], vec![b"m".to_vec(), b"zz".to_vec()]);
        remove_in_region(&mut keys, &regions[1]);
        assert_eq!(keys.len(), 4);
        assert!(!keys.contains(b"c".as_slice()));
    }

    #[test]
    fn validation_edges() {
        assert!(check_key(b"").unwrap_err().is_invalid());
        assert!(check_key(&vec![0; KEY_SIZE_MAX_BYTES]).is_ok());
        assert!(check_key(&vec![0; KEY_SIZE_MAX_BYTES + 1]).is_err());
        assert!(check_value(&[]).is_ok());
        assert!(check_value(&vec![0; VALUE_SIZE_MAX_BYTES]).is_ok());
        assert!(check_value(&vec![0; VALUE_SIZE_MAX_BYTES + 1]).is_err());
        assert!(check_limit(0).is_err());
        assert!(check_limit(1).is_ok());
        assert!(check_limit(SCAN_LIMIT_MAX as u32).is_ok());
        assert!(check_limit(SCAN_LIMIT_MAX as u32 + 1).is_err());
        assert!(check_batch(0).is_err());
        assert!(check_batch(BATCH_KEYS_MAX).is_ok());
        assert!(check_batch(BATCH_KEYS_MAX + 1).is_err());
        assert!(check_range(b"", b"").is_ok());
        assert!(check_range(b"b", b"a").is_err());
        assert!(check_range(b"a", b"a").is_ok());
    }

    /// Bad input is refused before any I/O (this client has no PD endpoints at all).
    #[test]
    fn invalid_input_is_refused_without_io() {
        let client = RawClient::with_pd(PdClient::new(Vec::new()));
        let big_key = vec![1u8; KEY_SIZE_MAX_BYTES + 1];
        let big_value = vec![1u8; VALUE_SIZE_MAX_BYTES + 1];
        block_on(async {
            let errors = vec![
                client.get(Vec::new()).await.unwrap_err(),
                client.get(big_key.clone()).await.unwrap_err(),
                client.put(b"k".to_vec(), big_value.clone()).await.unwrap_err(),
                client.put(Vec::new(), b"v".to_vec()).await.unwrap_err(),
                client.delete(big_key.clone()).await.unwrap_err(),
                client.batch_get(Vec::<Vec<u8>>::new()).await.unwrap_err(),
                client.batch_get(vec![b"a".to_vec(), Vec::new()]).await.unwrap_err(),
                client.batch_put(Vec::<KvPair>::new()).await.unwrap_err(),
                client.batch_put(vec![(b"a".to_vec(), big_value.clone())]).await.unwrap_err(),
                client.batch_delete(Vec::<Vec<u8>>::new()).await.unwrap_err(),
                client.batch_delete((0..=BATCH_KEYS_MAX as u32).map(|i| i.to_be_bytes().to_vec())).await.unwrap_err(),
                client.scan(b"a".to_vec(), b"b".to_vec(), 0).await.unwrap_err(),
                client.scan(b"a".to_vec(), b"b".to_vec(), SCAN_LIMIT_MAX as u32 + 1).await.unwrap_err(),
                client.scan(b"b".to_vec(), b"a".to_vec(), 10).await.unwrap_err(),
                client.scan_reverse(b"a".to_vec(), b"b".to_vec(), 0).await.unwrap_err(),
                client.scan_reverse(big_key.clone(), Vec::new(), 1).await.unwrap_err(),
                client.delete_range(b"z".to_vec(), b"a".to_vec()).await.unwrap_err(),
                client.compare_and_swap(Vec::new(), None, b"v".to_vec()).await.unwrap_err(),
                client.compare_and_swap(b"k".to_vec(), Some(big_value.clone()), b"v".to_vec()).await.unwrap_err(),
                client.compare_and_swap(b"k".to_vec(), None, big_value.clone()).await.unwrap_err(),
            ];
            for err in errors {
                assert!(err.is_invalid(), "{err}");
                assert!(!err.outcome_unknown());
            }
            // Empty ranges need no I/O either.
            assert_eq!(client.scan(b"a".to_vec(), b"a".to_vec(), 5).await.unwrap(), vec![]);
            assert_eq!(client.scan_reverse(b"a".to_vec(), b"a".to_vec(), 5).await.unwrap(), vec![]);
            client.delete_range(b"a".to_vec(), b"a".to_vec()).await.unwrap();
        });
    }

    #[test]
    fn terminal_errors_say_whether_anything_may_have_applied() {
        let client = RawClient::with_pd(PdClient::new(Vec::new()));
        let mut op = client.op("put", Kind::Write, b"k");
        assert!(matches!(op.give_up(), ClientError::Failed { .. }));
        assert!(op.invalid("x".into()).is_invalid());
        op.applied = true;
        assert!(op.give_up().outcome_unknown(), "a multi-region write that applied in part");
        assert!(op.invalid("x".into()).outcome_unknown());
        op.applied = false;
        op.unknown = true;
        assert!(op.give_up().outcome_unknown());
        let mut read = client.op("get", Kind::Read, b"k");
        assert!(read.retry_after_unknown);
        assert!(!read.unexpected(&RawResponse::Done).outcome_unknown());
        assert!(!client.op("compare_and_swap", Kind::Cas, b"k").retry_after_unknown);
    }
}
