//! History generators for tests and benchmarks: valid list-append histories of any
//! size, and planted anomalies (each Elle anomaly on fresh keys, after a valid
//! background), so the checker can be tested against known answers.

/// A small deterministic PRNG (splitmix64), so generated histories are reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A micro-op with its (possibly filled-in) result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MicroOp {
    /// Append `v` to the list at key `k`.
    Append(u64, u64),
    /// Read key `k`; `None` on invocation.
    Read(u64, Option<Vec<u64>>),
}

/// One history line of a transactional history.
#[derive(Clone, Debug)]
pub struct TxnEvent {
    /// Client process.
    pub process: u64,
    /// "invoke", "ok", "fail" or "info".
    pub kind: &'static str,
    /// Micro-ops.
    pub mops: Vec<MicroOp>,
}

fn mops_edn(mops: &[MicroOp]) -> String {
    let v: Vec<String> = mops
        .iter()
        .map(|m| match m {
            MicroOp::Append(k, v) => format!("[:append {k} {v}]"),
            MicroOp::Read(k, None) => format!("[:r {k} nil]"),
            MicroOp::Read(k, Some(l)) => {
                let l: Vec<String> = l.iter().map(u64::to_string).collect();
                format!("[:r {k} [{}]]", l.join(" "))
            }
        })
        .collect();
    format!("[{}]", v.join(" "))
}

fn mops_json(mops: &[MicroOp]) -> String {
    let v: Vec<String> = mops
        .iter()
        .map(|m| match m {
            MicroOp::Append(k, v) => format!("[\"append\",{k},{v}]"),
            MicroOp::Read(k, None) => format!("[\"r\",{k},null]"),
            MicroOp::Read(k, Some(l)) => {
                let l: Vec<String> = l.iter().map(u64::to_string).collect();
                format!("[\"r\",{k},[{}]]", l.join(","))
            }
        })
        .collect();
    format!("[{}]", v.join(","))
}

/// Renders events as EDN, one map per line.
pub fn to_edn(events: &[TxnEvent]) -> String {
    let mut out = String::new();
    for (i, e) in events.iter().enumerate() {
        out.push_str(&format!(
            "{{:index {i}, :type :{}, :process {}, :f :txn, :value {}}}\n",
            e.kind,
            e.process,
            mops_edn(&e.mops)
        ));
    }
    out
}

/// Renders events as keel JSONL.
pub fn to_jsonl(events: &[TxnEvent]) -> String {
    let mut out = String::new();
    for (i, e) in events.iter().enumerate() {
        out.push_str(&format!(
            "{{\"process\":{},\"type\":\"{}\",\"f\":\"txn\",\"value\":{},\"time\":{}}}\n",
            e.process,
            e.kind,
            mops_json(&e.mops),
            i * 1000
        ));
    }
    out
}

/// Knobs for [`list_append`].
#[derive(Clone, Debug)]
pub struct ListAppendOpts {
    /// Committed transactions to generate.
    pub txns: usize,
    /// Concurrent client processes.
    pub processes: u64,
    /// Keys in use at once; a key is retired after `appends_per_key_max` appends.
    pub active_keys: u64,
    /// Appends per key before it is retired (keeps lists short, as Elle's generator does).
    pub appends_per_key_max: u64,
    /// Micro-ops per transaction, at most.
    pub mops_max: u64,
    /// First key id (so backgrounds and planted keys do not collide).
    pub first_key: u64,
}

impl Default for ListAppendOpts {
    fn default() -> Self {
        ListAppendOpts { txns: 1000, processes: 10, active_keys: 8, appends_per_key_max: 32, mops_max: 4, first_key: 0 }
    }
}

/// A strict-serializable list-append history: transactions take effect atomically at
/// their completion, against one shared store, with many processes in flight at once.
pub fn list_append(opts: &ListAppendOpts, seed: u64) -> Vec<TxnEvent> {
    use std::collections::HashMap;
    let mut rng = Rng::new(seed);
    let mut store: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut active: Vec<u64> = (0..opts.active_keys).map(|k| opts.first_key + k).collect();
    let mut next_key = opts.first_key + opts.active_keys;
    let mut next_val = 1u64;
    let mut in_flight: Vec<Option<Vec<MicroOp>>> = vec![None; opts.processes as usize];
    let mut events = Vec::with_capacity(opts.txns * 2);
    let mut done = 0;
    let mut started = 0;
    while done < opts.txns {
        let p = rng.below(opts.processes) as usize;
        match in_flight[p].take() {
            None if started < opts.txns => {
                let n = 1 + rng.below(opts.mops_max);
                let mops: Vec<MicroOp> = (0..n)
                    .map(|_| {
                        let k = active[rng.below(active.len() as u64) as usize];
                        if rng.below(2) == 0 {
                            next_val += 1;
                            MicroOp::Append(k, next_val)
                        } else {
                            MicroOp::Read(k, None)
                        }
                    })
                    .collect();
                events.push(TxnEvent { process: p as u64, kind: "invoke", mops: mops.clone() });
                in_flight[p] = Some(mops);
                started += 1;
            }
            None => {}
            Some(mops) => {
                let mut result = Vec::with_capacity(mops.len());
                for m in mops {
                    match m {
                        MicroOp::Append(k, v) => {
                            let l = store.entry(k).or_default();
                            l.push(v);
                            if l.len() as u64 >= opts.appends_per_key_max {
                                if let Some(slot) = active.iter_mut().find(|x| **x == k) {
                                    *slot = next_key;
                                    next_key += 1;
                                }
                            }
                            result.push(MicroOp::Append(k, v));
                        }
                        MicroOp::Read(k, _) => {
                            result.push(MicroOp::Read(k, Some(store.get(&k).cloned().unwrap_or_default())));
                        }
                    }
                }
                events.push(TxnEvent { process: p as u64, kind: "ok", mops: result });
                done += 1;
            }
        }
    }
    events
}

