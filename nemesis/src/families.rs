//! The fault families: each a named plug-in with its own RNG stream that plans one fault at
//! a time — what to do, for how long, and how to undo it. The scheduler decides whether the
//! plan fits the fault budget and applies it.

use crate::target::{Action, Capability, LocalFuture, Target};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// What a family sees of the cluster when it plans.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Storage nodes.
    pub stores: Vec<String>,
    /// PD's nodes (its members when replicated).
    pub pd: Vec<String>,
    /// Client nodes.
    pub clients: Vec<String>,
    /// Nodes whose process state (kill, pause, disk) an active fault already owns.
    pub busy: Vec<String>,
    /// Most storage nodes that may be impaired at once.
    pub max_impaired: usize,
}

impl View {
    /// Storage nodes and PD: the servers.
    pub fn servers(&self) -> Vec<String> {
        self.stores.iter().cloned().chain(self.pd.iter().cloned()).collect()
    }

    /// Every node.
    pub fn all(&self) -> Vec<String> {
        self.servers().into_iter().chain(self.clients.iter().cloned()).collect()
    }

    fn free(&self, nodes: Vec<String>) -> Vec<String> {
        nodes.into_iter().filter(|n| !self.busy.contains(n)).collect()
    }
}

/// A planned fault.
#[derive(Clone, Debug, Default)]
pub struct Fault {
    /// Family and variant, e.g. `partition/halves` (for traces).
    pub label: String,
    /// Applied at once.
    pub apply: Vec<Action>,
    /// Applied after `hold`.
    pub undo: Vec<Action>,
    /// How long the fault lasts.
    pub hold: Duration,
    /// Resources the fault owns while active (`proc:NODE`, `clock:NODE`, `net:loss`, ...):
    /// two active faults never share one.
    pub resources: Vec<String>,
    /// The fault impairs the cluster in a way the per-store budget cannot express (e.g. a
    /// majorities ring): it runs only while no other fault impairs a store, and blocks those
    /// until it ends.
    pub exclusive: bool,
    /// A second stage: after `undo`, the fault stays active this much longer, then runs these
    /// actions (e.g. a paused leader resumes but hears from the other stores only later).
    pub tail: Option<(Duration, Vec<Action>)>,
}

/// A named fault family.
pub trait Family {
    /// The name `--nemesis` takes.
    fn name(&self) -> &'static str;
    /// A capability the target must have, if any.
    fn needs(&self) -> Option<Capability> {
        None
    }
    /// Plans one fault, or `None` when nothing fits right now.
    fn plan<'a>(&'a mut self, view: &'a View, target: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>>;
}

/// Every family, by name, with a one-line description.
pub const FAMILIES: &[(&str, &str)] = &[
    ("kill", "kill -9 a store or PD (disk keeps a torn tail of unsynced writes), restart it later"),
    ("pd-restart", "kill and restart PD (one member of a replicated PD)"),
    ("power", "power loss: every store crashes at the same instant (each disk keeps a torn tail of unsynced writes), then all restart"),
    ("pause", "freeze a store, a region's leader or PD (a long GC pause), then resume it"),
    ("suspend", "suspend a store's VM, often a region leader's: frozen, and its monotonic clock stops too, so on resume its raft timers carry on as if no time had passed (a leader reaches the other stores only a while after it resumes)"),
    ("partition", "random halves, isolating one node, or a one-way cut"),
    ("isolate-leader", "cut off the store that leads a region (asks PD who leads)"),
    ("isolate-pd", "cut PD (one member of a replicated PD) off from everyone"),
    ("ring", "majorities ring: every store reaches a majority, no two the same (5+ stores; a bridge with 3)"),
    ("bridge", "two halves that only one store connects"),
    ("clog", "stall a node's traffic or one link for a short while"),
    ("loss", "network-wide packet loss"),
    ("latency", "network-wide latency spike"),
    ("skew", "a node's clock runs ahead or behind, or jumps"),
    ("slow-clock", "a store's clock source runs slow (5-50% of true speed) for a while, often a region leader's: its raft ticks, elections and check-quorum come late (NTP keeps its wall clock right; its monotonic clock falls behind)"),
    ("disk-fail", "a store's next sync fails: its store loop stops; the nemesis restarts it"),
    ("slow-sync", "a store's disk syncs slowly (each sync stalls its store loop 5-400 ms) for a while"),
    ("corrupt", "flip a bit in a record on a store's disk: reading it stops the store (checksums); later the store is stopped, its disk checked and, if bad, replaced; its replicas are rebuilt from their peers (at most a minority of stores per run)"),
    ("split", "split storm: split regions at workload keys and at random points between them"),
    ("transfer", "leader-transfer storm: PD moves the leadership of random regions to another voter"),
    ("membership", "membership churn: PD removes, adds or moves a replica of a random region"),
];

