//! Checks a client's SQL before it reaches the branch's connection.
//!
//! A branch lives inside one XA transaction on a pooled, pinned connection.
//! A statement must not end or escape that transaction, and must leave
//! nothing behind that an abort cannot undo or that the next transaction on
//! the same session could see. So this module refuses:
//!
//! - any statement that does not start with `SELECT`, `VALUES`, `INSERT`,
//!   `UPDATE`, `DELETE`, `REPLACE` or `WITH`. Transaction control and `XA …`
//!   are tandem's job. DDL and other statements that commit implicitly, and
//!   `LOCK TABLES`, would break atomicity. `SET` and `CALL` change session
//!   state;
//! - a second statement after a `;`, and executable comments
//!   (`/*! … */`, `/*M! … */`), because both hide code from this check;
//! - names in the reserved schemas `tandem`, `mysql`, `information_schema`,
//!   `performance_schema` and `sys`, meaning such a name followed by `.`.
//!   Tandem's own state, the grant tables and other sessions' processlist
//!   are not for clients;
//! - `INTO OUTFILE`, `INTO DUMPFILE` and `LOAD_FILE`, which touch files on
//!   the database host;
//! - advisory locks (`GET_LOCK`, `RELEASE_LOCK`, `RELEASE_ALL_LOCKS`,
//!   `IS_FREE_LOCK`, `IS_USED_LOCK`), which belong to the session and not to
//!   the transaction, so they would stay with a pooled connection;
//! - sequences (`NEXTVAL`, `SETVAL`, `LASTVAL`, `CURRVAL`,
//!   `NEXT VALUE FOR`, `PREVIOUS VALUE FOR`). Sequences are not
//!   transactional, so their changes survive an abort;
//! - user variables in any form (`@x`, `@'x'`, `@"x"`, `` @`x` ``,
//!   `@x := …`), which live on the session and would leak into the next,
//!   unrelated transaction. System variables (`@@x`) may be read;
//! - what the session remembers of earlier statements, which on a pooled
//!   session may be another principal's transaction: `LAST_INSERT_ID()`,
//!   `FOUND_ROWS()`, `ROW_COUNT()`, `@@last_insert_id`, `@@insert_id`,
//!   `@@identity`, `@@last_gtid`, `@@warning_count`, `@@error_count` (each
//!   result carries rows affected and the insert id);
//! - a NUL byte outside quotes and `/* */` comments. The server stops
//!   reading there, so it would run something other than what was checked.
//!
//! This is a lexer, not a parser. It follows MariaDB 10.11's own lexer
//! (comments, quoting, `\` escapes, numbers, the `@` forms) so that it splits
//! the text into the same tokens as the server does. Tandem does not control
//! the server's `sql_mode`, and three of its flags change how text is split:
//! `ANSI_QUOTES` (`"…"` is an identifier), `NO_BACKSLASH_ESCAPES`, and
//! `MSSQL` (`[…]` is an identifier). So the statement is also read under
//! every combination of these flags. Each reading the server could accept
//! must pass too. A reading that does not lex is skipped, because a server
//! in that mode would reject the statement.
//!
//! Names are matched in every quoting (bare, `` `…` ``, `"…"`), in any case,
//! in every position. So a column that happens to be called `get_lock`, or a
//! table called `tandem` used as a qualifier (`tandem.id`), is refused as
//! well. Such false positives are the price of not parsing.

use std::borrow::Cow;

use thiserror::Error;

/// What a statement may do to the branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `SELECT` / `VALUES`: reads only (it may still take locks).
    Read,
    /// `INSERT`, `UPDATE`, `DELETE`, `REPLACE`, `WITH …`: may write.
    Write,
}

/// What running a statement can do to its branch's locks and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effect {
    pub access: Access,
    /// See [`Checked::reads_rows`].
    pub reads_rows: bool,
    /// How many leading bytes of the statement are sent: [`Checked::sql`]
    /// is that prefix of it, so the branch need not lex it again.
    pub len: usize,
}

