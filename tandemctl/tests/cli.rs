//! `tandemctl` run as an operator would, against a real cluster (two
//! replicas, real MariaDB), with the cluster's TLS identities.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use tandem_client::{Outcome, Statement, pb};
use tandem_common::{Identity, Role};
use tandem_integration_tests::cluster::replica_name;
use tandem_integration_tests::{Cluster, ClusterConfig};

/// Runs `tandemctl` as `identity` against every replica of `cluster`.
fn tandemctl(cluster: &Cluster, identity: &Identity, args: &[&str]) -> Output {
    let files = cluster.ca().expect("a TLS cluster").files(identity).expect("issue");
    let replicas: Vec<String> = (0..cluster.replica_count())
        .map(|i| format!("{}={}", replica_name(i), cluster.replica_url(i)))
        .collect();
    Command::new(env!("CARGO_BIN_EXE_tandemctl"))
        .arg("--coordinator")
        .arg(replicas.join(","))
        .arg("--tls-ca")
        .arg(&files.ca)
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .args(args)
        .output()
        .expect("run tandemctl")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "tandemctl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8")
}

/// A row of the demo schema's `notes` table.
fn note(id: i64, body: &str) -> Statement {
    Statement::new("INSERT INTO notes (id, body) VALUES (?, ?)")
        .bind(id)
        .bind(body)
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&stdout(output)).expect("JSON")
}

