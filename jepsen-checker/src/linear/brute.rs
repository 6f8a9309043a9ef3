//! A brute-force reference: tries every order of every admissible subset. Exponential;
//! only for testing the real search on tiny histories.

use super::model::Model;
use super::wgl::LinOp;

/// True if some sequence containing every completed op (and any subset of the
/// unknown-outcome ops), respecting real-time order, is legal for the model.
pub fn linearizable<M: Model>(model: &M, ops: &[LinOp<M::Op>]) -> bool {
    assert!(ops.len() <= 12, "brute force is for tiny histories");
    let mut m = model.clone();
    let init = m.init();
    let mut used = vec![false; ops.len()];
    go(&mut m, ops, &mut used, &init)
}

fn go<M: Model>(m: &mut M, ops: &[LinOp<M::Op>], used: &mut [bool], state: &M::State) -> bool {
    if ops.iter().zip(used.iter()).all(|(o, &u)| u || o.ret.is_none()) {
        return true;
    }
    for i in 0..ops.len() {
        if used[i] {
            continue;
        }
        // Every unused completed op that returned before i was called must come first.
        let blocked = ops.iter().zip(used.iter()).any(|(o, &u)| !u && o.ret.is_some_and(|r| r < ops[i].call));
        if blocked {
            continue;
        }
        if let Some(next) = m.step(state, &ops[i].op) {
            used[i] = true;
            let ok = go(m, ops, used, &next);
            used[i] = false;
            if ok {
                return true;
            }
        }
    }
    false
}
