//! The list-append workload (Elle): transactions of 1–4 micro-ops, each an append of a
//! unique value to one of a few keys or a read of a key's whole list. A key's list is stored
//! as its comma-separated decimal values; an append reads the list and writes it back one
//! longer, so concurrent appends to one key conflict. Checked by jepsen-checker's elle
//! list-append checker at snapshot isolation (G2-item write skew is allowed).

use crate::commit_mode::random_options;
use crate::history::{History, OpKind};
use crate::register::Progress;
use keel_client::{ClientError, Transaction, TransactionClient, TransactionStats};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Shape of the workload.
#[derive(Clone, Debug)]
pub struct ListAppendConfig {
    /// Number of distinct keys.
    pub keys: u64,
    /// Most micro-ops per transaction.
    pub ops_max: usize,
    /// Pause between a process's transactions (upper bound, uniform).
    pub think_time_max: Duration,
}

impl Default for ListAppendConfig {
    fn default() -> Self {
        ListAppendConfig { keys: 32, ops_max: 4, think_time_max: Duration::from_millis(20) }
    }
}

/// The storage key of list `k`.
pub fn list_key(k: u64) -> Vec<u8> {
    format!("la/{k:03}").into_bytes()
}

/// Decodes a stored list (absent: empty).
pub fn decode(bytes: Option<&[u8]>) -> Vec<u64> {
    match bytes {
        None => Vec::new(),
        Some(b) => {
            String::from_utf8_lossy(b).split(',').filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
        }
    }
}

/// Encodes a list.
pub fn encode(list: &[u64]) -> Vec<u8> {
    list.iter().map(u64::to_string).collect::<Vec<_>>().join(",").into_bytes()
}

/// One micro-op.
#[derive(Clone, Debug)]
enum Mop {
    Append(u64, u64),
    Read(u64),
}

fn invoke_value(mops: &[Mop]) -> Value {
    Value::Array(
        mops.iter()
            .map(|m| match m {
                Mop::Append(k, v) => json!(["append", k, v]),
                Mop::Read(k) => json!(["r", k, null]),
            })
            .collect(),
    )
}

/// Runs the micro-ops; returns the completed value (reads filled in).
async fn execute(txn: &mut Transaction, mops: &[Mop]) -> Result<Value, ClientError> {
    let mut out = Vec::with_capacity(mops.len());
    for m in mops {
        match m {
            Mop::Append(k, v) => {
                let key = list_key(*k);
                let mut list = decode(txn.get(key.clone()).await?.as_deref());
                list.push(*v);
                txn.put(key, encode(&list))?;
                out.push(json!(["append", k, v]));
            }
            Mop::Read(k) => {
                let list = decode(txn.get(list_key(*k)).await?.as_deref());
                out.push(json!(["r", k, list]));
            }
        }
    }
    txn.commit().await?;
    Ok(Value::Array(out))
}

/// Runs one process until `stop` is set; returns its client's transaction counters.
/// Appended values are `process * 10^9 + n`, unique per run.
pub async fn run_process(
    client: TransactionClient,
    history: History,
    progress: Progress,
    process: u64,
    cfg: ListAppendConfig,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> TransactionStats {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut next_value = process * 1_000_000_000;
    while !stop.load(Ordering::Relaxed) {
        let n = rng.gen_range(1..=cfg.ops_max);
        let mops: Vec<Mop> = (0..n)
            .map(|_| {
                let k = rng.gen_range(0..cfg.keys);
                if rng.gen_bool(0.5) {
                    next_value += 1;
                    Mop::Append(k, next_value)
                } else {
                    Mop::Read(k)
                }
            })
            .collect();
        let options = random_options(&mut rng);
        let invoke = invoke_value(&mops);
        history.record(process, OpKind::Invoke, "txn", &Value::Null, invoke.clone());
        let result = match client.begin_with_options(options).await {
            Ok(mut txn) => execute(&mut txn, &mops).await,
            Err(e) => Err(e),
        };
        let ok = match result {
            Ok(value) => {
                history.record(process, OpKind::Ok, "txn", &Value::Null, value);
                true
            }
            Err(e) => {
                let kind = if e.outcome_unknown() { OpKind::Info } else { OpKind::Fail };
                history.record(process, kind, "txn", &Value::Null, invoke);
                false
            }
        };
        if ok {
            progress.lock().expect("progress lock").insert(process, tokio::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1..=cfg.think_time_max.as_millis() as u64))).await;
    }
    client.stats()
}
