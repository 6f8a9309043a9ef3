//! The serving side: one reader and one writer task per connection, one task per call, so a
//! slow call never blocks the others on its connection. At most `RPC_IN_FLIGHT_MAX` calls of
//! one connection run at once: beyond that the reader stops reading, so a client that floods
//! requests (or never reads its replies) is held back by TCP instead of growing the server's
//! memory without bound.

use crate::codec::{framing, write_frames, Envelope};
use crate::Message;
use bytes::Bytes;
use futures::StreamExt;
use keel_types::codec::{decode, encode};
use keel_types::limits::RPC_IN_FLIGHT_MAX;
use keel_types::trace;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};

/// Responses queued for one connection's writer before handlers wait.
const RESPONSES_QUEUED_MAX: usize = 1024;

/// Accepts connections on `listener` forever and serves each with `handler`.
///
/// `handler` gets every decoded request and its answer is sent back under the same call id.
/// A connection that sends a malformed or oversize frame is closed (and logged); the
/// listener and every other connection keep serving.
pub async fn serve<Req, Resp, H, F>(listener: TcpListener, handler: H)
where
    Req: Message,
    Resp: Message,
    H: Fn(Req) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    accept_forever(listener, move |stream, peer| serve_connection(stream, peer, handler.clone())).await
}

/// Pause after a failed accept (out of file descriptors, say) before accepting again.
const ACCEPT_RETRY_INTERVAL: Duration = Duration::from_millis(10);

/// The accept loop of [`serve`] and `serve_mux`: spawns `serve(stream, peer)` for every
/// connection `listener` accepts, forever; a failed accept is logged and retried.
pub(crate) async fn accept_forever<S, F>(listener: TcpListener, serve: S)
where
    S: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(serve(stream, peer));
            }
            Err(err) => {
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY_INTERVAL).await;
            }
        }
    }
}

/// Serves one accepted connection until the peer closes it or sends a bad frame.
pub async fn serve_connection<Req, Resp, H, F>(stream: TcpStream, peer: SocketAddr, handler: H)
where
    Req: Message,
    Resp: Message,
    H: Fn(Req) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    #[cfg(not(madsim))]
    let _ = stream.set_nodelay(true);
    let (read_half, write_half) = tokio::io::split(stream);
    let mut frames = FramedRead::new(read_half, framing());
    let mut sink = FramedWrite::new(write_half, framing());
    let (tx, mut rx) = mpsc::channel::<Bytes>(RESPONSES_QUEUED_MAX);
    let in_flight = Arc::new(Semaphore::new(RPC_IN_FLIGHT_MAX));
    let writer = tokio::spawn(async move {
        if let Err(err) = write_frames(&mut sink, &mut rx).await {
            tracing::debug!(%err, %peer, "rpc write failed; closing connection");
        }
    });
    loop {
        // Taken before reading the next frame: a connection at its limit is not read from.
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        let frame = match frames.next().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(err)) => {
                tracing::error!(%err, %peer, "bad rpc frame; closing connection");
                break;
            }
        };
        trace::record("rpc.req", &frame);
        let envelope: Envelope<Req> = match decode(&frame) {
            Ok(envelope) => envelope,
            Err(err) => {
                tracing::error!(%err, %peer, "malformed rpc request; closing connection");
                break;
            }
        };
        // The handler is called here, in frame order, and only its future runs as a task:
        // whatever a handler does before its first await (the store queueing raft batches)
        // happens in the order the peer sent the requests.
        let reply = handler(envelope.body);
        let tx = tx.clone();
        tokio::spawn(async move {
            let body = reply.await;
            match encode(&Envelope { id: envelope.id, body }) {
                Ok(bytes) => {
                    let _ = tx.send(Bytes::from(bytes)).await;
                }
                Err(err) => tracing::error!(%err, "response could not be encoded"),
            }
            drop(permit);
        });
    }
    writer.abort();
}
