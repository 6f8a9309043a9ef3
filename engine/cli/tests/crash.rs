//! Real processes on loopback: a PD and three storage nodes as separate `keel` processes.
//! Writes go in while a follower, the leader and PD are each killed with SIGKILL and
//! restarted; afterwards every acknowledged write must read back.

use keel_client::{PdClient, RawClient};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ports far from the playground's defaults so a running playground doesn't interfere.
const PD_PORT: u16 = 32379;
const STORE_PORT_BASE: u16 = 32160;

struct Proc {
    args: Vec<String>,
    child: Option<Child>,
}

impl Proc {
    fn start(args: Vec<String>) -> Proc {
        let mut p = Proc { args, child: None };
        p.restart();
        p
    }

    fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(&self.args)
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn keel");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reap");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn pd_args(dir: &Path) -> Vec<String> {
    let addr = format!("127.0.0.1:{PD_PORT}");
    let data = dir.join("pd").display().to_string();
    vec!["pd".into(), "--addr".into(), addr, "--status-addr".into(), "127.0.0.1:0".into(), "--data-dir".into(), data]
}

fn store_args(dir: &Path, i: u16) -> Vec<String> {
    vec![
        "server".into(),
        "--pd".into(),
        format!("127.0.0.1:{PD_PORT}"),
        "--addr".into(),
        format!("127.0.0.1:{}", STORE_PORT_BASE + i),
        "--status-addr".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.join(format!("store-{i}")).display().to_string(),
    ]
}

async fn put_with_deadline(client: &RawClient, key: String, deadline: Duration) {
    let start = Instant::now();
    loop {
        match client.put(key.clone().into_bytes(), key.clone().into_bytes()).await {
            Ok(()) => return,
            Err(e) if start.elapsed() < deadline => {
                eprintln!("put {key}: {e} (retrying)");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("put {key} failed for {deadline:?}: {e}"),
        }
    }
}

async fn leader_store(pd: &PdClient) -> u64 {
    for _ in 0..100 {
        if let Ok(Some(info)) = pd.get_region(b"").await {
            if let Some(leader) = info.leader {
                return leader.store_id;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader known to pd");
}

#[test]
fn acknowledged_writes_survive_kill_9_of_follower_leader_and_pd() {
    let dir: PathBuf = tempfile::tempdir().expect("tempdir").keep();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut pd = Proc::start(pd_args(&dir));
        let mut stores: Vec<Proc> = (0..3).map(|i| Proc::start(store_args(&dir, i))).collect();
        let endpoints = vec![format!("127.0.0.1:{PD_PORT}")];
        let pd_client = PdClient::new(endpoints.clone());
        let client = loop {
            match RawClient::connect(endpoints.clone()).await {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let mut written = 0;
        let mut write = |n: usize| {
            let keys: Vec<String> = (written..written + n).map(|i| format!("key-{i:05}")).collect();
            written += n;
            keys
        };
        for k in write(100) {
            put_with_deadline(&client, k, Duration::from_secs(30)).await;
        }
        // Store ids are allocated by PD in registration order; map them to processes by address.
        let store_index = |store_id: u64| {
            let pd_client = pd_client.clone();
            async move {
                let store = pd_client.get_store(store_id).await.unwrap().expect("store known");
                let port: u16 = store.address.rsplit(':').next().unwrap().parse().unwrap();
                (port - STORE_PORT_BASE) as usize
            }
        };
        let leader = store_index(leader_store(&pd_client).await).await;
        let follower = (leader + 1) % 3;

        stores[follower].kill9();
        for k in write(100) {
            put_with_deadline(&client, k, Duration::from_secs(30)).await;
        }
        stores[follower].restart();

        let leader = store_index(leader_store(&pd_client).await).await;
        stores[leader].kill9();
        for k in write(100) {
            put_with_deadline(&client, k, Duration::from_secs(30)).await;
        }
        stores[leader].restart();

        pd.kill9();
        pd.restart();
        for k in write(50) {
            put_with_deadline(&client, k, Duration::from_secs(30)).await;
        }

        // Everything acknowledged is there, read through whichever node leads now.
        for i in 0..written {
            let key = format!("key-{i:05}");
            let mut value = None;
            for _ in 0..50 {
                match client.get(key.clone().into_bytes()).await {
                    Ok(v) => {
                        value = v;
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            assert_eq!(value.as_deref(), Some(key.as_bytes()), "lost {key}");
        }
        drop(stores);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