/// Builds the family `name` with its own RNG stream.
pub fn build(name: &str, rng: ChaCha8Rng) -> Option<Box<dyn Family>> {
    let f: Box<dyn Family> = match name {
        "kill" => Box::new(Kill { rng, pd_only: false }),
        "pd-restart" => Box::new(Kill { rng, pd_only: true }),
        "power" => Box::new(Power { rng }),
        "pause" => Box::new(Pause { rng }),
        "suspend" => Box::new(Suspend { rng }),
        "partition" => Box::new(Partition { rng }),
        "isolate-leader" => Box::new(IsolateLeader { rng }),
        "isolate-pd" => Box::new(IsolatePd { rng }),
        "ring" => Box::new(Ring { rng, bridge_only: false }),
        "bridge" => Box::new(Ring { rng, bridge_only: true }),
        "clog" => Box::new(Clog { rng }),
        "loss" => Box::new(Loss { rng }),
        "latency" => Box::new(Latency { rng }),
        "skew" => Box::new(Skew { rng }),
        "slow-clock" => Box::new(SlowClock { rng }),
        "disk-fail" => Box::new(DiskFail { rng }),
        "slow-sync" => Box::new(SlowSync { rng }),
        "corrupt" => Box::new(Corrupt { rng, disks_lost: 0 }),
        "split" => Box::new(Split { rng }),
        "transfer" => Box::new(RegionOps { rng, name: "transfer", cap: Capability::TransferLeader }),
        "membership" => Box::new(RegionOps { rng, name: "membership", cap: Capability::Membership }),
        _ => return None,
    };
    Some(f)
}

fn ms(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.gen_range(lo..hi))
}

/// A hold: usually short, sometimes long (long outages reach snapshots and elections).
fn hold(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> Duration {
    if rng.gen_bool(0.15) {
        ms(rng, hi, hi * 3)
    } else {
        ms(rng, lo, hi)
    }
}

fn pick(rng: &mut ChaCha8Rng, nodes: &[String]) -> Option<String> {
    nodes.choose(rng).cloned()
}

/// The store that leads the region of a key drawn from the workload's keys (the target's
/// answer; `None` when it does not know).
async fn leader_of_random_key(rng: &mut ChaCha8Rng, target: &mut dyn Target) -> Option<String> {
    let keys = target.keys();
    let key = keys.choose(rng).cloned().unwrap_or_default();
    target.region_leader(&key).await
}

/// With probability `p`, when the target can tell leaders, [`leader_of_random_key`]; `None`
/// otherwise. Nothing is drawn from `rng` when the target cannot tell.
async fn sometimes_a_leader(rng: &mut ChaCha8Rng, target: &mut dyn Target, p: f64) -> Option<String> {
    if target.supports(Capability::RegionLeader) && rng.gen_bool(p) {
        leader_of_random_key(rng, target).await
    } else {
        None
    }
}

/// Both directions of every link between the two groups.
fn cut_between(a: &[String], b: &[String]) -> Vec<(String, String)> {
    let mut links = Vec::new();
    for x in a {
        for y in b {
            if x != y {
                links.push((x.clone(), y.clone()));
                links.push((y.clone(), x.clone()));
            }
        }
    }
    links
}

fn cut_fault(label: String, links: Vec<(String, String)>, hold: Duration) -> Option<Fault> {
    if links.is_empty() {
        return None;
    }
    Some(Fault {
        label,
        apply: vec![Action::Cut(links.clone())],
        undo: vec![Action::Uncut(links)],
        hold,
        ..Fault::default()
    })
}

struct Kill {
    rng: ChaCha8Rng,
    pd_only: bool,
}

impl Family for Kill {
    fn name(&self) -> &'static str {
        if self.pd_only {
            "pd-restart"
        } else {
            "kill"
        }
    }
    fn plan<'a>(&'a mut self, view: &'a View, _t: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let candidates = if self.pd_only { view.pd.clone() } else { view.servers() };
            let node = pick(&mut self.rng, &view.free(candidates))?;
            let seed = self.rng.gen();
            Some(Fault {
                label: format!("{}/{node}", self.name()),
                apply: vec![Action::Kill(node.clone(), seed)],
                undo: vec![Action::Restart(node.clone())],
                hold: hold(&mut self.rng, 200, 5_000),
                resources: vec![format!("proc:{node}")],
                exclusive: false,
                tail: None,
            })
        })
    }
}

