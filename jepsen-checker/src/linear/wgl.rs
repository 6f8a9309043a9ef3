//! The Wing–Gong / Lowe linearizability search, as in Porcupine, with three additions:
//!
//! * Memoisation keys are `(linearized bitset, state)` with an incrementally maintained
//!   Zobrist hash of the bitset, so a lookup costs one hash of the (small) state.
//! * Ops with an unknown outcome (`info`, or never returned) have no return event: they
//!   may be linearized at any point after their invocation, or never. The search is done
//!   when every *completed* op is linearized. They live in a list of their own and are
//!   tried only after the completed candidates, and the memo exploits that they are
//!   optional: if `(completed set R, unknown-outcome set I, state s)` failed, then so does
//!   every `(R, I', s)` with `I' ⊇ I` (whatever works from the larger set works from the
//!   smaller one by skipping the extra ops). So the memo is keyed by `(R, s)` and holds an
//!   antichain-ish list of failed `I`s checked by subset.
//! * **Independence reduction** (when the model has keys, e.g. a whole map): at each
//!   configuration the search only branches on ops of the key whose return is due first.
//!   Ops on other keys commute with them, so any linearization can be reordered to start
//!   with such an op; each failure is blamed on one key, and a failure blamed on a key
//!   other than the op just linearized *backjumps* past that choice (the sub-configuration
//!   of the blamed key is unchanged, so every sibling fails too). Each failure also teaches
//!   a *nogood*: the blamed key's projection (its ops linearized so far and its part of the
//!   state) can never be completed, so re-entering it along another path is pruned at
//!   once. This makes one search over a many-key map cost about as much as checking each
//!   key separately.
//! * **Eager reads**: a read-only op that is legal now is linearized at once, without
//!   branching (moving a legal read earlier never breaks a linearization).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashTable;

use super::model::Model;

/// One operation as the search sees it.
#[derive(Clone, Debug)]
pub struct LinOp<O> {
    /// The model op with its observed outcome.
    pub op: O,
    /// Invocation position (any totally ordered clock).
    pub call: usize,
    /// Completion position; `None` when the outcome is unknown (may take effect or not).
    pub ret: Option<usize>,
    /// Caller's id for the op (e.g. the history op id).
    pub id: usize,
}

/// Limits and switches for one search.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// Give up (unknown) after this instant.
    pub deadline: Option<Instant>,
    /// Give up (unknown) after memoising this many configurations.
    pub max_configs: usize,
    /// Use the independence reduction (only matters for models with keys).
    pub independence: bool,
    /// Set by another search to stop this one (result: unknown).
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions { deadline: None, max_configs: MAX_CONFIGS_DEFAULT, independence: true, cancel: None }
    }
}

/// Default cap on memoised configurations (about 2–4 GiB for large histories).
pub const MAX_CONFIGS_DEFAULT: usize = 10_000_000;

/// Where the search got stuck, for a non-linearizable history.
#[derive(Clone, Debug)]
pub struct Stuck<S> {
    /// The longest linearizable prefix found, as indices into the ops slice, in order.
    pub prefix: Vec<usize>,
    /// The model state after that prefix.
    pub state: S,
    /// Index of the op that must be linearized next but cannot be.
    pub op: usize,
}

/// The result of a search.
#[derive(Clone, Debug)]
pub enum Outcome<S> {
    /// A linearization exists.
    Linearizable,
    /// None exists.
    NotLinearizable(Stuck<S>),
    /// The budget ran out first.
    Unknown(String),
}

/// Statistics, for benchmarks and reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Configurations memoised.
    pub configs: usize,
}

const NIL: usize = usize::MAX;
const PENDING: u32 = u32::MAX;
const NO_GROUP: u32 = u32::MAX;

/// A small, fast, non-cryptographic hasher (FxHash).
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64)
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64)
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Member {
    ibits: Box<[u64]>,
    blame: u32,
}

struct Group<S> {
    hash: u64,
    rbits: Box<[u64]>,
    state: S,
    members: Vec<Member>,
}

/// A learned fact: this key's projection `(completed set, unknown set, part)` fails.
struct NoGood<P> {
    hash: u64,
    key: u32,
    rbits: Box<[u64]>,
    ibits: Box<[u64]>,
    part: P,
}

