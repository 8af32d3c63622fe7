//! Branches no live actor finishes: prepared branches left in MySQL by an
//! earlier participant process (or a closed session), found with
//! `XA RECOVER`, decided by the coordinator, and finished from a fresh
//! session.
//!
//! - [`run`]: the recovery loop. At start, whenever MySQL comes back, and
//!   every `interval`, it lists tandem's prepared branches, asks a
//!   coordinator replica's `Decisions` service about each (with the
//!   participant set from the branch's marker row, so any replica can
//!   resolve it), and finishes them. While no replica can answer it waits
//!   and asks again: a prepared branch is never decided here alone.
//! - [`finish_orphan`]: phase 2 from any session, that cannot lie: an XID
//!   absent from `XA RECOVER` counts as done only when the branch's marker
//!   row agrees with what was asked; otherwise it is a heuristic hazard.
//! - [`collect_markers`]: deletes marker rows and fences past their
//!   retention, but only those of transactions settled for good.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tandem_common::{Identity, Role, Transport, names};
use tandem_proto::v1::decisions_client::DecisionsClient;
use tandem_proto::v1::{
    AuditEntry, BranchFate, DecisionKind, DecisionRequest, InDoubtBranch, MarkedTransaction, UnsettledRequest,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, error, info, warn};

use crate::Shared;
use crate::branch::{Ending, Lookup};
use crate::error::{Error, describe_sql};
use crate::sessions::SessionId;
use crate::xa::{self, Op, Xid, codes};

/// gtrids of this participant's prepared branches.
pub async fn prepared(shared: &Shared) -> Result<Vec<String>, Error> {
    let mut conn = acquire(shared).await?;
    xa::recover(&mut conn, &shared.name)
        .await
        .map_err(|e| unavailable(shared, &e))
}

/// Most branches one in-doubt listing returns.
pub const MAX_LISTED: usize = 1000;

/// Every branch prepared here (whoever issued it), oldest first, with its
/// age and participant set from its marker row; whether there were more
/// than [`MAX_LISTED`].
pub async fn in_doubt(shared: &Shared) -> Result<(Vec<InDoubtBranch>, bool), Error> {
    let mut gtrids = prepared(shared).await?;
    let truncated = gtrids.len() > MAX_LISTED;
    gtrids.truncate(MAX_LISTED);
    let mut conn = acquire(shared).await?;
    let mut markers = match xa::prepared_markers(&mut conn, &shared.name, &gtrids).await {
        Ok(markers) => markers,
        Err(err) => {
            // The next transaction's isolation level may still be set.
            drop(conn.detach());
            return Err(unavailable(shared, &err));
        }
    };
    let mut branches: Vec<InDoubtBranch> = gtrids
        .into_iter()
        .map(|gtrid| {
            let (participants, age_ms) = markers.remove(&gtrid).unwrap_or_default();
            InDoubtBranch {
                participant: shared.name.clone(),
                gtrid,
                age_ms,
                participants,
            }
        })
        .collect();
    branches.sort_by_key(|b| std::cmp::Reverse(b.age_ms));
    Ok((branches, truncated))
}

