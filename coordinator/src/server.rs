//! The client-facing `Coordinator` service and the participants' `Decisions`
//! service. Handlers validate, forward to a transaction actor, and await its
//! reply; protocol steps never run in a handler (tonic drops a handler's
//! future when its client goes away).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tandem_proto::v1::coordinator_server::Coordinator;
use tandem_proto::v1::decisions_server::Decisions;
use tandem_proto::v1::{self as pb, DecisionKind};
use tandem_proto::v1::{
    BeginRequest, BeginResponse, CommitRequest, CommitResponse, DecisionRequest, DecisionResponse, ExecuteRequest,
    ExecuteResponse, GetTransactionRequest, Isolation, ListParticipantsRequest, ListParticipantsResponse,
    ListTransactionsRequest, ListTransactionsResponse, RollbackRequest, RollbackResponse, Statement, SubmitRequest,
    SubmitResponse, TransactionInfo, TxnFilter, UnsettledRequest, UnsettledResponse,
};
use tonic::{Request, Response, Status};

use crate::Shared;
use crate::auth::{Asker, Caller};
use crate::error::Error;
use crate::resolve::Resolved;
use crate::txn::actor::CallError;
use crate::txn::engine::Ack;
use crate::txn::{Lookup, Start, ended_status};
use tandem_common::{names, telemetry};

/// Most statements in one Execute or Submit branch.
const MAX_STATEMENTS: usize = 1_000;
const MAX_LABEL_LEN: usize = 256;
/// Most transactions in one ListTransactions page.
const MAX_PAGE: u32 = 1_000;
/// Most transactions one Unsettled question names.
const MAX_UNSETTLED: usize = 1_000;

pub struct CoordinatorService {
    shared: Arc<Shared>,
}

/// What a Begin or Submit asks for, as the client sent it (checked by
/// `start`).
struct Asked {
    label: String,
    isolation: i32,
    timeout_ms: u32,
    key: String,
    /// A Submit's participants.
    branches: Vec<String>,
    parent: telemetry::Parent,
}

