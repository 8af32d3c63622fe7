//! How a transaction no replica holds in memory ended, from the
//! participants alone: it committed iff every branch of its participant
//! set is durably YES (prepared, or its marker row committed).
//!
//! Each branch is asked with `Inquire`, which fences a branch that is not
//! there: afterwards it can never prepare, so a NONE answer is a durable
//! NO and one is enough to abort. A *probe* only looks: a branch that is
//! not there is ABSENT, which decides nothing (it may still begin). Only
//! callers with the right to end a transaction fence it: the participant
//! that holds one of its prepared branches, and operators; a client's
//! `GetTransaction` probes, so it can never abort another principal's
//! transaction, nor one not begun yet. Replicas may resolve the same
//! transaction at once, and the live one may still be running it: InnoDB's
//! unique key on the marker row arbitrates between a branch's prepare and a
//! fence, so every resolver reaches the same answer.
//!
//! One combination cannot come from the protocol: a branch whose writes
//! committed (phase 2 only follows the commit point) beside a branch that
//! is not there. Someone rolled a prepared branch back by hand, or a
//! database lost it. That is reported as a heuristic hazard of a committed
//! transaction, never resolved away as an abort.

use std::collections::{HashMap, HashSet};

use tandem_proto::v1::{self as pb, BranchFate, MarkedTransaction};
use tonic::{Code, Status};

use crate::participants::{Inquired, Participants};

/// What the participants say of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// `hazard`: not empty when a branch of the committed transaction is
    /// gone (see the module's notes), naming it.
    Committed { hazard: String },
    /// With which branch is fenced off (or never began).
    Aborted(String),
    /// Not decided yet (a branch still running), or some participant did
    /// not answer: ask again.
    Pending(String),
    /// The participants refuse it: no replica of this cluster issued it.
    NotOurs,
    /// (probe) No participant has any record of it: it has not prepared
    /// anywhere so far.
    NoRecord,
}

type Answer = Result<Inquired, String>;

/// Resolves `gtrid` over its participant set, when known (the asking
/// branch's marker row carries it); otherwise over every configured
/// participant, taking the set from any marker row found. A participant
/// set that names an unconfigured participant cannot be resolved here.
pub async fn resolve(participants: &Participants, gtrid: &str, set: &[String], probe: bool) -> Resolved {
    let asked: Vec<String> = if set.is_empty() {
        participants.all().map(|p| p.name.clone()).collect()
    } else {
        set.to_vec()
    };
    let answers: Vec<(&str, Result<Inquired, Status>)> =
        futures::future::join_all(asked.iter().map(|name| async move {
            let answer = match participants.get(name) {
                Ok(p) => p.inquire(gtrid, probe).await,
                Err(err) => Err(Status::not_found(err.to_string())),
            };
            (name.as_str(), answer)
        }))
        .await;
    if answers
        .iter()
        .all(|(_, a)| matches!(a, Err(s) if s.code() == Code::PermissionDenied))
    {
        return Resolved::NotOurs;
    }
    let answers: Vec<(&str, Answer)> = answers
        .into_iter()
        .map(|(name, a)| (name, a.map_err(|s| s.message().to_owned())))
        .collect();
    let set: Vec<String> = if set.is_empty() {
        let found = answers.iter().find_map(|(_, answer)| match answer {
            Ok(a) if matches!(a.fate, BranchFate::Prepared | BranchFate::Committed) && !a.participants.is_empty() => {
                Some(a.participants.clone())
            }
            _ => None,
        });
        match found {
            Some(set) => set,
            // Committed writes (a marker row without a set) mean the
            // transaction committed: writes commit only after the commit
            // point.
            None if answers
                .iter()
                .any(|(_, a)| matches!(a, Ok(a) if a.fate == BranchFate::Committed && !a.read_only)) =>
            {
                return Resolved::Committed { hazard: String::new() };
            }
            // No marker row anywhere: nothing is prepared or committed. It
            // aborted if every participant fenced it; a branch still
            // running may yet prepare.
            None => {
                return match answers.iter().find(|(_, a)| !is_fenced(a) && !is_absent(a)) {
                    Some((name, answer)) => Resolved::Pending(unsure(gtrid, name, answer)),
                    None if answers.iter().any(|(_, a)| is_absent(a)) => Resolved::NoRecord,
                    None => Resolved::Aborted(format!(
                        "no participant has a branch of {gtrid}, and each fenced it off"
                    )),
                };
            }
        }
    } else {
        set.to_vec()
    };
    decide(gtrid, &set, &answers)
}

fn is_fenced(answer: &Answer) -> bool {
    matches!(answer, Ok(a) if a.fate == BranchFate::None)
}

