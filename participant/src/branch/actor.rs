//! The branch actor: one tokio task per branch that owns the branch's pinned
//! MySQL connection from `XA START` through phase 2.
//!
//! MariaDB ties a prepared branch to the session that prepared it (DESIGN
//! §4), so every XA statement of a branch runs on that one connection while
//! it lives. The actor serialises requests, asks the [`Engine`] what each one
//! means in the current state, runs the SQL, and records the result. It also
//! rolls back an unprepared branch whose deadline passed without word from
//! the coordinator. A prepared branch is never decided here alone.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Either, Executor};
use tandem_proto::failpoints;
use tandem_proto::v1::{self as pb, BranchFate, Isolation, Statement, StatementResult, Then, VoteKind, expect};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::engine::{Done, Ending, Engine, Phase, Request, Step};
use crate::error::{Error, describe_sql, is_connection_error};
use crate::sessions::{Session, SessionId};
use crate::sql::{Access, Effect};
use crate::xa::{self, Op, Xid};
use crate::{Shared, metrics, recovery, values};

/// Extra time a participant gives the coordinator past the transaction's
/// deadline before rolling back an unprepared branch on its own: the
/// coordinator normally sends the rollback first.
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// How long a prepare that lost its connection waits for someone to ask
/// about it (its coordinator normally does at once) before the branch
/// settles it on its own.
const SETTLE_DOUBT_AFTER: Duration = Duration::from_secs(5);

/// Which marker row an XA step writes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    None,
    /// The branch's own: its writes commit with it.
    Branch,
    /// A read-only branch's confirmation.
    ReadOnly,
}

/// Statements validated by the server before they reach the actor.
#[derive(Debug)]
pub struct Batch {
    pub statements: Vec<Statement>,
    pub effects: Vec<Effect>,
    pub isolation: Isolation,
    /// Time left until the transaction's deadline, from the request.
    pub timeout: Duration,
    pub then: Then,
    /// The coordinator's budget for this response's results (0: none).
    pub max_result_bytes: u64,
    /// The transaction's participant set, with a `then` that ends the
    /// statements (checked by the server).
    pub participants: Vec<String>,
}

#[derive(Debug, Default)]
pub struct ExecuteOutput {
    pub results: Vec<StatementResult>,
    pub vote: Option<pb::Vote>,
    /// Set when the batch was committed in one phase.
    pub committed: bool,
    /// Whether the branch has run a statement that may write, so far.
    pub wrote: bool,
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

enum Msg {
    Execute(Batch, Reply<ExecuteOutput>),
    /// With the transaction's participant set.
    Prepare(Vec<String>, Reply<pb::Vote>),
    Commit {
        one_phase: bool,
        reply: Reply<()>,
    },
    Rollback(Reply<()>),
    /// How the branch stands, for a coordinator fencing it.
    Inquire(Reply<BranchFate>),
}

/// Cloneable address of a branch actor.
#[derive(Clone)]
pub struct BranchHandle {
    tx: mpsc::Sender<Msg>,
}

impl BranchHandle {
    /// Spawns the actor for a new branch. It runs `XA START` on its first
    /// batch and removes itself from the registry when the branch ends.
    pub fn spawn(shared: Arc<Shared>, xid: Xid) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let actor = BranchActor {
            shared,
            xid,
            engine: Engine::new(),
            conn: None,
            deadline: None,
            session: None,
            settle_at: None,
            used: Used::default(),
            participants: Vec::new(),
            kind: xa::Kind::Xa,
            rx,
        };
        tokio::spawn(actor.run());
        Self { tx }
    }

    pub async fn execute(&self, batch: Batch) -> Result<ExecuteOutput, Error> {
        self.call(|reply| Msg::Execute(batch, reply)).await
    }

    pub async fn prepare(&self, participants: Vec<String>) -> Result<pb::Vote, Error> {
        self.call(|reply| Msg::Prepare(participants, reply)).await
    }

