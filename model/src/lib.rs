//! A model of tandem's commit protocol without a coordinator log (DESIGN
//! §3b, docs/protocol.md), checked exhaustively with [stateright].
//!
//! One global transaction (a Submit carrying a client key, so a retry is
//! the same transaction) over `participants` databases, driven by
//! `replicas` stateless coordinator replicas. The rule under test:
//!
//! > A transaction is committed iff every branch is durably YES: a writing
//! > branch prepared (its marker row inside it) or committed, a held
//! > read-only branch confirmed (its marker row committed with it).
//!
//! Any replica may resolve at any time: it asks every participant
//! ([`Msg::Inquire`]). A branch that is not durably YES gets a **fence**
//! row under the marker's key, after which it can never prepare; InnoDB's
//! unique key decides which of the two came first. Every NO a participant
//! sends is backed by a fence written before the reply, so a NO is as
//! durable as a YES, and a retried Submit (same key, same gtrid) reads the
//! first attempt's votes instead of running again.
//!
//! What is modelled:
//! - participants with MariaDB's branch states ([`Branch`]), the fence row,
//!   and a process that can crash (its sessions die: an unprepared branch
//!   is rolled back by MariaDB, a prepared one survives);
//! - coordinator replicas that keep everything in memory and lose it in a
//!   crash;
//! - a network that loses, duplicates and reorders messages. A request
//!   that begins a branch ([`Msg::Execute`]) is delivered at most once per
//!   send, as gRPC does; a retry by the client is a new send;
//! - a client that submits, retries the Submit with the same key on
//!   another replica, and asks any replica how the transaction ended;
//! - timers: the transaction's deadline on each participant, coordinator
//!   timeouts that resend or fence, participant recovery asking a replica.
//!
//! Checked: atomicity; no branch prepares or commits under a fence; no
//! phase-2 request finds a branch finished the other way (a heuristic
//! hazard); every answer the client got agrees with the final state; and,
//! from every reachable state, once faults stop, everything ends (no
//! branch in doubt, every replica done, the client answered).
//!
//! [`Bug`] breaks one rule on purpose; the tests show the checker catches
//! each.

use std::collections::BTreeSet;

use stateright::{Model, Property};

/// A participant, by index.
pub type Pid = usize;
/// A coordinator replica, by index.
pub type Cid = usize;

/// A deliberately broken rule, to show that the check can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// A coordinator that timed out waiting for a vote aborts at once
    /// instead of fencing the silent branch (plain 2PC's presumed abort,
    /// which is wrong once the decision lives in the participants).
    AbortWithoutFence,
    /// A branch whose statement fails rolls back and votes NO without
    /// writing a fence, so a retried Submit can begin it again.
    NoVoteWithoutFence,
    /// A held read-only branch is released instead of confirmed with a
    /// durable marker, so resolvers find nothing there and fence it.
    ReleaseReader,
    /// An inquiry that finds no branch answers NO without fencing it.
    InquireWithoutFence,
}

#[derive(Clone, Debug)]
pub struct Protocol {
    pub participants: usize,
    pub replicas: usize,
    /// Participant whose branch only reads (held until confirmed).
    pub reader: Option<Pid>,
    /// How often the client may send the Submit (the first goes to
    /// replica 0, retries to the next replicas).
    pub submits: u8,
    /// How often the client may ask a replica how the transaction ended.
    pub asks: u8,
    /// Process crashes (coordinators and participants together).
    pub crashes: u8,
    pub losses: u8,
    pub duplicates: u8,
    /// Most messages in flight at once: states beyond it are not explored
    /// (without a bound, every subset of lingering messages is a state).
    pub in_flight: usize,
    pub bug: Option<Bug>,
}

impl Default for Protocol {
    fn default() -> Self {
        Self {
            participants: 2,
            replicas: 2,
            reader: None,
            submits: 2,
            asks: 1,
            crashes: 1,
            losses: 1,
            duplicates: 1,
            in_flight: 4,
            bug: None,
        }
    }
}

/// A branch in its database, as MariaDB holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Branch {
    /// No XA transaction and no marker row (never begun, or rolled back).
    None,
    /// `XA START` done, statements running.
    Active,
    /// A read-only branch that voted and keeps its locks, not durable.
    Held,
    /// `XA PREPARE` done, the marker row inside it.
    Prepared,
    /// Committed, the marker row visible.
    Committed,
}

