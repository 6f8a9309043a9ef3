//! The simulated cluster: named madsim nodes with their own IPs, a simulated disk and a
//! skewable clock per node that outlive kill/restart, and fault helpers over madsim's
//! network simulator.

use keel_storage::SimEngine;
use keel_types::{trace_event, Clock};
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use rand::Rng;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// What a node's program gets when it (re)starts: its identity and the state that
/// survives a kill — the disk and the clock.
#[derive(Clone)]
pub struct NodeEnv {
    /// The node's name (also its trace label).
    pub name: String,
    /// The node's IP address.
    pub ip: IpAddr,
    /// The node's disk; it outlives kill/restart with the crash semantics of [`SimEngine`].
    pub disk: SimEngine,
    /// The node's wall clock, skewable by the harness.
    pub clock: Clock,
}

impl NodeEnv {
    /// `ip:port` of this node.
    pub fn addr(&self, port: u16) -> String {
        format!("{}:{port}", self.ip)
    }
}

struct SimNode {
    env: NodeEnv,
    handle: NodeHandle,
    alive: bool,
    paused: bool,
}

/// A set of named simulated nodes and the faults that can be applied to them. Create it
/// inside a madsim runtime (`Runtime::block_on`).
pub struct Cluster {
    handle: Handle,
    nodes: BTreeMap<String, SimNode>,
    next_ip: u32,
    roles: Roles,
}

/// At the end of a run every node is killed: madsim drops a task's future only when the task
/// finishes or its node is killed, and tasks left waiting on each other (a connection's
/// reader and writer, say) keep one another alive, with each node's data, after the runtime
/// is gone — a swarm process grew by tens of MB per seed.
impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values().filter(|n| n.alive) {
            self.handle.kill(node.handle.id());
        }
    }
}

/// What the nodes of a keel cluster are, for the nemesis: which hold replicas, where PD is,
/// which run clients, and which keys the workload touches.
#[derive(Clone, Debug, Default)]
pub struct Roles {
    /// Storage nodes (replicas: the fault budget protects a majority of them).
    pub stores: Vec<String>,
    /// PD's nodes: its members (or the one non-replicated server of a harness scenario).
    pub pd: Vec<String>,
    /// PD's client endpoints, comma-separated as `--pd` takes them, for leader lookups and
    /// splits (see [`pd_endpoints`]).
    pub pd_addr: Option<String>,
    /// Nodes added with [`Cluster::add_client`].
    pub clients: Vec<String>,
    /// Keys the workload uses (leader lookups, split points).
    pub keys: Vec<Vec<u8>>,
    /// Replicas per region (0: every store holds every region).
    pub replicas: usize,
}

/// The endpoints of a comma-separated PD address list (a scenario passes PD's members around
/// as one string, the way `keel --pd` takes them).
pub fn pd_endpoints(pd_addr: &str) -> Vec<String> {
    pd_addr.split(',').map(String::from).collect()
}

/// Fastest and slowest healthy sync of a simulated disk, in microseconds (an SSD's fsync).
const SYNC_LATENCY_US_MIN: u64 = 1_000;
const SYNC_LATENCY_US_MAX: u64 = 10_000;

/// A disk's healthy sync latency, drawn from the run's seed: never zero, so a crash can land
/// between a write and its sync.
fn sync_latency() -> std::time::Duration {
    std::time::Duration::from_micros(madsim::rand::thread_rng().gen_range(SYNC_LATENCY_US_MIN..=SYNC_LATENCY_US_MAX))
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}

impl Cluster {
    /// An empty cluster in the current madsim runtime.
    pub fn new() -> Cluster {
        Cluster { handle: Handle::current(), nodes: BTreeMap::new(), next_ip: 1, roles: Roles::default() }
    }

