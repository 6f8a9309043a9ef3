//! Simulation workloads that record Jepsen-style histories
//!
//! Filled by a later issue; see shared DESIGN.md §1 for its place in the layering.
