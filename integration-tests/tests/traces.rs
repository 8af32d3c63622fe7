//! OpenTelemetry traces: with `--otlp-endpoint`, the coordinator and the
//! participants export one trace per transaction to an OTLP collector
//! (here one this test runs in-process): the coordinator's transaction
//! span, a span per phase under it, and each participant's span for the
//! RPC it served under the phase that sent it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tandem_client::Outcome;
use tandem_client::pb;
use tandem_integration_tests::otlp::{Collector, Got};
use tandem_integration_tests::{Cluster, ClusterConfig};
use tonic::Request;

/// What the test asks of the collector's spans.
trait Spans {
    fn of(&self, gtrid: &str) -> Vec<Got>;
    async fn wait_for(&self, gtrid: &str, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got>;
}

impl Spans for Collector {
    /// The spans of transaction `gtrid` (the coordinator's carry it, the
    /// participants' too).
    fn of(&self, gtrid: &str) -> Vec<Got> {
        let spans = self.spans();
        // The transaction's trace: every span in it, also the phases,
        // which carry no gtrid of their own.
        let traces: Vec<Vec<u8>> = spans
            .iter()
            .filter(|g| g.attribute("gtrid").as_deref() == Some(gtrid))
            .map(|g| g.span.trace_id.clone())
            .collect();
        spans
            .iter()
            .filter(|g| traces.contains(&g.span.trace_id))
            .cloned()
            .collect()
    }

