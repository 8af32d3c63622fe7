//! The branch state machine, without IO.
//!
//! A branch is one participant's part of a global transaction: one XA
//! transaction on one pinned MySQL connection. [`Engine::decide`] maps a
//! request to the [`Step`] the actor must run on the connection (or refuses
//! it), and [`Engine::finished`] records what the step achieved. Repeated
//! phase-2 requests are answered from the state without touching MySQL, so
//! the coordinator can retry freely.

use std::fmt;

use crate::sessions::SessionId;

/// Where the branch is in its XA life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `XA START` done; statements may run.
    Active,
    /// Voted READ_ONLY while other branches of the transaction may still be
    /// running: the XA transaction stays open, holding its (read) locks,
    /// until the coordinator releases it after the decision.
    HeldReadOnly,
    /// `XA PREPARE` done (or maybe done: the connection broke during it);
    /// only the coordinator may decide now.
    Prepared,
    Committed,
    /// Rolled back, or finished at vote time because it wrote nothing.
    RolledBack,
    /// The connection broke during a one-phase commit: MySQL committed it
    /// or rolled it back, and nothing here tells which.
    Unknown,
}

/// What the coordinator (or the branch's own timer) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Execute,
    /// `hold`: other branches may still be running (a Submit), so a
    /// read-only branch must keep its locks until released.
    Prepare {
        hold: bool,
    },
    Commit {
        one_phase: bool,
    },
    Rollback,
    /// The transaction's deadline passed without a decision reaching us.
    Deadline,
}

/// SQL work for the actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    RunStatements,
    /// `XA END; XA PREPARE` and vote YES.
    Prepare,
    /// The branch wrote nothing but must keep its locks: vote READ_ONLY
    /// without any SQL; a later rollback releases it.
    HoldReadOnly,
    /// The branch wrote nothing: `XA END; XA ROLLBACK` and vote READ_ONLY.
    /// A prepared read-only branch would be rolled back by MariaDB when its
    /// session ends anyway (DESIGN §4), so it is finished at vote time.
    FinishReadOnly,
    /// `XA COMMIT` of a prepared branch.
    CommitPrepared,
    /// `XA END; XA COMMIT … ONE PHASE`: the transaction's only branch.
    CommitOnePhase,
    /// `XA END; XA ROLLBACK` of a branch that was never prepared.
    RollbackActive,
    /// `XA ROLLBACK` of a prepared branch.
    RollbackPrepared,
    /// A repeat of a request that already took effect: answer it as before.
    AlreadyDone(Done),
    /// Nothing to do (e.g. the deadline passed on a prepared branch, which
    /// only the coordinator may decide).
    Ignore,
}

/// How a finished branch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Committed,
    RolledBack,
    /// Wrote nothing; finished at vote time or released after it.
    ReadOnly,
    /// A one-phase commit whose connection broke and could not be settled
    /// yet; the MySQL session that ran it, to end before looking again.
    Unknown(Option<SessionId>),
}

/// The answer to a request that already took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    VotedYes,
    VotedReadOnly,
    Committed,
    RolledBack,
}

/// Why a request cannot be served in the branch's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub phase: Phase,
    pub request: Request,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.request {
            Request::Execute => "execute statements in",
            Request::Prepare { .. } => "prepare",
            Request::Commit { one_phase: true } => "commit in one phase",
            Request::Commit { one_phase: false } => "commit",
            Request::Rollback => "roll back",
            Request::Deadline => "time out",
        };
        let phase = match self.phase {
            Phase::Active => "active",
            Phase::HeldReadOnly => "read-only and voted",
            Phase::Prepared => "prepared",
            Phase::Committed => "committed",
            Phase::RolledBack => "rolled back",
            Phase::Unknown => "of unknown outcome",
        };
        write!(f, "cannot {what} a branch that is {phase}")
    }
}

