//! Running a tonic service over connections accepted elsewhere (keel's listener routes the
//! HTTP/2 ones here; see `keel_rpc::serve_mux`).

use std::convert::Infallible;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::Service;
use tonic::server::NamedService;

/// Connections queued for the gRPC server before the listener waits.
pub const GRPC_CONNECTIONS_QUEUED_MAX: usize = 64;

/// Serves `svc` (a generated `…Server`) on every connection that arrives on `incoming`, until
/// the sender side is dropped.
pub async fn serve_grpc<S>(incoming: mpsc::Receiver<TcpStream>, svc: S)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + NamedService + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let stream = ReceiverStream::new(incoming).map(Ok::<_, std::io::Error>);
    if let Err(err) = tonic::transport::Server::builder().serve_with_incoming(svc, stream).await {
        tracing::error!(%err, service = S::NAME, "gRPC server stopped");
    }
}
