//! What every tandem gRPC listener shares: TLS from the process's
//! [`Transport`], HTTP/2 keep-alive so dead peers are noticed, and bounded
//! handshakes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

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

/// Binds a listener (refusing plaintext off loopback) and returns its
/// incoming connections and the address it got.
pub async fn bind(transport: &Transport, what: &str, addr: SocketAddr) -> Result<(TcpIncoming, SocketAddr), TlsError> {
    transport.check_listen(addr)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| TlsError::Invalid(format!("cannot listen on {addr} ({what}): {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| TlsError::Invalid(format!("{what} listener address: {e}")))?;
    Ok((TcpIncoming::from(listener).with_nodelay(Some(true)), local))
}
