//! Runs tandem for real: private MariaDB instances, the real
//! `tandem-participant` and `tandem-coordinator` binaries as child
//! processes, and the demo and tests that drive them.
//!
//! - [`cluster`]: [`Cluster`] starts and owns a whole local cluster and
//!   kills it on `Drop`; used by the `tandem-local` binary and every test.
//! - [`certs`]: a throwaway CA issuing every process's TLS identity.
//! - [`mariadb`]: one private MariaDB instance (own datadir and socket).
//! - [`http`]: a minimal GET for the admin listeners.
//! - [`process`]: child processes that die with their owner.
//! - [`schema`]: the tables every local database gets.
//! - [`demo`]: the scenarios `tandem-local` runs and prints.
//! - [`proxy`]: a TCP proxy that can blackhole or reset a network link.
//! - [`chaos`]: the chaos suite (workload, nemesis, history, checker).
//! - [`bench`]: the benchmark against hand-driven XA (`tandem-bench`).

pub mod bench;
pub mod certs;
pub mod chaos;
pub mod cluster;
pub mod demo;
pub mod http;
pub mod mariadb;
pub mod otlp;
pub mod process;
pub mod proxy;
pub mod schema;

pub use cluster::{Access, Cluster, ClusterConfig};

/// Parses a command-line duration: a whole number with `ms`, `s` (the
/// default), `m` or `h`, e.g. `500ms`, `90s`, `30m`, `1h`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}: e.g. 500ms, 90s, 30m, 1h"))?;
    let ms = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("bad duration unit in {text:?}: use ms, s, m or h")),
    };
    n.checked_mul(ms)
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_duration;

    #[test]
    fn durations_parse_with_units_and_bad_ones_are_named() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "5d", "-1s", "1.5s"] {
            assert!(parse_duration(bad).unwrap_err().contains(bad), "{bad:?}");
        }
        assert!(parse_duration("99999999999999999h").unwrap_err().contains("too long"));
    }
}
