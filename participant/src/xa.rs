//! XA identifiers and the XA statements tandem sends to MySQL.
//!
//! XA statements cannot take parameters, so identifiers are validated here
//! (a restricted alphabet) before they are written into SQL text. They go as
//! plain text (`raw_sql`); a step that is two statements (`XA END; XA
//! PREPARE`) goes in one round trip.

use std::collections::HashMap;
use std::fmt;

use sqlx::{AssertSqlSafe, MySqlConnection, Row};
use tandem_common::names;
use tandem_proto::v1::{AuditEntry, Isolation};

use crate::error::Error;

/// Marks tandem's branches in `XA RECOVER` ("tdm1"); fits the 4 bytes that
/// the binlog allows.
pub const FORMAT_ID: i64 = 0x7464_6d31;

/// Where each branch of a participant set records itself, inside its own
/// XA transaction: a row with `fenced = 0` exists exactly when the branch
/// committed, and is held by the prepared branch until then. It tells a
/// branch that committed from one that rolled back once `XA RECOVER` no
/// longer lists it (DESIGN §4: XAER_NOTA does not say how a branch ended),
/// and it carries the transaction's participant set, so a resolver that
/// finds one branch can ask all the others. A row with `fenced = 1` is
/// written by [`fence`]: the branch did not commit and now never can. A
/// row with `fenced = 2` is a read-only branch's confirmation: committed,
/// but it wrote no data.
pub const MARKER_TABLE: &str = "tandem.xa_markers";

/// Creates the marker table (at start, and whenever MySQL comes back).
const CREATE_MARKERS: &str = "CREATE DATABASE IF NOT EXISTS tandem; \
     CREATE TABLE IF NOT EXISTS tandem.xa_markers ( \
       gtrid VARBINARY(64) NOT NULL, \
       bqual VARBINARY(64) NOT NULL, \
       fenced TINYINT NOT NULL DEFAULT 0, \
       participants VARBINARY(16384) NULL, \
       created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
       PRIMARY KEY (gtrid, bqual), \
       KEY by_age (created_at) \
     ) ENGINE=InnoDB; \
     ALTER TABLE tandem.xa_markers ADD COLUMN IF NOT EXISTS fenced TINYINT NOT NULL DEFAULT 0 AFTER bqual; \
     ALTER TABLE tandem.xa_markers ADD COLUMN IF NOT EXISTS participants VARBINARY(16384) NULL AFTER fenced; \
     CREATE TABLE IF NOT EXISTS tandem.audit ( \
       gtrid VARBINARY(64) NOT NULL, \
       action VARCHAR(32) NOT NULL, \
       operator VARCHAR(255) NOT NULL, \
       reason VARCHAR(1024) NOT NULL, \
       detail VARCHAR(2048) NOT NULL, \
       at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), \
       PRIMARY KEY (gtrid, action) \
     ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// Operators' actions on transactions (who, when, why), kept for good:
/// one row per transaction and action, the first one recorded.
pub const AUDIT_TABLE: &str = "tandem.audit";

/// Most participants in one transaction's set (each name at most 63 bytes,
/// so the set fits its marker column).
pub const MAX_PARTICIPANTS: usize = 256;

/// Checks a participant set sent by a coordinator before it is written
/// into SQL text: each a valid name, none twice, at most
/// [`MAX_PARTICIPANTS`].
pub fn validate_participants(participants: &[String]) -> Result<(), Error> {
    if participants.len() > MAX_PARTICIPANTS {
        return Err(Error::InvalidArgument(format!(
            "{} participants in one transaction; at most {MAX_PARTICIPANTS} are allowed",
            participants.len()
        )));
    }
    for (i, name) in participants.iter().enumerate() {
        names::validate_name(name).map_err(|e| Error::InvalidArgument(format!("participant set: {e}")))?;
        if participants[..i].contains(name) {
            return Err(Error::InvalidArgument(format!("participant set: {name} appears twice")));
        }
    }
    Ok(())
}

