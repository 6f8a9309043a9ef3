//! The verdict every checker produces, and the one-line JSON the binary ends with.

/// Whether the history is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// Valid under the chosen model.
    Valid,
    /// Not valid.
    Invalid,
    /// Undecided (budget exhausted).
    Unknown,
}

impl Validity {
    /// The process exit code for this verdict: 0 valid, 1 invalid, 3 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Validity::Valid => 0,
            Validity::Invalid => 1,
            Validity::Unknown => 3,
        }
    }

    fn json(self) -> serde_json::Value {
        match self {
            Validity::Valid => true.into(),
            Validity::Invalid => false.into(),
            Validity::Unknown => "unknown".into(),
        }
    }
}

/// One anomaly, explained.
#[derive(Clone, Debug, PartialEq)]
pub struct Anomaly {
    /// The anomaly's name: G0, G1a, G1b, G1c, G-single, G-nonadjacent, G2-item (each
    /// optionally with `-process` / `-realtime`), internal, duplicate-elements,
    /// incompatible-order, lost-update, nonlinearizable, wrong-total, negative-balance.
    pub kind: String,
    /// History op ids of the operations / transactions involved.
    pub txns: Vec<usize>,
    /// What happened, in words.
    pub explanation: String,
}

impl Anomaly {
    /// The anomaly as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.kind,
            "ops": self.txns,
            "explanation": self.explanation,
        })
    }
}

/// A checker's verdict plus the human-readable lines explaining it.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// Valid / invalid / unknown.
    pub validity: Validity,
    /// Operations in the history.
    pub ops: usize,
    /// Anomalies found.
    pub anomalies: Vec<Anomaly>,
    /// Explanation lines printed before the JSON.
    pub lines: Vec<String>,
    /// Extra JSON fields (e.g. `ruled_out`).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Verdict {
    /// The final JSON line: `{"valid":…,"ops":…,"anomalies":[…],"elapsed_ms":…}` plus extras.
    pub fn json_line(&self, elapsed_ms: u128) -> String {
        let mut m = serde_json::Map::new();
        m.insert("valid".into(), self.validity.json());
        m.insert("ops".into(), self.ops.into());
        m.insert("anomalies".into(), self.anomalies.iter().map(Anomaly::to_json).collect::<Vec<_>>().into());
        m.insert("elapsed_ms".into(), (elapsed_ms as u64).into());
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        serde_json::Value::Object(m).to_string()
    }
}