#[derive(Debug, Clone)]
pub struct Engine {
    phase: Phase,
    /// Whether any statement may have written. Decides between a real
    /// prepare and the read-only shortcut.
    wrote: bool,
    /// Set when the branch was finished by [`Step::FinishReadOnly`], so a
    /// repeated Prepare answers READ_ONLY again.
    read_only: bool,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// A branch just started with `XA START`.
    pub fn new() -> Self {
        Self {
            phase: Phase::Active,
            wrote: false,
            read_only: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the branch holds no more MySQL state and the actor may stop.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Committed | Phase::RolledBack | Phase::Unknown)
    }

    /// Whether the branch's own deadline may roll it back (never once
    /// prepared).
    pub fn deadline_applies(&self) -> bool {
        matches!(self.phase, Phase::Active | Phase::HeldReadOnly)
    }

    /// How the branch ended, once it has.
    pub fn ending(&self) -> Option<Ending> {
        match self.phase {
            Phase::Committed => Some(Ending::Committed),
            Phase::RolledBack if self.read_only => Some(Ending::ReadOnly),
            Phase::RolledBack => Some(Ending::RolledBack),
            Phase::Unknown => Some(Ending::Unknown(None)),
            Phase::Active | Phase::HeldReadOnly | Phase::Prepared => None,
        }
    }

    /// Whether the branch may have written (and so carries a marker row).
    pub fn wrote(&self) -> bool {
        self.wrote
    }

    /// Settles a one-phase commit of unknown outcome, from the branch's
    /// marker row once its session is gone.
    pub fn settled(&mut self, committed: bool) {
        if self.phase == Phase::Unknown {
            self.phase = if committed { Phase::Committed } else { Phase::RolledBack };
        }
    }

    /// Remembers that a statement that may write ran in the branch.
    pub fn note_write(&mut self) {
        self.wrote = true;
    }

    /// What to do for `request` in the current state.
    pub fn decide(&self, request: Request) -> Result<Step, Refusal> {
        use Phase::*;
        let step = match (self.phase, request) {
            (Active, Request::Execute) => Step::RunStatements,
            (Active, Request::Prepare { .. }) if self.wrote => Step::Prepare,
            (Active, Request::Prepare { hold: true }) => Step::HoldReadOnly,
            (Active, Request::Prepare { hold: false }) => Step::FinishReadOnly,
            (Active, Request::Commit { one_phase: true }) => Step::CommitOnePhase,
            (Active | HeldReadOnly, Request::Rollback | Request::Deadline) => Step::RollbackActive,
            (HeldReadOnly, Request::Prepare { hold: true }) => Step::AlreadyDone(Done::VotedReadOnly),
            // Every vote is in: end the branch on the session that holds its
            // locks, which proves they were still held (a dead session
            // fails it).
            (HeldReadOnly, Request::Prepare { hold: false }) => Step::FinishReadOnly,

            (Prepared, Request::Prepare { .. }) => Step::AlreadyDone(Done::VotedYes),
            (Prepared, Request::Commit { one_phase: false }) => Step::CommitPrepared,
            (Prepared, Request::Rollback) => Step::RollbackPrepared,
            (Prepared, Request::Deadline) => Step::Ignore,

            (RolledBack, Request::Prepare { .. }) if self.read_only => Step::AlreadyDone(Done::VotedReadOnly),
            (Committed, Request::Commit { .. }) => Step::AlreadyDone(Done::Committed),
            (RolledBack, Request::Rollback) => Step::AlreadyDone(Done::RolledBack),
            (Committed | RolledBack | Unknown, Request::Deadline) => Step::Ignore,

            (phase, request) => return Err(Refusal { phase, request }),
        };
        Ok(step)
    }

