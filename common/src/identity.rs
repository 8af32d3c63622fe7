//! Identities: who a peer is, from the name its certificate carries.
//!
//! Every tandem certificate names its holder in a DNS subject alternative
//! name `<name>.<role>.tandem`, e.g. `tc.coordinator.tandem`,
//! `alpha.participant.tandem`, `shop.client.tandem`,
//! `alice.operator.tandem`. The role is part of the name, so a
//! certificate issued to a participant can never pass as a coordinator or
//! a client, whatever the CA also signed.

use std::fmt;

use tonic::transport::CertificateDer;

use crate::names::validate_name;

/// The last label of every tandem identity name.
pub const DOMAIN: &str = "tandem";

/// What an identity may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Runs two-phase commit: calls participants.
    Coordinator,
    /// Wraps one database: calls a coordinator's internal API.
    Participant,
    /// Runs its own transactions through the client API.
    Client,
    /// A client that may also see and act on every client's transactions.
    Operator,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Coordinator, Role::Participant, Role::Client, Role::Operator];

    pub fn label(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Participant => "participant",
            Role::Client => "client",
            Role::Operator => "operator",
        }
    }

    pub fn parse(label: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.label() == label)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A named holder of a role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub role: Role,
    pub name: String,
}

impl Identity {
    /// An identity; the name must be usable inside a DNS name.
    pub fn new(role: Role, name: &str) -> Result<Self, String> {
        validate_name(name)?;
        Ok(Self {
            role,
            name: name.to_owned(),
        })
    }

    /// The DNS name its certificate carries: `<name>.<role>.tandem`.
    pub fn dns_name(&self) -> String {
        format!("{}.{}.{DOMAIN}", self.name, self.role)
    }

    /// Reads `<name>.<role>.tandem` (ASCII case of the suffix ignored).
    pub fn from_dns_name(dns: &str) -> Option<Self> {
        let (rest, domain) = dns.rsplit_once('.')?;
        if !domain.eq_ignore_ascii_case(DOMAIN) {
            return None;
        }
        let (name, role) = rest.rsplit_once('.')?;
        let role = Role::parse(&role.to_ascii_lowercase())?;
        Identity::new(role, name).ok()
    }

    /// The tandem identity an end-entity certificate (DER) carries: its
    /// first DNS name of the form `<name>.<role>.tandem`. The certificate
    /// must already be verified (the TLS handshake did that).
    pub fn from_cert(der: &CertificateDer<'_>) -> Option<Self> {
        let cert = webpki::EndEntityCert::try_from(der).ok()?;
        one_identity(cert.valid_dns_names())
    }

    /// The identity of the TLS peer of a request, if it presented a
    /// certificate the handshake verified.
    pub fn of_peer<T>(request: &tonic::Request<T>) -> Option<Self> {
        let certs = request.peer_certs()?;
        Identity::from_cert(certs.first()?)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.name)
    }
}

/// The one tandem identity among a certificate's DNS names. A certificate
/// that names two (say a client and a coordinator), or any wildcard under
/// `.tandem`, names none: whoever issued it, it must not pass as either.
fn one_identity<'a>(names: impl Iterator<Item = &'a str>) -> Option<Identity> {
    let mut found = None;
    for name in names {
        let tandem = name
            .rsplit('.')
            .next()
            .is_some_and(|last| last.eq_ignore_ascii_case(DOMAIN));
        if !tandem {
            // Host names and addresses for tools that dial by address.
            continue;
        }
        let identity = Identity::from_dns_name(name)?;
        if found.replace(identity).is_some() {
            return None;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_dns_names() {
        for role in Role::ALL {
            let id = Identity::new(role, "shop_1").unwrap();
            assert_eq!(Identity::from_dns_name(&id.dns_name()), Some(id));
        }
        assert_eq!(
            Identity::from_dns_name("alpha.Participant.TANDEM"),
            Some(Identity::new(Role::Participant, "alpha").unwrap())
        );
    }

    #[test]
    fn a_certificate_names_one_identity_or_none() {
        let one = |names: &[&str]| one_identity(names.iter().copied());
        assert_eq!(
            one(&["localhost", "tc.coordinator.tandem", "10.0.0.1"]),
            Some(Identity::new(Role::Coordinator, "tc").unwrap())
        );
        assert_eq!(one(&["x.client.tandem", "tc.coordinator.tandem"]), None);
        assert_eq!(one(&["tc.coordinator.tandem", "*.coordinator.tandem"]), None);
        assert_eq!(one(&["bad.name.here.tandem", "tc.coordinator.tandem"]), None);
        assert_eq!(one(&["localhost"]), None);
    }

    #[test]
    fn other_names_are_not_identities() {
        for dns in [
            "alpha.participant.example",
            "participant.tandem",
            "a.b.participant.tandem",
            "alpha.admin.tandem",
            "*.participant.tandem",
            "-x.client.tandem",
            "localhost",
            "",
        ] {
            assert_eq!(Identity::from_dns_name(dns), None, "{dns}");
        }
        assert!(validate_name(&"n".repeat(64)).is_err());
        assert!(validate_name("a:b").is_err());
    }
}
