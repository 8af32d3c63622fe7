//! `tandemctl`: tandem's operator CLI. Human tables by default, `--json`
//! for scripts.
//!
//! It talks to coordinator replicas over the same mutual TLS as everything
//! else, as an operator identity (a certificate naming
//! `<name>.operator.tandem`, or an operator's bearer token): clients are
//! refused the calls it makes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};
use tandem_client::{Client, Tls, pb};

/// Operates a tandem cluster: its replicas, participants and transactions.
#[derive(Debug, Parser)]
#[command(name = "tandemctl", version)]
struct Args {
    /// A coordinator replica as NAME=URL, e.g. tc=https://10.0.0.10:7500;
    /// its certificate must name NAME.coordinator.tandem. Repeatable; the
    /// environment takes a comma-separated list.
    #[arg(long = "coordinator", env = "TANDEMCTL_COORDINATORS", value_delimiter = ',', required = true, value_parser = parse_replica)]
    coordinators: Vec<(String, String)>,
    /// The cluster's CA certificate (PEM).
    #[arg(long, env = "TANDEM_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// This operator's certificate (PEM), naming <name>.operator.tandem.
    #[arg(long, env = "TANDEM_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// This operator's private key (PEM).
    #[arg(long, env = "TANDEM_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// An operator's bearer token, instead of a certificate (with
    /// --tls-ca).
    #[arg(long, env = "TANDEMCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Development only: replicas started with --insecure-plaintext. A
    /// plaintext caller without --token is an anonymous client, which the
    /// operator calls refuse: pass an operator's token.
    #[arg(long)]
    insecure_plaintext: bool,
    /// JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Each replica (version, draining, live transactions) and each
    /// participant as the replicas see it (reachable, in-doubt branches).
    Status,
    /// Transactions the replicas remember.
    #[command(subcommand)]
    Transactions(Transactions),
    /// Drains a replica as SIGTERM does: it begins no transaction, lets
    /// live ones finish (up to its --drain-timeout-ms), then exits.
    Drain {
        /// The replica's NAME (one of --coordinator).
        replica: String,
    },
    /// Branches prepared on the participants, oldest first, with their
    /// age: in doubt until a coordinator finishes them.
    InDoubt {
        /// Only branches prepared at least this long ago.
        #[arg(long, default_value_t = 0)]
        older_than_secs: u64,
    },
    /// Heuristic hazards: transactions that committed while a branch was
    /// found rolled back (or the other way). Unresolved ones by default.
    #[command(subcommand)]
    Hazards(Hazards),
}

