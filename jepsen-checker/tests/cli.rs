//! The binary's contract (DESIGN.md §6): explanation lines, then one JSON line
//! `{"valid","ops","anomalies","elapsed_ms"}`; exit 0 valid, 1 invalid, 3 unknown,
//! 2 bad input or usage.

use std::path::PathBuf;
use std::process::Command;

fn tmp(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jepsen-checker-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn run(args: &[&str]) -> (i32, Vec<String>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jepsen-checker")).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    (out.status.code().unwrap(), stdout, String::from_utf8_lossy(&out.stderr).to_string())
}

fn last_json(lines: &[String]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(lines.last().expect("some output")).expect("last line is JSON");
    for k in ["valid", "ops", "anomalies", "elapsed_ms"] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    v
}

const VALID_JSONL: &str = r#"{"process":0,"type":"invoke","f":"write","key":"a","value":1,"time":1}
{"process":0,"type":"ok","f":"write","key":"a","value":1,"time":2}
{"process":1,"type":"invoke","f":"read","key":"a","value":null,"time":3}
{"process":1,"type":"ok","f":"read","key":"a","value":1,"time":4}
{"process":2,"type":"invoke","f":"cas","key":"b","value":[null,5],"time":5}
{"process":2,"type":"info","f":"cas","key":"b","value":[null,5],"time":6}
"#;

const STALE_READ: &str = "[{:process 0 :type :invoke :f :write :value 1}
 {:process 0 :type :ok :f :write :value 1}
 {:process 1 :type :invoke :f :read :value nil}
 {:process 1 :type :ok :f :read :value 0}]";

#[test]
fn valid_exits_0() {
    let f = tmp("valid.jsonl", VALID_JSONL);
    let (code, out, _) = run(&[f.to_str().unwrap(), "--model", "cas-register"]);
    assert_eq!(code, 0, "{out:?}");
    let j = last_json(&out);
    assert_eq!(j["valid"], true);
    assert_eq!(j["ops"], 3);
    assert!(out.len() >= 2, "an explanation line comes before the JSON");
}

#[test]
fn invalid_exits_1_with_html() {
    let f = tmp("stale.edn", STALE_READ);
    let html = f.with_extension("html");
    let (code, out, _) =
        run(&[f.to_str().unwrap(), "--model", "cas-register", "--initial", "0", "--html", html.to_str().unwrap()]);
    assert_eq!(code, 1, "{out:?}");
    let j = last_json(&out);
    assert_eq!(j["valid"], false);
    assert_eq!(j["anomalies"][0]["type"], "nonlinearizable");
    assert!(out.iter().any(|l| l.starts_with("Cannot place: p1 read 0")), "{out:?}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg")
            && page.contains("#c0392b")
            && !page.contains("<script")
            && !page.contains("http://www.w3.org/1999")
    );
}

#[test]
fn unknown_exits_3() {
    // Many concurrent unknown-outcome writes and a budget of one configuration.
    let mut s = String::new();
    for p in 0..12 {
        s.push_str(&format!("{{:process {p} :type :invoke :f :write :value {p}}}\n"));
    }
    s.push_str("{:process 99 :type :invoke :f :read :value nil}\n{:process 99 :type :ok :f :read :value 77}\n");
    let f = tmp("unknown.edn", &s);
    let (code, out, _) = run(&[f.to_str().unwrap(), "--model", "register", "--max-configs", "1"]);
    assert_eq!(code, 3, "{out:?}");
    assert_eq!(last_json(&out)["valid"], "unknown");
}

#[test]
fn bad_input_exits_2_with_line() {
    let f = tmp("bad.jsonl", "{\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}\n{\"process\":0,\"type\":\"ok\",\n");
    let (code, out, err) = run(&[f.to_str().unwrap(), "--model", "cas-register"]);
    assert_eq!(code, 2);
    assert!(err.contains("line 2"), "{err}");
    assert!(last_json(&out)["error"].as_str().unwrap().contains("line 2"));

    let f = tmp("badf.edn", "{:process 0 :type :invoke :f :frobnicate :value 1}\n");
    let (code, _, err) = run(&[f.to_str().unwrap(), "--model", "cas-register"]);
    assert_eq!(code, 2);
    assert!(err.contains("line 1") && err.contains("frobnicate"), "{err}");

    let (code, _, _) = run(&["/nonexistent/file", "--model", "kv"]);
    assert_eq!(code, 2);
}

#[test]
fn usage_errors_exit_2() {
    let f = tmp("u.jsonl", VALID_JSONL);
    assert_eq!(run(&[f.to_str().unwrap()]).0, 2, "missing --model");
    assert_eq!(run(&[f.to_str().unwrap(), "--model", "nope"]).0, 2);
    assert_eq!(run(&[f.to_str().unwrap(), "--model", "list-append", "--consistency-model", "nope"]).0, 2);
}

#[test]
fn format_override_and_txn_jsonl() {
    let ev = jepsen_checker::gen::planted("G1c", 20, 3).unwrap();
    let f = tmp("g1c.jsonl", &jepsen_checker::gen::to_jsonl(&ev));
    let (code, out, _) = run(&[
        f.to_str().unwrap(),
        "--model",
        "list-append",
        "--format",
        "jsonl",
        "--consistency-model",
        "read-committed",
    ]);
    assert_eq!(code, 1, "{out:?}");
    let j = last_json(&out);
    assert_eq!(j["anomalies"][0]["type"], "G1c");
    assert!(j["ruled_out"].as_array().unwrap().iter().any(|m| m == "read-committed"));
    // Forcing the wrong format is a clear input error.
    let (code, _, err) = run(&[f.to_str().unwrap(), "--model", "list-append", "--format", "log"]);
    assert!(code == 2 || code == 0, "{err}");
}

#[test]
fn no_partition_agrees() {
    let f = tmp("np.jsonl", VALID_JSONL);
    let (code, out, _) = run(&[f.to_str().unwrap(), "--model", "cas-register", "--no-partition"]);
    assert_eq!(code, 0, "{out:?}");
}
