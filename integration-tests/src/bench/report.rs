//! The benchmark's results: ratios first (tandem against each baseline,
//! same workload, same run), then the table behind them, then the JSON.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::driver::System;
use super::measure::Latency;
use super::workload::Workload;
use super::{Options, Section, Skew};

/// One workload run by one system.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub workload: Workload,
    pub system: System,
    pub clients: usize,
    pub binlog: bool,
    /// Length of the measured window.
    pub seconds: f64,
    pub committed: u64,
    pub aborted: u64,
    pub errors: u64,
    /// Committed transactions per second.
    pub tx_per_s: f64,
    /// Of committed transactions.
    pub latency: Latency,
    /// CPU time of every watched process per committed transaction.
    pub cpu_ms_per_tx: f64,
    pub cpu_ms_per_tx_by_role: BTreeMap<String, f64>,
    /// Of the whole machine's CPU time in the window: busy, and stolen by
    /// the hypervisor.
    pub machine_busy_pct: f64,
    pub machine_steal_pct: f64,
    /// MariaDB's counters (all instances) per committed transaction.
    pub mariadb_per_tx: BTreeMap<String, f64>,
    /// Why transactions aborted or failed, with counts.
    pub reasons: BTreeMap<String, u64>,
    /// Throughput of every round, lowest first (this result is the median).
    pub rounds_tx_per_s: Vec<f64>,
}

impl RunResult {
    fn counter(&self, name: &str) -> f64 {
        self.mariadb_per_tx.get(name).copied().unwrap_or(0.0)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub clients: usize,
    pub participants: usize,
    pub accounts: u64,
    pub skew: String,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub rounds: usize,
    pub timeout_ms: u64,
    pub seed: u64,
    pub attached: bool,
    pub mariadb: &'static str,
    /// When tandem answered a committed Submit (`ACK_VISIBLE`, `ACK_DURABLE`).
    pub ack: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub machine: Machine,
    pub sections: Vec<Section>,
    /// The coordinator against null participants.
    pub coordinator_only: Option<RunResult>,
    /// The same with each telemetry setting (`--telemetry-cost`).
    pub telemetry: Vec<(super::Telemetry, RunResult)>,
}

/// tandem's throughput over a baseline's, per workload.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    pub workload: Workload,
    pub vs_b1: Option<f64>,
    pub vs_b1d: Option<f64>,
    pub vs_b0: Option<f64>,
}

impl Report {
    pub fn new(options: &Options) -> Self {
        Self {
            settings: Settings {
                clients: options.clients,
                participants: options.participants,
                accounts: options.accounts,
                skew: match options.skew {
                    Skew::Uniform => "uniform".to_owned(),
                    Skew::Zipf(s) => format!("zipf({s})"),
                },
                warmup_s: options.warmup.as_secs_f64(),
                duration_s: options.duration.as_secs_f64(),
                rounds: options.rounds,
                timeout_ms: u64::try_from(options.timeout.as_millis()).unwrap_or(u64::MAX),
                seed: options.seed,
                attached: options.attach.is_some(),
                mariadb: "innodb_flush_log_at_trx_commit=1, innodb_buffer_pool_size=32M, SERIALIZABLE branches",
                ack: options.ack.as_str_name(),
            },
            machine: machine(),
            sections: Vec::new(),
            coordinator_only: None,
            telemetry: Vec::new(),
        }
    }

    pub fn ratios(section: &Section) -> Vec<Ratios> {
        let mut out = Vec::new();
        for workload in Workload::ALL {
            let rate = |system: System| {
                section
                    .runs
                    .iter()
                    .find(|r| r.workload == workload && r.system == system)
                    .map(|r| r.tx_per_s)
            };
            let Some(tandem) = rate(System::Tandem) else {
                continue;
            };
            let ratio = |system| rate(system).filter(|b| *b > 0.0).map(|b| tandem / b);
            out.push(Ratios {
                workload,
                vs_b1: ratio(System::B1),
                vs_b1d: ratio(System::B1d),
                vs_b0: ratio(System::B0),
            });
        }
        out
    }

