//! Planted bugs: deliberate faults in the engine that the simulator's checkers must catch
//! (a checker that never fails proves nothing). Each is switched on per simulation run, on
//! that run's thread, and only exists under `--cfg madsim`: in production builds
//! [`enabled`] is a constant `false` and the buggy paths compile away.

/// A deliberate bug, one per layer.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PlantedBug {
    /// raftstore: answer a write as soon as it is proposed, before it commits.
    AckBeforeCommit,
    /// raftstore: a Ready's log entries and hard state are persisted only after its
    /// persisted messages (append acks, votes) went out and its committed entries were
    /// answered: an ack can reach the leader before the entry is durable.
    LogPersistedAfterSend,
    /// raftstore: serve reads from the leader's local state without ReadIndex.
    SkipReadIndex,
    /// txn: prewrite does not notice another transaction's lock on the key (and
    /// overwrites it).
    PrewriteIgnoresLock,
    /// txn: snapshot reads never report `Locked` (neither stored nor in-memory locks).
    ReadIgnoresLock,
    /// txn: async-commit / 1PC min_commit_ts ignores the node's max_ts (readers' start_ts).
    AsyncCommitNoMaxTs,
    /// client: a 2PC commit commits the secondaries before the primary (the commit point).
    SecondariesBeforePrimary,
    /// raftstore: a request's region epoch is not checked against the region (a client
    /// routing with a pre-split view is served by the narrower region).
    SkipEpochCheck,
    /// raftstore: applying a split leaves both halves at the old region version, so
    /// nothing can tell a pre-split view from a post-split one.
    SplitWithoutEpochBump,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 9] = [
        PlantedBug::AckBeforeCommit,
        PlantedBug::LogPersistedAfterSend,
        PlantedBug::SkipReadIndex,
        PlantedBug::PrewriteIgnoresLock,
        PlantedBug::ReadIgnoresLock,
        PlantedBug::AsyncCommitNoMaxTs,
        PlantedBug::SecondariesBeforePrimary,
        PlantedBug::SkipEpochCheck,
        PlantedBug::SplitWithoutEpochBump,
    ];

    /// The name `cargo sim -- run --planted-bug NAME` takes.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AckBeforeCommit => "ack-before-commit",
            PlantedBug::LogPersistedAfterSend => "raft-log-persisted-after-send",
            PlantedBug::SkipReadIndex => "skip-read-index",
            PlantedBug::PrewriteIgnoresLock => "prewrite-ignores-lock",
            PlantedBug::ReadIgnoresLock => "read-ignores-lock",
            PlantedBug::AsyncCommitNoMaxTs => "async-commit-no-max-ts",
            PlantedBug::SecondariesBeforePrimary => "secondaries-before-primary",
            PlantedBug::SkipEpochCheck => "skip-epoch-check",
            PlantedBug::SplitWithoutEpochBump => "split-without-epoch-bump",
        }
    }

    /// Looks a bug up by name.
    pub fn from_name(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|b| b.name() == name)
    }
}

#[cfg(madsim)]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<PlantedBug>> = const { std::cell::Cell::new(None) };
}

/// Plants `bug` (or none) for simulation runs on this thread.
pub fn plant(bug: Option<PlantedBug>) {
    #[cfg(madsim)]
    ACTIVE.with(|a| a.set(bug));
    #[cfg(not(madsim))]
    assert!(bug.is_none(), "planted bugs exist only in the simulator");
}

/// True when `bug` is planted in this run.
#[inline]
pub fn enabled(bug: PlantedBug) -> bool {
    #[cfg(madsim)]
    {
        ACTIVE.with(|a| a.get() == Some(bug))
    }
    #[cfg(not(madsim))]
    {
        let _ = bug;
        false
    }
}
