//! The branch stream (`Participant.Branches`): one long-lived gRPC stream
//! per coordinator connection carries every branch's Execute, Prepare,
//! Commit and Rollback, so the hot path costs one HTTP/2 message each way
//! instead of a stream of its own (headers, trailers, a task) per call.
//!
//! Each call is served exactly as its unary RPC would be, by the caller
//! that opened the stream (the interceptor authenticated it), in a task of
//! its own: a slow branch holds up no other. Answers go back as they
//! finish, matched to their calls by id. A call is given up when its
//! deadline passes, as tonic gives up a unary handler; the branch's actor
//! carries on either way (see [`crate::server`]).
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] calls of one stream are served at
//! once; past that the stream is not read until one ends, and HTTP/2 flow
//! control holds the caller back. Streams per connection and connections
//! are bounded by the listener like every other call.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tandem_common::telemetry;
use tandem_proto::v1::branch_answer::Answer;
use tandem_proto::v1::branch_call::Call;
use tandem_proto::v1::{BranchAnswer, BranchCall, CallError};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tonic::{Status, Streaming};
use tracing::Instrument;

use crate::auth::Calling;
use crate::server::{BranchRpc, ParticipantService};

/// Most calls of one stream served at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// The answers of one stream, as tonic sends them.
pub type Answers = Pin<Box<dyn Stream<Item = Result<BranchAnswer, Status>> + Send>>;

/// Serves the calls of one stream until the caller closes it or this
/// participant's listener stops (then the calls in flight are answered
/// first), or it breaks (then they are given up, as a unary call's handler
/// is when its caller goes away).
pub fn serve(service: ParticipantService, calling: Calling, calls: Streaming<BranchCall>) -> Answers {
    let (answers, out) = mpsc::channel(MAX_IN_FLIGHT);
    tokio::spawn(drive(service, calling, calls, answers));
    Box::pin(futures::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|answer| (Ok(answer), out))
    }))
}

async fn drive(
    service: ParticipantService,
    calling: Calling,
    mut calls: Streaming<BranchCall>,
    answers: mpsc::Sender<BranchAnswer>,
) {
    let mut in_flight = JoinSet::new();
    let mut reading = true;
    let stopped = service.stopped().clone();
    loop {
        tokio::select! {
            // The listener stops: take no more calls, answer those in
            // flight, and end the stream (the caller opens another, at
            // another process if this one exits).
            () = stopped.cancelled(), if reading => reading = false,
            call = calls.message(), if reading && in_flight.len() < MAX_IN_FLIGHT => match call {
                Ok(Some(call)) => {
                    in_flight.spawn(answer(service.clone(), calling.clone(), call));
                }
                // The caller is done sending: answer what is in flight.
                Ok(None) => reading = false,
                // The stream broke: nobody is left to answer.
                Err(_) => return,
            },
            Some(done) = in_flight.join_next() => {
                let Ok(answer) = done else { continue };
                if answers.send(answer).await.is_err() {
                    return;
                }
            },
            else => return,
        }
    }
}

/// Serves one call as its unary RPC would be served.
async fn answer(service: ParticipantService, calling: Calling, call: BranchCall) -> BranchAnswer {
    let BranchCall {
        id,
        timeout_ms,
        trace,
        call,
    } = call;
    let span = match &call {
        Some(Call::Execute(req)) => Some((BranchRpc::Execute, &req.gtrid)),
        Some(Call::Prepare(req)) => Some((BranchRpc::Prepare, &req.gtrid)),
        Some(Call::Commit(req)) => Some((BranchRpc::commit(req), &req.gtrid)),
        Some(Call::Rollback(req)) => Some((BranchRpc::Rollback, &req.gtrid)),
        None => None,
    }
    .map_or_else(tracing::Span::none, |(rpc, gtrid)| {
        service.span(rpc, gtrid, &telemetry::Parent::of_map(&trace))
    });
    let served = async {
        match call {
            Some(Call::Execute(req)) => service.serve_execute(&calling, req).await.map(Answer::Execute),
            Some(Call::Prepare(req)) => service.serve_prepare(&calling, req).await.map(Answer::Prepare),
            Some(Call::Commit(req)) => service.serve_commit(&calling, req).await.map(Answer::Commit),
            Some(Call::Rollback(req)) => service.serve_rollback(&calling, req).await.map(Answer::Rollback),
            None => Err(Status::invalid_argument(
                "a branch call must carry execute, prepare, commit or rollback",
            )),
        }
    }
    .instrument(span);
    let served = if timeout_ms == 0 {
        served.await
    } else {
        let limit = Duration::from_millis(u64::from(timeout_ms));
        tokio::time::timeout(limit, served).await.unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!(
                "participant {} did not finish the call in {timeout_ms} ms",
                service.name()
            )))
        })
    };
    BranchAnswer {
        id,
        answer: Some(served.unwrap_or_else(|status| {
            Answer::Error(CallError {
                code: status.code() as i32,
                message: status.message().to_owned(),
            })
        })),
    }
}