#[tokio::test]
async fn an_operator_sees_replicas_participants_and_transactions_and_drains_a_replica() {
    let mut cluster = Cluster::start(ClusterConfig {
        participants: vec!["alpha".into(), "beta".into()],
        replicas: 2,
        ..ClusterConfig::default()
    })
    .await
    .expect("cluster starts");
    let ops = Identity::new(Role::Operator, "ops").unwrap();
    let mut client = cluster.client().await.expect("client connects");
    let note = |id: i64| note(id, "ctl");
    let done = client
        .submit_with(pb::SubmitRequest {
            label: "ctl-1".into(),
            branches: vec![
                pb::Branch {
                    participant: "alpha".into(),
                    statements: vec![note(1)],
                },
                pb::Branch {
                    participant: "beta".into(),
                    statements: vec![note(1)],
                },
            ],
            ..pb::SubmitRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);

    // Status: both replicas serving this version; the participants
    // reachable with nothing in doubt.
    let status = json(&tandemctl(&cluster, &ops, &["status", "--json"]));
    let replicas = status["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 2, "{status}");
    for replica in replicas {
        assert_eq!(replica["reachable"], true, "{status}");
        assert_eq!(replica["draining"], false, "{status}");
        assert_eq!(replica["version"], env!("CARGO_PKG_VERSION"), "{status}");
    }
    let participants = status["participants"].as_array().unwrap();
    let names: Vec<&str> = participants.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "beta"], "{status}");
    assert!(participants.iter().all(|p| p["reachable"] == true), "{status}");
    let table = stdout(&tandemctl(&cluster, &ops, &["status"]));
    assert!(table.starts_with("REPLICA"), "{table}");
    assert!(table.contains("tc2") && table.contains("serving"), "{table}");
    assert!(table.contains("PARTICIPANT") && table.contains("reachable"), "{table}");

    // Transactions: found by label, shown with its branches.
    let listed = json(&tandemctl(
        &cluster,
        &ops,
        &["transactions", "list", "--label", "ctl-1", "--json"],
    ));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["txn_id"], done.txn_id.as_str());
    assert_eq!(listed[0]["outcome"], "committed");
    assert_eq!(listed[0]["replica"], "tc");
    let shown = stdout(&tandemctl(&cluster, &ops, &["transactions", "show", &done.txn_id]));
    assert!(shown.contains(&done.txn_id), "{shown}");
    assert!(shown.contains("committed"), "{shown}");
    assert!(shown.contains("alpha") && shown.contains("beta"), "{shown}");

    // A client identity is refused, with a clear error and exit code.
    let client_identity = Identity::new(Role::Client, "tester").unwrap();
    let refused = tandemctl(&cluster, &client_identity, &["status"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("operator identities"), "{stderr}");
    let refused = tandemctl(&cluster, &client_identity, &["drain", "tc"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Drain is for operator identities"), "{stderr}");
    let status = json(&tandemctl(&cluster, &ops, &["status", "--json"]));
    assert_eq!(
        status["replicas"][0]["draining"], false,
        "a client drained tc: {status}"
    );

    // Drain tc2: it exits on its own, cleanly; status then says so.
    let drained = stdout(&tandemctl(&cluster, &ops, &["drain", "tc2"]));
    assert!(drained.contains("tc2 is draining"), "{drained}");
    let exit = cluster
        .wait_replica_exit(1, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("tc2 was running");
    assert!(exit.success(), "tc2 exited with {exit}");
    let after = tandemctl(&cluster, &ops, &["status", "--json"]);
    assert!(!after.status.success(), "a replica is down: status must fail");
    let after: Value = serde_json::from_slice(&after.stdout).expect("JSON even when a replica is down");
    assert_eq!(after["replicas"][1]["reachable"], false, "{after}");
    assert_eq!(after["replicas"][0]["reachable"], true, "{after}");
}

/// Rolls back `participant`'s prepared branch of `id` by hand, as an
/// operator who decided it alone would (XAER_NOTA until MariaDB notices
/// the participant's session is gone).
async fn roll_back_by_hand(cluster: &Cluster, participant: &str, id: &str) {
    let rollback = format!("XA ROLLBACK '{id}', '{participant}', {}", 0x7464_6d31);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(err) = sqlx::raw_sql(sqlx::AssertSqlSafe(rollback.clone()))
        .execute(cluster.node(participant).pool())
        .await
    {
        assert!(std::time::Instant::now() < until, "{rollback}: {err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The audit rows of `id` in `participant`'s database.
async fn audit_rows(cluster: &Cluster, participant: &str, id: &str) -> Vec<(String, String, String)> {
    sqlx::query_as("SELECT operator, reason, detail FROM tandem.audit WHERE gtrid = ?")
        .bind(id)
        .fetch_all(cluster.node(participant).pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_operator_lists_in_doubt_branches_and_resolves_a_hazard_with_an_audit_record() {
    let mut cluster = Cluster::start(ClusterConfig {
        participants: vec!["alpha".into(), "beta".into()],
        ..ClusterConfig::default()
    })
    .await
    .expect("cluster starts");
    let ops = Identity::new(Role::Operator, "ops").unwrap();
    let mut client = cluster.client().await.expect("client connects");
    let note = |id: i64| note(id, "hazard");
    let plain = client
        .submit(vec![("alpha", vec![note(2)]), ("beta", vec![note(2)])])
        .await
        .unwrap();
    assert_eq!(plain.outcome(), Outcome::Committed, "{}", plain.reason);

    // Phase 2 is held back: meanwhile both branches stay prepared.
    cluster
        .failpoint("coordinator", "coordinator::before_phase2", "2*return(delay:8000)")
        .await
        .unwrap();
    let txn = client.begin().await.unwrap();
    client.execute(&txn, "alpha", vec![note(1)]).await.unwrap();
    client.execute(&txn, "beta", vec![note(1)]).await.unwrap();
    let commit = {
        let mut client = cluster.client().await.unwrap();
        let txn = txn.clone();
        tokio::spawn(async move { client.commit(&txn).await })
    };

    // In doubt on both participants, with their age and participant set.
    let until = std::time::Instant::now() + Duration::from_secs(6);
    let listed = loop {
        let report = json(&tandemctl(&cluster, &ops, &["in-doubt", "--json"]));
        let ours: Vec<Value> = report["branches"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["gtrid"] == txn.as_str())
            .cloned()
            .collect();
        if ours.len() == 2 {
            break ours;
        }
        assert!(std::time::Instant::now() < until, "not listed in doubt: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut on: Vec<&str> = listed.iter().map(|b| b["participant"].as_str().unwrap()).collect();
    on.sort_unstable();
    assert_eq!(on, ["alpha", "beta"], "{listed:?}");
    for branch in &listed {
        assert_eq!(branch["participants"], serde_json::json!(["alpha", "beta"]), "{branch}");
        assert_eq!(branch["issued_by"], "tc", "{branch}");
        assert!(branch["age_ms"].as_u64().unwrap() < 30_000, "{branch}");
    }
    let table = stdout(&tandemctl(&cluster, &ops, &["in-doubt"]));
    assert!(table.starts_with("PARTICIPANT") && table.contains(&txn), "{table}");
    let old = json(&tandemctl(
        &cluster,
        &ops,
        &["in-doubt", "--older-than-secs", "3600", "--json"],
    ));
    assert_eq!(old["branches"], serde_json::json!([]), "{old}");

    // An operator rolls beta's branch back by hand before phase 2: the
    // transaction commits on alpha alone, a heuristic hazard.
    cluster.kill_participant("beta");
    roll_back_by_hand(&cluster, "beta", &txn).await;
    cluster.restart_participant("beta").await.unwrap();
    let answer = commit.await.unwrap().unwrap();
    assert_eq!(answer.outcome(), Outcome::Committed, "{}", answer.reason);
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let hazards = json(&tandemctl(&cluster, &ops, &["hazards", "list", "--json"]));
        if let Some(h) = hazards.as_array().unwrap().iter().find(|t| t["txn_id"] == txn.as_str()) {
            assert!(h["hazard"].as_str().unwrap().contains("beta"), "{h}");
            break;
        }
        assert!(std::time::Instant::now() < until, "no hazard listed: {hazards}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Bad requests change nothing: a client identity, no reason, a
    // transaction without a hazard.
    let client_identity = Identity::new(Role::Client, "tester").unwrap();
    for args in [
        &["hazards", "resolve", txn.as_str(), "--reason", "mine"][..],
        &["in-doubt"][..],
    ] {
        let refused = tandemctl(&cluster, &client_identity, args);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("operator identities"), "{stderr}");
    }
    let refused = tandemctl(&cluster, &ops, &["hazards", "resolve", &txn, "--reason", "  "]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("reason is required"));
    let refused = tandemctl(&cluster, &ops, &["hazards", "resolve", &plain.txn_id, "--reason", "x"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no heuristic hazard"));
    for participant in ["alpha", "beta"] {
        assert!(audit_rows(&cluster, participant, &txn).await.is_empty());
    }

    // Resolved: who, when and why in both participants' audit tables; the
    // hazard leaves the list and the transaction shows its resolution.
    let reason = "beta's note 1 re-inserted by hand (ticket OPS-12)";
    let resolved = json(&tandemctl(
        &cluster,
        &ops,
        &["--json", "hazards", "resolve", &txn, "--reason", reason],
    ));
    assert_eq!(resolved["operator"], "operator ops", "{resolved}");
    assert_eq!(resolved["reason"], reason, "{resolved}");
    assert_eq!(resolved["already"], false, "{resolved}");
    assert_eq!(
        resolved["recorded_on"],
        serde_json::json!(["alpha", "beta"]),
        "{resolved}"
    );
    assert!(resolved["resolved_unix_ms"].as_u64().unwrap() > 0, "{resolved}");
    for participant in ["alpha", "beta"] {
        let rows = audit_rows(&cluster, participant, &txn).await;
        assert_eq!(rows.len(), 1, "{participant}: {rows:?}");
        assert_eq!(rows[0].0, "operator ops");
        assert_eq!(rows[0].1, reason);
        assert!(rows[0].2.contains("beta"), "the hazard is kept with it: {rows:?}");
    }
    let hazards = json(&tandemctl(&cluster, &ops, &["hazards", "list", "--json"]));
    assert_eq!(hazards, serde_json::json!([]), "{hazards}");
    let shown = json(&tandemctl(&cluster, &ops, &["transactions", "show", &txn, "--json"]));
    assert_eq!(shown["hazard_resolution"]["operator"], "operator ops", "{shown}");
    assert_eq!(shown["hazard_resolution"]["reason"], reason, "{shown}");

    // Resolving again records nothing new: the first resolution stands.
    let again = stdout(&tandemctl(
        &cluster,
        &ops,
        &["hazards", "resolve", &txn, "--reason", "another story"],
    ));
    assert!(again.contains("was already resolved by operator ops"), "{again}");
    assert!(again.contains(reason), "{again}");
    for participant in ["alpha", "beta"] {
        assert_eq!(audit_rows(&cluster, participant, &txn).await.len(), 1);
    }
}
