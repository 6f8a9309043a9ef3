//! The WGL search agrees with a brute-force reference (try every order of every
//! admissible subset) on thousands of random small histories, with unknown-outcome ops,
//! for single registers and for a two-key map checked as one object (which exercises the
//! independence reduction, backjumping and nogoods).

use jepsen_checker::linear::brute;
use jepsen_checker::linear::model::{KvModel, KvOp, MapModel, Model, RegOp, RegisterModel, ABSENT};
use jepsen_checker::linear::wgl::{search, LinOp, Outcome, SearchOptions};
use proptest::prelude::*;
use std::sync::Arc;

/// Random history shape: for each op, (process, kind seed, value seed, outcome seed).
fn shape() -> impl Strategy<Value = Vec<(u8, u8, u8, u8, u8)>> {
    prop::collection::vec((0u8..4, 0u8..3, 0u8..3, 0u8..3, 0u8..10), 1..=8)
}

/// Lays ops out on a clock: each process runs its ops one after another; the global
/// interleaving of invocations and completions is random.
fn layout<O: Clone>(ops: Vec<(u8, O, bool)>, seed: u64) -> Vec<LinOp<O>> {
    let mut rng = jepsen_checker::gen::Rng::new(seed);
    // Events per process: (op index, is_return).
    let mut queues: Vec<Vec<(usize, bool)>> = vec![Vec::new(); 4];
    for (i, (p, _, _)) in ops.iter().enumerate() {
        queues[*p as usize].push((i, false));
        queues[*p as usize].push((i, true));
    }
    for q in &mut queues {
        q.reverse();
    }
    let mut call = vec![0; ops.len()];
    let mut ret = vec![None; ops.len()];
    let mut clock = 0;
    let mut open: Vec<bool> = vec![true; 4];
    while queues.iter().any(|q| !q.is_empty()) {
        let live: Vec<usize> = (0..4).filter(|&p| !queues[p].is_empty() && open[p]).collect();
        if live.is_empty() {
            break;
        }
        let p = live[rng.below(live.len() as u64) as usize];
        let (i, is_ret) = queues[p].pop().unwrap();
        clock += 1;
        if !is_ret {
            call[i] = clock;
        } else if ops[i].2 {
            ret[i] = Some(clock);
        } else {
            // Unknown outcome: the process crashes and does no more.
            open[p] = false;
        }
    }
    ops.into_iter()
        .enumerate()
        .filter(|(i, _)| call[*i] > 0)
        .map(|(i, (_, op, _))| LinOp { op, call: call[i], ret: ret[i], id: i })
        .collect()
}

fn wgl<M: Model>(m: &M, ops: &[LinOp<M::Op>], independence: bool) -> bool {
    let mut m = m.clone();
    let opts = SearchOptions { independence, ..SearchOptions::default() };
    match search(&mut m, ops, &opts).0 {
        Outcome::Linearizable => true,
        Outcome::NotLinearizable(_) => false,
        Outcome::Unknown(why) => panic!("unknown on a tiny history: {why}"),
    }
}

fn register() -> RegisterModel {
    RegisterModel { initial: ABSENT, values: Arc::new(vec![]) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn cas_register_matches_brute_force(shape in shape(), seed in any::<u64>()) {
        let ops: Vec<(u8, RegOp, bool)> = shape
            .iter()
            .map(|&(p, kind, v, w, outcome)| {
                let v = if v == 2 { ABSENT } else { v as u32 };
                let op = match kind {
                    0 => RegOp::Read(v),
                    1 => RegOp::Write(w as u32 % 2),
                    _ => RegOp::Cas(v, w as u32 % 2),
                };
                (p, op, outcome >= 2)
            })
            .collect();
        let lin = layout(ops, seed);
        let m = register();
        let expected = brute::linearizable(&m, &lin);
        prop_assert_eq!(wgl(&m, &lin, true), expected, "history {:?}", lin);
    }

    #[test]
    fn two_key_map_matches_brute_force(shape in shape(), seed in any::<u64>()) {
        let mut kv = KvModel::new();
        let strs: Vec<u32> = ["", "a", "b", "ab", "ba"].iter().map(|s| kv.strings.intern(s)).collect();
        let ops: Vec<(u8, (u32, KvOp), bool)> = shape
            .iter()
            .map(|&(p, kind, v, k, outcome)| {
                let key = k as u32 % 2;
                let op = match kind {
                    0 => KvOp::Get(strs[(v as usize + k as usize) % 5]),
                    1 => KvOp::Append(strs[1 + v as usize % 2]),
                    // Puts are rare, so the look-ahead pruning is exercised too.
                    _ if v == 0 && k == 0 => KvOp::Put(strs[p as usize % 3]),
                    _ => KvOp::Append(strs[1 + (v as usize + p as usize) % 2]),
                };
                (p, (key, op), outcome >= 2)
            })
            .collect();
        let lin = layout(ops, seed);
        let m = MapModel { inner: kv, keys: 2, names: Arc::new(vec!["x".into(), "y".into()]) };
        let expected = brute::linearizable(&m, &lin);
        prop_assert_eq!(wgl(&m, &lin, true), expected, "with independence: {:?}", lin);
        prop_assert_eq!(wgl(&m, &lin, false), expected, "without independence: {:?}", lin);
    }
}

/// The generator must produce both verdicts often, or the comparison proves little.
#[test]
fn generator_covers_both_verdicts() {
    let mut rng = jepsen_checker::gen::Rng::new(7);
    let (mut yes, mut no, mut with_info) = (0, 0, 0);
    for seed in 0..2000u64 {
        let n = 1 + rng.below(8) as usize;
        let ops: Vec<(u8, RegOp, bool)> = (0..n)
            .map(|_| {
                let v = rng.below(3) as u32;
                let v = if v == 2 { ABSENT } else { v };
                let op = match rng.below(3) {
                    0 => RegOp::Read(v),
                    1 => RegOp::Write(rng.below(2) as u32),
                    _ => RegOp::Cas(v, rng.below(2) as u32),
                };
                (rng.below(4) as u8, op, rng.below(10) >= 2)
            })
            .collect();
        let lin = layout(ops, seed);
        if lin.iter().any(|o| o.ret.is_none()) {
            with_info += 1;
        }
        if brute::linearizable(&register(), &lin) {
            yes += 1;
        } else {
            no += 1;
        }
    }
    assert!(yes > 200 && no > 200 && with_info > 200, "yes {yes} no {no} info {with_info}");
}