/// A statement that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked<'a> {
    /// The statement without a trailing `;` and without trailing whitespace
    /// and comments.
    pub sql: &'a str,
    pub access: Access,
    /// It reads rows (a `SELECT`, also inside a write: `INSERT … SELECT`, a
    /// subquery), which may take shared locks. A prepared branch loses
    /// those if its database restarts (DESIGN §4), unlike the exclusive
    /// locks of the rows it changed.
    pub reads_rows: bool,
    pub placeholders: usize,
}

impl Checked<'_> {
    pub fn effect(&self) -> Effect {
        Effect {
            access: self.access,
            reads_rows: self.reads_rows,
            len: self.sql.len(),
        }
    }
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
const WHY_SCHEMA: &str = "tandem's own state (tandem.*) and the server's system schemas (grant tables, other \
                          sessions' processlist) are not reachable by client SQL";
const WHY_FILE: &str = "INTO OUTFILE/DUMPFILE writes a file on the database host, which an abort cannot undo";
const WHY_LOAD_FILE: &str = "LOAD_FILE reads files on the database host";
const WHY_SEQUENCE: &str = "sequences are not transactional: their changes survive an abort, and their session \
                            state stays with a pooled connection";
const WHY_USER_VAR: &str = "user variables live on the pooled session and would leak to the next unrelated transaction";
const WHY_PREVIOUS: &str = "it reads what the session's previous statement left, which may be another \
     transaction's; each StatementResult carries rows_affected and last_insert_id";
const WHY_NUL: &str = "the server stops reading at a NUL byte, so it would not run the statement that was checked";

/// Schemas whose names client SQL may not use as a qualifier.
const RESERVED_SCHEMAS: [&str; 5] = ["tandem", "mysql", "information_schema", "performance_schema", "sys"];

/// Functions whose effect outlives the branch or reaches outside it. Lower
/// case; matched as identifiers in any quoting, called or not.
const FUNCTIONS: [(&str, &str); 13] = [
    ("get_lock", WHY_ADVISORY),
    ("release_lock", WHY_ADVISORY),
    ("release_all_locks", WHY_ADVISORY),
    ("is_free_lock", WHY_ADVISORY),
    ("is_used_lock", WHY_ADVISORY),
    ("load_file", WHY_LOAD_FILE),
    ("nextval", WHY_SEQUENCE),
    ("setval", WHY_SEQUENCE),
    ("lastval", WHY_SEQUENCE),
    // `seq.currval` under sql_mode=ORACLE is `PREVIOUS VALUE FOR seq`.
    ("currval", WHY_SEQUENCE),
    // The session's memory of earlier statements, which on a pooled
    // session may be another principal's transaction.
    ("last_insert_id", WHY_PREVIOUS),
    ("found_rows", WHY_PREVIOUS),
    ("row_count", WHY_PREVIOUS),
];

/// System variables that hold what an earlier statement on the session
/// left (lower case, matched without their `session.` or `local.` part).
const SESSION_MEMORY: [&str; 6] = [
    "last_insert_id",
    "insert_id",
    "identity",
    "last_gtid",
    "warning_count",
    "error_count",
];

/// Checks one statement. See the module docs for what is refused.
pub fn check(sql: &str) -> Result<Checked<'_>, SqlError> {
    let Lexed { tokens, stop } = lex(sql, Mode::DEFAULT);
    let semicolon = tokens.iter().position(Token::is_semicolon);
    if let Some(i) = semicolon {
        // Anything but whitespace and comments after a `;`, even text that
        // does not lex, is a second statement.
        if i + 1 < tokens.len() || stop.as_ref().is_some_and(|stop| stop.in_token) {
            return Err(SqlError::MultiStatement);
        }
    }
    if let Some(stop) = stop {
        return Err(stop.error);
    }
    let tokens = tokens.get(..semicolon.unwrap_or(tokens.len())).unwrap_or_default();
    let access = leading(sql, tokens)?;
    // Every token ends at a character boundary.
    let body = sql.get(..tokens.last().map_or(0, |t| t.end)).unwrap_or(sql);
    refuse(sql, tokens)?;
    // The other sql_mode readings differ only at `"`, `\` and `[`. They read
    // the text that is sent, which leaves out the trailing `;` and comments.
    if body.bytes().any(|b| matches!(b, b'"' | b'\\' | b'[')) {
        for mode in Mode::others() {
            check_reading(body, mode)?;
        }
    }
    let reads_rows = access == Access::Read
        || tokens.iter().any(|t| {
            t.kind == Kind::Word
                && body
                    .get(t.start..t.end)
                    .is_some_and(|w| w.eq_ignore_ascii_case("SELECT"))
        });
    Ok(Checked {
        sql: body,
        access,
        reads_rows,
        placeholders: tokens.iter().filter(|t| t.kind == Kind::Placeholder).count(),
    })
}

