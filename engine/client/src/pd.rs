//! The PD client: typed calls for every PD request, retries across endpoints with bounded
//! backoff under an overall deadline, and TSO batching (concurrent `get_ts` callers share
//! one `Tso { count }` round trip).
//!
//! Every PD request is safe to retry: reads are idempotent, `PutStore`, heartbeats,
//! `ReportSplit` and `UpdateGcSafePoint` converge to the same state, and a retried `Tso`,
//! `AllocId` or `AskSplit` only leaves a gap. So every call retries on transport errors
//! (`Unreachable`, timeouts, lost connections) and on `PdError::Unavailable` until its
//! deadline; other `PdError`s are answers and return at once.

use keel_rpc::{RpcClient, RpcError};
use keel_types::proto::pd::{
    ManualOperator, Operator, OperatorStatus, PdError, PdRequest, PdResponse, PdResult, RegionHeartbeat, RegionInfo,
    Store, StoreStats,
};
use keel_types::{PeerId, Region, RegionId, StoreId, Timestamp};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Most timestamps one batched TSO round trip asks for (PD's own per-call limit is 2^18).
pub const TSO_BATCH_MAX: usize = 4096;
/// Most `get_ts` callers that may wait for a batch; more get an error instead of queueing.
pub const TSO_WAITERS_MAX: usize = 1 << 16;

/// Timeouts and backoff of a [`PdClient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdClientConfig {
    /// Timeout of one RPC attempt.
    pub call_timeout: Duration,
    /// Overall deadline of one client call, retries included.
    pub deadline: Duration,
    /// First pause after every endpoint failed once.
    pub backoff_initial: Duration,
    /// Longest pause between rounds of attempts.
    pub backoff_max: Duration,
}

impl Default for PdClientConfig {
    fn default() -> Self {
        PdClientConfig {
            call_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(250),
        }
    }
}

/// Why a PD call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PdClientError {
    /// PD answered with a refusal (e.g. `NotBootstrapped`, `StoreTombstone`, `Invalid`).
    #[error("pd refused: {0}")]
    Pd(PdError),
    /// No endpoint answered before the deadline. `outcome_unknown` is true when at least one
    /// attempt reached PD without an answer, so the request may have taken effect.
    #[error(
        "pd unavailable after {attempts} attempts in {deadline_ms} ms (outcome unknown: {outcome_unknown}): {last}"
    )]
    Unavailable {
        /// The deadline that passed.
        deadline_ms: u64,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure seen.
        last: String,
        /// Whether the request may have taken effect.
        outcome_unknown: bool,
    },
    /// PD answered with a response of the wrong kind (a protocol bug).
    #[error("pd answered {request} with {response}")]
    UnexpectedResponse {
        /// The request kind.
        request: &'static str,
        /// The response received, debug-formatted.
        response: String,
    },
    /// The client was built with no endpoints.
    #[error("no pd endpoints configured")]
    NoEndpoints,
    /// The caller passed an argument PD would refuse (nothing was sent).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// PD served a timestamp not above one it served this client before: the PD's state
    /// was lost or another cluster answered. Never retried (snapshot isolation depends on it).
    #[error("tso went backwards: {got} after {last}")]
    TsoNotMonotonic {
        /// The last timestamp this client handed out.
        last: Timestamp,
        /// The first timestamp of the offending batch.
        got: Timestamp,
    },
}

impl PdClientError {
    /// True when the request may have taken effect on PD despite the error.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, PdClientError::Unavailable { outcome_unknown: true, .. })
    }
}

/// Cluster identity as PD reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdMembers {
    /// Stable cluster id.
    pub cluster_id: u64,
    /// The PD leader's address.
    pub leader: String,
}

/// Ids PD allocated for a split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitIds {
    /// Id of the new (right) region.
    pub new_region_id: RegionId,
    /// One new peer id per peer of the region, in the region's peer order.
    pub new_peer_ids: Vec<PeerId>,
}

/// A run of consecutive timestamps from one TSO call: `last - count + 1 ..= last`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TsBatch {
    /// The last (largest) timestamp.
    pub last: Timestamp,
    /// How many.
    pub count: u32,
}

