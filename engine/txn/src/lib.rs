//! Percolator MVCC over the lock/write/default column families
//!
//! Filled by a later issue; see shared DESIGN.md §1 for its place in the layering.