/// Every store at once: the one fault that takes more than a minority down, because no disk
/// is lost — what each store synced must survive, and a write acknowledged before it was
/// durable on a majority is gone.
struct Power {
    rng: ChaCha8Rng,
}

impl Family for Power {
    fn name(&self) -> &'static str {
        "power"
    }
    fn plan<'a>(&'a mut self, view: &'a View, _t: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            if view.stores.is_empty() || view.free(view.stores.clone()).len() < view.stores.len() {
                return None;
            }
            let apply = view.stores.iter().map(|s| Action::Kill(s.clone(), self.rng.gen())).collect();
            Some(Fault {
                label: format!("power/all stores {:?}", view.stores),
                apply,
                undo: view.stores.iter().map(|s| Action::Restart(s.clone())).collect(),
                hold: ms(&mut self.rng, 100, 3_000),
                resources: view.stores.iter().map(|s| format!("proc:{s}")).collect(),
                exclusive: true,
                tail: None,
            })
        })
    }
}

struct Pause {
    rng: ChaCha8Rng,
}

impl Family for Pause {
    fn name(&self) -> &'static str {
        "pause"
    }
    fn plan<'a>(&'a mut self, view: &'a View, target: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            // Half the time the leader of a region: when it wakes up it still believes it
            // leads (its clock did not tick), while a new leader has taken writes meanwhile.
            let leader = sometimes_a_leader(&mut self.rng, target, 0.5).await.filter(|l| !view.busy.contains(l));
            if let Some(leader) = leader {
                // The paused leader also hears nothing from the other stores until a while
                // after it wakes up: for that while it still believes it leads, and clients
                // whose requests queued up during the pause reach it — the stale-leader window
                // ReadIndex exists to close.
                let stores: Vec<String> = view.stores.iter().filter(|s| **s != leader).cloned().collect();
                let links: Vec<(String, String)> = stores.iter().map(|s| (s.clone(), leader.clone())).collect();
                return Some(Fault {
                    label: format!("pause/leader {leader}"),
                    apply: vec![Action::Cut(links.clone()), Action::Pause(leader.clone())],
                    undo: vec![Action::Resume(leader.clone())],
                    hold: ms(&mut self.rng, 1_000, 3_000),
                    resources: vec![format!("proc:{leader}")],
                    exclusive: false,
                    tail: Some((ms(&mut self.rng, 200, 1_500), vec![Action::Uncut(links)])),
                });
            }
            let node = pick(&mut self.rng, &view.free(view.servers()))?;
            Some(Fault {
                label: format!("pause/node {node}"),
                apply: vec![Action::Pause(node.clone())],
                undo: vec![Action::Resume(node.clone())],
                hold: hold(&mut self.rng, 100, 4_000),
                resources: vec![format!("proc:{node}")],
                exclusive: false,
                tail: None,
            })
        })
    }
}

/// A suspended VM (or host): unlike a process pause, its monotonic clock does not count the
/// suspended time (Linux's CLOCK_MONOTONIC stops in suspend), so a leader wakes up with its
/// election and check-quorum timers where they were — it still believes it leads for up to
/// an election timeout, while the others elected a new leader and took writes meanwhile.
struct Suspend {
    rng: ChaCha8Rng,
}

