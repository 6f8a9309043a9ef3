//! The history model and its three input formats.
//!
//! # Formats
//!
//! * **Jepsen EDN**: a vector of op maps, or one op map per line (any sequence of
//!   top-level maps). Keys used: `:process`, `:type`, `:f`, `:key`, `:value`, `:time`,
//!   `:index`. Ops whose `:process` is not an integer (`:nemesis`) are skipped.
//! * **Jepsen log lines** (the etcd files): `INFO  jepsen.util - P\t:type\t:f\tVALUE`,
//!   where VALUE is EDN. Lines without `jepsen.util - ` are log noise and are skipped.
//! * **keel JSONL** — the format keel's workloads write. One JSON object per line:
//!
//!   ```json
//!   {"process":3,"type":"invoke","f":"cas","key":"k1","value":[1,2],"time":1234}
//!   ```
//!
//!   | field | type | meaning |
//!   | --- | --- | --- |
//!   | `process` | integer, required | the logical client issuing the op; one op at a time per process |
//!   | `type` | `"invoke"` \| `"ok"` \| `"fail"` \| `"info"`, required | `fail`: definitely did not happen; `info`: outcome unknown |
//!   | `f` | string, required | `read` `write` `cas` (registers), `get` `put` `append` (kv), `add` `read` (set), `txn` (list-append / rw-register), `read` `transfer` (bank) |
//!   | `key` | any JSON, optional | the key; ops on different keys are independent (checked per key) |
//!   | `value` | any JSON, optional | `read`: the value read (`null` = absent); `write`: the value; `cas`: `[expected, new]`; `txn`: a list of micro-ops `["append",k,v]`, `["r",k,[v1,v2]]` (list-append, `null` on invoke) or `["w",k,v]`, `["r",k,v]` (rw-register); bank `read`: an object `{"account": balance}` |
//!   | `time` | integer ns, optional | for display only; real-time order is the line order |
//!
//!   Blank lines are ignored. A completion (`ok`/`fail`/`info`) pairs with the pending
//!   `invoke` of the same process.
//!
//! Real-time order is always the position in the file: op A precedes op B when A's
//! completion appears before B's invocation.

use crate::edn;
use crate::value::Value;

/// What an entry in the history records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpType {
    /// A call was issued.
    Invoke,
    /// The call completed successfully.
    Ok,
    /// The call definitely did not take effect.
    Fail,
    /// Outcome unknown: it may or may not have taken effect.
    Info,
}

impl OpType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "invoke" => OpType::Invoke,
            "ok" => OpType::Ok,
            "fail" => OpType::Fail,
            "info" => OpType::Info,
            _ => return None,
        })
    }

    /// The Jepsen name.
    pub fn name(self) -> &'static str {
        match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }
}

/// One history entry (an invocation or a completion).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The client process, or `None` when the file gave none.
    pub process: Option<i64>,
    /// invoke / ok / fail / info.
    pub kind: OpType,
    /// The function: read, write, cas, txn, …
    pub f: String,
    /// The key, when the op names one.
    pub key: Option<Value>,
    /// The value.
    pub value: Value,
    /// The recorded time, if any (display only).
    pub time: Option<i64>,
    /// 1-based source line.
    pub line: usize,
}

/// A logical operation: an invocation paired with its completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    /// Dense id: position in [`History::ops`].
    pub id: usize,
    /// The client process (synthesised for files without processes).
    pub process: i64,
    /// Ok / Fail / Info; `Info` also for an invoke that never completed.
    pub outcome: OpType,
    /// The function.
    pub f: String,
    /// The key, if any.
    pub key: Option<Value>,
    /// The value the invocation carried.
    pub invoke_value: Value,
    /// The value the completion carried (for ok ops: the result; otherwise the invoke's).
    pub value: Value,
    /// Position of the invocation in the event sequence.
    pub call: usize,
    /// Position of the completion; `None` if it never completed.
    pub ret: Option<usize>,
    /// Source line of the invocation.
    pub line: usize,
}

impl Operation {
    /// A one-line human rendering, e.g. `p3 cas [1 2] → ok`.
    pub fn describe(&self) -> String {
        let key = self.key.as_ref().map(|k| format!(" {k}")).unwrap_or_default();
        let v = if self.outcome == OpType::Ok { &self.value } else { &self.invoke_value };
        format!("p{} {}{} {} → {} (line {})", self.process, self.f, key, v, self.outcome.name(), self.line)
    }
}

/// A parsed history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Logical operations, ordered by invocation.
    pub ops: Vec<Operation>,
}

/// An input format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Jepsen EDN (vector of maps, or one map per line).
    Edn,
    /// Jepsen log lines.
    Log,
    /// keel JSONL.
    Jsonl,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "edn" => Ok(Format::Edn),
            "log" | "jepsen-log" => Ok(Format::Log),
            "jsonl" | "json" => Ok(Format::Jsonl),
            _ => Err(format!("unknown format {s:?} (expected edn, log or jsonl)")),
        }
    }
}

