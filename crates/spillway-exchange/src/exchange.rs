//! The state machine of one request's life.
//!
//! # How a request moves
//!
//! The gateway admits the request (tenant quota reserved, the core's plan made and its first
//! step admitted in one step of the core) and creates the [`Exchange`] with the plan. From then
//! on the exchange alone decides:
//!
//! * **Attempts.** It asks the driver to `Send` to the admitted step's deployment and sets a
//!   deadline: an attempt that streams from the upstream must deliver a piece within
//!   `first_byte` of being sent and of its previous piece (for a client that wants the answer
//!   whole too: the gateway streams it from the upstream and assembles it, so a hung upstream
//!   fails over after `first_byte`); a non-streamed request's whole answer must come within
//!   `request`.
//! * **Failover before the first byte.** A retryable failure (connect, timeout, 429, 5xx) of an
//!   attempt whose answer has not reached the client releases its admission with the failure
//!   (the core learns from it), takes one retry from the global budget and admits the next step
//!   of the plan that has room. Only steps of the plan are ever sent to, and the plan is made
//!   from the profile's destination set only: residency holds by construction. A request that
//!   runs out of steps is throttled (429) when some candidate was never tried, else it gets the
//!   error of its last failure; a non-retryable failure (the upstream's own 4xx) is relayed.
//! * **Commit.** A stream commits with its first piece that carries part of the answer (text, a
//!   tool call, a finish reason or usage; the client's response head goes out with it): chunks
//!   before it that carry nothing, such as the role chunk, are held, so an attempt that breaks
//!   after them still fails over. A non-streamed answer commits whole, at its end. After the
//!   commit a failure closes the stream with an error event, unless the request has mid-stream
//!   failover ([`resume`]): then the answer is continued in another region of the plan.
//! * **The client.** Gone or stalled, the attempt's admission is released at once (the
//!   deployment's capacity is back), and the attempt is still read, without the client, until
//!   its upstream ends or fails or `drain` has passed: what it had generated and not yet
//!   delivered (held in sockets by the stall) is counted, so the record bills every token of it
//!   ([`drain`]). Then the attempt is cancelled and the exchange ends.
//! * **The end.** Whatever the path, the last action is exactly one
//!   [`Finished`](Action::Finished) with the [`Record`](crate::Record): the admission has been
//!   released exactly once, and the record says how the tenant's reservation settles (in full
//!   back when nothing reached an upstream's answer, else to the tokens of the answer), with
//!   cost, tries and timings.
//!
//! Like `quinn-proto`'s connection, the exchange does no I/O and reads no clock: each event
//! comes with `now`, and actions are polled. So every path is unit-tested in virtual time, and a
//! property test drives random event sequences through it.
use std::collections::VecDeque;
use std::time::Duration;

use spillway_core::{Admission, FailureKind, Outcome as CoreOutcome, Plan, Reason, RegionIx};
use spillway_proto::Usage;

use crate::action::{Action, Continuation, StreamEnd};
use crate::capacity::Capacity;
use crate::event::{AttemptId, Event, Facts, Failure, Limits, Refusal};
use crate::piece::Piece;
use crate::record::{Outcome, Try, TryResult};

mod bill;
mod deadlines;
mod drain;
pub mod resume;

use drain::Draining;
use resume::Relayed;

/// One request's life. Create it with [`Exchange::new`], feed it [`Event`]s with
/// [`Exchange::handle`], and carry out what [`Exchange::poll_action`] returns until it returns
/// [`Action::Finished`].
#[derive(Debug)]
pub struct Exchange {
    facts: Facts,
    limits: Limits,
    plan: Plan,
    admitted_at: Duration,
    live: Option<Live>,
    /// The plan step of the live (or last) attempt.
    step: usize,
    tries: Vec<Try>,
    /// When the client got its first byte of an answer.
    committed_at: Option<Duration>,
    /// Whether the prompt reached an upstream whose answer the client is getting or got.
    answer: Answer,
    actions: VecDeque<Action>,
    timer: Option<Duration>,
    /// The attempt still read after the client stalled or left.
    draining: Option<Draining>,
    /// A continuation of a broken stream waiting for room ([`resume`]).
    waiting: Option<resume::Waiting>,
    done: bool,
}

