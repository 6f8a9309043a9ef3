//! Planted bugs: deliberate faults in the engine that the simulator's checkers must catch
//! (a checker that never fails proves nothing). Each is switched on per simulation run, on
//! that run's thread, and only exists under `--cfg madsim`: in production builds
//! [`enabled`] is a constant `false` and the buggy paths compile away.

/// A deliberate bug, one per layer.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PlantedBug {
    /// raftstore: answer a write as soon as it is proposed, before it commits.
    AckBeforeCommit,
    /// raftstore: serve reads from the leader's local state without ReadIndex.
    SkipReadIndex,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 2] = [PlantedBug::AckBeforeCommit, PlantedBug::SkipReadIndex];

    /// The name `cargo sim -- run --planted-bug NAME` takes.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AckBeforeCommit => "ack-before-commit",
            PlantedBug::SkipReadIndex => "skip-read-index",
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
