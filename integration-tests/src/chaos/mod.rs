//! The chaos suite: a bank workload against a real cluster while a nemesis
//! kills, pauses, crashes (failpoints) and cuts off its processes at
//! random, then a check of the recorded history against every database.
//!
//! - [`schedule`]: the faults, drawn from the seed (pure).
//! - [`workload`]: the bank and its clients.
//! - [`nemesis`]: applies and heals the faults.
//! - [`history`]: the JSON-lines history of every operation and fault.
//! - [`check`]: the invariants, checked on the history and final state.
//!
//! [`run`] does a whole run and returns its [`Summary`]; the `chaos` test
//! runs the short profile, `tandem-chaos` any other.

pub mod check;
pub mod history;
pub mod nemesis;
pub mod schedule;
pub mod workload;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use tandem_client::pb::{self, TxnFilter};

use self::check::{Counts, Verdict};
use self::history::{Event, History, Type};
use self::schedule::Kind;
use self::workload::{Bank, Clients};
use crate::cluster::{Cluster, ClusterConfig};
use crate::mariadb;

/// One chaos run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Draws the faults (and each client's operations).
    pub seed: u64,
    /// How long the workload and the faults run.
    pub duration: Duration,
    pub participants: usize,
    /// Coordinator replicas; clients spread over them, and faults hit
    /// every one.
    pub replicas: usize,
    /// Accounts per participant.
    pub accounts: i64,
    /// Clients running transfers.
    pub transferers: usize,
    /// Clients running audits.
    pub auditors: usize,
    /// MariaDB with the binary log on (`sync_binlog=1`).
    pub binlog: bool,
    /// Where the history is written.
    pub history: PathBuf,
    /// How long the healed cluster gets to finish every transaction.
    pub settle: Duration,
    /// Keep the cluster's directory (data and logs).
    pub keep_dir: bool,
    /// Run the nemesis (off: the same workload without faults, a baseline).
    pub faults: bool,
}

impl Options {
    /// The short profile CI runs (about two minutes in all).
    pub fn short(seed: u64, binlog: bool, history: PathBuf) -> Self {
        Self {
            seed,
            duration: Duration::from_secs(90),
            participants: 3,
            replicas: 2,
            accounts: 10,
            transferers: 8,
            auditors: 1,
            binlog,
            history,
            settle: Duration::from_secs(60),
            keep_dir: false,
            faults: true,
        }
    }
}

/// The figures of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub seed: u64,
    pub binlog: bool,
    pub duration: Duration,
    pub participants: usize,
    pub history: PathBuf,
    pub transfers: Counts,
    pub audits: Counts,
    pub faults: BTreeMap<Kind, u64>,
    /// Faults applied (failpoints armed) by protocol step.
    pub by_step: BTreeMap<String, u64>,
    /// Crash failpoints that fired, by step.
    pub crashes_fired: BTreeMap<String, u64>,
    /// Faults that could not be applied (not counted by kind).
    pub faults_not_applied: u64,
    /// Transfers whose outcome the coordinator reported and the checker
    /// compared with the data.
    pub reports_checked: u64,
    pub violations: Vec<String>,
    pub peak_in_doubt: u64,
    /// From each heal to the next committed transfer.
    pub heal_to_commit: Vec<Duration>,
    /// Heals no commit followed before the workload stopped.
    pub heals_without_commit: usize,
    pub leftover: Vec<(String, String)>,
}

impl Summary {
    /// No violation and nothing left prepared.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.leftover.is_empty()
    }
}

