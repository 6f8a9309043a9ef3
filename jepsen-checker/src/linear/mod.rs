//! Linearizability checking: turns a [`History`] into model ops, splits it by key
//! (P-compositionality), runs the [`wgl`] search on each part in parallel, and reports
//! the smallest failing part.

pub mod brute;
pub mod model;
pub mod wgl;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::history::{History, OpType, Operation, ParseError};
use crate::value::Value;
use model::{KvModel, KvOp, MapModel, Model, RegOp, RegisterModel, SetModel, SetOp, ABSENT, ANY};
use wgl::{LinOp, Outcome, SearchOptions};

/// Which sequential specification to check against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinModel {
    /// read / write register.
    Register,
    /// read / write / cas register.
    CasRegister,
    /// Per-key string registers with get / put / append (Porcupine's kv).
    Kv,
    /// A set with add / read.
    Set,
}

/// How a `nil` read is interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NilRead {
    /// `nil` means the register holds no value.
    Absent,
    /// `nil` matches any value (Knossos: the read's value was not recorded).
    Any,
}

/// Checker settings.
#[derive(Clone, Debug)]
pub struct LinConfig {
    /// The model.
    pub model: LinModel,
    /// Initial register value (`None`: absent).
    pub initial: Option<Value>,
    /// What a `nil` read means.
    pub nil_read: NilRead,
    /// Split by key and check keys independently (P-compositionality).
    pub partition: bool,
    /// Wall-clock budget; past it the verdict is unknown.
    pub time_limit: Option<Duration>,
    /// Memoised-configuration budget per search.
    pub max_configs: usize,
    /// Use the independence reduction inside one search.
    pub independence: bool,
    /// Worker threads for partitions.
    pub threads: usize,
}

