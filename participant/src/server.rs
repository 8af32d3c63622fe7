//! The `Participant` gRPC service: validates each request, then hands it to
//! the branch's actor (or to [`recovery`](crate::recovery) for a branch this
//! process does not hold) and maps the answer to gRPC.
//!
//! Nothing here runs protocol steps itself: tonic drops a handler's future
//! when the caller goes away, and a half-run XA step must not depend on that.

use std::sync::Arc;
use std::time::Duration;

use tandem_proto::v1::participant_server::Participant;
use tandem_proto::v1::{
    BranchCommitRequest, BranchCommitResponse, BranchExecuteRequest, BranchExecuteResponse, BranchFate,
    BranchRollbackRequest, BranchRollbackResponse, InquireRequest, InquireResponse, Isolation, Outcome, PrepareRequest,
    PrepareResponse, RecoverRequest, RecoverResponse, Statement, Then, Vote, VoteKind,
};
use tonic::{Request, Response, Status};

use crate::auth::{Calling, CoordinatorAuth};
use crate::branch::{Batch, Ending, Lookup};
use crate::error::Error;
use crate::sql::{self, Effect};
use crate::xa::{self, Op, Xid};
use crate::{Shared, recovery, values};

/// Most statements accepted in one request.
pub const MAX_STATEMENTS: usize = 1_000;

pub struct ParticipantService {
    shared: Arc<Shared>,
    auth: CoordinatorAuth,
    /// Longest deadline a branch may be given.
    max_timeout: Duration,
}

impl ParticipantService {
    pub fn new(shared: Arc<Shared>, auth: CoordinatorAuth, max_timeout: Duration) -> Self {
        Self {
            shared,
            auth,
            max_timeout,
        }
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

#[tonic::async_trait]
impl Participant for ParticipantService {
    async fn execute(&self, request: Request<BranchExecuteRequest>) -> Result<Response<BranchExecuteResponse>, Status> {
        let calling = Calling::of(&request)?;
        let req = request.into_inner();
        let xid = self.xid(&req.gtrid, &calling)?;
        let effects = check_statements(&req.statements)?;
        if req.timeout_ms == 0 {
            return Err(Error::InvalidArgument("timeout_ms must be positive".to_owned()).into());
        }
        if u128::from(req.timeout_ms) > self.max_timeout.as_millis() {
            return Err(Error::InvalidArgument(format!(
                "timeout_ms {} exceeds participant {}'s maximum of {} ms (--max-timeout-ms)",
                req.timeout_ms,
                self.shared.name,
                self.max_timeout.as_millis()
            ))
            .into());
        }
        let isolation = Isolation::try_from(req.isolation)
            .map_err(|_| Error::InvalidArgument(format!("unknown isolation level {}", req.isolation)))?;
        let then = Then::try_from(req.then)
            .map_err(|_| Error::InvalidArgument(format!("unknown `then` value {}", req.then)))?;
        xa::validate_participants(&req.participants)?;
        let handle = if req.begin {
            self.shared.check_serving()?;
            self.shared.branches.begin(&self.shared, xid)?
        } else {
            match self.shared.branches.lookup(&req.gtrid) {
                Lookup::Live(handle) => handle,
                Lookup::Ended(_) => {
                    return Err(Error::FailedPrecondition(format!("branch {} has already ended", req.gtrid)).into());
                }
                Lookup::Unknown => {
                    return Err(Error::NotFound(format!(
                        "no branch {} on participant {}",
                        req.gtrid, self.shared.name
                    ))
                    .into());
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
        Ok(Response::new(BranchExecuteResponse {
            wrote: out.wrote,
            results: out.results,
            vote: out.vote,
            outcome: if out.committed {
                Outcome::Committed as i32
            } else {
                Outcome::Unspecified as i32
            },
            reason: String::new(),
        }))
    }

    async fn prepare(&self, request: Request<PrepareRequest>) -> Result<Response<PrepareResponse>, Status> {
        let calling = Calling::of(&request)?;
        let PrepareRequest { gtrid, participants } = request.into_inner();
        let xid = self.xid(&gtrid, &calling)?;
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
            Lookup::Unknown if recovery::is_prepared(&self.shared, &xid).await? => vote(VoteKind::Yes, ""),
            Lookup::Unknown => vote(
                VoteKind::No,
                &format!("participant {} has no branch {gtrid} (restarted?)", self.shared.name),
            ),
        };
        Ok(Response::new(PrepareResponse { vote: Some(vote) }))
    }

    async fn commit(&self, request: Request<BranchCommitRequest>) -> Result<Response<BranchCommitResponse>, Status> {
        let calling = Calling::of(&request)?;
        let req = request.into_inner();
        let xid = self.xid(&req.gtrid, &calling)?;
        match self.shared.branches.lookup(&req.gtrid) {
            Lookup::Live(handle) => handle.commit(req.one_phase).await?,
            Lookup::Ended(Ending::Committed) => {}
            Lookup::Ended(Ending::Unknown(owner)) => {
                // Settle it from the marker row now, if MySQL answers.
                let committed = recovery::settle_one_phase(&self.shared, &xid, owner).await?;
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
        Ok(Response::new(BranchCommitResponse {}))
    }

    async fn rollback(
        &self,
        request: Request<BranchRollbackRequest>,
    ) -> Result<Response<BranchRollbackResponse>, Status> {
        let calling = Calling::of(&request)?;
        let gtrid = request.into_inner().gtrid;
        let xid = self.xid(&gtrid, &calling)?;
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
                let committed = recovery::settle_one_phase(&self.shared, &xid, owner).await?;
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
        Ok(Response::new(BranchRollbackResponse {}))
    }

    async fn recover(&self, request: Request<RecoverRequest>) -> Result<Response<RecoverResponse>, Status> {
        let calling = Calling::of(&request)?;
        // A coordinator learns only of its own transactions' branches.
        let gtrids = recovery::prepared(&self.shared)
            .await?
            .into_iter()
            .filter(|gtrid| self.auth.check_gtrid(&calling, gtrid).is_ok())
            .collect();
        Ok(Response::new(RecoverResponse { gtrids }))
    }

    async fn inquire(&self, request: Request<InquireRequest>) -> Result<Response<InquireResponse>, Status> {
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

/// Runs a recovery step in its own task: tonic drops a handler's future
/// when the caller goes away, and a fence or an orphan's phase 2 must not
/// stop half-way (its session settings would return to the pool).
async fn detached<T: Send + 'static>(
    what: &str,
    step: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    tokio::spawn(step)
        .await
        .map_err(|e| Error::Internal(format!("{what} failed: {e}")))?
}

fn vote(kind: VoteKind, reason: &str) -> Vote {
    Vote {
        kind: kind as i32,
        reason: reason.to_owned(),
        held: false,
    }
}
