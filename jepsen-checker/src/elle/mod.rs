//! Elle-style transactional anomaly checking for list-append and rw-register histories.
//!
//! A transaction is an op whose value is a list of micro-ops: `[:append k v]` /
//! `[:r k [v1 v2]]` (list-append) or `[:w k v]` / `[:r k v]` (rw-register). The checker
//! 1. finds non-cycle anomalies: aborted reads (G1a), intermediate reads (G1b), internal
//!    inconsistency, duplicate elements, incompatible orders, lost updates;
//! 2. infers a version order per key (list-append: the longest read, which every other
//!    read must be a prefix of; rw-register: initial state first, and a transaction that
//!    read `a` and then wrote `b` orders `a` before `b`);
//! 3. builds the dependency graph over transactions — ww, wr, rw, plus process and
//!    realtime edges — finds strongly connected components (Tarjan) and classifies a
//!    cycle in each as G0, G1c, G-single, G-nonadjacent or G2-item, trying data edges
//!    first, then with process edges (`-process`), then with realtime edges (`-realtime`).
//!
//! Which anomalies count depends on the consistency model; the report also says which
//! models the history rules out.

mod graph;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::history::{History, OpType, Operation, ParseError};
use crate::linear::wgl::FxHasher;
use crate::value::Value;
use graph::{Graph, PROCESS, REALTIME, RW, WR, WW};

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Which kind of transactional history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnModel {
    /// `[:append k v]`, `[:r k [..]]`.
    ListAppend,
    /// `[:w k v]`, `[:r k v]`.
    RwRegister,
}

/// Consistency models, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Consistency {
    /// Adya PL-2: no G0, G1.
    ReadCommitted,
    /// No G0, G1, G-single, G-nonadjacent, lost update.
    SnapshotIsolation,
    /// No dependency cycles at all (PL-3).
    Serializable,
    /// Serializable, and consistent with real-time and process order.
    StrictSerializable,
}

impl Consistency {
    /// All models, weakest first.
    pub const ALL: [Consistency; 4] = [
        Consistency::ReadCommitted,
        Consistency::SnapshotIsolation,
        Consistency::Serializable,
        Consistency::StrictSerializable,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Consistency::ReadCommitted => "read-committed",
            Consistency::SnapshotIsolation => "snapshot-isolation",
            Consistency::Serializable => "serializable",
            Consistency::StrictSerializable => "strict-serializable",
        }
    }
}

impl std::str::FromStr for Consistency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Consistency::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| format!("unknown consistency model {s:?}"))
    }
}

/// The weakest model an anomaly type violates (so it rules out that model and every
/// stronger one).
pub fn weakest_violated(kind: &str) -> Consistency {
    if kind.ends_with("-process") || kind.ends_with("-realtime") {
        return Consistency::StrictSerializable;
    }
    match kind {
        "G-single" | "G-nonadjacent" | "lost-update" => Consistency::SnapshotIsolation,
        "G2-item" => Consistency::Serializable,
        _ => Consistency::ReadCommitted,
    }
}

pub use crate::report::Anomaly;

/// The checker's result.
#[derive(Clone, Debug)]
pub struct ElleReport {
    /// Every anomaly found (at most a few of each kind are explained).
    pub anomalies: Vec<Anomaly>,
    /// Models the history rules out.
    pub ruled_out: Vec<Consistency>,
    /// True if no anomaly counts under the chosen model.
    pub valid: bool,
    /// Transactions analysed.
    pub txns: usize,
}

/// Anomalies of one kind beyond this many are counted, not explained.
const EXAMPLES_PER_KIND_MAX: usize = 8;

#[derive(Clone, Debug)]
enum Mop {
    Append(u32, u32),
    ReadList(u32, Option<Vec<u32>>),
    Write(u32, u32),
    ReadReg(u32, Option<Option<u32>>),
}

struct Txn {
    op: usize,
    process: i64,
    outcome: OpType,
    mops: Vec<Mop>,
}

struct Interner {
    ids: FxMap<Value, u32>,
    values: Vec<Value>,
}

impl Interner {
    fn id(&mut self, v: &Value) -> u32 {
        if let Some(&i) = self.ids.get(v) {
            return i;
        }
        let i = self.values.len() as u32;
        self.values.push(v.clone());
        self.ids.insert(v.clone(), i);
        i
    }
}

