//! Bad input over the wire against live `keel server` processes: a proptest sends random
//! bytes, random and truncated (or lying) length-prefixed frames, garbage after the HTTP/2
//! preface (the gRPC side of the same port), floods of calls whose replies are never read,
//! and well-formed but hostile requests (oversize keys and batches, scan limits beyond the
//! maximum, unknown region ids, stale epochs, undecodable raft messages). Meanwhile a
//! well-behaved client writes and reads on its own thread: every one of its calls must
//! succeed, no process may die, and the stores' resident memory must stay bounded.

mod common;

use common::Cluster;
use keel_client::RawClient;
use keel_rpc::RpcClient;
use keel_types::limits::{BATCH_KEYS_MAX, KEY_SIZE_MAX_BYTES, SCAN_LIMIT_MAX};
use keel_types::proto::store::{Context, RaftEnvelope, RawCommand, StoreRequest, StoreResult};
use keel_types::{Peer, PeerRole, RegionEpoch};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::RefCell;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Hostile cases per run.
const CASES: u32 = 96;
/// How much a store's resident memory may grow over the whole run (generous: the healthy
/// client's writes and the allocator's caches grow it a little; a leak per hostile frame or
/// an unbounded queue grows it far more).
const RSS_GROWTH_MAX_BYTES: u64 = 256 * 1024 * 1024;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The HTTP/2 client connection preface: what a gRPC client sends first.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Calls one flooding connection sends without reading a reply.
const FLOOD_CALLS: u64 = 8_000;

/// One hostile input.
#[derive(Clone, Debug)]
enum Input {
    /// Bytes straight onto a fresh connection.
    Bytes(Vec<u8>),
    /// A length prefix (possibly lying about the length) and a body.
    Frame { claimed_len: u32, body: Vec<u8> },
    /// The HTTP/2 preface (possibly cut short), then garbage.
    Http2 { preface_len: usize, garbage: Vec<u8> },
    /// Many valid reads on one connection whose replies are never read.
    Flood { region_id: u64 },
    /// A well-formed request that must be refused (or, for raft messages, ignored).
    Request(Hostile),
}

#[derive(Clone, Debug)]
enum Hostile {
    OversizeKey { extra: usize, region_id: u64 },
    OversizeBatch { region_id: u64 },
    ScanLimit { limit: u32, region_id: u64 },
    WrongRegion { region_id: u64, version: u64, conf_ver: u64 },
    RaftGarbage { region_id: u64, message: Vec<u8> },
}

fn input() -> impl Strategy<Value = Input> {
    let region = prop_oneof![Just(0u64), 1u64..64, any::<u64>()];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048).prop_map(Input::Bytes),
        (prop_oneof![0u32..64, any::<u32>()], proptest::collection::vec(any::<u8>(), 0..512))
            .prop_map(|(claimed_len, body)| Input::Frame { claimed_len, body }),
        (0..=HTTP2_PREFACE.len(), proptest::collection::vec(any::<u8>(), 0..1024))
            .prop_map(|(preface_len, garbage)| Input::Http2 { preface_len, garbage }),
        region.clone().prop_map(|region_id| Input::Flood { region_id }),
        (1usize..70_000, region.clone())
            .prop_map(|(extra, region_id)| Input::Request(Hostile::OversizeKey { extra, region_id })),
        region.clone().prop_map(|region_id| Input::Request(Hostile::OversizeBatch { region_id })),
        ((SCAN_LIMIT_MAX as u32 + 1)..=u32::MAX, region.clone())
            .prop_map(|(limit, region_id)| Input::Request(Hostile::ScanLimit { limit, region_id })),
        (region.clone(), any::<u64>(), any::<u64>()).prop_map(|(region_id, version, conf_ver)| Input::Request(
            Hostile::WrongRegion { region_id, version, conf_ver }
        )),
        (region, proptest::collection::vec(any::<u8>(), 0..256))
            .prop_map(|(region_id, message)| Input::Request(Hostile::RaftGarbage { region_id, message })),
    ]
}

