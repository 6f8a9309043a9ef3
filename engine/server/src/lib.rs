//! A keel storage node: rpc + raftstore + txn + storage
//!
//! Filled by a later issue; see shared DESIGN.md §1 for its place in the layering.
