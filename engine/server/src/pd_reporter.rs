//! Region heartbeats and split reports from the store loop to PD, through a bounded queue
//! and a background task so the store loop never waits on PD.

use keel_client::PdClient;
use keel_raftstore::PdReporter;
use keel_types::proto::pd::RegionHeartbeat;
use keel_types::Region;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Reports queued before new ones are dropped (the next heartbeat repeats the news).
const QUEUED_REPORTS_MAX: usize = 1024;

enum Report {
    Heartbeat(RegionHeartbeat),
    Split(Region, Region),
}

/// Forwards the store loop's reports to PD.
pub struct PdForwarder {
    tx: mpsc::Sender<Report>,
}

impl PdForwarder {
    /// Starts the forwarding task.
    pub fn start(pd: PdClient) -> Arc<PdForwarder> {
        let (tx, mut rx) = mpsc::channel(QUEUED_REPORTS_MAX);
        tokio::spawn(async move {
            while let Some(report) = rx.recv().await {
                let result = match report {
                    Report::Heartbeat(hb) => pd.region_heartbeat(hb).await.map(|_| ()),
                    Report::Split(left, right) => pd.report_split(left, right).await,
                };
                if let Err(err) = result {
                    tracing::debug!(%err, "report to pd failed");
                }
            }
        });
        Arc::new(PdForwarder { tx })
    }
}

impl PdReporter for PdForwarder {
    fn region_heartbeat(&self, hb: RegionHeartbeat) {
        let _ = self.tx.try_send(Report::Heartbeat(hb));
    }

    fn report_split(&self, left: Region, right: Region) {
        let _ = self.tx.try_send(Report::Split(left, right));
    }
}
