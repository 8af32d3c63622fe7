//! Tests of the transaction state machine (`super`): the paths the
//! protocol takes, and every answer in every order.

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

fn lost_vote(p: &str) -> Event {
    Event::Voted {
        participant: s(p),
        result: Err(Failure::unknown(format!("participant {p} unreachable"))),
    }
}

fn fenced(p: &str, fate: Fate) -> Event {
    Event::Inquired {
        participant: s(p),
        result: Ok(fate),
    }
}

fn phase2_ok(p: &str) -> Event {
    Event::Phase2Done {
        participant: s(p),
        result: Ok(()),
    }
}

fn executed(e: &mut Engine, p: &str, wrote: bool) {
    e.execute(p).unwrap();
    assert!(
        e.on(Event::Executed {
            participant: s(p),
            result: Ok(wrote)
        })
        .is_empty()
    );
}

fn two_writers() -> Engine {
    let mut e = Engine::new();
    executed(&mut e, "a", true);
    executed(&mut e, "b", true);
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

fn failure(reason: &str, rolled_back: bool, invalid_argument: bool, heuristic: bool) -> Failure {
    Failure {
        reason: s(reason),
        invalid_argument,
        rolled_back,
        heuristic,
        not_delivered: false,
        exists: false,
    }
}

#[test]
fn every_branch_prepared_is_committed_without_a_log() {
    let mut e = two_writers();
    assert_eq!(
        e.commit(Ack::Visible).unwrap(),
        vec![Action::Prepare(s("a")), Action::Prepare(s("b"))]
    );
    assert_eq!(e.participant_set(), [s("a"), s("b")]);
    assert!(e.on(ok_vote("a", Vote::Yes)).is_empty());
    // The last YES is the commit point: phase 2 starts at once.
    assert_eq!(
        e.on(ok_vote("b", Vote::Yes)),
        vec![Action::StartReplyWait, Action::Commit(s("a")), Action::Commit(s("b"))]
    );
    assert_eq!(e.state(), State::Committing);
    assert!(e.is_decided());
    assert!(e.on(phase2_ok("a")).is_empty());
    assert_eq!(e.on(phase2_ok("b")), vec![Action::Reply(Outcome::Committed)]);
    assert!(e.is_done());
}

#[test]
fn ack_durable_answers_at_the_commit_point_before_phase_two() {
    let mut e = two_writers();
    e.commit(Ack::Durable).unwrap();
    e.on(ok_vote("a", Vote::Yes));
    assert_eq!(
        e.on(ok_vote("b", Vote::Yes)),
        vec![
            Action::Reply(Outcome::Committed),
            Action::Commit(s("a")),
            Action::Commit(s("b"))
        ]
    );
    // Phase 2 goes on; nobody is answered twice.
    assert!(e.on(phase2_ok("a")).is_empty());
    assert!(e.on(phase2_ok("b")).is_empty());
    assert!(e.on(Event::ReplyWaitElapsed).is_empty());
    assert_eq!(e.state(), State::Committed);
}

#[test]
fn the_participant_set_of_an_interactive_transaction_is_its_writers() {
    let mut e = Engine::new();
    executed(&mut e, "a", true);
    executed(&mut e, "b", false);
    // A later batch that writes counts.
    executed(&mut e, "c", false);
    executed(&mut e, "c", true);
    e.commit(Ack::Visible).unwrap();
    assert_eq!(e.participant_set(), [s("a"), s("c")]);
    // The reader votes READ_ONLY and is finished; the writers commit.
    e.on(ok_vote("b", Vote::ReadOnly { held: false }));
    e.on(ok_vote("a", Vote::Yes));
    assert_eq!(
        e.on(ok_vote("c", Vote::Yes)),
        vec![Action::StartReplyWait, Action::Commit(s("a")), Action::Commit(s("c"))]
    );
    // A Submit's set is every branch; one branch's is itself.
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b")], Ack::Visible).unwrap();
    assert_eq!(e.participant_set(), [s("a"), s("b")]);
    let mut e = Engine::new();
    executed(&mut e, "a", false);
    e.commit(Ack::Visible).unwrap();
    assert_eq!(e.participant_set(), [s("a")]);
}

#[test]
fn a_missing_vote_is_fenced_before_it_counts_as_no() {
    let mut e = two_writers();
    e.commit(Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::Yes));
    // b's reply is lost: b may be prepared. Nothing is rolled back yet.
    assert_eq!(e.on(lost_vote("b")), vec![Action::Inquire(s("b"))]);
    assert_eq!(e.state(), State::Preparing);
    assert_eq!(e.branch("b"), Some(BranchState::Fencing));
    // Still running there: ask again.
    assert_eq!(e.on(fenced("b", Fate::Active)), vec![Action::Retry(s("b"))]);
    // The fence went in: b can never prepare, so aborting is safe.
    let actions = e.on(fenced("b", Fate::None));
    assert_eq!(actions, vec![Action::Rollback(s("a")), Action::StartReplyWait]);
    assert_eq!(e.state(), State::Aborting);
    let actions = e.on(phase2_ok("a"));
    assert!(matches!(replies(&actions)[..], [Outcome::Aborted(abort)] if abort.reason.contains("fenced off")));
}

