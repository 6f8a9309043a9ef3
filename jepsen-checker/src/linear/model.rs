//! Sequential specifications for the linearizability search, over compact (interned) ops.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use crate::value::Value;

/// A sequential data type. `step` returns the next state when `op` (with its observed
/// result) is legal in `state`, and `None` otherwise.
pub trait Model: Clone + Send {
    /// The abstract state; hashed and compared by the search's memo table.
    type State: Clone + Eq + Hash + Debug + Send;
    /// An operation together with its observed outcome.
    type Op: Clone + Debug + Send + Sync;
    /// The part of the state that one key's ops read and write (the whole state for
    /// single-object models).
    type Part: Clone + Eq + Hash + Debug + Send;
    /// Projects `state` onto `key`.
    fn part(&self, state: &Self::State, key: u32) -> Self::Part;
    /// The initial state.
    fn init(&self) -> Self::State;
    /// Applies `op` to `state` if the observed outcome is legal there.
    fn step(&mut self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
    /// True if `op` is legal in `state` (like `step(..).is_some()`, maybe cheaper).
    fn legal(&mut self, state: &Self::State, op: &Self::Op) -> bool {
        self.step(state, op).is_some()
    }
    /// Independence class: ops with different keys commute and touch disjoint parts of
    /// the state. Single-object models return 0.
    fn key(&self, _op: &Self::Op) -> u32 {
        0
    }
    /// True if `op` never changes the state when it is legal (a read). The search
    /// linearizes such ops as soon as they are legal, without branching: moving a legal
    /// read earlier never invalidates a linearization.
    fn read_only(&self, _op: &Self::Op) -> bool {
        false
    }
    /// True if `op` can move the state "backwards" (a put or write that replaces the
    /// value), which disables [`Model::may_reach`] pruning until it is linearized.
    fn resets(&self, _op: &Self::Op) -> bool {
        true
    }
    /// Look-ahead: `false` if the read-only `read` can never become legal from `state`
    /// by ops that do not reset (e.g. a kv state that is not a prefix of what a pending
    /// get returned, when no put can intervene). Must be conservative.
    fn may_reach(&mut self, _state: &Self::State, _read: &Self::Op) -> bool {
        true
    }
    /// Renders a state for reports.
    fn show_state(&self, state: &Self::State) -> String;
}

/// Id of "no value" (an absent register / a `nil` read meaning absent).
pub const ABSENT: u32 = u32::MAX;
/// Id of a read that matches any value (Knossos' `nil` read).
pub const ANY: u32 = u32::MAX - 1;

/// A register op over interned value ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegOp {
    /// Read that returned this value (or [`ABSENT`], or [`ANY`]).
    Read(u32),
    /// Write a value.
    Write(u32),
    /// Compare-and-set from → to, which succeeded (or may have, for info ops).
    Cas(u32, u32),
}

/// A read/write/compare-and-set register.
#[derive(Clone, Debug)]
pub struct RegisterModel {
    /// The initial value id ([`ABSENT`] when absent).
    pub initial: u32,
    /// Value table for display.
    pub values: Arc<Vec<Value>>,
}

impl Model for RegisterModel {
    type State = u32;
    type Op = RegOp;
    type Part = u32;
    fn part(&self, s: &u32, _key: u32) -> u32 {
        *s
    }
    fn init(&self) -> u32 {
        self.initial
    }
    fn step(&mut self, s: &u32, op: &RegOp) -> Option<u32> {
        match *op {
            RegOp::Read(v) => (v == ANY || v == *s).then_some(*s),
            RegOp::Write(v) => Some(v),
            RegOp::Cas(from, to) => (from == *s).then_some(to),
        }
    }
    fn read_only(&self, op: &RegOp) -> bool {
        matches!(op, RegOp::Read(_))
    }
    fn show_state(&self, s: &u32) -> String {
        show_value(&self.values, *s)
    }
}

/// Renders an interned register value.
pub fn show_value(values: &[Value], id: u32) -> String {
    match id {
        ABSENT => "absent".into(),
        ANY => "any".into(),
        i => values.get(i as usize).map_or_else(|| format!("#{i}"), |v| v.to_string()),
    }
}

/// A kv op on one key's string register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// `get` returned this string.
    Get(u32),
    /// `put` this string.
    Put(u32),
    /// `append` this string.
    Append(u32),
}

const MERSENNE: u64 = (1 << 61) - 1;
const BASE_1: u64 = 0x1f2e_3d4c_5b6a_7988 % MERSENNE;
const BASE_2: u64 = 0x0123_4567_89ab_cdef % MERSENNE;

#[inline]
fn mulmod(a: u64, b: u64) -> u64 {
    let p = a as u128 * b as u128;
    let lo = (p as u64) & MERSENNE;
    let hi = (p >> 61) as u64;
    let s = lo + hi;
    if s >= MERSENNE {
        s - MERSENNE
    } else {
        s
    }
}

