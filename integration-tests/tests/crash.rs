//! Crash tests: one fault at one named protocol step, real processes and
//! real MariaDB. Each test arms a failpoint (or kills a process) at a known
//! instant of a transfer between `alpha` and `beta`, checks the state the
//! crash left, restarts what died, and then checks the end state on every
//! database: the transfer is applied on both or on neither, `XA RECOVER`
//! is empty, no lock is held, and `GetTransaction` tells the truth.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tandem_client::pb::{self, BranchState, TxnFilter, TxnState};
use tandem_client::{Client, Outcome};
use tandem_integration_tests::cluster::TEST_PRINCIPAL;
use tandem_integration_tests::{Cluster, ClusterConfig};

const AMOUNT: i64 = 10;

async fn bank(config: ClusterConfig) -> (Cluster, Client) {
    let cluster = Cluster::start(ClusterConfig {
        participants: vec!["alpha".into(), "beta".into()],
        ..config
    })
    .await
    .expect("cluster starts");
    let mut client = cluster.client().await.expect("client connects");
    seed_accounts(&mut client, &["alpha", "beta"], 1, 100).await;
    (cluster, client)
}

/// Begins a transfer alpha → beta and runs both branches; returns its id.
async fn open_transfer(client: &mut Client) -> String {
    let id = client.begin().await.expect("begin");
    client
        .execute(&id, "alpha", vec![debit(1, AMOUNT)])
        .await
        .expect("debit on alpha");
    client
        .execute(&id, "beta", vec![credit(1, AMOUNT)])
        .await
        .expect("credit on beta");
    id
}

/// Commits `id` on a fresh connection in the background (the call may die
/// with the coordinator).
fn commit_in_background(
    cluster: &Cluster,
    id: &str,
) -> tokio::task::JoinHandle<Result<pb::CommitResponse, tonic::Status>> {
    let access = cluster.access(TEST_PRINCIPAL).expect("client certificate");
    let id = id.to_owned();
    tokio::spawn(async move {
        let mut client = access.connect().await?;
        client.commit(&id).await
    })
}

/// Arms a coordinator failpoint that crashes it, commits `id`, and waits
/// until the coordinator is dead and the Commit call has died with it.
async fn crash_coordinator_during_commit(cluster: &mut Cluster, id: &str, failpoint: &str, actions: &str) {
    cluster
        .failpoint("coordinator", failpoint, actions)
        .await
        .expect("failpoint armed");
    let commit = commit_in_background(cluster, id);
    cluster
        .wait_coordinator_exit(Duration::from_secs(10))
        .await
        .expect("the coordinator crashes");
    let answer = commit.await.expect("commit task");
    assert!(answer.is_err(), "the Commit call dies with the coordinator: {answer:?}");
}

async fn balances(cluster: &Cluster) -> (i64, i64) {
    let sql = "SELECT balance FROM accounts WHERE id = 1";
    (
        scalar(cluster.node("alpha").pool(), sql).await,
        scalar(cluster.node("beta").pool(), sql).await,
    )
}