impl Default for LinConfig {
    fn default() -> Self {
        LinConfig {
            model: LinModel::CasRegister,
            initial: None,
            nil_read: NilRead::Absent,
            partition: true,
            time_limit: None,
            max_configs: wgl::MAX_CONFIGS_DEFAULT,
            independence: true,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// A found violation, in history terms.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The key of the failing part (`None` for a single-object history).
    pub key: Option<String>,
    /// History op ids in the failing part.
    pub part_ops: Vec<usize>,
    /// Longest linearizable prefix, as history op ids in linearization order.
    pub prefix: Vec<usize>,
    /// The model state after the prefix.
    pub state: String,
    /// History op id of the op that cannot be placed.
    pub stuck: usize,
}

/// The linearizability verdict.
#[derive(Clone, Debug)]
pub enum LinVerdict {
    /// Linearizable.
    Valid,
    /// Not linearizable (the smallest failing part).
    Invalid(Box<Violation>),
    /// Undecided within the budget.
    Unknown(String),
}

/// The full result.
#[derive(Clone, Debug)]
pub struct LinReport {
    /// The verdict.
    pub verdict: LinVerdict,
    /// Number of parts checked.
    pub parts: usize,
    /// Model ops checked (after dropping failed ops and no-op reads).
    pub checked_ops: usize,
    /// Memoised configurations over all parts.
    pub configs: usize,
}

fn bad<T>(op: &Operation, msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { line: op.line, message: msg.into() })
}

/// The op's return position if it must be linearized, `None` if optional.
fn ret_of(op: &Operation) -> Option<usize> {
    if op.outcome == OpType::Ok {
        op.ret
    } else {
        None
    }
}

struct Interner {
    ids: HashMap<Value, u32>,
    values: Vec<Value>,
}

impl Interner {
    fn new() -> Self {
        Interner { ids: HashMap::new(), values: Vec::new() }
    }
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

type Parts<O> = Vec<(Option<String>, Vec<LinOp<O>>)>;

fn group<O>(items: Vec<(Option<String>, LinOp<O>)>) -> Parts<O> {
    let mut idx: HashMap<Option<String>, usize> = HashMap::new();
    let mut parts: Parts<O> = Vec::new();
    for (k, op) in items {
        let i = *idx.entry(k.clone()).or_insert_with(|| {
            parts.push((k, Vec::new()));
            parts.len() - 1
        });
        parts[i].1.push(op);
    }
    parts
}

fn prepare_register(h: &History, cfg: &LinConfig) -> Result<(RegisterModel, Parts<RegOp>), ParseError> {
    let mut vals = Interner::new();
    let mut items = Vec::new();
    let cas_allowed = cfg.model == LinModel::CasRegister;
    for op in &h.ops {
        let key = op.key.as_ref().map(|k| k.to_string());
        let mk = |o: RegOp, ret: Option<usize>| (key.clone(), LinOp { op: o, call: op.call, ret, id: op.id });
        match op.f.as_str() {
            "read" => {
                if op.outcome != OpType::Ok {
                    continue; // a read that failed or timed out changes nothing
                }
                let v = match (&op.value, cfg.nil_read) {
                    (Value::Nil, NilRead::Absent) => ABSENT,
                    (Value::Nil, NilRead::Any) => ANY,
                    (v, _) => vals.id(v),
                };
                items.push(mk(RegOp::Read(v), ret_of(op)));
            }
            "write" => {
                if op.outcome == OpType::Fail {
                    continue;
                }
                let v = if op.invoke_value.is_nil() { ABSENT } else { vals.id(&op.invoke_value) };
                items.push(mk(RegOp::Write(v), ret_of(op)));
            }
            "cas" if cas_allowed => {
                let Some([from, to]) = op.invoke_value.as_seq().and_then(|s| <&[Value; 2]>::try_from(s).ok()) else {
                    return bad(op, format!("cas value must be [expected new], found {}", op.invoke_value));
                };
                let from = if from.is_nil() { ABSENT } else { vals.id(from) };
                let to = if to.is_nil() { ABSENT } else { vals.id(to) };
                if op.outcome == OpType::Fail {
                    continue; // it did not happen
                }
                items.push(mk(RegOp::Cas(from, to), ret_of(op)));
            }
            f => {
                return bad(
                    op,
                    format!(
                        "op :f {f} is not part of the {} model (expected read, write{})",
                        if cas_allowed { "cas-register" } else { "register" },
                        if cas_allowed { ", cas" } else { "" }
                    ),
                )
            }
        }
    }
    let initial = match &cfg.initial {
        None | Some(Value::Nil) => ABSENT,
        Some(v) => vals.id(v),
    };
    let model = RegisterModel { initial, values: Arc::new(vals.values) };
    Ok((model, group(items)))
}

fn prepare_kv(h: &History) -> Result<(KvModel, Parts<KvOp>), ParseError> {
    let mut model = KvModel::new();
    let mut items = Vec::new();
    for op in &h.ops {
        let key = op.key.as_ref().map(|k| match k {
            Value::Str(s) => s.clone(),
            k => k.to_string(),
        });
        let text = |v: &Value| -> Result<String, ParseError> {
            match v {
                Value::Str(s) => Ok(s.clone()),
                Value::Nil => Ok(String::new()),
                Value::Int(i) => Ok(i.to_string()),
                v => bad(op, format!("kv values must be strings, found {v}")),
            }
        };
        let lin = match op.f.as_str() {
            "get" | "read" => {
                if op.outcome != OpType::Ok {
                    continue;
                }
                KvOp::Get(model.strings.intern(&text(&op.value)?))
            }
            "put" | "write" => {
                if op.outcome == OpType::Fail {
                    continue;
                }
                KvOp::Put(model.strings.intern(&text(&op.invoke_value)?))
            }
            "append" => {
                if op.outcome == OpType::Fail {
                    continue;
                }
                KvOp::Append(model.strings.intern(&text(&op.invoke_value)?))
            }
            f => return bad(op, format!("op :f {f} is not part of the kv model (expected get, put, append)")),
        };
        items.push((key, LinOp { op: lin, call: op.call, ret: ret_of(op), id: op.id }));
    }
    Ok((model, group(items)))
}

fn prepare_set(h: &History) -> Result<(SetModel, Parts<SetOp>), ParseError> {
    let mut elems = Interner::new();
    // First pass: intern every element so bitsets have a fixed width.
    for op in &h.ops {
        match op.f.as_str() {
            "add" => {
                elems.id(&op.invoke_value);
            }
            "read" if op.outcome == OpType::Ok => {
                let Some(items) = op.value.as_seq() else {
                    return bad(op, format!("set read must return a set or vector, found {}", op.value));
                };
                for e in items {
                    elems.id(e);
                }
            }
            "read" => {}
            f => return bad(op, format!("op :f {f} is not part of the set model (expected add, read)")),
        }
    }
    let words = elems.values.len().div_ceil(64).max(1);
    let mut items = Vec::new();
    for op in &h.ops {
        let key = op.key.as_ref().map(|k| k.to_string());
        let lin = match op.f.as_str() {
            "add" => {
                if op.outcome == OpType::Fail {
                    continue;
                }
                SetOp::Add(elems.id(&op.invoke_value))
            }
            _ => {
                if op.outcome != OpType::Ok {
                    continue;
                }
                let mut bits = vec![0u64; words];
                for e in op.value.as_seq().unwrap_or_default() {
                    let i = elems.id(e) as usize;
                    bits[i / 64] |= 1 << (i % 64);
                }
                SetOp::Read(bits.into())
            }
        };
        items.push((key, LinOp { op: lin, call: op.call, ret: ret_of(op), id: op.id }));
    }
    let model = SetModel { words, elements: Arc::new(elems.values) };
    Ok((model, group(items)))
}

/// Checks `h` for linearizability under `cfg`. Bad ops (unknown `:f`, malformed values)
/// are input errors.
pub fn check(h: &History, cfg: &LinConfig) -> Result<LinReport, ParseError> {
    let deadline = cfg.time_limit.map(|d| Instant::now() + d);
    match cfg.model {
        LinModel::Register | LinModel::CasRegister => {
            let (m, parts) = prepare_register(h, cfg)?;
            Ok(run(m, parts, cfg, deadline))
        }
        LinModel::Kv => {
            let (m, parts) = prepare_kv(h)?;
            Ok(run(m, parts, cfg, deadline))
        }
        LinModel::Set => {
            let (m, parts) = prepare_set(h)?;
            Ok(run(m, parts, cfg, deadline))
        }
    }
}

fn run<M: Model + Sync>(model: M, parts: Parts<M::Op>, cfg: &LinConfig, deadline: Option<Instant>) -> LinReport
where
    M::Op: Sync,
{
    let opts = SearchOptions {
        deadline,
        max_configs: cfg.max_configs,
        independence: cfg.independence,
        cancel: Some(Arc::new(AtomicBool::new(false))),
    };
    if !cfg.partition && parts.len() > 1 {
        // One search over the whole map: key i's state is slot i.
        let names: Vec<String> = parts.iter().map(|(k, _)| k.clone().unwrap_or_default()).collect();
        let mut all: Vec<LinOp<(u32, M::Op)>> = Vec::new();
        for (ki, (_, ops)) in parts.iter().enumerate() {
            for o in ops {
                all.push(LinOp { op: (ki as u32, o.op.clone()), call: o.call, ret: o.ret, id: o.id });
            }
        }
        all.sort_by_key(|o| o.call);
        let map = MapModel { inner: model, keys: parts.len(), names: Arc::new(names) };
        return run_parts(map, vec![(None, all)], cfg, &opts);
    }
    run_parts(model, parts, cfg, &opts)
}

fn run_parts<M: Model + Sync>(model: M, parts: Parts<M::Op>, cfg: &LinConfig, opts: &SearchOptions) -> LinReport
where
    M::Op: Sync,
{
    let checked_ops = parts.iter().map(|(_, p)| p.len()).sum();
    let nparts = parts.len();
    type PartResult<S> = (usize, Outcome<S>, usize, String);
    let results: Mutex<Vec<PartResult<M::State>>> = Mutex::new(Vec::new());
    // Smallest parts first: the first failure found stops the others (like Porcupine),
    // so the reported part is small and a hard valid part does not hide an easy failure.
    let mut order: Vec<usize> = (0..nparts).collect();
    order.sort_by_key(|&i| parts[i].1.len());
    let next = AtomicUsize::new(0);
    let work = |mut m: M| loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= nparts {
            break;
        }
        let i = order[n];
        if opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            break;
        }
        let (outcome, stats) = wgl::search(&mut m, &parts[i].1, opts);
        let shown = match &outcome {
            Outcome::NotLinearizable(s) => {
                if let Some(c) = &opts.cancel {
                    c.store(true, Ordering::Relaxed);
                }
                m.show_state(&s.state)
            }
            _ => String::new(),
        };
        results.lock().expect("no panics while holding the lock").push((i, outcome, stats.configs, shown));
    };
    let threads = cfg.threads.clamp(1, nparts.max(1));
    if threads > 1 {
        std::thread::scope(|s| {
            for _ in 0..threads {
                let m = model.clone();
                let work = &work;
                s.spawn(move || work(m));
            }
        });
    } else {
        work(model.clone());
    }
    let mut results = results.into_inner().expect("workers finished");
    results.sort_by_key(|r| r.0);
    let configs = results.iter().map(|r| r.2).sum();
    let mut worst: Option<Violation> = None;
    let mut unknown: Option<String> = None;
    for (i, outcome, _, shown) in results {
        let (key, ops) = &parts[i];
        match outcome {
            Outcome::Linearizable => {}
            Outcome::Unknown(why) => {
                unknown.get_or_insert(match key {
                    Some(k) => format!("key {k}: {why}"),
                    None => why,
                });
            }
            Outcome::NotLinearizable(stuck) => {
                let v = Violation {
                    key: key.clone(),
                    part_ops: ops.iter().map(|o| o.id).collect(),
                    prefix: stuck.prefix.iter().map(|&j| ops[j].id).collect(),
                    state: shown,
                    stuck: ops[stuck.op].id,
                };
                if worst.as_ref().is_none_or(|w| v.part_ops.len() < w.part_ops.len()) {
                    worst = Some(v);
                }
            }
        }
    }
    let verdict = match (worst, unknown) {
        (Some(v), _) => LinVerdict::Invalid(Box::new(v)),
        (None, Some(u)) => LinVerdict::Unknown(u),
        (None, None) => LinVerdict::Valid,
    };
    LinReport { verdict, parts: nparts, checked_ops, configs }
}

/// Human-readable lines explaining a violation.
pub fn explain(h: &History, v: &Violation) -> Vec<String> {
    let mut out = Vec::new();
    let key = v.key.as_ref().map(|k| format!(" on key {k}")).unwrap_or_default();
    out.push(format!("Not linearizable{key}: {} ops in the smallest failing part.", v.part_ops.len()));
    out.push(format!("Longest linearizable prefix ({} ops), in linearization order:", v.prefix.len()));
    const SHOWN_MAX: usize = 12;
    let skip = v.prefix.len().saturating_sub(SHOWN_MAX);
    if skip > 0 {
        out.push(format!("  … {skip} earlier ops …"));
    }
    for &id in &v.prefix[skip..] {
        out.push(format!("  {}", h.ops[id].describe()));
    }
    out.push(format!("State after the prefix: {}", v.state));
    let stuck = &h.ops[v.stuck];
    out.push(format!(
        "Cannot place: {} — it completed, so it must take effect before it returns, but no order of the operations concurrent with it makes its result legal from that state.",
        stuck.describe()
    ));
    out
}
