//! tandem's coordinator: runs two-phase commit across tandem participants.
//!
//! The path of a commit, by module:
//!
//! - [`server`]: the `Coordinator` gRPC service (client API) and the
//!   participants' `Decisions` service (internal API, its own listener).
//!   Validates and forwards to a transaction actor.
//! - [`auth`]: who may call what: client principals (certificate or
//!   bearer token), who own the transactions they begin; participants on
//!   the internal API.
//! - [`txn`]: one actor per global transaction ([`txn::actor`]) running the
//!   pure 2PC state machine ([`txn::engine`]); [`txn::Txns`] finds them.
//! - [`participants`]: one long-lived gRPC channel per participant and the
//!   calls the actor sends over it: Execute, Prepare, Commit and Rollback
//!   as messages on one branch stream per participant, Inquire as a unary
//!   RPC.
//! - [`resolve`]: how a transaction this replica does not hold ended, from
//!   the participants alone (for `Decisions` and `GetTransaction`).
//! - [`ids`]: gtrids that never repeat across restarts or replicas (a
//!   random epoch per run).
//! - [`config`]: settings from flags and an optional TOML file.
//! - [`metrics`]: Prometheus metrics on the admin listener
//!   (`--admin-listen`).
//! - [`status_page`]: the live status page beside them.
//!
//! A coordinator keeps no state on disk: a transaction is committed iff
//! every branch of its participant set is durably prepared (or, for a
//! read-only one, its marker row committed), so any replica, or a
//! restarted one, resolves any transaction from the participants.

pub mod auth;
pub mod config;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod participants;
pub mod resolve;
pub mod server;
pub mod status_page;
pub mod txn;

use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
use tandem_common::{Transport, admin, serve};
use tandem_proto::v1::coordinator_server::CoordinatorServer;
use tandem_proto::v1::decisions_server::DecisionsServer;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tracing::info;

use crate::auth::{ClientAuth, ParticipantAuth};
use crate::error::Error;
use crate::ids::IdGen;
use crate::participants::Participants;
use crate::txn::Txns;

/// Open connections to the internal API (participants' recovery and
/// health traffic) at least this many.
const INTERNAL_CONNECTIONS: usize = 64;
/// A client connection is closed (gracefully) after this long.
const CLIENT_CONNECTION_AGE: Duration = Duration::from_secs(3600);

/// State shared by the gRPC services and every transaction actor.
pub struct Shared {
    pub config: Config,
    pub participants: Arc<Participants>,
    pub txns: Txns,
    pub metrics: metrics::Metrics,
    /// The status page's last minutes.
    pub series: status_page::Series,
    /// When this process started (GetStatus).
    pub started: std::time::SystemTime,
    /// Cancelled when the coordinator stops taking new transactions.
    pub shutdown: CancellationToken,
}

