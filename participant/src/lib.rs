//! tandem's participant: wraps one MySQL/MariaDB instance and takes part in
//! the coordinator's two-phase commit through XA.
//!
//! Data flow of one branch, coordinator → MySQL:
//!
//! - [`auth`]: only the configured coordinators may call, each only on
//!   the gtrids it issued, and only with requests meant for this
//!   participant.
//! - [`server`]: the `Participant` gRPC service. Validates requests (SQL via
//!   [`sql`], parameters via [`values`], ids via [`xa`]) and forwards them.
//!   On the hot path they arrive on one [`stream`] per coordinator
//!   connection, served each as its unary RPC would be.
//! - [`branch`]: one actor per branch ([`branch::actor`]) owning the pinned
//!   connection from `XA START` to phase 2, driven by a pure state machine
//!   ([`branch::engine`]); the [`branch::Registry`] finds it by gtrid.
//! - [`sessions`]: the MySQL sessions branches pin, pooled with what
//!   tandem set on each, so `XA START` sends only the settings that change.
//! - [`xa`]: XIDs and the XA statements themselves.
//! - [`recovery`]: prepared branches no live actor holds (found with
//!   `XA RECOVER`), decided by the coordinator's `Decisions` service and
//!   finished from a fresh session; marker rows tell how a branch that
//!   left `XA RECOVER` ended.
//! - [`schema`]: what the database must not hold (tables that cannot roll
//!   back) and what the account should not have (FILE, SUPER, global
//!   writes).
//! - [`error`]: errors and their mapping to gRPC codes.
//! - [`metrics`]: Prometheus metrics on the admin listener
//!   (`--admin-listen`).

pub mod auth;
pub mod branch;
pub mod error;
pub mod metrics;
pub mod recovery;
pub mod schema;
pub mod server;
pub mod sessions;
pub mod sql;
pub mod stream;
pub mod values;
pub mod xa;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::MySqlPool;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use tandem_common::{Role, Transport, serve};
use tandem_proto::v1::participant_server::ParticipantServer;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tracing::{error, info, warn};

use crate::branch::Registry;
use crate::error::Error;
use crate::sessions::Sessions;

/// State shared by the gRPC service and every branch actor.
pub struct Shared {
    /// This participant's name; it is the `bqual` of every branch here.
    pub name: String,
    /// For recovery and health checks: fresh sessions, never a branch's.
    pub pool: MySqlPool,
    /// The sessions branches pin.
    pub sessions: Sessions,
    pub branches: Registry,
    /// What one branch may use.
    pub limits: Limits,
    /// Why no branch may begin now (tables that cannot roll back), if so.
    pub refusal: std::sync::RwLock<Option<String>>,
    /// `--allow-non-transactional`: serve such tables anyway.
    pub allow_non_transactional: bool,
    pub metrics: metrics::Metrics,
    /// Set once the participant drains (SIGTERM): no branch begins.
    pub draining: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Refuses to begin a branch while the database holds tables that
    /// cannot roll back.
    pub fn check_serving(&self) -> Result<(), Error> {
        if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Unavailable(format!(
                "participant {} is shutting down; no branch begins",
                self.name
            )));
        }
        match &*self.refusal.read().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Some(why) => Err(Error::Unavailable(why.clone())),
            None => Ok(()),
        }
    }
}

/// Bounds on what one branch may use; reaching one aborts the branch
/// (and so the transaction) before anything commits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Statements, over every Execute of the branch.
    pub max_statements: u64,
    /// Result bytes (as sent), over every Execute of the branch.
    pub max_result_bytes: u64,
    /// Result rows, over every Execute of the branch.
    pub max_result_rows: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_statements: 10_000,
            max_result_bytes: 64 << 20,
            max_result_rows: 1_000_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub listen: SocketAddr,
    /// The admin HTTP listener (metrics), if any.
    pub admin_listen: Option<SocketAddr>,
    pub mysql_url: String,
    /// TLS material, or the plaintext development mode.
    pub transport: Transport,
    /// (name, internal API URL) of every coordinator that may run
    /// branches here; each is asked about the in-doubt branches it issued.
    pub coordinators: Vec<(String, String)>,
    /// Longest transaction deadline a coordinator may ask for.
    pub max_timeout: Duration,
    /// Serve a database with tables that cannot roll back.
    pub allow_non_transactional: bool,
    /// What one branch may use.
    pub limits: Limits,
    /// Most MySQL connections, hence most concurrent branches.
    pub max_connections: u32,
    /// How often the recovery loop looks for prepared branches.
    pub recovery_interval: Duration,
    /// How long marker rows are kept.
    pub marker_retention: Duration,
    /// On SIGTERM, how long live branches may run to their end.
    pub drain_timeout: Duration,
}

