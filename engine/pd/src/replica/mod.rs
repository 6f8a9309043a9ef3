//! A replicated PD: three (or five) members keep PD's state in a raft group of their own,
//! so the cluster keeps its timestamps, ids and routing while a minority of them is down.
//! The leader runs [`crate::Pd`]; see [`member`] for how answers, leadership and the TSO
//! lease fit together.

mod log;
mod member;
mod staging;

pub(crate) use member::{start, Member};
