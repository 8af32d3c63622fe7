//! Applies the planned faults to a running cluster at their times, and
//! heals each when its hold ends: restarts what was killed or crashed,
//! resumes what was paused, reconnects what was cut, disarms what was
//! armed. Overlapping faults (on different processes) compound.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

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
    /// Crash failpoints that fired (the process died at that step), by
    /// point: an armed one fires only if a transaction reaches its step
    /// while it is armed.
    pub crashes_fired: BTreeMap<String, u64>,
    /// Faults that could not be applied (e.g. the process was still
    /// starting after an earlier one); not counted by kind.
    pub not_applied: u64,
    /// When each fault was healed, from the start of the run.
    pub heals: Vec<Duration>,
}

/// Runs `plan` against `cluster`; `start` is the run's time zero. Returns
/// once every fault is healed and every process serves again. On an error
/// it still heals what it can (resumes, reconnects, restarts) first.
///
/// Must run on the thread that owns the cluster (not a spawned task): the
/// processes it restarts die with the thread that spawned them.
pub async fn run(cluster: &mut Cluster, plan: &[Planned], start: Instant, history: &History) -> Result<Log> {
    let mut log = Log::default();
    match timeline(cluster, plan, start, history, &mut log).await {
        Ok(()) => Ok(log),
        Err(err) => {
            heal_everything(cluster).await;
            Err(err)
        }
    }
}

async fn timeline(
    cluster: &mut Cluster,
    plan: &[Planned],
    start: Instant,
    history: &History,
    log: &mut Log,
) -> Result<()> {
    // Every apply and heal in time order; at the same instant, heals first.
    let mut steps: Vec<(Duration, bool, usize)> = plan
        .iter()
        .enumerate()
        .flat_map(|(i, p)| [(p.at, false, i), (p.at + p.hold, true, i)])
        .collect();
    steps.sort_by_key(|&(at, heal, i)| (at, !heal, i));
    // Processes a kill holds down: not restarted by anyone else.
    let mut down: Vec<Target> = Vec::new();
    // Per fault: the pid it was applied to (None: not applied).
    let mut applied: Vec<Option<Option<u32>>> = vec![None; plan.len()];
    for (at, heal, i) in steps {
        tokio::time::sleep_until((start + at).into()).await;
        let fault = &plan[i].fault;
        if heal {
            let Some(pid) = applied[i] else {
                continue;
            };
            undo(cluster, fault).await?;
            if let Fault::Kill(target) = fault {
                down.retain(|t| t != target);
            }
            // The failpoint crashed its process: it is dead, or another
            // fault's heal already restarted it.
            if let Fault::Failpoint { process, point, .. } = fault
                && (!cluster.is_running(process) || cluster.pid(process) != pid)
            {
                *log.crashes_fired.entry((*point).to_owned()).or_default() += 1;
            }
            let restarted = restart_dead(cluster, &down)?;
            log.heals.push(start.elapsed());
            let mut event = Event::new("nemesis", Type::Info, fault.kind().name());
            event.detail = if restarted.is_empty() {
                format!("healed {}", fault.subject())
            } else {
                format!("healed {}; restarted {}", fault.subject(), restarted.join(", "))
            };
            history.record(event);
        } else {
            let (step, step_keys) = step_of(cluster, fault).await;
            let mut event = Event::new("nemesis", Type::Invoke, fault.kind().name());
            event.detail = format!("{fault}; {step}");
            let pid = fault_pid(cluster, fault);
            match apply(cluster, fault).await {
                Ok(()) => {
                    *log.by_kind.entry(fault.kind()).or_default() += 1;
                    for key in step_keys {
                        *log.by_step.entry(key).or_default() += 1;
                    }
                    if let Fault::Kill(target) = fault {
                        down.push(target.clone());
                    }
                    applied[i] = Some(pid);
                    history.record(event);
                }
                Err(err) => {
                    log.not_applied += 1;
                    event.kind = Type::Fail;
                    event.detail = format!("{fault}: could not be applied: {err:#}");
                    history.record(event);
                }
            }
        }
    }
    restart_dead(cluster, &[])?;
    cluster
        .wait_serving()
        .await
        .context("the cluster does not serve after the faults")
}

/// The pid of the process a fault acts on, when it has one.
fn fault_pid(cluster: &Cluster, fault: &Fault) -> Option<u32> {
    match fault {
        Fault::Kill(target) | Fault::Pause(target) | Fault::Failpoint { process: target, .. } => cluster.pid(target),
        Fault::NetCut { .. } => None,
    }
}

