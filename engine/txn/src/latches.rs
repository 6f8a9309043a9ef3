//! Scheduler latches: write commands on overlapping keys run one at a time, from reading
//! their snapshot until their writes are applied, so no two of them decide on the same
//! stale state.
//!
//! Keys hash (FNV-1a, deterministic) into a fixed number of slots, each a FIFO-fair async
//! mutex. A command takes its slots in ascending slot order, so two commands can never wait
//! for each other in a cycle; waiting is a parked task, never a busy loop. Two different
//! keys may share a slot: that only serializes more than needed.

use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Default number of latch slots.
pub const LATCH_SLOTS_DEFAULT: usize = 2048;

/// The latch table. Cheap to clone (shared).
#[derive(Clone)]
pub struct Latches {
    slots: Arc<[Arc<Mutex<()>>]>,
}

/// Held latches; dropping it releases them.
pub struct LatchGuard {
    _held: Vec<OwnedMutexGuard<()>>,
}

impl Latches {
    /// A table of `slots` latches (at least one).
    pub fn new(slots: usize) -> Latches {
        Latches { slots: (0..slots.max(1)).map(|_| Arc::new(Mutex::new(()))).collect() }
    }

    /// The slots `keys` map to, ascending and distinct.
    pub fn slots_of<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<usize> {
        let mut slots: Vec<usize> =
            keys.iter().map(|k| (fnv1a(k.as_ref()) % self.slots.len() as u64) as usize).collect();
        slots.sort_unstable();
        slots.dedup();
        slots
    }

    /// Waits until every latch of `keys` is held by this caller.
    pub async fn acquire<K: AsRef<[u8]>>(&self, keys: &[K]) -> LatchGuard {
        let mut held = Vec::new();
        for slot in self.slots_of(keys) {
            held.push(self.slots[slot].clone().lock_owned().await);
        }
        LatchGuard { _held: held }
    }
}

impl Default for Latches {
    fn default() -> Latches {
        Latches::new(LATCH_SLOTS_DEFAULT)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn overlapping_commands_serialize_disjoint_ones_do_not() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let latches = Latches::new(64);
            assert_eq!(latches.slots_of(&[b"a", b"a"]).len(), 1);
            let g1 = latches.acquire(&[b"a".to_vec(), b"b".to_vec()]).await;
            // A command on "b" must wait; one on keys in other slots need not.
            let other: Vec<Vec<u8>> = (0u8..=255)
                .map(|i| vec![i])
                .find(|k| {
                    !latches
                        .slots_of(&[b"a".to_vec(), b"b".to_vec()])
                        .contains(&latches.slots_of(std::slice::from_ref(k))[0])
                })
                .into_iter()
                .collect();
            let _g2 = latches.acquire(&other).await;
            let entered = Arc::new(AtomicUsize::new(0));
            let (l, e) = (latches.clone(), entered.clone());
            let waiter = tokio::spawn(async move {
                let _g = l.acquire(&[b"b".to_vec()]).await;
                e.fetch_add(1, Ordering::SeqCst);
            });
            tokio::task::yield_now().await;
            assert_eq!(entered.load(Ordering::SeqCst), 0);
            drop(g1);
            waiter.await.unwrap();
            assert_eq!(entered.load(Ordering::SeqCst), 1);
        });
    }
}
