//! `tandem-participant`: serves one MySQL/MariaDB to a tandem coordinator.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tandem_common::telemetry::{self, TraceArgs};
use tokio_util::sync::CancellationToken;

/// Wraps one MySQL/MariaDB and votes in tandem's two-phase commit through XA.
#[derive(Debug, Parser)]
#[command(name = "tandem-participant", version)]
struct Args {
    /// This participant's name, as the coordinator knows it; also the XA
    /// branch qualifier (letters, digits, '-', '_', '.', ':'; at most 64).
    #[arg(long, env = "TANDEM_NAME")]
    name: String,
    /// Address for the gRPC server.
    #[arg(long, env = "TANDEM_LISTEN", default_value = "127.0.0.1:7501")]
    listen: SocketAddr,
    /// Address of the admin HTTP listener: Prometheus metrics at
    /// /metrics. Plain HTTP, no authentication, no transaction data:
    /// keep it on a private network [default: none, not served].
    #[arg(long, env = "TANDEM_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// The database, e.g. mysql://user:pass@127.0.0.1:3306/app or
    /// mysql://root@localhost/app?socket=/run/mysqld/mysqld.sock
    #[arg(long, env = "TANDEM_MYSQL_URL")]
    mysql_url: String,
    /// A coordinator that may run branches here, as NAME=URL of its
    /// internal API (e.g. tc=https://10.0.0.10:7600); only callers whose
    /// certificate carries NAME.coordinator.tandem are served, and each is
    /// asked how the in-doubt branches it issued ended. Repeatable; the
    /// environment takes a comma-separated list.
    #[arg(long = "coordinator", env = "TANDEM_COORDINATORS", value_delimiter = ',', value_parser = parse_coordinator)]
    coordinators: Vec<(String, String)>,
    #[command(flatten)]
    trace: TraceArgs,
    #[command(flatten)]
    tls: tandem_common::tls::TlsArgs,
    /// Longest transaction deadline a coordinator may ask for.
    #[arg(long, env = "TANDEM_MAX_TIMEOUT_MS", default_value_t = 600_000)]
    max_timeout_ms: u64,
    /// Serve a database that has tables that cannot roll back (MyISAM,
    /// Aria, sequences, …): writes to them survive aborted transactions.
    #[arg(long, env = "TANDEM_ALLOW_NON_TRANSACTIONAL")]
    allow_non_transactional: bool,
    /// Most statements one branch may run.
    #[arg(long, env = "TANDEM_MAX_STATEMENTS_PER_BRANCH", default_value_t = 10_000)]
    max_statements_per_branch: u64,
    /// Most bytes of results one branch may return.
    #[arg(long, env = "TANDEM_MAX_RESULT_BYTES", default_value_t = 64 << 20)]
    max_result_bytes: u64,
    /// Most rows of results one branch may return.
    #[arg(long, env = "TANDEM_MAX_RESULT_ROWS", default_value_t = 1_000_000)]
    max_result_rows: u64,
    /// Most MySQL connections, hence most concurrent branches.
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS", default_value_t = 64)]
    max_connections: u32,
    /// How often to look for prepared branches left by a crash and ask the
    /// coordinator about them.
    #[arg(long, env = "TANDEM_RECOVERY_INTERVAL_MS", default_value_t = 2_000)]
    recovery_interval_ms: u64,
    /// How long a marker row (a committed branch's, or a fence) is kept at
    /// least: it answers late inquiries and client-key lookups. Rows of a
    /// transaction with a branch still in doubt are kept longer, until it
    /// is settled.
    #[arg(long, env = "TANDEM_MARKER_RETENTION_SECS", default_value_t = 86_400)]
    marker_retention_secs: u64,
    /// On SIGTERM the participant drains: health turns NOT_SERVING, no
    /// branch begins, and live branches may finish for this long before it
    /// exits (unprepared ones then roll back; prepared ones stay in MySQL
    /// for recovery). Keep it above the coordinators' --drain-timeout-ms.
    #[arg(long, env = "TANDEM_DRAIN_TIMEOUT_MS", default_value_t = 25_000)]
    drain_timeout_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telemetry = telemetry::init("tandem-participant", &args.trace).map_err(anyhow::Error::msg)?;
    tandem_proto::failpoints::arm_from_env().map_err(anyhow::Error::msg)?;
    let transport = tandem_common::Transport::from_flags(
        args.tls.files(None, None, None).map_err(anyhow::Error::msg)?,
        args.tls.insecure_plaintext,
    )
    .context("transport settings")?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal.cancel();
    });
    let result = tandem_participant::run(
        tandem_participant::Config {
            name: args.name,
            listen: args.listen,
            admin_listen: args.admin_listen,
            mysql_url: args.mysql_url,
            transport,
            coordinators: args.coordinators,
            max_timeout: Duration::from_millis(args.max_timeout_ms.max(1)),
            allow_non_transactional: args.allow_non_transactional,
            limits: tandem_participant::Limits {
                max_statements: args.max_statements_per_branch,
                max_result_bytes: args.max_result_bytes,
                max_result_rows: args.max_result_rows,
            },
            max_connections: args.max_connections,
            recovery_interval: std::time::Duration::from_millis(args.recovery_interval_ms.max(10)),
            marker_retention: std::time::Duration::from_secs(args.marker_retention_secs),
            drain_timeout: Duration::from_millis(args.drain_timeout_ms),
        },
        shutdown,
    )
    .await
    .context("tandem-participant failed");
    telemetry.shutdown().await;
    result
}

/// Parses `NAME=URL`.
fn parse_coordinator(spec: &str) -> Result<(String, String), String> {
    match spec.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => Ok((name.to_owned(), url.to_owned())),
        _ => Err(format!("{spec:?} is not NAME=URL (e.g. tc=https://10.0.0.10:7600)")),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
