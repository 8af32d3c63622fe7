//! The coordinator's errors and their one mapping to gRPC status codes.

use thiserror::Error;
use tonic::{Code, Status};

#[derive(Debug, Error)]
pub enum Error {
    /// Malformed request or configuration.
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown transaction or participant.
    #[error("{0}")]
    NotFound(String),
    /// The transaction is no longer active (committing, committed, or
    /// rolled back by the client).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The transaction was aborted, with why.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Retryable: the coordinator is shutting down or overloaded.
    #[error("{0}")]
    Unavailable(String),
    /// The caller may not do this (an operator acting on another
    /// principal's transaction).
    #[error("{0}")]
    PermissionDenied(String),
    /// A limit was reached (live transactions, result size).
    #[error("{0}")]
    ResourceExhausted(String),
    /// A transaction with the client's key is already here.
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Internal(String),
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Aborted(_) => Code::Aborted,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unavailable(_) => Code::Unavailable,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::Internal(_) => Code::Internal,
        };
        Status::new(code, err.to_string())
    }
}
