//! The nemesis's plan: which fault, when and for how long, drawn from the
//! seed before the run starts, so the same seed replays the same faults
//! (with the same binaries: `StdRng`'s stream may change between `rand`
//! releases).
//!
//! Each fault is applied, held, and healed. Most are followed by a quiet
//! gap; about one in four starts while the one before is still held (on
//! another process), so faults also compound: a coordinator killed while a
//! participant is cut off, a database killed while its participant is
//! paused. Two faults never hit the same process (or link) at once. The
//! first faults cover every [`Kind`] once, in a random order, so even a
//! short run injects each kind; after that kinds are drawn uniformly.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use crate::cluster::Target;
use crate::proxy::Link;

/// What the nemesis does, to which process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `SIGKILL`; the process stays down for the hold, then restarts.
    Kill(Target),
    /// `SIGSTOP` for the hold, then `SIGCONT`.
    Pause(Target),
    /// A failpoint armed for the hold, then disarmed; a process it crashed
    /// is restarted.
    Failpoint {
        process: Target,
        point: &'static str,
        action: Action,
    },
    /// The links between the coordinator and one participant cut for the
    /// hold.
    NetCut { participant: String, link: Link },
}

/// A failpoint's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Abort the process at the first hit.
    Crash,
    /// Wait this many milliseconds at every hit.
    Delay(u64),
    /// Fail the step at every hit.
    Error,
}

impl Action {
    /// The failpoint spec (`fail` crate syntax, see `tandem_proto::failpoints`).
    pub fn spec(self) -> String {
        match self {
            Self::Crash => "1*return(crash)".to_owned(),
            Self::Delay(ms) => format!("return(delay:{ms})"),
            Self::Error => "return(error)".to_owned(),
        }
    }
}

/// The kinds of fault, for coverage and the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    KillCoordinator,
    KillParticipant,
    KillMariaDb,
    PauseCoordinator,
    PauseParticipant,
    PauseMariaDb,
    FailpointCrash,
    FailpointDelay,
    FailpointError,
    NetBlackhole,
    NetReset,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::KillCoordinator,
        Kind::KillParticipant,
        Kind::KillMariaDb,
        Kind::PauseCoordinator,
        Kind::PauseParticipant,
        Kind::PauseMariaDb,
        Kind::FailpointCrash,
        Kind::FailpointDelay,
        Kind::FailpointError,
        Kind::NetBlackhole,
        Kind::NetReset,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::KillCoordinator => "kill coordinator",
            Kind::KillParticipant => "kill participant",
            Kind::KillMariaDb => "kill mariadb",
            Kind::PauseCoordinator => "pause coordinator",
            Kind::PauseParticipant => "pause participant",
            Kind::PauseMariaDb => "pause mariadb",
            Kind::FailpointCrash => "failpoint crash",
            Kind::FailpointDelay => "failpoint delay",
            Kind::FailpointError => "failpoint error",
            Kind::NetBlackhole => "network blackhole",
            Kind::NetReset => "network reset",
        }
    }
}

impl Fault {
    pub fn kind(&self) -> Kind {
        match self {
            Fault::Kill(Target::Coordinator(_)) => Kind::KillCoordinator,
            Fault::Kill(Target::Participant(_)) => Kind::KillParticipant,
            Fault::Kill(Target::MariaDb(_)) => Kind::KillMariaDb,
            Fault::Pause(Target::Coordinator(_)) => Kind::PauseCoordinator,
            Fault::Pause(Target::Participant(_)) => Kind::PauseParticipant,
            Fault::Pause(Target::MariaDb(_)) => Kind::PauseMariaDb,
            Fault::Failpoint {
                action: Action::Crash, ..
            } => Kind::FailpointCrash,
            Fault::Failpoint {
                action: Action::Delay(_),
                ..
            } => Kind::FailpointDelay,
            Fault::Failpoint {
                action: Action::Error, ..
            } => Kind::FailpointError,
            Fault::NetCut { link: Link::Reset, .. } => Kind::NetReset,
            Fault::NetCut { .. } => Kind::NetBlackhole,
        }
    }
}

impl Fault {
    /// What the fault acts on: two faults on the same thing never overlap.
    pub fn subject(&self) -> String {
        match self {
            Fault::Kill(target) | Fault::Pause(target) => target.to_string(),
            Fault::Failpoint { process, .. } => process.to_string(),
            Fault::NetCut { participant, .. } => format!("link {participant}"),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Kill(target) => write!(f, "kill -9 {target}"),
            Fault::Pause(target) => write!(f, "SIGSTOP {target}"),
            Fault::Failpoint { process, point, action } => {
                write!(f, "failpoint {point}={} in {process}", action.spec())
            }
            Fault::NetCut { participant, link } => {
                write!(f, "network {link:?} between the coordinator and {participant}")
            }
        }
    }
}

/// One fault of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// When to apply it, from the start of the run.
    pub at: Duration,
    /// How long it lasts before it is healed.
    pub hold: Duration,
    pub fault: Fault,
}

/// Which process a failpoint lives in, and what it may do there. `error`
/// is offered only where the step can fail (elsewhere the point ignores
/// it).
const POINTS: &[(bool, &str, bool)] = &[
    // (in a coordinator replica, name, error is meaningful)
    (true, "coordinator::before_prepare", true),
    (true, "coordinator::before_phase2", true),
    (true, "coordinator::after_commit", false),
    (false, "participant::before_prepare", true),
    (false, "participant::after_prepare", false),
    (false, "participant::before_commit", true),
    (false, "participant::after_commit", false),
];

/// Every failpoint the nemesis may arm.
pub fn failpoints() -> impl Iterator<Item = &'static str> {
    POINTS.iter().map(|(_, name, _)| *name)
}

