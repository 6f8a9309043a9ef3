//! `keel bench`: a closed-loop load generator. N client tasks each run one operation at a
//! time for a fixed duration against keel's RawKV API (`--pd`) or, with the same loop and
//! the same key and value shapes, against an etcd v3 cluster (`--etcd`), so the two can be
//! compared with one tool. A progress line goes to stderr each second; the run ends with
//! one JSON line on stdout.
//!
//! Workloads: `raw-put` (blind writes over the key space), `raw-get` (reads of preloaded
//! keys; etcd reads are linearizable, its default), `raw-mix` (50/50 get/put), `raw-scan`
//! (ascending range reads of `--scan-limit` pairs from a random key), and `txn-transfer`
//! (keel only: a transaction reads two random keys and writes both, committing by
//! `--txn-mode` 2PC, async commit or 1PC). `--etcd` needs the `etcd` feature.

use clap::{ArgGroup, Args, ValueEnum};
use hdrhistogram::Histogram;
use keel_client::{RawClient, TransactionClient, TransactionOptions};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Most concurrent client tasks.
const THREADS_MAX: usize = 4096;
/// Most client instances (each with its own connections).
const CONNS_MAX: usize = 64;
/// Longest measured run or warm-up.
const DURATION_MAX_S: f64 = 24.0 * 3600.0;
/// Largest key space.
const KEYS_MAX: u64 = 100_000_000;
/// Largest value: 1 MiB, under etcd's default request limit (1.5 MiB) and keel's (8 MiB).
const VALUE_SIZE_MAX_BYTES: usize = 1024 * 1024;
/// Most pairs one `raw-scan` operation reads.
const SCAN_LIMIT_MAX: u32 = keel_types::limits::SCAN_LIMIT_MAX as u32;
/// Keys per preload write: within etcd's default `--max-txn-ops` (128).
const PRELOAD_BATCH_KEYS_MAX: usize = 128;
/// Preload writes in flight at once.
const PRELOAD_IN_FLIGHT_MAX: usize = 16;
/// How long operations still in flight at the end of the run may take before they are
/// abandoned (above both clients' per-operation deadline).
const DRAIN_MAX: Duration = Duration::from_secs(15);
/// Pause of a client task after a failed operation, so a down cluster is not hammered.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Per-operation deadline given to the etcd client (keel's RawClient has the same default).
#[cfg(feature = "etcd")]
const ETCD_TIMEOUT: Duration = Duration::from_secs(10);
/// Highest latency the histogram records; slower operations are clamped to it.
const LATENCY_MAX_US: u64 = 60_000_000;
/// Prefix of every key the benchmark touches.
const KEY_PREFIX: &[u8] = b"bench/";
/// The first key after every benchmark key (`'/' + 1 == '0'`).
const KEY_PREFIX_END: &[u8] = b"bench0";

/// The load shape of a run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Blind puts of random keys.
    RawPut,
    /// Gets of random preloaded keys (linearizable on both targets).
    RawGet,
    /// 50% gets, 50% puts of random preloaded keys.
    RawMix,
    /// Range reads of --scan-limit pairs from a random preloaded key.
    RawScan,
    /// Transactions that read two random keys and write both (keel only).
    TxnTransfer,
}

/// How `txn-transfer` transactions commit.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum TxnMode {
    /// Two-phase commit: prewrite, then commit the primary, secondaries in the background.
    #[value(name = "2pc")]
    TwoPc,
    /// Async commit: committed once every key is prewritten.
    Async,
    /// One-phase commit when both keys live in one region (else 2PC).
    #[value(name = "1pc")]
    OnePc,
}

impl TxnMode {
    fn options(self) -> TransactionOptions {
        match self {
            TxnMode::TwoPc => TransactionOptions::default(),
            TxnMode::Async => TransactionOptions { async_commit: true, ..TransactionOptions::default() },
            TxnMode::OnePc => TransactionOptions { try_one_pc: true, ..TransactionOptions::default() },
        }
    }
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::RawPut => "raw-put",
            Workload::RawGet => "raw-get",
            Workload::RawMix => "raw-mix",
            Workload::RawScan => "raw-scan",
            Workload::TxnTransfer => "txn-transfer",
        }
    }

    /// Raw workloads reading keys want them written first; transactions read absent keys
    /// as absent (a raw preload would not be visible to them anyway).
    fn needs_preload(self) -> bool {
        !matches!(self, Workload::RawPut | Workload::TxnTransfer)
    }
}

