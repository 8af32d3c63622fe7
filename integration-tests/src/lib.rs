//! Runs tandem for real: private MariaDB instances, the real
//! `tandem-participant` and `tandem-coordinator` binaries as child
//! processes, and the demo and tests that drive them.
//!
//! - [`cluster`]: [`Cluster`] starts and owns a whole local cluster and
//!   kills it on `Drop`; used by the `tandem-local` binary and every test.
//! - [`mariadb`]: one private MariaDB instance (own datadir and socket).
//! - [`process`]: child processes that die with their owner.
//! - [`schema`]: the tables every local database gets.
//! - [`demo`]: the scenarios `tandem-local` runs and prints.
//! - [`proxy`]: a TCP proxy that can blackhole or reset a network link.
//! - [`chaos`]: the chaos suite (workload, nemesis, history, checker).
//! - [`bench`]: the benchmark against hand-driven XA (`tandem-bench`).

pub mod bench;
pub mod chaos;
pub mod cluster;
pub mod demo;
pub mod mariadb;
pub mod process;
pub mod proxy;
pub mod schema;

pub use cluster::{Cluster, ClusterConfig};
