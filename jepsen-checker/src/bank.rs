//! The bank checker: every successful read of all accounts must sum to the invariant
//! total, and (when the workload forbids it) no balance may be negative.
//!
//! Reads are ops with `:f :read` whose value is a map of account → balance (`nil`
//! balances count as 0). Transfers and other ops are ignored.

use crate::history::{History, OpType, ParseError};
use crate::report::Anomaly;
use crate::value::Value;

/// Bank checker settings.
#[derive(Clone, Debug, Default)]
pub struct BankConfig {
    /// The invariant total; `None`: the first successful read's sum.
    pub total: Option<i64>,
    /// Flag negative balances.
    pub negative_forbidden: bool,
}

/// The result.
#[derive(Clone, Debug)]
pub struct BankReport {
    /// Anomalies (wrong-total, negative-balance).
    pub anomalies: Vec<Anomaly>,
    /// Successful reads checked.
    pub reads: usize,
    /// The total checked against.
    pub total: Option<i64>,
}

/// Checks `h`.
pub fn check(h: &History, cfg: &BankConfig) -> Result<BankReport, ParseError> {
    let mut total = cfg.total;
    let mut anomalies = Vec::new();
    let mut reads = 0;
    for op in &h.ops {
        if op.f != "read" || op.outcome != OpType::Ok {
            continue;
        }
        let Value::Map(entries) = &op.value else {
            return Err(ParseError {
                line: op.line,
                message: format!("a bank read must return a map of account to balance, found {}", op.value),
            });
        };
        reads += 1;
        let mut sum: i64 = 0;
        for (acct, bal) in entries {
            let b = match bal {
                Value::Nil => 0,
                Value::Int(b) => *b,
                other => {
                    return Err(ParseError {
                        line: op.line,
                        message: format!("balance of account {acct} is {other}, expected an integer"),
                    })
                }
            };
            sum = sum.saturating_add(b);
            if cfg.negative_forbidden && b < 0 {
                anomalies.push(Anomaly {
                    kind: "negative-balance".into(),
                    txns: vec![op.id],
                    explanation: format!(
                        "read by process {} (line {}) saw account {acct} at {b}, below zero.",
                        op.process, op.line
                    ),
                });
            }
        }
        let expected = *total.get_or_insert(sum);
        if sum != expected {
            anomalies.push(Anomaly {
                kind: "wrong-total".into(),
                txns: vec![op.id],
                explanation: format!(
                    "read by process {} (line {}) saw {} summing to {sum}, but the total is always {expected}: the read is not a consistent snapshot (or money was created or destroyed).",
                    op.process, op.line, op.value
                ),
            });
        }
    }
    Ok(BankReport { anomalies, reads, total })
}