/// Draws the plan for a run of `duration` against `participants` and
/// `replicas` coordinator replicas, sorted by start. The first fault comes
/// after a 2 s warm-up, and every fault is healed before `duration` ends.
pub fn plan(seed: u64, duration: Duration, participants: &[String], replicas: usize) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut first_round = Kind::ALL.to_vec();
    first_round.shuffle(&mut rng);
    // When the next fault may start if it does not overlap.
    let mut next = Duration::from_secs(2);
    let mut out: Vec<Planned> = Vec::new();
    loop {
        let kind = first_round
            .pop()
            .unwrap_or_else(|| *Kind::ALL.choose(&mut rng).unwrap_or(&Kind::KillCoordinator));
        let (fault, hold) = draw(kind, &mut rng, participants, replicas);
        let overlap = rng.random_bool(0.25);
        let mut at = match out.last() {
            Some(last) if overlap => last.at + Duration::from_millis(rng.random_range(0..=duration_ms(last.hold))),
            _ => next,
        };
        let busy = |p: &Planned| p.at < at + hold && at < p.at + p.hold && p.fault.subject() == fault.subject();
        if out.iter().any(busy) {
            // `next` is past the end of every fault planned so far.
            at = next;
        }
        if at + hold > duration {
            break;
        }
        next = next.max(at + hold + ms(&mut rng, 300, 2500));
        out.push(Planned { at, hold, fault });
    }
    out
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn draw(kind: Kind, rng: &mut StdRng, participants: &[String], replicas: usize) -> (Fault, Duration) {
    let participant = participants.choose(rng).cloned().unwrap_or_default();
    let replica = rng.random_range(0..replicas.max(1));
    match kind {
        Kind::KillCoordinator => (Fault::Kill(Target::Coordinator(replica)), ms(rng, 100, 3000)),
        Kind::KillParticipant => (Fault::Kill(Target::Participant(participant)), ms(rng, 100, 3000)),
        Kind::KillMariaDb => (Fault::Kill(Target::MariaDb(participant)), ms(rng, 100, 3000)),
        Kind::PauseCoordinator => (Fault::Pause(Target::Coordinator(replica)), ms(rng, 300, 4000)),
        Kind::PauseParticipant => (Fault::Pause(Target::Participant(participant)), ms(rng, 300, 4000)),
        Kind::PauseMariaDb => (Fault::Pause(Target::MariaDb(participant)), ms(rng, 300, 4000)),
        Kind::FailpointCrash | Kind::FailpointDelay | Kind::FailpointError => {
            let candidates: Vec<_> = POINTS
                .iter()
                .filter(|(_, _, error_ok)| kind != Kind::FailpointError || *error_ok)
                .collect();
            let &&(in_coordinator, point, _) = candidates.choose(rng).unwrap_or(&&POINTS[0]);
            let process = if in_coordinator {
                Target::Coordinator(replica)
            } else {
                Target::Participant(participant)
            };
            let action = match kind {
                Kind::FailpointCrash => Action::Crash,
                Kind::FailpointDelay => Action::Delay(rng.random_range(50..=3000)),
                _ => Action::Error,
            };
            (Fault::Failpoint { process, point, action }, ms(rng, 500, 4000))
        }
        Kind::NetBlackhole | Kind::NetReset => {
            let link = if kind == Kind::NetReset {
                Link::Reset
            } else {
                Link::Blackhole
            };
            (Fault::NetCut { participant, link }, ms(rng, 300, 8000))
        }
    }
}

fn ms(rng: &mut StdRng, low: u64, high: u64) -> Duration {
    Duration::from_millis(rng.random_range(low..=high))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn names() -> Vec<String> {
        ["alpha", "beta", "gamma"].map(str::to_owned).to_vec()
    }

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        let a = plan(42, Duration::from_secs(120), &names(), 2);
        assert_eq!(a, plan(42, Duration::from_secs(120), &names(), 2));
        assert_ne!(a, plan(43, Duration::from_secs(120), &names(), 2));
    }

    #[test]
    fn a_short_run_covers_every_kind_and_faults_on_one_process_never_overlap() {
        let mut overlapping = 0;
        for seed in 0..200 {
            let duration = Duration::from_secs(90);
            let plan = plan(seed, duration, &names(), 2);
            let kinds: BTreeSet<Kind> = plan.iter().map(|p| p.fault.kind()).collect();
            assert_eq!(kinds.len(), Kind::ALL.len(), "seed {seed}: {kinds:?}");
            for (i, a) in plan.iter().enumerate() {
                assert!(a.at + a.hold <= duration, "seed {seed}: runs past the end");
                for b in &plan[i + 1..] {
                    assert!(a.at <= b.at, "seed {seed}: not sorted");
                    if b.at < a.at + a.hold {
                        overlapping += 1;
                        assert_ne!(a.fault.subject(), b.fault.subject(), "seed {seed}: {a:?} and {b:?}");
                    }
                }
            }
        }
        assert!(overlapping > 200, "faults compound in some plans: {overlapping}");
    }

    #[test]
    fn errors_are_armed_only_where_a_step_can_fail() {
        for seed in 0..200 {
            for p in plan(seed, Duration::from_secs(300), &names(), 2) {
                if let Fault::Failpoint {
                    point,
                    action: Action::Error,
                    ..
                } = p.fault
                {
                    assert!(POINTS.iter().any(|(_, name, error_ok)| *name == point && *error_ok));
                }
                if let Fault::Failpoint { process, point, .. } = &p.fault {
                    assert_eq!(
                        matches!(process, Target::Coordinator(_)),
                        !point.starts_with("participant::"),
                        "{point} armed in {process}"
                    );
                }
            }
        }
    }
}
