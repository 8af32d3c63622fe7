//! Tests of the transaction state machine (`super`): the paths the
//! protocol takes, and every request in every state.

use super::*;

fn s(v: &str) -> String {
    v.to_owned()
}

fn ok_vote(p: &str, vote: Vote) -> Event {
    Event::Voted {
        participant: s(p),
        result: Ok(vote),
    }
}

fn phase2_ok(p: &str) -> Event {
    Event::Phase2Done {
        participant: s(p),
        result: Ok(()),
    }
}

fn executed(e: &mut Engine, p: &str) {
    e.execute(p).unwrap();
    assert!(
        e.on(Event::Executed {
            participant: s(p),
            result: Ok(())
        })
        .is_empty()
    );
}

fn two_branch() -> Engine {
    let mut e = Engine::new();
    executed(&mut e, "a");
    executed(&mut e, "b");
    e
}

fn replies(actions: &[Action]) -> Vec<&Outcome> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reply(o) => Some(o),
            _ => None,
        })
        .collect()
}

#[test]
fn happy_path_prepares_in_parallel_logs_then_commits() {
    let mut e = two_branch();
    assert_eq!(
        e.commit().unwrap(),
        vec![Action::Prepare(s("a")), Action::Prepare(s("b"))]
    );
    assert!(e.on(ok_vote("a", Vote::Yes)).is_empty());
    assert_eq!(
        e.on(ok_vote("b", Vote::Yes)),
        vec![Action::LogCommit(vec![s("a"), s("b")])]
    );
    assert_eq!(e.state(), State::Logging);
    // Nothing reaches a participant before the decision is durable.
    assert_eq!(
        e.on(Event::Logged),
        vec![Action::StartReplyWait, Action::Commit(s("a")), Action::Commit(s("b"))]
    );
    assert!(e.on(phase2_ok("a")).is_empty());
    assert_eq!(
        e.on(phase2_ok("b")),
        vec![Action::LogEnd, Action::Reply(Outcome::Committed)]
    );
    assert!(e.is_done());
}

#[test]
fn the_deadline_cannot_abort_once_the_decision_is_being_logged() {
    let mut e = two_branch();
    e.commit().unwrap();
    e.on(ok_vote("a", Vote::Yes));
    e.on(ok_vote("b", Vote::Yes));
    assert!(e.on(Event::DeadlineExpired).is_empty());
    assert_eq!(e.state(), State::Logging);
    e.on(Event::Logged);
    assert!(e.on(Event::DeadlineExpired).is_empty());
    assert_eq!(e.state(), State::Committing);
    assert!(e.rollback().is_err());
}

#[test]
fn a_no_vote_aborts_and_rolls_back_the_others_after_their_votes() {
    let mut e = two_branch();
    e.commit().unwrap();
    // b's prepare is still in flight: its rollback waits for the answer.
    let actions = e.on(ok_vote("a", Vote::No(s("guard failed"))));
    assert!(actions.iter().all(|a| !matches!(a, Action::Rollback(_))), "{actions:?}");
    assert_eq!(e.state(), State::Aborting);
    let actions = e.on(ok_vote("b", Vote::Yes));
    assert_eq!(actions, vec![Action::Rollback(s("b"))]);
    let actions = e.on(phase2_ok("b"));
    assert_eq!(replies(&actions).len(), 1);
    assert!(matches!(replies(&actions)[0], Outcome::Aborted(a) if a.reason == "guard failed"));
    assert_eq!(e.state(), State::Aborted);
}

#[test]
fn a_lost_prepare_reply_rolls_back_that_branch_too() {
    let mut e = two_branch();
    e.commit().unwrap();
    e.on(ok_vote("a", Vote::Yes));
    let actions = e.on(Event::Voted {
        participant: s("b"),
        result: Err(Failure::unknown("participant b unreachable")),
    });
    assert_eq!(
        actions,
        vec![
            Action::Rollback(s("a")),
            Action::Rollback(s("b")),
            Action::StartReplyWait
        ]
    );
}

