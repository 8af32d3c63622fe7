//! Branch sessions: the MySQL connections branches pin from `XA START` to
//! phase 2, pooled together with what tandem last set on each.
//!
//! Every branch needs its session's isolation level and time limits set
//! and its session id known (to `KILL` it if it outlives its connection).
//! Sending that with every `XA START` costs MariaDB more than the `XA
//! START` itself (docs/BENCHMARKS.md), so a session remembers its id and
//! settings and a branch sends only what differs.
//!
//! A session that is dropped instead of [released](Sessions::release) is
//! closed: MySQL rolls back an unprepared XA transaction whose session
//! ends and keeps a prepared one for recovery, so a session in an unknown
//! state is never reused. Recovery and health checks use the separate
//! sqlx pool in [`Shared`](crate::Shared).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Row};
use tandem_proto::v1::Isolation;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::xa::{self, Xid};

/// Idle sessions older than this are closed rather than reused: the
/// server may have ended them (`wait_timeout`, a restart).
const MAX_IDLE: Duration = Duration::from_secs(60);

pub struct Sessions {
    options: MySqlConnectOptions,
    /// One permit per open session: at most `max` at a time.
    permits: Arc<Semaphore>,
    /// Most recently released last.
    idle: Mutex<Vec<(Session, Instant)>>,
}

/// One MySQL connection and what tandem set on it.
pub struct Session {
    conn: MySqlConnection,
    id: u64,
    isolation: Option<Isolation>,
    limit_secs: Option<u64>,
    /// Taken from the idle list (rather than just opened).
    reused: bool,
    _permit: OwnedSemaphorePermit,
}

impl Sessions {
    pub fn new(options: MySqlConnectOptions, max: u32) -> Self {
        Self {
            options,
            permits: Arc::new(Semaphore::new(usize::try_from(max).unwrap_or(usize::MAX).max(1))),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle session, or a new one. Waits while `max` sessions are open.
    pub async fn acquire(&self) -> Result<Session, sqlx::Error> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            match idle {
                Some((mut session, since)) if since.elapsed() < MAX_IDLE => {
                    session.reused = true;
                    return Ok(session);
                }
                // Stale, and so is everything released before it.
                Some(_) => self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear(),
                None => return self.open().await,
            }
        }
    }

    /// A newly opened session (after a reused one turned out dead).
    pub async fn open(&self) -> Result<Session, sqlx::Error> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let mut conn = self.options.connect().await?;
        let row = sqlx::raw_sql("SELECT CONNECTION_ID()").fetch_one(&mut conn).await?;
        let id = row.try_get_unchecked::<u64, _>(0)?;
        Ok(Session {
            conn,
            id,
            isolation: None,
            limit_secs: None,
            reused: false,
            _permit: permit,
        })
    }

    /// Keeps a session whose branch ended cleanly for the next branch.
    pub fn release(&self, session: Session) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((session, Instant::now()));
    }

    /// Closes every idle session and refuses new ones.
    pub fn close(&self) {
        self.permits.close();
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

impl Session {
    /// MySQL's id of this session (`CONNECTION_ID()`).
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn conn(&mut self) -> &mut MySqlConnection {
        &mut self.conn
    }

    /// Whether the session came from the idle list: a connection error on
    /// it may only mean the server closed it while idle.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Begins branch `xid` (`XA START`) with the session's isolation level
    /// and its lock wait and statement limits set to `limit_secs`, in one
    /// round trip; settings the session already has are not sent again.
    pub async fn start(&mut self, xid: &Xid, isolation: Isolation, limit_secs: u64) -> Result<(), sqlx::Error> {
        let sql = xa::start_sql(
            xid,
            (self.isolation != Some(isolation)).then_some(isolation),
            (self.limit_secs != Some(limit_secs)).then_some(limit_secs),
        );
        // Unknown until it succeeds: a failed batch may have set part.
        self.isolation = None;
        self.limit_secs = None;
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut self.conn).await?;
        self.isolation = Some(isolation);
        self.limit_secs = Some(limit_secs);
        Ok(())
    }

    /// Shortens the lock wait and statement limits (a later batch of a
    /// branch with less time left).
    pub async fn set_limits(&mut self, secs: u64) -> Result<(), sqlx::Error> {
        self.limit_secs = None;
        xa::set_limits(&mut self.conn, secs).await?;
        self.limit_secs = Some(secs);
        Ok(())
    }

    pub fn limit_secs(&self) -> Option<u64> {
        self.limit_secs
    }
}