impl Branch {
    fn durably_yes(self) -> bool {
        matches!(self, Branch::Prepared | Branch::Committed)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Participant {
    pub up: bool,
    pub branch: Branch,
    /// The fence row under the branch's key.
    pub fence: bool,
    /// The replica whose Execute began the live branch: it gets the vote.
    pub began_by: Option<Cid>,
    /// A commit found the branch not prepared, or a rollback found it
    /// committed.
    pub hazard: bool,
}

/// What a coordinator knows of one branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum View {
    /// No durable answer yet (a branch still running does not answer).
    Waiting,
    /// A read-only branch holding its locks, to be confirmed.
    Held,
    Yes,
    No,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The owner sent every branch's Execute and collects votes.
    Voting,
    /// Every writer is YES; held readers are confirming.
    Confirming,
    /// Some branch did not answer: fence it (or a resolver asks all).
    Fencing,
    /// Decided; phase 2 was sent once. A lost commit or rollback is found
    /// by the participant's recovery, which asks a replica.
    Committed,
    Aborted,
}

impl Phase {
    fn decided(self) -> Option<bool> {
        match self {
            Phase::Committed => Some(true),
            Phase::Aborted => Some(false),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Txn {
    pub phase: Phase,
    pub views: Vec<View>,
    /// A client call (Submit or GetTransaction) waits for the outcome.
    pub client_waiting: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Coordinator {
    pub up: bool,
    /// Memory only: lost in a crash.
    pub txn: Option<Txn>,
}

/// A participant's answer to Execute, Confirm or Inquire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Answer {
    Yes,
    Held,
    No,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    /// Begin the branch, run its statements, write the marker and prepare
    /// (a reader: hold).
    Execute {
        from: Cid,
        to: Pid,
    },
    /// Commit a held reader's marker row with it (one phase).
    Confirm {
        from: Cid,
        to: Pid,
    },
    Commit {
        from: Cid,
        to: Pid,
    },
    Rollback {
        from: Cid,
        to: Pid,
    },
    /// Is the branch durably YES? If it is not there, fence it.
    Inquire {
        from: Cid,
        to: Pid,
    },
    Reply {
        from: Pid,
        to: Cid,
        answer: Answer,
    },
    /// Recovery of a prepared branch: how did it end?
    Ask {
        from: Pid,
        to: Cid,
    },
}

impl Msg {
    fn deliverable(&self, s: &State) -> bool {
        match *self {
            Msg::Execute { to, .. }
            | Msg::Confirm { to, .. }
            | Msg::Commit { to, .. }
            | Msg::Rollback { to, .. }
            | Msg::Inquire { to, .. } => s.participants[to].up,
            Msg::Reply { to, .. } | Msg::Ask { to, .. } => s.coordinators[to].up,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub participants: Vec<Participant>,
    pub coordinators: Vec<Coordinator>,
    /// Messages in flight: a set, so a resend of a message still in
    /// flight changes nothing.
    pub net: BTreeSet<Msg>,
    pub told_committed: bool,
    pub told_aborted: bool,
    pub submits: u8,
    pub asks: u8,
    pub crashes: u8,
    pub losses: u8,
    pub duplicates: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Submit(Cid),
    GetTransaction(Cid),
    Deliver(Msg),
    Duplicate(Msg),
    Lose(Msg),
    /// The branch's statements finish and it votes.
    Vote(Pid),
    /// A statement or guard fails: the branch rolls back and votes NO.
    Fail(Pid),
    /// The transaction's deadline passes on a participant.
    Deadline(Pid),
    /// The participant's recovery asks a replica about its prepared branch.
    Recover(Pid, Cid),
    /// A coordinator's timer: resend, or fence the branches it did not
    /// hear from.
    Timeout(Cid),
    CrashCoordinator(Cid),
    RestartCoordinator(Cid),
    CrashParticipant(Pid),
    RestartParticipant(Pid),
}

impl Protocol {
    fn is_reader(&self, p: Pid) -> bool {
        self.reader == Some(p)
    }

    fn broken(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    fn send_all(&self, s: &mut State, c: Cid, msg: fn(Cid, Pid) -> Msg, only: impl Fn(View) -> bool) {
        let targets: Vec<Pid> = match &s.coordinators[c].txn {
            Some(txn) => (0..self.participants).filter(|&p| only(txn.views[p])).collect(),
            None => Vec::new(),
        };
        for p in targets {
            s.net.insert(msg(c, p));
        }
    }

    /// A coordinator starts working on the transaction: as the owner of a
    /// Submit (`execute`), or as a resolver that asks every participant.
    fn start(&self, s: &mut State, c: Cid, execute: bool, client_waiting: bool) {
        s.coordinators[c].txn = Some(Txn {
            phase: if execute { Phase::Voting } else { Phase::Fencing },
            views: vec![View::Waiting; self.participants],
            client_waiting,
        });
        if execute {
            self.send_all(s, c, |from, to| Msg::Execute { from, to }, |_| true);
        } else {
            self.send_all(s, c, |from, to| Msg::Inquire { from, to }, |_| true);
        }
    }

    /// Answers a waiting client once the outcome is decided.
    fn answer(s: &mut State, c: Cid) {
        let Some(txn) = &mut s.coordinators[c].txn else { return };
        if !txn.client_waiting {
            return;
        }
        match txn.phase.decided() {
            Some(true) => s.told_committed = true,
            Some(false) => s.told_aborted = true,
            None => return,
        }
        txn.client_waiting = false;
    }

    /// Moves a coordinator's transaction on from what it knows.
    fn advance(&self, s: &mut State, c: Cid) {
        let Some(txn) = &mut s.coordinators[c].txn else { return };
        match txn.phase {
            Phase::Voting | Phase::Fencing | Phase::Confirming => {
                let views = &txn.views;
                if views.contains(&View::No) {
                    txn.phase = Phase::Aborted;
                    self.send_all(s, c, |from, to| Msg::Rollback { from, to }, |_| true);
                } else if views.iter().all(|v| *v == View::Yes)
                    || (self.broken(Bug::ReleaseReader) && views.iter().all(|v| matches!(v, View::Yes | View::Held)))
                {
                    txn.phase = Phase::Committed;
                    self.send_all(s, c, |from, to| Msg::Commit { from, to }, |v| v == View::Yes);
                    self.send_all(s, c, |from, to| Msg::Rollback { from, to }, |v| v == View::Held);
                } else if txn.phase != Phase::Confirming && views.iter().all(|v| matches!(v, View::Yes | View::Held)) {
                    txn.phase = Phase::Confirming;
                    self.send_all(s, c, |from, to| Msg::Confirm { from, to }, |v| v == View::Held);
                }
            }
            Phase::Committed | Phase::Aborted => {}
        }
        Self::answer(s, c);
    }

    fn reply(s: &mut State, from: Pid, to: Option<Cid>, answer: Answer) {
        if let Some(to) = to {
            s.net.insert(Msg::Reply { from, to, answer });
        }
    }

    /// A participant rolls back a branch that never prepared and makes
    /// sure it never will.
    fn fail_branch(&self, s: &mut State, p: Pid, fence: bool) {
        let part = &mut s.participants[p];
        let to = part.began_by.take();
        part.branch = Branch::None;
        part.fence |= fence;
        Self::reply(s, p, to, Answer::No);
    }

    fn deliver(&self, s: &mut State, msg: Msg) {
        match msg {
            Msg::Execute { from, to: p } => {
                let part = &mut s.participants[p];
                match part.branch {
                    // Begins, runs its statements, and its marker insert
                    // hits the fence: rolled back, NO.
                    Branch::None if part.fence => Self::reply(s, p, Some(from), Answer::No),
                    Branch::None => {
                        part.branch = Branch::Active;
                        part.began_by = Some(from);
                    }
                    // XA START finds the XID live (a retry's Execute):
                    // ask again later.
                    Branch::Active | Branch::Held => {}
                    // XA START finds it prepared, or the marker committed.
                    Branch::Prepared | Branch::Committed => Self::reply(s, p, Some(from), Answer::Yes),
                }
            }
            Msg::Confirm { from, to: p } => match s.participants[p].branch {
                Branch::Held => {
                    s.participants[p].branch = Branch::Committed;
                    s.participants[p].began_by = None;
                    Self::reply(s, p, Some(from), Answer::Yes);
                }
                Branch::Committed | Branch::Prepared => Self::reply(s, p, Some(from), Answer::Yes),
                Branch::Active => {}
                // Its session died: the locks it read under are gone.
                Branch::None => {
                    s.participants[p].fence = true;
                    Self::reply(s, p, Some(from), Answer::No);
                }
            },
            Msg::Commit { to: p, .. } => {
                let part = &mut s.participants[p];
                match part.branch {
                    Branch::Prepared | Branch::Committed => part.branch = Branch::Committed,
                    Branch::None | Branch::Active | Branch::Held => part.hazard = true,
                }
            }
            Msg::Rollback { to: p, .. } => {
                let part = &mut s.participants[p];
                match part.branch {
                    Branch::Committed => part.hazard = true,
                    Branch::None => {}
                    Branch::Active | Branch::Held | Branch::Prepared => {
                        part.branch = Branch::None;
                        part.began_by = None;
                    }
                }
            }
            Msg::Inquire { from, to: p } => {
                let part = &mut s.participants[p];
                let answer = match part.branch {
                    Branch::Prepared | Branch::Committed => Answer::Yes,
                    Branch::Held => Answer::Held,
                    // Still running here: ask again later.
                    Branch::Active => return,
                    Branch::None => {
                        if !self.broken(Bug::InquireWithoutFence) {
                            part.fence = true;
                        }
                        Answer::No
                    }
                };
                Self::reply(s, p, Some(from), answer);
            }
            Msg::Reply { from: p, to: c, answer } => {
                let Some(txn) = &mut s.coordinators[c].txn else { return };
                if matches!(txn.phase, Phase::Voting | Phase::Fencing | Phase::Confirming) {
                    let view = &mut txn.views[p];
                    // YES and NO are durable facts; a late HELD does not
                    // undo them.
                    *view = match (*view, answer) {
                        (View::Yes | View::No, _) => *view,
                        (_, Answer::Yes) => View::Yes,
                        (_, Answer::No) => View::No,
                        (_, Answer::Held) => View::Held,
                    };
                    self.advance(s, c);
                }
            }
            Msg::Ask { from: p, to: c } => match s.coordinators[c].txn.as_ref().map(|t| t.phase.decided()) {
                Some(Some(true)) => {
                    s.net.insert(Msg::Commit { from: c, to: p });
                }
                Some(Some(false)) => {
                    s.net.insert(Msg::Rollback { from: c, to: p });
                }
                // Undecided here: the participant asks again later.
                Some(None) => {}
                None => self.start(s, c, false, false),
            },
        }
    }

    fn timeout_enabled(&self, s: &State, c: Cid) -> bool {
        let Some(txn) = &s.coordinators[c].txn else {
            return false;
        };
        match txn.phase {
            Phase::Voting | Phase::Fencing => txn.views.contains(&View::Waiting),
            Phase::Confirming => txn.views.iter().any(|v| !matches!(v, View::Yes)),
            Phase::Committed | Phase::Aborted => false,
        }
    }

    fn timeout(&self, s: &mut State, c: Cid) {
        let Some(txn) = &mut s.coordinators[c].txn else { return };
        let silent = |v: View| v == View::Waiting;
        match txn.phase {
            Phase::Voting if self.broken(Bug::AbortWithoutFence) => {
                for v in &mut txn.views {
                    if silent(*v) {
                        *v = View::No;
                    }
                }
                self.advance(s, c);
            }
            Phase::Voting | Phase::Fencing => {
                txn.phase = Phase::Fencing;
                self.send_all(s, c, |from, to| Msg::Inquire { from, to }, silent);
            }
            Phase::Confirming => {
                self.send_all(s, c, |from, to| Msg::Confirm { from, to }, |v| v == View::Held);
                self.send_all(s, c, |from, to| Msg::Inquire { from, to }, silent);
            }
            Phase::Committed | Phase::Aborted => {}
        }
    }

    fn apply(&self, s: &mut State, action: Action) {
        match action {
            Action::Submit(c) => {
                s.submits += 1;
                if s.coordinators[c].txn.is_some() {
                    let txn = s.coordinators[c].txn.as_mut().expect("checked");
                    txn.client_waiting = true;
                    Self::answer(s, c);
                } else {
                    self.start(s, c, true, true);
                }
            }
            Action::GetTransaction(c) => {
                s.asks += 1;
                if let Some(txn) = &mut s.coordinators[c].txn {
                    txn.client_waiting = true;
                    Self::answer(s, c);
                } else {
                    self.start(s, c, false, true);
                }
            }
            Action::Deliver(msg) => {
                s.net.remove(&msg);
                self.deliver(s, msg);
            }
            Action::Duplicate(msg) => {
                s.duplicates += 1;
                self.deliver(s, msg);
            }
            Action::Lose(msg) => {
                s.losses += 1;
                s.net.remove(&msg);
            }
            Action::Vote(p) => {
                let to = s.participants[p].began_by;
                if self.is_reader(p) {
                    s.participants[p].branch = Branch::Held;
                    Self::reply(s, p, to, Answer::Held);
                } else {
                    s.participants[p].branch = Branch::Prepared;
                    s.participants[p].began_by = None;
                    Self::reply(s, p, to, Answer::Yes);
                }
            }
            Action::Fail(p) => self.fail_branch(s, p, !self.broken(Bug::NoVoteWithoutFence)),
            Action::Deadline(p) => self.fail_branch(s, p, true),
            Action::Recover(p, c) => {
                s.net.insert(Msg::Ask { from: p, to: c });
            }
            Action::Timeout(c) => self.timeout(s, c),
            Action::CrashCoordinator(c) => {
                s.crashes += 1;
                s.coordinators[c] = Coordinator { up: false, txn: None };
            }
            Action::RestartCoordinator(c) => s.coordinators[c].up = true,
            Action::CrashParticipant(p) => {
                s.crashes += 1;
                let part = &mut s.participants[p];
                part.up = false;
                part.began_by = None;
                // Its sessions die: MariaDB rolls back what is not prepared.
                if matches!(part.branch, Branch::Active | Branch::Held) {
                    part.branch = Branch::None;
                }
            }
            Action::RestartParticipant(p) => s.participants[p].up = true,
        }
    }

    /// Every action but the faults (crashes, losses, duplicates) and the
    /// client's calls.
    fn progress_actions(&self, s: &State, out: &mut Vec<Action>) {
        for msg in &s.net {
            if msg.deliverable(s) {
                out.push(Action::Deliver(*msg));
            }
        }
        for (p, part) in s.participants.iter().enumerate() {
            if !part.up {
                continue;
            }
            match part.branch {
                Branch::Active => {
                    out.push(Action::Vote(p));
                    out.push(Action::Fail(p));
                    out.push(Action::Deadline(p));
                }
                Branch::Held => out.push(Action::Deadline(p)),
                Branch::Prepared => {
                    for c in 0..self.replicas {
                        out.push(Action::Recover(p, c));
                    }
                }
                Branch::None | Branch::Committed => {}
            }
        }
        for c in 0..self.replicas {
            if s.coordinators[c].up && self.timeout_enabled(s, c) {
                out.push(Action::Timeout(c));
            }
        }
    }

    /// Whether nothing is left to do: no message in flight, no branch
    /// running or in doubt, every replica finished, and the client told.
    pub fn finished(&self, s: &State) -> bool {
        s.net.is_empty()
            && s.participants
                .iter()
                .all(|p| matches!(p.branch, Branch::None | Branch::Committed))
            && s.coordinators.iter().all(|c| {
                c.txn
                    .as_ref()
                    .is_none_or(|t| matches!(t.phase, Phase::Committed | Phase::Aborted))
            })
            && (s.submits == 0 || s.told_committed || s.told_aborted)
    }

    /// Runs the system from `state` with faults stopped: every process
    /// restarts, messages arrive, and time passes in rounds (timeouts,
    /// recovery, the client asking once it has no answer, and from the
    /// third round the deadline). `true` if it ends within the rounds.
    pub fn settles(&self, state: &State) -> bool {
        let mut s = state.clone();
        for c in &mut s.coordinators {
            c.up = true;
        }
        for p in &mut s.participants {
            p.up = true;
        }
        for round in 0..12 {
            let mut steps = 0;
            loop {
                let next = s.net.iter().next().copied();
                if let Some(msg) = next {
                    self.apply(&mut s, Action::Deliver(msg));
                } else if let Some(p) = s.participants.iter().position(|p| p.branch == Branch::Active) {
                    self.apply(&mut s, Action::Vote(p));
                } else {
                    break;
                }
                steps += 1;
                if steps > 1_000 {
                    return false;
                }
            }
            if self.finished(&s) {
                return true;
            }
            for c in 0..self.replicas {
                if self.timeout_enabled(&s, c) {
                    self.apply(&mut s, Action::Timeout(c));
                }
            }
            for p in 0..self.participants {
                match s.participants[p].branch {
                    Branch::Prepared => self.apply(&mut s, Action::Recover(p, round % self.replicas)),
                    Branch::Held if round >= 2 => self.apply(&mut s, Action::Deadline(p)),
                    _ => {}
                }
            }
            if s.submits > 0 && !s.told_committed && !s.told_aborted {
                let c = round % self.replicas;
                match &mut s.coordinators[c].txn {
                    Some(txn) => {
                        txn.client_waiting = true;
                        Self::answer(&mut s, c);
                    }
                    None => self.start(&mut s, c, false, true),
                }
            }
        }
        false
    }
}

impl Model for Protocol {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            participants: vec![
                Participant {
                    up: true,
                    branch: Branch::None,
                    fence: false,
                    began_by: None,
                    hazard: false,
                };
                self.participants
            ],
            coordinators: vec![Coordinator { up: true, txn: None }; self.replicas],
            net: BTreeSet::new(),
            told_committed: false,
            told_aborted: false,
            submits: 0,
            asks: 0,
            crashes: 0,
            losses: 0,
            duplicates: 0,
        }]
    }

    fn actions(&self, s: &State, out: &mut Vec<Action>) {
        self.progress_actions(s, out);
        if s.submits < self.submits {
            let c = usize::from(s.submits) % self.replicas;
            if s.coordinators[c].up {
                out.push(Action::Submit(c));
            }
        }
        if s.submits > 0 && s.asks < self.asks {
            for c in 0..self.replicas {
                if s.coordinators[c].up {
                    out.push(Action::GetTransaction(c));
                }
            }
        }
        for msg in &s.net {
            if s.losses < self.losses {
                out.push(Action::Lose(*msg));
            }
            // A begin is delivered at most once per send.
            if s.duplicates < self.duplicates && msg.deliverable(s) && !matches!(msg, Msg::Execute { .. }) {
                out.push(Action::Duplicate(*msg));
            }
        }
        for c in 0..self.replicas {
            if !s.coordinators[c].up {
                out.push(Action::RestartCoordinator(c));
            } else if s.crashes < self.crashes {
                out.push(Action::CrashCoordinator(c));
            }
        }
        for p in 0..self.participants {
            if !s.participants[p].up {
                out.push(Action::RestartParticipant(p));
            } else if s.crashes < self.crashes {
                out.push(Action::CrashParticipant(p));
            }
        }
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.net.len() <= self.in_flight
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        self.apply(&mut s, action);
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(
                "atomic: a committed branch means every branch is durably YES",
                |_, s: &State| {
                    !s.participants.iter().any(|p| p.branch == Branch::Committed)
                        || s.participants.iter().all(|p| p.branch.durably_yes())
                },
            ),
            Property::always("a fenced branch never prepares or commits", |_, s: &State| {
                s.participants.iter().all(|p| !(p.fence && p.branch.durably_yes()))
            }),
            Property::always("no heuristic hazard", |_, s: &State| {
                s.participants.iter().all(|p| !p.hazard)
            }),
            Property::always("every answer agrees with the final state", |_, s: &State| {
                let all_yes = s.participants.iter().all(|p| p.branch.durably_yes());
                let any_committed = s.participants.iter().any(|p| p.branch == Branch::Committed);
                let contradicts = s.told_committed && s.told_aborted;
                let committed_wrongly = s.told_committed && !all_yes;
                let aborted_wrongly = s.told_aborted && (all_yes || any_committed);
                !(contradicts || committed_wrongly || aborted_wrongly)
            }),
            Property::always("everything ends once faults stop", |m: &Protocol, s: &State| {
                m.settles(s)
            }),
            Property::sometimes("commits", |_, s: &State| {
                s.told_committed && s.participants.iter().all(|p| p.branch == Branch::Committed)
            }),
            Property::sometimes("aborts", |_, s: &State| s.told_aborted),
            Property::sometimes("a retried Submit is answered", |_, s: &State| {
                s.submits > 1 && (s.told_committed || s.told_aborted)
            }),
        ]
    }
}
