//! The benchmark (`tandem-bench`): closed-loop workloads run by tandem and
//! by baselines on the same MariaDB instances, from the same driver, in one
//! process, so the ratios between them are measured under one set of
//! conditions (docs/BENCHMARKS.md).
//!
//! - [`workload`]: what each transaction does, as data.
//! - [`driver`]: tandem (`Submit`) and the baselines B0, B1, B1d.
//! - [`measure`]: CPU time per process and MariaDB's counters.
//! - [`null_participant`]: a participant without a database, to measure
//!   the coordinator alone.
//! - [`report`]: the ratios and tables printed, and the JSON written.

pub mod driver;
pub mod measure;
pub mod null_participant;
pub mod report;
pub mod workload;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Executor, MySqlPool};
use tandem_client::{Client, pb};
use tokio::time::Instant;

use self::driver::{BASELINE_FORMAT_ID, Ended, System, Target};
use self::measure::{Latency, Watched};
use self::report::{Report, RunResult};
use self::workload::{Generator, Keys, START_BALANCE, Workload};
use crate::cluster::{Cluster, ClusterConfig, Target as Proc};
use crate::process::Process;

/// How keys are picked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Skew {
    Uniform,
    /// Zipf with this exponent (1.0 is the classic hot-spot skew).
    Zipf(f64),
}

/// A cluster to attach to instead of launching one.
#[derive(Debug, Clone)]
pub struct Attach {
    pub coordinator: String,
    /// Each participant's name (as the coordinator knows it) and the URL
    /// of its database, for the baselines and MariaDB's counters.
    pub databases: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub workloads: Vec<Workload>,
    pub systems: Vec<System>,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Each workload runs every system this many times, interleaved; the
    /// median round is reported (the machine's noise is larger than the
    /// differences measured).
    pub rounds: usize,
    /// Accounts (and products) per participant.
    pub accounts: u64,
    pub skew: Skew,
    pub participants: usize,
    /// MariaDB binlog modes to run, each on a fresh cluster.
    pub binlog: Vec<bool>,
    /// TLS between every process (as deployed) and/or plaintext
    /// (`--insecure-plaintext`), each on a fresh cluster: what TLS costs.
    pub tls: Vec<bool>,
    /// tandem's participants and the baselines reach MariaDB over TCP
    /// (127.0.0.1) rather than its Unix socket.
    pub mysql_tcp: bool,
    /// Also measure latency with a single client (tandem and B1).
    pub single_client: bool,
    /// Also measure the coordinator alone against null participants.
    pub coordinator_only: bool,
    /// Also run the coordinator alone with each [`Telemetry`]: what
    /// metrics and traces cost.
    pub telemetry_cost: bool,
    /// Deadline of each transaction (and the baselines' lock wait limit).
    pub timeout: Duration,
    /// When tandem answers a committed Submit: after phase 2 (visible) or
    /// as soon as every branch is durably prepared (durable).
    pub ack: pb::Ack,
    pub seed: u64,
    pub json: PathBuf,
    pub attach: Option<Attach>,
    /// Keep the launched clusters' directories (data and logs).
    pub keep: bool,
    /// `RUST_LOG` of the launched tandem processes.
    pub log_filter: String,
    /// The tandem binaries to launch; by default they are built as they
    /// ship (no failpoints).
    pub bin_dir: Option<PathBuf>,
    /// The executable that serves `null-participant` (`tandem-bench`).
    pub null_participant_exe: PathBuf,
}

/// Runs everything `options` asks for and returns the report (also
/// printed as it goes, and written as JSON).
pub async fn run(options: &Options) -> Result<Report> {
    let mut report = Report::new(options);
    match &options.attach {
        Some(attach) => {
            let section = attached(options, attach).await?;
            report.sections.push(section);
        }
        None => {
            let bins = match &options.bin_dir {
                Some(dir) => dir.clone(),
                None => crate::cluster::production_binaries()?,
            };
            for &binlog in &options.binlog {
                for &tls in &options.tls {
                    let section = launched(options, &bins, binlog, tls).await?;
                    report.print_section(&section);
                    report.sections.push(section);
                }
            }
            if options.coordinator_only {
                let alone = coordinator_alone(options, &bins, Telemetry::Off).await?;
                report.coordinator_only = Some(alone);
            }
            if options.telemetry_cost {
                for telemetry in [
                    Telemetry::Off,
                    Telemetry::Metrics,
                    Telemetry::Traces,
                    Telemetry::SampledTraces,
                ] {
                    let run = coordinator_alone(options, &bins, telemetry).await?;
                    report.telemetry.push((telemetry, run));
                }
            }
        }
    }
    report.print_summary();
    report.write_json(&options.json)?;
    Ok(report)
}

