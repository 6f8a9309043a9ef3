//! Region merge keeps the region count bounded after deletes: PD and three stores
//! (`test_min`: regions split at 100 keys, PD merges neighbours of at most 20 keys once they
//! kept their shape 10 s), a client writes enough keys for a couple of dozen regions, waits
//! for the splits, deletes all but a few keys, and the merges must bring the count back down
//! while every surviving key still reads back.
#![cfg(madsim)]

use keel_client::{PdClient, RawClient};
use keel_sim::cluster::{pd_endpoints, Cluster};
use keel_sim::scenario::register::{start_cluster, Knobs};
use madsim::runtime::Runtime;
use std::time::Duration;

/// Keys written: about 20 regions at `test_min`'s 100-key split threshold.
const KEYS: usize = 2000;
/// Every this-many-th key survives the deletes (so merged regions carry data).
const KEEP_EVERY: usize = 400;
/// Regions the split checker must have made before the deletes (the test means nothing
/// without them).
const SPLIT_REGIONS_MIN: usize = 10;
/// Regions at most once merges settle: the survivors fit in one region several times over,
/// so only the merge checker's pace (two at a time, each region aged 10 s) keeps it above one.
const MERGED_REGIONS_MAX: usize = 3;
const SPLIT_DEADLINE: Duration = Duration::from_secs(60);
const MERGE_DEADLINE: Duration = Duration::from_secs(300);

fn key(i: usize) -> Vec<u8> {
    format!("m/{i:05}").into_bytes()
}

/// The number of regions PD knows, polled every second until `done` holds of it or
/// `deadline` passes; returns the last count and the simulated time it took.
async fn regions_until(pd: &PdClient, deadline: Duration, done: impl Fn(usize) -> bool) -> (usize, Duration) {
    let start = tokio::time::Instant::now();
    loop {
        let count = pd.scan_regions(b"", b"", 0).await.map(|r| r.len()).unwrap_or(0);
        if done(count) || start.elapsed() > deadline {
            return (count, start.elapsed());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn run(seed: u64) -> (usize, usize, Duration) {
    let mut rt = Runtime::with_seed_and_config(seed, madsim::Config::default());
    rt.set_time_limit(Duration::from_secs(900));
    rt.block_on(async {
        let mut cluster = Cluster::new();
        let (pd_addr, _) = start_cluster(&mut cluster, 3, 3, Knobs::CHECKED);
        cluster.add_client("client");
        let task = cluster.spawn_on("client", async move {
            let client = RawClient::connect(pd_endpoints(&pd_addr)).await.expect("connect");
            let pd = PdClient::new(pd_endpoints(&pd_addr));
            for chunk in (0..KEYS).collect::<Vec<_>>().chunks(50) {
                let pairs = chunk.iter().map(|&i| (key(i), format!("value {i:032}").into_bytes()));
                client.batch_put(pairs).await.expect("batch_put");
            }
            let (split, _) = regions_until(&pd, SPLIT_DEADLINE, |n| n >= SPLIT_REGIONS_MIN).await;
            assert!(split >= SPLIT_REGIONS_MIN, "seed {seed}: only {split} regions after writing {KEYS} keys");
            let doomed: Vec<usize> = (0..KEYS).filter(|i| i % KEEP_EVERY != 0).collect();
            for chunk in doomed.chunks(50) {
                client.batch_delete(chunk.iter().map(|&i| key(i))).await.expect("batch_delete");
            }
            let (merged, took) = regions_until(&pd, MERGE_DEADLINE, |n| n <= MERGED_REGIONS_MAX).await;
            let survivors = client.scan(key(0), key(KEYS), KEYS as u32).await.expect("scan");
            let keys: Vec<Vec<u8>> = survivors.into_iter().map(|(k, _)| k).collect();
            let expected: Vec<Vec<u8>> = (0..KEYS).step_by(KEEP_EVERY).map(key).collect();
            assert_eq!(keys, expected, "seed {seed}: the survivors read back after the merges");
            // The merged regions take writes across the old boundaries.
            for i in (1..KEYS).step_by(KEEP_EVERY) {
                client.put(key(i), b"again".to_vec()).await.expect("put after merge");
                assert_eq!(client.get(key(i)).await.expect("get"), Some(b"again".to_vec()));
            }
            (split, merged, took)
        });
        task.await.expect("client")
    })
}

#[test]
fn merges_bring_the_region_count_back_down_after_deletes() {
    for seed in [1, 2, 3] {
        // A fresh thread per run, as the runner does, so thread-local RNGs follow the seed.
        let (split, merged, took) = std::thread::spawn(move || run(seed)).join().expect("simulation");
        eprintln!(
            "seed {seed}: {split} regions after {KEYS} keys; {merged} within {took:?} (simulated) of deleting all \
             but every {KEEP_EVERY}th"
        );
        assert!(merged <= MERGED_REGIONS_MAX, "seed {seed}: {merged} regions left of {split} after the deletes");
    }
}
