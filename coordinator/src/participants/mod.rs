//! The participants the coordinator drives: one long-lived gRPC channel
//! each, typed RPC helpers with timeouts, and the health view
//! `ListParticipants` shows. Branch calls (execute, prepare, commit,
//! rollback) travel on one long-lived [`stream`] per participant; the
//! rarer ones (inquire, recover, audit) are unary calls on the same channel.

mod stream;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_common::{Identity, Role, Transport};
use tandem_proto::v1::branch_answer::Answer;
use tandem_proto::v1::branch_call::Call;
use tandem_proto::v1::participant_client::ParticipantClient;
use tandem_proto::v1::{
    AuditEntry, AuditRequest, AuditResponse, BranchCommitRequest, BranchExecuteRequest, BranchExecuteResponse,
    BranchFate, BranchRollbackRequest, InquireRequest, Isolation, ListInDoubtRequest, ListInDoubtResponse,
    ParticipantInfo, PrepareRequest, RecoverRequest, Statement, Then, Vote, VoteKind,
};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::error::Error;
use crate::txn::engine::{self, Failure};

/// Per-attempt limit of a phase-2 RPC; phase 2 itself retries forever.
pub const PHASE2_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest Execute answer accepted from a participant: its results are
/// bounded by the budget sent with the request (--max-result-bytes); this
/// leaves room for the framing.
fn max_answer_bytes(max_result_bytes: u64) -> usize {
    usize::try_from(max_result_bytes.saturating_add(1 << 20))
        .unwrap_or(usize::MAX)
        .max(4 << 20)
}

/// Metadata naming the participant a request is meant for: a participant
/// refuses requests meant for another (two URLs swapped in the
/// configuration), also without TLS identities.
pub const PARTICIPANT_HEADER: &str = "x-tandem-participant";

/// How a branch's statements are to run.
#[derive(Debug, Clone)]
pub struct ExecuteCall {
    /// Starts the branch (`XA START`).
    pub begin: bool,
    pub isolation: Isolation,
    /// Time left until the transaction's deadline.
    pub timeout: Duration,
    pub then: Then,
    /// Most bytes of results the answer may carry.
    pub max_result_bytes: u64,
    /// With a `then` that ends the statements: the participant set.
    pub participants: Vec<String>,
}

/// A participant's answer to `Inquire`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inquired {
    pub fate: BranchFate,
    /// The participant set from the branch's marker row.
    pub participants: Vec<String>,
    /// COMMITTED by a read-only branch's confirmation (no data written).
    pub read_only: bool,
}

pub struct Participant {
    pub name: String,
    pub url: String,
    client: ParticipantClient<Channel>,
    /// Every branch call goes out on it.
    branches: stream::BranchStream,
    /// The participant's name as request metadata.
    header: MetadataValue<tonic::metadata::Ascii>,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    reachable: bool,
    in_doubt: u32,
    last_error: String,
    /// The last probe failure logged, so a lasting one is logged once.
    last_logged: String,
}

impl Participant {
    fn new(name: String, url: String, transport: &Transport, max_result_bytes: u64) -> Result<Self, Error> {
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| Error::InvalidArgument(format!("participant {name}: bad URL {url:?}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let identity = Identity::new(Role::Participant, &name)
            .map_err(|e| Error::InvalidArgument(format!("participant {name}: {e}")))?;
        // The handshake fails unless the server's certificate names this
        // participant: a coordinator never talks to the wrong database.
        if let Some(tls) = transport.client_config(&identity) {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| Error::InvalidArgument(format!("participant {name}: TLS settings: {e}")))?;
        }
        let header = MetadataValue::try_from(name.as_str())
            .map_err(|e| Error::InvalidArgument(format!("participant name {name:?}: {e}")))?;
        // Large SELECT results travel back through this hop.
        let client = ParticipantClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(max_answer_bytes(max_result_bytes));
        Ok(Self {
            branches: stream::BranchStream::new(name.clone(), client.clone(), header.clone()),
            header,
            name,
            url,
            client,
            health: Mutex::new(Health::default()),
        })
    }

    /// A request meant for this participant.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(PARTICIPANT_HEADER, self.header.clone());
        // The trace of the transaction this call belongs to.
        tandem_common::telemetry::inject(request.metadata_mut());
        request
    }

    /// Every branch prepared on this participant (for an operator).
    pub async fn list_in_doubt(&self) -> Result<ListInDoubtResponse, Status> {
        let mut request = self.request(ListInDoubtRequest {});
        request.set_timeout(Duration::from_secs(5));
        self.note(self.client.clone().list_in_doubt(request).await)
            .map(tonic::Response::into_inner)
    }

