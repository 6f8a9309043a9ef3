//! Model-based test: random sequences of batches, reads, scans, snapshots, syncs,
//! crashes and reopens against both engines and a `BTreeMap` reference.
//!
//! After a crash (SimEngine: `crash(rng)`; FjallEngine: a copy of its directory
//! taken while it is open, i.e. the file image a `kill -9` leaves, then opened) the
//! engine must equal the reference at some batch boundary between the last sync
//! and the last write. After a clean reopen it must equal the last write.
//!
//! With the `planted-bugs` feature, extra tests switch a bug on in each engine and
//! assert that this same test then fails.

use keel_storage::{CfName, Engine, Error, SimEngine, Snapshot, WriteBatch, WriteOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::ops::Bound;

// ---------------------------------------------------------------------------
// Operations

#[derive(Clone, Debug)]
enum BOp {
    Put(CfName, Vec<u8>, Vec<u8>),
    Delete(CfName, Vec<u8>),
    DeleteRange(CfName, Vec<u8>, Option<Vec<u8>>),
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        ops: Vec<BOp>,
        sync: bool,
    },
    Get(CfName, Vec<u8>),
    Scan {
        cf: CfName,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        reverse: bool,
        limit: usize,
    },
    TakeSnapshot,
    SnapshotScan {
        which: usize,
        cf: CfName,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
        reverse: bool,
    },
    SnapshotGet {
        which: usize,
        cf: CfName,
        key: Vec<u8>,
    },
    Size {
        cf: CfName,
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
    Sync,
    /// Crash (kill -9 / power loss) with this seed for the torn-tail choice.
    Crash(u64),
    /// Clean shutdown and reopen.
    Reopen,
    /// Make the next sync fail (engines that support fault injection only).
    FailNextSync,
}

fn cf() -> impl Strategy<Value = CfName> {
    prop_oneof![
        3 => Just(CfName::Raw),
        2 => Just(CfName::Lock),
        1 => Just(CfName::Default),
        1 => Just(CfName::Write),
        1 => Just(CfName::Raft),
        1 => Just(CfName::RawTtl),
    ]
}

/// Small alphabet, short keys: lots of collisions and range overlaps.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(b'a'..=b'e', 1..=3)
}

fn bound_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(b'a'..=b'e', 0..=2)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => prop::collection::vec(any::<u8>(), 0..12),
        // Sometimes large, to overflow fjall's 8 KiB journal buffer mid-batch.
        1 => (1000usize..4000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
}

fn range() -> impl Strategy<Value = (Vec<u8>, Option<Vec<u8>>)> {
    (bound_key(), prop::option::weighted(0.8, bound_key()))
}

fn bop() -> impl Strategy<Value = BOp> {
    prop_oneof![
        6 => (cf(), key(), value()).prop_map(|(c, k, v)| BOp::Put(c, k, v)),
        2 => (cf(), key()).prop_map(|(c, k)| BOp::Delete(c, k)),
        1 => (cf(), range()).prop_map(|(c, (s, e))| {
            // Keep ranges well-formed (start <= end): inverted ones are rejected,
            // which a unit test covers.
            match e {
                Some(e) if e < s => BOp::DeleteRange(c, e, Some(s)),
                e => BOp::DeleteRange(c, s, e),
            }
        }),
    ]
}

fn op(fault_injection: bool) -> impl Strategy<Value = Op> {
    let fault = if fault_injection { Op::FailNextSync } else { Op::Sync };
    prop_oneof![
        10 => (prop::collection::vec(bop(), 0..6), prop::bool::weighted(0.25))
            .prop_map(|(ops, sync)| Op::Write { ops, sync }),
        3 => (cf(), key()).prop_map(|(c, k)| Op::Get(c, k)),
        3 => (cf(), range(), any::<bool>(), 0usize..12).prop_map(|(cf, (start, end), reverse, limit)| {
            Op::Scan { cf, start, end, reverse, limit }
        }),
        1 => Just(Op::TakeSnapshot),
        2 => (any::<usize>(), cf(), range(), any::<bool>()).prop_map(|(which, cf, (start, end), reverse)| {
            Op::SnapshotScan { which, cf, start, end, reverse }
        }),
        1 => (any::<usize>(), cf(), key()).prop_map(|(which, cf, key)| Op::SnapshotGet { which, cf, key }),
        1 => (cf(), range()).prop_map(|(cf, (start, end))| Op::Size { cf, start, end }),
        1 => Just(Op::Sync),
        2 => any::<u64>().prop_map(Op::Crash),
        1 => Just(Op::Reopen),
        1 => Just(fault),
    ]
}

