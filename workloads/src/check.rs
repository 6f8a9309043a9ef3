//! Judging a recorded history: which jepsen-checker model applies to which workload, and
//! one verdict (a violation described in words, or none). Shared by the simulator and the
//! real-process kill tests of the `keel` binary, so both hold keel to the same checks.

use std::time::Duration;

/// Which checker judges a scenario's history.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CheckModel {
    /// Per-key linearizable compare-and-swap registers, initially absent.
    CasRegister,
    /// Bank: every read sums to `total`, no balance below zero.
    Bank {
        /// The invariant total.
        total: i64,
    },
    /// Elle list-append transactions at snapshot isolation (G2-item allowed).
    ListAppendSi,
}

/// Judges a history with jepsen-checker (outside the simulation: the checker may use threads).
/// Returns the violation found, or None when the history is valid.
pub fn check_history(jsonl: &str, model: CheckModel) -> Option<String> {
    use jepsen_checker::linear::{check, LinConfig, LinModel, LinVerdict};
    let history = match jepsen_checker::parse(jsonl, Some(jepsen_checker::Format::Jsonl)) {
        Ok(h) => h,
        Err(e) => return Some(format!("history unreadable: {e:?}")),
    };
    let lin_model = match model {
        CheckModel::CasRegister => LinModel::CasRegister,
        CheckModel::Bank { total } => return check_bank(&history, total),
        CheckModel::ListAppendSi => return check_list_append(&history),
    };
    let cfg =
        LinConfig { model: lin_model, threads: 1, time_limit: Some(Duration::from_secs(60)), ..LinConfig::default() };
    match check(&history, &cfg) {
        Err(e) => Some(format!("history rejected by the checker: {e:?}")),
        Ok(report) => match report.verdict {
            LinVerdict::Valid => None,
            LinVerdict::Invalid(v) => {
                let explanation = jepsen_checker::linear::explain(&history, &v).join("; ");
                Some(format!("not linearizable: {explanation}"))
            }
            LinVerdict::Unknown(why) => Some(format!("linearizability unknown: {why}")),
        },
    }
}

fn check_bank(history: &jepsen_checker::History, total: i64) -> Option<String> {
    use jepsen_checker::bank::{check, BankConfig};
    match check(history, &BankConfig { total: Some(total), negative_forbidden: true }) {
        Err(e) => Some(format!("history rejected by the bank checker: {e:?}")),
        Ok(report) if report.anomalies.is_empty() => None,
        Ok(report) => {
            let first = &report.anomalies[0];
            Some(format!("bank: {} anomalies, first {}: {}", report.anomalies.len(), first.kind, first.explanation))
        }
    }
}

fn check_list_append(history: &jepsen_checker::History) -> Option<String> {
    use jepsen_checker::elle::{check, Consistency, TxnModel};
    match check(history, TxnModel::ListAppend, Consistency::SnapshotIsolation) {
        Err(e) => Some(format!("history rejected by the list-append checker: {e:?}")),
        Ok(report) if report.valid => None,
        Ok(report) => {
            let kinds: Vec<&str> = report.anomalies.iter().map(|a| a.kind.as_str()).collect();
            let first = report.anomalies.first().map_or(String::new(), |a| a.explanation.clone());
            Some(format!("not snapshot isolation: anomalies {kinds:?}; first: {first}"))
        }
    }
}