    /// The audit trail of `gtrid` on this participant, after recording
    /// `record` (if given and not there yet).
    pub async fn audit(&self, gtrid: &str, record: Option<AuditEntry>) -> Result<AuditResponse, Status> {
        let mut request = self.request(AuditRequest {
            gtrid: gtrid.to_owned(),
            record,
        });
        request.set_timeout(Duration::from_secs(5));
        self.note(self.client.clone().audit(request).await)
            .map(tonic::Response::into_inner)
    }

    /// Runs statements in the branch; `call.then` may prepare or commit it
    /// in the same round trip.
    pub async fn execute(
        &self,
        gtrid: &str,
        statements: Vec<Statement>,
        call: ExecuteCall,
    ) -> Result<BranchExecuteResponse, Status> {
        let timeout = call.timeout;
        let request = BranchExecuteRequest {
            gtrid: gtrid.to_owned(),
            begin: call.begin,
            statements,
            isolation: call.isolation as i32,
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX).max(1),
            then: call.then as i32,
            max_result_bytes: call.max_result_bytes,
            participants: call.participants,
        };
        // The call waits a little longer than the branch's own limits so
        // the participant's answer (e.g. a lock wait timeout) arrives.
        match self
            .branch_call(Call::Execute(request), timeout + Duration::from_secs(2))
            .await?
        {
            Answer::Execute(answer) => Ok(answer),
            other => Err(self.mismatched("execute", &other)),
        }
    }

    pub async fn prepare(
        &self,
        gtrid: &str,
        participants: Vec<String>,
        timeout: Duration,
    ) -> Result<Option<Vote>, Status> {
        let request = PrepareRequest {
            gtrid: gtrid.to_owned(),
            participants,
        };
        match self
            .branch_call(Call::Prepare(request), timeout.max(Duration::from_secs(1)))
            .await?
        {
            Answer::Prepare(answer) => Ok(answer.vote),
            other => Err(self.mismatched("prepare", &other)),
        }
    }

    pub async fn commit(&self, gtrid: &str, one_phase: bool) -> Result<(), Status> {
        let request = BranchCommitRequest {
            gtrid: gtrid.to_owned(),
            one_phase,
        };
        match self.branch_call(Call::Commit(request), PHASE2_TIMEOUT).await? {
            Answer::Commit(_) => Ok(()),
            other => Err(self.mismatched("commit", &other)),
        }
    }

    pub async fn rollback(&self, gtrid: &str) -> Result<(), Status> {
        let request = BranchRollbackRequest {
            gtrid: gtrid.to_owned(),
        };
        match self.branch_call(Call::Rollback(request), PHASE2_TIMEOUT).await? {
            Answer::Rollback(_) => Ok(()),
            other => Err(self.mismatched("rollback", &other)),
        }
    }

    /// One call on the branch stream, noted in the health view.
    async fn branch_call(&self, call: Call, timeout: Duration) -> Result<Answer, Status> {
        self.note(self.branches.call(call, timeout).await)
    }

    /// An answer of the wrong kind: the participant broke the protocol.
    fn mismatched(&self, call: &str, answer: &Answer) -> Status {
        let kind = match answer {
            Answer::Execute(_) => "execute",
            Answer::Prepare(_) => "prepare",
            Answer::Commit(_) => "commit",
            Answer::Rollback(_) => "rollback",
            Answer::Error(_) => "error",
        };
        Status::internal(format!(
            "participant {} answered a {call} call with a {kind} answer",
            self.name
        ))
    }

    /// How the branch of `gtrid` ended on this participant, fencing it if
    /// it is not there (unless `probe`: then it is ABSENT), and what its
    /// marker row says.
    pub async fn inquire(&self, gtrid: &str, probe: bool) -> Result<Inquired, Status> {
        let mut request = self.request(InquireRequest {
            gtrid: gtrid.to_owned(),
            probe,
        });
        request.set_timeout(PHASE2_TIMEOUT);
        let answer = self.note(self.client.clone().inquire(request).await)?.into_inner();
        let fate = BranchFate::try_from(answer.fate)
            .map_err(|_| Status::internal(format!("participant {} sent fate {}", self.name, answer.fate)))?;
        Ok(Inquired {
            fate,
            participants: answer.participants,
            read_only: answer.read_only,
        })
    }

    pub fn info(&self) -> ParticipantInfo {
        let health = lock(&self.health);
        ParticipantInfo {
            name: self.name.clone(),
            url: self.url.clone(),
            reachable: health.reachable,
            in_doubt: health.in_doubt,
            last_error: health.last_error.clone(),
        }
    }

    /// The gtrids of the branches not finished for good on this
    /// participant: prepared in its database, or live in it.
    pub async fn unfinished(&self) -> Result<HashSet<String>, Status> {
        let mut request = self.request(RecoverRequest { live: true });
        // Within the asking participant's own call limit (5 s).
        request.set_timeout(Duration::from_secs(3));
        let answer = self.note(self.client.clone().recover(request).await)?.into_inner();
        Ok(answer.gtrids.into_iter().chain(answer.live).collect())
    }

    /// Asks the participant for its prepared branches; keeps the health view
    /// current.
    async fn probe(&self) {
        let mut request = self.request(RecoverRequest { live: false });
        request.set_timeout(Duration::from_secs(2));
        match self.note(self.client.clone().recover(request).await) {
            Ok(response) => {
                let in_doubt = u32::try_from(response.get_ref().gtrids.len()).unwrap_or(u32::MAX);
                lock(&self.health).in_doubt = in_doubt;
            }
            // Misconfiguration is loud: say why, once per change.
            Err(status) => {
                let mut health = lock(&self.health);
                if health.last_logged != status.message() {
                    health.last_logged = status.message().to_owned();
                    tracing::warn!(participant = %self.name, url = %self.url, code = ?status.code(), "participant unavailable: {}", describe_transport(&status));
                }
            }
        }
    }

    fn note<T>(&self, result: Result<T, Status>) -> Result<T, Status> {
        let mut health = lock(&self.health);
        match &result {
            Ok(_) => health.reachable = true,
            Err(status) if is_transport(status) => {
                health.reachable = false;
                health.last_error = status.message().to_owned();
            }
            Err(_) => health.reachable = true,
        }
        result
    }
}

