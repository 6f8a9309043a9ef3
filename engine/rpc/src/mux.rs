//! One port, two protocols: connections that open with the HTTP/2 client preface
//! (`PRI * HTTP/2.0…`, i.e. gRPC) are handed to the caller, every other connection is served
//! as keel's native framing. (As CockroachDB's cmux does.) Only the production build has it:
//! the simulator speaks the native protocol alone.

use crate::Message;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The first bytes of the HTTP/2 client connection preface. As a native frame's u32 length
/// prefix they would announce a frame of ~1.3 GB, far above `FRAME_SIZE_MAX_BYTES`, so no
/// valid native connection starts with them.
const HTTP2_PREFACE_PREFIX: &[u8; 4] = b"PRI ";
const _: () = assert!(u32::from_be_bytes(*HTTP2_PREFACE_PREFIX) as usize > keel_types::limits::FRAME_SIZE_MAX_BYTES);
/// How long a new connection may take to send its first four bytes.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between peeks while fewer than four bytes have arrived.
const PEEK_RETRY_INTERVAL: Duration = Duration::from_millis(1);

/// Accepts connections on `listener` forever: HTTP/2 ones go to `http2` (e.g. a tonic server's
/// incoming stream), the rest are served with `handler` like [`crate::serve`].
pub async fn serve_mux<Req, Resp, H, F>(listener: TcpListener, handler: H, http2: mpsc::Sender<TcpStream>)
where
    Req: Message,
    Resp: Message,
    H: Fn(Req) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    crate::server::accept_forever(listener, move |stream, peer| route(stream, peer, handler.clone(), http2.clone()))
        .await
}

async fn route<Req, Resp, H, F>(stream: TcpStream, peer: SocketAddr, handler: H, http2: mpsc::Sender<TcpStream>)
where
    Req: Message,
    Resp: Message,
    H: Fn(Req) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    match tokio::time::timeout(FIRST_BYTES_TIMEOUT, is_http2(&stream)).await {
        Ok(Ok(true)) => {
            if http2.send(stream).await.is_err() {
                tracing::warn!(%peer, "gRPC connection dropped: the gRPC server has stopped");
            }
        }
        Ok(Ok(false)) => crate::serve_connection(stream, peer, handler).await,
        Ok(Err(err)) => tracing::debug!(%err, %peer, "connection closed before its first bytes"),
        Err(_) => tracing::debug!(%peer, "connection sent nothing in time; closed"),
    }
}

/// Peeks (without consuming) until the first four bytes are known.
async fn is_http2(stream: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 4];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if n >= buf.len() || buf[..n] != HTTP2_PREFACE_PREFIX[..n] {
            return Ok(buf[..n] == HTTP2_PREFACE_PREFIX[..]);
        }
        tokio::time::sleep(PEEK_RETRY_INTERVAL).await;
    }
}
