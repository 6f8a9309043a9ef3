//! Placement driver: TSO, id allocation, region metadata, scheduling
//!
//! Filled by a later issue; see shared DESIGN.md §1 for its place in the layering.
