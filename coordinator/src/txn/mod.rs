//! Global transactions.
//!
//! - [`engine`]: the 2PC state machine of one transaction, pure.
//! - [`actor`]: the task that runs one transaction's engine.
//! - [`Txns`]: every transaction by id: the live ones' handles and what
//!   `GetTransaction` shows, and a bounded memory of finished ones.

pub mod actor;
pub mod engine;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

pub use actor::TxnHandle;
use tandem_common::{Identity, names};
use tandem_proto::v1::{
    self as pb, BranchFate, DecisionKind, Isolation, Outcome, TransactionInfo, TxnFilter, TxnState,
};
use tonic::Status;

use crate::Shared;
use crate::auth::Caller;
use crate::error::Error;
use crate::ids::{IdGen, Origin};
use crate::resolve::{self, Resolved};

/// How many finished transactions GetTransaction still knows.
const REMEMBER_FINISHED: usize = 100_000;
/// Most GetTransactions at once that must ask every participant (the
/// transaction is no longer in memory): each takes a MySQL session and a
/// fence row on each participant.
const PARTICIPANT_LOOKUPS: usize = 4;
/// Most transactions one ListTransactions page looks at (under the
/// registry's lock), whatever it finds.
const LIST_SCAN: usize = 10_000;

use self::engine::AbortKind;

pub enum Lookup {
    /// `mine`: the caller began it (else it is an operator looking at
    /// another principal's).
    Live {
        handle: TxnHandle,
        mine: bool,
    },
    Finished(Record),
    Unknown,
}

/// What is known of a transaction outside its actor: what GetTransaction
/// shows, and the kind of abort (which decides the status of late requests).
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub info: TransactionInfo,
    pub abort: Option<AbortKind>,
    /// The principal that began it.
    pub owner: Option<Identity>,
}

pub struct Txns {
    ids: IdGen,
    inner: Mutex<Inner>,
    /// Bounds the GetTransactions that ask the participants.
    participant_lookups: tokio::sync::Semaphore,
    limits: Limits,
}

/// What a new transaction is begun with.
#[derive(Debug, Clone)]
pub struct Start {
    pub label: String,
    pub isolation: Isolation,
    pub timeout: Duration,
    /// The client's idempotency key (checked), if any.
    pub key: Option<String>,
    /// The participants a Submit opens branches on, counted against the
    /// owner's share before the transaction (and its key) is registered:
    /// a refused Submit leaves nothing behind, so its retry may run.
    pub branches: Vec<String>,
    /// The trace context of the client's call.
    pub parent: tandem_common::telemetry::Parent,
}

/// What principals may hold at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Live transactions, over all principals.
    pub max_live: usize,
    /// Live transactions of one principal.
    pub max_live_per_principal: usize,
    /// Open branches of one principal on one participant: each pins one
    /// of that participant's MySQL sessions, so one principal must not
    /// take them all.
    pub max_branches_per_principal: usize,
}

#[derive(Default)]
struct Inner {
    live: HashMap<String, Live>,
    /// Live transactions per owner, for the per-principal limit.
    per_principal: HashMap<Identity, usize>,
    /// Open branches per (owner, participant).
    branches: HashMap<(Identity, String), usize>,
    /// Every remembered transaction (live and finished) by the order it
    /// was registered in, for ListTransactions' pages.
    order: BTreeMap<u64, String>,
    next_ordinal: u64,
    finished: HashMap<String, Record>,
    /// Order of `finished` (with ordinals), oldest first, to bound its size.
    finished_order: VecDeque<(u64, String)>,
}

struct Live {
    handle: TxnHandle,
    record: Arc<Mutex<Record>>,
    owner: Option<Identity>,
    /// Its place in `Inner::order`.
    ordinal: u64,
    /// The participants it opened a branch on (counted in
    /// `Inner::branches` until it ends).
    participants: Vec<String>,
}

impl Txns {
    pub fn new(ids: IdGen, limits: Limits) -> Self {
        Self {
            ids,
            inner: Mutex::default(),
            participant_lookups: tokio::sync::Semaphore::new(PARTICIPANT_LOOKUPS),
            limits,
        }
    }

