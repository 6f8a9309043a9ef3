//! `keel bench` against a real cluster: a PD and three storage nodes as separate `keel`
//! processes on loopback (ports apart from the playground's and the crash test's); a short
//! run must end by itself with one JSON line on stdout that reports successful operations.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PD_PORT: u16 = 33379;
const STORE_PORT_BASE: u16 = 33160;
/// How long the cluster may take to elect and serve its first write.
const READY_MAX: Duration = Duration::from_secs(60);

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keel(args: &[String]) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["--log-level", "warn"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn keel");
    Proc(child)
}

fn start_cluster(dir: &Path) -> Vec<Proc> {
    let pd = format!("127.0.0.1:{PD_PORT}");
    // Status servers on any free port: the defaults would collide between processes.
    let status_any = "127.0.0.1:0".to_string();
    let mut procs = vec![keel(&[
        "pd".into(),
        "--addr".into(),
        pd.clone(),
        "--data-dir".into(),
        path(dir, "pd"),
        "--status-addr".into(),
        status_any.clone(),
    ])];
    for i in 0..3u16 {
        procs.push(keel(&[
            "server".into(),
            "--pd".into(),
            pd.clone(),
            "--addr".into(),
            format!("127.0.0.1:{}", STORE_PORT_BASE + i),
            "--data-dir".into(),
            path(dir, &format!("store-{i}")),
            "--status-addr".into(),
            status_any.clone(),
        ]));
    }
    let started = Instant::now();
    loop {
        let status = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["--log-level", "error", "ctl", "--pd", &pd, "put", "ready", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run keel ctl");
        if status.success() {
            return procs;
        }
        assert!(started.elapsed() < READY_MAX, "cluster not ready after {READY_MAX:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn bench(workload: &str) -> serde_json::Value {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["--log-level", "warn", "bench", "--pd", &format!("127.0.0.1:{PD_PORT}"), "--workload", workload])
        .args(["--threads", "4", "--duration", "2", "--warmup", "0.5", "--keys", "500", "--value-size", "64"])
        .stderr(Stdio::inherit())
        .output()
        .expect("run keel bench");
    assert!(out.status.success(), "keel bench {workload} failed: {:?}", out.status);
    // Bounded: 0.5 s warm-up + 2 s, plus connecting and a 500-key preload.
    assert!(started.elapsed() < Duration::from_secs(30), "keel bench took {:?}", started.elapsed());
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "expected one JSON line, got {stdout:?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("bad JSON {:?}: {e}", lines[0]))
}

#[test]
fn bench_runs_for_its_duration_and_reports_one_json_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _cluster = start_cluster(dir.path());
    for workload in ["raw-put", "raw-mix"] {
        let v = bench(workload);
        assert_eq!(v["workload"], workload);
        assert_eq!(v["target"], "keel");
        assert_eq!(v["threads"], 4);
        assert_eq!(v["duration_s"], 2.0);
        let ops = v["ops"].as_u64().expect("ops");
        assert!(ops > 0, "no operations: {v}");
        let rate = v["ops_per_sec"].as_f64().expect("ops_per_sec");
        assert!((rate - ops as f64 / 2.0).abs() < 1.0, "{v}");
        let quantiles: Vec<f64> =
            ["p50_ms", "p95_ms", "p99_ms", "p999_ms"].iter().map(|q| v[q].as_f64().expect(q)).collect();
        assert!(quantiles[0] > 0.0 && quantiles.windows(2).all(|w| w[0] <= w[1]), "quantiles out of order: {v}");
        assert!(v["errors"].is_u64(), "{v}");
    }
}
