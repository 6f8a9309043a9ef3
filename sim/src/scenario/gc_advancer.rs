//! The transactional scenarios' GC leader: every [`ADVANCE_INTERVAL`] it takes a timestamp
//! from PD and advances PD's GC safe point to the newest timestamp it took *before* the
//! oldest transaction any workload client still holds began (that transaction's start_ts is
//! above it, so no running transaction reads or writes below the safe point), after
//! settling every lock below it in the whole key space — as TiDB's GC leader does. The
//! nodes' GC workers then collect below it, under the run's faults, while the checkers
//! verify that snapshot reads never noticed. Reports `gc_safe_point_advances`.

use crate::runner::add_stat;
use crate::scenario::bank::connect;
use keel_client::TransactionClient;
use keel_types::Timestamp;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Time between attempts to advance the safe point (nodes look every 2 s).
const ADVANCE_INTERVAL: Duration = Duration::from_secs(3);

/// The workload's clients, whose live transactions bound the safe point.
pub(crate) type Clients = Arc<Mutex<Vec<TransactionClient>>>;

/// Advances the safe point until `stop` is set.
pub(crate) async fn run(pd_addr: String, clients: Clients, stop: Arc<AtomicBool>) {
    let leader = connect(pd_addr).await;
    // Timestamps this leader took, with when it had them, oldest first.
    let mut taken: VecDeque<(Instant, Timestamp)> = VecDeque::new();
    let mut safe_point = Timestamp::ZERO;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(ADVANCE_INTERVAL).await;
        if let Ok(ts) = leader.pd().get_ts().await {
            taken.push_back((Instant::now(), ts));
        }
        // No await between here and the choice: a transaction registered later begins later.
        let oldest = clients.lock().expect("clients lock").iter().filter_map(|c| c.oldest_live_txn_began()).min();
        let below = |at: &Instant| oldest.is_none_or(|began| *at < began);
        while taken.len() > 1 && below(&taken[1].0) {
            taken.pop_front();
        }
        let Some(&(at, candidate)) = taken.front() else { continue };
        if !below(&at) || candidate <= safe_point {
            continue;
        }
        match leader.resolve_locks_below(candidate, b"", b"").await {
            Ok(0) => {}
            Ok(alive) => {
                tracing::debug!(%candidate, alive, "gc leader: live locks below the candidate");
                continue;
            }
            Err(e) => {
                tracing::debug!(%candidate, %e, "gc leader: resolving locks failed");
                continue;
            }
        }
        if let Ok(now) = leader.pd().update_gc_safe_point(candidate).await {
            safe_point = now;
            add_stat("gc_safe_point_advances", 1);
            keel_types::trace_event!("gc.safe_point", "{now}");
        }
    }
}
