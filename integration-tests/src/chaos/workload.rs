//! The bank workload: accounts on every participant, clients moving money
//! between participants, and auditors reading every balance.
//!
//! A transfer debits one account (guarded: it aborts on insufficient
//! funds) and credits one or two accounts on other participants, or one
//! time in five another account of the same participant; every write also
//! inserts a ledger row `(op, account, delta)` naming the client's
//! operation id, so the checker can see which writes of which transfer
//! were applied. Half the transfers are one `Submit`, half are
//! interactive (Begin, one Execute per branch, Commit). An audit reads
//! every balance on every participant in one SERIALIZABLE transaction.
//!
//! Every transfer Submit carries its op id as client key. When its call
//! fails without an answer (the replica died, the call timed out, the
//! outcome is not known yet), the client retries it with the same key, at
//! the other replica first: the answer must be the first attempt's, and
//! the transfer applied at most once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use sqlx::AssertSqlSafe;
use tandem_client::pb::{self, Outcome};
use tandem_client::{Client, Statement};
use tokio::task::JoinHandle;
use tonic::Code;

use super::history::{Event, History, Read, Type, Write};
use crate::cluster::Cluster;

/// The ledger every transfer branch writes to.
pub const LEDGER: &str = "CREATE TABLE ledger (
    op VARCHAR(32) NOT NULL,
    account BIGINT NOT NULL,
    delta BIGINT NOT NULL,
    PRIMARY KEY (op, account)
) ENGINE=InnoDB";

/// How the detail of a `fail` starts when the call never left the client
/// (the coordinator's port refused the connection).
pub const NOT_SENT: &str = "not sent: ";
/// How the detail of a Submit answered on a retry starts.
pub const RETRIED: &str = "retry ";

/// A transfer's deadline. Branches run in parallel, so two transactions
/// can deadlock across databases, which no database can see: the deadline
/// (the participants' lock wait) breaks such cycles, and a short one keeps
/// the workload moving.
const TRANSFER_TIMEOUT_MS: u32 = 1_200;
/// An audit's deadline: longer than a transfer's, so in a cycle between
/// an audit (which locks every row) and transfers, the transfers give way
/// and audits get through.
const AUDIT_TIMEOUT_MS: u32 = 4_000;
/// An auditor's pause between audits.
const AUDIT_PAUSE: Duration = Duration::from_millis(300);
/// A client's limit on any one call: past it the outcome is unknown.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Retries of a keyed Submit whose call ended without an answer.
const SUBMIT_RETRIES: usize = 2;
/// The pause before each of them.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The accounts: `accounts` per participant (ids 1..=accounts), each
/// starting with `initial`.
#[derive(Debug, Clone)]
pub struct Bank {
    pub participants: Vec<String>,
    pub accounts: i64,
    pub initial: i64,
}

impl Bank {
    pub fn total(&self) -> i64 {
        self.initial * self.accounts * i64::try_from(self.participants.len()).unwrap_or(0)
    }

    /// Creates the accounts on every database, directly (outside tandem).
    pub async fn open(&self, cluster: &Cluster) -> Result<()> {
        for node in cluster.nodes() {
            let values: Vec<String> = (1..=self.accounts)
                .map(|id| format!("({id}, '{}-{id}', {})", node.name, self.initial))
                .collect();
            let sql = format!("INSERT INTO accounts (id, owner, balance) VALUES {}", values.join(", "));
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(node.pool())
                .await
                .with_context(|| format!("opening the accounts on {}", node.name))?;
        }
        Ok(())
    }
}

/// The running clients.
pub struct Clients {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Clients {
    /// Starts `transferers` transfer clients and `auditors` audit clients,
    /// client `i` against the coordinator replica `accesses[i % len]`.
    /// Client `i` draws its operations from `seed + i`.
    pub fn start(
        accesses: &[crate::Access],
        bank: &Bank,
        seed: u64,
        transferers: usize,
        auditors: usize,
        history: &History,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let connect = |access: &crate::Access| -> Result<Client> {
            let channel = access
                .endpoint()?
                .connect_timeout(Duration::from_secs(2))
                .timeout(CALL_TIMEOUT)
                .tcp_nodelay(true)
                .connect_lazy();
            Ok(Client::from_channel(channel, access.token.as_deref())?)
        };
        for i in 0..transferers + auditors {
            let worker = Worker {
                name: format!("client-{i}"),
                client: connect(&accesses[i % accesses.len()])?,
                other: connect(&accesses[(i + 1) % accesses.len()])?,
                rng: StdRng::seed_from_u64(seed.wrapping_add(i as u64 + 1)),
                bank: bank.clone(),
                history: history.clone(),
                ops: 0,
            };
            let stop = Arc::clone(&stop);
            let audits = i >= transferers;
            tasks.push(tokio::spawn(worker.run(stop, audits)));
        }
        Ok(Self { stop, tasks })
    }

