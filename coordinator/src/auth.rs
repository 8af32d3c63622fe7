//! Who is calling (DESIGN.md §8).
//!
//! - The client API serves clients and operators: a certificate the
//!   cluster CA signed as `<name>.client.tandem` or
//!   `<name>.operator.tandem`, or a bearer token from the token file.
//!   The principal owns the transactions it begins ([`Caller`]).
//! - The internal API serves the configured participants only, by their
//!   certificates ([`Asker`]).
//!
//! Both are tonic interceptors: they run before any handler and put who
//! the caller is into the request's extensions.

use std::collections::BTreeSet;
use std::sync::Arc;

use tandem_common::tokens::Tokens;
use tandem_common::{Identity, Role};
use tonic::{Request, Status};

/// The principal behind a client API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Identity,
}

impl Caller {
    /// An operator sees every principal's transactions.
    pub fn is_operator(&self) -> bool {
        self.principal.role == Role::Operator
    }

    /// Whether this caller may see a transaction owned by `owner` (`None`:
    /// its owner is not known).
    pub fn sees(&self, owner: Option<&Identity>) -> bool {
        self.is_operator() || owner == Some(&self.principal)
    }

    /// The caller the interceptor found.
    pub fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        tandem_common::serve::extension(request)
    }
}

/// The principal of plaintext development mode callers without a token.
pub const ANONYMOUS: &str = "anonymous";

/// Authenticates client API requests.
#[derive(Clone)]
pub struct ClientAuth {
    tokens: Arc<Tokens>,
    /// Plaintext development mode: a caller without a token is the client
    /// `anonymous`.
    plaintext: bool,
}

impl ClientAuth {
    pub fn new(tokens: Tokens, plaintext: bool) -> Self {
        Self {
            tokens: Arc::new(tokens),
            plaintext,
        }
    }

    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if let Some(value) = request.metadata().get("authorization") {
            let text = value
                .to_str()
                .map_err(|_| Status::unauthenticated("the authorization header is not ASCII text"))?;
            let token = text
                .strip_prefix("Bearer ")
                .ok_or_else(|| Status::unauthenticated("the authorization header must be `Bearer <token>`"))?;
            // The token itself is never logged or echoed.
            return match self.tokens.principal(token.trim()) {
                Some(principal) => Ok(Caller {
                    principal: principal.clone(),
                }),
                None => Err(Status::unauthenticated("unknown bearer token")),
            };
        }
        match Identity::of_peer(request) {
            Some(principal) if matches!(principal.role, Role::Client | Role::Operator) => Ok(Caller { principal }),
            Some(other) => Err(Status::permission_denied(format!(
                "{other} may not call the client API: it serves client and operator identities"
            ))),
            None if self.plaintext => Ok(Caller {
                principal: Identity {
                    role: Role::Client,
                    name: ANONYMOUS.to_owned(),
                },
            }),
            None => Err(Status::unauthenticated(
                "no client identity: present a certificate the cluster CA signed as <name>.client.tandem, or \
                 `authorization: Bearer <token>`",
            )),
        }
    }
}

impl tonic::service::Interceptor for ClientAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.authenticate(&request)?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The participant behind an internal API request: its name, or `None` in
/// plaintext development mode (no identities to check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asker(pub Option<String>);

impl Asker {
    pub fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        tandem_common::serve::extension(request)
    }
}

/// Admits the configured participants to the internal API.
#[derive(Clone)]
pub struct ParticipantAuth {
    participants: Arc<BTreeSet<String>>,
    plaintext: bool,
}

impl ParticipantAuth {
    pub fn new(participants: impl IntoIterator<Item = String>, plaintext: bool) -> Self {
        Self {
            participants: Arc::new(participants.into_iter().collect()),
            plaintext,
        }
    }

    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Asker, Status> {
        if self.plaintext {
            return Ok(Asker(None));
        }
        match Identity::of_peer(request) {
            Some(Identity {
                role: Role::Participant,
                name,
            }) if self.participants.contains(&name) => Ok(Asker(Some(name))),
            Some(other) => Err(Status::permission_denied(format!(
                "{other} may not call the internal API: it serves this coordinator's participants only"
            ))),
            None => Err(Status::unauthenticated(
                "the internal API needs a participant certificate",
            )),
        }
    }
}

impl tonic::service::Interceptor for ParticipantAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let asker = self.authenticate(&request)?;
        request.extensions_mut().insert(asker);
        Ok(request)
    }
}
