//! The mutation collector: actions never write, they describe writes here, and the caller
//! proposes them through raft as one atomic batch.

use super::{Lock, Write};
use keel_raftstore::cmd::Request;
use keel_storage::CfName;
use keel_types::keys::{encode_bytes, versioned_key};
use keel_types::Timestamp;

/// The writes one command makes, in order.
#[derive(Debug, Default)]
pub struct MvccTxn {
    requests: Vec<Request>,
}

impl MvccTxn {
    /// Nothing collected yet.
    pub fn new() -> MvccTxn {
        MvccTxn::default()
    }

    /// Stores `lock` on `key`.
    pub fn put_lock(&mut self, key: &[u8], lock: &Lock) {
        self.requests.push(Request::Put { cf: CfName::Lock, key: encode_bytes(key), value: lock.to_bytes() });
    }

    /// Removes the lock on `key`.
    pub fn unlock_key(&mut self, key: &[u8]) {
        self.requests.push(Request::Delete { cf: CfName::Lock, key: encode_bytes(key) });
    }

    /// Stores a long value of the transaction `start_ts` in the default CF.
    pub fn put_value(&mut self, key: &[u8], start_ts: Timestamp, value: Vec<u8>) {
        self.requests.push(Request::Put { cf: CfName::Default, key: versioned_key(key, start_ts), value });
    }

    /// Removes a long value of the transaction `start_ts`.
    pub fn delete_value(&mut self, key: &[u8], start_ts: Timestamp) {
        self.requests.push(Request::Delete { cf: CfName::Default, key: versioned_key(key, start_ts) });
    }

    /// Stores a write record at `commit_ts`.
    pub fn put_write(&mut self, key: &[u8], commit_ts: Timestamp, write: &Write) {
        self.requests.push(Request::Put {
            cf: CfName::Write,
            key: versioned_key(key, commit_ts),
            value: write.to_bytes(),
        });
    }

    /// Removes the write record at `commit_ts`.
    pub fn delete_write(&mut self, key: &[u8], commit_ts: Timestamp) {
        self.requests.push(Request::Delete { cf: CfName::Write, key: versioned_key(key, commit_ts) });
    }

    /// Removes every lock, write record and long value of the user keys in `[start, end)`
    /// (`end` empty: unbounded; the region clips both at apply time).
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        // Memcomparable encoding is order-preserving and prefix-free, so every versioned key
        // of a user key in `[start, end)` lies in `[encode(start), encode(end))`.
        let (start, end) = (encode_bytes(start), if end.is_empty() { Vec::new() } else { encode_bytes(end) });
        for cf in [CfName::Lock, CfName::Write, CfName::Default] {
            self.requests.push(Request::DeleteRange { cf, start: start.clone(), end: end.clone() });
        }
    }

    /// Number of writes collected.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// True when nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Appends everything `other` collected.
    pub fn append(&mut self, other: MvccTxn) {
        self.requests.extend(other.requests);
    }

    /// The collected writes, in order.
    pub fn into_requests(self) -> Vec<Request> {
        self.requests
    }
}
