//! A Rust client for tandem's `Coordinator` service.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tonic::Status> {
//! use tandem_client::{Client, Statement};
//! let mut tandem = Client::connect("http://127.0.0.1:7500").await?;
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

use std::time::Duration;

pub use tandem_proto::v1 as pb;
use tandem_proto::v1::coordinator_client::CoordinatorClient;
pub use tandem_proto::v1::{Outcome, Statement, StatementResult, Value};
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

/// A connection to a coordinator. Cheap to clone: clones share one HTTP/2
/// channel.
#[derive(Debug, Clone)]
pub struct Client {
    inner: CoordinatorClient<Channel>,
}

impl Client {
    pub async fn connect(url: &str) -> Result<Self, Status> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Status::invalid_argument(format!("bad coordinator URL {url:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| Status::unavailable(format!("cannot reach the coordinator at {url}: {e}")))?;
        Ok(Self::from_channel(channel))
    }

    pub fn from_channel(channel: Channel) -> Self {
        Self {
            inner: CoordinatorClient::new(channel),
        }
    }

    /// The generated client, for calls this wrapper does not cover.
    pub fn raw(&mut self) -> &mut CoordinatorClient<Channel> {
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

    pub async fn commit(&mut self, txn_id: &str) -> Result<pb::CommitResponse, Status> {
        let request = pb::CommitRequest {
            txn_id: txn_id.to_owned(),
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
        };
        Ok(self.inner.get_transaction(request).await?.into_inner())
    }

    pub async fn list_participants(&mut self) -> Result<Vec<pb::ParticipantInfo>, Status> {
        let request = pb::ListParticipantsRequest {};
        Ok(self.inner.list_participants(request).await?.into_inner().participants)
    }
}