impl TsBatch {
    /// The first (smallest) timestamp.
    pub fn first(&self) -> Timestamp {
        Timestamp(self.last.0 - u64::from(self.count) + 1)
    }

    /// Every timestamp of the batch, ascending.
    pub fn iter(&self) -> impl Iterator<Item = Timestamp> {
        (self.first().0..=self.last.0).map(Timestamp)
    }
}

type TsWaiter = oneshot::Sender<Result<Timestamp, PdClientError>>;

/// Callers waiting for a timestamp, and whether a flusher task is serving them.
#[derive(Default)]
struct TsoQueue {
    waiters: VecDeque<TsWaiter>,
    flushing: bool,
    /// The last timestamp handed to a `get_ts` caller.
    last: Timestamp,
    /// When `last` arrived from PD.
    last_at: Option<Instant>,
}

struct Inner {
    endpoints: Vec<RpcClient<PdRequest, PdResult>>,
    /// Index of the endpoint that answered last (tried first).
    current: AtomicUsize,
    config: PdClientConfig,
    tso: Mutex<TsoQueue>,
    tso_round_trips: AtomicU64,
}

/// A client of the placement driver. Cheap to clone; clones share connections and the
/// TSO batcher.
#[derive(Clone)]
pub struct PdClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoints: Vec<&str> = self.inner.endpoints.iter().map(|e| e.addr()).collect();
        f.debug_struct("PdClient").field("endpoints", &endpoints).finish()
    }
}

impl PdClient {
    /// A client for the PD endpoints (`ip:port`) with default timeouts. Connects lazily.
    pub fn new(endpoints: Vec<String>) -> PdClient {
        PdClient::with_config(endpoints, PdClientConfig::default())
    }

    /// A client with explicit timeouts and backoff.
    pub fn with_config(endpoints: Vec<String>, config: PdClientConfig) -> PdClient {
        PdClient {
            inner: Arc::new(Inner {
                endpoints: endpoints.into_iter().map(RpcClient::new).collect(),
                current: AtomicUsize::new(0),
                config,
                tso: Mutex::new(TsoQueue::default()),
                tso_round_trips: AtomicU64::new(0),
            }),
        }
    }

    /// How many `Tso` RPC attempts this client has sent (batched and direct).
    pub fn tso_round_trips(&self) -> u64 {
        self.inner.tso_round_trips.load(Ordering::Relaxed)
    }

    /// The cluster id and the PD leader's address.
    pub async fn get_members(&self) -> Result<PdMembers, PdClientError> {
        match self.inner.call(PdRequest::GetMembers).await? {
            PdResponse::Members { cluster_id, leader } => Ok(PdMembers { cluster_id, leader }),
            other => Err(unexpected("GetMembers", other)),
        }
    }

    /// The cluster's first region once it has been bootstrapped, `None` before.
    pub async fn get_bootstrap_region(&self) -> Result<Option<Region>, PdClientError> {
        match self.inner.call(PdRequest::GetBootstrapRegion).await? {
            PdResponse::BootstrapRegion(region) => Ok(region),
            other => Err(unexpected("GetBootstrapRegion", other)),
        }
    }

    /// One fresh id (stores, regions and peers share the id space).
    pub async fn alloc_id(&self) -> Result<u64, PdClientError> {
        Ok(self.alloc_ids(1).await?.start)
    }

    /// `count` consecutive fresh ids.
    pub async fn alloc_ids(&self, count: u32) -> Result<std::ops::Range<u64>, PdClientError> {
        if count == 0 {
            return Err(PdClientError::InvalidArgument("alloc_ids: count 0".into()));
        }
        match self.inner.call(PdRequest::AllocId { count }).await? {
            PdResponse::Ids { first, count: got } if got == count => Ok(first..first + u64::from(count)),
            other => Err(unexpected("AllocId", other)),
        }
    }

    /// Registers or updates a store (its id comes from [`PdClient::alloc_id`]).
    pub async fn put_store(&self, store: Store) -> Result<(), PdClientError> {
        expect_ok("PutStore", self.inner.call(PdRequest::PutStore(store)).await?)
    }