/// The attempt in progress.
#[derive(Debug)]
struct Live {
    id: AttemptId,
    admission: Admission,
    region: RegionIx,
    reason: Reason,
    sent_at: Duration,
    first_piece_at: Option<Duration>,
    last_piece_at: Option<Duration>,
    first_token_at: Option<Duration>,
    last_token_at: Option<Duration>,
    /// A continuation of a broken stream ([`resume`]).
    resumes: bool,
}

/// What is known of the answer so far.
#[derive(Debug, Default)]
struct Answer {
    /// The region and reason of the attempt the answer comes from.
    from: Option<(RegionIx, Reason)>,
    /// Output pieces of the live (or last) attempt.
    output_tokens: u64,
    /// The usage the live (or last) attempt's upstream reported, if it did.
    reported: Option<Usage>,
    /// What the client has been given of a stream, across legs.
    relay: Relayed,
    /// A non-streamed answer, held until its attempt ends.
    held: Option<Piece>,
    /// Stream chunks that carry nothing yet (`Piece::is_preamble`), held until the first that
    /// does: they do not commit the stream.
    preamble: Vec<Piece>,
    /// Whether the prompt is charged (an upstream had it and the request did not end refused).
    charged: bool,
}

impl Exchange {
    /// A request admitted with `plan`; `first` is the step the core admitted it on with its
    /// admission, `None` when no step had room (the exchange then answers 429).
    pub fn new(
        now: Duration,
        facts: Facts,
        limits: Limits,
        plan: Plan,
        first: Option<(usize, Admission)>,
    ) -> Exchange {
        let mut x = Exchange {
            facts,
            limits,
            plan,
            admitted_at: now,
            live: None,
            step: 0,
            tries: Vec::new(),
            committed_at: None,
            answer: Answer::default(),
            actions: VecDeque::new(),
            timer: None,
            draining: None,
            waiting: None,
            done: false,
        };
        match first {
            Some((step, admission)) => {
                let reason = x.plan.steps.get(step).map_or(Reason::Local, |s| s.reason);
                x.send(now, step, admission, reason);
            }
            None => {
                let retry_after = x.plan.retry_after.unwrap_or(Duration::from_secs(1));
                let refusal = if x.plan.held_back {
                    Refusal::Reserved { retry_after }
                } else {
                    Refusal::NoCapacity { retry_after }
                };
                x.refuse(now, refusal);
            }
        }
        x.refresh_timer();
        x
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The deadline the driver must wake the exchange at, if any.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timer
    }

    /// Whether the exchange has ended (its `Finished` may still be waiting in the actions).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feed one event that happened at `now`. Events after the end, and events of attempts the
    /// exchange gave up, are ignored.
    pub fn handle(&mut self, now: Duration, event: Event, cap: &mut impl Capacity) {
        if self.done {
            return;
        }
        if self.draining.is_some() {
            self.on_draining(now, event);
            return self.refresh_timer();
        }
        match event {
            Event::UpstreamHead(_) => {}
            Event::UpstreamPiece(id, piece) if self.is_live(id) => self.on_piece(now, piece),
            Event::UpstreamEnd(id) if self.is_live(id) => self.on_end(now, cap),
            Event::UpstreamError(id, f) if self.is_live(id) => self.on_failure(now, f, cap),
            Event::ClientGone => {
                let after_first_byte = self.committed_at.is_some();
                self.give_up(now, Outcome::ClientGone { after_first_byte }, cap);
            }
            Event::ClientStalled => self.give_up(now, Outcome::Stalled, cap),
            Event::Aborted => self.give_up(now, Outcome::Aborted, cap),
            Event::TimerFired => self.on_timer(now, cap),
            Event::UpstreamPiece(..) | Event::UpstreamEnd(_) | Event::UpstreamError(..) => {}
        }
        self.refresh_timer();
    }

    fn is_live(&self, id: AttemptId) -> bool {
        self.live.as_ref().is_some_and(|l| l.id == id)
    }

    fn send(&mut self, now: Duration, step: usize, admission: Admission, reason: Reason) {
        let region = self
            .plan
            .steps
            .get(step)
            .map_or(self.facts.source, |s| s.region);
        self.send_leg(now, (step, region), admission, reason, None);
    }