impl Family for Suspend {
    fn name(&self) -> &'static str {
        "suspend"
    }
    fn needs(&self) -> Option<Capability> {
        Some(Capability::ClockRate)
    }
    fn plan<'a>(&'a mut self, view: &'a View, target: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let leader = sometimes_a_leader(&mut self.rng, target, 0.7).await.filter(|l| !view.busy.contains(l));
            let node = match &leader {
                Some(leader) => leader.clone(),
                None => pick(&mut self.rng, &view.free(view.stores.clone()))?,
            };
            let mut apply = vec![Action::ClockRate(node.clone(), 0), Action::Pause(node.clone())];
            let undo = vec![Action::ClockRate(node.clone(), 1_000), Action::Resume(node.clone())];
            let resources = vec![format!("proc:{node}"), format!("clock-rate:{node}")];
            let hold = ms(&mut self.rng, 1_000, 4_000);
            let Some(leader) = leader else {
                let label = format!("suspend/node {node}");
                return Some(Fault { label, apply, undo, hold, resources, exclusive: false, tail: None });
            };
            // As with a paused leader: the other stores reach it only a while after it wakes.
            let links: Vec<(String, String)> =
                view.stores.iter().filter(|s| **s != leader).map(|s| (s.clone(), leader.clone())).collect();
            apply.insert(0, Action::Cut(links.clone()));
            Some(Fault {
                label: format!("suspend/leader {leader}"),
                apply,
                undo,
                hold,
                resources,
                exclusive: false,
                tail: Some((ms(&mut self.rng, 200, 1_500), vec![Action::Uncut(links)])),
            })
        })
    }
}

struct Partition {
    rng: ChaCha8Rng,
}

impl Family for Partition {
    fn name(&self) -> &'static str {
        "partition"
    }
    fn plan<'a>(&'a mut self, view: &'a View, _t: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let rng = &mut self.rng;
            let duration = hold(rng, 500, 6_000);
            match rng.gen_range(0..3) {
                0 => {
                    // Random halves: a minority of the stores (at most the budget) with PD and
                    // clients scattered over both sides.
                    let mut stores = view.stores.clone();
                    stores.shuffle(rng);
                    let minority = rng.gen_range(1..=view.max_impaired.max(1));
                    let (mut a, mut b): (Vec<String>, Vec<String>) =
                        (stores[..minority.min(stores.len())].to_vec(), stores[minority.min(stores.len())..].to_vec());
                    for other in view.pd.iter().chain(view.clients.iter()) {
                        if rng.gen_bool(0.5) {
                            a.push(other.clone());
                        } else {
                            b.push(other.clone());
                        }
                    }
                    cut_fault(format!("partition/halves {a:?}|{b:?}"), cut_between(&a, &b), duration)
                }
                1 => {
                    let node = pick(rng, &view.servers())?;
                    let others: Vec<String> = view.all().into_iter().filter(|n| *n != node).collect();
                    cut_fault(format!("partition/isolate {node}"), cut_between(&[node], &others), duration)
                }
                _ => {
                    let servers = view.servers();
                    let from = pick(rng, &servers)?;
                    let to = pick(rng, &servers)?;
                    if from == to {
                        return None;
                    }
                    cut_fault(format!("partition/one-way {from}->{to}"), vec![(from, to)], duration)
                }
            }
        })
    }
}

struct IsolateLeader {
    rng: ChaCha8Rng,
}

impl Family for IsolateLeader {
    fn name(&self) -> &'static str {
        "isolate-leader"
    }
    fn needs(&self) -> Option<Capability> {
        Some(Capability::RegionLeader)
    }
    fn plan<'a>(&'a mut self, view: &'a View, target: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let leader = leader_of_random_key(&mut self.rng, target).await?;
            let others: Vec<String> = view.all().into_iter().filter(|n| *n != leader).collect();
            // Sometimes only from the other stores (clients and PD still reach it: the stale
            // leader keeps receiving requests — the case ReadIndex exists for).
            let (label, links) = if self.rng.gen_bool(0.5) {
                ("isolate-leader/all", cut_between(std::slice::from_ref(&leader), &others))
            } else {
                let stores: Vec<String> = view.stores.iter().filter(|s| **s != leader).cloned().collect();
                ("isolate-leader/stores", cut_between(std::slice::from_ref(&leader), &stores))
            };
            cut_fault(format!("{label} {leader}"), links, hold(&mut self.rng, 1_000, 6_000))
        })
    }
}

struct IsolatePd {
    rng: ChaCha8Rng,
}

