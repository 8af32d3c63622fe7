//! The benchmark itself works: a short run of every workload with tandem
//! and every baseline against a real cluster, and the coordinator alone
//! against null participants. It checks what the run did, never how fast
//! (docs/BENCHMARKS.md has the figures): every system commits, nothing is
//! left prepared, and tandem's fast paths run no `XA PREPARE` where none
//! is needed, as MariaDB's own `Com_xa_prepare` counter shows.

use std::path::PathBuf;
use std::time::Duration;

use tandem_integration_tests::bench::driver::System;
use tandem_integration_tests::bench::report::RunResult;
use tandem_integration_tests::bench::workload::Workload;
use tandem_integration_tests::bench::{self, Options, Skew};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_benchmark_runs_every_workload_and_system() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let options = Options {
        workloads: Workload::ALL.to_vec(),
        systems: System::ALL.to_vec(),
        clients: 4,
        duration: Duration::from_millis(1500),
        warmup: Duration::from_millis(300),
        rounds: 1,
        // Uniform over enough accounts that a distributed deadlock (which
        // only the lock wait limit ends) is unlikely to stall a short run.
        accounts: 5_000,
        skew: Skew::Uniform,
        participants: 3,
        binlog: vec![false],
        tls: vec![true],
        // The shape across hosts (the default is the Unix socket).
        mysql_tcp: true,
        single_client: true,
        coordinator_only: true,
        telemetry_cost: true,
        timeout: Duration::from_secs(5),
        // The answer at the commit point: the path the latency target uses.
        ack: tandem_client::pb::Ack::Durable,
        seed: 7,
        json: json.clone(),
        attach: None,
        keep: false,
        log_filter: "info".to_owned(),
        // The suite's own build (with failpoints, unarmed): building the
        // shipped binaries here would replace them under the other tests.
        bin_dir: Some(tandem_integration_tests::cluster::tandem_binaries().unwrap().to_owned()),
        null_participant_exe: PathBuf::from(env!("CARGO_BIN_EXE_tandem-bench")),
    };
    let report = bench::run(&options).await.unwrap();

    let section = &report.sections[0];
    assert!(
        section.leftover_xids.is_empty(),
        "left prepared: {:?}",
        section.leftover_xids
    );
    assert_eq!(section.runs.len(), Workload::ALL.len() * System::ALL.len());
    for r in section.runs.iter().chain(&section.single_client) {
        let what = format!("{} by {}", r.workload.name(), r.system.name());
        assert!(r.committed > 0, "{what}: nothing committed");
        assert_eq!(r.errors, 0, "{what}: errors {:?}", r.reasons);
        assert!(r.latency.p50_ms > 0.0 && r.latency.p50_ms <= r.latency.p99_ms, "{what}");
        assert!(r.cpu_ms_per_tx > 0.0, "{what}: no CPU time measured");
    }
    let run = |workload, system| {
        section
            .runs
            .iter()
            .find(|r| r.workload == workload && r.system == system)
            .unwrap()
    };
    let prepares = |r: &RunResult| r.mariadb_per_tx["Com_xa_prepare"];
    // One participant: one phase. Only reads: no prepare at all.
    assert_eq!(prepares(run(Workload::Single, System::Tandem)), 0.0);
    assert_eq!(prepares(run(Workload::Audit, System::Tandem)), 0.0);
    // Two writing branches: two prepares each (the counters are read at
    // the window's edges, so a transaction in flight there counts half).
    let transfer = prepares(run(Workload::Transfer, System::Tandem));
    assert!((1.5..2.5).contains(&transfer), "{transfer} prepares per transfer");
    assert!(prepares(run(Workload::Transfer, System::B1)) > 1.5);
    assert_eq!(prepares(run(Workload::Transfer, System::B0)), 0.0);
    // tandem's writing branches carry their marker rows (plain-text INSERTs
    // in the prepare's round trip); the hand-driven baseline has none.
    let markers = run(Workload::Transfer, System::Tandem).mariadb_per_tx["Com_insert"];
    assert!((1.5..2.5).contains(&markers), "{markers} marker rows per transfer");
    assert_eq!(run(Workload::Transfer, System::B1).mariadb_per_tx["Com_insert"], 0.0);

    let alone = report.coordinator_only.as_ref().unwrap();
    assert!(alone.committed > 0 && alone.errors == 0, "{:?}", alone.reasons);
    assert!(alone.cpu_ms_per_tx_by_role["coordinator"] > 0.0);
    // Each telemetry setting ran (the traced one checks its spans arrived).
    let settings: Vec<_> = report.telemetry.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        settings,
        [
            bench::Telemetry::Off,
            bench::Telemetry::Metrics,
            bench::Telemetry::Traces,
            bench::Telemetry::SampledTraces,
        ]
    );
    for (telemetry, run) in &report.telemetry {
        assert!(run.committed > 0 && run.errors == 0, "{telemetry:?}: {:?}", run.reasons);
    }

    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(
        written["sections"][0]["runs"].as_array().unwrap().len(),
        section.runs.len()
    );
}