fn bad<T>(op: &Operation, msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { line: op.line, message: msg.into() })
}

struct Ctx<'h> {
    h: &'h History,
    keys: Interner,
    vals: Interner,
    txns: Vec<Txn>,
    anomalies: Vec<Anomaly>,
    counts: FxMap<String, usize>,
}

impl Ctx<'_> {
    fn name(&self, t: usize) -> String {
        let op = &self.h.ops[self.txns[t].op];
        format!("T{} (process {}, line {})", op.id, op.process, op.line)
    }
    fn key(&self, k: u32) -> String {
        self.keys.values[k as usize].to_string()
    }
    fn val(&self, v: u32) -> String {
        self.vals.values[v as usize].to_string()
    }
    fn list(&self, l: &[u32]) -> String {
        let v: Vec<String> = l.iter().map(|&x| self.val(x)).collect();
        format!("[{}]", v.join(" "))
    }
    fn report(&mut self, kind: &str, txns: Vec<usize>, explanation: String) {
        let c = self.counts.entry(kind.to_string()).or_insert(0);
        *c += 1;
        if *c <= EXAMPLES_PER_KIND_MAX {
            let txns = txns.iter().map(|&t| self.txns[t].op).collect();
            self.anomalies.push(Anomaly { kind: kind.to_string(), txns, explanation });
        }
    }
}

fn parse_txns<'h>(h: &'h History, model: TxnModel) -> Result<Ctx<'h>, ParseError> {
    let mut cx = Ctx {
        h,
        keys: Interner { ids: FxMap::default(), values: Vec::new() },
        vals: Interner { ids: FxMap::default(), values: Vec::new() },
        txns: Vec::with_capacity(h.ops.len()),
        anomalies: Vec::new(),
        counts: FxMap::default(),
    };
    for op in &h.ops {
        let v = if op.outcome == OpType::Ok { &op.value } else { &op.invoke_value };
        let Some(mops) = v.as_seq() else {
            return bad(op, format!("a transaction's value must be a list of micro-ops, found {v}"));
        };
        let mut out = Vec::with_capacity(mops.len());
        for m in mops {
            let parts = m.as_seq().unwrap_or_default();
            let (Some(f), Some(k)) = (parts.first().and_then(Value::as_name), parts.get(1)) else {
                return bad(op, format!("bad micro-op {m}: expected [f k v]"));
            };
            let arg = parts.get(2).unwrap_or(&Value::Nil);
            let k = cx.keys.id(k);
            let known = op.outcome == OpType::Ok;
            let mop = match (model, f) {
                (TxnModel::ListAppend, "append") => Mop::Append(k, cx.vals.id(arg)),
                (TxnModel::ListAppend, "r") => {
                    let l = match arg {
                        Value::Nil if !known => None,
                        Value::Nil => Some(Vec::new()),
                        Value::Vec(xs) if known => Some(xs.iter().map(|x| cx.vals.id(x)).collect()),
                        Value::Vec(_) => None,
                        other => return bad(op, format!("list-append read of {other}: expected a list or nil")),
                    };
                    Mop::ReadList(k, l)
                }
                (TxnModel::RwRegister, "w") => Mop::Write(k, cx.vals.id(arg)),
                (TxnModel::RwRegister, "r") => {
                    let r = if !known {
                        None
                    } else if arg.is_nil() {
                        Some(None)
                    } else {
                        Some(Some(cx.vals.id(arg)))
                    };
                    Mop::ReadReg(k, r)
                }
                (TxnModel::ListAppend, f) => {
                    return bad(op, format!("unknown list-append micro-op {f:?} (expected append, r)"))
                }
                (TxnModel::RwRegister, f) => {
                    return bad(op, format!("unknown rw-register micro-op {f:?} (expected w, r)"))
                }
            };
            out.push(mop);
        }
        cx.txns.push(Txn { op: op.id, process: op.process, outcome: op.outcome, mops: out });
    }
    Ok(cx)
}