    /// Starts a transaction owned by `owner`: a fresh gtrid (or, with a
    /// client key, the key's) and its actor, unless a live-transaction
    /// limit is reached. A key this replica already holds, live or
    /// finished, is [`Error::AlreadyExists`].
    pub fn begin(
        &self,
        shared: &Arc<Shared>,
        owner: Identity,
        start: Start,
    ) -> Result<(TxnHandle, TransactionInfo), Error> {
        let Start {
            label,
            isolation,
            timeout,
            key,
            branches,
            parent,
        } = start;
        // Checked, issued and registered under one lock: concurrent
        // Begins cannot all pass a limit, and no id is ever issued without
        // being findable (a GetTransaction in between would fence it).
        let mut inner = self.lock();
        let keyed = key.as_deref().map(|key| names::keyed_gtrid(&owner.to_string(), key));
        if let Some(id) = &keyed
            && (inner.live.contains_key(id) || inner.finished.contains_key(id))
        {
            return Err(Error::AlreadyExists(format!(
                "transaction {id} already has this key on this coordinator; ask GetTransaction"
            )));
        }
        if inner.live.len() >= self.limits.max_live {
            return Err(Error::ResourceExhausted(format!(
                "the coordinator has {} live transactions, its limit (--max-live-transactions); retry later",
                inner.live.len()
            )));
        }
        let mine = inner.per_principal.get(&owner).copied().unwrap_or(0);
        if mine >= self.limits.max_live_per_principal {
            return Err(Error::ResourceExhausted(format!(
                "{owner} has {mine} live transactions, the limit per principal (--max-live-per-principal); \
                 finish some first"
            )));
        }
        let new: Vec<&String> = dedup(&branches, &[]);
        self.check_share(&inner, &owner, &new)?;
        let id = keyed.unwrap_or_else(|| self.ids.next());
        let now = SystemTime::now();
        let info = TransactionInfo {
            txn_id: id.clone(),
            label,
            key: key.unwrap_or_default(),
            state: TxnState::Active as i32,
            started_unix_ms: actor::unix_ms(now),
            deadline_unix_ms: actor::unix_ms(now + timeout),
            ..TransactionInfo::default()
        };
        let params = actor::Params {
            id,
            isolation,
            timeout,
            parent,
        };
        let handle = Self::spawn(&mut inner, shared, params, info.clone(), Some(owner.clone()));
        Self::reserve(&mut inner, &info.txn_id, &owner, &new);
        Ok((handle, info))
    }

    /// Starts the actor and registers it, before it can run, so it can
    /// always find itself.
    fn spawn(
        inner: &mut Inner,
        shared: &Arc<Shared>,
        params: actor::Params,
        info: TransactionInfo,
        owner: Option<Identity>,
    ) -> TxnHandle {
        let id = params.id.clone();
        let record = Arc::new(Mutex::new(Record {
            info,
            abort: None,
            owner: owner.clone(),
        }));
        let handle = TxnHandle::spawn(Arc::clone(shared), params, Arc::clone(&record));
        if let Some(owner) = &owner {
            *inner.per_principal.entry(owner.clone()).or_insert(0) += 1;
        }
        inner.next_ordinal += 1;
        let ordinal = inner.next_ordinal;
        inner.order.insert(ordinal, id.clone());
        inner.live.insert(
            id,
            Live {
                handle: handle.clone(),
                record,
                owner,
                ordinal,
                participants: Vec::new(),
            },
        );
        handle
    }

    /// Transaction `id` as `caller` may see it: another principal's
    /// transaction is [`Lookup::Unknown`], exactly like one that does not
    /// exist, so ids reveal nothing.
    pub fn lookup(&self, id: &str, caller: &Caller) -> Lookup {
        let inner = self.lock();
        if let Some(live) = inner.live.get(id) {
            if !caller.sees(live.owner.as_ref()) {
                return Lookup::Unknown;
            }
            return Lookup::Live {
                handle: live.handle.clone(),
                mine: live.owner.as_ref() == Some(&caller.principal),
            };
        }
        match inner.finished.get(id) {
            Some(record) if caller.sees(record.owner.as_ref()) => Lookup::Finished(record.clone()),
            _ => Lookup::Unknown,
        }
    }

