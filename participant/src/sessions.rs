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
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};
use tandem_proto::v1::Isolation;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::xa::{self, Xid};

/// Idle sessions older than this are closed rather than reused: the
/// server may have ended them (`wait_timeout`, a restart).
const MAX_IDLE: Duration = Duration::from_secs(60);

pub struct Sessions {
    options: MySqlConnectOptions,
    /// Most sessions open at once (`--max-connections`).
    max: usize,
    /// One permit per open session: at most `max` at a time.
    permits: Arc<Semaphore>,
    /// Most recently released last.
    idle: Mutex<Vec<(Session, Instant)>>,
    /// Wakes an `acquire` waiting for a permit when a session is released
    /// instead (a released session keeps its permit).
    released: Notify,
}

/// A MySQL session as the server that runs it knows it. Connection ids
/// start again from 1 when the server restarts, so an id alone could name
/// an unrelated session of a later run: the run's start goes with it, and
/// a session is `KILL`ed by id only in the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId {
    pub id: u64,
    /// The server run's start in Unix seconds (`UNIX_TIMESTAMP() - Uptime`,
    /// the same value all through a run). Taken once the run is a second
    /// old, so a later run cannot show the same second.
    pub server_started: i64,
}

/// One MySQL connection and what tandem set on it.
pub struct Session {
    conn: MySqlConnection,
    id: SessionId,
    isolation: Option<Isolation>,
    limit_secs: Option<u64>,
    /// Taken from the idle list (rather than just opened).
    reused: bool,
    _permit: OwnedSemaphorePermit,
}

impl Sessions {
    pub fn new(options: MySqlConnectOptions, max: u32) -> Self {
        let max = usize::try_from(max).unwrap_or(usize::MAX).max(1);
        Self {
            options,
            max,
            permits: Arc::new(Semaphore::new(max)),
            idle: Mutex::new(Vec::new()),
            released: Notify::new(),
        }
    }

    /// Most sessions open at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Sessions open now (pinned by a branch or idle), and of them idle.
    pub fn usage(&self) -> (usize, usize) {
        let open = self.max.saturating_sub(self.permits.available_permits());
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).len();
        (open, idle)
    }

    /// An idle session, or a new one. While `max` sessions are open, waits
    /// for one to be released or closed.
    pub async fn acquire(&self) -> Result<Session, sqlx::Error> {
        loop {
            if let Some(session) = self.take_idle() {
                return Ok(session);
            }
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before looking again, so no release is missed.
            released.as_mut().enable();
            if let Some(session) = self.take_idle() {
                return Ok(session);
            }
            tokio::select! {
                permit = Arc::clone(&self.permits).acquire_owned() => {
                    let permit = permit.map_err(|_| sqlx::Error::PoolClosed)?;
                    return self.connect(permit).await;
                }
                () = released => {}
            }
        }
    }

    /// The most recently released session, unless it idled too long (then
    /// it and every older one are closed).
    fn take_idle(&self) -> Option<Session> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        match idle.pop() {
            Some((mut session, since)) if since.elapsed() < MAX_IDLE => {
                session.reused = true;
                Some(session)
            }
            Some(_) => {
                idle.clear();
                None
            }
            None => None,
        }
    }

    /// A newly opened session (after a reused one turned out dead).
    pub async fn open(&self) -> Result<Session, sqlx::Error> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        self.connect(permit).await
    }

    async fn connect(&self, permit: OwnedSemaphorePermit) -> Result<Session, sqlx::Error> {
        let mut conn = self.options.connect().await?;
        let id = loop {
            let row = sqlx::raw_sql(xa::SESSION_ID_SQL).fetch_one(&mut conn).await?;
            if row.try_get_unchecked::<i64, _>(2)? >= 1 {
                break SessionId {
                    id: row.try_get_unchecked::<u64, _>(0)?,
                    server_started: row.try_get_unchecked::<i64, _>(1)?,
                };
            }
            // The server started this very second: a run that replaced it
            // within the second would show the same start. Once this
            // session has lived into the next second, no later run can.
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        Ok(Session {
            conn,
            id,
            isolation: None,
            limit_secs: None,
            reused: false,
            _permit: permit,
        })
    }

    /// Opens and closes one connection, outside the bound: why MySQL
    /// cannot be reached, where a pool only says it timed out.
    pub async fn probe(&self) -> Result<(), sqlx::Error> {
        let conn = tokio::time::timeout(Duration::from_secs(5), self.options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        let _ = conn.close().await;
        Ok(())
    }

    /// Keeps a session whose branch ended cleanly for the next branch.
    pub fn release(&self, session: Session) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((session, Instant::now()));
        self.released.notify_one();
    }

    /// Closes every idle session and refuses new ones.
    pub fn close(&self) {
        self.permits.close();
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

impl Session {
    /// MySQL's id of this session (`CONNECTION_ID()`) and its server run.
    pub fn id(&self) -> SessionId {
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

    /// Begins branch `xid` (`XA START`, or `START TRANSACTION` for a local
    /// one) with the session's isolation level and its lock wait and
    /// statement limits set to `limit_secs`, in one round trip; settings
    /// the session already has are not sent again.
    pub async fn start(
        &mut self,
        xid: &Xid,
        kind: xa::Kind,
        isolation: Isolation,
        limit_secs: u64,
    ) -> Result<(), sqlx::Error> {
        let sql = xa::start_sql(
            xid,
            kind,
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
