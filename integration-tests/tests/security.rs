//! The trust boundary (DESIGN.md §8), attacked through the real gRPC
//! surface of a real cluster running with TLS: callers without a
//! certificate, with the wrong one, or with another principal's
//! transaction. Every attack must be refused with the right code and a
//! message that names the problem, and afterwards MariaDB must show that
//! nothing changed: no row, no fence, no prepared branch, no lock.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tandem_client::pb::participant_client::ParticipantClient;
use tandem_client::pb::{self, Then};
use tandem_client::{Client, Outcome, Statement};
use tandem_common::{Identity, Role, tokens};
use tandem_integration_tests::certs::Ca;
use tandem_integration_tests::cluster::{COORDINATOR_NAME, coordinator_identity, tandem_binaries};
use tandem_integration_tests::process::Process;
use tandem_integration_tests::{Cluster, ClusterConfig};
use tonic::Code;
use tonic::transport::Channel;

async fn start(config: ClusterConfig) -> Cluster {
    Cluster::start(config).await.expect("cluster starts")
}

/// A client acting as client principal `name`.
async fn principal(cluster: &Cluster, name: &str) -> Client {
    let access = cluster.access(name).expect("a client certificate");
    access.connect().await.expect("the coordinator answers")
}

fn id(role: Role, name: &str) -> Identity {
    Identity::new(role, name).expect("identity")
}

/// A request to a participant, meant for `participant` (as the coordinator
/// sends it).
fn meant_for<T>(participant: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-tandem-participant", participant.parse().expect("ascii"));
    request
}

/// A branch that would write a row and commit it at once, as an attacker
/// would send it straight to a participant.
fn forged_commit(gtrid: &str) -> pb::BranchExecuteRequest {
    pb::BranchExecuteRequest {
        gtrid: gtrid.to_owned(),
        begin: true,
        statements: vec![insert_note(666, "forged")],
        isolation: 0,
        timeout_ms: 5_000,
        then: Then::CommitOnePhase as i32,
        max_result_bytes: 0,
        participants: vec!["alpha".to_owned()],
    }
}

/// Calls a participant directly as `me` (or without a certificate) and
/// returns every RPC's result code.
async fn attack_participant(
    cluster: &Cluster,
    me: Option<&Identity>,
    gtrid: &str,
) -> Vec<(&'static str, Code, String)> {
    let alpha = id(Role::Participant, "alpha");
    let endpoint = cluster
        .endpoint_as(cluster.node("alpha").addr, me, &alpha)
        .expect("endpoint");
    let mut out = Vec::new();
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(err) => {
            out.push(("connect", Code::Unavailable, err.to_string()));
            return out;
        }
    };
    let mut client = ParticipantClient::new(channel);
    let (c, m) = code(client.execute(meant_for("alpha", forged_commit(gtrid))).await);
    out.push(("execute", c, m));
    let request = pb::BranchRollbackRequest {
        gtrid: gtrid.to_owned(),
    };
    let (c, m) = code(client.rollback(meant_for("alpha", request)).await);
    out.push(("rollback", c, m));
    let request = pb::InquireRequest {
        gtrid: gtrid.to_owned(),
        probe: false,
    };
    let (c, m) = code(client.inquire(meant_for("alpha", request)).await);
    out.push(("inquire", c, m));
    let request = pb::BranchCommitRequest {
        gtrid: gtrid.to_owned(),
        one_phase: true,
    };
    let (c, m) = code(client.commit(meant_for("alpha", request)).await);
    out.push(("commit", c, m));
    let (c, m) = code(client.recover(meant_for("alpha", pb::RecoverRequest::default())).await);
    out.push(("recover", c, m));
    let (c, m) = code(
        client
            .list_in_doubt(meant_for("alpha", pb::ListInDoubtRequest {}))
            .await,
    );
    out.push(("list_in_doubt", c, m));
    let request = pb::AuditRequest {
        gtrid: gtrid.to_owned(),
        record: Some(pb::AuditEntry {
            action: "resolve-hazard".to_owned(),
            operator: "mallory".to_owned(),
            reason: "forged".to_owned(),
            ..pb::AuditEntry::default()
        }),
    };
    let (c, m) = code(client.audit(meant_for("alpha", request)).await);
    out.push(("audit", c, m));
    let call = branch_call(pb::branch_call::Call::Execute(forged_commit(gtrid)));
    let (c, m) = on_stream(&mut client, "alpha", call).await;
    out.push(("branches", c, m));
    out
}

/// A call on the branch stream, as a coordinator sends it.
fn branch_call(call: pb::branch_call::Call) -> pb::BranchCall {
    pb::BranchCall {
        id: 7,
        timeout_ms: 5_000,
        trace: Default::default(),
        call: Some(call),
    }
}

