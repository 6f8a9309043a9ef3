//! The calling side: a lazily (re)connected connection per peer address, calls matched to
//! replies by id, and errors that say whether the call may have taken effect.

use crate::codec::{framing, write_frames, Envelope};
use crate::Message;
use bytes::Bytes;
use futures::StreamExt;
use keel_types::codec::{decode, encode};
use keel_types::trace;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};

/// Requests queued for one connection's writer before callers wait.
const REQUESTS_QUEUED_MAX: usize = 1024;

/// Why a call did not return a response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The request was never sent (no connection could be made): it certainly did not
    /// take effect, so retrying is always safe.
    #[error("{addr} unreachable: {reason}")]
    Unreachable {
        /// Peer address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The request was sent but no reply came in time: it may or may not have taken effect.
    #[error("{addr}: call timed out after {after_ms} ms (outcome unknown)")]
    Timeout {
        /// Peer address.
        addr: String,
        /// The timeout that expired.
        after_ms: u64,
    },
    /// The connection broke after the request was sent: outcome unknown.
    #[error("{addr}: connection lost during call (outcome unknown)")]
    ConnectionLost {
        /// Peer address.
        addr: String,
    },
    /// The request could not be encoded (a bug or an oversize request); nothing was sent.
    #[error("request could not be encoded: {0}")]
    Encode(String),
}

impl RpcError {
    /// True when the call may have taken effect on the peer.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, RpcError::Timeout { .. } | RpcError::ConnectionLost { .. })
    }
}

/// Calls awaiting replies, by call id. A BTreeMap, not a HashMap: when the connection drops,
/// `clear` wakes every waiter, and the wake order must not depend on the process's hash seed
/// (the simulator re-runs a seed in one process to check determinism).
type Pending<Resp> = Arc<Mutex<BTreeMap<u64, oneshot::Sender<Resp>>>>;

/// One live connection: a writer queue, the calls awaiting replies, and its two tasks.
struct Connection<Resp> {
    tx: mpsc::Sender<Bytes>,
    pending: Pending<Resp>,
    closed: Arc<AtomicBool>,
    replies: Arc<AtomicU64>,
    tasks: [JoinHandle<()>; 2],
}

impl<Resp> Drop for Connection<Resp> {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A client for one peer address. Cheap to clone; clones share the connection.
pub struct RpcClient<Req, Resp> {
    inner: Arc<Inner<Resp>>,
    _req: PhantomData<fn(Req)>,
}

struct Inner<Resp> {
    addr: String,
    next_id: AtomicU64,
    conn: tokio::sync::Mutex<Option<Arc<Connection<Resp>>>>,
}

impl<Req, Resp> Clone for RpcClient<Req, Resp> {
    fn clone(&self) -> Self {
        RpcClient { inner: self.inner.clone(), _req: PhantomData }
    }
}

impl<Req: Message, Resp: Message> RpcClient<Req, Resp> {
    /// A client for `addr` ("ip:port"). Connects on first call.
    pub fn new(addr: impl Into<String>) -> Self {
        RpcClient {
            inner: Arc::new(Inner {
                addr: addr.into(),
                next_id: AtomicU64::new(1),
                conn: tokio::sync::Mutex::new(None),
            }),
            _req: PhantomData,
        }
    }

    /// The peer address.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Sends `req` and waits at most `timeout` for the whole call, connecting first if needed.
    pub async fn call(&self, req: Req, timeout: Duration) -> Result<Resp, RpcError> {
        self.start(req, timeout).await?.reply().await
    }

    /// Queues `req` on the connection (connecting first if needed) and returns the call
    /// without waiting for its reply. Requests started one after another from one task go on
    /// the wire in that order, so a caller can keep several calls in flight on one
    /// connection and still have them arrive in order. `timeout` bounds the whole call.
    pub async fn start(&self, req: Req, timeout: Duration) -> Result<PendingCall<Req, Resp>, RpcError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = self.connection(deadline).await?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = encode(&Envelope { id, body: req }).map_err(|e| RpcError::Encode(e.to_string()))?;
        let (reply_tx, reply_rx) = oneshot::channel();
        conn.pending.lock().expect("pending lock").insert(id, reply_tx);
        let replies_before = conn.replies.load(Ordering::Relaxed);
        if conn.tx.send(Bytes::from(bytes)).await.is_err() {
            conn.pending.lock().expect("pending lock").remove(&id);
            self.drop_connection(&conn).await;
            return Err(RpcError::ConnectionLost { addr: self.inner.addr.clone() });
        }
        Ok(PendingCall { client: self.clone(), conn, id, reply_rx, replies_before, deadline, timeout })
    }