fn ops(fault_injection: bool, max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(fault_injection), 1..max_len)
}

// ---------------------------------------------------------------------------
// Reference model

type State = [BTreeMap<Vec<u8>, Vec<u8>>; CfName::ALL.len()];

fn apply(state: &mut State, ops: &[BOp]) {
    for op in ops {
        match op {
            BOp::Put(cf, k, v) => {
                state[cf.index()].insert(k.clone(), v.clone());
            }
            BOp::Delete(cf, k) => {
                state[cf.index()].remove(k);
            }
            BOp::DeleteRange(cf, s, e) => {
                state[cf.index()].retain(|k, _| !(k >= s && e.as_ref().is_none_or(|e| k < e)));
            }
        }
    }
}

fn model_scan(
    state: &State,
    cf: CfName,
    start: &[u8],
    end: Option<&[u8]>,
    reverse: bool,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let in_range = |k: &Vec<u8>| k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e);
    let items = state[cf.index()].iter().filter(|(k, _)| in_range(k));
    let items: Vec<_> = if reverse { items.rev().take(limit).collect() } else { items.take(limit).collect() };
    items.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

// ---------------------------------------------------------------------------
// Engines under test

trait Harness {
    fn engine(&self) -> &dyn Engine;
    /// Crashes and reopens the engine.
    fn crash(&mut self, seed: u64);
    /// Shuts down cleanly and reopens.
    fn reopen(&mut self);
    /// Arms a sync failure; returns false if unsupported.
    fn fail_next_sync(&mut self) -> bool;
}

struct SimHarness {
    engine: SimEngine,
}

impl SimHarness {
    fn new(_bug: Option<&'static str>) -> Self {
        let engine = SimEngine::new();
        #[cfg(feature = "planted-bugs")]
        engine.plant_bug(planted(_bug));
        SimHarness { engine }
    }
}

impl Harness for SimHarness {
    fn engine(&self) -> &dyn Engine {
        &self.engine
    }
    fn crash(&mut self, seed: u64) {
        self.engine.crash(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    }
    fn reopen(&mut self) {
        // A clean restart: the OS keeps every written page.
        self.engine.crash_keeping(usize::MAX);
    }
    fn fail_next_sync(&mut self) -> bool {
        self.engine.fail_next_sync();
        true
    }
}

#[cfg(not(madsim))]
mod fjall_harness {
    use super::*;
    use keel_storage::FjallEngine;
    use std::path::Path;
    use tempfile::TempDir;

    pub struct FjallHarness {
        dir: TempDir,
        engine: Option<FjallEngine>,
        bug: Option<&'static str>,
    }

