//! The two-phase commit state machine of one global transaction, without IO.
//!
//! The actor feeds it client requests and protocol events and executes the
//! [`Action`]s it returns (RPCs to participants, replies to clients). The
//! decision lives in the participants (docs/protocol.md, checked in
//! `model/`): **a transaction is committed iff every branch of its
//! participant set is durably YES** — a writing branch prepared, with its
//! marker row (which carries the set) inside it; a read-only branch's
//! marker row committed. Nothing is logged here, so any coordinator
//! replica can resolve any transaction from the participants alone.
//!
//! 1. [`State::Preparing`]: prepare every branch in parallel (a Submit's
//!    branches run their statements in the same round trip). The
//!    participant set is every branch of a Submit, and the branches that
//!    wrote of an interactive transaction (the others vote READ_ONLY and
//!    are finished).
//! 2. [`State::Confirming`]: a Submit's branch votes while other branches
//!    may still be running, so a read-only one keeps its locks (held), and
//!    so does a writing one that read ([`Vote::YesHeld`]): a prepared
//!    branch whose database restarts keeps the exclusive locks of the rows
//!    it changed but not the shared locks of the rows it read. Once every
//!    vote is in, each held branch is prepared again on the session that
//!    holds its locks: a writer prepares, a reader commits its marker row.
//!    That proves the locks were held at an instant when every branch held
//!    all of its own, and makes the YES durable.
//! 3. [`State::Committing`]: every branch is durably YES, so the
//!    transaction is committed. With [`Ack::Durable`] the client is
//!    answered now; otherwise after phase 2 (or `--reply-wait-ms`). Phase 2
//!    commits every prepared branch, retrying until each acknowledges.
//! 4. [`State::OnePhase`]: a transaction with one branch commits it in one
//!    phase.
//!
//! **Never abort on silence.** A branch whose vote did not come (a lost
//! reply, a timeout) may be prepared, and a resolver finding every branch
//! prepared would commit. So before it counts as NO it is *fenced*
//! ([`Action::Inquire`]): the participant inserts a fence row under the
//! branch's marker key, after which the branch can never prepare; or the
//! insert collides with the marker, and the branch is YES after all. An
//! explicit NO needs no fence: the branch is rolled back and no one will
//! begin it again. Before any prepare is sent, nothing can commit, and an
//! abort needs no fence either.
//!
//! A rollback is never sent to a branch while an Execute, Prepare or
//! Inquire on it is in flight: the participant serialises a branch's
//! requests, but a rollback overtaking the Execute that begins the branch
//! would find nothing and let the branch start afterwards.
//!
//! A branch found rolled back although the transaction committed (or the
//! reverse) is a heuristic hazard: recorded, reported, never retried away.

use std::collections::BTreeMap;

/// The abort reason when the client asked for the rollback.
pub const CLIENT_ROLLBACK: &str = "rolled back by the client";
/// Why a transaction still running statements when its coordinator's
/// drain time ran out aborted.
pub const DRAINED: &str = "rolled back: the coordinator is shutting down and the transaction did not commit within its drain time \
     (--drain-timeout-ms)";
/// The abort reason when the deadline passed.
pub const DEADLINE_PASSED: &str = "the transaction's deadline passed";

/// The transaction's state, as `GetTransaction` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    /// Votes are being collected (or a missing one fenced).
    Preparing,
    /// Every vote is in; held branches are confirming their locks.
    Confirming,
    /// The only branch is committing in one phase: not decided until it
    /// answers.
    OnePhase,
    /// Committed; phase 2 is running.
    Committing,
    Aborting,
    Committed,
    Aborted,
}

/// When the client hears that its transaction committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ack {
    /// After phase 2 (or `--reply-wait-ms`): a plain read right after the
    /// answer sees the writes.
    #[default]
    Visible,
    /// As soon as every branch is durably YES, before phase 2.
    Durable,
}