    /// Waits until `done` holds for the spans of `gtrid` (the exporters
    /// send batches every few seconds).
    async fn wait_for(&self, gtrid: &str, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.of(gtrid);
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < until,
                "{what}: spans of {gtrid} so far: {}",
                show(&spans)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn show(spans: &[Got]) -> String {
    spans
        .iter()
        .map(|g| format!("{}:{}:{:?}", g.service, g.span.name, g.attribute("participant")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn named<'a>(spans: &'a [Got], service: &str, name: &str) -> Vec<&'a Got> {
    spans
        .iter()
        .filter(|g| g.service == service && g.span.name == name)
        .collect()
}

fn one<'a>(spans: &'a [Got], service: &str, name: &str) -> &'a Got {
    match named(spans, service, name).as_slice() {
        [one] => one,
        other => panic!("{} {service} spans named {name:?}: {}", other.len(), show(spans)),
    }
}

/// The participant spans of RPC `rpc` on every participant, each a
/// child of the coordinator span `parent`.
fn served_under(spans: &[Got], rpc: &str, parent: &Got) {
    let served = named(spans, "tandem-participant", rpc);
    let mut on: Vec<String> = served.iter().filter_map(|g| g.attribute("participant")).collect();
    on.sort();
    assert_eq!(on, ["alpha", "beta"], "{rpc} served on: {}", show(spans));
    for g in served {
        assert_eq!(
            g.span.trace_id,
            parent.span.trace_id,
            "{rpc} on {:?}",
            g.attribute("participant")
        );
        assert_eq!(
            g.span.parent_span_id, parent.span.span_id,
            "{rpc} is a child of {}",
            parent.span.name
        );
    }
}

const COORDINATOR: &str = "tandem-coordinator";

fn complete(spans: &[Got], phases: &[&str]) -> bool {
    named(spans, COORDINATOR, "transaction").len() == 1
        && phases.iter().all(|p| named(spans, COORDINATOR, p).len() == 1)
        && named(spans, "tandem-participant", "commit").len() == 2
}

#[tokio::test]
async fn each_transaction_is_one_trace_across_the_coordinator_and_its_participants() {
    let collector = Collector::new(true);
    let endpoint = collector.start().unwrap();
    let otlp = vec!["--otlp-endpoint".to_owned(), endpoint];
    let cluster = Cluster::start(ClusterConfig {
        participants: vec!["alpha".into(), "beta".into()],
        coordinator_args: otlp.clone(),
        participant_args: otlp,
        ..ClusterConfig::default()
    })
    .await
    .expect("cluster starts");
    let mut client = cluster.client().await.expect("client connects");
    seed_accounts(&mut client, &["alpha", "beta"], 2, 100).await;

    // A Submit inside the client's own trace (W3C traceparent).
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let mut request = Request::new(pb::SubmitRequest {
        branches: vec![
            pb::Branch {
                participant: "alpha".into(),
                statements: vec![debit(1, 10)],
            },
            pb::Branch {
                participant: "beta".into(),
                statements: vec![credit(1, 10)],
            },
        ],
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{client_span}-01").parse().unwrap(),
    );
    let done = client.raw().submit(request).await.unwrap().into_inner();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    let submitted = done.txn_id;

    // An interactive transfer, in a trace of its own.
    let interactive = client.begin().await.unwrap();
    client.execute(&interactive, "alpha", vec![debit(2, 1)]).await.unwrap();
    client.execute(&interactive, "beta", vec![credit(2, 1)]).await.unwrap();
    let done = client.commit(&interactive).await.unwrap();
    assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);

    // The Submit: its statements go with the prepare (Execute RPCs sent
    // in the prepare phase), then phase 2.
    let spans = collector
        .wait_for(&submitted, "the Submit's whole trace", |s| {
            complete(s, &["prepare", "phase 2: commit"]) && named(s, "tandem-participant", "execute").len() == 2
        })
        .await;
    let txn = one(&spans, COORDINATOR, "transaction");
    assert_eq!(hex(&txn.span.trace_id), trace_id, "the client's trace");
    assert_eq!(
        hex(&txn.span.parent_span_id),
        client_span,
        "a child of the client's span"
    );
    assert_eq!(txn.attribute("gtrid").as_deref(), Some(submitted.as_str()));
    assert_eq!(txn.attribute("api").as_deref(), Some("submit"));
    assert_eq!(txn.attribute("outcome").as_deref(), Some("committed"));
    let events: Vec<&str> = txn.span.events.iter().map(|e| e.name.as_str()).collect();
    assert!(events.contains(&"decided"), "{events:?}");
    assert!(events.contains(&"client answered"), "{events:?}");
    let prepare = one(&spans, COORDINATOR, "prepare");
    let phase2 = one(&spans, COORDINATOR, "phase 2: commit");
    for phase in [prepare, phase2] {
        assert_eq!(
            phase.span.parent_span_id, txn.span.span_id,
            "{} under the transaction",
            phase.span.name
        );
        assert!(phase.span.start_time_unix_nano >= txn.span.start_time_unix_nano);
    }
    assert!(phase2.span.start_time_unix_nano >= prepare.span.end_time_unix_nano);
    served_under(&spans, "execute", prepare);
    served_under(&spans, "commit", phase2);
    for g in named(&spans, "tandem-participant", "execute") {
        assert_eq!(g.attribute("gtrid").as_deref(), Some(submitted.as_str()));
    }

    // The interactive one: a root trace with an execute phase.
    let spans = collector
        .wait_for(&interactive, "the interactive transaction's whole trace", |s| {
            complete(s, &["execute", "prepare", "phase 2: commit"])
                && named(s, "tandem-participant", "prepare").len() == 2
        })
        .await;
    let txn = one(&spans, COORDINATOR, "transaction");
    assert!(txn.span.parent_span_id.is_empty(), "a root span");
    assert_ne!(hex(&txn.span.trace_id), trace_id, "a trace of its own");
    assert_eq!(txn.attribute("api").as_deref(), Some("interactive"));
    served_under(&spans, "execute", one(&spans, COORDINATOR, "execute"));
    served_under(&spans, "prepare", one(&spans, COORDINATOR, "prepare"));
    served_under(&spans, "commit", one(&spans, COORDINATOR, "phase 2: commit"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
