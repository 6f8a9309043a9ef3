//! Shared by the real-process tests: a cluster of separate `keel` processes on free loopback
//! ports (PD + N stores, each with a status server), kill -9 / SIGTERM / restart of any of
//! them, and a minimal HTTP GET for the status endpoints.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a fresh cluster may take to elect and serve its first write.
pub const READY_MAX: Duration = Duration::from_secs(60);

/// Every port [`free_ports`] has handed out in this test process.
static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Lowest port [`free_ports`] hands out.
const TEST_PORT_LOW: u16 = 10_000;

/// `n` distinct free loopback ports, none handed out before in this process, all below the
/// kernel's ephemeral range. A port is free when probed, but the process it is meant for
/// binds it later; in between, a port from the ephemeral range can be taken by any outgoing
/// connection on the machine, and a port handed out twice by two processes racing to bind.
/// CI once saw a PD never listen on its port ("connection refused" for 10 s).
pub fn free_ports(n: usize) -> Vec<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    assert!(ephemeral_low > TEST_PORT_LOW + 1_000, "ephemeral range starts at {ephemeral_low}: no room below it");
    let span = u32::from(ephemeral_low - TEST_PORT_LOW);
    let mut handed_out = HANDED_OUT.lock().expect("port record");
    let mut ports = Vec::new();
    // Walk from a per-process offset, so test binaries run one after another start apart.
    let start = std::process::id().wrapping_mul(7919) % span;
    for step in 0..span {
        let port = TEST_PORT_LOW + ((start + step) % span) as u16;
        if handed_out.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        handed_out.push(port);
        ports.push(port);
        if ports.len() == n {
            return ports;
        }
    }
    panic!("only {} free ports between {TEST_PORT_LOW} and {ephemeral_low}", ports.len())
}

/// One `keel` process that can be killed and restarted with the same arguments.
pub struct Proc {
    pub args: Vec<String>,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `keel ARGS`, logging to `log` (at warn level unless ARGS set `--log-level`).
    pub fn start(args: Vec<String>, log: PathBuf) -> Proc {
        let mut p = Proc { args, child: None, log };
        p.restart();
        p
    }

    /// Starts the process again (it must not be running).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "process already running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open log");
        let default_level: &[&str] =
            if self.args.iter().any(|a| a == "--log-level") { &[] } else { &["--log-level", "warn"] };
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(default_level)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn keel");
        self.child = Some(child);
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reap");
        }
    }

    /// SIGTERM, then waits up to `within` for the exit; None if it did not exit in time
    /// (then it is killed).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take().expect("process running");
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        let rc = unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM failed");
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = c.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A PD (alone or replicated) and `stores` storage nodes, each its own process, on free ports.
pub struct Cluster {
    pub dir: PathBuf,
    /// PD's member processes (one for a lone PD).
    pub pds: Vec<Proc>,
    pub stores: Vec<Proc>,
    /// The first PD member's address and status address.
    pub pd_addr: String,
    pub pd_status: String,
    /// Every PD member's address, in member order (what stores and clients are given).
    pub pd_addrs: Vec<String>,
    pub pd_statuses: Vec<String>,
    pub store_addrs: Vec<String>,
    pub store_status: Vec<String>,
}

impl Cluster {
    /// Starts a lone PD and the stores (it does not wait for them; see [`Cluster::wait_ready`]).
    pub fn start(dir: &Path, stores: usize, pd_extra: &[&str]) -> Cluster {
        Cluster::start_with_pd_members(dir, stores, 1, pd_extra)
    }

    /// Starts `members` PD processes (replicated when more than one) and the stores.
    pub fn start_with_pd_members(dir: &Path, stores: usize, members: usize, pd_extra: &[&str]) -> Cluster {
        let ports = free_ports(2 * members + 2 * stores);
        let addr = |p: u16| format!("127.0.0.1:{p}");
        let pd_addrs: Vec<String> = (0..members).map(|i| addr(ports[2 * i])).collect();
        let pd_statuses: Vec<String> = (0..members).map(|i| addr(ports[2 * i + 1])).collect();
        let pds = (0..members)
            .map(|i| {
                let data = if members == 1 { "pd".to_string() } else { format!("pd-{i}") };
                let mut pd_args: Vec<String> = vec![
                    "pd".into(),
                    "--addr".into(),
                    pd_addrs[i].clone(),
                    "--status-addr".into(),
                    pd_statuses[i].clone(),
                    "--data-dir".into(),
                    dir.join(&data).display().to_string(),
                ];
                if members > 1 {
                    pd_args.extend(["--members".to_string(), pd_addrs.join(",")]);
                }
                pd_args.extend(pd_extra.iter().map(|s| s.to_string()));
                Proc::start(pd_args, dir.join(format!("{data}.log")))
            })
            .collect();
        let base = 2 * members;
        let store_addrs: Vec<String> = (0..stores).map(|i| addr(ports[base + 2 * i])).collect();
        let store_status: Vec<String> = (0..stores).map(|i| addr(ports[base + 1 + 2 * i])).collect();
        let stores = (0..stores)
            .map(|i| {
                Proc::start(
                    vec![
                        "server".into(),
                        "--pd".into(),
                        pd_addrs.join(","),
                        "--addr".into(),
                        store_addrs[i].clone(),
                        "--status-addr".into(),
                        store_status[i].clone(),
                        "--data-dir".into(),
                        dir.join(format!("store-{i}")).display().to_string(),
                    ],
                    dir.join(format!("store-{i}.log")),
                )
            })
            .collect();
        Cluster {
            dir: dir.to_path_buf(),
            pds,
            stores,
            pd_addr: pd_addrs[0].clone(),
            pd_status: pd_statuses[0].clone(),
            pd_addrs,
            pd_statuses,
            store_addrs,
            store_status,
        }
    }

    /// Waits until a write through `keel ctl` succeeds.
    pub fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            if self.ctl(&["put", "ready", "1"]).0 {
                return;
            }
            assert!(started.elapsed() < READY_MAX, "cluster not ready after {READY_MAX:?}; logs in {:?}", self.dir);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `keel ctl --pd PD ARGS`: (success, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["--log-level", "error", "ctl", "--pd", &self.pd_addrs.join(",")])
            .args(args)
            .output()
            .expect("run keel ctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Index of the store process listening on `address`.
    pub fn store_index(&self, address: &str) -> usize {
        self.store_addrs.iter().position(|a| a == address).expect("a store of this cluster")
    }
}

/// `GET path` from `addr` over HTTP/1.0: (status code, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, body.to_string()))
}
