//! The `Participant` gRPC service: validates each request, then hands it to
//! the branch's actor (or to [`recovery`](crate::recovery) for a branch this
//! process does not hold) and maps the answer to gRPC.
//!
//! Nothing here runs protocol steps itself: tonic drops a handler's future
//! when the caller goes away, and a half-run XA step must not depend on that.

use std::sync::Arc;
use std::time::Duration;

use tandem_proto::v1::participant_server::Participant;
use tandem_proto::v1::{AuditEntry, AuditRequest, AuditResponse, ListInDoubtRequest, ListInDoubtResponse};
use tandem_proto::v1::{
    BranchCall, BranchCommitRequest, BranchCommitResponse, BranchExecuteRequest, BranchExecuteResponse, BranchFate,
    BranchRollbackRequest, BranchRollbackResponse, InquireRequest, InquireResponse, Isolation, Outcome, PrepareRequest,
    PrepareResponse, RecoverRequest, RecoverResponse, Statement, Then, Vote, VoteKind,
};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::auth::{Calling, CoordinatorAuth};
use crate::branch::{Batch, Ending, Lookup};
use crate::error::Error;
use crate::recovery::Earlier;
use crate::sql::{self, Effect};
use crate::xa::{self, Op, Xid};
use crate::{Shared, recovery, stream, values};
use tandem_common::{names, telemetry};
use tracing::Instrument;

/// Most statements accepted in one request.
pub const MAX_STATEMENTS: usize = 1_000;

#[derive(Clone)]
pub struct ParticipantService {
    shared: Arc<Shared>,
    auth: CoordinatorAuth,
    /// Longest deadline a branch may be given.
    max_timeout: Duration,
    /// Cancelled when the listener stops (after a drain): branch streams
    /// end then, or the listener would wait for them forever.
    stopped: CancellationToken,
}

impl ParticipantService {
    /// Runs an Execute request of branch `xid`.
    async fn run_execute(&self, xid: Xid, req: BranchExecuteRequest) -> Result<BranchExecuteResponse, Error> {
        let effects = check_statements(&req.statements)?;
        if req.timeout_ms == 0 {
            return Err(Error::InvalidArgument("timeout_ms must be positive".to_owned()));
        }
        if u128::from(req.timeout_ms) > self.max_timeout.as_millis() {
            return Err(Error::InvalidArgument(format!(
                "timeout_ms {} exceeds participant {}'s maximum of {} ms (--max-timeout-ms)",
                req.timeout_ms,
                self.shared.name,
                self.max_timeout.as_millis()
            )));
        }
        let isolation = Isolation::try_from(req.isolation)
            .map_err(|_| Error::InvalidArgument(format!("unknown isolation level {}", req.isolation)))?;
        let then = Then::try_from(req.then)
            .map_err(|_| Error::InvalidArgument(format!("unknown `then` value {}", req.then)))?;
        xa::validate_participants(&req.participants)?;
        let keyed = names::is_keyed_gtrid(&req.gtrid);
        if req.begin
            && keyed
            && let Some(found) = Box::pin(recovery::earlier(&self.shared, &xid)).await?
        {
            return earlier_answer(&self.shared.name, &xid, then, found);
        }
        let handle = if req.begin {
            self.shared.check_serving()?;
            match self.shared.branches.begin(&self.shared, xid.clone()) {
                // Begun meanwhile by another attempt of the same keyed
                // transaction.
                Err(Error::FailedPrecondition(_)) if keyed => {
                    return earlier_answer(&self.shared.name, &xid, then, Earlier::Running);
                }
                begun => begun?,
            }
        } else {
            match self.shared.branches.lookup(&req.gtrid) {
                Lookup::Live(handle) => handle,
                Lookup::Ended(_) => {
                    return Err(Error::FailedPrecondition(format!(
                        "branch {} has already ended",
                        req.gtrid
                    )));
                }
                Lookup::Unknown => {
                    return Err(Error::NotFound(format!(
                        "no branch {} on participant {}",
                        req.gtrid, self.shared.name
                    )));
                }
            }
        };
        let out = handle
            .execute(Batch {
                statements: req.statements,
                effects,
                isolation,
                timeout: Duration::from_millis(u64::from(req.timeout_ms)),
                then,
                max_result_bytes: req.max_result_bytes,
                participants: req.participants,
            })
            .await?;
        Ok(BranchExecuteResponse {
            wrote: out.wrote,
            results: out.results,
            vote: out.vote,
            outcome: if out.committed {
                Outcome::Committed as i32
            } else {
                Outcome::Unspecified as i32
            },
            reason: String::new(),
            earlier: false,
        })
    }

