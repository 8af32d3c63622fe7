//! `tandem-bench`: tandem against hand-driven XA and local transactions,
//! measured in one run (docs/BENCHMARKS.md). The README's command:
//!
//! ```text
//! cargo tandem-bench            # = cargo run --release -p tandem-integration-tests --bin tandem-bench --
//! ```
//!
//! It launches a local cluster (or attaches to one with `--coordinator`
//! and `--database`), runs each workload with tandem and each baseline,
//! prints the ratios and the table behind them, and writes JSON.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tandem_integration_tests::bench::driver::System;
use tandem_integration_tests::bench::workload::Workload;
use tandem_integration_tests::bench::{self, Attach, Options, Skew};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Binlog {
    Off,
    On,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Tls {
    On,
    Off,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SkewArg {
    Uniform,
    Zipf,
}

#[derive(Debug, Parser)]
#[command(name = "tandem-bench", version)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Workloads to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// Systems to run each workload with (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    systems: Vec<System>,
    /// Concurrent clients, each running one transaction after another.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Measured time per workload, system and round, e.g. 5s, 2m.
    #[arg(long, default_value = "5s", value_parser = tandem_integration_tests::parse_duration)]
    duration: Duration,
    /// Unmeasured time before each measurement.
    #[arg(long, default_value = "2s", value_parser = tandem_integration_tests::parse_duration)]
    warmup: Duration,
    /// Rounds per workload, the systems interleaved; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Accounts (and products) per participant.
    #[arg(long, default_value_t = 10_000)]
    accounts: u64,
    /// How accounts and products are picked.
    #[arg(long, value_enum, default_value_t = SkewArg::Uniform)]
    skew: SkewArg,
    /// Zipf exponent for `--skew zipf`.
    #[arg(long, default_value_t = 1.0)]
    zipf_s: f64,
    /// Participants (MariaDB instances) of the launched cluster.
    #[arg(long, default_value_t = 3)]
    participants: usize,
    /// MariaDB's binary log: off, on (sync_binlog=1), or both (one cluster each).
    #[arg(long, value_enum, default_value_t = Binlog::Both)]
    binlog: Binlog,
    /// TLS between tandem's processes: on (as deployed), off
    /// (--insecure-plaintext), or both (one cluster each, to see its cost).
    #[arg(long, value_enum, default_value_t = Tls::On)]
    tls: Tls,
    /// The participants and the baselines reach MariaDB over TCP on
    /// 127.0.0.1 instead of its Unix socket, as across hosts.
    #[arg(long)]
    mysql_tcp: bool,
    /// Skip the single-client latency runs.
    #[arg(long)]
    no_single_client: bool,
    /// Also run the coordinator alone with metrics scraped and with every
    /// transaction traced: what each costs beside neither.
    #[arg(long)]
    telemetry_cost: bool,
    /// Skip the coordinator-alone run against null participants.
    #[arg(long)]
    no_coordinator_only: bool,
    /// Deadline of every transaction; also the baselines' lock wait limit.
    #[arg(long, default_value = "5s", value_parser = tandem_integration_tests::parse_duration)]
    timeout: Duration,
    /// When tandem answers a committed Submit: visible (after phase 2, the
    /// default) or durable (every branch prepared, before phase 2).
    #[arg(long, value_enum, default_value_t = AckArg::Visible)]
    ack: AckArg,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the JSON results go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tandem-bench.json"))]
    json: PathBuf,
    /// Attach to this coordinator instead of launching a cluster
    /// (with --database for every participant).
    #[arg(long)]
    coordinator: Option<String>,
    /// With --coordinator: a participant and its database, NAME=MYSQL_URL
    /// (the database the participant serves), repeatable.
    #[arg(long = "database", value_parser = parse_database)]
    databases: Vec<(String, String)>,
    /// Keep the launched clusters' directories (data and logs).
    #[arg(long)]
    keep: bool,
    /// RUST_LOG of the launched tandem processes (the shipped default is info).
    #[arg(long, default_value = "info")]
    log_filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AckArg {
    Visible,
    Durable,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve a participant without a database (used by the coordinator-alone run).
    NullParticipant {
        #[arg(long)]
        listen: SocketAddr,
    },
}

fn parse_database(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => Ok((name.to_owned(), url.to_owned())),
        _ => Err(format!("expected NAME=MYSQL_URL, got {text:?}")),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Two workers, as many as this machine kind has cores: the driver
    // competes with the cluster for them in every run alike.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Some(Cmd::NullParticipant { listen }) = args.command {
        return runtime.block_on(bench::null_participant::serve(listen));
    }
    if args.clients == 0 || args.accounts < 2 {
        bail!("--clients must be positive and --accounts at least 2");
    }
    if args.skew == SkewArg::Zipf && !(args.zipf_s.is_finite() && args.zipf_s > 0.0) {
        bail!("--zipf-s must be a positive number");
    }
    if args.rounds == 0 {
        bail!("--rounds must be positive");
    }
    if args.duration.is_zero() {
        bail!("--duration must be positive");
    }
    if args.timeout < Duration::from_secs(1) {
        bail!("--timeout must be at least 1s (MariaDB's lock wait limit is in whole seconds)");
    }
    let attach = match (args.coordinator, args.databases.is_empty()) {
        (Some(coordinator), false) => Some(Attach {
            coordinator,
            databases: args.databases,
        }),
        (Some(_), true) => bail!("--coordinator needs a --database NAME=MYSQL_URL for every participant"),
        (None, false) => bail!("--database is only for attaching, with --coordinator"),
        (None, true) => None,
    };
    if attach.is_none() && !(1..=6).contains(&args.participants) {
        bail!("--participants must be between 1 and 6");
    }
    let participants = attach.as_ref().map_or(args.participants, |a| a.databases.len());
    let options = Options {
        workloads: if args.workloads.is_empty() {
            Workload::ALL.to_vec()
        } else {
            args.workloads
        },
        systems: if args.systems.is_empty() {
            System::ALL.to_vec()
        } else {
            args.systems
        },
        clients: args.clients,
        duration: args.duration,
        warmup: args.warmup,
        rounds: args.rounds,
        accounts: args.accounts,
        skew: match args.skew {
            SkewArg::Uniform => Skew::Uniform,
            SkewArg::Zipf => Skew::Zipf(args.zipf_s),
        },
        participants,
        binlog: match args.binlog {
            Binlog::Off => vec![false],
            Binlog::On => vec![true],
            Binlog::Both => vec![false, true],
        },
        tls: match args.tls {
            Tls::On => vec![true],
            Tls::Off => vec![false],
            Tls::Both => vec![true, false],
        },
        mysql_tcp: args.mysql_tcp,
        single_client: !args.no_single_client,
        coordinator_only: !args.no_coordinator_only,
        telemetry_cost: args.telemetry_cost,
        timeout: args.timeout,
        ack: match args.ack {
            AckArg::Visible => tandem_client::pb::Ack::Visible,
            AckArg::Durable => tandem_client::pb::Ack::Durable,
        },
        seed: args.seed,
        json: args.json,
        attach,
        keep: args.keep,
        log_filter: args.log_filter,
        bin_dir: None,
        null_participant_exe: std::env::current_exe()?,
    };
    runtime.block_on(bench::run(&options))?;
    Ok(())
}
