//! A TCP proxy that can cut a network link, for the chaos tests.
//!
//! The harness puts one proxy on each direction between the coordinator and
//! a participant (the coordinator's channel to the participant, and the
//! participant's `Decisions` channel to the coordinator). A cut is one of:
//!
//! - [`Link::Blackhole`]: bytes stop flowing both ways; connections stay
//!   open and new ones are accepted but not forwarded, like a partition
//!   that drops packets. Only timeouts and keep-alives notice.
//! - [`Link::Reset`]: every connection is reset (RST) and new ones are
//!   reset at once, like a peer that is reachable but refuses.
//!
//! [`Link::Up`] heals the link; a blackholed connection then carries on
//! with the bytes it had queued, so a peer may get a request late (as after
//! a real partition with TCP retransmits). Unlike a real partition, a
//! blackholed link still completes new TCP handshakes (and a chunk already
//! read when the cut starts is still delivered). The proxy runs as tasks on the caller's
//! tokio runtime and stops when dropped.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The state of a proxied link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Up,
    Blackhole,
    Reset,
}

pub struct Proxy {
    addr: SocketAddr,
    link: watch::Sender<Link>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the proxy")?;
        let addr = listener.local_addr()?;
        let (link, watch) = watch::channel(Link::Up);
        let accept = tokio::spawn(accept_loop(listener, target, watch));
        Ok(Self { addr, link, accept })
    }

    /// The address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    pub fn link(&self) -> Link {
        *self.link.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Connections end with their watch channel (see `pump`).
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, link: watch::Receiver<Link>) {
    loop {
        let Ok((downstream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(connection(downstream, target, link.clone()));
    }
}

async fn connection(mut downstream: TcpStream, target: SocketAddr, mut link: watch::Receiver<Link>) {
    // A blackholed link holds the connection unanswered until it heals.
    let Some(()) = wait_up(&mut link).await else {
        reset(downstream);
        return;
    };
    let mut upstream = match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await {
        Ok(Ok(upstream)) => upstream,
        // The target is down: the client sees the refusal as a reset.
        _ => {
            reset(downstream);
            return;
        }
    };
    let _ = downstream.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    // Borrowed halves: dropping them neither closes nor half-closes.
    let end = {
        let (mut down_read, mut down_write) = downstream.split();
        let (mut up_read, mut up_write) = upstream.split();
        // Either direction ending (EOF, error, reset) ends the connection.
        tokio::select! {
            end = pump(&mut down_read, &mut up_write, link.clone()) => end,
            end = pump(&mut up_read, &mut down_write, link) => end,
        }
    };
    if end == End::Reset {
        reset(downstream);
        reset(upstream);
    }
}

/// Why a direction stopped.
#[derive(PartialEq, Eq)]
enum End {
    Closed,
    Reset,
}

/// Copies `from` to `to` while the link is up; pauses while it is
/// blackholed; returns when it is reset or either side closes.
async fn pump(from: &mut ReadHalf<'_>, to: &mut WriteHalf<'_>, mut link: watch::Receiver<Link>) -> End {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if wait_up(&mut link).await.is_none() {
            return End::Reset;
        }
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return End::Closed;
                }
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return End::Closed;
                    }
                }
            },
            // Re-check the link before reading further.
            changed = link.changed() => if changed.is_err() {
                return End::Reset;
            },
        }
    }
}

/// Waits while the link is blackholed; `None` once it is reset (or the
/// proxy is gone).
async fn wait_up(link: &mut watch::Receiver<Link>) -> Option<()> {
    loop {
        match *link.borrow_and_update() {
            Link::Up => return Some(()),
            Link::Reset => return None,
            Link::Blackhole => {}
        }
        link.changed().await.ok()?;
    }
}

/// Closes `stream` with RST (zero linger) instead of FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(stream: &mut TcpStream, within: Duration) -> std::io::Result<Option<Vec<u8>>> {
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(within, stream.read_exact(&mut buf)).await {
            Ok(read) => read.map(|_| Some(buf.to_vec())),
            Err(_) => Ok(None),
        }
    }

    #[tokio::test]
    async fn forwards_blackholes_heals_and_resets() {
        let proxy = Proxy::start(echo_server().await).await.expect("proxy");
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        let short = Duration::from_millis(300);
        assert_eq!(roundtrip(&mut stream, short).await.expect("up"), Some(b"ping".to_vec()));

        proxy.set(Link::Blackhole);
        assert_eq!(roundtrip(&mut stream, short).await.expect("blackholed"), None);
        proxy.set(Link::Up);
        // The queued bytes arrive once the link heals.
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut buf))
            .await
            .expect("healed in time")
            .expect("read");
        assert_eq!(&buf, b"ping");

        proxy.set(Link::Reset);
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .expect("the reset arrives");
        assert!(
            matches!(read, Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "the connection is reset, not closed: {read:?}"
        );
        let mut again = TcpStream::connect(proxy.addr()).await.expect("accepts");
        assert!(roundtrip(&mut again, short).await.is_err() || matches!(again.read(&mut buf).await, Ok(0) | Err(_)));

        proxy.set(Link::Up);
        let mut fresh = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert_eq!(
            roundtrip(&mut fresh, short).await.expect("up again"),
            Some(b"ping".to_vec())
        );
    }
}
