//! BUGGIFY (after FoundationDB): points in the engine where a rare path is taken on purpose
//! in the simulator — a message dropped, a round skipped, a timeout shortened, an extra log
//! truncation — so the simulator reaches code that production hits once a month.
//!
//! `buggify!()` is `false` in production builds (it compiles away). Under `--cfg madsim`,
//! when the run switched BUGGIFY on ([`configure`]), each site is enabled in about a quarter
//! of runs (a per-run, per-site decision hashed from the run's seed and the site's
//! `file:line`), and an enabled site fires with probability 1/4 per evaluation
//! (`buggify!(p)` sets another probability). Every choice comes from a per-thread RNG seeded
//! from the run's seed, and a madsim runtime drives a whole run from one thread, so a seed
//! replays exactly.
//!
//! Debugging aid: `KEEL_BUGGIFY_ONLY=SUBSTRING` in the environment keeps only the sites whose
//! `file:line` contains it (to find which site a failing seed needs).
//!
//! A site's effect must only ever change timing — never correctness: whatever it does must
//! be something the real world could do too (a lost packet, a slow disk, a stall).

#[cfg(madsim)]
use std::cell::RefCell;
#[cfg(madsim)]
use std::collections::BTreeMap;

/// Share of runs in which a given site is enabled.
pub const SITE_ENABLED_PERCENT: u64 = 25;
/// Probability that an enabled site fires each time it is evaluated (`buggify!()`).
pub const FIRE_PROBABILITY_DEFAULT: f64 = 0.25;

#[cfg(madsim)]
#[derive(Default)]
struct State {
    on: bool,
    seed: u64,
    rng: u64,
    /// Per site: enabled in this run?, times fired.
    sites: BTreeMap<&'static str, (bool, u64)>,
}

#[cfg(madsim)]
thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

#[cfg_attr(not(madsim), allow(dead_code))]
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Switches BUGGIFY on or off for the simulation runs on this thread, seeded by the run's
/// seed. Clears what fired before. The simulator calls it before each run.
pub fn configure(on: bool, seed: u64) {
    #[cfg(madsim)]
    STATE.with(|s| {
        *s.borrow_mut() = State { on, seed, rng: splitmix64(seed ^ 0x6275_6767_6966_7921), sites: BTreeMap::new() };
    });
    #[cfg(not(madsim))]
    let _ = (on, seed);
}

/// Whether BUGGIFY is on in this run.
pub fn is_on() -> bool {
    #[cfg(madsim)]
    {
        STATE.with(|s| s.borrow().on)
    }
    #[cfg(not(madsim))]
    {
        false
    }
}

/// The sites that fired in this run and how often (`file:line` → count), in site order.
pub fn fired() -> Vec<(&'static str, u64)> {
    #[cfg(madsim)]
    {
        STATE.with(|s| s.borrow().sites.iter().filter(|(_, (_, n))| *n > 0).map(|(k, (_, n))| (*k, *n)).collect())
    }
    #[cfg(not(madsim))]
    {
        Vec::new()
    }
}

/// Evaluates the site `site` (use the [`buggify!`](crate::buggify!) macro, not this):
/// true when the run has BUGGIFY on, the site is enabled in this run, and it fires now.
#[inline]
pub fn eval(site: &'static str, probability: f64) -> bool {
    #[cfg(madsim)]
    {
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            if !s.on {
                return false;
            }
            let seed = s.seed;
            let entry = s.sites.entry(site).or_insert_with(|| {
                let h = crate::trace::fnv1a(
                    crate::trace::fnv1a(0xcbf2_9ce4_8422_2325, &seed.to_le_bytes()),
                    site.as_bytes(),
                );
                let only = std::env::var("KEEL_BUGGIFY_ONLY").ok();
                (splitmix64(h) % 100 < SITE_ENABLED_PERCENT && only.is_none_or(|o| site.contains(&o)), 0)
            });
            if !entry.0 {
                return false;
            }
            s.rng = splitmix64(s.rng);
            let draw = (s.rng >> 11) as f64 / (1u64 << 53) as f64;
            let fire = draw < probability;
            if fire {
                s.sites.get_mut(site).expect("inserted above").1 += 1;
                crate::trace::record("buggify", site.as_bytes());
            }
            fire
        })
    }
    #[cfg(not(madsim))]
    {
        let _ = (site, probability);
        false
    }
}

/// `buggify!()`: true, rarely, at this site in simulator runs with BUGGIFY on (see the
/// module docs); always `false` in production builds. `buggify!(p)` fires an enabled site
/// with probability `p` instead of 1/4.
#[macro_export]
macro_rules! buggify {
    () => {
        $crate::buggify!($crate::buggify::FIRE_PROBABILITY_DEFAULT)
    };
    ($p:expr) => {{
        #[cfg(madsim)]
        {
            $crate::buggify::eval(concat!(file!(), ":", line!()), $p)
        }
        #[cfg(not(madsim))]
        {
            false
        }
    }};
}

#[cfg(test)]
mod tests {
    #[test]
    fn off_unless_configured() {
        super::configure(false, 1);
        let fired = crate::buggify!();
        assert!(!fired);
        assert!(super::fired().is_empty());
    }

    #[cfg(madsim)]
    #[test]
    fn per_run_site_decisions_replay_and_vary() {
        let pattern = |seed: u64| {
            super::configure(true, seed);
            let v: Vec<bool> = (0..64).map(|_| crate::buggify!(0.5)).collect();
            (v, super::fired())
        };
        assert_eq!(pattern(3), pattern(3));
        // Over many seeds, the site is enabled in some runs and not in others.
        let enabled = (0..200).filter(|s| pattern(*s).0.iter().any(|b| *b)).count();
        assert!((20..=90).contains(&enabled), "site enabled in {enabled} of 200 runs");
    }
}
