//! `tandem-coordinator`: runs two-phase commit across tandem participants.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tandem_common::telemetry::{self, TraceArgs};
use tandem_common::tls::TlsArgs;
use tandem_common::tokens::Tokens;
use tandem_coordinator::config::{FileConfig, parse_participant};
use tokio_util::sync::CancellationToken;

/// Coordinates atomic transactions across several MySQL/MariaDB databases.
#[derive(Debug, Parser)]
#[command(name = "tandem-coordinator", version)]
struct Args {
    /// TOML file with the same settings; flags and environment win over it.
    #[arg(long, env = "TANDEM_CONFIG")]
    config: Option<PathBuf>,
    /// Names this coordinator in every transaction id (letters, digits, '_').
    #[arg(long, env = "TANDEM_NAME")]
    name: Option<String>,
    /// Address of the client API [default: 127.0.0.1:7500].
    #[arg(long, env = "TANDEM_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of the internal API participants call for decisions
    /// (their --coordinator URL) [default: 127.0.0.1:7600].
    #[arg(long, env = "TANDEM_INTERNAL_LISTEN")]
    internal_listen: Option<SocketAddr>,
    /// Address of the admin HTTP listener: Prometheus metrics at
    /// /metrics. Plain HTTP, no authentication, no transaction data:
    /// keep it on a private network [default: none, not served].
    #[arg(long, env = "TANDEM_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    trace: TraceArgs,
    /// File of hashed bearer tokens for clients without a certificate
    /// (lines `<principal> <client|operator> <sha256 hex>`).
    #[arg(long, env = "TANDEM_TOKENS")]
    tokens: Option<PathBuf>,
    /// Most live transactions at once [default: 10000].
    #[arg(long, env = "TANDEM_MAX_LIVE_TRANSACTIONS")]
    max_live_transactions: Option<usize>,
    /// Most open client connections; more wait until one closes (keep it
    /// well below the process's open-file limit) [default: 512].
    #[arg(long, env = "TANDEM_MAX_CLIENT_CONNECTIONS")]
    max_client_connections: Option<usize>,
    /// Most bytes of results in one answer to a client; a transaction
    /// whose results would pass it aborts [default: 4194304, gRPC's usual
    /// message limit].
    #[arg(long, env = "TANDEM_MAX_RESULT_BYTES")]
    max_result_bytes: Option<u64>,
    /// Most open branches one principal may hold on one participant. Each
    /// pins one of its MySQL sessions: keep it below the participants'
    /// --max-connections (64 by default), so others always find one
    /// [default: 48].
    #[arg(long, env = "TANDEM_MAX_BRANCHES_PER_PRINCIPAL")]
    max_branches_per_principal: Option<usize>,
    /// Most live transactions one principal may hold [default: 1000].
    #[arg(long, env = "TANDEM_MAX_LIVE_PER_PRINCIPAL")]
    max_live_per_principal: Option<usize>,
    /// A participant as NAME=URL, e.g. orders=https://10.0.0.11:7501; its
    /// certificate must carry NAME.participant.tandem.
    /// Repeatable; the environment takes a comma-separated list.
    #[arg(long = "participant", env = "TANDEM_PARTICIPANTS", value_delimiter = ',', value_parser = parse_participant)]
    participants: Vec<(String, String)>,
    /// Deadline of transactions that do not set one [default: 10000].
    #[arg(long, env = "TANDEM_DEFAULT_TIMEOUT_MS")]
    default_timeout_ms: Option<u64>,
    /// Longest deadline a client may ask for [default: 600000].
    #[arg(long, env = "TANDEM_MAX_TIMEOUT_MS")]
    max_timeout_ms: Option<u64>,
    /// How long Commit waits for phase 2 before answering with the
    /// participants still pending named [default: 5000].
    #[arg(long, env = "TANDEM_REPLY_WAIT_MS")]
    reply_wait_ms: Option<u64>,
    /// On SIGTERM the coordinator drains: health turns NOT_SERVING, no
    /// transaction begins, and live ones may finish for this long; then
    /// those still running statements are rolled back and it exits
    /// [default: 20000].
    #[arg(long, env = "TANDEM_DRAIN_TIMEOUT_MS")]
    drain_timeout_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let trace = TraceArgs {
        otlp_endpoint: args.trace.otlp_endpoint.clone().or(file.otlp_endpoint.clone()),
        trace_sample_ratio: args.trace.trace_sample_ratio.or(file.trace_sample_ratio),
    };
    let telemetry = telemetry::init("tandem-coordinator", &trace).map_err(anyhow::Error::msg)?;
    tandem_proto::failpoints::arm_from_env().map_err(anyhow::Error::msg)?;
    let participants = if args.participants.is_empty() {
        file.participants.into_iter().collect()
    } else {
        args.participants
    };
    let tls_files = args
        .tls
        .files(file.tls_ca.clone(), file.tls_cert.clone(), file.tls_key.clone())
        .map_err(anyhow::Error::msg)?;
    let transport =
        tandem_common::Transport::from_flags(tls_files, args.tls.insecure_plaintext).context("transport settings")?;
    let tokens = match args.tokens.or(file.tokens) {
        Some(path) => Tokens::load(&path).map_err(anyhow::Error::msg)?,
        None => Tokens::default(),
    };
    let config = tandem_coordinator::Config {
        name: args.name.or(file.name).unwrap_or_else(|| "tc".to_owned()),
        listen: args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7500))),
        internal_listen: args
            .internal_listen
            .or(file.internal_listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7600))),
        admin_listen: args.admin_listen.or(file.admin_listen),
        transport,
        tokens,
        max_live: args
            .max_live_transactions
            .or(file.max_live_transactions)
            .unwrap_or(10_000),
        max_client_connections: args
            .max_client_connections
            .or(file.max_client_connections)
            .unwrap_or(512),
        max_result_bytes: args.max_result_bytes.or(file.max_result_bytes).unwrap_or(4 << 20),
        max_branches_per_principal: args
            .max_branches_per_principal
            .or(file.max_branches_per_principal)
            .unwrap_or(48),
        max_live_per_principal: args
            .max_live_per_principal
            .or(file.max_live_per_principal)
            .unwrap_or(1_000),
        participants,
        default_timeout: ms(args.default_timeout_ms.or(file.default_timeout_ms).unwrap_or(10_000)),
        max_timeout: ms(args.max_timeout_ms.or(file.max_timeout_ms).unwrap_or(600_000)),
        reply_wait: ms(args.reply_wait_ms.or(file.reply_wait_ms).unwrap_or(5_000)),
        drain_timeout: ms(args.drain_timeout_ms.or(file.drain_timeout_ms).unwrap_or(20_000)),
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal.cancel();
    });
    let result = tandem_coordinator::run(config, shutdown)
        .await
        .context("tandem-coordinator failed");
    telemetry.shutdown().await;
    result
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
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