/// Opens a branch stream meant for `participant`, sends `call` on it and
/// returns the answer's code: the stream's own if it was refused, the
/// call's if the call failed.
async fn on_stream(client: &mut ParticipantClient<Channel>, participant: &str, call: pb::BranchCall) -> (Code, String) {
    let id = call.id;
    let opened = client
        .branches(meant_for(participant, futures::stream::iter([call])))
        .await;
    let mut answers = match opened {
        Ok(answers) => answers.into_inner(),
        Err(status) => return (status.code(), status.message().to_owned()),
    };
    match answers.message().await {
        Ok(Some(pb::BranchAnswer {
            id: answered,
            answer: Some(pb::branch_answer::Answer::Error(error)),
        })) if answered == id => (Code::from_i32(error.code), error.message),
        Ok(answer) => (Code::Ok, format!("{answer:?}")),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

fn code<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    match result {
        Ok(response) => (Code::Ok, format!("{response:?}")),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

/// Nothing the attacks tried left a trace on alpha: no forged row, no
/// marker or fence for `gtrid`, nothing prepared.
async fn assert_untouched(cluster: &Cluster, gtrid: &str) {
    let pool = cluster.node("alpha").pool();
    assert_eq!(scalar(pool, "SELECT COUNT(*) FROM notes WHERE id = 666").await, 0);
    let markers = format!("SELECT COUNT(*) FROM tandem.xa_markers WHERE gtrid = '{gtrid}'");
    assert_eq!(scalar(pool, &markers).await, 0, "a marker or fence row for {gtrid}");
    let audit = format!("SELECT COUNT(*) FROM tandem.audit WHERE gtrid = '{gtrid}'");
    assert_eq!(scalar(pool, &audit).await, 0, "an audit row for {gtrid}");
    assert_no_prepared(cluster).await;
}

#[tokio::test]
async fn only_the_configured_coordinator_may_call_a_participant() {
    let cluster = cluster().await;
    // The next ids this coordinator will issue: fencing them was an attack.
    let future = format!("{COORDINATOR_NAME}-1-1000");

    // No certificate: the TLS handshake itself fails.
    for (rpc, code, message) in attack_participant(&cluster, None, &future).await {
        assert!(
            !matches!(code, Code::Ok | Code::NotFound | Code::FailedPrecondition),
            "{rpc} without a certificate: {code:?} {message}"
        );
    }
    // Certificates the cluster CA signed, for anyone but the coordinator.
    for me in [
        id(Role::Client, "mallory"),
        id(Role::Operator, "ops"),
        id(Role::Participant, "beta"),
        id(Role::Participant, "alpha"),
        id(Role::Coordinator, "evil"),
    ] {
        for (rpc, code, message) in attack_participant(&cluster, Some(&me), &future).await {
            assert_eq!(code, Code::PermissionDenied, "{rpc} as {me}: {message}");
            assert!(
                message.contains("serves coordinators tc only"),
                "{rpc} as {me}: {message}"
            );
        }
    }
    // The coordinator's own name, signed by another CA.
    let rogue_dir = tempfile::tempdir().expect("tempdir");
    let rogue = Ca::create(rogue_dir.path(), "rogue CA").expect("rogue CA");
    let forged = rogue.issue(&coordinator_identity()).expect("forged certificate");
    let ca = cluster.ca().expect("TLS");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca.ca_pem()))
        .identity(tonic::transport::Identity::from_pem(&forged.cert_pem, &forged.key_pem))
        .domain_name("alpha.participant.tandem");
    let channel = Channel::from_shared(format!("https://{}", cluster.node("alpha").addr))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = channel {
        let err = ParticipantClient::new(channel)
            .execute(meant_for("alpha", forged_commit(&future)))
            .await
            .expect_err("a certificate of another CA is refused");
        assert!(!matches!(err.code(), Code::Ok | Code::NotFound), "{err:?}");
    }
    // Plaintext to a TLS port.
    let plain = Channel::from_shared(format!("http://{}", cluster.node("alpha").addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let err = ParticipantClient::new(channel)
            .execute(meant_for("alpha", forged_commit(&future)))
            .await
            .expect_err("plaintext is refused");
        assert_ne!(err.code(), Code::Ok, "{err:?}");
    }
    assert_untouched(&cluster, &future).await;

    // The real coordinator's identity still acts only on ids its cluster
    // issued, and only on requests meant for this participant.
    let coordinator = coordinator_identity();
    let alpha = id(Role::Participant, "alpha");
    let channel = cluster
        .endpoint_as(cluster.node("alpha").addr, Some(&coordinator), &alpha)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut as_coordinator = ParticipantClient::new(channel);
    let err = as_coordinator
        .execute(meant_for("alpha", forged_commit("other-1-1")))
        .await
        .expect_err("another cluster's gtrid");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message()
            .contains("was not issued by any of this participant's coordinators"),
        "{err:?}"
    );
    let err = as_coordinator
        .execute(meant_for("beta", forged_commit(&future)))
        .await
        .expect_err("a request meant for beta");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("this is participant alpha, not beta"), "{err:?}");
    let err = as_coordinator
        .execute(tonic::Request::new(forged_commit(&future)))
        .await
        .expect_err("a request that names no participant");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_untouched(&cluster, &future).await;

    // The same checks hold for each call on the branch stream.
    let execute = |request| branch_call(pb::branch_call::Call::Execute(request));
    let (c, m) = on_stream(&mut as_coordinator, "alpha", execute(forged_commit("other-1-1"))).await;
    assert_eq!(c, Code::PermissionDenied, "{m}");
    assert!(
        m.contains("was not issued by any of this participant's coordinators"),
        "{m}"
    );
    let (c, m) = on_stream(&mut as_coordinator, "beta", execute(forged_commit(&future))).await;
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    assert!(m.contains("this is participant alpha, not beta"), "{m}");
    let mut long = forged_commit(&future);
    long.timeout_ms = 3_600_000;
    let (c, m) = on_stream(&mut as_coordinator, "alpha", execute(long)).await;
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("--max-timeout-ms"), "{m}");
    let mut empty = execute(forged_commit(&future));
    empty.call = None;
    let (c, m) = on_stream(&mut as_coordinator, "alpha", empty).await;
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("must carry execute, prepare, commit or rollback"), "{m}");
    assert_untouched(&cluster, &future).await;

    // The participant enforces its own deadline bound.
    let mut long = forged_commit(&future);
    long.timeout_ms = 3_600_000;
    let err = as_coordinator
        .execute(meant_for("alpha", long))
        .await
        .expect_err("a deadline past the participant's maximum");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("--max-timeout-ms"), "{err:?}");
    assert_untouched(&cluster, &future).await;

    // Audit entries are bounded and of known actions, even from the
    // coordinator.
    let entry = |action: &str, reason: String| pb::AuditRequest {
        gtrid: future.clone(),
        record: Some(pb::AuditEntry {
            action: action.to_owned(),
            operator: "operator ops".to_owned(),
            reason,
            ..pb::AuditEntry::default()
        }),
    };
    for (request, expected) in [
        (entry("drop-everything", "x".to_owned()), "unknown audit action"),
        (
            entry("resolve-hazard", "x".repeat(1025)),
            "reason is longer than 1024 bytes",
        ),
        (entry("resolve-hazard", " ".to_owned()), "names its operator and reason"),
    ] {
        let err = as_coordinator
            .audit(meant_for("alpha", request))
            .await
            .expect_err("a bad audit entry");
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(expected), "{err:?}");
    }
    assert_untouched(&cluster, &future).await;

    // And the cluster still works: no id was fenced.
    let mut client = cluster.client().await.unwrap();
    for n in 0..3 {
        let done = client
            .submit(vec![("alpha", vec![insert_note(n, "legit")])])
            .await
            .unwrap();
        assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    }
}

