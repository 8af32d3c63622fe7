//! The two-phase commit state machine of one global transaction, without IO.
//!
//! The actor feeds it client requests and protocol events and executes the
//! [`Action`]s it returns (RPCs to participants, the decision-log append,
//! replies to clients). Presumed abort:
//!
//! 1. Prepare every branch in parallel. Any NO, failure or the deadline →
//!    abort: roll back every branch; nothing is logged.
//! 2. All YES (or READ_ONLY) → log the COMMIT decision; phase 2 starts only
//!    once it is durable ([`Event::Logged`]).
//!
//!    A read-only branch of a Submit votes while other branches may still
//!    be running, so it keeps its read locks ("held"). Its locks vanish if
//!    its session dies (its database crashes, its participant restarts)
//!    before the other branches have taken theirs; committing then would
//!    not be serializable. So once every vote is in, each held branch is
//!    prepared once more: the participant ends it (`XA END; XA ROLLBACK`)
//!    on the session that holds its locks, and that succeeds only if the
//!    session is still alive, i.e. the locks were held at an instant when
//!    every branch held all of its own. Anything else aborts.
//!
//!    A writing branch of a Submit that also read rows votes YES held
//!    ([`Vote::YesHeld`]) without preparing: a prepared branch whose
//!    database restarts comes back with the exclusive locks of the rows it
//!    changed but not the shared locks of the rows it read. It is prepared
//!    in the same round, on the session that holds its locks.
//! 3. Commit every YES branch, retrying until each acknowledges.
//!    Read-only branches get no phase 2.
//! 4. A transaction with one branch commits it in one phase, unlogged.
//!
//! After a restart, [`Engine::recovered`] resumes a logged COMMIT at step 3.
//! A branch found rolled back although the decision was COMMIT (or the
//! reverse) is a heuristic hazard: recorded, reported, never retried away.
//!
//! A rollback is never sent to a branch while an Execute or Prepare on it
//! is in flight: the participant serialises a branch's requests, but a
//! rollback overtaking the Execute that begins the branch would find nothing
//! and let the branch start afterwards.

use std::collections::BTreeMap;

/// The abort reason when the client asked for the rollback.
pub const CLIENT_ROLLBACK: &str = "rolled back by the client";

/// The transaction's state, as `GetTransaction` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Preparing,
    /// Every branch voted YES or READ_ONLY; the COMMIT record is being made
    /// durable.
    Logging,
    /// Decided COMMIT (or one-phase commit in flight); phase 2 is running.
    Committing,
    Aborting,
    Committed,
    Aborted,
}

/// One participant's branch, as the coordinator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchState {
    Active,
    Preparing,
    Prepared,
    /// Voted READ_ONLY and finished: no phase 2.
    ReadOnly,
    /// Voted READ_ONLY but still holds its locks until released.
    ReadOnlyHeld,
    /// Voted YES but is not prepared yet: it read rows, and a prepared
    /// branch's shared locks do not survive a restart of its database, so
    /// it holds them unprepared until every branch has voted.
    YesHeld,
    /// A held read-only branch being released (a rollback RPC).
    Releasing,
    Committing,
    Committed,
    RollingBack,
    RolledBack,
    /// Heuristic hazard: decided COMMIT, found rolled back.
    HeuristicRollback,
    /// Heuristic hazard: decided ABORT, found committed.
    HeuristicCommit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Branch {
    state: BranchState,
    /// An Execute or Prepare RPC on this branch has not answered yet.
    in_flight: bool,
    /// Roll back as soon as the in-flight RPC answers.
    rollback_pending: bool,
}

impl Branch {
    fn new() -> Self {
        Self {
            state: BranchState::Active,
            in_flight: false,
            rollback_pending: false,
        }
    }

    /// Starts rolling the branch back (or releasing a held read-only one);
    /// `true` when a Rollback RPC must go out for it.
    fn start_rollback(&mut self) -> bool {
        match self.state {
            BranchState::ReadOnly | BranchState::RolledBack | BranchState::RollingBack | BranchState::Releasing => {
                false
            }
            BranchState::ReadOnlyHeld => {
                self.state = BranchState::Releasing;
                true
            }
            _ => {
                self.state = BranchState::RollingBack;
                true
            }
        }
    }