/// Flags of `keel bench`.
#[derive(Args, Clone, Debug)]
#[command(group(ArgGroup::new("target").required(true).args(["pd", "etcd"])))]
pub struct BenchArgs {
    /// Benchmark keel through PD at these endpoints (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub pd: Vec<String>,
    /// Benchmark an etcd cluster at these client endpoints instead (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// What to run.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// Concurrent client tasks, each with one operation in flight.
    #[arg(long, default_value_t = 16)]
    pub threads: usize,
    /// Client instances the tasks share round-robin (each has its own connections).
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Number of distinct keys (preloaded for get, mix and scan).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Pairs per scan (raw-scan).
    #[arg(long, default_value_t = 10)]
    pub scan_limit: u32,
    /// Skip the preload (the keys are already there from an earlier run).
    #[arg(long)]
    pub no_preload: bool,
    /// How txn-transfer commits.
    #[arg(long, value_enum, default_value = "2pc")]
    pub txn_mode: TxnMode,
}

impl BenchArgs {
    fn validate(&self) -> Result<(), String> {
        if self.threads == 0 || self.threads > THREADS_MAX {
            return Err(format!("--threads must be 1..={THREADS_MAX}, got {}", self.threads));
        }
        if self.conns == 0 || self.conns > CONNS_MAX {
            return Err(format!("--conns must be 1..={CONNS_MAX}, got {}", self.conns));
        }
        if !(self.duration > 0.0 && self.duration <= DURATION_MAX_S) {
            return Err(format!("--duration must be in (0, {DURATION_MAX_S}] seconds, got {}", self.duration));
        }
        if !(self.warmup >= 0.0 && self.warmup <= DURATION_MAX_S) {
            return Err(format!("--warmup must be in [0, {DURATION_MAX_S}] seconds, got {}", self.warmup));
        }
        if self.value_size > VALUE_SIZE_MAX_BYTES {
            return Err(format!("--value-size must be at most {VALUE_SIZE_MAX_BYTES}, got {}", self.value_size));
        }
        if self.keys == 0 || self.keys > KEYS_MAX {
            return Err(format!("--keys must be 1..={KEYS_MAX}, got {}", self.keys));
        }
        if self.scan_limit == 0 || self.scan_limit > SCAN_LIMIT_MAX {
            return Err(format!("--scan-limit must be 1..={SCAN_LIMIT_MAX}, got {}", self.scan_limit));
        }
        if self.workload == Workload::TxnTransfer && !self.etcd.is_empty() {
            return Err("--workload txn-transfer runs against keel (--pd) only".into());
        }
        if self.workload == Workload::TxnTransfer && self.keys < 2 {
            return Err(format!("--workload txn-transfer needs --keys of at least 2, got {}", self.keys));
        }
        Ok(())
    }

    fn target(&self) -> &'static str {
        if self.etcd.is_empty() {
            "keel"
        } else {
            "etcd"
        }
    }
}

/// The key of index `i`: fixed width, so the key space sorts like the indexes.
fn key(i: u64) -> Vec<u8> {
    let mut k = KEY_PREFIX.to_vec();
    k.extend_from_slice(format!("{i:010}").as_bytes());
    k
}

/// One client instance of either target.
#[derive(Clone)]
enum Driver {
    Keel(RawClient),
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd_client::KvClient>),
}

impl Driver {
    async fn connect(args: &BenchArgs) -> Result<Driver, String> {
        if args.etcd.is_empty() {
            let client = RawClient::connect(args.pd.clone()).await.map_err(|e| format!("cannot reach keel: {e}"))?;
            Ok(Driver::Keel(client))
        } else {
            Driver::connect_etcd(&args.etcd).await
        }
    }

