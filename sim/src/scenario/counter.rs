//! The harness self-test: clients add to a durable counter while the server is killed
//! (with torn disk tails), paused, partitioned and behind a lossy network. Checks: no
//! acknowledged add is lost, nothing is counted that was never sent, each client's reads
//! never go backwards, and after healing every client makes progress in bounded time.

use crate::cluster::Cluster;
use crate::counter::{counter_server, CounterRequest, CounterResponse, COUNTER_PORT};
use crate::runner::{RunConfig, ScenarioOutcome};
use keel_rpc::{RpcClient, RpcError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{sleep, Instant};

const CLIENTS: usize = 3;
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// After healing, every client must complete a call within this much simulated time.
const LIVENESS_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct ClientLog {
    ops: u64,
    acked_sum: u64,
    unknown_sum: u64,
    last_read: u64,
    last_success: Option<Instant>,
    violation: Option<String>,
}

/// Runs the counter scenario.
pub async fn run(cfg: &RunConfig) -> ScenarioOutcome {
    let mut cluster = Cluster::new();
    let server = cluster.add_node("counter", counter_server);
    let server_addr = server.addr(COUNTER_PORT);
    let stop = Arc::new(AtomicBool::new(false));
    let mut logs = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let name = format!("client-{i}");
        cluster.add_client(&name);
        let log = Arc::new(Mutex::new(ClientLog::default()));
        logs.push(log.clone());
        let client: RpcClient<CounterRequest, CounterResponse> = RpcClient::new(server_addr.clone());
        let stop = stop.clone();
        let seed: u64 = madsim::rand::random();
        tasks.push(cluster.spawn_on(&name, client_loop(client, log, stop, seed)));
    }

    let mut rng = ChaCha8Rng::seed_from_u64(madsim::rand::random());
    let until = Instant::now() + Duration::from_secs(cfg.duration_s);
    crate::faults::run(&mut cluster, &["counter".to_string()], &cfg.nemesis, until, &mut rng).await;

    // Liveness: heal everything; every client must succeed again within the deadline.
    cluster.heal_all();
    let healed_at = Instant::now();
    let mut violation = None;
    loop {
        let all_progressed = logs.iter().all(|l| l.lock().unwrap().last_success.is_some_and(|t| t > healed_at));
        if all_progressed {
            break;
        }
        if healed_at.elapsed() > LIVENESS_DEADLINE {
            violation = Some(format!("liveness: a client made no progress within {LIVENESS_DEADLINE:?} of healing"));
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }

    // Safety: the final total lies between what was acknowledged and what might have been.
    let checker = cluster.add_client("checker");
    let _ = checker;
    let client: RpcClient<CounterRequest, CounterResponse> = RpcClient::new(server_addr);
    let total = cluster
        .spawn_on("checker", async move {
            loop {
                if let Ok(CounterResponse::Total(t)) = client.call(CounterRequest::Get, CALL_TIMEOUT).await {
                    return t;
                }
                sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("checker task");
    let (mut acked, mut unknown, mut ops) = (0, 0, 0);
    for log in &logs {
        let log = log.lock().unwrap();
        acked += log.acked_sum;
        unknown += log.unknown_sum;
        ops += log.ops;
        if violation.is_none() {
            violation = log.violation.clone();
        }
    }
    if violation.is_none() && !(acked <= total && total <= acked + unknown) {
        violation = Some(format!("lost or phantom adds: total {total}, acknowledged {acked}, unknown {unknown}"));
    }
    keel_types::trace_event!("counter.final", "{total} {acked} {unknown} {ops}");
    ScenarioOutcome { ops, regions: 0, violation, history: None }
}

async fn client_loop(
    client: RpcClient<CounterRequest, CounterResponse>,
    log: Arc<Mutex<ClientLog>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    while !stop.load(Ordering::Relaxed) {
        let add = rng.gen_bool(0.7).then(|| rng.gen_range(1..10u64));
        let req = add.map_or(CounterRequest::Get, CounterRequest::Add);
        let result = client.call(req, CALL_TIMEOUT).await;
        record(&mut log.lock().unwrap(), add, result);
        sleep(Duration::from_millis(rng.gen_range(1..50))).await;
    }
}

fn record(log: &mut ClientLog, add: Option<u64>, result: Result<CounterResponse, RpcError>) {
    log.ops += 1;
    match (add, result) {
        (Some(n), Ok(CounterResponse::Total(t))) => {
            log.acked_sum += n;
            observe(log, t);
        }
        (None, Ok(CounterResponse::Total(t))) => observe(log, t),
        (Some(n), Ok(CounterResponse::DiskError(_))) => log.unknown_sum += n,
        (Some(n), Err(err)) if err.outcome_unknown() => log.unknown_sum += n,
        (_, Err(RpcError::Unreachable { .. } | RpcError::Timeout { .. } | RpcError::ConnectionLost { .. })) => {}
        (_, Err(RpcError::Encode(e))) => log.violation = Some(format!("encode error: {e}")),
        (None, Ok(CounterResponse::DiskError(e))) => log.violation = Some(format!("read failed: {e}")),
    }
}

fn observe(log: &mut ClientLog, total: u64) {
    if total < log.last_read && log.violation.is_none() {
        log.violation = Some(format!("read went backwards: {} then {total}", log.last_read));
    }
    log.last_read = total;
    log.last_success = Some(Instant::now());
}
