//! A local tandem cluster: N private MariaDB instances, one participant per
//! instance, and one or more coordinator replicas, all real processes,
//! owned by one value.
//!
//! Every process gets a certificate from a throwaway CA ([`crate::certs`])
//! and the cluster runs with TLS and identities, as deployed; tests reach
//! the coordinator as a client principal ([`Cluster::access`]).
//!
//! [`Cluster::start`] returns once every node answers gRPC health.
//! Dropping the cluster kills every process (coordinator first, MariaDB
//! last) and removes its directory; when dropped during a panic it prints
//! the tail of every node's log first. The README's `tandem-local` and the
//! tests use this same code.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::MySqlPool;
use tandem_client::{Client, Tls};
use tandem_common::{Identity, Role};
use tandem_proto::v1::ConfigureFailpointRequest;
use tandem_proto::v1::failpoints_client::FailpointsClient;
use tempfile::TempDir;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::certs::Ca;
use crate::mariadb::{self, MariaDb};
use crate::process::{self, Process};
use crate::proxy::{Link, Proxy};

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Participant names; one MariaDB instance each.
    pub participants: Vec<String>,
    /// Statements run on every database after it starts.
    pub schema: Vec<String>,
    /// Extra `mariadbd` options for every instance.
    pub mariadb_options: Vec<String>,
    /// Participants reach their MariaDB over TCP on 127.0.0.1 (a port each)
    /// instead of its Unix socket, as across hosts.
    pub mysql_over_tcp: bool,
    /// Default transaction timeout of the coordinator.
    pub default_timeout_ms: u64,
    /// Coordinator replicas (`tc`, `tc2`, `tc3`, …); every participant is
    /// configured with all of them.
    pub replicas: usize,
    /// Keep the cluster's directory (data and logs) instead of deleting it.
    pub keep_dir: bool,
    /// `RUST_LOG` for the tandem binaries.
    pub log_filter: String,
    /// `FAILPOINTS` for a process's first start, by process: `coordinator`
    /// (the first replica), a replica's name, or a participant's name (the
    /// binaries are built with failpoints).
    pub failpoints: Vec<(String, String)>,
    /// How often participants look for prepared branches to recover.
    pub recovery_interval_ms: u64,
    /// How long participants keep marker rows.
    pub marker_retention_secs: u64,
    /// Route coordinator ↔ participant traffic through a [`Proxy`] per
    /// direction, so tests can cut the network ([`Cluster::set_link`]).
    pub network_proxies: bool,
    /// Where `tandem-coordinator` and `tandem-participant` are; by
    /// default [`tandem_binaries`] (built with failpoints).
    pub bin_dir: Option<PathBuf>,
    /// Each participant's `--max-connections` (its default when `None`).
    pub participant_max_connections: Option<u32>,
    /// TLS with identities everywhere (the default), or
    /// `--insecure-plaintext`.
    pub tls: bool,
    /// Extra flags for the coordinator.
    pub coordinator_args: Vec<String>,
    /// Extra flags for every participant.
    pub participant_args: Vec<String>,
    /// Lines of the coordinator's token file (`<principal> <role>
    /// <sha256 hex>`), if any.
    pub tokens: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            participants: ["alpha", "beta", "gamma"].map(str::to_owned).to_vec(),
            schema: crate::schema::DEMO.iter().map(|s| (*s).to_owned()).collect(),
            mariadb_options: Vec::new(),
            mysql_over_tcp: false,
            default_timeout_ms: 10_000,
            replicas: 1,
            keep_dir: false,
            log_filter: "info".to_owned(),
            failpoints: Vec::new(),
            recovery_interval_ms: 500,
            marker_retention_secs: 86_400,
            network_proxies: false,
            bin_dir: None,
            participant_max_connections: None,
            tls: true,
            coordinator_args: Vec::new(),
            participant_args: Vec::new(),
            tokens: Vec::new(),
        }
    }
}

pub struct Node {
    pub name: String,
    pub db: MariaDb,
    pub addr: SocketAddr,
    /// Its admin listener (metrics).
    pub admin_addr: SocketAddr,
    participant: Option<Process>,
    participant_starts: u32,
    pool: MySqlPool,
    links: Option<Links>,
}

/// The proxies between the coordinator replicas and one participant.
struct Links {
    /// The replicas' channel to the participant.
    to_participant: Proxy,
    /// The participant's `Decisions` channel to each replica.
    to_coordinator: Vec<Proxy>,
}