/// Runs the workload and the faults, heals, checks, and returns the
/// figures. Call it from the thread that should own the cluster's
/// processes (the test's or `main`'s, not a spawned task).
pub async fn run(options: &Options) -> Result<Summary> {
    let names = crate::cluster::participant_names(options.participants);
    let bank = Bank {
        participants: names.clone(),
        accounts: options.accounts,
        initial: 100,
    };
    let mariadb_options = if options.binlog {
        crate::mariadb::binlog_options()
    } else {
        Vec::new()
    };
    let mut schema: Vec<String> = crate::schema::DEMO.iter().map(|s| (*s).to_owned()).collect();
    schema.push(workload::LEDGER.to_owned());
    let mut cluster = Cluster::start(ClusterConfig {
        participants: names.clone(),
        schema,
        mariadb_options,
        default_timeout_ms: 5_000,
        keep_dir: options.keep_dir,
        log_filter: "info".to_owned(),
        network_proxies: true,
        replicas: options.replicas,
        ..ClusterConfig::default()
    })
    .await?;
    bank.open(&cluster).await?;

    let plan = if options.faults {
        schedule::plan(options.seed, options.duration, &names, options.replicas)
    } else {
        Vec::new()
    };
    let start = Instant::now();
    let history = History::create(&options.history, start)?;
    let sampler = Sampler::start(&cluster);
    let accesses = (0..cluster.replica_count())
        .map(|i| cluster.replica_access(i, crate::cluster::TEST_PRINCIPAL))
        .collect::<Result<Vec<_>>>()?;
    let clients = Clients::start(
        &accesses,
        &bank,
        options.seed,
        options.transferers,
        options.auditors,
        &history,
    )?;
    let nemesis = nemesis::run(&mut cluster, &plan, start, &history).await;
    if nemesis.is_ok() {
        tokio::time::sleep_until((start + options.duration).into()).await;
    }
    clients.stop().await;
    let duration = start.elapsed();
    let peak_in_doubt = sampler.stop().await;
    let nemesis = nemesis?;

    settle(&cluster, options.settle).await;
    history.flush()?;
    let events = history::read(&options.history)?;
    let state = check::read_state(&cluster, &events).await?;
    let Verdict {
        transfers,
        audits,
        reports_checked,
        violations,
    } = check::check(&events, &bank, &state);
    let (heal_to_commit, heals_without_commit) = heal_to_commit(&events, &nemesis.heals);
    Ok(Summary {
        seed: options.seed,
        binlog: options.binlog,
        duration,
        participants: options.participants,
        history: options.history.clone(),
        transfers,
        audits,
        faults: nemesis.by_kind,
        by_step: nemesis.by_step,
        crashes_fired: nemesis.crashes_fired,
        faults_not_applied: nemesis.not_applied,
        reports_checked,
        violations,
        peak_in_doubt,
        heal_to_commit,
        heals_without_commit,
        leftover: state.leftover,
    })
}

