//! The placement driver (PD): the cluster's single source of truth for ids, timestamps
//! and routing.
//!
//! - **Cluster id**: chosen once at first start, stable across restarts.
//! - **Id allocator**: one id space for stores, regions and peers; a high-water mark is
//!   persisted ahead of the ids handed out, so an id is never reused after a restart.
//! - **TSO**: `physical_ms << 18 | logical` timestamps, strictly increasing across
//!   restarts and backward clock jumps; a time window is persisted ahead before any
//!   timestamp inside it is served.
//! - **Stores and regions**: store registration and heartbeats, cluster bootstrap (the
//!   first region, once `max_replicas` stores are up), and a region tree keyed by range
//!   that region heartbeats and split reports keep current under epoch rules.
//! - **GC safe point**: monotonic.
//! - **Scheduling**: store liveness from store heartbeats; a replica checker (repair down,
//!   offline, missing and extra replicas, with label-isolated placement), balance-leader
//!   and balance-region, as multi-step operators answered one step per leader heartbeat
//!   (see the `scheduler` module).
//!
//! [`Pd`] is a synchronous state machine over a [`keel_storage::Engine`]: every change is
//! written in a synced batch before it is acknowledged, and a failed write stops the PD
//! (it answers `Unavailable` until restarted from disk). [`run_pd`] serves it over
//! keel-rpc. Time comes only from the injected [`keel_types::Clock`] (skewable by the
//! simulator) and `tokio::time`; there is no randomness, no thread and no `HashMap`
//! iteration, so the simulator replays it exactly.
//!
//! In the production build the same port also answers TiKV's `pdpb.PD` gRPC service (an
//! adapter onto the same request path), so official TiKV clients connect to keel's PD.
//!
//! Layering: this crate depends on `keel-types`, `keel-storage` and `keel-rpc` only (plus
//! `keel-kvproto`'s generated messages in the production build). It
//! must never depend on raftstore, txn, server or client crates: stores and clients talk
//! to it through the wire protocol in `keel_types::proto::pd`.
#![deny(missing_docs)]

mod config;
mod error;
#[cfg(not(madsim))]
mod grpc;
mod ids;
mod meta;
mod pd;
mod region_tree;
mod replica;
mod scheduler;
mod service;
mod tso;

pub use config::{PdConfig, ScheduleConfig};
pub use error::Error;
pub use pd::{Pd, RegionStats, StoreStatus};
pub use scheduler::{OperatorCounters, OperatorKind};
pub use service::{run_pd, serve_member, serve_pd, start_member, PdMember, SharedPd};

/// How many ids the allocator persists ahead of the ones it hands out.
pub const ID_PERSIST_AHEAD: u64 = 1000;
/// Most ids one `AllocId` call may ask for.
pub const ID_ALLOC_COUNT_MAX: u32 = 1 << 16;
/// How far ahead of the served timestamps the TSO persists its time window, in ms.
pub const TSO_WINDOW_MS: u64 = 3000;
/// Most timestamps one `Tso` call may ask for (one millisecond's worth of logical values).
pub const TSO_COUNT_MAX: u32 = 1 << keel_types::timestamp::LOGICAL_BITS;
/// Most replicas a region may be configured with.
pub const MAX_REPLICAS_MAX: usize = 7;

const _: () = assert!(TSO_WINDOW_MS > 0 && ID_PERSIST_AHEAD > 0);
const _: () = assert!(ID_ALLOC_COUNT_MAX as u64 > MAX_REPLICAS_MAX as u64);