/// The audit trail of `gtrid` here, after recording `record` (see
/// [`xa::audit`]).
pub async fn audit(
    shared: &Shared,
    gtrid: &str,
    record: Option<&AuditEntry>,
) -> Result<(Vec<AuditEntry>, bool), Error> {
    let mut conn = acquire(shared).await?;
    xa::audit(&mut conn, gtrid, record)
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
///
/// A branch absent from `XA RECOVER` has ended; [`xa::fence`] says how (and
/// makes sure it stays so). Ended as asked: done. Ended the other way:
/// [`Error::Heuristic`].
pub async fn finish_orphan(shared: &Shared, xid: &Xid, op: Op, owner: Option<SessionId>) -> Result<(), Error> {
    let mut conn = fencing_conn(shared).await?;
    let result = finish_orphan_on(shared, &mut conn, xid, op, owner).await;
    drop(conn.detach());
    result
}

async fn finish_orphan_on(
    shared: &Shared,
    conn: &mut sqlx::MySqlConnection,
    xid: &Xid,
    op: Op,
    owner: Option<SessionId>,
) -> Result<(), Error> {
    // The owner may still be running the step whose reply was lost (a
    // PREPARE that has not happened yet would not be in XA RECOVER now but
    // could be later): end it before looking. Unknown owner: end whatever
    // session (of an earlier participant process) still runs the branch.
    end_branch_sessions(shared, conn, xid, owner).await?;
    let commit = matches!(op, Op::Commit | Op::EndCommitOnePhase | Op::CommitLocal);
    for _ in 0..20 {
        let listed = xa::recover(conn, &shared.name)
            .await
            .map_err(|e| unavailable(shared, &e))?
            .iter()
            .any(|g| g == xid.gtrid());
        if !listed {
            let fence = xa::fence(conn, xid).await.map_err(|e| unavailable(shared, &e))?;
            return match (commit, fence) {
                (true, xa::Fence::Committed) | (false, xa::Fence::Fenced) => Ok(()),
                (_, xa::Fence::InProgress) => Err(in_progress(shared, xid)),
                (true, xa::Fence::Fenced) => Err(Error::Heuristic(format!(
                    "heuristic hazard: branch {} on participant {} was to commit, but it is not prepared and \
                     has no marker row: it was rolled back",
                    xid.gtrid(),
                    shared.name
                ))),
                (false, xa::Fence::Committed) => Err(Error::Heuristic(format!(
                    "heuristic hazard: branch {} on participant {} was to roll back, but its marker row shows \
                     it committed",
                    xid.gtrid(),
                    shared.name
                ))),
            };
        }
        match xa::exec(conn, xid, op).await {
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

/// How a one-phase commit whose connection broke ended, for good: once the
/// session that ran it is gone (`owner`, or without one, every session
/// still running a statement of the branch), [`xa::fence`] tells. `Err`
/// while that cannot be known yet.
pub async fn settle_one_phase(shared: &Shared, xid: &Xid, owner: Option<SessionId>) -> Result<bool, Error> {
    let mut conn = fencing_conn(shared).await?;
    let settled = async {
        end_branch_sessions(shared, &mut conn, xid, owner).await?;
        match xa::fence(&mut conn, xid).await.map_err(|e| unavailable(shared, &e))? {
            xa::Fence::Committed => Ok(true),
            xa::Fence::Fenced => Ok(false),
            xa::Fence::InProgress => Err(in_progress(shared, xid)),
        }
    }
    .await;
    drop(conn.detach());
    settled
}

/// Whether a prepare whose connection broke took effect, for good: once
/// the session that ran it is gone (`owner`, or without one, every session
/// still running a statement of the branch), `XA RECOVER` lists the branch
/// or it never prepared, and then a fence keeps it so. `Err` while that
/// cannot be known yet.
pub async fn settle_prepare(shared: &Shared, xid: &Xid, owner: Option<SessionId>) -> Result<bool, Error> {
    let mut conn = fencing_conn(shared).await?;
    let settled = async {
        end_branch_sessions(shared, &mut conn, xid, owner).await?;
        let listed = xa::recover(&mut conn, &shared.name)
            .await
            .map_err(|e| unavailable(shared, &e))?
            .iter()
            .any(|g| g == xid.gtrid());
        if listed {
            return Ok(true);
        }
        match xa::fence(&mut conn, xid).await.map_err(|e| unavailable(shared, &e))? {
            xa::Fence::Fenced => Ok(false),
            // Prepared and committed meanwhile (by a resolver's phase 2).
            xa::Fence::Committed => Ok(true),
            xa::Fence::InProgress => Err(in_progress(shared, xid)),
        }
    }
    .await;
    drop(conn.detach());
    settled
}

fn in_progress(shared: &Shared, xid: &Xid) -> Error {
    Error::Unavailable(format!(
        "branch {} on participant {} is still held by a transaction; ask again",
        xid.gtrid(),
        shared.name
    ))
}

/// A connection for fencing: lock waits bounded; closed after use.
async fn fencing_conn(shared: &Shared) -> Result<sqlx::pool::PoolConnection<sqlx::MySql>, Error> {
    let mut conn = acquire(shared).await?;
    xa::short_lock_waits(&mut conn)
        .await
        .map_err(|e| unavailable(shared, &e))?;
    Ok(conn)
}

/// How the branch of `gtrid` ended here (the `Inquire` RPC). An unknown
/// gtrid is fenced in the database ([`xa::fence`]), so a NONE answer stays
/// true.
pub async fn fate(shared: &Arc<Shared>, xid: &Xid) -> Result<BranchFate, Error> {
    let gtrid = xid.gtrid();
    match shared.branches.lookup(gtrid) {
        Lookup::Live(handle) => {
            if is_prepared(shared, xid).await? {
                return Ok(BranchFate::Prepared);
            }
            // Its actor knows (and settles a prepare that lost its
            // connection); one busy running statements is still active.
            return match tokio::time::timeout(Duration::from_secs(2), handle.inquire()).await {
                Ok(Ok(BranchFate::None)) if names::is_keyed_gtrid(gtrid) => keyed_none(shared, xid).await,
                Ok(Ok(fate)) => Ok(fate),
                Ok(Err(_)) | Err(_) => Ok(BranchFate::Active),
            };
        }
        Lookup::Ended(Ending::Committed | Ending::Confirmed) => return Ok(BranchFate::Committed),
        Lookup::Ended(Ending::RolledBack) if names::is_keyed_gtrid(gtrid) => return keyed_none(shared, xid).await,
        Lookup::Ended(Ending::RolledBack | Ending::ReadOnly) => return Ok(BranchFate::None),
        Lookup::Ended(Ending::Unknown(owner)) => {
            let committed = settle_one_phase(shared, xid, owner).await?;
            shared.branches.settle(gtrid, committed);
            return Ok(if committed {
                BranchFate::Committed
            } else {
                BranchFate::None
            });
        }
        Lookup::Unknown => {}
    }
    // No in-memory tombstone before the fence: a concurrent request must
    // not read "rolled back" while the fence may still find a commit. The
    // fence row itself keeps a branch that begins meanwhile from committing.
    let looked = async {
        if is_prepared(shared, xid).await? {
            return Ok(BranchFate::Prepared);
        }
        let committed = settle_one_phase(shared, xid, None).await?;
        Ok(if committed {
            BranchFate::Committed
        } else {
            BranchFate::None
        })
    }
    .await?;
    match looked {
        BranchFate::None => shared.branches.record(gtrid, Ending::RolledBack),
        BranchFate::Committed => shared.branches.record(gtrid, Ending::Committed),
        _ => {}
    }
    Ok(looked)
}

/// The NO of a keyed branch that rolled back, backed by a fence: a keyed
/// gtrid can begin again (a Submit retried with its key), and once this
/// process forgets the rollback (restarted, or its memory full), only the
/// fence keeps the NO told now true.
async fn keyed_none(shared: &Shared, xid: &Xid) -> Result<BranchFate, Error> {
    Ok(if fence_no(shared, xid).await? {
        BranchFate::None
    } else {
        BranchFate::Committed
    })
}

/// What branch `xid`'s marker row says (empty if there is none).
pub async fn marker(shared: &Shared, xid: &Xid) -> Result<xa::Marker, Error> {
    let mut conn = acquire(shared).await?;
    match xa::marker(&mut conn, xid).await {
        Ok(marker) => Ok(marker.unwrap_or_default()),
        Err(err) => {
            // The next transaction's isolation level may still be set.
            drop(conn.detach());
            Err(unavailable(shared, &err))
        }
    }
}

/// How the branch of `gtrid` stands here, without writing anything (the
/// `Inquire` RPC with `probe`): like [`fate`], but a branch this process
/// does not hold and MySQL has no record of is ABSENT, not fenced.
pub async fn probe(shared: &Arc<Shared>, xid: &Xid) -> Result<BranchFate, Error> {
    if !matches!(shared.branches.lookup(xid.gtrid()), Lookup::Unknown) {
        return fate(shared, xid).await;
    }
    if is_prepared(shared, xid).await? {
        return Ok(BranchFate::Prepared);
    }
    let mut conn = acquire(shared).await?;
    let row = xa::marker_kind(&mut conn, xid).await;
    Ok(match row.map_err(|e| unavailable(shared, &e))? {
        Some(xa::MarkerKind::Fence) => BranchFate::None,
        Some(xa::MarkerKind::Branch | xa::MarkerKind::ReadOnly) => BranchFate::Committed,
        None => BranchFate::Absent,
    })
}

/// A one-phase commit (or the question how it ended) for a branch this
/// process does not know: the participant restarted since, or never saw
/// the branch. The gtrid is fenced off first, so "no branch" is final.
pub async fn one_phase_of_unknown(shared: &Arc<Shared>, xid: &Xid) -> Result<(), Error> {
    match fate(shared, xid).await? {
        BranchFate::Committed => Ok(()),
        BranchFate::None => Err(Error::Aborted(format!(
            "participant {} has no branch {}: it never began here, or was rolled back when the participant \
             restarted",
            shared.name,
            xid.gtrid()
        ))),
        BranchFate::Active | BranchFate::Prepared | BranchFate::Absent | BranchFate::Unspecified => {
            Err(Error::Unavailable(format!(
                "branch {} on participant {} is still in progress; ask again",
                xid.gtrid(),
                shared.name
            )))
        }
    }
}

/// What a begin of a keyed gtrid finds of an earlier attempt of the same
/// transaction (a Submit retried with the same client key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Earlier {
    /// Committed here (its marker row, or this process remembers it).
    Committed,
    /// Prepared here: durably YES.
    Prepared,
    /// Rolled back, or fenced: a NO (backed by a fence before it is told).
    Aborted,
    /// A read-only branch that finished (confirmed or not): nothing to
    /// commit.
    ReadOnly,
    /// Still running here (or its one-phase commit is not settled): ask
    /// again.
    Running,
}

/// Whether an earlier attempt of the keyed transaction of `xid` left
/// anything here; `None` when nothing: the branch may begin. Writes
/// nothing. A live actor is asked (for at most 2 s; busy running
/// statements, it is still running).
pub async fn earlier(shared: &Arc<Shared>, xid: &Xid) -> Result<Option<Earlier>, Error> {
    Ok(Some(match shared.branches.lookup(xid.gtrid()) {
        Lookup::Live(handle) => match tokio::time::timeout(Duration::from_secs(2), handle.inquire()).await {
            Ok(Ok(BranchFate::Prepared)) => Earlier::Prepared,
            Ok(Ok(BranchFate::Committed)) => Earlier::Committed,
            Ok(Ok(BranchFate::None)) => Earlier::Aborted,
            _ => Earlier::Running,
        },
        Lookup::Ended(Ending::Committed) => Earlier::Committed,
        Lookup::Ended(Ending::RolledBack) => Earlier::Aborted,
        // A confirmed reader's marker changed no data: nothing to commit.
        Lookup::Ended(Ending::ReadOnly | Ending::Confirmed) => Earlier::ReadOnly,
        Lookup::Ended(Ending::Unknown(_)) => Earlier::Running,
        Lookup::Unknown => {
            if is_prepared(shared, xid).await? {
                return Ok(Some(Earlier::Prepared));
            }
            let mut conn = acquire(shared).await?;
            match xa::marker_kind(&mut conn, xid)
                .await
                .map_err(|e| unavailable(shared, &e))?
            {
                Some(xa::MarkerKind::Fence) => Earlier::Aborted,
                Some(xa::MarkerKind::Branch) => Earlier::Committed,
                Some(xa::MarkerKind::ReadOnly) => Earlier::ReadOnly,
                None => return Ok(None),
            }
        }
    }))
}

/// Backs a NO of a keyed branch (rolled back, or never begun) with a fence
/// row before the NO is told: a later attempt with the same key can then
/// never begin and prepare it, so the NO stays true. `Ok(true)`: fenced;
/// `Ok(false)`: the branch's marker row is committed (an earlier attempt
/// committed it here).
pub async fn fence_no(shared: &Shared, xid: &Xid) -> Result<bool, Error> {
    let mut conn = fencing_conn(shared).await?;
    let fenced = xa::fence(&mut conn, xid).await;
    drop(conn.detach());
    match fenced.map_err(|e| unavailable(shared, &e))? {
        xa::Fence::Fenced => Ok(true),
        xa::Fence::Committed => Ok(false),
        xa::Fence::InProgress => Err(in_progress(shared, xid)),
    }
}

/// Settings of the recovery loop.
#[derive(Debug, Clone)]
pub struct Options {
    /// (name, internal API URL) of each coordinator replica: a branch is
    /// asked about at the one its gtrid names first, then at the others.
    pub coordinators: Vec<(String, String)>,
    /// How to reach them (TLS: the server must carry the coordinator's
    /// identity).
    pub transport: Transport,
    pub interval: Duration,
    /// Marker rows older than this are deleted once their transaction is
    /// settled: how long a key or id can be looked up.
    pub marker_retention: Duration,
}

/// The recovery loop; `wake` runs a pass at once (MySQL came back).
pub async fn run(shared: Arc<Shared>, options: Options, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut decisions = Decisions::default();
    for (name, url) in &options.coordinators {
        match decisions_client(name, url, &options.transport) {
            Ok(client) => {
                decisions.insert(name.clone(), client);
            }
            Err(err) => error!(coordinator = %name, url, "{err}; its prepared branches cannot be recovered"),
        }
    }
    if decisions.is_empty() {
        warn!("no --coordinator: prepared branches left by a crash wait for an operator");
    }
    // Branches a live actor holds are only asked about once they were
    // prepared at the previous pass too: their coordinator normally
    // finishes them first.
    let mut seen: HashSet<String> = HashSet::new();
    // When each prepared branch was first found, for the oldest's age.
    let mut first_seen: HashMap<String, std::time::Instant> = HashMap::new();
    let mut passes: u64 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(if passes == 0 { Duration::ZERO } else { options.interval }) => {}
        }
        passes += 1;
        if !decisions.is_empty() {
            match pass(&shared, &decisions, &seen).await {
                Ok(prepared) => {
                    let now = std::time::Instant::now();
                    first_seen.retain(|gtrid, _| prepared.contains(gtrid));
                    for gtrid in &prepared {
                        first_seen.entry(gtrid.clone()).or_insert(now);
                    }
                    let oldest = first_seen.values().map(|at| now - *at).max().unwrap_or_default();
                    shared.metrics.recovery_pass(prepared.len(), oldest);
                    seen = prepared;
                }
                Err(err) => debug!(error = %err, "recovery pass did not complete"),
            }
        }
        settle_one_phase_commits(&shared).await;
        if passes % 30 == 1 {
            collect_markers(&shared, &decisions, options.marker_retention).await;
        }
    }
}

/// Settles one-phase commits that lost their connection while MySQL could
/// not be asked, so none stays of unknown outcome when no one asks.
async fn settle_one_phase_commits(shared: &Shared) {
    for (gtrid, owner) in shared.branches.unsettled_one_phase() {
        let Ok(xid) = Xid::new(&gtrid, &shared.name) else {
            continue;
        };
        match settle_one_phase(shared, &xid, owner).await {
            Ok(committed) => {
                shared.branches.settle(&gtrid, committed);
                info!(
                    gtrid,
                    committed, "settled a one-phase commit that had lost its connection"
                );
            }
            Err(err) => debug!(gtrid, error = %err, "cannot settle a one-phase commit yet"),
        }
    }
}

/// A `Decisions` client per coordinator name.
type Decisions = HashMap<String, DecisionsClient<Channel>>;

fn decisions_client(name: &str, url: &str, transport: &Transport) -> Result<DecisionsClient<Channel>, String> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("bad coordinator URL {url:?}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    let identity = Identity::new(Role::Coordinator, name)?;
    if let Some(tls) = transport.client_config(&identity) {
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("TLS settings: {e}"))?;
    }
    Ok(DecisionsClient::new(endpoint.connect_lazy()))
}