    /// Records the effect of a step that ran successfully.
    pub fn finished(&mut self, step: Step) {
        match step {
            Step::RunStatements | Step::AlreadyDone(_) | Step::Ignore => {}
            Step::Prepare => self.phase = Phase::Prepared,
            Step::HoldReadOnly => {
                self.phase = Phase::HeldReadOnly;
                self.read_only = true;
            }
            Step::FinishReadOnly => {
                self.phase = Phase::RolledBack;
                self.read_only = true;
            }
            Step::CommitPrepared | Step::CommitOnePhase => self.phase = Phase::Committed,
            Step::RollbackActive | Step::RollbackPrepared => {
                self.phase = Phase::RolledBack;
                // A held read-only branch rolled back (deadline, rollback)
                // no longer votes READ_ONLY: its locks are gone.
                self.read_only = false;
            }
        }
    }

    /// Records that a step failed. `connection_lost`: the connection broke,
    /// so MySQL may or may not have run the step.
    ///
    /// An unprepared branch whose statement or rollback failed is rolled
    /// back (the actor rolls back or closes its connection; MySQL rolls back
    /// an unprepared XA transaction whose session ends). A prepare that lost
    /// its connection may have taken effect: the branch counts as prepared
    /// and is finished by the coordinator's decision, looked up in
    /// `XA RECOVER`. A one-phase commit that lost its connection may have
    /// committed: its outcome is unknown. A prepared branch stays prepared
    /// whatever failed, since only the coordinator may decide it.
    pub fn failed(&mut self, step: Step, connection_lost: bool) {
        self.phase = match (self.phase, step) {
            (Phase::Active, Step::Prepare) if connection_lost => Phase::Prepared,
            // Whatever the error, MySQL may have committed before it (the
            // reply lost, say): the marker row tells, once the session is
            // gone. Taking it as rolled back could report a commit ABORTED.
            (Phase::Active, Step::CommitOnePhase) => Phase::Unknown,
            (
                Phase::Active | Phase::HeldReadOnly,
                Step::RunStatements
                | Step::Prepare
                | Step::FinishReadOnly
                | Step::CommitOnePhase
                | Step::RollbackActive,
            ) => Phase::RolledBack,
            (phase, _) => phase,
        };
        if self.phase == Phase::RolledBack {
            // Ending a held read-only branch failed: it did not hold on.
            self.read_only = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Request; 7] = [
        Request::Execute,
        Request::Prepare { hold: false },
        Request::Prepare { hold: true },
        Request::Commit { one_phase: false },
        Request::Commit { one_phase: true },
        Request::Rollback,
        Request::Deadline,
    ];

    fn run(engine: &mut Engine, request: Request) -> Result<Step, Refusal> {
        let step = engine.decide(request)?;
        engine.finished(step);
        Ok(step)
    }

    #[test]
    fn a_writing_branch_prepares_then_commits() {
        let mut e = Engine::new();
        assert_eq!(run(&mut e, Request::Execute), Ok(Step::RunStatements));
        e.note_write();
        assert_eq!(run(&mut e, Request::Prepare { hold: false }), Ok(Step::Prepare));
        assert_eq!(e.phase(), Phase::Prepared);
        assert_eq!(
            run(&mut e, Request::Commit { one_phase: false }),
            Ok(Step::CommitPrepared)
        );
        assert!(e.is_finished());
        // Retried commits are answered without SQL.
        assert_eq!(
            run(&mut e, Request::Commit { one_phase: false }),
            Ok(Step::AlreadyDone(Done::Committed))
        );
    }

    #[test]
    fn a_branch_that_wrote_nothing_votes_read_only_and_is_finished() {
        let mut e = Engine::new();
        run(&mut e, Request::Execute).unwrap();
        assert_eq!(run(&mut e, Request::Prepare { hold: false }), Ok(Step::FinishReadOnly));
        assert!(e.is_finished());
        assert_eq!(
            run(&mut e, Request::Prepare { hold: false }),
            Ok(Step::AlreadyDone(Done::VotedReadOnly))
        );
        assert!(e.decide(Request::Commit { one_phase: false }).is_err());
    }

    #[test]
    fn prepared_branches_are_never_decided_by_the_deadline() {
        let mut e = Engine::new();
        e.note_write();
        run(&mut e, Request::Prepare { hold: false }).unwrap();
        assert_eq!(run(&mut e, Request::Deadline), Ok(Step::Ignore));
        assert_eq!(e.phase(), Phase::Prepared);
        assert_eq!(
            run(&mut e, Request::Prepare { hold: false }),
            Ok(Step::AlreadyDone(Done::VotedYes))
        );
        // Statements and one-phase commit are refused once prepared.
        assert!(e.decide(Request::Execute).is_err());
        assert!(e.decide(Request::Commit { one_phase: true }).is_err());
        assert_eq!(run(&mut e, Request::Rollback), Ok(Step::RollbackPrepared));
        assert_eq!(run(&mut e, Request::Rollback), Ok(Step::AlreadyDone(Done::RolledBack)));
    }

    #[test]
    fn an_active_branch_rolls_back_at_its_deadline() {
        let mut e = Engine::new();
        e.note_write();
        assert_eq!(run(&mut e, Request::Deadline), Ok(Step::RollbackActive));
        assert_eq!(e.phase(), Phase::RolledBack);
        // Too late for anything but a rollback.
        assert!(e.decide(Request::Execute).is_err());
        assert!(e.decide(Request::Prepare { hold: false }).is_err());
        assert!(e.decide(Request::Commit { one_phase: false }).is_err());
    }

    #[test]
    fn one_phase_commit_only_from_active() {
        let mut e = Engine::new();
        assert_eq!(
            run(&mut e, Request::Commit { one_phase: true }),
            Ok(Step::CommitOnePhase)
        );
        assert_eq!(e.phase(), Phase::Committed);
        assert!(Engine::new().decide(Request::Commit { one_phase: false }).is_err());
    }

    #[test]
    fn failures_roll_back_unprepared_branches_and_keep_prepared_ones() {
        for step in [Step::RunStatements, Step::Prepare] {
            let mut e = Engine::new();
            e.failed(step, false);
            assert_eq!(e.phase(), Phase::RolledBack, "{step:?}");
        }
        let mut e = Engine::new();
        e.note_write();
        run(&mut e, Request::Prepare { hold: false }).unwrap();
        for step in [Step::CommitPrepared, Step::RollbackPrepared] {
            for lost in [false, true] {
                e.failed(step, lost);
                assert_eq!(e.phase(), Phase::Prepared);
            }
        }
    }

    #[test]
    fn a_lost_connection_never_turns_a_maybe_durable_step_into_a_rollback() {
        let mut e = Engine::new();
        e.note_write();
        e.failed(Step::Prepare, true);
        // Maybe prepared: only the coordinator's decision finishes it.
        assert_eq!(e.phase(), Phase::Prepared);
        assert_eq!(e.decide(Request::Deadline), Ok(Step::Ignore));
        assert_eq!(e.decide(Request::Rollback), Ok(Step::RollbackPrepared));

        // A one-phase commit may have taken effect before any error, lost
        // connection or not: the marker row settles it.
        for lost in [false, true] {
            let mut e = Engine::new();
            e.failed(Step::CommitOnePhase, lost);
            assert_eq!(e.ending(), Some(Ending::Unknown(None)));
            assert!(e.decide(Request::Commit { one_phase: true }).is_err());
            e.settled(true);
            assert_eq!(e.ending(), Some(Ending::Committed));
        }

        let mut e = Engine::new();
        e.failed(Step::RunStatements, true);
        assert_eq!(e.ending(), Some(Ending::RolledBack));
    }

    #[test]
    fn a_read_only_branch_of_a_submit_keeps_its_locks_until_released() {
        let mut e = Engine::new();
        run(&mut e, Request::Execute).unwrap();
        assert_eq!(run(&mut e, Request::Prepare { hold: true }), Ok(Step::HoldReadOnly));
        assert_eq!(e.phase(), Phase::HeldReadOnly);
        assert!(!e.is_finished());
        assert_eq!(
            run(&mut e, Request::Prepare { hold: true }),
            Ok(Step::AlreadyDone(Done::VotedReadOnly))
        );
        assert!(e.decide(Request::Execute).is_err());
        assert!(e.decide(Request::Commit { one_phase: false }).is_err());
        // Rolled back (the transaction aborted): its locks are gone, so it
        // no longer answers a Prepare with READ_ONLY.
        assert_eq!(run(&mut e, Request::Rollback), Ok(Step::RollbackActive));
        assert_eq!(e.ending(), Some(Ending::RolledBack));
        assert!(e.decide(Request::Prepare { hold: false }).is_err());
        // Its deadline releases it too.
        let mut e = Engine::new();
        run(&mut e, Request::Prepare { hold: true }).unwrap();
        assert!(e.deadline_applies());
        assert_eq!(run(&mut e, Request::Deadline), Ok(Step::RollbackActive));
        assert!(e.decide(Request::Prepare { hold: false }).is_err());
    }

    #[test]
    fn a_held_read_only_branch_is_confirmed_by_ending_it_on_its_session() {
        let mut e = Engine::new();
        run(&mut e, Request::Execute).unwrap();
        run(&mut e, Request::Prepare { hold: true }).unwrap();
        // Every vote is in: the coordinator prepares it again.
        assert_eq!(run(&mut e, Request::Prepare { hold: false }), Ok(Step::FinishReadOnly));
        assert_eq!(e.ending(), Some(Ending::ReadOnly));
        // A repeated confirmation gets the same answer.
        assert_eq!(
            run(&mut e, Request::Prepare { hold: false }),
            Ok(Step::AlreadyDone(Done::VotedReadOnly))
        );
        // If its session died, ending it fails and nothing is recorded.
        let mut e = Engine::new();
        run(&mut e, Request::Prepare { hold: true }).unwrap();
        e.failed(Step::FinishReadOnly, true);
        assert_ne!(e.ending(), Some(Ending::ReadOnly));
    }

    /// Every (state, request) pair: a finished branch never runs SQL again
    /// except as an idempotent repeat, and a committed branch can never be
    /// rolled back (nor the reverse).
    #[test]
    fn exhaustive_finished_states_are_final() {
        for phase in [Phase::Committed, Phase::RolledBack, Phase::Unknown] {
            for read_only in [false, true] {
                let e = Engine {
                    phase,
                    wrote: !read_only,
                    read_only,
                };
                for request in ALL {
                    match e.decide(request) {
                        Ok(Step::AlreadyDone(done)) => match (phase, done) {
                            (Phase::Committed, Done::Committed) => {}
                            (Phase::RolledBack, Done::RolledBack | Done::VotedReadOnly) => {}
                            other => panic!("{other:?} for {request:?}"),
                        },
                        Ok(Step::Ignore) => assert_eq!(request, Request::Deadline),
                        Ok(step) => panic!("{phase:?} ran {step:?} for {request:?}"),
                        Err(refusal) => assert!(!refusal.to_string().is_empty()),
                    }
                }
            }
        }
    }

    #[test]
    fn exhaustive_every_request_in_every_live_state_is_answered() {
        for wrote in [false, true] {
            for prepared in [false, true] {
                let mut e = Engine::new();
                if wrote {
                    e.note_write();
                }
                if prepared {
                    e.phase = Phase::Prepared;
                }
                for request in ALL {
                    let mut copy = e.clone();
                    if let Ok(step) = copy.decide(request) {
                        copy.finished(step);
                        // A prepared branch only leaves Prepared by an
                        // explicit commit or rollback.
                        if prepared && copy.phase() != Phase::Prepared {
                            assert!(matches!(
                                request,
                                Request::Commit { one_phase: false } | Request::Rollback
                            ));
                        }
                    }
                }
            }
        }
    }
}
