//! Applies the planned faults to a running cluster, one at a time, and
//! heals each: restarts what was killed or crashed, resumes what was
//! paused, reconnects what was cut, disarms what was armed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tandem_client::pb::{self, TxnFilter};

use super::history::{Event, History, Type};
use super::schedule::{Fault, Kind, Planned};
use crate::cluster::{Cluster, Target};
use crate::proxy::Link;

/// What the nemesis did, for the summary.
#[derive(Debug, Default, Clone)]
pub struct Log {
    /// Faults applied, by kind.
    pub by_kind: BTreeMap<Kind, u64>,
    /// Failpoint faults by point; other faults by the states the
    /// coordinator's in-flight transactions were in when they hit.
    pub by_step: BTreeMap<String, u64>,
    /// Crash failpoints that fired (the process died at that step).
    pub crashes_fired: u64,
    /// When each fault was healed, from the start of the run.
    pub heals: Vec<Duration>,
}

/// Runs `plan` against `cluster`; `start` is the run's time zero.
///
/// Must run on the thread that owns the cluster (not a spawned task): the
/// processes it restarts die with the thread that spawned them.
pub async fn run(cluster: &mut Cluster, plan: &[Planned], start: Instant, history: &History) -> Result<Log> {
    let mut log = Log::default();
    for planned in plan {
        tokio::time::sleep_until((start + planned.at).into()).await;
        let fault = &planned.fault;
        let step = match fault {
            Fault::Failpoint { point, .. } => {
                *log.by_step.entry((*point).to_owned()).or_default() += 1;
                (*point).to_owned()
            }
            _ => {
                let states = in_flight(cluster).await;
                for state in states.keys() {
                    *log.by_step.entry(format!("in flight: {state}")).or_default() += 1;
                }
                describe(&states)
            }
        };
        *log.by_kind.entry(fault.kind()).or_default() += 1;
        let mut event = Event::new("nemesis", Type::Invoke, fault.kind().name());
        event.detail = format!("{fault}; {step}");
        history.record(event);

        let armed = apply(cluster, fault).await;
        tokio::time::sleep(planned.hold).await;
        let crashed = heal(cluster, fault).await?;
        let restarted = restart_dead(cluster).await?;
        if matches!(fault, Fault::Failpoint { .. }) && crashed {
            log.crashes_fired += 1;
        }
        log.heals.push(start.elapsed());

        let mut event = Event::new("nemesis", Type::Info, fault.kind().name());
        event.detail = match armed {
            Err(err) => format!("healed; the fault could not be applied: {err:#}"),
            Ok(()) if restarted.is_empty() => "healed".to_owned(),
            Ok(()) => format!("healed; restarted {}", restarted.join(", ")),
        };
        history.record(event);
    }
    Ok(log)
}

async fn apply(cluster: &mut Cluster, fault: &Fault) -> Result<()> {
    match fault {
        Fault::Kill(target) => cluster.kill(target),
        Fault::Pause(target) => cluster.pause(target, true),
        Fault::Failpoint { process, point, action } => {
            cluster.failpoint(&process_name(process), point, &action.spec()).await?;
        }
        Fault::NetCut { participant, link } => cluster.set_link(participant, *link)?,
    }
    Ok(())
}

/// Undoes `fault`; true if the process a failpoint was armed in died.
async fn heal(cluster: &mut Cluster, fault: &Fault) -> Result<bool> {
    match fault {
        Fault::Kill(target) => cluster
            .restart(target)
            .await
            .with_context(|| format!("restarting {target} after kill -9"))?,
        Fault::Pause(target) => cluster.pause(target, false),
        Fault::Failpoint { process, point, .. } => {
            if !cluster.is_running(process) {
                return Ok(true);
            }
            cluster.failpoint(&process_name(process), point, "").await?;
        }
        Fault::NetCut { participant, .. } => cluster.set_link(participant, Link::Up)?,
    }
    Ok(false)
}

/// Restarts every process that is not running (a crash failpoint), each
/// database before its participant, the coordinator last.
async fn restart_dead(cluster: &mut Cluster) -> Result<Vec<String>> {
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
    let mut targets: Vec<Target> = names.iter().map(|n| Target::MariaDb(n.clone())).collect();
    targets.extend(names.iter().map(|n| Target::Participant(n.clone())));
    targets.push(Target::Coordinator);
    let mut restarted = Vec::new();
    for target in targets {
        if !cluster.is_running(&target) {
            cluster
                .restart(&target)
                .await
                .with_context(|| format!("restarting {target}"))?;
            restarted.push(target.to_string());
        }
    }
    Ok(restarted)
}

fn process_name(target: &Target) -> String {
    match target {
        Target::Coordinator => "coordinator".to_owned(),
        Target::Participant(name) | Target::MariaDb(name) => name.clone(),
    }
}

/// How many of the coordinator's in-flight transactions are in each state
/// (empty if it cannot tell within 300 ms).
async fn in_flight(cluster: &Cluster) -> BTreeMap<String, u64> {
    let ask = async {
        let mut client = cluster.client().await.ok()?;
        let request = pb::ListTransactionsRequest {
            filter: TxnFilter::InFlight as i32,
            ..pb::ListTransactionsRequest::default()
        };
        let list = client.raw().list_transactions(request).await.ok()?.into_inner();
        let mut states = BTreeMap::new();
        for txn in list.transactions {
            let name = txn.state().as_str_name().trim_start_matches("TXN_STATE_").to_owned();
            *states.entry(name).or_default() += 1;
        }
        Some(states)
    };
    tokio::time::timeout(Duration::from_millis(300), ask)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn describe(states: &BTreeMap<String, u64>) -> String {
    if states.is_empty() {
        return "no transaction in flight".to_owned();
    }
    let parts: Vec<String> = states.iter().map(|(state, n)| format!("{n} {state}")).collect();
    format!("in flight: {}", parts.join(", "))
}
