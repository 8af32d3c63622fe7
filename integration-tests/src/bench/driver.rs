//! Who runs a transaction: tandem (one `Submit`), or one of the baselines
//! driven straight from this process over sqlx, on the same databases:
//!
//! - **B0**: the whole transaction as one local transaction on one
//!   database (the first branch's), `BEGIN … COMMIT`.
//! - **B1**: XA by hand: every branch in parallel runs `XA START`, its
//!   statements, `XA END; XA PREPARE` (one round trip); then `XA COMMIT`
//!   on every branch in parallel. One branch: `XA COMMIT … ONE PHASE`.
//!   No decision log: a crash between the phases leaves branches nobody
//!   can finish correctly.
//! - **B1d**: B1 plus a durable decision row (an autocommit INSERT into
//!   `bench_decisions` on the first database) between the phases.
//!
//! A guard that does not hold (rows affected ≠ expected), a deadlock or a
//! lock wait timeout rolls the transaction back: an abort.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::ValueEnum;
use futures::future::join_all;
use serde::Serialize;
use sqlx::mysql::MySqlArguments;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, MySql, MySqlPool};
use tandem_client::{Client, Outcome, Statement, Value, pb};

use super::workload::{Branch, Op, Param};

/// The XA formatID of the baselines' branches ("bnch"): not tandem's, so
/// no participant's recovery ever touches them.
pub const BASELINE_FORMAT_ID: i64 = 0x626e_6368;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Tandem,
    B1,
    B1d,
    B0,
}

impl System {
    pub const ALL: [System; 4] = [System::Tandem, System::B1, System::B1d, System::B0];

    pub fn name(self) -> &'static str {
        match self {
            System::Tandem => "tandem",
            System::B1 => "B1",
            System::B1d => "B1d",
            System::B0 => "B0",
        }
    }
}

/// How one transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Committed,
    /// Rolled back everywhere: a guard, a deadlock, a timeout, a vote NO.
    Aborted(String),
    /// Not known to have ended cleanly (a transport or SQL error).
    Error(String),
}

/// What a driver needs, shared by every client of a run.
pub struct Target {
    pub participants: Vec<String>,
    pub tandem: Option<Client>,
    /// One pool per participant's database, for the baselines.
    pub pools: Vec<MySqlPool>,
    pub timeout: Duration,
    /// When tandem answers a committed Submit.
    pub ack: pb::Ack,
    /// Distinguishes this run's baseline XIDs from an earlier run's.
    pub run_id: String,
    pub sequence: AtomicU64,
}

impl Target {
    pub async fn run(&self, system: System, branches: &[Branch]) -> Ended {
        match system {
            System::Tandem => self.tandem(branches).await,
            System::B0 => self.local(branches).await,
            System::B1 => self.xa(branches, false).await,
            System::B1d => self.xa(branches, true).await,
        }
    }

