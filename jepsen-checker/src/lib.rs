//! jepsen-checker: decides whether a recorded history of a concurrent system is correct.
//!
//! It reads Jepsen-style histories (invoke / ok / fail / info operations) in EDN, Jepsen
//! log-line or keel JSONL form ([`history`]), and checks them for
//! * linearizability against a sequential model ([`linear`]): registers, CAS registers,
//!   Porcupine's kv map and sets, with a Wing–Gong/Lowe search, P-compositionality and a
//!   time/memory budget;
//! * Elle-style transactional anomalies ([`elle`]) for list-append and rw-register
//!   histories;
//! * the bank invariant ([`bank`]).
//!
//! **This crate must never depend on any keel engine crate** (types, storage, raftstore,
//! txn, pd, server, client) nor on the simulator: it only reads histories, so histories
//! from Jepsen runs against other databases check the same way.

pub mod bank;
pub mod edn;
pub mod elle;
pub mod gen;
pub mod history;
pub mod html;
pub mod linear;
pub mod report;
pub mod value;

pub use history::{parse, Format, History, OpType, Operation, ParseError};
pub use value::Value;