    pub async fn commit(&self, one_phase: bool) -> Result<(), Error> {
        self.call(|reply| Msg::Commit { one_phase, reply }).await
    }

    pub async fn rollback(&self) -> Result<(), Error> {
        self.call(Msg::Rollback).await
    }

    pub async fn inquire(&self) -> Result<BranchFate, Error> {
        self.call(Msg::Inquire).await
    }

    async fn call<T>(&self, msg: impl FnOnce(Reply<T>) -> Msg) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        let gone = || Error::FailedPrecondition("branch has ended".to_owned());
        self.tx.send(msg(reply)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

struct BranchActor {
    shared: Arc<Shared>,
    xid: Xid,
    engine: Engine,
    /// The pinned session, from `XA START` until the branch ends.
    conn: Option<Session>,
    /// The transaction's deadline as the coordinator sent it; the branch
    /// rolls back on its own `DEADLINE_GRACE` later if still unprepared.
    deadline: Option<Instant>,
    /// The pinned session's id, to `KILL` it if it outlives its
    /// connection while still owning the branch.
    session: Option<SessionId>,
    /// When to settle a prepare that lost its connection, if no one has
    /// asked about it by then.
    settle_at: Option<Instant>,
    /// What the branch has used so far, against [`crate::Limits`].
    used: Used,
    /// The transaction's participant set, once the coordinator sent it:
    /// written into the marker row.
    participants: Vec<String>,
    /// How the branch runs in MySQL: a branch begun with its one-phase
    /// commit in the same batch (a Submit's only branch) is a plain local
    /// transaction.
    kind: xa::Kind,
    rx: mpsc::Receiver<Msg>,
}

/// Statements run and results returned by a branch so far.
#[derive(Debug, Default, Clone, Copy)]
struct Used {
    statements: u64,
    bytes: u64,
    rows: u64,
}

/// What the results of one batch may still take.
struct Budget {
    /// Bytes left, and where the limit comes from (for the message).
    bytes: u64,
    bytes_limit: u64,
    bytes_by: &'static str,
    rows: u64,
    rows_limit: u64,
}

impl BranchActor {
    async fn run(mut self) {
        loop {
            let deadline = self
                .deadline
                .filter(|_| self.engine.deadline_applies())
                .map(|d| d + DEADLINE_GRACE);
            let msg = tokio::select! {
                // A request already queued (say, the commit) goes before
                // the deadline's rollback.
                biased;
                msg = self.rx.recv() => msg,
                () = sleep_until(deadline) => {
                    warn!(xid = %self.xid, "deadline passed without a decision; rolling back the unprepared branch");
                    self.step(Request::Deadline).await.ok();
                    None
                }
                // Its coordinator may have died with the question: the
                // branch must not wait, maybe prepared, for ever.
                () = sleep_until(self.settle_at) => {
                    if let Err(err) = self.inquire().await {
                        debug!(xid = %self.xid, error = %err, "cannot settle a prepare that lost its connection yet");
                        self.settle_at = Some(Instant::now() + SETTLE_DOUBT_AFTER);
                    }
                    None
                }
            };
            if let Some(msg) = msg {
                self.handle(msg).await;
            }
            if self.engine.is_finished() {
                break;
            }
        }
        // The branch is over: later requests get the idempotent answer from
        // the registry's record of how it ended.
        if let Some(ending) = self.engine.ending() {
            let ending = match ending {
                Ending::Unknown(_) => Ending::Unknown(self.session),
                other => other,
            };
            self.shared.branches.finish(self.xid.gtrid(), ending);
            self.shared.metrics.ended(ending);
        }
        self.rx.close();
        while let Some(msg) = self.rx.recv().await {
            self.handle(msg).await;
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Execute(batch, reply) => {
                let out = self.execute(batch).await;
                reply.send(out).ok();
            }
            Msg::Prepare(participants, reply) => {
                // Every statement of the transaction has run: a read-only
                // branch may let go of its locks now.
                reply.send(self.prepare(false, participants).await).ok();
            }
            Msg::Commit { one_phase, reply } => {
                let out = match self.step(Request::Commit { one_phase }).await {
                    // The branch rolled back (its deadline passed): a
                    // one-phase commit of it is an abort, not a retry.
                    Err(Error::FailedPrecondition(_))
                        if one_phase && self.engine.ending() == Some(Ending::RolledBack) =>
                    {
                        Err(Error::Aborted(format!(
                            "branch {} on participant {} was already rolled back (its deadline passed)",
                            self.xid.gtrid(),
                            self.shared.name
                        )))
                    }
                    other => other.map(|_| ()),
                };
                reply.send(out).ok();
            }
            Msg::Rollback(reply) => {
                reply.send(self.step(Request::Rollback).await.map(|_| ())).ok();
            }
            Msg::Inquire(reply) => {
                reply.send(self.inquire().await).ok();
            }
        }
    }

    /// How the branch stands. A prepare that lost its connection may or
    /// may not have happened: once the session that ran it is gone,
    /// `XA RECOVER` tells, and a branch not there is fenced off for good.
    async fn inquire(&mut self) -> Result<BranchFate, Error> {
        Ok(match self.engine.phase() {
            Phase::Prepared if self.conn.is_none() => {
                let prepared = Box::pin(recovery::settle_prepare(&self.shared, &self.xid, self.session)).await?;
                self.settle_at = None;
                if prepared {
                    BranchFate::Prepared
                } else {
                    warn!(xid = %self.xid, "a prepare that lost its connection never happened; fenced off");
                    self.engine.never_prepared();
                    BranchFate::None
                }
            }
            Phase::Prepared => BranchFate::Prepared,
            Phase::Committed => BranchFate::Committed,
            Phase::RolledBack => BranchFate::None,
            Phase::Unknown => {
                self.settle_one_phase().await;
                match self.engine.phase() {
                    Phase::Committed => BranchFate::Committed,
                    Phase::RolledBack => BranchFate::None,
                    _ => BranchFate::Active,
                }
            }
            Phase::Active | Phase::HeldReadOnly | Phase::HeldWriter => BranchFate::Active,
        })
    }

    async fn execute(&mut self, batch: Batch) -> Result<ExecuteOutput, Error> {
        self.engine.decide(Request::Execute).map_err(refused)?;
        let limits = self.shared.limits;
        let statements = self.used.statements + batch.statements.len() as u64;
        if statements > limits.max_statements {
            // Refused before anything runs; the branch (and its
            // transaction) cannot finish within its bound.
            if self.conn.is_some() {
                self.abort_after_failure(Step::RunStatements, false).await;
            } else {
                self.engine.failed(Step::RunStatements, false);
            }
            return Err(Error::Aborted(format!(
                "branch {} on participant {} would run {statements} statements; at most {} per branch are allowed \
                 (--max-statements-per-branch)",
                self.xid.gtrid(),
                self.shared.name,
                limits.max_statements
            )));
        }
        self.used.statements = statements;
        let mut budget = {
            let branch_left = limits.max_result_bytes.saturating_sub(self.used.bytes);
            let (bytes, bytes_limit, bytes_by) = if batch.max_result_bytes != 0 && batch.max_result_bytes < branch_left
            {
                (
                    batch.max_result_bytes,
                    batch.max_result_bytes,
                    "the coordinator's --max-result-bytes for this call",
                )
            } else {
                (
                    branch_left,
                    limits.max_result_bytes,
                    "the participant's --max-result-bytes per branch",
                )
            };
            Budget {
                bytes,
                bytes_limit,
                bytes_by,
                rows: limits.max_result_rows.saturating_sub(self.used.rows),
                rows_limit: limits.max_result_rows,
            }
        };
        let started = Instant::now();
        let deadline = started + batch.timeout;
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
        let starting = self.conn.is_none();
        if let Err(err) = self.start_or_tighten(&batch).await {
            if starting {
                // Nothing began. Roll back nothing either: if XA START
                // failed because the XID exists (a branch of an earlier
                // participant process, prepared), that branch is not ours
                // to touch.
                self.engine.failed(Step::RunStatements, false);
            } else {
                self.abort_after_failure(Step::RunStatements, false).await;
            }
            return Err(err);
        }
        let mut out = ExecuteOutput::default();
        for (i, (statement, effect)) in batch.statements.iter().zip(&batch.effects).enumerate() {
            if effect.reads_rows {
                self.engine.note_read();
            }
            if effect.access == Access::Write {
                self.engine.note_write();
            }
            match self.run_statement(i + 1, statement, effect, &mut budget).await {
                Ok(result) => out.results.push(result),
                Err(err) => {
                    self.abort_after_failure(Step::RunStatements, false).await;
                    return Err(err);
                }
            }
        }
        self.shared.metrics.step(metrics::Step::execute, started.elapsed());
        match batch.then {
            Then::KeepOpen => {}
            // Submit: other branches may still be running.
            Then::Prepare => out.vote = Some(self.prepare(true, batch.participants).await?),
            Then::CommitOnePhase => {
                if !batch.participants.is_empty() {
                    self.participants = batch.participants;
                }
                self.step(Request::Commit { one_phase: true }).await?;
                out.committed = true;
            }
        }
        out.wrote = self.engine.wrote();
        Ok(out)
    }

    async fn prepare(&mut self, hold: bool, participants: Vec<String>) -> Result<pb::Vote, Error> {
        let vote = |kind: VoteKind, held: bool| pb::Vote {
            kind: kind as i32,
            reason: String::new(),
            held,
        };
        if !participants.is_empty() {
            self.participants = participants;
        }
        let marked = self.participants.contains(&self.shared.name);
        if self.engine.wrote() && !marked && self.engine.phase() == Phase::Active {
            // The transaction would count as committed without this
            // branch: it must not prepare.
            self.step(Request::Rollback).await?;
            return Ok(pb::Vote {
                kind: VoteKind::No as i32,
                reason: format!(
                    "branch {} on participant {} wrote, but the transaction's participant set leaves it out; it \
                     was rolled back",
                    self.xid.gtrid(),
                    self.shared.name
                ),
                held: false,
            });
        }
        match self.step(Request::Prepare { hold, marked }).await {
            Ok(Step::Prepare | Step::AlreadyDone(Done::VotedYes)) => Ok(vote(VoteKind::Yes, false)),
            Ok(Step::HoldWriter | Step::AlreadyDone(Done::VotedHeld)) => Ok(vote(VoteKind::Yes, true)),
            Ok(_) => Ok(vote(VoteKind::ReadOnly, self.engine.phase() == Phase::HeldReadOnly)),
            // A prepare that failed and rolled the branch back is a NO.
            Err(Error::Aborted(reason)) => Ok(pb::Vote {
                kind: VoteKind::No as i32,
                reason,
                held: false,
            }),
            Err(err) => Err(err),
        }
    }

    /// Runs the step the engine chooses for `request` and records its effect.
    async fn step(&mut self, request: Request) -> Result<Step, Error> {
        let step = self.engine.decide(request).map_err(refused)?;
        let started = Instant::now();
        let result = match step {
            Step::RunStatements | Step::HoldReadOnly | Step::HoldWriter | Step::AlreadyDone(_) | Step::Ignore => Ok(()),
            Step::Prepare => {
                match failpoints::hit("participant::before_prepare").await {
                    Err(injected) => Err(Error::Internal(injected)),
                    // A writing branch: its marker row goes in with it.
                    Ok(()) => self.on_conn(Op::EndPrepare, Mark::Branch).await,
                }
            }
            Step::FinishReadOnly | Step::RollbackActive => self.on_conn(Op::EndRollback, Mark::None).await,
            Step::ConfirmReadOnly => self.on_conn(Op::EndCommitOnePhase, Mark::ReadOnly).await,
            Step::CommitOnePhase => match failpoints::hit("participant::before_commit").await {
                Err(injected) => Err(Error::Internal(injected)),
                Ok(()) => {
                    // The only branch: it is its transaction's whole set.
                    if self.participants.is_empty() {
                        self.participants = vec![self.shared.name.clone()];
                    }
                    let mark = if self.engine.wrote() { Mark::Branch } else { Mark::None };
                    self.on_conn(Op::EndCommitOnePhase, mark).await
                }
            },
            Step::CommitPrepared => match failpoints::hit("participant::before_commit").await {
                // Prepared: an error leaves it prepared; the coordinator retries.
                Err(injected) => Err(Error::Unavailable(injected)),
                Ok(()) => self.finish_prepared(Op::Commit).await,
            },
            Step::RollbackPrepared => self.finish_prepared(Op::Rollback).await,
        };
        if let Some(timed) = metrics::Step::of(step) {
            self.shared.metrics.step(timed, started.elapsed());
        }
        let result = match (result, step) {
            // Prepared, and no one has heard of it yet.
            (Ok(()), Step::Prepare) => {
                let _ = failpoints::hit("participant::after_prepare").await;
                Ok(())
            }
            // Committed in one phase, yet the step reports an error (as when
            // the reply is lost after MySQL committed).
            (Ok(()), Step::CommitOnePhase) => failpoints::hit("participant::after_commit")
                .await
                .map_err(Error::Internal),
            // Committed, and the coordinator has not heard of it yet.
            (Ok(()), Step::CommitPrepared) => {
                let _ = failpoints::hit("participant::after_commit").await;
                Ok(())
            }
            (result, _) => result,
        };
        match result {
            Ok(()) => {
                self.engine.finished(step);
                if self.engine.is_finished() {
                    self.release();
                }
                debug!(xid = %self.xid, ?step, "done");
                Ok(step)
            }
            Err(err) => {
                warn!(xid = %self.xid, ?step, error = %err, "XA step failed");
                if !matches!(
                    self.engine.phase(),
                    Phase::Active | Phase::HeldReadOnly | Phase::HeldWriter
                ) {
                    // Prepared: the branch stays; the coordinator retries.
                    return Err(err);
                }
                let lost = matches!(err, Error::Unavailable(_));
                if let Some(hazard) = self.abort_after_failure(step, lost).await {
                    return Err(hazard);
                }
                if self.engine.phase() == Phase::Unknown {
                    self.settle_one_phase().await;
                }
                match self.engine.phase() {
                    Phase::Prepared => Err(Error::Unavailable(format!(
                        "{err}; the branch may be prepared and waits for the coordinator's decision"
                    ))),
                    Phase::Unknown => Err(Error::Unavailable(format!(
                        "{err}; whether the one-phase commit took effect is unknown"
                    ))),
                    // Asked to roll back, and rolled back it is.
                    _ if step == Step::RollbackActive => Ok(step),
                    // The lost one-phase commit took effect after all.
                    Phase::Committed => Ok(step),
                    _ => Err(Error::Aborted(format!("{err}; the branch was rolled back"))),
                }
            }
        }
    }

    /// Finds out how a one-phase commit whose connection broke ended: after
    /// the session that ran it is gone, the marker row tells. If MySQL
    /// cannot be asked now, the branch ends as unknown and a later commit
    /// or inquiry asks again.
    async fn settle_one_phase(&mut self) {
        match Box::pin(recovery::settle_one_phase(&self.shared, &self.xid, self.session)).await {
            Ok(committed) => {
                warn!(xid = %self.xid, committed, "a one-phase commit lost its connection; settled from the marker row");
                self.engine.settled(committed);
            }
            Err(err) => warn!(xid = %self.xid, error = %err, "cannot settle a one-phase commit yet"),
        }
    }

    /// Commits or rolls back a prepared branch: on the pinned session while
    /// it lives, otherwise from a fresh session (MariaDB refuses that while
    /// the owning session is alive, so the pinned one is gone by then).
    async fn finish_prepared(&mut self, op: Op) -> Result<(), Error> {
        if self.conn.is_some() {
            return self.on_conn(op, Mark::None).await;
        }
        Box::pin(recovery::finish_orphan(&self.shared, &self.xid, op, self.session)).await
    }

    /// Runs an XA step on the pinned connection, after writing the
    /// marker row `mark` asks for, in the same round trip. A local branch
    /// ends with `COMMIT` or `ROLLBACK` instead, and never prepares.
    async fn on_conn(&mut self, op: Op, mark: Mark) -> Result<(), Error> {
        let op = match (self.kind, op) {
            (xa::Kind::Xa, op) => op,
            (xa::Kind::Local, Op::EndCommitOnePhase) => Op::CommitLocal,
            (xa::Kind::Local, Op::EndRollback) => Op::RollbackLocal,
            (xa::Kind::Local, op) => {
                return Err(Error::FailedPrecondition(format!(
                    "branch {} on participant {} runs as a local transaction (its one-phase commit came with its \
                     statements): {} does not apply",
                    self.xid.gtrid(),
                    self.shared.name,
                    op.name()
                )));
            }
        };
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::Internal("the branch has no connection".to_owned()))?;
        let done = if mark != Mark::None {
            xa::exec_marked(conn.conn(), &self.xid, op, &self.participants, mark == Mark::ReadOnly).await
        } else {
            xa::exec(conn.conn(), &self.xid, op).await
        };
        match done {
            Ok(()) => Ok(()),
            Err(err) => {
                let msg = format!(
                    "{} failed on participant {}: {}",
                    op.name(),
                    self.shared.name,
                    describe_sql(&err)
                );
                if is_connection_error(&err) {
                    // Its state is unknown: never reuse it. A prepared branch
                    // is finished from a fresh session on the next attempt.
                    self.drop_conn();
                    Err(Error::Unavailable(msg))
                } else {
                    Err(Error::Internal(msg))
                }
            }
        }
    }

    /// Begins the branch on a pinned session (`XA START`), or on a later
    /// batch shortens the lock wait to the time left.
    async fn start_or_tighten(&mut self, batch: &Batch) -> Result<(), Error> {
        let secs = batch.timeout.as_secs().max(1);
        if let Some(conn) = self.conn.as_mut() {
            // Lock waits must not outlive the deadline: only ever tighten.
            if conn.limit_secs().is_none_or(|set| secs < set) {
                let result = conn.set_limits(secs).await;
                result.map_err(|e| self.sql_error("SET", &e))?;
            }
            return Ok(());
        }
        let sessions = &self.shared.sessions;
        let unavailable = |e: &sqlx::Error| {
            Error::Unavailable(format!(
                "MySQL unreachable on participant {}: {}",
                self.shared.name,
                describe_sql(e)
            ))
        };
        // Waits for a free session for part of the time left only, so that
        // a full pool is reported as such, not as the deadline passing.
        let wait = batch.timeout * 3 / 4;
        // Nothing began: the branch is over, for a definite reason.
        let busy = || {
            Error::Aborted(format!(
                "all {} MySQL sessions of participant {} stayed busy for {} ms (--max-connections bounds the \
                 concurrent branches there)",
                sessions.max(),
                self.shared.name,
                wait.as_millis()
            ))
        };
        let mut session = tokio::time::timeout(wait, sessions.acquire())
            .await
            .map_err(|_| busy())?
            .map_err(|e| unavailable(&e))?;
        self.kind = if batch.then == Then::CommitOnePhase {
            xa::Kind::Local
        } else {
            xa::Kind::Xa
        };
        let mut started = session.start(&self.xid, self.kind, batch.isolation, secs).await;
        if let Err(err) = &started
            && session.reused()
            && is_connection_error(err)
        {
            // The server closed it while it was idle; nothing began.
            drop(session);
            session = tokio::time::timeout(wait, Box::pin(sessions.open()))
                .await
                .map_err(|_| busy())?
                .map_err(|e| unavailable(&e))?;
            started = session.start(&self.xid, self.kind, batch.isolation, secs).await;
        }
        match started {
            Ok(()) => {
                self.session = Some(session.id());
                self.conn = Some(session);
                Ok(())
            }
            // Its state is unknown: dropping the session closes it.
            Err(err) => Err(self.sql_error("XA START", &err)),
        }
    }

    async fn run_statement(
        &mut self,
        n: usize,
        statement: &Statement,
        effect: &Effect,
        budget: &mut Budget,
    ) -> Result<StatementResult, Error> {
        let name = &self.shared.name;
        let used = &mut self.used;
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::Internal("branch has no connection".to_owned()))?;
        // Checked by the server: `effect.len` bytes of it are sent.
        let sql = statement
            .sql
            .get(..effect.len)
            .ok_or_else(|| Error::Internal(format!("statement {n} is shorter than its checked text")))?;
        let query = values::bind(sqlx::query(AssertSqlSafe(sql.to_owned())), &statement.params);
        let mut result = StatementResult::default();
        let mut stream = conn.conn().fetch_many(query);
        let outcome: Result<(), Error> = async {
            while let Some(item) = stream.try_next().await.map_err(|e| statement_failed(n, name, &e))? {
                match item {
                    Either::Left(done) => {
                        result.rows_affected += done.rows_affected();
                        if done.last_insert_id() != 0 {
                            result.last_insert_id = done.last_insert_id();
                        }
                    }
                    Either::Right(row) => {
                        if result.columns.is_empty() {
                            result.columns = values::columns(&row);
                            budget.spend(
                                n,
                                name,
                                result.columns.iter().map(|c| c.len() as u64 + 2).sum(),
                                0,
                                used,
                            )?;
                        }
                        let row = values::decode_row(&row)?;
                        // As it will be sent, with its field tag and length.
                        let bytes = prost::Message::encoded_len(&row) as u64 + 5;
                        budget.spend(n, name, bytes, 1, used)?;
                        // Not buffered past the bound: the rest of the
                        // result is drained, never held.
                        result.rows.push(row);
                    }
                }
            }
            Ok(())
        }
        .await;
        drop(stream);
        outcome?;
        if let Some(expect) = statement.expect.as_ref().and_then(|e| e.check) {
            check_guard(n, &self.shared.name, expect, &result)?;
        }
        Ok(result)
    }

