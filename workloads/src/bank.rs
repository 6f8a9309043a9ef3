//! The bank workload: a few accounts whose balances always sum to the same total. Processes
//! transfer random amounts between random accounts (read both, write both, one transaction)
//! and read every account in one snapshot transaction. Checked by jepsen-checker's bank
//! checker: every successful read sums to the total and no balance is negative.
//!
//! Each transaction picks its commit protocol at random (2PC, async commit or 1PC), so all
//! three paths run against each other.

use crate::commit_mode::random_options;
use crate::history::{History, OpKind};
use crate::register::Progress;
use keel_client::{ClientError, Transaction, TransactionClient, TransactionStats};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Shape of the workload.
#[derive(Clone, Debug)]
pub struct BankConfig {
    /// Number of accounts.
    pub accounts: u64,
    /// Initial balance of every account.
    pub initial: i64,
    /// Largest amount one transfer moves.
    pub transfer_max: i64,
    /// Pause between a process's operations (upper bound, uniform).
    pub think_time_max: Duration,
}

impl Default for BankConfig {
    fn default() -> Self {
        BankConfig { accounts: 64, initial: 100, transfer_max: 5, think_time_max: Duration::from_millis(20) }
    }
}

impl BankConfig {
    /// The invariant total.
    pub fn total(&self) -> i64 {
        self.initial * self.accounts as i64
    }
}

/// The key of account `i`.
pub fn account_key(i: u64) -> Vec<u8> {
    format!("bank/{i:03}").into_bytes()
}

fn decode(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Writes the initial balances (once: a retry after an unknown outcome finds them).
/// Retries until it succeeds or `attempts` run out.
pub async fn setup(client: &TransactionClient, cfg: &BankConfig, attempts: u32) -> Result<(), ClientError> {
    let keys: Vec<Vec<u8>> = (0..cfg.accounts).map(account_key).collect();
    let mut last = ClientError::Invalid("no attempt made".into());
    for _ in 0..attempts {
        let result = async {
            let mut txn = client.begin().await?;
            let found = txn.batch_get(keys.clone()).await?;
            if found.len() == keys.len() {
                return Ok(());
            }
            if !found.is_empty() {
                return Err(ClientError::Invalid(format!("only {} of {} accounts exist", found.len(), keys.len())));
            }
            for k in &keys {
                txn.put(k.clone(), cfg.initial.to_string())?;
            }
            txn.commit().await.map(|_| ())
        }
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is_invalid() => return Err(e),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

fn outcome(result: &Result<(), ClientError>) -> OpKind {
    match result {
        Ok(()) => OpKind::Ok,
        Err(e) if e.outcome_unknown() => OpKind::Info,
        Err(_) => OpKind::Fail,
    }
}

async fn transfer(txn: &mut Transaction, from: &[u8], to: &[u8], amount: i64) -> Result<(), ClientError> {
    let pairs = txn.batch_get([from.to_vec(), to.to_vec()]).await?;
    let balance = |k: &[u8]| pairs.iter().find(|(key, _)| key == k).and_then(|(_, v)| decode(v));
    let (Some(a), Some(b)) = (balance(from), balance(to)) else {
        return Err(ClientError::Invalid("an account is missing".into()));
    };
    if a < amount {
        txn.rollback().await?;
        return Err(ClientError::Invalid("insufficient funds".into()));
    }
    txn.put(from.to_vec(), (a - amount).to_string())?;
    txn.put(to.to_vec(), (b + amount).to_string())?;
    txn.commit().await.map(|_| ())
}

/// Runs one process until `stop` is set; returns its client's transaction counters.
pub async fn run_process(
    client: TransactionClient,
    history: History,
    progress: Progress,
    process: u64,
    cfg: BankConfig,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> TransactionStats {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let keys: Vec<Vec<u8>> = (0..cfg.accounts).map(account_key).collect();
    while !stop.load(Ordering::Relaxed) {
        let ok = if rng.gen_bool(0.7) {
            let from = rng.gen_range(0..cfg.accounts);
            let to = (from + rng.gen_range(1..cfg.accounts)) % cfg.accounts;
            let amount = rng.gen_range(1..=cfg.transfer_max);
            let value = json!({"from": from, "to": to, "amount": amount});
            history.record(process, OpKind::Invoke, "transfer", &Value::Null, value.clone());
            let result = match client.begin_with_options(random_options(&mut rng)).await {
                Ok(mut txn) => transfer(&mut txn, &keys[from as usize], &keys[to as usize], amount).await,
                Err(e) => Err(e),
            };
            let kind = outcome(&result);
            history.record(process, kind, "transfer", &Value::Null, value);
            kind == OpKind::Ok || result.as_ref().is_err_and(|e| e.is_invalid())
        } else {
            history.record(process, OpKind::Invoke, "read", &Value::Null, Value::Null);
            let read = async {
                let txn = client.begin().await?;
                txn.batch_get(keys.clone()).await
            }
            .await;
            match read {
                Ok(pairs) => {
                    let mut balances = Map::new();
                    for (k, v) in pairs {
                        let account = String::from_utf8_lossy(&k["bank/".len()..]).trim_start_matches('0').to_string();
                        let account = if account.is_empty() { "0".to_string() } else { account };
                        let balance = decode(&v).map_or(Value::String(String::from_utf8_lossy(&v).into()), Value::from);
                        balances.insert(account, balance);
                    }
                    history.record(process, OpKind::Ok, "read", &Value::Null, Value::Object(balances));
                    true
                }
                Err(_) => {
                    history.record(process, OpKind::Fail, "read", &Value::Null, Value::Null);
                    false
                }
            }
        };
        if ok {
            progress.lock().expect("progress lock").insert(process, tokio::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1..=cfg.think_time_max.as_millis() as u64))).await;
    }
    client.stats()
}