#[test]
fn read_only_branches_get_no_phase_two() {
    let mut e = two_branch();
    e.commit().unwrap();
    e.on(ok_vote("a", Vote::ReadOnly { held: false }));
    assert_eq!(e.on(ok_vote("b", Vote::Yes)), vec![Action::LogCommit(vec![s("b")])]);
    assert_eq!(
        e.on(Event::Logged),
        vec![Action::StartReplyWait, Action::Commit(s("b"))]
    );
    assert_eq!(
        e.on(phase2_ok("b")),
        vec![Action::LogEnd, Action::Reply(Outcome::Committed)]
    );
}

#[test]
fn held_read_only_branches_confirm_their_locks_before_the_decision() {
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b")]).unwrap();
    assert!(e.on(ok_vote("a", Vote::ReadOnly { held: true })).is_empty());
    // Every vote in: a must show it still holds its locks.
    assert_eq!(e.on(ok_vote("b", Vote::Yes)), vec![Action::Prepare(s("a"))]);
    assert_eq!(e.state(), State::Preparing);
    assert_eq!(
        e.on(ok_vote("a", Vote::ReadOnly { held: false })),
        vec![Action::LogCommit(vec![s("b")])]
    );
    assert_eq!(
        e.on(Event::Logged),
        vec![Action::StartReplyWait, Action::Commit(s("b"))]
    );
    assert_eq!(
        e.on(phase2_ok("b")),
        vec![Action::LogEnd, Action::Reply(Outcome::Committed)]
    );
    assert_eq!(e.branch("a"), Some(BranchState::ReadOnly));

    // All read-only and held: confirmed, then answered; no log.
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b")]).unwrap();
    e.on(ok_vote("a", Vote::ReadOnly { held: true }));
    assert_eq!(
        e.on(ok_vote("b", Vote::ReadOnly { held: true })),
        vec![Action::Prepare(s("a")), Action::Prepare(s("b"))]
    );
    e.on(ok_vote("a", Vote::ReadOnly { held: false }));
    assert_eq!(
        e.on(ok_vote("b", Vote::ReadOnly { held: false })),
        vec![Action::Reply(Outcome::Committed)]
    );

    // Aborted: held branches are released too.
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b")]).unwrap();
    e.on(ok_vote("a", Vote::ReadOnly { held: true }));
    let actions = e.on(ok_vote("b", Vote::No(s("guard failed"))));
    assert!(actions.contains(&Action::Rollback(s("a"))), "{actions:?}");
}

#[test]
fn a_held_read_only_branch_that_lost_its_session_aborts_the_transaction() {
    // Its database crashed after its vote: the confirmation fails.
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b")]).unwrap();
    e.on(ok_vote("a", Vote::ReadOnly { held: true }));
    assert_eq!(e.on(ok_vote("b", Vote::Yes)), vec![Action::Prepare(s("a"))]);
    let actions = e.on(Event::Voted {
        participant: s("a"),
        result: Err(Failure::unknown("XA END failed on participant a: connection lost")),
    });
    assert_eq!(e.state(), State::Aborting);
    assert!(actions.contains(&Action::Rollback(s("b"))), "{actions:?}");
    assert!(
        !actions.iter().any(|a| matches!(a, Action::LogCommit(_))),
        "{actions:?}"
    );

    // A participant that keeps the branch open instead is no better.
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b")]).unwrap();
    e.on(ok_vote("a", Vote::ReadOnly { held: true }));
    e.on(ok_vote("b", Vote::ReadOnly { held: true }));
    e.on(ok_vote("a", Vote::ReadOnly { held: false }));
    let actions = e.on(ok_vote("b", Vote::ReadOnly { held: true }));
    assert_eq!(e.state(), State::Aborting);
    assert!(actions.contains(&Action::Rollback(s("b"))), "{actions:?}");
}

#[test]
fn a_one_phase_commit_without_an_answer_is_reported_unknown_not_guessed() {
    let mut e = Engine::new();
    executed(&mut e, "a");
    e.commit().unwrap();
    assert!(e.is_one_phase());
    assert_eq!(e.on(Event::ReplyWaitElapsed), vec![Action::Reply(Outcome::Unknown)]);
    // The answer comes later: no second reply, the transaction ends.
    assert!(
        e.on(Event::OnePhaseDone {
            participant: s("a"),
            result: Ok(())
        })
        .is_empty()
    );
    assert_eq!(e.state(), State::Committed);
}