fn ctx(region_id: u64, version: u64, conf_ver: u64) -> Context {
    Context { region_id, region_epoch: RegionEpoch { version, conf_ver }, peer: None }
}

/// The request for a hostile case, and whether the store must refuse it.
fn request(h: &Hostile) -> (StoreRequest, bool) {
    match h {
        Hostile::OversizeKey { extra, region_id } => {
            let key = vec![b'k'; KEY_SIZE_MAX_BYTES + extra];
            (
                StoreRequest::Raw {
                    ctx: ctx(*region_id, 1, 1),
                    cmd: RawCommand::Put { key, value: vec![1], ttl_ms: 0 },
                },
                true,
            )
        }
        Hostile::OversizeBatch { region_id } => {
            let pairs = (0..=BATCH_KEYS_MAX as u32).map(|i| (i.to_be_bytes().to_vec(), vec![])).collect();
            (
                StoreRequest::Raw { ctx: ctx(*region_id, 1, 1), cmd: RawCommand::BatchPut { pairs, ttls_ms: vec![] } },
                true,
            )
        }
        Hostile::ScanLimit { limit, region_id } => {
            let cmd =
                RawCommand::Scan { start_key: vec![], end_key: vec![], limit: *limit, reverse: false, key_only: false };
            (StoreRequest::Raw { ctx: ctx(*region_id, 1, 1), cmd }, true)
        }
        Hostile::WrongRegion { region_id, version, conf_ver } => {
            let cmd = RawCommand::Put { key: b"hostile".to_vec(), value: b"x".to_vec(), ttl_ms: 0 };
            // Region ids PD hands out start small and epochs stay small in this test: past
            // 1000 no such region or epoch exists.
            let must_refuse = *region_id > 1000 || *version > 1000;
            (StoreRequest::Raw { ctx: ctx(*region_id, *version, *conf_ver), cmd }, must_refuse)
        }
        Hostile::RaftGarbage { region_id, message } => {
            // A peer of no store in the cluster: whatever `message` decodes to, it must be
            // dropped, never stepped into a real replica.
            let peer = Peer { id: 999_999, store_id: 999_999, role: PeerRole::Voter };
            let env = RaftEnvelope {
                region_id: *region_id,
                from_peer: peer,
                to_peer: peer,
                region_epoch: RegionEpoch { version: 1, conf_ver: 1 },
                start_key: vec![],
                end_key: vec![],
                message: message.clone(),
                check: None,
                extra: None,
            };
            (StoreRequest::Raft(vec![env]), false)
        }
    }
}

/// `FLOOD_CALLS` length-prefixed `(call id, Get)` envelopes, the native wire shape.
fn flood_frames(region_id: u64) -> Vec<u8> {
    let mut frames = Vec::new();
    for id in 0..FLOOD_CALLS {
        let req = StoreRequest::Raw { ctx: ctx(region_id, 1, 1), cmd: RawCommand::Get { key: b"flood".to_vec() } };
        let body = keel_types::codec::encode(&(id, req)).expect("encode");
        frames.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frames.extend_from_slice(&body);
    }
    frames
}