#[inline]
fn addmod(a: u64, b: u64) -> u64 {
    let s = a + b;
    if s >= MERSENNE {
        s - MERSENNE
    } else {
        s
    }
}

#[derive(Clone, Debug)]
enum Text {
    Literal(Arc<str>),
    Concat(u32, u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Fingerprint {
    len: u64,
    h1: u64,
    h2: u64,
}

/// String interning where appending is O(1): every string is identified by its length
/// and two independent polynomial hashes modulo 2^61−1 (122 bits; a collision between
/// two different strings of one history has probability below 2^-100), so equal strings
/// built along different paths get the same id and states stay `u32`s.
#[derive(Clone, Debug, Default)]
pub struct Strings {
    texts: Vec<Text>,
    prints: Vec<Fingerprint>,
    pows: Vec<(u64, u64)>,
    ids: HashMap<Fingerprint, u32, std::hash::BuildHasherDefault<super::wgl::FxHasher>>,
    prefixes: HashMap<u32, Arc<[(u64, u64)]>>,
}

impl Strings {
    fn add(&mut self, fp: Fingerprint, pow: (u64, u64), text: impl FnOnce() -> Text) -> u32 {
        if let Some(&id) = self.ids.get(&fp) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.texts.push(text());
        self.prints.push(fp);
        self.pows.push(pow);
        self.ids.insert(fp, id);
        id
    }

    /// Interns `s`.
    pub fn intern(&mut self, s: &str) -> u32 {
        let (mut h1, mut h2, mut p1, mut p2) = (0u64, 0u64, 1u64, 1u64);
        for &b in s.as_bytes() {
            h1 = addmod(mulmod(h1, BASE_1), b as u64 + 1);
            h2 = addmod(mulmod(h2, BASE_2), b as u64 + 1);
            p1 = mulmod(p1, BASE_1);
            p2 = mulmod(p2, BASE_2);
        }
        let fp = Fingerprint { len: s.len() as u64, h1, h2 };
        self.add(fp, (p1, p2), || Text::Literal(Arc::from(s)))
    }

    /// The id of `a ++ b`.
    pub fn append(&mut self, a: u32, b: u32) -> u32 {
        let (fa, fb) = (self.prints[a as usize], self.prints[b as usize]);
        if fb.len == 0 {
            return a;
        }
        if fa.len == 0 {
            return b;
        }
        let (pa, pb) = (self.pows[a as usize], self.pows[b as usize]);
        let fp = Fingerprint {
            len: fa.len + fb.len,
            h1: addmod(mulmod(fa.h1, pb.0), fb.h1),
            h2: addmod(mulmod(fa.h2, pb.1), fb.h2),
        };
        self.add(fp, (mulmod(pa.0, pb.0), mulmod(pa.1, pb.1)), || Text::Concat(a, b))
    }

    /// True if string `a` is a prefix of string `b`.
    pub fn is_prefix(&mut self, a: u32, b: u32) -> bool {
        let (fa, fb) = (self.prints[a as usize], self.prints[b as usize]);
        if fa.len > fb.len {
            return false;
        }
        if fa.len == 0 || fa == fb {
            return true;
        }
        if !self.prefixes.contains_key(&b) {
            let text = self.get(b);
            let mut hs = Vec::with_capacity(text.len() + 1);
            let (mut h1, mut h2) = (0u64, 0u64);
            hs.push((0, 0));
            for &c in text.as_bytes() {
                h1 = addmod(mulmod(h1, BASE_1), c as u64 + 1);
                h2 = addmod(mulmod(h2, BASE_2), c as u64 + 1);
                hs.push((h1, h2));
            }
            self.prefixes.insert(b, hs.into());
        }
        let (h1, h2) = self.prefixes[&b][fa.len as usize];
        h1 == fa.h1 && h2 == fa.h2
    }

    /// The text of an id.
    pub fn get(&self, id: u32) -> String {
        let mut out = String::new();
        let mut stack = vec![id];
        while let Some(i) = stack.pop() {
            match &self.texts[i as usize] {
                Text::Literal(s) => out.push_str(s),
                Text::Concat(a, b) => {
                    stack.push(*b);
                    stack.push(*a);
                }
            }
        }
        out
    }
}

/// Porcupine's kv model for one key: a string register, initially empty, with
/// get / put / append.
#[derive(Clone, Debug)]
pub struct KvModel {
    /// The interner (the empty string is id 0).
    pub strings: Strings,
}

impl KvModel {
    /// A model whose interner already holds the empty string as id 0.
    pub fn new() -> Self {
        let mut strings = Strings::default();
        strings.intern("");
        KvModel { strings }
    }
}

impl Default for KvModel {
    fn default() -> Self {
        Self::new()
    }
}

impl Model for KvModel {
    type State = u32;
    type Op = KvOp;
    type Part = u32;
    fn part(&self, s: &u32, _key: u32) -> u32 {
        *s
    }
    fn init(&self) -> u32 {
        0
    }
    fn step(&mut self, s: &u32, op: &KvOp) -> Option<u32> {
        match *op {
            KvOp::Get(v) => (v == *s).then_some(*s),
            KvOp::Put(v) => Some(v),
            KvOp::Append(v) => Some(self.strings.append(*s, v)),
        }
    }
    fn read_only(&self, op: &KvOp) -> bool {
        matches!(op, KvOp::Get(_))
    }
    fn resets(&self, op: &KvOp) -> bool {
        matches!(op, KvOp::Put(_))
    }
    fn may_reach(&mut self, s: &u32, op: &KvOp) -> bool {
        match *op {
            KvOp::Get(v) => self.strings.is_prefix(*s, v),
            _ => true,
        }
    }
    fn show_state(&self, s: &u32) -> String {
        format!("{:?}", self.strings.get(*s))
    }
}

/// A set op over interned elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetOp {
    /// Add an element.
    Add(u32),
    /// A read that returned exactly this set (a bitset over element ids).
    Read(Arc<[u64]>),
}

/// A grow-only set with add and read-all.
#[derive(Clone, Debug)]
pub struct SetModel {
    /// Number of 64-bit words in a state bitset.
    pub words: usize,
    /// Element table for display.
    pub elements: Arc<Vec<Value>>,
}

impl Model for SetModel {
    type State = Arc<[u64]>;
    type Op = SetOp;
    type Part = Arc<[u64]>;
    fn part(&self, s: &Arc<[u64]>, _key: u32) -> Arc<[u64]> {
        s.clone()
    }
    fn init(&self) -> Arc<[u64]> {
        vec![0u64; self.words].into()
    }
    fn step(&mut self, s: &Arc<[u64]>, op: &SetOp) -> Option<Arc<[u64]>> {
        match op {
            SetOp::Read(r) => (r == s).then(|| s.clone()),
            SetOp::Add(e) => {
                let (w, b) = (*e as usize / 64, *e % 64);
                if s[w] & (1 << b) != 0 {
                    return Some(s.clone());
                }
                let mut v = s.to_vec();
                v[w] |= 1 << b;
                Some(v.into())
            }
        }
    }
    fn read_only(&self, op: &SetOp) -> bool {
        matches!(op, SetOp::Read(_))
    }
    fn resets(&self, _op: &SetOp) -> bool {
        false
    }
    fn may_reach(&mut self, s: &Arc<[u64]>, op: &SetOp) -> bool {
        match op {
            // Sets only grow: what is in the set now must be in the read.
            SetOp::Read(r) => s.iter().zip(r.iter()).all(|(a, b)| a & !b == 0),
            SetOp::Add(_) => true,
        }
    }
    fn show_state(&self, s: &Arc<[u64]>) -> String {
        let mut out = Vec::new();
        for (i, e) in self.elements.iter().enumerate() {
            if s[i / 64] & (1 << (i % 64)) != 0 {
                out.push(e.to_string());
            }
        }
        format!("#{{{}}}", out.join(" "))
    }
}

/// Many independent objects of model `M`, one per key: the state is the vector of every
/// key's state. Used to check a history as one whole map (no partitioning).
#[derive(Clone, Debug)]
pub struct MapModel<M: Model> {
    /// The per-key model (shared: its interners are content-exact).
    pub inner: M,
    /// Number of keys.
    pub keys: usize,
    /// Key names for display.
    pub names: Arc<Vec<String>>,
}

impl<M: Model> Model for MapModel<M> {
    type State = Box<[M::State]>;
    type Op = (u32, M::Op);
    type Part = M::State;
    fn part(&self, s: &Self::State, key: u32) -> M::State {
        s[key as usize].clone()
    }
    fn init(&self) -> Self::State {
        vec![self.inner.init(); self.keys].into_boxed_slice()
    }
    fn step(&mut self, s: &Self::State, (k, op): &Self::Op) -> Option<Self::State> {
        let next = self.inner.step(&s[*k as usize], op)?;
        let mut s2 = s.clone();
        s2[*k as usize] = next;
        Some(s2)
    }
    fn key(&self, op: &Self::Op) -> u32 {
        op.0
    }
    fn read_only(&self, op: &Self::Op) -> bool {
        self.inner.read_only(&op.1)
    }
    fn legal(&mut self, s: &Self::State, (k, op): &Self::Op) -> bool {
        self.inner.legal(&s[*k as usize], op)
    }
    fn resets(&self, op: &Self::Op) -> bool {
        self.inner.resets(&op.1)
    }
    fn may_reach(&mut self, s: &Self::State, (k, op): &Self::Op) -> bool {
        self.inner.may_reach(&s[*k as usize], op)
    }
    fn show_state(&self, s: &Self::State) -> String {
        let parts: Vec<String> =
            s.iter().zip(self.names.iter()).map(|(st, n)| format!("{n}: {}", self.inner.show_state(st))).collect();
        format!("{{{}}}", parts.join(", "))
    }
}