/// The runs of one cluster configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub binlog: bool,
    /// Whether tandem's processes talked TLS (always, when attached to a
    /// running cluster: unknown, reported as true).
    pub tls: bool,
    pub runs: Vec<RunResult>,
    /// Single-client runs of the cross-participant transfer.
    pub single_client: Vec<RunResult>,
    /// tandem XIDs (`participant: gtrid`) still prepared after the runs.
    pub leftover_xids: Vec<String>,
}

impl Section {
    /// The single-client p50 latency of `system`, if it ran.
    pub fn single_client_p50(&self, system: System) -> Option<f64> {
        self.single_client
            .iter()
            .find(|r| r.system == system)
            .map(|r| r.latency.p50_ms)
    }
}

async fn launched(options: &Options, bins: &std::path::Path, binlog: bool, tls: bool) -> Result<Section> {
    let names = crate::cluster::participant_names(options.participants);
    let mariadb_options = if binlog {
        crate::mariadb::binlog_options()
    } else {
        Vec::new()
    };
    eprintln!(
        "starting a cluster: {} MariaDB instances (binlog {}, reached over {}), {} participants, a coordinator, TLS {}",
        names.len(),
        if binlog { "on, sync_binlog=1" } else { "off" },
        if options.mysql_tcp { "TCP" } else { "the Unix socket" },
        names.len(),
        if tls { "on" } else { "off" }
    );
    let cluster = Cluster::start(ClusterConfig {
        participants: names.clone(),
        schema: Vec::new(),
        mariadb_options,
        mysql_over_tcp: options.mysql_tcp,
        log_filter: options.log_filter.clone(),
        keep_dir: options.keep,
        bin_dir: Some(bins.to_owned()),
        tls,
        ..ClusterConfig::default()
    })
    .await?;
    let mut watched = vec![Watched {
        role: "driver",
        pid: std::process::id(),
    }];
    watched.extend(cluster.pid(&Proc::Coordinator(0)).map(|pid| Watched {
        role: "coordinator",
        pid,
    }));
    for name in &names {
        watched.extend(cluster.pid(&Proc::Participant(name.clone())).map(|pid| Watched {
            role: "participant",
            pid,
        }));
        watched.extend(
            cluster
                .pid(&Proc::MariaDb(name.clone()))
                .map(|pid| Watched { role: "mariadbd", pid }),
        );
    }
    let urls: Vec<String> = cluster.nodes().iter().map(|n| n.db.url()).collect();
    let client = cluster.client().await?;
    let mut section = measure_all(options, &names, &urls, client, &watched, binlog).await?;
    section.tls = tls;
    section.leftover_xids = cluster
        .prepared_branches()
        .await?
        .into_iter()
        .map(|(p, g)| format!("{p}: {g}"))
        .collect();
    cluster.shutdown();
    Ok(section)
}

async fn attached(options: &Options, attach: &Attach) -> Result<Section> {
    let names: Vec<String> = attach.databases.iter().map(|(n, _)| n.clone()).collect();
    let urls: Vec<String> = attach.databases.iter().map(|(_, u)| u.clone()).collect();
    let client = Client::connect(&attach.coordinator)
        .await
        .with_context(|| format!("cannot reach the coordinator at {}", attach.coordinator))?;
    // Only this process's CPU is known.
    let watched = vec![Watched {
        role: "driver",
        pid: std::process::id(),
    }];
    let binlog = options.binlog.first().copied().unwrap_or(false);
    let section = measure_all(options, &names, &urls, client, &watched, binlog).await?;
    Ok(section)
}