    /// Test databases live on tmpfs when there is one: this test checks logic and
    /// crash images, not the disk, and real fsyncs would dominate its run time.
    /// `KEEL_STORAGE_TEST_DIR` overrides.
    fn scratch_dir() -> TempDir {
        let base = std::env::var_os("KEEL_STORAGE_TEST_DIR")
            .map(std::path::PathBuf::from)
            .or_else(|| Some(std::path::PathBuf::from("/dev/shm")).filter(|p| p.is_dir()));
        match base {
            Some(base) => tempfile::tempdir_in(base).unwrap(),
            None => tempfile::tempdir().unwrap(),
        }
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    impl FjallHarness {
        pub fn new(bug: Option<&'static str>) -> Self {
            let dir = scratch_dir();
            let mut h = FjallHarness { dir, engine: None, bug };
            h.open();
            h
        }

        fn open(&mut self) {
            let engine = FjallEngine::open(self.dir.path()).unwrap();
            #[cfg(feature = "planted-bugs")]
            engine.plant_bug(planted(self.bug));
            let _ = self.bug;
            self.engine = Some(engine);
        }
    }

    impl Harness for FjallHarness {
        fn engine(&self) -> &dyn Engine {
            self.engine.as_ref().unwrap()
        }
        fn crash(&mut self, _seed: u64) {
            // The file image a kill -9 leaves: whatever reached the OS. (In-process
            // we cannot model losing the OS page cache; only fsync accounting could.)
            let image = scratch_dir();
            copy_dir(self.dir.path(), image.path());
            self.engine = None;
            self.dir = image;
            self.open();
        }
        fn reopen(&mut self) {
            self.engine = None;
            self.open();
        }
        fn fail_next_sync(&mut self) -> bool {
            false
        }
    }
}

#[cfg(feature = "planted-bugs")]
fn planted(bug: Option<&'static str>) -> Option<keel_storage::PlantedBug> {
    use keel_storage::PlantedBug::*;
    match bug? {
        "sim-keep-unsynced" => Some(SimKeepUnsyncedAfterCrash),
        "sim-ignore-sync" => Some(SimIgnoreSync),
        "fjall-skip-sync" => Some(FjallSkipSync),
        other => panic!("unknown planted bug {other}"),
    }
}

// ---------------------------------------------------------------------------
// The test body

fn full_state(engine: &dyn Engine) -> Result<State, TestCaseError> {
    let snap = engine.snapshot();
    let mut state: State = Default::default();
    for cf in CfName::ALL {
        let items = snap
            .scan(cf, b"", None, false, usize::MAX)
            .map_err(|e| TestCaseError::fail(format!("full scan of {cf}: {e}")))?;
        state[cf.index()] = items.into_iter().collect();
    }
    Ok(state)
}

fn expect_poisoned<T: std::fmt::Debug>(what: &str, r: keel_storage::Result<T>) -> Result<(), TestCaseError> {
    match r {
        Err(Error::Poisoned) => Ok(()),
        other => Err(TestCaseError::fail(format!("{what} on a poisoned engine returned {other:?}"))),
    }
}

fn run_model(h: &mut dyn Harness, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut cur: State = Default::default();
    // States at every batch boundary since the last sync point; [0] is durable.
    let mut history: Vec<State> = vec![cur.clone()];
    let mut snaps: Vec<(Box<dyn Snapshot>, State)> = Vec::new();
    let mut poisoned = false;
    let mut sync_armed = false;

    for (step, op) in ops.iter().enumerate() {
        let ctx = |msg: String| TestCaseError::fail(format!("step {step} {op:?}: {msg}"));
        match op {
            Op::Write { ops: bops, sync } => {
                let mut batch = WriteBatch::new();
                for b in bops {
                    match b {
                        BOp::Put(cf, k, v) => batch.put(*cf, k, v),
                        BOp::Delete(cf, k) => batch.delete(*cf, k),
                        BOp::DeleteRange(cf, s, Some(e)) => batch.delete_range(*cf, s, e),
                        BOp::DeleteRange(cf, s, None) => batch.delete_from(*cf, s),
                    }
                }
                let r = h.engine().write(batch, WriteOptions { sync: *sync });
                if poisoned {
                    expect_poisoned("write", r)?;
                    continue;
                }
                if *sync && sync_armed {
                    sync_armed = false;
                    if !matches!(r, Err(Error::Io(_))) {
                        return Err(ctx(format!("armed sync failure, write returned {r:?}")));
                    }
                    poisoned = true;
                    if !bops.is_empty() {
                        apply(&mut cur, bops);
                        history.push(cur.clone());
                    }
                    continue;
                }
                r.map_err(|e| ctx(format!("write failed: {e}")))?;
                if !bops.is_empty() {
                    apply(&mut cur, bops);
                    history.push(cur.clone());
                }
                if *sync {
                    history = vec![cur.clone()];
                }
            }
            Op::Get(cf, k) => {
                let r = h.engine().get(*cf, k);
                if poisoned {
                    expect_poisoned("get", r)?;
                    continue;
                }
                let got = r.map_err(|e| ctx(format!("get: {e}")))?;
                prop_assert_eq!(got.as_ref(), cur[cf.index()].get(k), "step {} {:?}", step, op);
            }
            Op::Scan { cf, start, end, reverse, limit } => {
                let snap = h.engine().snapshot();
                let r = snap.scan(*cf, start, end.as_deref(), *reverse, *limit);
                if poisoned {
                    expect_poisoned("scan", r)?;
                    continue;
                }
                let got = r.map_err(|e| ctx(format!("scan: {e}")))?;
                let want = model_scan(&cur, *cf, start, end.as_deref(), *reverse, *limit);
                prop_assert_eq!(got, want, "step {} {:?}", step, op);
            }
            Op::TakeSnapshot => {
                snaps.push((h.engine().snapshot(), cur.clone()));
            }
            Op::SnapshotScan { which, cf, start, end, reverse } => {
                if snaps.is_empty() {
                    continue;
                }
                let (snap, state) = &snaps[which % snaps.len()];
                let r = snap.scan(*cf, start, end.as_deref(), *reverse, usize::MAX);
                if poisoned {
                    expect_poisoned("snapshot scan", r)?;
                    continue;
                }
                let got = r.map_err(|e| ctx(format!("snapshot scan: {e}")))?;
                let want = model_scan(state, *cf, start, end.as_deref(), *reverse, usize::MAX);
                prop_assert_eq!(got, want, "step {} {:?}", step, op);
                // The iterator API agrees with scan, both directions, other bounds.
                let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Included);
                let it: Vec<_> = snap
                    .iter(*cf, Bound::Excluded(start), upper, *reverse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| ctx(format!("snapshot iter: {e}")))?;
                let want: Vec<_> = {
                    let m = &state[cf.index()];
                    let f = m
                        .iter()
                        .filter(|(k, _)| k.as_slice() > start.as_slice() && end.as_ref().is_none_or(|e| *k <= e));
                    let v: Vec<_> = if *reverse { f.rev().collect() } else { f.collect() };
                    v.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect()
                };
                prop_assert_eq!(it, want, "iter at step {} {:?}", step, op);
            }
            Op::SnapshotGet { which, cf, key } => {
                if snaps.is_empty() {
                    continue;
                }
                let (snap, state) = &snaps[which % snaps.len()];
                let r = snap.get(*cf, key);
                if poisoned {
                    expect_poisoned("snapshot get", r)?;
                    continue;
                }
                let got = r.map_err(|e| ctx(format!("snapshot get: {e}")))?;
                prop_assert_eq!(got.as_ref(), state[cf.index()].get(key), "step {} {:?}", step, op);
            }
            Op::Size { cf, start, end } => {
                let r = h.engine().approximate_size(*cf, start, end.as_deref());
                if poisoned {
                    expect_poisoned("approximate_size", r)?;
                    continue;
                }
                let got = r.map_err(|e| ctx(format!("size: {e}")))?;
                let items = model_scan(&cur, *cf, start, end.as_deref(), false, usize::MAX);
                prop_assert_eq!(got.keys, items.len() as u64, "step {} {:?}", step, op);
                let bytes: usize = items.iter().map(|(k, v)| k.len() + v.len()).sum();
                prop_assert_eq!(got.bytes, bytes as u64, "step {} {:?}", step, op);
            }
            Op::Sync => {
                let r = h.engine().sync();
                if poisoned {
                    expect_poisoned("sync", r)?;
                    continue;
                }
                if sync_armed {
                    sync_armed = false;
                    if !matches!(r, Err(Error::Io(_))) {
                        return Err(ctx(format!("armed sync failure, sync returned {r:?}")));
                    }
                    poisoned = true;
                    continue;
                }
                r.map_err(|e| ctx(format!("sync: {e}")))?;
                history = vec![cur.clone()];
            }
            Op::Crash(seed) => {
                let old = std::mem::take(&mut snaps);
                h.crash(*seed);
                for (snap, _) in &old {
                    // Snapshots of a crashed incarnation must not serve stale reads
                    // (SimEngine); fjall's live on as independent handles.
                    let _ = snap.get(CfName::Raw, b"a");
                }
                drop(old);
                let state = full_state(h.engine())?;
                let Some(i) = history.iter().rposition(|s| *s == state) else {
                    return Err(ctx(format!(
                        "state after crash matches no batch boundary since the last sync \
                         ({} candidates); got {state:?}, durable {:?}, latest {cur:?}",
                        history.len(),
                        history[0]
                    )));
                };
                cur = history[i].clone();
                history = vec![cur.clone()];
                poisoned = false;
                sync_armed = false;
            }
            Op::Reopen => {
                if poisoned {
                    continue; // a poisoned engine cannot shut down cleanly
                }
                snaps.clear();
                h.reopen();
                let state = full_state(h.engine())?;
                prop_assert_eq!(&state, &cur, "after clean reopen at step {}", step);
                history = vec![cur.clone()];
                sync_armed = false; // a restart clears injected faults
            }
            Op::FailNextSync => {
                if !poisoned && h.fail_next_sync() {
                    sync_armed = true;
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Runs

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Sequences per SimEngine case (upper bound, exclusive).
const SIM_OPS_MAX: usize = 80;
/// Sequences per FjallEngine case: shorter, every crash/reopen opens a database.
#[cfg(not(madsim))]
const FJALL_OPS_MAX: usize = 30;
/// Cases per run for FjallEngine (each opens databases: ~25 ms a case).
#[cfg(not(madsim))]
const FJALL_CASES: u32 = 1000;
/// Cases per run for SimEngine (~0.5 ms a case in release).
const SIM_CASES: u32 = 5000;

/// `KEEL_STORAGE_MODEL_CASES` overrides the case count (for longer soaks).
fn cases(default: u32) -> u32 {
    std::env::var("KEEL_STORAGE_MODEL_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn run_sim(cases: u32, fault_injection: bool, bug: Option<&'static str>) -> Result<(), String> {
    let mut runner = TestRunner::new(config(cases));
    runner
        .run(&ops(fault_injection, SIM_OPS_MAX), |ops| run_model(&mut SimHarness::new(bug), &ops))
        .map_err(|e| e.to_string())
}

#[cfg(not(madsim))]
fn run_fjall(cases: u32, bug: Option<&'static str>) -> Result<(), String> {
    let mut runner = TestRunner::new(config(cases));
    runner
        .run(&ops(false, FJALL_OPS_MAX), |ops| run_model(&mut fjall_harness::FjallHarness::new(bug), &ops))
        .map_err(|e| e.to_string())
}

#[test]
fn sim_engine_matches_model() {
    if let Err(e) = run_sim(cases(SIM_CASES), true, None) {
        panic!("{e}");
    }
}

#[cfg(not(madsim))]
#[test]
fn fjall_engine_matches_model() {
    if let Err(e) = run_fjall(cases(FJALL_CASES), None) {
        panic!("{e}");
    }
}

#[cfg(feature = "planted-bugs")]
mod planted_bugs {
    use super::*;

    fn expect_caught(result: Result<(), String>, bug: &str) {
        match result {
            Ok(()) => panic!("planted bug {bug} was NOT caught by the model test"),
            Err(e) => eprintln!("planted bug {bug} caught: {}", e.lines().next().unwrap_or("")),
        }
    }

    #[test]
    fn sim_keeping_an_unsynced_batch_after_crash_is_caught() {
        // No sync-failure injection: the crash check alone must catch it.
        expect_caught(run_sim(SIM_CASES, false, Some("sim-keep-unsynced")), "sim-keep-unsynced");
    }

    #[test]
    fn sim_ignoring_sync_is_caught() {
        expect_caught(run_sim(SIM_CASES, false, Some("sim-ignore-sync")), "sim-ignore-sync");
    }

    #[cfg(not(madsim))]
    #[test]
    fn fjall_skipping_sync_is_caught() {
        expect_caught(run_fjall(FJALL_CASES, Some("fjall-skip-sync")), "fjall-skip-sync");
    }
}
