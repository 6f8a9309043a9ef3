//! Raft traffic between stores: one bounded queue and one sender task per destination
//! store, so a slow or partitioned store never holds up the store loop or the others.
//! Messages that do not fit are dropped — raft retransmits.
//!
//! The sender keeps up to [`RAFT_CALLS_IN_FLIGHT_MAX`] batches on the wire at once instead of
//! waiting for each batch's ack before sending the next: on one connection, and queued by
//! one task, they arrive in the order they were sent (the receiving store queues raft
//! batches in arrival order, see `service::handle`).

use keel_client::PdClient;
use keel_raftstore::Transport;
use keel_rpc::RpcClient;
use keel_types::proto::store::{RaftEnvelope, StoreRequest, StoreResult};
use keel_types::StoreId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// Raft batches queued per destination store before new ones are dropped.
const QUEUED_BATCHES_MAX: usize = 256;
/// Timeout of one raft RPC (raft messages are fire-and-forget; this bounds a stall).
const RAFT_CALL_TIMEOUT: Duration = Duration::from_millis(1000);
/// Envelopes merged into one RPC at most.
const ENVELOPES_PER_CALL_MAX: usize = 1024;
/// Raft RPCs to one store awaiting their ack at once.
const RAFT_CALLS_IN_FLIGHT_MAX: usize = 8;

/// The production raft transport: resolves store addresses through PD.
pub struct RpcTransport {
    pd: PdClient,
    queues: Mutex<BTreeMap<StoreId, mpsc::Sender<Vec<RaftEnvelope>>>>,
}

impl RpcTransport {
    /// A transport resolving stores through `pd`.
    pub fn new(pd: PdClient) -> Arc<RpcTransport> {
        Arc::new(RpcTransport { pd, queues: Mutex::new(BTreeMap::new()) })
    }
}

impl Transport for RpcTransport {
    fn send(&self, to: StoreId, msgs: Vec<RaftEnvelope>) {
        let mut queues = self.queues.lock().expect("transport lock");
        let queue = queues.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUED_BATCHES_MAX);
            tokio::spawn(sender(self.pd.clone(), to, rx));
            tx
        });
        if let Err(mpsc::error::TrySendError::Closed(_)) = queue.try_send(msgs) {
            queues.remove(&to);
        }
    }
}

async fn sender(pd: PdClient, to: StoreId, mut rx: mpsc::Receiver<Vec<RaftEnvelope>>) {
    let mut client: Option<RpcClient<StoreRequest, StoreResult>> = None;
    let in_flight = Arc::new(Semaphore::new(RAFT_CALLS_IN_FLIGHT_MAX));
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < ENVELOPES_PER_CALL_MAX {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        if client.is_none() {
            match pd.get_store(to).await {
                Ok(Some(store)) => client = Some(RpcClient::new(store.address)),
                _ => continue,
            }
        }
        // BUGGIFY: lose the batch (raft retransmits), or give the call little time.
        if keel_types::buggify!(0.02) {
            continue;
        }
        let timeout = if keel_types::buggify!(0.1) { RAFT_CALL_TIMEOUT / 20 } else { RAFT_CALL_TIMEOUT };
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let rpc = client.as_ref().expect("resolved above");
        match rpc.start(StoreRequest::Raft(batch), timeout).await {
            Ok(call) => {
                tokio::spawn(async move {
                    if let Err(err) = call.reply().await {
                        tracing::debug!(store = to, %err, "raft send failed");
                    }
                    drop(permit);
                });
            }
            Err(err) => {
                tracing::debug!(store = to, %err, "raft send failed");
                if !err.outcome_unknown() {
                    // Unreachable: the store may have moved; resolve again next time.
                    client = None;
                }
            }
        }
    }
}