    /// Nothing more will happen to this branch.
    fn is_settled(&self) -> bool {
        !self.in_flight
            && !self.rollback_pending
            && matches!(
                self.state,
                BranchState::Committed
                    | BranchState::RolledBack
                    | BranchState::ReadOnly
                    | BranchState::HeuristicRollback
                    | BranchState::HeuristicCommit
            )
    }
}

/// A participant's vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vote {
    Yes,
    /// Wrote and read; holds its locks unprepared until asked again.
    YesHeld,
    /// `held`: the branch still holds its locks and must be released.
    ReadOnly {
        held: bool,
    },
    No(String),
}

/// What kind of abort, for the status code a client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    /// The client asked for the rollback (FAILED_PRECONDITION afterwards).
    Client,
    /// The deadline passed (DEADLINE_EXCEEDED).
    Deadline,
    /// The client sent a bad request (INVALID_ARGUMENT).
    InvalidArgument,
    /// A vote NO, failed statement or guard, lost participant (ABORTED).
    Failed,
}

/// Why a transaction aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    pub reason: String,
    pub kind: AbortKind,
}

impl Abort {
    fn failed(failure: Failure) -> Self {
        Self {
            kind: if failure.invalid_argument {
                AbortKind::InvalidArgument
            } else {
                AbortKind::Failed
            },
            reason: failure.reason,
        }
    }
}

/// The outcome announced to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    Aborted(Abort),
    /// A one-phase commit whose answer has not come: the client is told the
    /// outcome is not known yet (GetTransaction will say).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The Execute on `participant` answered.
    Executed {
        participant: String,
        result: Result<(), Failure>,
    },
    /// The prepare on `participant` answered (Prepare RPC, or Execute with
    /// prepare for Submit).
    Voted {
        participant: String,
        result: Result<Vote, Failure>,
    },
    /// The one-phase commit answered.
    OnePhaseDone {
        participant: String,
        result: Result<(), Failure>,
    },
    /// The COMMIT record is durable.
    Logged,
    /// A phase-2 RPC (commit, rollback or release) answered.
    Phase2Done {
        participant: String,
        result: Result<(), Failure>,
    },
    /// The transaction's deadline passed.
    DeadlineExpired,
    /// The coordinator waited long enough for phase 2 (or a one-phase
    /// commit) before answering the client.
    ReplyWaitElapsed,
}

/// A failed RPC to a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    /// The participant refused the request as malformed (INVALID_ARGUMENT).
    pub invalid_argument: bool,
    /// The participant rolled the branch back (its reply says so), as
    /// opposed to a transport error that leaves the branch's fate unknown.
    pub rolled_back: bool,
    /// The participant found the branch finished the other way than asked
    /// (a heuristic hazard): retrying cannot change it.
    pub heuristic: bool,
}

impl Failure {
    pub fn unknown(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            invalid_argument: false,
            rolled_back: false,
            heuristic: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Prepare the branch (for Submit: run its statements and prepare).
    Prepare(String),
    /// Commit the transaction's only branch in one phase (for Submit: run
    /// its statements and commit).
    CommitOnePhase(String),
    /// Append the COMMIT record for these YES voters and make it durable.
    LogCommit(Vec<String>),
    /// Phase 2.
    Commit(String),
    /// Roll back the branch, or release a held read-only one.
    Rollback(String),
    /// Retry a failed phase-2 RPC (or ask again how a one-phase commit
    /// ended) after a backoff.
    Retry(String),
    /// Start the bounded wait before answering the client.
    StartReplyWait,
    /// Start the wait after which an unanswered one-phase commit is
    /// reported as not known yet: from the deadline on (the same RPC may
    /// still be running a Submit's statements until then).
    StartOnePhaseWait,
    /// Answer every client waiting for the outcome.
    Reply(Outcome),
    /// Append the END record: every participant confirmed phase 2.
    LogEnd,
}

/// Why a client request is refused in the current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The transaction aborted, with why.
    Aborted(Abort),
    /// Not possible in this state (FAILED_PRECONDITION).
    NotActive(String),
}

