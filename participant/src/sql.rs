//! Checks a client's SQL before it reaches the branch's connection.
//!
//! A branch lives inside one XA transaction on a pinned connection, so a
//! statement that ends or escapes that transaction would break atomicity:
//! transaction control (`COMMIT`, `START TRANSACTION`, `SET autocommit`),
//! `XA …`, DDL and everything else with an implicit commit, `LOCK TABLES`,
//! and a second statement hidden after a `;`. This module is a small lexer,
//! not a parser: it skips comments and quoted text, finds the leading keyword,
//! counts `?` placeholders, and allows only data statements.

use thiserror::Error;

/// What a statement may do to the branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `SELECT` / `VALUES`: reads only (it may still take locks).
    Read,
    /// `INSERT`, `UPDATE`, `DELETE`, `REPLACE`, `WITH …`: may write.
    Write,
}

/// A statement that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked<'a> {
    /// The statement without a trailing `;` and whitespace.
    pub sql: &'a str,
    pub access: Access,
    pub placeholders: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SqlError {
    #[error("empty statement")]
    Empty,
    #[error("multiple statements in one string are not allowed; send each as its own statement")]
    MultiStatement,
    #[error("unterminated {0}")]
    Unterminated(&'static str),
    #[error("executable comments (/*! … */) are not allowed")]
    ExecutableComment,
    #[error("forbidden statement {keyword}: {why}")]
    Forbidden { keyword: String, why: &'static str },
}

const WHY_TXN: &str = "transaction control is tandem's job (use Commit/Rollback on the coordinator)";
const WHY_XA: &str = "XA statements are issued by tandem itself";
const WHY_DDL: &str = "DDL and administrative statements commit implicitly and would break atomicity";
const WHY_LOCK: &str = "LOCK TABLES commits implicitly and would break atomicity";
const WHY_SET: &str = "SET changes session state tandem manages (autocommit, isolation, timeouts)";
const WHY_CALL: &str = "stored procedures may commit or change session state";
const WHY_ADVISORY: &str = "advisory locks outlive the transaction and would stay with a pooled connection";
const WHY_OTHER: &str = "only SELECT, VALUES, INSERT, UPDATE, DELETE, REPLACE and WITH are allowed";

/// Checks one statement. See the module docs for what is refused.
pub fn check(sql: &str) -> Result<Checked<'_>, SqlError> {
    let scan = scan(sql)?;
    let body = &sql[..scan.end];
    let mut words = Words::new(body);
    let first = loop {
        match words.next() {
            None => return Err(SqlError::Empty),
            Some(Token::Open) => continue,
            Some(Token::Word(w)) => break w.to_ascii_uppercase(),
            Some(Token::Other(c)) => {
                return Err(SqlError::Forbidden {
                    keyword: c.to_string(),
                    why: WHY_OTHER,
                });
            }
        }
    };
    let access = match first.as_str() {
        "SELECT" | "VALUES" => Access::Read,
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "WITH" => Access::Write,
        other => {
            let why = match other {
                "COMMIT" | "ROLLBACK" | "BEGIN" | "START" | "SAVEPOINT" | "RELEASE" | "END" => WHY_TXN,
                "XA" => WHY_XA,
                "SET" => WHY_SET,
                "LOCK" | "UNLOCK" => WHY_LOCK,
                "CALL" | "EXECUTE" | "PREPARE" | "DEALLOCATE" => WHY_CALL,
                "CREATE" | "ALTER" | "DROP" | "RENAME" | "TRUNCATE" | "GRANT" | "REVOKE" | "FLUSH" | "ANALYZE"
                | "OPTIMIZE" | "REPAIR" | "CHECK" | "LOAD" | "INSTALL" | "UNINSTALL" | "RESET" | "PURGE" | "CHANGE"
                | "KILL" | "SHUTDOWN" | "CACHE" => WHY_DDL,
                _ => WHY_OTHER,
            };
            return Err(SqlError::Forbidden { keyword: first, why });
        }
    };
    // Functions whose effect outlives the branch.
    while let Some(token) = words.next() {
        if let Token::Word(w) = token {
            let upper = w.to_ascii_uppercase();
            if matches!(upper.as_str(), "GET_LOCK" | "RELEASE_LOCK" | "RELEASE_ALL_LOCKS") {
                return Err(SqlError::Forbidden {
                    keyword: upper,
                    why: WHY_ADVISORY,
                });
            }
        }
    }
    Ok(Checked {
        sql: body,
        access,
        placeholders: scan.placeholders,
    })
}

struct Scan {
    /// Byte offset where the statement ends (before a trailing `;`).
    end: usize,
    placeholders: usize,
}

/// Walks the text once, skipping quoted strings and comments, counting `?`
/// and finding the end of the (single) statement.
fn scan(sql: &str) -> Result<Scan, SqlError> {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut placeholders = 0;
    // End of the statement text: just after its last character that is
    // neither whitespace nor part of a comment.
    let mut end = 0;
    let mut after_semicolon = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' || (c == b'-' && b.get(i + 1) == Some(&b'-') && is_comment_dash(b.get(i + 2))) {
            i = skip_line(b, i);
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            if b.get(i + 2) == Some(&b'!') || (b.get(i + 2) == Some(&b'M') && b.get(i + 3) == Some(&b'!')) {
                return Err(SqlError::ExecutableComment);
            }
            let close = sql[i + 2..].find("*/").ok_or(SqlError::Unterminated("comment"))?;
            i += 2 + close + 2;
            continue;
        }
        // Statement text: nothing may follow a `;`.
        if after_semicolon {
            return Err(SqlError::MultiStatement);
        }
        match c {
            b';' => after_semicolon = true,
            b'\'' | b'"' | b'`' => i = skip_quoted(b, i)? - 1,
            b'?' => placeholders += 1,
            _ => {}
        }
        i += 1;
        if !after_semicolon {
            end = i;
        }
    }
    Ok(Scan { end, placeholders })
}

