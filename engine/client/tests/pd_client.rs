//! PdClient against a real PD: every call over loopback TCP (tokio), TSO batching under
//! concurrency, failover and deadlines; and, in the simulator, a PD killed and restarted
//! while a client keeps asking for timestamps.

use keel_client::{PdClient, PdClientError};
use keel_pd::{run_pd, PdConfig};
use keel_storage::SimEngine;
use keel_types::proto::pd::Store;
use keel_types::{Clock, Timestamp};
use std::sync::Arc;
use std::time::Duration;

/// Registers three stores (ids from PD) so the cluster bootstraps; returns their ids.
async fn register_three_stores(client: &PdClient) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = client.alloc_id().await.expect("alloc id");
        let store = Store { id, address: format!("127.0.0.1:{}", 20160 + i), ..Default::default() };
        client.put_store(store).await.expect("put store");
        ids.push(id);
    }
    ids
}

#[cfg(not(madsim))]
mod real {
    use super::*;
    use keel_client::PdClientConfig;
    use keel_types::proto::pd::{PdError, RegionHeartbeat, StoreStats};
    use std::future::Future;
    use tokio::net::TcpListener;

    fn block_on<F: Future>(fut: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(fut)
    }

    async fn start_pd(disk: SimEngine) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let config = PdConfig::new(addr.clone());
        tokio::spawn(async move {
            let _ = run_pd(config, Arc::new(disk), Clock::new(), listener).await;
        });
        addr
    }

    /// A replicated PD over loopback: three members; the client finds the leader, and after
    /// the leader's task is stopped the other two elect a new one whose timestamps are larger.
    #[test]
    fn a_replicated_pd_fails_over_and_its_tso_keeps_increasing() {
        block_on(async {
            let mut listeners = Vec::new();
            for _ in 0..3 {
                listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
            }
            let members: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
            let mut tasks = Vec::new();
            for listener in listeners {
                let addr = listener.local_addr().unwrap().to_string();
                let config = PdConfig { members: members.clone(), ..PdConfig::new(addr) };
                tasks.push(tokio::spawn(async move {
                    let _ = run_pd(config, Arc::new(SimEngine::new()), Clock::new(), listener).await;
                }));
            }
            let config = PdClientConfig { deadline: Duration::from_secs(20), ..PdClientConfig::default() };
            let client = PdClient::with_config(members.clone(), config.clone());
            let before = client.get_ts().await.expect("a leader serves");
            let leader = client.get_members().await.unwrap().leader;
            let i = members.iter().position(|m| *m == leader).expect("leader is a member");
            tasks[i].abort();
            let others: Vec<String> = members.iter().filter(|m| **m != leader).cloned().collect();
            let client = PdClient::with_config(others, config);
            let after = client.get_ts().await.expect("the other two elect a leader");
            assert!(after > before, "tso went backwards across failover: {after} after {before}");
            let new_leader = client.get_members().await.unwrap().leader;
            assert_ne!(new_leader, leader);
        });
    }

    #[test]
    fn every_call_round_trips_over_loopback() {
        block_on(async {
            let addr = start_pd(SimEngine::new()).await;
            let client = PdClient::new(vec![addr.clone()]);
            let members = client.get_members().await.unwrap();
            assert_eq!(members.leader, addr);
            assert_ne!(members.cluster_id, 0);
            assert_eq!(client.get_bootstrap_region().await.unwrap(), None);
            let ids = client.alloc_ids(10).await.unwrap();
            assert_eq!(ids.end - ids.start, 10);

            let stores = register_three_stores(&client).await;
            let all = client.get_all_stores().await.unwrap();
            assert_eq!(all.iter().map(|s| s.id).collect::<Vec<_>>(), stores);
            assert_eq!(client.get_store(stores[1]).await.unwrap().unwrap().id, stores[1]);
            assert_eq!(client.get_store(999_999).await.unwrap(), None);
            client.store_heartbeat(StoreStats { store_id: stores[0], ..Default::default() }).await.unwrap();

            let region = client.get_bootstrap_region().await.unwrap().expect("bootstrapped");
            assert_eq!(region.peers.len(), 3);
            let hb = RegionHeartbeat {
                region: region.clone(),
                leader: Some(region.peers[0]),
                term: 6,
                ..Default::default()
            };
            assert_eq!(client.region_heartbeat(hb).await.unwrap(), None);
            let info = client.get_region(b"any key").await.unwrap().unwrap();
            assert_eq!((info.region.clone(), info.leader), (region.clone(), Some(region.peers[0])));
            assert_eq!(client.get_region_by_id(region.id).await.unwrap().unwrap().region, region);

            let split = client.ask_split(region.clone()).await.unwrap();
            assert_eq!(split.new_peer_ids.len(), 3);
            let epoch = keel_types::RegionEpoch { version: 2, ..region.epoch };
            let left = keel_types::Region { end_key: b"m".to_vec(), epoch, ..region.clone() };
            let right = keel_types::Region {
                id: split.new_region_id,
                start_key: b"m".to_vec(),
                end_key: Vec::new(),
                epoch,
                peers: region
                    .peers
                    .iter()
                    .zip(&split.new_peer_ids)
                    .map(|(p, &id)| keel_types::Peer { id, ..*p })
                    .collect(),
            };
            client.report_split(left.clone(), right.clone()).await.unwrap();
            let scanned = client.scan_regions(b"", b"", 0).await.unwrap();
            assert_eq!(scanned.iter().map(|i| i.region.clone()).collect::<Vec<_>>(), vec![left, right.clone()]);
            assert_eq!(client.scan_regions(b"n", b"", 10).await.unwrap().len(), 1);
            assert_eq!(client.get_region(b"z").await.unwrap().unwrap().region, right);

            assert_eq!(client.update_gc_safe_point(Timestamp(50)).await.unwrap(), Timestamp(50));
            assert_eq!(client.update_gc_safe_point(Timestamp(40)).await.unwrap(), Timestamp(50));
            assert_eq!(client.get_gc_safe_point().await.unwrap(), Timestamp(50));

            let a = client.get_ts().await.unwrap();
            let batch = client.get_ts_batch(100).await.unwrap();
            assert!(batch.first() > a);
            let b = client.get_ts().await.unwrap();
            assert!(b > batch.last);

            // PD's refusals come back typed, not retried.
            let err = client.put_store(Store::default()).await.unwrap_err();
            assert!(matches!(err, PdClientError::Pd(PdError::Invalid(_))), "{err:?}");
            assert!(!err.outcome_unknown());
        });
    }

    #[test]
    fn concurrent_get_ts_callers_share_round_trips() {
        block_on(async {
            let addr = start_pd(SimEngine::new()).await;
            let client = PdClient::new(vec![addr]);
            let warm = client.get_ts().await.unwrap();
            let before = client.tso_round_trips();
            const CALLERS: usize = 100;
            const PER_CALLER: usize = 5;
            let tasks: Vec<_> = (0..CALLERS)
                .map(|_| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let mut mine = Vec::new();
                        for _ in 0..PER_CALLER {
                            mine.push(client.get_ts().await.expect("get_ts"));
                        }
                        mine
                    })
                })
                .collect();
            let mut all = Vec::new();
            for task in tasks {
                let mine = task.await.unwrap();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "each caller sees increasing timestamps: {mine:?}");
                all.extend(mine);
            }
            let round_trips = client.tso_round_trips() - before;
            let calls = (CALLERS * PER_CALLER) as u64;
            assert!(all.iter().all(|&ts| ts > warm));
            all.sort();
            all.dedup();
            assert_eq!(all.len() as u64, calls, "every timestamp handed out once");
            assert!(round_trips < CALLERS as u64, "{calls} get_ts calls took {round_trips} round trips");
            eprintln!("{calls} get_ts calls from {CALLERS} callers took {round_trips} TSO round trips");
        });
    }

    #[test]
    fn fails_over_to_a_live_endpoint_and_gives_up_at_the_deadline() {
        block_on(async {
            // A port with no listener.
            let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
            let live = start_pd(SimEngine::new()).await;
            let config = PdClientConfig {
                call_timeout: Duration::from_millis(300),
                deadline: Duration::from_millis(1500),
                backoff_initial: Duration::from_millis(20),
                backoff_max: Duration::from_millis(200),
            };
            let both = PdClient::with_config(vec![dead.clone(), live], config.clone());
            assert!(both.get_ts().await.is_ok());
            assert!(both.alloc_id().await.is_ok());

            let only_dead = PdClient::with_config(vec![dead], config);
            let started = std::time::Instant::now();
            let err = only_dead.get_ts().await.unwrap_err();
            assert!(matches!(err, PdClientError::Unavailable { .. }), "{err:?}");
            assert!(!err.outcome_unknown(), "nothing was ever sent: {err}");
            assert!(started.elapsed() < Duration::from_secs(5));
            // The batcher recovers: a later call is tried afresh.
            assert!(only_dead.get_ts().await.is_err());
            assert!(matches!(PdClient::new(vec![]).get_members().await, Err(PdClientError::NoEndpoints)));
        });
    }
}