#[derive(Debug, Clone)]
pub struct Engine {
    state: State,
    branches: BTreeMap<String, Branch>,
    abort: Option<Abort>,
    /// A client waits for the outcome (Commit, Rollback or Submit).
    waiting: bool,
    /// The outcome was announced to the client.
    replied: bool,
    /// The COMMIT record was requested, so an END record must follow.
    logged: bool,
    /// The bounded wait before answering the client has been started.
    reply_wait_started: bool,
    /// The only branch is committing in one phase: its outcome is not
    /// decided until the participant answers.
    one_phase: bool,
    /// Heuristic hazards found in phase 2, one line per branch.
    hazards: Vec<String>,
    /// Every vote is in; held read-only branches are confirming that they
    /// still hold their locks (step 2).
    confirming: bool,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    pub fn new() -> Self {
        Self {
            state: State::Active,
            branches: BTreeMap::new(),
            abort: None,
            waiting: false,
            replied: false,
            logged: false,
            reply_wait_started: false,
            one_phase: false,
            hazards: Vec::new(),
            confirming: false,
        }
    }

    /// Resumes a transaction whose COMMIT record a restarted coordinator
    /// found without an END: phase 2 is sent to every participant that
    /// voted YES (committing twice is harmless; participants answer a
    /// repeated commit from `XA RECOVER` and the branch's marker row).
    pub fn recovered(participants: &[String]) -> (Self, Vec<Action>) {
        let mut engine = Self::new();
        engine.state = State::Committing;
        engine.logged = true;
        let mut actions = Vec::new();
        for name in participants {
            let mut branch = Branch::new();
            branch.state = BranchState::Committing;
            engine.branches.insert(name.clone(), branch);
            actions.push(Action::Commit(name.clone()));
        }
        let actions = engine.after_progress(actions);
        (engine, actions)
    }

    /// Heuristic hazards found so far (empty for a sound transaction).
    pub fn hazards(&self) -> &[String] {
        &self.hazards
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn abort(&self) -> Option<&Abort> {
        self.abort.as_ref()
    }

    pub fn branches(&self) -> impl Iterator<Item = (&str, BranchState)> {
        self.branches.iter().map(|(name, b)| (name.as_str(), b.state))
    }

    pub fn branch(&self, participant: &str) -> Option<BranchState> {
        self.branches.get(participant).map(|b| b.state)
    }

    /// Whether the only branch is committing in one phase (not decided yet).
    pub fn is_one_phase(&self) -> bool {
        self.one_phase
    }

    /// Whether the transaction is over and no RPC is outstanding.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Committed | State::Aborted)
    }

    /// Whether the deadline still matters (the transaction is undecided).
    pub fn deadline_applies(&self) -> bool {
        matches!(self.state, State::Active | State::Preparing)
    }