/// Checks a transactional history.
pub fn check(h: &History, model: TxnModel, consistency: Consistency) -> Result<ElleReport, ParseError> {
    let mut cx = parse_txns(h, model)?;
    let n = cx.txns.len();
    let mut g = Graph::new(n);
    match model {
        TxnModel::ListAppend => list_append(&mut cx, &mut g),
        TxnModel::RwRegister => rw_register(&mut cx, &mut g),
    }
    order_edges(&cx, &mut g);
    cycles(&mut cx, &g);

    let mut ruled_out: Vec<Consistency> = Vec::new();
    if let Some(weakest) = cx.counts.keys().map(|k| weakest_violated(k)).min() {
        ruled_out = Consistency::ALL.into_iter().filter(|c| *c >= weakest).collect();
    }
    let valid = !ruled_out.contains(&consistency);
    let mut anomalies = cx.anomalies;
    anomalies.sort_by_key(|a| weakest_violated(&a.kind));
    Ok(ElleReport { anomalies, ruled_out, valid, txns: n })
}

/// Process and realtime edges between transactions.
fn order_edges(cx: &Ctx, g: &mut Graph) {
    let ops = &cx.h.ops;
    // Process order: each process's committed transactions in invocation order.
    let mut last: FxMap<i64, usize> = FxMap::default();
    for (t, txn) in cx.txns.iter().enumerate() {
        if txn.outcome != OpType::Ok {
            continue;
        }
        if let Some(prev) = last.insert(txn.process, t) {
            g.add(prev, t, PROCESS, u32::MAX);
        }
    }
    // Realtime: a frontier of completed transactions not yet superseded; each invocation
    // gets an edge from every frontier member, and on completion its predecessors leave
    // the frontier (they are implied transitively through it).
    let mut events: Vec<(usize, bool, usize)> = Vec::new();
    for (t, txn) in cx.txns.iter().enumerate() {
        if txn.outcome == OpType::Fail {
            continue;
        }
        let op = &ops[txn.op];
        events.push((op.call, false, t));
        if let (Some(r), OpType::Ok) = (op.ret, txn.outcome) {
            events.push((r, true, t));
        }
    }
    events.sort_unstable();
    let mut frontier: Vec<usize> = Vec::new();
    let mut preds: FxMap<usize, Vec<usize>> = FxMap::default();
    for (_, is_ret, t) in events {
        if !is_ret {
            for &p in &frontier {
                g.add(p, t, REALTIME, u32::MAX);
            }
            if cx.txns[t].outcome == OpType::Ok {
                preds.insert(t, frontier.clone());
            }
        } else {
            let ps = preds.remove(&t).unwrap_or_default();
            frontier.retain(|x| !ps.contains(x));
            frontier.push(t);
        }
    }
}

