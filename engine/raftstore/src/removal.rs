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
//! the removal. The knowledge must be positive. PD's view of the configuration is not enough
//! (the leader reports the new configuration as soon as *it* applies it, which is exactly
//! seed 247's state), and neither is a silence timeout alone (a survivor cut off for longer
//! would find the vote gone).
//!
//! One exception, or the wait itself deadlocks repair: a voter that PD judges down (it will
//! replace it) *and* that has not answered the last [`SILENT_ROUNDS`] probes is not waited
//! for. Its replacement may have to go on this replica's own store, which cannot host a new
//! replica of the region (nor of the regions split from it, whose ranges this one still
//! covers) while this one lives — and the replacement is what would end the wait (swarm
//! seeds 671 and 850: a store's disk was replaced, so its voters were gone for good, and the
//! regions whose only free store held a removed replica were never repaired). What is given
//! up is narrow: the vote only matters to a survivor that has not applied the removal, and
//! a down voter is one; the others either applied it (and elect among themselves under the
//! new configuration) or are still awaited. It costs liveness only if the down voter
//! returns, holding entries a surviving voter lacks, just as enough other voters fail that
//! it alone can no longer be outvoted — and a removed replica's vote can never cost safety.

use keel_types::{Peer, PeerRole, Region};
use std::collections::{BTreeMap, BTreeSet};

/// Probe rounds a voter PD judges down must have left unanswered before it is no longer
/// waited for: PD's judgement alone may come from a partition that cut only PD off.
pub const SILENT_ROUNDS: u64 = 3;

/// What a removed replica knows of its region's progress past its removal.
#[derive(Debug)]
pub struct Removal {
    /// The region's conf_ver once this replica's removal applied.
    conf_ver: u64,
    /// The newest configuration heard of (at first, the one right after the removal).
    newest: Region,
    /// Peers that answered with an applied configuration at or past `conf_ver`.
    past: BTreeSet<u64>,
    /// Probe rounds sent so far.
    rounds: u64,
    /// The round in which each peer last answered (any answer: its store is up).
    answered: BTreeMap<u64, u64>,
    /// The peers PD last reported down.
    pd_down: BTreeSet<u64>,
}

impl Removal {
    /// Starts tracking after applying the removal that left `region` (which no longer lists
    /// this replica).
    pub fn new(region: &Region) -> Removal {
        Removal {
            conf_ver: region.epoch.conf_ver,
            newest: region.clone(),
            past: BTreeSet::new(),
            rounds: 0,
            answered: BTreeMap::new(),
            pd_down: BTreeSet::new(),
        }
    }

    /// Records peer `from`'s answer: `region` is what it has applied (`live`), or, when not
    /// `live`, the last region a destroyed replica on its store knew — only a hint of a newer
    /// configuration, never proof that `from` applied the removal. Answers from peers this
    /// replica did not ask are ignored.
    pub fn heard(&mut self, from: u64, region: &Region, live: bool) {
        if self.newest.peer(from).is_none() {
            return;
        }
        self.answered.insert(from, self.rounds);
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

    /// Counts a round of probes sent to [`Removal::voters`].
    pub fn probed(&mut self) {
        self.rounds += 1;
    }

    /// Records PD's answer: these peers of the region are down (PD will replace them).
    pub fn pd_reports_down(&mut self, down: impl IntoIterator<Item = u64>) {
        self.pd_down = down.into_iter().collect();
    }

    /// Whether `peer` is down by PD's judgement and has left the last [`SILENT_ROUNDS`]
    /// probes unanswered (the module doc says why it is then not waited for).
    fn is_given_up(&self, peer: u64) -> bool {
        let last = self.answered.get(&peer).copied().unwrap_or(0);
        self.pd_down.contains(&peer) && self.rounds.saturating_sub(last) >= SILENT_ROUNDS
    }

    /// The voters of the newest configuration not known to be past the removal but no
    /// longer waited for: down by PD's judgement and silent (for traces).
    pub fn given_up(&self) -> Vec<u64> {
        self.voters().into_iter().map(|p| p.id).filter(|&id| !self.past.contains(&id) && self.is_given_up(id)).collect()
    }

    /// The voters of the newest configuration not yet known to be past the removal, less
    /// those given up as down: the only replicas that may still need this one's vote.
    pub fn waiting_for(&self) -> Vec<Peer> {
        self.voters().into_iter().filter(|p| !self.past.contains(&p.id) && !self.is_given_up(p.id)).collect()
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

    #[test]
    fn a_voter_is_given_up_only_when_pd_judges_it_down_and_it_stays_silent() {
        // Peer 3 was removed from {1, 2, 3, 4}; peer 1's store is gone for good.
        let mut r = Removal::new(&region(5, &[1, 2, 4]));
        r.heard(2, &region(5, &[1, 2, 4]), true);
        r.heard(4, &region(5, &[1, 2, 4]), true);
        // Silent, but PD has not called it down: awaited.
        for _ in 0..SILENT_ROUNDS {
            r.probed();
        }
        assert_eq!(r.waiting_for().iter().map(|p| p.id).collect::<Vec<_>>(), vec![1]);
        // PD calls it down, but it answered within the last rounds (only PD is cut off from
        // it): still awaited until it has been silent long enough.
        r.heard(1, &region(4, &[1, 2, 3, 4]), true);
        r.pd_reports_down([1]);
        for _ in 0..SILENT_ROUNDS - 1 {
            r.probed();
            assert!(!r.done());
        }
        r.probed();
        assert!(r.done(), "down by PD's judgement and silent for {SILENT_ROUNDS} rounds");
        assert_eq!(r.given_up(), vec![1]);
        // PD no longer calls it down (its store came back): awaited again.
        r.pd_reports_down([]);
        assert!(!r.done());
        // A survivor that has not applied the removal is never given up while it answers.
        let mut r = Removal::new(&region(5, &[1, 2, 4]));
        r.pd_reports_down([2]);
        for _ in 0..10 {
            r.probed();
            r.heard(2, &region(4, &[1, 2, 3, 4]), true);
        }
        assert!(r.waiting_for().iter().any(|p| p.id == 2));
    }
}