/// Loads the data, then runs every workload with every system.
async fn measure_all(
    options: &Options,
    names: &[String],
    urls: &[String],
    client: Client,
    watched: &[Watched],
    binlog: bool,
) -> Result<Section> {
    let lock_wait = options.timeout.as_secs().max(1);
    let mut pools = Vec::new();
    for url in urls {
        pools.push(pool(url, options.clients, lock_wait).await?);
    }
    eprintln!("loading {} accounts and products per participant", options.accounts);
    for p in &pools {
        load(p, options.accounts).await?;
    }
    let target = Arc::new(Target {
        participants: names.to_vec(),
        tandem: Some(client),
        pools: pools.clone(),
        timeout: options.timeout,
        ack: options.ack,
        run_id: driver::run_id(),
        sequence: AtomicU64::new(0),
    });
    let keys = match options.skew {
        Skew::Uniform => Keys::uniform(options.accounts),
        Skew::Zipf(s) => Keys::zipf(options.accounts, s),
    };
    let mut section = Section {
        binlog,
        tls: true,
        runs: Vec::new(),
        single_client: Vec::new(),
        leftover_xids: Vec::new(),
    };
    for &workload in &options.workloads {
        if workload.participants() > names.len() {
            eprintln!("skipping {workload}: it needs {} participants", workload.participants());
            continue;
        }
        let specs: Vec<RunSpec> = options
            .systems
            .iter()
            .map(|&system| RunSpec {
                workload,
                system,
                clients: options.clients,
                keys: keys.clone(),
                binlog,
            })
            .collect();
        section
            .runs
            .extend(rounds(options, &target, &specs, &pools, watched).await?);
    }
    if options.single_client && names.len() >= 2 {
        let specs: Vec<RunSpec> = [System::Tandem, System::B1]
            .into_iter()
            .filter(|s| options.systems.contains(s))
            .map(|system| RunSpec {
                workload: Workload::Transfer,
                system,
                clients: 1,
                keys: keys.clone(),
                binlog,
            })
            .collect();
        section.single_client = rounds(options, &target, &specs, &pools, watched).await?;
    }
    section
        .leftover_xids
        .extend(roll_back_baseline_leftovers(&pools, names).await?);
    for p in pools {
        p.close().await;
    }
    Ok(section)
}

/// A pool for the baselines and counters: the same isolation level and
/// lock wait limit tandem's branches get.
async fn pool(url: &str, clients: usize, lock_wait_secs: u64) -> Result<MySqlPool> {
    let options: MySqlConnectOptions = url.parse().with_context(|| format!("bad database URL {url:?}"))?;
    let size = u32::try_from(clients).unwrap_or(u32::MAX).saturating_add(4);
    let pool = MySqlPoolOptions::new()
        .max_connections(size)
        .min_connections(size)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                let sql = format!(
                    "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE; \
                     SET SESSION innodb_lock_wait_timeout = {lock_wait_secs}"
                );
                conn.execute(AssertSqlSafe(sql)).await.map(|_| ())
            })
        })
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok(pool)
}

/// Creates the bench tables and fills them: `accounts` accounts and as
/// many products, each with [`START_BALANCE`].
async fn load(pool: &MySqlPool, accounts: u64) -> Result<()> {
    for statement in workload::SCHEMA {
        sqlx::raw_sql(AssertSqlSafe(*statement)).execute(pool).await?;
    }
    for table in ["bench_accounts", "bench_stock", "bench_orders", "bench_decisions"] {
        sqlx::raw_sql(AssertSqlSafe(format!("TRUNCATE TABLE {table}")))
            .execute(pool)
            .await?;
    }
    let mut id = 0;
    while id < accounts {
        let end = (id + 1000).min(accounts);
        let rows: Vec<String> = (id..end).map(|i| format!("({i},{START_BALANCE})")).collect();
        let rows = rows.join(",");
        sqlx::raw_sql(AssertSqlSafe(format!(
            "INSERT INTO bench_accounts (id, balance) VALUES {rows}; \
             INSERT INTO bench_stock (sku, qty) VALUES {rows}"
        )))
        .execute(pool)
        .await?;
        id = end;
    }
    Ok(())
}

/// Runs every spec `options.rounds` times, interleaved, and returns each
/// spec's median round (by throughput) with every round's throughput.
async fn rounds(
    options: &Options,
    target: &Arc<Target>,
    specs: &[RunSpec],
    pools: &[MySqlPool],
    watched: &[Watched],
) -> Result<Vec<RunResult>> {
    let mut all: Vec<Vec<RunResult>> = specs.iter().map(|_| Vec::new()).collect();
    for round in 0..options.rounds {
        for (spec, results) in specs.iter().zip(&mut all) {
            let label = (options.rounds > 1).then(|| format!("round {}/{}", round + 1, options.rounds));
            results.push(run_one(options, target, spec, pools, watched, label.as_deref()).await?);
        }
    }
    Ok(all.into_iter().filter_map(median_round).collect())
}

