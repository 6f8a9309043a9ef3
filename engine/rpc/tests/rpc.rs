//! The RPC layer under abuse: many calls in flight, a malformed frame, an oversize frame
//! (both on real sockets and in the simulator), a flood of calls that never finish (real
//! sockets), a peer killed mid-call and a partition (in the simulator, where those faults
//! can be injected).

use keel_rpc::{serve, RpcClient, RpcError};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Serialize, Deserialize)]
enum Req {
    Echo(u64),
    Sleep(u64),
}

type Client = RpcClient<Req, u64>;

async fn handler(req: Req) -> u64 {
    match req {
        Req::Echo(n) => n,
        Req::Sleep(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ms
        }
    }
}

async fn start_server(addr: &str) -> String {
    let listener = TcpListener::bind(addr).await.expect("bind");
    let local = listener.local_addr().expect("local addr").to_string();
    tokio::spawn(serve(listener, handler));
    local
}

/// Sends raw bytes, then waits for the server to close the connection.
async fn send_raw_and_expect_close(addr: &str, bytes: &[u8]) {
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    raw.write_all(bytes).await.expect("write");
    raw.flush().await.expect("flush");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut buf)).await;
    match read {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        other => panic!("server should close a connection that sent a bad frame, got {other:?}"),
    }
}

async fn bad_frames_close_only_their_connection(addr: String) {
    let good: Client = RpcClient::new(addr.clone());
    assert_eq!(good.call(Req::Echo(1), Duration::from_secs(5)).await, Ok(1));
    // A frame of the right length whose body is not a valid request.
    send_raw_and_expect_close(&addr, &[0, 0, 0, 3, 0xff, 0xff, 0xff]).await;
    // A length prefix beyond the frame limit.
    send_raw_and_expect_close(&addr, &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]).await;
    // The server keeps serving, on the old connection and on new ones.
    assert_eq!(good.call(Req::Echo(2), Duration::from_secs(5)).await, Ok(2));
    let fresh: Client = RpcClient::new(addr);
    assert_eq!(fresh.call(Req::Echo(3), Duration::from_secs(5)).await, Ok(3));
}

async fn many_calls_in_flight(addr: String) {
    let client: Client = RpcClient::new(addr);
    let calls: Vec<_> = (0..200u64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let req = if i % 2 == 0 { Req::Echo(i) } else { Req::Sleep(i % 7) };
                (i, client.call(req, Duration::from_secs(5)).await)
            })
        })
        .collect();
    for call in calls {
        let (i, result) = call.await.expect("join");
        let want = if i % 2 == 0 { i } else { i % 7 };
        assert_eq!(result, Ok(want), "call {i}");
    }
}

#[cfg(not(madsim))]
fn block_on<F: Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(fut)
}

#[cfg(not(madsim))]
#[test]
fn real_sockets_survive_bad_frames_and_multiplex_calls() {
    block_on(async {
        let addr = start_server("127.0.0.1:0").await;
        many_calls_in_flight(addr.clone()).await;
        bad_frames_close_only_their_connection(addr).await;
    });
}

/// A connection that sends far more calls than the in-flight limit, none of which finishes,
/// never has more than `RPC_IN_FLIGHT_MAX` of them running: the server stops reading it.
#[cfg(not(madsim))]
#[test]
fn a_flooding_connection_is_held_to_the_in_flight_limit() {
    use keel_types::limits::RPC_IN_FLIGHT_MAX;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    block_on(async {
        let running = Arc::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        let counter = running.clone();
        tokio::spawn(serve(listener, move |_req: Req| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<u64>().await
            }
        }));
        let mut frames = Vec::new();
        for id in 0..(RPC_IN_FLIGHT_MAX as u64 + 1000) {
            // The wire shape of an envelope: (call id, body).
            let body = keel_types::codec::encode(&(id, Req::Echo(id))).expect("encode");
            frames.extend_from_slice(&(body.len() as u32).to_be_bytes());
            frames.extend_from_slice(&body);
        }
        let mut raw = TcpStream::connect(&addr).await.expect("connect");
        raw.write_all(&frames).await.expect("write");
        // Wait until the running count stops moving.
        let mut last = usize::MAX;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = running.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
        assert_eq!(running.load(Ordering::SeqCst), RPC_IN_FLIGHT_MAX);
        // Other connections are still served (a fresh server task per connection).
        let good: Client = RpcClient::new(addr);
        assert!(matches!(good.call(Req::Echo(1), Duration::from_millis(200)).await, Err(RpcError::Timeout { .. })));
        assert_eq!(running.load(Ordering::SeqCst), RPC_IN_FLIGHT_MAX + 1, "a new connection gets its own budget");
    });
}