/// One participant's branch, as the coordinator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchState {
    Active,
    /// A vote (Prepare, or a Submit's Execute) is in flight.
    Preparing,
    /// Its vote did not come: it is being fenced (an Inquire in flight, or
    /// waiting to ask again).
    Fencing,
    Prepared,
    /// Voted READ_ONLY and finished (or, in the participant set, its marker
    /// row committed): no phase 2.
    ReadOnly,
    /// Voted READ_ONLY but still holds its locks until confirmed or
    /// released.
    ReadOnlyHeld,
    /// Voted YES but is not prepared yet: it read rows, and holds its
    /// locks unprepared until every branch has voted.
    YesHeld,
    /// A held read-only branch being released (a rollback RPC).
    Releasing,
    Committing,
    Committed,
    RollingBack,
    RolledBack,
    /// Heuristic hazard: committed, found rolled back.
    HeuristicRollback,
    /// Heuristic hazard: aborted, found committed.
    HeuristicCommit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Branch {
    state: BranchState,
    /// An Execute, Prepare or Inquire RPC on this branch has not answered
    /// yet.
    in_flight: bool,
    /// Roll back as soon as the in-flight RPC answers.
    rollback_pending: bool,
    /// It has run a statement that may write (interactive transactions).
    wrote: bool,
    /// It voted READ_ONLY held: a commit found by fencing it is its marker.
    reader: bool,
    /// Why its vote did not come, for the abort reason if it is fenced.
    lost: Option<String>,
    /// The participant has answered for it: it holds something (a Submit's
    /// branch begins with the request that asks for its vote).
    began: bool,
}

impl Branch {
    fn new() -> Self {
        Self {
            state: BranchState::Active,
            in_flight: false,
            rollback_pending: false,
            wrote: false,
            reader: false,
            lost: None,
            began: false,
        }
    }

    /// Starts rolling the branch back (or releasing a held read-only one);
    /// `true` when a Rollback RPC must go out for it.
    fn start_rollback(&mut self) -> bool {
        match self.state {
            // Finished: a confirmed reader's committed marker changes no
            // data, and a committed writer is reported by phase 2.
            BranchState::ReadOnly
            | BranchState::RolledBack
            | BranchState::RollingBack
            | BranchState::Releasing
            | BranchState::Committed
            | BranchState::HeuristicRollback
            | BranchState::HeuristicCommit => false,
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

    /// Its vote is not in yet.
    fn voting(&self) -> bool {
        matches!(self.state, BranchState::Preparing | BranchState::Fencing)
    }
}

/// A participant's vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vote {
    Yes,
    /// Wrote and read; holds its locks unprepared until asked again.
    YesHeld,
    /// `held`: the branch still holds its locks and must be confirmed or
    /// released.
    ReadOnly {
        held: bool,
    },
    No(String),
}

/// What fencing a branch found (the participant's `Inquire`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Not there, and fenced: it can never prepare. A durable NO.
    None,
    /// Still running: ask again.
    Active,
    Prepared,
    /// Its marker row is committed.
    Committed,
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

    fn no(reason: String) -> Self {
        Self {
            reason,
            kind: AbortKind::Failed,
        }
    }

    fn deadline() -> Self {
        Self {
            reason: DEADLINE_PASSED.to_owned(),
            kind: AbortKind::Deadline,
        }
    }
}

/// The outcome announced to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    Aborted(Abort),
    /// A one-phase commit whose answer has not come, or a vote that could
    /// not be fenced by the deadline (its participant unreachable): the
    /// client is told the outcome is not known yet (GetTransaction will
    /// say).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The Execute on `participant` answered: whether the branch wrote.
    Executed {
        participant: String,
        result: Result<bool, Failure>,
    },
    /// The prepare on `participant` answered (Prepare RPC, or Execute with
    /// prepare for Submit).
    Voted {
        participant: String,
        result: Result<Vote, Failure>,
    },
    /// Fencing `participant`'s branch answered.
    Inquired {
        participant: String,
        result: Result<Fate, Failure>,
    },
    /// The one-phase commit answered.
    OnePhaseDone {
        participant: String,
        result: Result<(), Failure>,
    },
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
    /// The coordinator is draining and its drain time is up: a
    /// transaction still running statements rolls back; one deciding
    /// finishes.
    Drained,
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
    /// No connection was made: the request never arrived, and is never
    /// sent again, so it began or prepared nothing (the branch may still
    /// hold what earlier requests did).
    pub not_delivered: bool,
    /// (keyed gtrids) The participant holds this gtrid from an earlier
    /// attempt of the transaction: nothing of this attempt is there, and
    /// that branch is not this attempt's to roll back.
    pub exists: bool,
}

