//! The coordinator's end of a participant's branch stream
//! (`Participant.Branches`, see the participant's `stream` module): every
//! branch call to the participant goes out on one long-lived stream and
//! its answer comes back matched by id. Whatever is queued when the stream
//! writes goes out together, so phase 2 of many transactions costs a few
//! writes, not a call each.
//!
//! A call whose answer never comes fails like a unary call would: with
//! DEADLINE_EXCEEDED at its deadline, or with UNAVAILABLE when the stream
//! breaks (the participant may or may not have run it). Only a stream that
//! could not be opened fails a call that surely never left: its status is
//! the transport's own, as a unary call's would be. The next call opens a
//! new stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_proto::v1::branch_answer::Answer;
use tandem_proto::v1::branch_call::Call;
use tandem_proto::v1::participant_client::ParticipantClient;
use tandem_proto::v1::{BranchAnswer, BranchCall};
use tokio::sync::{mpsc, oneshot};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use super::PARTICIPANT_HEADER;

/// Calls queued for the stream's writer at most; a caller past it waits.
const QUEUE: usize = 1024;

/// How long opening a stream may take (the connection is made then).
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

type Reply = oneshot::Sender<Result<Answer, Status>>;

pub struct BranchStream {
    participant: String,
    client: ParticipantClient<Channel>,
    header: MetadataValue<Ascii>,
    /// The stream in use, while it works.
    current: Mutex<Option<Arc<Open>>>,
    /// One caller opens a stream at a time; the others wait for it.
    opening: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
}

/// One open stream: the sender of its calls and the callers waiting for
/// answers.
struct Open {
    calls: mpsc::Sender<BranchCall>,
    waiting: Mutex<HashMap<u64, Reply>>,
    broken: AtomicBool,
}

impl BranchStream {
    pub fn new(participant: String, client: ParticipantClient<Channel>, header: MetadataValue<Ascii>) -> Self {
        Self {
            participant,
            client,
            header,
            current: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends `call` and waits up to `timeout` for its answer; a failed
    /// call's status is what the participant answered, or the transport's.
    pub async fn call(&self, call: Call, timeout: Duration) -> Result<Answer, Status> {
        let open = self.open().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        lock(&open.waiting).insert(id, reply);
        // The reader marks a stream broken before it drops the replies
        // waiting on it: a call registered after that must not wait.
        if open.broken.load(Ordering::Acquire) {
            lock(&open.waiting).remove(&id);
            return Err(self.broke(&open, "broke"));
        }
        let mut trace = HashMap::new();
        tandem_common::telemetry::inject_map(&mut trace);
        let message = BranchCall {
            id,
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX).max(1),
            trace,
            call: Some(call),
        };
        let sent = async {
            if open.calls.send(message).await.is_err() {
                return Err(self.broke(&open, "closed"));
            }
            answer.await.unwrap_or_else(|_| Err(self.broke(&open, "broke")))
        };
        match tokio::time::timeout(timeout, sent).await {
            Ok(answered) => answered,
            Err(_) => {
                lock(&open.waiting).remove(&id);
                Err(Status::deadline_exceeded(format!(
                    "participant {} did not answer within {} ms",
                    self.participant,
                    timeout.as_millis()
                )))
            }
        }
    }

    /// The stream to use: the current one, or a new one if there is none
    /// or it broke.
    async fn open(&self) -> Result<Arc<Open>, Status> {
        match self.working() {
            Some(open) => Ok(open),
            // Boxed: every call's future would otherwise carry the state of
            // opening a stream, which few of them need.
            None => Box::pin(self.reopen()).await,
        }
    }

    /// Opens a new stream, unless another caller just did.
    async fn reopen(&self) -> Result<Arc<Open>, Status> {
        let _opening = self.opening.lock().await;
        if let Some(open) = self.working() {
            return Ok(open);
        }
        let (calls, queued) = mpsc::channel(QUEUE);
        let outgoing = futures::stream::unfold(queued, |mut queued: mpsc::Receiver<BranchCall>| async move {
            queued.recv().await.map(|call| (call, queued))
        });
        let mut request = tonic::Request::new(outgoing);
        request.metadata_mut().insert(PARTICIPANT_HEADER, self.header.clone());
        let answers = match tokio::time::timeout(OPEN_TIMEOUT, self.client.clone().branches(request)).await {
            Ok(opened) => opened?.into_inner(),
            Err(_) => {
                return Err(Status::unavailable(format!(
                    "participant {}: no branch stream within {} s",
                    self.participant,
                    OPEN_TIMEOUT.as_secs()
                )));
            }
        };
        let open = Arc::new(Open {
            calls,
            waiting: Mutex::new(HashMap::new()),
            broken: AtomicBool::new(false),
        });
        tokio::spawn(read(Arc::clone(&open), answers, self.participant.clone()));
        *lock(&self.current) = Some(Arc::clone(&open));
        Ok(open)
    }

    fn working(&self) -> Option<Arc<Open>> {
        lock(&self.current)
            .as_ref()
            .filter(|open| !open.broken.load(Ordering::Acquire))
            .cloned()
    }

    /// The status of a call on a stream that ended under it: the call may
    /// have reached the participant or not.
    fn broke(&self, open: &Open, how: &str) -> Status {
        open.broken.store(true, Ordering::Release);
        Status::unavailable(format!(
            "the branch stream to participant {} {how} before the answer came; the call may or may not have run",
            self.participant
        ))
    }
}

/// Hands each answer to its caller until the stream ends; then every
/// caller still waiting learns that it broke.
async fn read(open: Arc<Open>, mut answers: Streaming<BranchAnswer>, participant: String) {
    let ended = loop {
        match answers.message().await {
            Ok(Some(BranchAnswer { id, answer })) => {
                let Some(reply) = lock(&open.waiting).remove(&id) else {
                    // Its caller gave up waiting.
                    continue;
                };
                let _ = reply.send(answer.map_or_else(
                    || {
                        Err(Status::internal(format!(
                            "participant {participant} sent an empty answer"
                        )))
                    },
                    answered,
                ));
            }
            Ok(None) => break "ended".to_owned(),
            Err(status) => break status.message().to_owned(),
        }
    };
    open.broken.store(true, Ordering::Release);
    tracing::debug!(%participant, "branch stream {ended}");
    // Dropping the replies tells their callers (see `BranchStream::call`).
    lock(&open.waiting).clear();
}

/// A call's answer: an error answer becomes the status the unary call
/// would have failed with.
fn answered(answer: Answer) -> Result<Answer, Status> {
    match answer {
        Answer::Error(error) => Err(Status::new(Code::from_i32(error.code), error.message)),
        answer => Ok(answer),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