    /// Runs a Commit request of branch `xid`.
    async fn run_commit(&self, xid: &Xid, req: &BranchCommitRequest) -> Result<(), Status> {
        let xid = xid.clone();
        match self.shared.branches.lookup(&req.gtrid) {
            Lookup::Live(handle) => handle.commit(req.one_phase).await?,
            Lookup::Ended(Ending::Committed) => {}
            Lookup::Ended(Ending::Unknown(owner)) => {
                // Settle it from the marker row now, if MySQL answers.
                let committed = Box::pin(recovery::settle_one_phase(&self.shared, &xid, owner)).await?;
                self.shared.branches.settle(&req.gtrid, committed);
                if !committed {
                    return Err(Error::Aborted(format!(
                        "the connection broke during the one-phase commit of branch {} on participant {}, \
                         and it did not commit",
                        req.gtrid, self.shared.name
                    ))
                    .into());
                }
            }
            // The branch rolled back on its own (its deadline, a failed
            // statement, a lost session): for a one-phase commit that is
            // the outcome, not a protocol error.
            Lookup::Ended(_) if req.one_phase => {
                return Err(Error::Aborted(format!(
                    "branch {} on participant {} was already rolled back",
                    req.gtrid, self.shared.name
                ))
                .into());
            }
            // Decided COMMIT, but this participant rolled it back: a hazard,
            // which no retry can change.
            Lookup::Ended(Ending::RolledBack) => {
                return Err(Error::Heuristic(format!(
                    "heuristic hazard: branch {} on participant {} was to commit, but it was rolled back",
                    req.gtrid, self.shared.name
                ))
                .into());
            }
            Lookup::Ended(_) => {
                return Err(Error::FailedPrecondition(format!(
                    "branch {} voted read-only; it has nothing to commit",
                    req.gtrid
                ))
                .into());
            }
            Lookup::Unknown if req.one_phase => {
                let shared = Arc::clone(&self.shared);
                let xid = xid.clone();
                detached("one-phase inquiry", async move {
                    recovery::one_phase_of_unknown(&shared, &xid).await
                })
                .await?;
            }
            Lookup::Unknown => {
                let shared = Arc::clone(&self.shared);
                detached("commit of an orphan branch", async move {
                    recovery::finish_orphan(&shared, &xid, Op::Commit, None).await
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Runs a Rollback request of branch `xid`.
    async fn run_rollback(&self, xid: &Xid) -> Result<(), Status> {
        let gtrid = xid.gtrid().to_owned();
        let xid = xid.clone();
        match self.shared.branches.lookup(&gtrid) {
            Lookup::Live(handle) => handle.rollback().await?,
            // A read-only confirmation wrote no data: nothing to undo.
            Lookup::Ended(Ending::RolledBack | Ending::ReadOnly | Ending::Confirmed) => {}
            Lookup::Ended(Ending::Committed) => {
                return Err(Error::Heuristic(format!(
                    "heuristic hazard: branch {gtrid} on participant {} was to roll back, but it committed",
                    self.shared.name
                ))
                .into());
            }
            Lookup::Ended(Ending::Unknown(owner)) => {
                // Settle it from the marker row now, if MySQL answers.
                let committed = Box::pin(recovery::settle_one_phase(&self.shared, &xid, owner)).await?;
                self.shared.branches.settle(&gtrid, committed);
                if committed {
                    return Err(Error::Heuristic(format!(
                        "heuristic hazard: branch {gtrid} on participant {} was to roll back, but its one-phase \
                         commit took effect",
                        self.shared.name
                    ))
                    .into());
                }
            }
            Lookup::Unknown => {
                // Remember it first, so an Execute that begins this branch
                // but arrives during or after the rollback (a delayed
                // request) is refused instead of starting a branch nobody
                // will finish.
                let shared = Arc::clone(&self.shared);
                let orphan = xid.clone();
                let finish = || {
                    detached("rollback of an orphan branch", async move {
                        recovery::finish_orphan(&shared, &orphan, Op::Rollback, None).await
                    })
                };
                if let Some(handle) = self.shared.branches.tombstone(&gtrid) {
                    handle.rollback().await?;
                } else if let Err(err) = finish().await {
                    // Not finished: let the coordinator's retry try again.
                    self.shared.branches.forget(&gtrid);
                    return Err(err.into());
                }
            }
        }
        Ok(())
    }

    /// Backs a keyed branch's NO with a fence row (see
    /// [`recovery::fence_no`]); `false` when the branch's marker is
    /// committed instead. A NO that cannot be fenced is not told: the
    /// coordinator asks again.
    async fn fence_no(&self, xid: &Xid) -> Result<bool, Status> {
        let shared = Arc::clone(&self.shared);
        let fenced = xid.clone();
        detached("fence before a NO", async move {
            recovery::fence_no(&shared, &fenced).await
        })
        .await
        .map_err(|err| {
            Status::unavailable(format!(
                "branch {} on participant {} is not fenced, so its NO cannot be told yet ({err}); ask again",
                xid.gtrid(),
                self.shared.name
            ))
        })
    }

    pub fn new(shared: Arc<Shared>, auth: CoordinatorAuth, max_timeout: Duration, stopped: CancellationToken) -> Self {
        Self {
            shared,
            auth,
            max_timeout,
            stopped,
        }
    }

    /// Cancelled when the listener stops.
    pub fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }

    /// This participant's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The branch's XID, if `gtrid` is well formed and the calling
    /// coordinator issued it.
    fn xid(&self, gtrid: &str, calling: &Calling) -> Result<Xid, Status> {
        let xid = Xid::new(gtrid, &self.shared.name)?;
        self.auth.check_gtrid(calling, gtrid)?;
        Ok(xid)
    }
}

/// Checks every statement of a batch before any of them runs, so a bad one
/// changes nothing.
pub fn check_statements(statements: &[Statement]) -> Result<Vec<Effect>, Error> {
    if statements.len() > MAX_STATEMENTS {
        return Err(Error::InvalidArgument(format!(
            "{} statements in one request; at most {MAX_STATEMENTS} are allowed",
            statements.len()
        )));
    }
    statements
        .iter()
        .enumerate()
        .map(|(i, statement)| {
            let n = i + 1;
            let checked =
                sql::check(&statement.sql).map_err(|e| Error::InvalidArgument(format!("statement {n}: {e}")))?;
            if checked.placeholders != statement.params.len() {
                return Err(Error::InvalidArgument(format!(
                    "statement {n}: {} placeholders but {} parameters",
                    checked.placeholders,
                    statement.params.len()
                )));
            }
            values::validate_params(n, &statement.params)?;
            Ok(checked.effect())
        })
        .collect()
}

/// The branch RPCs, each run inside its trace span (see the trait impl).
impl ParticipantService {
    pub(crate) async fn serve_execute(
        &self,
        calling: &Calling,
        req: BranchExecuteRequest,
    ) -> Result<BranchExecuteResponse, Status> {
        let xid = self.xid(&req.gtrid, calling)?;
        if !names::is_keyed_gtrid(&req.gtrid) {
            return Ok(self.run_execute(xid, req).await?);
        }
        // A keyed branch's NO is fenced before it is told.
        let then = Then::try_from(req.then).unwrap_or(Then::KeepOpen);
        let answer = match self.run_execute(xid.clone(), req).await {
            Ok(answer) if !voted_no(&answer) => return Ok(answer),
            answer => answer,
        };
        match answer {
            Err(err) if !matches!(err, Error::Aborted(_) | Error::InvalidArgument(_)) => Err(err.into()),
            answer => {
                if self.fence_no(&xid).await? {
                    Ok(answer?)
                } else {
                    // Its marker is committed: an earlier attempt committed it.
                    Ok(earlier_answer(&self.shared.name, &xid, then, Earlier::Committed)?)
                }
            }
        }
    }

    pub(crate) async fn serve_prepare(
        &self,
        calling: &Calling,
        req: PrepareRequest,
    ) -> Result<PrepareResponse, Status> {
        let PrepareRequest { gtrid, participants } = req;
        let xid = self.xid(&gtrid, calling)?;
        xa::validate_participants(&participants)?;
        let vote = match self.shared.branches.lookup(&gtrid) {
            Lookup::Live(handle) => handle.prepare(participants).await?,
            Lookup::Ended(Ending::ReadOnly | Ending::Confirmed) => vote(VoteKind::ReadOnly, ""),
            Lookup::Ended(Ending::RolledBack) => vote(VoteKind::No, "the branch was already rolled back"),
            Lookup::Ended(Ending::Committed) => {
                return Err(Error::FailedPrecondition(format!("branch {gtrid} is already committed")).into());
            }
            Lookup::Ended(Ending::Unknown(_)) => {
                return Err(Error::FailedPrecondition(format!(
                    "branch {gtrid} ended in a one-phase commit of unknown outcome"
                ))
                .into());
            }
            Lookup::Unknown if Box::pin(recovery::is_prepared(&self.shared, &xid)).await? => vote(VoteKind::Yes, ""),
            Lookup::Unknown => vote(
                VoteKind::No,
                &format!("participant {} has no branch {gtrid} (restarted?)", self.shared.name),
            ),
        };
        // A keyed branch's NO is fenced before it is told; a marker found
        // committed instead is a YES.
        let vote = if vote.kind == VoteKind::No as i32 && names::is_keyed_gtrid(&gtrid) && !self.fence_no(&xid).await? {
            self::vote(VoteKind::Yes, "")
        } else {
            vote
        };
        Ok(PrepareResponse { vote: Some(vote) })
    }

    pub(crate) async fn serve_commit(
        &self,
        calling: &Calling,
        req: BranchCommitRequest,
    ) -> Result<BranchCommitResponse, Status> {
        let xid = self.xid(&req.gtrid, calling)?;
        match self.run_commit(&xid, &req).await {
            // A keyed branch's abort is fenced before it is told; a marker
            // found committed instead means it committed.
            Err(status) if status.code() == Code::Aborted && names::is_keyed_gtrid(&req.gtrid) => {
                if self.fence_no(&xid).await? {
                    return Err(status);
                }
            }
            done => done?,
        }
        Ok(BranchCommitResponse {})
    }

    pub(crate) async fn serve_rollback(
        &self,
        calling: &Calling,
        req: BranchRollbackRequest,
    ) -> Result<BranchRollbackResponse, Status> {
        let gtrid = req.gtrid;
        let xid = self.xid(&gtrid, calling)?;
        self.run_rollback(&xid).await?;
        // A keyed branch stays rolled back: a later attempt with the same
        // key must not begin it again. (A read-only branch's committed
        // confirmation, found instead, changed no data.)
        if names::is_keyed_gtrid(&gtrid) {
            self.fence_no(&xid).await?;
        }
        Ok(BranchRollbackResponse {})
    }

    async fn serve_inquire(&self, request: Request<InquireRequest>) -> Result<Response<InquireResponse>, Status> {
        let calling = Calling::of(&request)?;
        let InquireRequest { gtrid, probe } = request.into_inner();
        let xid = self.xid(&gtrid, &calling)?;
        let shared = Arc::clone(&self.shared);
        let (fate, marker) = detached("inquiry", async move {
            let fate = if probe {
                recovery::probe(&shared, &xid).await?
            } else {
                recovery::fate(&shared, &xid).await?
            };
            let marker = match fate {
                BranchFate::Prepared | BranchFate::Committed => recovery::marker(&shared, &xid).await?,
                _ => xa::Marker::default(),
            };
            Ok((fate, marker))
        })
        .await?;
        Ok(Response::new(InquireResponse {
            fate: fate as i32,
            participants: marker.participants,
            read_only: marker.read_only,
        }))
    }
}

#[tonic::async_trait]
impl Participant for ParticipantService {
    async fn execute(&self, request: Request<BranchExecuteRequest>) -> Result<Response<BranchExecuteResponse>, Status> {
        let (calling, parent, req) = unary(request)?;
        let span = self.span(BranchRpc::Execute, &req.gtrid, &parent);
        self.serve_execute(&calling, req)
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn prepare(&self, request: Request<PrepareRequest>) -> Result<Response<PrepareResponse>, Status> {
        let (calling, parent, req) = unary(request)?;
        let span = self.span(BranchRpc::Prepare, &req.gtrid, &parent);
        self.serve_prepare(&calling, req)
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn commit(&self, request: Request<BranchCommitRequest>) -> Result<Response<BranchCommitResponse>, Status> {
        let (calling, parent, req) = unary(request)?;
        let span = self.span(BranchRpc::commit(&req), &req.gtrid, &parent);
        self.serve_commit(&calling, req)
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn rollback(
        &self,
        request: Request<BranchRollbackRequest>,
    ) -> Result<Response<BranchRollbackResponse>, Status> {
        let (calling, parent, req) = unary(request)?;
        let span = self.span(BranchRpc::Rollback, &req.gtrid, &parent);
        self.serve_rollback(&calling, req)
            .instrument(span)
            .await
            .map(Response::new)
    }

    type BranchesStream = stream::Answers;

    async fn branches(
        &self,
        request: Request<Streaming<BranchCall>>,
    ) -> Result<Response<Self::BranchesStream>, Status> {
        let calling = Calling::of(&request)?;
        Ok(Response::new(stream::serve(
            self.clone(),
            calling,
            request.into_inner(),
        )))
    }

    async fn inquire(&self, request: Request<InquireRequest>) -> Result<Response<InquireResponse>, Status> {
        let span = self.span(
            BranchRpc::Inquire,
            &request.get_ref().gtrid,
            &telemetry::Parent::of(request.metadata()),
        );
        self.serve_inquire(request).instrument(span).await
    }

    async fn list_in_doubt(
        &self,
        request: Request<ListInDoubtRequest>,
    ) -> Result<Response<ListInDoubtResponse>, Status> {
        // Any of this participant's coordinators, for an operator.
        Calling::of(&request)?;
        let (branches, truncated) = recovery::in_doubt(&self.shared).await?;
        Ok(Response::new(ListInDoubtResponse { branches, truncated }))
    }

    async fn audit(&self, request: Request<AuditRequest>) -> Result<Response<AuditResponse>, Status> {
        let calling = Calling::of(&request)?;
        let AuditRequest { gtrid, record } = request.into_inner();
        self.xid(&gtrid, &calling)?;
        if let Some(entry) = &record {
            check_audit_entry(entry)?;
        }
        let shared = Arc::clone(&self.shared);
        // Recorded whole even if the caller goes away.
        let (entries, recorded) = detached("audit", async move {
            recovery::audit(&shared, &gtrid, record.as_ref()).await
        })
        .await?;
        Ok(Response::new(AuditResponse { entries, recorded }))
    }

    async fn recover(&self, request: Request<RecoverRequest>) -> Result<Response<RecoverResponse>, Status> {
        let calling = Calling::of(&request)?;
        let ours = |gtrid: &String| self.auth.check_gtrid(&calling, gtrid).is_ok();
        // A coordinator learns only of its own transactions' branches.
        let gtrids = recovery::prepared(&self.shared)
            .await?
            .into_iter()
            .filter(ours)
            .collect();
        let live = if request.get_ref().live {
            self.shared.branches.unfinished().into_iter().filter(ours).collect()
        } else {
            Vec::new()
        };
        Ok(Response::new(RecoverResponse { gtrids, live }))
    }
}

impl ParticipantService {
    /// The trace span of a branch RPC: a child of the coordinator's phase
    /// span, when the request carries its context. (The gtrid is the
    /// caller's claim until `xid` checks it; the span only names it.)
    pub(crate) fn span(&self, rpc: BranchRpc, gtrid: &str, parent: &telemetry::Parent) -> tracing::Span {
        // Only inside a coordinator's trace: an untraced transaction sends
        // no context, and its branches make no span.
        if !parent.is_some() {
            return tracing::Span::none();
        }
        let span = tracing::info_span!(
            target: "tandem::trace",
            "branch",
            otel.name = rpc.name(),
            gtrid = %gtrid.chars().take(names::MAX_XA_ID_LEN).collect::<String>(),
            participant = %self.shared.name,
        );
        parent.adopt(&span);
        span
    }
}

/// The branch RPCs, by the names their trace spans carry.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BranchRpc {
    Execute,
    Prepare,
    Commit,
    CommitOnePhase,
    Rollback,
    Inquire,
}

impl BranchRpc {
    pub(crate) fn commit(req: &BranchCommitRequest) -> Self {
        if req.one_phase {
            Self::CommitOnePhase
        } else {
            Self::Commit
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Execute => "execute",
            Self::Prepare => "prepare",
            Self::Commit => "commit",
            Self::CommitOnePhase => "commit one-phase",
            Self::Rollback => "rollback",
            Self::Inquire => "inquire",
        }
    }
}

/// A unary branch RPC's caller, trace context and message.
fn unary<T>(request: Request<T>) -> Result<(Calling, telemetry::Parent, T), Status> {
    let calling = Calling::of(&request)?;
    let parent = telemetry::Parent::of(request.metadata());
    Ok((calling, parent, request.into_inner()))
}

/// What an audit entry may hold (the columns of `tandem.audit`).
fn check_audit_entry(entry: &AuditEntry) -> Result<(), Error> {
    let fields = [
        ("action", &entry.action, 32),
        ("operator", &entry.operator, 255),
        ("reason", &entry.reason, 1024),
        ("detail", &entry.detail, 2048),
    ];
    for (name, value, max) in fields {
        if value.len() > max {
            return Err(Error::InvalidArgument(format!(
                "audit {name} is longer than {max} bytes"
            )));
        }
    }
    if entry.action != "resolve-hazard" {
        return Err(Error::InvalidArgument(format!(
            "unknown audit action {:?} (known: resolve-hazard)",
            entry.action
        )));
    }
    if entry.operator.is_empty() || entry.reason.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "an audit entry names its operator and reason".to_owned(),
        ));
    }
    Ok(())
}

/// Runs a recovery step in its own task: tonic drops a handler's future
/// when the caller goes away, and a fence or an orphan's phase 2 must not
/// stop half-way (its session settings would return to the pool).
fn detached<T: Send + 'static>(
    what: &str,
    step: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, Error>> {
    // Spawned now, not at the first poll: the caller's future then holds
    // only the join handle, not the step's whole state.
    let step = tokio::spawn(step);
    let what = what.to_owned();
    async move { step.await.map_err(|e| Error::Internal(format!("{what} failed: {e}")))? }
}

fn voted_no(answer: &BranchExecuteResponse) -> bool {
    answer.vote.as_ref().is_some_and(|v| v.kind == VoteKind::No as i32)
}

/// The answer to a begin of a keyed branch that an earlier attempt of the
/// same transaction already ran (or is running) here: that attempt's vote
/// or outcome, with no results. An interactive begin is refused.
fn earlier_answer(participant: &str, xid: &Xid, then: Then, found: Earlier) -> Result<BranchExecuteResponse, Error> {
    let gtrid = xid.gtrid();
    let earlier = |vote: Option<Vote>, outcome: Outcome| BranchExecuteResponse {
        vote,
        outcome: outcome as i32,
        earlier: true,
        ..BranchExecuteResponse::default()
    };
    let aborted = format!("an earlier attempt of transaction {gtrid} (same key) aborted on participant {participant}");
    match (then, found) {
        (Then::KeepOpen, Earlier::Running) => Err(Error::AlreadyExists(format!(
            "a transaction with this key is already running on participant {participant} ({gtrid})"
        ))),
        (Then::KeepOpen, _) => Err(Error::AlreadyExists(format!(
            "a transaction with this key already ran on participant {participant} ({gtrid}); ask GetTransaction"
        ))),
        (_, Earlier::Running) => Err(Error::Unavailable(format!(
            "an earlier attempt of transaction {gtrid} (same key) is still running on participant {participant}; \
             ask again"
        ))),
        (Then::Prepare, Earlier::Committed | Earlier::Prepared) => {
            Ok(earlier(Some(vote(VoteKind::Yes, "")), Outcome::Unspecified))
        }
        (Then::Prepare, Earlier::ReadOnly) => Ok(earlier(Some(vote(VoteKind::ReadOnly, "")), Outcome::Unspecified)),
        (Then::Prepare, Earlier::Aborted) => Ok(earlier(Some(vote(VoteKind::No, &aborted)), Outcome::Unspecified)),
        (Then::CommitOnePhase, Earlier::Committed | Earlier::ReadOnly) => Ok(earlier(None, Outcome::Committed)),
        (Then::CommitOnePhase, Earlier::Aborted) => Err(Error::Aborted(aborted)),
        (Then::CommitOnePhase, Earlier::Prepared) => Err(Error::AlreadyExists(format!(
            "an earlier attempt of transaction {gtrid} (same key) prepared its branch on participant {participant} \
             as one of several; a one-branch retry cannot commit it"
        ))),
    }
}

fn vote(kind: VoteKind, reason: &str) -> Vote {
    Vote {
        kind: kind as i32,
        reason: reason.to_owned(),
        held: false,
    }
}
