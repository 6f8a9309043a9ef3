//! Seeded, composable fault schedules for the simulator
//!
//! Filled by a later issue; see shared DESIGN.md §1 for its place in the layering.
