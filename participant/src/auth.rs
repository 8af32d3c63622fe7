//! Who may call this participant (DESIGN.md §8): only the coordinators it
//! is configured with, by the names their certificates carry, and only
//! for requests meant for this participant.
//!
//! The configured coordinators are replicas of one cluster: any of them
//! may resolve (inquire, commit, roll back) a transaction another issued,
//! so each acts on the gtrids any of them issued (they start with the
//! issuer's name, see [`gtrid_coordinator`]). No caller outside the
//! cluster can reach a branch, and no branch can begin under an id no
//! configured coordinator could have issued.

use std::collections::BTreeSet;
use std::sync::Arc;

use tandem_common::{Identity, Role};
use tonic::{Request, Status};

/// Names the participant a request is meant for (sent by the coordinator).
pub const PARTICIPANT_HEADER: &str = "x-tandem-participant";

/// The coordinator behind a request: its name, or `None` in plaintext
/// development mode (then any configured coordinator's gtrids pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calling(pub Option<String>);

impl Calling {
    pub fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        tandem_common::serve::extension(request)
    }
}

/// The coordinator name a gtrid starts with (`<coordinator>-<epoch>-<seq>`).
pub fn gtrid_coordinator(gtrid: &str) -> &str {
    gtrid.split('-').next().unwrap_or("")
}

#[derive(Clone)]
pub struct CoordinatorAuth {
    me: String,
    coordinators: Arc<BTreeSet<String>>,
    plaintext: bool,
}

impl CoordinatorAuth {
    pub fn new(me: &str, coordinators: impl IntoIterator<Item = String>, plaintext: bool) -> Self {
        Self {
            me: me.to_owned(),
            coordinators: Arc::new(coordinators.into_iter().collect()),
            plaintext,
        }
    }

    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Calling, Status> {
        let calling = if self.plaintext {
            Calling(None)
        } else {
            match Identity::of_peer(request) {
                Some(Identity {
                    role: Role::Coordinator,
                    name,
                }) if self.coordinators.contains(&name) => Calling(Some(name)),
                Some(other) => {
                    return Err(Status::permission_denied(format!(
                        "participant {} serves coordinators {} only, not {other}",
                        self.me,
                        self.names()
                    )));
                }
                None => {
                    return Err(Status::unauthenticated(
                        "the participant API needs a coordinator certificate",
                    ));
                }
            }
        };
        match request.metadata().get(PARTICIPANT_HEADER).map(|v| v.to_str()) {
            Some(Ok(name)) if name == self.me => Ok(calling),
            Some(Ok(name)) => Err(Status::failed_precondition(format!(
                "this is participant {}, not {name}: check the coordinator's URL for {name}",
                self.me
            ))),
            _ => Err(Status::invalid_argument(format!(
                "requests must name the participant they are meant for ({PARTICIPANT_HEADER})"
            ))),
        }
    }

    /// Whether a (configured, authenticated) coordinator may act on
    /// `gtrid`: one of the configured replicas issued it, or it is derived
    /// from a client key (any replica may run those).
    pub fn check_gtrid(&self, _calling: &Calling, gtrid: &str) -> Result<(), Status> {
        if self.coordinators.contains(gtrid_coordinator(gtrid)) || tandem_common::names::is_keyed_gtrid(gtrid) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "gtrid {gtrid:?} was not issued by any of this participant's coordinators ({}); they act only on \
                 their own transactions",
                self.names()
            )))
        }
    }

    fn names(&self) -> String {
        self.coordinators
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl tonic::service::Interceptor for CoordinatorAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let calling = self.authenticate(&request)?;
        request.extensions_mut().insert(calling);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinators_act_only_on_their_clusters_gtrids() {
        let auth = CoordinatorAuth::new("alpha", ["tc".to_owned(), "tc2".to_owned()], false);
        let tc = Calling(Some("tc".to_owned()));
        // A replica resolves what another replica issued.
        assert!(auth.check_gtrid(&tc, "tc-1-5").is_ok());
        assert!(auth.check_gtrid(&tc, "tc2-1-5").is_ok());
        assert!(
            auth.check_gtrid(&tc, &tandem_common::names::keyed_gtrid("client a", "k"))
                .is_ok()
        );
        for bad in ["tcx-1-1", "evil-1-1", "", "-1-1", "key-1-1"] {
            assert!(auth.check_gtrid(&tc, bad).is_err(), "{bad}");
        }
        let plaintext = CoordinatorAuth::new("alpha", ["tc".to_owned()], true);
        assert!(plaintext.check_gtrid(&Calling(None), "tc-9-9").is_ok());
        assert!(plaintext.check_gtrid(&Calling(None), "other-9-9").is_err());
    }
}
