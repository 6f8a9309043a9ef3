//! Rust client for keel: the PD client now; RawClient, TransactionClient, the region cache
//! and retries as they land.
//!
//! Layering: this crate talks to PD and storage nodes only through the wire protocol in
//! `keel_types::proto` over `keel-rpc`. It must never depend on keel-server, keel-raftstore,
//! keel-txn, keel-pd or keel-storage (keel-pd and keel-storage are dev-dependencies for
//! tests only), so an application linking the client pulls in no server code.
#![deny(missing_docs)]

mod pd;

pub use pd::{PdClient, PdClientConfig, PdClientError, PdMembers, SplitIds, TsBatch};