/// Bad input, with the 1-based line where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line (0 when not tied to a line).
    pub line: usize,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

impl From<edn::EdnError> for ParseError {
    fn from(e: edn::EdnError) -> Self {
        ParseError { line: e.line, message: e.message }
    }
}

fn perr<T>(line: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { line, message: message.into() })
}

/// Guesses the format from the first meaningful line.
pub fn detect(src: &str) -> Result<Format, ParseError> {
    for (i, line) in src.lines().enumerate() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with(';') {
            continue;
        }
        if t.contains("jepsen.util - ") {
            return Ok(Format::Log);
        }
        if let Some(rest) = t.strip_prefix('{') {
            let rest = rest.trim_start();
            return Ok(if rest.starts_with('"') || rest.starts_with('}') { Format::Jsonl } else { Format::Edn });
        }
        if t.starts_with('[') || t.starts_with('#') || t.starts_with('(') {
            return Ok(Format::Edn);
        }
        return perr(
            i + 1,
            "cannot tell the format: expected EDN ('[' or '{:'), JSON ('{\"') or a Jepsen log line ('jepsen.util - ')",
        );
    }
    perr(0, "empty history")
}

/// Parses `src`, detecting the format unless one is given.
pub fn parse(src: &str, format: Option<Format>) -> Result<History, ParseError> {
    let format = match format {
        Some(f) => f,
        None => detect(src)?,
    };
    let events = match format {
        Format::Edn => parse_edn(src)?,
        Format::Log => parse_log(src)?,
        Format::Jsonl => parse_jsonl(src)?,
    };
    History::from_events(events)
}

fn event_from_map(line: usize, m: Value) -> Result<Option<Event>, ParseError> {
    if !matches!(m, Value::Map(_)) {
        return perr(line, format!("expected an op map, found {m}"));
    }
    let process = match m.get("process") {
        None | Some(Value::Nil) => None,
        Some(Value::Int(p)) => Some(*p),
        Some(_) => return Ok(None), // :nemesis and friends
    };
    let Some(ty) = m.get("type") else {
        return perr(line, "op has no :type");
    };
    let Some(kind) = ty.as_name().and_then(OpType::parse) else {
        return perr(line, format!(":type must be invoke, ok, fail or info, found {ty}"));
    };
    let f = match m.get("f") {
        None | Some(Value::Nil) => "txn".to_string(),
        Some(v) => match v.as_name() {
            Some(s) => s.to_string(),
            None => return perr(line, format!(":f must be a keyword or string, found {v}")),
        },
    };
    let time = m.get("time").and_then(Value::as_int);
    let Value::Map(entries) = m else { unreachable!("checked above") };
    let (mut key, mut value) = (None, Value::Nil);
    for (k, v) in entries {
        match k.as_name() {
            Some("key") if !v.is_nil() => key = Some(v),
            Some("value") => value = v,
            _ => {}
        }
    }
    Ok(Some(Event { process, kind, f, key, value, time, line }))
}

fn parse_edn(src: &str) -> Result<Vec<Event>, ParseError> {
    let forms = edn::parse_all(src)?;
    let items: Vec<(usize, Value)> = if forms.len() == 1 && matches!(forms[0].1, Value::Vec(_)) {
        let (line, Value::Vec(v)) = forms.into_iter().next().expect("one form") else { unreachable!() };
        // Element lines are not tracked inside one vector; recover them by re-reading.
        let lines = element_lines(src).unwrap_or_default();
        v.into_iter().enumerate().map(|(i, x)| (lines.get(i).copied().unwrap_or(line), x)).collect()
    } else {
        forms
    };
    let mut out = Vec::with_capacity(items.len());
    for (line, v) in items {
        if let Some(e) = event_from_map(line, v)? {
            out.push(e);
        }
    }
    Ok(out)
}

/// Lines on which each element of a top-level vector starts.
fn element_lines(src: &str) -> Option<Vec<usize>> {
    let start = src.find('[')?;
    let line0 = src[..start].matches('\n').count() + 1;
    let mut r = edn::Reader::new(&src[start + 1..], line0);
    let mut out = Vec::new();
    while let Ok(Some((line, _))) = r.next_form() {
        out.push(line);
    }
    Some(out)
}