impl CoordinatorService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn timeout(&self, timeout_ms: u32) -> Result<Duration, Error> {
        let config = &self.shared.config;
        if timeout_ms == 0 {
            return Ok(config.default_timeout);
        }
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        if timeout > config.max_timeout {
            return Err(Error::InvalidArgument(format!(
                "timeout_ms {timeout_ms} exceeds the coordinator's maximum of {} ms",
                config.max_timeout.as_millis()
            )));
        }
        Ok(timeout)
    }

    fn start(&self, caller: Caller, asked: Asked) -> Result<(crate::txn::TxnHandle, TransactionInfo), Error> {
        let Asked {
            label,
            isolation,
            timeout_ms,
            key,
            branches,
            parent,
        } = asked;
        let key = checked_key(key)?;
        if label.len() > MAX_LABEL_LEN {
            return Err(Error::InvalidArgument(format!(
                "label is longer than {MAX_LABEL_LEN} bytes"
            )));
        }
        let isolation = Isolation::try_from(isolation)
            .map_err(|_| Error::InvalidArgument(format!("unknown isolation level {isolation}")))?;
        let timeout = self.timeout(timeout_ms)?;
        if self.shared.shutdown.is_cancelled() {
            return Err(Error::Unavailable(
                "the coordinator is draining (shutting down): begin the transaction at another replica".to_owned(),
            ));
        }
        let start = Start {
            label,
            isolation,
            timeout,
            key,
            branches,
            parent,
        };
        self.shared.txns.begin(&self.shared, caller.principal, start)
    }

    /// The answer to a Submit whose key names transaction `txn_id`, which
    /// this replica already holds: its outcome once it has one (the
    /// results stayed with the first call), or UNKNOWN past its deadline
    /// and the reply wait.
    async fn earlier_submit(&self, txn_id: &str, caller: &Caller) -> Result<SubmitResponse, Status> {
        loop {
            let info = match self.shared.txns.lookup(txn_id, caller) {
                Lookup::Finished(record) => record.info,
                Lookup::Live { .. } => {
                    // Finished since the lookup: look again.
                    let Some(info) = self.shared.txns.info(txn_id) else {
                        continue;
                    };
                    let wait_until = info.deadline_unix_ms + self.shared.config.reply_wait.as_millis() as u64;
                    let past = crate::txn::actor::unix_ms(std::time::SystemTime::now()) > wait_until;
                    let decided = info.outcome != pb::Outcome::Unspecified as i32;
                    match (decided, past) {
                        // Phase 2 still runs (a participant is slow to
                        // commit): the outcome is known all the same.
                        (true, true) => info,
                        (false, true) => {
                            return Err(Status::unknown(format!(
                                "transaction {txn_id} with this key is still deciding; do not resubmit, ask \
                                 GetTransaction"
                            )));
                        }
                        (_, false) => {
                            tokio::time::sleep(EARLIER_POLL).await;
                            continue;
                        }
                    }
                }
                Lookup::Unknown => return Err(unknown_txn(txn_id).into()),
            };
            let outcome = pb::Outcome::try_from(info.outcome).unwrap_or(pb::Outcome::Unspecified);
            if outcome == pb::Outcome::Unspecified {
                return Err(Status::unknown(format!(
                    "the outcome of transaction {txn_id} with this key is not known yet; do not resubmit, ask \
                     GetTransaction"
                )));
            }
            let said = if info.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", info.reason)
            };
            return Ok(SubmitResponse {
                txn_id: info.txn_id,
                outcome: outcome as i32,
                reason: format!(
                    "a Submit with this key already ran (this is its outcome{said}); its results are not kept"
                ),
                results: Vec::new(),
            });
        }
    }

    /// The status for a request whose actor ended while it was being sent.
    fn ended(&self, txn_id: &str, err: CallError) -> Status {
        match err {
            CallError::Status(status) => status,
            CallError::Ended => match self.shared.txns.finished(txn_id) {
                Some(record) => ended_status(&record),
                None => Status::failed_precondition(format!("transaction {txn_id} has ended")),
            },
        }
    }

    /// The live transaction `txn_id` of `caller`, or the status a request
    /// on it gets. `act` names what only its owner may do to it (run
    /// statements, commit); an operator may roll back anyone's.
    fn live(&self, txn_id: &str, caller: &Caller, act: Option<&str>) -> Result<crate::txn::TxnHandle, Status> {
        if txn_id.is_empty() {
            return Err(Error::InvalidArgument("txn_id is required".to_owned()).into());
        }
        match self.shared.txns.lookup(txn_id, caller) {
            Lookup::Live { handle, mine: true } => Ok(handle),
            Lookup::Live { handle, mine: false } => match act {
                None => Ok(handle),
                Some(act) => Err(Error::PermissionDenied(format!(
                    "an operator may see and roll back transaction {txn_id}, but only its owner may {act} it"
                ))
                .into()),
            },
            Lookup::Finished(info) => Err(ended_status(&info)),
            Lookup::Unknown => Err(unknown_txn(txn_id).into()),
        }
    }
}

/// How often a retried Submit looks whether its first attempt ended.
const EARLIER_POLL: Duration = Duration::from_millis(20);

/// A client key as sent (empty: none), checked.
fn checked_key(key: String) -> Result<Option<String>, Error> {
    if key.is_empty() {
        return Ok(None);
    }
    names::validate_key(&key).map_err(Error::InvalidArgument)?;
    Ok(Some(key))
}

fn unknown_txn(txn_id: &str) -> Error {
    Error::NotFound(format!("unknown transaction {txn_id:?}"))
}

fn ack_of(ack: i32) -> Result<Ack, Error> {
    match pb::Ack::try_from(ack) {
        Ok(pb::Ack::Visible) => Ok(Ack::Visible),
        Ok(pb::Ack::Durable) => Ok(Ack::Durable),
        Err(_) => Err(Error::InvalidArgument(format!("unknown ack {ack}"))),
    }
}

