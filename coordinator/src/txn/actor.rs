//! The transaction actor: one tokio task per global transaction.
//!
//! It owns the [`Engine`], runs the engine's actions (RPCs to participants
//! in parallel, replies to clients), and feeds their results back as
//! events. Client requests reach it through a
//! [`TxnHandle`]; the gRPC handler only awaits the reply, so a client that
//! goes away cannot interrupt a protocol step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tandem_common::names;
use tandem_common::telemetry;
use tandem_proto::failpoints;
use tandem_proto::v1::{
    self as pb, BranchResults, BranchState as PbBranch, CommitResponse, Isolation, Statement, StatementResult,
    SubmitResponse, Then, TxnState,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::Status;
use tracing::{Instrument, Span, debug, error, field, warn};

use super::engine::{AbortKind, Ack, Action, BranchState, Engine, Event, Fate, Outcome, Refusal, State};
use crate::Shared;
use crate::metrics::{Phase, TxnLabels};
use crate::participants::{ExecuteCall, failure, vote_of};

type Reply<T> = oneshot::Sender<Result<T, Status>>;

enum Msg {
    Execute {
        participant: String,
        statements: Vec<Statement>,
        reply: Reply<Vec<StatementResult>>,
    },
    Commit(Ack, Reply<CommitResponse>),
    Rollback(Reply<()>),
    Submit {
        branches: Vec<pb::Branch>,
        ack: Ack,
        reply: Reply<SubmitResponse>,
    },
    /// The drain time is up ([`Event::Drained`]).
    Drain,
}

/// Cloneable address of a transaction actor.
#[derive(Clone)]
pub struct TxnHandle {
    tx: mpsc::Sender<Msg>,
}

/// Why a request to a transaction actor got no answer from it.
#[derive(Debug)]
pub enum CallError {
    /// The actor had already ended: answer from the registry's record.
    Ended,
    Status(Status),
}

/// What a transaction was started with.
pub struct Params {
    pub id: String,
    pub isolation: Isolation,
    pub timeout: Duration,
    /// The trace context of the client's Begin or Submit.
    pub parent: telemetry::Parent,
}

impl TxnHandle {
    /// Spawns the actor; it records itself in the registry until it ends.
    pub fn spawn(shared: Arc<Shared>, params: Params, record: Arc<std::sync::Mutex<super::Record>>) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let engine = if names::is_keyed_gtrid(&params.id) {
            Engine::keyed()
        } else {
            Engine::new()
        };
        // One trace per transaction: this span, a span per phase under it
        // (the participants' spans join through the RPCs' metadata).
        // (Only for the sampled share: an untraced one has no span at all.)
        let span = if params.parent.is_some() || telemetry::sample() {
            let span = tracing::info_span!(
                target: "tandem::trace",
                "transaction",
                gtrid = %params.id,
                api = field::Empty,
                outcome = field::Empty,
            );
            params.parent.adopt(&span);
            span
        } else {
            Span::none()
        };
        let phase = phase_span(&span, State::Active);
        let actor = TxnActor {
            deadline: Instant::now() + params.timeout,
            span: span.clone(),
            phase,
            params,
            shared,
            engine,
            ack: Ack::Visible,
            rx,
            inflight: FuturesUnordered::new(),
            executes: HashMap::new(),
            commit_waiters: Vec::new(),
            rollback_waiters: Vec::new(),
            submit: None,
            attempts: HashMap::new(),
            reply_wait: None,
            record,
            timing: Timing {
                state: State::Active,
                since: Instant::now(),
                finishing: None,
                asked: None,
                one_phase: false,
                api: "interactive",
            },
        };
        tokio::spawn(actor.run().instrument(span));
        Self { tx }
    }

    pub async fn execute(
        &self,
        participant: String,
        statements: Vec<Statement>,
    ) -> Result<Vec<StatementResult>, CallError> {
        self.call(|reply| Msg::Execute {
            participant,
            statements,
            reply,
        })
        .await
    }

    pub async fn commit(&self, ack: Ack) -> Result<CommitResponse, CallError> {
        self.call(|reply| Msg::Commit(ack, reply)).await
    }

    pub async fn rollback(&self) -> Result<(), CallError> {
        self.call(Msg::Rollback).await
    }

    pub async fn submit(&self, branches: Vec<pb::Branch>, ack: Ack) -> Result<SubmitResponse, CallError> {
        self.call(|reply| Msg::Submit { branches, ack, reply }).await
    }

    /// Tells the actor the coordinator's drain time is up: a transaction
    /// still running statements rolls back.
    pub async fn drain(&self) {
        let _ = self.tx.send(Msg::Drain).await;
    }

    async fn call<T>(&self, msg: impl FnOnce(Reply<T>) -> Msg) -> Result<T, CallError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(msg(reply)).await.map_err(|_| CallError::Ended)?;
        rx.await.map_err(|_| CallError::Ended)?.map_err(CallError::Status)
    }
}

