//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::time::Duration;

use sqlx::{AssertSqlSafe, MySqlPool, Row};
use tandem_client::{Client, Outcome, Statement};
use tandem_integration_tests::{Cluster, ClusterConfig};
use tonic::Code;

pub async fn cluster() -> Cluster {
    Cluster::start(ClusterConfig::default()).await.expect("cluster starts")
}

/// Waits until direct query `sql` (outside tandem) returns `want`, asking
/// every 200 ms; panics with what it last saw after `limit`. (InnoDB
/// refreshes `information_schema.innodb_trx` only when it was last read
/// more than 100 ms before: asked more often, it never changes.)
pub async fn wait_scalar(pool: &MySqlPool, sql: &str, want: i64, limit: Duration) {
    let until = std::time::Instant::now() + limit;
    loop {
        let got = scalar(pool, sql).await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "{sql}: {got} after {limit:?}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One integer from a direct query (outside tandem).
pub async fn scalar(pool: &MySqlPool, sql: &str) -> i64 {
    let row = sqlx::query(AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    // SUM() is DECIMAL, COUNT() is BIGINT: decode by the column's type.
    match sqlx::Column::type_info(&sqlx::Row::columns(&row)[0])
        .to_string()
        .as_str()
    {
        "DECIMAL" => row
            .try_get_unchecked::<String, _>(0)
            .expect("decimal")
            .parse()
            .unwrap_or_else(|e| panic!("{sql}: not an integer: {e}")),
        _ => row.try_get_unchecked::<i64, _>(0).expect("an integer"),
    }
}

pub async fn exec(pool: &MySqlPool, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Asserts no tandem branch is left prepared on any database.
pub async fn assert_no_prepared(cluster: &Cluster) {
    let left = cluster.prepared_branches().await.expect("XA RECOVER");
    assert!(left.is_empty(), "prepared branches left behind: {left:?}");
}

/// Asserts that a row can be updated from outside at once: no lock held.
pub async fn assert_unlocked(pool: &MySqlPool, table: &str, where_clause: &str) {
    if let Err(why) = unlocked(pool, table, where_clause).await {
        panic!("{why}");
    }
}

/// Polls until nothing holds a lock on the rows and no tandem branch is
/// prepared anywhere (a rollback on its way), or fails after `limit`.
pub async fn wait_released(cluster: &Cluster, table: &str, where_clause: &str, limit: Duration) {
    let until = std::time::Instant::now() + limit;
    for node in cluster.nodes() {
        while let Err(why) = unlocked(node.pool(), table, where_clause).await {
            assert!(std::time::Instant::now() < until, "{}: {why}", node.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    wait_no_prepared(cluster, until.saturating_duration_since(std::time::Instant::now())).await;
}

/// Polls until no tandem branch is prepared on any database, or fails
/// after `limit`.
pub async fn wait_no_prepared(cluster: &Cluster, limit: Duration) {
    let until = std::time::Instant::now() + limit;
    loop {
        let left = cluster.prepared_branches().await.expect("XA RECOVER");
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "prepared branches left behind: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the rows can be updated from outside at once. The session's
/// lock wait is 1 s, so a held lock fails the update.
async fn unlocked(pool: &MySqlPool, table: &str, where_clause: &str) -> Result<(), String> {
    let mut conn = pool.acquire().await.expect("connection");
    exec_conn(&mut conn, "SET SESSION innodb_lock_wait_timeout = 1").await;
    let started = std::time::Instant::now();
    let sql = format!("UPDATE {table} SET {} WHERE {where_clause}", touch(table));
    sqlx::raw_sql(AssertSqlSafe(sql.clone()))
        .execute(&mut *conn)
        .await
        .map_err(|e| format!("{sql} should not wait for a lock: {e}"))?;
    if started.elapsed() < Duration::from_millis(900) {
        Ok(())
    } else {
        Err(format!("{sql} waited for a lock"))
    }
}

fn touch(table: &str) -> &'static str {
    match table {
        "accounts" => "balance = balance",
        "stock" => "qty = qty",
        _ => "id = id",
    }
}

async fn exec_conn(conn: &mut sqlx::MySqlConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

pub fn expect_code<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code) -> tonic::Status {
    match result {
        Err(status) if status.code() == code => status,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

pub fn insert_note(id: i64, body: &str) -> Statement {
    Statement::new("INSERT INTO notes (id, body) VALUES (?, ?)")
        .bind(id)
        .bind(body)
}

pub async fn seed_accounts(client: &mut Client, participants: &[&str], per_participant: i64, balance: i64) {
    for p in participants {
        let statements = (1..=per_participant)
            .map(|id| {
                Statement::new("INSERT INTO accounts (id, owner, balance) VALUES (?, ?, ?)")
                    .bind(id)
                    .bind(format!("{p}-{id}"))
                    .bind(balance)
            })
            .collect();
        let done = client.submit(vec![(p, statements)]).await.expect("seed");
        assert_eq!(done.outcome(), Outcome::Committed, "{}", done.reason);
    }
}

pub fn debit(account: i64, amount: i64) -> Statement {
    Statement::new("UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance >= ?")
        .bind(amount)
        .bind(account)
        .bind(amount)
        .expect_rows_affected(1)
}

pub fn credit(account: i64, amount: i64) -> Statement {
    Statement::new("UPDATE accounts SET balance = balance + ? WHERE id = ?")
        .bind(amount)
        .bind(account)
        .expect_rows_affected(1)
}

pub async fn global_status(pool: &MySqlPool, name: &str) -> i64 {
    let row = sqlx::query(AssertSqlSafe(format!("SHOW GLOBAL STATUS LIKE '{name}'")))
        .fetch_one(pool)
        .await
        .expect("SHOW GLOBAL STATUS");
    row.try_get_unchecked::<String, _>(1)
        .expect("value")
        .parse()
        .expect("number")
}