    /// Lets every client finish its current operation, then stops them.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

struct Worker {
    name: String,
    client: Client,
    /// The same principal at the next replica, for retries.
    other: Client,
    rng: StdRng,
    bank: Bank,
    history: History,
    ops: u64,
}

/// How an operation ended.
enum Done {
    /// `note`: the coordinator's reason, if any (a retry's says so).
    Ok {
        txn: String,
        reads: Vec<Read>,
        note: String,
    },
    Fail {
        txn: String,
        why: String,
    },
    Info {
        txn: String,
        why: String,
    },
}

impl Worker {
    async fn run(mut self, stop: Arc<AtomicBool>, audits: bool) {
        while !stop.load(Ordering::SeqCst) {
            self.ops += 1;
            let op = format!("{}-{}", self.name.trim_start_matches("client-"), self.ops);
            let interactive = self.rng.random_bool(if audits { 0.3 } else { 0.5 });
            let (f, writes) = if audits {
                ("audit", Vec::new())
            } else {
                ("transfer", self.draw_transfer())
            };
            let mode = if interactive { "interactive" } else { "submit" };
            let mut invoke = Event::new(&self.name, Type::Invoke, f);
            invoke.op.clone_from(&op);
            invoke.mode = mode.to_owned();
            invoke.writes.clone_from(&writes);
            self.history.record(invoke);

            let done = match (audits, interactive) {
                (false, false) => self.submit_transfer(&op, &writes).await,
                (false, true) => self.interactive_transfer(&op, &writes).await,
                (true, false) => self.submit_audit(&op).await,
                (true, true) => self.interactive_audit(&op).await,
            };
            let (kind, txn, reads, detail) = match done {
                Done::Ok { txn, reads, note } => (Type::Ok, txn, reads, note),
                Done::Fail { txn, why } => (Type::Fail, txn, Vec::new(), why),
                Done::Info { txn, why } => (Type::Info, txn, Vec::new(), why),
            };
            let mut end = Event::new(&self.name, kind, f);
            end.op = op;
            end.mode = mode.to_owned();
            end.txn = txn;
            end.writes = writes;
            end.reads = reads;
            let detail_not_sent = detail.starts_with(NOT_SENT);
            end.detail = detail;
            self.history.record(end);
            if kind == Type::Info || detail_not_sent {
                // Most likely the coordinator is down: do not spin.
                tokio::time::sleep(Duration::from_millis(200)).await;
            } else if audits {
                // An audit locks every row: back to back, audits would
                // leave transfers almost no time to run.
                tokio::time::sleep(AUDIT_PAUSE).await;
            }
        }
    }

    /// A debit on one participant and a credit on one or two others; or,
    /// one time in five, a debit and a credit between two accounts of one
    /// participant (a Submit's only branch runs as a local transaction).
    fn draw_transfer(&mut self) -> Vec<Write> {
        let parts = &self.bank.participants;
        if self.bank.accounts >= 2 && self.rng.random_bool(0.2) {
            let participant = parts.choose(&mut self.rng).cloned().unwrap_or_default();
            let from = self.rng.random_range(1..=self.bank.accounts);
            let to = (from % self.bank.accounts) + 1;
            let amount = self.rng.random_range(2..=40);
            return vec![
                Write {
                    participant: participant.clone(),
                    account: from,
                    delta: -amount,
                },
                Write {
                    participant,
                    account: to,
                    delta: amount,
                },
            ];
        }
        let branches = if parts.len() >= 3 && self.rng.random_bool(0.25) {
            3
        } else {
            2
        };
        let chosen: Vec<&String> = parts.choose_multiple(&mut self.rng, branches).collect();
        let amount = self.rng.random_range(2..=40);
        let account = |rng: &mut StdRng| rng.random_range(1..=self.bank.accounts);
        let mut writes = vec![Write {
            participant: chosen[0].clone(),
            account: account(&mut self.rng),
            delta: -amount,
        }];
        let credits: Vec<i64> = if branches == 3 {
            vec![amount / 2, amount - amount / 2]
        } else {
            vec![amount]
        };
        for (participant, credit) in chosen[1..].iter().zip(credits) {
            writes.push(Write {
                participant: (*participant).clone(),
                account: account(&mut self.rng),
                delta: credit,
            });
        }
        writes
    }