/// Polls until `XA RECOVER` shows exactly `want` (sorted (participant, gtrid)).
async fn wait_prepared(cluster: &Cluster, want: &[(&str, &str)], limit: Duration) {
    let want: Vec<(String, String)> = want.iter().map(|(p, g)| ((*p).to_owned(), (*g).to_owned())).collect();
    let until = Instant::now() + limit;
    loop {
        let mut got = cluster.prepared_branches().await.unwrap_or_default();
        got.sort();
        if got == want {
            return;
        }
        assert!(Instant::now() < until, "XA RECOVER shows {got:?}, expected {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The end state after recovery: applied everywhere or nowhere, nothing
/// prepared, nothing locked.
async fn assert_settled(cluster: &Cluster, committed: bool) {
    wait_prepared(cluster, &[], Duration::from_secs(30)).await;
    let want = if committed {
        (100 - AMOUNT, 100 + AMOUNT)
    } else {
        (100, 100)
    };
    assert_eq!(balances(cluster).await, want, "balances (alpha, beta)");
    for node in ["alpha", "beta"] {
        assert_unlocked(cluster.node(node).pool(), "accounts", "id = 1").await;
    }
}

/// GetTransaction as an operator (whose answer is final: it fences what
/// no participant has a record of), retried while the answer is not known
/// yet (UNAVAILABLE).
async fn outcome_of(cluster: &Cluster, id: &str) -> pb::TransactionInfo {
    outcome_at(cluster, 0, id).await
}

/// [`outcome_of`] at replica `i`.
async fn outcome_at(cluster: &Cluster, i: usize, id: &str) -> pb::TransactionInfo {
    let ops = tandem_common::Identity::new(tandem_common::Role::Operator, "ops").unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let mut client = cluster
            .replica_access_as(i, &ops)
            .unwrap()
            .connect()
            .await
            .expect("operator connects");
        match client.get_transaction(id).await {
            Ok(info) if info.outcome() != Outcome::Unspecified => return info,
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::Unavailable => {}
            Err(status) => panic!("GetTransaction({id}) at replica {i}: {status:?}"),
        }
        assert!(Instant::now() < until, "no outcome for {id} at replica {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What an operator must never do: `XA ROLLBACK` of a tandem branch by
/// hand (its participant killed first, so its session goes away).
async fn roll_back_by_hand(cluster: &Cluster, participant: &str, id: &str) {
    let rollback = format!("XA ROLLBACK '{id}', '{participant}', {}", 0x7464_6d31);
    let until = Instant::now() + Duration::from_secs(10);
    // XAER_NOTA until MariaDB notices the participant's session is gone.
    while let Err(err) = sqlx::raw_sql(sqlx::AssertSqlSafe(rollback.clone()))
        .execute(cluster.node(participant).pool())
        .await
    {
        assert!(Instant::now() < until, "{rollback}: {err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two coordinator replicas.
fn replicated() -> ClusterConfig {
    ClusterConfig {
        replicas: 2,
        ..ClusterConfig::default()
    }
}

/// Commits `id` on the first replica with beta's prepare held back and then
/// failing (a NO), and kills that replica once alpha is prepared: it dies
/// with the votes out. Returns once beta has voted NO to nobody.
async fn kill_coordinator_while_beta_votes_no(cluster: &mut Cluster, id: &str) {
    cluster
        .failpoint("beta", "participant::before_prepare", "1*return(delay:1500,error)")
        .await
        .expect("failpoint armed");
    let commit = commit_in_background(cluster, id);
    wait_prepared(cluster, &[("alpha", id)], Duration::from_secs(5)).await;
    cluster.kill_coordinator();
    assert!(
        commit.await.expect("commit task").is_err(),
        "the Commit call dies with the coordinator"
    );
    // beta's prepare fails after its delay and its branch rolls back: its
    // row is free again.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = cluster.node("beta").pool().acquire().await.expect("connection");
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await.expect("BEGIN");
        let free = sqlx::raw_sql("SELECT balance FROM accounts WHERE id = 1 FOR UPDATE NOWAIT")
            .execute(&mut *conn)
            .await
            .is_ok();
        sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.expect("ROLLBACK");
        if free {
            break;
        }
        assert!(Instant::now() < until, "beta's branch never rolled back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn coordinator_crash_after_every_branch_prepared_commits_everywhere_after_a_restart_with_no_state() {
    let (mut cluster, mut client) = bank(ClusterConfig::default()).await;
    let id = open_transfer(&mut client).await;
    crash_coordinator_during_commit(&mut cluster, &id, "coordinator::before_phase2", "return(crash)").await;
    // The crash point: both prepared, no commit sent. Every branch of the
    // participant set is prepared, so the transaction is committed.
    wait_prepared(&cluster, &[("alpha", &id), ("beta", &id)], Duration::from_secs(5)).await;
    assert_eq!(balances(&cluster).await, (100, 100));

    // The restarted coordinator keeps nothing on disk: the participants,
    // asking it, resolve the transaction from their marker rows.
    cluster.restart_coordinator().await.unwrap();
    assert_settled(&cluster, true).await;
    let info = outcome_of(&cluster, &id).await;
    assert_eq!(info.outcome(), Outcome::Committed, "{info:?}");
}

#[tokio::test]
async fn a_replica_killed_after_every_branch_prepared_is_resolved_through_another_without_a_restart() {
    let (mut cluster, mut client) = bank(replicated()).await;
    let id = open_transfer(&mut client).await;
    crash_coordinator_during_commit(&mut cluster, &id, "coordinator::before_phase2", "return(crash)").await;
    wait_prepared(&cluster, &[("alpha", &id), ("beta", &id)], Duration::from_secs(5)).await;
    // tc stays dead: the participants' recovery asks tc2, which never saw
    // the transaction and resolves it from the participants.
    assert_settled(&cluster, true).await;
    let info = outcome_at(&cluster, 1, &id).await;
    assert_eq!(info.outcome(), Outcome::Committed, "{info:?}");
    assert!(info.hazard.is_empty(), "{info:?}");
}

#[tokio::test]
async fn a_replica_killed_while_a_branch_votes_no_aborts_through_another() {
    let (mut cluster, mut client) = bank(replicated()).await;
    let id = open_transfer(&mut client).await;
    kill_coordinator_while_beta_votes_no(&mut cluster, &id).await;
    // alpha's recovery asks tc2: beta has no branch and is fenced, so the
    // transaction aborted and alpha rolls back.
    assert_settled(&cluster, false).await;
    let info = outcome_at(&cluster, 1, &id).await;
    assert_eq!(info.outcome(), Outcome::Aborted, "{info:?}");
}

#[tokio::test]
async fn every_replica_killed_then_one_restarted_resolves_everything() {
    let (mut cluster, mut client) = bank(replicated()).await;
    let id = open_transfer(&mut client).await;
    crash_coordinator_during_commit(&mut cluster, &id, "coordinator::before_phase2", "return(crash)").await;
    cluster.kill_replica(1);
    // Several recovery passes with no replica to ask: nothing is decided.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_prepared(&cluster, &[("alpha", &id), ("beta", &id)], Duration::from_secs(1)).await;
    cluster.restart_replica(1).await.unwrap();
    assert_settled(&cluster, true).await;
    assert_eq!(outcome_at(&cluster, 1, &id).await.outcome(), Outcome::Committed);
}

/// Alpha, beta and gamma, two replicas: a transfer out of alpha's account
/// 1 split over beta's and gamma's.
async fn three_way() -> (Cluster, Client) {
    let cluster = Cluster::start(ClusterConfig {
        participants: vec!["alpha".into(), "beta".into(), "gamma".into()],
        ..replicated()
    })
    .await
    .expect("cluster starts");
    let mut client = cluster.client().await.expect("client connects");
    seed_accounts(&mut client, &["alpha", "beta", "gamma"], 1, 100).await;
    (cluster, client)
}

/// The split transfer as a Submit with client key `key`.
fn split_transfer(key: &str) -> pb::SubmitRequest {
    let branch = |participant: &str, statement| pb::Branch {
        participant: participant.into(),
        statements: vec![statement],
    };
    pb::SubmitRequest {
        key: key.into(),
        label: key.into(),
        branches: vec![
            branch("alpha", debit(1, 2 * AMOUNT)),
            branch("beta", credit(1, AMOUNT)),
            branch("gamma", credit(1, AMOUNT)),
        ],
        ..Default::default()
    }
}

async fn three_balances(cluster: &Cluster) -> [i64; 3] {
    let sql = "SELECT balance FROM accounts WHERE id = 1";
    [
        scalar(cluster.node("alpha").pool(), sql).await,
        scalar(cluster.node("beta").pool(), sql).await,
        scalar(cluster.node("gamma").pool(), sql).await,
    ]
}

/// GetTransaction by client key at replica `i`, as [`TEST_PRINCIPAL`],
/// asked again while the answer is not known yet.
async fn outcome_by_key(cluster: &Cluster, i: usize, key: &str) -> pb::TransactionInfo {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let mut client = cluster
            .replica_access(i, TEST_PRINCIPAL)
            .unwrap()
            .connect()
            .await
            .unwrap();
        match client.get_transaction_by_key(key).await {
            Ok(info) if info.outcome() != Outcome::Unspecified => return info,
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::Unavailable => {}
            Err(status) => panic!("GetTransaction(key {key}) at replica {i}: {status:?}"),
        }
        assert!(Instant::now() < until, "no outcome for key {key} at replica {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Submit retried at replica `i`, as [`TEST_PRINCIPAL`].
async fn submit_at(
    cluster: &Cluster,
    i: usize,
    request: pb::SubmitRequest,
) -> Result<pb::SubmitResponse, tonic::Status> {
    let mut client = cluster
        .replica_access(i, TEST_PRINCIPAL)
        .unwrap()
        .connect()
        .await
        .unwrap();
    client.submit_with(request).await
}

#[tokio::test]
async fn a_keyed_submit_whose_replica_died_mid_call_is_found_by_its_key_and_never_runs_twice() {
    // The report: a 3-participant Submit, its coordinator killed
    // mid-call, committed everywhere, and the client never got an id.
    let (mut cluster, _) = three_way().await;
    cluster
        .failpoint("coordinator", "coordinator::before_phase2", "return(crash)")
        .await
        .unwrap();
    let access = cluster.access(TEST_PRINCIPAL).unwrap();
    let submit = tokio::spawn(async move { access.connect().await?.submit_with(split_transfer("order-1")).await });
    cluster.wait_coordinator_exit(Duration::from_secs(10)).await.unwrap();
    assert!(submit.await.unwrap().is_err(), "the call died with its replica");

    // tc2 never saw it: it finds it by the key, from the participants.
    let info = outcome_by_key(&cluster, 1, "order-1").await;
    assert_eq!(info.outcome(), Outcome::Committed, "{info:?}");
    let id = info.txn_id.clone();
    assert!(id.starts_with("key-"), "{id}");
    wait_prepared(&cluster, &[], Duration::from_secs(30)).await;
    assert_eq!(three_balances(&cluster).await, [80, 110, 110]);

    // Retried at tc2, and at tc once it is back: the first outcome, the
    // same transaction, nothing applied twice.
    let again = submit_at(&cluster, 1, split_transfer("order-1"))
        .await
        .expect("retry at tc2");
    assert_eq!(
        (again.outcome(), again.txn_id.as_str()),
        (Outcome::Committed, id.as_str()),
        "{again:?}"
    );
    assert!(
        again.reason.contains("already ran on alpha, beta, gamma"),
        "{}",
        again.reason
    );
    assert!(again.results.iter().all(|b| b.results.is_empty()), "{again:?}");
    cluster.restart_coordinator().await.unwrap();
    let again = submit_at(&cluster, 0, split_transfer("order-1"))
        .await
        .expect("retry at tc");
    assert_eq!(
        (again.outcome(), again.txn_id.as_str()),
        (Outcome::Committed, id.as_str()),
        "{again:?}"
    );
    // tc holds it in memory now: asked again there, it answers from there.
    let again = submit_at(&cluster, 0, split_transfer("order-1"))
        .await
        .expect("second retry at tc");
    assert_eq!(again.outcome(), Outcome::Committed, "{again:?}");
    assert!(again.reason.contains("already ran"), "{}", again.reason);
    assert_eq!(three_balances(&cluster).await, [80, 110, 110]);
    assert_eq!(outcome_by_key(&cluster, 0, "order-1").await.txn_id, id);
    wait_prepared(&cluster, &[], Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_keyed_submit_retried_while_its_first_attempt_still_runs_commits_once() {
    let (mut cluster, _) = three_way().await;
    // gamma's prepare is held back; the first replica dies once alpha and
    // beta are prepared.
    cluster
        .failpoint("gamma", "participant::before_prepare", "1*return(delay:3000)")
        .await
        .unwrap();
    let access = cluster.access(TEST_PRINCIPAL).unwrap();
    let submit = tokio::spawn(async move { access.connect().await?.submit_with(split_transfer("order-2")).await });
    let me = tandem_common::Identity::new(tandem_common::Role::Client, TEST_PRINCIPAL).unwrap();
    let id = tandem_common::names::keyed_gtrid(&me.to_string(), "order-2");
    wait_prepared(&cluster, &[("alpha", &id), ("beta", &id)], Duration::from_secs(10)).await;
    cluster.kill_coordinator();
    assert!(submit.await.unwrap().is_err(), "the call died with its replica");
    // The retry finds alpha and beta prepared by the first attempt and
    // gamma's branch still running; it waits for that branch instead of
    // running it again, and commits the transaction once.
    let again = submit_at(&cluster, 1, split_transfer("order-2"))
        .await
        .expect("retry at tc2");
    assert_eq!(
        (again.outcome(), again.txn_id.as_str()),
        (Outcome::Committed, id.as_str()),
        "{again:?}"
    );
    assert_settled_three(&cluster, [80, 110, 110]).await;
}

#[tokio::test]
async fn a_keyed_submit_that_aborted_stays_aborted_when_retried_anywhere() {
    let (cluster, mut client) = three_way().await;
    // gamma's guard fails: the first attempt aborts.
    let mut request = split_transfer("order-3");
    request.branches[2].statements = vec![credit(99, AMOUNT)];
    let first = client.submit_with(request.clone()).await.expect("first attempt");
    assert_eq!(first.outcome(), Outcome::Aborted, "{first:?}");
    // The retry at the other replica, even with a body that would now
    // commit, answers the first outcome: every branch's NO was fenced.
    let again = submit_at(&cluster, 1, split_transfer("order-3"))
        .await
        .expect("retry at tc2");
    assert_eq!(
        (again.outcome(), again.txn_id.as_str()),
        (Outcome::Aborted, first.txn_id.as_str()),
        "{again:?}"
    );
    let again = client
        .submit_with(split_transfer("order-3"))
        .await
        .expect("retry at tc");
    assert_eq!(again.outcome(), Outcome::Aborted, "{again:?}");
    assert_eq!(outcome_by_key(&cluster, 1, "order-3").await.outcome(), Outcome::Aborted);
    assert_settled_three(&cluster, [100, 100, 100]).await;
}

#[tokio::test]
async fn a_keyed_branch_rolled_back_at_its_deadline_stays_aborted_after_its_participant_restarts() {
    let (mut cluster, _) = three_way().await;
    // Account 1's row on beta is held (through the replica that lives):
    // the keyed Submit's branch waits.
    let mut client = cluster
        .replica_access(1, TEST_PRINCIPAL)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let holder = client.begin().await.unwrap();
    client.execute(&holder, "beta", vec![credit(1, 0)]).await.unwrap();
    let request = pb::SubmitRequest {
        key: "order-4".into(),
        timeout_ms: 2000,
        branches: vec![pb::Branch {
            participant: "beta".into(),
            statements: vec![credit(1, AMOUNT)],
        }],
        ..Default::default()
    };
    let access = cluster.access(TEST_PRINCIPAL).unwrap();
    let first = request.clone();
    let submit = tokio::spawn(async move { access.connect().await?.submit_with(first).await });
    let beta = cluster.node("beta").pool().clone();
    let waiting = "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT'";
    wait_scalar(&beta, waiting, 1, Duration::from_secs(10)).await;
    // Its replica dies; beta rolls the branch back when its deadline
    // passes, with no one to tell.
    cluster.kill_coordinator();
    assert!(submit.await.unwrap().is_err(), "the call died with its replica");
    let trxs = "SELECT COUNT(*) FROM information_schema.innodb_trx";
    wait_scalar(&beta, trxs, 1, Duration::from_secs(30)).await;
    // The other replica settles it by its key: aborted.
    let info = outcome_by_key(&cluster, 1, "order-4").await;
    assert_eq!(info.outcome(), Outcome::Aborted, "{info:?}");
    // beta forgets the branch; the row is free. A retry at the first
    // replica, back with no memory either, must answer the same outcome,
    // not run the Submit a second time.
    client.rollback(&holder).await.unwrap();
    cluster.restart_participant("beta").await.unwrap();
    cluster.restart_coordinator().await.unwrap();
    let again = submit_at(&cluster, 0, request).await.expect("retry at tc");
    assert_eq!(
        (again.outcome(), again.txn_id.as_str()),
        (Outcome::Aborted, info.txn_id.as_str()),
        "{again:?}"
    );
    assert_settled_three(&cluster, [100, 100, 100]).await;
}

/// Nothing prepared, nothing locked, and these balances of account 1.
async fn assert_settled_three(cluster: &Cluster, want: [i64; 3]) {
    wait_prepared(cluster, &[], Duration::from_secs(30)).await;
    assert_eq!(three_balances(cluster).await, want, "balances (alpha, beta, gamma)");
    for node in ["alpha", "beta", "gamma"] {
        assert_unlocked(cluster.node(node).pool(), "accounts", "id = 1").await;
    }
}

#[tokio::test]
async fn coordinator_crash_between_the_commits_of_two_participants_commits_the_second_after_restart() {
    let (mut cluster, mut client) = bank(ClusterConfig::default()).await;
    let id = open_transfer(&mut client).await;
    // beta's first commit is held back and fails; the coordinator dies as
    // soon as alpha's commit is acknowledged.
    cluster
        .failpoint("beta", "participant::before_commit", "1*return(delay:1000,error)")
        .await
        .unwrap();
    crash_coordinator_during_commit(&mut cluster, &id, "coordinator::after_commit", "1*return(crash)").await;
    // The crash point: alpha committed, beta still prepared.
    wait_prepared(&cluster, &[("beta", &id)], Duration::from_secs(5)).await;
    let (alpha, _) = balances(&cluster).await;
    assert_eq!(alpha, 100 - AMOUNT);

    cluster.restart_coordinator().await.unwrap();
    assert_settled(&cluster, true).await;
    assert_eq!(outcome_of(&cluster, &id).await.outcome(), Outcome::Committed);
}

#[tokio::test]
async fn participant_crash_after_prepare_before_its_vote_is_heard_is_never_presumed_aborted() {
    // Armed by the environment at start, as an operator would.
    let (mut cluster, mut client) = bank(ClusterConfig {
        failpoints: vec![("beta".into(), "participant::after_prepare=return(crash)".into())],
        default_timeout_ms: 2_000,
        ..ClusterConfig::default()
    })
    .await;
    let id = open_transfer(&mut client).await;
    // beta prepared, then died before its vote was heard. Its branch may
    // be prepared, and every other branch is: aborting on silence could
    // contradict a resolver. It is fenced first, and beta cannot answer,
    // so past the deadline the client is told the outcome is unknown.
    let err = client.commit(&id).await.expect_err("not known yet");
    assert_eq!(err.code(), tonic::Code::Unknown, "{err:?}");
    assert!(err.message().contains("beta"), "{err:?}");
    cluster
        .wait_participant_exit("beta", Duration::from_secs(5))
        .await
        .unwrap();
    // The crash point: beta's branch is prepared in its MariaDB.
    wait_prepared(&cluster, &[("alpha", &id), ("beta", &id)], Duration::from_secs(5)).await;

    // Back, beta says its branch is prepared: every branch is, so the
    // transaction committed.
    cluster.restart_participant("beta").await.unwrap();
    assert_settled(&cluster, true).await;
    assert_eq!(outcome_of(&cluster, &id).await.outcome(), Outcome::Committed);
}

#[tokio::test]
async fn participant_crash_after_prepare_before_its_commit_commits_after_restart() {
    let (mut cluster, mut client) = bank(ClusterConfig::default()).await;
    let id = open_transfer(&mut client).await;
    cluster
        .failpoint("beta", "participant::before_commit", "return(crash)")
        .await
        .unwrap();
    let commit = commit_in_background(&cluster, &id);
    cluster
        .wait_participant_exit("beta", Duration::from_secs(10))
        .await
        .unwrap();
    wait_prepared(&cluster, &[("beta", &id)], Duration::from_secs(5)).await;
    // Decided COMMIT: the client is told so, with beta still pending.
    let answer = commit.await.unwrap().unwrap();
    assert_eq!(answer.outcome(), Outcome::Committed, "{}", answer.reason);

    cluster.restart_participant("beta").await.unwrap();
    assert_settled(&cluster, true).await;
}

#[tokio::test]
async fn participant_crash_after_its_commit_before_the_ack_is_confirmed_from_the_marker_row() {
    let (mut cluster, mut client) = bank(ClusterConfig::default()).await;
    let id = open_transfer(&mut client).await;
    cluster
        .failpoint("beta", "participant::after_commit", "return(crash)")
        .await
        .unwrap();
    let commit = commit_in_background(&cluster, &id);
    cluster
        .wait_participant_exit("beta", Duration::from_secs(10))
        .await
        .unwrap();
    // The crash point: beta committed in MariaDB, the coordinator never
    // heard. The branch is gone from XA RECOVER; only the marker row can
    // say it committed (XAER_NOTA alone would not).
    wait_prepared(&cluster, &[], Duration::from_secs(5)).await;
    assert_eq!(balances(&cluster).await, (100 - AMOUNT, 100 + AMOUNT));
    cluster.restart_participant("beta").await.unwrap();
    let answer = commit.await.unwrap().unwrap();
    assert_eq!(answer.outcome(), Outcome::Committed, "{}", answer.reason);
    // Phase 2 finishes (the coordinator's retry is confirmed by the marker).
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let info = cluster.client().await.unwrap().get_transaction(&id).await.unwrap();
        if info.state() == TxnState::Committed {
            assert!(info.hazard.is_empty(), "{}", info.hazard);
            break;
        }
        assert!(Instant::now() < until, "phase 2 never finished: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_settled(&cluster, true).await;
}

#[tokio::test]
async fn mariadb_killed_after_prepare_finds_and_commits_the_branch_after_restart() {
    let (mut cluster, mut client) = bank(ClusterConfig::default()).await;
    let id = open_transfer(&mut client).await;
    // Hold phase 2 back once every branch is prepared.
    cluster
        .failpoint("coordinator", "coordinator::before_phase2", "2*return(delay:3000)")
        .await
        .unwrap();
    let commit = commit_in_background(&cluster, &id);
    wait_prepared(&cluster, &[("alpha", &id), ("beta", &id)], Duration::from_secs(5)).await;
    cluster.kill_mariadb("beta");
    cluster.restart_mariadb("beta").unwrap();
    // The prepared branch survived `kill -9`.
    wait_prepared(&cluster, &[("alpha", &id), ("beta", &id)], Duration::from_secs(10)).await;

    let answer = commit.await.unwrap().unwrap();
    assert_eq!(answer.outcome(), Outcome::Committed, "{}", answer.reason);
    assert_settled(&cluster, true).await;
}

#[tokio::test]
async fn mariadb_killed_after_prepare_of_an_aborted_transaction_rolls_it_back() {
    let (mut cluster, mut client) = bank(ClusterConfig::default()).await;
    let id = open_transfer(&mut client).await;
    kill_coordinator_while_beta_votes_no(&mut cluster, &id).await;
    cluster.kill_mariadb("alpha");
    cluster.restart_mariadb("alpha").unwrap();
    wait_prepared(&cluster, &[("alpha", &id)], Duration::from_secs(10)).await;
    cluster.restart_coordinator().await.unwrap();
    assert_settled(&cluster, false).await;
    assert_eq!(outcome_of(&cluster, &id).await.outcome(), Outcome::Aborted);
}

#[tokio::test]
async fn participant_crash_before_prepare_aborts_once_it_is_back_and_frees_every_lock() {
    let (mut cluster, mut client) = bank(ClusterConfig {
        default_timeout_ms: 2_000,
        ..ClusterConfig::default()
    })
    .await;
    let id = open_transfer(&mut client).await;
    cluster
        .failpoint("beta", "participant::before_prepare", "return(crash)")
        .await
        .unwrap();
    // beta died with its vote out. Nobody can tell yet whether it
    // prepared, and alpha did: alpha keeps its locks until beta is fenced,
    // and the client learns the outcome is not known yet.
    let err = client.commit(&id).await.expect_err("not known yet");
    assert_eq!(err.code(), tonic::Code::Unknown, "{err:?}");
    cluster
        .wait_participant_exit("beta", Duration::from_secs(5))
        .await
        .unwrap();
    // beta's MariaDB rolled back the dead session's unprepared branch.
    wait_prepared(&cluster, &[("alpha", &id)], Duration::from_secs(5)).await;

    // Back, beta fences the branch it does not have: a durable NO, and
    // the transaction aborts everywhere.
    cluster.restart_participant("beta").await.unwrap();
    assert_settled(&cluster, false).await;
    let info = outcome_of(&cluster, &id).await;
    assert_eq!(info.outcome(), Outcome::Aborted, "{info:?}");
    assert!(info.reason.contains("deadline"), "{info:?}");
}

#[tokio::test]
async fn participants_restarted_while_the_coordinator_is_down_wait_and_then_resolve() {
    let (mut cluster, mut client) = bank(ClusterConfig::default()).await;
    let id = open_transfer(&mut client).await;
    crash_coordinator_during_commit(&mut cluster, &id, "coordinator::before_phase2", "return(crash)").await;
    cluster.restart_participant("alpha").await.unwrap();
    cluster.restart_participant("beta").await.unwrap();
    // Several recovery passes with no coordinator to ask: they wait, and
    // decide nothing alone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_prepared(&cluster, &[("alpha", &id), ("beta", &id)], Duration::from_secs(1)).await;

    cluster.restart_coordinator().await.unwrap();
    assert_settled(&cluster, true).await;
    assert_eq!(outcome_of(&cluster, &id).await.outcome(), Outcome::Committed);
}

#[tokio::test]
async fn a_one_phase_commit_whose_coordinator_died_gets_its_true_outcome() {
    let (mut cluster, mut client) = bank(ClusterConfig::default()).await;
    let id = client.begin().await.unwrap();
    client.execute(&id, "alpha", vec![debit(1, AMOUNT)]).await.unwrap();
    // The one-phase commit is slow on alpha; the coordinator dies meanwhile.
    cluster
        .failpoint("alpha", "participant::before_commit", "1*return(delay:1500)")
        .await
        .unwrap();
    let commit = commit_in_background(&cluster, &id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill_coordinator();
    assert!(commit.await.unwrap().is_err());
    cluster.restart_coordinator().await.unwrap();

    // The restarted coordinator never saw it; alpha's marker row tells.
    let info = outcome_of(&cluster, &id).await;
    assert_eq!(info.outcome(), Outcome::Committed, "{info:?}");
    assert_eq!(balances(&cluster).await, (100 - AMOUNT, 100));

    // An id of the earlier run that never committed: a client's probe
    // finds no record (and writes none); an operator's GetTransaction
    // fences it on every participant, so ABORTED is final.
    let mut client = cluster.client().await.unwrap();
    let never = id.rsplit_once('-').map(|(run, _)| format!("{run}-9999")).unwrap();
    expect_code(client.get_transaction(&never).await, tonic::Code::NotFound);
    assert_eq!(outcome_of(&cluster, &never).await.outcome(), Outcome::Aborted);
    // This run's ids not issued yet, and ids of a coordinator the
    // participants do not serve, are unknown.
    let this_run = client.begin().await.unwrap();
    let ahead = this_run
        .rsplit_once('-')
        .map(|(run, _)| format!("{run}-999999"))
        .unwrap();
    expect_code(client.get_transaction(&ahead).await, tonic::Code::NotFound);
    expect_code(client.get_transaction("other-1-1").await, tonic::Code::NotFound);
}

#[tokio::test]
async fn a_one_phase_commit_that_took_effect_before_an_error_is_reported_committed() {
    let (cluster, mut client) = bank(ClusterConfig::default()).await;
    // MySQL commits; then the step fails, as when its reply is lost.
    cluster
        .failpoint("alpha", "participant::after_commit", "1*return(error)")
        .await
        .unwrap();
    let answer = client.submit(vec![("alpha", vec![debit(1, AMOUNT)])]).await.unwrap();
    assert_eq!(answer.outcome(), Outcome::Committed, "{answer:?}");
    assert_eq!(balances(&cluster).await, (100 - AMOUNT, 100));
    let info = outcome_of(&cluster, &answer.txn_id).await;
    assert_eq!(info.outcome(), Outcome::Committed, "{info:?}");
    assert!(info.hazard.is_empty(), "{info:?}");
}

#[tokio::test]
async fn a_session_id_from_before_a_mariadb_restart_never_kills_an_unrelated_session() {
    use sqlx::Connection;
    use tandem_integration_tests::cluster::Target;

    let (mut cluster, mut client) = bank(ClusterConfig::default()).await;
    let id = client
        .begin_with(pb::BeginRequest {
            timeout_ms: 30_000,
            ..Default::default()
        })
        .await
        .unwrap();
    client.execute(&id, "beta", vec![credit(1, AMOUNT)]).await.unwrap();
    // The session running the branch, by its id in this run of MariaDB.
    let owner = scalar(
        cluster.node("beta").pool(),
        "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX",
    )
    .await;
    // The one-phase commit waits on beta while its MariaDB dies and comes
    // back; then it runs on the dead session, and beta settles it from the
    // marker row after ending the session that ran it.
    cluster
        .failpoint("beta", "participant::before_commit", "1*return(delay:5000)")
        .await
        .unwrap();
    let commit = commit_in_background(&cluster, &id);
    // The participant is held still meanwhile, so the new run's session ids
    // go to this test, up to and past the dead session's.
    let participant = Target::Participant("beta".into());
    cluster.pause(&participant, true).unwrap();
    cluster.kill_mariadb("beta");
    cluster.restart_mariadb("beta").unwrap();
    let url = cluster.node("beta").db.url();
    let mut victims = Vec::new();
    loop {
        let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
        let session: i64 = sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        victims.push((session, conn));
        if session >= owner {
            break;
        }
    }
    assert!(
        victims.iter().any(|(session, _)| *session == owner),
        "no session of the new run took id {owner}"
    );
    cluster.pause(&participant, false).unwrap();

    let answer = commit.await.unwrap().unwrap();
    assert_eq!(answer.outcome(), Outcome::Aborted, "{}", answer.reason);
    for (session, conn) in &mut victims {
        let alive: Result<i64, _> = sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await;
        assert!(alive.is_ok(), "session {session} of the new run was killed: {alive:?}");
    }
    assert_eq!(balances(&cluster).await, (100, 100));
    assert_no_prepared(&cluster).await;
}

/// A branch whose `XA PREPARE` lost its connection may or may not be
/// prepared; its coordinator asks at once, but may die first. The branch
/// then settles itself (fencing it if the prepare never happened) rather
/// than waiting, maybe prepared, until someone asks.
#[tokio::test]
async fn a_prepare_that_lost_its_connection_settles_itself_when_its_coordinator_died() {
    let (mut cluster, mut client) = bank(ClusterConfig::default()).await;
    let id = open_transfer(&mut client).await;
    let owner = scalar(
        cluster.node("beta").pool(),
        "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX",
    )
    .await;
    // beta's prepare waits; meanwhile alpha prepares, the only replica
    // dies, and beta's session is killed under the waiting prepare.
    cluster
        .failpoint("beta", "participant::before_prepare", "1*return(delay:3000)")
        .await
        .unwrap();
    let commit = commit_in_background(&cluster, &id);
    wait_prepared(&cluster, &[("alpha", &id)], Duration::from_secs(5)).await;
    cluster.kill_coordinator();
    assert!(
        commit.await.unwrap().is_err(),
        "the Commit call dies with the coordinator"
    );
    exec(cluster.node("beta").pool(), &format!("KILL {owner}")).await;
    let fence = format!("SELECT COUNT(*) FROM tandem.xa_markers WHERE gtrid = '{id}' AND fenced = 1");
    let until = Instant::now() + Duration::from_secs(30);
    while scalar(cluster.node("beta").pool(), &fence).await == 0 {
        assert!(
            Instant::now() < until,
            "beta's branch, whose prepare lost its connection, was never settled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_prepared(&cluster, &[("alpha", &id)], Duration::from_secs(1)).await;
    // Back with a replica, alpha's recovery learns the abort from beta's fence.
    cluster.restart_coordinator().await.unwrap();
    assert_settled(&cluster, false).await;
    assert_eq!(outcome_of(&cluster, &id).await.outcome(), Outcome::Aborted);
}

#[tokio::test]
async fn a_branch_rolled_back_behind_tandems_back_is_reported_as_a_heuristic_hazard() {
    let (mut cluster, mut client) = bank(ClusterConfig::default()).await;
    let id = open_transfer(&mut client).await;
    // alpha commits; the coordinator dies before beta's commit lands.
    cluster
        .failpoint("beta", "participant::before_commit", "1*return(delay:1000,error)")
        .await
        .unwrap();
    crash_coordinator_during_commit(&mut cluster, &id, "coordinator::after_commit", "1*return(crash)").await;
    // An operator rolls beta's prepared branch back by hand (its session
    // must be gone first).
    cluster.kill_participant("beta");
    wait_prepared(&cluster, &[("beta", &id)], Duration::from_secs(5)).await;
    roll_back_by_hand(&cluster, "beta", &id).await;

    cluster.restart_participant("beta").await.unwrap();
    cluster.restart_coordinator().await.unwrap();
    wait_prepared(&cluster, &[], Duration::from_secs(30)).await;
    assert_eq!(
        balances(&cluster).await,
        (100 - AMOUNT, 100),
        "alpha committed, beta lost"
    );

    // Never hidden: the restarted coordinator, which never saw the
    // transaction, finds alpha's writes committed beside no branch on beta,
    // which the protocol cannot produce, and says so.
    let info = outcome_of(&cluster, &id).await;
    assert_eq!(info.outcome(), Outcome::Committed, "{info:?}");
    assert!(info.hazard.contains("heuristic hazard"), "{info:?}");
    assert!(info.hazard.contains("beta"), "{info:?}");
}

#[tokio::test]
async fn a_hazard_found_in_phase_two_is_listed_for_operators() {
    let (mut cluster, mut client) = bank(ClusterConfig::default()).await;
    let id = open_transfer(&mut client).await;
    // Phase 2 is held back while an operator rolls beta's prepared branch
    // back by hand; then the coordinator's commit finds it gone.
    cluster
        .failpoint("coordinator", "coordinator::before_phase2", "2*return(delay:3000)")
        .await
        .unwrap();
    let commit = commit_in_background(&cluster, &id);
    wait_prepared(&cluster, &[("alpha", &id), ("beta", &id)], Duration::from_secs(5)).await;
    cluster.kill_participant("beta");
    roll_back_by_hand(&cluster, "beta", &id).await;
    cluster.restart_participant("beta").await.unwrap();
    let answer = commit.await.unwrap().unwrap();
    assert_eq!(answer.outcome(), Outcome::Committed, "{}", answer.reason);
    let until = Instant::now() + Duration::from_secs(30);
    let info = loop {
        let info = cluster.client().await.unwrap().get_transaction(&id).await.unwrap();
        if !info.hazard.is_empty() {
            break info;
        }
        assert!(Instant::now() < until, "no hazard reported: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(info.hazard.contains("beta"), "{}", info.hazard);
    let beta = info.branches.iter().find(|b| b.participant == "beta").unwrap();
    assert_eq!(beta.state(), BranchState::HeuristicRollback);
    let listed = cluster
        .operator()
        .await
        .unwrap()
        .raw()
        .list_transactions(pb::ListTransactionsRequest {
            filter: TxnFilter::Hazard as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].txn_id, id);
    assert_eq!(listed[0].state(), TxnState::Committed);
}

#[tokio::test]
async fn a_single_branch_submit_to_a_participant_that_was_down_ends_aborted_once_it_is_back() {
    let (mut cluster, _) = bank(ClusterConfig::default()).await;
    cluster.kill_participant("beta");
    let access = cluster.access(TEST_PRINCIPAL).expect("client certificate");
    let submit = tokio::spawn(async move {
        let mut client = access.connect().await?;
        client
            .submit_with(pb::SubmitRequest {
                timeout_ms: 1_000,
                label: "lonely-credit".into(),
                branches: vec![pb::Branch {
                    participant: "beta".into(),
                    statements: vec![credit(1, AMOUNT)],
                }],
                ..Default::default()
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.restart_participant("beta").await.unwrap();
    // The participant never saw the branch: once back it says so, finally
    // (the gtrid is fenced off), and the transaction aborts. Whether the
    // client heard that before its deadline or was told UNKNOWN, the
    // transaction's record ends ABORTED.
    match submit.await.unwrap() {
        Ok(done) => assert_eq!(done.outcome(), Outcome::Aborted, "{}", done.reason),
        Err(status) => assert_eq!(status.code(), tonic::Code::Unknown, "{status:?}"),
    }
    let listed = cluster
        .client()
        .await
        .unwrap()
        .raw()
        .list_transactions(pb::ListTransactionsRequest {
            label: "lonely-credit".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(listed.len(), 1);
    let info = outcome_of(&cluster, &listed[0].txn_id).await;
    assert_eq!(info.outcome(), Outcome::Aborted, "{info:?}");
    assert_settled(&cluster, false).await;
}

#[tokio::test]
async fn old_marker_rows_are_collected_but_an_in_doubt_branch_keeps_its_own() {
    let (mut cluster, mut client) = bank(ClusterConfig {
        recovery_interval_ms: 100,
        marker_retention_secs: 1,
        ..ClusterConfig::default()
    })
    .await;
    let markers = "SELECT COUNT(*) FROM tandem.xa_markers";
    // An in-doubt branch: prepared, decision durable, coordinator dead.
    let id = open_transfer(&mut client).await;
    crash_coordinator_during_commit(&mut cluster, &id, "coordinator::before_phase2", "return(crash)").await;
    // The seeding one-phase commits left committed marker rows; collection
    // (every 30 passes) deletes them, skipping the in-doubt branch's row.
    let until = Instant::now() + Duration::from_secs(30);
    while scalar(cluster.node("alpha").pool(), markers).await > 0 {
        assert!(Instant::now() < until, "old marker rows were never collected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_prepared(&cluster, &[("alpha", &id), ("beta", &id)], Duration::from_secs(1)).await;
    cluster.restart_coordinator().await.unwrap();
    assert_settled(&cluster, true).await;
}

/// Found by reading the collection rule against the commit rule: a marker
/// deleted by age alone while a peer branch was still prepared would let
/// that branch's recovery fence the deleted marker's key and abort a
/// committed transaction.
#[tokio::test]
async fn a_committed_marker_is_kept_past_its_retention_while_a_branch_of_its_transaction_is_in_doubt() {
    let (mut cluster, mut client) = bank(ClusterConfig {
        recovery_interval_ms: 100,
        marker_retention_secs: 1,
        network_proxies: true,
        ..ClusterConfig::default()
    })
    .await;
    let marker_of = |gtrid: &str| format!("SELECT COUNT(*) FROM tandem.xa_markers WHERE gtrid = '{gtrid}'");
    // alpha commits, beta stays prepared; beta's recovery cannot ask any
    // replica (the replicas still reach beta).
    let id = open_transfer(&mut client).await;
    cluster
        .failpoint("beta", "participant::before_commit", "1*return(delay:1000,error)")
        .await
        .unwrap();
    cluster
        .set_link_to_coordinators("beta", tandem_integration_tests::proxy::Link::Blackhole)
        .unwrap();
    crash_coordinator_during_commit(&mut cluster, &id, "coordinator::after_commit", "1*return(crash)").await;
    wait_prepared(&cluster, &[("beta", &id)], Duration::from_secs(5)).await;
    cluster.restart_coordinator().await.unwrap();
    assert_eq!(scalar(cluster.node("alpha").pool(), &marker_of(&id)).await, 1);
    // A later transaction on alpha alone: once its marker is collected,
    // alpha's collection has weighed the older marker of `id` too.
    let mut client = cluster.client().await.expect("client connects");
    let later = client.submit(vec![("alpha", vec![debit(1, 1)])]).await.unwrap();
    assert_eq!(later.outcome(), Outcome::Committed, "{later:?}");
    let until = Instant::now() + Duration::from_secs(30);
    while scalar(cluster.node("alpha").pool(), &marker_of(&later.txn_id)).await > 0 {
        assert!(Instant::now() < until, "the later marker row was never collected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        scalar(cluster.node("alpha").pool(), &marker_of(&id)).await,
        1,
        "alpha's marker of {id} was collected while beta's branch was in doubt"
    );
    // beta's recovery asks again and commits from alpha's marker; then
    // both markers go.
    cluster
        .set_link_to_coordinators("beta", tandem_integration_tests::proxy::Link::Up)
        .unwrap();
    wait_prepared(&cluster, &[], Duration::from_secs(30)).await;
    assert_eq!(balances(&cluster).await, (100 - AMOUNT - 1, 100 + AMOUNT));
    let until = Instant::now() + Duration::from_secs(30);
    for node in ["alpha", "beta"] {
        while scalar(cluster.node(node).pool(), &marker_of(&id)).await > 0 {
            assert!(
                Instant::now() < until,
                "{node}'s marker of {id} was never collected once settled"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A Submit of `alpha`'s statements and a credit on beta, with beta's row
/// held by another transaction, so beta's branch waits after alpha voted.
struct HeldSubmit {
    blocker: sqlx::pool::PoolConnection<sqlx::MySql>,
    submit: tokio::task::JoinHandle<Result<pb::SubmitResponse, tonic::Status>>,
}

async fn submit_with_beta_held(cluster: &Cluster, client: &Client, alpha: Vec<tandem_client::Statement>) -> HeldSubmit {
    let mut blocker = cluster.node("beta").pool().acquire().await.expect("connection");
    for sql in ["BEGIN", "SELECT balance FROM accounts WHERE id = 1 FOR UPDATE"] {
        sqlx::raw_sql(sql).execute(&mut *blocker).await.expect(sql);
    }
    let mut client = client.clone();
    let submit = tokio::spawn(async move {
        client
            .submit_with(pb::SubmitRequest {
                timeout_ms: 20_000,
                branches: vec![
                    pb::Branch {
                        participant: "alpha".into(),
                        statements: alpha,
                    },
                    pb::Branch {
                        participant: "beta".into(),
                        statements: vec![credit(1, AMOUNT)],
                    },
                ],
                ..pb::SubmitRequest::default()
            })
            .await
    });
    HeldSubmit { blocker, submit }
}

impl HeldSubmit {
    /// alpha's database dies, and with it the locks alpha's branch held;
    /// then beta's row is freed and beta's branch takes its locks. The
    /// Submit must abort, naming alpha, and leave nothing behind.
    async fn crash_alpha_then_free_beta(self, cluster: &mut Cluster) {
        let Self { mut blocker, submit } = self;
        assert!(!submit.is_finished(), "beta's branch must still be waiting");
        cluster.kill_mariadb("alpha");
        cluster.restart_mariadb("alpha").expect("alpha's MariaDB restarts");
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut *blocker)
            .await
            .expect("ROLLBACK");
        drop(blocker);
        let done = submit.await.expect("submit task").expect("Submit answers");
        assert_eq!(done.outcome(), Outcome::Aborted, "{done:?}");
        assert!(done.reason.contains("alpha"), "the reason names alpha: {}", done.reason);
        assert_settled(cluster, false).await;
    }
}

/// Found by the chaos suite (seed 2211, binlog off: an audit committed with
/// a total 21 short). A Submit's read-only branch votes while the other
/// branches still run and keeps its read locks; its database crashed after
/// that vote, taking the locks with it, before another branch had taken
/// its own. Committing then is not serializable. Now every held read-only
/// branch must prove, once all votes are in, that its session still holds
/// its locks; this one cannot, and the transaction aborts.
#[tokio::test]
async fn a_read_only_branch_whose_database_crashed_before_the_other_branches_locked_aborts_the_submit() {
    let (mut cluster, client) = bank(ClusterConfig::default()).await;
    let held = submit_with_beta_held(
        &cluster,
        &client,
        vec![tandem_client::Statement::new(
            "SELECT balance FROM accounts WHERE id = 1",
        )],
    )
    .await;
    // alpha's branch has read and voted READ_ONLY, keeping its lock;
    // beta's waits for the row.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let request = pb::ListTransactionsRequest {
            filter: TxnFilter::InFlight as i32,
            ..pb::ListTransactionsRequest::default()
        };
        let listed = client.clone().raw().list_transactions(request).await.expect("list");
        let voted = listed.into_inner().transactions.iter().any(|t| {
            t.branches
                .iter()
                .any(|b| b.participant == "alpha" && b.state() == BranchState::ReadOnly)
        });
        if voted {
            break;
        }
        assert!(Instant::now() < until, "alpha's branch never voted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.crash_alpha_then_free_beta(&mut cluster).await;
}

#[tokio::test]
async fn a_writing_branch_that_read_and_whose_database_crashed_before_the_other_branches_locked_aborts_the_submit() {
    let (mut cluster, client) = bank(ClusterConfig::default()).await;
    let held = submit_with_beta_held(
        &cluster,
        &client,
        vec![
            // A shared lock (SERIALIZABLE), then a write.
            tandem_client::Statement::new("SELECT balance FROM accounts WHERE id = 1"),
            insert_note(7, "read, then wrote"),
        ],
    )
    .await;
    // alpha's branch has read and written, and voted; beta's waits.
    let alpha = cluster.node("alpha").pool().clone();
    let mut peek = alpha.acquire().await.expect("connection");
    sqlx::raw_sql("SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED")
        .execute(&mut *peek)
        .await
        .expect("READ UNCOMMITTED");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let written: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notes WHERE id = 7")
            .fetch_one(&mut *peek)
            .await
            .expect("peek");
        if written > 0 {
            break;
        }
        assert!(Instant::now() < until, "alpha's branch never wrote");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(peek);
    // Its vote follows at once (a prepare, had it not held back).
    tokio::time::sleep(Duration::from_millis(300)).await;
    held.crash_alpha_then_free_beta(&mut cluster).await;
    assert_eq!(scalar(&alpha, "SELECT COUNT(*) FROM notes").await, 0);
}

/// Where a single-branch Submit is struck.
#[derive(Debug, Clone, Copy)]
enum Strike {
    Participant,
    Database,
    Coordinator,
}

/// A Submit's only branch runs as a plain local transaction (`START
/// TRANSACTION` … marker row … `COMMIT`), not as XA. Struck at each step
/// (its participant, its database or its coordinator killed while the
/// commit is held before or after MySQL committed), it ends as its marker
/// row says: committed exactly when MySQL committed it, and its client
/// finds that outcome by its key.
#[tokio::test]
async fn a_single_branch_submit_struck_at_each_step_ends_as_its_marker_row_says() {
    let (mut cluster, _) = bank(ClusterConfig::default()).await;
    let alpha_balance = "SELECT balance FROM accounts WHERE id = 1";
    let mut balance = 100;
    let steps = [
        ("participant::before_commit", Strike::Participant, false),
        ("participant::before_commit", Strike::Database, false),
        ("participant::after_commit", Strike::Participant, true),
        ("participant::before_commit", Strike::Coordinator, true),
    ];
    for (n, (failpoint, strike, commits)) in steps.into_iter().enumerate() {
        let key = format!("single-{n}");
        cluster
            .failpoint("alpha", failpoint, "1*return(delay:3000)")
            .await
            .unwrap();
        let xa_starts = global_status(cluster.node("alpha").pool(), "Com_xa_start").await;
        let access = cluster.access(TEST_PRINCIPAL).unwrap();
        let request = pb::SubmitRequest {
            timeout_ms: 20_000,
            key: key.clone(),
            branches: vec![pb::Branch {
                participant: "alpha".into(),
                statements: vec![debit(1, AMOUNT)],
            }],
            ..Default::default()
        };
        let submit = tokio::spawn(async move { access.connect().await?.submit_with(request).await });
        // Held at the failpoint: before the commit, the branch's
        // transaction holds its row lock; after it, the debit is visible.
        let until = Instant::now() + Duration::from_secs(10);
        let alpha = cluster.node("alpha").pool().clone();
        loop {
            let held = if commits && matches!(strike, Strike::Participant) {
                scalar(&alpha, alpha_balance).await == balance - AMOUNT
            } else {
                // (INNODB_TRX does not list a plain transaction's row locks)
                sqlx::query("SELECT balance FROM accounts WHERE id = 1 FOR UPDATE NOWAIT")
                    .fetch_all(&alpha)
                    .await
                    .is_err()
            };
            if held {
                break;
            }
            assert!(!submit.is_finished(), "step {n}: the Submit ended: {:?}", submit.await);
            assert!(Instant::now() < until, "step {n}: the branch never reached {failpoint}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            global_status(&alpha, "Com_xa_start").await,
            xa_starts,
            "step {n}: the only branch of a Submit runs without XA"
        );
        match strike {
            Strike::Participant => {
                cluster.kill_participant("alpha");
                cluster.restart_participant("alpha").await.unwrap();
            }
            Strike::Database => {
                cluster.kill_mariadb("alpha");
                cluster.restart_mariadb("alpha").unwrap();
            }
            Strike::Coordinator => {
                cluster.kill_coordinator();
                cluster.restart_coordinator().await.unwrap();
            }
        }
        let want = if commits { Outcome::Committed } else { Outcome::Aborted };
        // The call may have died with the process; if it answered, the
        // answer is the truth.
        if let Ok(Ok(answer)) = submit.await {
            assert_eq!(
                answer.outcome(),
                want,
                "step {n} ({strike:?} at {failpoint}): {answer:?}"
            );
        }
        let info = outcome_by_key(&cluster, 0, &key).await;
        assert_eq!(info.outcome(), want, "step {n} ({strike:?} at {failpoint}): {info:?}");
        if commits {
            balance -= AMOUNT;
        }
        let alpha = cluster.node("alpha").pool();
        assert_eq!(scalar(alpha, alpha_balance).await, balance, "step {n}");
        assert_unlocked(alpha, "accounts", "id = 1").await;
        assert_no_prepared(&cluster).await;
    }
}

/// A branch call that panics on the participant (here at a failpoint, as a
/// bug would) is answered INTERNAL at once instead of leaving its caller
/// waiting for the deadline (or breaking the stream it came on, which
/// would fail its calls UNAVAILABLE): the transaction it belonged to
/// aborts, the next one commits.
#[tokio::test]
async fn a_branch_call_that_panics_is_answered_at_once_and_its_stream_serves_on() {
    let (cluster, mut client) = bank(ClusterConfig {
        default_timeout_ms: 30_000,
        ..ClusterConfig::default()
    })
    .await;
    // Opens beta's stream, so the panic happens on a stream in use.
    let id = open_transfer(&mut client).await;
    client.rollback(&id).await.expect("rollback");

    cluster
        .failpoint("beta", "participant::serve_call", "1*panic(a bug)")
        .await
        .unwrap();
    let id = client.begin().await.expect("begin");
    client
        .execute(&id, "alpha", vec![debit(1, AMOUNT)])
        .await
        .expect("debit on alpha");
    let asked = Instant::now();
    let err = client
        .execute(&id, "beta", vec![credit(1, AMOUNT)])
        .await
        .expect_err("beta's call panicked");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "answered only after {:?}, near the 30 s deadline",
        asked.elapsed()
    );
    assert!(err.message().contains("panicked"), "{err:?}");
    let info = outcome_of(&cluster, &id).await;
    assert_eq!(info.outcome(), Outcome::Aborted, "{info:?}");
    assert_settled(&cluster, false).await;

    // beta serves on (it did not restart): the next transaction commits.
    let id = open_transfer(&mut client).await;
    let answer = client.commit(&id).await.expect("commit");
    assert_eq!(answer.outcome(), Outcome::Committed, "{answer:?}");
    assert_settled(&cluster, true).await;
}