#[test]
fn all_read_only_commits_without_logging() {
    let mut e = two_branch();
    e.commit().unwrap();
    e.on(ok_vote("a", Vote::ReadOnly { held: false }));
    assert_eq!(
        e.on(ok_vote("b", Vote::ReadOnly { held: false })),
        vec![Action::Reply(Outcome::Committed)]
    );
    assert!(e.is_done());
}

#[test]
fn a_single_branch_commits_in_one_phase_without_logging() {
    let mut e = Engine::new();
    executed(&mut e, "a");
    assert_eq!(
        e.commit().unwrap(),
        vec![Action::CommitOnePhase(s("a")), Action::StartOnePhaseWait]
    );
    // A transport error leaves the outcome unknown: ask again.
    assert_eq!(
        e.on(Event::OnePhaseDone {
            participant: s("a"),
            result: Err(Failure::unknown("timeout"))
        }),
        vec![Action::Retry(s("a"))]
    );
    let actions = e.on(Event::OnePhaseDone {
        participant: s("a"),
        result: Ok(()),
    });
    assert_eq!(actions, vec![Action::Reply(Outcome::Committed)]);
}

#[test]
fn a_single_branch_that_fails_to_commit_is_aborted() {
    let mut e = Engine::new();
    executed(&mut e, "a");
    e.commit().unwrap();
    let actions = e.on(Event::OnePhaseDone {
        participant: s("a"),
        result: Err(Failure {
            reason: s("deadlock"),
            invalid_argument: false,
            rolled_back: true,
            heuristic: false,
        }),
    });
    assert!(matches!(replies(&actions)[0], Outcome::Aborted(a) if a.reason == "deadlock"));
    assert_eq!(e.state(), State::Aborted);
}

#[test]
fn an_empty_transaction_commits_at_once() {
    let mut e = Engine::new();
    assert_eq!(e.commit().unwrap(), vec![Action::Reply(Outcome::Committed)]);
}

#[test]
fn submit_prepares_every_branch_or_commits_one_in_one_phase() {
    let mut e = Engine::new();
    assert_eq!(
        e.submit(&[s("a"), s("b")]).unwrap(),
        vec![Action::Prepare(s("a")), Action::Prepare(s("b"))]
    );
    let mut e = Engine::new();
    assert_eq!(
        e.submit(&[s("a")]).unwrap(),
        vec![Action::CommitOnePhase(s("a")), Action::StartOnePhaseWait]
    );
}

