//! The register workload: processes read, write and compare-and-swap a few raw keys. Every
//! written value is unique, so the cas-register checker can place each read exactly.
//! Checked per key for linearizability (initially absent; a `null` read means absent).

use crate::history::{History, OpKind};
use keel_client::RawClient;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// When each process last completed an operation successfully (for liveness checks).
pub type Progress = Arc<Mutex<BTreeMap<u64, tokio::time::Instant>>>;

/// Shape of the workload.
#[derive(Clone, Debug)]
pub struct RegisterConfig {
    /// Number of distinct keys.
    pub keys: u64,
    /// Pause between a process's operations (upper bound, uniform).
    pub think_time_max: Duration,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig { keys: 5, think_time_max: Duration::from_millis(50) }
    }
}

fn key_name(k: u64) -> String {
    format!("reg-{k}")
}

fn decode(bytes: Option<Vec<u8>>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => String::from_utf8_lossy(&b).parse::<u64>().map_or(Value::Null, Value::from),
    }
}

/// Runs one process until `stop` is set. Values are `process * 10^9 + n`, unique per run.
pub async fn run_process(
    client: RawClient,
    history: History,
    progress: Progress,
    process: u64,
    cfg: RegisterConfig,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut next_value = process * 1_000_000_000;
    let mut last_seen: BTreeMap<u64, u64> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let k = rng.gen_range(0..cfg.keys);
        let key_json = json!(key_name(k));
        let key = key_name(k).into_bytes();
        let ok = match rng.gen_range(0..10) {
            0..=3 => {
                history.record(process, OpKind::Invoke, "read", &key_json, Value::Null);
                match client.get(key).await {
                    Ok(v) => {
                        let v = decode(v);
                        if let Some(n) = v.as_u64() {
                            last_seen.insert(k, n);
                        }
                        history.record(process, OpKind::Ok, "read", &key_json, v);
                        true
                    }
                    Err(_) => {
                        // A read has no effect: a failed read is simply a failed op.
                        history.record(process, OpKind::Fail, "read", &key_json, Value::Null);
                        false
                    }
                }
            }
            4..=6 => {
                next_value += 1;
                let v = next_value;
                history.record(process, OpKind::Invoke, "write", &key_json, json!(v));
                match client.put(key, v.to_string().into_bytes()).await {
                    Ok(()) => {
                        history.record(process, OpKind::Ok, "write", &key_json, json!(v));
                        true
                    }
                    Err(e) => {
                        let kind = if e.outcome_unknown() { OpKind::Info } else { OpKind::Fail };
                        history.record(process, kind, "write", &key_json, json!(v));
                        false
                    }
                }
            }
            _ => {
                next_value += 1;
                let new = next_value;
                let expected = last_seen.get(&k).copied();
                let value = json!([expected, new]);
                history.record(process, OpKind::Invoke, "cas", &key_json, value.clone());
                let expected_bytes = expected.map(|e| e.to_string().into_bytes());
                match client.compare_and_swap(key, expected_bytes, new.to_string().into_bytes()).await {
                    Ok((_, true)) => {
                        last_seen.insert(k, new);
                        history.record(process, OpKind::Ok, "cas", &key_json, value);
                        true
                    }
                    Ok((previous, false)) => {
                        if let Some(n) = decode(previous).as_u64() {
                            last_seen.insert(k, n);
                        }
                        history.record(process, OpKind::Fail, "cas", &key_json, value);
                        true
                    }
                    Err(e) => {
                        let kind = if e.outcome_unknown() { OpKind::Info } else { OpKind::Fail };
                        history.record(process, kind, "cas", &key_json, value);
                        false
                    }
                }
            }
        };
        if ok {
            progress.lock().expect("progress lock").insert(process, tokio::time::Instant::now());
        }
        let think = rng.gen_range(0..=cfg.think_time_max.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
}