/// The leading keyword decides whether the statement may run at all.
fn leading(sql: &str, tokens: &[Token]) -> Result<Access, SqlError> {
    let first = tokens
        .iter()
        .find(|t| t.kind != Kind::Char(b'('))
        .ok_or(SqlError::Empty)?;
    if first.kind != Kind::Word {
        // Quoted text, a number or punctuation is not a keyword.
        let keyword = sql
            .get(first.start..)
            .and_then(|rest| rest.chars().next())
            .map(String::from)
            .unwrap_or_default();
        return Err(SqlError::Forbidden {
            keyword,
            why: WHY_OTHER,
        });
    }
    let first = first.text(sql).to_ascii_uppercase();
    match first.as_str() {
        "SELECT" | "VALUES" => Ok(Access::Read),
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "WITH" => Ok(Access::Write),
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
            Err(SqlError::Forbidden { keyword: first, why })
        }
    }
}

/// Refuses the first token, in text order, that reaches outside the branch.
fn refuse(sql: &str, tokens: &[Token]) -> Result<(), SqlError> {
    let forbidden = |keyword: String, why| Err(SqlError::Forbidden { keyword, why });
    for (i, token) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1);
        match token.kind {
            Kind::UserVar => return forbidden(format!("@{}", token.inner(sql)), WHY_USER_VAR),
            // `\@x` reaches the server as `@` followed by `x`.
            Kind::Char(b'@') => return forbidden("@".to_owned(), WHY_USER_VAR),
            Kind::Char(0) => return forbidden("NUL".to_owned(), WHY_NUL),
            Kind::SystemVar => {
                let text = token.text(sql);
                let mut name = Cow::Borrowed(text.rsplit('.').next().unwrap_or(text).trim_start_matches('@'));
                // `@@`name`` is `@@` and the quoted name, lexed on its own.
                if name.is_empty()
                    && let Some(quoted) = next.filter(|n| n.kind != Kind::Word)
                {
                    name = quoted.name(sql);
                }
                if SESSION_MEMORY.iter().any(|memory| same_name(&name, memory)) {
                    return forbidden(
                        format!(
                            "{text}{}",
                            if text.ends_with('@') || text.ends_with('.') {
                                name.as_ref()
                            } else {
                                ""
                            }
                        )
                        .to_ascii_uppercase(),
                        WHY_PREVIOUS,
                    );
                }
            }
            Kind::Word | Kind::Quoted(_) => {
                let name = token.name(sql);
                let qualifies = next.is_some_and(|n| n.starts_with_dot(sql));
                if qualifies && RESERVED_SCHEMAS.iter().any(|schema| same_name(&name, schema)) {
                    return forbidden(name.to_ascii_uppercase(), WHY_SCHEMA);
                }
                if let Some((_, why)) = FUNCTIONS.iter().find(|(function, _)| same_name(&name, function)) {
                    return forbidden(name.to_ascii_uppercase(), why);
                }
                // Keywords are never quoted.
                if token.kind != Kind::Word {
                    continue;
                }
                let word_at = |at: usize, word: &str| {
                    tokens
                        .get(at)
                        .is_some_and(|t| t.kind == Kind::Word && same_name(t.text(sql), word))
                };
                if same_name(&name, "into") && (word_at(i + 1, "outfile") || word_at(i + 1, "dumpfile")) {
                    let target = next.map_or("", |n| n.text(sql)).to_ascii_uppercase();
                    return forbidden(format!("INTO {target}"), WHY_FILE);
                }
                if (same_name(&name, "next") || same_name(&name, "previous"))
                    && word_at(i + 1, "value")
                    && word_at(i + 2, "for")
                {
                    return forbidden(format!("{} VALUE FOR", name.to_ascii_uppercase()), WHY_SEQUENCE);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks the text as a server in `mode` would read it.
fn check_reading(sql: &str, mode: Mode) -> Result<(), SqlError> {
    let Lexed { tokens, stop } = lex(sql, mode);
    let complete = match stop {
        None => &tokens[..],
        Some(Stop {
            error: SqlError::ExecutableComment,
            ..
        }) => return Err(SqlError::ExecutableComment),
        // The server rejects the statement it cannot lex; only complete
        // statements before it could run, in a multi-statement query.
        Some(_) => {
            let end = tokens.iter().rposition(Token::is_semicolon).unwrap_or(0);
            tokens.get(..end).unwrap_or_default()
        }
    };
    let mut statements = complete.split(Token::is_semicolon);
    refuse(sql, statements.next().unwrap_or_default())?;
    if statements.any(|statement| !statement.is_empty()) {
        return Err(SqlError::MultiStatement);
    }
    Ok(())
}

/// Compares a name with a lower-case ASCII one, ignoring ASCII case. The few
/// non-ASCII letters whose case mapping is an ASCII letter (dotless and dotted
/// I, long S, Kelvin sign) count as that letter, in case the server folds
/// them.
fn same_name(name: &str, lower: &str) -> bool {
    let fold = |c: char| match c {
        '\u{130}' | '\u{131}' => 'i',
        '\u{17f}' => 's',
        '\u{212a}' => 'k',
        c => c.to_ascii_lowercase(),
    };
    name.chars().map(fold).eq(lower.chars())
}

/// The `sql_mode` flags that change how MariaDB splits text into tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mode {
    /// `ANSI_QUOTES`: `"…"` is an identifier, not a string.
    ansi_quotes: bool,
    /// `NO_BACKSLASH_ESCAPES`: `\` is an ordinary character in strings.
    no_backslash_escapes: bool,
    /// `MSSQL`: `[…]` is an identifier.
    brackets: bool,
}

impl Mode {
    const DEFAULT: Mode = Mode {
        ansi_quotes: false,
        no_backslash_escapes: false,
        brackets: false,
    };

    /// Every combination of the flags but the default.
    fn others() -> impl Iterator<Item = Mode> {
        (1u8..8).map(|bits| Mode {
            ansi_quotes: bits & 1 != 0,
            no_backslash_escapes: bits & 2 != 0,
            brackets: bits & 4 != 0,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An unquoted word: a keyword or an identifier (`tandem$x`, `1abc`).
    Word,
    /// An identifier in `` `…` `` or `[…]`, or `"…"`, which is an identifier
    /// under `ANSI_QUOTES` and is treated as one in every mode. Holds the
    /// closing delimiter.
    Quoted(u8),
    /// A `'…'` string literal.
    Text,
    Number,
    /// `\N`, the NULL literal.
    Null,
    /// `?`.
    Placeholder,
    /// `@name`, `@'name'`, `@"name"`, `` @`name` `` or a lone `@`.
    UserVar,
    /// `@@name`, `@@scope.name`.
    SystemVar,
    /// Any other single character, as the server sees it: `\.` is `.`.
    Char(u8),
    /// The end of the text, reached by a malformed number.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token {
    kind: Kind,
    /// Byte range of the token in the text.
    start: usize,
    end: usize,
    /// Byte range of its name: the text between quotes, or the name after `@`.
    inner_start: usize,
    inner_end: usize,
}

impl Token {
    fn new(kind: Kind, start: usize, end: usize) -> Self {
        Self {
            kind,
            start,
            end,
            inner_start: start,
            inner_end: end,
        }
    }

    fn text<'a>(&self, sql: &'a str) -> &'a str {
        sql.get(self.start..self.end).unwrap_or_default()
    }

    fn inner<'a>(&self, sql: &'a str) -> &'a str {
        sql.get(self.inner_start..self.inner_end).unwrap_or_default()
    }

    /// The identifier a word or quoted token names, with doubled closing
    /// delimiters unescaped.
    fn name<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        let inner = self.inner(sql);
        match self.kind {
            Kind::Quoted(close) => {
                let close = char::from(close);
                let doubled: String = [close, close].iter().collect();
                if inner.contains(&doubled) {
                    Cow::Owned(inner.replace(&doubled, &close.to_string()))
                } else {
                    Cow::Borrowed(inner)
                }
            }
            _ => Cow::Borrowed(inner),
        }
    }

    fn is_semicolon(&self) -> bool {
        self.kind == Kind::Char(b';')
    }

    /// `.`, or a number like `.5`, which begins with one.
    fn starts_with_dot(&self, sql: &str) -> bool {
        self.kind == Kind::Char(b'.') || (self.kind == Kind::Number && sql.as_bytes().get(self.start) == Some(&b'.'))
    }
}