fn list_append(cx: &mut Ctx, g: &mut Graph) {
    let n = cx.txns.len();
    // Who appended each (key, value), and whether it was that txn's last append to key.
    let mut writer: FxMap<(u32, u32), (usize, bool)> = FxMap::default();
    for t in 0..n {
        let mops = &cx.txns[t].mops;
        for (i, m) in mops.iter().enumerate() {
            if let Mop::Append(k, v) = *m {
                let last = !mops[i + 1..].iter().any(|m| matches!(m, Mop::Append(k2, _) if *k2 == k));
                writer.entry((k, v)).or_insert((t, last));
            }
        }
    }
    // Internal consistency, then per-read checks.
    let mut reads_by_key: FxMap<u32, Vec<(usize, usize)>> = FxMap::default(); // key -> (txn, mop idx)
    let mut first_reads: Vec<(u32, usize, Option<u32>)> = Vec::new(); // (key, txn, last elem) for lost update
    for t in 0..n {
        if cx.txns[t].outcome != OpType::Ok {
            continue;
        }
        let mut state: FxMap<u32, (bool, Vec<u32>)> = FxMap::default(); // (known, list or appended suffix)
        let mut appended: FxMap<u32, bool> = FxMap::default();
        let mops = cx.txns[t].mops.clone();
        for (mi, m) in mops.iter().enumerate() {
            match m {
                Mop::Append(k, v) => {
                    state.entry(*k).or_insert((false, Vec::new())).1.push(*v);
                    appended.insert(*k, true);
                }
                Mop::ReadList(k, Some(l)) => {
                    if let Some((known, s)) = state.get(k) {
                        let ok = if *known { l == s } else { l.ends_with(s) };
                        if !ok {
                            let expect = if *known {
                                format!("exactly {}", cx.list(s))
                            } else {
                                format!("a list ending in its own appends {}", cx.list(s))
                            };
                            let e = format!(
                                "{} read key {} as {}, but given its own earlier operations it must have seen {}.",
                                cx.name(t),
                                cx.key(*k),
                                cx.list(l),
                                expect
                            );
                            cx.report("internal", vec![t], e);
                        }
                    }
                    if !appended.contains_key(k) && !state.contains_key(k) {
                        let writes = mops[mi..].iter().any(|m| matches!(m, Mop::Append(k2, _) if k2 == k));
                        if writes {
                            first_reads.push((*k, t, l.last().copied()));
                        }
                    }
                    state.insert(*k, (true, l.clone()));
                    reads_by_key.entry(*k).or_default().push((t, mi));
                    // Duplicates.
                    let mut seen: FxMap<u32, ()> = FxMap::default();
                    for &x in l {
                        if seen.insert(x, ()).is_some() {
                            let e = format!(
                                "{} read key {} as {}, which contains {} more than once: every element is appended once.",
                                cx.name(t),
                                cx.key(*k),
                                cx.list(l),
                                cx.val(x)
                            );
                            cx.report("duplicate-elements", vec![t], e);
                            break;
                        }
                    }
                    // Aborted and intermediate reads.
                    for (pos, &x) in l.iter().enumerate() {
                        let Some(&(w, last)) = writer.get(&(*k, x)) else {
                            continue;
                        };
                        if w == t {
                            continue;
                        }
                        if cx.txns[w].outcome == OpType::Fail {
                            let e = format!(
                                "{} read key {} as {}, including {}, appended by {} which failed (aborted): it saw a write that never committed.",
                                cx.name(t),
                                cx.key(*k),
                                cx.list(l),
                                cx.val(x),
                                cx.name(w)
                            );
                            cx.report("G1a", vec![t, w], e);
                        } else if pos + 1 == l.len() && !last {
                            let e = format!(
                                "{} read key {} as {}, ending in {}, which {} appended before appending more to the same key: it saw an intermediate state of that transaction.",
                                cx.name(t),
                                cx.key(*k),
                                cx.list(l),
                                cx.val(x),
                                cx.name(w)
                            );
                            cx.report("G1b", vec![t, w], e);
                        }
                    }
                }
                Mop::ReadList(_, None) | Mop::Write(..) | Mop::ReadReg(..) => {}
            }
        }
    }
    // Lost update: two committed transactions read the same version of a key and both
    // appended to it.
    let mut by_version: FxMap<(u32, Option<u32>), usize> = FxMap::default();
    for &(k, t, v) in &first_reads {
        if let Some(&other) = by_version.get(&(k, v)) {
            let seen = v.map_or("the empty list".to_string(), |x| format!("the version ending in {}", cx.val(x)));
            let e = format!(
                "{} and {} both read key {} at {} and both appended to it: one of the updates is lost, as neither saw the other.",
                cx.name(other),
                cx.name(t),
                cx.key(k),
                seen
            );
            cx.report("lost-update", vec![other, t], e);
        } else {
            by_version.insert((k, v), t);
        }
    }
    // Committed appends per key, for the ones no read observed.
    let mut appends_by_key: FxMap<u32, Vec<(u32, usize)>> = FxMap::default();
    for (&(k, v), &(t, _)) in &writer {
        if cx.txns[t].outcome == OpType::Ok {
            appends_by_key.entry(k).or_default().push((v, t));
        }
    }
    // Version order per key: the longest read; every other read must be a prefix of it.
    // Committed appends no read observed come after it, in an unknown order.
    let mut keys: Vec<u32> = reads_by_key.keys().copied().collect();
    keys.sort_unstable();
    let mut later: Vec<(&str, Vec<usize>, String)> = Vec::new();
    for k in keys {
        let reads = &reads_by_key[&k];
        let read_of = |&(t, mi): &(usize, usize)| -> &[u32] {
            match &cx.txns[t].mops[mi] {
                Mop::ReadList(_, Some(l)) => l,
                _ => &[],
            }
        };
        let longest = reads.iter().max_by_key(|r| read_of(r).len()).map(read_of).unwrap_or(&[]).to_vec();
        let mut compatible: Vec<(usize, usize)> = Vec::with_capacity(reads.len());
        let mut reported = false;
        for r in reads {
            let l = read_of(r);
            if longest.starts_with(l) {
                compatible.push(*r);
            } else if !reported {
                reported = true;
                let other = reads.iter().find(|r2| read_of(r2).len() == longest.len()).map_or(r.0, |r2| r2.0);
                let e = format!(
                    "{} read key {} as {} but {} read it as {}: neither is a prefix of the other, so no single order of appends explains both.",
                    cx.name(r.0),
                    cx.key(k),
                    cx.list(l),
                    cx.name(other),
                    cx.list(&longest)
                );
                later.push(("incompatible-order", vec![r.0, other], e));
            }
        }
        let writers: Vec<Option<usize>> = longest.iter().map(|&x| writer.get(&(k, x)).map(|&(w, _)| w)).collect();
        let observed: FxMap<u32, ()> = longest.iter().map(|&x| (x, ())).collect();
        let mut unobserved: Vec<usize> = appends_by_key
            .get(&k)
            .map(|v| v.iter().filter(|(x, _)| !observed.contains_key(x)).map(|&(_, t)| t).collect())
            .unwrap_or_default();
        unobserved.sort_unstable();
        unobserved.dedup();
        if let Some(Some(last)) = writers.last() {
            for &u in &unobserved {
                if u != *last {
                    g.add(*last, u, WW, k);
                }
            }
        }
        // ww edges between consecutive distinct writers.
        for i in 1..writers.len() {
            if let (Some(a), Some(b)) = (writers[i - 1], writers[i]) {
                if a != b {
                    g.add(a, b, WW, k);
                }
            }
        }
        // wr and rw edges per read.
        for &(t, mi) in &compatible {
            let len = match &cx.txns[t].mops[mi] {
                Mop::ReadList(_, Some(l)) => l.len(),
                _ => 0,
            };
            // What the transaction saw from others: up to the last element not its own.
            let mut seen = len;
            while seen > 0 && writers[seen - 1] == Some(t) {
                seen -= 1;
            }
            if seen > 0 {
                if let Some(w) = writers[seen - 1] {
                    if w != t {
                        g.add(w, t, WR, k);
                    }
                }
            }
            if let Some(w) = writers[seen..].iter().flatten().find(|&&w| w != t) {
                g.add(t, *w, RW, k);
            } else {
                for &u in &unobserved {
                    if u != t {
                        g.add(t, u, RW, k);
                    }
                }
            }
        }
    }
    for (kind, txns, e) in later {
        cx.report(kind, txns, e);
    }
}

