//! The checker: after the faults stop and the cluster heals, compares the
//! recorded history with what every database holds.
//!
//! [`read_state`] gathers the final state (balances, ledger rows, `XA
//! RECOVER`, a lock probe, and what `GetTransaction` says of every
//! transaction); [`check`] is pure and finds every violation of:
//!
//! - every committed audit read the exact initial total, of every account;
//! - the final total is exact, no balance is negative, and every balance
//!   equals its opening balance plus its ledger rows;
//! - each transfer's ledger rows are on all of its branches or on none;
//! - a transfer reported COMMITTED is applied, one reported ABORTED (or
//!   never committed) is not, and an unknown one ended one way;
//! - no ledger row belongs to an operation nobody invoked;
//! - the coordinator's word (`GetTransaction`: by id, for a Submit whose
//!   call died before naming its transaction by the id its client key
//!   gives, or for an interactive one that died in Begin `ListTransactions`
//!   by label) agrees with the data, and it can answer for every
//!   transaction it issued;
//! - no lock is held.
//!
//! Leftover XIDs are reported on their own.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use sqlx::{AssertSqlSafe, MySqlPool, Row};
use tandem_client::pb::{self, TxnFilter};
use tandem_client::{Client, Outcome};

use super::history::{Event, Type, Write};
use super::workload::{Bank, NOT_SENT, RETRIED};
use crate::cluster::Cluster;
use crate::mariadb;

/// What the databases and the coordinator hold after the run.
#[derive(Debug, Default, Clone)]
pub struct FinalState {
    /// (participant, account) → balance.
    pub balances: BTreeMap<(String, i64), i64>,
    /// op → its ledger rows, on every participant.
    pub ledger: BTreeMap<String, BTreeSet<Write>>,
    /// (participant, gtrid) still in `XA RECOVER`.
    pub leftover: Vec<(String, String)>,
    /// Updates that could not take a lock at once.
    pub locked: Vec<String>,
    /// op → the outcome the coordinator reports for its transaction
    /// (`GetTransaction`, or for a Submit that died before it named its
    /// transaction, by the id its client key gives; for an interactive one
    /// that died in Begin, `ListTransactions` by the op's label).
    pub reported: BTreeMap<String, Outcome>,
    /// Transaction ids the coordinator could not answer for, and why.
    pub unanswered: Vec<String>,
}

/// How the operations of one kind ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub attempted: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Unknown ones found applied (committed) in the end.
    pub info_committed: u64,
    /// Unknown ones found not applied (aborted) in the end.
    pub info_aborted: u64,
    /// Failed ones that never reached the coordinator (it was down).
    pub not_sent: u64,
    /// Submits whose call ended without an answer and that a retry with
    /// the same client key answered (counted in `ok` or `fail`).
    pub retried: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub transfers: Counts,
    pub audits: Counts,
    /// Operations whose reported outcome was compared with the data.
    pub reports_checked: u64,
    pub violations: Vec<String>,
}

/// Checks the history against the final state (pure).
pub fn check(events: &[Event], bank: &Bank, state: &FinalState) -> Verdict {
    let mut verdict = Verdict::default();
    let ops = pair_operations(events);

    for (op, &(invoke, end)) in &ops {
        let kind = end.map_or(Type::Info, |e| e.kind);
        match invoke.f.as_str() {
            "transfer" => check_transfer(op, invoke, end, kind, state, &mut verdict),
            "audit" => {
                count(&mut verdict.audits, kind, end);
                if kind == Type::Ok
                    && let Some(end) = end
                {
                    check_audit(op, end, bank, &mut verdict.violations);
                }
            }
            _ => {}
        }
    }

    for op in state.ledger.keys() {
        match ops.get(op.as_str()) {
            Some((invoke, _)) if invoke.f == "transfer" => {}
            Some((invoke, _)) => verdict
                .violations
                .push(format!("ledger rows of operation {op}, which is an {}", invoke.f)),
            None => verdict
                .violations
                .push(format!("ledger rows of operation {op}, which no client invoked")),
        }
    }
    for what in &state.unanswered {
        verdict
            .violations
            .push(format!("the coordinator cannot say how a transaction ended: {what}"));
    }
    check_balances(bank, state, &mut verdict.violations);
    for what in &state.locked {
        verdict.violations.push(format!("lock held after the run: {what}"));
    }
    verdict
}

