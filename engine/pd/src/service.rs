//! Serving a [`Pd`] over keel-rpc.

use crate::{Error, Pd, PdConfig};
use keel_storage::Engine;
use keel_types::proto::pd::{PdRequest, PdResult};
use keel_types::Clock;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A PD shared between the RPC handlers (and tests that want to look inside).
pub type SharedPd = Arc<Mutex<Pd>>;

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

/// Serves an opened PD on `listener` (`PdRequest` in, `PdResult` out) until a storage failure
/// stops it. Each request takes the lock once, never across an `.await`.
pub async fn serve_pd(pd: SharedPd, listener: TcpListener) -> Result<(), Error> {
    let stopped = Arc::new(Notify::new());
    let handler = {
        let pd = pd.clone();
        let stopped = stopped.clone();
        move |req: PdRequest| {
            let pd = pd.clone();
            let stopped = stopped.clone();
            async move {
                let (result, failed) = {
                    let mut pd = pd.lock().unwrap_or_else(|e| e.into_inner());
                    let result: PdResult = pd.handle(req);
                    (result, pd.failure().is_some())
                };
                if failed {
                    stopped.notify_one();
                }
                result
            }
        }
    };
    // `biased`: an unbiased select! draws from an RNG madsim does not control.
    tokio::select! {
        biased;
        () = keel_rpc::serve(listener, handler) => unreachable!("serve never returns"),
        () = stopped.notified() => {}
    }
    let reason = pd.lock().unwrap_or_else(|e| e.into_inner()).failure().unwrap_or("unknown").to_string();
    Err(Error::Stopped(reason))
}