/// Serves the coordinator until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    config.validate()?;
    let ids = IdGen::new(&config.name)?;
    let participants = Arc::new(Participants::new(
        &config.participants,
        &config.transport,
        config.max_result_bytes,
    )?);
    let (listen, internal_listen) = (config.listen, config.internal_listen);
    let plaintext = matches!(config.transport, Transport::Plaintext);
    let client_auth = ClientAuth::new(config.tokens.clone(), plaintext);
    let participant_auth = ParticipantAuth::new(config.participants.iter().map(|(n, _)| n.clone()), plaintext);
    let limits = txn::Limits {
        max_live: config.max_live,
        max_live_per_principal: config.max_live_per_principal,
        max_branches_per_principal: config.max_branches_per_principal,
    };
    let shared = Arc::new(Shared {
        config,
        participants: Arc::clone(&participants),
        txns: Txns::new(ids, limits),
        metrics: metrics::Metrics::default(),
        series: status_page::Series::default(),
        started: std::time::SystemTime::now(),
        shutdown: shutdown.clone(),
    });

    let transport = &shared.config.transport;
    let tls_error = |e: tandem_common::TlsError| Error::Unavailable(e.to_string());
    let max_connections = shared.config.max_client_connections;
    let (incoming, local) = serve::bind(transport, "client API", listen, max_connections)
        .await
        .map_err(tls_error)?;
    let (internal_incoming, internal_local) = serve::bind(
        transport,
        "internal API",
        internal_listen,
        INTERNAL_CONNECTIONS.max(shared.config.participants.len() * 4),
    )
    .await
    .map_err(tls_error)?;
    // Set when the drain is over: every listener stops then (the admin
    // one too, so probes and metrics see the drain), and so does the
    // participants' health probe, which a draining replica still uses.
    let stopped = CancellationToken::new();
    tokio::spawn(participants.watch(stopped.clone()));
    if let Some(addr) = shared.config.admin_listen {
        let scraper = Arc::new(metrics::Scraper(Arc::clone(&shared)));
        let page = status_page::routes(Arc::clone(&shared));
        let local = admin::serve(addr, scraper, page, stopped.clone().cancelled_owned())
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        tokio::spawn(status_page::Series::run(Arc::clone(&shared), stopped.clone()));
        info!(%local, "admin listener (metrics, status page) on {local}");
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    let (reflection, reflection_alpha) = tandem_proto::reflection::services(&["tandem.v1.Coordinator"])
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;

    info!(
        %local,
        %internal_local,
        participants = shared.config.participants.len(),
        tls = !plaintext,
        "tandem-coordinator listening on {local} (clients) and {internal_local} (participants)"
    );
    if plaintext {
        tracing::warn!("--insecure-plaintext: no TLS and no authentication; for development only");
    }
    // Client connections are recycled (gracefully: in-flight calls get
    // longer than any deadline) so none is held forever.
    let grace = shared.config.max_timeout + Duration::from_secs(10);
    let router = serve::server(transport, false)
        .map_err(tls_error)?
        .max_connection_age(CLIENT_CONNECTION_AGE)
        .max_connection_age_grace(grace)
        .add_service(health_service.clone())
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(CoordinatorServer::with_interceptor(
            server::CoordinatorService::new(Arc::clone(&shared)),
            client_auth,
        ));
    #[cfg(feature = "failpoints")]
    let router = router.add_service(tandem_proto::failpoints::service());
    // Participants present their certificates here; nothing else is served.
    let internal = serve::server(transport, true)
        .map_err(tls_error)?
        .add_service(health_service)
        .add_service(DecisionsServer::with_interceptor(
            server::DecisionService::new(Arc::clone(&shared)),
            participant_auth,
        ));
    // SIGTERM cancels `shutdown`: the drain runs, and the listeners stop
    // once it is over (in-flight calls, Commits of live transactions and
    // participants' questions are served until then).
    tokio::spawn(drain(Arc::clone(&shared), health, stopped.clone()));
    let client_api = router.serve_with_incoming_shutdown(incoming, stopped.clone().cancelled_owned());
    let internal_api = internal.serve_with_incoming_shutdown(internal_incoming, stopped.cancelled_owned());
    tokio::try_join!(client_api, internal_api).map_err(|e| Error::Internal(format!("gRPC server: {e}")))?;
    info!(live = shared.txns.live(), "tandem-coordinator stopped");
    Ok(())
}

/// How long transactions that were deciding when the drain time ran out
/// (and those rolled back then) get to finish before the coordinator
/// exits anyway; participants' recovery finishes what is left.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// A drain, once `shared.shutdown` is cancelled (SIGTERM): health turns
/// NOT_SERVING (load balancers and probes stop sending), no transaction
/// begins (UNAVAILABLE: use another replica), and live transactions run to
/// their end for up to `--drain-timeout-ms`. Then those still running
/// statements roll back (nothing of theirs prepared), those deciding get
/// [`DRAIN_GRACE`] more, and `stopped` ends the listeners.
async fn drain(shared: Arc<Shared>, health: tonic_health::server::HealthReporter, stopped: CancellationToken) {
    shared.shutdown.cancelled().await;
    health.set_service_status("", ServingStatus::NotServing).await;
    let timeout = shared.config.drain_timeout;
    info!(
        live = shared.txns.live(),
        ?timeout,
        "draining: no new transactions; live ones may finish"
    );
    if !serve::wait_idle(timeout, || shared.txns.live()).await {
        let handles = shared.txns.live_handles();
        tracing::warn!(
            live = handles.len(),
            "drain time is up: rolling back transactions still running statements"
        );
        futures::future::join_all(handles.iter().map(txn::TxnHandle::drain)).await;
        if !serve::wait_idle(DRAIN_GRACE, || shared.txns.live()).await {
            tracing::warn!(
                live = shared.txns.live(),
                "stopping with transactions still deciding; participants' recovery will finish them"
            );
        }
    }
    info!("drained");
    stopped.cancel();
}
