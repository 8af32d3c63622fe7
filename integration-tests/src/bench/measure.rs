//! What a run measures besides latency: CPU time of every process of the
//! cluster (from `/proc`), and MariaDB's own counters (fsyncs and `Com_xa_*`
//! from `SHOW GLOBAL STATUS`), each read before and after the measured
//! window.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::{MySqlPool, Row};

/// MariaDB's counters the benchmark reports per transaction (those the
/// server has: MariaDB 10.11's `Innodb_data_fsyncs` counts the redo log's
/// fsyncs too).
pub const COUNTERS: &[&str] = &[
    "Innodb_data_fsyncs",
    "Com_xa_start",
    "Com_xa_prepare",
    "Com_xa_commit",
    "Com_xa_rollback",
    "Com_commit",
    "Com_rollback",
    "Com_insert",
    "Questions",
    "Binlog_commits",
    "Binlog_group_commits",
];

/// Linux reports `/proc/<pid>/stat` CPU times in USER_HZ ticks, which the
/// kernel fixes at 100 per second for user space on every architecture
/// tandem runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// A process whose CPU time counts: a role (`coordinator`, `participant`,
/// `mariadbd`, `driver`) and its pid.
#[derive(Debug, Clone)]
pub struct Watched {
    pub role: &'static str,
    pub pid: u32,
}

/// CPU seconds by role.
pub fn cpu_seconds(processes: &[Watched]) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    for p in processes {
        *out.entry(p.role).or_insert(0.0) += process_cpu(p.pid).unwrap_or(0.0);
    }
    out
}

/// User plus system CPU seconds of all threads of `pid` so far.
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: fields after it start
    // after the last ')'. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// The machine's CPU time so far, from the first line of `/proc/stat`:
/// (busy, steal, total) in ticks. Steal is time the hypervisor gave to
/// someone else while this machine wanted to run.
pub fn machine_cpu() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is in user).
    let (idle, iowait, steal) = (at(3), at(4), at(7));
    let total: u64 = (0..8).map(at).sum();
    (total - idle - iowait - steal, steal, total)
}

/// The counters of [`COUNTERS`] the servers have, summed over every
/// database.
pub async fn mariadb_counters(pools: &[MySqlPool]) -> Result<BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for pool in pools {
        let rows = sqlx::query("SHOW GLOBAL STATUS")
            .fetch_all(pool)
            .await
            .context("SHOW GLOBAL STATUS")?;
        for row in rows {
            let name: String = row.try_get_unchecked(0)?;
            if COUNTERS.contains(&name.as_str()) {
                let value: String = row.try_get_unchecked(1)?;
                *out.entry(name).or_default() += value.parse::<u64>().unwrap_or(0);
            }
        }
    }
    Ok(out)
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From latencies in microseconds (sorted in place).
    pub fn of(samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            // Nearest rank.
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1] as f64 / 1000.0
        };
        Self {
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut samples: Vec<u64> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let l = Latency::of(&mut samples);
        assert_eq!((l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms), (50.0, 95.0, 99.0, 100.0));
        let l = Latency::of(&mut []);
        assert_eq!(l.p50_ms, 0.0);
        let l = Latency::of(&mut [2500]);
        assert_eq!((l.p50_ms, l.p99_ms), (2.5, 2.5));
    }

    #[test]
    fn this_process_uses_cpu() {
        let me = Watched {
            role: "driver",
            pid: std::process::id(),
        };
        let before = cpu_seconds(std::slice::from_ref(&me))["driver"];
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let after = cpu_seconds(&[me])["driver"];
        assert!(after > before, "{before} -> {after}");
    }
}