fn check_statements(participant: &str, statements: &[Statement]) -> Result<(), Error> {
    if statements.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "no statements for participant {participant}"
        )));
    }
    if statements.len() > MAX_STATEMENTS {
        return Err(Error::InvalidArgument(format!(
            "{} statements for participant {participant}; at most {MAX_STATEMENTS} are allowed",
            statements.len()
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn begin(&self, request: Request<BeginRequest>) -> Result<Response<BeginResponse>, Status> {
        let caller = Caller::of(&request)?;
        let parent = telemetry::Parent::of(request.metadata());
        let req = request.into_inner();
        let asked = Asked {
            label: req.label,
            isolation: req.isolation,
            timeout_ms: req.timeout_ms,
            key: req.key,
            branches: Vec::new(),
            parent,
        };
        let (_, info) = self.start(caller, asked)?;
        Ok(Response::new(BeginResponse {
            txn_id: info.txn_id,
            deadline_unix_ms: info.deadline_unix_ms,
        }))
    }

    async fn execute(&self, request: Request<ExecuteRequest>) -> Result<Response<ExecuteResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        self.shared.participants.get(&req.participant)?;
        check_statements(&req.participant, &req.statements)?;
        let handle = self.live(&req.txn_id, &caller, Some("run statements in"))?;
        self.shared
            .txns
            .open_branches(&req.txn_id, std::slice::from_ref(&req.participant))?;
        let results = handle
            .execute(req.participant, req.statements)
            .await
            .map_err(|e| self.ended(&req.txn_id, e))?;
        Ok(Response::new(ExecuteResponse { results }))
    }

    async fn commit(&self, request: Request<CommitRequest>) -> Result<Response<CommitResponse>, Status> {
        let caller = Caller::of(&request)?;
        let CommitRequest { txn_id, ack } = request.into_inner();
        let ack = ack_of(ack)?;
        let handle = self.live(&txn_id, &caller, Some("commit"))?;
        Ok(Response::new(
            handle.commit(ack).await.map_err(|e| self.ended(&txn_id, e))?,
        ))
    }

    async fn rollback(&self, request: Request<RollbackRequest>) -> Result<Response<RollbackResponse>, Status> {
        let caller = Caller::of(&request)?;
        let txn_id = request.into_inner().txn_id;
        let result = match self.live(&txn_id, &caller, None) {
            Ok(handle) => handle.rollback().await.map_err(|e| self.ended(&txn_id, e)),
            Err(status) => Err(status),
        };
        match result {
            Ok(()) => Ok(Response::new(RollbackResponse {})),
            // Rolling back an aborted transaction again is fine.
            Err(status) if status.code() == tonic::Code::NotFound => Err(status),
            Err(status) => match self.shared.txns.finished(&txn_id) {
                Some(record) if record.info.outcome != tandem_proto::v1::Outcome::Committed as i32 => {
                    Ok(Response::new(RollbackResponse {}))
                }
                _ => Err(status),
            },
        }
    }

    async fn submit(&self, request: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let caller = Caller::of(&request)?;
        let parent = telemetry::Parent::of(request.metadata());
        let req = request.into_inner();
        let ack = ack_of(req.ack)?;
        if req.branches.is_empty() {
            return Err(Error::InvalidArgument("a Submit needs at least one branch".to_owned()).into());
        }
        let mut seen = HashSet::new();
        for branch in &req.branches {
            self.shared.participants.get(&branch.participant)?;
            if !seen.insert(branch.participant.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "participant {} appears in two branches; put its statements in one",
                    branch.participant
                ))
                .into());
            }
            check_statements(&branch.participant, &branch.statements)?;
        }
        let keyed = !req.key.is_empty();
        // Branch shares are counted as the transaction is registered: a
        // refusal leaves no key behind that a retry would find "already ran".
        let participants: Vec<String> = req.branches.iter().map(|b| b.participant.clone()).collect();
        let asked = Asked {
            label: req.label,
            isolation: req.isolation,
            timeout_ms: req.timeout_ms,
            key: req.key.clone(),
            branches: participants,
            parent,
        };
        let started = self.start(caller.clone(), asked);
        let (handle, info) = match started {
            Ok(started) => started,
            // A retry of a keyed Submit this replica holds: the first
            // attempt's outcome, never a second run.
            Err(Error::AlreadyExists(_)) if keyed => {
                let txn_id = names::keyed_gtrid(&caller.principal.to_string(), &req.key);
                return Ok(Response::new(self.earlier_submit(&txn_id, &caller).await?));
            }
            Err(err) => return Err(err.into()),
        };
        let response = handle
            .submit(req.branches, ack)
            .await
            .map_err(|e| self.ended(&info.txn_id, e))?;
        Ok(Response::new(response))
    }

    async fn get_transaction(
        &self,
        request: Request<GetTransactionRequest>,
    ) -> Result<Response<TransactionInfo>, Status> {
        let caller = Caller::of(&request)?;
        let GetTransactionRequest { txn_id, key } = request.into_inner();
        let (txn_id, by_key) = match (txn_id.is_empty(), checked_key(key)?) {
            (false, None) => (txn_id, false),
            (true, Some(key)) => (names::keyed_gtrid(&caller.principal.to_string(), &key), true),
            (true, None) => return Err(Error::InvalidArgument("txn_id or key is required".to_owned()).into()),
            (false, Some(_)) => {
                return Err(Error::InvalidArgument("give txn_id or key, not both".to_owned()).into());
            }
        };
        let info = self
            .shared
            .txns
            .lookup_info(&self.shared, &txn_id, &caller, by_key)
            .await?;
        Ok(Response::new(info))
    }

    async fn list_transactions(
        &self,
        request: Request<ListTransactionsRequest>,
    ) -> Result<Response<ListTransactionsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let req = request.into_inner();
        let filter = TxnFilter::try_from(req.filter)
            .map_err(|_| Error::InvalidArgument(format!("unknown filter {}", req.filter)))?;
        let limit = match req.limit {
            0 => 100,
            n if n > MAX_PAGE => {
                return Err(
                    Error::InvalidArgument(format!("limit {n} is more than a page may hold ({MAX_PAGE})")).into(),
                );
            }
            n => n as usize,
        };
        let before = match req.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<u64>().map_err(|_| {
                Error::InvalidArgument(format!("page_token {token:?} is not one this coordinator gave"))
            })?),
        };
        let (transactions, next) = self.shared.txns.list(&caller, filter, &req.label, limit, before);
        Ok(Response::new(ListTransactionsResponse {
            transactions,
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    async fn list_participants(
        &self,
        request: Request<ListParticipantsRequest>,
    ) -> Result<Response<ListParticipantsResponse>, Status> {
        // Addresses, errors and in-doubt counts are the operators' view.
        operator_only(&request, "ListParticipants")?;
        Ok(Response::new(ListParticipantsResponse {
            participants: self.shared.participants.all().map(|p| p.info()).collect(),
        }))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::CoordinatorStatus>, Status> {
        operator_only(&request, "GetStatus")?;
        let shared = &self.shared;
        Ok(Response::new(pb::CoordinatorStatus {
            name: shared.config.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            draining: shared.shutdown.is_cancelled(),
            live_transactions: shared.txns.live() as u64,
            started_unix_ms: crate::txn::actor::unix_ms(shared.started),
            participants: shared.participants.all().map(|p| p.info()).collect(),
        }))
    }

    async fn drain(&self, request: Request<pb::DrainRequest>) -> Result<Response<pb::DrainResponse>, Status> {
        let caller = operator_only(&request, "Drain")?;
        let live = self.shared.txns.live() as u64;
        if !self.shared.shutdown.is_cancelled() {
            tracing::warn!(operator = %caller.principal, live, "drain asked for by an operator");
            self.shared.shutdown.cancel();
        }
        Ok(Response::new(pb::DrainResponse {
            live_transactions: live,
        }))
    }

    async fn list_in_doubt(
        &self,
        request: Request<pb::ListInDoubtRequest>,
    ) -> Result<Response<pb::InDoubtReport>, Status> {
        operator_only(&request, "ListInDoubt")?;
        let asked = futures::future::join_all(self.shared.participants.all().map(|p| async move {
            let name = p.info().name;
            (name, p.list_in_doubt().await)
        }))
        .await;
        let mut report = pb::InDoubtReport::default();
        for (participant, answer) in asked {
            match answer {
                Ok(listed) => {
                    report.branches.extend(listed.branches);
                    report.truncated |= listed.truncated;
                }
                Err(status) => report.unreachable.push(pb::ParticipantError {
                    participant,
                    error: status.message().to_owned(),
                }),
            }
        }
        report
            .branches
            .sort_by(|a, b| b.age_ms.cmp(&a.age_ms).then_with(|| a.gtrid.cmp(&b.gtrid)));
        Ok(Response::new(report))
    }

    async fn resolve_hazard(
        &self,
        request: Request<pb::ResolveHazardRequest>,
    ) -> Result<Response<pb::HazardResolution>, Status> {
        let caller = operator_only(&request, "ResolveHazard")?;
        let pb::ResolveHazardRequest { txn_id, reason } = request.into_inner();
        let reason = reason.trim().to_owned();
        if txn_id.is_empty() {
            return Err(Error::InvalidArgument("txn_id is required".to_owned()).into());
        }
        if reason.is_empty() {
            return Err(Error::InvalidArgument(
                "reason is required: say how the data was reconciled (it goes in the audit table)".to_owned(),
            )
            .into());
        }
        if reason.len() > MAX_AUDIT_REASON {
            return Err(Error::InvalidArgument(format!("reason is longer than {MAX_AUDIT_REASON} bytes")).into());
        }
        let info = self
            .shared
            .txns
            .lookup_info(&self.shared, &txn_id, &caller, false)
            .await?;
        if info.hazard.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "transaction {txn_id} has no heuristic hazard: nothing to resolve"
            ))
            .into());
        }
        let entry = pb::AuditEntry {
            action: crate::resolve::RESOLVE_HAZARD.to_owned(),
            operator: caller.principal.to_string(),
            reason,
            detail: truncated(&info.hazard, MAX_AUDIT_DETAIL),
            at_unix_ms: 0,
        };
        // In the audit table of each participant of the transaction (of
        // all, if this replica does not know its branches).
        let names: Vec<String> = if info.branches.is_empty() {
            self.shared.participants.all().map(|p| p.info().name).collect()
        } else {
            info.branches.iter().map(|b| b.participant.clone()).collect()
        };
        let asked = futures::future::join_all(names.into_iter().map(|name| {
            let entry = entry.clone();
            let txn_id = &txn_id;
            async move {
                let answer = match self.shared.participants.get(&name) {
                    Ok(p) => p.audit(txn_id, Some(entry)).await,
                    Err(err) => Err(err.into()),
                };
                (name, answer)
            }
        }))
        .await;
        let mut answers = Vec::new();
        let mut failed = Vec::new();
        let mut recorded = false;
        for (participant, answer) in asked {
            match answer {
                Ok(audit) => {
                    recorded |= audit.recorded;
                    answers.push((participant, audit.entries));
                }
                Err(status) => failed.push(pb::ParticipantError {
                    participant,
                    error: status.message().to_owned(),
                }),
            }
        }
        let Some(mut resolution) = crate::resolve::resolution_of(&txn_id, &answers) else {
            let why: Vec<String> = failed
                .iter()
                .map(|f| format!("{}: {}", f.participant, f.error))
                .collect();
            return Err(Error::Unavailable(format!(
                "no participant could record the resolution ({}); try again",
                why.join("; ")
            ))
            .into());
        };
        resolution.failed = failed;
        resolution.already = !recorded;
        self.shared.txns.resolve_hazard(&txn_id, &resolution);
        tracing::warn!(
            txn = %txn_id,
            operator = %resolution.operator,
            reason = %resolution.reason,
            already = resolution.already,
            "heuristic hazard resolved by an operator"
        );
        Ok(Response::new(resolution))
    }
}