/// Each client operation: its invoke and its completion, by op id.
fn pair_operations(events: &[Event]) -> BTreeMap<&str, (&Event, Option<&Event>)> {
    let mut ops: BTreeMap<&str, (&Event, Option<&Event>)> = BTreeMap::new();
    for event in events.iter().filter(|e| !e.op.is_empty()) {
        match event.kind {
            Type::Invoke => {
                ops.insert(&event.op, (event, None));
            }
            _ => {
                if let Some(entry) = ops.get_mut(event.op.as_str()) {
                    entry.1 = Some(event);
                }
            }
        }
    }
    ops
}

fn count(counts: &mut Counts, kind: Type, end: Option<&Event>) {
    if end.is_some_and(|e| e.detail.starts_with(NOT_SENT)) {
        counts.not_sent += 1;
    }
    if end.is_some_and(|e| e.detail.starts_with(RETRIED)) {
        counts.retried += 1;
    }
    counts.attempted += 1;
    match kind {
        Type::Ok => counts.ok += 1,
        Type::Fail => counts.fail += 1,
        Type::Info | Type::Invoke => counts.info += 1,
    }
}

fn check_transfer(
    op: &str,
    invoke: &Event,
    end: Option<&Event>,
    kind: Type,
    state: &FinalState,
    verdict: &mut Verdict,
) {
    count(&mut verdict.transfers, kind, end);
    let violations = &mut verdict.violations;
    let wanted: BTreeSet<Write> = invoke.writes.iter().cloned().collect();
    let found = state.ledger.get(op).cloned().unwrap_or_default();
    let applied = !found.is_empty() && found == wanted;
    let absent = found.is_empty();
    if !applied && !absent {
        violations.push(format!(
            "transfer {op} is partly applied (not atomic): wrote {wanted:?}, found {found:?}"
        ));
        return;
    }
    match kind {
        Type::Ok if !applied => violations.push(format!("transfer {op} was reported COMMITTED but is not applied")),
        Type::Fail if applied => violations.push(format!(
            "transfer {op} was reported failed ({}) but is applied",
            end.map_or("", |e| e.detail.as_str())
        )),
        Type::Info | Type::Invoke if applied => verdict.transfers.info_committed += 1,
        Type::Info | Type::Invoke => verdict.transfers.info_aborted += 1,
        _ => {}
    }
    let txn = end.map_or("", |e| e.txn.as_str());
    let reported = state.reported.get(op);
    if reported.is_some() {
        verdict.reports_checked += 1;
    }
    match reported {
        Some(Outcome::Committed) if !applied => violations.push(format!(
            "the coordinator says transaction {txn} of transfer {op} COMMITTED, but it is not applied"
        )),
        Some(Outcome::Aborted) if applied => violations.push(format!(
            "the coordinator says transaction {txn} of transfer {op} ABORTED, but it is applied"
        )),
        _ => {}
    }
}

fn check_audit(op: &str, end: &Event, bank: &Bank, violations: &mut Vec<String>) {
    let accounts = bank.accounts * i64::try_from(bank.participants.len()).unwrap_or(0);
    let seen: BTreeSet<(&str, i64)> = end.reads.iter().map(|r| (r.participant.as_str(), r.account)).collect();
    let total: i64 = end.reads.iter().map(|r| r.balance).sum();
    if i64::try_from(seen.len()).unwrap_or(-1) != accounts || seen.len() != end.reads.len() {
        violations.push(format!(
            "audit {op} read {} balances of {} distinct accounts, expected {accounts}",
            end.reads.len(),
            seen.len()
        ));
    } else if total != bank.total() {
        violations.push(format!("audit {op} saw a total of {total}, expected {}", bank.total()));
    }
}