    async fn drop_connection(&self, conn: &Arc<Connection<Resp>>) {
        let mut slot = self.inner.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *slot = None;
        }
    }

    async fn connection(&self, deadline: tokio::time::Instant) -> Result<Arc<Connection<Resp>>, RpcError> {
        let addr = &self.inner.addr;
        let mut slot = match tokio::time::timeout(remaining(deadline), self.inner.conn.lock()).await {
            Ok(slot) => slot,
            Err(_) => return Err(RpcError::Unreachable { addr: addr.clone(), reason: "connect timed out".into() }),
        };
        if let Some(conn) = slot.as_ref() {
            if !conn.closed.load(Ordering::Relaxed) {
                return Ok(conn.clone());
            }
        }
        *slot = None;
        let stream = match tokio::time::timeout(remaining(deadline), TcpStream::connect(addr.as_str())).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                trace::record("rpc.unreachable", addr.as_bytes());
                return Err(RpcError::Unreachable { addr: addr.clone(), reason: err.to_string() });
            }
            Err(_) => {
                trace::record("rpc.unreachable", addr.as_bytes());
                return Err(RpcError::Unreachable { addr: addr.clone(), reason: "connect timed out".into() });
            }
        };
        let conn = Arc::new(Connection::start(stream, addr.clone()));
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

/// A request that is on its way: [`PendingCall::reply`] waits for the answer.
pub struct PendingCall<Req, Resp> {
    client: RpcClient<Req, Resp>,
    conn: Arc<Connection<Resp>>,
    id: u64,
    reply_rx: oneshot::Receiver<Resp>,
    replies_before: u64,
    deadline: tokio::time::Instant,
    timeout: Duration,
}

impl<Req: Message, Resp: Message> PendingCall<Req, Resp> {
    /// Waits for the reply until the call's deadline.
    pub async fn reply(self) -> Result<Resp, RpcError> {
        let PendingCall { client, conn, id, reply_rx, replies_before, deadline, timeout } = self;
        let addr = &client.inner.addr;
        match tokio::time::timeout(remaining(deadline), reply_rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => {
                client.drop_connection(&conn).await;
                trace::record("rpc.lost", addr.as_bytes());
                Err(RpcError::ConnectionLost { addr: addr.clone() })
            }
            Err(_) => {
                conn.pending.lock().expect("pending lock").remove(&id);
                // Nothing at all came back on this connection while we waited: treat it as
                // dead, so a peer that restarted behind a partition gets a fresh connection.
                if conn.replies.load(Ordering::Relaxed) == replies_before {
                    client.drop_connection(&conn).await;
                }
                trace::record("rpc.timeout", addr.as_bytes());
                Err(RpcError::Timeout { addr: addr.clone(), after_ms: timeout.as_millis() as u64 })
            }
        }
    }
}

/// Time left until `deadline` (madsim has no `timeout_at`, so every wait is a `timeout`).
fn remaining(deadline: tokio::time::Instant) -> Duration {
    deadline.saturating_duration_since(tokio::time::Instant::now())
}

impl<Resp: Message> Connection<Resp> {
    fn start(stream: TcpStream, addr: String) -> Self {
        #[cfg(not(madsim))]
        let _ = stream.set_nodelay(true);
        let (read_half, write_half) = tokio::io::split(stream);
        let pending: Pending<Resp> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let replies = Arc::new(AtomicU64::new(0));
        let (tx, mut rx) = mpsc::channel::<Bytes>(REQUESTS_QUEUED_MAX);

        let writer_closed = closed.clone();
        let writer = tokio::spawn(async move {
            let mut sink = FramedWrite::new(write_half, framing());
            let _ = write_frames(&mut sink, &mut rx).await;
            writer_closed.store(true, Ordering::Relaxed);
        });

        let reader_pending = pending.clone();
        let reader_closed = closed.clone();
        let reader_replies = replies.clone();
        let reader = tokio::spawn(async move {
            let mut frames = FramedRead::new(read_half, framing());
            while let Some(Ok(frame)) = frames.next().await {
                trace::record("rpc.reply", &frame);
                let envelope: Envelope<Resp> = match decode(&frame) {
                    Ok(envelope) => envelope,
                    Err(err) => {
                        tracing::error!(%err, %addr, "malformed rpc reply; closing connection");
                        break;
                    }
                };
                reader_replies.fetch_add(1, Ordering::Relaxed);
                let waiter = reader_pending.lock().expect("pending lock").remove(&envelope.id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(envelope.body);
                }
            }
            reader_closed.store(true, Ordering::Relaxed);
            // Dropping the waiters tells every caller the connection is gone.
            reader_pending.lock().expect("pending lock").clear();
        });
        Connection { tx, pending, closed, replies, tasks: [writer, reader] }
    }
}