/// Waits until no branch is prepared anywhere and the coordinator has
/// nothing in flight, or `limit` passes (what is left is then reported).
async fn settle(cluster: &Cluster, limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let prepared = cluster.prepared_branches().await.map(|b| b.len()).unwrap_or(1);
        let in_flight = in_flight(cluster).await.map_or(1, |txns| txns.len());
        if prepared == 0 && in_flight == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The in-flight transactions of the replicas that answer (`None` if none
/// does), as an operator sees them.
async fn in_flight(cluster: &Cluster) -> Option<Vec<pb::TransactionInfo>> {
    let ops = tandem_common::Identity::new(tandem_common::Role::Operator, "ops").ok()?;
    let mut all = None;
    for i in 0..cluster.replica_count() {
        let request = pb::ListTransactionsRequest {
            filter: TxnFilter::InFlight as i32,
            ..pb::ListTransactionsRequest::default()
        };
        let listed = async {
            let mut client = cluster.replica_access_as(i, &ops).ok()?.connect().await.ok()?;
            client.list_transactions(request).await.ok()
        };
        if let Some(txns) = listed.await {
            all.get_or_insert_with(Vec::new).extend(txns);
        }
    }
    all
}

/// For each heal, the time until the next transfer that committed.
fn heal_to_commit(events: &[Event], heals: &[Duration]) -> (Vec<Duration>, usize) {
    let mut commits: Vec<u64> = events
        .iter()
        .filter(|e| e.kind == Type::Ok && e.f == "transfer")
        .map(|e| e.time_ms)
        .collect();
    commits.sort_unstable();
    let mut out = Vec::new();
    let mut missing = 0;
    for heal in heals {
        let heal_ms = u64::try_from(heal.as_millis()).unwrap_or(u64::MAX);
        let next = commits.partition_point(|&t| t < heal_ms);
        match commits.get(next) {
            Some(t) => out.push(Duration::from_millis(t - heal_ms)),
            None => missing += 1,
        }
    }
    out.sort_unstable();
    (out, missing)
}

/// Samples how many tandem branches are prepared, every 200 ms, and keeps
/// the peak.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(cluster: &Cluster) -> Self {
        let pools: Vec<_> = cluster.nodes().iter().map(|n| n.pool().clone()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let mut total = 0u64;
                    for pool in &pools {
                        // A paused or dead database counts as none.
                        let listed = tokio::time::timeout(Duration::from_secs(1), mariadb::xa_recover(pool)).await;
                        if let Ok(Ok(xids)) = listed {
                            total += xids.len() as u64;
                        }
                    }
                    peak.fetch_max(total, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        Self { stop, peak, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        self.peak.load(Ordering::SeqCst)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.transfers;
        let a = &self.audits;
        writeln!(f, "== tandem chaos summary ==")?;
        writeln!(f, "seed:                {} (replay: --seed {})", self.seed, self.seed)?;
        writeln!(
            f,
            "mariadb:             binlog {}",
            if self.binlog { "on, sync_binlog=1" } else { "off" }
        )?;
        writeln!(f, "duration:            {:.1} s", self.duration.as_secs_f64())?;
        writeln!(f, "participants:        {}", self.participants)?;
        writeln!(f, "history:             {}", self.history.display())?;
        writeln!(
            f,
            "transfers:           {} attempted, {} committed, {} aborted, {} unknown ({} resolved committed, {} resolved aborted)",
            t.attempted - t.not_sent,
            t.ok,
            t.fail - t.not_sent,
            t.info,
            t.info_committed,
            t.info_aborted
        )?;
        writeln!(
            f,
            "audits:              {} attempted, {} committed (total checked), {} aborted, {} unknown",
            a.attempted - a.not_sent,
            a.ok,
            a.fail - a.not_sent,
            a.info
        )?;
        writeln!(
            f,
            "not sent:            {} transfers, {} audits (coordinator unreachable)",
            t.not_sent, a.not_sent
        )?;
        writeln!(
            f,
            "retried submits:     {} answered by a retry with the same client key",
            t.retried
        )?;
        writeln!(
            f,
            "reported outcomes:   {} transfers' outcomes from the coordinator agree with the data",
            self.reports_checked
        )?;
        let total: u64 = self.faults.values().sum();
        writeln!(
            f,
            "faults:              {total} ({} more could not be applied)",
            self.faults_not_applied
        )?;
        for (kind, n) in &self.faults {
            writeln!(f, "  {:<28} {n}", kind.name())?;
        }
        writeln!(
            f,
            "faults by protocol step (crash failpoints fired: {}):",
            self.crashes_fired.values().sum::<u64>()
        )?;
        for (step, n) in &self.by_step {
            match self.crashes_fired.get(step) {
                Some(fired) => writeln!(f, "  {step:<36} {n} ({fired} crashed the process)")?,
                None => writeln!(f, "  {step:<36} {n}")?,
            }
        }
        writeln!(f, "invariant violations: {}", self.violations.len())?;
        for v in self.violations.iter().take(20) {
            writeln!(f, "  - {v}")?;
        }
        writeln!(f, "peak in-doubt branches: {}", self.peak_in_doubt)?;
        let p50 = percentile(&self.heal_to_commit, 50);
        let max = self.heal_to_commit.last().copied().unwrap_or_default();
        writeln!(
            f,
            "heal to next commit: p50 {:.0} ms, max {:.0} ms ({} heals; {} with no commit before the end)",
            p50.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            self.heal_to_commit.len() + self.heals_without_commit,
            self.heals_without_commit
        )?;
        writeln!(f, "leftover XIDs:       {}", self.leftover.len())?;
        for (participant, gtrid) in &self.leftover {
            writeln!(f, "  - {gtrid} on {participant}")?;
        }
        write!(
            f,
            "result:              {}",
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() - 1) * p / 100]
}
