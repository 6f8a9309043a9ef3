//! The status endpoints of real `keel pd` / `keel server` processes: `/metrics` parses as
//! Prometheus text (with a parser, not string matching) and shows the traffic just sent;
//! `/status`, `/ready` and `/regions` answer JSON / 200; `--log-format json --log-file`
//! writes one JSON object per line.

mod common;

use common::{http_get, Cluster};
use prometheus_parse::{Scrape, Value};

fn scrape(addr: &str) -> Scrape {
    let (code, body) = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "/metrics of {addr}: {body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("/metrics is Prometheus text")
}

/// The sample count of histogram `name` (with `label = value`, if given).
fn histogram_count(s: &Scrape, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    s.samples.iter().find_map(|x| match &x.value {
        Value::Histogram(buckets) if x.metric == name && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)) => {
            buckets.iter().map(|b| b.count).reduce(f64::max)
        }
        _ => None,
    })
}

fn scalar(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples.iter().find_map(|x| match x.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)
            if x.metric == name && labels.iter().all(|(k, want)| x.labels.get(k) == Some(*want)) =>
        {
            Some(v)
        }
        _ => None,
    })
}

#[test]
fn metrics_status_ready_and_regions_of_live_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("pd-json.log");
    let log_arg = log.display().to_string();
    let cluster =
        Cluster::start(dir.path(), 3, &["--log-format", "json", "--log-file", &log_arg, "--log-level", "info"]);
    cluster.wait_ready();
    for i in 0..20 {
        let (ok, _, err) = cluster.ctl(&["put", &format!("k{i}"), "v"]);
        assert!(ok, "put: {err}");
    }
    let (ok, out, _) = cluster.ctl(&["get", "k7"]);
    assert!(ok && out.trim() == "v");

    // Every store applied the writes; the leader's store served them.
    let mut puts_served = 0.0;
    let mut leaders = 0.0;
    let mut proposals = 0.0;
    for (i, status) in cluster.store_status.iter().enumerate() {
        let s = scrape(status);
        let applied = scalar(&s, "keel_raft_applied_entries_total", &[]).expect("applied counter");
        assert!(applied >= 20.0, "store {i} applied {applied} entries");
        assert!(scalar(&s, "keel_raft_committed_entries_total", &[]).expect("commit counter") >= 20.0);
        let syncs = histogram_count(&s, "keel_store_sync_duration_seconds", None).expect("sync histogram");
        assert!(syncs >= 1.0, "store {i} synced {syncs} times");
        assert!(histogram_count(&s, "keel_raft_apply_duration_seconds", None).expect("apply histogram") >= 1.0);
        assert!(
            s.docs.contains_key("keel_txn_conflicts_total") && s.docs.contains_key("keel_txn_lock_resolutions_total")
        );
        assert!(scalar(&s, "keel_store", &[("what", "regions")]).expect("region gauge") >= 1.0);
        assert!(scalar(&s, "keel_store", &[("what", "size_bytes")]).expect("size gauge") > 0.0);
        leaders += scalar(&s, "keel_store", &[("what", "leaders")]).expect("leader gauge");
        puts_served += histogram_count(&s, "keel_rpc_duration_seconds", Some(("method", "raw_put"))).unwrap_or(0.0);
        proposals += scalar(&s, "keel_raft_proposals_total", &[]).expect("proposal counter");

        let (code, body) = http_get(status, "/status").expect("GET /status");
        assert_eq!(code, 200);
        let page: serde_json::Value = serde_json::from_str(&body).expect("/status is JSON");
        assert_eq!(page["role"], "store");
        assert!(page["store_id"].as_u64().is_some_and(|id| id > 0), "{page}");
        assert_eq!(http_get(status, "/ready").expect("GET /ready").0, 200);
        let (code, body) = http_get(status, "/regions").expect("GET /regions");
        assert_eq!(code, 200);
        let regions: Vec<serde_json::Value> = serde_json::from_str(&body).expect("/regions is a JSON array");
        assert!(!regions.is_empty() && regions[0]["peers"].as_array().is_some_and(|p| p.len() == 3), "{body}");
    }
    assert!(puts_served >= 20.0, "raw_put latencies recorded: {puts_served}");
    assert!(leaders >= 1.0, "some store leads the region");
    assert!(proposals >= 20.0, "the leaders proposed the writes: {proposals}");

    // PD: per-method latency of its own RPCs, its status and its region list.
    let s = scrape(&cluster.pd_status);
    assert!(histogram_count(&s, "keel_rpc_duration_seconds", Some(("method", "pd_get_region"))).unwrap_or(0.0) >= 1.0);
    assert!(
        histogram_count(&s, "keel_rpc_duration_seconds", Some(("method", "pd_region_heartbeat"))).unwrap_or(0.0) >= 1.0
    );
    assert!(s.docs.contains_key("keel_pd_operators_total"), "operator family listed");
    let (_, body) = http_get(&cluster.pd_status, "/status").expect("GET /status");
    let page: serde_json::Value = serde_json::from_str(&body).expect("/status is JSON");
    assert_eq!((page["role"].as_str(), page["bootstrapped"].as_bool()), (Some("pd"), Some(true)), "{page}");
    let (_, body) = http_get(&cluster.pd_status, "/regions").expect("GET /regions");
    let regions: Vec<serde_json::Value> = serde_json::from_str(&body).expect("/regions is a JSON array");
    assert!(regions.iter().any(|r| r["leader_store_id"].as_u64().is_some()), "{body}");

    // PD logged JSON lines to its --log-file.
    let text = std::fs::read_to_string(&log).expect("pd log file");
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(lines.iter().any(|l| l["fields"]["message"] == "pd: serving"), "{text}");
}