impl Family for IsolatePd {
    fn name(&self) -> &'static str {
        "isolate-pd"
    }
    fn plan<'a>(&'a mut self, view: &'a View, _t: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let pd = pick(&mut self.rng, &view.pd)?;
            let others: Vec<String> = view.all().into_iter().filter(|n| *n != pd).collect();
            cut_fault(format!("isolate-pd {pd}"), cut_between(&[pd], &others), hold(&mut self.rng, 500, 6_000))
        })
    }
}

struct Ring {
    rng: ChaCha8Rng,
    bridge_only: bool,
}

impl Family for Ring {
    fn name(&self) -> &'static str {
        if self.bridge_only {
            "bridge"
        } else {
            "ring"
        }
    }
    fn plan<'a>(&'a mut self, view: &'a View, _t: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let mut stores = view.stores.clone();
            stores.shuffle(&mut self.rng);
            let n = stores.len();
            let duration = hold(&mut self.rng, 1_000, 6_000);
            if n < 3 {
                return None;
            }
            if self.bridge_only || n < 5 {
                // Bridge: [left] bridge [right]; left and right cannot talk.
                let bridge = n / 2;
                let (left, right) = (&stores[..bridge], &stores[bridge + 1..]);
                let label = format!("bridge {left:?} <{}> {right:?}", stores[bridge]);
                return cut_fault(label, cut_between(left, right), duration);
            }
            // Majorities ring: node i talks to i±1 .. i±k (k = n/2 neighbours in all,
            // itself included a majority), and to nobody else.
            let reach = n / 2 / 2 + n / 2 % 2;
            let mut links = Vec::new();
            for i in 0..n {
                for j in 0..n {
                    let d = (i + n - j) % n;
                    let d = d.min(n - d);
                    if d > reach {
                        links.push((stores[i].clone(), stores[j].clone()));
                    }
                }
            }
            let mut fault = cut_fault(format!("ring {stores:?}"), links, duration)?;
            fault.exclusive = true;
            Some(fault)
        })
    }
}

struct Clog {
    rng: ChaCha8Rng,
}

impl Family for Clog {
    fn name(&self) -> &'static str {
        "clog"
    }
    fn plan<'a>(&'a mut self, view: &'a View, _t: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let rng = &mut self.rng;
            let duration = ms(rng, 50, 1_000);
            let all = view.all();
            let node = pick(rng, &view.servers())?;
            if rng.gen_bool(0.5) {
                let others: Vec<String> = all.into_iter().filter(|n| *n != node).collect();
                cut_fault(format!("clog/node {node}"), cut_between(&[node], &others), duration)
            } else {
                let other = pick(rng, &all)?;
                if other == node {
                    return None;
                }
                let links = if rng.gen_bool(0.5) {
                    vec![(node.clone(), other.clone())]
                } else {
                    vec![(node.clone(), other.clone()), (other.clone(), node.clone())]
                };
                cut_fault(format!("clog/link {node}-{other}"), links, duration)
            }
        })
    }
}

struct Loss {
    rng: ChaCha8Rng,
}

impl Family for Loss {
    fn name(&self) -> &'static str {
        "loss"
    }
    fn plan<'a>(&'a mut self, _view: &'a View, _t: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let rate = self.rng.gen_range(0.02..0.3);
            Some(Fault {
                label: format!("loss {rate:.3}"),
                apply: vec![Action::Loss(rate)],
                undo: vec![Action::Loss(0.0)],
                hold: hold(&mut self.rng, 500, 5_000),
                resources: vec!["net:loss".into()],
                exclusive: false,
                tail: None,
            })
        })
    }
}

struct Latency {
    rng: ChaCha8Rng,
}

impl Family for Latency {
    fn name(&self) -> &'static str {
        "latency"
    }
    fn needs(&self) -> Option<Capability> {
        Some(Capability::Latency)
    }
    fn plan<'a>(&'a mut self, _view: &'a View, _t: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let lo = self.rng.gen_range(1..50u64);
            let hi = lo + self.rng.gen_range(10..500u64);
            let range = Duration::from_millis(lo)..Duration::from_millis(hi);
            Some(Fault {
                label: format!("latency {lo}..{hi}ms"),
                apply: vec![Action::Latency(Some(range))],
                undo: vec![Action::Latency(None)],
                hold: hold(&mut self.rng, 500, 5_000),
                resources: vec!["net:latency".into()],
                exclusive: false,
                tail: None,
            })
        })
    }
}

