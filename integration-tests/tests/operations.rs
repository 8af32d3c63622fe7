//! What an operator runs tandem with, on real processes: the admin
//! listener's metrics, seen like a Prometheus scraper sees them, and the
//! drain on SIGTERM.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use tandem_client::{Client, Outcome};
use tandem_integration_tests::cluster::{TEST_PRINCIPAL, Target};
use tandem_integration_tests::{Cluster, ClusterConfig};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// The samples of an OpenMetrics text, by series (name with its labels,
/// as written).
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// One series' value; absent counts as 0 (a counter never incremented
/// has no series yet).
fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

/// Scrapes `target` until `done` holds for what it shows (counters are
/// bumped as actors end, just after the client's answer); panics with the
/// last scrape after 20 s.
async fn scrape_until(
    cluster: &Cluster,
    target: &Target,
    what: &str,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let text = cluster.metrics(target).await.expect("scrape");
        let now = samples(&text);
        if done(&now) {
            return now;
        }
        assert!(
            Instant::now() < until,
            "{target}: {what} never held; last scrape:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const COMMITTED_2PC: &str =
    r#"tandem_coordinator_transactions_total{api="submit",shape="two_phase",outcome="committed"}"#;
const ABORTED_2PC: &str = r#"tandem_coordinator_transactions_total{api="submit",shape="two_phase",outcome="aborted"}"#;
const ONE_PHASE: &str = r#"tandem_coordinator_transactions_total{api="submit",shape="one_phase",outcome="committed"}"#;
const INTERACTIVE: &str =
    r#"tandem_coordinator_transactions_total{api="interactive",shape="two_phase",outcome="committed"}"#;

#[tokio::test]
async fn metrics_count_transactions_by_outcome_and_time_each_phase() {
    let cluster = Cluster::start(ClusterConfig {
        participants: vec!["alpha".into(), "beta".into()],
        ..ClusterConfig::default()
    })
    .await
    .expect("cluster starts");
    let mut client = cluster.client().await.expect("client connects");
    seed_accounts(&mut client, &["alpha", "beta"], 2, 100).await;
    let coordinator = Target::Coordinator(0);
    let alpha = Target::Participant("alpha".into());
    // The seeding's transactions have all ended.
    let before = scrape_until(&cluster, &coordinator, "no live transaction", |now| {
        value(now, "tandem_coordinator_live_transactions") == 0.0
    })
    .await;
    let alpha_before = samples(&cluster.metrics(&alpha).await.unwrap());

    // A committed transfer, one whose guard fails (aborted), a
    // single-participant one (one phase), and an interactive one.
    let done = client
        .submit(vec![("alpha", vec![debit(1, 10)]), ("beta", vec![credit(1, 10)])])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    let done = client
        .submit(vec![("alpha", vec![debit(1, 10)]), ("beta", vec![credit(99, 10)])])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Aborted, "{}", done.reason);
    let done = client.submit(vec![("alpha", vec![credit(2, 5)])]).await.unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    let txn = interactive_transfer(&mut client).await;

    let grew = |now: &HashMap<String, f64>, series: &str| value(now, series) - value(&before, series);
    let now = scrape_until(&cluster, &coordinator, "one more of each kind", |now| {
        [COMMITTED_2PC, ABORTED_2PC, ONE_PHASE, INTERACTIVE]
            .iter()
            .all(|series| grew(now, series) == 1.0)
    })
    .await;
    // Each phase was timed: a prepare round and a phase 2 for each
    // transaction with two branches, a decision and an answer for all.
    let count = |phase: &str| {
        grew(
            &now,
            &format!(r#"tandem_coordinator_phase_seconds_count{{phase="{phase}"}}"#),
        )
    };
    assert!(count("prepare") >= 3.0, "prepare: {}", count("prepare"));
    assert!(count("phase2") >= 3.0, "phase2: {}", count("phase2"));
    assert_eq!(count("answer"), 4.0, "answers");
    assert_eq!(count("decision"), 4.0, "decisions");
    let answer_sum = grew(&now, r#"tandem_coordinator_phase_seconds_sum{phase="answer"}"#);
    assert!(answer_sum > 0.0 && answer_sum < 30.0, "answer time {answer_sum}");
    assert_eq!(value(&now, "tandem_coordinator_live_transactions"), 0.0);
    for participant in ["alpha", "beta"] {
        let reachable = format!(r#"tandem_coordinator_participant_reachable{{participant="{participant}"}}"#);
        assert_eq!(value(&now, &reachable), 1.0, "{reachable}");
    }

    // alpha ran a branch of each: it timed its steps and counts endings.
    let alpha_now = scrape_until(&cluster, &alpha, "three committed branches", |now| {
        value(now, r#"tandem_participant_branches_total{ending="committed"}"#)
            - value(
                &alpha_before,
                r#"tandem_participant_branches_total{ending="committed"}"#,
            )
            == 3.0
    })
    .await;
    let alpha_grew = |series: &str| value(&alpha_now, series) - value(&alpha_before, series);
    assert_eq!(
        alpha_grew(r#"tandem_participant_branches_total{ending="rolled_back"}"#),
        1.0
    );
    // The aborted transfer's branch may have been rolled back before it
    // prepared (a writer that read holds until every vote is in).
    assert!(alpha_grew(r#"tandem_participant_step_seconds_count{step="prepare"}"#) >= 2.0);
    assert_eq!(
        alpha_grew(r#"tandem_participant_step_seconds_count{step="rollback"}"#),
        1.0
    );
    assert_eq!(
        alpha_grew(r#"tandem_participant_step_seconds_count{step="commit_one_phase"}"#),
        1.0
    );
    assert!(alpha_grew(r#"tandem_participant_step_seconds_count{step="execute"}"#) >= 4.0);
    assert_eq!(value(&alpha_now, "tandem_participant_mysql_up"), 1.0);
    let admin = cluster.admin_addr(&alpha).unwrap();
    assert_eq!(
        tandem_integration_tests::http::get(admin, "/readyz").await.unwrap().0,
        200
    );
    assert_eq!(
        tandem_integration_tests::http::get(admin, "/livez").await.unwrap().0,
        200
    );
    assert_eq!(value(&alpha_now, "tandem_participant_live_branches"), 0.0);
    assert_eq!(value(&alpha_now, "tandem_participant_mysql_sessions_max"), 64.0);
    assert!(value(&alpha_now, "tandem_participant_recovery_passes_total") >= 1.0);

    // Every metric the Grafana dashboard asks for is one the processes
    // serve.
    let served = format!(
        "{}{}",
        cluster.metrics(&coordinator).await.unwrap(),
        cluster.metrics(&alpha).await.unwrap()
    );
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/tandem.json"))
        .expect("deploy/grafana/tandem.json");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in metric_names(expr) {
                asked += 1;
                assert!(
                    served.contains(&format!("# TYPE {name} ")),
                    "the dashboard asks for {name}, which no process serves ({expr})"
                );
            }
        }
    }
    assert!(asked >= 10, "{asked} metrics in the dashboard");

    // No series names a transaction.
    for target in [&coordinator, &alpha] {
        let text = cluster.metrics(target).await.unwrap();
        assert!(!text.contains(&txn), "{target} shows transaction {txn}:\n{text}");
        assert!(!text.contains(&done.txn_id), "{target} shows a transaction id:\n{text}");
    }
}

/// The tandem metric families an expression reads (`_bucket`, `_count`,
/// `_sum` and `_total` name their family's series).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tandem_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.push(family.to_owned());
        rest = &tail[end..];
    }
    names
}

/// An interactive transfer alpha → beta, committed; returns its id.
async fn interactive_transfer(client: &mut Client) -> String {
    let txn = client.begin().await.unwrap();
    client.execute(&txn, "alpha", vec![debit(2, 1)]).await.unwrap();
    client.execute(&txn, "beta", vec![credit(2, 1)]).await.unwrap();
    let done = client.commit(&txn).await.unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    txn
}

#[tokio::test]
async fn a_participant_reports_its_in_doubt_branches_and_their_age_until_recovery_finishes_them() {
    let (mut cluster, mut client) = {
        let cluster = Cluster::start(ClusterConfig {
            participants: vec!["alpha".into(), "beta".into()],
            failpoints: vec![("coordinator".into(), "coordinator::before_phase2=return(crash)".into())],
            ..ClusterConfig::default()
        })
        .await
        .expect("cluster starts");
        let client = cluster.client().await.expect("client connects");
        (cluster, client)
    };
    seed_accounts(&mut client, &["alpha", "beta"], 1, 100).await;
    // The coordinator dies with both branches prepared: with it down,
    // they are in doubt on each participant.
    let done = client
        .submit(vec![("alpha", vec![debit(1, 10)]), ("beta", vec![credit(1, 10)])])
        .await;
    assert!(done.is_err(), "the coordinator should have died: {done:?}");
    cluster.wait_coordinator_exit(Duration::from_secs(10)).await.unwrap();
    let alpha = Target::Participant("alpha".into());
    scrape_until(&cluster, &alpha, "one branch in doubt for 2 s", |now| {
        value(now, "tandem_participant_in_doubt_branches") == 1.0
            && value(now, "tandem_participant_oldest_in_doubt_seconds") >= 2.0
    })
    .await;
    // Back, the coordinator's replica tells recovery it committed.
    cluster.restart_coordinator().await.unwrap();
    let now = scrape_until(&cluster, &alpha, "the branch recovered", |now| {
        value(now, "tandem_participant_in_doubt_branches") == 0.0
            && value(
                now,
                r#"tandem_participant_recovered_branches_total{outcome="committed"}"#,
            ) == 1.0
    })
    .await;
    assert_eq!(value(&now, "tandem_participant_oldest_in_doubt_seconds"), 0.0);
    wait_no_prepared(&cluster, Duration::from_secs(10)).await;
    let resolved = samples(&cluster.metrics(&Target::Coordinator(0)).await.unwrap());
    assert!(
        value(
            &resolved,
            r#"tandem_coordinator_resolutions_total{outcome="committed"}"#
        ) >= 1.0,
        "{resolved:?}"
    );
}

/// What replica `i`'s gRPC health service says.
async fn health(cluster: &Cluster, i: usize) -> i32 {
    let endpoint = cluster.replica_access(i, TEST_PRINCIPAL).unwrap().endpoint().unwrap();
    let channel = endpoint.connect().await.expect("connect for health");
    let request = HealthCheckRequest { service: String::new() };
    HealthClient::new(channel)
        .check(request)
        .await
        .expect("health check")
        .into_inner()
        .status
}

async fn replica_client(cluster: &Cluster, i: usize) -> Client {
    cluster
        .replica_access(i, TEST_PRINCIPAL)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn drain_cluster(drain_timeout_ms: u32) -> Cluster {
    let cluster = Cluster::start(ClusterConfig {
        participants: vec!["alpha".into(), "beta".into()],
        replicas: 2,
        coordinator_args: vec!["--drain-timeout-ms".into(), drain_timeout_ms.to_string()],
        ..ClusterConfig::default()
    })
    .await
    .expect("cluster starts");
    let mut client = replica_client(&cluster, 1).await;
    seed_accounts(&mut client, &["alpha", "beta"], 2, 100).await;
    cluster
}

async fn balance(cluster: &Cluster, node: &str, account: i64) -> i64 {
    scalar(
        cluster.node(node).pool(),
        &format!("SELECT balance FROM accounts WHERE id = {account}"),
    )
    .await
}

#[tokio::test]
async fn sigterm_drains_a_replica_its_live_transactions_finish_and_it_exits_with_nothing_prepared() {
    let mut cluster = drain_cluster(20_000).await;
    let mut client = replica_client(&cluster, 0).await;
    // An interactive transfer left open, and a Submit whose prepare on
    // beta is held back 2 s: both live when SIGTERM comes.
    let open = client.begin().await.unwrap();
    client.execute(&open, "alpha", vec![debit(1, 10)]).await.unwrap();
    client.execute(&open, "beta", vec![credit(1, 10)]).await.unwrap();
    cluster
        .failpoint("beta", "participant::before_prepare", "1*return(delay:2000)")
        .await
        .unwrap();
    let mut submitter = replica_client(&cluster, 0).await;
    let submit = tokio::spawn(async move {
        submitter
            .submit(vec![("alpha", vec![debit(2, 5)]), ("beta", vec![credit(2, 5)])])
            .await
    });
    let coordinator = Target::Coordinator(0);
    scrape_until(&cluster, &coordinator, "two live transactions", |now| {
        value(now, "tandem_coordinator_live_transactions") == 2.0
    })
    .await;

    let admin = cluster.admin_addr(&coordinator).unwrap();
    let ready = tandem_integration_tests::http::get(admin, "/readyz").await.unwrap();
    assert_eq!(ready.0, 200, "{ready:?}");
    cluster.terminate(&coordinator);
    // Draining: NOT_SERVING (also to an HTTP probe), and nothing new
    // begins there.
    let until = Instant::now() + Duration::from_secs(10);
    while health(&cluster, 0).await != ServingStatus::NotServing as i32 {
        assert!(Instant::now() < until, "health never turned NOT_SERVING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = tandem_integration_tests::http::get(admin, "/readyz").await.unwrap();
    assert_eq!(ready.0, 503, "{ready:?}");
    assert!(ready.1.contains("draining"), "{ready:?}");
    let refused = expect_code(client.begin().await, tonic::Code::Unavailable);
    assert!(refused.message().contains("draining"), "{refused:?}");
    // What was live finishes: the open transfer commits on request, the
    // Submit in flight commits.
    let done = client.commit(&open).await.expect("commit while draining");
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    let done = submit.await.unwrap().expect("submit in flight while draining");
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    // Then it exits on its own, cleanly, long before its drain time.
    let status = cluster
        .wait_replica_exit(0, Duration::from_secs(10))
        .await
        .unwrap()
        .expect("it was running");
    assert!(status.success(), "exit status {status}");
    assert_no_prepared(&cluster).await;
    assert_eq!(
        [balance(&cluster, "alpha", 1).await, balance(&cluster, "beta", 1).await],
        [90, 110]
    );
    assert_eq!(
        [balance(&cluster, "alpha", 2).await, balance(&cluster, "beta", 2).await],
        [95, 105]
    );
    // The other replica serves on.
    let mut other = replica_client(&cluster, 1).await;
    let done = other
        .submit(vec![("alpha", vec![debit(1, 1)]), ("beta", vec![credit(1, 1)])])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
}

#[tokio::test]
async fn a_transaction_still_open_when_the_drain_time_ends_is_rolled_back_before_the_replica_exits() {
    let mut cluster = drain_cluster(1_000).await;
    let mut client = replica_client(&cluster, 0).await;
    let open = client.begin().await.unwrap();
    client.execute(&open, "alpha", vec![debit(1, 10)]).await.unwrap();
    client.execute(&open, "beta", vec![credit(1, 10)]).await.unwrap();
    let started = Instant::now();
    cluster.terminate(&Target::Coordinator(0));
    let status = cluster
        .wait_replica_exit(0, Duration::from_secs(15))
        .await
        .unwrap()
        .expect("it was running");
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "exited before its drain time: {:?}",
        started.elapsed()
    );
    // Rolled back before the exit: no lock, nothing prepared, nothing
    // applied; the other replica finds it aborted.
    assert_no_prepared(&cluster).await;
    for node in ["alpha", "beta"] {
        assert_unlocked(cluster.node(node).pool(), "accounts", "id = 1").await;
    }
    assert_eq!(
        [balance(&cluster, "alpha", 1).await, balance(&cluster, "beta", 1).await],
        [100, 100]
    );
    let mut other = replica_client(&cluster, 1).await;
    let info = other.get_transaction(&open).await.unwrap();
    assert_eq!(info.outcome(), Outcome::Aborted, "{info:?}");
}

#[tokio::test]
async fn sigterm_drains_a_participant_its_live_branch_commits_and_no_branch_begins() {
    let mut cluster = drain_cluster(20_000).await;
    let mut client = replica_client(&cluster, 0).await;
    let open = client.begin().await.unwrap();
    client.execute(&open, "alpha", vec![debit(1, 10)]).await.unwrap();
    client.execute(&open, "beta", vec![credit(1, 10)]).await.unwrap();
    cluster.terminate(&Target::Participant("alpha".into()));
    // Draining: a branch that would begin on alpha is refused…
    let until = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let other = client.begin().await.unwrap();
        match client.execute(&other, "alpha", vec![credit(2, 1)]).await {
            Err(status) => break status,
            Ok(_) => {
                client.rollback(&other).await.unwrap();
                assert!(Instant::now() < until, "alpha kept beginning branches");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(refused.message().contains("shutting down"), "{refused:?}");
    // …and the one it holds still commits, then alpha exits.
    let done = client.commit(&open).await.expect("commit while alpha drains");
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    cluster
        .wait_participant_exit("alpha", Duration::from_secs(10))
        .await
        .unwrap();
    assert_no_prepared(&cluster).await;
    assert_eq!(
        [balance(&cluster, "alpha", 1).await, balance(&cluster, "beta", 1).await],
        [90, 110]
    );
}
