//! Storage benchmark: FjallEngine synced-batch throughput (1, 16 and 256 small
//! writes per batch, 16 B keys, 64 B values, into a temporary directory on the
//! real disk) and SimEngine operation rates for reference. Prints a table.
//!
//! `cargo bench -p keel-storage --bench storage`; `KEEL_BENCH_SECS` sets the time
//! per row (default 2), `KEEL_BENCH_DIR` the parent directory of the database.

use keel_storage::{CfName, Engine, SimEngine, WriteBatch, WriteOptions};
use std::time::{Duration, Instant};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 64;

fn key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(b"bench/k/");
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn value(i: u64) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in v.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    v
}

fn secs() -> Duration {
    let s: f64 = std::env::var("KEEL_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(s)
}

/// Writes batches of `per_batch` puts for `dur`; returns (batches, elapsed).
fn write_batches(engine: &dyn Engine, per_batch: usize, sync: bool, dur: Duration, next: &mut u64) -> (u64, Duration) {
    let start = Instant::now();
    let mut batches = 0u64;
    while start.elapsed() < dur {
        let mut b = WriteBatch::with_capacity(per_batch);
        for _ in 0..per_batch {
            b.put(CfName::Raft, &key(*next), &value(*next));
            *next += 1;
        }
        engine.write(b, WriteOptions { sync }).expect("write");
        batches += 1;
    }
    (batches, start.elapsed())
}

fn row(name: &str, per_batch: usize, batches: u64, elapsed: Duration) {
    let s = elapsed.as_secs_f64();
    let writes = batches * per_batch as u64;
    let mb = (writes * (KEY_LEN + VALUE_LEN) as u64) as f64 / 1e6;
    println!(
        "| {name:<28} | {per_batch:>9} | {:>12.0} | {:>12.0} | {:>8.2} | {:>10.1} |",
        batches as f64 / s,
        writes as f64 / s,
        mb / s,
        s * 1e6 / batches as f64
    );
}

fn header(title: &str) {
    println!("\n{title}");
    println!(
        "| {:<28} | {:>9} | {:>12} | {:>12} | {:>8} | {:>10} |",
        "engine / mode", "puts/batch", "batches/s", "puts/s", "MB/s", "us/batch"
    );
    println!("|{:-<30}|{:-<11}|{:-<14}|{:-<14}|{:-<10}|{:-<12}|", "", "", "", "", "", "");
}

#[cfg(not(madsim))]
fn fjall(dur: Duration) {
    use keel_storage::FjallEngine;
    let parent = std::env::var_os("KEEL_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&parent).expect("tempdir");
    let engine = FjallEngine::open(dir.path()).expect("open");
    header(&format!(
        "FjallEngine ({}; {KEY_LEN} B keys, {VALUE_LEN} B values, MB/s counts key+value bytes)",
        parent.display()
    ));
    let mut next = 0u64;
    // Warm up (journal file creation and first extents), not reported.
    write_batches(&engine, 16, true, dur / 4, &mut next);
    for per_batch in [1usize, 16, 256] {
        let (b, e) = write_batches(&engine, per_batch, true, dur, &mut next);
        row("fjall synced", per_batch, b, e);
    }
    for per_batch in [1usize, 256] {
        let (b, e) = write_batches(&engine, per_batch, false, dur, &mut next);
        row("fjall unsynced", per_batch, b, e);
    }
    let snap = engine.snapshot();
    let start = Instant::now();
    let mut gets = 0u64;
    while start.elapsed() < dur {
        let i = gets.wrapping_mul(7919) % next;
        assert!(snap.get(CfName::Raft, &key(i)).expect("get").is_some());
        gets += 1;
    }
    println!("fjall snapshot point gets over {next} keys: {:.0} gets/s", gets as f64 / start.elapsed().as_secs_f64());
}

fn sim(dur: Duration) {
    let engine = SimEngine::new();
    header("SimEngine (in memory, for reference)");
    let mut next = 0u64;
    // Preload so the maps have a realistic depth.
    let (b, e) = write_batches(&engine, 256, true, dur / 4, &mut next);
    row("sim preload synced", 256, b, e);
    for per_batch in [1usize, 16, 256] {
        let (b, e) = write_batches(&engine, per_batch, true, dur, &mut next);
        row("sim synced", per_batch, b, e);
    }
    let (b, e) = write_batches(&engine, 1, false, dur, &mut next);
    row("sim unsynced", 1, b, e);
    // Interleaved snapshot + write: the pattern txn commands produce.
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < dur {
        let snap = engine.snapshot();
        let i = ops.wrapping_mul(7919) % next;
        assert!(snap.get(CfName::Raft, &key(i)).expect("get").is_some());
        let mut b = WriteBatch::new();
        b.put(CfName::Raft, &key(i), &value(ops));
        engine.write(b, WriteOptions::NO_SYNC).expect("write");
        ops += 1;
    }
    println!(
        "sim snapshot+get+write cycles over {next} keys: {:.0} cycles/s",
        ops as f64 / start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let mut scans = 0u64;
    let snap = engine.snapshot();
    while start.elapsed() < dur {
        let i = scans.wrapping_mul(7919) % next;
        let items = snap.scan(CfName::Raft, &key(i), None, scans % 2 == 1, 10).expect("scan");
        assert!(!items.is_empty());
        scans += 1;
    }
    println!("sim 10-item scans: {:.0} scans/s", scans as f64 / start.elapsed().as_secs_f64());
}

fn main() {
    let dur = secs();
    #[cfg(not(madsim))]
    fjall(dur);
    sim(dur);
}
