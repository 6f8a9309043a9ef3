//! The set workload: processes add unique keys (with padded values, so regions grow and
//! split) and scan the whole key space. Scans span regions and are not atomic snapshots, so
//! the check is per scan: it must contain every add acknowledged before the scan began, and
//! nothing that was never added. At the end, a quiet full scan must contain every
//! acknowledged add and only attempted ones.

use keel_client::{ClientError, PdClient, RawClient};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Key prefix of every element.
pub const PREFIX: &str = "set/";
/// Value bytes per element (padding makes regions reach their split size quickly).
pub const VALUE_BYTES: usize = 128;

/// What all processes know together.
#[derive(Default)]
pub struct SetState {
    /// Adds that were acknowledged.
    pub acked: BTreeSet<String>,
    /// Adds that were attempted (acknowledged or not).
    pub attempted: BTreeSet<String>,
    /// Scans completed.
    pub scans: u64,
    /// Operations completed (any outcome).
    pub ops: u64,
    /// The first violation seen.
    pub violation: Option<String>,
    /// When each process last succeeded.
    pub progress: std::collections::BTreeMap<u64, tokio::time::Instant>,
}

/// Shared state of a set run.
pub type SharedSet = Arc<Mutex<SetState>>;

/// A scan that did not complete: where its failing page started, and why it failed.
#[derive(Debug)]
pub struct ScanFailure {
    /// The first key the failing page asked for.
    pub from: Vec<u8>,
    /// The client's error for that page.
    pub error: ClientError,
}

/// Scans every element, page by page.
pub async fn scan_all(client: &RawClient) -> Result<Vec<String>, ScanFailure> {
    let mut out = Vec::new();
    let mut start = PREFIX.as_bytes().to_vec();
    let end = b"set0".to_vec(); // '0' follows '/'
    loop {
        let page = client
            .scan(start.clone(), end.clone(), 1000)
            .await
            .map_err(|error| ScanFailure { from: start.clone(), error })?;
        let done = page.len() < 1000;
        if let Some((last, _)) = page.last() {
            start = last.clone();
            start.push(0);
        }
        out.extend(page.into_iter().map(|(k, _)| String::from_utf8_lossy(&k).into_owned()));
        if done {
            return Ok(out);
        }
    }
}

/// The quiet full scan at the end of a run, retried until `deadline`. The cluster is healed
/// by then, so a scan that still fails is a liveness violation; the error names the keys it
/// could not read and PD's region for them (an endless retry left a run like swarm seed 247
/// to die of the global time limit instead).
pub async fn final_scan(client: &RawClient, pd: &PdClient, deadline: Duration) -> Result<Vec<String>, String> {
    let start = tokio::time::Instant::now();
    loop {
        match scan_all(client).await {
            Ok(seen) => return Ok(seen),
            Err(failure) if start.elapsed() >= deadline => {
                let region = match pd.get_region(&failure.from).await {
                    Ok(Some(info)) => format!(
                        "region {} {:?} peers {:?} leader {:?}",
                        info.region.id, info.region.epoch, info.region.peers, info.leader
                    ),
                    Ok(None) => "no region at PD".to_string(),
                    Err(e) => format!("PD does not answer: {e}"),
                };
                return Err(format!(
                    "liveness violation: the final scan did not complete within {deadline:?}: keys from {:?} ({region}): {}",
                    String::from_utf8_lossy(&failure.from),
                    failure.error
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Checks one scan against what was acknowledged before it began.
pub fn check_scan(state: &SetState, seen: &[String], acked_before: &BTreeSet<String>) -> Option<String> {
    let seen_set: BTreeSet<&String> = seen.iter().collect();
    if let Some(lost) = acked_before.iter().find(|k| !seen_set.contains(k)) {
        return Some(format!("scan missed {lost}, acknowledged before the scan began"));
    }
    if let Some(phantom) = seen.iter().find(|k| !state.attempted.contains(*k)) {
        return Some(format!("scan returned {phantom}, which was never added"));
    }
    if seen.windows(2).any(|w| w[0] >= w[1]) {
        return Some("scan returned keys out of order or twice".into());
    }
    None
}

/// The key process `process` adds as its `n`-th: keys sort by process, then by number, so
/// each process fills its own stretch of the key space.
pub fn set_key(process: u64, n: u64) -> String {
    format!("{PREFIX}{process:02}-{n:06}")
}

/// Runs one process until `stop` is set.
pub async fn run_process(client: RawClient, state: SharedSet, process: u64, seed: u64, stop: Arc<AtomicBool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let ok = if rng.gen_range(0..10) < 8 {
            n += 1;
            let key = set_key(process, n);
            state.lock().expect("set lock").attempted.insert(key.clone());
            match client.put(key.clone().into_bytes(), vec![b'v'; VALUE_BYTES]).await {
                Ok(()) => {
                    state.lock().expect("set lock").acked.insert(key);
                    true
                }
                Err(_) => false,
            }
        } else {
            let acked_before = state.lock().expect("set lock").acked.clone();
            match scan_all(&client).await {
                Ok(seen) => {
                    let mut s = state.lock().expect("set lock");
                    s.scans += 1;
                    if s.violation.is_none() {
                        s.violation = check_scan(&s, &seen, &acked_before);
                    }
                    drop(s);
                    true
                }
                Err(_) => false,
            }
        };
        {
            let mut s = state.lock().expect("set lock");
            s.ops += 1;
            if ok {
                s.progress.insert(process, tokio::time::Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(1..20))).await;
    }
}