#[test]
fn a_missing_vote_found_prepared_commits() {
    let mut e = two_writers();
    e.commit(Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::Yes));
    e.on(lost_vote("b"));
    // The fence collided with b's marker: b is prepared, so every branch
    // is, and the transaction committed.
    assert_eq!(
        e.on(fenced("b", Fate::Prepared)),
        vec![Action::StartReplyWait, Action::Commit(s("a")), Action::Commit(s("b"))]
    );
    // Found committed (another replica finished it): YES, no phase 2.
    let mut e = two_writers();
    e.commit(Ack::Visible).unwrap();
    e.on(lost_vote("a"));
    e.on(fenced("a", Fate::Committed));
    assert_eq!(
        e.on(ok_vote("b", Vote::Yes)),
        vec![Action::StartReplyWait, Action::Commit(s("b"))]
    );
}

#[test]
fn a_prepare_that_never_left_is_a_no_and_its_branch_is_rolled_back() {
    let mut e = two_writers();
    e.commit(Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::Yes));
    let actions = e.on(Event::Voted {
        participant: s("b"),
        result: Err(Failure {
            not_delivered: true,
            ..Failure::unknown("participant b: tcp connect error")
        }),
    });
    // No fence: the prepare never arrived. b still holds its statements'
    // locks, so it is rolled back with a.
    assert_eq!(
        actions,
        vec![
            Action::Rollback(s("a")),
            Action::Rollback(s("b")),
            Action::StartReplyWait
        ]
    );
    // A Submit's branch that request would have begun does not exist:
    // nothing to roll back there.
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b")], Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::Yes));
    let actions = e.on(Event::Voted {
        participant: s("b"),
        result: Err(Failure {
            not_delivered: true,
            ..Failure::unknown("participant b: tcp connect error")
        }),
    });
    assert_eq!(actions, vec![Action::Rollback(s("a")), Action::StartReplyWait]);
}

#[test]
fn a_keyed_prepare_that_never_left_is_fenced_before_it_counts_as_no() {
    // A later attempt with the same key may begin the branch that request
    // would have begun: only a fence makes its NO durable.
    let mut e = Engine::keyed();
    e.submit(&[s("a"), s("b")], Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::Yes));
    let actions = e.on(Event::Voted {
        participant: s("b"),
        result: Err(Failure {
            not_delivered: true,
            ..Failure::unknown("participant b: tcp connect error")
        }),
    });
    assert_eq!(actions, vec![Action::Inquire(s("b"))]);
    // Fenced: now it is a NO, and a (prepared) is rolled back.
    let actions = e.on(Event::Inquired {
        participant: s("b"),
        result: Ok(Fate::None),
    });
    assert_eq!(actions, vec![Action::Rollback(s("a")), Action::StartReplyWait]);
    // The earlier attempt had prepared b after all: the vote is YES.
    let mut e = Engine::keyed();
    e.submit(&[s("a"), s("b")], Ack::Durable).unwrap();
    e.on(ok_vote("a", Vote::Yes));
    e.on(Event::Voted {
        participant: s("b"),
        result: Err(Failure::unknown(
            "an earlier attempt of this transaction is still running here",
        )),
    });
    let actions = e.on(Event::Inquired {
        participant: s("b"),
        result: Ok(Fate::Prepared),
    });
    assert!(actions.contains(&Action::Reply(Outcome::Committed)), "{actions:?}");
}

