//! A throwaway certificate authority for a local cluster, so the local
//! cluster and the tests run with TLS exactly as a deployment does.
//!
//! [`Ca::create`] makes a CA key and certificate (`ca.pem`) in a directory;
//! [`Ca::issue`] signs a certificate for a tandem [`Identity`]
//! (`<name>.<role>.tandem`, plus `localhost` and `127.0.0.1` so tools
//! like grpcurl can check a local server by its address) and writes it
//! next to it. The CA's key never leaves memory: it dies with the cluster.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tandem_common::{Identity, TlsFiles};

/// A certificate and key on disk, and in memory.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    issued: Mutex<HashMap<Identity, Issued>>,
}

impl Ca {
    /// A new CA whose certificate is written to `dir/ca.pem`.
    pub fn create(dir: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca = Self {
            issuer,
            dir: dir.to_owned(),
            issued: Mutex::default(),
        };
        std::fs::write(ca.ca_path(), ca.ca_pem())?;
        Ok(ca)
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The certificate of `identity` (issued on first use).
    pub fn issue(&self, identity: &Identity) -> Result<Issued> {
        let mut issued = self.issued.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(done) = issued.get(identity) {
            return Ok(done.clone());
        }
        let done = self.sign(
            identity,
            &[identity.dns_name(), "localhost".to_owned(), "127.0.0.1".to_owned()],
        )?;
        issued.insert(identity.clone(), done.clone());
        Ok(done)
    }

    /// A certificate for arbitrary subject alternative names (e.g. one
    /// that names no tandem identity, for tests).
    pub fn sign(&self, identity_for_files: &Identity, names: &[String]) -> Result<Issued> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, identity_for_files.dns_name());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let stem = format!(
            "{}-{}-{}",
            identity_for_files.role,
            identity_for_files.name,
            names.len()
        );
        let cert_path = self.dir.join(format!("{stem}.pem"));
        let key_path = self.dir.join(format!("{stem}.key"));
        std::fs::write(&cert_path, cert.pem())?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        Ok(Issued {
            cert: cert_path,
            key: key_path,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The TLS flags' files for `identity`.
    pub fn files(&self, identity: &Identity) -> Result<TlsFiles> {
        let issued = self.issue(identity)?;
        Ok(TlsFiles {
            ca: self.ca_path(),
            cert: issued.cert,
            key: issued.key,
        })
    }
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}
