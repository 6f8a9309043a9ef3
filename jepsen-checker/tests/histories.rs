//! Every history in `shared/histories/` gets the verdict EXPECTED.md gives it, checked
//! with exactly the flags EXPECTED.md lists for its folder. Runs the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn histories_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/histories");
    assert!(
        dir.join("EXPECTED.md").is_file(),
        "the shared histories are missing: expected {}/EXPECTED.md (this test must not be skipped)",
        dir.display()
    );
    dir
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no *.{ext} files in {}", dir.display());
    out
}

/// Runs the checker; returns (exit code, parsed last JSON line).
fn check(file: &Path, flags: &[&str]) -> (i32, serde_json::Value) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_jepsen-checker")).arg(file).args(flags).output().expect("run jepsen-checker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!("{}: last line is not JSON ({e}): {last:?}\n{}", file.display(), String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().expect("exit code"), json)
}

fn expect_verdict(file: &Path, flags: &[&str], valid: bool) {
    let (code, json) = check(file, flags);
    assert_eq!(
        json["valid"],
        serde_json::Value::Bool(valid),
        "{} {flags:?}: expected valid={valid}, got {json}",
        file.display()
    );
    assert_eq!(code, if valid { 0 } else { 1 }, "{}: exit code", file.display());
}

/// The etcd numbers EXPECTED.md lists as linearizable.
fn etcd_linearizable(expected: &str) -> Vec<String> {
    let line = expected
        .lines()
        .find(|l| l.starts_with("etcd linearizable:"))
        .expect("EXPECTED.md lists the linearizable etcd files");
    let nums: Vec<String> = line["etcd linearizable:".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    assert!(!nums.is_empty());
    nums
}

#[test]
fn etcd_logs() {
    let dir = histories_dir();
    let expected = std::fs::read_to_string(dir.join("EXPECTED.md")).expect("EXPECTED.md");
    let good = etcd_linearizable(&expected);
    let all = files(&dir.join("etcd"), "log");
    assert!(all.len() >= 40, "expected the full etcd set, found {}", all.len());
    for f in all {
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        let num = stem.trim_start_matches("etcd_");
        expect_verdict(&f, &["--model", "cas-register"], good.iter().any(|g| g == num));
    }
}

#[test]
fn porcupine_kv() {
    let dir = histories_dir().join("porcupine-kv");
    for f in files(&dir, "txt") {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let valid = if name.ends_with("-ok.txt") {
            true
        } else if name.ends_with("-bad.txt") {
            false
        } else {
            panic!("unexpected porcupine-kv file {name}");
        };
        expect_verdict(&f, &["--model", "kv"], valid);
    }
}

#[test]
fn knossos_cas_register() {
    let dir = histories_dir().join("knossos/cas-register");
    for (sub, valid) in [("good", true), ("bad", false)] {
        for f in files(&dir.join(sub), "edn") {
            expect_verdict(&f, &["--model", "cas-register", "--initial", "0", "--nil-read", "any"], valid);
        }
    }
}

#[test]
fn elle_histories() {
    let dir = histories_dir().join("elle");
    // No assertion on the verdict, but it must check without error.
    let (code, json) = check(&dir.join("paper-example.edn"), &["--model", "list-append"]);
    assert!(code == 0 || code == 1, "paper-example: exit {code}, {json}");
    assert!(json["valid"].is_boolean(), "{json}");

    let f = dir.join("si-without-g-single.edn");
    expect_verdict(&f, &["--model", "list-append", "--consistency-model", "serializable"], false);
    let (_, json) = check(&f, &["--model", "list-append", "--consistency-model", "serializable"]);
    let kinds: Vec<&str> = json["anomalies"].as_array().unwrap().iter().map(|a| a["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["G2-item"], "G2-item only: {json}");
    expect_verdict(&f, &["--model", "list-append", "--consistency-model", "snapshot-isolation"], true);
}