struct Skew {
    rng: ChaCha8Rng,
}

impl Family for Skew {
    fn name(&self) -> &'static str {
        "skew"
    }
    fn plan<'a>(&'a mut self, view: &'a View, _t: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let rng = &mut self.rng;
            let node = pick(rng, &view.all())?;
            // A steady skew of up to ±10 s, or a jump of up to ±2 min (NTP stepping a clock).
            let (kind, offset) = if rng.gen_bool(0.6) {
                ("skew", rng.gen_range(-10_000..10_000i64))
            } else {
                ("jump", rng.gen_range(-120_000..120_000i64))
            };
            Some(Fault {
                label: format!("skew/{kind} {node} {offset}ms"),
                apply: vec![Action::Clock(node.clone(), offset)],
                undo: vec![Action::Clock(node.clone(), 0)],
                hold: hold(rng, 1_000, 10_000),
                resources: vec![format!("clock:{node}")],
                exclusive: false,
                tail: None,
            })
        })
    }
}

/// A store whose clock source runs slow. A leader's lease, if it trusted its own clock,
/// would outlast the election its followers hold meanwhile; ReadIndex must not care.
struct SlowClock {
    rng: ChaCha8Rng,
}

impl Family for SlowClock {
    fn name(&self) -> &'static str {
        "slow-clock"
    }
    fn needs(&self) -> Option<Capability> {
        Some(Capability::ClockRate)
    }
    fn plan<'a>(&'a mut self, view: &'a View, target: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            // Mostly a region's leader: the replica whose sense of time matters most.
            let leader = sometimes_a_leader(&mut self.rng, target, 0.7).await;
            let node = match leader {
                Some(leader) => leader,
                None => pick(&mut self.rng, &view.stores)?,
            };
            let permille = self.rng.gen_range(50..=500);
            Some(Fault {
                label: format!("slow-clock/{node} at {permille}/1000"),
                apply: vec![Action::ClockRate(node.clone(), permille)],
                undo: vec![Action::ClockRate(node.clone(), 1_000)],
                hold: hold(&mut self.rng, 2_000, 8_000),
                resources: vec![format!("clock-rate:{node}")],
                exclusive: false,
                tail: None,
            })
        })
    }
}

struct DiskFail {
    rng: ChaCha8Rng,
}

impl Family for DiskFail {
    fn name(&self) -> &'static str {
        "disk-fail"
    }
    fn needs(&self) -> Option<Capability> {
        Some(Capability::FailSync)
    }
    fn plan<'a>(&'a mut self, view: &'a View, _t: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let node = pick(&mut self.rng, &view.free(view.stores.clone()))?;
            let seed = self.rng.gen();
            // The store loop stops at the failed sync; a supervisor would restart the
            // process: kill (dropping unsynced writes) and restart it from disk.
            Some(Fault {
                label: format!("disk-fail/{node}"),
                apply: vec![Action::FailSync(node.clone())],
                undo: vec![Action::Kill(node.clone(), seed), Action::Restart(node.clone())],
                hold: hold(&mut self.rng, 500, 3_000),
                resources: vec![format!("proc:{node}")],
                exclusive: false,
                tail: None,
            })
        })
    }
}

struct SlowSync {
    rng: ChaCha8Rng,
}

impl Family for SlowSync {
    fn name(&self) -> &'static str {
        "slow-sync"
    }
    fn needs(&self) -> Option<Capability> {
        Some(Capability::SlowSync)
    }
    fn plan<'a>(&'a mut self, view: &'a View, _t: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let node = pick(&mut self.rng, &view.stores)?;
            // Mostly a sluggish disk, sometimes a spike that stalls the store for a while.
            let stall = if self.rng.gen_bool(0.8) { ms(&mut self.rng, 5, 60) } else { ms(&mut self.rng, 60, 400) };
            Some(Fault {
                label: format!("slow-sync/{node} {}ms", stall.as_millis()),
                apply: vec![Action::SlowSync(node.clone(), Some(stall))],
                undo: vec![Action::SlowSync(node.clone(), None)],
                hold: hold(&mut self.rng, 1_000, 8_000),
                resources: vec![format!("disk:{node}")],
                exclusive: false,
                tail: None,
            })
        })
    }
}