fn check_balances(bank: &Bank, state: &FinalState, violations: &mut Vec<String>) {
    let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for participant in &bank.participants {
        for account in 1..=bank.accounts {
            expected.insert((participant.clone(), account), bank.initial);
        }
    }
    for w in state.ledger.values().flatten() {
        *expected.entry((w.participant.clone(), w.account)).or_default() += w.delta;
    }
    let total: i64 = state.balances.values().sum();
    if total != bank.total() {
        violations.push(format!("the final total is {total}, expected {}", bank.total()));
    }
    for (key, balance) in &state.balances {
        if *balance < 0 {
            violations.push(format!("account {} on {} is negative: {balance}", key.1, key.0));
        }
    }
    for (key, want) in &expected {
        match state.balances.get(key) {
            Some(balance) if balance == want => {}
            Some(balance) => violations.push(format!(
                "account {} on {} holds {balance}, but its opening balance and ledger rows make {want}",
                key.1, key.0
            )),
            None => violations.push(format!("account {} on {} is missing", key.1, key.0)),
        }
    }
    for key in state.balances.keys().filter(|k| !expected.contains_key(*k)) {
        violations.push(format!("unexpected account {} on {}", key.1, key.0));
    }
}

/// Reads the final state from every database and asks the coordinator
/// about every transaction the history names.
pub async fn read_state(cluster: &Cluster, events: &[Event]) -> Result<FinalState> {
    let mut state = FinalState::default();
    for node in cluster.nodes() {
        let pool = node.pool();
        for row in sqlx::query("SELECT id, balance FROM accounts")
            .fetch_all(pool)
            .await
            .context("reading balances")?
        {
            state
                .balances
                .insert((node.name.clone(), row.try_get(0)?), row.try_get(1)?);
        }
        for row in sqlx::query("SELECT op, account, delta FROM ledger")
            .fetch_all(pool)
            .await
            .context("reading the ledger")?
        {
            state.ledger.entry(row.try_get(0)?).or_default().insert(Write {
                participant: node.name.clone(),
                account: row.try_get(1)?,
                delta: row.try_get(2)?,
            });
        }
        for gtrid in mariadb::xa_recover(pool).await? {
            state.leftover.push((node.name.clone(), gtrid));
        }
        for table in ["accounts", "ledger"] {
            if let Err(err) = update_at_once(pool, table).await {
                state.locked.push(format!("UPDATE {table} on {}: {err:#}", node.name));
            }
        }
    }
    // An operator per replica: a transaction is asked about at the replica
    // that issued it (its id names it), which may still hold it in memory;
    // otherwise the participants tell, fenced for a final answer (a
    // client's GetTransaction only probes).
    let ops = tandem_common::Identity::new(tandem_common::Role::Operator, "ops").map_err(anyhow::Error::msg)?;
    let mut clients = Vec::new();
    for i in 0..cluster.replica_count() {
        clients.push(cluster.replica_access_as(i, &ops)?.connect().await?);
    }
    let clients = &clients;
    // Completions of transfers: those with an id, every Submit (its key
    // gives its id), and unknown interactive ones without an id (found by
    // their label, the op id).
    let asks: Vec<&Event> = events
        .iter()
        .filter(|e| e.f == "transfer" && e.kind != Type::Invoke)
        .filter(|e| !e.txn.is_empty() || e.kind == Type::Info || e.mode == "submit")
        .collect();
    let answers: Vec<(String, Result<Option<Outcome>, String>)> = futures::stream::iter(asks)
        .map(|event| async move { (event.op.clone(), reported_outcome(clients, event).await) })
        .buffer_unordered(8)
        .collect()
        .await;
    for (op, answer) in answers {
        match answer {
            Ok(Some(outcome)) => {
                state.reported.insert(op, outcome);
            }
            Ok(None) => {}
            Err(why) => state.unanswered.push(format!("transfer {op}: {why}")),
        }
    }
    Ok(state)
}

