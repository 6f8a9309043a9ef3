//! The deterministic simulation harness and the `cargo sim` runner: a cluster of madsim
//! nodes with simulated disks, clocks and network faults, scenarios that drive workloads
//! against it, and a runner that turns one seed into one verdict with a trace hash.
//!
//! Everything here only exists under `--cfg madsim` (the `cargo sim` alias builds it so);
//! a normal build compiles an empty library and a binary that explains how to run it.
//! This crate sits on top of the engine and may use every engine crate; no engine crate
//! may depend on it.
#![deny(missing_docs)]

#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod corpus;
#[cfg(madsim)]
pub mod counter;
#[cfg(madsim)]
pub mod faults;
#[cfg(madsim)]
pub mod negative;
#[cfg(madsim)]
pub mod report;
#[cfg(madsim)]
pub mod runner;
#[cfg(madsim)]
pub mod scenario;
