//! Tests of the branch state machine (`super`): the paths the protocol
//! takes, and every request in every state.

use super::*;

const ALL: [Request; 9] = [
    Request::Execute,
    Request::Prepare {
        hold: false,
        marked: false,
    },
    Request::Prepare {
        hold: false,
        marked: true,
    },
    Request::Prepare {
        hold: true,
        marked: false,
    },
    Request::Prepare {
        hold: true,
        marked: true,
    },
    Request::Commit { one_phase: false },
    Request::Commit { one_phase: true },
    Request::Rollback,
    Request::Deadline,
];

fn run(engine: &mut Engine, request: Request) -> Result<Step, Refusal> {
    let step = engine.decide(request)?;
    engine.finished(step);
    Ok(step)
}

#[test]
fn a_writing_branch_prepares_then_commits() {
    let mut e = Engine::new();
    assert_eq!(run(&mut e, Request::Execute), Ok(Step::RunStatements));
    e.note_write();
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: false,
                marked: false
            }
        ),
        Ok(Step::Prepare)
    );
    assert_eq!(e.phase(), Phase::Prepared);
    assert_eq!(
        run(&mut e, Request::Commit { one_phase: false }),
        Ok(Step::CommitPrepared)
    );
    assert!(e.is_finished());
    // Retried commits are answered without SQL.
    assert_eq!(
        run(&mut e, Request::Commit { one_phase: false }),
        Ok(Step::AlreadyDone(Done::Committed))
    );
}

#[test]
fn a_branch_that_wrote_nothing_votes_read_only_and_is_finished() {
    let mut e = Engine::new();
    run(&mut e, Request::Execute).unwrap();
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: false,
                marked: false
            }
        ),
        Ok(Step::FinishReadOnly)
    );
    assert!(e.is_finished());
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: false,
                marked: false
            }
        ),
        Ok(Step::AlreadyDone(Done::VotedReadOnly))
    );
    assert!(e.decide(Request::Commit { one_phase: false }).is_err());
}

#[test]
fn prepared_branches_are_never_decided_by_the_deadline() {
    let mut e = Engine::new();
    e.note_write();
    run(
        &mut e,
        Request::Prepare {
            hold: false,
            marked: false,
        },
    )
    .unwrap();
    assert_eq!(run(&mut e, Request::Deadline), Ok(Step::Ignore));
    assert_eq!(e.phase(), Phase::Prepared);
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: false,
                marked: false
            }
        ),
        Ok(Step::AlreadyDone(Done::VotedYes))
    );
    // Statements and one-phase commit are refused once prepared.
    assert!(e.decide(Request::Execute).is_err());
    assert!(e.decide(Request::Commit { one_phase: true }).is_err());
    assert_eq!(run(&mut e, Request::Rollback), Ok(Step::RollbackPrepared));
    assert_eq!(run(&mut e, Request::Rollback), Ok(Step::AlreadyDone(Done::RolledBack)));
}

#[test]
fn an_active_branch_rolls_back_at_its_deadline() {
    let mut e = Engine::new();
    e.note_write();
    assert_eq!(run(&mut e, Request::Deadline), Ok(Step::RollbackActive));
    assert_eq!(e.phase(), Phase::RolledBack);
    // Too late for anything but a rollback.
    assert!(e.decide(Request::Execute).is_err());
    assert!(
        e.decide(Request::Prepare {
            hold: false,
            marked: false
        })
        .is_err()
    );
    assert!(e.decide(Request::Commit { one_phase: false }).is_err());
}

#[test]
fn one_phase_commit_only_from_active() {
    let mut e = Engine::new();
    assert_eq!(
        run(&mut e, Request::Commit { one_phase: true }),
        Ok(Step::CommitOnePhase)
    );
    assert_eq!(e.phase(), Phase::Committed);
    assert!(Engine::new().decide(Request::Commit { one_phase: false }).is_err());
}

#[test]
fn failures_roll_back_unprepared_branches_and_keep_prepared_ones() {
    for step in [Step::RunStatements, Step::Prepare] {
        let mut e = Engine::new();
        e.failed(step, false);
        assert_eq!(e.phase(), Phase::RolledBack, "{step:?}");
    }
    let mut e = Engine::new();
    e.note_write();
    run(
        &mut e,
        Request::Prepare {
            hold: false,
            marked: false,
        },
    )
    .unwrap();
    for step in [Step::CommitPrepared, Step::RollbackPrepared] {
        for lost in [false, true] {
            e.failed(step, lost);
            assert_eq!(e.phase(), Phase::Prepared);
        }
    }
}