    /// One store, tombstones included.
    pub async fn get_store(&self, id: StoreId) -> Result<Option<Store>, PdClientError> {
        match self.inner.call(PdRequest::GetStore(id)).await? {
            PdResponse::Store(store) => Ok(store),
            other => Err(unexpected("GetStore", other)),
        }
    }

    /// Every store, tombstones included, in id order.
    pub async fn get_all_stores(&self) -> Result<Vec<Store>, PdClientError> {
        match self.inner.call(PdRequest::GetAllStores).await? {
            PdResponse::Stores(stores) => Ok(stores),
            other => Err(unexpected("GetAllStores", other)),
        }
    }

    /// A store's periodic report.
    pub async fn store_heartbeat(&self, stats: StoreStats) -> Result<(), PdClientError> {
        expect_ok("StoreHeartbeat", self.inner.call(PdRequest::StoreHeartbeat(stats)).await?)
    }

    /// A region leader's periodic report; the answer is at most one step to take.
    pub async fn region_heartbeat(&self, heartbeat: RegionHeartbeat) -> Result<Option<Operator>, PdClientError> {
        match self.inner.call(PdRequest::RegionHeartbeat(heartbeat)).await? {
            PdResponse::Operator(op) => Ok(op),
            other => Err(unexpected("RegionHeartbeat", other)),
        }
    }

    /// The region containing `key`, with its leader if PD knows one.
    pub async fn get_region(&self, key: &[u8]) -> Result<Option<RegionInfo>, PdClientError> {
        match self.inner.call(PdRequest::GetRegion { key: key.to_vec() }).await? {
            PdResponse::Region(info) => Ok(info),
            other => Err(unexpected("GetRegion", other)),
        }
    }

    /// The region with id `id`, with its leader if PD knows one.
    pub async fn get_region_by_id(&self, id: RegionId) -> Result<Option<RegionInfo>, PdClientError> {
        match self.inner.call(PdRequest::GetRegionById(id)).await? {
            PdResponse::Region(info) => Ok(info),
            other => Err(unexpected("GetRegionById", other)),
        }
    }

    /// Regions overlapping `[start_key, end_key)` (empty end: unbounded) in key order, at
    /// most `limit` (0: no limit).
    pub async fn scan_regions(
        &self,
        start_key: &[u8],
        end_key: &[u8],
        limit: u32,
    ) -> Result<Vec<RegionInfo>, PdClientError> {
        let req = PdRequest::ScanRegions { start_key: start_key.to_vec(), end_key: end_key.to_vec(), limit };
        match self.inner.call(req).await? {
            PdResponse::Regions(regions) => Ok(regions),
            other => Err(unexpected("ScanRegions", other)),
        }
    }

    /// Ids for splitting `region`: a new region id and one new peer id per peer.
    pub async fn ask_split(&self, region: Region) -> Result<SplitIds, PdClientError> {
        let peers = region.peers.len();
        match self.inner.call(PdRequest::AskSplit { region }).await? {
            PdResponse::SplitIds { new_region_id, new_peer_ids } if new_peer_ids.len() == peers => {
                Ok(SplitIds { new_region_id, new_peer_ids })
            }
            other => Err(unexpected("AskSplit", other)),
        }
    }

    /// Tells PD a split has been applied.
    pub async fn report_split(&self, left: Region, right: Region) -> Result<(), PdClientError> {
        expect_ok("ReportSplit", self.inner.call(PdRequest::ReportSplit { left, right }).await?)
    }

    /// The current GC safe point.
    pub async fn get_gc_safe_point(&self) -> Result<Timestamp, PdClientError> {
        match self.inner.call(PdRequest::GetGcSafePoint).await? {
            PdResponse::GcSafePoint(ts) => Ok(ts),
            other => Err(unexpected("GetGcSafePoint", other)),
        }
    }

    /// Advances the GC safe point to `ts` if it is later; returns the (possibly unchanged)
    /// current safe point.
    pub async fn update_gc_safe_point(&self, ts: Timestamp) -> Result<Timestamp, PdClientError> {
        match self.inner.call(PdRequest::UpdateGcSafePoint(ts)).await? {
            PdResponse::GcSafePoint(ts) => Ok(ts),
            other => Err(unexpected("UpdateGcSafePoint", other)),
        }
    }

