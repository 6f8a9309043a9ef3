//! A tiny durable counter service over keel-rpc and the simulated disk. It exists to prove
//! the harness itself — RPC through kills, partitions, pauses and packet loss, a disk that
//! keeps exactly what was synced — before the real cluster runs on it.

use crate::cluster::NodeEnv;
use keel_storage::{CfName, Engine, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// The port the counter listens on.
pub const COUNTER_PORT: u16 = 7000;
const TOTAL_KEY: &[u8] = b"counter/total";

/// A call to the counter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CounterRequest {
    /// Add to the total; answered with the new total once it is on disk.
    Add(u64),
    /// Read the total.
    Get,
}

/// The counter's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CounterResponse {
    /// The total after the call.
    Total(u64),
    /// The disk refused the write; the add did not happen... or did, if the failure was a
    /// sync error after the write reached the page cache — so callers treat it as unknown.
    DiskError(String),
}

/// Runs the counter on `env` until the node is killed.
pub async fn counter_server(env: NodeEnv) {
    let disk = env.disk.clone();
    let total = match disk.get(CfName::Raw, TOTAL_KEY) {
        Ok(Some(bytes)) => u64::from_le_bytes(bytes.as_slice().try_into().expect("8-byte total")),
        Ok(None) => 0,
        Err(err) => panic!("counter disk unreadable at start: {err}"),
    };
    let total = Arc::new(Mutex::new(total));
    let listener = tokio::net::TcpListener::bind(env.addr(COUNTER_PORT)).await.expect("bind counter port");
    keel_rpc::serve(listener, move |req: CounterRequest| {
        let total = total.clone();
        let disk = disk.clone();
        async move {
            let mut total = total.lock().expect("counter lock");
            match req {
                CounterRequest::Get => CounterResponse::Total(*total),
                CounterRequest::Add(n) => {
                    let next = *total + n;
                    let mut batch = WriteBatch::default();
                    batch.put(CfName::Raw, TOTAL_KEY, &next.to_le_bytes());
                    match disk.write(batch, WriteOptions { sync: true }) {
                        Ok(()) => {
                            *total = next;
                            CounterResponse::Total(next)
                        }
                        Err(err) => CounterResponse::DiskError(err.to_string()),
                    }
                }
            }
        }
    })
    .await;
}