#[test]
fn a_failed_execute_aborts_everything_and_later_requests_say_why() {
    let mut e = Engine::new();
    executed(&mut e, "a");
    assert_eq!(e.execute("b"), Ok(true));
    let actions = e.on(Event::Executed {
        participant: s("b"),
        result: Err(Failure {
            reason: s("statement 1 failed"),
            invalid_argument: true,
            rolled_back: true,
            heuristic: false,
        }),
    });
    assert_eq!(actions, vec![Action::Rollback(s("a")), Action::Rollback(s("b"))]);
    match e.execute("a") {
        Err(Refusal::Aborted(abort)) => {
            assert_eq!(abort.reason, "statement 1 failed");
            assert_eq!(abort.kind, AbortKind::InvalidArgument);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(e.commit(), Err(Refusal::Aborted(_))));
}

#[test]
fn the_deadline_waits_for_an_in_flight_execute_before_rolling_it_back() {
    let mut e = Engine::new();
    executed(&mut e, "a");
    assert_eq!(e.execute("b"), Ok(true));
    assert_eq!(e.on(Event::DeadlineExpired), vec![Action::Rollback(s("a"))]);
    // The Execute that begins b answers after the abort: roll it back now.
    let actions = e.on(Event::Executed {
        participant: s("b"),
        result: Ok(()),
    });
    assert_eq!(actions, vec![Action::Rollback(s("b"))]);
    e.on(phase2_ok("a"));
    e.on(phase2_ok("b"));
    assert_eq!(e.state(), State::Aborted);
}

#[test]
fn client_rollback_answers_after_every_branch_is_rolled_back() {
    let mut e = two_branch();
    let actions = e.rollback().unwrap().unwrap();
    assert_eq!(
        actions,
        vec![
            Action::Rollback(s("a")),
            Action::Rollback(s("b")),
            Action::StartReplyWait
        ]
    );
    assert!(replies(&e.on(phase2_ok("a"))).is_empty());
    let actions = e.on(phase2_ok("b"));
    assert!(matches!(replies(&actions)[0], Outcome::Aborted(a) if a.kind == AbortKind::Client));
    // Rolled back by the client: later requests are FAILED_PRECONDITION.
    assert!(matches!(e.execute("a"), Err(Refusal::NotActive(_))));
    assert!(matches!(e.commit(), Err(Refusal::NotActive(_))));
    // A repeated rollback is answered at once.
    assert_eq!(e.rollback(), Ok(None));
}

#[test]
fn phase_two_failures_are_retried_forever_and_the_client_gets_a_bounded_wait() {
    let mut e = two_branch();
    e.commit().unwrap();
    e.on(ok_vote("a", Vote::Yes));
    e.on(ok_vote("b", Vote::Yes));
    e.on(Event::Logged);
    e.on(phase2_ok("a"));
    for _ in 0..5 {
        assert_eq!(
            e.on(Event::Phase2Done {
                participant: s("b"),
                result: Err(Failure::unknown("unreachable"))
            }),
            vec![Action::Retry(s("b"))]
        );
    }
    assert_eq!(e.pending(), vec!["b"]);
    assert_eq!(e.on(Event::ReplyWaitElapsed), vec![Action::Reply(Outcome::Committed)]);
    // Answered once only; phase 2 still finishes and logs END.
    assert_eq!(e.on(phase2_ok("b")), vec![Action::LogEnd]);
    assert!(e.is_done());
}

#[test]
fn concurrent_executes_on_one_branch_and_commit_during_execute_are_refused() {
    let mut e = Engine::new();
    assert_eq!(e.execute("a"), Ok(true));
    assert!(matches!(e.execute("a"), Err(Refusal::NotActive(_))));
    assert!(matches!(e.commit(), Err(Refusal::NotActive(_))));
    e.on(Event::Executed {
        participant: s("a"),
        result: Ok(()),
    });
    assert_eq!(e.execute("a"), Ok(false));
}

fn failure(reason: &str, rolled_back: bool, invalid_argument: bool, heuristic: bool) -> Failure {
    Failure {
        reason: s(reason),
        invalid_argument,
        rolled_back,
        heuristic,
    }
}

/// A phase-2 answer drawn from `draw` (0 to 5): mostly done, sometimes
/// lost (retried), sometimes a heuristic hazard of kind `hazard`.
fn phase2_answer(
    draw: u64,
    hazard: &'static str,
    seen: &mut std::collections::BTreeSet<&'static str>,
) -> Result<(), Failure> {
    match draw {
        0 => Err(Failure::unknown("lost")),
        1 => {
            seen.insert(hazard);
            Err(failure(&format!("{hazard} hazard"), false, false, true))
        }
        _ => Ok(()),
    }
}

/// Random event orders and random answers, every kind a participant can
/// give: YES held or not, NO, READ_ONLY held or not, a failure that rolled the branch
/// back, a refused request, a lost reply; phase-2 answers that fail and
/// are retried, or find a heuristic hazard; one-phase commits that are
/// lost or rolled back. Whatever the order: the engine never logs a
/// commit after an abort, never sends Commit before the decision is
/// durable, never sends both Commit and Rollback to one branch, confirms
/// every held branch before deciding COMMIT, ends, replies
/// exactly once, and the reply agrees with how every branch ended.
#[test]
fn exhaustive_random_interleavings_keep_the_invariants() {
    use std::collections::BTreeSet;

    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let names = [s("a"), s("b"), s("c")];
    let mut seen = BTreeSet::new();
    for _ in 0..40_000 {
        let mut e = Engine::new();
        let n = 1 + next(3) as usize;
        let mut queue: Vec<Action> = e.submit(&names[..n]).unwrap();
        let mut logged = false;
        let mut committed_sent = BTreeSet::new();
        let mut rolled_sent = BTreeSet::new();
        let mut held = BTreeSet::new();
        let mut held_writers = BTreeSet::new();
        let mut confirmed = BTreeSet::new();
        let mut replies = Vec::new();
        let mut steps = 0;
        while !queue.is_empty() && steps < 300 {
            steps += 1;
            let i = next(queue.len() as u64) as usize;
            let action = queue.swap_remove(i);
            let event = match action {
                // A held read-only branch asked again: it confirms its
                // locks, or its session is gone.
                Action::Prepare(p) if held.contains(&p) || held_writers.contains(&p) => {
                    let result = match next(3) {
                        0 => Err(failure("session gone", true, false, false)),
                        1 => Err(Failure::unknown("lost")),
                        _ => {
                            confirmed.insert(p.clone());
                            if held_writers.contains(&p) {
                                Ok(Vote::Yes)
                            } else {
                                Ok(Vote::ReadOnly { held: false })
                            }
                        }
                    };
                    seen.insert("confirm");
                    Some(Event::Voted { participant: p, result })
                }
                Action::Prepare(p) => {
                    let result = match next(8) {
                        0 => Ok(Vote::No(s("no"))),
                        1 => Err(Failure::unknown("lost")),
                        2 => Err(failure("deadlock; rolled back", true, false, false)),
                        3 => Err(failure("bad statement", false, true, false)),
                        4 => Ok(Vote::ReadOnly { held: false }),
                        5 => {
                            held.insert(p.clone());
                            seen.insert("held");
                            Ok(Vote::ReadOnly { held: true })
                        }
                        6 => {
                            held_writers.insert(p.clone());
                            seen.insert("held writer");
                            Ok(Vote::YesHeld)
                        }
                        _ => Ok(Vote::Yes),
                    };
                    Some(Event::Voted { participant: p, result })
                }
                Action::CommitOnePhase(p) | Action::Retry(p) if e.is_one_phase() => Some(Event::OnePhaseDone {
                    participant: p,
                    result: match next(4) {
                        0 => Err(Failure::unknown("lost")),
                        1 => Err(failure("rolled back", true, false, false)),
                        _ => Ok(()),
                    },
                }),
                Action::LogCommit(_) => {
                    assert!(e.abort().is_none());
                    for p in held.iter().chain(&held_writers) {
                        assert!(
                            confirmed.contains(p),
                            "COMMIT logged before held {p} confirmed its locks"
                        );
                    }
                    logged = true;
                    Some(Event::Logged)
                }
                Action::Commit(p) | Action::Retry(p)
                    if committed_sent.contains(&p) || e.state() == State::Committing =>
                {
                    assert!(logged, "commit before the decision was durable");
                    assert!(!rolled_sent.contains(&p));
                    committed_sent.insert(p.clone());
                    Some(Event::Phase2Done {
                        participant: p,
                        result: phase2_answer(next(6), "heuristic rollback", &mut seen),
                    })
                }
                Action::Rollback(p) | Action::Retry(p) => {
                    assert!(!committed_sent.contains(&p));
                    rolled_sent.insert(p.clone());
                    Some(Event::Phase2Done {
                        participant: p,
                        result: phase2_answer(next(6), "heuristic commit", &mut seen),
                    })
                }
                Action::Reply(outcome) => {
                    replies.push(outcome);
                    None
                }
                Action::Commit(_)
                | Action::CommitOnePhase(_)
                | Action::StartReplyWait
                | Action::StartOnePhaseWait
                | Action::LogEnd => None,
            };
            if next(10) == 0 {
                queue.extend(e.on(Event::DeadlineExpired));
            }
            if next(20) == 0 {
                queue.extend(e.on(Event::ReplyWaitElapsed));
            }
            if let Some(event) = event {
                queue.extend(e.on(event));
            }
        }
        assert!(e.is_done(), "stuck in {:?}: {e:?}", e.state());
        assert_eq!(replies.len(), 1, "{replies:?}");
        let ended: Vec<BranchState> = e.branches().map(|(_, b)| b).collect();
        match &replies[0] {
            Outcome::Committed => {
                seen.insert("committed");
                assert_eq!(e.state(), State::Committed);
                assert!(
                    ended.iter().all(|b| matches!(
                        b,
                        BranchState::Committed | BranchState::ReadOnly | BranchState::HeuristicRollback
                    )),
                    "COMMITTED with {ended:?}"
                );
                if n > 1 && ended.contains(&BranchState::Committed) {
                    assert!(logged);
                }
            }
            Outcome::Aborted(abort) => {
                seen.insert("aborted");
                assert_eq!(e.state(), State::Aborted);
                assert_eq!(e.abort(), Some(abort));
                assert!(!ended.contains(&BranchState::Committed), "ABORTED with {ended:?}");
                assert!(committed_sent.is_empty());
            }
            Outcome::Unknown => {
                seen.insert("unknown");
                assert_eq!(n, 1, "only a one-phase commit can be unknown");
            }
        }
        let hazards = ended
            .iter()
            .filter(|b| matches!(b, BranchState::HeuristicRollback | BranchState::HeuristicCommit))
            .count();
        assert_eq!(hazards, e.hazards().len(), "every hazard is reported: {ended:?}");
    }
    // The draws reach every kind of answer and outcome.
    for kind in [
        "held",
        "held writer",
        "confirm",
        "heuristic rollback",
        "heuristic commit",
        "committed",
        "aborted",
        "unknown",
    ] {
        assert!(seen.contains(kind), "never drew {kind}: {seen:?}");
    }
}

#[test]
fn a_recovered_commit_is_driven_to_the_end_and_ended_in_the_log() {
    let (mut e, actions) = Engine::recovered(&[s("a"), s("b")]);
    assert_eq!(actions, vec![Action::Commit(s("a")), Action::Commit(s("b"))]);
    assert_eq!(e.state(), State::Committing);
    assert!(!e.deadline_applies());
    // A failed commit is retried, never given up.
    let retry = e.on(Event::Phase2Done {
        participant: s("a"),
        result: Err(Failure::unknown("participant a: unreachable")),
    });
    assert_eq!(retry, vec![Action::Retry(s("a"))]);
    assert!(
        e.on(Event::Phase2Done {
            participant: s("a"),
            result: Ok(()),
        })
        .is_empty()
    );
    let end = e.on(Event::Phase2Done {
        participant: s("b"),
        result: Ok(()),
    });
    // Nobody waits for a reply after a restart.
    assert_eq!(end, vec![Action::LogEnd]);
    assert_eq!(e.state(), State::Committed);
}

#[test]
fn a_heuristic_rollback_is_recorded_and_keeps_the_commit_unended() {
    let (mut e, _) = Engine::recovered(&[s("a"), s("b")]);
    e.on(Event::Phase2Done {
        participant: s("a"),
        result: Ok(()),
    });
    let actions = e.on(Event::Phase2Done {
        participant: s("b"),
        result: Err(Failure {
            reason: s("heuristic hazard: rolled back"),
            invalid_argument: false,
            rolled_back: false,
            heuristic: true,
        }),
    });
    // Settled (no retry can change it), reported, and not ended: a
    // restarted coordinator checks it again.
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(e.state(), State::Committed);
    assert_eq!(e.branch("b"), Some(BranchState::HeuristicRollback));
    assert_eq!(e.hazards(), ["b: heuristic hazard: rolled back"]);
}

#[test]
fn a_held_writing_branch_is_prepared_once_every_vote_is_in_and_a_dead_one_aborts() {
    for confirmed in [true, false] {
        let mut e = Engine::new();
        e.submit(&[s("a"), s("b")]).unwrap();
        assert!(e.on(ok_vote("a", Vote::YesHeld)).is_empty());
        assert_eq!(e.branch("a"), Some(BranchState::YesHeld));
        // b takes its locks and votes: now a prepares, before any decision.
        assert_eq!(e.on(ok_vote("b", Vote::Yes)), vec![Action::Prepare(s("a"))]);
        assert_eq!(e.state(), State::Preparing);
        let actions = e.on(Event::Voted {
            participant: s("a"),
            result: if confirmed {
                Ok(Vote::Yes)
            } else {
                Err(failure("session gone: its database restarted", true, false, false))
            },
        });
        if confirmed {
            assert_eq!(actions, vec![Action::LogCommit(vec![s("a"), s("b")])]);
        } else {
            assert_eq!(e.state(), State::Aborting);
            assert!(actions.contains(&Action::Rollback(s("b"))), "{actions:?}");
            assert!(!actions.iter().any(|a| matches!(a, Action::LogCommit(_))));
        }
    }
}