    async fn submit_transfer(&mut self, op: &str, writes: &[Write]) -> Done {
        let request = pb::SubmitRequest {
            timeout_ms: TRANSFER_TIMEOUT_MS,
            label: op.to_owned(),
            branches: transfer_branches(op, writes),
            key: op.to_owned(),
            ..pb::SubmitRequest::default()
        };
        let mut done = match self.client.submit_with(request.clone()).await {
            Ok(done) => return outcome(done.txn_id.clone(), done.outcome(), done.reason, Vec::new()),
            Err(status) => submit_error(status),
        };
        // No answer: the same Submit again, with the same key.
        for attempt in 1..=SUBMIT_RETRIES {
            let Done::Info { why, .. } = &done else {
                break;
            };
            let first = why.clone();
            tokio::time::sleep(RETRY_PAUSE).await;
            let client = if attempt % 2 == 1 {
                &mut self.other
            } else {
                &mut self.client
            };
            done = match client.submit_with(request.clone()).await {
                Ok(answer) => outcome(
                    answer.txn_id.clone(),
                    answer.outcome(),
                    format!("{RETRIED}{attempt} after {first}: {}", answer.reason),
                    Vec::new(),
                ),
                // Whatever a retry's call says (not sent, refused, lost),
                // the first attempt's outcome stays unknown.
                Err(status) => Done::Info {
                    txn: String::new(),
                    why: format!("{first}; retry {attempt}: Submit: {status}"),
                },
            };
        }
        done
    }

    async fn interactive_transfer(&mut self, op: &str, writes: &[Write]) -> Done {
        let txn = match self.begin(op, TRANSFER_TIMEOUT_MS).await {
            Ok(txn) => txn,
            Err(done) => return done,
        };
        for w in writes {
            if let Err(status) = self
                .client
                .execute(&txn, &w.participant, branch_statements(op, w))
                .await
            {
                return self.abandon(txn, &status).await;
            }
        }
        self.commit(txn, Vec::new()).await
    }

    async fn submit_audit(&mut self, op: &str) -> Done {
        let request = pb::SubmitRequest {
            timeout_ms: AUDIT_TIMEOUT_MS,
            label: op.to_owned(),
            branches: self
                .bank
                .participants
                .iter()
                .map(|p| pb::Branch {
                    participant: p.clone(),
                    statements: vec![audit_statement()],
                })
                .collect(),
            ..pb::SubmitRequest::default()
        };
        match self.client.submit_with(request).await {
            Ok(done) => {
                let reads = done
                    .results
                    .iter()
                    .flat_map(|branch| reads_of(&branch.participant, &branch.results))
                    .collect();
                outcome(done.txn_id.clone(), done.outcome(), done.reason, reads)
            }
            Err(status) => submit_error(status),
        }
    }

    async fn interactive_audit(&mut self, op: &str) -> Done {
        let txn = match self.begin(op, AUDIT_TIMEOUT_MS).await {
            Ok(txn) => txn,
            Err(done) => return done,
        };
        let mut reads = Vec::new();
        for participant in self.bank.participants.clone() {
            match self.client.execute(&txn, &participant, vec![audit_statement()]).await {
                Ok(results) => reads.extend(reads_of(&participant, &results)),
                Err(status) => return self.abandon(txn, &status).await,
            }
        }
        self.commit(txn, reads).await
    }

    async fn begin(&mut self, op: &str, timeout_ms: u32) -> Result<String, Done> {
        let request = pb::BeginRequest {
            timeout_ms,
            label: op.to_owned(),
            ..pb::BeginRequest::default()
        };
        self.client.begin_with(request).await.map_err(|status| Done::Fail {
            txn: String::new(),
            why: if not_sent(&status) {
                format!("{NOT_SENT}Begin: {status}")
            } else {
                format!("Begin: {status}")
            },
        })
    }