/// After an error: resume every process, heal every link, restart what is
/// dead, so the cluster is not left half-broken (failpoints die with the
/// restarts or stay armed; the run has failed anyway).
async fn heal_everything(cluster: &mut Cluster) {
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
    let mut targets: Vec<Target> = (0..cluster.replica_count()).map(Target::Coordinator).collect();
    for name in &names {
        targets.push(Target::Participant(name.clone()));
        targets.push(Target::MariaDb(name.clone()));
        let _ = cluster.set_link(name, Link::Up);
    }
    for target in &targets {
        let _ = cluster.pause(target, false);
    }
    let _ = restart_dead(cluster, &[]);
}

/// The protocol step a fault hits: its failpoint, or the states the
/// coordinator's in-flight transactions are in. Returns the history's text
/// and the summary's keys.
async fn step_of(cluster: &Cluster, fault: &Fault) -> (String, Vec<String>) {
    if let Fault::Failpoint { point, .. } = fault {
        return ((*point).to_owned(), vec![(*point).to_owned()]);
    }
    let states = in_flight_states(cluster).await;
    let keys = states.keys().map(|state| format!("in flight: {state}")).collect();
    (describe(&states), keys)
}

async fn apply(cluster: &mut Cluster, fault: &Fault) -> Result<()> {
    match fault {
        Fault::Kill(target) => {
            anyhow::ensure!(cluster.is_running(target), "{target} is not running");
            cluster.kill(target);
        }
        Fault::Pause(target) => cluster.pause(target, true)?,
        Fault::Failpoint { process, point, action } => {
            // The process may have just been restarted: give it 3 s to serve.
            let until = Instant::now() + Duration::from_secs(3);
            loop {
                match cluster.failpoint(&process_name(process), point, &action.spec()).await {
                    Ok(()) => break,
                    Err(err) if Instant::now() > until => return Err(err),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Fault::NetCut { participant, link } => cluster.set_link(participant, *link)?,
    }
    Ok(())
}

/// Undoes `fault`.
async fn undo(cluster: &mut Cluster, fault: &Fault) -> Result<()> {
    match fault {
        Fault::Kill(target) => cluster
            .start_again(target)
            .with_context(|| format!("restarting {target} after kill -9"))?,
        Fault::Pause(target) => cluster.pause(target, false)?,
        Fault::Failpoint { process, point, .. } => {
            // Disarm first (a crash may still fire until then); it can only
            // fail if the process died, which the caller sees by its pid.
            let until = Instant::now() + Duration::from_secs(5);
            while cluster.is_running(process) {
                match cluster.failpoint(&process_name(process), point, "").await {
                    Ok(()) => break,
                    Err(err) if Instant::now() > until => {
                        return Err(err.context(format!("cannot disarm {point} in {process}")));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Fault::NetCut { participant, .. } => cluster.set_link(participant, Link::Up)?,
    }
    Ok(())
}

/// Restarts every process that is not running (a crash failpoint) but for
/// those a kill holds `down`: databases first, the coordinators last.
fn restart_dead(cluster: &mut Cluster, down: &[Target]) -> Result<Vec<String>> {
    let names: Vec<String> = cluster.nodes().iter().map(|n| n.name.clone()).collect();
    let mut targets: Vec<Target> = names.iter().map(|n| Target::MariaDb(n.clone())).collect();
    targets.extend(names.iter().map(|n| Target::Participant(n.clone())));
    targets.extend((0..cluster.replica_count()).map(Target::Coordinator));
    let mut restarted = Vec::new();
    for target in targets {
        if !down.contains(&target) && !cluster.is_running(&target) {
            cluster
                .start_again(&target)
                .with_context(|| format!("restarting {target}"))?;
            restarted.push(target.to_string());
        }
    }
    Ok(restarted)
}

fn process_name(target: &Target) -> String {
    match target {
        Target::Coordinator(i) => crate::cluster::replica_name(*i),
        Target::Participant(name) | Target::MariaDb(name) => name.clone(),
    }
}

/// How many of the coordinator's in-flight transactions are in each state
/// (empty if it cannot tell within 300 ms).
async fn in_flight_states(cluster: &Cluster) -> BTreeMap<String, u64> {
    let ask = async {
        let mut states = BTreeMap::new();
        for txn in super::in_flight(cluster).await? {
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