fn parse_log(src: &str) -> Result<Vec<Event>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in src.lines().enumerate() {
        let n = i + 1;
        let Some(pos) = line.find("jepsen.util - ") else {
            continue;
        };
        let rest = &line[pos + "jepsen.util - ".len()..];
        let fields: Vec<&str> = rest.splitn(4, '\t').collect();
        if fields.len() < 3 {
            return perr(n, "expected 'P<TAB>:type<TAB>:f<TAB>value' after 'jepsen.util - '");
        }
        let process = match fields[0].trim().parse::<i64>() {
            Ok(p) => p,
            Err(_) if fields[0].trim().starts_with(':') => continue, // :nemesis
            Err(_) => return perr(n, format!("bad process {:?}", fields[0].trim())),
        };
        let ty = fields[1].trim().trim_start_matches(':');
        let Some(kind) = OpType::parse(ty) else {
            return perr(n, format!("bad op type {:?}", fields[1].trim()));
        };
        let f = fields[2].trim().trim_start_matches(':').to_string();
        let value = match fields.get(3) {
            Some(v) if !v.trim().is_empty() => edn::parse_one(v.trim())
                .map_err(|e| ParseError { line: n, message: format!("bad value {:?}: {}", v.trim(), e.message) })?,
            _ => Value::Nil,
        };
        out.push(Event { process: Some(process), kind, f, key: None, value, time: None, line: n });
    }
    Ok(out)
}

fn parse_jsonl(src: &str) -> Result<Vec<Event>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in src.lines().enumerate() {
        let n = i + 1;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let j: serde_json::Value = match serde_json::from_str(t) {
            Ok(j) => j,
            Err(e) => return perr(n, format!("invalid JSON: {e}")),
        };
        if !j.is_object() {
            return perr(n, "expected a JSON object");
        }
        if let Some(e) = event_from_map(n, Value::from_json(&j))? {
            out.push(e);
        }
    }
    Ok(out)
}

impl History {
    /// Pairs invocations with completions (per process; files without processes pair
    /// each completion with the oldest pending invocation).
    pub fn from_events(events: Vec<Event>) -> Result<History, ParseError> {
        use std::collections::HashMap;
        let mut ops: Vec<Operation> = Vec::new();
        let mut pending: HashMap<i64, usize> = HashMap::new();
        let mut anon: std::collections::VecDeque<usize> = Default::default();
        let mut next_anon = -1i64;
        for (pos, e) in events.into_iter().enumerate() {
            match e.kind {
                OpType::Invoke => {
                    let process = match e.process {
                        Some(p) => {
                            if let Some(prev) = pending.insert(p, ops.len()) {
                                // The process invoked again: the earlier call never returned.
                                ops[prev].outcome = OpType::Info;
                            }
                            p
                        }
                        None => {
                            anon.push_back(ops.len());
                            next_anon -= 1;
                            next_anon
                        }
                    };
                    ops.push(Operation {
                        id: ops.len(),
                        process,
                        outcome: OpType::Info,
                        f: e.f,
                        key: e.key,
                        invoke_value: e.value,
                        value: Value::Nil,
                        call: pos,
                        ret: None,
                        line: e.line,
                    });
                }
                kind => {
                    let idx = match e.process {
                        Some(p) => pending.remove(&p),
                        None => anon.pop_front(),
                    };
                    let Some(idx) = idx else {
                        let who = e.process.map(|p| format!("process {p}")).unwrap_or("an op".into());
                        return perr(e.line, format!(":{} for {who} with no pending :invoke", kind.name()));
                    };
                    let op = &mut ops[idx];
                    if op.f != e.f {
                        return perr(
                            e.line,
                            format!(
                                "completion :f {} does not match its invocation's :f {} (line {})",
                                e.f, op.f, op.line
                            ),
                        );
                    }
                    op.outcome = kind;
                    op.ret = Some(pos);
                    if kind == OpType::Ok {
                        op.value = e.value;
                    } else {
                        op.value = op.invoke_value.clone();
                    }
                    if op.key.is_none() {
                        op.key = e.key;
                    }
                }
            }
        }
        for op in &mut ops {
            if op.ret.is_none() {
                op.value = op.invoke_value.clone();
            }
        }
        Ok(History { ops })
    }

    /// Number of logical operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when there are no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_and_pairs() {
        let log = "INFO  jepsen.util - 3\t:invoke\t:cas\t[3 0]\nINFO  jepsen.util - 3\t:info\t:cas\t:timed-out\n";
        let h = parse(log, None).unwrap();
        assert_eq!(h.ops.len(), 1);
        assert_eq!(h.ops[0].outcome, OpType::Info);
        assert_eq!(h.ops[0].invoke_value, Value::Vec(vec![Value::Int(3), Value::Int(0)]));

        let jl = "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"a\",\"value\":null}\n{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"key\":\"a\",\"value\":5}\n";
        assert_eq!(detect(jl).unwrap(), Format::Jsonl);
        let h = parse(jl, None).unwrap();
        assert_eq!(h.ops[0].value, Value::Int(5));
        assert_eq!(h.ops[0].key, Some(Value::Str("a".into())));
    }

    #[test]
    fn errors_carry_lines() {
        let jl = "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n{\"process\":1,\"type\":\"ok\",\"f\":\"read\"\n";
        assert_eq!(parse(jl, None).unwrap_err().line, 2);
        let edn = "[{:process 1 :type :invoke :f :read}\n {:process 2 :type :ok :f :read}]";
        let e = parse(edn, None).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(parse("hello\n", None).is_err());
    }
}
