//! Rust client for keel: RawClient, TransactionClient, region cache, retries
//!
//! Filled by a later issue; see shared DESIGN.md §1 for its place in the layering.