impl Failure {
    pub fn unknown(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            invalid_argument: false,
            rolled_back: false,
            heuristic: false,
            not_delivered: false,
            exists: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Prepare the branch (for Submit: run its statements and prepare),
    /// sending the participant set ([`Engine::participant_set`]).
    Prepare(String),
    /// Commit the transaction's only branch in one phase (for Submit: run
    /// its statements and commit).
    CommitOnePhase(String),
    /// Fence the branch: ask the participant how it ended, inserting a
    /// fence row if it is not there.
    Inquire(String),
    /// Phase 2.
    Commit(String),
    /// Roll back the branch, or release a held read-only one.
    Rollback(String),
    /// Retry a failed phase-2 RPC or inquiry (or ask again how a one-phase
    /// commit ended) after a backoff.
    Retry(String),
    /// Start the bounded wait before answering the client.
    StartReplyWait,
    /// Start the wait after which an unanswered one-phase commit is
    /// reported as not known yet: from the deadline on (the same RPC may
    /// still be running a Submit's statements until then).
    StartOnePhaseWait,
    /// Answer every client waiting for the outcome.
    Reply(Outcome),
}

/// Why a client request is refused in the current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The transaction aborted, with why.
    Aborted(Abort),
    /// Not possible in this state (FAILED_PRECONDITION).
    NotActive(String),
}

/// Where the client's answer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// No client waits for the outcome (yet).
    Idle,
    /// A client waits (Commit, Rollback or Submit).
    Waiting,
    /// It waits, and the bounded wait before answering it has started.
    WaitTimed,
    /// It was answered.
    Answered,
}

