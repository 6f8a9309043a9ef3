//! `keel pd|server --config FILE --config-check` as a user runs it: exit 0 for a valid file,
//! exit 1 naming every bad key otherwise.

use std::process::Command;

fn check(subcommand: &str, text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keel.toml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([subcommand, "--config", path.to_str().expect("utf-8 path"), "--config-check"])
        .output()
        .expect("run keel");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn config_check_accepts_the_examples_and_names_every_bad_key() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (sub, file) in [("pd", "keel-pd.example.toml"), ("server", "keel-server.example.toml")] {
        let text = std::fs::read_to_string(examples.join(file)).expect("example config");
        let (ok, stderr) = check(sub, &text);
        assert!(ok, "{file} rejected: {stderr}");
    }
    let (ok, stderr) = check("server", "adr = \"127.0.0.1:1\"\nlabels = [\"zone=a\"]\npd-endpoints = []\n");
    assert!(!ok);
    for key in ["`adr`", "`labels`", "`pd-endpoints`"] {
        assert!(stderr.contains(key), "{key} not named in {stderr}");
    }
    let (ok, stderr) = check("pd", "max-replicas = 3\nmax_replicas = 3\n");
    assert!(!ok && stderr.contains("`max_replicas`"), "{stderr}");
}