    #[cfg(feature = "etcd")]
    async fn connect_etcd(endpoints: &[String]) -> Result<Driver, String> {
        let endpoints: Vec<String> =
            endpoints.iter().map(|e| if e.contains("://") { e.clone() } else { format!("http://{e}") }).collect();
        let options = etcd_client::ConnectOptions::new().with_timeout(ETCD_TIMEOUT).with_connect_timeout(ETCD_TIMEOUT);
        let client = etcd_client::Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| format!("cannot reach etcd: {e}"))?;
        Ok(Driver::Etcd(Box::new(client.kv_client())))
    }

    #[cfg(not(feature = "etcd"))]
    async fn connect_etcd(_endpoints: &[String]) -> Result<Driver, String> {
        Err("this keel was built without etcd support: build it with `--features etcd` \
             (which needs protoc: apt-get install protobuf-compiler), as ci/bench-vs-etcd does"
            .into())
    }

    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        match self {
            Driver::Keel(c) => c.put(key, value).await.map_err(|e| e.to_string()),
            #[cfg(feature = "etcd")]
            Driver::Etcd(c) => c.put(key, value, None).await.map(drop).map_err(|e| e.to_string()),
        }
    }

    /// Whether the key was found.
    async fn get(&mut self, key: Vec<u8>) -> Result<bool, String> {
        match self {
            Driver::Keel(c) => c.get(key).await.map(|v| v.is_some()).map_err(|e| e.to_string()),
            #[cfg(feature = "etcd")]
            Driver::Etcd(c) => c.get(key, None).await.map(|r| !r.kvs().is_empty()).map_err(|e| e.to_string()),
        }
    }

    /// Pairs read.
    async fn scan(&mut self, start: Vec<u8>, limit: u32) -> Result<usize, String> {
        match self {
            Driver::Keel(c) => c.scan(start, KEY_PREFIX_END, limit).await.map(|p| p.len()).map_err(|e| e.to_string()),
            #[cfg(feature = "etcd")]
            Driver::Etcd(c) => {
                let options = etcd_client::GetOptions::new().with_range(KEY_PREFIX_END).with_limit(i64::from(limit));
                c.get(start, Some(options)).await.map(|r| r.kvs().len()).map_err(|e| e.to_string())
            }
        }
    }

    /// One transaction: reads `a` and `b`, writes each with the other's value (or `value`
    /// when absent), commits by `mode`. A conflict is an error like any other.
    async fn transfer(&mut self, a: Vec<u8>, b: Vec<u8>, value: &[u8], mode: TxnMode) -> Result<(), String> {
        let client = match self {
            Driver::Keel(raw) => TransactionClient::with_raw(raw.clone()),
            #[cfg(feature = "etcd")]
            Driver::Etcd(_) => return Err("txn-transfer runs against keel only".into()),
        };
        let mut txn = client.begin_with_options(mode.options()).await.map_err(|e| e.to_string())?;
        let pairs = txn.batch_get([a.clone(), b.clone()]).await.map_err(|e| e.to_string())?;
        let of = |k: &[u8]| pairs.iter().find(|(key, _)| key == k).map_or(value.to_vec(), |(_, v)| v.clone());
        let (va, vb) = (of(&a), of(&b));
        txn.put(a, vb).map_err(|e| e.to_string())?;
        txn.put(b, va).map_err(|e| e.to_string())?;
        txn.commit().await.map(drop).map_err(|e| e.to_string())
    }

    /// Writes several pairs in one request (atomically on etcd; per region on keel).
    async fn put_batch(&mut self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), String> {
        match self {
            Driver::Keel(c) => c.batch_put(pairs).await.map_err(|e| e.to_string()),
            #[cfg(feature = "etcd")]
            Driver::Etcd(c) => {
                let ops: Vec<etcd_client::TxnOp> =
                    pairs.into_iter().map(|(k, v)| etcd_client::TxnOp::put(k, v, None)).collect();
                c.txn(etcd_client::Txn::new().and_then(ops)).await.map(drop).map_err(|e| e.to_string())
            }
        }
    }
}