    /// Counts the branches transaction `id` is about to open on
    /// `participants`, or refuses (before anything runs) when its owner
    /// already holds its share of one of them.
    pub fn open_branches(&self, id: &str, participants: &[String]) -> Result<(), Error> {
        let mut inner = self.lock();
        let Some(live) = inner.live.get(id) else {
            return Ok(());
        };
        let Some(owner) = live.owner.clone() else {
            return Ok(());
        };
        let new = dedup(participants, &live.participants);
        self.check_share(&inner, &owner, &new)?;
        Self::reserve(&mut inner, id, &owner, &new);
        Ok(())
    }

    /// Refuses when `owner` already holds its share of open branches on
    /// one of the participants in `new`.
    fn check_share(&self, inner: &Inner, owner: &Identity, new: &[&String]) -> Result<(), Error> {
        let max = self.limits.max_branches_per_principal;
        for participant in new {
            let held = inner
                .branches
                .get(&(owner.clone(), (*participant).clone()))
                .copied()
                .unwrap_or(0);
            if held >= max {
                return Err(Error::ResourceExhausted(format!(
                    "{owner} holds {held} open branches on participant {participant}, its share \
                     (--max-branches-per-principal); finish some first"
                )));
            }
        }
        Ok(())
    }

    /// Counts the branches live transaction `id` of `owner` opens on `new`
    /// (checked by [`Self::check_share`] under the same lock).
    fn reserve(inner: &mut Inner, id: &str, owner: &Identity, new: &[&String]) {
        for participant in new {
            *inner
                .branches
                .entry((owner.clone(), (*participant).clone()))
                .or_insert(0) += 1;
        }
        if let Some(live) = inner.live.get_mut(id) {
            live.participants.extend(new.iter().map(|p| (*p).clone()));
        }
    }

    /// What `caller` may see of transaction `id`, if the coordinator still
    /// remembers it: `Err` when it belongs to another principal.
    fn info_for(&self, id: &str, caller: &Caller) -> Result<Option<TransactionInfo>, ()> {
        let inner = self.lock();
        let (owner, info) = match inner.live.get(id) {
            Some(live) => (live.owner.clone(), lock(&live.record).info.clone()),
            None => match inner.finished.get(id) {
                Some(record) => (record.owner.clone(), record.info.clone()),
                None => return Ok(None),
            },
        };
        if caller.sees(owner.as_ref()) {
            Ok(Some(info))
        } else {
            Err(())
        }
    }

    /// Notes an operator's resolution of `id`'s hazard, if this replica
    /// holds `id`.
    pub fn resolve_hazard(&self, id: &str, resolution: &pb::HazardResolution) {
        let mut inner = self.lock();
        if let Some(live) = inner.live.get(id) {
            lock(&live.record).info.hazard_resolution = Some(resolution.clone());
        } else if let Some(record) = inner.finished.get_mut(id) {
            record.info.hazard_resolution = Some(resolution.clone());
        }
    }

    /// The finished transaction `id`, if it has ended.
    pub fn finished(&self, id: &str) -> Option<Record> {
        self.lock().finished.get(id).cloned()
    }

    pub fn info(&self, id: &str) -> Option<TransactionInfo> {
        let inner = self.lock();
        match inner.live.get(id) {
            Some(live) => Some(lock(&live.record).info.clone()),
            None => inner.finished.get(id).map(|r| r.info.clone()),
        }
    }

    /// A page of the transactions `caller` may see, newest first, below
    /// `before` (a previous page's token); `label` (if not empty) must
    /// match exactly. Looks at no more than [`LIST_SCAN`] transactions, so
    /// the registry's lock is held briefly whatever the filter; returns
    /// where the next page starts, if anywhere.
    pub fn list(
        &self,
        caller: &Caller,
        filter: TxnFilter,
        label: &str,
        limit: usize,
        before: Option<u64>,
    ) -> (Vec<TransactionInfo>, Option<u64>) {
        let inner = self.lock();
        let mut out = Vec::new();
        for (scanned, (&ordinal, id)) in inner.order.range(..before.unwrap_or(u64::MAX)).rev().enumerate() {
            if scanned == LIST_SCAN {
                // Not looked at yet: the next page starts with it.
                return (out, Some(ordinal + 1));
            }
            let (owner, info) = match inner.live.get(id) {
                Some(live) => (live.owner.as_ref(), lock(&live.record).info.clone()),
                None => match inner.finished.get(id) {
                    // Only the live ones are in flight or in doubt.
                    Some(record) if matches!(filter, TxnFilter::All | TxnFilter::Hazard) => {
                        (record.owner.as_ref(), record.info.clone())
                    }
                    _ => continue,
                },
            };
            let wanted = caller.sees(owner)
                && (label.is_empty() || info.label == label)
                && match filter {
                    TxnFilter::InDoubt => {
                        info.state == TxnState::Committing as i32 || info.state == TxnState::Aborting as i32
                    }
                    TxnFilter::Hazard => !info.hazard.is_empty() && info.hazard_resolution.is_none(),
                    TxnFilter::All | TxnFilter::InFlight => true,
                };
            if wanted {
                out.push(info);
                if out.len() == limit {
                    return (out, Some(ordinal));
                }
            }
        }
        (out, None)
    }