/// Checks an identifier that will be embedded in XA SQL text.
pub fn validate_id(kind: &str, id: &str) -> Result<(), Error> {
    names::validate_xa_id(kind, id).map_err(Error::InvalidArgument)
}

/// The XID of one branch: (FORMAT_ID, gtrid, bqual = participant name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Xid {
    gtrid: String,
    bqual: String,
}

impl Xid {
    pub fn new(gtrid: &str, bqual: &str) -> Result<Self, Error> {
        validate_id("gtrid", gtrid)?;
        validate_id("participant name", bqual)?;
        Ok(Self {
            gtrid: gtrid.to_owned(),
            bqual: bqual.to_owned(),
        })
    }

    pub fn gtrid(&self) -> &str {
        &self.gtrid
    }
}

/// Renders the XID as XA SQL expects it: `'gtrid','bqual',formatID`.
impl fmt::Display for Xid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}','{}',{}", self.gtrid, self.bqual, FORMAT_ID)
    }
}

/// How a branch runs in MySQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An XA branch (`XA START` … `XA PREPARE`, or `XA COMMIT … ONE PHASE`).
    Xa,
    /// A plain local transaction (`START TRANSACTION` … `COMMIT`): a
    /// Submit's only branch, which commits in one phase and never
    /// prepares. Its marker row commits with it exactly as an XA branch's
    /// one-phase commit would, so the marker and the fence arbitrate its
    /// fate the same way, without the XA statements' round trip and work.
    Local,
}

/// `XA START` (or `START TRANSACTION` for a [`Kind::Local`] branch),
/// preceded by the session settings that must change: the isolation level,
/// and the lock wait and statement limits (the time left until the
/// deadline). One round trip.
pub fn start_sql(xid: &Xid, kind: Kind, isolation: Option<Isolation>, limit_secs: Option<u64>) -> String {
    let mut sql = String::new();
    if let Some(isolation) = isolation {
        sql.push_str("SET SESSION TRANSACTION ISOLATION LEVEL ");
        sql.push_str(isolation_sql(isolation));
        sql.push_str("; ");
    }
    if let Some(secs) = limit_secs {
        sql.push_str(&format!(
            "SET SESSION innodb_lock_wait_timeout = {secs}, max_statement_time = {secs}; "
        ));
    }
    match kind {
        Kind::Xa => sql.push_str(&format!("XA START {xid}")),
        Kind::Local => sql.push_str("START TRANSACTION"),
    }
    sql
}

fn isolation_sql(isolation: Isolation) -> &'static str {
    match isolation {
        Isolation::Serializable => "SERIALIZABLE",
        Isolation::RepeatableRead => "REPEATABLE READ",
        Isolation::ReadCommitted => "READ COMMITTED",
        Isolation::ReadUncommitted => "READ UNCOMMITTED",
    }
}

/// A session's id, its server run's start (Unix seconds) and the run's
/// uptime, in one query: `UNIX_TIMESTAMP()` and `Uptime` are both taken
/// from the query's start, so their difference is exact.
pub const SESSION_ID_SQL: &str = "SELECT CONNECTION_ID(), UNIX_TIMESTAMP() - CAST(VARIABLE_VALUE AS SIGNED), \
     CAST(VARIABLE_VALUE AS SIGNED) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'";

/// When the server's current run started, in Unix seconds.
pub async fn server_started(conn: &mut MySqlConnection) -> Result<i64, sqlx::Error> {
    let row = sqlx::raw_sql(SESSION_ID_SQL).fetch_one(&mut *conn).await?;
    row.try_get_unchecked::<i64, _>(1)
}

/// Whether the server still lists session `session`.
pub async fn session_alive(conn: &mut MySqlConnection, session: u64) -> Result<bool, sqlx::Error> {
    let rows = sqlx::query("SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = ?")
        .bind(session)
        .fetch_all(&mut *conn)
        .await?;
    Ok(!rows.is_empty())
}

