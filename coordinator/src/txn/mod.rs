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

use self::engine::CLIENT_ROLLBACK;

pub enum Lookup {
    Live(TxnHandle),
    Finished(TransactionInfo),
    Unknown,
}

pub struct Txns {
    ids: IdGen,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<String, Live>,
    finished: HashMap<String, TransactionInfo>,
    /// Order of `finished`, oldest first, to bound its size.
    finished_order: VecDeque<String>,
}

struct Live {
    handle: TxnHandle,
    info: Arc<Mutex<TransactionInfo>>,
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
            label: label.clone(),
            state: TxnState::Active as i32,
            started_unix_ms: actor::unix_ms(now),
            deadline_unix_ms: actor::unix_ms(now + timeout),
            ..TransactionInfo::default()
        };
        let shared_info = Arc::new(Mutex::new(info.clone()));
        // Registered before the actor can run, so it can always find itself.
        let mut inner = self.lock();
        let handle = TxnHandle::spawn(
            Arc::clone(shared),
            actor::Params {
                id: id.clone(),
                label,
                isolation,
                timeout,
            },
            Arc::clone(&shared_info),
        );
        inner.live.insert(
            id,
            Live {
                handle: handle.clone(),
                info: shared_info,
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
            Some(info) => Lookup::Finished(info.clone()),
            None => Lookup::Unknown,
        }
    }

    pub fn info(&self, id: &str) -> Option<TransactionInfo> {
        let inner = self.lock();
        match inner.live.get(id) {
            Some(live) => Some(lock(&live.info).clone()),
            None => inner.finished.get(id).cloned(),
        }
    }

    /// Newest first.
    pub fn list(&self, filter: TxnFilter, limit: usize) -> Vec<TransactionInfo> {
        let inner = self.lock();
        let mut out: Vec<TransactionInfo> = inner.live.values().map(|l| lock(&l.info).clone()).collect();
        if filter == TxnFilter::All {
            out.extend(
                inner
                    .finished_order
                    .iter()
                    .rev()
                    .filter_map(|id| inner.finished.get(id).cloned()),
            );
        }
        if filter == TxnFilter::InDoubt {
            out.retain(|i| i.state == TxnState::Committing as i32 || i.state == TxnState::Aborting as i32);
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
        let info = lock(&live.info).clone();
        inner.finished.insert(id.to_owned(), info);
        inner.finished_order.push_back(id.to_owned());
        while inner.finished_order.len() > REMEMBER_FINISHED {
            if let Some(old) = inner.finished_order.pop_front() {
                inner.finished.remove(&old);
            }
        }
    }

    /// The answer to a participant asking how `gtrid` ended (presumed
    /// abort: what the coordinator does not know as committed aborted).
    pub fn decision(&self, gtrid: &str) -> DecisionKind {
        match self.info(gtrid) {
            Some(info) if info.outcome == Outcome::Committed as i32 => DecisionKind::Commit,
            Some(info) if info.state == TxnState::Committing as i32 => DecisionKind::Commit,
            Some(info) if info.finished_unix_ms == 0 && info.state != TxnState::Aborting as i32 => {
                DecisionKind::Pending
            }
            _ => DecisionKind::Abort,
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
pub fn ended_status(info: &TransactionInfo) -> Status {
    if info.outcome == Outcome::Committed as i32 {
        Status::failed_precondition(format!("transaction {} is not active: it committed", info.txn_id))
    } else {
        abort_status(&info.txn_id, &info.reason, false)
    }
}

/// The status for a request on an aborted transaction: why it aborted,
/// with the code a client can act on.
pub fn abort_status(id: &str, reason: &str, invalid_argument: bool) -> Status {
    let message = format!("transaction {id} aborted: {reason}");
    if invalid_argument {
        Status::invalid_argument(message)
    } else if reason == CLIENT_ROLLBACK {
        Status::failed_precondition(format!("transaction {id} was rolled back"))
    } else if reason.contains("deadline") {
        Status::deadline_exceeded(message)
    } else {
        Status::aborted(message)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