fn is_absent(answer: &Answer) -> bool {
    matches!(answer, Ok(a) if a.fate == BranchFate::Absent)
}

/// Why a participant's answer decides nothing yet.
fn unsure(gtrid: &str, name: &str, answer: &Answer) -> String {
    match answer {
        Err(why) => format!("participant {name} did not answer about {gtrid}: {why}"),
        Ok(a) if a.fate == BranchFate::Absent => {
            format!("participant {name} has no record of {gtrid} yet: it has not decided")
        }
        Ok(_) => format!("transaction {gtrid} is still running on participant {name}"),
    }
}

/// The verdict over `set` from the answers (pure).
fn decide(gtrid: &str, set: &[String], answers: &[(&str, Answer)]) -> Resolved {
    let answer_of = |name: &str| answers.iter().find(|(asked, _)| *asked == name).map(|(_, a)| a);
    let wrote_committed = set
        .iter()
        .find(|name| matches!(answer_of(name), Some(Ok(a)) if a.fate == BranchFate::Committed && !a.read_only));
    let mut pending = None;
    let mut gone = Vec::new();
    for name in set {
        match answer_of(name) {
            Some(Ok(a)) if matches!(a.fate, BranchFate::Prepared | BranchFate::Committed) => {}
            Some(answer) if is_fenced(answer) => {
                if wrote_committed.is_none() {
                    return Resolved::Aborted(format!(
                        "participant {name} has no branch of {gtrid}, and it is fenced off: it never prepared"
                    ));
                }
                gone.push(name.as_str());
            }
            Some(answer) => {
                pending.get_or_insert_with(|| unsure(gtrid, name, answer));
            }
            None => {
                pending.get_or_insert_with(|| {
                    format!("participant {name} of {gtrid}'s participant set is not configured here")
                });
            }
        }
    }
    if let Some(why) = pending {
        return Resolved::Pending(why);
    }
    let hazard = match (wrote_committed, gone.as_slice()) {
        (Some(committed), [_, ..]) => format!(
            "heuristic hazard: {gtrid} committed on participant {committed}, but its branch on {} is gone (rolled \
             back by hand, or lost by its database)",
            gone.join(", ")
        ),
        _ => String::new(),
    };
    Resolved::Committed { hazard }
}

