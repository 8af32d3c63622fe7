//! The admin HTTP listener a binary serves when `--admin-listen` is set:
//! Prometheus metrics at `/metrics` (OpenMetrics text), and probes for an
//! orchestrator: `/livez` (the process answers) and `/readyz` (what its
//! gRPC health says: 200 while SERVING, 503 with the reason otherwise;
//! Kubernetes' own gRPC probes cannot speak TLS).
//!
//! Plain HTTP, meant for a private network (a Prometheus scraper, a
//! kubelet): it shows counts and durations, never a transaction's data or
//! id, and takes no command; operators act over gRPC with their
//! certificate. Its connections are bounded like every listener's
//! ([`crate::serve::bind_limited`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::warn;

use crate::serve::{self, Conn, Incoming};

/// Most open connections to the admin listener (a scraper or two, probes,
/// an operator's browser).
const ADMIN_CONNECTIONS: usize = 32;

/// A histogram of durations in seconds: 0.1 ms to about 15 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.5, 14))
}

/// What `/metrics` shows: a registry, with gauges brought up to date just
/// before each scrape.
pub trait Scrape: Send + Sync + 'static {
    fn registry(&self) -> &Registry;
    /// Sets the gauges read from the process's state (live transactions,
    /// pool use…); counters and histograms are kept as things happen.
    fn refresh(&self) {}
    /// Whether the process takes new work, as its gRPC health says; why
    /// not, if it does not.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Binds the admin listener at `addr` and serves it until `shutdown`
/// resolves; returns the address it got. `extra` adds routes (a status
/// page) beside `/metrics`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<dyn Scrape>,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<SocketAddr> {
    let (incoming, local) = serve::bind_limited("admin", addr, ADMIN_CONNECTIONS).await?;
    let ready = Arc::clone(&metrics);
    let app = extra
        .route("/metrics", get(move || async move { encode(metrics.as_ref()) }))
        .route("/livez", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                match ready.ready() {
                    Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
                }
            }),
        );
    tokio::spawn(async move {
        let served = axum::serve(Listener { incoming, local }, app)
            .with_graceful_shutdown(shutdown)
            .await;
        if let Err(err) = served {
            warn!(%local, "admin listener stopped: {err}");
        }
    });
    Ok(local)
}

/// The metrics in the OpenMetrics text format Prometheus reads.
fn encode(metrics: &dyn Scrape) -> Response {
    metrics.refresh();
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, metrics.registry()) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {err}")).into_response(),
    }
}

/// [`serve::bind_limited`]'s connections as axum's listener.
struct Listener {
    incoming: Incoming,
    local: SocketAddr,
}

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(conn)) => {
                    let peer = conn.peer();
                    return (conn, peer);
                }
                // Accept errors back off inside the stream.
                Some(Err(_)) => {}
                // The stream never ends while the listener is open.
                None => return std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
