//! Workloads: clients that drive a keel cluster and record what they saw as a Jepsen-style
//! history (keel JSONL, as jepsen-checker reads it), so a checker — not the workload —
//! judges the outcome.
//!
//! Layering: sits on top; uses the public client API only (never server internals), so
//! what it proves holds for any user of the client.
#![deny(missing_docs)]

pub mod bank;
pub mod check;
mod commit_mode;
pub mod history;
pub mod list_append;
pub mod register;
pub mod set;

pub use history::{History, OpKind};
