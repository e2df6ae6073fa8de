//! A client that stalls or leaves: its deployment is released at once, its attempt is still
//! read until the upstream ends, fails or the drain has passed, and the record bills every
//! token read meanwhile.
use bytes::Bytes;
use spillway_core::{FailureKind, Outcome as CoreOutcome};

use super::{PROMPT, World, chunk, ms, usage};
use crate::{Action, AttemptId, Event, Failure, Outcome, Piece, Settle, TryResult};

const A0: AttemptId = AttemptId(0);
const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

fn draining_world() -> World {
    let mut w = World::new(3);
    w.drain = DRAIN;
    w
}

fn finished(w: &World) -> bool {
    w.actions.iter().any(|a| matches!(a, Action::Finished(_)))
}

#[test]
fn a_stalled_reader_releases_at_once_and_is_billed_for_what_the_upstream_had_generated() {
    let mut w = draining_world();
    let mut x = w.admit(ms(0), true);
    w.feed(&mut x, ms(40), Event::UpstreamPiece(A0, chunk("t", None)));
    w.feed(&mut x, ms(9_000), Event::ClientStalled);
    assert_eq!(w.cap.outstanding, 0, "released at the stall");
    assert_eq!(
        w.cap.releases.last().map(|r| r.1),
        Some(CoreOutcome::Failure(FailureKind::Cancelled))
    );
    assert!(
        !finished(&w) && !x.is_done(),
        "the record waits for the drain"
    );
    assert!(!w.actions.contains(&Action::Cancel(A0)));
    assert_eq!(x.poll_timeout(), Some(ms(9_000) + DRAIN));
    let emitted = w.actions.len();
    // What the stall held back arrives, then the upstream's own usage and its end.
    for i in 0..3 {
        w.feed(
            &mut x,
            ms(9_001 + i),
            Event::UpstreamPiece(A0, chunk("u", None)),
        );
    }
    let u = usage(PROMPT, 40);
    w.feed(
        &mut x,
        ms(9_010),
        Event::UpstreamPiece(A0, chunk("", Some(u))),
    );
    assert!(
        !w.actions[emitted..]
            .iter()
            .any(|a| matches!(a, Action::Emit(_))),
        "nothing more goes to a client that is gone"
    );
    w.feed(&mut x, ms(9_011), Event::UpstreamEnd(A0));
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Stalled);
    assert_eq!(r.usage, u, "the upstream's usage settles the bill");
    assert_eq!(r.settle, Settle::Used(PROMPT + 40));
    assert_eq!(r.tries[0].result, TryResult::Cancelled);
    assert_eq!(
        r.tries[0].ended_at,
        ms(9_000),
        "the attempt was given up at the stall"
    );
    assert_eq!(r.timings.ended, ms(9_011));
    assert!(w.actions.contains(&Action::Cancel(A0)));
}

#[test]
fn the_drain_ends_at_its_deadline_and_bills_the_pieces_read() {
    let mut w = draining_world();
    let mut x = w.admit(ms(0), true);
    w.feed(&mut x, ms(40), Event::UpstreamPiece(A0, chunk("t", None)));
    w.feed(&mut x, ms(100), Event::ClientGone);
    w.feed(&mut x, ms(200), Event::UpstreamPiece(A0, chunk("u", None)));
    // Another attempt's events and an early timer change nothing.
    w.feed(&mut x, ms(300), Event::UpstreamEnd(AttemptId(7)));
    w.feed(&mut x, ms(400), Event::TimerFired);
    w.feed(&mut x, ms(500), Event::ClientGone);
    assert!(!finished(&w));
    w.feed(&mut x, ms(100) + DRAIN, Event::TimerFired);
    let r = w.check_finished();
    assert!(w.actions.contains(&Action::Cancel(A0)));
    let gone = Outcome::ClientGone {
        after_first_byte: true,
    };
    assert_eq!(r.outcome, gone);
    assert_eq!(
        r.settle,
        Settle::Used(PROMPT + 2),
        "the prompt and two tokens"
    );
}

#[test]
fn a_failure_or_an_abort_while_draining_ends_it() {
    let mut w = draining_world();
    let mut x = w.admit(ms(0), true);
    w.feed(&mut x, ms(40), Event::UpstreamPiece(A0, chunk("t", None)));
    w.feed(&mut x, ms(50), Event::ClientStalled);
    w.feed(&mut x, ms(60), Event::UpstreamPiece(A0, chunk("u", None)));
    let f = Failure::of(FailureKind::ServerError);
    w.feed(&mut x, ms(70), Event::UpstreamError(A0, f));
    let r = w.check_finished();
    assert_eq!(
        r.outcome,
        Outcome::Stalled,
        "the client's fate, not the upstream's"
    );
    assert_eq!(r.settle, Settle::Used(PROMPT + 2));

    let mut w = draining_world();
    let mut x = w.admit(ms(0), true);
    w.feed(&mut x, ms(40), Event::UpstreamPiece(A0, chunk("t", None)));
    w.feed(&mut x, ms(50), Event::ClientStalled);
    w.feed(&mut x, ms(60), Event::Aborted);
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Stalled);
    assert!(
        !w.actions
            .iter()
            .any(|a| matches!(a, Action::Close(_) | Action::Respond(_)))
    );
}

#[test]
fn a_client_gone_before_its_answer_is_billed_for_the_answer_its_upstream_finished() {
    let mut w = draining_world();
    let mut x = w.admit(ms(0), false);
    w.feed(&mut x, ms(30), Event::ClientGone);
    assert_eq!(w.cap.outstanding, 0);
    let answer = Piece::Answer {
        raw: Bytes::from_static(b"{}"),
        parsed: None,
        usage: Some(usage(PROMPT, 12)),
    };
    w.feed(&mut x, ms(60), Event::UpstreamPiece(A0, answer));
    w.feed(&mut x, ms(61), Event::UpstreamEnd(A0));
    let r = w.check_finished();
    let gone = Outcome::ClientGone {
        after_first_byte: false,
    };
    assert_eq!(r.outcome, gone);
    assert_eq!(r.settle, Settle::Used(PROMPT + 12));
    assert!(
        !w.actions
            .iter()
            .any(|a| matches!(a, Action::Respond(_) | Action::Emit(_)))
    );
}

#[test]
fn an_abort_does_not_drain() {
    let mut w = draining_world();
    let mut x = w.admit(ms(0), true);
    w.feed(&mut x, ms(40), Event::UpstreamPiece(A0, chunk("t", None)));
    w.feed(&mut x, ms(50), Event::Aborted);
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Aborted);
    assert_eq!(r.timings.ended, ms(50));
}
