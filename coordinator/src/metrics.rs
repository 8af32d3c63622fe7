//! The coordinator's Prometheus metrics, served on `--admin-listen`
//! (`tandem_common::admin`). Label values come from small fixed sets, and
//! participant names from the configuration: never a transaction's id,
//! key or label.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tandem_common::admin::{Scrape, latency_histogram};

use crate::Shared;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TxnLabels {
    /// `submit` or `interactive`.
    pub api: &'static str,
    /// `one_phase` (a single writing participant), `read_only` (committed
    /// with nothing written) or `two_phase`.
    pub shape: &'static str,
    /// `committed` or `aborted`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: Phase,
}

/// A step of a transaction whose duration is measured.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Phase {
    /// From Begin (or Submit) until the commit was asked for: statements
    /// run (for an interactive transaction, also the client's own time).
    execute,
    /// Prepares out until every vote is in (or the first NO).
    prepare,
    /// Held read-only branches confirming their locks.
    confirm,
    /// From the end of execute until the outcome is decided: prepare,
    /// confirm and any fencing of a lost vote, or the one-phase commit.
    decision,
    /// From the decision until every branch committed or rolled back.
    phase2,
    /// From the client's Submit or Commit until it was answered.
    answer,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ParticipantLabels {
    pub participant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResolveLabels {
    /// `committed`, `aborted`, or `unknown` (asked again later).
    pub outcome: &'static str,
}

type PhaseHistograms = Family<PhaseLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    transactions: Family<TxnLabels, Counter>,
    phases: PhaseHistograms,
    hazards: Counter,
    unknown_answers: Counter,
    resolutions: Family<ResolveLabels, Counter>,
    live: Gauge,
    reachable: Family<ParticipantLabels, Gauge>,
    in_doubt: Family<ParticipantLabels, Gauge>,
    /// What the status page charts.
    pub page: crate::status_page::Recorder,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tandem_coordinator");
        let transactions = Family::<TxnLabels, Counter>::default();
        registry.register(
            "transactions",
            "Transactions ended, by API, shape and outcome",
            transactions.clone(),
        );
        let phases = PhaseHistograms::new_with_constructor(latency_histogram);
        registry.register(
            "phase_seconds",
            "How long each step of a transaction took",
            phases.clone(),
        );
        let hazards = Counter::default();
        registry.register(
            "hazards",
            "Transactions that ended with a heuristic hazard (a participant decided on its own)",
            hazards.clone(),
        );
        let unknown_answers = Counter::default();
        registry.register(
            "unknown_answers",
            "Clients told UNKNOWN: a participant did not answer before the deadline and the reply wait",
            unknown_answers.clone(),
        );
        let resolutions = Family::<ResolveLabels, Counter>::default();
        registry.register(
            "resolutions",
            "In-doubt branches participants asked this replica about (Decisions), by the answer",
            resolutions.clone(),
        );
        let live = Gauge::default();
        registry.register("live_transactions", "Transactions not yet ended", live.clone());
        let reachable = Family::<ParticipantLabels, Gauge>::default();
        registry.register(
            "participant_reachable",
            "1 if the participant answered the last health probe",
            reachable.clone(),
        );
        let in_doubt = Family::<ParticipantLabels, Gauge>::default();
        registry.register(
            "participant_in_doubt_branches",
            "Prepared branches the participant reported at the last probe",
            in_doubt.clone(),
        );
        // Every series from the start, at zero: rates work from the first
        // scrape, and dashboards find every family.
        for api in ["submit", "interactive"] {
            for shape in ["two_phase", "one_phase", "read_only"] {
                for outcome in ["committed", "aborted"] {
                    let _ = transactions.get_or_create(&TxnLabels { api, shape, outcome });
                }
            }
        }
        for phase in [
            Phase::execute,
            Phase::prepare,
            Phase::confirm,
            Phase::decision,
            Phase::phase2,
            Phase::answer,
        ] {
            let _ = phases.get_or_create(&PhaseLabels { phase });
        }
        for outcome in ["committed", "aborted", "unknown"] {
            let _ = resolutions.get_or_create(&ResolveLabels { outcome });
        }
        Self {
            registry,
            transactions,
            phases,
            hazards,
            unknown_answers,
            resolutions,
            live,
            reachable,
            in_doubt,
            page: crate::status_page::Recorder::default(),
        }
    }
}

impl Metrics {
    pub fn ended(&self, labels: TxnLabels, hazard: bool) {
        self.page.ended(labels.outcome == "committed");
        self.transactions.get_or_create(&labels).inc();
        if hazard {
            self.hazards.inc();
        }
    }

    pub fn phase(&self, phase: Phase, took: Duration) {
        if phase == Phase::answer {
            self.page.answered(took);
        }
        self.phases
            .get_or_create(&PhaseLabels { phase })
            .observe(took.as_secs_f64());
    }

    pub fn unknown_answer(&self) {
        self.unknown_answers.inc();
    }

    pub fn hazards_total(&self) -> u64 {
        self.hazards.get()
    }

    pub fn unknown_answers_total(&self) -> u64 {
        self.unknown_answers.get()
    }

    pub fn resolved(&self, outcome: &'static str) {
        self.resolutions.get_or_create(&ResolveLabels { outcome }).inc();
    }
}

/// What `/metrics` serves: the registry, with the gauges read from the
/// coordinator's state at each scrape.
pub struct Scraper(pub Arc<Shared>);

impl Scrape for Scraper {
    fn registry(&self) -> &Registry {
        &self.0.metrics.registry
    }

    fn ready(&self) -> Result<(), String> {
        if self.0.shutdown.is_cancelled() {
            return Err("draining: begins no transaction".to_owned());
        }
        Ok(())
    }

    fn refresh(&self) {
        let metrics = &self.0.metrics;
        metrics.live.set(i64::try_from(self.0.txns.live()).unwrap_or(i64::MAX));
        for participant in self.0.participants.all() {
            let info = participant.info();
            let labels = ParticipantLabels { participant: info.name };
            metrics.reachable.get_or_create(&labels).set(i64::from(info.reachable));
            metrics.in_doubt.get_or_create(&labels).set(i64::from(info.in_doubt));
        }
    }
}
