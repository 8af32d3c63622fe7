//! A Rust client for tandem's `Coordinator` service.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tonic::Status> {
//! use tandem_client::{Client, Statement};
//! use tandem_client::Tls;
//! let tls = Tls::from_files("ca.pem", Some(("shop.pem", "shop.key")), "tc.coordinator.tandem")?;
//! let mut tandem = Client::connect_tls("https://10.0.0.10:7500", tls, None).await?;
//! let done = tandem
//!     .submit(vec![
//!         ("inventory", vec![Statement::new("UPDATE stock SET n = n - ? WHERE sku = ? AND n >= ?")
//!             .bind(1).bind("apple").bind(1).expect_rows_affected(1)]),
//!         ("orders", vec![Statement::new("INSERT INTO orders (sku) VALUES (?)").bind("apple")]),
//!     ])
//!     .await?;
//! println!("{} {:?}", done.txn_id, done.outcome());
//! # Ok(()) }
//! ```

use std::path::Path;
use std::time::Duration;

pub use tandem_proto::v1 as pb;
use tandem_proto::v1::coordinator_client::CoordinatorClient;
pub use tandem_proto::v1::{Outcome, Statement, StatementResult, Value};
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Largest answer this client accepts from a coordinator.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// The generated client with the bearer token (if any) on every request.
pub type RawClient = CoordinatorClient<InterceptedService<Channel, Bearer>>;

/// A connection to a coordinator. Cheap to clone: clones share one HTTP/2
/// channel.
#[derive(Debug, Clone)]
pub struct Client {
    inner: RawClient,
}

/// How a client verifies the coordinator and proves who it is.
#[derive(Debug, Clone)]
pub struct Tls {
    config: ClientTlsConfig,
}

impl Tls {
    /// `ca_pem`: the cluster's CA. `identity`: this client's certificate
    /// and key (`<name>.client.tandem`), or `None` to authenticate with a
    /// bearer token instead. `coordinator`: the name the coordinator's
    /// certificate carries, e.g. `tc.coordinator.tandem`.
    pub fn new(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>, coordinator: &str) -> Self {
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .domain_name(coordinator);
        if let Some((cert, key)) = identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        Self { config }
    }

    /// Like [`Tls::new`], reading PEM files.
    pub fn from_files(
        ca: impl AsRef<Path>,
        identity: Option<(impl AsRef<Path>, impl AsRef<Path>)>,
        coordinator: &str,
    ) -> Result<Self, Status> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| Status::invalid_argument(format!("cannot read {}: {e}", path.display())))
        };
        let ca = read(ca.as_ref())?;
        let identity = match identity {
            Some((cert, key)) => Some((read(cert.as_ref())?, read(key.as_ref())?)),
            None => None,
        };
        Ok(Self::new(
            &ca,
            identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
            coordinator,
        ))
    }
}

