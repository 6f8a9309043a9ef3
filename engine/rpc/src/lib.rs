//! Typed request/response RPC over TCP: length-delimited frames carrying bincode-encoded
//! envelopes, many calls in flight per connection, per-call timeouts, reconnect after the
//! peer restarts, and a frame-size limit.
//!
//! The same code runs in production (tokio) and in the simulator (madsim-tokio intercepts
//! the sockets), so what the simulator proves about it holds for the binary.
//!
//! This crate knows nothing of what the messages mean: it must never depend on keel's
//! storage, raft, txn or server crates — only on `keel-types` for limits and tracing.
#![deny(missing_docs)]

mod client;
mod codec;
#[cfg(not(madsim))]
mod mux;
mod server;

pub use client::{PendingCall, RpcClient, RpcError};
#[cfg(not(madsim))]
pub use mux::serve_mux;
pub use server::{serve, serve_connection};

/// A message that can travel in an RPC envelope.
pub trait Message: serde::Serialize + serde::de::DeserializeOwned + Send + 'static {}
impl<T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static> Message for T {}
