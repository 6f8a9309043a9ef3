//! Rust client for keel: the PD client, the RawKV client with its region cache and retry
//! policy, and the TransactionClient (Percolator 2PC, async commit, 1PC, lock resolution).
//!
//! Layering: this crate talks to PD and storage nodes only through the wire protocol in
//! `keel_types::proto` over `keel-rpc`. It must never depend on keel-server, keel-raftstore,
//! keel-txn, keel-pd or keel-storage (keel-pd and keel-storage are dev-dependencies for
//! tests only), so an application linking the client pulls in no server code.
#![deny(missing_docs)]

mod error;
mod gc;
mod live_txns;
mod lock_backoff;
mod pd;
mod raw;
mod region_cache;
mod txn;

pub use error::{ClientError, Result};
pub use pd::{PdClient, PdClientConfig, PdClientError, PdMembers, SplitIds, TsBatch};
pub use raw::{KvPair, RawClient, RawClientConfig};
pub use region_cache::{CachedRegion, LocateError, RegionCache};
pub use txn::{Transaction, TransactionClient, TransactionOptions, TransactionStats, LOCK_TTL_MS_DEFAULT};
