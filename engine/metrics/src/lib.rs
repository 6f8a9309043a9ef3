//! The process's metrics: the counters and histograms that raftstore, txn, the node's
//! service and PD update as they work, and [`gather`] that renders them as Prometheus text
//! for the `keel` binary's `/metrics` endpoint.
//!
//! Every metric is a plain atomic that code only ever writes; nothing in keel reads a metric
//! to decide anything, so the simulator's runs stay deterministic (under `--cfg madsim` the
//! nodes of one simulation share these process-wide values, which nobody looks at). Durations
//! are measured with `tokio::time::Instant`, which the simulator controls.
//!
//! Layering: depends on nothing of keel, so every engine crate may use it. It must never
//! serve HTTP: that is the binary's job (`engine/cli/src/status.rs`).
#![deny(missing_docs)]

use prometheus::{
    exponential_buckets, register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge_vec, Encoder, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, TextEncoder,
};
use std::sync::LazyLock;

/// Latency buckets from 50 µs to ~3.3 s (doubling): loopback RPCs, fsyncs and applies.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.000_05, 2.0, 17).expect("valid bucket parameters")
}

/// Server-side latency of each RPC method (store and PD requests), in seconds.
pub static RPC_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "keel_rpc_duration_seconds",
        "Server-side latency of RPCs by method",
        &["method"],
        latency_buckets()
    )
    .expect("metric registers once")
});

/// RPCs answered with an error, by method.
pub static RPC_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("keel_rpc_errors_total", "RPCs answered with an error, by method", &["method"])
        .expect("metric registers once")
});

/// Commands proposed to raft by this process's leaders.
pub static RAFT_PROPOSALS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("keel_raft_proposals_total", "Commands proposed to raft").expect("metric registers once")
});

/// Raft log entries seen committed (all regions).
pub static RAFT_COMMITS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("keel_raft_committed_entries_total", "Raft log entries committed")
        .expect("metric registers once")
});

/// Raft log entries applied to the state machine (all regions).
pub static RAFT_APPLIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("keel_raft_applied_entries_total", "Raft log entries applied").expect("metric registers once")
});

/// Time to apply one round's committed entries (all regions), in seconds.
pub static APPLY_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "keel_raft_apply_duration_seconds",
        "Time to apply a store-loop round's committed entries",
        latency_buckets()
    )
    .expect("metric registers once")
});

/// Time of the store loop's one synced write per round (group commit), in seconds.
pub static SYNC_DURATION: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "keel_store_sync_duration_seconds",
        "Time of the store loop's synced write of a round's raft state",
        latency_buckets()
    )
    .expect("metric registers once")
});

/// Transactions that met a write conflict (prewrite saw a newer commit or another lock).
pub static TXN_CONFLICTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("keel_txn_conflicts_total", "Transaction write conflicts and lock conflicts")
        .expect("metric registers once")
});

/// Locks resolved (committed or rolled back on behalf of their owner).
pub static TXN_LOCK_RESOLUTIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("keel_txn_lock_resolutions_total", "Locks resolved on behalf of other transactions")
        .expect("metric registers once")
});

/// Per-store gauges the status server fills at scrape time: `regions`, `leaders`,
/// `size_bytes`.
pub static STORE_GAUGES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "keel_store",
        "Per-store figures at scrape time (what = regions | leaders | size_bytes)",
        &["store", "what"]
    )
    .expect("metric registers once")
});

/// PD scheduling operators by kind and outcome (created, finished, timed_out, cancelled).
pub static PD_OPERATORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "keel_pd_operators_total",
        "PD scheduling operators by kind and outcome",
        &["kind", "outcome"]
    )
    .expect("metric registers once")
});

/// Renders every metric in the Prometheus text exposition format (families not yet touched
/// are registered first, so every family is always listed).
pub fn gather() -> String {
    LazyLock::force(&RPC_DURATION);
    LazyLock::force(&RPC_ERRORS);
    LazyLock::force(&RAFT_PROPOSALS);
    LazyLock::force(&RAFT_COMMITS);
    LazyLock::force(&RAFT_APPLIES);
    LazyLock::force(&APPLY_DURATION);
    LazyLock::force(&SYNC_DURATION);
    LazyLock::force(&TXN_CONFLICTS);
    LazyLock::force(&TXN_LOCK_RESOLUTIONS);
    LazyLock::force(&STORE_GAUGES);
    LazyLock::force(&PD_OPERATORS);
    let mut out = Vec::new();
    // Encoding into a Vec only fails on metrics with invalid names, which ours are not.
    if let Err(e) = TextEncoder::new().encode(&prometheus::gather(), &mut out) {
        return format!("# encoding failed: {e}\n");
    }
    String::from_utf8(out).unwrap_or_default()
}