#[test]
fn a_branch_an_earlier_keyed_attempt_holds_is_never_rolled_back_by_this_one() {
    let mut e = Engine::keyed();
    assert_eq!(e.execute("a"), Ok(true));
    e.on(Event::Executed {
        participant: s("a"),
        result: Ok(true),
    });
    assert_eq!(e.execute("b"), Ok(true));
    let actions = e.on(Event::Executed {
        participant: s("b"),
        result: Err(Failure {
            exists: true,
            ..Failure::unknown("participant b: a transaction with this key already began here")
        }),
    });
    // a (this attempt's) is rolled back; b (the earlier attempt's) is not.
    assert_eq!(actions, vec![Action::Rollback(s("a"))]);
    assert_eq!(e.branch("b"), Some(BranchState::RolledBack));
}

#[test]
fn a_reader_whose_confirmation_is_unanswered_is_asked_until_definite_even_after_an_abort() {
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b"), s("c")], Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::ReadOnly { held: true }));
    e.on(ok_vote("b", Vote::YesHeld));
    e.on(ok_vote("c", Vote::Yes));
    // a's confirmation is lost; b cannot prepare: the transaction aborts.
    e.on(lost_vote("a"));
    e.on(ok_vote("b", Vote::No(s("session gone"))));
    assert_eq!(e.state(), State::Aborting);
    // a may have committed its marker: no rollback (a false hazard), ask.
    assert_eq!(e.on(fenced("a", Fate::Active)), vec![Action::Retry(s("a"))]);
    assert!(e.on(fenced("a", Fate::Committed)).is_empty());
    assert_eq!(e.branch("a"), Some(BranchState::ReadOnly));
}

#[test]
fn the_deadline_never_aborts_on_silence_once_prepares_went_out() {
    let mut e = two_writers();
    e.commit(Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::Yes));
    // The waiting client gets a bounded wait, nothing else happens.
    assert_eq!(e.on(Event::DeadlineExpired), vec![Action::StartReplyWait]);
    assert_eq!(e.state(), State::Preparing);
    assert!(!e.deadline_applies());
    assert!(e.rollback().is_err());
    // b's vote times out; fenced, it is a NO, reported as the deadline.
    e.on(lost_vote("b"));
    // b's participant cannot be reached: past the wait, the client learns
    // that the outcome is not known yet, never a guess.
    assert_eq!(e.on(fenced("b", Fate::Active)), vec![Action::Retry(s("b"))]);
    assert_eq!(e.on(Event::ReplyWaitElapsed), vec![Action::Reply(Outcome::Unknown)]);
    e.on(fenced("b", Fate::None));
    assert_eq!(e.abort().map(|a| a.kind), Some(AbortKind::Deadline));
    // A late YES after the deadline still commits: every branch prepared.
    let mut e = two_writers();
    e.commit(Ack::Visible).unwrap();
    e.on(Event::DeadlineExpired);
    e.on(ok_vote("a", Vote::Yes));
    e.on(ok_vote("b", Vote::Yes));
    assert_eq!(e.state(), State::Committing);
}