    /// Records a failed step and, unless MySQL may have made it durable
    /// (see [`Engine::failed`]), makes sure the branch is rolled back in
    /// MySQL: `XA ROLLBACK` on its connection, or else closing the
    /// connection (MySQL rolls back an unprepared XA transaction whose
    /// session ends) and checking `XA RECOVER` in case a prepare took effect
    /// although its reply was lost.
    /// Returns the heuristic hazard found if the branch, which should not
    /// have committed, did: it is reported, never logged away.
    async fn abort_after_failure(&mut self, step: Step, connection_lost: bool) -> Option<Error> {
        self.engine.failed(step, connection_lost);
        if matches!(self.engine.phase(), Phase::Prepared | Phase::Unknown) {
            self.drop_conn();
            if self.engine.phase() == Phase::Prepared {
                self.settle_at = Some(Instant::now() + SETTLE_DOUBT_AFTER);
            }
            return None;
        }
        if let Some(conn) = self.conn.as_mut() {
            let rolled_back = match self.kind {
                xa::Kind::Local => xa::exec(conn.conn(), &self.xid, Op::RollbackLocal).await,
                xa::Kind::Xa => {
                    // XA END fails when MySQL already ended the transaction
                    // (e.g. a deadlock); the rollback that follows is what
                    // matters.
                    let _ = xa::end(conn.conn(), &self.xid).await;
                    xa::exec(conn.conn(), &self.xid, Op::Rollback).await
                }
            };
            if rolled_back.is_ok() {
                self.release();
                return None;
            }
        }
        self.drop_conn();
        match Box::pin(recovery::finish_orphan(
            &self.shared,
            &self.xid,
            Op::Rollback,
            self.session,
        ))
        .await
        {
            Ok(()) => None,
            Err(hazard @ Error::Heuristic(_)) => {
                error!(xid = %self.xid, error = %hazard, "a failed branch was found committed");
                Some(hazard)
            }
            Err(err) => {
                warn!(xid = %self.xid, error = %err, "could not confirm the failed branch is rolled back");
                None
            }
        }
    }

