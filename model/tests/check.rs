//! Runs the model checker over the protocol: the correct rules hold in
//! every reachable state, and each deliberately broken rule is caught.
//!
//! Each kind of fault gets an exhaustive run (every reachable state); all
//! of them together are explored to a bounded depth. `TANDEM_MODEL_DEPTH`
//! explores the combined run further.

use stateright::{Checker, HasDiscoveries, Model};
use tandem_model::{Bug, Protocol};

const PROPERTIES: [&str; 5] = [
    "atomic: a committed branch means every branch is durably YES",
    "a fenced branch never prepares or commits",
    "no heuristic hazard",
    "every answer agrees with the final state",
    "everything ends once faults stop",
];

/// How deep CI explores the run with every kind of fault at once.
const COMBINED_DEPTH: usize = 14;

fn faults(crashes: u8, losses: u8, duplicates: u8) -> Protocol {
    Protocol {
        crashes,
        losses,
        duplicates,
        ..Protocol::default()
    }
}

fn check(protocol: Protocol, depth: Option<usize>) -> impl Checker<Protocol> {
    let checker = protocol.checker();
    let checker = match depth {
        Some(depth) => checker.target_max_depth(depth),
        None => checker,
    };
    let checker = checker.spawn_bfs().join();
    eprintln!(
        "{} states, {} unique, depth {}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth()
    );
    checker
}

#[test]
fn every_property_holds_with_crashes() {
    check(faults(1, 0, 0), None).assert_properties();
}

#[test]
fn every_property_holds_with_lost_and_duplicated_messages() {
    check(faults(0, 1, 1), None).assert_properties();
}

#[test]
fn every_property_holds_with_a_held_reader() {
    check(
        Protocol {
            reader: Some(1),
            ..faults(1, 0, 0)
        },
        None,
    )
    .assert_properties();
}

#[test]
fn every_property_holds_with_every_fault_at_once() {
    let depth = std::env::var("TANDEM_MODEL_DEPTH")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(COMBINED_DEPTH);
    check(faults(1, 1, 1), Some(depth)).assert_properties();
}

/// The properties the checker finds broken under `bug`.
fn caught(bug: Bug, reader: Option<usize>) -> Vec<&'static str> {
    let protocol = Protocol {
        reader,
        bug: Some(bug),
        ..faults(1, 1, 0)
    };
    let checker = protocol
        .checker()
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_bfs()
        .join();
    let broken: Vec<_> = PROPERTIES
        .into_iter()
        .filter(|name| checker.discovery(name).is_some())
        .collect();
    for name in &broken {
        eprintln!(
            "{bug:?} breaks {name:?}:\n{:?}",
            checker.discovery(name).map(|p| p.into_actions())
        );
    }
    broken
}

#[test]
fn aborting_on_a_timeout_without_a_fence_is_caught() {
    assert_ne!(caught(Bug::AbortWithoutFence, None), Vec::<&str>::new());
}

#[test]
fn a_no_vote_without_a_fence_is_caught() {
    assert_ne!(caught(Bug::NoVoteWithoutFence, None), Vec::<&str>::new());
}

#[test]
fn releasing_a_held_reader_unconfirmed_is_caught() {
    assert_ne!(caught(Bug::ReleaseReader, Some(1)), Vec::<&str>::new());
}

#[test]
fn an_inquiry_that_does_not_fence_is_caught() {
    assert_ne!(caught(Bug::InquireWithoutFence, None), Vec::<&str>::new());
}

/// Without retries a begin reaches each participant at most once, so a NO
/// vote needs no fence of its own: a resolver that later asks fences the
/// branch anyway. (The participant fences NO votes of keyed transactions
/// only.)
#[test]
fn without_a_retry_a_no_vote_needs_no_fence() {
    let protocol = Protocol {
        submits: 1,
        bug: Some(Bug::NoVoteWithoutFence),
        ..faults(1, 1, 0)
    };
    let checker = check(protocol, None);
    for name in PROPERTIES {
        assert!(checker.discovery(name).is_none(), "{name}");
    }
}
