//! A format-neutral value: what an operation's `:value` (or `:key`) holds, whether it was
//! read from EDN, a Jepsen log line or keel's JSONL.

use std::fmt;

/// A parsed datum. EDN keywords and JSON strings both name things (`:append` and
/// `"append"`), so [`Value::as_name`] treats them alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// `nil` / JSON `null`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// An EDN keyword, without the leading colon.
    Keyword(String),
    /// An EDN symbol or any other atom kept as its text (floats, characters).
    Symbol(String),
    /// A vector or list.
    Vec(Vec<Value>),
    /// An EDN set, in source order.
    Set(Vec<Value>),
    /// A map, in source order.
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// The name a keyword, string or symbol carries.
    pub fn as_name(&self) -> Option<&str> {
        match self {
            Value::Keyword(s) | Value::Str(s) | Value::Symbol(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements of a vector, list or set.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Vec(v) | Value::Set(v) => Some(v),
            _ => None,
        }
    }

    /// Looks up a map entry by keyword or string name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.as_name() == Some(name)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// True for `nil`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// Converts to a JSON value (keywords become `":kw"`-less strings).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Nil => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Str(s) | Value::Keyword(s) | Value::Symbol(s) => J::String(s.clone()),
            Value::Vec(v) | Value::Set(v) => J::Array(v.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| (k.as_name().map_or_else(|| k.to_string(), str::to_string), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Converts from a JSON value (objects become maps with string keys).
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Nil,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Symbol(n.to_string()),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(a) => Value::Vec(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Map(o.iter().map(|(k, v)| (Value::Str(k.clone()), Value::from_json(v))).collect()),
        }
    }
}

fn write_seq(f: &mut fmt::Formatter<'_>, open: &str, items: &[Value], close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(" ")?;
        }
        write!(f, "{v}")?;
    }
    f.write_str(close)
}

/// Renders in EDN syntax.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Keyword(s) => write!(f, ":{s}"),
            Value::Symbol(s) => f.write_str(s),
            Value::Vec(v) => write_seq(f, "[", v, "]"),
            Value::Set(v) => write_seq(f, "#{", v, "}"),
            Value::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}