    /// Keeps the session for the next branch: this one ended cleanly.
    fn release(&mut self) {
        if let Some(session) = self.conn.take() {
            self.shared.sessions.release(session);
        }
    }

    /// Closes the session instead of keeping it: its state is unknown.
    fn drop_conn(&mut self) {
        self.conn = None;
    }

    fn sql_error(&self, what: &str, err: &sqlx::Error) -> Error {
        let msg = format!(
            "{what} failed on participant {}: {}",
            self.shared.name,
            describe_sql(err)
        );
        if is_connection_error(err) {
            Error::Unavailable(msg)
        } else {
            Error::Aborted(msg)
        }
    }
}

impl Budget {
    /// Takes `bytes` and `rows` of the results from what is left, or
    /// aborts the branch: results past a bound are never returned.
    fn spend(&mut self, n: usize, participant: &str, bytes: u64, rows: u64, used: &mut Used) -> Result<(), Error> {
        if bytes > self.bytes {
            return Err(Error::Aborted(format!(
                "statement {n} on participant {participant}: its results pass {} bytes, the limit of {} \
                 (ask for less, or raise the limit)",
                self.bytes_limit, self.bytes_by
            )));
        }
        if rows > self.rows {
            return Err(Error::Aborted(format!(
                "statement {n} on participant {participant}: its results pass {} rows, the participant's \
                 --max-result-rows per branch",
                self.rows_limit
            )));
        }
        self.bytes -= bytes;
        self.rows -= rows;
        used.bytes += bytes;
        used.rows += rows;
        Ok(())
    }
}

