//! A participant without a database, for measuring the coordinator alone:
//! it speaks the `Participant` protocol and answers every request at once
//! (every statement affects one row, every branch votes YES unless it only
//! read, every commit succeeds). It lives in the benchmark, not in
//! `tandem-participant`, so no production participant can be configured
//! to vote YES without a database behind it.

use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::{Context, Result};
use futures::{Stream, StreamExt};
use tandem_proto::v1::branch_answer::Answer;
use tandem_proto::v1::branch_call::Call;
use tandem_proto::v1::participant_server::{Participant, ParticipantServer};
use tandem_proto::v1::{AuditRequest, AuditResponse, ListInDoubtRequest, ListInDoubtResponse};
use tandem_proto::v1::{BranchAnswer, BranchCall, CallError};
use tandem_proto::v1::{
    BranchCommitRequest, BranchCommitResponse, BranchExecuteRequest, BranchExecuteResponse, BranchRollbackRequest,
    BranchRollbackResponse, InquireRequest, InquireResponse, Outcome, PrepareRequest, PrepareResponse, RecoverRequest,
    RecoverResponse, StatementResult, Then, Vote, VoteKind,
};
use tonic::{Request, Response, Status, Streaming};

struct NullParticipant;

fn yes() -> Vote {
    Vote {
        kind: VoteKind::Yes as i32,
        reason: String::new(),
        held: false,
    }
}

/// The answer to a branch Execute.
fn executed(req: &BranchExecuteRequest) -> Result<BranchExecuteResponse, Status> {
    let results = req
        .statements
        .iter()
        .map(|_| StatementResult {
            rows_affected: 1,
            ..StatementResult::default()
        })
        .collect();
    let then = Then::try_from(req.then).map_err(|_| Status::invalid_argument("unknown `then`"))?;
    Ok(BranchExecuteResponse {
        // Every statement "affects a row": the branch wrote.
        wrote: true,
        results,
        vote: (then == Then::Prepare).then(yes),
        outcome: if then == Then::CommitOnePhase {
            Outcome::Committed as i32
        } else {
            Outcome::Unspecified as i32
        },
        reason: String::new(),
        earlier: false,
    })
}

/// The answer to a call on the branch stream, at once.
fn answer(call: BranchCall) -> BranchAnswer {
    let answer = match call.call {
        Some(Call::Execute(req)) => executed(&req).map(Answer::Execute),
        Some(Call::Prepare(_)) => Ok(Answer::Prepare(PrepareResponse { vote: Some(yes()) })),
        Some(Call::Commit(_)) => Ok(Answer::Commit(BranchCommitResponse {})),
        Some(Call::Rollback(_)) => Ok(Answer::Rollback(BranchRollbackResponse {})),
        None => Err(Status::invalid_argument("empty branch call")),
    };
    BranchAnswer {
        id: call.id,
        answer: Some(answer.unwrap_or_else(|status| {
            Answer::Error(CallError {
                code: status.code() as i32,
                message: status.message().to_owned(),
            })
        })),
    }
}

type Answers = Pin<Box<dyn Stream<Item = Result<BranchAnswer, Status>> + Send>>;

#[tonic::async_trait]
impl Participant for NullParticipant {
    async fn execute(&self, request: Request<BranchExecuteRequest>) -> Result<Response<BranchExecuteResponse>, Status> {
        executed(request.get_ref()).map(Response::new)
    }

    type BranchesStream = Answers;

    async fn branches(&self, request: Request<Streaming<BranchCall>>) -> Result<Response<Answers>, Status> {
        let calls = request.into_inner();
        let answers = calls.map(|call| call.map(answer));
        Ok(Response::new(Box::pin(answers)))
    }

    async fn prepare(&self, _: Request<PrepareRequest>) -> Result<Response<PrepareResponse>, Status> {
        Ok(Response::new(PrepareResponse { vote: Some(yes()) }))
    }

    async fn commit(&self, _: Request<BranchCommitRequest>) -> Result<Response<BranchCommitResponse>, Status> {
        Ok(Response::new(BranchCommitResponse {}))
    }

    async fn rollback(&self, _: Request<BranchRollbackRequest>) -> Result<Response<BranchRollbackResponse>, Status> {
        Ok(Response::new(BranchRollbackResponse {}))
    }

    async fn recover(&self, _: Request<RecoverRequest>) -> Result<Response<RecoverResponse>, Status> {
        Ok(Response::new(RecoverResponse::default()))
    }

    async fn inquire(&self, _: Request<InquireRequest>) -> Result<Response<InquireResponse>, Status> {
        Err(Status::unimplemented(
            "the null participant keeps no record of branches",
        ))
    }

    async fn list_in_doubt(&self, _: Request<ListInDoubtRequest>) -> Result<Response<ListInDoubtResponse>, Status> {
        // It prepares nothing durably.
        Ok(Response::new(ListInDoubtResponse::default()))
    }

    async fn audit(&self, _: Request<AuditRequest>) -> Result<Response<AuditResponse>, Status> {
        Err(Status::unimplemented("the null participant keeps no audit table"))
    }
}

/// Serves the null participant on `listen` until the process is killed.
pub async fn serve(listen: SocketAddr) -> Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(ParticipantServer::new(NullParticipant))
        .serve(listen)
        .await
        .context("null participant")
}