/// Other sessions running a statement of branch `xid`: its XA statements
/// and marker row are the only SQL that contains `'gtrid','bqual'`.
pub async fn sessions_naming(conn: &mut MySqlConnection, xid: &Xid) -> Result<Vec<u64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND LOCATE(?, INFO) > 0",
    )
    .bind(format!("'{}','{}'", xid.gtrid, xid.bqual))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|r| r.try_get_unchecked::<u64, _>(0)).collect()
}

/// Ends another session (one that still owns a branch after its client
/// connection was lost).
pub async fn kill(conn: &mut MySqlConnection, session: u64) -> Result<(), sqlx::Error> {
    run(conn, format!("KILL {session}")).await
}

/// Shortens the session's lock wait and statement time limits.
pub async fn set_limits(conn: &mut MySqlConnection, secs: u64) -> Result<(), sqlx::Error> {
    run(
        conn,
        format!("SET SESSION innodb_lock_wait_timeout = {secs}, max_statement_time = {secs}"),
    )
    .await
}

/// The XA steps that end a branch's statements or the branch itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    EndPrepare,
    EndRollback,
    EndCommitOnePhase,
    /// Phase 2 of a prepared branch.
    Commit,
    Rollback,
    /// The end of a [`Kind::Local`] branch.
    CommitLocal,
    RollbackLocal,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::EndPrepare => "XA PREPARE",
            Op::EndRollback | Op::Rollback => "XA ROLLBACK",
            Op::EndCommitOnePhase | Op::Commit => "XA COMMIT",
            Op::CommitLocal => "COMMIT",
            Op::RollbackLocal => "ROLLBACK",
        }
    }

    fn sql(self, xid: &Xid) -> String {
        match self {
            Op::EndPrepare => format!("XA END {xid}; XA PREPARE {xid}"),
            Op::EndRollback => format!("XA END {xid}; XA ROLLBACK {xid}"),
            Op::EndCommitOnePhase => format!("XA END {xid}; XA COMMIT {xid} ONE PHASE"),
            Op::Commit => format!("XA COMMIT {xid}"),
            Op::Rollback => format!("XA ROLLBACK {xid}"),
            Op::CommitLocal => "COMMIT".to_owned(),
            Op::RollbackLocal => "ROLLBACK".to_owned(),
        }
    }
}

/// Runs one XA step (one round trip).
pub async fn exec(conn: &mut MySqlConnection, xid: &Xid, op: Op) -> Result<(), sqlx::Error> {
    run(conn, op.sql(xid)).await
}

/// Writes the branch's marker row, with the transaction's participant set
/// (checked by [`validate_participants`]), then runs `op` (a prepare or
/// one-phase commit), in the same round trip. `read_only`: the row is a
/// read-only branch's confirmation.
pub async fn exec_marked(
    conn: &mut MySqlConnection,
    xid: &Xid,
    op: Op,
    participants: &[String],
    read_only: bool,
) -> Result<(), sqlx::Error> {
    let sql = marked_sql(xid, op, participants, read_only);
    run(conn, sql).await
}

fn marked_sql(xid: &Xid, op: Op, participants: &[String], read_only: bool) -> String {
    format!(
        "INSERT INTO {MARKER_TABLE} (gtrid, bqual, fenced, participants) VALUES ('{}','{}',{},'{}'); {}",
        xid.gtrid,
        xid.bqual,
        if read_only { 2 } else { 0 },
        participants.join(","),
        op.sql(xid)
    )
}

/// What kind of committed row `tandem.xa_markers` holds for a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    /// The branch's marker: it committed.
    Branch,
    /// A read-only branch's confirmation.
    ReadOnly,
    /// A fence: the branch did not commit and never will.
    Fence,
}

/// The committed row for branch `xid`, if any (a plain consistent read: it
/// takes no lock and waits for none).
pub async fn marker_kind(conn: &mut MySqlConnection, xid: &Xid) -> Result<Option<MarkerKind>, sqlx::Error> {
    let read = format!("SELECT CAST(fenced AS SIGNED) FROM {MARKER_TABLE} WHERE gtrid = ? AND bqual = ?");
    let kind: Option<i64> = sqlx::query_scalar(AssertSqlSafe(read))
        .bind(xid.gtrid.as_bytes())
        .bind(xid.bqual.as_bytes())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(kind.map(marker_kind_of))
}