/// Every configured participant, by name.
pub struct Participants {
    by_name: BTreeMap<String, Arc<Participant>>,
}

impl Participants {
    pub fn new(config: &[(String, String)], transport: &Transport, max_result_bytes: u64) -> Result<Self, Error> {
        let mut by_name = BTreeMap::new();
        for (name, url) in config {
            if by_name.contains_key(name) {
                return Err(Error::InvalidArgument(format!(
                    "participant {name} is configured twice"
                )));
            }
            by_name.insert(
                name.clone(),
                Arc::new(Participant::new(
                    name.clone(),
                    url.clone(),
                    transport,
                    max_result_bytes,
                )?),
            );
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Result<&Arc<Participant>, Error> {
        self.by_name.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
            Error::NotFound(format!("unknown participant {name:?}; known: {}", known.join(", ")))
        })
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Participant>> {
        self.by_name.values()
    }

    /// Keeps each participant's health and in-doubt count current.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            futures::future::join_all(self.all().map(|p| p.probe())).await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}

/// A transport failure with its cause: tonic's message hides the TLS
/// handshake's reason (e.g. a certificate for another name) in its source
/// chain.
fn describe_transport(status: &Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A transport-level failure: the participant may not have seen the
/// request, or its answer was lost.
fn is_transport(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

/// The request never left: the connection to the participant could not be
/// made (refused, no route, name not found, or a TLS handshake that
/// failed, as when the server is not the participant named). Only a status
/// this process made from its own transport error counts (it has a source);
/// a status the participant sent never does, whatever its text.
fn not_delivered(status: &Status) -> bool {
    if status.code() != Code::Unavailable || std::error::Error::source(status).is_none() {
        return false;
    }
    let text = describe_transport(status);
    [
        "tcp connect error",
        "error trying to connect",
        "dns error",
        "invalid peer certificate",
        "received fatal alert",
    ]
    .iter()
    .any(|cause| text.contains(cause))
}

/// What an RPC failure tells the 2PC engine.
pub fn failure(participant: &str, status: &Status) -> Failure {
    let message = status.message();
    let reason = if message.contains(participant) {
        message.to_owned()
    } else {
        format!("participant {participant}: {message}")
    };
    Failure {
        reason,
        invalid_argument: status.code() == Code::InvalidArgument,
        // ABORTED: the participant rolled the branch back itself.
        // INVALID_ARGUMENT: it refused the request before running anything.
        rolled_back: matches!(status.code(), Code::Aborted | Code::InvalidArgument),
        not_delivered: not_delivered(status),
        // ALREADY_EXISTS: an earlier attempt of a keyed transaction holds
        // the branch.
        exists: status.code() == Code::AlreadyExists,
        // DATA_LOSS: phase 2 found the branch finished the other way.
        heuristic: status.code() == Code::DataLoss,
    }
}

pub fn vote_of(vote: Option<Vote>) -> engine::Vote {
    match vote {
        Some(v) if v.kind == VoteKind::Yes as i32 && v.held => engine::Vote::YesHeld,
        Some(v) if v.kind == VoteKind::Yes as i32 => engine::Vote::Yes,
        Some(v) if v.kind == VoteKind::ReadOnly as i32 => engine::Vote::ReadOnly { held: v.held },
        Some(v) if v.kind == VoteKind::No as i32 => engine::Vote::No(v.reason),
        _ => engine::Vote::No("participant sent no valid vote".to_owned()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
