//! Graceful shutdown of a real `keel server`: SIGTERM to the store that leads the region
//! makes it hand its leadership to another store and exit 0 within a bound, while a client
//! keeps writing; the cluster keeps serving and every acknowledged write reads back. PD
//! exits 0 on SIGTERM too.

mod common;

use common::{http_get, Cluster};
use keel_client::RawClient;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a SIGTERM'd process may take to exit.
const EXIT_MAX: Duration = Duration::from_secs(20);

fn json(addr: &str, path: &str) -> serde_json::Value {
    let (code, body) = http_get(addr, path).expect("GET status endpoint");
    assert_eq!(code, 200, "{addr}{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Index of the store process that leads the first region, as PD sees it.
fn leader_index(cluster: &Cluster) -> usize {
    for _ in 0..100 {
        let regions = json(&cluster.pd_status, "/regions");
        if let Some(leader) = regions[0]["leader_store_id"].as_u64() {
            for (i, status) in cluster.store_status.iter().enumerate() {
                if json(status, "/status")["store_id"].as_u64() == Some(leader) {
                    return i;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no leader known to pd");
}

#[test]
fn sigterm_moves_leaders_away_exits_0_and_loses_no_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path(), 3, &[]);
    cluster.wait_ready();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let client = rt.block_on(RawClient::connect(vec![cluster.pd_addr.clone()])).expect("connect");

    // A writer that keeps going through the shutdown; it remembers what was acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        rt.spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("key-{i:06}");
                if client.put(key.clone().into_bytes(), key.clone().into_bytes()).await.is_ok() {
                    acked.lock().unwrap().push(key);
                }
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let victim = leader_index(&cluster);
    let before = acked.lock().unwrap().len();
    let status = cluster.stores[victim].terminate(EXIT_MAX).expect("server exits after SIGTERM within the bound");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    let log = std::fs::read_to_string(dir.path().join(format!("store-{victim}.log"))).expect("store log");
    assert!(log.contains("keel server: stopped"), "{log}");
    assert!(!log.contains("still led"), "leaders were handed over before exit: {log}");

    // The two remaining stores keep serving.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    rt.block_on(writer).expect("writer");
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > before, "writes continue after the shutdown ({before} before, {} after)", acked.len());
    rt.block_on(async {
        for key in &acked {
            let value = client.get(key.clone().into_bytes()).await.expect("read after shutdown");
            assert_eq!(value.as_deref(), Some(key.as_bytes()), "acknowledged write {key} lost");
        }
    });

    let status = cluster.pds[0].terminate(EXIT_MAX).expect("pd exits after SIGTERM within the bound");
    assert!(status.success(), "pd exits 0 on SIGTERM, got {status}");
}
