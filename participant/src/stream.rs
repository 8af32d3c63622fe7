//! The branch stream (`Participant.Branches`): one long-lived gRPC stream
//! per coordinator connection carries every branch's Execute, Prepare,
//! Commit and Rollback, so the hot path costs one HTTP/2 message each way
//! instead of a stream of its own (headers, trailers, a task) per call.
//!
//! Each call is served exactly as its unary RPC would be, by the caller
//! that opened the stream (the interceptor authenticated it). The calls of
//! a stream run concurrently inside the stream's own answer task (the one
//! that writes its answers), not a task each: a call mostly waits for its
//! branch's actor, and a hop through a task of its own and a channel back
//! cost a wake-up each way per call. A slow branch still holds up no
//! other. Answers go back as they finish, matched to their calls by id. A
//! call is given up when its deadline passes, as tonic gives up a unary
//! handler; the branch's actor carries on either way (see
//! [`crate::server`]). A call that panics is answered INTERNAL.
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] calls of one stream are served at
//! once; past that the stream is not read until one ends, and HTTP/2 flow
//! control holds the caller back. Answers are produced only as fast as
//! HTTP/2 lets them out. Streams per connection and connections are
//! bounded by the listener like every other call.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, Stream};
use tandem_common::telemetry;
use tandem_proto::failpoints;
use tandem_proto::v1::branch_answer::Answer;
use tandem_proto::v1::branch_call::Call;
use tandem_proto::v1::{BranchAnswer, BranchCall, CallError};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::{Status, Streaming};
use tracing::Instrument;

use crate::auth::Calling;
use crate::server::{BranchRpc, ParticipantService};

/// Most calls of one stream served at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// The answers of one stream, as tonic sends them.
pub type Answers = Pin<Box<dyn Stream<Item = Result<BranchAnswer, Status>> + Send>>;

type Serving = Pin<Box<dyn Future<Output = BranchAnswer> + Send>>;

/// Serves the calls of one stream until the caller closes it or this
/// participant's listener stops (then the calls in flight are answered
/// first), or it breaks (then they are given up, as a unary call's handler
/// is when its caller goes away).
pub fn serve(service: ParticipantService, calling: Calling, calls: Streaming<BranchCall>) -> Answers {
    let stopped = Box::pin(service.stopped().clone().cancelled_owned());
    Box::pin(AnswerStream {
        service: Arc::new(service),
        calling: Arc::new(calling),
        calls,
        reading: true,
        stopped,
        in_flight: FuturesUnordered::new(),
    })
}

/// The answer stream of one branch stream; polling it reads and serves
/// the calls.
struct AnswerStream {
    // Shared with every call in flight, without a copy each.
    service: Arc<ParticipantService>,
    calling: Arc<Calling>,
    calls: Streaming<BranchCall>,
    /// Whether calls are still taken: not once the caller is done sending
    /// or the listener stopped.
    reading: bool,
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
    in_flight: FuturesUnordered<Serving>,
}

impl Stream for AnswerStream {
    type Item = Result<BranchAnswer, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        // The listener stops: take no more calls, answer those in flight,
        // and end the stream (the caller opens another, at another process
        // if this one exits).
        if this.reading && this.stopped.as_mut().poll(cx).is_ready() {
            this.reading = false;
        }
        while this.reading && this.in_flight.len() < MAX_IN_FLIGHT {
            match Pin::new(&mut this.calls).poll_next(cx) {
                Poll::Ready(Some(Ok(call))) => {
                    let id = call.id;
                    let service = Arc::clone(&this.service);
                    let serving = answer(Arc::clone(&this.service), Arc::clone(&this.calling), call);
                    this.in_flight
                        .push(Box::pin(AssertUnwindSafe(serving).catch_unwind().map(move |served| {
                            served.unwrap_or_else(|_| {
                                let panicked = format!(
                                    "branch call {id} panicked on participant {} (a bug; its log has the panic)",
                                    service.name()
                                );
                                error_answer(id, &Status::internal(panicked))
                            })
                        })));
                }
                // The caller is done sending: answer what is in flight.
                Poll::Ready(None) => this.reading = false,
                // The stream broke: nobody is left to answer.
                Poll::Ready(Some(Err(_))) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        match Pin::new(&mut this.in_flight).poll_next(cx) {
            Poll::Ready(Some(answer)) => Poll::Ready(Some(Ok(answer))),
            Poll::Ready(None) if !this.reading => Poll::Ready(None),
            // Nothing in flight, or nothing finished yet: the calls, the
            // calls in flight and the listener's stop have this task's
            // waker.
            _ => Poll::Pending,
        }
    }
}

/// Serves one call as its unary RPC would be served.
async fn answer(service: Arc<ParticipantService>, calling: Arc<Calling>, call: BranchCall) -> BranchAnswer {
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
        // A test's way into this path (a panic, say): a failed step is
        // answered INTERNAL like any unexpected failure.
        failpoints::hit("participant::serve_call")
            .await
            .map_err(Status::internal)?;
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
    match served {
        Ok(answer) => BranchAnswer {
            id,
            answer: Some(answer),
        },
        Err(status) => error_answer(id, &status),
    }
}

fn error_answer(id: u64, status: &Status) -> BranchAnswer {
    BranchAnswer {
        id,
        answer: Some(Answer::Error(CallError {
            code: status.code() as i32,
            message: status.message().to_owned(),
        })),
    }
}
