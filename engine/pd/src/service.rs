//! Serving a [`Pd`] over keel-rpc — and, in the production build, TiKV's `pdpb.PD` gRPC
//! service on the same port (see [`crate::grpc`]).

use crate::{Error, Pd, PdConfig};
use keel_storage::Engine;
use keel_types::proto::pd::{PdRequest, PdResult};
use keel_types::Clock;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A PD shared between the RPC handlers (and tests that want to look inside).
pub type SharedPd = Arc<Mutex<Pd>>;

/// The one path every PD request takes, whichever protocol it arrived in: the request runs
/// under the lock (never across an `.await`), and a storage failure wakes the server to stop.
#[derive(Clone)]
pub(crate) struct PdCaller {
    pd: SharedPd,
    stopped: Arc<Notify>,
}

impl PdCaller {
    /// A caller of `pd`.
    pub(crate) fn new(pd: SharedPd) -> PdCaller {
        PdCaller { pd, stopped: Arc::new(Notify::new()) }
    }

    /// Answers one request (and records its latency per method).
    pub(crate) fn call(&self, req: PdRequest) -> PdResult {
        let method = req.method();
        let start = tokio::time::Instant::now();
        let (result, failed) = {
            let mut pd = self.pd.lock().unwrap_or_else(|e| e.into_inner());
            let result = pd.handle(req);
            (result, pd.failure().is_some())
        };
        keel_metrics::RPC_DURATION.with_label_values(&[method]).observe(start.elapsed().as_secs_f64());
        if result.is_err() {
            keel_metrics::RPC_ERRORS.with_label_values(&[method]).inc();
        }
        if failed {
            self.stopped.notify_one();
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
    let pd = Pd::open(config, engine, clock)?;
    tracing::info!(cluster_id = pd.cluster_id(), addr = %pd.config().advertise_addr, "pd: serving");
    serve_pd(Arc::new(Mutex::new(pd)), listener).await
}

/// Serves an opened PD on `listener` (`PdRequest` in, `PdResult` out; in the production build
/// also gRPC `pdpb.PD`) until a storage failure stops it.
pub async fn serve_pd(pd: SharedPd, listener: TcpListener) -> Result<(), Error> {
    let caller = PdCaller::new(pd.clone());
    let stopped = caller.stopped.clone();
    let native = {
        let caller = caller.clone();
        move |req: PdRequest| {
            let caller = caller.clone();
            async move { caller.call(req) }
        }
    };
    #[cfg(not(madsim))]
    let serving = {
        let (tx, rx) = tokio::sync::mpsc::channel(keel_kvproto::GRPC_CONNECTIONS_QUEUED_MAX);
        let cluster_id = pd.lock().unwrap_or_else(|e| e.into_inner()).cluster_id();
        tokio::spawn(keel_kvproto::serve_grpc(rx, crate::grpc::service(caller, cluster_id)));
        keel_rpc::serve_mux(listener, native, tx)
    };
    #[cfg(madsim)]
    let serving = keel_rpc::serve(listener, native);
    // `biased`: an unbiased select! draws from an RNG madsim does not control.
    tokio::select! {
        biased;
        () = serving => unreachable!("serve never returns"),
        () = stopped.notified() => {}
    }
    let reason = pd.lock().unwrap_or_else(|e| e.into_inner()).failure().unwrap_or("unknown").to_string();
    Err(Error::Stopped(reason))
}