#[test]
fn a_lost_connection_never_turns_a_maybe_durable_step_into_a_rollback() {
    let mut e = Engine::new();
    e.note_write();
    e.failed(Step::Prepare, true);
    // Maybe prepared: only the coordinator's decision finishes it.
    assert_eq!(e.phase(), Phase::Prepared);
    assert_eq!(e.decide(Request::Deadline), Ok(Step::Ignore));
    assert_eq!(e.decide(Request::Rollback), Ok(Step::RollbackPrepared));

    // A one-phase commit may have taken effect before any error, lost
    // connection or not: the marker row settles it.
    for lost in [false, true] {
        let mut e = Engine::new();
        e.failed(Step::CommitOnePhase, lost);
        assert_eq!(e.ending(), Some(Ending::Unknown(None)));
        assert!(e.decide(Request::Commit { one_phase: true }).is_err());
        e.settled(true);
        assert_eq!(e.ending(), Some(Ending::Committed));
    }

    let mut e = Engine::new();
    e.failed(Step::RunStatements, true);
    assert_eq!(e.ending(), Some(Ending::RolledBack));
}

#[test]
fn a_read_only_branch_of_a_submit_keeps_its_locks_until_released() {
    let mut e = Engine::new();
    run(&mut e, Request::Execute).unwrap();
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: true,
                marked: true
            }
        ),
        Ok(Step::HoldReadOnly)
    );
    assert_eq!(e.phase(), Phase::HeldReadOnly);
    assert!(!e.is_finished());
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: true,
                marked: true
            }
        ),
        Ok(Step::AlreadyDone(Done::VotedReadOnly))
    );
    assert!(e.decide(Request::Execute).is_err());
    assert!(e.decide(Request::Commit { one_phase: false }).is_err());
    // Rolled back (the transaction aborted): its locks are gone, so it
    // no longer answers a Prepare with READ_ONLY.
    assert_eq!(run(&mut e, Request::Rollback), Ok(Step::RollbackActive));
    assert_eq!(e.ending(), Some(Ending::RolledBack));
    assert!(
        e.decide(Request::Prepare {
            hold: false,
            marked: false
        })
        .is_err()
    );
    // Its deadline releases it too.
    let mut e = Engine::new();
    run(
        &mut e,
        Request::Prepare {
            hold: true,
            marked: true,
        },
    )
    .unwrap();
    assert!(e.deadline_applies());
    assert_eq!(run(&mut e, Request::Deadline), Ok(Step::RollbackActive));
    assert!(
        e.decide(Request::Prepare {
            hold: false,
            marked: false
        })
        .is_err()
    );
}

#[test]
fn a_prepare_that_lost_its_connection_and_never_happened_ends_rolled_back() {
    let mut e = Engine::new();
    run(&mut e, Request::Execute).unwrap();
    e.note_write();
    e.failed(Step::Prepare, true);
    assert_eq!(e.phase(), Phase::Prepared);
    e.never_prepared();
    assert_eq!(e.ending(), Some(Ending::RolledBack));
    // Only a maybe-prepared branch can be found not prepared.
    let mut e = Engine::new();
    e.never_prepared();
    assert_eq!(e.phase(), Phase::Active);
}

#[test]
fn a_held_read_only_branch_is_confirmed_by_committing_its_marker_on_its_session() {
    let mut e = Engine::new();
    run(&mut e, Request::Execute).unwrap();
    run(
        &mut e,
        Request::Prepare {
            hold: true,
            marked: true,
        },
    )
    .unwrap();
    // Every vote is in: the coordinator prepares it again. Its marker row
    // commits in one phase: a durable YES.
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: false,
                marked: true
            }
        ),
        Ok(Step::ConfirmReadOnly)
    );
    assert_eq!(e.ending(), Some(Ending::Confirmed));
    // A repeated confirmation gets the same answer; it needs no phase 2.
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: false,
                marked: true
            }
        ),
        Ok(Step::AlreadyDone(Done::VotedReadOnly))
    );
    // If its session died, the one-phase commit may or may not have taken
    // effect: the marker row tells.
    let mut e = Engine::new();
    run(
        &mut e,
        Request::Prepare {
            hold: true,
            marked: true,
        },
    )
    .unwrap();
    e.failed(Step::ConfirmReadOnly, true);
    assert_eq!(e.phase(), Phase::Unknown);
    // Its marker row says it did not commit: no YES, not even a repeat.
    e.settled(false);
    assert_eq!(e.ending(), Some(Ending::RolledBack));
    assert!(
        e.decide(Request::Prepare {
            hold: false,
            marked: true
        })
        .is_err()
    );
    // Outside the participant set, it is only ended.
    let mut e = Engine::new();
    run(
        &mut e,
        Request::Prepare {
            hold: true,
            marked: false,
        },
    )
    .unwrap();
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: false,
                marked: false
            }
        ),
        Ok(Step::FinishReadOnly)
    );
    assert_eq!(e.ending(), Some(Ending::ReadOnly));
    let mut e = Engine::new();
    run(
        &mut e,
        Request::Prepare {
            hold: true,
            marked: false,
        },
    )
    .unwrap();
    e.failed(Step::FinishReadOnly, true);
    assert_ne!(e.ending(), Some(Ending::ReadOnly));
}