/// One coordinator replica.
struct Replica {
    name: String,
    process: Option<Process>,
    starts: u32,
    /// Its client API.
    addr: SocketAddr,
    /// Its internal API (participants' `Decisions` calls).
    internal_addr: SocketAddr,
    /// Its admin listener (metrics).
    admin_addr: SocketAddr,
}

/// A process of the cluster, for faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Coordinator replica `i` (0 is `tc`).
    Coordinator(usize),
    Participant(String),
    MariaDb(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Coordinator(i) => write!(f, "coordinator {}", replica_name(*i)),
            Self::Participant(name) => write!(f, "participant {name}"),
            Self::MariaDb(name) => write!(f, "mariadb {name}"),
        }
    }
}

impl Node {
    /// A pool on this node's database for checks from outside tandem.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }
}

/// The principal tests act as unless they say otherwise.
pub const TEST_PRINCIPAL: &str = "tester";
/// The first coordinator replica's name, hence its identity
/// `tc.coordinator.tandem`.
pub const COORDINATOR_NAME: &str = "tc";

/// Replica `i`'s name: `tc`, `tc2`, `tc3`, ….
pub fn replica_name(i: usize) -> String {
    if i == 0 {
        COORDINATOR_NAME.to_owned()
    } else {
        format!("{COORDINATOR_NAME}{}", i + 1)
    }
}

/// How a client reaches the coordinator as some principal.
#[derive(Debug, Clone)]
pub struct Access {
    pub url: String,
    pub tls: Option<Tls>,
    pub token: Option<String>,
}

impl Access {
    pub async fn connect(&self) -> Result<Client, tonic::Status> {
        Client::connect_with(&self.url, self.tls.clone(), self.token.as_deref()).await
    }

    /// An endpoint to the coordinator (for callers that set their own
    /// channel options); the token is not part of it.
    pub fn endpoint(&self) -> Result<tonic::transport::Endpoint, tonic::Status> {
        tandem_client::endpoint(&self.url, self.tls.as_ref())
    }
}

pub struct Cluster {
    replicas: Vec<Replica>,
    /// Signs every identity of this cluster; `None` without TLS.
    ca: Option<Ca>,
    nodes: Vec<Node>,
    config: ClusterConfig,
    bins: PathBuf,
    // Last: removed after every process is gone.
    dir: Option<TempDir>,
}