    async fn tandem(&self, branches: &[Branch]) -> Ended {
        let Some(client) = &self.tandem else {
            return Ended::Error("no coordinator to run tandem against".to_owned());
        };
        let request = pb::SubmitRequest {
            timeout_ms: u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX),
            branches: branches
                .iter()
                .map(|b| pb::Branch {
                    participant: self.participants[b.participant].clone(),
                    statements: b.ops.iter().map(statement).collect(),
                })
                .collect(),
            ack: self.ack as i32,
            ..pb::SubmitRequest::default()
        };
        match client.clone().submit_with(request).await {
            Ok(done) if done.outcome() == Outcome::Committed => Ended::Committed,
            Ok(done) => Ended::Aborted(done.reason),
            Err(status) if status.code() == tonic::Code::Aborted || status.code() == tonic::Code::DeadlineExceeded => {
                Ended::Aborted(status.message().to_owned())
            }
            Err(status) => Ended::Error(format!("{:?}: {}", status.code(), status.message())),
        }
    }

    /// B0: everything in one local transaction on the first branch's
    /// database.
    async fn local(&self, branches: &[Branch]) -> Ended {
        let Some(first) = branches.first() else {
            return Ended::Committed;
        };
        let mut conn = match self.pools[first.participant].acquire().await {
            Ok(conn) => conn,
            Err(e) => return Ended::Error(format!("acquire: {e}")),
        };
        if let Err(e) = sqlx::raw_sql("BEGIN").execute(&mut *conn).await {
            return Ended::Error(format!("BEGIN: {e}"));
        }
        for op in branches.iter().flat_map(|b| &b.ops) {
            if let Err(ended) = run_op(&mut conn, op).await {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                return ended;
            }
        }
        match sqlx::raw_sql("COMMIT").execute(&mut *conn).await {
            Ok(_) => Ended::Committed,
            Err(e) => classify("COMMIT", &e),
        }
    }

    /// B1 and B1d: XA driven by hand, branches in parallel.
    async fn xa(&self, branches: &[Branch], durable_decision: bool) -> Ended {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let gtrid = format!("{}-{n}", self.run_id);
        let one_phase = branches.len() == 1;
        let started = join_all(branches.iter().map(|b| self.xa_branch(b, &gtrid, one_phase))).await;
        let mut open = Vec::new();
        let mut failure = None;
        for (branch, result) in branches.iter().zip(started) {
            match result {
                Ok(conn) => open.push((branch.participant, conn)),
                Err(ended) => failure = failure.or(Some(ended)),
            }
        }
        if one_phase && failure.is_none() {
            return Ended::Committed;
        }
        if failure.is_none() && durable_decision {
            let insert = sqlx::query("INSERT INTO bench_decisions (gtrid) VALUES (?)").bind(&gtrid);
            if let Err(e) = insert.execute(&self.pools[0]).await {
                failure = Some(Ended::Error(format!("decision row: {e}")));
            }
        }
        let op = if failure.is_none() { "COMMIT" } else { "ROLLBACK" };
        let finished = join_all(open.into_iter().map(|(p, mut conn)| {
            let sql = format!("XA {op} {}", xid(&gtrid, &self.participants[p]));
            async move { sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await }
        }))
        .await;
        if let Some(ended) = failure {
            return ended;
        }
        match finished.into_iter().find_map(Result::err) {
            Some(e) => Ended::Error(format!("XA COMMIT: {e}")),
            None => Ended::Committed,
        }
    }

    /// Runs one branch up to its prepare (or its one-phase commit); the
    /// connection comes back prepared, or the branch is rolled back.
    async fn xa_branch(&self, branch: &Branch, gtrid: &str, one_phase: bool) -> Result<PoolConnection<MySql>, Ended> {
        let xid = xid(gtrid, &self.participants[branch.participant]);
        let mut conn = self.pools[branch.participant]
            .acquire()
            .await
            .map_err(|e| Ended::Error(format!("acquire: {e}")))?;
        sqlx::raw_sql(AssertSqlSafe(format!("XA START {xid}")))
            .execute(&mut *conn)
            .await
            .map_err(|e| Ended::Error(format!("XA START: {e}")))?;
        for op in &branch.ops {
            if let Err(ended) = run_op(&mut conn, op).await {
                let rollback = format!("XA END {xid}; XA ROLLBACK {xid}");
                if sqlx::raw_sql(AssertSqlSafe(rollback))
                    .execute(&mut *conn)
                    .await
                    .is_err()
                {
                    // A deadlock already ended it; make sure, or close the
                    // connection (MySQL rolls an unprepared branch back).
                    let again = format!("XA ROLLBACK {xid}");
                    if sqlx::raw_sql(AssertSqlSafe(again)).execute(&mut *conn).await.is_err() {
                        drop(conn.detach());
                    }
                }
                return Err(ended);
            }
        }
        let finish = if one_phase {
            format!("XA END {xid}; XA COMMIT {xid} ONE PHASE")
        } else {
            format!("XA END {xid}; XA PREPARE {xid}")
        };
        match sqlx::raw_sql(AssertSqlSafe(finish)).execute(&mut *conn).await {
            Ok(_) => Ok(conn),
            Err(e) => {
                let _ = sqlx::raw_sql(AssertSqlSafe(format!("XA ROLLBACK {xid}")))
                    .execute(&mut *conn)
                    .await;
                Err(classify("XA PREPARE", &e))
            }
        }
    }
}

fn xid(gtrid: &str, bqual: &str) -> String {
    format!("'{gtrid}','{bqual}',{BASELINE_FORMAT_ID}")
}

async fn run_op(conn: &mut PoolConnection<MySql>, op: &Op) -> Result<(), Ended> {
    let done = bind(sqlx::query(op.sql), &op.params)
        .execute(&mut **conn)
        .await
        .map_err(|e| classify("statement", &e))?;
    match op.expect_affected {
        Some(want) if done.rows_affected() != want => Err(Ended::Aborted(format!(
            "guard failed: expected {want} rows affected, got {}",
            done.rows_affected()
        ))),
        _ => Ok(()),
    }
}

fn bind<'q>(mut query: Query<'q, MySql, MySqlArguments>, params: &'q [Param]) -> Query<'q, MySql, MySqlArguments> {
    for Param::Int(v) in params {
        query = query.bind(*v);
    }
    query
}

/// Deadlocks (1213) and lock wait timeouts (1205) are aborts; anything
/// else is an error.
fn classify(what: &str, e: &sqlx::Error) -> Ended {
    let code = e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(sqlx::mysql::MySqlDatabaseError::number);
    match code {
        Some(1205 | 1213) => Ended::Aborted(format!("{what}: {e}")),
        _ => Ended::Error(format!("{what}: {e}")),
    }
}

fn statement(op: &Op) -> Statement {
    let mut s = Statement::new(op.sql);
    for Param::Int(v) in &op.params {
        s = s.bind(Value::from(*v));
    }
    match op.expect_affected {
        Some(n) => s.expect_rows_affected(n),
        None => s,
    }
}

/// A unique id for this run's baseline XIDs.
pub fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("bench-{now}-{}", std::process::id())
}
