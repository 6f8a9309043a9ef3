//! Write batches: an ordered list of mutations applied atomically across CFs.

use crate::{CfName, Error, Result, KEY_LEN_MAX, VALUE_LEN_MAX};
use bytes::Bytes;

/// Bytes of bookkeeping counted per operation in [`WriteBatch::approximate_size`].
const OP_OVERHEAD_BYTES: usize = 8;

/// One mutation in a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put {
        /// Column family.
        cf: CfName,
        /// Key (non-empty, at most [`KEY_LEN_MAX`] bytes).
        key: Bytes,
        /// Value (at most [`VALUE_LEN_MAX`] bytes).
        value: Bytes,
    },
    /// Remove `key` (a no-op if absent).
    Delete {
        /// Column family.
        cf: CfName,
        /// Key.
        key: Bytes,
    },
    /// Remove every key in `[start, end)`; `end == None` means unbounded.
    DeleteRange {
        /// Column family.
        cf: CfName,
        /// Inclusive lower bound (may be empty: the start of the CF).
        start: Bytes,
        /// Exclusive upper bound, or `None` for the end of the CF.
        end: Option<Bytes>,
    },
}

impl WriteOp {
    /// The column family this operation touches.
    pub fn cf(&self) -> CfName {
        match self {
            WriteOp::Put { cf, .. } | WriteOp::Delete { cf, .. } | WriteOp::DeleteRange { cf, .. } => *cf,
        }
    }

    fn approximate_size(&self) -> usize {
        OP_OVERHEAD_BYTES
            + match self {
                WriteOp::Put { key, value, .. } => key.len() + value.len(),
                WriteOp::Delete { key, .. } => key.len(),
                WriteOp::DeleteRange { start, end, .. } => start.len() + end.as_ref().map_or(0, Bytes::len),
            }
    }
}

/// An ordered set of mutations, applied atomically across column families by
/// [`crate::Engine::write`]. Later operations see earlier ones: a `put` followed by
/// a `delete_range` covering its key leaves the key absent.
///
/// Building a batch never fails; keys, values and ranges are checked when it is
/// written ([`WriteBatch::validate`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
    size: usize,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `n` operations.
    pub fn with_capacity(n: usize) -> Self {
        WriteBatch { ops: Vec::with_capacity(n), size: 0 }
    }

    fn push(&mut self, op: WriteOp) {
        self.size += op.approximate_size();
        self.ops.push(op);
    }

    /// Sets `key` to `value` in `cf`.
    pub fn put(&mut self, cf: CfName, key: &[u8], value: &[u8]) {
        self.push(WriteOp::Put { cf, key: Bytes::copy_from_slice(key), value: Bytes::copy_from_slice(value) });
    }

    /// Removes `key` from `cf`.
    pub fn delete(&mut self, cf: CfName, key: &[u8]) {
        self.push(WriteOp::Delete { cf, key: Bytes::copy_from_slice(key) });
    }

    /// Removes every key in `[start, end)` from `cf`. `start > end` is rejected
    /// when the batch is written; `start == end` is an empty range.
    pub fn delete_range(&mut self, cf: CfName, start: &[u8], end: &[u8]) {
        self.push(WriteOp::DeleteRange {
            cf,
            start: Bytes::copy_from_slice(start),
            end: Some(Bytes::copy_from_slice(end)),
        });
    }

    /// Removes every key `>= start` from `cf` (a range with no upper bound).
    pub fn delete_from(&mut self, cf: CfName, start: &[u8]) {
        self.push(WriteOp::DeleteRange { cf, start: Bytes::copy_from_slice(start), end: None });
    }

    /// Appends all of `other`'s operations after this batch's (group commit).
    pub fn append(&mut self, mut other: WriteBatch) {
        self.size += other.size;
        self.ops.append(&mut other.ops);
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Approximate encoded size in bytes: keys, values and a small per-op overhead.
    pub fn approximate_size(&self) -> usize {
        self.size
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// Removes all operations, keeping the allocation.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.size = 0;
    }

    /// Checks every key, value and range against the engine's limits.
    pub fn validate(&self) -> Result<()> {
        for op in &self.ops {
            match op {
                WriteOp::Put { key, value, .. } => {
                    check_key(key)?;
                    if value.len() > VALUE_LEN_MAX {
                        return Err(Error::InvalidArgument(format!(
                            "value of {} bytes exceeds VALUE_LEN_MAX ({VALUE_LEN_MAX})",
                            value.len()
                        )));
                    }
                }
                WriteOp::Delete { key, .. } => check_key(key)?,
                WriteOp::DeleteRange { start, end, .. } => {
                    if start.len() > KEY_LEN_MAX {
                        return Err(key_too_long(start.len()));
                    }
                    if let Some(end) = end {
                        if end.len() > KEY_LEN_MAX {
                            return Err(key_too_long(end.len()));
                        }
                        if start > end {
                            return Err(Error::InvalidArgument("delete_range start is after end".to_string()));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn key_too_long(len: usize) -> Error {
    Error::InvalidArgument(format!("key of {len} bytes exceeds KEY_LEN_MAX ({KEY_LEN_MAX})"))
}

/// Checks a key for writing or point reads: non-empty and at most [`KEY_LEN_MAX`].
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("empty key".to_string()));
    }
    if key.len() > KEY_LEN_MAX {
        return Err(key_too_long(key.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_len_and_validation() {
        let mut b = WriteBatch::new();
        assert!(b.is_empty());
        b.put(CfName::Raw, b"k", b"vv");
        b.delete(CfName::Lock, b"k");
        b.delete_range(CfName::Write, b"a", b"b");
        assert_eq!(b.len(), 3);
        assert_eq!(b.approximate_size(), 3 * OP_OVERHEAD_BYTES + 3 + 1 + 2);
        assert!(b.validate().is_ok());

        let mut bad = WriteBatch::new();
        bad.put(CfName::Raw, b"", b"v");
        assert!(matches!(bad.validate(), Err(Error::InvalidArgument(_))));
        let mut bad = WriteBatch::new();
        bad.delete_range(CfName::Raw, b"b", b"a");
        assert!(matches!(bad.validate(), Err(Error::InvalidArgument(_))));
        let mut bad = WriteBatch::new();
        bad.put(CfName::Raw, &vec![1; KEY_LEN_MAX + 1], b"v");
        assert!(matches!(bad.validate(), Err(Error::InvalidArgument(_))));
        let mut ok = WriteBatch::new();
        ok.put(CfName::Raw, &vec![1; KEY_LEN_MAX], b"v");
        ok.delete_range(CfName::Raw, b"a", b"a");
        assert!(ok.validate().is_ok());

        let mut c = WriteBatch::new();
        c.put(CfName::Raft, b"x", b"y");
        let size = b.approximate_size() + c.approximate_size();
        b.append(c);
        assert_eq!(b.len(), 4);
        assert_eq!(b.approximate_size(), size);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.approximate_size(), 0);
    }
}
