//! Wire messages of keel's native protocol: what PD and storage nodes accept and answer.
//! Both ends and every client share these types, so a message changes in one place.
//! (The kvproto gRPC front, when it lands, translates into these.)

mod method;
pub mod pd;
pub mod store;
pub mod txn;