    /// Asks PD to run a manual operator on a region (transfer its leader; add, remove or
    /// move a replica). PD refuses one that cannot apply or a region with an operator in
    /// flight; acceptance means the steps will go out, not that they are done.
    pub async fn add_operator(&self, region_id: RegionId, op: ManualOperator) -> Result<(), PdClientError> {
        expect_ok("AddOperator", self.inner.call(PdRequest::AddOperator { region_id, op }).await?)
    }

    /// How busy PD's schedulers are: operators in flight, and created since PD opened.
    pub async fn get_operator_status(&self) -> Result<OperatorStatus, PdClientError> {
        match self.inner.call(PdRequest::GetOperatorStatus).await? {
            PdResponse::OperatorStatus(status) => Ok(status),
            other => Err(unexpected("GetOperatorStatus", other)),
        }
    }

    /// `count` fresh timestamps in one round trip (not batched with other callers).
    pub async fn get_ts_batch(&self, count: u32) -> Result<TsBatch, PdClientError> {
        if count == 0 {
            return Err(PdClientError::InvalidArgument("get_ts_batch: count 0".into()));
        }
        match self.inner.call(PdRequest::Tso { count }).await? {
            PdResponse::Tso { ts, count: got } if got == count && ts.0 >= u64::from(count) => {
                Ok(TsBatch { last: ts, count })
            }
            other => Err(unexpected("Tso", other)),
        }
    }

    /// The newest timestamp this client got from PD if it arrived at most `max_age` ago: a
    /// lower bound of "now" for TTL checks that can tolerate being `max_age` late, without
    /// a round trip. Never use it as a transaction's start or commit timestamp (it is not
    /// fresh, nor unique).
    pub fn low_resolution_ts(&self, max_age: Duration) -> Option<Timestamp> {
        let queue = self.inner.tso.lock().unwrap_or_else(|e| e.into_inner());
        queue.last_at.filter(|at| at.elapsed() <= max_age).map(|_| queue.last)
    }

    /// One fresh timestamp. Concurrent callers share one `Tso { count }` round trip: the
    /// first caller starts a flusher task that sends everyone waiting in one request and
    /// repeats while callers keep arriving. Timestamps handed out by one client only
    /// increase, and each caller's timestamp is later than any it got before.
    pub async fn get_ts(&self) -> Result<Timestamp, PdClientError> {
        let (tx, rx) = oneshot::channel();
        let start_flusher = {
            let mut queue = self.inner.tso.lock().unwrap_or_else(|e| e.into_inner());
            if queue.waiters.len() >= TSO_WAITERS_MAX {
                return Err(PdClientError::Unavailable {
                    deadline_ms: 0,
                    attempts: 0,
                    last: format!("{TSO_WAITERS_MAX} callers already waiting for a timestamp"),
                    outcome_unknown: false,
                });
            }
            queue.waiters.push_back(tx);
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start_flusher {
            tokio::spawn(flush_tso(self.inner.clone()));
        }
        rx.await.unwrap_or_else(|_| {
            Err(PdClientError::Unavailable {
                deadline_ms: 0,
                attempts: 0,
                last: "tso batcher stopped".into(),
                outcome_unknown: true,
            })
        })
    }
}

/// Resets the batcher if the flusher task is dropped mid-flight (runtime shutdown, node
/// killed): waiters still queued are failed (their senders dropped) and the next caller
/// starts a new flusher.
struct FlusherGuard {
    inner: Arc<Inner>,
    /// False once the flusher has finished normally.
    armed: bool,
}

impl Drop for FlusherGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut queue = self.inner.tso.lock().unwrap_or_else(|e| e.into_inner());
        queue.flushing = false;
        queue.waiters.clear();
    }
}

