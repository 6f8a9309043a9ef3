//! The list-append scenario: the bank scenario's client processes run Elle list-append
//! transactions (1–4 appends / reads over [`ListAppendConfig::default`]'s keys; 2PC, async
//! commit and 1PC mixed) under the run's nemeses; the history is checked by jepsen-checker's elle checker at snapshot isolation.
//! Liveness after healing and the transaction counters as in the bank scenario.

use crate::runner::{CheckModel, RunConfig, ScenarioOutcome};
use crate::scenario::bank::{run_txn_scenario, ProcessArgs};
use keel_workloads::list_append::{list_key, run_process, ListAppendConfig};

/// Runs the scenario.
pub async fn run(cfg: &RunConfig) -> ScenarioOutcome {
    let la = ListAppendConfig::default();
    let keys = (0..la.keys).map(list_key).collect();
    run_txn_scenario(
        cfg,
        keys,
        CheckModel::ListAppendSi,
        |_client| async { Ok(()) },
        move |client, a: ProcessArgs| run_process(client, a.history, a.progress, a.process, la.clone(), a.seed, a.stop),
    )
    .await
}