/// What the coordinator replicas say of an operation's transaction: by id,
/// at the replica that issued it (a Submit's id comes from its client key,
/// the op id, and any replica answers for it, for good: an operator's
/// question fences what did not prepare), or for an unknown interactive
/// transaction by its label, at every replica (`None` if no transaction has
/// that label: labels do not survive a coordinator restart, and the Begin
/// may never have arrived). Retries while the answer is UNAVAILABLE (ask
/// again).
async fn reported_outcome(clients: &[Client], event: &Event) -> Result<Option<Outcome>, String> {
    let mut attempt = 0;
    let txn = if event.mode == "submit" {
        let client = tandem_common::Identity::new(tandem_common::Role::Client, crate::cluster::TEST_PRINCIPAL)
            .map_err(|e| e.to_string())?;
        tandem_common::names::keyed_gtrid(&client.to_string(), &event.op)
    } else {
        event.txn.clone()
    };
    loop {
        let answer = if txn.is_empty() {
            let mut found = Ok(None);
            for client in clients {
                let request = pb::ListTransactionsRequest {
                    filter: TxnFilter::All as i32,
                    label: event.op.clone(),
                    ..pb::ListTransactionsRequest::default()
                };
                // Every page: a page may be empty and still have a next one.
                found = client
                    .clone()
                    .list_transactions(request)
                    .await
                    .map(|list| list.first().map(pb::TransactionInfo::outcome));
                if !matches!(found, Ok(None)) {
                    break;
                }
            }
            found
        } else {
            let issuer = txn.split('-').next().unwrap_or_default();
            let i = (0..clients.len())
                .find(|i| crate::cluster::replica_name(*i) == issuer)
                .unwrap_or(0);
            clients[i]
                .clone()
                .get_transaction(&txn)
                .await
                .map(|info| Some(info.outcome()))
        };
        match answer {
            Ok(Some(Outcome::Unspecified)) => {
                return Err(format!("{txn} has no outcome after the run settled"));
            }
            Ok(outcome) => return Ok(outcome),
            Err(status) if status.code() == tonic::Code::Unavailable && attempt < 60 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(status) => return Err(format!("{txn}: {status}")),
        }
    }
}