    pub fn print_section(&self, section: &Section) {
        let s = &self.settings;
        println!();
        println!(
            "=== binlog {}, TLS {}, tandem {}: {} clients, {} participants, {} accounts each, {} keys, {}s measured after {}s warm-up, median of {} rounds ===",
            if section.binlog { "on (sync_binlog=1)" } else { "off" },
            if section.tls { "on" } else { "off" },
            s.ack,
            s.clients,
            s.participants,
            s.accounts,
            s.skew,
            s.duration_s,
            s.warmup_s,
            s.rounds
        );
        println!();
        println!("throughput ratios (committed tx/s, same run):");
        println!(
            "  {:<10} {:>10} {:>11} {:>10}",
            "workload", "tandem/B1", "tandem/B1d", "tandem/B0"
        );
        let fmt = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
        for r in Self::ratios(section) {
            println!(
                "  {:<10} {:>10} {:>11} {:>10}",
                r.workload.name(),
                fmt(r.vs_b1),
                fmt(r.vs_b1d),
                fmt(r.vs_b0)
            );
        }
        println!();
        print_table(&section.runs);
        if !section.single_client.is_empty() {
            println!();
            println!("one client, cross-participant transfer:");
            print_table(&section.single_client);
            if let (Some(t), Some(b)) = (
                section.single_client_p50(System::Tandem),
                section.single_client_p50(System::B1),
            ) {
                println!("  p50 tandem - B1 = {:+.3} ms", t - b);
            }
        }
        if !section.leftover_xids.is_empty() {
            println!();
            println!("XIDs left prepared after the runs (there should be none):");
            for x in &section.leftover_xids {
                println!("  {x}");
            }
        }
    }

    /// tandem with TLS against tandem without, for each binlog mode that
    /// ran both: throughput (each also as a ratio to B1 of its own
    /// cluster, which takes the clusters' own difference out) and the CPU
    /// of tandem's processes per transaction.
    fn print_tls_cost(&self) {
        for binlog in [false, true] {
            let find = |tls: bool| self.sections.iter().find(|s| s.binlog == binlog && s.tls == tls);
            let (Some(on), Some(off)) = (find(true), find(false)) else {
                continue;
            };
            println!();
            println!(
                "what TLS costs (binlog {}): tandem with TLS / without",
                if binlog { "on" } else { "off" }
            );
            let b1 = |section: &Section, workload: Workload| {
                section
                    .runs
                    .iter()
                    .find(|r| r.workload == workload && r.system == System::B1)
                    .map(|r| r.tx_per_s)
            };
            for run in on.runs.iter().filter(|r| r.system == System::Tandem) {
                let Some(plain) = off
                    .runs
                    .iter()
                    .find(|r| r.workload == run.workload && r.system == System::Tandem)
                else {
                    continue;
                };
                let cpu = |r: &RunResult, role: &str| r.cpu_ms_per_tx_by_role.get(role).copied().unwrap_or(0.0);
                let per_b1 = |r: &RunResult, section: &Section| {
                    b1(section, r.workload).map_or_else(|| "-".to_owned(), |b| format!("{:.2}", r.tx_per_s / b))
                };
                println!(
                    "  {:<10} tx/s {:>8.0} / {:>8.0} = {:.2}   tandem/B1 {} / {}   CPU ms/tx coordinator {:.3} / {:.3}, participants {:.3} / {:.3}",
                    run.workload.name(),
                    run.tx_per_s,
                    plain.tx_per_s,
                    run.tx_per_s / plain.tx_per_s.max(f64::MIN_POSITIVE),
                    per_b1(run, on),
                    per_b1(plain, off),
                    cpu(run, "coordinator"),
                    cpu(plain, "coordinator"),
                    cpu(run, "participant"),
                    cpu(plain, "participant"),
                );
            }
            if let (Some(t), Some(p)) = (
                on.single_client_p50(System::Tandem),
                off.single_client_p50(System::Tandem),
            ) {
                println!(
                    "  one client p50: {t:.3} ms with TLS, {p:.3} ms without ({:+.3} ms)",
                    t - p
                );
            }
        }
    }

