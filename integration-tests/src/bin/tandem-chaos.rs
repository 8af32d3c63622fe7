//! `tandem-chaos`: one chaos run of any length against a fresh local
//! cluster (see `tandem_integration_tests::chaos`), e.g.
//!
//! ```text
//! cargo run --release -p tandem-integration-tests --bin tandem-chaos -- --duration 30m
//! ```
//!
//! Prints the seed first and the summary last; exits non-zero if any
//! invariant was violated or an XID was left prepared.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};
use tandem_integration_tests::chaos::{self, Options};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Binlog {
    Off,
    On,
    Both,
}

#[derive(Debug, Parser)]
#[command(name = "tandem-chaos", version)]
struct Args {
    /// Seed of the fault schedule and the workload (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// How long faults and workload run: e.g. 90s, 30m, 1h.
    #[arg(long, default_value = "90s", value_parser = tandem_integration_tests::parse_duration)]
    duration: Duration,
    /// MariaDB's binary log: off, on (sync_binlog=1), or both (two runs).
    #[arg(long, value_enum, default_value_t = Binlog::Off)]
    binlog: Binlog,
    #[arg(long, default_value_t = 3)]
    participants: usize,
    /// Coordinator replicas (clients spread over them; faults hit each).
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Accounts per participant (fewer means more contention).
    #[arg(long, default_value_t = 10)]
    accounts: i64,
    /// Clients running transfers.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Clients running SERIALIZABLE audits (each locks every row).
    #[arg(long, default_value_t = 1)]
    auditors: usize,
    /// The history file (default: chaos-<seed>-binlog-<mode>.jsonl here).
    #[arg(long)]
    history: Option<PathBuf>,
    /// Keep the cluster's directory (data and every log).
    #[arg(long)]
    keep: bool,
    /// The same workload and checks without any fault (a baseline).
    #[arg(long)]
    no_faults: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.participants >= 3, "--participants must be at least 3");
    anyhow::ensure!(args.replicas >= 1, "--replicas must be at least 1");
    anyhow::ensure!(
        args.accounts >= 1 && args.clients >= 1,
        "--accounts and --clients must be positive"
    );
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    println!("chaos seed: {seed}");
    // The cluster's processes die with the thread that spawned them: the
    // run itself stays on this (main) thread, its tasks on the workers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let modes = match args.binlog {
        Binlog::Off => vec![false],
        Binlog::On => vec![true],
        Binlog::Both => vec![false, true],
    };
    let mut failed = false;
    for binlog in modes {
        let mode = if binlog { "on" } else { "off" };
        let history = match &args.history {
            // Two runs do not share one file.
            Some(path) if args.binlog == Binlog::Both => {
                let stem = path
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                path.with_file_name(format!("{stem}-binlog-{mode}.jsonl"))
            }
            Some(path) => path.clone(),
            None => PathBuf::from(format!("chaos-{seed}-binlog-{mode}.jsonl")),
        };
        let options = Options {
            seed,
            duration: args.duration,
            participants: args.participants,
            replicas: args.replicas,
            accounts: args.accounts,
            transferers: args.clients,
            auditors: args.auditors,
            binlog,
            history,
            keep_dir: args.keep,
            faults: !args.no_faults,
            ..Options::short(seed, binlog, PathBuf::new())
        };
        println!(
            "running {:?} of faults with binlog {mode}; history: {}",
            options.duration,
            options.history.display()
        );
        let summary = runtime.block_on(chaos::run(&options))?;
        println!("{summary}");
        failed |= !summary.passed();
    }
    if failed {
        bail!("the chaos run found violations or leftover XIDs (seed {seed})");
    }
    Ok(())
}
