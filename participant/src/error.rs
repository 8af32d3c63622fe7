//! The participant's errors and their one mapping to gRPC status codes.

use thiserror::Error;
use tonic::{Code, Status};

#[derive(Debug, Error)]
pub enum Error {
    /// Bad or forbidden statement, bad parameter, malformed id.
    #[error("{0}")]
    InvalidArgument(String),
    /// No branch with that gtrid on this participant.
    #[error("{0}")]
    NotFound(String),
    /// The branch exists but is in the wrong state for the request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A statement or guard failed; the branch was rolled back.
    #[error("{0}")]
    Aborted(String),
    /// MySQL could not be reached, or the participant is shutting down;
    /// the request may be retried.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// Heuristic hazard: phase 2 found the branch finished the other way
    /// than the coordinator decided. Retrying cannot change it.
    #[error("{0}")]
    Heuristic(String),
    /// (keyed gtrids) An earlier attempt of the transaction holds the
    /// branch.
    #[error("{0}")]
    AlreadyExists(String),
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Aborted(_) => Code::Aborted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Internal(_) => Code::Internal,
            Error::Heuristic(_) => Code::DataLoss,
            Error::AlreadyExists(_) => Code::AlreadyExists,
        };
        Status::new(code, err.to_string())
    }
}

/// Describes a MySQL error for a client: number, SQLSTATE and message.
pub fn describe_sql(err: &sqlx::Error) -> String {
    match err.as_database_error() {
        Some(db) => match db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
            Some(my) => format!(
                "MySQL error {} ({}): {}",
                my.number(),
                my.code().unwrap_or("HY000"),
                my.message()
            ),
            None => db.message().to_owned(),
        },
        None => err.to_string(),
    }
}

/// Whether a MySQL error means the server or the connection is gone, as
/// opposed to the statement being wrong.
pub fn is_connection_error(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
    )
}