/// One pass: returns the gtrids found prepared.
async fn pass(shared: &Arc<Shared>, decisions: &Decisions, seen: &HashSet<String>) -> Result<HashSet<String>, Error> {
    let prepared: HashSet<String> = prepared(shared).await?.into_iter().collect();
    let mut unreachable = HashSet::new();
    for gtrid in &prepared {
        let live = match shared.branches.lookup(gtrid) {
            Lookup::Live(handle) => Some(handle),
            _ => None,
        };
        if live.is_some() && !seen.contains(gtrid) {
            continue;
        }
        let xid = Xid::new(gtrid, &shared.name)?;
        // Any replica can resolve it from the participant set in the
        // marker row; the one that issued it may still hold it in memory.
        let participants = marker(shared, &xid).await?.participants;
        let issuer = crate::auth::gtrid_coordinator(gtrid);
        let mut order: Vec<&String> = decisions.keys().filter(|name| *name == issuer).collect();
        order.extend(decisions.keys().filter(|name| *name != issuer));
        let mut decision = None;
        for name in order {
            if unreachable.contains(name) {
                continue;
            }
            let request = DecisionRequest {
                gtrid: gtrid.clone(),
                participants: participants.clone(),
            };
            match decisions[name].clone().decision(request).await {
                Ok(response) => {
                    decision =
                        Some(DecisionKind::try_from(response.into_inner().decision).unwrap_or(DecisionKind::Pending));
                    break;
                }
                Err(status) => {
                    warn!(gtrid, coordinator = %name, error = %status.message(), "cannot ask a coordinator about a prepared branch; asking another");
                    if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) {
                        // Unreachable: ask another about the rest too.
                        unreachable.insert(name.clone());
                    }
                }
            }
        }
        let commit = match decision {
            Some(DecisionKind::Commit) => true,
            Some(DecisionKind::Abort) => false,
            Some(DecisionKind::Pending | DecisionKind::Unspecified) | None => continue,
        };
        let done = match live {
            Some(handle) if commit => handle.commit(false).await,
            Some(handle) => handle.rollback().await,
            None => {
                let op = if commit { Op::Commit } else { Op::Rollback };
                finish_orphan(shared, &xid, op, None).await
            }
        };
        match done {
            Ok(()) => {
                shared.metrics.recovered(commit);
                info!(
                    gtrid,
                    commit, "recovered a prepared branch per the coordinators' decision"
                );
            }
            Err(Error::Heuristic(msg)) => error!(gtrid, "{msg}"),
            Err(err) => warn!(gtrid, commit, error = %err, "could not finish a prepared branch; will retry"),
        }
    }
    Ok(prepared)
}