/// A value of `size` bytes that does not compress.
fn random_value(rng: &mut StdRng, size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    rng.fill_bytes(&mut v);
    v
}

/// Writes every key of the key space once, [`PRELOAD_IN_FLIGHT_MAX`] batches at a time.
async fn preload(driver: &Driver, args: &BenchArgs) -> Result<(), String> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..PRELOAD_IN_FLIGHT_MAX {
        let (mut driver, next, keys, size) = (driver.clone(), next.clone(), args.keys, args.value_size);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(0xbe7c_0000 + t as u64);
            loop {
                let first = next.fetch_add(PRELOAD_BATCH_KEYS_MAX as u64, Ordering::Relaxed);
                if first >= keys {
                    return Ok::<(), String>(());
                }
                let last = (first + PRELOAD_BATCH_KEYS_MAX as u64).min(keys);
                let pairs: Vec<_> = (first..last).map(|i| (key(i), random_value(&mut rng, size))).collect();
                driver.put_batch(pairs).await.map_err(|e| format!("preload of keys {first}..{last} failed: {e}"))?;
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| format!("preload task failed: {e}"))??;
    }
    eprintln!("keel bench: preloaded {} keys in {:.1} s", args.keys, started.elapsed().as_secs_f64());
    Ok(())
}

/// What the client tasks share: counters and the latency histogram of measured operations.
struct Shared {
    /// Successful operations, warm-up included (for the per-second rate).
    done: AtomicU64,
    /// Successful measured operations.
    ops: AtomicU64,
    /// Failed measured operations.
    errors: AtomicU64,
    /// Latencies of successful measured operations, in microseconds.
    latency_us: Mutex<Histogram<u64>>,
    /// The most recent error, for the progress line.
    last_error: Mutex<Option<String>>,
}

/// When the measured window opens and closes.
#[derive(Copy, Clone)]
struct Window {
    measure_from: Instant,
    end: Instant,
}