/// Why lexing stopped early.
struct Stop {
    error: SqlError,
    /// The error is in a token, not in whitespace or a comment.
    in_token: bool,
}

struct Lexed {
    /// Every token, `;` included, up to where lexing stopped.
    tokens: Vec<Token>,
    stop: Option<Stop>,
}

fn lex(sql: &str, mode: Mode) -> Lexed {
    let mut lexer = Lexer {
        sql,
        b: sql.as_bytes(),
        pos: 0,
        mode,
        state: State::Start,
    };
    let mut tokens = Vec::new();
    loop {
        if let Err(error) = lexer.skip_trivia() {
            let stop = Some(Stop { error, in_token: false });
            return Lexed { tokens, stop };
        }
        if lexer.pos >= lexer.b.len() {
            return Lexed { tokens, stop: None };
        }
        match lexer.token() {
            Ok(token) => tokens.push(token),
            Err(error) => {
                let stop = Some(Stop { error, in_token: true });
                return Lexed { tokens, stop };
            }
        }
    }
}

/// What the server's lexer expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    /// An unquoted name was directly followed by `.` and a name byte: the
    /// `.` is a separator, whatever follows it.
    Dot,
    /// After that `.`: a name, even one that starts with a digit (`t.1e5`).
    Name,
}

/// Splits text into tokens the way MariaDB's lexer (`lex_one_token`) does,
/// byte by byte. It only slices the text at ASCII bytes, so at character
/// boundaries.
struct Lexer<'a> {
    sql: &'a str,
    b: &'a [u8],
    pos: usize,
    mode: Mode,
    state: State,
}

