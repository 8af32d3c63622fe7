//! The gRPC contract of tandem, package `tandem.v1`.
//!
//! - [`v1::coordinator_server`] / [`v1::coordinator_client`]: the client-facing
//!   `Coordinator` service (Begin, Execute, Commit, Rollback, Submit,
//!   GetTransaction, ListTransactions, ListParticipants).
//! - [`v1::participant_server`] / [`v1::participant_client`]: the internal
//!   `Participant` service the coordinator drives (Execute, Prepare, Commit,
//!   Rollback, Recover).
//! - [`v1::decisions_server`] / [`v1::decisions_client`]: the coordinator's
//!   `Decision` call that participants use for in-doubt branches.
//!
//! - [`failpoints`]: named crash points and their `Failpoints` admin
//!   service, live only with the `failpoints` feature (tests).
//!
//! [`FILE_DESCRIPTOR_SET`] feeds gRPC reflection so grpcurl and other
//! generic clients can discover the API.

pub mod v1 {
    tonic::include_proto!("tandem.v1");
}

/// Encoded `FileDescriptorSet` of `tandem.v1`, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tandem_descriptor");

pub mod failpoints;
mod helpers;

#[cfg(feature = "reflection")]
pub mod reflection;