/// Writes `bytes` on a fresh connection and closes it (the server may close first).
fn send_and_close(addr: &str, bytes: &[u8]) {
    if let Ok(mut s) = TcpStream::connect(addr) {
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(bytes);
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The well-behaved client: writes and reads back distinct keys until told to stop.
/// Returns how many round trips succeeded, or the first failure.
async fn healthy_client(client: RawClient, stop: Arc<AtomicBool>) -> Result<u64, String> {
    let mut done = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("healthy-{done}").into_bytes();
        client.put(key.clone(), b"ok".to_vec()).await.map_err(|e| format!("put #{done}: {e}"))?;
        let got = client.get(key).await.map_err(|e| format!("get #{done}: {e}"))?;
        if got.as_deref() != Some(&b"ok"[..]) {
            return Err(format!("get #{done} read {got:?}"));
        }
        done += 1;
    }
    Ok(done)
}

#[test]
fn hostile_bytes_and_requests_never_stop_a_live_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = Cluster::start(dir.path(), 3, &[]);
    cluster.wait_ready();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let client = rt.block_on(RawClient::connect(vec![cluster.pd_addr.clone()])).expect("connect");
    let stop = Arc::new(AtomicBool::new(false));
    let healthy = rt.spawn(healthy_client(client, stop.clone()));
    let rpcs: Vec<RpcClient<StoreRequest, StoreResult>> =
        cluster.store_addrs.iter().map(|a| RpcClient::new(a.clone())).collect();
    let pids: Vec<u32> = cluster.stores.iter().map(|p| p.child.as_ref().expect("running").id()).collect();
    let rss_start: Vec<u64> = pids.iter().map(|p| rss_bytes(*p)).collect();

    let addrs = cluster.store_addrs.clone();
    // The runner's closure is `Fn`; checking whether a child exited needs `&mut`.
    let stores = RefCell::new(&mut cluster.stores);
    let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
    let result = runner.run(&(input(), 0usize..3), |(input, store)| {
        let addr = &addrs[store];
        match &input {
            Input::Bytes(bytes) => send_and_close(addr, bytes),
            Input::Frame { claimed_len, body } => {
                let mut bytes = claimed_len.to_be_bytes().to_vec();
                bytes.extend_from_slice(body);
                send_and_close(addr, &bytes);
            }
            Input::Http2 { preface_len, garbage } => {
                let mut bytes = HTTP2_PREFACE[..*preface_len].to_vec();
                bytes.extend_from_slice(garbage);
                send_and_close(addr, &bytes);
            }
            Input::Flood { region_id } => send_and_close(addr, &flood_frames(*region_id)),
            Input::Request(h) => {
                let (req, must_refuse) = request(h);
                match rt.block_on(rpcs[store].call(req, CALL_TIMEOUT)) {
                    Ok(Ok(_)) if must_refuse => {
                        return Err(TestCaseError::fail(format!("store accepted hostile {h:?}")));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(TestCaseError::fail(format!("no answer to {h:?}: {e}"))),
                }
            }
        }
        for (i, p) in stores.borrow_mut().iter_mut().enumerate() {
            let child = p.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                return Err(TestCaseError::fail(format!("store {i} exited ({status}) after {input:?}")));
            }
        }
        if healthy.is_finished() {
            return Err(TestCaseError::fail(format!("the healthy client stopped after {input:?}")));
        }
        Ok(())
    });
    stop.store(true, Ordering::Relaxed);
    let healthy = rt.block_on(healthy).expect("healthy client task");
    if result.is_err() || healthy.is_err() {
        let kept = dir.keep();
        panic!("hostile run: {result:?}; healthy client: {healthy:?}; logs in {}", kept.display());
    }
    let round_trips = healthy.expect("checked");
    assert!(round_trips > 0, "the healthy client never completed a round trip");
    for (i, pid) in pids.iter().enumerate() {
        let grown = rss_bytes(*pid).saturating_sub(rss_start[i]);
        assert!(grown < RSS_GROWTH_MAX_BYTES, "store {i} grew by {grown} bytes of resident memory");
    }
    // Every store still answers a fresh connection.
    for (i, rpc) in rpcs.iter().enumerate() {
        let req = StoreRequest::Raw { ctx: ctx(u64::MAX, 1, 1), cmd: RawCommand::Get { key: b"k".to_vec() } };
        assert!(rt.block_on(rpc.call(req, CALL_TIMEOUT)).is_ok(), "store {i} stopped answering");
    }
    eprintln!("hostile: {CASES} cases; the healthy client completed {round_trips} put+get round trips");
}