fn rw_register(cx: &mut Ctx, g: &mut Graph) {
    let n = cx.txns.len();
    let mut writer: FxMap<(u32, u32), (usize, bool)> = FxMap::default();
    let mut writers_of: FxMap<u32, Vec<usize>> = FxMap::default();
    for t in 0..n {
        let mops = &cx.txns[t].mops;
        for (i, m) in mops.iter().enumerate() {
            if let Mop::Write(k, v) = *m {
                let last = !mops[i + 1..].iter().any(|m| matches!(m, Mop::Write(k2, _) if *k2 == k));
                writer.entry((k, v)).or_insert((t, last));
                if last && cx.txns[t].outcome != OpType::Fail {
                    writers_of.entry(k).or_default().push(t);
                }
            }
        }
    }
    // External reads per (key, version) and per-transaction checks.
    let mut readers: FxMap<(u32, Option<u32>), Vec<usize>> = FxMap::default();
    let mut read_then_write: Vec<(u32, Option<u32>, usize)> = Vec::new();
    for t in 0..n {
        if cx.txns[t].outcome != OpType::Ok {
            continue;
        }
        let mut state: FxMap<u32, Option<u32>> = FxMap::default();
        let mut external: FxMap<u32, Option<u32>> = FxMap::default();
        let mut wrote: FxMap<u32, ()> = FxMap::default();
        let mops = cx.txns[t].mops.clone();
        for m in &mops {
            match m {
                Mop::Write(k, v) => {
                    state.insert(*k, Some(*v));
                    wrote.insert(*k, ());
                }
                Mop::ReadReg(k, Some(v)) => {
                    if let Some(s) = state.get(k) {
                        if s != v {
                            let show = |x: &Option<u32>| x.map_or("nil".to_string(), |x| cx.val(x));
                            let e = format!(
                                "{} read key {} as {}, but given its own earlier operations it must have seen {}.",
                                cx.name(t),
                                cx.key(*k),
                                show(v),
                                show(s)
                            );
                            cx.report("internal", vec![t], e);
                        }
                        continue;
                    }
                    state.insert(*k, *v);
                    external.insert(*k, *v);
                    readers.entry((*k, *v)).or_default().push(t);
                    let Some(x) = v else { continue };
                    let Some(&(w, last)) = writer.get(&(*k, *x)) else {
                        continue;
                    };
                    if w == t {
                        continue;
                    }
                    if cx.txns[w].outcome == OpType::Fail {
                        let e = format!(
                            "{} read key {} = {}, written by {} which failed (aborted).",
                            cx.name(t),
                            cx.key(*k),
                            cx.val(*x),
                            cx.name(w)
                        );
                        cx.report("G1a", vec![t, w], e);
                    } else if !last {
                        let e = format!(
                            "{} read key {} = {}, which {} overwrote later in the same transaction: an intermediate state.",
                            cx.name(t),
                            cx.key(*k),
                            cx.val(*x),
                            cx.name(w)
                        );
                        cx.report("G1b", vec![t, w], e);
                    } else {
                        g.add(w, t, WR, *k);
                    }
                }
                Mop::ReadReg(_, None) | Mop::Append(..) | Mop::ReadList(..) => {}
            }
        }
        for (k, v) in external {
            if wrote.contains_key(&k) {
                read_then_write.push((k, v, t));
            }
        }
    }
    // Lost update and the version order it implies: read a, then wrote b ⇒ a < b.
    let mut by_version: FxMap<(u32, Option<u32>), usize> = FxMap::default();
    read_then_write.sort_unstable();
    for &(k, v, t) in &read_then_write {
        if let Some(&other) = by_version.get(&(k, v)) {
            let seen = v.map_or("nil".to_string(), |x| cx.val(x));
            let e = format!(
                "{} and {} both read key {} = {} and both wrote it: one update is lost, as neither saw the other.",
                cx.name(other),
                cx.name(t),
                cx.key(k),
                seen
            );
            cx.report("lost-update", vec![other, t], e);
        } else {
            by_version.insert((k, v), t);
        }
        if let Some(a) = v {
            if let Some(&(w, _)) = writer.get(&(k, a)) {
                if w != t {
                    g.add(w, t, WW, k);
                }
            }
        }
        // Everyone else who read version a must precede t's overwrite.
        for &r in readers.get(&(k, v)).map(Vec::as_slice).unwrap_or_default() {
            if r != t {
                g.add(r, t, RW, k);
            }
        }
    }
    // The initial (nil) version precedes every write: nil readers anti-depend on writers.
    let mut nil_keys: Vec<u32> = readers.keys().filter(|(_, v)| v.is_none()).map(|(k, _)| *k).collect();
    nil_keys.sort_unstable();
    for k in nil_keys {
        let rs = &readers[&(k, None)];
        for &w in writers_of.get(&k).map(Vec::as_slice).unwrap_or_default() {
            for &r in rs {
                if r != w {
                    g.add(r, w, RW, k);
                }
            }
        }
    }
}