/// A byte that may appear in an unquoted name. Every byte of a multi-byte
/// character is one.
fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

impl Lexer<'_> {
    /// The byte at `i`, or 0 past the end, as the server's NUL-terminated
    /// buffer has it.
    fn byte(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    fn skip_trivia(&mut self) -> Result<(), SqlError> {
        while self.pos < self.b.len() {
            let c = self.byte(self.pos);
            if matches!(c, b' ' | b'\t'..=b'\r') {
                self.pos += 1;
            } else if c == b'#' || (c == b'-' && self.byte(self.pos + 1) == b'-' && self.dash_comment()) {
                // To the end of the line, or to a NUL, where the server's
                // comment ends too.
                while self.pos < self.b.len() && !matches!(self.byte(self.pos), b'\n' | 0) {
                    self.pos += 1;
                }
            } else if c == b'/' && self.byte(self.pos + 1) == b'*' {
                let after = self.byte(self.pos + 2);
                if after == b'!' || (after == b'M' && self.byte(self.pos + 3) == b'!') {
                    return Err(SqlError::ExecutableComment);
                }
                let close = self
                    .b
                    .get(self.pos + 2..)
                    .and_then(|rest| rest.windows(2).position(|w| w == b"*/"))
                    .ok_or(SqlError::Unterminated("comment"))?;
                self.pos += 2 + close + 2;
            } else {
                break;
            }
        }
        Ok(())
    }

    /// `--` starts a comment only when followed by whitespace, a control
    /// character or the end of the text (otherwise it is `a--b`).
    fn dash_comment(&self) -> bool {
        self.b
            .get(self.pos + 2)
            .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    }

    /// The next token. The caller has skipped trivia and is not at the end.
    fn token(&mut self) -> Result<Token, SqlError> {
        let start = self.pos;
        match self.state {
            State::Dot => {
                self.pos += 1;
                self.state = if is_name_byte(self.byte(self.pos)) {
                    State::Name
                } else {
                    State::Start
                };
                return Ok(Token::new(Kind::Char(b'.'), start, self.pos));
            }
            State::Name => {
                self.state = State::Start;
                return Ok(self.word(start, start));
            }
            State::Start => {}
        }
        match self.byte(start) {
            b'\'' => self.text(start, b'\''),
            b'"' if self.mode.ansi_quotes => self.delimited(start, start, b'"'),
            b'"' => self.text(start, b'"'),
            b'`' => self.delimited(start, start, b'`'),
            b'@' => self.at(start),
            b'?' => {
                self.pos += 1;
                Ok(Token::new(Kind::Placeholder, start, self.pos))
            }
            b'.' if self.byte(start + 1).is_ascii_digit() => self.real(start, start + 1),
            // `..`, as in `FOR i IN 1..10`.
            b'.' if self.byte(start + 1) == b'.' => {
                self.pos = start + 2;
                Ok(Token::new(Kind::Char(b'.'), start, self.pos))
            }
            b'0'..=b'9' => self.number(start),
            b'\\' => {
                // The server drops the backslash and takes the next byte as
                // a one-character token, except `\N`, which is NULL.
                if self.byte(start + 1) == b'N' {
                    self.pos = start + 2;
                    Ok(Token::new(Kind::Null, start, self.pos))
                } else if start + 1 < self.b.len() {
                    self.single(start, start + 1)
                } else {
                    self.single(start, start)
                }
            }
            c if is_name_byte(c) => Ok(self.word(start, start)),
            _ => self.single(start, start),
        }
    }

    /// A one-character token: the character at `at`, for a token that began
    /// at `start`. Under `MSSQL` a `[` opens an identifier instead.
    fn single(&mut self, start: usize, at: usize) -> Result<Token, SqlError> {
        if at >= self.b.len() {
            self.pos = self.b.len();
            return Ok(Token::new(Kind::End, start, self.pos));
        }
        let c = self.byte(at);
        if c == b'[' && self.mode.brackets {
            return self.delimited(start, at, b']');
        }
        let len = self
            .sql
            .get(at..)
            .and_then(|rest| rest.chars().next())
            .map_or(1, char::len_utf8);
        self.pos = at + len;
        Ok(Token::new(Kind::Char(c), start, self.pos))
    }

    /// An unquoted name from `start`, of which `start..from` is already read.
    fn word(&mut self, start: usize, from: usize) -> Token {
        let mut end = from;
        while end < self.b.len() && is_name_byte(self.byte(end)) {
            end += 1;
        }
        self.pos = end;
        if self.byte(end) == b'.' && is_name_byte(self.byte(end + 1)) {
            self.state = State::Dot;
        }
        Token::new(Kind::Word, start, end)
    }

    /// A string literal in `quote`s: backslash escapes (unless
    /// `NO_BACKSLASH_ESCAPES`) and doubled quotes.
    fn text(&mut self, start: usize, quote: u8) -> Result<Token, SqlError> {
        let unterminated = SqlError::Unterminated("string literal");
        let mut i = start + 1;
        loop {
            match self.b.get(i) {
                None => return Err(unterminated),
                Some(b'\\') if !self.mode.no_backslash_escapes => {
                    if i + 1 >= self.b.len() {
                        return Err(unterminated);
                    }
                    i += 2;
                }
                Some(&c) if c == quote => {
                    if self.b.get(i + 1) == Some(&quote) {
                        i += 2;
                    } else {
                        break;
                    }
                }
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        let kind = if quote == b'"' { Kind::Quoted(b'"') } else { Kind::Text };
        let mut token = Token::new(kind, start, self.pos);
        (token.inner_start, token.inner_end) = (start + 1, i);
        Ok(token)
    }

    /// An identifier opened at `open` and closed by `close`, a doubled
    /// `close` standing for itself; no backslash escapes.
    fn delimited(&mut self, start: usize, open: usize, close: u8) -> Result<Token, SqlError> {
        let mut i = open + 1;
        loop {
            match self.b.get(i) {
                None => return Err(SqlError::Unterminated("quoted identifier")),
                Some(&c) if c == close => {
                    if self.b.get(i + 1) == Some(&close) {
                        i += 2;
                    } else {
                        break;
                    }
                }
                Some(_) => i += 1,
            }
        }
        self.pos = i + 1;
        let mut token = Token::new(Kind::Quoted(close), start, self.pos);
        (token.inner_start, token.inner_end) = (open + 1, i);
        Ok(token)
    }

    /// `@@name[.name…]` or a user variable.
    fn at(&mut self, start: usize) -> Result<Token, SqlError> {
        if self.byte(start + 1) == b'@' {
            let mut end = start + 2;
            // A backquoted name is lexed on its own, as the server does.
            if self.byte(end) != b'`' {
                loop {
                    let from = end;
                    while end < self.b.len() && is_name_byte(self.byte(end)) {
                        end += 1;
                    }
                    if end > from && self.byte(end) == b'.' && is_name_byte(self.byte(end + 1)) {
                        end += 1;
                    } else {
                        break;
                    }
                }
            }
            self.pos = end;
            return Ok(Token::new(Kind::SystemVar, start, end));
        }
        let name = start + 1;
        let quoted = match self.byte(name) {
            b'\'' => Some(self.text(name, b'\'')?),
            b'"' if self.mode.ansi_quotes => Some(self.delimited(name, name, b'"')?),
            b'"' => Some(self.text(name, b'"')?),
            b'`' => Some(self.delimited(name, name, b'`')?),
            _ => None,
        };
        let token = match quoted {
            Some(quoted) => Token {
                kind: Kind::UserVar,
                start,
                ..quoted
            },
            None => {
                // The server's user@host name: letters, digits, `.`, `_`, `$`.
                let mut end = name;
                while end < self.b.len() && (is_name_byte(self.byte(end)) || self.byte(end) == b'.') {
                    end += 1;
                }
                self.pos = end;
                let mut token = Token::new(Kind::UserVar, start, end);
                token.inner_start = name;
                token
            }
        };
        Ok(token)
    }

    /// A number, or a name that starts with digits (`1abc`).
    fn number(&mut self, start: usize) -> Result<Token, SqlError> {
        if self.byte(start) == b'0' && matches!(self.byte(start + 1), b'x' | b'b') {
            let hex = self.byte(start + 1) == b'x';
            let mut end = start + 2;
            while (hex && self.byte(end).is_ascii_hexdigit()) || (!hex && matches!(self.byte(end), b'0' | b'1')) {
                end += 1;
            }
            if end - start >= 3 && !is_name_byte(self.byte(end)) {
                self.pos = end;
                return Ok(Token::new(Kind::Number, start, end));
            }
            return Ok(self.word(start, end));
        }
        let mut end = start;
        while self.byte(end).is_ascii_digit() {
            end += 1;
        }
        let c = self.byte(end);
        if !is_name_byte(c) {
            // `1.5`, but `1..2` is a range.
            if c == b'.' && self.byte(end + 1) != b'.' {
                return self.real(start, end + 1);
            }
            self.pos = end;
            return Ok(Token::new(Kind::Number, start, end));
        }
        if matches!(c, b'e' | b'E') {
            let mut digits = end + 1;
            if matches!(self.byte(digits), b'+' | b'-') && self.byte(digits + 1).is_ascii_digit() {
                digits += 1;
            }
            if self.byte(digits).is_ascii_digit() {
                // `1e5`, even in `1e5x`: the name starts after the number.
                while self.byte(digits).is_ascii_digit() {
                    digits += 1;
                }
                self.pos = digits;
                return Ok(Token::new(Kind::Number, start, digits));
            }
        }
        Ok(self.word(start, end))
    }

    /// The rest of a number from its fraction on; `from` follows the `.`.
    fn real(&mut self, start: usize, from: usize) -> Result<Token, SqlError> {
        let mut end = from;
        while self.byte(end).is_ascii_digit() {
            end += 1;
        }
        if matches!(self.byte(end), b'e' | b'E') {
            let mut digits = end + 1;
            if matches!(self.byte(digits), b'+' | b'-') {
                digits += 1;
            }
            if !self.byte(digits).is_ascii_digit() {
                // The server drops the number and returns the byte after the
                // exponent as a token of its own: `1.5e--1` is `- 1`.
                return self.single(start, digits);
            }
            while self.byte(digits).is_ascii_digit() {
                digits += 1;
            }
            end = digits;
        }
        self.pos = end;
        Ok(Token::new(Kind::Number, start, end))
    }
}

#[cfg(test)]
mod tests;