/// Adds `authorization: Bearer <token>` to every request, when a token is
/// set.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.write_str(if self.0.is_some() {
            "Bearer(set)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Client {
    /// Connects without TLS: only to a coordinator started with
    /// `--insecure-plaintext` (development).
    pub async fn connect(url: &str) -> Result<Self, Status> {
        Self::connect_with(url, None, None).await
    }

    /// Connects over TLS (`https://` URL), authenticating with the client
    /// certificate in `tls` or with `token`.
    pub async fn connect_tls(url: &str, tls: Tls, token: Option<&str>) -> Result<Self, Status> {
        Self::connect_with(url, Some(tls), token).await
    }

    /// Connects with TLS if `tls` is set, and a bearer token if `token` is.
    pub async fn connect_with(url: &str, tls: Option<Tls>, token: Option<&str>) -> Result<Self, Status> {
        let endpoint = endpoint(url, tls.as_ref())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("cannot reach the coordinator at {url}: {}", chain(&e))))?;
        Self::from_channel(channel, token)
    }

    pub fn from_channel(channel: Channel, token: Option<&str>) -> Result<Self, Status> {
        let bearer = match token {
            Some(token) => Bearer(Some(
                MetadataValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| Status::invalid_argument("the bearer token must be ASCII text"))?,
            )),
            None => Bearer(None),
        };
        Ok(Self {
            // Answers carry up to the coordinator's --max-result-bytes
            // (4 MiB by default) plus a little; accept what it may send.
            inner: CoordinatorClient::with_interceptor(channel, bearer).max_decoding_message_size(MAX_ANSWER_BYTES),
        })
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&mut self) -> &mut RawClient {
        &mut self.inner
    }

    /// Opens an interactive transaction with the coordinator's default
    /// timeout.
    pub async fn begin(&mut self) -> Result<String, Status> {
        self.begin_with(pb::BeginRequest::default()).await
    }

    pub async fn begin_with(&mut self, request: pb::BeginRequest) -> Result<String, Status> {
        Ok(self.inner.begin(request).await?.into_inner().txn_id)
    }

    pub async fn execute(
        &mut self,
        txn_id: &str,
        participant: &str,
        statements: Vec<Statement>,
    ) -> Result<Vec<StatementResult>, Status> {
        let request = pb::ExecuteRequest {
            txn_id: txn_id.to_owned(),
            participant: participant.to_owned(),
            statements,
        };
        Ok(self.inner.execute(request).await?.into_inner().results)
    }

    /// Commits, answered once the writes are visible (`ACK_VISIBLE`).
    pub async fn commit(&mut self, txn_id: &str) -> Result<pb::CommitResponse, Status> {
        self.commit_with(txn_id, pb::Ack::Visible).await
    }

    /// Commits, answered when `ack` says (`ACK_DURABLE`: as soon as every
    /// branch is durably prepared, before phase 2).
    pub async fn commit_with(&mut self, txn_id: &str, ack: pb::Ack) -> Result<pb::CommitResponse, Status> {
        let request = pb::CommitRequest {
            txn_id: txn_id.to_owned(),
            ack: ack as i32,
        };
        Ok(self.inner.commit(request).await?.into_inner())
    }

    pub async fn rollback(&mut self, txn_id: &str) -> Result<(), Status> {
        let request = pb::RollbackRequest {
            txn_id: txn_id.to_owned(),
        };
        self.inner.rollback(request).await.map(|_| ())
    }

    /// Runs every branch in parallel and commits them atomically, in one call.
    pub async fn submit(&mut self, branches: Vec<(&str, Vec<Statement>)>) -> Result<pb::SubmitResponse, Status> {
        self.submit_with(pb::SubmitRequest {
            branches: branches
                .into_iter()
                .map(|(participant, statements)| pb::Branch {
                    participant: participant.to_owned(),
                    statements,
                })
                .collect(),
            ..pb::SubmitRequest::default()
        })
        .await
    }

    pub async fn submit_with(&mut self, request: pb::SubmitRequest) -> Result<pb::SubmitResponse, Status> {
        Ok(self.inner.submit(request).await?.into_inner())
    }

    pub async fn get_transaction(&mut self, txn_id: &str) -> Result<pb::TransactionInfo, Status> {
        let request = pb::GetTransactionRequest {
            txn_id: txn_id.to_owned(),
            ..pb::GetTransactionRequest::default()
        };
        Ok(self.inner.get_transaction(request).await?.into_inner())
    }

    /// The caller's transaction of client key `key` (see
    /// `SubmitRequest.key`). At a replica that does not hold it, this
    /// settles it for good: if it has not prepared everywhere, it never
    /// will.
    pub async fn get_transaction_by_key(&mut self, key: &str) -> Result<pb::TransactionInfo, Status> {
        let request = pb::GetTransactionRequest {
            key: key.to_owned(),
            ..pb::GetTransactionRequest::default()
        };
        Ok(self.inner.get_transaction(request).await?.into_inner())
    }

    /// Every transaction the request selects, following its pages (see
    /// `ListTransactionsRequest`).
    pub async fn list_transactions(
        &mut self,
        mut request: pb::ListTransactionsRequest,
    ) -> Result<Vec<pb::TransactionInfo>, Status> {
        let mut all = Vec::new();
        loop {
            let page = self.inner.list_transactions(request.clone()).await?.into_inner();
            all.extend(page.transactions);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            request.page_token = page.next_page_token;
        }
    }

    /// The replica's status (operators only).
    pub async fn status(&mut self) -> Result<pb::CoordinatorStatus, Status> {
        Ok(self.inner.get_status(pb::GetStatusRequest {}).await?.into_inner())
    }

    /// Drains the replica as SIGTERM does (operators only); the number of
    /// live transactions when it began.
    pub async fn drain(&mut self) -> Result<u64, Status> {
        Ok(self
            .inner
            .drain(pb::DrainRequest {})
            .await?
            .into_inner()
            .live_transactions)
    }

    pub async fn list_participants(&mut self) -> Result<Vec<pb::ParticipantInfo>, Status> {
        let request = pb::ListParticipantsRequest {};
        Ok(self.inner.list_participants(request).await?.into_inner().participants)
    }
}

/// An endpoint for a coordinator URL, with TLS if `tls` is set (then the
/// URL must be `https://`: tonic would talk plaintext to `http://`).
pub fn endpoint(url: &str, tls: Option<&Tls>) -> Result<Endpoint, Status> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| Status::invalid_argument(format!("bad coordinator URL {url:?}: {e}")))?;
    match tls {
        Some(tls) if url.starts_with("https://") => endpoint
            .tls_config(tls.config.clone())
            .map_err(|e| Status::invalid_argument(format!("TLS settings: {e}"))),
        Some(_) => Err(Status::invalid_argument(format!(
            "TLS needs an https:// URL, not {url:?}"
        ))),
        None if url.starts_with("https://") => Err(Status::invalid_argument(format!(
            "{url:?} is an https:// URL: give TLS settings"
        ))),
        None => Ok(endpoint),
    }
}

/// An error with its causes (a TLS handshake's reason sits in the chain).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
