//! Serving a [`Pd`] over keel-rpc — and, in the production build, TiKV's `pdpb.PD` gRPC
//! service on the same port (see [`crate::grpc`]).

use crate::replica::{self, Member};
use crate::{Error, Pd, PdConfig};
use keel_storage::Engine;
use keel_types::proto::pd::{PdRequest, PdResult};
use keel_types::Clock;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A PD shared between the RPC handlers (and tests that want to look inside).
pub type SharedPd = Arc<Mutex<Pd>>;

/// Who answers: a lone PD's state machine, or this member of a replicated PD.
#[derive(Clone)]
enum Backend {
    Lone(SharedPd),
    Replicated(Arc<Member>),
}

/// The one path every PD request takes, whichever protocol it arrived in. A lone PD runs the
/// request under the lock (never across an `.await`), and a storage failure wakes the server
/// to stop; a replicated member answers as [`Member::call`] says.
#[derive(Clone)]
pub(crate) struct PdCaller {
    backend: Backend,
    stopped: Arc<Notify>,
}

impl PdCaller {
    /// A caller of a lone PD.
    pub(crate) fn lone(pd: SharedPd) -> PdCaller {
        PdCaller { backend: Backend::Lone(pd), stopped: Arc::new(Notify::new()) }
    }

    /// The cluster id (0 while a new member has not learnt it yet).
    #[cfg(not(madsim))]
    pub(crate) fn cluster_id(&self) -> u64 {
        match &self.backend {
            Backend::Lone(pd) => pd.lock().unwrap_or_else(|e| e.into_inner()).cluster_id(),
            Backend::Replicated(member) => member.cluster_id().unwrap_or(0),
        }
    }

    /// Answers one request (and records its latency per method).
    pub(crate) async fn call(&self, req: PdRequest) -> PdResult {
        let method = req.method();
        let start = tokio::time::Instant::now();
        let result = match &self.backend {
            Backend::Lone(pd) => {
                let (result, failed) = {
                    let mut pd = pd.lock().unwrap_or_else(|e| e.into_inner());
                    let result = pd.handle(req);
                    (result, pd.failure().is_some())
                };
                if failed {
                    self.stopped.notify_one();
                }
                result
            }
            Backend::Replicated(member) => member.call(req).await,
        };
        keel_metrics::RPC_DURATION.with_label_values(&[method]).observe(start.elapsed().as_secs_f64());
        if result.is_err() {
            keel_metrics::RPC_ERRORS.with_label_values(&[method]).inc();
        }
        result
    }
}

/// Opens a PD over `engine` and serves it on `listener` until a storage failure stops it
/// (then returns `Err(Error::Stopped)`; restart the PD from disk). Returns an error at once
/// if the PD cannot open.
pub async fn run_pd(
    config: PdConfig,
    engine: Arc<dyn Engine>,
    clock: Clock,
    listener: TcpListener,
) -> Result<(), Error> {
    if config.is_replicated() {
        let (member, replica) = start_member(config, engine, clock)?;
        return serve_member(member, replica, listener).await;
    }
    let pd = Pd::open(config, engine, clock)?;
    tracing::info!(cluster_id = pd.cluster_id(), addr = %pd.config().advertise_addr, "pd: serving");
    serve_pd(Arc::new(Mutex::new(pd)), listener).await
}

/// A member of a replicated PD, as status pages see it.
#[derive(Clone)]
pub struct PdMember(Arc<Member>);

impl PdMember {
    /// The address of the member this one last knew as leader.
    pub fn leader(&self) -> Option<String> {
        self.0.leader()
    }

    /// Runs `f` on the state machine if this member is the serving leader.
    pub fn with_leader_pd<R>(&self, f: impl FnOnce(&mut Pd) -> R) -> Option<R> {
        self.0.with_pd(f)
    }
}

/// Opens a member of the replicated PD `config.members` over `engine`: returns its handle and
/// its raft loop, which [`serve_member`] runs.
pub fn start_member(
    config: PdConfig,
    engine: Arc<dyn Engine>,
    clock: Clock,
) -> Result<(PdMember, impl std::future::Future<Output = Result<(), Error>>), Error> {
    let addr = config.advertise_addr.clone();
    let (member, replica) = replica::start(config, engine, clock)?;
    tracing::info!(%addr, "pd: serving as a member of a replicated pd");
    Ok((PdMember(member), replica))
}

/// Serves a member on `listener` while its raft loop runs; returns when the loop stops (a
/// storage failure: restart the member from disk).
pub async fn serve_member(
    member: PdMember,
    replica: impl std::future::Future<Output = Result<(), Error>>,
    listener: TcpListener,
) -> Result<(), Error> {
    let caller = PdCaller { backend: Backend::Replicated(member.0), stopped: Arc::new(Notify::new()) };
    // `biased`: an unbiased select! draws from an RNG madsim does not control.
    tokio::select! {
        biased;
        stopped = replica => Err(Error::Stopped(match stopped {
            Ok(()) => "the member loop ended".to_string(),
            Err(e) => e.to_string(),
        })),
        () = serve_caller(caller, listener) => unreachable!("serve never returns"),
    }
}

/// Serves an opened lone PD on `listener` (`PdRequest` in, `PdResult` out; in the production
/// build also gRPC `pdpb.PD`) until a storage failure stops it.
pub async fn serve_pd(pd: SharedPd, listener: TcpListener) -> Result<(), Error> {
    let caller = PdCaller::lone(pd.clone());
    let stopped = caller.stopped.clone();
    // `biased`: an unbiased select! draws from an RNG madsim does not control.
    tokio::select! {
        biased;
        () = serve_caller(caller, listener) => unreachable!("serve never returns"),
        () = stopped.notified() => {}
    }
    let reason = pd.lock().unwrap_or_else(|e| e.into_inner()).failure().unwrap_or("unknown").to_string();
    Err(Error::Stopped(reason))
}

/// Serves `caller` on `listener` forever: the native protocol, and in the production build
/// TiKV's gRPC on the same port.
async fn serve_caller(caller: PdCaller, listener: TcpListener) {
    let native = {
        let caller = caller.clone();
        move |req: PdRequest| {
            let caller = caller.clone();
            async move { caller.call(req).await }
        }
    };
    #[cfg(not(madsim))]
    {
        let (tx, rx) = tokio::sync::mpsc::channel(keel_kvproto::GRPC_CONNECTIONS_QUEUED_MAX);
        tokio::spawn(keel_kvproto::serve_grpc(rx, crate::grpc::service(caller)));
        keel_rpc::serve_mux(listener, native, tx).await
    }
    #[cfg(madsim)]
    keel_rpc::serve(listener, native).await
}