    /// An Execute failed: Commit will never be sent, so the transaction
    /// cannot commit. Roll back to free its locks now (best effort; the
    /// deadline does it otherwise).
    async fn abandon(&mut self, txn: String, status: &tonic::Status) -> Done {
        let _ = self.client.rollback(&txn).await;
        Done::Fail {
            txn,
            why: format!("Execute: {status}"),
        }
    }

    async fn commit(&mut self, txn: String, reads: Vec<Read>) -> Done {
        match self.client.commit(&txn).await {
            Ok(done) => outcome(txn, done.outcome(), done.reason, reads),
            Err(status) if refused(&status) => Done::Fail {
                txn,
                why: format!("Commit: {status}"),
            },
            Err(status) => Done::Info {
                txn,
                why: format!("Commit: {status}"),
            },
        }
    }
}

fn outcome(txn: String, outcome: Outcome, reason: String, reads: Vec<Read>) -> Done {
    match outcome {
        Outcome::Committed => Done::Ok {
            txn,
            reads,
            note: reason,
        },
        Outcome::Aborted => Done::Fail { txn, why: reason },
        Outcome::Unspecified => Done::Info {
            txn,
            why: format!("no outcome: {reason}"),
        },
    }
}

/// A Submit that failed as a call: one never sent, or refused as a bad
/// request, changed nothing; anything else (the coordinator died, the call
/// timed out) is unknown.
fn submit_error(status: tonic::Status) -> Done {
    let txn = String::new();
    if not_sent(&status) {
        return Done::Fail {
            txn,
            why: format!("{NOT_SENT}Submit: {status}"),
        };
    }
    let why = format!("Submit: {status}");
    if refused(&status) {
        Done::Fail { txn, why }
    } else {
        Done::Info { txn, why }
    }
}

/// Whether the coordinator answered that the transaction did not commit:
/// it aborted (ABORTED, or DEADLINE_EXCEEDED: its deadline passed), the
/// request was bad, or the coordinator does not know the transaction (a
/// restarted coordinator, for a transaction that never reached Commit).
/// Timeouts on the client's side are CANCELLED, and lost calls UNAVAILABLE
/// or UNKNOWN: those stay unknown. The checker holds these claims to the
/// data like any other.
fn refused(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Aborted | Code::DeadlineExceeded | Code::InvalidArgument | Code::NotFound
    )
}

/// Whether the call failed before any byte of it left the client: tonic
/// reports a refused TCP connect as UNAVAILABLE "tcp connect error". (A
/// request cut off after it was sent is "transport error" or a timeout.)
fn not_sent(status: &tonic::Status) -> bool {
    status.code() == Code::Unavailable && status.message().starts_with("tcp connect error")
}

/// One branch per participant, its writes in order.
fn transfer_branches(op: &str, writes: &[Write]) -> Vec<pb::Branch> {
    let mut branches: Vec<pb::Branch> = Vec::new();
    for w in writes {
        let statements = branch_statements(op, w);
        match branches.iter_mut().find(|b| b.participant == w.participant) {
            Some(branch) => branch.statements.extend(statements),
            None => branches.push(pb::Branch {
                participant: w.participant.clone(),
                statements,
            }),
        }
    }
    branches
}

fn branch_statements(op: &str, w: &Write) -> Vec<Statement> {
    let change = if w.delta < 0 {
        Statement::new("UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance >= ?")
            .bind(-w.delta)
            .bind(w.account)
            .bind(-w.delta)
    } else {
        Statement::new("UPDATE accounts SET balance = balance + ? WHERE id = ?")
            .bind(w.delta)
            .bind(w.account)
    };
    vec![
        change.expect_rows_affected(1),
        Statement::new("INSERT INTO ledger (op, account, delta) VALUES (?, ?, ?)")
            .bind(op)
            .bind(w.account)
            .bind(w.delta),
    ]
}

fn audit_statement() -> Statement {
    Statement::new("SELECT id, balance FROM accounts ORDER BY id")
}

fn reads_of(participant: &str, results: &[pb::StatementResult]) -> Vec<Read> {
    results
        .iter()
        .flat_map(|r| &r.rows)
        .filter_map(|row| match row.values.as_slice() {
            [id, balance] => Some(Read {
                participant: participant.to_owned(),
                account: id.as_i64()?,
                balance: balance.as_i64()?,
            }),
            _ => None,
        })
        .collect()
}
