//! Recording a history: one JSON line per invocation and per completion, in real-time
//! order (the order the simulator's single thread observes them in).

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// How an operation ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Started.
    Invoke,
    /// Succeeded.
    Ok,
    /// Certainly did not take effect.
    Fail,
    /// May or may not have taken effect.
    Info,
}

impl OpKind {
    fn as_str(self) -> &'static str {
        match self {
            OpKind::Invoke => "invoke",
            OpKind::Ok => "ok",
            OpKind::Fail => "fail",
            OpKind::Info => "info",
        }
    }
}

#[derive(Default)]
struct Inner {
    lines: Vec<String>,
    counts: [u64; 4],
}

/// A shared, append-only history. Cheap to clone.
#[derive(Clone, Default)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
    start: Option<tokio::time::Instant>,
}

impl History {
    /// An empty history; times are measured from now.
    pub fn new() -> History {
        // Marks time zero of the history's clock in the trace (run reports align on it).
        keel_types::trace_event!("history.start", "");
        History { inner: Arc::default(), start: Some(tokio::time::Instant::now()) }
    }

    /// Appends one event.
    pub fn record(&self, process: u64, kind: OpKind, f: &str, key: &Value, value: Value) {
        let time = self.start.map_or(0, |s| s.elapsed().as_nanos() as u64);
        let line = json!({"process": process, "type": kind.as_str(), "f": f, "key": key, "value": value, "time": time});
        let mut inner = self.inner.lock().expect("history lock");
        inner.counts[kind as usize] += 1;
        inner.lines.push(line.to_string());
    }

    /// The history as keel JSONL.
    pub fn to_jsonl(&self) -> String {
        let inner = self.inner.lock().expect("history lock");
        let mut out = String::with_capacity(inner.lines.iter().map(|l| l.len() + 1).sum());
        for line in &inner.lines {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Completed operations so far: (ok, fail, info).
    pub fn outcomes(&self) -> (u64, u64, u64) {
        let c = self.inner.lock().expect("history lock").counts;
        (c[OpKind::Ok as usize], c[OpKind::Fail as usize], c[OpKind::Info as usize])
    }
}