    /// The targets of the benchmark issue, as measured (information, not
    /// assertions).
    pub fn print_summary(&self) {
        println!();
        println!("=== summary ===");
        for section in &self.sections {
            let mode = format!(
                "{} {}",
                if section.binlog { "binlog on " } else { "binlog off" },
                if section.tls { "TLS on " } else { "TLS off" }
            );
            for r in Self::ratios(section) {
                let f = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}x"));
                println!(
                    "  {mode}  {:<10} tandem/B1 {:>6}  tandem/B1d {:>6}  tandem/B0 {:>6}",
                    r.workload.name(),
                    f(r.vs_b1),
                    f(r.vs_b1d),
                    f(r.vs_b0)
                );
            }
            if let (Some(t), Some(b)) = (
                section.single_client_p50(System::Tandem),
                section.single_client_p50(System::B1),
            ) {
                println!(
                    "  {mode}  one client p50: tandem {t:.3} ms, B1 {b:.3} ms ({:+.3} ms)",
                    t - b
                );
            }
            if let Some(single) = section
                .runs
                .iter()
                .find(|r| r.workload == Workload::Single && r.system == System::Tandem)
            {
                println!(
                    "  {mode}  single-participant tandem: {:.2} XA PREPARE per transaction",
                    single.counter("Com_xa_prepare")
                );
            }
        }
        self.print_tls_cost();
        self.print_telemetry_cost();
        if let Some(alone) = &self.coordinator_only {
            let cpu = alone.cpu_ms_per_tx_by_role.get("coordinator").copied().unwrap_or(0.0);
            let per_core = if cpu > 0.0 { 1000.0 / cpu } else { 0.0 };
            println!(
                "  coordinator alone (null participants): {:.0} tx/s, {:.3} ms coordinator CPU per transaction = {:.0} tx/s per coordinator core",
                alone.tx_per_s, cpu, per_core
            );
        }
    }

    fn print_telemetry_cost(&self) {
        let Some((_, off)) = self.telemetry.first() else {
            return;
        };
        let cpu = |r: &RunResult| r.cpu_ms_per_tx_by_role.get("coordinator").copied().unwrap_or(0.0);
        println!("  telemetry, the coordinator alone (null participants):");
        println!(
            "    {:<15} {:>8} {:>9} {:>10} {:>10} {:>9}",
            "setting", "tx/s", "vs off", "coord CPU", "vs off", "p50 ms"
        );
        for (telemetry, run) in &self.telemetry {
            println!(
                "    {:<15} {:>8.0} {:>8.2}x {:>7.3} ms {:>+9.1}% {:>9.2}",
                format!("{telemetry:?}").to_lowercase(),
                run.tx_per_s,
                run.tx_per_s / off.tx_per_s.max(f64::MIN_POSITIVE),
                cpu(run),
                (cpu(run) / cpu(off).max(f64::MIN_POSITIVE) - 1.0) * 100.0,
                run.latency.p50_ms
            );
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        println!();
        println!("results written to {}", path.display());
        Ok(())
    }
}

fn print_table(runs: &[RunResult]) {
    println!(
        "  {:<10} {:<7} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6} {:>8} {:>7} {:>7} {:>7} {:>6}",
        "workload",
        "system",
        "tx/s",
        "p50ms",
        "p95ms",
        "p99ms",
        "aborts",
        "errors",
        "cpu ms/tx",
        "fsync/tx",
        "prep/tx",
        "cmt/tx",
        "busy%"
    );
    for r in runs {
        println!(
            "  {:<10} {:<7} {:>8.0} {:>7.2} {:>7.2} {:>7.2} {:>7} {:>6} {:>9.3} {:>8.2} {:>7.2} {:>7.2} {:>6.0}",
            r.workload.name(),
            r.system.name(),
            r.tx_per_s,
            r.latency.p50_ms,
            r.latency.p95_ms,
            r.latency.p99_ms,
            r.aborted,
            r.errors,
            r.cpu_ms_per_tx,
            r.counter("Innodb_data_fsyncs"),
            r.counter("Com_xa_prepare"),
            r.counter("Com_xa_commit"),
            r.machine_busy_pct,
        );
    }
    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    for r in runs {
        for (reason, n) in &r.reasons {
            *reasons.entry(reason).or_default() += n;
        }
    }
    if !reasons.is_empty() {
        println!("  aborts and errors by reason:");
        for (reason, n) in reasons {
            println!("    {n:>6}  {reason}");
        }
    }
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map_or_else(String::new, |m| m.trim().to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        cpu_model,
        kernel,
    }
}