/// Deletes this participant's marker rows older than `retention` whose
/// transaction is settled for good, page by page (at most 100 pages a
/// round).
///
/// A committed marker says YES for its branch to any resolver that asks
/// later. Deleted while another branch of its set is still prepared, the
/// resolver that branch's recovery asks would fence this one and decide
/// abort: a split transaction. So a row is deleted only when no branch of
/// its set is prepared or live anywhere; a replica's `Unsettled` asks the
/// other participants (this one knows only itself). Settled is final: a
/// branch never becomes prepared or live again once it ended.
///
/// A fence, or a marker whose set is this participant alone, needs no one
/// else: its own branch ended (a fenced one can never prepare), and a
/// resolver that asks after the row is gone fences again and reaches the
/// same answer. Rows from before sets were kept go by age alone.
async fn collect_markers(shared: &Shared, decisions: &Decisions, retention: Duration) {
    let Ok(mut conn) = acquire(shared).await else {
        return;
    };
    let mut after: Option<xa::MarkerRow> = None;
    let (mut deleted, mut kept) = (0, 0);
    for _ in 0..100 {
        let page = match xa::old_markers(&mut conn, &shared.name, retention.as_secs(), after.as_ref()).await {
            Ok(page) => page,
            Err(err) => {
                warn!(error = %describe_sql(&err), "cannot read old marker rows");
                break;
            }
        };
        let full = page.len() == xa::MARKER_PAGE;
        let unfinished: HashSet<String> = shared.branches.unfinished().into_iter().collect();
        let (settled, ask): (Vec<_>, Vec<_>) = page
            .iter()
            .filter(|row| !unfinished.contains(&row.gtrid))
            .partition(|row| row.kind == xa::MarkerKind::Fence || row.participants.iter().all(|p| *p == shared.name));
        let mut settled: Vec<String> = settled.into_iter().map(|row| row.gtrid.clone()).collect();
        if !ask.is_empty() {
            let transactions: Vec<MarkedTransaction> = ask
                .iter()
                .map(|row| MarkedTransaction {
                    gtrid: row.gtrid.clone(),
                    participants: row.participants.clone(),
                })
                .collect();
            if let Some(unsettled) = unsettled(decisions, transactions).await {
                settled.extend(
                    ask.iter()
                        .filter(|row| !unsettled.contains(&row.gtrid))
                        .map(|row| row.gtrid.clone()),
                );
            }
        }
        kept += page.len() - settled.len();
        if !settled.is_empty() {
            match xa::delete_markers(&mut conn, &shared.name, &settled).await {
                Ok(n) => deleted += n,
                Err(err) => {
                    warn!(error = %describe_sql(&err), "cannot delete old marker rows");
                    break;
                }
            }
        }
        after = page.into_iter().last();
        if !full {
            break;
        }
    }
    if deleted > 0 || kept > 0 {
        debug!(
            deleted,
            kept, "old marker rows collected; those of unsettled transactions kept"
        );
    }
    // The session's isolation and lock wait were changed; do not pool it.
    drop(conn.detach());
}

