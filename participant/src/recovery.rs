//! Branches this process does not hold: prepared branches left in MySQL by
//! an earlier participant process (or a closed session), found with
//! `XA RECOVER` and finished from a fresh session.
//!
//! An unknown XID is never taken as success: a rollback of a branch absent
//! from `XA RECOVER` is fine (under presumed abort an unprepared branch dies
//! with its session), but a commit of one is reported, not assumed.

use std::time::Duration;

use crate::Shared;
use crate::error::{Error, describe_sql};
use crate::xa::{self, Op, Xid, codes};

/// gtrids of this participant's prepared branches.
pub async fn prepared(shared: &Shared) -> Result<Vec<String>, Error> {
    let mut conn = acquire(shared).await?;
    xa::recover(&mut conn, &shared.name)
        .await
        .map_err(|e| unavailable(shared, &e))
}

pub async fn is_prepared(shared: &Shared, xid: &Xid) -> Result<bool, Error> {
    Ok(prepared(shared).await?.iter().any(|g| g == xid.gtrid()))
}

/// Commits or rolls back a prepared branch no live connection of ours
/// holds. `owner` is the MySQL session that prepared it, if known: while it
/// lives (its client connection broke but the server has not noticed),
/// MariaDB refuses to finish the branch from elsewhere (XAER_NOTA although
/// `XA RECOVER` lists it), so it is killed.
pub async fn finish_orphan(shared: &Shared, xid: &Xid, op: Op, owner: Option<u64>) -> Result<(), Error> {
    let mut conn = acquire(shared).await?;
    if let Some(session) = owner {
        // The session may still be running the step whose reply was lost
        // (a PREPARE that has not happened yet would not be in XA RECOVER
        // now but could be later): end it before looking.
        end_session(shared, &mut conn, session).await?;
    }
    for _ in 0..20 {
        let listed = xa::recover(&mut conn, &shared.name)
            .await
            .map_err(|e| unavailable(shared, &e))?
            .iter()
            .any(|g| g == xid.gtrid());
        if !listed {
            return match op {
                Op::Rollback | Op::EndRollback => Ok(()),
                _ => Err(Error::NotFound(format!(
                    "branch {} is not prepared on participant {}; its outcome cannot be confirmed",
                    xid.gtrid(),
                    shared.name
                ))),
            };
        }
        match xa::exec(&mut conn, xid, op).await {
            Ok(()) => return Ok(()),
            // Still attached to a session that is going away.
            Err(err) if xa::error_number(&err) == Some(codes::XAER_NOTA) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => {
                return Err(Error::Unavailable(format!(
                    "{} of branch {} failed on participant {}: {}",
                    op.name(),
                    xid.gtrid(),
                    shared.name,
                    describe_sql(&err)
                )));
            }
        }
    }
    Err(Error::Unavailable(format!(
        "branch {} is still attached to another session on participant {}",
        xid.gtrid(),
        shared.name
    )))
}

/// `KILL`s a session and waits until the server no longer lists it.
async fn end_session(shared: &Shared, conn: &mut sqlx::MySqlConnection, session: u64) -> Result<(), Error> {
    // "Unknown thread id" means it is gone already.
    let _ = xa::kill(conn, session).await;
    for _ in 0..100 {
        if !xa::session_alive(conn, session)
            .await
            .map_err(|e| unavailable(shared, &e))?
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(Error::Unavailable(format!(
        "session {session} on participant {} does not end after KILL",
        shared.name
    )))
}

async fn acquire(shared: &Shared) -> Result<sqlx::pool::PoolConnection<sqlx::MySql>, Error> {
    shared.pool.acquire().await.map_err(|e| unavailable(shared, &e))
}

fn unavailable(shared: &Shared, err: &sqlx::Error) -> Error {
    Error::Unavailable(format!(
        "MySQL unreachable on participant {}: {}",
        shared.name,
        describe_sql(err)
    ))
}