fn edge_phrase(cx: &Ctx, a: usize, b: usize, kind: u8, key: u32) -> String {
    let (na, nb) = (cx.name(a), cx.name(b));
    match kind {
        WW => format!("{na} wrote key {} before {nb} did (ww)", cx.key(key)),
        WR => format!("{nb} read {na}'s write to key {} (wr)", cx.key(key)),
        RW => format!("{na} read key {} without seeing {nb}'s write to it (rw)", cx.key(key)),
        PROCESS => format!("{na} came before {nb} on process {} (process)", cx.txns[a].process),
        _ => format!("{na} completed before {nb} began (realtime)"),
    }
}

fn cycles(cx: &mut Ctx, g: &Graph) {
    let found = graph::find_cycles(g);
    for c in found {
        let mut steps = Vec::new();
        for w in 0..c.edges.len() {
            let (a, b, kind, key) = c.edges[w];
            steps.push(edge_phrase(cx, a, b, kind, key));
        }
        let txns: Vec<usize> = c.edges.iter().map(|e| e.0).collect();
        let names: Vec<String> = txns.iter().map(|&t| format!("T{}", cx.txns[t].op)).collect();
        let e = format!(
            "{} cycle {} → {}: {}. Each must precede the next, which is impossible.",
            c.kind,
            names.join(" → "),
            names[0],
            steps.join("; ")
        );
        cx.report(&c.kind, txns, e);
    }
}