fn marker_kind_of(fenced: i64) -> MarkerKind {
    match fenced {
        1 => MarkerKind::Fence,
        2 => MarkerKind::ReadOnly,
        _ => MarkerKind::Branch,
    }
}

/// The participant set as the marker row's `participants` column holds it.
fn participant_set(column: Option<Vec<u8>>) -> Vec<String> {
    String::from_utf8_lossy(&column.unwrap_or_default())
        .split(',')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The marker rows of prepared branches `gtrids` here (read uncommitted:
/// they are the branches' own uncommitted rows): each one's participant
/// set and age in ms by the database's clock. Like [`marker`], the
/// isolation level is set for this one read.
pub async fn prepared_markers(
    conn: &mut MySqlConnection,
    bqual: &str,
    gtrids: &[String],
) -> Result<HashMap<String, (Vec<String>, u64)>, sqlx::Error> {
    if gtrids.is_empty() {
        return Ok(HashMap::new());
    }
    run(conn, "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED".to_owned()).await?;
    let marks = vec!["?"; gtrids.len()].join(", ");
    let read = format!(
        "SELECT gtrid, participants, CAST(TIMESTAMPDIFF(MICROSECOND, created_at, NOW(3)) DIV 1000 AS SIGNED) \
         FROM {MARKER_TABLE} WHERE bqual = ? AND fenced = 0 AND gtrid IN ({marks})"
    );
    let mut query = sqlx::query_as::<_, (Vec<u8>, Option<Vec<u8>>, i64)>(AssertSqlSafe(read)).bind(bqual.as_bytes());
    for gtrid in gtrids {
        query = query.bind(gtrid.as_bytes());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    Ok(rows
        .into_iter()
        .map(|(gtrid, set, age)| {
            (
                String::from_utf8_lossy(&gtrid).into_owned(),
                (participant_set(set), u64::try_from(age).unwrap_or(0)),
            )
        })
        .collect())
}

/// The audit trail of transaction `gtrid` here, oldest first; `record`
/// is added first unless an entry with its action is there already (the
/// first one recorded stays), and whether it was.
pub async fn audit(
    conn: &mut MySqlConnection,
    gtrid: &str,
    record: Option<&AuditEntry>,
) -> Result<(Vec<AuditEntry>, bool), sqlx::Error> {
    let mut recorded = false;
    if let Some(entry) = record {
        let insert = format!(
            "INSERT IGNORE INTO {AUDIT_TABLE} (gtrid, action, operator, reason, detail) VALUES (?, ?, ?, ?, ?)"
        );
        let done = sqlx::query(AssertSqlSafe(insert))
            .bind(gtrid.as_bytes())
            .bind(&entry.action)
            .bind(&entry.operator)
            .bind(&entry.reason)
            .bind(&entry.detail)
            .execute(&mut *conn)
            .await?;
        // A duplicate key is ignored: 0 rows. (IGNORE would also turn a
        // value too long into a warning: the Audit RPC checks every length
        // against its column first, in bytes of this utf8mb4 table.)
        recorded = done.rows_affected() == 1;
    }
    let read = format!(
        "SELECT action, operator, reason, detail, CAST(UNIX_TIMESTAMP(at) * 1000 AS SIGNED) FROM {AUDIT_TABLE} \
         WHERE gtrid = ? ORDER BY at, action"
    );
    let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(AssertSqlSafe(read))
        .bind(gtrid.as_bytes())
        .fetch_all(&mut *conn)
        .await?;
    let entries = rows
        .into_iter()
        .map(|(action, operator, reason, detail, at)| AuditEntry {
            action,
            operator,
            reason,
            detail,
            at_unix_ms: u64::try_from(at).unwrap_or(0),
        })
        .collect();
    Ok((entries, recorded))
}

/// What a branch's marker row says (not a fence).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marker {
    /// The transaction's participant set (empty if the row carries none).
    pub participants: Vec<String>,
    /// A read-only branch's confirmation.
    pub read_only: bool,
}

/// Branch `xid`'s marker row, committed or held by the prepared branch
/// (read uncommitted, so it waits for no lock); `None` when there is none
/// (or only a fence). The isolation level is set for this one read only:
/// the session can be pooled again unless an error cut the pair short.
pub async fn marker(conn: &mut MySqlConnection, xid: &Xid) -> Result<Option<Marker>, sqlx::Error> {
    run(conn, "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED".to_owned()).await?;
    let read = format!(
        "SELECT participants, CAST(fenced AS SIGNED) FROM {MARKER_TABLE} WHERE gtrid = ? AND bqual = ? AND fenced <> 1"
    );
    let row: Option<(Option<Vec<u8>>, i64)> = sqlx::query_as(AssertSqlSafe(read))
        .bind(xid.gtrid.as_bytes())
        .bind(xid.bqual.as_bytes())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|(set, kind)| Marker {
        participants: participant_set(set),
        read_only: kind == 2,
    }))
}