/// Longest reason an operator may give (the audit table's column).
const MAX_AUDIT_REASON: usize = 1024;
/// Longest hazard text kept with the resolution (the column, in bytes).
const MAX_AUDIT_DETAIL: usize = 2048;

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncated(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The caller, if it is an operator; PERMISSION_DENIED naming `call`
/// otherwise.
fn operator_only<T>(request: &Request<T>, call: &str) -> Result<Caller, Status> {
    let caller = Caller::of(request)?;
    if !caller.is_operator() {
        return Err(
            Error::PermissionDenied(format!("{call} is for operator identities (<name>.operator.tandem)")).into(),
        );
    }
    Ok(caller)
}

pub struct DecisionService {
    shared: Arc<Shared>,
}

impl DecisionService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[tonic::async_trait]
impl Decisions for DecisionService {
    async fn decision(&self, request: Request<DecisionRequest>) -> Result<Response<DecisionResponse>, Status> {
        let asker = Asker::of(&request)?;
        let DecisionRequest { gtrid, participants } = request.into_inner();
        check_gtrid(&gtrid)?;
        for (i, name) in participants.iter().enumerate() {
            if participants[..i].contains(name) {
                return Err(Error::InvalidArgument(format!(
                    "participant {name} appears twice in {gtrid}'s participant set"
                ))
                .into());
            }
            self.shared.participants.get(name).map_err(|_| {
                Status::failed_precondition(format!(
                    "transaction {gtrid}'s participant set names participant {name}, which this coordinator \
                     does not know; configure it so the transaction can be resolved"
                ))
            })?;
        }
        let txns = &self.shared.txns;
        let decision = match txns.decision(&gtrid, asker.0.as_deref()) {
            Some(decision) => decision,
            // A marker row written before sets were kept: no replica can
            // know which branches to ask.
            None if participants.is_empty() => {
                return Err(Status::failed_precondition(format!(
                    "the marker row of {gtrid} carries no participant set (written before this version): no \
                     replica that did not run it can resolve it; see docs/failures.md"
                )));
            }
            // No replica may hold it: the participants tell.
            None => match txns
                .resolve(&self.shared, &gtrid, &participants, asker.0.as_deref())
                .await?
            {
                Resolved::Committed { hazard } => {
                    if !hazard.is_empty() {
                        tracing::error!(gtrid, "{hazard}");
                    }
                    DecisionKind::Commit
                }
                Resolved::Aborted(_) => DecisionKind::Abort,
                Resolved::Pending(why) => {
                    tracing::debug!(gtrid, why, "cannot resolve yet");
                    DecisionKind::Pending
                }
                // The asker holds a branch of it, so some participant must
                // accept it: ask again rather than guess.
                Resolved::NotOurs | Resolved::NoRecord => DecisionKind::Pending,
            },
        };
        self.shared.metrics.resolved(match decision {
            DecisionKind::Commit => "committed",
            DecisionKind::Abort => "aborted",
            _ => "unknown",
        });
        Ok(Response::new(DecisionResponse {
            decision: decision as i32,
        }))
    }

    async fn unsettled(&self, request: Request<UnsettledRequest>) -> Result<Response<UnsettledResponse>, Status> {
        let asker = Asker::of(&request)?;
        let transactions = request.into_inner().transactions;
        if transactions.len() > MAX_UNSETTLED {
            return Err(Error::InvalidArgument(format!(
                "{} transactions in one Unsettled question; at most {MAX_UNSETTLED}",
                transactions.len()
            ))
            .into());
        }
        for t in &transactions {
            check_gtrid(&t.gtrid)?;
            if t.participants.len() > self.shared.participants.all().count() {
                return Err(Error::InvalidArgument(format!(
                    "{}'s participant set names more participants than this cluster has",
                    t.gtrid
                ))
                .into());
            }
        }
        // A participant asks about its own marker rows: a set without it
        // cannot be one of them, and stays unsettled.
        let (own, foreign): (Vec<_>, Vec<_>) = transactions
            .into_iter()
            .partition(|t| asker.0.as_ref().is_none_or(|name| t.participants.contains(name)));
        let mut gtrids = crate::resolve::unsettled(&self.shared.participants, &own).await;
        gtrids.extend(foreign.into_iter().map(|t| t.gtrid));
        Ok(Response::new(UnsettledResponse { gtrids }))
    }
}

/// Refuses a string that no replica of a tandem cluster issues as a gtrid.
fn check_gtrid(gtrid: &str) -> Result<(), Status> {
    if crate::ids::parse(gtrid).is_none() && !names::is_keyed_gtrid(gtrid) {
        return Err(Error::InvalidArgument(format!("{gtrid:?} is not a tandem gtrid")).into());
    }
    Ok(())
}
