//! The raw TTL purge in a simulated cluster: PD and three stores (`test_min`, so regions split
//! under the writes and the purge works in small batches), a client writes keys with a short
//! TTL, a long TTL and none; once the short ones expire, every replica's disk must lose them
//! (value and expiry) while the others stay, and the client must read exactly the survivors.
#![cfg(madsim)]

use keel_client::RawClient;
use keel_sim::cluster::{pd_endpoints, Cluster};
use keel_sim::scenario::register::{start_cluster, Knobs};
use keel_storage::{CfName, Engine};
use madsim::runtime::Runtime;
use std::time::Duration;

/// Keys written: enough for several regions at `test_min`'s 100-key split threshold.
const KEYS: usize = 300;
const SHORT_TTL: Duration = Duration::from_secs(1);
const LONG_TTL: Duration = Duration::from_secs(3600);
/// The purge runs every 2 s at `test_min`, 16 keys per region per round, so 100 expired keys
/// over a few regions go within ~15 s; this leaves room for splits and elections.
const PURGE_DEADLINE: Duration = Duration::from_secs(60);

fn key(i: usize) -> Vec<u8> {
    format!("ttl/{i:04}").into_bytes()
}

/// Short TTL for every third key, long TTL for the next, none for the rest.
fn ttl_of(i: usize) -> Option<Duration> {
    match i % 3 {
        0 => Some(SHORT_TTL),
        1 => Some(LONG_TTL),
        _ => None,
    }
}

/// The keys some store still holds a value or an expiry for that it should have purged, and
/// the keys some store lost that it should keep.
fn disk_problems(cluster: &Cluster, stores: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for store in stores {
        let disk = &cluster.env(store).disk;
        for i in 0..KEYS {
            let value = disk.get(CfName::Raw, &key(i)).expect("read value");
            let expiry = disk.get(CfName::RawTtl, &key(i)).expect("read expiry");
            let expected = match ttl_of(i) {
                Some(SHORT_TTL) => (false, false),
                Some(_) => (true, true),
                None => (true, false),
            };
            if (value.is_some(), expiry.is_some()) != expected {
                problems.push(format!("{store} key {i}: value {} expiry {}", value.is_some(), expiry.is_some()));
            }
        }
    }
    problems
}

fn run(seed: u64) {
    let mut rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.set_time_limit(Duration::from_secs(600));
    rt.block_on(async {
        let mut cluster = Cluster::new();
        let (pd_addr, stores) = start_cluster(&mut cluster, 3, 3, Knobs::CHECKED);
        cluster.add_client("client");
        let writes = cluster.spawn_on("client", async move {
            let client = RawClient::connect(pd_endpoints(&pd_addr)).await.expect("connect");
            for i in 0..KEYS {
                let value = format!("value {i}").into_bytes();
                match ttl_of(i) {
                    Some(ttl) => client.put_with_ttl(key(i), value, ttl).await.expect("put_with_ttl"),
                    None => client.put(key(i), value).await.expect("put"),
                }
            }
            client
        });
        let client = writes.await.expect("writer");

        let written = tokio::time::Instant::now();
        let problems = loop {
            let problems = disk_problems(&cluster, &stores);
            if problems.is_empty() || written.elapsed() > PURGE_DEADLINE {
                break problems;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert!(problems.is_empty(), "seed {seed}: not purged within {PURGE_DEADLINE:?}: {problems:?}");

        let survivors = cluster
            .spawn_on("client", async move { client.scan(key(0), key(KEYS), KEYS as u32).await.expect("scan") })
            .await
            .expect("reader");
        let keys: Vec<Vec<u8>> = survivors.into_iter().map(|(k, _)| k).collect();
        let expected: Vec<Vec<u8>> = (0..KEYS).filter(|&i| ttl_of(i) != Some(SHORT_TTL)).map(key).collect();
        assert_eq!(keys, expected, "seed {seed}: the client reads exactly the keys not expired");
    });
}

#[test]
fn expired_keys_are_purged_from_every_replica() {
    for seed in [1, 2] {
        // A fresh thread per run, as the runner does, so thread-local RNGs follow the seed.
        std::thread::spawn(move || run(seed)).join().expect("simulation");
    }
}
