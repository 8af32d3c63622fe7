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
    let note = |id: i64| {
        Statement::new("INSERT INTO notes (id, body) VALUES (?, ?)")
            .bind(id)
            .bind("ctl")
    };
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
