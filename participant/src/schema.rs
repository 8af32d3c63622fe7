//! What the participant checks of the database it serves, before and while
//! it runs branches there (DESIGN.md §8).
//!
//! - Tables that cannot roll back (MyISAM, Aria, MEMORY, sequences, …)
//!   would keep the writes of an aborted transaction. The participant looks
//!   for them at start and at every health check (so a table created later
//!   is found within one check) and refuses to begin branches while any
//!   exists, unless `--allow-non-transactional` says the operator accepts
//!   that (and keeps tandem's transactions away from them).
//! - An account that holds FILE, SUPER or global write privileges can do
//!   more than the participant needs; it is warned about at start.
//!   `deploy/README.md` shows the least-privilege account.

use sqlx::{MySqlPool, Row};
use tracing::warn;

/// Schemas that are not the application's (the server's own, and tandem's).
const SYSTEM_SCHEMAS: &str = "'mysql', 'information_schema', 'performance_schema', 'sys', 'tandem'";

/// The tables the account can see that are not transactional, as
/// `schema.table (ENGINE)`; at most 20.
pub async fn non_transactional_tables(pool: &MySqlPool) -> Result<Vec<String>, sqlx::Error> {
    let sql = format!(
        "SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME, ' (', IF(TABLE_TYPE = 'SEQUENCE', 'SEQUENCE', \
         IFNULL(ENGINE, '?')), ')') \
         FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) \
           AND (TABLE_TYPE = 'SEQUENCE' OR (TABLE_TYPE = 'BASE TABLE' AND IFNULL(ENGINE, '') <> 'InnoDB')) \
         ORDER BY 1 LIMIT 20"
    );
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?;
    rows.iter().map(|row| row.try_get_unchecked::<String, _>(0)).collect()
}

/// Why branches cannot begin here, if they cannot.
pub fn refusal(participant: &str, tables: &[String]) -> Option<String> {
    if tables.is_empty() {
        return None;
    }
    Some(format!(
        "participant {participant} refuses to run branches: these tables cannot roll back, so they would keep \
         the writes of aborted transactions: {}; convert them to InnoDB, or start the participant with \
         --allow-non-transactional",
        tables.join(", ")
    ))
}

/// Warns about code the lexer cannot see into: stored functions client SQL
/// may call, and triggers its writes fire. Either could write a table that
/// cannot roll back or take an advisory lock.
pub async fn warn_about_stored_code(pool: &MySqlPool) {
    let sql = format!(
        "SELECT CONCAT(ROUTINE_TYPE, ' ', ROUTINE_SCHEMA, '.', ROUTINE_NAME) FROM information_schema.ROUTINES \
         WHERE ROUTINE_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) \
         UNION ALL \
         SELECT CONCAT('TRIGGER ', TRIGGER_SCHEMA, '.', TRIGGER_NAME) FROM information_schema.TRIGGERS \
         WHERE TRIGGER_SCHEMA NOT IN ({SYSTEM_SCHEMAS}) \
         LIMIT 20"
    );
    let found: Vec<String> = match sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| r.try_get_unchecked::<String, _>(0).ok())
            .collect(),
        Err(err) => {
            warn!(error = %crate::error::describe_sql(&err), "cannot list stored routines and triggers");
            return;
        }
    };
    if !found.is_empty() {
        warn!(
            code = %found.join(", "),
            "stored code runs inside branches where tandem cannot check it: make sure it writes only \
             transactional tables and takes no advisory locks (its effects would survive an abort)"
        );
    }
}

/// Warns when the MySQL account can do more than the participant needs.
pub async fn warn_about_privileges(pool: &MySqlPool) {
    let grants = match sqlx::raw_sql("SHOW GRANTS FOR CURRENT_USER()").fetch_all(pool).await {
        Ok(rows) => rows,
        Err(err) => {
            warn!(error = %crate::error::describe_sql(&err), "cannot read the MySQL account's privileges");
            return;
        }
    };
    for row in grants {
        let Ok(grant) = row.try_get_unchecked::<String, _>(0) else {
            continue;
        };
        if let Some(too_much) = excessive(&grant) {
            warn!(
                privileges = %too_much,
                "the MySQL account holds {too_much} ON *.*: more than a participant needs (deploy/README.md \
                 shows the least-privilege account)"
            );
        }
    }
}

/// The part of a `GRANT … ON *.* …` line that gives more than a
/// participant needs (FILE, SUPER, or writes everywhere), without the
/// password hash that follows `IDENTIFIED BY`.
fn excessive(grant: &str) -> Option<String> {
    let upper = grant.to_ascii_uppercase();
    let (privileges, on) = upper.strip_prefix("GRANT ")?.split_once(" ON ")?;
    if !on.trim_start().starts_with("*.*") {
        return None;
    }
    let risky = [
        "ALL PRIVILEGES",
        "FILE",
        "SUPER",
        "INSERT",
        "UPDATE",
        "DELETE",
        "CREATE USER",
    ];
    let found: Vec<&str> = privileges
        .split(',')
        .map(str::trim)
        .filter(|p| risky.contains(p))
        .collect();
    (!found.is_empty()).then(|| found.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_write_file_and_super_privileges_are_named_without_the_password() {
        assert_eq!(
            excessive(
                "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED BY PASSWORD '*ABC' WITH GRANT OPTION"
            )
            .as_deref(),
            Some("ALL PRIVILEGES")
        );
        assert_eq!(
            excessive("GRANT SELECT, FILE, SUPER ON *.* TO `t`@`%`").as_deref(),
            Some("FILE, SUPER")
        );
        assert_eq!(
            excessive("GRANT USAGE ON *.* TO `t`@`%` IDENTIFIED BY PASSWORD '*X'"),
            None
        );
        assert_eq!(
            excessive("GRANT SELECT, INSERT, UPDATE, DELETE ON `shop`.* TO `t`@`%`"),
            None
        );
        assert!(refusal("alpha", &[]).is_none());
        let why = refusal("alpha", &["app.log (MyISAM)".to_owned()]).unwrap();
        assert!(
            why.contains("app.log (MyISAM)") && why.contains("--allow-non-transactional"),
            "{why}"
        );
    }
}