/// `--` starts a comment only when followed by whitespace, a control
/// character or the end of the text (otherwise it is `a--b`).
fn is_comment_dash(next: Option<&u8>) -> bool {
    next.is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control())
}

fn skip_quoted(b: &[u8], start: usize) -> Result<usize, SqlError> {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if c == quote {
            // A doubled quote is an escaped quote.
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Ok(i + 1);
        }
        i += 1;
    }
    Err(SqlError::Unterminated(match quote {
        b'`' => "quoted identifier",
        _ => "string literal",
    }))
}

fn skip_line(b: &[u8], start: usize) -> usize {
    b[start..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| start + p + 1)
}

enum Token<'a> {
    Open,
    Word(&'a str),
    Other(char),
}

/// Leading tokens of a statement, comments skipped.
struct Words<'a> {
    sql: &'a str,
    pos: usize,
}

impl<'a> Words<'a> {
    fn new(sql: &'a str) -> Self {
        Self { sql, pos: 0 }
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let b = self.sql.as_bytes();
        loop {
            let c = *b.get(self.pos)?;
            if c.is_ascii_whitespace() {
                self.pos += 1;
            } else if c == b'#'
                || (c == b'-' && b.get(self.pos + 1) == Some(&b'-') && is_comment_dash(b.get(self.pos + 2)))
            {
                self.pos = skip_line(b, self.pos);
            } else if c == b'/' && b.get(self.pos + 1) == Some(&b'*') {
                // `scan` already proved every comment is terminated.
                let close = self.sql[self.pos + 2..].find("*/")?;
                self.pos += 2 + close + 2;
            } else if c == b'(' {
                self.pos += 1;
                return Some(Token::Open);
            } else if matches!(c, b'\'' | b'"' | b'`') {
                // Quoted text is not a keyword; `scan` proved it terminated.
                self.pos = skip_quoted(b, self.pos).unwrap_or(b.len());
                return Some(Token::Other(c as char));
            } else if c.is_ascii_alphabetic() || c == b'_' {
                let start = self.pos;
                while b.get(self.pos).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') {
                    self.pos += 1;
                }
                return Some(Token::Word(&self.sql[start..self.pos]));
            } else {
                let ch = self.sql[self.pos..].chars().next()?;
                self.pos += ch.len_utf8();
                return Some(Token::Other(ch));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(sql: &str) -> String {
        match check(sql) {
            Err(SqlError::Forbidden { keyword, .. }) => keyword,
            other => panic!("{sql:?} should be forbidden, got {other:?}"),
        }
    }

    #[test]
    fn data_statements_pass_with_access_and_placeholders() {
        let c = check("UPDATE t SET a = a - ? WHERE id = ? AND a >= ?").unwrap();
        assert_eq!(c.access, Access::Write);
        assert_eq!(c.placeholders, 3);
        let c = check("  select * from t where name = 'what?' and id = ?;  ").unwrap();
        assert_eq!(c.access, Access::Read);
        assert_eq!(c.placeholders, 1);
        assert_eq!(c.sql, "  select * from t where name = 'what?' and id = ?");
        assert_eq!(check("(SELECT 1) UNION (SELECT 2)").unwrap().access, Access::Read);
        assert_eq!(
            check("/* hi */ -- x\nINSERT INTO t VALUES (?)").unwrap().placeholders,
            1
        );
        assert_eq!(check("REPLACE INTO t VALUES (1)").unwrap().access, Access::Write);
        assert_eq!(check("DELETE FROM t WHERE a = `?`").unwrap().placeholders, 0);
        assert_eq!(check("SELECT 5-3, 6/2").unwrap().sql, "SELECT 5-3, 6/2");
        assert_eq!(check("SELECT 1 # trailing comment").unwrap().sql, "SELECT 1");
    }

    #[test]
    fn transaction_control_xa_ddl_lock_and_set_are_forbidden() {
        for (sql, kw) in [
            ("COMMIT", "COMMIT"),
            ("rollback", "ROLLBACK"),
            ("START TRANSACTION", "START"),
            ("BEGIN", "BEGIN"),
            ("SAVEPOINT a", "SAVEPOINT"),
            ("SET autocommit = 1", "SET"),
            ("XA RECOVER", "XA"),
            ("xa commit 'x'", "XA"),
            ("DROP TABLE t", "DROP"),
            ("  /* c */ CREATE TABLE t (a int)", "CREATE"),
            ("TRUNCATE t", "TRUNCATE"),
            ("ALTER TABLE t ADD b INT", "ALTER"),
            ("LOCK TABLES t WRITE", "LOCK"),
            ("UNLOCK TABLES", "UNLOCK"),
            ("CALL p()", "CALL"),
            ("SHOW TABLES", "SHOW"),
            ("GRANT ALL ON *.* TO x", "GRANT"),
            ("(COMMIT)", "COMMIT"),
            ("SELECT GET_LOCK('x', 10)", "GET_LOCK"),
            ("SELECT 1 FROM t WHERE release_lock('x')", "RELEASE_LOCK"),
        ] {
            assert_eq!(forbidden(sql), kw, "{sql}");
        }
    }

    #[test]
    fn hidden_second_statements_are_refused() {
        assert_eq!(check("SELECT 1; COMMIT"), Err(SqlError::MultiStatement));
        assert_eq!(check("UPDATE t SET a=1;DROP TABLE t;"), Err(SqlError::MultiStatement));
        assert_eq!(check("SELECT 1;;"), Err(SqlError::MultiStatement));
        // A semicolon inside text or comments is not a separator.
        assert!(check("SELECT ';COMMIT' -- ; DROP\n").is_ok());
        assert!(check("SELECT \"a;b\", `c;d` /* ; */").is_ok());
        assert!(check("SELECT 'it''s; fine', 'back\\'slash;'").is_ok());
        assert!(check("SELECT 1; -- trailing comment").is_ok());
        assert!(check("SELECT 'GET_LOCK(1)', `get_lock` FROM t").is_ok());
    }

    #[test]
    fn malformed_text_is_refused() {
        assert_eq!(check(""), Err(SqlError::Empty));
        assert_eq!(check("  -- only a comment"), Err(SqlError::Empty));
        assert_eq!(check(";"), Err(SqlError::Empty));
        assert_eq!(check("SELECT 'open"), Err(SqlError::Unterminated("string literal")));
        assert_eq!(check("SELECT 1 /* open"), Err(SqlError::Unterminated("comment")));
        assert_eq!(check("/*!COMMIT*/"), Err(SqlError::ExecutableComment));
        assert_eq!(check("SELECT /*M!100000 1*/"), Err(SqlError::ExecutableComment));
        assert!(matches!(check("?"), Err(SqlError::Forbidden { .. })));
    }
}