/// Serves queued `get_ts` callers, one `Tso` round trip per batch, until none are left.
async fn flush_tso(inner: Arc<Inner>) {
    let mut guard = FlusherGuard { inner: inner.clone(), armed: true };
    loop {
        let batch: Vec<TsWaiter> = {
            let mut queue = inner.tso.lock().unwrap_or_else(|e| e.into_inner());
            if queue.waiters.is_empty() {
                queue.flushing = false;
                guard.armed = false;
                return;
            }
            let n = queue.waiters.len().min(TSO_BATCH_MAX);
            queue.waiters.drain(..n).collect()
        };
        let count = batch.len() as u32;
        let answer = match inner.call(PdRequest::Tso { count }).await {
            Ok(PdResponse::Tso { ts, count: got }) if got == count && ts.0 >= u64::from(count) => {
                let first = Timestamp(ts.0 - u64::from(count) + 1);
                let mut queue = inner.tso.lock().unwrap_or_else(|e| e.into_inner());
                if first <= queue.last {
                    tracing::error!(%first, last = %queue.last, "pd client: tso went backwards");
                    Err(PdClientError::TsoNotMonotonic { last: queue.last, got: first })
                } else {
                    queue.last = ts;
                    queue.last_at = Some(Instant::now());
                    Ok(first)
                }
            }
            Ok(other) => Err(unexpected("Tso", other)),
            Err(err) => Err(err),
        };
        match answer {
            Ok(first) => {
                for (i, waiter) in batch.into_iter().enumerate() {
                    let _ = waiter.send(Ok(Timestamp(first.0 + i as u64)));
                }
            }
            Err(err) => {
                for waiter in batch {
                    let _ = waiter.send(Err(err.clone()));
                }
            }
        }
    }
}

impl Inner {
    /// Sends `req` to the endpoints in turn until one answers, pausing with exponential
    /// backoff after each round in which all failed, until the overall deadline.
    async fn call(&self, req: PdRequest) -> Result<PdResponse, PdClientError> {
        let n = self.endpoints.len();
        if n == 0 {
            return Err(PdClientError::NoEndpoints);
        }
        let deadline = Instant::now() + self.config.deadline;
        let mut backoff = self.config.backoff_initial;
        let mut attempts = 0u32;
        let mut outcome_unknown = false;
        let mut last = String::from("no attempt made");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let idx = self.current.load(Ordering::Relaxed) % n;
            let endpoint = &self.endpoints[idx];
            if matches!(req, PdRequest::Tso { .. }) {
                self.tso_round_trips.fetch_add(1, Ordering::Relaxed);
            }
            attempts += 1;
            match endpoint.call(req.clone(), self.config.call_timeout.min(left)).await {
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(PdError::Unavailable(reason))) => {
                    // PD answered, so it did not apply the request.
                    last = format!("{}: pd unavailable: {reason}", endpoint.addr());
                }
                Ok(Err(err)) => return Err(PdClientError::Pd(err)),
                Err(err) => {
                    outcome_unknown |= err.outcome_unknown();
                    if let RpcError::Encode(reason) = &err {
                        return Err(PdClientError::InvalidArgument(reason.clone()));
                    }
                    last = err.to_string();
                }
            }
            tracing::debug!(endpoint = endpoint.addr(), %last, "pd client: attempt failed");
            // Move on to the next endpoint (unless another caller already did).
            let _ = self.current.compare_exchange(idx, (idx + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
            if (attempts as usize).is_multiple_of(n) {
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(backoff.min(left)).await;
                backoff = (backoff * 2).min(self.config.backoff_max);
            }
        }
        Err(PdClientError::Unavailable {
            deadline_ms: self.config.deadline.as_millis() as u64,
            attempts,
            last,
            outcome_unknown,
        })
    }
}

fn unexpected(request: &'static str, response: PdResponse) -> PdClientError {
    PdClientError::UnexpectedResponse { request, response: format!("{response:?}") }
}

fn expect_ok(request: &'static str, response: PdResponse) -> Result<(), PdClientError> {
    match response {
        PdResponse::Ok => Ok(()),
        other => Err(unexpected(request, other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_batch_bounds() {
        let b = TsBatch { last: Timestamp(10), count: 3 };
        assert_eq!(b.first(), Timestamp(8));
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![Timestamp(8), Timestamp(9), Timestamp(10)]);
    }

    #[test]
    fn only_unanswered_attempts_make_the_outcome_unknown() {
        let unknown =
            PdClientError::Unavailable { deadline_ms: 1, attempts: 1, last: String::new(), outcome_unknown: true };
        assert!(unknown.outcome_unknown());
        assert!(!PdClientError::Pd(PdError::NotBootstrapped).outcome_unknown());
    }
}