impl Cluster {
    /// Starts the whole cluster and waits until every node is healthy.
    pub async fn start(config: ClusterConfig) -> Result<Self> {
        let bins = match &config.bin_dir {
            Some(dir) => dir.clone(),
            None => tandem_binaries()?.to_owned(),
        };
        let dir = tempfile::Builder::new()
            .prefix("tandem-cluster-")
            .tempdir()
            .context("cannot create the cluster directory")?;
        let root = dir.path().to_owned();

        // Datadirs in parallel threads; the servers from this thread, since
        // a child dies with the thread that spawned it.
        let installed: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = config
                .participants
                .iter()
                .map(|name| {
                    let dir = root.join(format!("db-{name}"));
                    scope.spawn(move || MariaDb::install(name, &dir))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("mariadb-install-db panicked")))
                })
                .collect()
        });
        installed.into_iter().collect::<Result<Vec<()>>>()?;
        let mut dbs = Vec::new();
        for name in &config.participants {
            let mut options = config.mariadb_options.clone();
            if config.mysql_over_tcp {
                options.extend(MariaDb::tcp_options(free_addr()?.port()));
            }
            dbs.push(MariaDb::launch_installed(
                name,
                &root.join(format!("db-{name}")),
                &options,
            )?);
        }
        let schema: Vec<&str> = config.schema.iter().map(String::as_str).collect();
        for db in &dbs {
            db.setup(&schema).await?;
        }

        let mut replicas = Vec::new();
        for i in 0..config.replicas.max(1) {
            replicas.push(Replica {
                name: replica_name(i),
                process: None,
                starts: 0,
                addr: free_addr()?,
                internal_addr: free_addr()?,
                admin_addr: free_addr()?,
            });
        }
        let ca = if config.tls {
            Some(Ca::create(&root.join("tls"), "tandem local CA (throwaway)")?)
        } else {
            None
        };
        let mut nodes = Vec::new();
        for (name, db) in config.participants.iter().zip(dbs) {
            let addr = free_addr()?;
            let links = if config.network_proxies {
                let mut to_coordinator = Vec::new();
                for replica in &replicas {
                    to_coordinator.push(Proxy::start(replica.internal_addr).await?);
                }
                Some(Links {
                    to_participant: Proxy::start(addr).await?,
                    to_coordinator,
                })
            } else {
                None
            };
            nodes.push(Node {
                name: name.clone(),
                addr,
                admin_addr: free_addr()?,
                pool: db.pool(Some(mariadb::DATABASE)).await?,
                db,
                participant: None,
                participant_starts: 0,
                links,
            });
        }
        let mut cluster = Self {
            replicas,
            ca,
            nodes,
            config,
            bins,
            dir: Some(dir),
        };
        for i in 0..cluster.nodes.len() {
            cluster.start_participant(i)?;
        }
        for i in 0..cluster.replicas.len() {
            cluster.start_coordinator(i)?;
        }
        cluster.wait_serving().await?;
        Ok(cluster)
    }

    /// `https://` with TLS, `http://` without.
    fn scheme(&self) -> &'static str {
        if self.ca.is_some() { "https" } else { "http" }
    }

    /// The first replica's client API URL.
    pub fn coordinator_url(&self) -> String {
        self.replica_url(0)
    }

    /// Replica `i`'s client API URL.
    pub fn replica_url(&self, i: usize) -> String {
        format!("{}://{}", self.scheme(), self.replicas[i].addr)
    }

    /// How many coordinator replicas the cluster runs.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// The CA that signs this cluster's identities (with TLS).
    pub fn ca(&self) -> Option<&Ca> {
        self.ca.as_ref()
    }

    /// How to reach the coordinator as `identity` (a client or operator;
    /// without TLS every caller is the same anonymous client).
    pub fn access_as(&self, identity: &Identity) -> Result<Access> {
        self.replica_access_as(0, identity)
    }

    /// How to reach replica `i` as client principal `principal`.
    pub fn replica_access(&self, i: usize, principal: &str) -> Result<Access> {
        let identity = Identity::new(Role::Client, principal).map_err(anyhow::Error::msg)?;
        self.replica_access_as(i, &identity)
    }

    /// How to reach replica `i` as `identity`.
    pub fn replica_access_as(&self, i: usize, identity: &Identity) -> Result<Access> {
        let tls = match &self.ca {
            Some(ca) => {
                let issued = ca.issue(identity)?;
                Some(Tls::new(
                    ca.ca_pem().as_bytes(),
                    Some((issued.cert_pem.as_bytes(), issued.key_pem.as_bytes())),
                    &replica_identity(i).dns_name(),
                ))
            }
            None => None,
        };
        Ok(Access {
            url: self.replica_url(i),
            tls,
            token: None,
        })
    }

    /// How to reach the coordinator as client principal `principal`.
    pub fn access(&self, principal: &str) -> Result<Access> {
        self.access_as(&Identity::new(Role::Client, principal).map_err(anyhow::Error::msg)?)
    }

    /// How to reach the coordinator with a bearer token and no client
    /// certificate.
    pub fn access_with_token(&self, token: &str) -> Access {
        Access {
            url: self.coordinator_url(),
            tls: self
                .ca
                .as_ref()
                .map(|ca| Tls::new(ca.ca_pem().as_bytes(), None, &coordinator_identity().dns_name())),
            token: Some(token.to_owned()),
        }
    }

    /// A client acting as operator `ops`: it sees every principal's
    /// transactions, and those resumed from the decision log.
    pub async fn operator(&self) -> Result<Client> {
        let ops = Identity::new(Role::Operator, "ops").map_err(anyhow::Error::msg)?;
        Ok(self.access_as(&ops)?.connect().await?)
    }

    /// A client acting as [`TEST_PRINCIPAL`].
    pub async fn client(&self) -> Result<Client> {
        Ok(self.access(TEST_PRINCIPAL)?.connect().await?)
    }

    /// TLS settings for calling this cluster's processes as the
    /// coordinator would (participants serve only it).
    fn internal_tls(&self, peer: &Identity) -> Result<Option<tonic::transport::ClientTlsConfig>> {
        self.tls_as(Some(&coordinator_identity()), peer)
    }

    /// TLS settings for calling `server` while presenting `me`'s
    /// certificate (or none); `None` without TLS.
    pub fn tls_as(
        &self,
        me: Option<&Identity>,
        server: &Identity,
    ) -> Result<Option<tonic::transport::ClientTlsConfig>> {
        let Some(ca) = &self.ca else {
            return Ok(None);
        };
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca.ca_pem()))
            .domain_name(server.dns_name());
        if let Some(me) = me {
            let issued = ca.issue(me)?;
            tls = tls.identity(tonic::transport::Identity::from_pem(issued.cert_pem, issued.key_pem));
        }
        Ok(Some(tls))
    }

    /// An endpoint to `addr` (served by `server`), presenting `me`'s
    /// certificate or none: for calling any process directly, as anyone.
    pub fn endpoint_as(
        &self,
        addr: SocketAddr,
        me: Option<&Identity>,
        server: &Identity,
    ) -> Result<tonic::transport::Endpoint> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("{}://{addr}", self.scheme()))?
            .connect_timeout(Duration::from_secs(5));
        Ok(match self.tls_as(me, server)? {
            Some(tls) => endpoint.tls_config(tls)?,
            None => endpoint,
        })
    }

    /// The first replica's client API address.
    pub fn coordinator_addr(&self) -> SocketAddr {
        self.replicas[0].addr
    }

    /// The first replica's internal API address (participants' decisions).
    pub fn internal_addr(&self) -> SocketAddr {
        self.replicas[0].internal_addr
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no participant {name} in this cluster"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("."), TempDir::path)
    }

    /// Every tandem branch still in `XA RECOVER`, as (participant, gtrid).
    pub async fn prepared_branches(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for node in &self.nodes {
            for gtrid in mariadb::xa_recover(&node.pool).await? {
                out.push((node.name.clone(), gtrid));
            }
        }
        Ok(out)
    }

    fn start_participant(&mut self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let mut command = Command::new(self.bins.join("tandem-participant"));
        let first = node.participant_starts == 0;
        if let Some(spec) = self.first_failpoints(&node.name, first) {
            command.env("FAILPOINTS", spec);
        }
        command
            .arg("--name")
            .arg(&node.name)
            .arg("--listen")
            .arg(node.addr.to_string())
            .arg("--admin-listen")
            .arg(node.admin_addr.to_string())
            .arg("--mysql-url")
            .arg(node.db.url())
            .arg("--coordinator")
            .arg(
                self.replicas
                    .iter()
                    .enumerate()
                    .map(|(r, replica)| {
                        let addr = node
                            .links
                            .as_ref()
                            .map_or(replica.internal_addr, |l| l.to_coordinator[r].addr());
                        format!("{}={}://{addr}", replica.name, self.scheme())
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .arg("--recovery-interval-ms")
            .arg(self.config.recovery_interval_ms.to_string())
            .arg("--marker-retention-secs")
            .arg(self.config.marker_retention_secs.to_string())
            .args(
                self.config
                    .participant_max_connections
                    .map(|n| ["--max-connections".to_owned(), n.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .env("RUST_LOG", &self.config.log_filter)
            // An error a process exits with is its last lines, not a
            // backtrace (panics keep theirs).
            .env("RUST_LIB_BACKTRACE", "0")
            .env("NO_COLOR", "1");
        self.transport_args(
            &mut command,
            &Identity::new(Role::Participant, &node.name).map_err(anyhow::Error::msg)?,
        )?;
        command.args(&self.config.participant_args);
        let log = self.dir().join(format!("participant-{}.log", node.name));
        let process = Process::spawn(&format!("participant {}", node.name), command, &log)?;
        self.nodes[i].participant = Some(process);
        self.nodes[i].participant_starts += 1;
        Ok(())
    }

    /// TLS files of `identity`, or the plaintext flag.
    fn transport_args(&self, command: &mut Command, identity: &Identity) -> Result<()> {
        match &self.ca {
            Some(ca) => {
                let files = ca.files(identity)?;
                command
                    .arg("--tls-ca")
                    .arg(files.ca)
                    .arg("--tls-cert")
                    .arg(files.cert)
                    .arg("--tls-key")
                    .arg(files.key);
            }
            None => {
                command.arg("--insecure-plaintext");
            }
        }
        Ok(())
    }

    fn first_failpoints(&self, process: &str, first: bool) -> Option<String> {
        let specs: Vec<&str> = self
            .config
            .failpoints
            .iter()
            .filter(|(p, _)| first && p == process)
            .map(|(_, spec)| spec.as_str())
            .collect();
        (!specs.is_empty()).then(|| specs.join(";"))
    }

    fn start_coordinator(&mut self, i: usize) -> Result<()> {
        let mut command = Command::new(self.bins.join("tandem-coordinator"));
        let replica = &self.replicas[i];
        let first = replica.starts == 0;
        let mut specs: Vec<String> = self.first_failpoints(&replica.name, first).into_iter().collect();
        if i == 0 {
            specs.extend(self.first_failpoints("coordinator", first));
        }
        if !specs.is_empty() {
            command.env("FAILPOINTS", specs.join(";"));
        }
        command
            .arg("--name")
            .arg(&replica.name)
            .arg("--listen")
            .arg(replica.addr.to_string())
            .arg("--internal-listen")
            .arg(replica.internal_addr.to_string())
            .arg("--admin-listen")
            .arg(replica.admin_addr.to_string())
            .arg("--default-timeout-ms")
            .arg(self.config.default_timeout_ms.to_string())
            .env("RUST_LOG", &self.config.log_filter)
            // An error a process exits with is its last lines, not a
            // backtrace (panics keep theirs).
            .env("RUST_LIB_BACKTRACE", "0")
            .env("NO_COLOR", "1");
        for node in &self.nodes {
            let addr = node.links.as_ref().map_or(node.addr, |l| l.to_participant.addr());
            command
                .arg("--participant")
                .arg(format!("{}={}://{addr}", node.name, self.scheme()));
        }
        if !self.config.tokens.is_empty() {
            let path = self.dir().join("tokens");
            std::fs::write(&path, self.config.tokens.join("\n"))?;
            command.arg("--tokens").arg(path);
        }
        self.transport_args(&mut command, &replica_identity(i))?;
        command.args(&self.config.coordinator_args);
        let log = self.dir().join(replica_log(i));
        let process = Process::spawn(&format!("coordinator {}", self.replicas[i].name), command, &log)?;
        self.replicas[i].process = Some(process);
        self.replicas[i].starts += 1;
        Ok(())
    }

    /// The identity serving `addr` (a participant's or a replica's).
    fn identity_at(&self, addr: SocketAddr) -> Identity {
        if let Some(node) = self.nodes.iter().find(|n| n.addr == addr) {
            return Identity {
                role: Role::Participant,
                name: node.name.clone(),
            };
        }
        let i = self
            .replicas
            .iter()
            .position(|r| r.addr == addr || r.internal_addr == addr)
            .unwrap_or(0);
        replica_identity(i)
    }

    async fn wait_healthy(&mut self, what: &str, addr: SocketAddr) -> Result<()> {
        let until = Instant::now() + Duration::from_secs(60);
        let tls = self.internal_tls(&self.identity_at(addr))?;
        loop {
            if let Some((name, tail)) = self.exited_process() {
                bail!("{name} exited while starting:\n{tail}");
            }
            if serving(addr, tls.clone()).await {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("{what} at {addr} not healthy after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    fn exited_process(&mut self) -> Option<(String, String)> {
        let processes = self
            .replicas
            .iter_mut()
            .filter_map(|r| r.process.as_mut())
            .chain(self.nodes.iter_mut().filter_map(|n| n.participant.as_mut()));
        for p in processes {
            if p.exited().is_some() {
                return Some((p.name().to_owned(), p.log_tail(4000)));
            }
        }
        None
    }

    fn logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = (0..self.replicas.len())
            .map(|i| self.dir().join(replica_log(i)))
            .collect();
        for node in &self.nodes {
            logs.push(self.dir().join(format!("participant-{}.log", node.name)));
            logs.push(node.db.log_path());
        }
        logs
    }

    /// `kill -9` a participant process (its MariaDB keeps running).
    pub fn kill_participant(&mut self, name: &str) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.name == name)
            && let Some(mut p) = node.participant.take()
        {
            p.kill();
        }
    }

    /// `kill -9` the first replica.
    pub fn kill_coordinator(&mut self) {
        self.kill_replica(0);
    }

    /// `kill -9` replica `i`.
    pub fn kill_replica(&mut self, i: usize) {
        if let Some(mut c) = self.replicas[i].process.take() {
            c.kill();
        }
    }

    /// Starts the first replica again (same address) and waits until it is
    /// healthy. It keeps nothing on disk: it starts empty.
    pub async fn restart_coordinator(&mut self) -> Result<()> {
        self.restart_replica(0).await
    }

    /// Starts replica `i` again and waits until it is healthy.
    pub async fn restart_replica(&mut self, i: usize) -> Result<()> {
        self.kill_replica(i);
        self.start_coordinator(i)?;
        let addr = self.replicas[i].addr;
        self.wait_healthy(&format!("coordinator {}", self.replicas[i].name), addr)
            .await
    }

    /// Starts a participant again and waits until it is healthy.
    pub async fn restart_participant(&mut self, name: &str) -> Result<()> {
        self.kill_participant(name);
        let i = self.index(name);
        self.start_participant(i)?;
        let addr = self.nodes[i].addr;
        self.wait_healthy(&format!("participant {name}"), addr).await
    }

    /// Starts a participant again without waiting for it to be healthy
    /// (its MariaDB may be down).
    pub fn start_participant_again(&mut self, name: &str) -> Result<()> {
        self.kill_participant(name);
        let i = self.index(name);
        self.start_participant(i)
    }

    /// `kill -9` a participant's MariaDB.
    pub fn kill_mariadb(&mut self, name: &str) {
        let i = self.index(name);
        self.nodes[i].db.kill();
    }

    /// Starts a participant's MariaDB again on its datadir.
    pub fn restart_mariadb(&mut self, name: &str) -> Result<()> {
        let i = self.index(name);
        self.nodes[i].db.restart()
    }

    /// Waits until the first replica's process exits (a failpoint crashed
    /// it).
    pub async fn wait_coordinator_exit(&mut self, limit: Duration) -> Result<()> {
        self.wait_replica_exit(0, limit).await.map(|_| ())
    }

    /// Waits until replica `i`'s process exits; how it exited, if it was
    /// running.
    pub async fn wait_replica_exit(&mut self, i: usize, limit: Duration) -> Result<Option<std::process::ExitStatus>> {
        let until = Instant::now() + limit;
        loop {
            let replica = &mut self.replicas[i];
            let status = match replica.process.as_mut() {
                None => Some(None),
                Some(process) => process.exited().map(Some),
            };
            if let Some(status) = status {
                replica.process = None;
                return Ok(status);
            }
            if Instant::now() > until {
                bail!("coordinator {} did not exit within {limit:?}", replica.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until a participant process exits (a failpoint crashed it).
    pub async fn wait_participant_exit(&mut self, name: &str, limit: Duration) -> Result<()> {
        let i = self.index(name);
        let until = Instant::now() + limit;
        loop {
            let exited = self.nodes[i].participant.as_mut().is_none_or(|p| p.exited().is_some());
            if exited {
                self.nodes[i].participant = None;
                return Ok(());
            }
            if Instant::now() > until {
                bail!("participant {name} did not exit within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Arms (or with empty `actions` disarms) a failpoint in a running
    /// process: `coordinator` (the first replica), a replica's name, or a
    /// participant's name.
    pub async fn failpoint(&self, process: &str, name: &str, actions: &str) -> Result<()> {
        let addr = if process == "coordinator" {
            self.replicas[0].addr
        } else if let Some(replica) = self.replicas.iter().find(|r| r.name == process) {
            replica.addr
        } else {
            self.node(process).addr
        };
        let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{}://{addr}", self.scheme()))?;
        if let Some(tls) = self.internal_tls(&self.identity_at(addr))? {
            endpoint = endpoint.tls_config(tls)?;
        }
        let mut client = FailpointsClient::new(endpoint.connect().await?);
        client
            .configure(ConfigureFailpointRequest {
                name: name.to_owned(),
                actions: actions.to_owned(),
            })
            .await
            .with_context(|| format!("arming {name} in {process}"))?;
        Ok(())
    }

    /// Cuts (or with [`Link::Up`] heals) the network between the
    /// coordinator and participant `name`, both directions. Needs
    /// `network_proxies`.
    pub fn set_link(&self, name: &str, link: Link) -> Result<()> {
        let Some(links) = &self.node(name).links else {
            bail!("the cluster was started without network_proxies");
        };
        links.to_participant.set(link);
        for proxy in &links.to_coordinator {
            proxy.set(link);
        }
        Ok(())
    }

    /// Cuts (or heals) only participant `name`'s own calls to the
    /// coordinator replicas (its recovery's questions); the replicas still
    /// reach it. Needs `network_proxies`.
    pub fn set_link_to_coordinators(&self, name: &str, link: Link) -> Result<()> {
        let Some(links) = &self.node(name).links else {
            bail!("the cluster was started without network_proxies");
        };
        for proxy in &links.to_coordinator {
            proxy.set(link);
        }
        Ok(())
    }

    /// `SIGSTOP` (`pause`) or `SIGCONT` a process.
    pub fn pause(&mut self, target: &Target, pause: bool) -> Result<()> {
        let signal = if pause { libc::SIGSTOP } else { libc::SIGCONT };
        match self.pid(target) {
            Some(pid) if self.is_running(target) => {
                process::signal(pid, signal);
                Ok(())
            }
            _ => bail!("{target} is not running"),
        }
    }

    /// The address of a coordinator's or participant's admin listener.
    pub fn admin_addr(&self, target: &Target) -> Option<SocketAddr> {
        match target {
            Target::Coordinator(i) => self.replicas.get(*i).map(|r| r.admin_addr),
            Target::Participant(name) => Some(self.node(name).admin_addr),
            Target::MariaDb(_) => None,
        }
    }

    /// What a process's `/metrics` shows now.
    pub async fn metrics(&self, target: &Target) -> Result<String> {
        let addr = self
            .admin_addr(target)
            .with_context(|| format!("{target} has no admin listener"))?;
        let (status, body) = crate::http::get(addr, "/metrics").await?;
        anyhow::ensure!(status == 200, "GET /metrics of {target}: HTTP {status}: {body}");
        Ok(body)
    }

    /// The process id of a running (or paused) process.
    pub fn pid(&self, target: &Target) -> Option<u32> {
        match target {
            Target::Coordinator(i) => self.replicas[*i].process.as_ref().and_then(Process::pid),
            Target::Participant(name) => self.node(name).participant.as_ref().and_then(Process::pid),
            Target::MariaDb(name) => self.node(name).db.pid(),
        }
    }

    /// Whether a process is running (a crash failpoint may have ended it).
    pub fn is_running(&mut self, target: &Target) -> bool {
        let process = match target {
            Target::Coordinator(i) => self.replicas[*i].process.as_mut(),
            Target::Participant(name) => {
                let i = self.index(name);
                self.nodes[i].participant.as_mut()
            }
            Target::MariaDb(name) => {
                let i = self.index(name);
                return self.nodes[i].db.is_running();
            }
        };
        process.is_some_and(|p| p.exited().is_none())
    }

    /// `kill -9` a process.
    /// Sends SIGTERM to a running process (a drain, as an orchestrator
    /// stops it).
    pub fn terminate(&self, target: &Target) {
        if let Some(pid) = self.pid(target) {
            crate::process::signal(pid, libc::SIGTERM);
        }
    }

    pub fn kill(&mut self, target: &Target) {
        match target {
            Target::Coordinator(i) => self.kill_replica(*i),
            Target::Participant(name) => self.kill_participant(name),
            Target::MariaDb(name) => self.kill_mariadb(name),
        }
    }

    /// Starts a process again (killing what is left of it) without waiting
    /// until it serves (a database is waited for: it needs no one else).
    pub fn start_again(&mut self, target: &Target) -> Result<()> {
        match target {
            Target::Coordinator(i) => {
                self.kill_replica(*i);
                self.start_coordinator(*i)
            }
            Target::Participant(name) => self.start_participant_again(name),
            Target::MariaDb(name) => self.restart_mariadb(name),
        }
    }

    /// Waits until every participant and every replica serve.
    pub async fn wait_serving(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            let (addr, name) = (self.nodes[i].addr, self.nodes[i].name.clone());
            self.wait_healthy(&format!("participant {name}"), addr).await?;
        }
        for i in 0..self.replicas.len() {
            let (addr, name) = (self.replicas[i].addr, self.replicas[i].name.clone());
            self.wait_healthy(&format!("coordinator {name}"), addr).await?;
        }
        Ok(())
    }

    fn index(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no participant {name} in this cluster"))
    }

    /// Stops every process (SIGTERM, then SIGKILL) and keeps the directory
    /// if the configuration asks for it. Dropping does the same with SIGKILL.
    pub fn shutdown(mut self) {
        for replica in &mut self.replicas {
            if let Some(mut c) = replica.process.take() {
                c.stop(Duration::from_secs(5));
            }
        }
        for node in &mut self.nodes {
            if let Some(mut p) = node.participant.take() {
                p.stop(Duration::from_secs(5));
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in self.logs() {
                eprintln!("===== {} =====\n{}", log.display(), process::tail(&log, 6000));
            }
        }
        for replica in &mut self.replicas {
            if let Some(mut c) = replica.process.take() {
                c.kill();
            }
        }
        for node in &mut self.nodes {
            if let Some(mut p) = node.participant.take() {
                p.kill();
            }
            node.db.kill();
        }
        if let Some(dir) = self.dir.take()
            && self.config.keep_dir
        {
            let kept = dir.keep();
            eprintln!("cluster directory kept at {}", kept.display());
        }
    }
}

/// The identity of the cluster's first coordinator replica.
pub fn coordinator_identity() -> Identity {
    replica_identity(0)
}

/// The identity of replica `i`.
pub fn replica_identity(i: usize) -> Identity {
    Identity {
        role: Role::Coordinator,
        name: replica_name(i),
    }
}

/// Replica `i`'s log file in the cluster's directory.
fn replica_log(i: usize) -> String {
    if i == 0 {
        "coordinator.log".to_owned()
    } else {
        format!("coordinator-{}.log", replica_name(i))
    }
}

/// Whether the gRPC server at `addr` reports SERVING (over TLS when `tls`
/// is set).
pub async fn serving(addr: SocketAddr, tls: Option<tonic::transport::ClientTlsConfig>) -> bool {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let Ok(mut endpoint) = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}")) else {
        return false;
    };
    if let Some(tls) = tls {
        match endpoint.tls_config(tls) {
            Ok(with_tls) => endpoint = with_tls,
            Err(_) => return false,
        }
    }
    let Ok(channel) = endpoint.connect_timeout(Duration::from_millis(500)).connect().await else {
        return false;
    };
    let request = HealthCheckRequest { service: String::new() };
    matches!(
        HealthClient::new(channel).check(request).await,
        Ok(response) if response.get_ref().status == ServingStatus::Serving as i32
    )
}

/// Names for `n` participants: alpha, beta, gamma, … then p6, p7, ….
pub fn participant_names(n: usize) -> Vec<String> {
    const NAMES: [&str; 6] = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"];
    (0..n)
        .map(|i| NAMES.get(i).map_or_else(|| format!("p{i}"), |n| (*n).to_owned()))
        .collect()
}

/// A loopback address with a port that was free a moment ago, for a
/// process to bind. Ports come from below the kernel's ephemeral range
/// (32768 and up by default), so no outgoing connection's local port takes
/// one before its process binds it: a port from `bind(0)` could be (a
/// replica once failed to start so). Each test process starts at a random
/// port and walks on, handing out a port only after a bind shows it free.
pub fn free_addr() -> Result<SocketAddr> {
    const PORTS: std::ops::Range<u16> = 10_000..32_000;
    static NEXT: Mutex<u16> = Mutex::new(0);
    let mut next = NEXT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in PORTS {
        if !PORTS.contains(&*next) {
            *next = rand::random_range(PORTS);
        }
        let port = *next;
        *next += 1;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return Ok(listener.local_addr()?);
        }
    }
    bail!("no free loopback port in {PORTS:?}")
}

/// The directory holding `tandem-coordinator` and `tandem-participant`,
/// built on first use so `cargo test` and `cargo run` need nothing else.
///
/// `TANDEM_BIN_DIR` points at prebuilt binaries instead. Otherwise the
/// binaries sit next to the running executable in cargo's target dir
/// (`target/<profile>/`, with tests one level down in `deps/`), and are
/// (re)built there with the same profile. `CARGO_BIN_EXE_*` only exists in
/// the package that owns a binary, hence this.
pub fn tandem_binaries() -> Result<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| find_or_build_binaries(true).map_err(|e| format!("{e:#}")))
        .as_deref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Like [`tandem_binaries`], but built without failpoints: the binaries as
/// they ship, for measurements. They replace the failpoint build in the
/// same profile's directory until a test builds that again.
pub fn production_binaries() -> Result<PathBuf> {
    find_or_build_binaries(false)
}

fn find_or_build_binaries(failpoints: bool) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TANDEM_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("executable has no directory")?.to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("cannot tell the cargo profile")?
        .to_owned();
    let target = dir.parent().context("executable is not in a cargo target dir")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile_arg = match profile.as_str() {
        "debug" => "dev".to_owned(),
        other => other.to_owned(),
    };
    let mut build = Command::new(cargo);
    build.args([
        "build",
        "--quiet",
        "-p",
        "tandem-coordinator",
        "-p",
        "tandem-participant",
    ]);
    if failpoints {
        // Crash points for the crash tests; zero cost until armed.
        build.args([
            "--features",
            "tandem-coordinator/failpoints,tandem-participant/failpoints",
        ]);
    }
    let status = build
        .arg("--profile")
        .arg(&profile_arg)
        .arg("--target-dir")
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .context("cannot run cargo to build the tandem binaries (set TANDEM_BIN_DIR to use prebuilt ones)")?;
    if !status.success() {
        bail!("building tandem-coordinator and tandem-participant failed");
    }
    Ok(dir)
}
