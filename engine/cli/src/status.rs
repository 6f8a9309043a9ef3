//! The status HTTP server of `keel pd` and `keel server` (`--status-addr`), on axum:
//! `/metrics` (Prometheus text), `/status` (version, uptime, ids), `/ready` (200 once the
//! process serves, 503 before) and `/regions` (JSON).
//!
//! The server starts before the PD or store it describes, so `/ready` answers 503 while a
//! node still waits for PD; [`Status::attach`] makes it ready.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keel_pd::{OperatorKind, Pd, PdMember, SharedPd};
use keel_raftstore::StoreHandle;
use keel_types::proto::pd::{PdRequest, PdResponse, RegionInfo};
use keel_types::Region;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::net::TcpListener;

/// What a status server describes, once it is up.
pub enum Target {
    /// A placement driver running alone.
    Pd(SharedPd),
    /// A member of a replicated placement driver (its state machine runs on the leader).
    PdMember(PdMember),
    /// A storage node and its data directory (whose size `/metrics` reports).
    Store {
        /// The store loop.
        store: StoreHandle,
        /// Data directory.
        data_dir: PathBuf,
    },
}

/// The shared state of one status server.
#[derive(Clone)]
pub struct Status(Arc<Inner>);

struct Inner {
    role: &'static str,
    started: Instant,
    target: OnceLock<Target>,
}

impl Status {
    /// Binds `addr` and serves the status endpoints for a process of `role` (`pd` or
    /// `store`) in the background. Binding is checked now: a taken port is a start-up error.
    pub async fn start(addr: &str, role: &'static str) -> Result<Status, String> {
        let listener =
            TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on status address {addr}: {e}"))?;
        let status = Status(Arc::new(Inner { role, started: Instant::now(), target: OnceLock::new() }));
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/status", get(status_page))
            .route("/ready", get(ready))
            .route("/regions", get(regions))
            .with_state(status.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "status server stopped");
            }
        });
        Ok(status)
    }

    /// The PD or store is up: `/ready` answers 200 from now on.
    pub fn attach(&self, target: Target) {
        let _ = self.0.target.set(target);
    }
}

async fn metrics(State(status): State<Status>) -> Response {
    match status.0.target.get() {
        Some(Target::Store { store, data_dir }) => {
            let regions = store.status().await;
            let id = store.store_id().to_string();
            let gauge = |what: &str, v: i64| keel_metrics::STORE_GAUGES.with_label_values(&[id.as_str(), what]).set(v);
            gauge("regions", regions.len() as i64);
            gauge("leaders", regions.iter().filter(|r| r.is_leader).count() as i64);
            gauge("size_bytes", dir_size(data_dir) as i64);
        }
        Some(Target::Pd(pd)) => export_operators(&pd.lock().unwrap_or_else(|e| e.into_inner())),
        Some(Target::PdMember(member)) => {
            member.with_leader_pd(|pd| export_operators(pd));
        }
        None => {}
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], keel_metrics::gather()).into_response()
}

/// Exports PD's operator counters (a leader's: they restart with each leadership).
fn export_operators(pd: &Pd) {
    for kind in OperatorKind::ALL {
        let c = pd.operator_counters(kind);
        let name = format!("{kind:?}");
        for (outcome, value) in
            [("created", c.created), ("finished", c.finished), ("timed_out", c.timed_out), ("cancelled", c.cancelled)]
        {
            // PD's counters only grow; the exported counter catches up to them.
            let counter = keel_metrics::PD_OPERATORS.with_label_values(&[name.as_str(), outcome]);
            counter.inc_by(value.saturating_sub(counter.get()));
        }
    }
}

async fn status_page(State(status): State<Status>) -> Json<Value> {
    let mut page = json!({
        "role": status.0.role,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": status.0.started.elapsed().as_secs_f64(),
        "ready": status.0.target.get().is_some(),
    });
    match status.0.target.get() {
        Some(Target::Store { store, .. }) => page["store_id"] = json!(store.store_id()),
        Some(Target::Pd(pd)) => {
            let pd = pd.lock().unwrap_or_else(|e| e.into_inner());
            page["cluster_id"] = json!(pd.cluster_id());
            page["bootstrapped"] = json!(pd.is_bootstrapped());
        }
        Some(Target::PdMember(member)) => {
            page["pd_leader"] = json!(member.leader());
            if let Some((cluster_id, bootstrapped)) =
                member.with_leader_pd(|pd| (pd.cluster_id(), pd.is_bootstrapped()))
            {
                page["cluster_id"] = json!(cluster_id);
                page["bootstrapped"] = json!(bootstrapped);
            }
        }
        None => {}
    }
    Json(page)
}

async fn ready(State(status): State<Status>) -> (StatusCode, &'static str) {
    let serving = match status.0.target.get() {
        Some(Target::Pd(pd)) => pd.lock().unwrap_or_else(|e| e.into_inner()).failure().is_none(),
        // A member serves its role (leader or follower) as long as its process runs.
        Some(Target::Store { .. } | Target::PdMember(_)) => true,
        None => false,
    };
    if serving {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn regions(State(status): State<Status>) -> Response {
    let list: Vec<Value> = match status.0.target.get() {
        Some(Target::Store { store, .. }) => store
            .status()
            .await
            .into_iter()
            .map(|r| {
                let mut v = region_json(&r.region);
                v["is_leader"] = json!(r.is_leader);
                v["term"] = json!(r.term);
                v["applied_index"] = json!(r.applied_index);
                v
            })
            .collect(),
        Some(Target::Pd(pd)) => {
            let scan = PdRequest::ScanRegions { start_key: vec![], end_key: vec![], limit: 0 };
            match pd.lock().unwrap_or_else(|e| e.into_inner()).handle(scan) {
                Ok(PdResponse::Regions(infos)) => infos.iter().map(region_info_json).collect(),
                Ok(_) | Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "pd cannot list regions\n").into_response(),
            }
        }
        Some(Target::PdMember(member)) => {
            let scan = PdRequest::ScanRegions { start_key: vec![], end_key: vec![], limit: 0 };
            match member.with_leader_pd(|pd| pd.handle(scan)) {
                Some(Ok(PdResponse::Regions(infos))) => infos.iter().map(region_info_json).collect(),
                _ => return (StatusCode::SERVICE_UNAVAILABLE, "not the pd leader\n").into_response(),
            }
        }
        None => return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response(),
    };
    Json(Value::Array(list)).into_response()
}

fn region_json(r: &Region) -> Value {
    json!({
        "id": r.id,
        "start_key": r.start_key.escape_ascii().to_string(),
        "end_key": r.end_key.escape_ascii().to_string(),
        "epoch": { "version": r.epoch.version, "conf_ver": r.epoch.conf_ver },
        "peers": r.peers.iter().map(|p| json!({ "id": p.id, "store_id": p.store_id, "role": format!("{:?}", p.role) })).collect::<Vec<_>>(),
    })
}

fn region_info_json(info: &RegionInfo) -> Value {
    let mut v = region_json(&info.region);
    v["leader_store_id"] = json!(info.leader.as_ref().map(|l| l.store_id));
    v
}

/// Bytes under `dir` (files only; unreadable entries count as 0).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}
