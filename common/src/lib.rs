//! What tandem's coordinator and participant share: who a peer is and how
//! a listener proves who it is.
//!
//! - [`names`]: the alphabet of names and ids, written once (certificate
//!   names, XA ids, gtrids).
//! - [`identity`]: the role and name a TLS certificate carries
//!   (`<name>.<role>.tandem`), and the identity of the peer of a request.
//! - [`tls`]: this process's certificate, key and cluster CA, turned into
//!   server and client TLS settings; the plaintext development mode.
//! - [`tokens`]: bearer tokens for clients without certificates, kept
//!   hashed in a file.
//! - [`serve`]: what every tandem gRPC listener shares (TLS, keep-alive,
//!   the handshake timeout, a bound on open connections and a per-host
//!   share of it), and who the caller of a request is.
//! - [`admin`]: the admin HTTP listener (Prometheus metrics).
//! - [`telemetry`]: the log and OpenTelemetry traces, and the trace
//!   context carried in gRPC metadata.
//!
//! The trust model is DESIGN.md §8: clients call the coordinator's client
//! API, only coordinators call participants, and only participants call
//! the coordinator's internal `Decisions` API; mutual TLS names decide.

pub mod admin;
pub mod identity;
pub mod names;
pub mod serve;
pub mod telemetry;
pub mod tls;
pub mod tokens;

pub use identity::{Identity, Role};
pub use tls::{Tls, TlsError, TlsFiles, Transport};
