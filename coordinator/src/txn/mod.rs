//! Global transactions.
//!
//! - [`engine`]: the 2PC state machine of one transaction, pure.
//! - [`actor`]: the task that runs one transaction's engine.
//! - [`Txns`]: every transaction by id: the live ones' handles and what
//!   `GetTransaction` shows, and a bounded memory of finished ones.

pub mod actor;
pub mod engine;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

pub use actor::TxnHandle;
use tandem_proto::v1::{DecisionKind, Isolation, Outcome, TransactionInfo, TxnFilter, TxnState};
use tonic::Status;

use crate::Shared;
use crate::ids::IdGen;

/// How many finished transactions GetTransaction still knows.
const REMEMBER_FINISHED: usize = 100_000;

use self::engine::AbortKind;

pub enum Lookup {
    Live(TxnHandle),
    Finished(Record),
    Unknown,
}

/// What is known of a transaction outside its actor: what GetTransaction
/// shows, and the kind of abort (which decides the status of late requests).
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub info: TransactionInfo,
    pub abort: Option<AbortKind>,
}

pub struct Txns {
    ids: IdGen,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<String, Live>,
    finished: HashMap<String, Record>,
    /// Order of `finished`, oldest first, to bound its size.
    finished_order: VecDeque<String>,
}

struct Live {
    handle: TxnHandle,
    record: Arc<Mutex<Record>>,
}

impl Txns {
    pub fn new(ids: IdGen) -> Self {
        Self {
            ids,
            inner: Mutex::default(),
        }
    }

    /// Starts a transaction: a fresh gtrid and its actor.
    pub fn begin(
        &self,
        shared: &Arc<Shared>,
        label: String,
        isolation: Isolation,
        timeout: Duration,
    ) -> (TxnHandle, TransactionInfo) {
        let id = self.ids.next();
        let now = SystemTime::now();
        let info = TransactionInfo {
            txn_id: id.clone(),
            label,
            state: TxnState::Active as i32,
            started_unix_ms: actor::unix_ms(now),
            deadline_unix_ms: actor::unix_ms(now + timeout),
            ..TransactionInfo::default()
        };
        let record = Arc::new(Mutex::new(Record {
            info: info.clone(),
            abort: None,
        }));
        // Registered before the actor can run, so it can always find itself.
        let mut inner = self.lock();
        let handle = TxnHandle::spawn(
            Arc::clone(shared),
            actor::Params {
                id: id.clone(),
                isolation,
                timeout,
            },
            Arc::clone(&record),
        );
        inner.live.insert(
            id,
            Live {
                handle: handle.clone(),
                record,
            },
        );
        (handle, info)
    }

    pub fn lookup(&self, id: &str) -> Lookup {
        let inner = self.lock();
        if let Some(live) = inner.live.get(id) {
            return Lookup::Live(live.handle.clone());
        }
        match inner.finished.get(id) {
            Some(record) => Lookup::Finished(record.clone()),
            None => Lookup::Unknown,
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

    /// Newest first; `label` (if not empty) must match exactly.
    pub fn list(&self, filter: TxnFilter, label: &str, limit: usize) -> Vec<TransactionInfo> {
        let inner = self.lock();
        let mut out: Vec<TransactionInfo> = inner.live.values().map(|l| lock(&l.record).info.clone()).collect();
        if filter == TxnFilter::All {
            out.extend(
                inner
                    .finished_order
                    .iter()
                    .rev()
                    .filter_map(|id| inner.finished.get(id).map(|r| r.info.clone())),
            );
        }
        if filter == TxnFilter::InDoubt {
            out.retain(|i| i.state == TxnState::Committing as i32 || i.state == TxnState::Aborting as i32);
        }
        if !label.is_empty() {
            out.retain(|i| i.label == label);
        }
        out.sort_by_key(|i| std::cmp::Reverse(i.started_unix_ms));
        out.truncate(limit);
        out
    }

    /// Called by the actor when its transaction is over.
    pub fn finish(&self, id: &str) {
        let mut inner = self.lock();
        let Some(live) = inner.live.remove(id) else {
            return;
        };
        let record = lock(&live.record).clone();
        inner.finished.insert(id.to_owned(), record);
        inner.finished_order.push_back(id.to_owned());
        while inner.finished_order.len() > REMEMBER_FINISHED {
            if let Some(old) = inner.finished_order.pop_front() {
                inner.finished.remove(&old);
            }
        }
    }

    /// The answer to a participant asking how `gtrid` ended. COMMIT when it
    /// is known committed (or committing), PENDING while undecided, ABORT
    /// only when known aborted. A gtrid this process does not remember (an
    /// earlier epoch, or evicted) gets PENDING: until the decision log is
    /// replayed at start, a COMMIT for it may be on disk, and presumed abort
    /// must not overrule a logged COMMIT.
    pub fn decision(&self, gtrid: &str) -> DecisionKind {
        let Some(info) = self.info(gtrid) else {
            return DecisionKind::Pending;
        };
        // The outcome is set once decided (a one-phase commit in flight
        // has none yet).
        match Outcome::try_from(info.outcome) {
            Ok(Outcome::Committed) => DecisionKind::Commit,
            Ok(Outcome::Aborted) => DecisionKind::Abort,
            Ok(Outcome::Unspecified) | Err(_) => DecisionKind::Pending,
        }
    }

    pub fn live(&self) -> usize {
        self.lock().live.len()
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
