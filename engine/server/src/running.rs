//! A started storage node: waiting for it to stop, and stopping it gracefully (leaders handed
//! to other stores first, so clients see a leader change instead of an election timeout).

use crate::NodeError;
use keel_raftstore::StoreHandle;
use keel_types::proto::pd::Operator;
use keel_types::PeerRole;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often a graceful shutdown re-checks (and re-asks for) its leader transfers.
const SHUTDOWN_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A running storage node (from [`crate::start_node`]).
pub struct Node {
    pub(crate) store: StoreHandle,
    pub(crate) store_task: JoinHandle<Result<(), String>>,
    /// The RPC accept loop and the background tasks (bootstrap, store heartbeats, raw TTL purge, GC).
    pub(crate) tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// The store loop's handle, for status pages and operations tools.
    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    /// Waits until the store loop ends: only a disk failure ends it (the node must then
    /// restart from disk).
    pub async fn wait(&mut self) -> Result<(), NodeError> {
        let result = match (&mut self.store_task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(NodeError::Storage(e)),
            Err(e) => Err(NodeError::Storage(format!("store loop panicked: {e}"))),
        };
        self.abort_tasks();
        result
    }

    /// Stops the node gracefully: asks every region it leads to hand leadership to a voter
    /// on another store and waits (up to `deadline`) until it leads none, then stops
    /// accepting connections and stops the store loop between rounds. Every acknowledged
    /// write was synced before it was acknowledged, so nothing is left to flush; the apply
    /// state is rebuilt from the raft log at the next start. Returns how many regions it
    /// still led when it stopped (0 unless the deadline passed).
    pub async fn shutdown(self, deadline: Duration) -> usize {
        let until = tokio::time::Instant::now() + deadline;
        let mut round = 0usize;
        let leading = loop {
            let led: Vec<_> = self.store.status().await.into_iter().filter(|r| r.is_leader).collect();
            if led.is_empty() || tokio::time::Instant::now() >= until {
                break led.len();
            }
            for status in &led {
                let others: Vec<_> = status
                    .region
                    .peers
                    .iter()
                    .filter(|p| p.store_id != self.store.store_id() && p.role == PeerRole::Voter)
                    .collect();
                if others.is_empty() {
                    continue;
                }
                // A different target each round, in case one is lagging behind.
                let target = *others[round % others.len()];
                self.store.operator(status.region.id, Operator::TransferLeader(target)).await;
            }
            round += 1;
            tokio::time::sleep(SHUTDOWN_POLL_INTERVAL).await;
        };
        self.abort_tasks();
        self.store_task.abort();
        tracing::info!(store_id = self.store.store_id(), still_leading = leading, "store: stopped");
        leading
    }

    fn abort_tasks(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