struct Frame<S> {
    op: usize,
    prev: S,
    forced: u32,
    phase: u8,
    cursor: usize,
    group: u32,
    member: u32,
    eager: bool,
}

enum Step {
    Enter,
    Resume(u8, usize, u32),
    Fail(u32),
    Eager(usize, u32),
}

/// A doubly linked list over node ids with O(1) unlink and relink (dancing links).
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
}

impl Links {
    fn new(order: impl Iterator<Item = usize>, nodes: usize) -> Self {
        let head = nodes;
        let mut next = vec![NIL; nodes + 1];
        let mut prev = vec![NIL; nodes + 1];
        let mut last = head;
        for node in order {
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        Links { next, prev, head }
    }
    #[inline]
    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }
    #[inline]
    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        if n != NIL {
            self.prev[n] = x;
        }
    }
}

#[inline]
fn set_bit(b: &mut [u64], i: usize) {
    b[i / 64] |= 1 << (i % 64);
}

#[inline]
fn clear_bit(b: &mut [u64], i: usize) {
    b[i / 64] &= !(1 << (i % 64));
}

/// Runs the search over `ops` (any order; they are sorted by the clock internally).
pub fn search<M: Model>(model: &mut M, ops: &[LinOp<M::Op>], opts: &SearchOptions) -> (Outcome<M::State>, Stats) {
    // Completed ops get dense ids 0..nr, unknown-outcome ops 0..ni.
    let req: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].ret.is_some()).collect();
    let inf: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].ret.is_none()).collect();
    let (nr, ni) = (req.len(), inf.len());

    // Main list: node 2j = call of req[j], 2j+1 = its return. Calls sort before returns
    // at equal stamps: equal stamps mean "concurrent".
    let mut events: Vec<(usize, bool, usize)> = Vec::with_capacity(2 * nr);
    for (j, &i) in req.iter().enumerate() {
        let r = ops[i].ret.expect("completed");
        debug_assert!(r >= ops[i].call, "op returns before it is called");
        events.push((ops[i].call, false, 2 * j));
        events.push((r, true, 2 * j + 1));
    }
    events.sort_unstable();
    let mut main = Links::new(events.iter().map(|e| e.2), 2 * nr);
    let mut info_order: Vec<usize> = (0..ni).collect();
    info_order.sort_by_key(|&j| ops[inf[j]].call);
    let mut infos = Links::new(info_order.into_iter(), ni);

    let key_of = |m: &M, i: usize| if opts.independence { m.key(&ops[i].op) } else { 0 };
    let rkeys: Vec<u32> = req.iter().map(|&i| key_of(model, i)).collect();
    let ikeys: Vec<u32> = inf.iter().map(|&i| key_of(model, i)).collect();
    let rret: Vec<usize> = req.iter().map(|&i| ops[i].ret.expect("completed")).collect();
    let icall: Vec<usize> = inf.iter().map(|&i| ops[i].call).collect();
    let rro: Vec<bool> = req.iter().map(|&i| model.read_only(&ops[i].op)).collect();
    // Ops that can reset the state, per key, by call time: (call, phase, index).
    let mut resets: Vec<Vec<(usize, u8, usize)>> = Vec::new();
    for (j, &i) in req.iter().enumerate() {
        if model.resets(&ops[i].op) {
            let k = rkeys[j] as usize;
            if resets.len() <= k {
                resets.resize(k + 1, Vec::new());
            }
            resets[k].push((ops[i].call, 0, j));
        }
    }
    for (j, &i) in inf.iter().enumerate() {
        if model.resets(&ops[i].op) {
            let k = ikeys[j] as usize;
            if resets.len() <= k {
                resets.resize(k + 1, Vec::new());
            }
            resets[k].push((ops[i].call, 1, j));
        }
    }
    for r in &mut resets {
        r.sort_unstable();
    }
    // Look-ahead only pays off when resets are rare.
    let total_resets: usize = resets.iter().map(Vec::len).sum();
    let lookahead = total_resets * 4 < ops.len();
    let zobrist: Vec<u64> = (0..nr as u64).map(|i| splitmix(i ^ 0x5eed)).collect();

    // Per-key local indices for projections (only used when there are several keys).
    let multi = rkeys.iter().chain(&ikeys).any(|&k| k != rkeys.first().or(ikeys.first()).copied().unwrap_or(0));
    let nkeys = rkeys.iter().chain(&ikeys).map(|&k| k as usize + 1).max().unwrap_or(0);
    let mut rloc = vec![0usize; nr];
    let mut iloc = vec![0usize; ni];
    let mut rcount = vec![0usize; if multi { nkeys } else { 0 }];
    let mut icount = vec![0usize; if multi { nkeys } else { 0 }];
    if multi {
        for j in 0..nr {
            rloc[j] = rcount[rkeys[j] as usize];
            rcount[rkeys[j] as usize] += 1;
        }
        for j in 0..ni {
            iloc[j] = icount[ikeys[j] as usize];
            icount[ikeys[j] as usize] += 1;
        }
    }
    let mut krbits: Vec<Vec<u64>> = rcount.iter().map(|c| vec![0; c.div_ceil(64)]).collect();
    let mut kibits: Vec<Vec<u64>> = icount.iter().map(|c| vec![0; c.div_ceil(64)]).collect();
    // With several keys, learned per-key nogoods replace the whole-configuration memo
    // (whole configurations rarely repeat once other keys' progress differs).
    let full_cache = !multi;
    let mut nogoods: Vec<NoGood<M::Part>> = Vec::new();
    let mut nogood_table: HashTable<u32> = HashTable::new();
    let project = |model: &M, state: &M::State, k: u32, kr: &[u64], ki: &[u64]| {
        let part = model.part(state, k);
        let mut hs = FxHasher(k as u64);
        kr.hash(&mut hs);
        ki.hash(&mut hs);
        part.hash(&mut hs);
        (hs.finish(), part)
    };

    let mut required = nr;
    let mut rbits = vec![0u64; nr.div_ceil(64)];
    let mut ibits = vec![0u64; ni.div_ceil(64)];
    let mut h: u64 = 0;
    let mut groups: Vec<Group<M::State>> = Vec::new();
    let mut table: HashTable<u32> = HashTable::new();
    let mut configs = 0usize;
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    let mut state = model.init();

    let mut best_depth: isize = -1;
    let mut best: Option<Stuck<M::State>> = None;
    let mut steps: u64 = 0;

    // Op identity inside the search: phase 0 = req[j], phase 1 = inf[j].
    let original = |phase: u8, j: usize| if phase == 0 { req[j] } else { inf[j] };

    let mut action = Step::Enter;
    loop {
        match action {
            Step::Enter => {
                if required == 0 {
                    return (Outcome::Linearizable, Stats { configs });
                }
                let mut c = main.next[main.head];
                while c != NIL && c & 1 == 0 {
                    c = main.next[c];
                }
                debug_assert!(c != NIL, "required ops remain but no return is pending");
                let due = c / 2;
                if stack.len() as isize > best_depth {
                    best_depth = stack.len() as isize;
                    best = Some(Stuck {
                        prefix: stack.iter().map(|f| original(f.phase, f.op)).collect(),
                        state: state.clone(),
                        op: req[due],
                    });
                }
                // A legal read among the candidates is taken at once, without branching.
                action = Step::Resume(0, main.next[main.head], rkeys[due]);
                let mut c = main.next[main.head];
                while c & 1 == 0 {
                    let j = c / 2;
                    if rro[j] && model.legal(&state, &ops[req[j]].op) {
                        action = Step::Eager(c, rkeys[due]);
                        break;
                    }
                    c = main.next[c];
                }
                if lookahead && matches!(action, Step::Resume(..)) {
                    // A pending read that no sequence of non-resetting ops can satisfy
                    // before it returns makes this configuration dead.
                    let mut c = main.next[main.head];
                    while c & 1 == 0 {
                        let j = c / 2;
                        if rro[j] {
                            let k = rkeys[j] as usize;
                            let ret = rret[j];
                            let reset_possible = resets.get(k).is_some_and(|rs| {
                                rs.iter().take_while(|r| r.0 < ret).any(|&(_, ph, x)| {
                                    if ph == 0 {
                                        rbits[x / 64] & (1 << (x % 64)) == 0
                                    } else {
                                        ibits[x / 64] & (1 << (x % 64)) == 0
                                    }
                                })
                            });
                            if !reset_possible && !model.may_reach(&state, &ops[req[j]].op) {
                                action = Step::Fail(rkeys[j]);
                                break;
                            }
                        }
                        c = main.next[c];
                    }
                }
            }
            Step::Resume(..) | Step::Eager(..) => {
                let (mut phase, mut cursor, forced, eager) = match action {
                    Step::Resume(p, c, f) => (p, c, f, false),
                    Step::Eager(c, f) => (0, c, f, true),
                    _ => unreachable!(),
                };
                action = Step::Fail(forced);
                // The time of the first pending return bounds the candidates.
                let due_time = {
                    let mut c = main.next[main.head];
                    while c & 1 == 0 {
                        c = main.next[c];
                    }
                    rret[c / 2]
                };
                loop {
                    // Next candidate in this phase, if any.
                    let j = if phase == 0 {
                        if cursor == NIL || cursor & 1 == 1 {
                            phase = 1;
                            cursor = infos.next[infos.head];
                            continue;
                        }
                        cursor / 2
                    } else {
                        if cursor == NIL || icall[cursor] > due_time {
                            break;
                        }
                        cursor
                    };
                    let key = if phase == 0 { rkeys[j] } else { ikeys[j] };
                    let advance = |phase: u8, cursor: usize, main: &Links, infos: &Links| {
                        if phase == 0 {
                            main.next[cursor]
                        } else {
                            infos.next[cursor]
                        }
                    };
                    if key != forced && !eager {
                        cursor = advance(phase, cursor, &main, &infos);
                        continue;
                    }
                    let i = original(phase, j);
                    let Some(ns) = model.step(&state, &ops[i].op) else {
                        cursor = advance(phase, cursor, &main, &infos);
                        continue;
                    };
                    let hr = if phase == 0 { h ^ zobrist[j] } else { h };
                    if phase == 0 {
                        set_bit(&mut rbits, j);
                    } else {
                        set_bit(&mut ibits, j);
                    }
                    let mut hs = FxHasher(hr);
                    ns.hash(&mut hs);
                    let hh = hs.finish();
                    let found = if !full_cache {
                        None
                    } else {
                        table
                            .find(hh, |&g| {
                                let g = &groups[g as usize];
                                g.hash == hh && *g.rbits == rbits[..] && g.state == ns
                            })
                            .copied()
                    };
                    let mut hit: Option<u32> = None;
                    if let Some(g) = found {
                        for m in &groups[g as usize].members {
                            if m.blame != PENDING && m.ibits.iter().zip(&ibits).all(|(a, b)| a & !b == 0) {
                                hit = Some(m.blame);
                                if m.blame != key {
                                    break;
                                }
                            }
                        }
                    }
                    if let Some(blame) = hit {
                        if phase == 0 {
                            clear_bit(&mut rbits, j);
                        } else {
                            clear_bit(&mut ibits, j);
                        }
                        if blame != key || eager {
                            // Its failure does not depend on this key (or it was our only
                            // child): ours does not either.
                            action = Step::Fail(blame);
                            break;
                        }
                        cursor = advance(phase, cursor, &main, &infos);
                        continue;
                    }
                    if multi {
                        let k = key as usize;
                        if phase == 0 {
                            set_bit(&mut krbits[k], rloc[j]);
                        } else {
                            set_bit(&mut kibits[k], iloc[j]);
                        }
                        let (ph, part) = project(model, &ns, key, &krbits[k], &kibits[k]);
                        let bad = nogood_table
                            .find(ph, |&x| {
                                let x = &nogoods[x as usize];
                                x.hash == ph
                                    && x.key == key
                                    && x.part == part
                                    && *x.rbits == krbits[k][..]
                                    && *x.ibits == kibits[k][..]
                            })
                            .is_some();
                        if bad {
                            if phase == 0 {
                                clear_bit(&mut krbits[k], rloc[j]);
                                clear_bit(&mut rbits, j);
                            } else {
                                clear_bit(&mut kibits[k], iloc[j]);
                                clear_bit(&mut ibits, j);
                            }
                            if eager {
                                action = Step::Fail(key);
                                break;
                            }
                            cursor = advance(phase, cursor, &main, &infos);
                            continue;
                        }
                    }
                    let g = match found {
                        Some(g) => g,
                        None if !full_cache => NO_GROUP,
                        None => {
                            let g = groups.len() as u32;
                            groups.push(Group {
                                hash: hh,
                                rbits: rbits.clone().into_boxed_slice(),
                                state: ns.clone(),
                                members: Vec::new(),
                            });
                            table.insert_unique(hh, g, |&g| groups[g as usize].hash);
                            g
                        }
                    };
                    let member = if g == NO_GROUP {
                        0
                    } else {
                        let members = &mut groups[g as usize].members;
                        members.push(Member { ibits: ibits.clone().into_boxed_slice(), blame: PENDING });
                        (members.len() - 1) as u32
                    };
                    configs += 1;
                    let old = std::mem::replace(&mut state, ns);
                    stack.push(Frame { op: j, prev: old, forced, phase, cursor, group: g, member, eager });
                    if phase == 0 {
                        main.unlink(2 * j);
                        main.unlink(2 * j + 1);
                        h = hr;
                        required -= 1;
                    } else {
                        infos.unlink(j);
                    }
                    steps += 1;
                    if steps.is_multiple_of(1024) {
                        if let Some(d) = opts.deadline {
                            if Instant::now() >= d {
                                return (Outcome::Unknown("time limit reached".into()), Stats { configs });
                            }
                        }
                        if opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                            return (Outcome::Unknown("cancelled".into()), Stats { configs });
                        }
                    }
                    if configs >= opts.max_configs {
                        return (
                            Outcome::Unknown(format!("memory budget reached ({configs} configurations)")),
                            Stats { configs },
                        );
                    }
                    action = Step::Enter;
                    break;
                }
            }
            Step::Fail(blame) => {
                let Some(f) = stack.pop() else {
                    let stuck = best.expect("the root configuration is always recorded");
                    return (Outcome::NotLinearizable(stuck), Stats { configs });
                };
                if f.group != NO_GROUP {
                    groups[f.group as usize].members[f.member as usize].blame = blame;
                }
                if multi {
                    // Learn: the blamed key's projection of the failed child can never finish.
                    let b = blame as usize;
                    let (ph, part) = project(model, &state, blame, &krbits[b], &kibits[b]);
                    let known = nogood_table
                        .find(ph, |&x| {
                            let x = &nogoods[x as usize];
                            x.hash == ph
                                && x.key == blame
                                && x.part == part
                                && *x.rbits == krbits[b][..]
                                && *x.ibits == kibits[b][..]
                        })
                        .is_some();
                    if !known {
                        let idx = nogoods.len() as u32;
                        nogoods.push(NoGood {
                            hash: ph,
                            key: blame,
                            rbits: krbits[b].clone().into_boxed_slice(),
                            ibits: kibits[b].clone().into_boxed_slice(),
                            part,
                        });
                        nogood_table.insert_unique(ph, idx, |&x| nogoods[x as usize].hash);
                    }
                }
                let j = f.op;
                let key = if f.phase == 0 {
                    main.relink(2 * j + 1);
                    main.relink(2 * j);
                    clear_bit(&mut rbits, j);
                    if multi {
                        clear_bit(&mut krbits[rkeys[j] as usize], rloc[j]);
                    }
                    h ^= zobrist[j];
                    required += 1;
                    rkeys[j]
                } else {
                    infos.relink(j);
                    clear_bit(&mut ibits, j);
                    if multi {
                        clear_bit(&mut kibits[ikeys[j] as usize], iloc[j]);
                    }
                    ikeys[j]
                };
                state = f.prev;
                action = if blame != key || f.eager {
                    Step::Fail(blame)
                } else {
                    let next = if f.phase == 0 { main.next[f.cursor] } else { infos.next[f.cursor] };
                    Step::Resume(f.phase, next, f.forced)
                };
            }
        }
    }
}
