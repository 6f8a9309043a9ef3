//! TiKV's gRPC protocol, the part keel serves: message types and tonic server traits
//! generated from our own `.proto` subset of kvproto (`proto/`), wire-compatible with TiKV
//! and PD (same packages, services, methods, message names and field numbers), so official
//! TiKV clients talk to keel unmodified.
//!
//! Besides the generated types: the translations between keel's vocabulary and these
//! messages ([`convert`]) and the glue that runs a tonic service on connections keel's
//! listener hands over ([`serve_grpc`]). The adapters that turn requests into keel's native
//! PD and store requests sit next to the services they front (`keel-pd`, `keel-server`).
//!
//! Layering: depends on `keel-types` only among keel's crates. It exists only in the
//! production build (the simulator speaks keel's native protocol alone).

pub mod convert;
mod serve;

pub use serve::{serve_grpc, GRPC_CONNECTIONS_QUEUED_MAX};

/// Region, peer and store metadata.
#[allow(missing_docs)] // generated: the .proto file documents it
pub mod metapb {
    tonic::include_proto!("metapb");
}

/// Region errors (the client's routing retry logic keys on them).
#[allow(missing_docs)] // generated: the .proto file documents it
pub mod errorpb {
    tonic::include_proto!("errorpb");
}

/// Raw and transactional request/response messages of storage nodes.
#[allow(missing_docs)] // generated: the .proto file documents it
pub mod kvrpcpb {
    tonic::include_proto!("kvrpcpb");
}

/// The `pdpb.PD` service: members, TSO, routing, stores, GC safe point.
#[allow(missing_docs)] // generated: the .proto file documents it
pub mod pdpb {
    tonic::include_proto!("pdpb");
}

/// The `tikvpb.Tikv` service of storage nodes.
#[allow(missing_docs)] // generated: the .proto file documents it
pub mod tikvpb {
    tonic::include_proto!("tikvpb");
}
