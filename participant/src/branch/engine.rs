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
    /// Wrote, and read rows (shared locks), while other branches may still
    /// be running: not prepared yet, holding its locks. A prepared branch
    /// loses its shared locks if its database restarts (DESIGN §4), so it
    /// prepares only once every branch has taken its locks, on the session
    /// that holds them (a dead session fails it).
    HeldWriter,
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
    /// read-only branch must keep its locks until confirmed or released.
    /// `marked`: the branch is in the transaction's participant set, so it
    /// must end durably YES (prepared, or a read-only branch's marker row
    /// committed) for the transaction to commit.
    Prepare {
        hold: bool,
        marked: bool,
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
    /// The branch wrote and read: vote YES, held, without any SQL; a later
    /// prepare prepares it.
    HoldWriter,
    /// The branch wrote nothing: `XA END; XA ROLLBACK` and vote READ_ONLY.
    /// A prepared read-only branch would be rolled back by MariaDB when its
    /// session ends anyway (DESIGN §4), so it is finished at vote time.
    FinishReadOnly,
    /// A held read-only branch of the participant set, once every vote is
    /// in: its marker row committed in one phase on the session that holds
    /// its locks (`INSERT …; XA END; XA COMMIT … ONE PHASE`). That proves
    /// the locks were held at an instant when every branch held all of
    /// its own, and makes its YES durable for any resolver. Votes
    /// READ_ONLY: it needs no phase 2.
    ConfirmReadOnly,
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
    /// Wrote nothing, and confirmed its locks by committing its marker row
    /// (a read-only branch of a participant set): a durable YES, with no
    /// data to commit or roll back.
    Confirmed,
    /// A one-phase commit whose connection broke and could not be settled
    /// yet; the MySQL session that ran it, to end before looking again.
    Unknown(Option<SessionId>),
}

/// The answer to a request that already took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    VotedYes,
    /// Voted YES, held (not prepared yet).
    VotedHeld,
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
            Phase::HeldWriter => "voted and held",
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
    /// Whether any statement read rows, which may take shared locks.
    read_rows: bool,
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
            read_rows: false,
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
        matches!(self.phase, Phase::Active | Phase::HeldReadOnly | Phase::HeldWriter)
    }

    /// How the branch ended, once it has.
    pub fn ending(&self) -> Option<Ending> {
        match self.phase {
            Phase::Committed if self.read_only => Some(Ending::Confirmed),
            Phase::Committed => Some(Ending::Committed),
            Phase::RolledBack if self.read_only => Some(Ending::ReadOnly),
            Phase::RolledBack => Some(Ending::RolledBack),
            Phase::Unknown => Some(Ending::Unknown(None)),
            Phase::Active | Phase::HeldReadOnly | Phase::HeldWriter | Phase::Prepared => None,
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
            if !committed {
                // A read-only confirmation that did not commit is no YES.
                self.read_only = false;
            }
        }
    }

    /// A prepare that lost its connection turned out not to have happened
    /// (not in `XA RECOVER` once its session was gone), and the branch is
    /// now fenced off: it is rolled back for good.
    pub fn never_prepared(&mut self) {
        if self.phase == Phase::Prepared {
            self.phase = Phase::RolledBack;
        }
    }

    /// Remembers that a statement that may write ran in the branch.
    pub fn note_write(&mut self) {
        self.wrote = true;
    }

    /// Remembers that a statement that reads rows ran in the branch.
    pub fn note_read(&mut self) {
        self.read_rows = true;
    }

    /// What to do for `request` in the current state.
    pub fn decide(&self, request: Request) -> Result<Step, Refusal> {
        use Phase::*;
        let step = match (self.phase, request) {
            (Active, Request::Execute) => Step::RunStatements,
            (Active, Request::Prepare { hold: true, .. }) if self.wrote && self.read_rows => Step::HoldWriter,
            (Active, Request::Prepare { .. }) if self.wrote => Step::Prepare,
            (Active, Request::Prepare { hold: true, .. }) => Step::HoldReadOnly,
            (
                Active,
                Request::Prepare {
                    hold: false,
                    marked: true,
                },
            ) => Step::ConfirmReadOnly,
            (
                Active,
                Request::Prepare {
                    hold: false,
                    marked: false,
                },
            ) => Step::FinishReadOnly,
            (Active, Request::Commit { one_phase: true }) => Step::CommitOnePhase,
            (Active | HeldReadOnly | HeldWriter, Request::Rollback | Request::Deadline) => Step::RollbackActive,
            (HeldReadOnly, Request::Prepare { hold: true, .. }) => Step::AlreadyDone(Done::VotedReadOnly),
            // Every vote is in: end the branch on the session that holds its
            // locks, which proves they were still held (a dead session
            // fails it); durably, when the transaction counts on it.
            (
                HeldReadOnly,
                Request::Prepare {
                    hold: false,
                    marked: true,
                },
            ) => Step::ConfirmReadOnly,
            (
                HeldReadOnly,
                Request::Prepare {
                    hold: false,
                    marked: false,
                },
            ) => Step::FinishReadOnly,
            (HeldWriter, Request::Prepare { hold: true, .. }) => Step::AlreadyDone(Done::VotedHeld),
            // Every vote is in: prepare on the session that holds the locks.
            (HeldWriter, Request::Prepare { hold: false, .. }) => Step::Prepare,

            (Prepared, Request::Prepare { .. }) => Step::AlreadyDone(Done::VotedYes),
            (Prepared, Request::Commit { one_phase: false }) => Step::CommitPrepared,
            (Prepared, Request::Rollback) => Step::RollbackPrepared,
            (Prepared, Request::Deadline) => Step::Ignore,

            (RolledBack | Committed, Request::Prepare { .. }) if self.read_only => {
                Step::AlreadyDone(Done::VotedReadOnly)
            }
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
            Step::HoldWriter => self.phase = Phase::HeldWriter,
            Step::FinishReadOnly => {
                self.phase = Phase::RolledBack;
                self.read_only = true;
            }
            Step::ConfirmReadOnly => {
                self.phase = Phase::Committed;
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
            (Phase::Active | Phase::HeldWriter, Step::Prepare) if connection_lost => Phase::Prepared,
            // Whatever the error, MySQL may have committed before it (the
            // reply lost, say): the marker row tells, once the session is
            // gone. Taking it as rolled back could report a commit ABORTED.
            (Phase::Active | Phase::HeldReadOnly, Step::CommitOnePhase | Step::ConfirmReadOnly) => Phase::Unknown,
            (
                Phase::Active | Phase::HeldReadOnly | Phase::HeldWriter,
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
mod tests;
