//! Start-up failures a user can cause are clear errors (exit 1 and a message naming the
//! problem), never a panic or a half-started process: a data directory that cannot be
//! created or written, a status address already in use, and a replicated PD asked of the
//! playground before PD can be replicated.

use std::net::TcpListener;
use std::process::{Command, Output};

fn keel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel")).args(["--log-level", "error"]).args(args).output().expect("run keel")
}

fn assert_clear_failure(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit 1 expected; stderr: {stderr}");
    assert!(stderr.contains(needle), "stderr should mention {needle:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "a panic is not a clear error: {stderr}");
}

#[test]
fn unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A regular file where a directory should be: creating the data dir under it fails with
    // ENOTDIR even for root, which ignores permission bits.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write file");
    let data = file.join("store");
    let data = data.to_str().expect("utf-8");
    let out = keel(&["server", "--pd", "127.0.0.1:1", "--status-addr", "127.0.0.1:0", "--data-dir", data]);
    assert_clear_failure(&out, "cannot create data dir");
    let out = keel(&["pd", "--addr", "127.0.0.1:0", "--status-addr", "127.0.0.1:0", "--data-dir", data]);
    assert_clear_failure(&out, "cannot create data dir");
    // The data dir is an existing regular file.
    let file = file.to_str().expect("utf-8");
    let out = keel(&["server", "--pd", "127.0.0.1:1", "--status-addr", "127.0.0.1:0", "--data-dir", file]);
    assert_clear_failure(&out, "cannot create data dir");
}

#[test]
fn bad_pd_membership_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8");
    let out = keel(&["playground", "--pd", "2", "--data-dir", data, "--pd-addr", "127.0.0.1:0"]);
    assert_clear_failure(&out, "--pd must be 1, 3 or 5");
    let out = keel(&[
        "pd",
        "--addr",
        "127.0.0.1:0",
        "--status-addr",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--members",
        "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3",
    ]);
    assert_clear_failure(&out, "is not one of the pd members");
}

#[test]
fn taken_status_address_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let data = dir.path().join("pd");
    let out = keel(&["pd", "--addr", "127.0.0.1:0", "--status-addr", &addr, "--data-dir", data.to_str().unwrap()]);
    assert_clear_failure(&out, "cannot listen on status address");
}
