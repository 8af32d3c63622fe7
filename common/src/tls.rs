//! TLS material and the transport mode of a process.
//!
//! Every process holds one certificate and key, signed by the cluster's CA,
//! that names it ([`Identity`]); it uses them as a server (its listeners)
//! and as a client (calls to other tandem processes), and trusts only
//! peers the same CA signed. Plaintext exists only as an explicit
//! development mode, on loopback addresses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tonic::transport::{Certificate, ClientTlsConfig, ServerTlsConfig};

use crate::identity::Identity;

/// A TLS handshake must finish within this, or the connection is closed
/// (a client that connects and sends nothing holds no resources long).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Where this process's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the CA that signs every identity of the cluster.
    pub ca: PathBuf,
    /// PEM: this process's certificate (chain).
    pub cert: PathBuf,
    /// PEM: its private key.
    pub key: PathBuf,
}

/// How a process talks to other tandem processes.
#[derive(Debug, Clone)]
pub enum Transport {
    Tls(Tls),
    /// Development only: no encryption, no authentication of peers, and
    /// listeners on loopback addresses only.
    Plaintext,
}

/// Loaded TLS material and the identity it proves.
#[derive(Debug, Clone)]
pub struct Tls {
    ca: Certificate,
    identity: tonic::transport::Identity,
    /// Who this process is, as its own certificate says.
    pub me: Identity,
}

impl Transport {
    /// The transport from the flags: TLS files, or the explicit plaintext
    /// development flag; anything else is refused with what to set.
    pub fn from_flags(files: Option<TlsFiles>, insecure_plaintext: bool) -> Result<Self, TlsError> {
        match (files, insecure_plaintext) {
            (Some(_), true) => Err(TlsError::Invalid(
                "both TLS files and --insecure-plaintext given; choose one".to_owned(),
            )),
            (Some(files), false) => Ok(Transport::Tls(Tls::load(&files)?)),
            (None, true) => Ok(Transport::Plaintext),
            (None, false) => Err(TlsError::Invalid(
                "TLS is required: give --tls-ca, --tls-cert and --tls-key (deploy/README.md shows how to issue \
                 them), or --insecure-plaintext for development on loopback addresses"
                    .to_owned(),
            )),
        }
    }

    /// Refuses a plaintext listener on a non-loopback address.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), TlsError> {
        match self {
            Transport::Plaintext if !addr.ip().is_loopback() => Err(TlsError::Invalid(format!(
                "--insecure-plaintext listens on loopback addresses only, not {addr}; use TLS"
            ))),
            _ => Ok(()),
        }
    }

    /// Checks that a peer URL's scheme matches the transport (`https://`
    /// with TLS, `http://` without): tonic would silently talk plaintext
    /// to an `http://` URL even with TLS configured.
    pub fn check_url(&self, what: &str, url: &str) -> Result<(), TlsError> {
        let (want, mode) = match self {
            Transport::Tls(_) => ("https://", "TLS"),
            Transport::Plaintext => ("http://", "--insecure-plaintext"),
        };
        if url.starts_with(want) {
            Ok(())
        } else {
            Err(TlsError::Invalid(format!(
                "{what} URL {url:?} must start with {want} under {mode}"
            )))
        }
    }

    /// Server TLS settings, if any. `require_client_cert`: every peer
    /// must present a certificate the CA signed (internal APIs); without
    /// it a client may instead send a bearer token (the client API).
    pub fn server_config(&self, require_client_cert: bool) -> Option<ServerTlsConfig> {
        match self {
            Transport::Tls(tls) => Some(tls.server_config(require_client_cert)),
            Transport::Plaintext => None,
        }
    }

    /// Client TLS settings for calling `peer`; the handshake fails unless
    /// the peer's certificate carries exactly that identity.
    pub fn client_config(&self, peer: &Identity) -> Option<ClientTlsConfig> {
        match self {
            Transport::Tls(tls) => Some(tls.client_config(peer)),
            Transport::Plaintext => None,
        }
    }

    /// Refuses a certificate that names anyone but `role` `name`: a
    /// process must not start with another's identity.
    pub fn check_me(&self, role: crate::Role, name: &str) -> Result<(), TlsError> {
        let Some(me) = self.me() else {
            return Ok(());
        };
        let want = Identity::new(role, name).map_err(TlsError::Invalid)?;
        if *me == want {
            Ok(())
        } else {
            Err(TlsError::Invalid(format!(
                "the TLS certificate names {me} ({}), but this is {role} {name} and needs {}",
                me.dns_name(),
                want.dns_name()
            )))
        }
    }

    /// This process's identity, when it has one.
    pub fn me(&self) -> Option<&Identity> {
        match self {
            Transport::Tls(tls) => Some(&tls.me),
            Transport::Plaintext => None,
        }
    }
}

impl Tls {
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let ca = read("CA certificate", &files.ca)?;
        let cert = read("certificate", &files.cert)?;
        let key = read("private key", &files.key)?;
        Self::from_pem(&ca, &cert, &key).map_err(|e| {
            TlsError::Invalid(format!(
                "{} / {} / {}: {e}",
                files.ca.display(),
                files.cert.display(),
                files.key.display()
            ))
        })
    }

    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Self, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};

        CertificateDer::from_pem_slice(ca).map_err(|e| format!("the CA file holds no PEM certificate: {e}"))?;
        PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("the key file holds no PEM private key: {e}"))?;
        let own = CertificateDer::from_pem_slice(cert)
            .map_err(|e| format!("the certificate file holds no PEM certificate: {e}"))?;
        let me = Identity::from_cert(&own).ok_or_else(|| {
            "the certificate names no tandem identity: it needs a DNS subject alternative name \
             <name>.<role>.tandem (role coordinator, participant, client or operator)"
                .to_owned()
        })?;
        Ok(Self {
            ca: Certificate::from_pem(ca),
            identity: tonic::transport::Identity::from_pem(cert, key),
            me,
        })
    }

    fn server_config(&self, require_client_cert: bool) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .client_auth_optional(!require_client_cert)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    fn client_config(&self, peer: &Identity) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(peer.dns_name())
            .timeout(HANDSHAKE_TIMEOUT)
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The TLS flags both binaries take (with `TANDEM_*` environment
/// fallbacks).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM file of the CA that signs every identity of the cluster.
    #[arg(long, env = "TANDEM_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM file of this process's certificate (names it
    /// `<name>.<role>.tandem`).
    #[arg(long, env = "TANDEM_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of this process's private key.
    #[arg(long, env = "TANDEM_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Development only: no TLS and no peer authentication; listeners must
    /// be on loopback addresses.
    #[arg(long, env = "TANDEM_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
}

impl TlsArgs {
    /// The TLS files from the flags, each falling back to a config file's
    /// value: all three, or none.
    pub fn files(
        &self,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<TlsFiles>, String> {
        let ca = self.tls_ca.clone().or(ca);
        let cert = self.tls_cert.clone().or(cert);
        let key = self.tls_key.clone().or(key);
        match (ca, cert, key) {
            (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles { ca, cert, key })),
            (None, None, None) => Ok(None),
            _ => Err("--tls-ca, --tls-cert and --tls-key go together: give all three".to_owned()),
        }
    }
}