/// The result of an RPC or timer, fed back into the actor.
enum Done {
    Event(Event),
    /// A prepare or one-phase commit answered; for Submit with the
    /// branch's results.
    Ran {
        participant: String,
        results: Option<Vec<StatementResult>>,
        /// (keyed) An earlier attempt ran this branch: no results.
        earlier: bool,
        event: Event,
    },
    Executed {
        participant: String,
        /// The results, and whether the branch wrote.
        result: Result<(Vec<StatementResult>, bool), Status>,
    },
    RetryDue(String),
}

/// A Submit in progress: each branch's statements until they are sent, and
/// their results.
/// Room in a client's answer for what is not results (ids, reasons,
/// framing).
const RESPONSE_OVERHEAD: u64 = 64 << 10;

struct SubmitState {
    order: Vec<String>,
    statements: HashMap<String, Vec<Statement>>,
    results: HashMap<String, Vec<StatementResult>>,
    /// Branches an earlier attempt with the same key ran.
    earlier: Vec<String>,
    reply: Reply<SubmitResponse>,
}

struct TxnActor {
    params: Params,
    deadline: Instant,
    /// The transaction's trace span, and the span of its current phase
    /// (the parent of the RPCs sent in it).
    span: Span,
    phase: Span,
    shared: Arc<Shared>,
    engine: Engine,
    /// When the client asked to be answered.
    ack: Ack,
    rx: mpsc::Receiver<Msg>,
    inflight: FuturesUnordered<BoxFuture<'static, Done>>,
    executes: HashMap<String, Reply<Vec<StatementResult>>>,
    commit_waiters: Vec<Reply<CommitResponse>>,
    rollback_waiters: Vec<Reply<()>>,
    submit: Option<SubmitState>,
    /// Failed phase-2 attempts per participant, for the backoff.
    attempts: HashMap<String, u32>,
    reply_wait: Option<Instant>,
    /// What GetTransaction shows; shared with the registry.
    record: Arc<std::sync::Mutex<super::Record>>,
    timing: Timing,
}

/// When the transaction's steps began, for the metrics.
struct Timing {
    /// The engine's state last published, and since when.
    state: State,
    since: Instant,
    /// When it left `Active` for a decision (prepare or one-phase commit).
    finishing: Option<Instant>,
    /// When the client asked for the outcome (Submit or Commit).
    asked: Option<Instant>,
    one_phase: bool,
    api: &'static str,
}

