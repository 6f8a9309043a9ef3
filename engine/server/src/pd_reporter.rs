//! Region heartbeats and split reports from the store loop to PD, through a bounded queue
//! and a background task so the store loop never waits on PD; and the automatic splits the
//! store loop's split checker asks for.

use crate::service::split_region;
use keel_client::PdClient;
use keel_raftstore::{PdReporter, StoreHandle};
use keel_txn::ConcurrencyManager;
use keel_types::proto::pd::RegionHeartbeat;
use keel_types::{Peer, Region, RegionId};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{mpsc, Semaphore};

/// Reports queued before new ones are dropped (the next heartbeat repeats the news).
const QUEUED_REPORTS_MAX: usize = 1024;
/// Reports sent to PD at once.
const REPORTS_IN_FLIGHT_MAX: usize = 32;

enum Report {
    Heartbeat(RegionHeartbeat),
    Split(Region, Region),
}

/// Forwards the store loop's reports to PD, and runs the splits it asks for.
pub struct PdForwarder {
    tx: mpsc::Sender<Report>,
    pd: PdClient,
    /// The store loop's handle, set once the loop exists (splits propose through it).
    store: OnceLock<StoreHandle>,
    /// Regions with a split in flight, so a slow split is not asked for twice.
    splitting: Arc<Mutex<BTreeSet<RegionId>>>,
    /// The node's transaction concurrency manager: its max_ts is synced from PD whenever a
    /// replica here becomes a leader.
    cm: ConcurrencyManager,
}

impl PdForwarder {
    /// Starts the forwarding task.
    pub fn start(pd: PdClient, cm: ConcurrencyManager) -> Arc<PdForwarder> {
        let (tx, mut rx) = mpsc::channel(QUEUED_REPORTS_MAX);
        let forwarder = Arc::new(PdForwarder { tx, pd, store: OnceLock::new(), splitting: Arc::default(), cm });
        let me = forwarder.clone();
        tokio::spawn(async move {
            // Each report is one PD round trip: sent one at a time, a store with a thousand
            // leaders fell behind its own heartbeats and dropped split reports, so PD kept
            // answering with pre-split regions. Several run at once instead.
            let in_flight = Arc::new(Semaphore::new(REPORTS_IN_FLIGHT_MAX));
            while let Some(report) = rx.recv().await {
                let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
                let me = me.clone();
                tokio::spawn(async move {
                    me.forward(report).await;
                    drop(permit);
                });
            }
        });
        forwarder
    }

    /// Sends one report to PD (and a heartbeat's scheduling step to the store loop).
    async fn forward(&self, report: Report) {
        let result = match report {
            Report::Heartbeat(hb) => {
                let region_id = hb.region.id;
                match self.pd.region_heartbeat(hb).await {
                    // PD's scheduling step for this region goes to its leader here.
                    Ok(Some(op)) => {
                        if let Some(store) = self.store.get() {
                            store.operator(region_id, op).await;
                        }
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Report::Split(left, right) => self.pd.report_split(left, right).await,
        };
        if let Err(err) = result {
            tracing::debug!(%err, "report to pd failed");
        }
    }

    /// Connects the forwarder to the store loop it reports for.
    pub fn attach(&self, store: StoreHandle) {
        let _ = self.store.set(store);
    }
}

impl PdReporter for PdForwarder {
    fn region_heartbeat(&self, hb: RegionHeartbeat) {
        let _ = self.tx.try_send(Report::Heartbeat(hb));
    }

    fn report_split(&self, left: Region, right: Region) {
        let _ = self.tx.try_send(Report::Split(left, right));
    }

    fn became_leader(&self, _region: &Region) {
        let generation = self.cm.begin_max_ts_sync();
        let (pd, cm) = (self.pd.clone(), self.cm.clone());
        tokio::spawn(async move {
            // Until this lands, async-commit prewrites are refused (ServerIsBusy).
            loop {
                match pd.get_ts().await {
                    Ok(ts) => return cm.finish_max_ts_sync(generation, ts),
                    Err(err) => {
                        tracing::debug!(%err, "max_ts sync: pd not reachable");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            }
        });
    }

    fn check_stale_peer(&self, region: &Region, peer: Peer) {
        let Some(store) = self.store.get().cloned() else { return };
        let (pd, region_id, conf_ver) = (self.pd.clone(), region.id, region.epoch.conf_ver);
        tokio::spawn(async move {
            if let Ok(Some(info)) = pd.get_region_by_id(region_id).await {
                if info.region.epoch.conf_ver > conf_ver && info.region.peer(peer.id).is_none() {
                    store.destroy_stale_peer(region_id, peer.id, info.region.epoch.conf_ver).await;
                }
            }
        });
    }

    fn check_removal(&self, region_id: RegionId, peer: Peer) {
        let Some(store) = self.store.get().cloned() else { return };
        let pd = self.pd.clone();
        tokio::spawn(async move {
            if let Ok(Some(info)) = pd.get_region_by_id(region_id).await {
                store.down_peers(region_id, peer.id, info.down_peers.iter().map(|p| p.id).collect()).await;
            }
        });
    }

    fn ask_split(&self, region: Region, split_key: Vec<u8>) {
        let Some(store) = self.store.get().cloned() else { return };
        if !self.splitting.lock().expect("splitting lock").insert(region.id) {
            return;
        }
        let (pd, splitting) = (self.pd.clone(), self.splitting.clone());
        tokio::spawn(async move {
            let id = region.id;
            if let Err(err) = split_region(&store, &pd, region, split_key).await {
                tracing::debug!(region = id, %err, "automatic split failed");
            }
            splitting.lock().expect("splitting lock").remove(&id);
        });
    }
}