#[derive(Debug, Subcommand)]
enum Hazards {
    /// Hazards no operator has resolved yet, from every replica.
    List,
    /// Records that the data of a hazard's transaction was reconciled by
    /// hand: who (this operator's identity), when and why go in the
    /// audit table of its participants.
    Resolve {
        txn_id: String,
        /// What was done to reconcile the data.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum Transactions {
    /// Newest first, from every replica.
    List {
        #[arg(long, value_enum, default_value_t = Filter::All)]
        filter: Filter,
        /// Only transactions with exactly this label.
        #[arg(long)]
        label: Option<String>,
        /// Most transactions from each replica.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One transaction: its state, outcome, branches and hazard.
    Show { txn_id: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Filter {
    All,
    InFlight,
    InDoubt,
    Hazard,
}

fn parse_replica(spec: &str) -> Result<(String, String), String> {
    match spec.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => Ok((name.to_owned(), url.to_owned())),
        _ => Err(format!("{spec:?} is not NAME=URL")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tandemctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<()> {
    match &args.command {
        Command::Status => status(args).await,
        Command::Transactions(Transactions::List { filter, label, limit }) => {
            list(args, *filter, label.as_deref(), *limit).await
        }
        Command::Transactions(Transactions::Show { txn_id }) => show(args, txn_id).await,
        Command::Drain { replica } => drain(args, replica).await,
        Command::InDoubt { older_than_secs } => in_doubt(args, *older_than_secs).await,
        Command::Hazards(Hazards::List) => list(args, Filter::Hazard, None, 1000).await,
        Command::Hazards(Hazards::Resolve { txn_id, reason }) => resolve_hazard(args, txn_id, reason).await,
    }
}

/// A connection to replica `name` at `url` as the operator.
async fn connect(args: &Args, name: &str, url: &str) -> Result<Client> {
    let token = args.token.as_deref();
    let client = if args.insecure_plaintext {
        Client::connect_with(url, None, token).await
    } else {
        let ca = args
            .tls_ca
            .as_ref()
            .context("--tls-ca is required (or --insecure-plaintext for a development cluster)")?;
        let identity = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) if token.is_some() => None,
            (None, None) => bail!("--tls-cert and --tls-key (an operator certificate), or --token, are required"),
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        let tls = Tls::from_files(ca, identity, &format!("{name}.coordinator.tandem"))?;
        Client::connect_with(url, Some(tls), token).await
    };
    client.with_context(|| format!("replica {name} ({url})"))
}

async fn status(args: &Args) -> Result<()> {
    let mut replicas = Vec::new();
    let mut participants: Option<Vec<pb::ParticipantInfo>> = None;
    for (name, url) in &args.coordinators {
        let answer = match connect(args, name, url).await {
            Ok(mut client) => client.status().await.map_err(anyhow::Error::from),
            Err(err) => Err(err),
        };
        match answer {
            Ok(status) => {
                if participants.is_none() {
                    participants = Some(status.participants.clone());
                }
                replicas.push((name.clone(), url.clone(), Ok(status)));
            }
            Err(err) => {
                replicas.push((name.clone(), url.clone(), Err(format!("{err:#}"))));
            }
        }
    }
    let failed = replicas.iter().any(|(_, _, status)| status.is_err());
    let participants = participants.unwrap_or_default();
    if args.json {
        let replicas: Vec<Value> = replicas
            .iter()
            .map(|(name, url, status)| match status {
                Ok(s) => json!({
                    "name": name, "url": url, "reachable": true, "version": s.version,
                    "draining": s.draining, "live_transactions": s.live_transactions,
                    "started_unix_ms": s.started_unix_ms,
                }),
                Err(err) => json!({"name": name, "url": url, "reachable": false, "error": err}),
            })
            .collect();
        let participants: Vec<Value> = participants.iter().map(participant_json).collect();
        println!("{}", json!({"replicas": replicas, "participants": participants}));
    } else {
        let rows = replicas
            .iter()
            .map(|(name, url, status)| match status {
                Ok(s) => vec![
                    name.clone(),
                    url.clone(),
                    if s.draining { "draining" } else { "serving" }.to_owned(),
                    s.version.clone(),
                    s.live_transactions.to_string(),
                    age(s.started_unix_ms),
                ],
                Err(err) => vec![
                    name.clone(),
                    url.clone(),
                    "unreachable".to_owned(),
                    String::new(),
                    String::new(),
                    err.clone(),
                ],
            })
            .collect();
        print_table(&["REPLICA", "URL", "STATE", "VERSION", "LIVE", "UP"], rows);
        println!();
        let rows = participants
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.url.clone(),
                    if p.reachable { "reachable" } else { "unreachable" }.to_owned(),
                    p.in_doubt.to_string(),
                    p.last_error.clone(),
                ]
            })
            .collect();
        print_table(&["PARTICIPANT", "URL", "HEALTH", "IN-DOUBT", "LAST ERROR"], rows);
    }
    if failed {
        let errors: Vec<String> = replicas
            .iter()
            .filter_map(|(name, _, status)| status.as_ref().err().map(|err| format!("replica {name}: {err}")))
            .collect();
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

fn participant_json(p: &pb::ParticipantInfo) -> Value {
    json!({
        "name": p.name, "url": p.url, "reachable": p.reachable,
        "in_doubt": p.in_doubt, "last_error": p.last_error,
    })
}

async fn list(args: &Args, filter: Filter, label: Option<&str>, limit: u32) -> Result<()> {
    let filter = match filter {
        Filter::All => pb::TxnFilter::All,
        Filter::InFlight => pb::TxnFilter::InFlight,
        Filter::InDoubt => pb::TxnFilter::InDoubt,
        Filter::Hazard => pb::TxnFilter::Hazard,
    };
    let mut all = Vec::new();
    for (name, url) in &args.coordinators {
        let mut client = connect(args, name, url).await?;
        let request = pb::ListTransactionsRequest {
            filter: filter as i32,
            limit: limit.clamp(1, 1000),
            label: label.unwrap_or_default().to_owned(),
            ..pb::ListTransactionsRequest::default()
        };
        let page = client
            .raw()
            .list_transactions(request)
            .await
            .with_context(|| format!("replica {name}"))?
            .into_inner();
        all.extend(page.transactions.into_iter().map(|t| (name.clone(), t)));
    }
    all.sort_by_key(|(_, t)| std::cmp::Reverse(t.started_unix_ms));
    if args.json {
        let txns: Vec<Value> = all.iter().map(|(replica, t)| txn_json(replica, t)).collect();
        println!("{}", Value::Array(txns));
    } else {
        let rows = all
            .iter()
            .map(|(replica, t)| {
                vec![
                    t.txn_id.clone(),
                    replica.clone(),
                    state_name(t.state),
                    outcome_name(t.outcome),
                    age(t.started_unix_ms),
                    t.label.clone(),
                    if t.hazard.is_empty() {
                        String::new()
                    } else {
                        "HAZARD".to_owned()
                    },
                ]
            })
            .collect();
        print_table(&["TXN", "REPLICA", "STATE", "OUTCOME", "AGE", "LABEL", ""], rows);
    }
    Ok(())
}

async fn show(args: &Args, txn_id: &str) -> Result<()> {
    // The replica that issued it knows it from memory; any other asks the
    // participants.
    let issuer = txn_id.split('-').next().unwrap_or_default();
    let (name, url) = args
        .coordinators
        .iter()
        .find(|(name, _)| name == issuer)
        .unwrap_or(&args.coordinators[0]);
    let mut client = connect(args, name, url).await?;
    let t = client
        .get_transaction(txn_id)
        .await
        .with_context(|| format!("replica {name}"))?;
    if args.json {
        println!("{}", txn_json(name, &t));
        return Ok(());
    }
    let mut lines = vec![
        ("transaction", t.txn_id.clone()),
        ("asked", name.clone()),
        ("state", state_name(t.state)),
        ("outcome", outcome_name(t.outcome)),
        ("started", age(t.started_unix_ms)),
    ];
    for (what, value) in [
        ("label", &t.label),
        ("key", &t.key),
        ("reason", &t.reason),
        ("hazard", &t.hazard),
    ] {
        if !value.is_empty() {
            lines.push((what, value.clone()));
        }
    }
    if let Some(r) = &t.hazard_resolution {
        lines.push((
            "resolved",
            format!("by {} ({}): {}", r.operator, age(r.resolved_unix_ms), r.reason),
        ));
    }
    for (what, value) in lines {
        println!("{what:<12} {value}");
    }
    println!();
    let rows = t
        .branches
        .iter()
        .map(|b| vec![b.participant.clone(), branch_state_name(b.state)])
        .collect();
    print_table(&["PARTICIPANT", "BRANCH"], rows);
    Ok(())
}

async fn drain(args: &Args, replica: &str) -> Result<()> {
    let Some((name, url)) = args.coordinators.iter().find(|(name, _)| name == replica) else {
        bail!("no --coordinator named {replica:?}");
    };
    let mut client = connect(args, name, url).await?;
    let live = client.drain().await.with_context(|| format!("replica {name}"))?;
    if args.json {
        println!(
            "{}",
            json!({"replica": name, "draining": true, "live_transactions": live})
        );
    } else {
        println!("replica {name} is draining: it begins no transaction, lets its {live} live ones finish, then exits");
    }
    Ok(())
}

/// Asks the replicas in turn until one answers (any replica sees every
/// participant).
async fn first_replica<T>(
    args: &Args,
    call: impl AsyncFn(&mut Client) -> Result<T, tonic::Status>,
) -> Result<(String, T)> {
    let mut errors = Vec::new();
    for (name, url) in &args.coordinators {
        let answer = match connect(args, name, url).await {
            Ok(mut client) => call(&mut client).await.map_err(anyhow::Error::from),
            Err(err) => Err(err),
        };
        match answer {
            Ok(answer) => return Ok((name.clone(), answer)),
            Err(err) => errors.push(format!("replica {name}: {err:#}")),
        }
    }
    bail!("{}", errors.join("; "))
}

async fn in_doubt(args: &Args, older_than_secs: u64) -> Result<()> {
    let (replica, report) = first_replica(args, async |client| {
        Ok(client
            .raw()
            .list_in_doubt(pb::ListInDoubtRequest {})
            .await?
            .into_inner())
    })
    .await?;
    let branches: Vec<&pb::InDoubtBranch> = report
        .branches
        .iter()
        .filter(|b| b.age_ms >= older_than_secs.saturating_mul(1000))
        .collect();
    if args.json {
        let branches: Vec<Value> = branches
            .iter()
            .map(|b| {
                json!({
                    "participant": b.participant, "gtrid": b.gtrid, "age_ms": b.age_ms,
                    "participants": b.participants, "issued_by": issuer(&b.gtrid),
                })
            })
            .collect();
        let unreachable: Vec<Value> = report
            .unreachable
            .iter()
            .map(|u| json!({"participant": u.participant, "error": u.error}))
            .collect();
        println!(
            "{}",
            json!({"asked": replica, "branches": branches, "unreachable": unreachable, "truncated": report.truncated})
        );
    } else {
        let rows = branches
            .iter()
            .map(|b| {
                vec![
                    b.participant.clone(),
                    b.gtrid.clone(),
                    duration(Duration::from_millis(b.age_ms)),
                    issuer(&b.gtrid),
                    b.participants.join(","),
                ]
            })
            .collect();
        print_table(
            &["PARTICIPANT", "GTRID", "PREPARED FOR", "ISSUED BY", "PARTICIPANT SET"],
            rows,
        );
        for u in &report.unreachable {
            eprintln!("participant {} could not be asked: {}", u.participant, u.error);
        }
        if report.truncated {
            eprintln!("a participant holds more prepared branches than it lists (1000)");
        }
    }
    if !report.unreachable.is_empty() {
        bail!("{} participant(s) could not be asked", report.unreachable.len());
    }
    Ok(())
}

/// The replica that issued a gtrid (`tc-…`), or `client key` for a keyed
/// one (any replica may have run it).
fn issuer(gtrid: &str) -> String {
    match gtrid.split_once('-') {
        Some(("key", _)) => "client key".to_owned(),
        Some((replica, _)) => replica.to_owned(),
        None => String::new(),
    }
}

async fn resolve_hazard(args: &Args, txn_id: &str, reason: &str) -> Result<()> {
    // Every replica that holds the transaction notes it; the participants'
    // audit tables keep the first resolution.
    let mut resolution = None;
    let mut errors = Vec::new();
    for (name, url) in &args.coordinators {
        let request = pb::ResolveHazardRequest {
            txn_id: txn_id.to_owned(),
            reason: reason.to_owned(),
        };
        let answer = match connect(args, name, url).await {
            Ok(mut client) => client
                .raw()
                .resolve_hazard(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(anyhow::Error::from),
            Err(err) => Err(err),
        };
        match answer {
            Ok(answer) => {
                resolution.get_or_insert(answer);
            }
            Err(err) => errors.push(format!("replica {name}: {err:#}")),
        }
    }
    let Some(r) = resolution else {
        bail!("{}", errors.join("; "));
    };
    if args.json {
        let failed: Vec<Value> = r
            .failed
            .iter()
            .map(|f| json!({"participant": f.participant, "error": f.error}))
            .collect();
        println!(
            "{}",
            json!({
                "txn_id": r.txn_id, "operator": r.operator, "reason": r.reason,
                "resolved_unix_ms": r.resolved_unix_ms, "recorded_on": r.recorded_on,
                "failed": failed, "already": r.already,
            })
        );
    } else {
        let verb = if r.already { "was already resolved" } else { "resolved" };
        println!(
            "hazard of {} {verb} by {} ({}): {}",
            r.txn_id,
            r.operator,
            age(r.resolved_unix_ms),
            r.reason
        );
        println!("recorded in the audit table of: {}", r.recorded_on.join(", "));
        for f in &r.failed {
            eprintln!("participant {} did not record it: {}", f.participant, f.error);
        }
    }
    Ok(())
}

fn txn_json(replica: &str, t: &pb::TransactionInfo) -> Value {
    let branches: Vec<Value> = t
        .branches
        .iter()
        .map(|b| json!({"participant": b.participant, "state": branch_state_name(b.state)}))
        .collect();
    json!({
        "txn_id": t.txn_id, "replica": replica, "state": state_name(t.state),
        "outcome": outcome_name(t.outcome), "label": t.label, "key": t.key,
        "reason": t.reason, "hazard": t.hazard, "started_unix_ms": t.started_unix_ms,
        "hazard_resolution": t.hazard_resolution.as_ref().map(|r| json!({
            "operator": r.operator, "reason": r.reason, "resolved_unix_ms": r.resolved_unix_ms,
        })),
        "decided_unix_ms": t.decided_unix_ms, "finished_unix_ms": t.finished_unix_ms,
        "branches": branches,
    })
}

/// An enum value's proto name without its prefix, lower case
/// (`TXN_STATE_COMMITTED` → `committed`).
fn enum_name(name: Option<&str>, prefix: &str) -> String {
    name.map_or_else(
        || "unknown".to_owned(),
        |n| n.trim_start_matches(prefix).to_ascii_lowercase(),
    )
}

fn state_name(state: i32) -> String {
    enum_name(
        pb::TxnState::try_from(state).ok().map(|s| s.as_str_name()),
        "TXN_STATE_",
    )
}

fn outcome_name(outcome: i32) -> String {
    match pb::Outcome::try_from(outcome) {
        Ok(pb::Outcome::Unspecified) => "-".to_owned(),
        other => enum_name(other.ok().map(|o| o.as_str_name()), "OUTCOME_"),
    }
}

fn branch_state_name(state: i32) -> String {
    enum_name(
        pb::BranchState::try_from(state).ok().map(|s| s.as_str_name()),
        "BRANCH_STATE_",
    )
}

/// How long ago a Unix time in ms was, e.g. `42s ago`, `3m07s ago`.
fn age(unix_ms: u64) -> String {
    if unix_ms == 0 {
        return "-".to_owned();
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    format!("{} ago", duration(now.saturating_sub(Duration::from_millis(unix_ms))))
}

/// A duration for people: `42s`, `3m07s`, `2h05m`, `1d03h`.
fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Columns padded to their widest cell; the last one is not padded.
fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}