/// What the marker table says of a branch that `XA RECOVER` no longer
/// lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// Its marker row is committed: the branch committed.
    Committed,
    /// It did not commit, and a fence row now makes sure it never will: a
    /// late `XA PREPARE` or one-phase commit of it fails on the fence's key.
    Fenced,
    /// A transaction still holds its marker row (prepared, or committing).
    InProgress,
}

/// Finds out for good whether a branch that is not prepared committed. It
/// inserts a fence row under the branch's key: if the branch's own marker
/// row is there, the insert waits for its transaction and then fails on the
/// duplicate key (read it); if not, the fence wins, and the branch's own
/// insert, should its statements still arrive, fails instead.
pub async fn fence(conn: &mut MySqlConnection, xid: &Xid) -> Result<Fence, sqlx::Error> {
    let insert = format!("INSERT INTO {MARKER_TABLE} (gtrid, bqual, fenced) VALUES (?, ?, 1)");
    let inserted = sqlx::query(AssertSqlSafe(insert))
        .bind(xid.gtrid.as_bytes())
        .bind(xid.bqual.as_bytes())
        .execute(&mut *conn)
        .await;
    match inserted {
        Ok(_) => return Ok(Fence::Fenced),
        Err(err) if error_number(&err) == Some(codes::DUPLICATE_KEY) => {}
        Err(err) if error_number(&err) == Some(codes::LOCK_WAIT_TIMEOUT) => return Ok(Fence::InProgress),
        Err(err) => return Err(err),
    }
    // A locking read: it waits for a transaction still committing the row.
    let read =
        format!("SELECT CAST(fenced AS SIGNED) FROM {MARKER_TABLE} WHERE gtrid = ? AND bqual = ? LOCK IN SHARE MODE");
    let fenced: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(AssertSqlSafe(read))
        .bind(xid.gtrid.as_bytes())
        .bind(xid.bqual.as_bytes())
        .fetch_optional(&mut *conn)
        .await;
    match fenced {
        Ok(Some(1)) => Ok(Fence::Fenced),
        // A branch's marker, or a read-only branch's confirmation.
        Ok(Some(_)) => Ok(Fence::Committed),
        // Rolled back between the two statements: fence again next time.
        Ok(None) => Ok(Fence::InProgress),
        Err(err) if error_number(&err) == Some(codes::LOCK_WAIT_TIMEOUT) => Ok(Fence::InProgress),
        Err(err) => Err(err),
    }
}

/// Bounds the lock waits of a session used for fencing, and lifts any
/// statement time limit a branch left on it (it is closed, not pooled,
/// afterwards).
pub async fn short_lock_waits(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    run(
        conn,
        "SET SESSION innodb_lock_wait_timeout = 2, max_statement_time = 0".to_owned(),
    )
    .await
}

pub async fn create_markers(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(CREATE_MARKERS).execute(conn).await.map(|_| ())
}