/// Which of `transactions` (marker rows a participant would collect) are
/// not settled for good: a branch of the set is still prepared or live at
/// its participant, or that participant could not be asked. Every
/// participant of their sets is asked at once.
pub async fn unsettled(participants: &Participants, transactions: &[MarkedTransaction]) -> Vec<String> {
    let mut names: Vec<&str> = transactions
        .iter()
        .flat_map(|t| t.participants.iter().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    let views = futures::future::join_all(names.into_iter().map(|name| async move {
        let view = match participants.get(name) {
            Ok(p) => match p.unfinished().await {
                Ok(gtrids) => Some(gtrids),
                Err(status) => {
                    tracing::debug!(participant = name, error = %status.message(), "cannot list unfinished branches");
                    None
                }
            },
            Err(_) => None,
        };
        (name.to_owned(), view)
    }))
    .await
    .into_iter()
    .collect();
    still_unsettled(transactions, &views)
}

/// The verdict of [`unsettled`] from what each participant said (`None`:
/// it did not answer, or is not configured here) (pure).
fn still_unsettled(
    transactions: &[MarkedTransaction],
    views: &HashMap<String, Option<HashSet<String>>>,
) -> Vec<String> {
    transactions
        .iter()
        .filter(|t| {
            t.participants.is_empty()
                || t.participants.iter().any(|name| match views.get(name) {
                    Some(Some(unfinished)) => unfinished.contains(&t.gtrid),
                    Some(None) | None => true,
                })
        })
        .map(|t| t.gtrid.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn answer(fate: BranchFate, read_only: bool) -> Answer {
        Ok(Inquired {
            fate,
            participants: set(&["a", "b"]),
            read_only,
        })
    }

    #[test]
    fn committed_iff_every_branch_of_the_set_is_durably_yes() {
        let ab = set(&["a", "b"]);
        let all_yes = [
            ("a", answer(BranchFate::Prepared, false)),
            ("b", answer(BranchFate::Committed, true)),
        ];
        assert_eq!(
            decide("g", &ab, &all_yes),
            Resolved::Committed { hazard: String::new() }
        );
        // One fenced branch aborts, whatever the others say.
        let fenced = [
            ("a", Err("unreachable".to_owned())),
            ("b", answer(BranchFate::None, false)),
        ];
        assert!(matches!(decide("g", &ab, &fenced), Resolved::Aborted(why) if why.contains("participant b")));
        // A read-only confirmation beside a fence is a plain abort.
        let reader_and_fence = [
            ("a", answer(BranchFate::Committed, true)),
            ("b", answer(BranchFate::None, false)),
        ];
        assert!(matches!(decide("g", &ab, &reader_and_fence), Resolved::Aborted(_)));
        // Anything not durable yet is pending, never an abort.
        for unsure in [answer(BranchFate::Active, false), Err("timeout".to_owned())] {
            let answers = [("a", answer(BranchFate::Prepared, false)), ("b", unsure)];
            assert!(matches!(decide("g", &ab, &answers), Resolved::Pending(_)));
        }
        // A branch of the set that was not asked (not configured).
        let answers = [("a", answer(BranchFate::Prepared, false))];
        assert!(matches!(decide("g", &ab, &answers), Resolved::Pending(why) if why.contains("not configured")));
        // Branches outside the set do not count.
        let answers = [
            ("a", answer(BranchFate::Prepared, false)),
            ("b", answer(BranchFate::Prepared, false)),
            ("c", answer(BranchFate::None, false)),
        ];
        assert_eq!(
            decide("g", &ab, &answers),
            Resolved::Committed { hazard: String::new() }
        );
    }

    #[test]
    fn a_transaction_is_settled_only_once_no_branch_of_its_set_is_prepared_or_live() {
        let marked = |gtrid: &str, names: &[&str]| MarkedTransaction {
            gtrid: gtrid.to_owned(),
            participants: set(names),
        };
        let transactions = [
            marked("done", &["a", "b"]),
            marked("prepared-at-b", &["a", "b"]),
            marked("live-at-a", &["a", "b"]),
            marked("c-down", &["a", "c"]),
            marked("d-unknown", &["a", "d"]),
            marked("no-set", &[]),
            marked("only-a", &["a"]),
        ];
        let unfinished = |gtrids: &[&str]| Some(gtrids.iter().map(|g| (*g).to_owned()).collect::<HashSet<_>>());
        let views = HashMap::from([
            ("a".to_owned(), unfinished(&["live-at-a", "elsewhere"])),
            ("b".to_owned(), unfinished(&["prepared-at-b"])),
            ("c".to_owned(), None),
        ]);
        assert_eq!(
            still_unsettled(&transactions, &views),
            set(&["prepared-at-b", "live-at-a", "c-down", "d-unknown", "no-set"])
        );
    }

    #[test]
    fn committed_writes_beside_a_missing_branch_are_a_hazard_not_an_abort() {
        let ab = set(&["a", "b"]);
        let answers = [
            ("a", answer(BranchFate::Committed, false)),
            ("b", answer(BranchFate::None, false)),
        ];
        match decide("g", &ab, &answers) {
            Resolved::Committed { hazard } => {
                assert!(
                    hazard.contains("heuristic hazard") && hazard.contains(" b "),
                    "{hazard}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

/// The audit action of an operator's hazard resolution.
pub const RESOLVE_HAZARD: &str = "resolve-hazard";

/// How an operator resolved `gtrid`'s hazard, from the participants'
/// audit tables (the first resolution recorded), if one did. `answers`
/// are the participants' audit trails; `recorded` whether any call added
/// the entry now.
pub fn resolution_of(gtrid: &str, answers: &[(String, Vec<pb::AuditEntry>)]) -> Option<pb::HazardResolution> {
    let mut first: Option<&pb::AuditEntry> = None;
    let mut recorded_on = Vec::new();
    for (participant, entries) in answers {
        if let Some(entry) = entries.iter().find(|e| e.action == RESOLVE_HAZARD) {
            recorded_on.push(participant.clone());
            if first.is_none_or(|f| entry.at_unix_ms < f.at_unix_ms) {
                first = Some(entry);
            }
        }
    }
    let first = first?;
    recorded_on.sort();
    Some(pb::HazardResolution {
        txn_id: gtrid.to_owned(),
        operator: first.operator.clone(),
        reason: first.reason.clone(),
        resolved_unix_ms: first.at_unix_ms,
        recorded_on,
        failed: Vec::new(),
        already: true,
    })
}

/// Reads how an operator resolved `gtrid`'s hazard from every reachable
/// participant's audit table, if one did.
pub async fn hazard_resolution(participants: &Participants, gtrid: &str) -> Option<pb::HazardResolution> {
    let asked = futures::future::join_all(participants.all().map(|p| async move {
        let name = p.info().name;
        (name, p.audit(gtrid, None).await)
    }))
    .await;
    let answers: Vec<(String, Vec<pb::AuditEntry>)> = asked
        .into_iter()
        .filter_map(|(name, answer)| answer.ok().map(|a| (name, a.entries)))
        .collect();
    resolution_of(gtrid, &answers)
}