    /// Adds a node named `name` running `program`. The program is re-run from scratch
    /// after every restart, with the same disk and clock. A panic inside a node ends
    /// the whole simulation (a panic is a bug, never an expected fault).
    pub fn add_node<F, Fut>(&mut self, name: &str, program: F) -> NodeEnv
    where
        F: Fn(NodeEnv) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        assert!(!self.nodes.contains_key(name), "node {name} added twice");
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + self.next_ip));
        self.next_ip += 1;
        let disk = SimEngine::new();
        disk.set_sync_latency(sync_latency());
        let env = NodeEnv { name: name.to_string(), ip, disk, clock: Clock::new() };
        let program = Arc::new(program);
        let init_env = env.clone();
        let handle = self
            .handle
            .create_node()
            .name(name)
            .ip(ip)
            .init(move || {
                let program = program.clone();
                let env = init_env.clone();
                async move { program(env).await }
            })
            .build();
        trace_event!("sim.add", "{name} {ip}");
        self.nodes.insert(name.to_string(), SimNode { env: env.clone(), handle, alive: true, paused: false });
        env
    }

    /// Adds a node that only runs client tasks spawned with [`Cluster::spawn_on`].
    pub fn add_client(&mut self, name: &str) -> NodeEnv {
        self.roles.clients.push(name.to_string());
        self.add_node(name, |_env| std::future::pending::<()>())
    }

    /// Names the cluster's storage nodes and PD (the nemesis needs to know which nodes hold
    /// replicas). Scenarios built with `scenario::register::start_cluster` get this for free.
    pub fn set_servers(&mut self, stores: &[String], pd: &[String], pd_addr: Option<&str>) {
        self.roles.stores = stores.to_vec();
        self.roles.pd = pd.to_vec();
        self.roles.pd_addr = pd_addr.map(String::from);
    }

    /// Tells the nemesis how many replicas each region has (when fewer than the stores).
    pub fn set_replicas(&mut self, replicas: usize) {
        self.roles.replicas = replicas;
    }

    /// Tells the nemesis which keys the workload uses.
    pub fn set_workload_keys(&mut self, keys: Vec<Vec<u8>>) {
        self.roles.keys = keys;
    }

    /// The cluster's roles.
    pub fn roles(&self) -> &Roles {
        &self.roles
    }

    /// The node whose IP is `ip`.
    pub fn node_by_ip(&self, ip: IpAddr) -> Option<String> {
        self.nodes.iter().find(|(_, n)| n.env.ip == ip).map(|(name, _)| name.clone())
    }

    /// Whether node `name` exists.
    pub fn has_node(&self, name: &str) -> bool {
        self.nodes.contains_key(name)
    }

    /// Spawns a task on node `name` (it dies with the node).
    pub fn spawn_on<F>(&self, name: &str, fut: F) -> madsim::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.node(name).handle.spawn(fut)
    }

    /// Names of all nodes, in order.
    pub fn names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    /// The environment of node `name`.
    pub fn env(&self, name: &str) -> &NodeEnv {
        &self.node(name).env
    }

    /// True unless the node is killed.
    pub fn is_alive(&self, name: &str) -> bool {
        self.node(name).alive
    }

    fn node(&self, name: &str) -> &SimNode {
        self.nodes.get(name).unwrap_or_else(|| panic!("no node named {name}"))
    }

    fn node_mut(&mut self, name: &str) -> &mut SimNode {
        self.nodes.get_mut(name).unwrap_or_else(|| panic!("no node named {name}"))
    }

    /// Kills the node: all its tasks stop at once and its disk loses what was not synced
    /// (a random prefix of the pending writes may survive: a torn tail).
    pub fn kill<R: Rng + ?Sized>(&mut self, name: &str, rng: &mut R) {
        let handle = self.handle.clone();
        let node = self.node_mut(name);
        if !node.alive {
            return;
        }
        handle.kill(node.handle.id());
        node.env.disk.crash(rng);
        node.alive = false;
        node.paused = false;
        trace_event!("sim.kill", "{name}");
    }

    /// Restarts a killed node: its program runs again over the same disk and clock.
    pub fn restart(&mut self, name: &str) {
        let handle = self.handle.clone();
        let node = self.node_mut(name);
        if node.alive {
            return;
        }
        handle.restart(node.handle.id());
        node.alive = true;
        trace_event!("sim.restart", "{name}");
    }

    /// Freezes the node's tasks (a long GC pause or a stopped VM); the network keeps
    /// delivering to it.
    pub fn pause(&mut self, name: &str) {
        let handle = self.handle.clone();
        let node = self.node_mut(name);
        if node.alive && !node.paused {
            handle.pause(node.handle.id());
            node.paused = true;
            trace_event!("sim.pause", "{name}");
        }
    }

    /// Unfreezes a paused node.
    pub fn resume(&mut self, name: &str) {
        let handle = self.handle.clone();
        let node = self.node_mut(name);
        if node.paused {
            handle.resume(node.handle.id());
            node.paused = false;
            trace_event!("sim.resume", "{name}");
        }
    }

    /// Cuts every link between the two groups, both directions.
    pub fn partition(&self, side_a: &[&str], side_b: &[&str]) {
        let net = NetSim::current();
        for a in side_a {
            for b in side_b {
                net.clog_link(self.node(a).handle.id(), self.node(b).handle.id());
                net.clog_link(self.node(b).handle.id(), self.node(a).handle.id());
            }
        }
        trace_event!("sim.partition", "{side_a:?} | {side_b:?}");
    }

    /// Cuts traffic from `from` to `to` only; replies the other way still flow.
    pub fn partition_one_way(&self, from: &str, to: &str) {
        NetSim::current().clog_link(self.node(from).handle.id(), self.node(to).handle.id());
        trace_event!("sim.oneway", "{from} -> {to}");
    }

    /// Isolates one node from every other node.
    pub fn isolate(&self, name: &str) {
        let others: Vec<String> = self.nodes.keys().filter(|n| n.as_str() != name).cloned().collect();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        self.partition(&[name], &others);
    }

    /// Heals every partition and clog.
    pub fn heal(&self) {
        let net = NetSim::current();
        let ids: Vec<_> = self.nodes.values().map(|n| n.handle.id()).collect();
        for a in &ids {
            net.unclog_node(*a);
            for b in &ids {
                if a != b {
                    net.unclog_link(*a, *b);
                }
            }
        }
        trace_event!("sim.heal", "");
    }

    /// Sets the packet loss rate of the whole network (0.0 – 1.0).
    pub fn set_packet_loss(&self, rate: f64) {
        NetSim::current().update_config(|c| c.packet_loss_rate = rate);
        trace_event!("sim.loss", "{rate}");
    }

    /// Cuts traffic from `from` to `to` (a clog: it stalls, and flows again after
    /// [`Cluster::unclog_link`]).
    pub fn clog_link(&self, from: &str, to: &str) {
        NetSim::current().clog_link(self.node(from).handle.id(), self.node(to).handle.id());
        trace_event!("sim.clog", "{from} -> {to}");
    }

    /// Undoes [`Cluster::clog_link`].
    pub fn unclog_link(&self, from: &str, to: &str) {
        NetSim::current().unclog_link(self.node(from).handle.id(), self.node(to).handle.id());
        trace_event!("sim.unclog", "{from} -> {to}");
    }

    /// Sets the network's per-message latency (`None`: madsim's default, 1–10 ms).
    pub fn set_latency(&self, latency: Option<std::ops::Range<std::time::Duration>>) {
        let latency = latency.unwrap_or_else(|| madsim::net::Config::default().send_latency);
        trace_event!("sim.latency", "{latency:?}");
        NetSim::current().update_config(|c| c.send_latency = latency);
    }

    /// Skews node `name`'s wall clock by `offset_ms`.
    pub fn skew_clock(&self, name: &str, offset_ms: i64) {
        self.node(name).env.clock.set_offset_ms(offset_ms);
        trace_event!("sim.skew", "{name} {offset_ms}");
    }

    /// Makes node `name`'s monotonic clock, and the raft ticks it paces, run at `permille`
    /// thousandths of true time.
    pub fn set_clock_rate(&self, name: &str, permille: u64) {
        self.node(name).env.clock.set_rate_permille(permille);
        trace_event!("sim.clock_rate", "{name} {permille}");
    }

    /// Restarts every killed node, resumes paused ones, heals the network, clears loss and
    /// clock skew and rates: the start of a liveness phase.
    pub fn heal_all(&mut self) {
        let names = self.names();
        for name in &names {
            self.resume(name);
            self.restart(name);
            self.skew_clock(name, 0);
            if self.node(name).env.clock.rate_permille() != keel_types::clock::RATE_PERMILLE_TRUE {
                self.set_clock_rate(name, keel_types::clock::RATE_PERMILLE_TRUE);
            }
        }
        self.heal();
        self.set_packet_loss(0.0);
        self.set_latency(None);
    }
}