#[test]
fn a_no_vote_aborts_and_rolls_back_the_others_after_their_votes() {
    let mut e = two_writers();
    e.commit(Ack::Visible).unwrap();
    // b's prepare is still in flight: its rollback waits for the answer.
    let actions = e.on(ok_vote("a", Vote::No(s("guard failed"))));
    assert!(actions.iter().all(|a| !matches!(a, Action::Rollback(_))), "{actions:?}");
    assert_eq!(e.state(), State::Aborting);
    let actions = e.on(ok_vote("b", Vote::Yes));
    assert_eq!(actions, vec![Action::Rollback(s("b"))]);
    let actions = e.on(phase2_ok("b"));
    assert!(matches!(replies(&actions)[..], [Outcome::Aborted(a)] if a.reason == "guard failed"));
    assert_eq!(e.state(), State::Aborted);
    // A branch being fenced when the abort comes is rolled back once the
    // fence answers, whatever it found.
    let mut e = two_writers();
    e.commit(Ack::Visible).unwrap();
    e.on(lost_vote("a"));
    e.on(ok_vote("b", Vote::No(s("no"))));
    assert_eq!(e.on(fenced("a", Fate::Active)), vec![Action::Rollback(s("a"))]);
}

#[test]
fn held_branches_confirm_their_locks_once_every_vote_is_in() {
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b"), s("c")], Ack::Visible).unwrap();
    assert!(e.on(ok_vote("a", Vote::ReadOnly { held: true })).is_empty());
    assert!(e.on(ok_vote("b", Vote::YesHeld)).is_empty());
    // Every vote in: the held ones are asked again, before anything is
    // decided.
    assert_eq!(
        e.on(ok_vote("c", Vote::Yes)),
        vec![Action::Prepare(s("a")), Action::Prepare(s("b"))]
    );
    assert_eq!(e.state(), State::Confirming);
    assert!(!e.is_decided());
    // The reader commits its marker (READ_ONLY, no phase 2); the writer
    // prepares.
    assert!(e.on(ok_vote("a", Vote::ReadOnly { held: false })).is_empty());
    assert_eq!(
        e.on(ok_vote("b", Vote::Yes)),
        vec![Action::StartReplyWait, Action::Commit(s("b")), Action::Commit(s("c"))]
    );
    assert_eq!(e.branch("a"), Some(BranchState::ReadOnly));

    // All read-only: confirmed, then committed with nothing to commit.
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b")], Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::ReadOnly { held: true }));
    e.on(ok_vote("b", Vote::ReadOnly { held: true }));
    e.on(ok_vote("a", Vote::ReadOnly { held: false }));
    assert_eq!(
        e.on(ok_vote("b", Vote::ReadOnly { held: false })),
        vec![Action::StartReplyWait, Action::Reply(Outcome::Committed)]
    );

    // Aborted: held branches are released.
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b")], Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::ReadOnly { held: true }));
    let actions = e.on(ok_vote("b", Vote::No(s("guard failed"))));
    assert!(actions.contains(&Action::Rollback(s("a"))), "{actions:?}");
}

#[test]
fn a_held_branch_that_lost_its_session_aborts_and_an_unanswered_one_is_fenced() {
    // Its database crashed after its vote: the confirmation fails, and the
    // participant says it rolled back.
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b")], Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::ReadOnly { held: true }));
    assert_eq!(e.on(ok_vote("b", Vote::Yes)), vec![Action::Prepare(s("a"))]);
    let actions = e.on(Event::Voted {
        participant: s("a"),
        result: Err(failure("session gone; rolled back", true, false, false)),
    });
    assert_eq!(e.state(), State::Aborting);
    assert!(actions.contains(&Action::Rollback(s("b"))), "{actions:?}");

    // No answer to the confirmation: it may have committed its marker.
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b")], Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::ReadOnly { held: true }));
    e.on(ok_vote("b", Vote::Yes));
    assert_eq!(e.on(lost_vote("a")), vec![Action::Inquire(s("a"))]);
    // Its marker is committed: confirmed after all (a reader: no phase 2).
    assert_eq!(
        e.on(fenced("a", Fate::Committed)),
        vec![Action::StartReplyWait, Action::Commit(s("b"))]
    );
    assert_eq!(e.branch("a"), Some(BranchState::ReadOnly));

    // A participant that keeps a branch held when asked to confirm is
    // fenced, not trusted.
    let mut e = Engine::new();
    e.submit(&[s("a"), s("b")], Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::ReadOnly { held: true }));
    e.on(ok_vote("b", Vote::YesHeld));
    e.on(ok_vote("a", Vote::ReadOnly { held: false }));
    assert_eq!(e.on(ok_vote("b", Vote::YesHeld)), vec![Action::Inquire(s("b"))]);
    let actions = e.on(fenced("b", Fate::None));
    assert_eq!(e.state(), State::Aborted);
    assert!(!actions.iter().any(|a| matches!(a, Action::Commit(_))), "{actions:?}");
}

