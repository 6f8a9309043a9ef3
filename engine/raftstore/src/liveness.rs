//! Which other stores this store has heard from lately. While regions sleep no raft traffic
//! flows, so a dead or cut-off store would go unnoticed: every store therefore sends a beacon
//! to the stores it shares regions with every heartbeat interval, and a store silent for an
//! election timeout is lost — the sleeping regions that depend on it wake (their followers
//! elect a new leader, their leaders report the down peer). This stands in for TiKV's
//! "store unreachable" signal from its long-lived connections.

use keel_types::StoreId;
use std::collections::{BTreeMap, BTreeSet};

/// The store ticks at which the stores this one shares regions with were last heard from.
#[derive(Debug, Default)]
pub(crate) struct StoreLiveness {
    last_heard: BTreeMap<StoreId, u64>,
    lost: BTreeSet<StoreId>,
}

impl StoreLiveness {
    /// The stores to watch from now on (those hosting peers of this store's regions): others
    /// are forgotten, new ones count as heard at `now`. Only these are tracked, so messages
    /// naming made-up stores cannot grow the table.
    pub fn watch(&mut self, stores: &BTreeSet<StoreId>, now: u64) {
        self.last_heard.retain(|s, _| stores.contains(s));
        self.lost.retain(|s| stores.contains(s));
        for &s in stores {
            self.last_heard.entry(s).or_insert(now);
        }
    }

    /// Something (a beacon, a raft message) arrived from `store` at store tick `now`.
    pub fn heard(&mut self, store: StoreId, now: u64) {
        if let Some(t) = self.last_heard.get_mut(&store) {
            *t = now;
            if !self.lost.is_empty() {
                self.lost.remove(&store);
            }
        }
    }

    /// Stores silent for more than `timeout` ticks that were not lost before; they count as
    /// lost from now until heard from again.
    pub fn newly_lost(&mut self, now: u64, timeout: u64) -> Vec<StoreId> {
        let lost: Vec<StoreId> = self
            .last_heard
            .iter()
            .filter(|(s, &t)| now.saturating_sub(t) > timeout && !self.lost.contains(s))
            .map(|(&s, _)| s)
            .collect();
        self.lost.extend(lost.iter().copied());
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::StoreLiveness;

    #[test]
    fn a_silent_store_is_lost_once_until_heard_again() {
        let mut l = StoreLiveness::default();
        l.watch(&[2, 3].into(), 0);
        l.heard(9, 5);
        assert!(l.newly_lost(100, 10).iter().all(|&s| s != 9), "an unwatched store is never tracked");
        let mut l = StoreLiveness::default();
        l.watch(&[2, 3].into(), 0);
        assert!(l.newly_lost(10, 10).is_empty(), "silent for exactly the timeout is not lost");
        l.heard(3, 10);
        assert_eq!(l.newly_lost(11, 10), vec![2]);
        assert!(l.newly_lost(12, 10).is_empty(), "reported once");
        l.heard(2, 12);
        assert_eq!(l.newly_lost(30, 10), vec![2, 3], "heard again, then silent again: lost again");
        l.watch(&[2].into(), 31);
        l.heard(2, 40);
        l.heard(3, 40);
        assert_eq!(l.newly_lost(100, 10), vec![2], "a store no longer watched is forgotten");
    }
}