#[derive(Debug, Clone)]
pub struct Engine {
    state: State,
    branches: BTreeMap<String, Branch>,
    /// The branches that must all be durably YES: set when the commit
    /// starts.
    participant_set: Vec<String>,
    abort: Option<Abort>,
    client: Client,
    ack: Ack,
    /// The deadline passed while the votes were being collected: an abort
    /// found then is reported as the deadline's.
    deadline_passed: bool,
    /// Heuristic hazards found in phase 2, one line per branch.
    hazards: Vec<String>,
    /// The gtrid comes from a client key: a later attempt of the same
    /// transaction may begin any branch that holds nothing, so only a
    /// fenced branch is a durable NO (a request that never left is not).
    keyed: bool,
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
            participant_set: Vec::new(),
            abort: None,
            client: Client::Idle,
            ack: Ack::Visible,
            deadline_passed: false,
            hazards: Vec::new(),
            keyed: false,
        }
    }

    /// The engine of a transaction whose gtrid comes from a client key.
    pub fn keyed() -> Self {
        Self {
            keyed: true,
            ..Self::new()
        }
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

    /// The participant set sent with every prepare and one-phase commit.
    pub fn participant_set(&self) -> &[String] {
        &self.participant_set
    }

    pub fn branches(&self) -> impl Iterator<Item = (&str, BranchState)> {
        self.branches.iter().map(|(name, b)| (name.as_str(), b.state))
    }

    pub fn branch(&self, participant: &str) -> Option<BranchState> {
        self.branches.get(participant).map(|b| b.state)
    }

    /// Whether the transaction is over and no RPC is outstanding.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Committed | State::Aborted)
    }

    /// Whether the deadline still matters (nothing was prepared yet, or the
    /// votes are still coming).
    pub fn deadline_applies(&self) -> bool {
        matches!(self.state, State::Active | State::Preparing | State::Confirming) && !self.deadline_passed
    }

    /// Whether the outcome is decided: committed, or aborted.
    pub fn is_decided(&self) -> bool {
        matches!(
            self.state,
            State::Committing | State::Committed | State::Aborting | State::Aborted
        )
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

    /// A client's Commit. The participant set is the branches that wrote.
    pub fn commit(&mut self, ack: Ack) -> Result<Vec<Action>, Refusal> {
        self.require_active()?;
        if let Some((name, _)) = self.branches.iter().find(|(_, b)| b.in_flight) {
            return Err(Refusal::NotActive(format!(
                "an Execute on participant {name} is still running in this transaction"
            )));
        }
        self.client = Client::Waiting;
        self.ack = ack;
        self.participant_set = if self.branches.len() == 1 {
            self.branches.keys().cloned().collect()
        } else {
            self.branches
                .iter()
                .filter(|(_, b)| b.wrote)
                .map(|(name, _)| name.clone())
                .collect()
        };
        Ok(self.start_commit())
    }

    /// A one-shot Submit: every branch runs its statements and is prepared
    /// (or committed in one phase) in a single RPC. Every branch is in the
    /// participant set: which ones write is not known before they vote.
    pub fn submit(&mut self, participants: &[String], ack: Ack) -> Result<Vec<Action>, Refusal> {
        self.require_active()?;
        if !self.branches.is_empty() {
            return Err(Refusal::NotActive("Submit needs a fresh transaction".to_owned()));
        }
        for p in participants {
            self.branches.insert(p.clone(), Branch::new());
        }
        self.client = Client::Waiting;
        self.ack = ack;
        self.participant_set = participants.to_vec();
        Ok(self.start_commit())
    }

    /// A client's Rollback: `Ok(None)` when the transaction already aborted
    /// (the decision is final; answer at once), otherwise the actions and a
    /// reply once every branch is rolled back.
    pub fn rollback(&mut self) -> Result<Option<Vec<Action>>, Refusal> {
        match self.state {
            State::Active => {
                self.client = Client::Waiting;
                Ok(Some(self.start_abort(Abort {
                    reason: CLIENT_ROLLBACK.to_owned(),
                    kind: AbortKind::Client,
                })))
            }
            State::Aborting | State::Aborted => Ok(None),
            State::Preparing | State::Confirming | State::OnePhase => Err(Refusal::NotActive(
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
            Event::Inquired { participant, result } => self.on_inquired(&participant, result),
            Event::OnePhaseDone { participant, result } => self.on_one_phase(&participant, result),
            Event::Phase2Done { participant, result } => self.on_phase2(&participant, result),
            Event::DeadlineExpired => self.on_deadline(),
            Event::ReplyWaitElapsed => self.on_reply_wait(),
            Event::Drained => match self.state {
                // Nothing was prepared: nothing can commit.
                State::Active => self.start_abort(Abort {
                    reason: DRAINED.to_owned(),
                    kind: AbortKind::Failed,
                }),
                _ => Vec::new(),
            },
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
            State::Preparing | State::Confirming | State::OnePhase => {
                Err(Refusal::NotActive("the transaction is committing".to_owned()))
            }
            State::Committing | State::Committed => Err(Refusal::NotActive("the transaction is committed".to_owned())),
        }
    }

    fn start_commit(&mut self) -> Vec<Action> {
        match self.branches.len() {
            0 => {
                self.state = State::Committed;
                self.client = Client::Answered;
                vec![Action::Reply(Outcome::Committed)]
            }
            1 => {
                self.state = State::OnePhase;
                self.client = Client::WaitTimed;
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
    /// as soon as its in-flight RPC answers. Past the Active state this
    /// needs a durable NO (a NO vote, a fenced branch).
    fn start_abort(&mut self, abort: Abort) -> Vec<Action> {
        self.state = State::Aborting;
        self.abort = Some(if self.deadline_passed && abort.kind == AbortKind::Failed {
            Abort::deadline()
        } else {
            abort
        });
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

    fn on_deadline(&mut self) -> Vec<Action> {
        match self.state {
            // Nothing was prepared: nothing can commit.
            State::Active => self.start_abort(Abort::deadline()),
            // A vote may still turn YES, and aborting on silence could
            // contradict a resolver that finds every branch prepared. The
            // votes' RPCs end by their own timeouts (the participants roll
            // back an unprepared branch shortly after the deadline), and a
            // missing one is fenced. A client still waiting after the reply
            // wait is told the outcome is not known yet.
            State::Preparing | State::Confirming => {
                self.deadline_passed = true;
                if self.client == Client::Waiting {
                    self.client = Client::WaitTimed;
                    return vec![Action::StartReplyWait];
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn on_reply_wait(&mut self) -> Vec<Action> {
        if !matches!(self.client, Client::Waiting | Client::WaitTimed) {
            return Vec::new();
        }
        if self.is_decided() {
            self.client = Client::Answered;
            vec![Action::Reply(self.outcome())]
        } else if self.state == State::OnePhase || self.deadline_passed {
            // A one-phase commit unanswered, or a branch past the deadline
            // still not fenced (its participant unreachable).
            self.client = Client::Answered;
            vec![Action::Reply(Outcome::Unknown)]
        } else {
            Vec::new()
        }
    }

    fn on_executed(&mut self, participant: &str, result: Result<bool, Failure>) -> Vec<Action> {
        let Some(branch) = self.branches.get_mut(participant) else {
            return Vec::new();
        };
        branch.in_flight = false;
        if let Ok(wrote) = result {
            branch.began = true;
            branch.wrote |= wrote;
        }
        // An earlier attempt's branch (keyed gtrids): not ours to roll back.
        if matches!(&result, Err(failure) if failure.exists) && !branch.began {
            branch.state = BranchState::RolledBack;
        }
        let mut actions = self.flush_pending_rollback(participant);
        if let Err(failure) = result {
            // A failed Execute aborts the whole transaction (nothing was
            // prepared: no fence needed). The branch may have begun although
            // the reply was lost: it is rolled back too (the participant
            // answers a rollback of an unknown or rolled-back branch with
            // success).
            if self.state == State::Active {
                actions.extend(self.start_abort(Abort::failed(failure)));
            }
        }
        actions
    }

    fn on_voted(&mut self, participant: &str, result: Result<Vote, Failure>) -> Vec<Action> {
        let confirming = self.state == State::Confirming;
        let Some(branch) = self.branches.get_mut(participant) else {
            return Vec::new();
        };
        if branch.state != BranchState::Preparing {
            return Vec::new();
        }
        branch.in_flight = false;
        let mut actions = Vec::new();
        let mut abort = None;
        if result.is_ok() {
            branch.began = true;
        }
        match result {
            Ok(Vote::Yes) => branch.state = BranchState::Prepared,
            Ok(Vote::ReadOnly { held: false }) => branch.state = BranchState::ReadOnly,
            Ok(Vote::YesHeld) if !confirming => branch.state = BranchState::YesHeld,
            Ok(Vote::ReadOnly { held: true }) if !confirming => {
                branch.state = BranchState::ReadOnlyHeld;
                branch.reader = true;
            }
            // Asked to confirm, the participant kept it held: not a durable
            // answer, so fence it.
            Ok(Vote::YesHeld | Vote::ReadOnly { held: true }) => {
                branch.state = BranchState::Fencing;
                branch.in_flight = true;
                actions.push(Action::Inquire(participant.to_owned()));
            }
            Ok(Vote::No(reason)) => {
                branch.state = BranchState::RolledBack;
                abort = Some(Abort::no(reason));
            }
            // The participant said it rolled the branch back.
            Err(failure) if failure.rolled_back => {
                branch.state = BranchState::RolledBack;
                abort = Some(Abort::failed(failure));
            }
            // The prepare never arrived and is never sent again: the branch
            // cannot prepare, a durable NO. One that began earlier is rolled
            // back like any other (it holds what its statements did); one
            // this request would have begun does not exist.
            Err(failure) if failure.not_delivered && !self.keyed => {
                branch.state = if branch.began {
                    BranchState::Active
                } else {
                    BranchState::RolledBack
                };
                abort = Some(Abort::failed(failure));
            }
            // The branch may be prepared although the reply was lost: fence
            // it before it counts as NO.
            Err(failure) => {
                branch.lost = Some(failure.reason);
                branch.state = BranchState::Fencing;
                branch.in_flight = true;
                actions.push(Action::Inquire(participant.to_owned()));
            }
        }
        actions.extend(self.after_vote(participant, abort));
        actions
    }

    fn on_inquired(&mut self, participant: &str, result: Result<Fate, Failure>) -> Vec<Action> {
        let Some(branch) = self.branches.get_mut(participant) else {
            return Vec::new();
        };
        if branch.state != BranchState::Fencing || !branch.in_flight {
            return Vec::new();
        }
        branch.in_flight = false;
        let mut abort = None;
        match result {
            Ok(Fate::Prepared) => branch.state = BranchState::Prepared,
            // A reader's marker row committed (its confirmation), or another
            // replica already committed the whole transaction.
            Ok(Fate::Committed) if branch.reader => branch.state = BranchState::ReadOnly,
            Ok(Fate::Committed) if self.state == State::Aborting => {
                branch.state = BranchState::HeuristicCommit;
                self.hazards.push(format!(
                    "{participant}: the transaction aborted, but its branch there is committed"
                ));
            }
            Ok(Fate::Committed) => branch.state = BranchState::Committed,
            Ok(Fate::None) => {
                branch.state = BranchState::RolledBack;
                abort = Some(Abort::no(match branch.lost.take() {
                    Some(why) => format!("{why} (its branch is fenced off: it never prepared)"),
                    None => format!(
                        "participant {participant} did not vote, and its branch is fenced off: it never prepared"
                    ),
                }));
            }
            // Still running, or no answer: ask again (it cannot stay so:
            // the participant rolls back an unprepared branch shortly after
            // the deadline), unless the transaction aborted meanwhile: then
            // roll it back. A held reader's confirmation may have committed
            // its marker, which a rollback would report as a hazard: it is
            // asked until the answer is definite.
            Ok(Fate::Active) | Err(_) if self.state == State::Aborting && !branch.reader => {}
            Ok(Fate::Active) | Err(_) => {
                branch.in_flight = true;
                return vec![Action::Retry(participant.to_owned())];
            }
        }
        self.after_vote(participant, abort)
    }

    /// After a vote or fence answered: abort on a durable NO, flush a
    /// rollback that waited for the answer, and move on once every vote is
    /// in.
    fn after_vote(&mut self, participant: &str, abort: Option<Abort>) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(abort) = abort
            && matches!(self.state, State::Preparing | State::Confirming)
        {
            actions.extend(self.start_abort(abort));
        }
        actions.extend(self.flush_pending_rollback(participant));
        if !matches!(self.state, State::Preparing | State::Confirming) || self.branches.values().any(Branch::voting) {
            return actions;
        }
        if self.state == State::Preparing {
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
                self.state = State::Confirming;
                actions.extend(confirms);
                return actions;
            }
        }
        actions.extend(self.committed());
        actions
    }

    /// Every branch is durably YES: the transaction is committed.
    fn committed(&mut self) -> Vec<Action> {
        self.state = State::Committing;
        let mut actions = Vec::new();
        if self.ack == Ack::Durable && matches!(self.client, Client::Waiting | Client::WaitTimed) {
            self.client = Client::Answered;
            actions.push(Action::Reply(Outcome::Committed));
        } else if self.client == Client::Waiting {
            self.client = Client::WaitTimed;
            actions.push(Action::StartReplyWait);
        }
        for (name, branch) in &mut self.branches {
            if branch.state == BranchState::Prepared {
                branch.state = BranchState::Committing;
                actions.push(Action::Commit(name.clone()));
            }
        }
        self.after_progress(actions)
    }

    fn on_one_phase(&mut self, participant: &str, result: Result<(), Failure>) -> Vec<Action> {
        let Some(branch) = self.branches.get_mut(participant) else {
            return Vec::new();
        };
        branch.in_flight = false;
        match result {
            Ok(()) => {
                branch.state = BranchState::Committed;
                self.state = State::Committing;
                self.after_progress(Vec::new())
            }
            Err(failure) if failure.rolled_back || failure.invalid_argument => {
                branch.state = BranchState::RolledBack;
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

    fn outcome(&self) -> Outcome {
        match &self.abort {
            Some(abort) => Outcome::Aborted(abort.clone()),
            None => Outcome::Committed,
        }
    }

    /// Finishes the transaction when every branch is done, and answers the
    /// waiting client (once). An abort is answered once every branch is
    /// rolled back, or after the bounded wait.
    fn after_progress(&mut self, mut actions: Vec<Action>) -> Vec<Action> {
        let settled = self.branches.values().all(Branch::is_settled);
        match self.state {
            State::Committing if settled => self.state = State::Committed,
            State::Aborting if settled => self.state = State::Aborted,
            State::Aborting if self.client == Client::Waiting => {
                self.client = Client::WaitTimed;
                actions.push(Action::StartReplyWait);
            }
            _ => {}
        }
        if self.is_done() && matches!(self.client, Client::Waiting | Client::WaitTimed) {
            self.client = Client::Answered;
            actions.push(Action::Reply(self.outcome()));
        }
        actions
    }
}

#[cfg(test)]
mod tests;