/// Serves the participant until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    tandem_common::names::validate_name(&config.name)
        .map_err(|e| Error::InvalidArgument(format!("participant name: {e}")))?;
    config
        .transport
        .check_me(Role::Participant, &config.name)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    for (name, url) in &config.coordinators {
        tandem_common::names::validate_name(name)
            .map_err(|e| Error::InvalidArgument(format!("coordinator {name:?}: {e}")))?;
        // A gtrid is `<coordinator>-<epoch>-<seq>`: a name with '-' would
        // never match its own gtrids.
        if name.contains('-') {
            return Err(Error::InvalidArgument(format!(
                "coordinator name {name:?} contains '-', which no coordinator name may"
            )));
        }
        config
            .transport
            .check_url(&format!("coordinator {name}"), url)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    }
    let options = mysql_options(&config.mysql_url)?;
    // Branches pin a session each for the whole transaction; recovery and
    // health checks take short-lived ones from a smaller pool. Both open
    // connections lazily, so the participant starts before MySQL is up.
    let pool = MySqlPoolOptions::new()
        .max_connections((config.max_connections / 4).max(4))
        .min_connections(0)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options.clone());
    let shared = Arc::new(Shared {
        name: config.name.clone(),
        pool,
        sessions: Sessions::new(options, config.max_connections),
        branches: Registry::default(),
        limits: config.limits,
        // Closed until the first check found the tables safe.
        refusal: std::sync::RwLock::new(Some(format!(
            "participant {} has not yet checked that its tables can roll back",
            config.name
        ))),
        allow_non_transactional: config.allow_non_transactional,
        metrics: metrics::Metrics::default(),
        draining: std::sync::atomic::AtomicBool::new(false),
    });

    // Its callers are a few coordinators, each with one channel.
    let (incoming, local) = serve::bind(&config.transport, "participant API", config.listen, 256)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;

    // Set when the drain is over: the listeners stop then (the admin one
    // too, so probes and metrics see the drain), and so do the health
    // check and recovery, which a draining participant still needs.
    let stopped = CancellationToken::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::NotServing).await;
    let mysql_back = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(watch_mysql(
        Arc::clone(&shared),
        health.clone(),
        Arc::clone(&mysql_back),
        stopped.clone(),
    ));
    tokio::spawn(recovery::run(
        Arc::clone(&shared),
        recovery::Options {
            coordinators: config.coordinators.clone(),
            transport: config.transport.clone(),
            interval: config.recovery_interval,
            marker_retention: config.marker_retention,
        },
        mysql_back,
        stopped.clone(),
    ));

    if let Some(addr) = config.admin_listen {
        let scraper = Arc::new(metrics::Scraper(Arc::clone(&shared)));
        let local = tandem_common::admin::serve(addr, scraper, axum::Router::new(), stopped.clone().cancelled_owned())
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        info!(%local, "admin listener (metrics) on {local}");
    }
    let (reflection, reflection_alpha) = tandem_proto::reflection::services(&["tandem.v1.Participant"])
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;

    let plaintext = matches!(config.transport, Transport::Plaintext);
    info!(name = %config.name, %local, coordinators = ?config.coordinators, tls = !plaintext, "tandem-participant listening on {local}");
    if plaintext {
        warn!("--insecure-plaintext: no TLS and no authentication of coordinators; for development only");
    }
    let auth = auth::CoordinatorAuth::new(
        &config.name,
        config.coordinators.iter().map(|(name, _)| name.clone()),
        plaintext,
    );
    // SIGTERM cancels `shutdown`: the drain runs, and the listener stops
    // once it is over.
    tokio::spawn(drain(
        Arc::clone(&shared),
        health.clone(),
        shutdown.clone(),
        config.drain_timeout,
        stopped.clone(),
    ));
    let service =
        server::ParticipantService::new(Arc::clone(&shared), auth.clone(), config.max_timeout, stopped.clone());
    let router = serve::server(&config.transport, true)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(ParticipantServer::with_interceptor(service, auth));
    #[cfg(feature = "failpoints")]
    let router = router.add_service(tandem_proto::failpoints::service());
    router
        .serve_with_incoming_shutdown(incoming, stopped.cancelled_owned())
        .await
        .map_err(|e| Error::Internal(format!("gRPC server: {e}")))?;
    let live = shared.branches.live();
    if live > 0 {
        // Unprepared branches roll back when their sessions close; prepared
        // ones stay in MySQL for recovery.
        warn!(live, "stopping with live branches");
    }
    shared.sessions.close();
    shared.pool.close().await;
    Ok(())
}

/// A drain, once `shutdown` is cancelled (SIGTERM): health turns
/// NOT_SERVING, no branch begins, and live branches may finish (their
/// coordinators commit or roll them back) for up to `timeout`; then
/// `stopped` ends the listener.
async fn drain(
    shared: Arc<Shared>,
    health: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
    timeout: Duration,
    stopped: CancellationToken,
) {
    shutdown.cancelled().await;
    shared.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    health.set_service_status("", ServingStatus::NotServing).await;
    info!(
        live = shared.branches.live(),
        ?timeout,
        "draining: no new branches; live ones may finish"
    );
    tandem_common::serve::wait_idle(timeout, || shared.branches.live()).await;
    info!(live = shared.branches.live(), "drained");
    stopped.cancel();
}