/// A committed row of the marker table: a branch's marker, a read-only
/// branch's confirmation, or a fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerRow {
    pub gtrid: String,
    pub kind: MarkerKind,
    /// The participant set (empty for a fence, or a row from before sets
    /// were kept).
    pub participants: Vec<String>,
    /// `created_at`, as the server prints it: where the next page starts.
    created_at: String,
}

/// Rows per page of [`old_markers`].
pub const MARKER_PAGE: usize = 1000;

/// Participant `bqual`'s committed marker rows older than `secs`, oldest
/// first, a page of at most [`MARKER_PAGE`] after the row `after` (the last
/// of the previous page). A plain consistent read: rows a prepared branch
/// still holds are not seen, and nothing is locked.
pub async fn old_markers(
    conn: &mut MySqlConnection,
    bqual: &str,
    secs: u64,
    after: Option<&MarkerRow>,
) -> Result<Vec<MarkerRow>, sqlx::Error> {
    let select = format!(
        "SELECT gtrid, CAST(fenced AS SIGNED), participants, DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s.%f') \
         FROM {MARKER_TABLE} WHERE bqual = ? AND created_at < NOW(3) - INTERVAL {secs} SECOND \
         AND (created_at > ? OR (created_at = ? AND gtrid > ?)) \
         ORDER BY created_at, gtrid LIMIT {MARKER_PAGE}"
    );
    let (from, from_gtrid) = after.map_or(("0000-00-00 00:00:00.000000", ""), |row| {
        (row.created_at.as_str(), row.gtrid.as_str())
    });
    type Row = (Vec<u8>, i64, Option<Vec<u8>>, String);
    let rows: Vec<Row> = sqlx::query_as(AssertSqlSafe(select))
        .bind(bqual.as_bytes())
        .bind(from)
        .bind(from)
        .bind(from_gtrid.as_bytes())
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(gtrid, kind, set, created_at)| MarkerRow {
            gtrid: String::from_utf8_lossy(&gtrid).into_owned(),
            kind: marker_kind_of(kind),
            participants: participant_set(set),
            created_at,
        })
        .collect())
}

