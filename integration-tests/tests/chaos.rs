//! The chaos suite's short profile (about two minutes per MariaDB mode):
//! a bank workload under random kills, pauses, failpoint crashes, delays
//! and errors, and network cuts, then a check of the recorded history
//! against every database. `TANDEM_CHAOS_SEED` replays another seed; the
//! long profile is `tandem-chaos --duration 30m` (README).

use std::path::PathBuf;

use tandem_integration_tests::chaos::schedule::Kind;
use tandem_integration_tests::chaos::{self, Options};

fn seed(default: u64) -> u64 {
    std::env::var("TANDEM_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Two runs at once would share two cores between six databases: under
/// `cargo test` (nextest runs them one at a time anyway) they take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn short_profile(binlog: bool, default_seed: u64) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let seed = seed(default_seed);
    let mode = if binlog { "on" } else { "off" };
    let history = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{seed}-binlog-{mode}.jsonl"));
    println!("chaos seed: {seed}; history: {}", history.display());
    let summary = chaos::run(&Options::short(seed, binlog, history))
        .await
        .unwrap_or_else(|e| panic!("chaos run (seed {seed}) failed: {e:#}"));
    println!("{summary}");
    assert!(summary.violations.is_empty(), "invariant violations (seed {seed})");
    assert!(summary.leftover.is_empty(), "XIDs left prepared (seed {seed})");
    for kind in Kind::ALL {
        assert!(
            summary.faults.contains_key(&kind),
            "no {} fault was injected",
            kind.name()
        );
    }
    // Armed is not enough: a crash failpoint fires only if a transaction
    // reaches its step while it is armed.
    assert!(
        !summary.crashes_fired.is_empty(),
        "no crash failpoint fired: no process died at a protocol step"
    );
    let sent = summary.transfers.attempted - summary.transfers.not_sent;
    assert!(sent >= 300, "only {sent} transfers reached the coordinator");
    assert!(
        summary.transfers.ok >= 50,
        "only {} transfers committed",
        summary.transfers.ok
    );
    assert!(
        summary.audits.ok >= 1,
        "no audit committed, so no audit read was checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_profile_binlog_off() {
    short_profile(false, 20261122).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_profile_binlog_on_sync_binlog_1() {
    short_profile(true, 20261123).await;
}
