//! The list-append scenario: [`PROCESSES`] client processes run Elle list-append
//! transactions (1–4 appends / reads over [`KEYS`] keys; 2PC, async commit and 1PC mixed)
//! under the run's nemeses; the history is checked by jepsen-checker's elle checker at
//! snapshot isolation. Liveness after healing and the transaction counters as in the bank
//! scenario.

use crate::runner::{CheckModel, RunConfig, ScenarioOutcome};
use crate::scenario::bank::{run_txn_scenario, ProcessArgs};
use keel_workloads::list_append::{list_key, run_process, ListAppendConfig};

/// Client processes: enough that transactions overlap on the same keys (conflicts, lock
/// resolution, and the orderings Elle checks) and a run commits thousands of them.
const PROCESSES: u64 = 96;
/// Lists. Appends to one list serialize (each reads the list and writes it back longer), so
/// with few lists the throughput is capped by the hottest ones (32 lists committed ~2,500
/// transactions in 30 s whether 32 or 64 processes ran); 128 keep about a third of the
/// transactions conflicting.
const KEYS: u64 = 128;

/// Runs the scenario.
pub async fn run(cfg: &RunConfig) -> ScenarioOutcome {
    let la = ListAppendConfig { keys: KEYS, ..ListAppendConfig::default() };
    let keys = (0..la.keys).map(list_key).collect();
    run_txn_scenario(
        cfg,
        PROCESSES,
        keys,
        CheckModel::ListAppendSi,
        |_client| async { Ok(()) },
        move |client, a: ProcessArgs| run_process(client, a.history, a.progress, a.process, la.clone(), a.seed, a.stop),
    )
    .await
}
