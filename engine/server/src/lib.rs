//! A keel storage node: registers with PD, runs the raftstore loop over its engine, carries
//! raft traffic between stores over keel-rpc, and serves clients' RawKV commands by turning
//! them into raft proposals (writes) or ReadIndex reads.
//!
//! In the production build the node's port also answers TiKV's `tikvpb.Tikv` gRPC service
//! (an adapter onto the same request path), so official TiKV clients use keel unmodified.
//!
//! Layering: wires `keel-rpc`, `keel-raftstore` and `keel-storage` together and uses
//! `keel-client`'s PD client. Nothing below it may depend on it; the simulator and the
//! `keel` binary start nodes through [`run_node`].
#![deny(missing_docs)]

mod gc_worker;
#[cfg(not(madsim))]
mod grpc;
mod node;
mod pd_reporter;
mod raw;
mod raw_read;
mod raw_ttl_purge;
mod running;
mod service;
mod transport;

pub use node::{run_node, start_node, NodeConfig, NodeError};
pub use running::Node;
