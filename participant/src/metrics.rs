//! The participant's Prometheus metrics, served on `--admin-listen`
//! (`tandem_common::admin`). Label values come from small fixed sets:
//! never a gtrid or a statement.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tandem_common::admin::{Scrape, latency_histogram};

use crate::Shared;
use crate::branch::Ending;

/// A step of a branch whose duration is measured.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Step {
    /// One batch of statements (an Execute, or a Submit's branch).
    execute,
    /// `XA END` + marker + `XA PREPARE`.
    prepare,
    /// `XA COMMIT` of a prepared branch.
    commit,
    /// `XA COMMIT … ONE PHASE` (with the marker).
    commit_one_phase,
    /// A held read-only branch confirming its locks.
    confirm,
    /// `XA ROLLBACK`, prepared or not.
    rollback,
}

impl Step {
    /// The measured step a branch engine's step is, if any.
    pub fn of(step: crate::branch::engine::Step) -> Option<Self> {
        use crate::branch::engine::Step as E;
        match step {
            E::Prepare => Some(Self::prepare),
            E::CommitPrepared => Some(Self::commit),
            E::CommitOnePhase => Some(Self::commit_one_phase),
            E::ConfirmReadOnly => Some(Self::confirm),
            E::RollbackPrepared | E::RollbackActive => Some(Self::rollback),
            E::RunStatements | E::HoldReadOnly | E::HoldWriter | E::FinishReadOnly | E::AlreadyDone(_) | E::Ignore => {
                None
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: Step,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndingLabels {
    /// `committed`, `rolled_back`, `read_only`, `confirmed`, or `unknown`
    /// (a one-phase commit whose answer was lost; settled later).
    ending: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveredLabels {
    /// `committed` or `rolled_back`.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    /// `busy` (pinned by a branch) or `idle`.
    state: &'static str,
}

type StepHistograms = Family<StepLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    steps: StepHistograms,
    branches: Family<EndingLabels, Counter>,
    recovery_passes: Counter,
    recovered: Family<RecoveredLabels, Counter>,
    mysql_up: Gauge,
    live: Gauge,
    in_doubt: Gauge,
    oldest_in_doubt: Gauge,
    sessions: Family<SessionLabels, Gauge>,
    max_sessions: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tandem_participant");
        let steps = StepHistograms::new_with_constructor(latency_histogram);
        registry.register("step_seconds", "How long each step of a branch took", steps.clone());
        let branches = Family::<EndingLabels, Counter>::default();
        registry.register("branches", "Branches ended here, by how", branches.clone());
        let recovery_passes = Counter::default();
        registry.register(
            "recovery_passes",
            "Recovery passes run (XA RECOVER, then each in-doubt branch asked about)",
            recovery_passes.clone(),
        );
        let recovered = Family::<RecoveredLabels, Counter>::default();
        registry.register(
            "recovered_branches",
            "In-doubt branches recovery finished, by outcome",
            recovered.clone(),
        );
        let mysql_up = Gauge::default();
        registry.register(
            "mysql_up",
            "1 if the last health check reached MySQL and found its tables safe",
            mysql_up.clone(),
        );
        let live = Gauge::default();
        registry.register("live_branches", "Branches running here now", live.clone());
        let in_doubt = Gauge::default();
        registry.register(
            "in_doubt_branches",
            "Prepared branches no live coordinator call holds, at the last recovery pass",
            in_doubt.clone(),
        );
        let oldest_in_doubt = Gauge::default();
        registry.register(
            "oldest_in_doubt_seconds",
            "How long the oldest of them has been seen in doubt (0 if none)",
            oldest_in_doubt.clone(),
        );
        let sessions = Family::<SessionLabels, Gauge>::default();
        registry.register("mysql_sessions", "Branch sessions open to MySQL", sessions.clone());
        let max_sessions = Gauge::default();
        registry.register(
            "mysql_sessions_max",
            "Most branch sessions open at once (--max-connections)",
            max_sessions.clone(),
        );
        // Every series from the start, at zero: rates work from the first
        // scrape, and dashboards find every family.
        for step in [
            Step::execute,
            Step::prepare,
            Step::commit,
            Step::commit_one_phase,
            Step::confirm,
            Step::rollback,
        ] {
            let _ = steps.get_or_create(&StepLabels { step });
        }
        for ending in ["committed", "rolled_back", "read_only", "confirmed", "unknown"] {
            let _ = branches.get_or_create(&EndingLabels { ending });
        }
        for outcome in ["committed", "rolled_back"] {
            let _ = recovered.get_or_create(&RecoveredLabels { outcome });
        }
        Self {
            registry,
            steps,
            branches,
            recovery_passes,
            recovered,
            mysql_up,
            live,
            in_doubt,
            oldest_in_doubt,
            sessions,
            max_sessions,
        }
    }
}

impl Metrics {
    pub fn step(&self, step: Step, took: Duration) {
        self.steps
            .get_or_create(&StepLabels { step })
            .observe(took.as_secs_f64());
    }

    pub fn ended(&self, ending: Ending) {
        let ending = match ending {
            Ending::Committed => "committed",
            Ending::RolledBack => "rolled_back",
            Ending::ReadOnly => "read_only",
            Ending::Confirmed => "confirmed",
            Ending::Unknown(_) => "unknown",
        };
        self.branches.get_or_create(&EndingLabels { ending }).inc();
    }

    /// A recovery pass found `in_doubt` branches, the oldest seen `oldest`
    /// ago.
    pub fn recovery_pass(&self, in_doubt: usize, oldest: Duration) {
        self.recovery_passes.inc();
        self.in_doubt.set(i64::try_from(in_doubt).unwrap_or(i64::MAX));
        self.oldest_in_doubt
            .set(i64::try_from(oldest.as_secs()).unwrap_or(i64::MAX));
    }

    pub fn recovered(&self, committed: bool) {
        let outcome = if committed { "committed" } else { "rolled_back" };
        self.recovered.get_or_create(&RecoveredLabels { outcome }).inc();
    }

    pub fn mysql_up(&self, up: bool) {
        self.mysql_up.set(i64::from(up));
    }
}

/// What `/metrics` serves: the registry, with the gauges read from the
/// participant's state at each scrape.
pub struct Scraper(pub Arc<Shared>);

impl Scrape for Scraper {
    fn registry(&self) -> &Registry {
        &self.0.metrics.registry
    }

    fn ready(&self) -> Result<(), String> {
        self.0.check_serving().map_err(|e| e.to_string())?;
        if self.0.metrics.mysql_up.get() != 1 {
            return Err("MySQL is not reachable".to_owned());
        }
        Ok(())
    }

    fn refresh(&self) {
        let metrics = &self.0.metrics;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        metrics.live.set(count(self.0.branches.live()));
        let (open, idle) = self.0.sessions.usage();
        metrics
            .sessions
            .get_or_create(&SessionLabels { state: "busy" })
            .set(count(open.saturating_sub(idle)));
        metrics
            .sessions
            .get_or_create(&SessionLabels { state: "idle" })
            .set(count(idle));
        metrics.max_sessions.set(count(self.0.sessions.max()));
    }
}
