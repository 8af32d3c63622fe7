//! What every tandem gRPC listener shares: TLS from the process's
//! [`Transport`], HTTP/2 keep-alive so dead peers are noticed, bounded
//! handshakes, and a bounded number of open connections ([`bind`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::Server;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::warn;

use crate::tls::{TlsError, Transport};

/// How often an HTTP/2 connection is pinged, and how long a ping may go
/// unanswered before the connection is closed.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server builder for one listener. `require_client_cert`: peers must
/// present a certificate the cluster CA signed (see
/// [`Transport::server_config`]).
pub fn server(transport: &Transport, require_client_cert: bool) -> Result<Server, TlsError> {
    let builder = Server::builder()
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    match transport.server_config(require_client_cert) {
        Some(tls) => builder
            .tls_config(tls)
            .map_err(|e| TlsError::Invalid(format!("TLS settings: {e}"))),
        None => Ok(builder),
    }
}

/// What an interceptor put into a request's extensions (who the caller
/// is); its absence is a bug, reported as INTERNAL rather than a panic.
pub fn extension<T: Clone + Send + Sync + 'static, R>(request: &tonic::Request<R>) -> Result<T, tonic::Status> {
    request
        .extensions()
        .get::<T>()
        .cloned()
        .ok_or_else(|| tonic::Status::internal("request reached a handler without authentication"))
}

/// How long accepting pauses after an error (out of file descriptors):
/// retrying at once would spin a core while nothing can be accepted.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Incoming connections of a listener.
pub type Incoming = Pin<Box<dyn Stream<Item = Result<Conn, io::Error>> + Send>>;

/// Binds a listener (refusing plaintext off loopback) and returns its
/// incoming connections and the address it got. At most
/// `max_connections` are open at once: at the bound, new ones wait in the
/// kernel's backlog until one closes.
pub async fn bind(
    transport: &Transport,
    what: &'static str,
    addr: SocketAddr,
    max_connections: usize,
) -> Result<(Incoming, SocketAddr), TlsError> {
    transport.check_listen(addr)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| TlsError::Invalid(format!("cannot listen on {addr} ({what}): {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| TlsError::Invalid(format!("{what} listener address: {e}")))?;
    let state = Accept {
        listener,
        permits: Arc::new(Semaphore::new(max_connections.max(1))),
        what,
        warned: None,
    };
    let incoming = futures::stream::unfold(state, |mut state| async move {
        let permit = Arc::clone(&state.permits).acquire_owned().await.ok()?;
        loop {
            match state.listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((
                        Ok(Conn {
                            stream,
                            _permit: permit,
                        }),
                        state,
                    ));
                }
                Err(err) => {
                    if state.warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                        warn!(listener = state.what, error = %err, "cannot accept connections; backing off");
                        state.warned = Some(Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    });
    Ok((Box::pin(incoming), local))
}

struct Accept {
    listener: TcpListener,
    /// One per open connection.
    permits: Arc<Semaphore>,
    what: &'static str,
    /// When an accept error was last logged (once per 10 s).
    warned: Option<Instant>,
}

/// An accepted connection; its place under the bound is freed when it
/// closes.
pub struct Conn {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for Conn {
    // What tonic's TLS layer expects, so `Request::peer_certs` works.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
