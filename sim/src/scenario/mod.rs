//! Scenarios: a cluster shape, a workload and its checks, run under the chosen nemeses.

mod bank;
mod counter;
mod list_append;
pub mod register;
mod repair;
mod scan;

use crate::runner::{RunConfig, ScenarioOutcome};

/// Workloads `cargo sim -- run --workload W` accepts.
pub const WORKLOADS: &[&str] = &["counter", "register", "scan", "repair", "bank", "list-append"];

/// Fault families the scenarios understand.
pub const NEMESES: &[&str] = &["kill", "partition", "loss", "pause", "skew"];

/// Runs the scenario `cfg.workload` names. Call inside a madsim runtime.
pub async fn run(cfg: &RunConfig) -> ScenarioOutcome {
    match cfg.workload.as_str() {
        "counter" => counter::run(cfg).await,
        "register" => register::run(cfg).await,
        "scan" => scan::run(cfg).await,
        "bank" => bank::run(cfg).await,
        "list-append" => list_append::run(cfg).await,
        "repair" => repair::run(cfg).await,
        other => ScenarioOutcome { violation: Some(format!("unknown workload {other}")), ..Default::default() },
    }
}