/// Anomalies [`planted`] can produce.
pub const PLANTABLE: [&str; 12] = [
    "G0",
    "G1a",
    "G1b",
    "G1c",
    "G-single",
    "G-nonadjacent",
    "G2-item",
    "lost-update",
    "internal",
    "duplicate-elements",
    "incompatible-order",
    "G-single-realtime",
];

fn a(k: u64, v: u64) -> MicroOp {
    MicroOp::Append(k, v)
}

fn r(k: u64, l: &[u64]) -> MicroOp {
    MicroOp::Read(k, Some(l.to_vec()))
}

/// A valid background of `background` transactions, then transactions that exhibit
/// `kind` on fresh keys. The planted transactions run concurrently (all invoked before
/// any completes), except for the realtime variant, which needs them in sequence.
pub fn planted(kind: &str, background: usize, seed: u64) -> Option<Vec<TxnEvent>> {
    let opts = ListAppendOpts { txns: background, ..ListAppendOpts::default() };
    let mut events = list_append(&opts, seed);
    // Fresh keys and values, far from the background's.
    let (x, y, z, w) = (1_000_001, 1_000_002, 1_000_003, 1_000_004);
    let base = 100;
    type Spec = Vec<(&'static str, Vec<MicroOp>)>;
    let txns: Spec = match kind {
        "G0" => vec![
            ("ok", vec![a(x, 1), a(y, 1)]),
            ("ok", vec![a(x, 2), a(y, 2)]),
            ("ok", vec![r(x, &[1, 2]), r(y, &[2, 1])]),
        ],
        "G1a" => vec![("fail", vec![a(x, 1)]), ("ok", vec![r(x, &[1])])],
        "G1b" => vec![("ok", vec![a(x, 1), a(x, 2)]), ("ok", vec![r(x, &[1])])],
        "G1c" => vec![("ok", vec![a(x, 1), r(y, &[1])]), ("ok", vec![a(y, 1), r(x, &[1])])],
        "G-single" => vec![("ok", vec![a(x, 1), a(y, 1)]), ("ok", vec![r(x, &[]), r(y, &[1])])],
        "G-nonadjacent" => vec![
            ("ok", vec![r(w, &[1]), r(x, &[])]),
            ("ok", vec![a(x, 1), a(y, 1)]),
            ("ok", vec![r(y, &[1]), r(z, &[])]),
            ("ok", vec![a(z, 1), a(w, 1)]),
            ("ok", vec![r(x, &[1]), r(z, &[1])]),
        ],
        "G2-item" => vec![
            ("ok", vec![r(x, &[]), r(y, &[]), a(x, 1)]),
            ("ok", vec![r(x, &[]), r(y, &[]), a(y, 1)]),
            ("ok", vec![r(x, &[1]), r(y, &[1])]),
        ],
        "lost-update" => {
            vec![("ok", vec![r(x, &[]), a(x, 1)]), ("ok", vec![r(x, &[]), a(x, 2)]), ("ok", vec![r(x, &[1, 2])])]
        }
        "internal" => vec![("ok", vec![r(x, &[]), a(x, 1), r(x, &[])])],
        "duplicate-elements" => vec![("ok", vec![a(x, 1)]), ("ok", vec![r(x, &[1, 1])])],
        "incompatible-order" => {
            vec![("ok", vec![a(x, 1)]), ("ok", vec![a(x, 2)]), ("ok", vec![r(x, &[1, 2])]), ("ok", vec![r(x, &[2, 1])])]
        }
        "G-single-realtime" => {
            // T1 appends and completes; T2 starts afterwards yet misses T1's append.
            let p = base;
            events.push(TxnEvent { process: p, kind: "invoke", mops: vec![a(x, 1)] });
            events.push(TxnEvent { process: p, kind: "ok", mops: vec![a(x, 1)] });
            let t2 = vec![MicroOp::Read(x, None)];
            events.push(TxnEvent { process: p + 1, kind: "invoke", mops: t2 });
            events.push(TxnEvent { process: p + 1, kind: "ok", mops: vec![r(x, &[])] });
            let t3 = vec![MicroOp::Read(x, None)];
            events.push(TxnEvent { process: p + 2, kind: "invoke", mops: t3 });
            events.push(TxnEvent { process: p + 2, kind: "ok", mops: vec![r(x, &[1])] });
            return Some(events);
        }
        _ => return None,
    };
    let invoke_form = |m: &MicroOp| match m {
        MicroOp::Read(k, _) => MicroOp::Read(*k, None),
        other => other.clone(),
    };
    for (i, (_, mops)) in txns.iter().enumerate() {
        events.push(TxnEvent {
            process: base + i as u64,
            kind: "invoke",
            mops: mops.iter().map(invoke_form).collect(),
        });
    }
    for (i, (outcome, mops)) in txns.into_iter().enumerate() {
        events.push(TxnEvent { process: base + i as u64, kind: outcome, mops });
    }
    Some(events)
}
