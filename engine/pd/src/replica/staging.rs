//! The engine a replicated PD's leader runs its [`crate::Pd`] over: reads come from the
//! member's engine (the state raft has applied), writes are held back so the member can
//! propose them through raft instead of writing them itself.
//!
//! This keeps [`crate::Pd`] one state machine for both deployments: a lone PD's writes go
//! straight to its disk, a leader's go through consensus, and the code that computes them
//! is the same.

use keel_storage::{CfName, Engine, RangeStats, Result, Snapshot, WriteBatch, WriteOptions};
use std::sync::{Arc, Mutex};

/// An [`Engine`] whose writes are staged in memory until [`StagingEngine::take`].
pub(crate) struct StagingEngine {
    inner: Arc<dyn Engine>,
    staged: Mutex<Vec<WriteBatch>>,
}

impl StagingEngine {
    /// Stages writes meant for `inner`; reads see `inner` only.
    pub(crate) fn new(inner: Arc<dyn Engine>) -> StagingEngine {
        StagingEngine { inner, staged: Mutex::new(Vec::new()) }
    }

    /// Everything written since the last call, as one batch, in write order.
    pub(crate) fn take(&self) -> WriteBatch {
        let mut all = WriteBatch::new();
        for batch in self.staged.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            all.append(batch);
        }
        all
    }
}

impl Engine for StagingEngine {
    fn write(&self, batch: WriteBatch, _opts: WriteOptions) -> Result<()> {
        batch.validate()?;
        self.staged.lock().unwrap_or_else(|e| e.into_inner()).push(batch);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(cf, key)
    }

    fn snapshot(&self) -> Box<dyn Snapshot> {
        self.inner.snapshot()
    }

    fn approximate_size(&self, cf: CfName, start: &[u8], end: Option<&[u8]>) -> Result<RangeStats> {
        self.inner.approximate_size(cf, start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_storage::SimEngine;

    #[test]
    fn writes_are_held_until_taken_and_reads_see_the_inner_engine() {
        let inner = Arc::new(SimEngine::new());
        let mut first = WriteBatch::new();
        first.put(CfName::Default, b"k", b"inner");
        inner.write(first, WriteOptions::SYNC).unwrap();
        let staging = StagingEngine::new(inner.clone());
        let mut a = WriteBatch::new();
        a.put(CfName::Default, b"k", b"staged");
        let mut b = WriteBatch::new();
        b.put(CfName::Default, b"j", b"second");
        staging.write(a, WriteOptions::SYNC).unwrap();
        staging.write(b, WriteOptions::SYNC).unwrap();
        assert_eq!(staging.get(CfName::Default, b"k").unwrap().as_deref(), Some(&b"inner"[..]));
        assert_eq!(inner.get(CfName::Default, b"j").unwrap(), None);
        let taken = staging.take();
        assert_eq!(taken.len(), 2);
        assert!(staging.take().is_empty());
    }
}
