//! Prewrite: the first phase of Percolator's two-phase commit, plus its async-commit and
//! one-phase (1PC) variants. All or nothing: a key error leaves nothing written.

use super::{put_commit_record, write_of_lock};
use crate::error::{Error, Result};
use crate::mvcc::{Lock, LockKind, MvccReader, MvccTxn, SHORT_VALUE_MAX_BYTES};
use keel_types::error::KeyError;
use keel_types::planted::{enabled, PlantedBug};
use keel_types::proto::txn::{Mutation, MutationOp};
use keel_types::Timestamp;

/// How the prewrite commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrewriteMode {
    /// Plain 2PC: locks with `min_commit_ts`; the client commits later.
    TwoPc {
        /// The locks' min_commit_ts (at least `start_ts + 1`).
        min_commit_ts: Timestamp,
    },
    /// Async commit: locks that say so; the transaction is committed once every key is
    /// locked, at the largest min_commit_ts over its regions.
    Async {
        /// This region's min_commit_ts (from the concurrency manager).
        min_commit_ts: Timestamp,
        /// Every secondary key (recorded on the primary's lock).
        secondaries: Vec<Vec<u8>>,
    },
    /// 1PC: no locks; commit records at `commit_ts` right away.
    OnePc {
        /// The commit timestamp (from the concurrency manager).
        commit_ts: Timestamp,
    },
}

/// What every key of the prewrite shares.
#[derive(Clone, Debug)]
pub struct PrewriteProps {
    /// The transaction's primary key.
    pub primary: Vec<u8>,
    /// Its start timestamp.
    pub start_ts: Timestamp,
    /// Lock TTL in ms.
    pub ttl_ms: u64,
    /// Keys in the whole transaction.
    pub txn_size: u64,
    /// How it commits.
    pub mode: PrewriteMode,
}

/// The outcome of a prewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrewriteResult {
    /// Key errors; when not empty, nothing was collected.
    pub errors: Vec<KeyError>,
    /// Async commit: the largest min_commit_ts of this command's locks; `ZERO` when any
    /// lock is not async (the transaction fell back to 2PC) or the mode is not async.
    pub min_commit_ts: Timestamp,
    /// 1PC: the commit timestamp, `ZERO` when not committed by 1PC.
    pub one_pc_commit_ts: Timestamp,
}

/// What happened to one key.
enum KeyOutcome {
    /// Newly locked (or committed, for 1PC).
    Written,
    /// Already locked by this transaction (a retried prewrite).
    AlreadyLocked(Lock),
    /// Already committed by this transaction (a retry after a resolver committed it, or a
    /// retried 1PC).
    AlreadyCommitted(Timestamp),
}