#[tokio::test]
async fn only_participants_reach_the_internal_decisions_api() {
    let cluster = cluster().await;
    let mut client = cluster.client().await.unwrap();
    seed_accounts(&mut client, &["alpha", "beta"], 1, 100).await;
    let done = client
        .submit(vec![("alpha", vec![debit(1, 10)]), ("beta", vec![credit(1, 10)])])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    let coordinator = coordinator_identity();
    let ask = |me: Option<Identity>, addr| {
        let endpoint = cluster.endpoint_as(addr, me.as_ref(), &coordinator).unwrap();
        let gtrid = done.txn_id.clone();
        async move {
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            pb::decisions_client::DecisionsClient::new(channel)
                .decision(pb::DecisionRequest {
                    gtrid,
                    participants: Vec::new(),
                })
                .await
                .map(|r| r.into_inner().decision())
        }
    };
    let internal = cluster.internal_addr();
    // Clients and operators are refused; so is a caller without a certificate.
    for me in [
        id(Role::Client, "tester"),
        id(Role::Operator, "ops"),
        coordinator.clone(),
    ] {
        let err = ask(Some(me.clone()), internal).await.expect_err("refused");
        assert_eq!(err.code(), Code::PermissionDenied, "{me}: {err:?}");
        assert!(err.message().contains("participants only"), "{me}: {err:?}");
    }
    let err = ask(None, internal).await.expect_err("refused without a certificate");
    assert!(!matches!(err.code(), Code::Ok | Code::PermissionDenied), "{err:?}");
    // A participant of the cluster that the coordinator does not drive.
    let err = ask(Some(id(Role::Participant, "zeta")), internal)
        .await
        .expect_err("not configured");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // Decisions is not on the client port at all.
    let err = ask(Some(id(Role::Participant, "alpha")), cluster.coordinator_addr())
        .await
        .expect_err("the client port does not serve Decisions");
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");

    // Its participants learn the outcome; one that was not part of the
    // transaction learns ABORT (a branch it holds under that id is not
    // the transaction's and must not commit with it).
    assert_eq!(
        ask(Some(id(Role::Participant, "alpha")), internal).await.unwrap(),
        pb::DecisionKind::Commit
    );
    assert_eq!(
        ask(Some(id(Role::Participant, "beta")), internal).await.unwrap(),
        pb::DecisionKind::Commit
    );
    assert_eq!(
        ask(Some(id(Role::Participant, "gamma")), internal).await.unwrap(),
        pb::DecisionKind::Abort
    );

    // Unsettled (which marker rows a participant may collect) sits behind
    // the same gate, answers only about the asker's own sets, and bounds
    // the question.
    let unsettled = |me: Identity, transactions: Vec<pb::MarkedTransaction>| {
        let endpoint = cluster.endpoint_as(internal, Some(&me), &coordinator).unwrap();
        async move {
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            pb::decisions_client::DecisionsClient::new(channel)
                .unsettled(pb::UnsettledRequest { transactions })
                .await
                .map(|r| r.into_inner().gtrids)
        }
    };
    let marked = |set: &[&str]| pb::MarkedTransaction {
        gtrid: done.txn_id.clone(),
        participants: set.iter().map(|p| (*p).to_owned()).collect(),
    };
    let err = unsettled(id(Role::Client, "tester"), vec![marked(&["alpha", "beta"])])
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // Committed everywhere: settled.
    assert_eq!(
        unsettled(id(Role::Participant, "alpha"), vec![marked(&["alpha", "beta"])])
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    // A set without the asker is not one of its marker rows: never settled
    // for it; nor is a set naming a participant this cluster lacks.
    for (me, set) in [("gamma", &["alpha", "beta"][..]), ("alpha", &["alpha", "zeta"][..])] {
        assert_eq!(
            unsettled(id(Role::Participant, me), vec![marked(set)]).await.unwrap(),
            vec![done.txn_id.clone()],
            "{me} asks about {set:?}"
        );
    }
    let err = unsettled(id(Role::Participant, "alpha"), vec![marked(&["alpha"]); 1001])
        .await
        .expect_err("too many");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut forged = marked(&["alpha"]);
    forged.gtrid = "'; DROP TABLE tandem.xa_markers; --".into();
    let err = unsettled(id(Role::Participant, "alpha"), vec![forged])
        .await
        .expect_err("not a gtrid");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

#[tokio::test]
async fn a_transaction_belongs_to_the_principal_that_began_it() {
    let token = "s3cret-token-for-bob";
    let cluster = start(ClusterConfig {
        tokens: vec![format!("bob client {}", tokens::hash_hex(token))],
        ..ClusterConfig::default()
    })
    .await;
    let mut alice = principal(&cluster, "alice").await;
    let mut mallory = principal(&cluster, "mallory").await;
    let mut ops = cluster.operator().await.unwrap();

    let txn = alice
        .begin_with(pb::BeginRequest {
            label: "alice-order".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    alice
        .execute(&txn, "alpha", vec![insert_note(1, "alice")])
        .await
        .unwrap();

    // Mallory can neither see, read into, commit nor roll back it: to her
    // it does not exist.
    let err = expect_code(
        mallory
            .execute(&txn, "alpha", vec![Statement::new("SELECT body FROM notes")])
            .await,
        Code::NotFound,
    );
    assert!(err.message().contains("unknown transaction"), "{err:?}");
    expect_code(mallory.commit(&txn).await, Code::NotFound);
    expect_code(mallory.rollback(&txn).await, Code::NotFound);
    expect_code(mallory.get_transaction(&txn).await, Code::NotFound);
    let listed = mallory
        .raw()
        .list_transactions(pb::ListTransactionsRequest {
            label: "alice-order".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert!(listed.is_empty(), "{listed:?}");
    // Labels are per principal: mallory's own transaction with the same
    // label is hers alone.
    let hers = mallory
        .begin_with(pb::BeginRequest {
            label: "alice-order".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = alice
        .raw()
        .list_transactions(pb::ListTransactionsRequest {
            label: "alice-order".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(
        listed.iter().map(|t| t.txn_id.as_str()).collect::<Vec<_>>(),
        [txn.as_str()]
    );

    // An operator sees both, but cannot run or commit alice's.
    let all = ops
        .raw()
        .list_transactions(pb::ListTransactionsRequest {
            label: "alice-order".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(ops.get_transaction(&txn).await.unwrap().label, "alice-order");
    expect_code(ops.commit(&txn).await, Code::PermissionDenied);
    expect_code(
        ops.execute(&txn, "alpha", vec![insert_note(2, "ops")]).await,
        Code::PermissionDenied,
    );
    // Outside the transaction nothing is visible yet, and nothing mallory
    // or ops tried went in.
    let pool = cluster.node("alpha").pool();
    assert_eq!(scalar(pool, "SELECT COUNT(*) FROM notes").await, 0);

    let done = alice.commit(&txn).await.unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    assert_eq!(scalar(pool, "SELECT COUNT(*) FROM notes WHERE body = 'alice'").await, 1);
    assert_eq!(scalar(pool, "SELECT COUNT(*) FROM notes").await, 1);
    // An operator may roll back anyone's live transaction.
    ops.rollback(&hers).await.unwrap();
    expect_code(mallory.commit(&hers).await, Code::FailedPrecondition);

    // Bearer tokens name a principal too; an unknown token names none.
    let mut bob = cluster.access_with_token(token).connect().await.unwrap();
    let his = bob.submit(vec![("beta", vec![insert_note(7, "bob")])]).await.unwrap();
    assert_eq!(his.outcome(), Outcome::Committed, "{}", his.reason);
    expect_code(alice.get_transaction(&his.txn_id).await, Code::NotFound);
    assert_eq!(
        bob.get_transaction(&his.txn_id).await.unwrap().outcome(),
        Outcome::Committed
    );
    let mut nobody = cluster.access_with_token("guessed").connect().await.unwrap();
    let err = expect_code(nobody.begin().await, Code::Unauthenticated);
    assert_eq!(err.message(), "unknown bearer token");
    // No certificate and no token: no principal.
    let anonymous = tandem_integration_tests::Access {
        token: None,
        ..cluster.access_with_token("unused")
    };
    let mut anonymous = anonymous.connect().await.unwrap();
    expect_code(anonymous.begin().await, Code::Unauthenticated);
    // A participant's certificate is not a client's.
    let participant = cluster.access_as(&id(Role::Participant, "alpha")).unwrap();
    let mut participant = participant.connect().await.unwrap();
    let err = expect_code(participant.begin().await, Code::PermissionDenied);
    assert!(err.message().contains("client and operator identities"), "{err:?}");
    // The token never reaches a log.
    let log = std::fs::read_to_string(cluster.dir().join("coordinator.log")).unwrap();
    assert!(
        !log.contains(token) && !log.contains("guessed"),
        "the coordinator's log holds a token"
    );
}

#[tokio::test]
async fn a_client_key_names_only_its_own_principals_transaction() {
    let cluster = start(ClusterConfig::default()).await;
    let mut alice = principal(&cluster, "alice").await;
    let mut mallory = principal(&cluster, "mallory").await;
    let notes = |id, body: &str| pb::SubmitRequest {
        key: "order-1".into(),
        branches: vec![
            pb::Branch {
                participant: "alpha".into(),
                statements: vec![insert_note(id, body)],
            },
            pb::Branch {
                participant: "beta".into(),
                statements: vec![insert_note(id, body)],
            },
        ],
        ..Default::default()
    };
    let hers = alice.submit_with(notes(1, "alice")).await.unwrap();
    assert_eq!(hers.outcome(), Outcome::Committed, "{}", hers.reason);
    // The same key, another principal: another transaction, which runs.
    let his = mallory.submit_with(notes(2, "mallory")).await.unwrap();
    assert_eq!(his.outcome(), Outcome::Committed, "{}", his.reason);
    assert_ne!(his.txn_id, hers.txn_id);
    assert!(his.reason.is_empty(), "{}", his.reason);
    assert_eq!(
        mallory.get_transaction_by_key("order-1").await.unwrap().txn_id,
        his.txn_id
    );
    assert_eq!(alice.get_transaction_by_key("order-1").await.unwrap().key, "order-1");
    expect_code(mallory.get_transaction(&hers.txn_id).await, Code::NotFound);
    // Alice's retry answers her first outcome and writes nothing again.
    let again = alice.submit_with(notes(1, "alice")).await.unwrap();
    assert_eq!(
        (again.outcome(), again.txn_id.as_str()),
        (Outcome::Committed, hers.txn_id.as_str())
    );
    assert!(again.reason.contains("already ran"), "{}", again.reason);
    for node in ["alpha", "beta"] {
        let pool = cluster.node(node).pool();
        assert_eq!(scalar(pool, "SELECT COUNT(*) FROM notes").await, 2, "{node}");
    }

    // Asking by a key nothing ran under settles it: that key's transaction
    // has not prepared anywhere, so it never will.
    let settled = mallory.get_transaction_by_key("never-sent").await.unwrap();
    assert_eq!(settled.outcome(), Outcome::Aborted, "{settled:?}");
    let late = pb::SubmitRequest {
        key: "never-sent".into(),
        ..notes(3, "late")
    };
    let late = mallory.submit_with(late).await.unwrap();
    assert_eq!(late.outcome(), Outcome::Aborted, "{late:?}");
    assert_eq!(late.txn_id, settled.txn_id);
    // ... but alice's key of the same text is untouched.
    let alices = pb::SubmitRequest {
        key: "never-sent".into(),
        ..notes(4, "alice-late")
    };
    assert_eq!(alice.submit_with(alices).await.unwrap().outcome(), Outcome::Committed);
    for node in ["alpha", "beta"] {
        let pool = cluster.node(node).pool();
        assert_eq!(
            scalar(pool, "SELECT COUNT(*) FROM notes WHERE id = 3").await,
            0,
            "{node}"
        );
        assert_eq!(
            scalar(pool, "SELECT COUNT(*) FROM notes WHERE id = 4").await,
            1,
            "{node}"
        );
    }

    // A keyed Begin this replica holds is refused; bad keys change nothing.
    let keyed = |key: &str| pb::BeginRequest {
        key: key.into(),
        ..Default::default()
    };
    alice.begin_with(keyed("begin-1")).await.unwrap();
    let err = expect_code(alice.begin_with(keyed("begin-1")).await, Code::AlreadyExists);
    assert!(err.message().contains("already has this key"), "{err:?}");
    for bad in ["a\u{0}b", &"k".repeat(257)] {
        let err = expect_code(alice.begin_with(keyed(bad)).await, Code::InvalidArgument);
        assert!(err.message().contains("key"), "{err:?}");
        expect_code(alice.get_transaction_by_key(bad).await, Code::InvalidArgument);
    }
    let both = pb::GetTransactionRequest {
        txn_id: hers.txn_id.clone(),
        key: "order-1".into(),
    };
    let err = expect_code(alice.raw().get_transaction(both).await, Code::InvalidArgument);
    assert!(err.message().contains("not both"), "{err:?}");
}

#[tokio::test]
async fn live_transactions_are_bounded_per_principal_and_in_all() {
    let cluster = start(ClusterConfig {
        coordinator_args: ["--max-live-per-principal", "3", "--max-live-transactions", "5"]
            .map(str::to_owned)
            .to_vec(),
        ..ClusterConfig::default()
    })
    .await;
    let mut alice = principal(&cluster, "alice").await;
    let mut bob = principal(&cluster, "bob").await;
    let mut carol = principal(&cluster, "carol").await;
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(alice.begin().await.unwrap());
    }
    let err = expect_code(alice.begin().await, Code::ResourceExhausted);
    assert!(err.message().contains("--max-live-per-principal"), "{err:?}");
    // A Submit counts too, and is refused before it runs anything.
    let refused = alice.submit(vec![("alpha", vec![insert_note(1, "over")])]).await;
    expect_code(refused, Code::ResourceExhausted);
    bob.begin().await.unwrap();
    bob.begin().await.unwrap();
    let err = expect_code(carol.begin().await, Code::ResourceExhausted);
    assert!(err.message().contains("--max-live-transactions"), "{err:?}");
    // Finishing one frees its place (when its actor ends, just after the
    // answer).
    alice.rollback(&mine[0]).await.unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let done = loop {
        match alice.submit(vec![("alpha", vec![insert_note(2, "fits")])]).await {
            Err(status) if status.code() == Code::ResourceExhausted && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    assert_eq!(
        scalar(cluster.node("alpha").pool(), "SELECT COUNT(*) FROM notes").await,
        1
    );
}

/// Starts a binary that must refuse to run, and returns its log.
async fn refuses_to_start(binary: &str, args: &[String], dir: &std::path::Path) -> String {
    let mut command = Command::new(tandem_binaries().expect("binaries").join(binary));
    command.args(args).env("NO_COLOR", "1");
    let log = dir.join(format!("{binary}.log"));
    let mut process = Process::spawn(binary, command, &log).expect("spawn");
    let until = Instant::now() + Duration::from_secs(20);
    while process.exited().is_none() {
        assert!(Instant::now() < until, "{binary} {args:?} kept running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::read_to_string(&log).unwrap_or_default()
}

#[tokio::test]
async fn misconfiguration_is_refused_loudly() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = cluster.ca().unwrap();
    let files = |identity: &Identity| {
        let f = ca.files(identity).unwrap();
        ["--tls-ca", "--tls-cert", "--tls-key"]
            .into_iter()
            .zip([f.ca, f.cert, f.key])
            .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
            .collect::<Vec<_>>()
    };
    let alpha_url = cluster.node("alpha").db.url();
    let participant = |extra: &[&str]| {
        let mut args: Vec<String> = ["--name", "alpha", "--listen", "127.0.0.1:0"]
            .map(str::to_owned)
            .to_vec();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };

    // Not MySQL.
    let mut args = participant(&["--mysql-url", "postgres://root@localhost/app"]);
    args.extend(files(&id(Role::Participant, "alpha")));
    let log = refuses_to_start("tandem-participant", &args, dir.path()).await;
    assert!(log.contains("must start with mysql:// or mariadb://"), "{log}");
    // Another participant's certificate.
    let mut args = participant(&["--mysql-url", &alpha_url]);
    args.extend(files(&id(Role::Participant, "beta")));
    let log = refuses_to_start("tandem-participant", &args, dir.path()).await;
    assert!(log.contains("needs alpha.participant.tandem"), "{log}");
    // No TLS and no plaintext flag; plaintext off loopback.
    let log = refuses_to_start(
        "tandem-participant",
        &participant(&["--mysql-url", &alpha_url]),
        dir.path(),
    )
    .await;
    assert!(log.contains("TLS is required"), "{log}");
    let mut args = participant(&["--mysql-url", &alpha_url, "--insecure-plaintext"]);
    args[3] = "0.0.0.0:0".to_owned();
    let log = refuses_to_start("tandem-participant", &args, dir.path()).await;
    assert!(log.contains("loopback addresses only"), "{log}");
    // MySQL refusing the login, a database that does not exist, a closed
    // port: the participant keeps trying, and its log says why.
    let socket = cluster.node("alpha").db.socket().display().to_string();
    for (url, cause) in [
        (format!("mysql://nobody@localhost/app?socket={socket}"), "Access denied"),
        (
            format!("mysql://root@localhost/no_such_db?socket={socket}"),
            "Unknown database",
        ),
        ("mysql://root@127.0.0.1:1/app".to_owned(), "Connection refused"),
    ] {
        let mut args = participant(&["--mysql-url", &url]);
        args.extend(files(&id(Role::Participant, "alpha")));
        let mut command = Command::new(tandem_binaries().unwrap().join("tandem-participant"));
        command.args(&args).env("NO_COLOR", "1");
        let log = dir.path().join("unreachable.log");
        let _participant = Process::spawn("participant", command, &log).unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("MySQL unreachable") && text.contains(cause) {
                break;
            }
            assert!(Instant::now() < until, "{url}: no cause {cause:?} logged:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A coordinator given an http:// URL under TLS.
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--internal-listen",
        "127.0.0.1:0",
        "--participant",
        "alpha=http://127.0.0.1:1",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(files(&coordinator_identity()));
    let log = refuses_to_start("tandem-coordinator", &args, dir.path()).await;
    assert!(log.contains("must start with https://"), "{log}");
}

#[tokio::test]
async fn a_coordinator_with_swapped_participant_urls_writes_nowhere() {
    let cluster = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = cluster.ca().unwrap();
    let f = ca.files(&coordinator_identity()).unwrap();
    let (listen, internal) = (
        tandem_integration_tests::cluster::free_addr().unwrap(),
        tandem_integration_tests::cluster::free_addr().unwrap(),
    );
    let mut command = Command::new(tandem_binaries().unwrap().join("tandem-coordinator"));
    command
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--internal-listen")
        .arg(internal.to_string())
        .arg("--participant")
        .arg(format!("alpha=https://{}", cluster.node("beta").addr))
        .arg("--participant")
        .arg(format!("beta=https://{}", cluster.node("alpha").addr))
        .arg("--tls-ca")
        .arg(&f.ca)
        .arg("--tls-cert")
        .arg(&f.cert)
        .arg("--tls-key")
        .arg(&f.key)
        .env("NO_COLOR", "1");
    let log = dir.path().join("swapped.log");
    let _coordinator = Process::spawn("swapped coordinator", command, &log).unwrap();
    let tester = cluster.access("tester").unwrap();
    let access = tandem_integration_tests::Access {
        url: format!("https://{listen}"),
        ..tester
    };
    let until = Instant::now() + Duration::from_secs(20);
    let mut client: Client = loop {
        match access.connect().await {
            Ok(client) => break client,
            Err(err) => {
                assert!(Instant::now() < until, "swapped coordinator never served: {err:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let done = client
        .submit_with(pb::SubmitRequest {
            timeout_ms: 3_000,
            branches: vec![
                pb::Branch {
                    participant: "alpha".into(),
                    statements: vec![insert_note(1, "meant for alpha")],
                },
                pb::Branch {
                    participant: "beta".into(),
                    statements: vec![insert_note(2, "meant for beta")],
                },
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Aborted, "{done:?}");
    assert!(done.reason.contains("participant"), "{}", done.reason);
    for node in cluster.nodes() {
        assert_eq!(
            scalar(node.pool(), "SELECT COUNT(*) FROM notes").await,
            0,
            "{}",
            node.name
        );
    }
    // The log says why: the server is not the participant named.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("participant unavailable") && text.contains("alpha.participant.tandem") {
            break;
        }
        assert!(Instant::now() < until, "no log line names the mismatch:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every form of client SQL that reaches tandem's state, the server's
/// system schemas, files, session state or non-transactional objects,
/// in plain, quoted and commented variants.
const FORBIDDEN_SQL: &[(&str, &str)] = &[
    ("SELECT * FROM tandem.xa_markers", "TANDEM"),
    ("DELETE FROM `tandem`.`xa_markers`", "TANDEM"),
    (
        "INSERT INTO tandem . xa_markers (gtrid, bqual) VALUES ('tc-1-999', 'alpha')",
        "TANDEM",
    ),
    ("UPDATE /* hi */ TANDEM/**/.xa_markers SET fenced = 1", "TANDEM"),
    ("SELECT * FROM \"tandem\".xa_markers", "TANDEM"),
    (
        "INSERT INTO mysql.global_priv (Host, User, Priv) VALUES ('%', 'pwn', '{}')",
        "MYSQL",
    ),
    ("SELECT INFO FROM information_schema.PROCESSLIST", "INFORMATION_SCHEMA"),
    ("SELECT 1 INTO OUTFILE '/tmp/tandem-security-outfile'", "INTO OUTFILE"),
    (
        "SELECT 1 INTO -- c\n DUMPFILE '/tmp/tandem-security-dumpfile'",
        "INTO DUMPFILE",
    ),
    ("SELECT LOAD_FILE('/etc/passwd')", "LOAD_FILE"),
    ("SELECT `load_file`('/etc/passwd')", "LOAD_FILE"),
    ("SELECT `GET_LOCK`('tandem-security', 0)", "GET_LOCK"),
    ("SELECT get_lock /* x */ ('tandem-security', 0)", "GET_LOCK"),
    ("SELECT `RELEASE_ALL_LOCKS`()", "RELEASE_ALL_LOCKS"),
    ("SELECT @x := 5", "@x"),
    ("SELECT @`x`", "@x"),
    ("SELECT 1 INTO @x", "@x"),
    ("SELECT NEXTVAL(seq)", "NEXTVAL"),
    ("SELECT NEXT VALUE FOR seq", "NEXT VALUE FOR"),
    ("SELECT LAST_INSERT_ID()", "LAST_INSERT_ID"),
    ("SELECT @@identity", "@@IDENTITY"),
    ("SELECT 1; DROP TABLE notes", ""),
    ("/*!50000 DROP TABLE notes */ SELECT 1", ""),
];

#[tokio::test]
async fn client_sql_cannot_reach_tandems_state_or_leave_lasting_effects() {
    // One MySQL session per participant: every transaction reuses it, so
    // any session state left behind would show.
    let cluster = start(ClusterConfig {
        participant_max_connections: Some(1),
        ..ClusterConfig::default()
    })
    .await;
    let mut alice = principal(&cluster, "alice").await;
    let mut bob = principal(&cluster, "bob").await;
    // A committed two-branch transaction leaves marker rows.
    let done = alice
        .submit(vec![
            ("alpha", vec![insert_note(1, "a")]),
            ("beta", vec![insert_note(1, "b")]),
        ])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    let alpha = cluster.node("alpha").pool();
    let markers = scalar(alpha, "SELECT COUNT(*) FROM tandem.xa_markers").await;
    assert!(markers >= 1);

    for (sql, keyword) in FORBIDDEN_SQL {
        // As a Submit, and inside an interactive transaction that already
        // wrote: either way refused before anything runs, and the
        // transaction aborts.
        let err = expect_code(
            bob.submit(vec![("alpha", vec![insert_note(50, "bob"), Statement::new(*sql)])])
                .await,
            Code::InvalidArgument,
        );
        assert!(err.message().contains(keyword), "{sql}: {err:?}");
        let txn = bob.begin().await.unwrap();
        bob.execute(&txn, "alpha", vec![insert_note(51, "bob")]).await.unwrap();
        let err = expect_code(
            bob.execute(&txn, "alpha", vec![Statement::new(*sql)]).await,
            Code::InvalidArgument,
        );
        assert!(err.message().contains(keyword), "{sql}: {err:?}");
        let info = bob.get_transaction(&txn).await.unwrap();
        assert_eq!(info.outcome(), Outcome::Aborted, "{sql}: {info:?}");
    }
    // Nothing of it happened.
    assert_eq!(scalar(alpha, "SELECT COUNT(*) FROM notes").await, 1);
    assert_eq!(scalar(alpha, "SELECT COUNT(*) FROM tandem.xa_markers").await, markers);
    assert_eq!(
        scalar(alpha, "SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'pwn'").await,
        0
    );
    assert_eq!(scalar(alpha, "SELECT IS_USED_LOCK('tandem-security') IS NULL").await, 1);
    for file in ["/tmp/tandem-security-outfile", "/tmp/tandem-security-dumpfile"] {
        assert!(!std::path::Path::new(file).exists(), "{file} was written");
    }
    assert_no_prepared(&cluster).await;
    // The one session still serves everyone: a transaction after all that
    // commits, and sees nothing of the others' session.
    let results = bob
        .submit(vec![("alpha", vec![Statement::new("SELECT COUNT(*) FROM notes")])])
        .await
        .unwrap();
    assert_eq!(results.outcome(), Outcome::Committed, "{}", results.reason);
}

#[tokio::test]
async fn tables_that_cannot_roll_back_stop_the_participant_from_serving() {
    let cluster = cluster().await;
    let mut client = cluster.client().await.unwrap();
    let alpha = cluster.node("alpha").pool();
    // Someone creates tables that keep writes across an abort.
    exec(alpha, "CREATE TABLE audit_log (id INT PRIMARY KEY) ENGINE=MyISAM").await;
    exec(alpha, "CREATE SEQUENCE order_numbers").await;
    let until = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let done = client
            .submit(vec![
                ("alpha", vec![Statement::new("INSERT INTO audit_log VALUES (1)")]),
                ("beta", vec![insert_note(1, "with the audit row")]),
            ])
            .await;
        match done {
            Ok(done) if done.outcome() == Outcome::Aborted => break done.reason,
            other => {
                assert!(Instant::now() < until, "the participant still serves: {other:?}");
                // It committed before the check ran: start over.
                exec(alpha, "DELETE FROM audit_log").await;
                exec(cluster.node("beta").pool(), "DELETE FROM notes").await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(refused.contains("app.audit_log (MyISAM)"), "{refused}");
    assert!(refused.contains("app.order_numbers (SEQUENCE)"), "{refused}");
    assert!(refused.contains("--allow-non-transactional"), "{refused}");
    assert_eq!(scalar(alpha, "SELECT COUNT(*) FROM audit_log").await, 0);
    assert_eq!(
        scalar(cluster.node("beta").pool(), "SELECT COUNT(*) FROM notes").await,
        0
    );
    // Code the lexer cannot see into is named at the next start.
    exec(
        alpha,
        "CREATE TRIGGER notes_audit AFTER INSERT ON notes FOR EACH ROW SET @n = 1",
    )
    .await;
    // Converted, it serves again.
    exec(alpha, "ALTER TABLE audit_log ENGINE=InnoDB").await;
    exec(alpha, "DROP SEQUENCE order_numbers").await;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let done = client
            .submit(vec![(
                "alpha",
                vec![Statement::new("INSERT INTO audit_log VALUES (2)")],
            )])
            .await
            .unwrap();
        if done.outcome() == Outcome::Committed {
            break;
        }
        assert!(Instant::now() < until, "still refused: {}", done.reason);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(scalar(alpha, "SELECT COUNT(*) FROM audit_log").await, 1);
    let log = std::fs::read_to_string(cluster.dir().join("participant-alpha.log")).unwrap();
    assert!(log.contains("refuses to run branches"), "{log}");
    // The harness connects as root: the participant says that is too much.
    assert!(log.contains("more than a participant needs"), "{log}");
    drop(client);
    let mut cluster = cluster;
    cluster.restart_participant("alpha").await.unwrap();
    let log = std::fs::read_to_string(cluster.dir().join("participant-alpha.log")).unwrap();
    assert!(log.contains("TRIGGER app.notes_audit"), "{log}");
}

/// Fills alpha's `notes` with `rows` rows of 250 bytes each, outside tandem.
async fn fill_notes(cluster: &Cluster, rows: u32) {
    exec(
        cluster.node("alpha").pool(),
        &format!(
            "INSERT INTO notes SELECT seq, REPEAT('x', 250) FROM seq_1000_to_{}",
            999 + rows
        ),
    )
    .await;
}

fn place_order(customer: &str) -> Statement {
    Statement::new("INSERT INTO orders (sku, qty, customer, total, placed_at) VALUES ('apple', 1, ?, 1, NOW())")
        .bind(customer)
}

#[tokio::test]
async fn results_past_a_bound_abort_the_transaction_and_commit_nothing() {
    let cluster = start(ClusterConfig {
        coordinator_args: ["--max-result-bytes", "1048576"].map(str::to_owned).to_vec(),
        participant_args: ["--max-result-rows", "20000", "--max-statements-per-branch", "5"]
            .map(str::to_owned)
            .to_vec(),
        ..ClusterConfig::default()
    })
    .await;
    fill_notes(&cluster, 10_000).await; // about 2.5 MB
    let mut client = cluster.client().await.unwrap();
    let (alpha, beta) = (cluster.node("alpha").pool(), cluster.node("beta").pool());
    let everything = || Statement::new("SELECT id, body FROM notes");

    // One branch, committed in one phase: the results do not fit the
    // answer, so nothing commits (never COMMITTED with results missing).
    let done = client
        .submit(vec![("alpha", vec![place_order("one-branch"), everything()])])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Aborted, "{done:?}");
    assert!(done.reason.contains("--max-result-bytes"), "{}", done.reason);
    assert!(done.results.is_empty());
    // Two branches: the other one rolls back too.
    let done = client
        .submit(vec![
            ("alpha", vec![everything()]),
            ("beta", vec![place_order("two-branches")]),
        ])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Aborted, "{done:?}");
    assert!(done.reason.contains("--max-result-bytes"), "{}", done.reason);
    // Interactive: the Execute fails and the transaction is over.
    let txn = client.begin().await.unwrap();
    client
        .execute(&txn, "beta", vec![place_order("interactive")])
        .await
        .unwrap();
    let err = client
        .execute(&txn, "alpha", vec![everything()])
        .await
        .map(|r| r.len())
        .expect_err("past --max-result-bytes");
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("--max-result-bytes"), "{err:?}");
    expect_code(client.commit(&txn).await, Code::Aborted);
    // Rows, counted over the branch: half the rows twice fit the bytes of
    // each answer, not the participant's rows per branch.
    exec(alpha, "INSERT INTO notes SELECT seq, 'y' FROM seq_20000_to_34999").await;
    let small = || Statement::new("SELECT id FROM notes WHERE body = 'y'");
    let txn = client.begin().await.unwrap();
    client.execute(&txn, "alpha", vec![small()]).await.unwrap();
    let err = client
        .execute(&txn, "alpha", vec![small()])
        .await
        .map(|r| r.len())
        .expect_err("past --max-result-rows");
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("--max-result-rows"), "{err:?}");
    // Statements, counted over the branch.
    let txn = client.begin().await.unwrap();
    let three = || (0..3).map(|i| place_order(&format!("s{i}"))).collect::<Vec<_>>();
    client.execute(&txn, "beta", three()).await.unwrap();
    let err = expect_code(client.execute(&txn, "beta", three()).await, Code::Aborted);
    assert!(err.message().contains("--max-statements-per-branch"), "{err:?}");

    assert_eq!(scalar(alpha, "SELECT COUNT(*) FROM orders").await, 0);
    assert_eq!(scalar(beta, "SELECT COUNT(*) FROM orders").await, 0);
    assert_no_prepared(&cluster).await;
    // Within the bounds everything still works.
    let done = client
        .submit(vec![(
            "alpha",
            vec![place_order("fits"), Statement::new("SELECT id FROM notes LIMIT 10")],
        )])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    assert_eq!(done.results[0].results[1].rows.len(), 10);
}

#[tokio::test]
async fn a_full_session_pool_is_named_as_the_cause() {
    let cluster = start(ClusterConfig {
        participant_max_connections: Some(1),
        ..ClusterConfig::default()
    })
    .await;
    let mut alice = principal(&cluster, "alice").await;
    let mut bob = principal(&cluster, "bob").await;
    // Alice's open branch holds alpha's only session.
    let txn = alice.begin().await.unwrap();
    alice
        .execute(&txn, "alpha", vec![insert_note(1, "alice")])
        .await
        .unwrap();
    let done = bob
        .submit_with(pb::SubmitRequest {
            timeout_ms: 2_000,
            branches: vec![pb::Branch {
                participant: "alpha".into(),
                statements: vec![insert_note(2, "bob")],
            }],
            ..Default::default()
        })
        .await;
    let reason = match done {
        Ok(done) => {
            assert_eq!(done.outcome(), Outcome::Aborted, "{done:?}");
            done.reason
        }
        Err(status) => status.message().to_owned(),
    };
    assert!(
        reason.contains("MySQL sessions") && reason.contains("--max-connections"),
        "{reason}"
    );
    assert!(!reason.contains("deadline"), "{reason}");
    let done = alice.commit(&txn).await.unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    assert_eq!(
        scalar(cluster.node("alpha").pool(), "SELECT COUNT(*) FROM notes").await,
        1
    );
}

#[tokio::test]
async fn idle_connections_are_bounded_and_closed() {
    use tokio::io::AsyncReadExt;
    let cluster = start(ClusterConfig {
        coordinator_args: ["--max-client-connections", "4"].map(str::to_owned).to_vec(),
        ..ClusterConfig::default()
    })
    .await;
    let addr = cluster.coordinator_addr();
    let from = |source: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from((source, 0))).unwrap();
        socket.connect(addr).await.unwrap()
    };
    // Connections that never say anything: one host holds at most half
    // the places; a third from it is closed at once.
    let mut idle = vec![from([127, 0, 0, 2]).await, from([127, 0, 0, 2]).await];
    let mut third = from([127, 0, 0, 2]).await;
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), third.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "a third connection from one host stayed: {closed:?}"
    );
    // Another host fills the rest: a client now finds no place.
    idle.push(from([127, 0, 0, 3]).await);
    idle.push(from([127, 0, 0, 3]).await);
    let access = cluster.access("tester").unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(3), async {
        let mut client = access.connect().await?;
        client.begin().await
    })
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a fifth connection was served: {refused:?}"
    );
    // The idle ones are closed when their TLS handshake does not come
    // (10 s); then a real client gets in.
    for stream in &mut idle {
        let closed = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "an idle connection stayed open: {closed:?}"
        );
    }
    let mut client = access.connect().await.unwrap();
    let done = client
        .submit(vec![("alpha", vec![insert_note(1, "after")])])
        .await
        .unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
}

#[tokio::test]
async fn transactions_are_listed_a_bounded_page_at_a_time() {
    let cluster = cluster().await;
    let mut alice = principal(&cluster, "alice").await;
    let mut bob = principal(&cluster, "bob").await;
    let mut mine = Vec::new();
    for i in 0..25 {
        let done = alice
            .submit(vec![("alpha", vec![Statement::new("SELECT 1")])])
            .await
            .unwrap();
        mine.push(done.txn_id);
        // Bob's in between: never on Alice's pages.
        if i % 5 == 0 {
            bob.submit(vec![("beta", vec![Statement::new("SELECT 1")])])
                .await
                .unwrap();
        }
    }
    let mut seen = Vec::new();
    let mut request = pb::ListTransactionsRequest {
        limit: 10,
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = alice
            .raw()
            .list_transactions(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(page.transactions.len() <= 10);
        seen.extend(page.transactions.into_iter().map(|t| t.txn_id));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    mine.reverse();
    assert_eq!(seen, mine, "newest first, each once, only alice's");
    let err = expect_code(
        alice
            .raw()
            .list_transactions(pb::ListTransactionsRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
    assert!(err.message().contains("page_token"), "{err:?}");
    expect_code(
        alice
            .raw()
            .list_transactions(pb::ListTransactionsRequest {
                limit: 100_000,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
    );
}

#[tokio::test]
async fn an_id_no_coordinator_could_have_issued_touches_no_participant() {
    let mut cluster = cluster().await;
    let mut client = cluster.client().await.unwrap();
    let done = client.submit(vec![("alpha", vec![insert_note(1, "a")])]).await.unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    cluster.restart_coordinator().await.unwrap();
    let mut ops = cluster.operator().await.unwrap();
    let fences = |id: &str| format!("SELECT COUNT(*) FROM tandem.xa_markers WHERE gtrid = '{id}'");
    // Ahead of this run's ids, and ids of a coordinator no participant
    // serves: unknown, and nothing is written anywhere.
    let this_run = ops.begin().await.unwrap();
    let ahead = this_run.rsplit_once('-').map(|(run, _)| format!("{run}-999")).unwrap();
    for invented in [ahead.as_str(), "other-1-1", "tc-x-1"] {
        let err = expect_code(ops.get_transaction(invented).await, Code::NotFound);
        assert!(err.message().contains(invented), "{err:?}");
        for node in cluster.nodes() {
            assert_eq!(
                scalar(node.pool(), &fences(invented)).await,
                0,
                "{invented} fenced on {}",
                node.name
            );
        }
    }
    // An id another run (or replica) could have issued, asked by a
    // client: the participants are only probed, so a client can never
    // abort a transaction that may be another principal's, or one not
    // begun yet. No record anywhere: NOT_FOUND, and nothing written.
    let err = expect_code(client.get_transaction("tc-98-1").await, Code::NotFound);
    assert!(err.message().contains("no participant has a record"), "{err:?}");
    for node in cluster.nodes() {
        assert_eq!(
            scalar(node.pool(), &fences("tc-98-1")).await,
            0,
            "a client's probe fenced on {}",
            node.name
        );
    }
    // Asked by an operator: each participant fences it, so ABORTED is final.
    let info = ops.get_transaction("tc-99-1").await.unwrap();
    assert_eq!(info.outcome(), Outcome::Aborted, "{info:?}");
    for node in cluster.nodes() {
        assert_eq!(
            scalar(node.pool(), &fences("tc-99-1")).await,
            1,
            "fence on {}",
            node.name
        );
    }
    // The committed one is still known, from its participant's marker.
    let info = ops.get_transaction(&done.txn_id).await.unwrap();
    assert_eq!(info.outcome(), Outcome::Committed, "{info:?}");
}

#[tokio::test]
async fn a_participant_reaches_mysql_over_verified_tls() {
    use tandem_integration_tests::mariadb::MariaDb;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::create(&dir.path().join("tls"), "test CA").unwrap();
    // The database's own certificate (127.0.0.1 among its names).
    let server = ca.issue(&id(Role::Participant, "mysql")).unwrap();
    let port = tandem_integration_tests::cluster::free_addr().unwrap().port();
    let db = MariaDb::start(
        "tls",
        &dir.path().join("db"),
        &[
            "--skip-networking=0".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--port={port}"),
            format!("--ssl-ca={}", ca.ca_path().display()),
            format!("--ssl-cert={}", server.cert.display()),
            format!("--ssl-key={}", server.key.display()),
        ],
    )
    .unwrap();
    db.setup(&["CREATE TABLE notes (id BIGINT PRIMARY KEY, body VARCHAR(255)) ENGINE=InnoDB"])
        .await
        .unwrap();
    let root = db.pool(None).await.unwrap();
    for sql in [
        "CREATE USER 'tandem'@'127.0.0.1' IDENTIFIED BY 'pw' REQUIRE SSL",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON app.* TO 'tandem'@'127.0.0.1'",
        "GRANT CREATE, ALTER, SELECT, INSERT, DELETE ON tandem.* TO 'tandem'@'127.0.0.1'",
    ] {
        exec(&root, sql).await;
    }
    let url = format!(
        "mysql://tandem:pw@127.0.0.1:{port}/app?ssl-mode=verify_identity&ssl-ca={}",
        ca.ca_path().display()
    );
    let addr = tandem_integration_tests::cluster::free_addr().unwrap();
    let files = ca.files(&id(Role::Participant, "alpha")).unwrap();
    let mut command = Command::new(tandem_binaries().unwrap().join("tandem-participant"));
    command
        .args(["--name", "alpha", "--listen", &addr.to_string(), "--mysql-url", &url])
        .arg("--tls-ca")
        .arg(&files.ca)
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .env("NO_COLOR", "1");
    let log = dir.path().join("participant.log");
    let _participant = Process::spawn("participant alpha", command, &log).unwrap();
    // It serves (health asked as a coordinator would) once MySQL answered
    // over TLS: the account can log in no other way.
    let coordinator = coordinator_identity();
    let issued = ca.issue(&coordinator).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca.ca_pem()))
        .identity(tonic::transport::Identity::from_pem(&issued.cert_pem, &issued.key_pem))
        .domain_name("alpha.participant.tandem");
    let until = Instant::now() + Duration::from_secs(30);
    while !tandem_integration_tests::cluster::serving(addr, Some(tls.clone())).await {
        assert!(
            Instant::now() < until,
            "the participant never served:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        scalar(&root, "SELECT COUNT(*) FROM tandem.xa_markers").await,
        0,
        "the marker table exists"
    );
    let ssl: String = sqlx::query_scalar(
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'SSL_ACCEPTS'",
    )
    .fetch_one(&root)
    .await
    .unwrap();
    assert!(ssl.parse::<u64>().unwrap() > 0, "no TLS session was accepted");
    // The least-privilege account draws no warning.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("more than a participant needs"), "{text}");
    drop(db);
}

#[tokio::test]
async fn one_principal_cannot_pin_every_session_of_a_participant() {
    let cluster = start(ClusterConfig {
        coordinator_args: ["--max-branches-per-principal", "2"].map(str::to_owned).to_vec(),
        ..ClusterConfig::default()
    })
    .await;
    let mut alice = principal(&cluster, "alice").await;
    let mut bob = principal(&cluster, "bob").await;
    // Alice leaves two branches open on alpha, each holding a session.
    let mut open = Vec::new();
    for i in 0..2 {
        let txn = alice.begin().await.unwrap();
        alice
            .execute(&txn, "alpha", vec![insert_note(i, "held")])
            .await
            .unwrap();
        open.push(txn);
    }
    let third = alice.begin().await.unwrap();
    let err = expect_code(
        alice.execute(&third, "alpha", vec![insert_note(9, "third")]).await,
        Code::ResourceExhausted,
    );
    assert!(err.message().contains("--max-branches-per-principal"), "{err:?}");
    // Her share elsewhere, and everyone else's on alpha, are untouched.
    alice
        .execute(&third, "beta", vec![insert_note(9, "beta")])
        .await
        .unwrap();
    // A keyed Submit refused for her share leaves no key behind: nothing
    // ran, so its retry below runs instead of answering "already ran".
    let keyed = pb::SubmitRequest {
        branches: vec![pb::Branch {
            participant: "alpha".to_owned(),
            statements: vec![insert_note(11, "keyed")],
        }],
        key: "refused-for-share".to_owned(),
        ..pb::SubmitRequest::default()
    };
    let refused = alice.submit_with(keyed.clone()).await;
    expect_code(refused, Code::ResourceExhausted);
    let refused = alice.submit(vec![("alpha", vec![insert_note(10, "submit")])]).await;
    expect_code(refused, Code::ResourceExhausted);
    let done = bob.submit(vec![("alpha", vec![insert_note(20, "bob")])]).await.unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    // Ending one gives its place back (when its actor ends, just after).
    alice.rollback(&open[0]).await.unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match alice.execute(&third, "alpha", vec![insert_note(9, "third")]).await {
            Err(status) if status.code() == Code::ResourceExhausted && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => {
                other.unwrap();
                break;
            }
        }
    }
    let done = alice.commit(&third).await.unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    let done = alice.submit_with(keyed).await.unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    assert!(!done.reason.contains("already ran"), "{}", done.reason);
    let alpha = cluster.node("alpha").pool();
    assert_eq!(
        scalar(alpha, "SELECT COUNT(*) FROM notes WHERE id IN (9, 11, 20)").await,
        3
    );
    assert_eq!(scalar(alpha, "SELECT COUNT(*) FROM notes WHERE id = 10").await, 0);
}