#[test]
fn a_submit_branch_that_wrote_and_read_votes_yes_held_and_prepares_when_asked_again() {
    let mut e = Engine::new();
    e.note_read();
    e.note_write();
    // In a Submit: holds its locks unprepared.
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: true,
                marked: true
            }
        ),
        Ok(Step::HoldWriter)
    );
    assert_eq!(e.phase(), Phase::HeldWriter);
    assert!(e.deadline_applies());
    assert_eq!(e.ending(), None);
    assert_eq!(
        e.decide(Request::Prepare {
            hold: true,
            marked: true
        }),
        Ok(Step::AlreadyDone(Done::VotedHeld))
    );
    // Every vote is in: it prepares on the session that holds its locks.
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: false,
                marked: false
            }
        ),
        Ok(Step::Prepare)
    );
    assert_eq!(e.phase(), Phase::Prepared);

    // A dead session fails the prepare: rolled back, or maybe prepared
    // when the connection broke during it.
    for (lost, phase) in [(false, Phase::RolledBack), (true, Phase::Prepared)] {
        let mut e = Engine::new();
        e.note_read();
        e.note_write();
        run(
            &mut e,
            Request::Prepare {
                hold: true,
                marked: true,
            },
        )
        .unwrap();
        e.failed(Step::Prepare, lost);
        assert_eq!(e.phase(), phase);
    }

    // Held, it is still rolled back by its deadline or the coordinator.
    let mut e = Engine::new();
    e.note_read();
    e.note_write();
    run(
        &mut e,
        Request::Prepare {
            hold: true,
            marked: true,
        },
    )
    .unwrap();
    assert_eq!(e.decide(Request::Deadline), Ok(Step::RollbackActive));
    assert_eq!(run(&mut e, Request::Rollback), Ok(Step::RollbackActive));
    assert_eq!(e.ending(), Some(Ending::RolledBack));
}

#[test]
fn a_branch_that_only_wrote_or_is_not_in_a_submit_prepares_at_once() {
    let mut e = Engine::new();
    e.note_write();
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: true,
                marked: true
            }
        ),
        Ok(Step::Prepare)
    );
    let mut e = Engine::new();
    e.note_read();
    e.note_write();
    // An interactive Commit: every statement has run, every lock is held.
    assert_eq!(
        run(
            &mut e,
            Request::Prepare {
                hold: false,
                marked: false
            }
        ),
        Ok(Step::Prepare)
    );
}

/// Every (state, request) pair: a finished branch never runs SQL again
/// except as an idempotent repeat, and a committed branch can never be
/// rolled back (nor the reverse).
#[test]
fn exhaustive_finished_states_are_final() {
    for phase in [Phase::Committed, Phase::RolledBack, Phase::Unknown] {
        for read_only in [false, true] {
            let e = Engine {
                phase,
                wrote: !read_only,
                read_rows: true,
                read_only,
            };
            for request in ALL {
                match e.decide(request) {
                    Ok(Step::AlreadyDone(done)) => match (phase, done) {
                        (Phase::Committed, Done::Committed) => {}
                        (Phase::RolledBack, Done::RolledBack | Done::VotedReadOnly) => {}
                        // A confirmed read-only branch (its marker committed).
                        (Phase::Committed, Done::VotedReadOnly) if read_only => {}
                        other => panic!("{other:?} for {request:?}"),
                    },
                    Ok(Step::Ignore) => assert_eq!(request, Request::Deadline),
                    Ok(step) => panic!("{phase:?} ran {step:?} for {request:?}"),
                    Err(refusal) => assert!(!refusal.to_string().is_empty()),
                }
            }
        }
    }
}

#[test]
fn exhaustive_every_request_in_every_live_state_is_answered() {
    for wrote in [false, true] {
        for prepared in [false, true] {
            let mut e = Engine::new();
            if wrote {
                e.note_write();
            }
            if prepared {
                e.phase = Phase::Prepared;
            }
            for request in ALL {
                let mut copy = e.clone();
                if let Ok(step) = copy.decide(request) {
                    copy.finished(step);
                    // A prepared branch only leaves Prepared by an
                    // explicit commit or rollback.
                    if prepared && copy.phase() != Phase::Prepared {
                        assert!(matches!(
                            request,
                            Request::Commit { one_phase: false } | Request::Rollback
                        ));
                    }
                }
            }
        }
    }
}