    /// Participants whose phase 2 is not confirmed yet.
    pub fn pending(&self) -> Vec<&str> {
        self.branches
            .iter()
            .filter(|(_, b)| {
                matches!(
                    b.state,
                    BranchState::Committing | BranchState::RollingBack | BranchState::Releasing
                )
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// A client's Execute on `participant`. `Ok(true)` means the branch
    /// begins with this Execute.
    pub fn execute(&mut self, participant: &str) -> Result<bool, Refusal> {
        self.require_active()?;
        let begin = !self.branches.contains_key(participant);
        let branch = self.branches.entry(participant.to_owned()).or_insert_with(Branch::new);
        if branch.in_flight {
            return Err(Refusal::NotActive(format!(
                "an Execute on participant {participant} is still running in this transaction"
            )));
        }
        branch.in_flight = true;
        Ok(begin)
    }

    /// A client's Commit.
    pub fn commit(&mut self) -> Result<Vec<Action>, Refusal> {
        self.require_active()?;
        if let Some((name, _)) = self.branches.iter().find(|(_, b)| b.in_flight) {
            return Err(Refusal::NotActive(format!(
                "an Execute on participant {name} is still running in this transaction"
            )));
        }
        self.waiting = true;
        Ok(self.start_commit())
    }

    /// A one-shot Submit: every branch runs its statements and is prepared
    /// (or committed in one phase) in a single RPC.
    pub fn submit(&mut self, participants: &[String]) -> Result<Vec<Action>, Refusal> {
        self.require_active()?;
        if !self.branches.is_empty() {
            return Err(Refusal::NotActive("Submit needs a fresh transaction".to_owned()));
        }
        for p in participants {
            self.branches.insert(p.clone(), Branch::new());
        }
        self.waiting = true;
        Ok(self.start_commit())
    }

    /// A client's Rollback: `Ok(None)` when the transaction already aborted
    /// (the decision is final; answer at once), otherwise the actions and a
    /// reply once every branch is rolled back.
    pub fn rollback(&mut self) -> Result<Option<Vec<Action>>, Refusal> {
        match self.state {
            State::Active => {
                self.waiting = true;
                Ok(Some(self.start_abort(Abort {
                    reason: CLIENT_ROLLBACK.to_owned(),
                    kind: AbortKind::Client,
                })))
            }
            State::Aborting | State::Aborted => Ok(None),
            State::Preparing | State::Logging => Err(Refusal::NotActive(
                "the transaction is committing; it can no longer be rolled back".to_owned(),
            )),
            State::Committing | State::Committed => Err(Refusal::NotActive(
                "the transaction is committed; it can no longer be rolled back".to_owned(),
            )),
        }
    }

    pub fn on(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::Executed { participant, result } => self.on_executed(&participant, result),
            Event::Voted { participant, result } => self.on_voted(&participant, result),
            Event::OnePhaseDone { participant, result } => self.on_one_phase(&participant, result),
            Event::Logged => self.on_logged(),
            Event::Phase2Done { participant, result } => self.on_phase2(&participant, result),
            Event::DeadlineExpired if self.deadline_applies() => self.start_abort(Abort {
                reason: "the transaction's deadline passed".to_owned(),
                kind: AbortKind::Deadline,
            }),
            Event::DeadlineExpired => Vec::new(),
            Event::ReplyWaitElapsed if self.waiting && !self.replied => {
                if self.is_decided() {
                    self.replied = true;
                    vec![Action::Reply(self.outcome())]
                } else if self.one_phase {
                    self.replied = true;
                    vec![Action::Reply(Outcome::Unknown)]
                } else {
                    Vec::new()
                }
            }
            Event::ReplyWaitElapsed => Vec::new(),
        }
    }

    fn require_active(&self) -> Result<(), Refusal> {
        match self.state {
            State::Active => Ok(()),
            State::Aborting | State::Aborted => match &self.abort {
                Some(abort) if abort.kind == AbortKind::Client => {
                    Err(Refusal::NotActive("the transaction was rolled back".to_owned()))
                }
                Some(abort) => Err(Refusal::Aborted(abort.clone())),
                None => Err(Refusal::NotActive("the transaction aborted".to_owned())),
            },
            State::Preparing | State::Logging => Err(Refusal::NotActive("the transaction is committing".to_owned())),
            State::Committing | State::Committed => Err(Refusal::NotActive("the transaction is committed".to_owned())),
        }
    }

    fn start_commit(&mut self) -> Vec<Action> {
        match self.branches.len() {
            0 => {
                self.state = State::Committed;
                self.replied = true;
                vec![Action::Reply(Outcome::Committed)]
            }
            1 => {
                self.state = State::Committing;
                self.one_phase = true;
                self.reply_wait_started = true;
                let (name, branch) = self.branches.iter_mut().next().expect("one branch");
                branch.state = BranchState::Committing;
                branch.in_flight = true;
                vec![Action::CommitOnePhase(name.clone()), Action::StartOnePhaseWait]
            }
            _ => {
                self.state = State::Preparing;
                self.branches
                    .iter_mut()
                    .map(|(name, branch)| {
                        branch.state = BranchState::Preparing;
                        branch.in_flight = true;
                        Action::Prepare(name.clone())
                    })
                    .collect()
            }
        }
    }

    /// Decides ABORT: roll back every branch that may hold anything, now or
    /// as soon as its in-flight RPC answers.
    fn start_abort(&mut self, abort: Abort) -> Vec<Action> {
        self.state = State::Aborting;
        self.abort = Some(abort);
        let mut actions = Vec::new();
        for (name, branch) in &mut self.branches {
            if branch.in_flight {
                branch.rollback_pending = true;
            } else if branch.start_rollback() {
                actions.push(Action::Rollback(name.clone()));
            }
        }
        self.after_progress(actions)
    }

    fn on_executed(&mut self, participant: &str, result: Result<(), Failure>) -> Vec<Action> {
        let Some(branch) = self.branches.get_mut(participant) else {
            return Vec::new();
        };
        branch.in_flight = false;
        let mut actions = self.flush_pending_rollback(participant);
        if let Err(failure) = result {
            // A failed Execute aborts the whole transaction. The branch may
            // have begun although the reply was lost: it is rolled back too
            // (the participant answers a rollback of an unknown or
            // rolled-back branch with success).
            if self.state == State::Active {
                actions.extend(self.start_abort(Abort::failed(failure)));
            }
        }
        actions
    }

    fn on_voted(&mut self, participant: &str, result: Result<Vote, Failure>) -> Vec<Action> {
        let Some(branch) = self.branches.get_mut(participant) else {
            return Vec::new();
        };
        if branch.state != BranchState::Preparing {
            return Vec::new();
        }
        branch.in_flight = false;
        let mut abort = None;
        match result {
            Ok(Vote::Yes) => branch.state = BranchState::Prepared,
            Ok(Vote::YesHeld) if self.confirming => {
                // Asked to prepare, the participant kept it unprepared.
                branch.state = BranchState::YesHeld;
                abort = Some(Abort {
                    reason: format!("participant {participant} did not prepare its held branch"),
                    kind: AbortKind::Failed,
                });
            }
            Ok(Vote::YesHeld) => branch.state = BranchState::YesHeld,
            Ok(Vote::ReadOnly { held: false }) => branch.state = BranchState::ReadOnly,
            Ok(Vote::ReadOnly { held: true }) if self.confirming => {
                // Asked to end the branch, the participant kept it open.
                branch.state = BranchState::ReadOnlyHeld;
                abort = Some(Abort {
                    reason: format!("participant {participant} did not confirm its read-only branch"),
                    kind: AbortKind::Failed,
                });
            }
            Ok(Vote::ReadOnly { held: true }) => branch.state = BranchState::ReadOnlyHeld,
            Ok(Vote::No(reason)) => {
                branch.state = BranchState::RolledBack;
                abort = Some(Abort {
                    reason,
                    kind: AbortKind::Failed,
                });
            }
            Err(failure) => {
                // The branch may be prepared although the reply was lost:
                // unless the participant said it rolled back, roll it back.
                branch.state = if failure.rolled_back {
                    BranchState::RolledBack
                } else {
                    BranchState::Active
                };
                abort = Some(Abort::failed(failure));
            }
        }
        let mut actions = Vec::new();
        if let Some(abort) = abort
            && self.state == State::Preparing
        {
            actions.extend(self.start_abort(abort));
        }
        actions.extend(self.flush_pending_rollback(participant));
        if self.state == State::Preparing && self.branches.values().all(|b| b.state != BranchState::Preparing) {
            // Every branch has taken its locks: the held ones must still
            // hold theirs now (see step 2 above).
            let confirms: Vec<Action> = self
                .branches
                .iter_mut()
                .filter(|(_, b)| matches!(b.state, BranchState::ReadOnlyHeld | BranchState::YesHeld))
                .map(|(name, branch)| {
                    branch.state = BranchState::Preparing;
                    branch.in_flight = true;
                    Action::Prepare(name.clone())
                })
                .collect();
            if !confirms.is_empty() {
                self.confirming = true;
                actions.extend(confirms);
                return actions;
            }
            let yes: Vec<String> = self
                .branches
                .iter()
                .filter(|(_, b)| b.state == BranchState::Prepared)
                .map(|(name, _)| name.clone())
                .collect();
            if yes.is_empty() {
                // Every branch was read-only and is finished: nothing to
                // commit, nothing to log.
                self.state = State::Committing;
                return self.after_progress(actions);
            }
            self.state = State::Logging;
            self.logged = true;
            actions.push(Action::LogCommit(yes));
        }
        actions
    }

    fn on_one_phase(&mut self, participant: &str, result: Result<(), Failure>) -> Vec<Action> {
        let Some(branch) = self.branches.get_mut(participant) else {
            return Vec::new();
        };
        branch.in_flight = false;
        match result {
            Ok(()) => {
                branch.state = BranchState::Committed;
                self.one_phase = false;
                self.after_progress(Vec::new())
            }
            Err(failure) if failure.rolled_back || failure.invalid_argument => {
                branch.state = BranchState::RolledBack;
                self.one_phase = false;
                self.state = State::Aborting;
                self.abort = Some(Abort::failed(failure));
                self.after_progress(Vec::new())
            }
            // The branch's fate is unknown (transport error): ask again. The
            // participant answers a repeated one-phase commit from its
            // record of the branch.
            Err(_) => vec![Action::Retry(participant.to_owned())],
        }
    }

    fn on_logged(&mut self) -> Vec<Action> {
        if self.state != State::Logging {
            return Vec::new();
        }
        self.state = State::Committing;
        let mut actions = vec![Action::StartReplyWait];
        self.reply_wait_started = true;
        for (name, branch) in &mut self.branches {
            if branch.state == BranchState::Prepared {
                branch.state = BranchState::Committing;
                actions.push(Action::Commit(name.clone()));
            }
        }
        actions
    }

    fn on_phase2(&mut self, participant: &str, result: Result<(), Failure>) -> Vec<Action> {
        let Some(branch) = self.branches.get_mut(participant) else {
            return Vec::new();
        };
        match (branch.state, result) {
            (BranchState::Committing, Err(failure)) if failure.heuristic => {
                branch.state = BranchState::HeuristicRollback;
                self.hazards.push(format!("{participant}: {}", failure.reason));
            }
            (BranchState::RollingBack, Err(failure)) if failure.heuristic => {
                branch.state = BranchState::HeuristicCommit;
                self.hazards.push(format!("{participant}: {}", failure.reason));
            }
            (BranchState::Committing, Ok(())) => branch.state = BranchState::Committed,
            (BranchState::RollingBack, Ok(())) => branch.state = BranchState::RolledBack,
            (BranchState::Releasing, Ok(())) => branch.state = BranchState::ReadOnly,
            (BranchState::Committing | BranchState::RollingBack | BranchState::Releasing, Err(_)) => {
                // Phase 2 never gives up.
                return vec![Action::Retry(participant.to_owned())];
            }
            _ => return Vec::new(),
        }
        self.after_progress(Vec::new())
    }

    fn flush_pending_rollback(&mut self, participant: &str) -> Vec<Action> {
        let Some(branch) = self.branches.get_mut(participant) else {
            return Vec::new();
        };
        if !branch.rollback_pending || branch.in_flight {
            return Vec::new();
        }
        branch.rollback_pending = false;
        let mut actions = Vec::new();
        if branch.start_rollback() {
            actions.push(Action::Rollback(participant.to_owned()));
        }
        self.after_progress(actions)
    }

    fn is_decided(&self) -> bool {
        match self.state {
            State::Committing => !self.one_phase,
            State::Committed | State::Aborting | State::Aborted => true,
            State::Active | State::Preparing | State::Logging => false,
        }
    }

    fn outcome(&self) -> Outcome {
        match &self.abort {
            Some(abort) => Outcome::Aborted(abort.clone()),
            None => Outcome::Committed,
        }
    }

    /// Finishes the transaction when every branch is done, and answers the
    /// waiting client (once).
    fn after_progress(&mut self, mut actions: Vec<Action>) -> Vec<Action> {
        let settled = self.branches.values().all(Branch::is_settled);
        match self.state {
            State::Committing if settled => {
                self.state = State::Committed;
                // A hazard keeps its COMMIT without an END, so a restarted
                // coordinator checks (and reports) it again.
                if self.logged && self.hazards.is_empty() {
                    actions.push(Action::LogEnd);
                }
            }
            State::Aborting if settled => self.state = State::Aborted,
            State::Aborting if self.waiting && !self.reply_wait_started => {
                self.reply_wait_started = true;
                actions.push(Action::StartReplyWait);
            }
            _ => {}
        }
        if self.is_done() && self.waiting && !self.replied {
            self.replied = true;
            actions.push(Action::Reply(self.outcome()));
        }
        actions
    }
}

#[cfg(test)]
mod tests;