/// Prewrites `mutations` (distinct keys).
pub fn prewrite(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_>,
    props: &PrewriteProps,
    mutations: &[Mutation],
) -> Result<PrewriteResult> {
    let mut props = props.clone();
    // A retried 1PC whose first attempt fell back to 2PC finds its own locks: stay 2PC.
    if let PrewriteMode::OnePc { commit_ts } = props.mode {
        for m in mutations {
            if reader.load_lock(&m.key)?.is_some_and(|l| l.start_ts == props.start_ts) {
                props.mode = PrewriteMode::TwoPc { min_commit_ts: commit_ts };
                break;
            }
        }
    }
    let mut result = PrewriteResult::default();
    let mut collected = MvccTxn::new();
    // Whether every key ends up under an async-commit lock (a retry of an async prewrite
    // that now falls back to 2PC must still answer the stored locks' min_commit_ts, or the
    // client and the resolvers would commit at different timestamps).
    let mut all_async = true;
    let mut written = false;
    let mut max_min_commit_ts = Timestamp::ZERO;
    let mut committed_at = None;
    for m in mutations {
        match prewrite_key(&mut collected, reader, &props, m) {
            Ok(KeyOutcome::Written) => {
                written = true;
                match props.mode {
                    PrewriteMode::Async { min_commit_ts, .. } => {
                        max_min_commit_ts = max_min_commit_ts.max(min_commit_ts)
                    }
                    _ => all_async = false,
                }
            }
            Ok(KeyOutcome::AlreadyLocked(lock)) => {
                all_async &= lock.use_async_commit;
                max_min_commit_ts = max_min_commit_ts.max(lock.min_commit_ts);
            }
            Ok(KeyOutcome::AlreadyCommitted(commit_ts)) => {
                max_min_commit_ts = max_min_commit_ts.max(commit_ts);
                committed_at = Some(commit_ts);
            }
            Err(Error::Key(e @ KeyError::Locked { .. })) => result.errors.push(e),
            Err(Error::Key(e)) => {
                result.errors.push(e);
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if !result.errors.is_empty() {
        return Ok(result);
    }
    match props.mode {
        PrewriteMode::OnePc { commit_ts } => {
            // A retried 1PC finds its keys committed: answer the first attempt's commit_ts.
            result.one_pc_commit_ts = committed_at.unwrap_or(commit_ts);
            if committed_at.is_some() {
                return Ok(result);
            }
        }
        PrewriteMode::Async { .. } if all_async => result.min_commit_ts = max_min_commit_ts,
        PrewriteMode::TwoPc { .. } if all_async && !written => result.min_commit_ts = max_min_commit_ts,
        _ => {}
    }
    txn.append(collected);
    Ok(result)
}

fn prewrite_key(txn: &mut MvccTxn, reader: &MvccReader<'_>, props: &PrewriteProps, m: &Mutation) -> Result<KeyOutcome> {
    let key = m.key.as_slice();
    let start_ts = props.start_ts;
    if let Some(lock) = reader.load_lock(key)? {
        if lock.start_ts == start_ts {
            return Ok(KeyOutcome::AlreadyLocked(lock));
        }
        if !enabled(PlantedBug::PrewriteIgnoresLock) {
            keel_metrics::TXN_CONFLICTS.inc();
            return Err(KeyError::Locked { lock: lock.info(key) }.into());
        }
    }
    let newer = reader.writes_between(key, start_ts, Timestamp::MAX)?;
    if let Some((commit_ts, _)) = newer.iter().find(|(c, w)| w.start_ts == start_ts && !w.rolls_back(*c, start_ts)) {
        return Ok(KeyOutcome::AlreadyCommitted(*commit_ts));
    }
    if newer.iter().any(|(c, w)| w.rolls_back(*c, start_ts)) {
        return Err(KeyError::RolledBack { start_ts }.into());
    }
    if let Some((commit_ts, w)) = newer.iter().find(|(c, _)| *c > start_ts) {
        keel_metrics::TXN_CONFLICTS.inc();
        return Err(KeyError::WriteConflict {
            start_ts,
            conflict_start_ts: w.start_ts,
            conflict_commit_ts: *commit_ts,
            key: key.to_vec(),
            primary: props.primary.clone(),
        }
        .into());
    }
    if m.op == MutationOp::Insert && reader.get(key, Timestamp::MAX)?.is_some() {
        return Err(KeyError::AlreadyExist { key: key.to_vec() }.into());
    }

    let kind = match m.op {
        MutationOp::Put | MutationOp::Insert => LockKind::Put,
        MutationOp::Delete => LockKind::Delete,
        MutationOp::Lock => LockKind::Lock,
    };
    let short = kind == LockKind::Put && m.value.len() <= SHORT_VALUE_MAX_BYTES;
    if kind == LockKind::Put && !short {
        txn.put_value(key, start_ts, m.value.clone());
    }
    let (min_commit_ts, use_async_commit, secondaries) = match &props.mode {
        PrewriteMode::TwoPc { min_commit_ts } => (*min_commit_ts, false, vec![]),
        PrewriteMode::Async { min_commit_ts, secondaries } => {
            let secondaries = if key == props.primary.as_slice() { secondaries.clone() } else { vec![] };
            (*min_commit_ts, true, secondaries)
        }
        PrewriteMode::OnePc { .. } => (Timestamp::ZERO, false, vec![]),
    };
    let lock = Lock {
        kind,
        primary: props.primary.clone(),
        start_ts,
        ttl_ms: props.ttl_ms,
        short_value: short.then(|| m.value.clone()),
        min_commit_ts: min_commit_ts.max(start_ts.next()),
        use_async_commit,
        secondaries,
        txn_size: props.txn_size,
    };
    match props.mode {
        PrewriteMode::OnePc { commit_ts } => put_commit_record(txn, reader, key, commit_ts, write_of_lock(&lock))?,
        _ => txn.put_lock(key, &lock),
    }
    Ok(KeyOutcome::Written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::test_util::run;
    use crate::actions::{commit, get, rollback};
    use keel_storage::SimEngine;

    fn put(key: &[u8], value: &[u8]) -> Mutation {
        Mutation { op: MutationOp::Put, key: key.to_vec(), value: value.to_vec() }
    }

    fn props(start: u64, mode: PrewriteMode) -> PrewriteProps {
        PrewriteProps { primary: b"a".to_vec(), start_ts: Timestamp(start), ttl_ms: 100, txn_size: 1, mode }
    }

    fn two_pc(start: u64) -> PrewriteProps {
        props(start, PrewriteMode::TwoPc { min_commit_ts: Timestamp(start + 1) })
    }

    fn pw(e: &SimEngine, p: &PrewriteProps, muts: &[Mutation]) -> PrewriteResult {
        run(e, |t, r| prewrite(t, r, p, muts)).unwrap()
    }

    #[test]
    fn conflicts_locks_rollbacks_and_inserts() {
        let e = SimEngine::new();
        assert!(pw(&e, &two_pc(10), &[put(b"a", b"1")]).errors.is_empty());
        // Another txn's lock.
        let r = pw(&e, &two_pc(12), &[put(b"a", b"2"), put(b"b", b"2")]);
        assert!(matches!(r.errors.as_slice(), [KeyError::Locked { lock }] if lock.start_ts == Timestamp(10)));
        assert_eq!(run(&e, |_, r| get(r, b"b", Timestamp(100))).unwrap(), None, "nothing of a failed prewrite");
        // Retry is idempotent.
        assert!(pw(&e, &two_pc(10), &[put(b"a", b"1")]).errors.is_empty());
        run(&e, |t, r| commit(t, r, b"a", Timestamp(10), Timestamp(15))).unwrap();
        // Write conflict for an older start_ts; fine for a newer one.
        let r = pw(&e, &two_pc(14), &[put(b"a", b"3")]);
        assert!(matches!(r.errors.as_slice(), [KeyError::WriteConflict { conflict_commit_ts: Timestamp(15), .. }]));
        // A retried prewrite of the committed txn succeeds without writing.
        let r = pw(&e, &two_pc(10), &[put(b"a", b"1")]);
        assert!(r.errors.is_empty());
        // Insert on an existing key.
        let ins = Mutation { op: MutationOp::Insert, key: b"a".to_vec(), value: b"x".to_vec() };
        assert!(matches!(pw(&e, &two_pc(20), &[ins]).errors.as_slice(), [KeyError::AlreadyExist { .. }]));
        // A late prewrite after a rollback is refused.
        run(&e, |t, r| rollback(t, r, b"c", Timestamp(30))).unwrap();
        assert!(matches!(pw(&e, &two_pc(30), &[put(b"c", b"1")]).errors.as_slice(), [KeyError::RolledBack { .. }]));
    }

    #[test]
    fn long_values_go_to_the_default_cf() {
        let e = SimEngine::new();
        let long = vec![7u8; SHORT_VALUE_MAX_BYTES + 1];
        assert!(pw(&e, &two_pc(10), &[put(b"a", &long)]).errors.is_empty());
        run(&e, |t, r| commit(t, r, b"a", Timestamp(10), Timestamp(11))).unwrap();
        assert_eq!(run(&e, |_, r| get(r, b"a", Timestamp(11))).unwrap(), Some(long));
    }

    #[test]
    fn async_commit_and_one_pc() {
        let e = SimEngine::new();
        let p = props(10, PrewriteMode::Async { min_commit_ts: Timestamp(20), secondaries: vec![b"b".to_vec()] });
        let r = pw(&e, &p, &[put(b"a", b"1"), put(b"b", b"1")]);
        assert_eq!(r.min_commit_ts, Timestamp(20));
        let lock = run(&e, |_, r| r.load_lock(b"a")).unwrap().unwrap();
        assert!(lock.use_async_commit);
        assert_eq!(lock.secondaries, vec![b"b".to_vec()]);
        // Retry with a larger computed min_commit_ts answers the stored one.
        let p2 = props(10, PrewriteMode::Async { min_commit_ts: Timestamp(25), secondaries: vec![b"b".to_vec()] });
        assert_eq!(pw(&e, &p2, &[put(b"a", b"1"), put(b"b", b"1")]).min_commit_ts, Timestamp(20));

        let one = props(30, PrewriteMode::OnePc { commit_ts: Timestamp(31) });
        let r = pw(&e, &one, &[put(b"c", b"1")]);
        assert_eq!(r.one_pc_commit_ts, Timestamp(31));
        assert!(run(&e, |_, r| r.load_lock(b"c")).unwrap().is_none());
        assert_eq!(run(&e, |_, r| get(r, b"c", Timestamp(31))).unwrap(), Some(b"1".to_vec()));
        // A retried 1PC answers the first commit_ts.
        let again = props(30, PrewriteMode::OnePc { commit_ts: Timestamp(40) });
        assert_eq!(pw(&e, &again, &[put(b"c", b"1")]).one_pc_commit_ts, Timestamp(31));
    }
}
