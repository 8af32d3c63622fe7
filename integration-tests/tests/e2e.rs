//! End-to-end tests: a real cluster (3 private MariaDB instances, 3
//! participants, a coordinator, all real processes) driven over gRPC, with
//! the end state checked directly on every database.

mod common;

use std::time::Duration;

use common::*;
use tandem_client::pb::{self, TxnState};
use tandem_client::{Outcome, Statement, Value};
use tandem_common::{Identity, Role};
use tandem_integration_tests::cluster::coordinator_identity;
use tandem_integration_tests::demo::Demo;
use tandem_integration_tests::{Cluster, ClusterConfig};
use tonic::Code;

#[tokio::test]
async fn transfer_across_two_databases_commits_on_both() {
    let cluster = cluster().await;
    let mut client = cluster.client().await.unwrap();
    seed_accounts(&mut client, &["alpha", "beta"], 1, 100).await;

    let done = client
        .submit(vec![("alpha", vec![debit(1, 40)]), ("beta", vec![credit(1, 40)])])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    assert_eq!(done.results.len(), 2);
    assert_eq!(done.results[0].results[0].rows_affected, 1);

    let (a, b) = (cluster.node("alpha").pool(), cluster.node("beta").pool());
    assert_eq!(scalar(a, "SELECT balance FROM accounts WHERE id = 1").await, 60);
    assert_eq!(scalar(b, "SELECT balance FROM accounts WHERE id = 1").await, 140);

    let info = client.get_transaction(&done.txn_id).await.unwrap();
    assert_eq!(info.state(), TxnState::Committed);
    assert_eq!(info.outcome(), Outcome::Committed);

    // A labelled Submit can be found by its label.
    let labelled = client
        .submit_with(pb::SubmitRequest {
            label: "transfer-42".into(),
            branches: vec![pb::Branch {
                participant: "alpha".into(),
                statements: vec![Statement::new("SELECT 1")],
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let found = client
        .raw()
        .list_transactions(pb::ListTransactionsRequest {
            label: "transfer-42".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].txn_id, labelled.txn_id);
    assert_eq!(info.branches.len(), 2);
    assert!(info.finished_unix_ms >= info.decided_unix_ms && info.decided_unix_ms >= info.started_unix_ms);
    assert_no_prepared(&cluster).await;
}

#[tokio::test]
async fn order_and_stock_commit_together_or_not_at_all() {
    let cluster = cluster().await;
    let mut client = cluster.client().await.unwrap();
    let seeded = client
        .submit(vec![(
            "gamma",
            vec![Statement::new("INSERT INTO stock VALUES ('apple', 3)")],
        )])
        .await
        .unwrap();
    assert_eq!(seeded.outcome(), Outcome::Committed);

    let order = |qty: i64| {
        vec![
            (
                "gamma",
                vec![
                    Statement::new("UPDATE stock SET qty = qty - ? WHERE sku = ? AND qty >= ?")
                        .bind(qty)
                        .bind("apple")
                        .bind(qty)
                        .expect_rows_affected(1),
                ],
            ),
            (
                "beta",
                vec![
                    Statement::new("INSERT INTO orders (sku, qty, customer, total, placed_at) VALUES (?, ?, ?, ?, ?)")
                        .bind("apple")
                        .bind(qty)
                        .bind("carol")
                        .bind(Value::decimal("4.50"))
                        .bind(Value {
                            kind: Some(pb::value::Kind::DatetimeValue("2026-11-22 10:00:00".into())),
                        }),
                    Statement::new("SELECT id, total, placed_at FROM orders WHERE customer = ?").bind("carol"),
                ],
            ),
        ]
    };
    let (stock, orders) = (cluster.node("gamma").pool(), cluster.node("beta").pool());

    // Enough stock: both happen, and the results are typed.
    let done = client.submit(order(2)).await.unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    let select = &done.results[1].results[1];
    assert_eq!(select.columns, ["id", "total", "placed_at"]);
    assert_eq!(select.rows.len(), 1);
    let row = &select.rows[0].values;
    assert!(matches!(row[0].kind, Some(pb::value::Kind::IntValue(_))));
    assert_eq!(row[1].kind, Some(pb::value::Kind::DecimalValue("4.50".into())));
    assert_eq!(
        row[2].kind,
        Some(pb::value::Kind::DatetimeValue("2026-11-22 10:00:00".into()))
    );
    assert_eq!(scalar(stock, "SELECT qty FROM stock WHERE sku = 'apple'").await, 1);
    assert_eq!(scalar(orders, "SELECT COUNT(*) FROM orders").await, 1);

    // Not enough stock: the guard fails, neither happens.
    let done = client.submit(order(2)).await.unwrap();
    assert_eq!(done.outcome(), Outcome::Aborted);
    assert!(done.reason.contains("guard failed"), "{}", done.reason);
    assert!(done.reason.contains("gamma"), "{}", done.reason);
    assert!(done.results.is_empty());
    assert_eq!(scalar(stock, "SELECT qty FROM stock WHERE sku = 'apple'").await, 1);
    assert_eq!(scalar(orders, "SELECT COUNT(*) FROM orders").await, 1);
    let info = client.get_transaction(&done.txn_id).await.unwrap();
    assert_eq!(info.outcome(), Outcome::Aborted);
    assert!(info.reason.contains("guard failed"));
    assert_no_prepared(&cluster).await;
    assert_unlocked(stock, "stock", "sku = 'apple'").await;
}

/// One bad branch aborts everything; nothing is applied anywhere; the error
/// names the problem. Both through Submit and interactively.
#[tokio::test]
async fn a_failing_branch_aborts_the_whole_transaction() {
    let cluster = cluster().await;
    let mut client = cluster.client().await.unwrap();
    let bad: Vec<(&str, Statement, Code, &str)> = vec![
        (
            "sql error",
            Statement::new("UPDATE no_such_table SET x = 1"),
            Code::Ok,
            "no_such_table",
        ),
        ("COMMIT", Statement::new("COMMIT"), Code::InvalidArgument, "COMMIT"),
        (
            "DROP TABLE",
            Statement::new("DROP TABLE notes"),
            Code::InvalidArgument,
            "DROP",
        ),
        ("XA RECOVER", Statement::new("XA RECOVER"), Code::InvalidArgument, "XA"),
        (
            "multi-statement",
            Statement::new("SELECT 1; COMMIT"),
            Code::InvalidArgument,
            "multiple statements",
        ),
        (
            "string into an integer column",
            Statement::new("INSERT INTO notes (id, body) VALUES (?, ?)")
                .bind("abc")
                .bind("x"),
            Code::Ok,
            "Incorrect integer value",
        ),
        (
            "malformed decimal parameter",
            Statement::new("INSERT INTO orders (sku, qty, customer, total, placed_at) VALUES ('a', 1, 'c', ?, NOW())")
                .bind(Value::decimal("12.x")),
            Code::InvalidArgument,
            "decimal",
        ),
        (
            "parameter count",
            Statement::new("INSERT INTO notes (id, body) VALUES (?, ?)").bind(1),
            Code::InvalidArgument,
            "2 placeholders but 1 parameters",
        ),
        (
            "parameter without a value",
            Statement::new("INSERT INTO notes (id, body) VALUES (?, 'x')").bind(Value { kind: None }),
            Code::InvalidArgument,
            "no kind",
        ),
    ];
    for (i, (what, statement, code, needle)) in bad.into_iter().enumerate() {
        let id = i as i64 + 1;
        // Submit: a good branch on alpha and gamma, the bad one on beta.
        let result = client
            .submit(vec![
                ("alpha", vec![insert_note(id, what)]),
                ("beta", vec![insert_note(id, what), statement.clone()]),
                ("gamma", vec![insert_note(id, what)]),
            ])
            .await;
        let message = match (code, result) {
            (Code::Ok, Ok(done)) => {
                assert_eq!(done.outcome(), Outcome::Aborted, "{what}");
                done.reason
            }
            (code, Err(status)) if status.code() == code => status.message().to_owned(),
            (code, other) => panic!("{what}: expected {code:?}, got {other:?}"),
        };
        assert!(message.contains(needle), "{what}: {message:?} should name {needle:?}");
        assert!(
            message.contains("beta"),
            "{what}: {message:?} should name the participant"
        );

        // Interactive: good statements on alpha first, then the bad one.
        let txn = client.begin().await.unwrap();
        client
            .execute(&txn, "alpha", vec![insert_note(100 + id, what)])
            .await
            .unwrap();
        let status = client.execute(&txn, "beta", vec![statement]).await.unwrap_err();
        let expected = if code == Code::Ok { Code::Aborted } else { code };
        assert_eq!(status.code(), expected, "{what}: {status:?}");
        assert!(status.message().contains(needle), "{what}: {status:?}");
        // The transaction is over: Commit says so, with the same reason.
        let status = client.commit(&txn).await.unwrap_err();
        assert!(
            matches!(status.code(), Code::Aborted | Code::InvalidArgument),
            "{what}: {status:?}"
        );
    }
    for node in cluster.nodes() {
        assert_eq!(
            scalar(node.pool(), "SELECT COUNT(*) FROM notes").await,
            0,
            "{}",
            node.name
        );
        assert_eq!(
            scalar(node.pool(), "SELECT COUNT(*) FROM orders").await,
            0,
            "{}",
            node.name
        );
    }
    // Every branch was rolled back: nothing prepared.
    wait_no_prepared(&cluster, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_interactive_transaction_reads_its_own_writes_and_hides_them_until_commit() {
    let cluster = cluster().await;
    let mut client = cluster.client().await.unwrap();
    let txn = client.begin().await.unwrap();
    for p in ["alpha", "beta"] {
        client.execute(&txn, p, vec![insert_note(7, "draft")]).await.unwrap();
        let read = client
            .execute(
                &txn,
                p,
                vec![Statement::new("SELECT body FROM notes WHERE id = ?").bind(7)],
            )
            .await
            .unwrap();
        assert_eq!(
            read[0].rows[0].values[0].as_str(),
            Some("draft"),
            "{p} reads its own write"
        );
        // Another client (a plain session) does not see it yet.
        assert_eq!(scalar(cluster.node(p).pool(), "SELECT COUNT(*) FROM notes").await, 0);
    }
    let info = client.get_transaction(&txn).await.unwrap();
    assert_eq!(info.state(), TxnState::Active);
    assert_eq!(info.branches.len(), 2);

    let committed = client.commit(&txn).await.unwrap();
    assert_eq!(committed.outcome(), Outcome::Committed, "{}", committed.reason);
    for p in ["alpha", "beta"] {
        assert_eq!(
            scalar(cluster.node(p).pool(), "SELECT COUNT(*) FROM notes WHERE id = 7").await,
            1
        );
    }
    assert_no_prepared(&cluster).await;
}

#[tokio::test]
async fn rollback_and_an_expired_deadline_release_every_lock() {
    let cluster = cluster().await;
    let mut client = cluster.client().await.unwrap();
    seed_accounts(&mut client, &["alpha", "beta", "gamma"], 1, 100).await;

    // Rollback.
    let txn = client.begin().await.unwrap();
    for p in ["alpha", "beta", "gamma"] {
        client.execute(&txn, p, vec![debit(1, 10)]).await.unwrap();
    }
    client.rollback(&txn).await.unwrap();
    for node in cluster.nodes() {
        assert_unlocked(node.pool(), "accounts", "id = 1").await;
        assert_eq!(
            scalar(node.pool(), "SELECT balance FROM accounts WHERE id = 1").await,
            100
        );
    }
    assert_no_prepared(&cluster).await;
    // A second rollback is harmless; a commit is refused.
    client.rollback(&txn).await.unwrap();
    expect_code(client.commit(&txn).await, Code::FailedPrecondition);

    // Deadline.
    let txn = client
        .begin_with(pb::BeginRequest {
            timeout_ms: 1_000,
            ..Default::default()
        })
        .await
        .unwrap();
    for p in ["alpha", "beta"] {
        client.execute(&txn, p, vec![debit(1, 10)]).await.unwrap();
    }
    // The coordinator aborts at 1 s and rolls every branch back.
    wait_released(&cluster, "accounts", "id = 1", Duration::from_secs(10)).await;
    for node in cluster.nodes() {
        assert_eq!(
            scalar(node.pool(), "SELECT balance FROM accounts WHERE id = 1").await,
            100
        );
    }
    assert_no_prepared(&cluster).await;
    let status = expect_code(client.commit(&txn).await, Code::DeadlineExceeded);
    assert!(status.message().contains("deadline"), "{status:?}");
    expect_code(
        client.execute(&txn, "alpha", vec![debit(1, 1)]).await,
        Code::DeadlineExceeded,
    );
    let info = client.get_transaction(&txn).await.unwrap();
    assert_eq!(info.outcome(), Outcome::Aborted);
    assert!(info.reason.contains("deadline"), "{}", info.reason);
}

/// The coordinator dies mid-transaction: each participant rolls back its
/// unprepared branch on its own once the deadline has passed.
#[tokio::test]
async fn participants_roll_back_unprepared_branches_when_the_coordinator_goes_silent() {
    let mut cluster = cluster().await;
    let mut client = cluster.client().await.unwrap();
    seed_accounts(&mut client, &["alpha", "beta"], 1, 100).await;
    let txn = client
        .begin_with(pb::BeginRequest {
            timeout_ms: 1_000,
            ..Default::default()
        })
        .await
        .unwrap();
    for p in ["alpha", "beta"] {
        client.execute(&txn, p, vec![debit(1, 10)]).await.unwrap();
    }
    cluster.kill_coordinator();
    // After the deadline (1 s) and the participant's grace (1 s), each
    // participant rolls its unprepared branch back on its own.
    wait_released(&cluster, "accounts", "id = 1", Duration::from_secs(10)).await;
    for p in ["alpha", "beta"] {
        let pool = cluster.node(p).pool();
        assert_eq!(scalar(pool, "SELECT balance FROM accounts WHERE id = 1").await, 100);
    }
}

/// A participant that is down: the transaction aborts with a reason naming
/// it, nothing is applied on the others, and the client is answered
/// (after the bounded wait for the rollback that cannot reach the dead one).
///
/// "Down" means the coordinator already knows it: a request written on the
/// connection of a participant that died a moment ago may have reached it,
/// and then the honest answer is UNKNOWN, not ABORTED (the crash tests cover
/// that case). So the test waits until the coordinator's own health probe
/// reports gamma unreachable before it submits.
#[tokio::test]
async fn a_participant_that_is_down_aborts_the_transaction() {
    let mut cluster = cluster().await;
    let mut client = cluster.client().await.unwrap();
    let mut operator = cluster.operator().await.unwrap();
    gamma_seen_reachable(&mut operator, true).await;
    cluster.kill_participant("gamma");
    gamma_seen_reachable(&mut operator, false).await;
    let done = client
        .submit(vec![
            ("alpha", vec![insert_note(1, "x")]),
            ("gamma", vec![insert_note(1, "x")]),
        ])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Aborted);
    assert!(done.reason.contains("gamma"), "{}", done.reason);
    assert_eq!(
        scalar(cluster.node("alpha").pool(), "SELECT COUNT(*) FROM notes").await,
        0
    );
    assert_unlocked(cluster.node("alpha").pool(), "notes", "id = 1").await;
    // Participants' health is the operators' view.
    expect_code(client.list_participants().await, Code::PermissionDenied);
    let participants = operator.list_participants().await.unwrap();
    let gamma = participants.iter().find(|p| p.name == "gamma").unwrap();
    assert!(!gamma.reachable, "{gamma:?}");
    assert_no_prepared(&cluster).await;
}

/// Waits until the coordinator's health probe (every 2 s) sees gamma as
/// `reachable`.
async fn gamma_seen_reachable(operator: &mut tandem_client::Client, reachable: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let participants = operator.list_participants().await.unwrap();
        if participants
            .iter()
            .any(|p| p.name == "gamma" && p.reachable == reachable)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gamma not seen reachable={reachable}: {participants:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn bad_requests_get_documented_codes_and_change_nothing() {
    let cluster = cluster().await;
    let mut client = cluster.client().await.unwrap();

    expect_code(client.commit("tc-999-1").await, Code::NotFound);
    expect_code(client.get_transaction("no-such-txn").await, Code::NotFound);
    expect_code(
        client.execute("tc-999-1", "alpha", vec![insert_note(1, "x")]).await,
        Code::NotFound,
    );
    expect_code(client.commit("").await, Code::InvalidArgument);
    let too_long = pb::BeginRequest {
        timeout_ms: u32::MAX,
        ..Default::default()
    };
    expect_code(client.begin_with(too_long).await, Code::InvalidArgument);
    expect_code(client.submit(vec![]).await, Code::InvalidArgument);
    expect_code(
        client
            .submit(vec![
                ("alpha", vec![insert_note(1, "x")]),
                ("alpha", vec![insert_note(2, "y")]),
            ])
            .await,
        Code::InvalidArgument,
    );
    let status = expect_code(
        client.submit(vec![("omega", vec![insert_note(1, "x")])]).await,
        Code::NotFound,
    );
    assert!(status.message().contains("omega"), "{status:?}");

    // An unknown participant or an empty Execute does not end the transaction.
    let txn = client.begin().await.unwrap();
    client
        .execute(&txn, "alpha", vec![insert_note(1, "kept")])
        .await
        .unwrap();
    expect_code(
        client.execute(&txn, "omega", vec![insert_note(1, "x")]).await,
        Code::NotFound,
    );
    expect_code(client.execute(&txn, "beta", vec![]).await, Code::InvalidArgument);
    client
        .execute(&txn, "beta", vec![insert_note(1, "kept")])
        .await
        .unwrap();
    assert_eq!(client.commit(&txn).await.unwrap().outcome(), Outcome::Committed);

    // After the end: FAILED_PRECONDITION, nothing changes.
    expect_code(
        client.execute(&txn, "alpha", vec![insert_note(2, "late")]).await,
        Code::FailedPrecondition,
    );
    expect_code(client.commit(&txn).await, Code::FailedPrecondition);
    expect_code(client.rollback(&txn).await, Code::FailedPrecondition);
    for p in ["alpha", "beta"] {
        assert_eq!(scalar(cluster.node(p).pool(), "SELECT COUNT(*) FROM notes").await, 1);
    }
    assert_eq!(
        scalar(cluster.node("gamma").pool(), "SELECT COUNT(*) FROM notes").await,
        0
    );
    assert_no_prepared(&cluster).await;
}

/// One participant: one-phase commit, no XA PREPARE. A read-only branch:
/// no XA PREPARE there either.
#[tokio::test]
async fn single_participant_and_read_only_branches_skip_prepare() {
    let cluster = cluster().await;
    let mut client = cluster.client().await.unwrap();
    let (alpha, beta) = (cluster.node("alpha").pool(), cluster.node("beta").pool());
    let before = (
        global_status(alpha, "Com_xa_prepare").await,
        global_status(beta, "Com_xa_prepare").await,
    );
    let xa_starts = global_status(alpha, "Com_xa_start").await;
    let commits = global_status(alpha, "Com_commit").await;
    let rollbacks = global_status(alpha, "Com_rollback").await;

    // A Submit's only branch runs as a plain local transaction, its marker
    // row committed with it.
    let done = client
        .submit(vec![("alpha", vec![insert_note(1, "one phase")])])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    assert_eq!(global_status(alpha, "Com_xa_prepare").await, before.0);
    assert_eq!(global_status(alpha, "Com_xa_start").await, xa_starts);
    assert_eq!(global_status(alpha, "Com_commit").await, commits + 1);
    let marker = format!(
        "SELECT COUNT(*) FROM tandem.xa_markers WHERE gtrid = '{}' AND bqual = 'alpha' AND fenced = 0",
        done.txn_id
    );
    assert_eq!(scalar(alpha, &marker).await, 1);
    // One that fails rolls back, and leaves neither its row nor a marker.
    let guarded = Statement::new("UPDATE notes SET body = 'x' WHERE id = 999").expect_rows_affected(1);
    let failed = client
        .submit(vec![("alpha", vec![insert_note(9, "rolled back"), guarded])])
        .await
        .unwrap();
    assert_eq!(failed.outcome(), Outcome::Aborted, "{}", failed.reason);
    assert_eq!(global_status(alpha, "Com_rollback").await, rollbacks + 1);
    assert_eq!(global_status(alpha, "Com_xa_start").await, xa_starts);
    assert_eq!(scalar(alpha, "SELECT COUNT(*) FROM notes WHERE id = 9").await, 0);
    let marker = format!(
        "SELECT COUNT(*) FROM tandem.xa_markers WHERE gtrid = '{}' AND fenced = 0",
        failed.txn_id
    );
    assert_eq!(scalar(alpha, &marker).await, 0);

    let done = client
        .submit(vec![
            ("alpha", vec![insert_note(2, "writes")]),
            ("beta", vec![Statement::new("SELECT COUNT(*) FROM notes")]),
        ])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    assert_eq!(global_status(alpha, "Com_xa_prepare").await, before.0 + 1);
    assert_eq!(global_status(beta, "Com_xa_prepare").await, before.1);
    let info = client.get_transaction(&done.txn_id).await.unwrap();
    let states: Vec<_> = info
        .branches
        .iter()
        .map(|b| (b.participant.as_str(), b.state()))
        .collect();
    assert_eq!(
        states,
        [
            ("alpha", pb::BranchState::Committed),
            ("beta", pb::BranchState::ReadOnly)
        ]
    );

    // Interactive, one participant: one phase too.
    let txn = client.begin().await.unwrap();
    client
        .execute(&txn, "alpha", vec![insert_note(3, "interactive")])
        .await
        .unwrap();
    assert_eq!(client.commit(&txn).await.unwrap().outcome(), Outcome::Committed);
    assert_eq!(global_status(alpha, "Com_xa_prepare").await, before.0 + 1);
    // (an XA branch: whether it is the only one is known only at commit)
    assert_eq!(global_status(alpha, "Com_xa_start").await, xa_starts + 2);
    assert_eq!(scalar(alpha, "SELECT COUNT(*) FROM notes").await, 3);
    assert_no_prepared(&cluster).await;
}

/// 16 clients × 200 random transfers across 3 participants: the total is
/// exact, no balance is negative, nothing is left prepared or locked. Four
/// Two more clients run SERIALIZABLE audits (one Submit reading every balance on
/// every participant) meanwhile: each one that commits saw the exact total.
#[tokio::test]
async fn concurrent_random_transfers_keep_the_total_exact() {
    const CLIENTS: usize = 16;
    const TRANSFERS: usize = 200;
    const ACCOUNTS: i64 = 50;
    const INITIAL: i64 = 100;
    let cluster = cluster().await;
    let names = ["alpha", "beta", "gamma"];
    let mut seed_client = cluster.client().await.unwrap();
    seed_accounts(&mut seed_client, &names, ACCOUNTS, INITIAL).await;

    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut client = cluster.client().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(c as u64);
            let (mut committed, mut aborted) = (0, 0);
            for _ in 0..TRANSFERS {
                let from = rand::Rng::random_range(&mut rng, 0..3);
                let to = (from + rand::Rng::random_range(&mut rng, 1..3)) % 3;
                let amount = rand::Rng::random_range(&mut rng, 1..=40);
                let (a, b) = (
                    rand::Rng::random_range(&mut rng, 1..=ACCOUNTS),
                    rand::Rng::random_range(&mut rng, 1..=ACCOUNTS),
                );
                let done = client
                    .submit_with(transfer((names[from], a), (names[to], b), amount))
                    .await
                    .expect("submit answers");
                match done.outcome() {
                    Outcome::Committed => committed += 1,
                    Outcome::Aborted => aborted += 1,
                    other => panic!("outcome {other:?}"),
                }
            }
            (committed, aborted)
        }));
    }
    let (mut committed, mut aborted) = (0, 0);
    for task in tasks {
        let (c, a) = task.await.unwrap();
        committed += c;
        aborted += a;
    }
    println!("{committed} committed, {aborted} aborted");
    assert_eq!(committed + aborted, CLIENTS * TRANSFERS);
    assert!(committed > CLIENTS * TRANSFERS / 2, "{committed} committed");

    let mut total = 0;
    for node in cluster.nodes() {
        total += scalar(node.pool(), "SELECT SUM(balance) FROM accounts").await;
        assert_eq!(
            scalar(node.pool(), "SELECT COUNT(*) FROM accounts WHERE balance < 0").await,
            0
        );
        for id in 1..=ACCOUNTS {
            assert_unlocked(node.pool(), "accounts", &format!("id = {id}")).await;
        }
    }
    assert_eq!(total, 3 * ACCOUNTS * INITIAL);
    assert_no_prepared(&cluster).await;
}

/// More concurrent branches than MySQL sessions: each waits for a session
/// another branch releases, and every transaction commits.
#[tokio::test]
async fn more_clients_than_sessions_take_turns_and_all_commit() {
    const CLIENTS: i64 = 16;
    const EACH: i64 = 30;
    let cluster = Cluster::start(ClusterConfig {
        participant_max_connections: Some(2),
        ..ClusterConfig::default()
    })
    .await
    .expect("cluster starts");
    let mut seed_client = cluster.client().await.unwrap();
    seed_accounts(&mut seed_client, &["alpha"], CLIENTS, 0).await;
    let mut tasks = Vec::new();
    for c in 1..=CLIENTS {
        let mut client = cluster.client().await.unwrap();
        tasks.push(tokio::spawn(async move {
            for _ in 0..EACH {
                // Each client its own account: no lock waits, only sessions.
                let done = client
                    .submit(vec![("alpha", vec![credit(c, 1)])])
                    .await
                    .expect("submit answers");
                assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let pool = cluster.node("alpha").pool();
    assert_eq!(scalar(pool, "SELECT SUM(balance) FROM accounts").await, CLIENTS * EACH);
    assert_no_prepared(&cluster).await;
}

/// The README's first command runs this demo.
#[tokio::test]
async fn the_demo_runs() {
    let cluster = cluster().await;
    let mut demo = Demo {
        client: cluster.client().await.unwrap(),
        bank_a: "alpha",
        bank_b: "beta",
        shop: "beta",
        warehouse: "gamma",
    };
    demo.run().await.unwrap();
    assert_no_prepared(&cluster).await;
    let participants = cluster.operator().await.unwrap().list_participants().await.unwrap();
    assert_eq!(participants.len(), 3);
}

/// Any gRPC client (grpcurl, grpcio) can discover the API: both binaries
/// serve reflection and health.
#[tokio::test]
async fn both_binaries_serve_reflection() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let cluster = cluster().await;
    let coordinator = coordinator_identity();
    let alpha = Identity::new(Role::Participant, "alpha").unwrap();
    let tester = Identity::new(Role::Client, "tester").unwrap();
    let targets = [
        (
            cluster.endpoint_as(cluster.coordinator_addr(), Some(&tester), &coordinator),
            "tandem.v1.Coordinator",
        ),
        // Participants serve only coordinators, reflection included.
        (
            cluster.endpoint_as(cluster.node("alpha").addr, Some(&coordinator), &alpha),
            "tandem.v1.Participant",
        ),
    ];
    for (endpoint, service) in targets {
        let endpoint = endpoint.unwrap();
        let url = endpoint.uri().to_string();
        let channel = endpoint.connect().await.unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = stream.message().await.unwrap().expect("a response");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection response from {url}");
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.iter().any(|n| n == service), "{url}: {names:?}");
        assert!(names.iter().any(|n| n == "grpc.health.v1.Health"), "{url}: {names:?}");
    }
}

/// A transfer as one Submit. Branches run in parallel, so two transfers can
/// deadlock across databases, which no single database detects: a short
/// deadline bounds the lock wait that resolves it.
fn transfer(from: (&str, i64), to: (&str, i64), amount: i64) -> pb::SubmitRequest {
    pb::SubmitRequest {
        timeout_ms: 2_000,
        branches: vec![
            pb::Branch {
                participant: from.0.to_owned(),
                statements: vec![debit(from.1, amount)],
            },
            pb::Branch {
                participant: to.0.to_owned(),
                statements: vec![credit(to.1, amount)],
            },
        ],
        ..Default::default()
    }
}

/// SERIALIZABLE audits (one Submit reading the sum on every participant)
/// while transfers run: every audit that commits sees the exact total. A
/// read-only branch must keep its locks until the whole transaction is
/// decided, or an audit could read one database before a transfer and the
/// other after it.
#[tokio::test]
async fn audits_during_transfers_see_the_exact_total() {
    const ACCOUNTS: i64 = 20;
    const INITIAL: i64 = 100;
    let cluster = cluster().await;
    let names = ["alpha", "beta", "gamma"];
    let mut seed_client = cluster.client().await.unwrap();
    seed_accounts(&mut seed_client, &names, ACCOUNTS, INITIAL).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut writers = Vec::new();
    for c in 0..4u64 {
        let mut client = cluster.client().await.unwrap();
        let stop = std::sync::Arc::clone(&stop);
        writers.push(tokio::spawn(async move {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(100 + c);
            let mut committed = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let from = rand::Rng::random_range(&mut rng, 0..3);
                let to = (from + rand::Rng::random_range(&mut rng, 1..3)) % 3;
                let (a, b) = (
                    rand::Rng::random_range(&mut rng, 1..=ACCOUNTS),
                    rand::Rng::random_range(&mut rng, 1..=ACCOUNTS),
                );
                let request = transfer(
                    (names[from], a),
                    (names[to], b),
                    rand::Rng::random_range(&mut rng, 1..=20),
                );
                if client.submit_with(request).await.expect("transfer answers").outcome() == Outcome::Committed {
                    committed += 1;
                }
            }
            committed
        }));
    }
    let mut client = cluster.client().await.unwrap();
    let mut exact = 0;
    for _ in 0..30 {
        // A full scan waits for every row lock the transfers hold: it gets
        // more time than they do.
        let request = pb::SubmitRequest {
            timeout_ms: 8_000,
            branches: names
                .iter()
                .map(|p| pb::Branch {
                    participant: (*p).to_owned(),
                    statements: vec![Statement::new("SELECT CAST(SUM(balance) AS SIGNED) FROM accounts")],
                })
                .collect(),
            ..Default::default()
        };
        let done = client.submit_with(request).await.expect("audit answers");
        if done.outcome() != Outcome::Committed {
            continue;
        }
        let total: i64 = done
            .results
            .iter()
            .map(|b| b.results[0].rows[0].values[0].as_i64().expect("a sum"))
            .sum();
        assert_eq!(
            total,
            3 * ACCOUNTS * INITIAL,
            "audit {} saw a partial transfer",
            done.txn_id
        );
        exact += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut transfers = 0;
    for w in writers {
        transfers += w.await.unwrap();
    }
    println!("{exact} audits saw the exact total during {transfers} committed transfers");
    assert!(exact >= 10, "only {exact} of 30 audits committed");
    assert!(transfers > 0);
    assert_no_prepared(&cluster).await;
}