#[cfg(not(madsim))]
#[test]
fn unreachable_peer_is_reported_as_not_sent() {
    block_on(async {
        // Bind then drop to find a port with no listener.
        let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
        let client: Client = RpcClient::new(addr);
        let err = client.call(Req::Echo(1), Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(err, RpcError::Unreachable { .. }), "{err:?}");
        assert!(!err.outcome_unknown());
    });
}

#[cfg(madsim)]
mod sim {
    use super::*;
    use madsim::net::NetSim;
    use madsim::runtime::{Handle, Runtime};

    fn sim<F: Future>(seed: u64, fut: impl FnOnce() -> F) -> F::Output {
        Runtime::with_seed_and_config(seed, madsim::Config::default()).block_on(fut())
    }

    const SERVER: &str = "10.0.0.1:9000";

    fn server_node() -> madsim::runtime::NodeHandle {
        Handle::current()
            .create_node()
            .name("server")
            .ip("10.0.0.1".parse().unwrap())
            .init(|| async {
                start_server(SERVER).await;
                std::future::pending::<()>().await
            })
            .build()
    }

    fn client_node() -> madsim::runtime::NodeHandle {
        Handle::current().create_node().name("client").ip("10.0.0.2".parse().unwrap()).build()
    }

    #[test]
    fn simulated_sockets_survive_bad_frames_and_multiplex_calls() {
        for seed in 1..5 {
            sim(seed, || async {
                let _server = server_node();
                tokio::time::sleep(Duration::from_millis(10)).await;
                client_node()
                    .spawn(async {
                        many_calls_in_flight(SERVER.into()).await;
                        bad_frames_close_only_their_connection(SERVER.into()).await;
                    })
                    .await
                    .unwrap();
            });
        }
    }

    #[test]
    fn peer_killed_mid_call_then_restarted() {
        for seed in 1..5 {
            sim(seed, || async {
                let server = server_node();
                let client_node = client_node();
                tokio::time::sleep(Duration::from_millis(10)).await;
                let client: Client = RpcClient::new(SERVER);
                let c = client.clone();
                let call = client_node.spawn(async move { c.call(Req::Sleep(2_000), Duration::from_secs(5)).await });
                tokio::time::sleep(Duration::from_millis(500)).await;
                Handle::current().kill(server.id());
                let err = call.await.unwrap().unwrap_err();
                assert!(err.outcome_unknown(), "a call cut by a crash has unknown outcome: {err:?}");
                // While the peer is down calls fail fast or time out; after restart they work.
                Handle::current().restart(server.id());
                tokio::time::sleep(Duration::from_millis(100)).await;
                let back = client_node
                    .spawn(async move { client.call(Req::Echo(9), Duration::from_secs(5)).await })
                    .await
                    .unwrap();
                assert_eq!(back, Ok(9));
            });
        }
    }

    #[test]
    fn partition_times_out_then_heals() {
        for seed in 1..5 {
            sim(seed, || async {
                let server = server_node();
                let client_node = client_node();
                tokio::time::sleep(Duration::from_millis(10)).await;
                let client: Client = RpcClient::new(SERVER);
                let c = client.clone();
                let first = client_node.spawn(async move { c.call(Req::Echo(1), Duration::from_secs(1)).await });
                assert_eq!(first.await.unwrap(), Ok(1));
                let net = NetSim::current();
                net.clog_link(client_node.id(), server.id());
                net.clog_link(server.id(), client_node.id());
                let c = client.clone();
                let cut = client_node.spawn(async move { c.call(Req::Echo(2), Duration::from_secs(1)).await });
                let err = cut.await.unwrap().unwrap_err();
                assert!(matches!(err, RpcError::Timeout { .. }), "{err:?}");
                net.unclog_link(client_node.id(), server.id());
                net.unclog_link(server.id(), client_node.id());
                let healed = client_node.spawn(async move {
                    // The stalled connection may need a moment to drain its backoff.
                    for _ in 0..20 {
                        if let Ok(v) = client.call(Req::Echo(3), Duration::from_secs(1)).await {
                            return Some(v);
                        }
                    }
                    None
                });
                assert_eq!(healed.await.unwrap(), Some(3));
            });
        }
    }
}