fn statement_failed(n: usize, participant: &str, err: &sqlx::Error) -> Error {
    let msg = format!(
        "statement {n} failed on participant {participant}: {}",
        describe_sql(err)
    );
    if is_connection_error(err) {
        Error::Unavailable(msg)
    } else {
        Error::Aborted(msg)
    }
}

fn check_guard(n: usize, participant: &str, check: expect::Check, result: &StatementResult) -> Result<(), Error> {
    let returned = result.rows.len() as u64;
    let (holds, what, want, got) = match check {
        expect::Check::RowsAffectedEq(want) => (
            result.rows_affected == want,
            "rows_affected ==",
            want,
            result.rows_affected,
        ),
        expect::Check::RowsAffectedGe(want) => (
            result.rows_affected >= want,
            "rows_affected >=",
            want,
            result.rows_affected,
        ),
        expect::Check::RowsReturnedEq(want) => (returned == want, "rows_returned ==", want, returned),
        expect::Check::RowsReturnedGe(want) => (returned >= want, "rows_returned >=", want, returned),
    };
    if holds {
        Ok(())
    } else {
        Err(Error::Aborted(format!(
            "guard failed: statement {n} on participant {participant} expected {what} {want}, got {got}"
        )))
    }
}

fn refused(refusal: super::engine::Refusal) -> Error {
    Error::FailedPrecondition(refusal.to_string())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
