//! What every tandem gRPC listener shares: TLS from the process's
//! [`Transport`], HTTP/2 keep-alive so dead peers are noticed, bounded
//! handshakes, and a bounded number of open connections with a per-host
//! share ([`bind`]). A connection that completed its handshake and then
//! idles is not closed here (tonic exposes no hook for it); the
//! coordinator recycles client connections after an hour.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
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

/// Waits up to `limit` for `live` (what is still in flight: transactions,
/// branches) to reach zero, looking every 20 ms; whether it did. A drain
/// waits this way before its listeners stop.
pub async fn wait_idle(limit: Duration, live: impl Fn() -> usize) -> bool {
    let until = tokio::time::Instant::now() + limit;
    while live() > 0 {
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

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
/// incoming connections and the address it got, bounded as in
/// [`bind_limited`].
pub async fn bind(
    transport: &Transport,
    what: &'static str,
    addr: SocketAddr,
    max_connections: usize,
) -> Result<(Incoming, SocketAddr), TlsError> {
    transport.check_listen(addr)?;
    bind_limited(what, addr, max_connections)
        .await
        .map_err(|e| TlsError::Invalid(e.to_string()))
}

/// Binds a listener and returns its incoming connections and the address
/// it got. At most `max_connections` are open at once: at the bound, new
/// ones wait in the kernel's backlog until one closes. One source address
/// holds at most half of them (more are closed at once), so a single host
/// cannot take every place.
pub async fn bind_limited(
    what: &'static str,
    addr: SocketAddr,
    max_connections: usize,
) -> io::Result<(Incoming, SocketAddr)> {
    let max_connections = max_connections.max(2);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| io::Error::new(e.kind(), format!("{what} listener address: {e}")))?;
    let state = Accept {
        listener,
        permits: Arc::new(Semaphore::new(max_connections)),
        per_source: Arc::new(Mutex::new(HashMap::new())),
        max_per_source: max_connections / 2,
        what,
        warned: None,
    };
    let incoming = futures::stream::unfold(state, |mut state| async move {
        let permit = Arc::clone(&state.permits).acquire_owned().await.ok()?;
        loop {
            match state.listener.accept().await {
                Ok((stream, peer)) => {
                    let Some(source) = SourceGuard::take(&state.per_source, peer.ip(), state.max_per_source) else {
                        // Closed at once: that host holds its share.
                        state.warn_once(&format!(
                            "{} holds its share of connections; closing a new one",
                            peer.ip()
                        ));
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    return Some((
                        Ok(Conn {
                            stream,
                            peer,
                            _permit: permit,
                            _source: source,
                        }),
                        state,
                    ));
                }
                Err(err) => {
                    state.warn_once(&format!("cannot accept connections ({err}); backing off"));
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
    /// Open connections by source address.
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_source: usize,
    what: &'static str,
    /// When a refusal was last logged (once per 10 s).
    warned: Option<Instant>,
}

impl Accept {
    fn warn_once(&mut self, what: &str) {
        if self.warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
            warn!(listener = self.what, "{what}");
            self.warned = Some(Instant::now());
        }
    }
}

/// A connection's place in its source address's share.
struct SourceGuard {
    per_source: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl SourceGuard {
    fn take(per_source: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut counts = per_source.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Self {
            per_source: Arc::clone(per_source),
            ip,
        })
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut counts = self
            .per_source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// An accepted connection; its place under the bounds is freed when it
/// closes.
pub struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    _source: SourceGuard,
}

impl Conn {
    /// The address the connection came from.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
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
