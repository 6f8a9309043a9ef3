//! The determinism trace: every interesting event (message delivered, RPC outcome, storage
//! batch, fault) is folded into a per-thread running hash. The simulator runs one seed twice
//! and compares the hashes; any difference is nondeterminism, which is a bug.
//!
//! A madsim runtime drives all of its nodes from one OS thread, so a thread-local hash is
//! exactly one run's trace even when several seeds run on parallel threads. In production
//! builds recording compiles to nothing.

#[cfg(madsim)]
use std::cell::Cell;

#[cfg(madsim)]
thread_local! {
    static HASH: Cell<u64> = const { Cell::new(FNV_OFFSET) };
    static EVENTS: Cell<u64> = const { Cell::new(0) };
    /// When set (`cargo sim -- run --trace`), every event is also printed to stderr, stamped
    /// with simulated time since this instant.
    static PRINT_SINCE: Cell<Option<std::time::Instant>> = const { Cell::new(None) };
    /// Whether [`KEPT`] is collecting (checked first: the common case costs one flag read).
    static KEEPING: Cell<bool> = const { Cell::new(false) };
    static KEPT: std::cell::RefCell<Option<Kept>> = const { std::cell::RefCell::new(None) };
    /// Counters the engine reports to the run's summary (see [`count`]).
    static COUNTS: std::cell::RefCell<std::collections::BTreeMap<&'static str, u64>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

#[cfg(madsim)]
struct Kept {
    since: std::time::Instant,
    kinds: &'static [&'static str],
    events: Vec<Event>,
}

/// One event kept by [`keep_events`].
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Simulated seconds since [`keep_events`] was called.
    pub t: f64,
    /// The event's kind tag.
    pub kind: String,
    /// Its details as text.
    pub text: String,
}

#[cfg_attr(not(madsim), allow(dead_code))]
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
#[cfg_attr(not(madsim), allow(dead_code))]
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Folds bytes into an FNV-1a hash; stable across runs and platforms (unlike `DefaultHasher`,
/// whose algorithm may change between Rust releases).
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// Records one event: a short kind tag and its details. Cheap; call it freely.
#[inline]
pub fn record(kind: &str, detail: &[u8]) {
    #[cfg(madsim)]
    {
        HASH.with(|h| {
            let v = fnv1a(fnv1a(h.get(), kind.as_bytes()), detail);
            h.set(fnv1a(v, &[0xff]));
        });
        EVENTS.with(|e| e.set(e.get() + 1));
        if KEEPING.with(Cell::get) {
            KEPT.with(|k| {
                if let Some(k) = k.borrow_mut().as_mut().filter(|k| k.kinds.contains(&kind)) {
                    let text = String::from_utf8_lossy(detail).into_owned();
                    k.events.push(Event { t: k.since.elapsed().as_secs_f64(), kind: kind.to_string(), text });
                }
            });
        }
        if let Some(since) = PRINT_SINCE.with(Cell::get) {
            let t = since.elapsed().as_secs_f64();
            match std::str::from_utf8(detail) {
                Ok(text) if !text.chars().any(|c| c.is_control() && c != '\n') => eprintln!("{t:>10.6} {kind} {text}"),
                _ => eprintln!("{t:>10.6} {kind} <{} bytes>", detail.len()),
            }
        }
    }
    #[cfg(not(madsim))]
    {
        let _ = (kind, detail);
    }
}

/// Prints this thread's events to stderr from now on (`true`), stamped with simulated time
/// since this call, or stops printing (`false`). Call inside the simulation.
pub fn print_events(on: bool) {
    #[cfg(madsim)]
    PRINT_SINCE.with(|p| p.set(on.then(std::time::Instant::now)));
    #[cfg(not(madsim))]
    let _ = on;
}

/// Keeps this thread's events of the given `kinds` from now on, stamped with simulated time
/// since this call (`cargo sim -- run --report` draws its page from them), or stops keeping
/// (`None`). Call inside the simulation.
pub fn keep_events(kinds: Option<&'static [&'static str]>) {
    #[cfg(madsim)]
    {
        KEEPING.with(|k| k.set(kinds.is_some()));
        KEPT.with(|k| {
            *k.borrow_mut() = kinds.map(|kinds| Kept { since: std::time::Instant::now(), kinds, events: Vec::new() })
        });
    }
    #[cfg(not(madsim))]
    let _ = kinds;
}

/// The events kept so far (see [`keep_events`]); keeping stops.
pub fn take_events() -> Vec<Event> {
    #[cfg(madsim)]
    {
        KEEPING.with(|k| k.set(false));
        KEPT.with(|k| k.borrow_mut().take().map(|k| k.events).unwrap_or_default())
    }
    #[cfg(not(madsim))]
    {
        Vec::new()
    }
}

/// Records an event whose details are a formatted string (for rarer events).
#[macro_export]
macro_rules! trace_event {
    ($kind:expr, $($arg:tt)*) => {
        $crate::trace::record($kind, format!($($arg)*).as_bytes())
    };
}

/// Clears this thread's trace and counters; the simulator calls it before each run.
pub fn reset() {
    #[cfg(madsim)]
    {
        HASH.with(|h| h.set(FNV_OFFSET));
        EVENTS.with(|e| e.set(0));
        COUNTS.with(|c| c.borrow_mut().clear());
    }
}

/// Adds `n` to this run's counter `name`: work the engine did that a run's summary should
/// show (e.g. versions GC deleted), which the simulator cannot see from outside the nodes.
/// Not part of the trace hash. In production builds it compiles to nothing (the `keel`
/// binary's metrics are `keel-metrics`).
#[inline]
pub fn count(name: &'static str, n: u64) {
    #[cfg(madsim)]
    COUNTS.with(|c| *c.borrow_mut().entry(name).or_insert(0) += n);
    #[cfg(not(madsim))]
    let _ = (name, n);
}

/// This run's counters so far (see [`count`]), by name; they are cleared.
pub fn take_counts() -> Vec<(&'static str, u64)> {
    #[cfg(madsim)]
    {
        COUNTS.with(|c| std::mem::take(&mut *c.borrow_mut()).into_iter().collect())
    }
    #[cfg(not(madsim))]
    {
        Vec::new()
    }
}

/// This thread's trace so far: (hash, number of events).
pub fn snapshot() -> (u64, u64) {
    #[cfg(madsim)]
    {
        (HASH.with(|h| h.get()), EVENTS.with(|e| e.get()))
    }
    #[cfg(not(madsim))]
    {
        (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), FNV_OFFSET);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