/// Touches every row with a 1 s lock wait: fails if any lock is held.
async fn update_at_once(pool: &MySqlPool, table: &str) -> Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql("SET SESSION innodb_lock_wait_timeout = 1")
        .execute(&mut *conn)
        .await?;
    let touch = if table == "accounts" {
        "balance = balance"
    } else {
        "delta = delta"
    };
    let sql = format!("UPDATE {table} SET {touch}");
    tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn),
    )
    .await
    .context("timed out")??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::history::Read;

    fn bank() -> Bank {
        Bank {
            participants: vec!["a".into(), "b".into()],
            accounts: 1,
            initial: 100,
        }
    }

    fn w(participant: &str, delta: i64) -> Write {
        Write {
            participant: participant.to_owned(),
            account: 1,
            delta,
        }
    }

    fn transfer(op: &str, kind: Type, amount: i64) -> Vec<Event> {
        let mut invoke = Event::new("client-0", Type::Invoke, "transfer");
        invoke.op = op.to_owned();
        invoke.writes = vec![w("a", -amount), w("b", amount)];
        let mut end = invoke.clone();
        end.kind = kind;
        end.txn = format!("txn-{op}");
        vec![invoke, end]
    }

    /// The state after applying `applied` transfers of `amount` a → b.
    fn state(applied: &[(&str, i64)]) -> FinalState {
        let mut state = FinalState::default();
        let moved: i64 = applied.iter().map(|(_, amount)| amount).sum();
        state.balances.insert(("a".into(), 1), 100 - moved);
        state.balances.insert(("b".into(), 1), 100 + moved);
        for (op, amount) in applied {
            state.ledger.insert(
                (*op).to_owned(),
                [w("a", -amount), w("b", *amount)].into_iter().collect(),
            );
        }
        state
    }

    #[test]
    fn a_clean_history_has_no_violation_and_unknowns_are_resolved() {
        let mut events = transfer("0-1", Type::Ok, 10);
        events.extend(transfer("0-2", Type::Fail, 20));
        events.extend(transfer("0-3", Type::Info, 5));
        events.extend(transfer("0-4", Type::Info, 7));
        let verdict = check(&events, &bank(), &state(&[("0-1", 10), ("0-3", 5)]));
        assert!(verdict.violations.is_empty(), "{:?}", verdict.violations);
        assert_eq!(
            verdict.transfers,
            Counts {
                attempted: 4,
                ok: 1,
                fail: 1,
                info: 2,
                info_committed: 1,
                info_aborted: 1,
                not_sent: 0,
                retried: 0
            }
        );
    }

    #[test]
    fn finds_lost_commits_ghost_aborts_and_half_applied_transfers() {
        let mut events = transfer("0-1", Type::Ok, 10);
        events.extend(transfer("0-2", Type::Fail, 20));
        events.extend(transfer("0-3", Type::Info, 5));
        let mut state = state(&[("0-2", 20)]);
        // 0-3 reached only b.
        state.ledger.insert("0-3".into(), [w("b", 5)].into_iter().collect());
        *state.balances.get_mut(&("b".into(), 1)).expect("b") += 5;
        let verdict = check(&events, &bank(), &state);
        let all = verdict.violations.join("\n");
        assert!(all.contains("0-1 was reported COMMITTED but is not applied"), "{all}");
        assert!(all.contains("0-2 was reported failed"), "{all}");
        assert!(all.contains("0-3 is partly applied"), "{all}");
        assert!(all.contains("the final total is 205"), "{all}");
    }

    #[test]
    fn finds_a_balance_that_disagrees_with_its_ledger_and_unknown_ledger_rows() {
        let events = transfer("0-1", Type::Ok, 10);
        let mut state = state(&[("0-1", 10), ("9-9", 1)]);
        *state.balances.get_mut(&("a".into(), 1)).expect("a") -= 50;
        *state.balances.get_mut(&("b".into(), 1)).expect("b") += 50;
        let all = check(&events, &bank(), &state).violations.join("\n");
        assert!(all.contains("operation 9-9, which no client invoked"), "{all}");
        assert!(all.contains("account 1 on a holds 39"), "{all}");
        assert!(!all.contains("final total"), "the total alone is right: {all}");
    }

    #[test]
    fn checks_audit_totals_and_coverage_and_ignores_failed_audits() {
        let audit = |op: &str, kind: Type, balances: &[(&str, i64)]| {
            let mut invoke = Event::new("client-1", Type::Invoke, "audit");
            invoke.op = op.to_owned();
            let mut end = invoke.clone();
            end.kind = kind;
            end.reads = balances
                .iter()
                .map(|(p, balance)| Read {
                    participant: (*p).to_owned(),
                    account: 1,
                    balance: *balance,
                })
                .collect();
            vec![invoke, end]
        };
        let mut events = audit("1-1", Type::Ok, &[("a", 90), ("b", 110)]);
        events.extend(audit("1-2", Type::Ok, &[("a", 90), ("b", 100)]));
        events.extend(audit("1-3", Type::Ok, &[("a", 200)]));
        events.extend(audit("1-4", Type::Fail, &[("a", 1)]));
        let verdict = check(&events, &bank(), &state(&[]));
        let all = verdict.violations.join("\n");
        assert_eq!(verdict.violations.len(), 2, "{all}");
        assert!(all.contains("audit 1-2 saw a total of 190"), "{all}");
        assert!(all.contains("audit 1-3 read 1 balances"), "{all}");
        assert_eq!(verdict.audits.ok, 3);
        assert_eq!(verdict.audits.fail, 1);
    }

    #[test]
    fn get_transaction_must_agree_with_the_data() {
        let mut events = transfer("0-1", Type::Info, 10);
        events.extend(transfer("0-2", Type::Info, 10));
        events.extend(transfer("0-3", Type::Info, 10));
        let mut state = state(&[("0-1", 10)]);
        state.reported.insert("0-1".into(), Outcome::Aborted);
        state.reported.insert("0-2".into(), Outcome::Committed);
        state.unanswered.push("transfer 0-3: txn-0-3: NOT_FOUND".into());
        let verdict = check(&events, &bank(), &state);
        let all = verdict.violations.join("\n");
        assert!(
            all.contains("transaction txn-0-1 of transfer 0-1 ABORTED, but it is applied"),
            "{all}"
        );
        assert!(
            all.contains("transaction txn-0-2 of transfer 0-2 COMMITTED, but it is not applied"),
            "{all}"
        );
        assert!(
            all.contains("cannot say how a transaction ended: transfer 0-3"),
            "{all}"
        );
        assert_eq!(verdict.reports_checked, 2);
    }
}