impl TxnActor {
    async fn run(mut self) {
        loop {
            let deadline = Some(self.deadline).filter(|_| self.engine.deadline_applies());
            tokio::select! {
                // The registry holds a handle until the actor ends, so the
                // mailbox stays open.
                Some(msg) = self.rx.recv() => self.handle(msg),
                Some(done) = self.inflight.next(), if !self.inflight.is_empty() => self.on_done(done),
                () = sleep_until(deadline) => {
                    debug!(txn = %self.params.id, "deadline passed");
                    let actions = self.engine.on(Event::DeadlineExpired);
                    self.act(actions);
                }
                () = sleep_until(self.reply_wait) => {
                    self.reply_wait = None;
                    let actions = self.engine.on(Event::ReplyWaitElapsed);
                    self.act(actions);
                }
            }
            self.publish();
            if self.engine.is_done() && self.inflight.is_empty() {
                break;
            }
        }
        self.count_ended();
        self.shared.txns.finish(&self.params.id);
        // Requests that raced with the end get the engine's final answer.
        self.rx.close();
        while let Some(msg) = self.rx.recv().await {
            self.handle(msg);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Execute {
                participant,
                statements,
                reply,
            } => match self.engine.execute(&participant) {
                Ok(begin) => {
                    let p = Arc::clone(self.participant(&participant));
                    let gtrid = self.params.id.clone();
                    let isolation = self.params.isolation;
                    let timeout = self.remaining();
                    let budget = self.result_budget(1);
                    self.executes.insert(participant.clone(), reply);
                    self.send(async move {
                        let result = p
                            .execute(
                                &gtrid,
                                statements,
                                ExecuteCall {
                                    begin,
                                    isolation,
                                    timeout,
                                    then: Then::KeepOpen,
                                    max_result_bytes: budget,
                                    participants: Vec::new(),
                                },
                            )
                            .await
                            .map(|r| (r.results, r.wrote));
                        Done::Executed { participant, result }
                    });
                }
                Err(refusal) => {
                    let _ = reply.send(Err(self.refusal_status(refusal)));
                }
            },
            Msg::Commit(ack, reply) => match self.engine.commit(ack) {
                Ok(actions) => {
                    self.ack = ack;
                    self.timing.asked.get_or_insert_with(Instant::now);
                    self.commit_waiters.push(reply);
                    self.act(actions);
                }
                Err(refusal) => {
                    let _ = reply.send(Err(self.refusal_status(refusal)));
                }
            },
            Msg::Rollback(reply) => match self.engine.rollback() {
                Ok(Some(actions)) => {
                    self.rollback_waiters.push(reply);
                    self.act(actions);
                }
                // Already aborted: the decision is final.
                Ok(None) => {
                    let _ = reply.send(Ok(()));
                }
                Err(refusal) => {
                    let _ = reply.send(Err(self.refusal_status(refusal)));
                }
            },
            Msg::Drain => {
                let actions = self.engine.on(Event::Drained);
                self.act(actions);
            }
            Msg::Submit { branches, ack, reply } => {
                let order: Vec<String> = branches.iter().map(|b| b.participant.clone()).collect();
                match self.engine.submit(&order, ack) {
                    Ok(actions) => {
                        self.ack = ack;
                        self.timing.api = "submit";
                        self.timing.asked.get_or_insert_with(Instant::now);
                        self.submit = Some(SubmitState {
                            order,
                            statements: branches.into_iter().map(|b| (b.participant, b.statements)).collect(),
                            results: HashMap::new(),
                            earlier: Vec::new(),
                            reply,
                        });
                        self.act(actions);
                    }
                    Err(refusal) => {
                        let _ = reply.send(Err(self.refusal_status(refusal)));
                    }
                }
            }
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Event(event) => {
                let actions = self.engine.on(event);
                self.act(actions);
            }
            Done::Executed { participant, result } => {
                let (reply, event_result) = match result {
                    Ok((results, wrote)) => (Ok(results), Ok(wrote)),
                    Err(status) => {
                        let failure = failure(&participant, &status);
                        (Err(()), Err(failure))
                    }
                };
                let actions = self.engine.on(Event::Executed {
                    participant: participant.clone(),
                    result: event_result,
                });
                if let Some(waiter) = self.executes.remove(&participant) {
                    let answer = match reply {
                        Ok(results) => Ok(results),
                        // The failure aborted the transaction: say why.
                        Err(()) => Err(self.abort_status()),
                    };
                    let _ = waiter.send(answer);
                }
                self.act(actions);
            }
            Done::Ran {
                participant,
                results,
                earlier,
                event,
            } => {
                if let Some(submit) = self.submit.as_mut() {
                    if earlier {
                        submit.earlier.push(participant.clone());
                    }
                    if let Some(results) = results {
                        submit.results.insert(participant, results);
                    }
                }
                let actions = self.engine.on(event);
                self.act(actions);
            }
            Done::RetryDue(participant) => self.resend_phase2(participant),
        }
    }

