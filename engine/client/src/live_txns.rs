//! The transactions a client still holds, by the instant each began. A GC safe point must
//! stay below every live transaction's start_ts (GC may drop the versions such a reader
//! needs and the rollback records that stop its late prewrites), and the instant a
//! transaction began asking PD for its start_ts bounds that start_ts from below: every
//! timestamp PD handed out before that instant is smaller.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// Begin instants of the live transactions of a client and its clones (instant → count).
#[derive(Clone, Debug, Default)]
pub(crate) struct LiveTxns(Arc<Mutex<BTreeMap<Instant, usize>>>);

impl LiveTxns {
    /// Registers a transaction beginning now; it stays live until the guard is dropped.
    pub(crate) fn enter(&self) -> LiveGuard {
        let at = Instant::now();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(at).or_insert(0) += 1;
        LiveGuard { live: self.clone(), at }
    }

    /// When the oldest live transaction began; `None` when there is none.
    pub(crate) fn oldest(&self) -> Option<Instant> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).keys().next().copied()
    }
}

/// Keeps one transaction registered in its client's [`LiveTxns`] while it lives.
#[derive(Debug)]
pub(crate) struct LiveGuard {
    live: LiveTxns,
    at: Instant,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut map = self.live.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.at) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_live_transaction_is_tracked_until_dropped() {
        let live = LiveTxns::default();
        assert_eq!(live.oldest(), None);
        let first = live.enter();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let second = live.enter();
        let twin = LiveGuard { live: live.clone(), at: second.at };
        *live.0.lock().unwrap().get_mut(&second.at).unwrap() += 1;
        assert_eq!(live.oldest(), Some(first.at));
        assert!(first.at < second.at);
        let second_at = second.at;
        drop(first);
        assert_eq!(live.oldest(), Some(second_at));
        drop(second);
        assert_eq!(live.oldest(), Some(second_at), "a transaction that began at the same instant still lives");
        drop(twin);
        assert_eq!(live.oldest(), None);
    }
}