/// Reports SERVING while MySQL answers (and the marker table exists),
/// NOT_SERVING while it does not; wakes recovery when MySQL comes back.
async fn watch_mysql(
    shared: Arc<Shared>,
    health: tonic_health::server::HealthReporter,
    mysql_back: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut last = None;
    let mut last_cause = String::new();
    loop {
        let probe = sqlx::query("SELECT 1").execute(&shared.pool).await;
        let mut up = probe.is_ok();
        if up && last != Some(true) {
            up = ensure_markers(&shared.pool).await;
        }
        if up {
            up = check_tables(&shared).await;
        }
        if let Err(err) = &probe {
            // The cause, each time it changes: a refused login, a missing
            // database and a closed port need different fixes. A pool that
            // timed out hides it: a connection of its own shows it.
            let cause = match err {
                sqlx::Error::PoolTimedOut => match shared.sessions.probe().await {
                    Err(direct) => error::describe_sql(&direct),
                    Ok(()) => error::describe_sql(err),
                },
                other => error::describe_sql(other),
            };
            if cause != last_cause {
                warn!(cause = %cause, "MySQL unreachable: {cause}");
                last_cause = cause;
            }
        }
        shared.metrics.mysql_up(up);
        if last != Some(up) {
            if up {
                info!("MySQL reachable");
                last_cause.clear();
                warn_if_unsafe_binlog(&shared.pool).await;
                schema::warn_about_privileges(&shared.pool).await;
                schema::warn_about_stored_code(&shared.pool).await;
                if !shared.draining.load(std::sync::atomic::Ordering::Relaxed) {
                    health.set_service_status("", ServingStatus::Serving).await;
                }
                mysql_back.notify_one();
            } else {
                health.set_service_status("", ServingStatus::NotServing).await;
            }
            last = Some(up);
        }
        let pause = if up {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(200)
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Looks for tables that cannot roll back; while there are any (and they
/// are not allowed), no branch may begin and health is NOT_SERVING.
async fn check_tables(shared: &Shared) -> bool {
    let (tables, refusal) = match schema::non_transactional_tables(&shared.pool).await {
        Ok(tables) if shared.allow_non_transactional => (tables, None),
        Ok(tables) => {
            let refusal = schema::refusal(&shared.name, &tables);
            (tables, refusal)
        }
        // Fails closed: a table that cannot roll back may be there.
        Err(err) => (
            Vec::new(),
            Some(format!(
                "participant {} cannot check that its tables can roll back: {}",
                shared.name,
                error::describe_sql(&err)
            )),
        ),
    };
    let mut current = shared
        .refusal
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if *current != refusal {
        match &refusal {
            Some(why) => error!("{why}"),
            None if !tables.is_empty() => warn!(
                tables = %tables.join(", "),
                "serving tables that cannot roll back (--allow-non-transactional): writes to them survive aborts"
            ),
            None => info!("every table is transactional"),
        }
        *current = refusal;
    }
    current.is_none()
}

/// Parses `--mysql-url`: only `mysql://` and `mariadb://` URLs (sqlx would
/// read a `postgres://` URL as MySQL), and never tandem's own schema as
/// the database client SQL runs in.
fn mysql_options(url: &str) -> Result<MySqlConnectOptions, Error> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    if !matches!(scheme, "mysql" | "mariadb") {
        return Err(Error::InvalidArgument(format!(
            "--mysql-url must start with mysql:// or mariadb://, not {:?}",
            if scheme.is_empty() {
                url.split(':').next().unwrap_or("")
            } else {
                scheme
            }
        )));
    }
    let normalized = format!("mysql://{}", &url[scheme.len() + 3..]);
    let options: MySqlConnectOptions = normalized
        .parse()
        .map_err(|e| Error::InvalidArgument(format!("--mysql-url: {e}")))?;
    if options
        .get_database()
        .is_some_and(|db| db.eq_ignore_ascii_case("tandem"))
    {
        return Err(Error::InvalidArgument(
            "--mysql-url names database `tandem`, tandem's own schema; name the application's database".to_owned(),
        ));
    }
    Ok(options)
}

/// Creates the marker table if needed; without it no branch can prepare.
async fn ensure_markers(pool: &MySqlPool) -> bool {
    let created = async {
        let mut conn = pool.acquire().await?;
        xa::create_markers(&mut conn).await
    }
    .await;
    match created {
        Ok(()) => true,
        Err(err) => {
            warn!(table = xa::MARKER_TABLE, error = %error::describe_sql(&err), "cannot create the marker table; not serving");
            false
        }
    }
}

/// Statement-based binlog makes XA unsafe for replicas (DESIGN §4): say so
/// loudly at start rather than let replicas diverge silently.
async fn warn_if_unsafe_binlog(pool: &MySqlPool) {
    let row: Result<(i64, String), _> = sqlx::query_as("SELECT @@log_bin + 0, CAST(@@binlog_format AS CHAR)")
        .fetch_one(pool)
        .await;
    match row {
        Ok((1, format)) if format.eq_ignore_ascii_case("STATEMENT") => {
            warn!("binlog_format=STATEMENT with log_bin on: XA transactions are unsafe for replicas; use ROW");
        }
        Ok((log_bin, format)) => info!(log_bin, %format, "binlog settings"),
        Err(err) => warn!(error = %err, "cannot read binlog settings"),
    }
}
