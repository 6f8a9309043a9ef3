//! Multi-raft: region peers over raft-rs, raft log, apply, split, conf change, snapshots
//!
//! Filled by a later issue; see shared DESIGN.md §1 for its place in the layering.