#[cfg(madsim)]
mod sim {
    use super::*;
    use madsim::runtime::{Handle, NodeHandle, Runtime};
    use tokio::net::TcpListener;

    const PD_ADDR: &str = "10.0.0.1:2379";

    fn pd_node(disk: SimEngine, clock: Clock) -> NodeHandle {
        Handle::current()
            .create_node()
            .name("pd")
            .ip("10.0.0.1".parse().unwrap())
            .init(move || {
                let disk = disk.clone();
                let clock = clock.clone();
                async move {
                    let listener = TcpListener::bind(PD_ADDR).await.expect("bind");
                    let result = run_pd(PdConfig::new(PD_ADDR), Arc::new(disk), clock, listener).await;
                    panic!("pd stopped: {result:?}");
                }
            })
            .build()
    }

    /// A client keeps taking timestamps while PD is killed (its disk crashes) and restarted
    /// twice, the second time with its clock five minutes behind: every timestamp the client
    /// gets is larger than the one before.
    #[test]
    fn tso_stays_monotonic_for_a_client_across_pd_restarts() {
        for seed in 1..6u64 {
            Runtime::with_seed_and_config(seed, madsim::Config::default()).block_on(async move {
                let disk = SimEngine::new();
                let clock = Clock::new();
                let pd = pd_node(disk.clone(), clock.clone());
                let client_node =
                    Handle::current().create_node().name("client").ip("10.0.0.2".parse().unwrap()).build();
                tokio::time::sleep(Duration::from_millis(50)).await;
                let worker = client_node.spawn(async move {
                    let client = PdClient::new(vec![PD_ADDR.to_string()]);
                    register_three_stores(&client).await;
                    let region = client.get_bootstrap_region().await.unwrap().expect("bootstrapped");
                    let mut last = Timestamp::ZERO;
                    let mut served = 0u32;
                    let mut failed = 0u32;
                    let mut slowest = Duration::ZERO;
                    let started = tokio::time::Instant::now();
                    while started.elapsed() < Duration::from_secs(12) {
                        // A few concurrent callers per round, so batches form too.
                        let round_started = tokio::time::Instant::now();
                        let calls: Vec<_> = (0..4)
                            .map(|_| {
                                let client = client.clone();
                                tokio::spawn(async move { client.get_ts().await })
                            })
                            .collect();
                        let mut round = Vec::new();
                        for call in calls {
                            match call.await.unwrap() {
                                Ok(ts) => round.push(ts),
                                Err(PdClientError::Unavailable { .. }) => failed += 1,
                                Err(err) => panic!("unexpected error: {err}"),
                            }
                        }
                        slowest = slowest.max(round_started.elapsed());
                        round.sort();
                        for ts in round {
                            assert!(ts > last, "tso went backwards: {ts} after {last}");
                            last = ts;
                            served += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    // The bootstrap region survived the restarts.
                    assert_eq!(client.get_bootstrap_region().await.unwrap(), Some(region));
                    // The client waited out each outage (1 s) instead of failing.
                    assert!(slowest >= Duration::from_millis(500), "no outage seen: slowest round {slowest:?}");
                    (served, failed, client.tso_round_trips())
                });
                for skew_ms in [0i64, -5 * 60 * 1000] {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Handle::current().kill(pd.id());
                    disk.crash_keeping(0);
                    clock.set_offset_ms(skew_ms);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Handle::current().restart(pd.id());
                }
                let (served, failed, round_trips) = worker.await.unwrap();
                assert!(served > 100, "only {served} timestamps served");
                assert!(round_trips < u64::from(served + failed), "no batching: {round_trips} round trips");
                eprintln!("seed {seed}: {served} timestamps served, {failed} calls failed, {round_trips} round trips");
            });
        }
    }

    /// One member of a three-member PD at `10.0.1.{i}` (its disk and clock kept by the test).
    fn member_node(i: usize, members: Vec<String>, disk: SimEngine, clock: Clock) -> NodeHandle {
        let addr = members[i - 1].clone();
        Handle::current()
            .create_node()
            .name(format!("pd-{i}"))
            .ip(format!("10.0.1.{i}").parse().unwrap())
            .init(move || {
                let (disk, members, addr, clock) = (disk.clone(), members.clone(), addr.clone(), clock.clone());
                async move {
                    let listener = TcpListener::bind(addr.as_str()).await.expect("bind");
                    let config = PdConfig { members, ..PdConfig::new(addr) };
                    let result = run_pd(config, Arc::new(disk), clock, listener).await;
                    panic!("pd member stopped: {result:?}");
                }
            })
            .build()
    }

    /// A timestamp and when the call that got it was sent and answered.
    struct TimedTs {
        sent: tokio::time::Instant,
        answered: tokio::time::Instant,
        ts: Timestamp,
    }

    /// The TSO of a replicated PD is linearizable while its leader is cut off from the other
    /// members (its clients still reach it) and later killed with its disk crashing: a
    /// timestamp handed out after another was received is larger, whichever member served
    /// either, while the members' clocks disagree by seconds. A new leader that did not resume
    /// above the window its predecessor persisted through raft would break this (planted:
    /// the TSO not persisting its window fails here).
    #[test]
    fn replicated_tso_is_linearizable_across_leader_isolation_and_kill() {
        for seed in 1..4u64 {
            Runtime::with_seed_and_config(seed, madsim::Config::default()).block_on(async move {
                let members: Vec<String> = (1..=3).map(|i| format!("10.0.1.{i}:2379")).collect();
                let disks: Vec<SimEngine> = (0..3).map(|_| SimEngine::new()).collect();
                // The members' clocks disagree by seconds: a new leader whose clock is behind
                // must still start above everything its predecessor served.
                let clocks: Vec<Clock> = (0..3)
                    .map(|i| {
                        let clock = Clock::new();
                        clock.set_offset_ms(-2_500 * i as i64);
                        clock
                    })
                    .collect();
                let nodes: Vec<NodeHandle> = (1..=3)
                    .map(|i| member_node(i, members.clone(), disks[i - 1].clone(), clocks[i - 1].clone()))
                    .collect();
                let history = Arc::new(std::sync::Mutex::new(Vec::<TimedTs>::new()));
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let mut workers = Vec::new();
                for c in 0..6usize {
                    let node = Handle::current()
                        .create_node()
                        .name(format!("client-{c}"))
                        .ip(format!("10.0.2.{}", c + 1).parse().unwrap())
                        .build();
                    // Each client knows one member only, so while two members both think they
                    // lead, each has clients asking it (a client that could move on would
                    // stay with whichever answers).
                    let endpoints = vec![members[c % 3].clone()];
                    let (history, stop) = (history.clone(), stop.clone());
                    workers.push(node.spawn(async move {
                        let client = PdClient::new(endpoints);
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            let sent = tokio::time::Instant::now();
                            match client.get_ts().await {
                                Ok(ts) => {
                                    let answered = tokio::time::Instant::now();
                                    history.lock().unwrap().push(TimedTs { sent, answered, ts });
                                }
                                Err(PdClientError::Unavailable { .. }) => {}
                                Err(err) => panic!("unexpected error: {err}"),
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }));
                }
                let probe = Handle::current().create_node().name("probe").ip("10.0.3.1".parse().unwrap()).build();
                let leader = |members: Vec<String>| {
                    probe.spawn(async move {
                        let client = PdClient::new(members.clone());
                        loop {
                            if let Ok(m) = client.get_members().await {
                                return members.iter().position(|a| *a == m.leader).expect("leader is a member");
                            }
                        }
                    })
                };
                tokio::time::sleep(Duration::from_secs(4)).await;
                let before = history.lock().unwrap().len();
                assert!(before > 20, "seed {seed}: only {before} timestamps before any fault");
                // Cut the leader off from the other members, not from the clients.
                let first = leader(members.clone()).await.unwrap();
                let net = madsim::net::NetSim::current();
                for other in (0..3).filter(|o| *o != first) {
                    net.clog_link(nodes[first].id(), nodes[other].id());
                    net.clog_link(nodes[other].id(), nodes[first].id());
                }
                tokio::time::sleep(Duration::from_secs(4)).await;
                for other in (0..3).filter(|o| *o != first) {
                    net.unclog_link(nodes[first].id(), nodes[other].id());
                    net.unclog_link(nodes[other].id(), nodes[first].id());
                }
                let second = leader(members.clone()).await.unwrap();
                assert_ne!(first, second, "seed {seed}: the isolated leader kept its leadership");
                tokio::time::sleep(Duration::from_secs(2)).await;
                // Kill the current leader; its disk loses what it did not sync.
                let third = leader(members.clone()).await.unwrap();
                Handle::current().kill(nodes[third].id());
                disks[third].crash_keeping(0);
                tokio::time::sleep(Duration::from_secs(3)).await;
                Handle::current().restart(nodes[third].id());
                tokio::time::sleep(Duration::from_secs(3)).await;
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let stopped = tokio::time::Instant::now();
                for worker in workers {
                    worker.await.unwrap();
                }
                let mut history = std::mem::take(&mut *history.lock().unwrap());
                // Real-time order: any call sent after another was answered got a larger ts.
                history.sort_by_key(|t| t.answered);
                for op in &history {
                    let earlier = history.partition_point(|t| t.answered < op.sent);
                    if let Some(max) = history[..earlier].iter().map(|t| t.ts).max() {
                        assert!(op.ts > max, "seed {seed}: ts {} was handed out after {} had been", op.ts, max);
                    }
                }
                let after = history.iter().filter(|t| t.answered + Duration::from_secs(2) > stopped).count();
                assert!(after > 20, "seed {seed}: only {after} timestamps in the last two seconds");
                eprintln!("seed {seed}: {} timestamps, leaders {first} -> {second} -> killed {third}", history.len());
            });
        }
    }
}