/// The resource a fault holds while every region must keep its full set of voters.
const REPLICAS: &str = "replicas";

struct Corrupt {
    rng: ChaCha8Rng,
    /// Disks this run may have had replaced: each loses every replica on it until PD
    /// rebuilds them, so over a run at most a minority of the stores may lose theirs.
    disks_lost: usize,
}

impl Family for Corrupt {
    fn name(&self) -> &'static str {
        "corrupt"
    }
    fn needs(&self) -> Option<Capability> {
        Some(Capability::Corrupt)
    }
    fn plan<'a>(&'a mut self, view: &'a View, target: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            if self.disks_lost >= view.max_impaired {
                return None;
            }
            // A replaced disk loses one replica of every region on it: only a minority if
            // every region has all its voters now and keeps them (no membership churn) until
            // the disk is checked.
            if !target.fully_replicated().await {
                return None;
            }
            let node = pick(&mut self.rng, &view.free(view.stores.clone()))?;
            let (corrupt_seed, kill_seed) = (self.rng.gen(), self.rng.gen());
            self.disks_lost += 1;
            Some(Fault {
                label: format!("corrupt/{node}"),
                apply: vec![Action::Corrupt(node.clone(), corrupt_seed)],
                // The node has run on the bad block (stopping itself if it read it); the
                // operator stops it, checks its disk, replaces it if bad, and starts it.
                undo: vec![
                    Action::Kill(node.clone(), kill_seed),
                    Action::ReplaceCorruptDisk(node.clone()),
                    Action::Restart(node.clone()),
                ],
                hold: hold(&mut self.rng, 1_000, 5_000),
                resources: vec![format!("proc:{node}"), REPLICAS.to_string()],
                exclusive: false,
                tail: None,
            })
        })
    }
}

struct Split {
    rng: ChaCha8Rng,
}

impl Family for Split {
    fn name(&self) -> &'static str {
        "split"
    }
    fn needs(&self) -> Option<Capability> {
        Some(Capability::Split)
    }
    fn plan<'a>(&'a mut self, _view: &'a View, target: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let keys = target.keys();
            let burst = self.rng.gen_range(16..=40);
            let mut apply = Vec::new();
            for _ in 0..burst {
                let Some(key) = keys.choose(&mut self.rng) else { break };
                let mut key = key.clone();
                // Half the splits land between workload keys, so a workload over a few keys
                // still ends up with many regions (and some with no keys at all).
                if self.rng.gen_bool(0.5) {
                    key.push(self.rng.gen());
                }
                apply.push(Action::Split(key));
            }
            if apply.is_empty() {
                return None;
            }
            Some(Fault { label: format!("split x{}", apply.len()), apply, ..Fault::default() })
        })
    }
}

/// Region-level churn through PD: leader transfers, or replicas removed, added and moved
/// (PD's replica checker then restores the replica count). A burst touches a few regions;
/// each action's seed picks the target voter or store.
struct RegionOps {
    rng: ChaCha8Rng,
    name: &'static str,
    cap: Capability,
}

impl Family for RegionOps {
    fn name(&self) -> &'static str {
        self.name
    }
    fn needs(&self) -> Option<Capability> {
        Some(self.cap)
    }
    fn plan<'a>(&'a mut self, _view: &'a View, target: &'a mut dyn Target) -> LocalFuture<'a, Option<Fault>> {
        Box::pin(async move {
            let keys = target.keys();
            let burst = self.rng.gen_range(1..=3);
            let mut apply = Vec::new();
            for _ in 0..burst {
                let Some(key) = keys.choose(&mut self.rng).cloned() else { break };
                let seed = self.rng.gen();
                apply.push(match self.cap {
                    Capability::TransferLeader => Action::TransferLeader(key, seed),
                    _ => Action::ChangeMembership(key, seed),
                });
            }
            if apply.is_empty() {
                return None;
            }
            // Membership churn can leave a region with fewer voters for a while; it must not
            // meet a disk about to be replaced (see `Corrupt`).
            let resources = match self.cap {
                Capability::Membership => vec![REPLICAS.to_string()],
                _ => vec![],
            };
            Some(Fault { label: format!("{} x{}", self.name, apply.len()), apply, resources, ..Fault::default() })
        })
    }
}
