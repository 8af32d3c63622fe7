//! Coordinator settings: command-line flags (with environment fallbacks,
//! see `main.rs`) over an optional TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tandem_common::tokens::Tokens;
use tandem_common::{Role, Transport};

use crate::error::Error;
use crate::ids;

#[derive(Debug, Clone)]
pub struct Config {
    /// Names this coordinator in every gtrid it issues; with TLS, its
    /// certificate must carry `<name>.coordinator.tandem`.
    pub name: String,
    /// The client API (`Coordinator`).
    pub listen: SocketAddr,
    /// The internal API participants call (`Decisions`); only participant
    /// identities are served there.
    pub internal_listen: SocketAddr,
    /// The admin HTTP listener (metrics), if any.
    pub admin_listen: Option<SocketAddr>,
    /// TLS material, or the plaintext development mode.
    pub transport: Transport,
    /// Bearer tokens clients without a certificate may present.
    pub tokens: Tokens,
    /// Most live transactions at once, over all principals.
    pub max_live: usize,
    /// Most live transactions one principal may hold at once.
    pub max_live_per_principal: usize,
    /// Most open branches one principal may hold on one participant.
    pub max_branches_per_principal: usize,
    /// Most open client connections; more wait in the kernel's backlog.
    pub max_client_connections: usize,
    /// Most bytes of results in one answer to a client (Execute or
    /// Submit); clients must accept messages this large (plus 64 KiB).
    pub max_result_bytes: u64,
    /// (name, URL) of every participant.
    pub participants: Vec<(String, String)>,
    /// Deadline of a transaction that does not ask for one.
    pub default_timeout: Duration,
    /// Longest deadline a client may ask for.
    pub max_timeout: Duration,
    /// How long a committing client waits for phase 2 before it is answered
    /// with the participants still pending named.
    pub reply_wait: Duration,
    /// On SIGTERM, how long live transactions may run to their end before
    /// those still running statements are rolled back.
    pub drain_timeout: Duration,
}

/// The TOML file: every key optional; flags win.
///
/// ```toml
/// name = "tc"
/// listen = "127.0.0.1:7500"
/// internal_listen = "127.0.0.1:7600"
/// admin_listen = "127.0.0.1:7700"
/// tls_ca = "/etc/tandem/ca.pem"
/// tls_cert = "/etc/tandem/tc.pem"
/// tls_key = "/etc/tandem/tc.key"
/// default_timeout_ms = 10000
/// [participants]
/// orders = "https://127.0.0.1:7501"
/// inventory = "https://127.0.0.1:7502"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub name: Option<String>,
    pub listen: Option<SocketAddr>,
    pub internal_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tokens: Option<PathBuf>,
    pub max_live_transactions: Option<usize>,
    pub max_live_per_principal: Option<usize>,
    pub max_branches_per_principal: Option<usize>,
    pub max_result_bytes: Option<u64>,
    pub max_client_connections: Option<usize>,
    #[serde(default)]
    pub participants: std::collections::BTreeMap<String, String>,
    pub default_timeout_ms: Option<u64>,
    pub max_timeout_ms: Option<u64>,
    pub reply_wait_ms: Option<u64>,
    pub drain_timeout_ms: Option<u64>,
    pub otlp_endpoint: Option<String>,
    pub trace_sample_ratio: Option<f64>,
}

impl FileConfig {
    pub fn load(path: &std::path::Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidArgument(format!("cannot read config {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::InvalidArgument(format!("config {}: {e}", path.display())))
    }
}

/// Parses `NAME=URL`.
pub fn parse_participant(spec: &str) -> Result<(String, String), String> {
    let (name, url) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec:?} is not NAME=URL"))?;
    if name.is_empty() || url.is_empty() {
        return Err(format!("{spec:?} is not NAME=URL"));
    }
    Ok((name.to_owned(), url.to_owned()))
}

impl Config {
    pub fn validate(&self) -> Result<(), Error> {
        ids::validate_name(&self.name)?;
        if self.participants.len() > 256 {
            return Err(Error::InvalidArgument(
                "at most 256 participants (a transaction's participant set is written into each branch's marker \
                 row)"
                    .to_owned(),
            ));
        }
        if self.participants.is_empty() {
            return Err(Error::InvalidArgument(
                "no participants configured (--participant NAME=URL)".to_owned(),
            ));
        }
        for (name, url) in &self.participants {
            // The name is the participant's TLS identity and its XA bqual.
            tandem_common::names::validate_name(name)
                .map_err(|e| Error::InvalidArgument(format!("participant {name:?}: {e}")))?;
            self.transport
                .check_url(&format!("participant {name}"), url)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        for addr in [self.listen, self.internal_listen] {
            self.transport
                .check_listen(addr)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        self.transport
            .check_me(Role::Coordinator, &self.name)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        if self.max_live == 0 || self.max_live_per_principal == 0 || self.max_branches_per_principal == 0 {
            return Err(Error::InvalidArgument(
                "the live-transaction limits must be positive".to_owned(),
            ));
        }
        if self.default_timeout.is_zero() || self.default_timeout > self.max_timeout {
            return Err(Error::InvalidArgument(
                "the default timeout must be positive and at most the maximum timeout".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployed_example_config_parses() {
        let file: FileConfig =
            toml::from_str(include_str!("../../deploy/coordinator.example.toml")).expect("example parses");
        assert_eq!(file.name.as_deref(), Some("tc"));
        assert_eq!(file.participants.len(), 2);
        assert_eq!(file.participants["orders"], "https://10.0.0.11:7501");
        assert!(
            toml::from_str::<FileConfig>("nmae = \"typo\"").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn participant_flags_are_name_equals_url() {
        assert_eq!(
            parse_participant("orders=http://127.0.0.1:7501"),
            Ok(("orders".to_owned(), "http://127.0.0.1:7501".to_owned()))
        );
        for bad in ["orders", "=http://x", "orders="] {
            assert!(parse_participant(bad).is_err(), "{bad}");
        }
    }
}
