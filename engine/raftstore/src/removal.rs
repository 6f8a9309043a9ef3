//! A replica that applied its own removal, and when it may finally be destroyed.
//!
//! raft-rs (like etcd's raft) switches configuration when a membership change is *applied*,
//! not when it is appended. A survivor that holds the removal in its log but has not yet
//! heard that it committed still counts the removed replica as a voter. Destroying the
//! removed replica at once, as keel did, could therefore cost the region its liveness: with
//! four voters, one removed, the leader dead and the two survivors not yet told the removal
//! committed, the survivors need three votes of the four and the removed replica's store
//! refused them as a tombstone — no leader, ever (swarm seed 247, repair workload).
//!
//! So a removed replica stays a raft node, as raft-rs itself expects of a removed node that
//! keeps running: it grants votes and acknowledges appends by raft's own rules (a candidate
//! must still have an up-to-date log, and its term and vote stay durable), so it lets a
//! survivor with the full log win an election under the old configuration and commit the
//! removal. It applies nothing after its removal, serves no client and never campaigns
//! (raft-rs does not promote a node outside the configuration). A tombstone granting votes
//! instead would have to keep exactly that state (term, vote, last log position) to be safe:
//! a keeper that forgets its vote can elect two leaders in one term, and one that ignores
//! logs can elect a candidate missing committed entries.
//!
//! It is destroyed once it knows no survivor can need it: every voter of the newest
//! configuration it has heard of answered its probe with an applied configuration at or past
//! the removal. The knowledge must be positive. PD's view is not enough (the leader reports
//! the new configuration as soon as *it* applies it, which is exactly seed 247's state), and
//! neither is a silence timeout (a survivor cut off for longer would find the vote gone).

use keel_types::{Peer, PeerRole, Region};
use std::collections::BTreeSet;

/// What a removed replica knows of its region's progress past its removal.
#[derive(Debug)]
pub struct Removal {
    /// The region's conf_ver once this replica's removal applied.
    conf_ver: u64,
    /// The newest configuration heard of (at first, the one right after the removal).
    newest: Region,
    /// Peers that answered with an applied configuration at or past `conf_ver`.
    past: BTreeSet<u64>,
}

impl Removal {
    /// Starts tracking after applying the removal that left `region` (which no longer lists
    /// this replica).
    pub fn new(region: &Region) -> Removal {
        Removal { conf_ver: region.epoch.conf_ver, newest: region.clone(), past: BTreeSet::new() }
    }

    /// Records peer `from`'s answer: `region` is what it has applied (`live`), or, when not
    /// `live`, the last region a destroyed replica on its store knew — only a hint of a newer
    /// configuration, never proof that `from` applied the removal. Answers from peers this
    /// replica did not ask are ignored.
    pub fn heard(&mut self, from: u64, region: &Region, live: bool) {
        if self.newest.peer(from).is_none() {
            return;
        }
        if live && region.epoch.conf_ver >= self.conf_ver {
            self.past.insert(from);
        }
        if region.epoch.conf_ver > self.newest.epoch.conf_ver {
            self.newest = region.clone();
        }
    }

    /// The voters of the newest configuration heard of: the ones to ask. Learners never
    /// campaign (one promoted later applies the removal first: it precedes the promotion in
    /// the log).
    pub fn voters(&self) -> Vec<Peer> {
        self.newest.peers.iter().filter(|p| p.role == PeerRole::Voter).copied().collect()
    }

    /// The voters of the newest configuration not yet known to be past the removal: the
    /// only replicas that may still need this one's vote.
    pub fn waiting_for(&self) -> Vec<Peer> {
        self.voters().into_iter().filter(|p| !self.past.contains(&p.id)).collect()
    }

    /// True once no survivor can need this replica's vote any more.
    pub fn done(&self) -> bool {
        self.waiting_for().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_types::RegionEpoch;

    fn region(conf_ver: u64, peers: &[u64]) -> Region {
        Region {
            id: 1,
            epoch: RegionEpoch { conf_ver, version: 1 },
            peers: peers.iter().map(|&id| Peer { id, store_id: id, role: PeerRole::Voter }).collect(),
            ..Region::default()
        }
    }

    #[test]
    fn waits_for_every_voter_to_apply_the_removal_and_follows_newer_configurations() {
        // Peer 3 was removed from {1, 2, 3, 4} at conf_ver 5.
        let mut r = Removal::new(&region(5, &[1, 2, 4]));
        assert_eq!(r.waiting_for().iter().map(|p| p.id).collect::<Vec<_>>(), vec![1, 2, 4]);
        // Survivors still at the old configuration do not count; nor do strangers.
        r.heard(2, &region(4, &[1, 2, 3, 4]), true);
        r.heard(9, &region(9, &[9]), true);
        assert!(!r.done());
        r.heard(2, &region(5, &[1, 2, 4]), true);
        r.heard(4, &region(5, &[1, 2, 4]), true);
        // Peer 1's store died for good: nobody can tell what it applied. Once the region
        // replaces it, the newer configuration no longer waits for it.
        assert!(!r.done());
        r.heard(2, &region(8, &[2, 4, 6]), true);
        assert_eq!(r.waiting_for().iter().map(|p| p.id).collect::<Vec<_>>(), vec![6]);
        // A destroyed replica's last region is a hint, not an answer.
        r.heard(6, &region(9, &[2, 4, 6]), false);
        assert!(!r.done());
        r.heard(6, &region(9, &[2, 4, 6]), true);
        assert!(r.done());
    }
}
