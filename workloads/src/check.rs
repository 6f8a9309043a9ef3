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

/// A checker's judgement of a history.
#[derive(Clone, Debug, Default)]
pub struct Judgement {
    /// The violation found, in words, or `None` when the history is valid.
    pub violation: Option<String>,
    /// jepsen-checker's self-contained HTML page of the counterexample (a violation's
    /// timeline or its anomalies), when there is one.
    pub page: Option<String>,
}

impl Judgement {
    fn violation(text: String) -> Judgement {
        Judgement { violation: Some(text), page: None }
    }
}

/// Judges a history with jepsen-checker (outside the simulation: the checker may use threads).
/// Returns the violation found, or None when the history is valid.
pub fn check_history(jsonl: &str, model: CheckModel) -> Option<String> {
    judge(jsonl, model).violation
}

/// Like [`check_history`], keeping the checker's HTML page of the counterexample.
pub fn judge(jsonl: &str, model: CheckModel) -> Judgement {
    use jepsen_checker::linear::{check, LinConfig, LinModel, LinVerdict};
    let history = match jepsen_checker::parse(jsonl, Some(jepsen_checker::Format::Jsonl)) {
        Ok(h) => h,
        Err(e) => return Judgement::violation(format!("history unreadable: {e:?}")),
    };
    let lin_model = match model {
        CheckModel::CasRegister => LinModel::CasRegister,
        CheckModel::Bank { total } => return check_bank(&history, total),
        CheckModel::ListAppendSi => return check_list_append(&history),
    };
    let cfg =
        LinConfig { model: lin_model, threads: 1, time_limit: Some(Duration::from_secs(60)), ..LinConfig::default() };
    match check(&history, &cfg) {
        Err(e) => Judgement::violation(format!("history rejected by the checker: {e:?}")),
        Ok(report) => match report.verdict {
            LinVerdict::Valid => Judgement::default(),
            LinVerdict::Invalid(v) => {
                let lines = jepsen_checker::linear::explain(&history, &v);
                let page = jepsen_checker::html::timeline(&history, &v, &lines);
                Judgement { violation: Some(format!("not linearizable: {}", lines.join("; "))), page: Some(page) }
            }
            LinVerdict::Unknown(why) => Judgement::violation(format!("linearizability unknown: {why}")),
        },
    }
}

fn check_bank(history: &jepsen_checker::History, total: i64) -> Judgement {
    use jepsen_checker::bank::{check, BankConfig};
    match check(history, &BankConfig { total: Some(total), negative_forbidden: true }) {
        Err(e) => Judgement::violation(format!("history rejected by the bank checker: {e:?}")),
        Ok(report) if report.anomalies.is_empty() => Judgement::default(),
        Ok(report) => {
            let first = &report.anomalies[0];
            let text =
                format!("bank: {} anomalies, first {}: {}", report.anomalies.len(), first.kind, first.explanation);
            let page = jepsen_checker::html::anomalies("Bank check", std::slice::from_ref(&text), &report.anomalies);
            Judgement { violation: Some(text), page: Some(page) }
        }
    }
}

fn check_list_append(history: &jepsen_checker::History) -> Judgement {
    use jepsen_checker::elle::{check, Consistency, TxnModel};
    match check(history, TxnModel::ListAppend, Consistency::SnapshotIsolation) {
        Err(e) => Judgement::violation(format!("history rejected by the list-append checker: {e:?}")),
        Ok(report) if report.valid => Judgement::default(),
        Ok(report) => {
            let kinds: Vec<&str> = report.anomalies.iter().map(|a| a.kind.as_str()).collect();
            let first = report.anomalies.first().map_or(String::new(), |a| a.explanation.clone());
            let text = format!("not snapshot isolation: anomalies {kinds:?}; first: {first}");
            let page = jepsen_checker::html::anomalies(
                "Transactional anomalies",
                std::slice::from_ref(&text),
                &report.anomalies,
            );
            Judgement { violation: Some(text), page: Some(page) }
        }
    }
}