fn median_round(mut results: Vec<RunResult>) -> Option<RunResult> {
    results.sort_by(|a, b| a.tx_per_s.total_cmp(&b.tx_per_s));
    let rounds: Vec<f64> = results.iter().map(|r| r.tx_per_s).collect();
    let mut median = results.into_iter().nth(rounds.len() / 2)?;
    median.rounds_tx_per_s = rounds;
    Some(median)
}

struct RunSpec {
    workload: Workload,
    system: System,
    clients: usize,
    keys: Keys,
    binlog: bool,
}

/// What one client saw in the measured window.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    committed: u64,
    aborted: u64,
    errors: u64,
    reasons: BTreeMap<String, u64>,
}

/// One closed-loop run: `clients` tasks each run one transaction after
/// another for the warm-up and the measured window; a transaction counts
/// if it ends inside the window, and the counters are read at its edges.
async fn run_one(
    options: &Options,
    target: &Arc<Target>,
    spec: &RunSpec,
    pools: &[MySqlPool],
    watched: &[Watched],
    round: Option<&str>,
) -> Result<RunResult> {
    let start = Instant::now();
    let t0 = start + options.warmup;
    let t1 = t0 + options.duration;
    let finished = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..spec.clients {
        let target = Arc::clone(target);
        let finished = Arc::clone(&finished);
        let generator = Generator {
            workload: spec.workload,
            participants: target.participants.len(),
            keys: spec.keys.clone(),
            client: i64::try_from(c).unwrap_or(0),
        };
        let system = spec.system;
        let mut rng = StdRng::seed_from_u64(options.seed.wrapping_add(c as u64 * 7919));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < t1 {
                let branches = generator.next(&mut rng);
                let began = Instant::now();
                let ended = target.run(system, &branches).await;
                let now = Instant::now();
                finished.fetch_add(1, Ordering::Relaxed);
                if now < t0 || now >= t1 {
                    continue;
                }
                match ended {
                    Ended::Committed => {
                        tally.committed += 1;
                        let us = u64::try_from(now.duration_since(began).as_micros()).unwrap_or(u64::MAX);
                        tally.latencies_us.push(us);
                    }
                    Ended::Aborted(reason) => {
                        tally.aborted += 1;
                        *tally.reasons.entry(shorten(&reason)).or_default() += 1;
                    }
                    Ended::Error(reason) => {
                        tally.errors += 1;
                        *tally.reasons.entry(shorten(&reason)).or_default() += 1;
                    }
                }
            }
            tally
        }));
    }
    let mut label = format!(
        "{:<6} {:<9} {:>2} clients",
        spec.system.name(),
        spec.workload.name(),
        spec.clients
    );
    if let Some(round) = round {
        label.push_str(&format!(" ({round})"));
    }
    let progress = Progress::new(&label, start, t0, t1, Arc::clone(&finished));
    progress.until(t0).await;
    let cpu_before = measure::cpu_seconds(watched);
    let machine_before = measure::machine_cpu();
    let db_before = measure::mariadb_counters(pools).await?;
    let window_start = Instant::now();
    progress.until(t1).await;
    let cpu_after = measure::cpu_seconds(watched);
    let machine_after = measure::machine_cpu();
    let db_after = measure::mariadb_counters(pools).await?;
    let seconds = window_start.elapsed().as_secs_f64();
    let mut tally = Tally::default();
    for task in tasks {
        let t = task.await.context("a client task panicked")?;
        tally.latencies_us.extend(t.latencies_us);
        tally.committed += t.committed;
        tally.aborted += t.aborted;
        tally.errors += t.errors;
        for (reason, n) in t.reasons {
            *tally.reasons.entry(reason).or_default() += n;
        }
    }
    let per_tx = |x: f64| {
        if tally.committed == 0 {
            0.0
        } else {
            x / tally.committed as f64
        }
    };
    let cpu_by_role: BTreeMap<String, f64> = cpu_after
        .iter()
        .map(|(role, after)| {
            let before = cpu_before.get(role).copied().unwrap_or(0.0);
            ((*role).to_owned(), per_tx((after - before) * 1000.0))
        })
        .collect();
    let cpu_ms_per_tx = cpu_by_role.values().sum();
    let mariadb_per_tx = db_after
        .iter()
        .map(|(name, after)| {
            let before = db_before.get(name).copied().unwrap_or(0);
            (name.clone(), per_tx(after.saturating_sub(before) as f64))
        })
        .collect();
    let total = (machine_after.2 - machine_before.2).max(1) as f64;
    let result = RunResult {
        machine_busy_pct: 100.0 * (machine_after.0 - machine_before.0) as f64 / total,
        machine_steal_pct: 100.0 * (machine_after.1 - machine_before.1) as f64 / total,
        workload: spec.workload,
        system: spec.system,
        clients: spec.clients,
        binlog: spec.binlog,
        seconds,
        committed: tally.committed,
        aborted: tally.aborted,
        errors: tally.errors,
        tx_per_s: tally.committed as f64 / seconds,
        latency: Latency::of(&mut tally.latencies_us),
        cpu_ms_per_tx,
        cpu_ms_per_tx_by_role: cpu_by_role,
        mariadb_per_tx,
        reasons: tally.reasons,
        rounds_tx_per_s: Vec::new(),
    };
    progress.done(&result);
    // Let background work of this run (phase-2 ENDs, purges) settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(result)
}

