//! Branches: one participant's part of a global transaction.
//!
//! - [`engine`]: the branch state machine, pure.
//! - [`actor`]: the task that owns a branch's pinned connection and runs the
//!   engine's steps as XA statements.
//! - [`Registry`]: the live branches by gtrid, and how recent ones ended, so
//!   repeated phase-2 requests get the same answer.

pub mod actor;
pub mod engine;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

pub use actor::{Batch, BranchHandle, ExecuteOutput};
pub use engine::Ending;

use crate::Shared;
use crate::error::Error;
use crate::sessions::SessionId;
use crate::xa::Xid;

/// How many ended branches are remembered for idempotent answers.
const REMEMBER_ENDED: usize = 100_000;

/// What the registry knows about a gtrid.
pub enum Lookup {
    Live(BranchHandle),
    Ended(Ending),
    Unknown,
}

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<String, BranchHandle>,
    ended: HashMap<String, Ending>,
    /// Insertion order of `ended`, oldest first, to bound its size.
    ended_order: VecDeque<String>,
}

impl Registry {
    /// Creates the branch for `xid`; refuses a gtrid that already has one
    /// here, live or ended, so a late or repeated begin cannot start a
    /// second XA transaction under the same XID.
    pub fn begin(&self, shared: &Arc<Shared>, xid: Xid) -> Result<BranchHandle, Error> {
        let mut inner = self.lock();
        let gtrid = xid.gtrid().to_owned();
        if inner.live.contains_key(&gtrid) {
            return Err(Error::FailedPrecondition(format!("branch {gtrid} has already begun")));
        }
        if inner.ended.contains_key(&gtrid) {
            return Err(Error::FailedPrecondition(format!("branch {gtrid} has already ended")));
        }
        let handle = BranchHandle::spawn(Arc::clone(shared), xid);
        inner.live.insert(gtrid, handle.clone());
        Ok(handle)
    }

    pub fn lookup(&self, gtrid: &str) -> Lookup {
        let inner = self.lock();
        if let Some(handle) = inner.live.get(gtrid) {
            return Lookup::Live(handle.clone());
        }
        match inner.ended.get(gtrid) {
            Some(ending) => Lookup::Ended(*ending),
            None => Lookup::Unknown,
        }
    }

    /// Called by a branch actor when its branch has ended.
    pub fn finish(&self, gtrid: &str, ending: Ending) {
        let mut inner = self.lock();
        inner.live.remove(gtrid);
        inner.remember(gtrid, ending);
    }

    /// Marks an unknown gtrid rolled back, so no branch can begin under
    /// it any more. Returns the live branch instead if one began meanwhile.
    pub fn tombstone(&self, gtrid: &str) -> Option<BranchHandle> {
        let mut inner = self.lock();
        if let Some(handle) = inner.live.get(gtrid) {
            return Some(handle.clone());
        }
        if !inner.ended.contains_key(gtrid) {
            inner.remember(gtrid, Ending::RolledBack);
        }
        None
    }

    /// Records how a one-phase commit of unknown outcome ended.
    pub fn settle(&self, gtrid: &str, committed: bool) {
        let mut inner = self.lock();
        if let Some(ending @ Ending::Unknown(_)) = inner.ended.get_mut(gtrid) {
            *ending = if committed {
                Ending::Committed
            } else {
                Ending::RolledBack
            };
        }
    }

    /// Records how a branch this process did not run ended (found out
    /// from MySQL), unless it is live.
    pub fn record(&self, gtrid: &str, ending: Ending) {
        let mut inner = self.lock();
        if inner.live.contains_key(gtrid) {
            return;
        }
        match inner.ended.get_mut(gtrid) {
            Some(known) => *known = ending,
            None => inner.remember(gtrid, ending),
        }
    }

    /// Drops a tombstone whose rollback did not complete.
    pub fn forget(&self, gtrid: &str) {
        let mut inner = self.lock();
        if inner.ended.remove(gtrid).is_some() {
            inner.ended_order.retain(|g| g != gtrid);
        }
    }

    pub fn live(&self) -> usize {
        self.lock().live.len()
    }

    /// The one-phase commits whose outcome is not settled yet, with the
    /// MySQL session that ran each.
    pub fn unsettled_one_phase(&self) -> Vec<(String, Option<SessionId>)> {
        let inner = self.lock();
        inner
            .ended
            .iter()
            .filter_map(|(gtrid, ending)| match ending {
                Ending::Unknown(owner) => Some((gtrid.clone(), *owner)),
                _ => None,
            })
            .collect()
    }

    /// The gtrids of branches not finished for good: live ones, and
    /// one-phase commits whose outcome is not settled yet (their MySQL
    /// session may still be committing).
    pub fn unfinished(&self) -> Vec<String> {
        let inner = self.lock();
        let unsettled = inner
            .ended
            .iter()
            .filter(|(_, ending)| matches!(ending, Ending::Unknown(_)))
            .map(|(gtrid, _)| gtrid);
        inner.live.keys().chain(unsettled).cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps half-updated
        // in a way that matters more than stopping would.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn remember(&mut self, gtrid: &str, ending: Ending) {
        if self.ended.insert(gtrid.to_owned(), ending).is_none() {
            self.ended_order.push_back(gtrid.to_owned());
        }
        while self.ended_order.len() > REMEMBER_ENDED {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }
}