#[test]
fn a_one_phase_commit_without_an_answer_is_reported_unknown_not_guessed() {
    let mut e = Engine::new();
    executed(&mut e, "a", true);
    e.commit(Ack::Visible).unwrap();
    assert_eq!(e.state(), State::OnePhase);
    assert!(!e.is_decided());
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
fn all_read_only_commits_with_nothing_to_commit() {
    let mut e = Engine::new();
    executed(&mut e, "a", false);
    executed(&mut e, "b", false);
    e.commit(Ack::Visible).unwrap();
    assert!(e.participant_set().is_empty());
    e.on(ok_vote("a", Vote::ReadOnly { held: false }));
    assert_eq!(
        e.on(ok_vote("b", Vote::ReadOnly { held: false })),
        vec![Action::StartReplyWait, Action::Reply(Outcome::Committed)]
    );
    assert!(e.is_done());
}

#[test]
fn a_single_branch_commits_in_one_phase() {
    let mut e = Engine::new();
    executed(&mut e, "a", true);
    assert_eq!(
        e.commit(Ack::Visible).unwrap(),
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
    // One that the participant rolled back is aborted.
    let mut e = Engine::new();
    executed(&mut e, "a", true);
    e.commit(Ack::Durable).unwrap();
    let actions = e.on(Event::OnePhaseDone {
        participant: s("a"),
        result: Err(failure("deadlock", true, false, false)),
    });
    assert!(matches!(replies(&actions)[..], [Outcome::Aborted(a)] if a.reason == "deadlock"));
    assert_eq!(e.state(), State::Aborted);
}

#[test]
fn an_empty_transaction_commits_at_once() {
    let mut e = Engine::new();
    assert_eq!(e.commit(Ack::Visible).unwrap(), vec![Action::Reply(Outcome::Committed)]);
}

#[test]
fn a_failed_execute_aborts_everything_without_fences_and_later_requests_say_why() {
    let mut e = Engine::new();
    executed(&mut e, "a", true);
    assert_eq!(e.execute("b"), Ok(true));
    let actions = e.on(Event::Executed {
        participant: s("b"),
        result: Err(failure("statement 1 failed", true, true, false)),
    });
    // Nothing was prepared: nothing can commit, so no fence is needed.
    assert_eq!(actions, vec![Action::Rollback(s("a")), Action::Rollback(s("b"))]);
    match e.execute("a") {
        Err(Refusal::Aborted(abort)) => {
            assert_eq!(abort.reason, "statement 1 failed");
            assert_eq!(abort.kind, AbortKind::InvalidArgument);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(e.commit(Ack::Visible), Err(Refusal::Aborted(_))));
}

#[test]
fn a_drain_rolls_back_a_transaction_still_running_statements_and_lets_a_deciding_one_finish() {
    let mut e = Engine::new();
    executed(&mut e, "a", true);
    assert_eq!(e.on(Event::Drained), vec![Action::Rollback(s("a"))]);
    assert_eq!(e.abort().map(|a| a.reason.as_str()), Some(DRAINED));
    e.on(phase2_ok("a"));
    assert_eq!(e.state(), State::Aborted);

    let mut e = two_writers();
    let actions = e.commit(Ack::Visible).unwrap();
    assert!(!actions.is_empty());
    assert_eq!(e.state(), State::Preparing);
    assert!(e.on(Event::Drained).is_empty(), "a deciding transaction is not aborted");
    assert_eq!(e.state(), State::Preparing);
    assert!(e.abort().is_none());
}

#[test]
fn the_deadline_before_commit_waits_for_an_in_flight_execute_before_rolling_it_back() {
    let mut e = Engine::new();
    executed(&mut e, "a", true);
    assert_eq!(e.execute("b"), Ok(true));
    assert_eq!(e.on(Event::DeadlineExpired), vec![Action::Rollback(s("a"))]);
    // The Execute that begins b answers after the abort: roll it back now.
    let actions = e.on(Event::Executed {
        participant: s("b"),
        result: Ok(true),
    });
    assert_eq!(actions, vec![Action::Rollback(s("b"))]);
    e.on(phase2_ok("a"));
    e.on(phase2_ok("b"));
    assert_eq!(e.state(), State::Aborted);
    assert_eq!(e.abort().map(|a| a.kind), Some(AbortKind::Deadline));
}

#[test]
fn client_rollback_answers_after_every_branch_is_rolled_back() {
    let mut e = two_writers();
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
    assert!(matches!(replies(&actions)[..], [Outcome::Aborted(a)] if a.kind == AbortKind::Client));
    // Rolled back by the client: later requests are FAILED_PRECONDITION.
    assert!(matches!(e.execute("a"), Err(Refusal::NotActive(_))));
    assert!(matches!(e.commit(Ack::Visible), Err(Refusal::NotActive(_))));
    // A repeated rollback is answered at once.
    assert_eq!(e.rollback(), Ok(None));
}

#[test]
fn phase_two_failures_are_retried_forever_and_the_client_gets_a_bounded_wait() {
    let mut e = two_writers();
    e.commit(Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::Yes));
    e.on(ok_vote("b", Vote::Yes));
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
    // Answered once only; phase 2 still finishes.
    assert!(e.on(phase2_ok("b")).is_empty());
    assert!(e.is_done());
}

#[test]
fn a_heuristic_hazard_is_recorded_and_never_retried_away() {
    let mut e = two_writers();
    e.commit(Ack::Visible).unwrap();
    e.on(ok_vote("a", Vote::Yes));
    e.on(ok_vote("b", Vote::Yes));
    e.on(phase2_ok("a"));
    let actions = e.on(Event::Phase2Done {
        participant: s("b"),
        result: Err(failure("heuristic hazard: rolled back", false, false, true)),
    });
    assert_eq!(actions, vec![Action::Reply(Outcome::Committed)]);
    assert_eq!(e.state(), State::Committed);
    assert_eq!(e.branch("b"), Some(BranchState::HeuristicRollback));
    assert_eq!(e.hazards(), ["b: heuristic hazard: rolled back"]);
}

#[test]
fn concurrent_executes_on_one_branch_and_commit_during_execute_are_refused() {
    let mut e = Engine::new();
    assert_eq!(e.execute("a"), Ok(true));
    assert!(matches!(e.execute("a"), Err(Refusal::NotActive(_))));
    assert!(matches!(e.commit(Ack::Visible), Err(Refusal::NotActive(_))));
    e.on(Event::Executed {
        participant: s("a"),
        result: Ok(false),
    });
    assert_eq!(e.execute("a"), Ok(false));
}

/// What a simulated participant did with a branch, whatever the
/// coordinator heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    /// Running, unprepared (maybe voted and held).
    Running,
    Prepared,
    /// A read-only branch whose marker row committed.
    Confirmed,
    /// Voted NO, or rolled back and fenced: can never prepare.
    No,
    Committed,
    RolledBack,
}

impl Truth {
    fn durably_yes(self) -> bool {
        matches!(self, Truth::Prepared | Truth::Confirmed | Truth::Committed)
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

/// Random Submits of 1 to 3 branches, random event orders and random
/// answers of every kind a participant can give: YES held or not, NO,
/// READ_ONLY held or not, a failure that rolled the branch back, a refused
/// request, a lost reply (after which the branch may or may not be
/// prepared); fences that find the branch prepared, committed, running or
/// fenced; phase-2 answers that are lost or find a hazard; deadlines and
/// reply waits at any time. A simulated participant records what really
/// happened. Whatever the order: the client gets exactly one answer;
/// COMMITTED only when every branch of the participant set really is
/// durably YES; ABORTED only when some branch really is a durable NO;
/// phase 2 commits only prepared branches and never both commits and rolls
/// back one; every hazard is reported; the engine ends.
#[test]
fn exhaustive_random_interleavings_keep_the_invariants() {
    use std::collections::{BTreeMap, BTreeSet};

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
        let ack = if next(2) == 0 { Ack::Visible } else { Ack::Durable };
        let mut queue: Vec<Action> = e.submit(&names[..n], ack).unwrap();
        let mut truth: BTreeMap<String, Truth> = names[..n].iter().map(|p| (p.clone(), Truth::Running)).collect();
        let mut held = BTreeSet::new();
        let mut committed_sent = BTreeSet::new();
        let mut rolled_sent = BTreeSet::new();
        let mut replies = Vec::new();
        let mut deadline_passed = false;
        let mut steps = 0;
        while !queue.is_empty() && steps < 400 {
            steps += 1;
            let i = next(queue.len() as u64) as usize;
            let action = queue.swap_remove(i);
            let event = match action {
                // A held branch asked again: it confirms (a reader commits
                // its marker, a writer prepares), or its session is gone.
                Action::Prepare(p) if held.contains(&p) => {
                    seen.insert("confirm");
                    let reader = truth[&p] == Truth::Running && next(2) == 0;
                    let done = if reader { Truth::Confirmed } else { Truth::Prepared };
                    let result = match next(4) {
                        0 => {
                            truth.insert(p.clone(), Truth::No);
                            Err(failure("session gone; rolled back", true, false, false))
                        }
                        1 => {
                            // Lost: done, or the session died (then the
                            // fence will find nothing).
                            let did = if next(2) == 0 { done } else { Truth::No };
                            truth.insert(p.clone(), did);
                            Err(Failure::unknown("lost"))
                        }
                        _ => {
                            truth.insert(p.clone(), done);
                            Ok(if reader {
                                Vote::ReadOnly { held: false }
                            } else {
                                Vote::Yes
                            })
                        }
                    };
                    held.remove(&p);
                    Some(Event::Voted { participant: p, result })
                }
                Action::Prepare(p) => {
                    let result = match next(9) {
                        8 => {
                            // Never left: the branch it would begin never
                            // exists.
                            seen.insert("not delivered");
                            truth.insert(p.clone(), Truth::No);
                            Err(Failure {
                                not_delivered: true,
                                ..Failure::unknown("tcp connect error")
                            })
                        }
                        0 => {
                            truth.insert(p.clone(), Truth::No);
                            Ok(Vote::No(s("no")))
                        }
                        1 => {
                            seen.insert("lost vote");
                            if next(2) == 0 {
                                truth.insert(p.clone(), Truth::Prepared);
                            }
                            Err(Failure::unknown("lost"))
                        }
                        2 => {
                            truth.insert(p.clone(), Truth::No);
                            Err(failure("deadlock; rolled back", true, false, false))
                        }
                        3 => {
                            truth.insert(p.clone(), Truth::No);
                            Err(failure("bad statement", true, true, false))
                        }
                        4 => {
                            held.insert(p.clone());
                            seen.insert("held reader");
                            Ok(Vote::ReadOnly { held: true })
                        }
                        5 => {
                            held.insert(p.clone());
                            seen.insert("held writer");
                            Ok(Vote::YesHeld)
                        }
                        6 => {
                            truth.insert(p.clone(), Truth::Confirmed);
                            Ok(Vote::ReadOnly { held: false })
                        }
                        _ => {
                            truth.insert(p.clone(), Truth::Prepared);
                            Ok(Vote::Yes)
                        }
                    };
                    Some(Event::Voted { participant: p, result })
                }
                Action::Inquire(p) | Action::Retry(p) if e.branch(&p) == Some(BranchState::Fencing) => {
                    seen.insert("fence");
                    let result = match (truth[&p], next(4)) {
                        (_, 0) => Err(Failure::unknown("lost")),
                        (Truth::Prepared, _) => Ok(Fate::Prepared),
                        (Truth::Confirmed | Truth::Committed, _) => Ok(Fate::Committed),
                        (Truth::Running, 1) => Ok(Fate::Active),
                        // Not there (or rolled back at its deadline): fenced.
                        (Truth::Running | Truth::No | Truth::RolledBack, _) => {
                            truth.insert(p.clone(), Truth::No);
                            Ok(Fate::None)
                        }
                    };
                    Some(Event::Inquired { participant: p, result })
                }
                Action::CommitOnePhase(p) | Action::Retry(p) if e.state() == State::OnePhase => {
                    let result = match next(4) {
                        0 => Err(Failure::unknown("lost")),
                        1 => {
                            truth.insert(p.clone(), Truth::No);
                            Err(failure("rolled back", true, false, false))
                        }
                        _ => {
                            truth.insert(p.clone(), Truth::Committed);
                            Ok(())
                        }
                    };
                    Some(Event::OnePhaseDone { participant: p, result })
                }
                Action::Commit(p) | Action::Retry(p)
                    if committed_sent.contains(&p) || e.state() == State::Committing =>
                {
                    assert!(
                        matches!(truth[&p], Truth::Prepared | Truth::Committed),
                        "phase 2 commit of {p}, which is {:?}",
                        truth[&p]
                    );
                    assert!(!rolled_sent.contains(&p));
                    committed_sent.insert(p.clone());
                    let answer = phase2_answer(next(6), "heuristic rollback", &mut seen);
                    if answer.is_ok() {
                        truth.insert(p.clone(), Truth::Committed);
                    }
                    Some(Event::Phase2Done {
                        participant: p,
                        result: answer,
                    })
                }
                Action::Rollback(p) | Action::Retry(p) => {
                    assert!(!committed_sent.contains(&p));
                    assert!(
                        truth.values().any(|t| *t == Truth::No),
                        "rollback of {p} with no durable NO: {truth:?}"
                    );
                    rolled_sent.insert(p.clone());
                    let answer = phase2_answer(next(6), "heuristic commit", &mut seen);
                    if answer.is_ok() && truth[&p] != Truth::No {
                        truth.insert(p.clone(), Truth::RolledBack);
                    }
                    Some(Event::Phase2Done {
                        participant: p,
                        result: answer,
                    })
                }
                Action::Reply(outcome) => {
                    match &outcome {
                        Outcome::Committed => {
                            assert!(truth.values().all(|t| t.durably_yes()), "COMMITTED while {truth:?}")
                        }
                        Outcome::Aborted(_) => assert!(
                            truth.values().any(|t| *t == Truth::No),
                            "ABORTED with no durable NO: {truth:?}"
                        ),
                        _ => {}
                    }
                    replies.push(outcome);
                    None
                }
                Action::Commit(_)
                | Action::CommitOnePhase(_)
                | Action::Inquire(_)
                | Action::StartReplyWait
                | Action::StartOnePhaseWait => None,
            };
            if next(10) == 0 {
                deadline_passed = true;
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
            }
            Outcome::Aborted(abort) => {
                seen.insert("aborted");
                assert_eq!(e.state(), State::Aborted);
                assert_eq!(e.abort(), Some(abort));
                assert!(committed_sent.is_empty());
            }
            Outcome::Unknown => {
                seen.insert("unknown");
                assert!(
                    n == 1 || deadline_passed,
                    "only a one-phase commit, or a vote not fenced by the deadline, can be unknown"
                );
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
        "held reader",
        "held writer",
        "confirm",
        "lost vote",
        "not delivered",
        "fence",
        "heuristic rollback",
        "heuristic commit",
        "committed",
        "aborted",
        "unknown",
    ] {
        assert!(seen.contains(kind), "never drew {kind}: {seen:?}");
    }
}