/// Deletes participant `bqual`'s marker rows of `gtrids`, in one
/// transaction; returns how many went. Runs READ COMMITTED (no gap locks
/// that would hold up branches' marker inserts), with short lock waits, on
/// a session closed afterwards.
pub async fn delete_markers(conn: &mut MySqlConnection, bqual: &str, gtrids: &[String]) -> Result<u64, sqlx::Error> {
    run(
        conn,
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
         SET SESSION innodb_lock_wait_timeout = 2, max_statement_time = 0"
            .to_owned(),
    )
    .await?;
    let delete = format!("DELETE FROM {MARKER_TABLE} WHERE gtrid = ? AND bqual = ?");
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let mut deleted = 0;
    for gtrid in gtrids {
        deleted += sqlx::query(AssertSqlSafe(delete.clone()))
            .bind(gtrid.as_bytes())
            .bind(bqual.as_bytes())
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(deleted)
}

/// `XA END`, whose failure only says MySQL already ended the transaction.
pub async fn end(conn: &mut MySqlConnection, xid: &Xid) -> Result<(), sqlx::Error> {
    run(conn, format!("XA END {xid}")).await
}

/// gtrids of tandem's prepared branches for participant `bqual`, from
/// `XA RECOVER` (other formatIDs and other participants' branches on a
/// shared server are skipped).
pub async fn recover(conn: &mut MySqlConnection, bqual: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::raw_sql("XA RECOVER").fetch_all(&mut *conn).await?;
    let mut out = Vec::new();
    for row in rows {
        let format_id: i64 = row.try_get_unchecked(0)?;
        let gtrid_len: i64 = row.try_get_unchecked(1)?;
        let data: Vec<u8> = row.try_get_unchecked(3)?;
        if format_id != FORMAT_ID {
            continue;
        }
        let split = usize::try_from(gtrid_len).unwrap_or(usize::MAX).min(data.len());
        let (gtrid, branch) = data.split_at(split);
        if branch == bqual.as_bytes() {
            out.push(String::from_utf8_lossy(gtrid).into_owned());
        }
    }
    Ok(out)
}

async fn run(conn: &mut MySqlConnection, sql: String) -> Result<(), sqlx::Error> {
    // Identifiers in `sql` were validated by `Xid::new`; the rest is ours.
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(conn).await.map(|_| ())
}

/// MySQL error numbers the participant reacts to.
pub mod codes {
    /// XAER_NOTA: unknown XID (or attached to another live session).
    pub const XAER_NOTA: u16 = 1397;
    /// ER_LOCK_WAIT_TIMEOUT.
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    /// ER_LOCK_DEADLOCK.
    pub const DEADLOCK: u16 = 1213;
    /// ER_DUP_ENTRY.
    pub const DUPLICATE_KEY: u16 = 1062;
}

/// The MySQL error number of a database error, if it is one.
pub fn error_number(err: &sqlx::Error) -> Option<u16> {
    err.as_database_error()
        .and_then(|e| e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|e| e.number())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xid_renders_for_xa_sql() {
        let xid = Xid::new("tc-1-42", "orders").unwrap();
        assert_eq!(xid.to_string(), "'tc-1-42','orders',1952738609");
        assert!(FORMAT_ID < i64::from(i32::MAX));
    }

    #[test]
    fn xids_are_checked_by_the_xa_id_rule() {
        // The rule itself is tested in tandem_common::names.
        assert!(Xid::new("a'b", "p").is_err());
        assert!(Xid::new("g", "a;XA COMMIT").is_err());
        assert!(Xid::new(&"g".repeat(64), "p_1-z").is_ok());
    }

    #[test]
    fn the_marker_carries_the_checked_participant_set() {
        let xid = Xid::new("tc-1-7", "alpha").unwrap();
        let set = vec!["alpha".to_owned(), "beta".to_owned()];
        validate_participants(&set).unwrap();
        assert_eq!(
            marked_sql(&xid, Op::EndPrepare, &set, false),
            "INSERT INTO tandem.xa_markers (gtrid, bqual, fenced, participants) VALUES ('tc-1-7','alpha',0,'alpha,beta'); \
             XA END 'tc-1-7','alpha',1952738609; XA PREPARE 'tc-1-7','alpha',1952738609"
        );
        assert!(
            marked_sql(&xid, Op::EndCommitOnePhase, &set, true).contains("VALUES ('tc-1-7','alpha',2,'alpha,beta')")
        );
        // A local branch's marker commits with it.
        assert_eq!(
            marked_sql(&xid, Op::CommitLocal, &set[..1], false),
            "INSERT INTO tandem.xa_markers (gtrid, bqual, fenced, participants) VALUES ('tc-1-7','alpha',0,'alpha'); COMMIT"
        );
        for bad in [
            vec!["a'b".to_owned()],
            vec!["a,b".to_owned()],
            vec!["a".to_owned(), "a".to_owned()],
            vec![String::new()],
            vec!["p".to_owned(); MAX_PARTICIPANTS + 1],
        ] {
            assert!(validate_participants(&bad).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..MAX_PARTICIPANTS).map(|i| format!("{i:0>63}")).collect();
        validate_participants(&many).unwrap();
        assert!(many.join(",").len() <= 16384);
    }

    #[test]
    fn xa_start_sends_only_the_settings_that_change() {
        let xid = Xid::new("tc-1-7", "alpha").unwrap();
        assert_eq!(
            start_sql(&xid, Kind::Xa, None, None),
            "XA START 'tc-1-7','alpha',1952738609"
        );
        assert_eq!(start_sql(&xid, Kind::Local, None, None), "START TRANSACTION");
        assert_eq!(
            start_sql(&xid, Kind::Xa, Some(Isolation::ReadCommitted), Some(4)),
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
             SET SESSION innodb_lock_wait_timeout = 4, max_statement_time = 4; \
             XA START 'tc-1-7','alpha',1952738609"
        );
        assert_eq!(
            start_sql(&xid, Kind::Xa, Some(Isolation::Serializable), None),
            "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE; XA START 'tc-1-7','alpha',1952738609"
        );
    }
}