    /// Runs the engine's actions.
    fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Prepare(p) => self.send_finish(p, Then::Prepare),
                Action::CommitOnePhase(p) => self.send_finish(p, Then::CommitOnePhase),
                Action::Inquire(p) => self.send_inquire(p),
                Action::Commit(p) => self.send_phase2(p, true),
                Action::Rollback(p) => self.send_phase2(p, false),
                Action::Retry(p) => {
                    let attempt = self.attempts.entry(p.clone()).or_insert(0);
                    *attempt += 1;
                    let backoff = backoff(*attempt);
                    if *attempt >= 3 {
                        warn!(txn = %self.params.id, participant = %p, attempt, ?backoff, "no answer yet; asking again");
                    }
                    self.send(async move {
                        tokio::time::sleep(backoff).await;
                        Done::RetryDue(p)
                    });
                }
                Action::StartReplyWait => {
                    self.reply_wait = Some(Instant::now() + self.shared.config.reply_wait);
                }
                Action::StartOnePhaseWait => {
                    self.reply_wait = Some(self.deadline.max(Instant::now()) + self.shared.config.reply_wait);
                }
                Action::Reply(outcome) => self.reply(&outcome),
            }
        }
    }

    /// Prepares a branch (`Then::Prepare`) or commits the transaction's
    /// only branch in one phase (`Then::CommitOnePhase`). For Submit, the
    /// branch's statements go in the same round trip.
    fn send_finish(&mut self, participant: String, then: Then) {
        let p = Arc::clone(self.participant(&participant));
        let gtrid = self.params.id.clone();
        let timeout = self.remaining();
        let statements = self.take_submit_statements(&participant);
        let isolation = self.params.isolation;
        let budget = self.result_budget(self.submit.as_ref().map_or(1, |s| s.order.len()));
        let participants = self.engine.participant_set().to_vec();
        self.send(async move {
            let injected = if then == Then::Prepare {
                failpoints::hit("coordinator::before_prepare").await
            } else {
                Ok(())
            };
            let sent = match (injected, statements) {
                (Err(injected), _) => Err(Status::unavailable(injected)),
                (Ok(()), Some(statements)) => p
                    .execute(
                        &gtrid,
                        statements,
                        ExecuteCall {
                            begin: true,
                            isolation,
                            timeout,
                            then,
                            max_result_bytes: budget,
                            participants,
                        },
                    )
                    .await
                    .map(|r| (Some(r.results).filter(|_| !r.earlier), r.earlier, r.vote)),
                (Ok(()), None) if then == Then::Prepare => p
                    .prepare(&gtrid, participants, timeout)
                    .await
                    .map(|vote| (None, false, vote)),
                // A one-phase commit, or asking again how it ended: never
                // resend the statements.
                (Ok(()), None) => p.commit(&gtrid, true).await.map(|()| (None, false, None)),
            };
            let (results, earlier, result) = match sent {
                Ok((results, earlier, vote)) => (results, earlier, Ok(vote)),
                Err(status) => (None, false, Err(failure(&participant, &status))),
            };
            let event = if then == Then::Prepare {
                Event::Voted {
                    participant: participant.clone(),
                    result: result.map(vote_of),
                }
            } else {
                Event::OnePhaseDone {
                    participant: participant.clone(),
                    result: result.map(|_| ()),
                }
            };
            Done::Ran {
                participant,
                results,
                earlier,
                event,
            }
        });
    }

    /// Fences a branch whose vote did not come: the participant answers
    /// how it ended, inserting a fence row if it is not there.
    fn send_inquire(&mut self, participant: String) {
        let p = Arc::clone(self.participant(&participant));
        let gtrid = self.params.id.clone();
        self.send(async move {
            let result = match p.inquire(&gtrid, false).await {
                Ok(answer) => Ok(match answer.fate {
                    pb::BranchFate::Prepared => Fate::Prepared,
                    pb::BranchFate::Committed => Fate::Committed,
                    pb::BranchFate::None => Fate::None,
                    // (ABSENT answers only a probe; asked to fence, treat
                    // anything else as not definite.)
                    pb::BranchFate::Active | pb::BranchFate::Absent | pb::BranchFate::Unspecified => Fate::Active,
                }),
                Err(status) => Err(failure(&participant, &status)),
            };
            Done::Event(Event::Inquired { participant, result })
        });
    }

    fn send_phase2(&mut self, participant: String, commit: bool) {
        let p = Arc::clone(self.participant(&participant));
        let gtrid = self.params.id.clone();
        self.send(async move {
            let result = if commit {
                // Committed (every branch durably YES), and no participant
                // has heard so yet.
                let result = match failpoints::hit("coordinator::before_phase2").await {
                    Err(injected) => Err(Status::unavailable(injected)),
                    Ok(()) => p.commit(&gtrid, false).await,
                };
                if result.is_ok() {
                    // Between the commits of two participants.
                    let _ = failpoints::hit("coordinator::after_commit").await;
                }
                result
            } else {
                p.rollback(&gtrid).await
            };
            match &result {
                Err(status) if status.code() == tonic::Code::DataLoss => {
                    error!(txn = %gtrid, participant = %participant, commit, error = %status.message(), "HEURISTIC HAZARD: the branch ended the other way than decided");
                }
                Err(status) => {
                    warn!(txn = %gtrid, participant = %participant, commit, error = %status.message(), "phase 2 failed");
                }
                Ok(()) => {}
            }
            Done::Event(Event::Phase2Done {
                result: result.map_err(|s| failure(&participant, &s)),
                participant,
            })
        });
    }

    fn resend_phase2(&mut self, participant: String) {
        match self.engine.branch(&participant) {
            Some(BranchState::Committing) if self.engine.state() == State::OnePhase => {
                self.send_finish(participant, Then::CommitOnePhase);
            }
            Some(BranchState::Fencing) => self.send_inquire(participant),
            Some(BranchState::Committing) => self.send_phase2(participant, true),
            Some(BranchState::RollingBack | BranchState::Releasing) => self.send_phase2(participant, false),
            _ => {}
        }
    }

    /// The bytes of results each of `branches` parallel answers may carry,
    /// so that the client's answer stays within --max-result-bytes (less
    /// room for the rest of the message). A branch past it aborts before
    /// anything commits: never COMMITTED with results missing.
    fn result_budget(&self, branches: usize) -> u64 {
        let total = self.shared.config.max_result_bytes.saturating_sub(RESPONSE_OVERHEAD);
        (total / branches.max(1) as u64).max(1)
    }

    fn take_submit_statements(&mut self, participant: &str) -> Option<Vec<Statement>> {
        self.submit.as_mut().and_then(|s| s.statements.remove(participant))
    }

    /// Answers every client waiting for the outcome.
    fn reply(&mut self, outcome: &Outcome) {
        let id = &self.params.id;
        let pending = self.engine.pending().join(", ");
        // An error for the client instead of an outcome: a bad request, or
        // an outcome not known yet.
        let (code, reason, error) = match outcome {
            Outcome::Committed if pending.is_empty() || self.ack == Ack::Durable => {
                (pb::Outcome::Committed, String::new(), None)
            }
            Outcome::Committed => (
                pb::Outcome::Committed,
                format!("committed; phase 2 still running on: {pending}"),
                None,
            ),
            Outcome::Aborted(abort) if abort.kind == AbortKind::InvalidArgument => (
                pb::Outcome::Aborted,
                abort.reason.clone(),
                Some(Status::invalid_argument(format!(
                    "{}; transaction {id} aborted, nothing was applied",
                    abort.reason
                ))),
            ),
            Outcome::Aborted(abort) => (pb::Outcome::Aborted, abort.reason.clone(), None),
            // UNKNOWN, not UNAVAILABLE: resubmitting could apply the
            // transaction twice.
            Outcome::Unknown => (
                pb::Outcome::Unspecified,
                String::new(),
                Some(Status::unknown(format!(
                    "the outcome of transaction {id} is not known yet: {} has not answered; do not resubmit, \
                     ask GetTransaction",
                    self.unanswered()
                ))),
            ),
        };
        // Per transaction, so debug: at info a synchronous log write per
        // transaction costs more CPU than the actor's own work.
        match outcome {
            Outcome::Committed => debug!(txn = %id, "committed"),
            Outcome::Aborted(abort) => debug!(txn = %id, reason = %abort.reason, "aborted"),
            Outcome::Unknown => {
                warn!(txn = %id, "no answer from a participant; client told the outcome is unknown");
                self.shared.metrics.unknown_answer();
            }
        }
        if !self.span.is_disabled() {
            tracing::info!(target: "tandem::trace", parent: &self.span, answer = ?code, "client answered");
        }
        if let Some(asked) = self.timing.asked.take() {
            self.shared.metrics.phase(Phase::answer, asked.elapsed());
        }
        for waiter in self.commit_waiters.drain(..) {
            let answer = match &error {
                Some(status) => Err(status.clone()),
                None => Ok(CommitResponse {
                    outcome: code as i32,
                    reason: reason.clone(),
                }),
            };
            let _ = waiter.send(answer);
        }
        for waiter in self.rollback_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
        if let Some(mut submit) = self.submit.take() {
            let answer = match error {
                Some(status) => Err(status),
                None => {
                    let reason = if submit.earlier.is_empty() {
                        reason
                    } else {
                        submit.earlier.sort();
                        let earlier = format!(
                            "a Submit with this key already ran on {}: their results are not kept",
                            submit.earlier.join(", ")
                        );
                        if reason.is_empty() {
                            earlier
                        } else {
                            format!("{reason}; {earlier}")
                        }
                    };
                    let mut results = submit.results;
                    Ok(SubmitResponse {
                        txn_id: id.clone(),
                        outcome: code as i32,
                        reason,
                        results: if code == pb::Outcome::Committed {
                            submit
                                .order
                                .into_iter()
                                .map(|participant| BranchResults {
                                    results: results.remove(&participant).unwrap_or_default(),
                                    participant,
                                })
                                .collect()
                        } else {
                            Vec::new()
                        },
                    })
                }
            };
            let _ = submit.reply.send(answer);
        }
    }

    /// Who the outcome waits for, for the client's UNKNOWN answer.
    fn unanswered(&self) -> String {
        let waiting: Vec<&str> = self
            .engine
            .branches()
            .filter(|(_, state)| {
                matches!(
                    state,
                    BranchState::Fencing | BranchState::Preparing | BranchState::Committing
                )
            })
            .map(|(name, _)| name)
            .collect();
        match waiting.as_slice() {
            [] => "a participant".to_owned(),
            [one] => format!("participant {one}"),
            many => format!("participants {}", many.join(", ")),
        }
    }

    fn refusal_status(&self, refusal: Refusal) -> Status {
        let id = &self.params.id;
        match refusal {
            Refusal::Aborted(abort) => super::abort_status(id, &abort.reason, abort.kind),
            Refusal::NotActive(why) => Status::failed_precondition(format!("transaction {id} is not active: {why}")),
        }
    }

    fn abort_status(&self) -> Status {
        match self.engine.abort() {
            Some(abort) => super::abort_status(&self.params.id, &abort.reason, abort.kind),
            None => Status::internal("execute failed but the transaction did not abort"),
        }
    }

    fn participant(&self, name: &str) -> &Arc<crate::participants::Participant> {
        // Names were checked against the configuration by the server.
        self.shared
            .participants
            .get(name)
            .unwrap_or_else(|_| unreachable!("participant {name} was validated"))
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs an RPC (or a timer) of the current phase; its result comes
    /// back as a [`Done`].
    fn send(&mut self, rpc: impl std::future::Future<Output = Done> + Send + 'static) {
        // The engine may have moved on with the actions that send this.
        if self.engine.state() != self.timing.state {
            self.timed(self.engine.state());
        }
        self.inflight.push(Box::pin(rpc.instrument(self.phase.clone())));
    }

    /// Measures the step the engine just left (the phase metrics) and
    /// starts the next phase's span.
    fn timed(&mut self, state: State) {
        let now = Instant::now();
        let metrics = &self.shared.metrics;
        let timing = &mut self.timing;
        let took = now - timing.since;
        let decided = matches!(
            state,
            State::Committing | State::Aborting | State::Committed | State::Aborted
        );
        match timing.state {
            State::Active => {
                metrics.phase(Phase::execute, took);
                if !decided {
                    timing.finishing = Some(now);
                }
            }
            State::Preparing => metrics.phase(Phase::prepare, took),
            State::Confirming => metrics.phase(Phase::confirm, took),
            State::Committing | State::Aborting => metrics.phase(Phase::phase2, took),
            State::OnePhase | State::Committed | State::Aborted => {}
        }
        if decided && let Some(from) = timing.finishing.take() {
            metrics.phase(Phase::decision, now - from);
        }
        timing.one_phase |= state == State::OnePhase;
        timing.state = state;
        timing.since = now;
        if decided && !matches!(state, State::Committed | State::Aborted) && !self.span.is_disabled() {
            tracing::info!(target: "tandem::trace", parent: &self.span, decision = ?state, "decided");
        }
        self.phase = phase_span(&self.span, state);
    }

    /// Counts the transaction as it ends.
    fn count_ended(&self) {
        let committed = self.engine.state() == State::Committed;
        let wrote = self
            .engine
            .branches()
            .any(|(_, state)| matches!(state, BranchState::Committed | BranchState::HeuristicCommit));
        let shape = if self.timing.one_phase {
            "one_phase"
        } else if committed && !wrote {
            "read_only"
        } else {
            "two_phase"
        };
        let labels = TxnLabels {
            api: self.timing.api,
            shape,
            outcome: if committed { "committed" } else { "aborted" },
        };
        self.span.record("api", labels.api);
        self.span.record("outcome", labels.outcome);
        if !self.engine.hazards().is_empty() && !self.span.is_disabled() {
            tracing::info!(target: "tandem::trace", parent: &self.span, "heuristic hazard");
        }
        self.shared.metrics.ended(labels, !self.engine.hazards().is_empty());
    }

    /// Updates what GetTransaction and ListTransactions show.
    fn publish(&mut self) {
        if self.engine.state() != self.timing.state {
            self.timed(self.engine.state());
        }
        let mut record = self.record.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        record.abort = self.engine.abort().map(|a| a.kind);
        let info = &mut record.info;
        let state = match self.engine.state() {
            State::Active => TxnState::Active,
            State::Preparing => TxnState::Preparing,
            State::Confirming => TxnState::Confirming,
            State::Committing | State::OnePhase => TxnState::Committing,
            State::Aborting => TxnState::Aborting,
            State::Committed => TxnState::Committed,
            State::Aborted => TxnState::Aborted,
        };
        if info.state != state as i32 {
            let now = unix_ms(SystemTime::now());
            if matches!(
                state,
                TxnState::Committing | TxnState::Aborting | TxnState::Committed | TxnState::Aborted
            ) && info.decided_unix_ms == 0
            {
                info.decided_unix_ms = now;
            }
            if matches!(state, TxnState::Committed | TxnState::Aborted) {
                info.finished_unix_ms = now;
            }
            info.state = state as i32;
        }
        info.outcome = match state {
            TxnState::Committed | TxnState::Committing if self.engine.abort().is_none() => pb::Outcome::Committed,
            TxnState::Aborted | TxnState::Aborting => pb::Outcome::Aborted,
            _ => pb::Outcome::Unspecified,
        } as i32;
        if self.engine.state() == State::OnePhase {
            // One-phase commit in flight: not decided yet.
            info.outcome = pb::Outcome::Unspecified as i32;
        }
        info.reason = self.engine.abort().map(|a| a.reason.clone()).unwrap_or_default();
        info.hazard = self.engine.hazards().join("; ");
        info.branches = self
            .engine
            .branches()
            .map(|(name, state)| pb::BranchInfo {
                participant: name.to_owned(),
                state: match state {
                    BranchState::Active | BranchState::RollingBack => PbBranch::Active,
                    BranchState::Preparing | BranchState::YesHeld | BranchState::Fencing => PbBranch::Preparing,
                    BranchState::Prepared | BranchState::Committing => PbBranch::Prepared,
                    BranchState::ReadOnly | BranchState::ReadOnlyHeld | BranchState::Releasing => PbBranch::ReadOnly,
                    BranchState::Committed => PbBranch::Committed,
                    BranchState::RolledBack => PbBranch::RolledBack,
                    BranchState::HeuristicRollback => PbBranch::HeuristicRollback,
                    BranchState::HeuristicCommit => PbBranch::HeuristicCommit,
                } as i32,
            })
            .collect();
    }
}

fn backoff(attempt: u32) -> Duration {
    let ms = 20u64.saturating_mul(1 << attempt.min(8));
    Duration::from_millis(ms.min(5_000))
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The span of a protocol phase: the engine's state while it runs.
fn phase_span(transaction: &Span, state: State) -> Span {
    if transaction.is_disabled() {
        return Span::none();
    }
    let name = match state {
        State::Active => "execute",
        State::Preparing => "prepare",
        State::Confirming => "confirm",
        State::OnePhase => "commit one-phase",
        State::Committing => "phase 2: commit",
        State::Aborting => "phase 2: rollback",
        // Done: nothing more is sent.
        State::Committed | State::Aborted => return Span::none(),
    };
    tracing::info_span!(target: "tandem::trace", parent: transaction, "phase", otel.name = name)
}