async fn client_task(id: usize, mut driver: Driver, args: BenchArgs, window: Window, shared: Arc<Shared>) {
    let mut rng = StdRng::seed_from_u64(0x6b65_656c_0000 + id as u64);
    let value = random_value(&mut rng, args.value_size);
    loop {
        let started = Instant::now();
        if started >= window.end {
            return;
        }
        let k_index = rng.gen_range(0..args.keys);
        let k = key(k_index);
        let result = match args.workload {
            Workload::RawPut => driver.put(k, value.clone()).await,
            Workload::RawGet => driver.get(k).await.map(drop),
            Workload::RawMix if rng.gen_bool(0.5) => driver.get(k).await.map(drop),
            Workload::RawMix => driver.put(k, value.clone()).await,
            Workload::RawScan => driver.scan(k, args.scan_limit).await.map(drop),
            Workload::TxnTransfer => {
                let other = key((k_index + rng.gen_range(1..args.keys)) % args.keys);
                driver.transfer(k, other, &value, args.txn_mode).await
            }
        };
        let measured = started >= window.measure_from;
        match result {
            Ok(()) => {
                shared.done.fetch_add(1, Ordering::Relaxed);
                if measured {
                    let us = (started.elapsed().as_micros() as u64).clamp(1, LATENCY_MAX_US);
                    shared.ops.fetch_add(1, Ordering::Relaxed);
                    shared.latency_us.lock().unwrap_or_else(|p| p.into_inner()).saturating_record(us);
                }
            }
            Err(e) => {
                if measured {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
                *shared.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The final summary of a run: the one JSON line `keel bench` prints on stdout.
#[derive(serde::Serialize, Debug)]
struct Summary {
    workload: &'static str,
    threads: usize,
    duration_s: f64,
    ops: u64,
    ops_per_sec: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    errors: u64,
    target: &'static str,
}

fn summary(args: &BenchArgs, shared: &Shared) -> Summary {
    let hist = shared.latency_us.lock().unwrap_or_else(|p| p.into_inner());
    let ops = shared.ops.load(Ordering::Relaxed);
    let q = |q: f64| if ops == 0 { 0.0 } else { ms(hist.value_at_quantile(q)) };
    Summary {
        workload: args.workload.name(),
        threads: args.threads,
        duration_s: args.duration,
        ops,
        ops_per_sec: (ops as f64 / args.duration * 10.0).round() / 10.0,
        p50_ms: q(0.50),
        p95_ms: q(0.95),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        errors: shared.errors.load(Ordering::Relaxed),
        target: args.target(),
    }
}

/// Runs one benchmark and prints its JSON line; fails if no measured operation succeeded.
pub async fn run(args: BenchArgs) -> Result<(), String> {
    args.validate()?;
    let target = args.target();
    let endpoints = if target == "keel" { args.pd.join(",") } else { args.etcd.join(",") };
    eprintln!(
        "keel bench: {target} at {endpoints} | {} | {} threads over {} conns | {} s (+{} s warm-up) | {} keys x {} B",
        args.workload.name(),
        args.threads,
        args.conns,
        args.duration,
        args.warmup,
        args.keys,
        args.value_size
    );
    let mut drivers = Vec::new();
    for _ in 0..args.conns {
        drivers.push(Driver::connect(&args).await?);
    }
    if args.workload.needs_preload() && !args.no_preload {
        preload(&drivers[0], &args).await?;
    }
    let histogram = Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).map_err(|e| format!("histogram: {e}"))?;
    let shared = Arc::new(Shared {
        done: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        latency_us: Mutex::new(histogram),
        last_error: Mutex::new(None),
    });
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let window = Window { measure_from, end: measure_from + Duration::from_secs_f64(args.duration) };
    let tasks: Vec<_> = (0..args.threads)
        .map(|id| {
            tokio::spawn(client_task(id, drivers[id % drivers.len()].clone(), args.clone(), window, shared.clone()))
        })
        .collect();
    progress(&args, window, &shared).await;
    let drain = futures::future::join_all(tasks);
    if tokio::time::timeout(DRAIN_MAX, drain).await.is_err() {
        eprintln!("keel bench: operations still in flight after {DRAIN_MAX:?} were abandoned");
    }
    let result = serde_json::to_string(&summary(&args, &shared)).map_err(|e| format!("summary: {e}"))?;
    println!("{result}");
    if shared.ops.load(Ordering::Relaxed) == 0 {
        let last = shared.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        return Err(format!("no operation succeeded; last error: {}", last.as_deref().unwrap_or("none")));
    }
    Ok(())
}

/// Prints one line a second until the window closes: rate over the last second, p99 of
/// the measured operations so far, errors.
async fn progress(args: &BenchArgs, window: Window, shared: &Shared) {
    let (mut last_done, mut last_at) = (0, Instant::now());
    loop {
        tokio::time::sleep_until((last_at + Duration::from_secs(1)).min(window.end)).await;
        let now = Instant::now();
        if now >= window.end {
            return;
        }
        let done = shared.done.load(Ordering::Relaxed);
        let rate = (done - last_done) as f64 / (now - last_at).as_secs_f64();
        (last_done, last_at) = (done, now);
        let phase = if now < window.measure_from {
            "warm-up".to_string()
        } else {
            format!("{:>5.0} s", (now - window.measure_from).as_secs_f64())
        };
        let p99 = {
            let hist = shared.latency_us.lock().unwrap_or_else(|p| p.into_inner());
            if hist.is_empty() {
                0.0
            } else {
                ms(hist.value_at_quantile(0.99))
            }
        };
        let errors = shared.errors.load(Ordering::Relaxed);
        let last_error = if errors > 0 {
            let last = shared.last_error.lock().unwrap_or_else(|p| p.into_inner());
            format!(" (last: {})", last.as_deref().unwrap_or("?"))
        } else {
            String::new()
        };
        eprintln!(
            "[{phase}] {} {}: {rate:>9.0} ops/s | p99 so far {p99:.2} ms | errors {errors}{last_error}",
            args.target(),
            args.workload.name()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<BenchArgs, String> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|c| c.bench)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn keys_sort_like_their_indexes_and_stay_under_the_prefix_end() {
        assert!(key(9) < key(10));
        assert!(key(KEYS_MAX) < KEY_PREFIX_END.to_vec());
        assert!(key(0).starts_with(KEY_PREFIX));
    }

    #[test]
    fn exactly_one_target_is_required() {
        assert!(parse(&["--workload", "raw-put"]).is_err());
        assert!(parse(&["--workload", "raw-put", "--pd", "a:1", "--etcd", "b:2"]).is_err());
        let args = parse(&["--workload", "raw-get", "--etcd", "b:2,c:3"]).unwrap();
        assert_eq!(args.target(), "etcd");
        assert_eq!(args.etcd.len(), 2);
        assert_eq!(parse(&["--workload", "raw-put", "--pd", "a:1"]).unwrap().target(), "keel");
    }

    #[test]
    fn limits_are_checked_at_their_edges() {
        let ok = |extra: &[&str]| {
            let mut a = vec!["--workload", "raw-scan", "--pd", "a:1"];
            a.extend_from_slice(extra);
            parse(&a).unwrap().validate()
        };
        assert!(ok(&[]).is_ok());
        assert!(ok(&["--threads", "0"]).is_err());
        assert!(ok(&["--threads", &THREADS_MAX.to_string()]).is_ok());
        assert!(ok(&["--threads", &(THREADS_MAX + 1).to_string()]).is_err());
        assert!(ok(&["--duration", "0"]).is_err());
        assert!(ok(&["--value-size", &VALUE_SIZE_MAX_BYTES.to_string()]).is_ok());
        assert!(ok(&["--value-size", &(VALUE_SIZE_MAX_BYTES + 1).to_string()]).is_err());
        assert!(ok(&["--scan-limit", &SCAN_LIMIT_MAX.to_string()]).is_ok());
        assert!(ok(&["--scan-limit", &(SCAN_LIMIT_MAX + 1).to_string()]).is_err());
        assert!(ok(&["--keys", "0"]).is_err());
        assert!(ok(&["--conns", &(CONNS_MAX + 1).to_string()]).is_err());
    }

    #[test]
    fn txn_transfer_takes_a_mode_and_two_keys_on_keel() {
        let args = |extra: &[&str]| {
            let mut a = vec!["--workload", "txn-transfer"];
            a.extend_from_slice(extra);
            parse(&a)
        };
        assert_eq!(args(&["--pd", "a:1"]).unwrap().txn_mode, TxnMode::TwoPc);
        for (flag, mode) in [("2pc", TxnMode::TwoPc), ("async", TxnMode::Async), ("1pc", TxnMode::OnePc)] {
            let a = args(&["--pd", "a:1", "--txn-mode", flag]).unwrap();
            assert_eq!(a.txn_mode, mode);
            assert!(a.validate().is_ok());
        }
        assert!(args(&["--pd", "a:1", "--txn-mode", "3pc"]).is_err());
        assert!(args(&["--pd", "a:1", "--keys", "1"]).unwrap().validate().is_err());
        assert!(args(&["--etcd", "a:1"]).unwrap().validate().unwrap_err().contains("keel"));
    }

    #[test]
    fn summary_has_every_field() {
        let args = parse(&["--workload", "raw-put", "--pd", "a:1", "--duration", "2"]).unwrap();
        let mut hist = Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).unwrap();
        for us in 1..=1000 {
            hist.record(us).unwrap();
        }
        let shared = Shared {
            done: AtomicU64::new(1000),
            ops: AtomicU64::new(1000),
            errors: AtomicU64::new(2),
            latency_us: Mutex::new(hist),
            last_error: Mutex::new(None),
        };
        let s = serde_json::to_value(summary(&args, &shared)).unwrap();
        for field in [
            "workload",
            "threads",
            "duration_s",
            "ops",
            "ops_per_sec",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "p999_ms",
            "errors",
            "target",
        ] {
            assert!(s.get(field).is_some(), "missing {field} in {s}");
        }
        assert_eq!(s["ops_per_sec"], 500.0);
        assert_eq!(s["target"], "keel");
        assert!((s["p50_ms"].as_f64().unwrap() - 0.5).abs() < 0.01, "{s}");
    }
}