/// Errors and abort reasons, grouped: numbers (ids, counts) stripped.
fn shorten(reason: &str) -> String {
    let mut out = String::new();
    for c in reason.chars().take(160) {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('#') {
            out.push('#');
        }
    }
    out
}

/// Prints how a run is going, once a second.
struct Progress {
    label: String,
    start: Instant,
    t0: Instant,
    t1: Instant,
    finished: Arc<AtomicU64>,
    terminal: bool,
}

impl Progress {
    fn new(label: &str, start: Instant, t0: Instant, t1: Instant, finished: Arc<AtomicU64>) -> Self {
        Self {
            label: label.to_owned(),
            start,
            t0,
            t1,
            finished,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    async fn until(&self, at: Instant) {
        let mut last = (Instant::now(), self.finished.load(Ordering::Relaxed));
        loop {
            let now = Instant::now();
            if now >= at {
                return;
            }
            tokio::time::sleep((at - now).min(Duration::from_secs(1))).await;
            let (now, n) = (Instant::now(), self.finished.load(Ordering::Relaxed));
            let rate = (n - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
            last = (now, n);
            let phase = if now < self.t0 { "warm-up" } else { "measuring" };
            let elapsed = now.duration_since(self.start).as_secs();
            let total = self.t1.duration_since(self.start).as_secs();
            let line = format!("{}  {phase:<9} {elapsed:>3}/{total}s  {rate:>8.0} tx/s", self.label);
            if self.terminal {
                eprint!("\r{line}   ");
                let _ = std::io::stderr().flush();
            } else if elapsed % 5 == 0 {
                eprintln!("{line}");
            }
        }
    }

    fn done(&self, r: &RunResult) {
        if self.terminal {
            eprint!("\r");
        }
        eprintln!(
            "{}  {:>8.0} tx/s  p50 {:.2} ms  p99 {:.2} ms  aborts {}  errors {}   ",
            self.label, r.tx_per_s, r.latency.p50_ms, r.latency.p99_ms, r.aborted, r.errors
        );
    }
}

/// Rolls back any baseline branch a failed run left prepared (none should
/// be) and returns what it found.
async fn roll_back_baseline_leftovers(pools: &[MySqlPool], names: &[String]) -> Result<Vec<String>> {
    use sqlx::Row;
    let mut found = Vec::new();
    for (pool, name) in pools.iter().zip(names) {
        for row in sqlx::raw_sql("XA RECOVER").fetch_all(pool).await? {
            let format_id: i64 = row.try_get_unchecked(0)?;
            let gtrid_len: i64 = row.try_get_unchecked(1)?;
            let data: Vec<u8> = row.try_get_unchecked(3)?;
            if format_id != BASELINE_FORMAT_ID {
                continue;
            }
            let split = usize::try_from(gtrid_len).unwrap_or(0).min(data.len());
            let gtrid = String::from_utf8_lossy(&data[..split]).into_owned();
            let bqual = String::from_utf8_lossy(&data[split..]).into_owned();
            let sql = format!("XA ROLLBACK '{gtrid}','{bqual}',{BASELINE_FORMAT_ID}");
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(pool).await?;
            found.push(format!("{name}: baseline {gtrid} (rolled back)"));
        }
    }
    Ok(found)
}

/// What the coordinator-alone run exports, to measure what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Telemetry {
    /// No admin listener, no traces (the shipped default). The metrics
    /// are counted in memory all the same: they cannot be turned off.
    Off,
    /// The admin listener on, `/metrics` and `/status.json` fetched every
    /// second as a Prometheus and an open status page would.
    Metrics,
    /// Every transaction traced (sample ratio 1) to an OTLP collector in
    /// this process.
    Traces,
    /// One transaction in ten traced (`--trace-sample-ratio 0.1`).
    SampledTraces,
}

/// The coordinator alone: the real `tandem-coordinator` against null
/// participants (this binary, `null-participant`), each its own process.
/// Reports the coordinator's CPU time per transaction.
async fn coordinator_alone(options: &Options, bins: &std::path::Path, telemetry: Telemetry) -> Result<RunResult> {
    let dir = tempfile::Builder::new().prefix("tandem-bench-").tempdir()?;
    let names = crate::cluster::participant_names(options.participants);
    let mut processes = Vec::new();
    let mut addrs = Vec::new();
    for name in &names {
        let addr = crate::cluster::free_addr()?;
        let mut command = Command::new(&options.null_participant_exe);
        command.arg("null-participant").arg("--listen").arg(addr.to_string());
        let log = dir.path().join(format!("null-{name}.log"));
        processes.push(Process::spawn(&format!("null participant {name}"), command, &log)?);
        addrs.push(addr);
    }
    let coordinator_addr = crate::cluster::free_addr()?;
    let mut command = Command::new(bins.join("tandem-coordinator"));
    // Null participants speak plaintext: so does this coordinator.
    command
        .arg("--insecure-plaintext")
        .arg("--listen")
        .arg(coordinator_addr.to_string())
        .arg("--internal-listen")
        .arg(crate::cluster::free_addr()?.to_string())
        .env("RUST_LOG", &options.log_filter)
        .env("NO_COLOR", "1");
    for (name, addr) in names.iter().zip(&addrs) {
        command.arg("--participant").arg(format!("{name}=http://{addr}"));
    }
    let collector = crate::otlp::Collector::new(false);
    let mut admin = None;
    match telemetry {
        Telemetry::Off => {}
        Telemetry::Metrics => {
            let addr = crate::cluster::free_addr()?;
            command.arg("--admin-listen").arg(addr.to_string());
            admin = Some(addr);
        }
        Telemetry::Traces => {
            command.arg("--otlp-endpoint").arg(collector.start()?);
        }
        Telemetry::SampledTraces => {
            command.arg("--otlp-endpoint").arg(collector.start()?);
            command.arg("--trace-sample-ratio").arg("0.1");
        }
    }
    let coordinator = Process::spawn("coordinator", command, &dir.path().join("coordinator.log"))?;
    // A scraper and an open status page.
    let scraper = admin.map(|addr| {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                for path in ["/metrics", "/status.json"] {
                    if let Err(err) = crate::http::get(addr, path).await {
                        eprintln!("GET {path}: {err:#}");
                    }
                }
            }
        })
    });
    for addr in addrs.iter().chain([&coordinator_addr]) {
        wait_serving(*addr).await?;
    }
    let mut watched = vec![Watched {
        role: "driver",
        pid: std::process::id(),
    }];
    watched.extend(coordinator.pid().map(|pid| Watched {
        role: "coordinator",
        pid,
    }));
    watched.extend(processes.iter().filter_map(Process::pid).map(|pid| Watched {
        role: "participant",
        pid,
    }));
    let target = Arc::new(Target {
        participants: names.clone(),
        tandem: Some(Client::connect(&format!("http://{coordinator_addr}")).await?),
        pools: Vec::new(),
        timeout: options.timeout,
        ack: options.ack,
        run_id: driver::run_id(),
        sequence: AtomicU64::new(0),
    });
    let spec = RunSpec {
        workload: Workload::Transfer,
        system: System::Tandem,
        clients: options.clients,
        keys: Keys::uniform(options.accounts),
        binlog: false,
    };
    eprintln!(
        "the coordinator alone, against {} null participants (telemetry: {telemetry:?})",
        names.len()
    );
    let result = rounds(options, &target, &[spec], &[], &watched)
        .await?
        .pop()
        .context("no coordinator-alone result")?;
    if let Some(scraper) = scraper {
        scraper.abort();
    }
    if matches!(telemetry, Telemetry::Traces | Telemetry::SampledTraces) {
        eprintln!("  the collector received {} spans", collector.received());
        anyhow::ensure!(collector.received() > 0, "tracing was on but no span arrived");
    }
    drop(coordinator);
    drop(processes);
    Ok(result)
}

async fn wait_serving(addr: SocketAddr) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    while !crate::cluster::serving(addr, None).await {
        if Instant::now() > until {
            bail!("{addr} not serving after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Ok(())
}
