//! Determinism is tested, not assumed: the same seed must give the same trace, a planted
//! source of nondeterminism must change it, and rand's `thread_rng` (what raft-rs uses)
//! must follow the simulation seed through our getrandom shim.
#![cfg(madsim)]

use keel_sim::runner::{run, RunConfig};
use keel_types::trace;
use madsim::runtime::Runtime;

fn cfg(seed: u64) -> RunConfig {
    RunConfig::new(seed, "counter", &["kill", "partition", "loss", "pause", "skew"], 20)
}

#[test]
fn same_seed_same_trace_for_several_seeds() {
    let mut hashes = Vec::new();
    for seed in [1, 2, 3, 42, 1234] {
        let first = run(&cfg(seed));
        let second = run(&cfg(seed));
        assert!(first.ok(), "seed {seed}: {}", first.verdict);
        assert!(first.trace_events > 1000, "seed {seed}: trace too thin to mean anything");
        assert_eq!(first.fingerprint(), second.fingerprint(), "seed {seed} is nondeterministic");
        hashes.push(first.trace_hash);
    }
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 5, "different seeds should explore different traces");
}

/// Runs a tiny program that folds one OS-entropy byte (a planted leak) into the trace.
fn leaky_trace(seed: u64) -> u64 {
    trace::reset();
    Runtime::with_seed_and_config(seed, madsim::Config::default()).block_on(async {
        let bytes = std::fs::read("/proc/sys/kernel/random/uuid").expect("read uuid");
        trace::record("leak", &bytes);
    });
    trace::snapshot().0
}

#[test]
fn planted_nondeterminism_changes_the_trace() {
    assert_ne!(leaky_trace(7), leaky_trace(7), "the trace hash must expose a leak of real entropy");
}

/// rand's `ThreadRng` lives in a thread-local seeded once per OS thread, so each
/// simulation must run on a fresh thread (as `runner::run` does) to start from its seed.
fn thread_rng_draw(seed: u64) -> u64 {
    std::thread::spawn(move || {
        Runtime::with_seed_and_config(seed, madsim::Config::default()).block_on(async {
            use rand::Rng;
            rand::thread_rng().gen::<u64>()
        })
    })
    .join()
    .expect("draw thread")
}

#[test]
fn thread_rng_follows_the_simulation_seed() {
    assert_eq!(thread_rng_draw(5), thread_rng_draw(5), "getrandom 0.2 escaped madsim: is the shim patched in?");
    assert_ne!(thread_rng_draw(5), thread_rng_draw(6));
}