    /// Called by the actor when its transaction is over.
    pub fn finish(&self, id: &str) {
        let mut inner = self.lock();
        let Some(live) = inner.live.remove(id) else {
            return;
        };
        if let Some(owner) = &live.owner {
            if let Some(count) = inner.per_principal.get_mut(owner) {
                *count -= 1;
                if *count == 0 {
                    inner.per_principal.remove(owner);
                }
            }
            for participant in &live.participants {
                let key = (owner.clone(), participant.clone());
                if let Some(count) = inner.branches.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        inner.branches.remove(&key);
                    }
                }
            }
        }
        let record = lock(&live.record).clone();
        inner.finished.insert(id.to_owned(), record);
        inner.finished_order.push_back((live.ordinal, id.to_owned()));
        while inner.finished_order.len() > REMEMBER_FINISHED {
            if let Some((ordinal, old)) = inner.finished_order.pop_front() {
                inner.finished.remove(&old);
                inner.order.remove(&ordinal);
            }
        }
    }

    /// The answer to a participant asking how `gtrid` ended, if this
    /// replica holds it in memory: what its actor says while it lives
    /// (PENDING until decided), else how it ended. `None` when this replica
    /// does not hold it: then the participants tell ([`Txns::resolve`]).
    ///
    /// `asker` is the participant asking (`None` without TLS identities).
    /// A decided transaction that never had a branch on it answers ABORT:
    /// a branch prepared there under this gtrid was not this
    /// transaction's, so it must not commit with it.
    pub fn decision(&self, gtrid: &str, asker: Option<&str>) -> Option<DecisionKind> {
        let info = self.info(gtrid)?;
        // The outcome is set once decided (a one-phase commit in flight
        // has none yet).
        let decision = match Outcome::try_from(info.outcome) {
            Ok(Outcome::Committed) => DecisionKind::Commit,
            Ok(Outcome::Aborted) => DecisionKind::Abort,
            Ok(Outcome::Unspecified) | Err(_) => DecisionKind::Pending,
        };
        let stranger = asker
            .is_some_and(|asker| !info.branches.is_empty() && !info.branches.iter().any(|b| b.participant == asker));
        Some(if stranger && decision != DecisionKind::Pending {
            DecisionKind::Abort
        } else {
            decision
        })
    }

    /// How transaction `gtrid`, which no replica may hold any more, ended:
    /// from its participants (see [`resolve`]). A few at a time: each
    /// costs every participant asked a session and maybe a fence row.
    ///
    /// Only a participant that holds a prepared branch of the transaction
    /// may have it fenced: `asker` (when known) must be in `set`, and its
    /// own branch must be prepared with that same set, or nothing is asked.
    pub async fn resolve(
        &self,
        shared: &Shared,
        gtrid: &str,
        set: &[String],
        asker: Option<&str>,
    ) -> Result<Resolved, Status> {
        let _lookup = self
            .participant_lookups
            .acquire()
            .await
            .map_err(|_| Status::unavailable("the coordinator is shutting down"))?;
        if let Some(asker) = asker {
            if !set.iter().any(|p| p == asker) {
                return Err(Status::failed_precondition(format!(
                    "participant {asker} asks about {gtrid} without being in the participant set it sent"
                )));
            }
            let own = shared
                .participants
                .get(asker)
                .map_err(Status::from)?
                .inquire(gtrid, true)
                .await?;
            if own.fate != BranchFate::Prepared || own.participants != set {
                return Err(Status::failed_precondition(format!(
                    "participant {asker} holds no branch of {gtrid} prepared with that participant set"
                )));
            }
        }
        Ok(resolve::resolve(&shared.participants, gtrid, set, false).await)
    }

    /// What GetTransaction says of `id`: from memory, else (a transaction
    /// of another replica, of an earlier run, or one evicted from memory)
    /// from the participants' marker rows (outcome only). A client only
    /// probes (it must not end a transaction that may be another
    /// principal's, or not begun yet); an operator fences, so its answer
    /// is final.
    ///
    /// `by_key`: the caller named its transaction by its key, so `id` is
    /// its own (derived from its identity) and it may settle it for good
    /// like an operator.
    pub async fn lookup_info(
        &self,
        shared: &Shared,
        id: &str,
        caller: &Caller,
        by_key: bool,
    ) -> Result<TransactionInfo, Status> {
        match self.info_for(id, caller) {
            Ok(Some(info)) => return Ok(info),
            Ok(None) => {}
            Err(()) => return Err(Status::not_found(format!("no transaction {id}"))),
        }
        if matches!(self.ids.origin(id), Origin::Malformed | Origin::NeverIssued) {
            return Err(Status::not_found(format!("no transaction {id}")));
        }
        // Each asks (and maybe fences) every participant: a few at a time,
        // and refused rather than queued when too many are asking.
        let _lookup = self.participant_lookups.try_acquire().map_err(|_| {
            Status::unavailable(format!(
                "too many lookups of transactions the coordinator no longer holds are in progress; ask about \
                 {id} again"
            ))
        })?;
        let decided = |outcome: Outcome, reason: String| TransactionInfo {
            txn_id: id.to_owned(),
            state: if outcome == Outcome::Committed {
                TxnState::Committed
            } else {
                TxnState::Aborted
            } as i32,
            outcome: outcome as i32,
            reason,
            ..TransactionInfo::default()
        };
        let probe = !(caller.is_operator() || by_key);
        match resolve::resolve(&shared.participants, id, &[], probe).await {
            Resolved::Committed { hazard } => Ok(TransactionInfo {
                hazard_resolution: if hazard.is_empty() {
                    None
                } else {
                    crate::resolve::hazard_resolution(&shared.participants, id).await
                },
                hazard,
                ..decided(
                    Outcome::Committed,
                    "committed: every branch of its participant set is prepared or committed (from the \
                     participants' marker rows)"
                        .to_owned(),
                )
            }),
            Resolved::Aborted(why) => Ok(decided(Outcome::Aborted, why)),
            Resolved::Pending(why) => Err(Status::unavailable(format!("{why}; ask again"))),
            Resolved::NotOurs => Err(Status::not_found(format!("no transaction {id}"))),
            Resolved::NoRecord => Err(Status::not_found(format!(
                "no transaction {id} on this replica, and no participant has a record of it: it has not \
                 prepared anywhere (ask the replica that began it; an operator's GetTransaction settles it \
                 for good)"
            ))),
        }
    }

    pub fn live(&self) -> usize {
        self.lock().live.len()
    }

    /// Every live transaction's actor.
    pub fn live_handles(&self) -> Vec<TxnHandle> {
        self.lock().live.values().map(|live| live.handle.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

/// The status for a request on a transaction that has already ended.
pub fn ended_status(record: &Record) -> Status {
    let info = &record.info;
    if info.outcome == Outcome::Committed as i32 {
        Status::failed_precondition(format!("transaction {} is not active: it committed", info.txn_id))
    } else {
        abort_status(&info.txn_id, &info.reason, record.abort.unwrap_or(AbortKind::Failed))
    }
}

/// The status for a request on an aborted transaction: why it aborted,
/// with the code a client can act on.
pub fn abort_status(id: &str, reason: &str, kind: AbortKind) -> Status {
    let message = format!("transaction {id} aborted: {reason}");
    match kind {
        AbortKind::InvalidArgument => Status::invalid_argument(message),
        AbortKind::Client => Status::failed_precondition(format!("transaction {id} was rolled back")),
        AbortKind::Deadline => Status::deadline_exceeded(message),
        AbortKind::Failed => Status::aborted(message),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The participants of `participants` not in `held`, each once.
fn dedup<'a>(participants: &'a [String], held: &[String]) -> Vec<&'a String> {
    let mut new: Vec<&String> = Vec::new();
    for participant in participants {
        if !held.contains(participant) && !new.contains(&participant) {
            new.push(participant);
        }
    }
    new
}