/// Which of `transactions` a replica says are not settled yet; `None`
/// when no replica answered.
async fn unsettled(decisions: &Decisions, transactions: Vec<MarkedTransaction>) -> Option<HashSet<String>> {
    let request = UnsettledRequest { transactions };
    for (name, client) in decisions {
        match client.clone().unsettled(request.clone()).await {
            Ok(answer) => return Some(answer.into_inner().gtrids.into_iter().collect()),
            Err(status) => {
                debug!(coordinator = %name, error = %status.message(), "cannot ask which marker rows are settled")
            }
        }
    }
    None
}

/// Ends the session that ran the branch: `owner` if known, else any session
/// still running one of the branch's statements.
async fn end_branch_sessions(
    shared: &Shared,
    conn: &mut sqlx::MySqlConnection,
    xid: &Xid,
    owner: Option<SessionId>,
) -> Result<(), Error> {
    let sessions = match owner {
        Some(owner) => {
            let run = xa::server_started(conn).await.map_err(|e| unavailable(shared, &e))?;
            if owner.server_started == run {
                vec![owner.id]
            } else {
                // The server restarted since: the session ended with its
                // run, and its id may now name an unrelated session.
                Vec::new()
            }
        }
        // No session known: end whatever session still runs one of the
        // branch's statements.
        None => xa::sessions_naming(conn, xid)
            .await
            .map_err(|e| unavailable(shared, &e))?,
    };
    for session in sessions {
        end_session(shared, conn, session).await?;
    }
    Ok(())
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
