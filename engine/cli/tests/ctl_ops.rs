//! `keel ctl` cluster operations against real processes (PD + 4 stores): region lookup,
//! manual split, leader transfer, GC safe point, and remove-store (PD drains the store's
//! replicas to the spare store, then marks it Tombstone), with the data intact throughout;
//! and a key written with `put --ttl` expiring.

mod common;

use common::Cluster;
use std::time::{Duration, Instant};

/// How long PD may take to drain a removed store and mark it Tombstone.
const DRAIN_MAX: Duration = Duration::from_secs(120);

/// A `keel ctl region` / `regions` line: (region id, start key, leader store, peer stores).
fn parse_region(line: &str) -> (u64, String, Option<u64>, Vec<u64>) {
    let fields: Vec<&str> = line.split('\t').collect();
    let id = fields[0].parse().expect("region id");
    let start = fields[1].trim_start_matches('[').split(", ").next().unwrap().trim_matches('"').to_string();
    let store_of = |p: &str| p.split('@').nth(1).and_then(|s| s.parse().ok());
    let leader = fields[3].strip_prefix("leader ").and_then(store_of);
    let peers = fields[4].strip_prefix("peers ").unwrap().split(',').filter_map(store_of).collect();
    (id, start, leader, peers)
}

fn ok(cluster: &Cluster, args: &[&str]) -> String {
    let (success, out, err) = cluster.ctl(args);
    assert!(success, "keel ctl {args:?} failed: {err}");
    out
}

#[test]
fn region_split_transfer_leader_gc_safepoint_and_remove_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = Cluster::start(dir.path(), 4, &[]);
    cluster.wait_ready();
    let keys: Vec<String> = ('a'..='z').map(|c| c.to_string()).collect();
    for k in &keys {
        ok(&cluster, &["put", k, &format!("v-{k}")]);
    }
    // A key written with a TTL reads back now and is gone once it runs out (checked at the end).
    let ttl_written = Instant::now();
    ok(&cluster, &["put", "--ttl", "2", "short-lived", "v"]);
    assert_eq!(ok(&cluster, &["get", "short-lived"]).trim(), "v");

    // split m: m starts a region of its own, a stays in the first.
    let (first, start, _, _) = parse_region(ok(&cluster, &["region", "m"]).trim());
    assert_eq!(start, "");
    ok(&cluster, &["split", "m"]);
    let (right, start, _, _) = parse_region(ok(&cluster, &["region", "m"]).trim());
    assert_eq!(start, "m");
    assert_ne!(right, first);
    assert_eq!(ok(&cluster, &["regions"]).lines().count(), 2);
    // Splitting at m again is done already: it answers m's region and splits nothing.
    let again = ok(&cluster, &["split", "m"]);
    assert!(again.trim().starts_with(&format!("{right}\t")), "the region m starts: {again}");
    assert_eq!(ok(&cluster, &["regions"]).lines().count(), 2);
    assert!(!cluster.ctl(&["split", ""]).0, "an empty split key is refused");

    // transfer-leader: move region a's leadership to another of its stores.
    let (region, _, leader, peers) = parse_region(ok(&cluster, &["region", "a"]).trim());
    let target = *peers.iter().find(|s| Some(**s) != leader).expect("a follower");
    ok(&cluster, &["transfer-leader", &region.to_string(), &target.to_string()]);
    let (_, _, leader, _) = parse_region(ok(&cluster, &["region", "a"]).trim());
    assert_eq!(leader, Some(target), "PD sees the new leader");
    let (refused, _, err) = cluster.ctl(&["transfer-leader", &region.to_string(), "999999"]);
    assert!(!refused && err.contains("no peer on store 999999"), "{err}");

    // gc-safepoint: shows 0, advances, never moves back.
    assert_eq!(ok(&cluster, &["gc-safepoint"]).trim(), "0");
    assert_eq!(ok(&cluster, &["gc-safepoint", "--set", "1000"]).trim(), "1000");
    assert_eq!(ok(&cluster, &["gc-safepoint", "--set", "10"]).trim(), "1000");
    assert_eq!(ok(&cluster, &["gc-safepoint"]).trim(), "1000");

    // remove-store: a store with replicas is drained onto the spare store, then tombstoned.
    let victim = peers.iter().copied().find(|s| *s != target).expect("another replica");
    ok(&cluster, &["remove-store", &victim.to_string()]);
    let started = Instant::now();
    loop {
        let stores = ok(&cluster, &["stores"]);
        let state = stores.lines().find(|l| l.starts_with(&format!("{victim}\t"))).map(|l| l.split('\t').nth(2));
        if state == Some(Some("Tombstone")) {
            break;
        }
        assert!(started.elapsed() < DRAIN_MAX, "store {victim} not tombstone after {DRAIN_MAX:?}: {stores}");
        std::thread::sleep(Duration::from_millis(500));
    }
    for line in ok(&cluster, &["regions"]).lines() {
        let (_, _, _, peers) = parse_region(line);
        assert!(!peers.contains(&victim), "region still on removed store: {line}");
        assert_eq!(peers.len(), 3, "every region keeps 3 replicas: {line}");
    }
    for k in &keys {
        assert_eq!(ok(&cluster, &["get", k]).trim(), format!("v-{k}"));
    }
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(ttl_written.elapsed()));
    let (found, _, err) = cluster.ctl(&["get", "short-lived"]);
    assert!(!found && err.contains("not found"), "a key past its TTL: {err}");
}