    /// Send attempt to `region` as plan step `step` (a continuation to a candidate outside the
    /// plan keeps the step of the attempt before it).
    fn send_leg(
        &mut self,
        now: Duration,
        (step, region): (usize, RegionIx),
        admission: Admission,
        reason: Reason,
        resume: Option<Continuation>,
    ) {
        let id = AttemptId(self.tries.len() as u32);
        let resumes = resume.is_some();
        self.step = step;
        self.actions.push_back(Action::Send {
            attempt: id,
            deployment: admission.deployment,
            region,
            reason,
            resume,
        });
        self.live = Some(Live {
            id,
            admission,
            region,
            reason,
            sent_at: now,
            first_piece_at: None,
            last_piece_at: None,
            first_token_at: None,
            last_token_at: None,
            resumes,
        });
    }

    fn on_piece(&mut self, now: Duration, mut piece: Piece) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        live.first_piece_at.get_or_insert(now);
        live.last_piece_at = Some(now);
        if piece.output_tokens() > 0 {
            live.first_token_at.get_or_insert(now);
            live.last_token_at = Some(now);
        }
        let from = (live.region, live.reason);
        let continues = live.resumes;
        self.count(&piece);
        if self.facts.stream {
            if continues {
                // The client has the role chunk already; the rest joins the first leg's answer.
                if piece.is_preamble() {
                    return;
                }
                self.answer.relay.restamp(&mut piece);
            }
            if self.committed_at.is_none() {
                if piece.is_preamble() {
                    self.answer.preamble.push(piece);
                    return;
                }
                self.committed_at = Some(now);
                self.answer.from = Some(from);
                for held in std::mem::take(&mut self.answer.preamble) {
                    self.emit(held);
                }
            }
            self.emit(piece);
        } else if let Piece::Answer { .. } = piece {
            // A non-streamed request's answer, whole (assembled, if the upstream streamed it).
            self.answer.held = Some(piece);
        }
    }

    /// A stream's piece to the client.
    fn emit(&mut self, piece: Piece) {
        // Only a stream that may be continued keeps its text (no copy on the common path).
        if self.facts.resume.is_some() {
            self.answer.relay.observe(&piece);
        }
        self.actions.push_back(Action::Emit(piece));
    }

    fn on_end(&mut self, now: Duration, cap: &mut impl Capacity) {
        if !self.facts.stream && self.answer.held.is_none() {
            // A non-streamed attempt that ended without an answer is broken.
            return self.on_failure(now, Failure::of(FailureKind::ServerError), cap);
        }
        let Some(mut live) = self.live.take() else {
            return;
        };
        if let Some(cached) = self.answer.reported.and_then(|u| u.cached_tokens()) {
            live.admission.report_cached(cached);
        }
        let ttft = live
            .first_piece_at
            .unwrap_or(now)
            .saturating_sub(live.sent_at);
        let n = self.answer.output_tokens;
        let tpot = match (live.first_token_at, live.last_token_at) {
            (Some(a), Some(b)) if n > 1 => Some(b.saturating_sub(a) / (n - 1) as u32),
            _ => None,
        };
        // A continued stream is reported as served where it started: the region its client was
        // told (the record's tries show every leg).
        self.answer.from.get_or_insert((live.region, live.reason));
        self.answer.charged = true;
        let tokens = self.usage().total_tokens;
        let outcome = CoreOutcome::Success { ttft, tpot, tokens };
        self.end_try(now, live, TryResult::Succeeded, outcome, 0, cap);
        self.committed_at.get_or_insert(now);
        for held in std::mem::take(&mut self.answer.preamble) {
            self.emit(held);
        }
        let last = match self.answer.held.take() {
            Some(answer) => Action::Emit(answer),
            None => Action::Close(StreamEnd::Complete),
        };
        self.actions.push_back(last);
        self.finish(now, Outcome::Served);
    }

    fn on_failure(&mut self, now: Duration, failure: Failure, cap: &mut impl Capacity) {
        let Some(live) = self.live.take() else {
            return;
        };
        let kind = failure.kind;
        let charge = self.charge();
        let from = (live.region, live.reason);
        self.end_try(
            now,
            live,
            TryResult::Failed(kind),
            CoreOutcome::Failure(kind),
            charge,
            cap,
        );
        if self.committed_at.is_some() {
            // The client has part of the answer: it is continued elsewhere, or it ends here.
            self.answer.from.get_or_insert(from);
            self.answer.charged = true;
            if self.resume(now, kind, charge > 0, cap) {
                return;
            }
            if charge == 0 {
                // A continuation that failed before producing anything is not billed.
                self.answer.reported = Some(Usage::default());
            }
            self.actions
                .push_back(Action::Close(StreamEnd::Broken(kind)));
            return self.finish(now, Outcome::Broken(kind));
        }
        // Nothing reached the client: what this attempt produced is dropped.
        self.answer = Answer::default();
        if !kind.is_retryable() {
            return self.refuse(now, Refusal::after(failure));
        }
        if now >= self.admitted_at + self.limits.total {
            return self.refuse(now, Refusal::Timeout);
        }
        let next = if cap.try_retry(now) {
            cap.admit_next(&self.plan, self.step + 1, self.facts.demand, now)
        } else {
            None
        };
        match next {
            Some((step, admission)) => self.send(now, step, admission, Reason::Failover(kind)),
            None => {
                let untried = self.facts.candidates > self.tries.len();
                let refusal = if untried {
                    let retry_after = match kind {
                        FailureKind::Throttled {
                            retry_after: Some(d),
                        } => d,
                        _ => Duration::from_secs(1),
                    };
                    Refusal::NoCapacity { retry_after }
                } else {
                    Refusal::after(failure)
                };
                self.refuse(now, refusal);
            }
        }
    }

    fn on_timer(&mut self, now: Duration, cap: &mut impl Capacity) {
        if self.waiting.is_some() {
            return self.send_continuation(now, cap);
        }
        let Some(live) = self.live.as_ref() else {
            return;
        };
        let id = live.id;
        if self.attempt_deadline().is_some_and(|d| now >= d) {
            self.actions.push_back(Action::Cancel(id));
            return self.on_failure(now, Failure::of(FailureKind::Timeout), cap);
        }
        if self.commit_deadline().is_some_and(|d| now >= d) {
            // The client has waited long enough across every attempt; this one is not at fault.
            self.actions.push_back(Action::Cancel(id));
            if let Some(live) = self.live.take() {
                let outcome = CoreOutcome::Failure(FailureKind::Cancelled);
                self.end_try(now, live, TryResult::Cancelled, outcome, 0, cap);
            }
            self.answer = Answer::default();
            self.refuse(now, Refusal::Timeout);
        }
    }

    /// The client went away or stopped reading, or the driver stops: release the attempt, and
    /// end (a client's attempt is drained first, see [`drain`]).
    fn give_up(&mut self, now: Duration, outcome: Outcome, cap: &mut impl Capacity) {
        self.waiting = None;
        if let Some(live) = self.live.take() {
            let drain = self.limits.drain > Duration::ZERO && outcome != Outcome::Aborted;
            let id = live.id;
            if !drain {
                self.actions.push_back(Action::Cancel(id));
            }
            let from = (live.region, live.reason);
            let charge = self.charge();
            let core = CoreOutcome::Failure(FailureKind::Cancelled);
            self.end_try(now, live, TryResult::Cancelled, core, charge, cap);
            self.answer.from = Some(from);
            self.answer.charged = true;
            self.answer.held = None;
            if drain {
                return self.start_drain(now, id, outcome);
            }
        }
        if outcome == Outcome::Aborted {
            if self.committed_at.is_some() {
                let end = StreamEnd::Broken(FailureKind::Cancelled);
                self.actions.push_back(Action::Close(end));
            } else {
                self.actions
                    .push_back(Action::Respond(Refusal::Unavailable));
            }
        }
        self.finish(now, outcome);
    }

    fn end_try(
        &mut self,
        now: Duration,
        live: Live,
        result: TryResult,
        outcome: CoreOutcome,
        charge: u64,
        cap: &mut impl Capacity,
    ) {
        self.tries.push(Try {
            attempt: live.id,
            deployment: live.admission.deployment,
            region: live.region,
            reason: live.reason,
            result,
            sent_at: live.sent_at,
            first_piece_at: live.first_piece_at,
            ended_at: now,
        });
        cap.release(live.admission, outcome, charge, now);
    }

    fn refuse(&mut self, now: Duration, refusal: Refusal) {
        self.actions.push_back(Action::Respond(refusal.clone()));
        self.answer = Answer::default();
        self.finish(now, Outcome::Refused(refusal));
    }
}
