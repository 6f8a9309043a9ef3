//! A full disk is a clear error, not corruption: a single-replica store whose data dir is a
//! small tmpfs takes writes until the filesystem is full (ENOSPC), then exits 1 with a
//! message naming the failed write. Given room again (the tmpfs grown), it restarts holding
//! every write it acknowledged, and takes new ones. Mounting needs root (which this test
//! runs as here and in CI); without it the test fails saying so rather than pass untested.

mod common;

use common::{Cluster, Proc};
use keel_client::RawClient;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The small disk's size.
const DISK_SMALL: &str = "size=8m";
/// The same disk with room again.
const DISK_GROWN: &str = "remount,size=256m";
/// Value size of the writes that fill it.
const VALUE_BYTES: usize = 4096;
/// The store must fill its disk well within this (8 MiB at 4 KiB a write, logged and
/// applied, is ~1000 writes).
const FILL_MAX: Duration = Duration::from_secs(120);

/// A tmpfs mounted for the test, unmounted (lazily: processes may still hold it) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        mount(at, DISK_SMALL);
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(at: &Path, options: &str) {
    let out = Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(at).output().expect("run mount");
    assert!(
        out.status.success(),
        "mount -o {options} of a tmpfs failed (this test needs root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Write `i`'s value: incompressible (xorshift bytes seeded by `i`), so it fills the disk.
fn value(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..VALUE_BYTES / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

#[test]
fn full_disk_stops_the_store_cleanly_and_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), 0, &["--max-replicas", "1"]);
    let disk = Tmpfs::mount(&dir.path().join("disk"));
    let port = common::free_ports(2);
    let args: Vec<String> = vec![
        "server".into(),
        "--pd".into(),
        cluster.pd_addr.clone(),
        "--addr".into(),
        format!("127.0.0.1:{}", port[0]),
        "--status-addr".into(),
        format!("127.0.0.1:{}", port[1]),
        "--data-dir".into(),
        disk.0.join("store").display().to_string(),
    ];
    let log_path = dir.path().join("store.log");
    let mut store = Proc::start(args, log_path.clone());

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let client = rt.block_on(RawClient::connect(vec![cluster.pd_addr.clone()])).unwrap_or_else(|e| {
        let pd_log = std::fs::read_to_string(dir.path().join("pd.log")).unwrap_or_default();
        panic!("connect: {e}; pd log:\n{pd_log}")
    });
    let started = Instant::now();
    let mut acked = 0u64;
    let status = loop {
        if let Some(status) = store.child.as_mut().expect("running").try_wait().expect("try_wait") {
            break status;
        }
        assert!(started.elapsed() < FILL_MAX, "the store took {acked} writes without filling its disk");
        let put = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), client.put(format!("k{acked:06}").into_bytes(), value(acked)))
                .await
        });
        if matches!(put, Ok(Ok(()))) {
            acked += 1;
        }
    };
    store.child = None;
    let log = std::fs::read_to_string(&log_path).expect("read log");
    assert_eq!(status.code(), Some(1), "a full disk must end the store with exit 1: {status}; log:\n{log}");
    assert!(log.contains("disk write failed"), "the log should name the failed write:\n{log}");
    assert!(log.contains("No space left on device"), "the log should carry the OS error:\n{log}");
    assert!(!log.contains("panicked"), "a panic is not a clear error:\n{log}");
    assert!(acked > 0, "the store never acknowledged a write before its disk filled");

    // Room to grow again: every acknowledged write is there, and new writes go through.
    mount(&disk.0, DISK_GROWN);
    store.restart();
    let deadline = Instant::now() + common::READY_MAX;
    for i in 0..acked {
        let key = format!("k{i:06}").into_bytes();
        let got = loop {
            match rt.block_on(client.get(key.clone())) {
                Ok(got) => break got,
                Err(e) => {
                    assert!(Instant::now() < deadline, "store not serving after restart: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        assert_eq!(got, Some(value(i)), "acknowledged write k{i:06} lost or damaged");
    }
    rt.block_on(client.put(b"after".to_vec(), b"room".to_vec())).expect("write after restart");
    drop(store);
    drop(disk);
    eprintln!("disk full after {acked} acknowledged writes of {VALUE_BYTES} bytes; all read back after restart");
}
