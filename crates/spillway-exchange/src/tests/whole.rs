//! A non-streamed request whose attempts stream from the upstream (the gateway assembles the
//! answer): each attempt is timed piece by piece, so a hung upstream fails over after the
//! first-byte timeout, and the client gets only the assembled answer.
use bytes::Bytes;
use spillway_core::{FailureKind, Reason, RegionIx};

use super::{FIRST_BYTE, PROMPT, REQUEST, World, chunk, ms, usage};
use crate::{Action, AttemptId, Event, Outcome, Piece, Settle};

const A0: AttemptId = AttemptId(0);
const A1: AttemptId = AttemptId(1);

fn assembled(completion: u64) -> Piece {
    Piece::Answer {
        raw: Bytes::from_static(b"{\"assembled\":true}"),
        parsed: None,
        usage: Some(usage(PROMPT, completion)),
    }
}

fn world() -> World {
    let mut w = World::new(3);
    w.upstream_stream = true;
    w
}

#[test]
fn a_hung_upstream_fails_over_after_the_first_byte_timeout() {
    let mut w = world();
    let mut x = w.admit(ms(0), false);
    assert_eq!(
        x.poll_timeout(),
        Some(FIRST_BYTE),
        "not the request timeout"
    );
    w.feed(&mut x, FIRST_BYTE, Event::TimerFired);
    assert!(w.actions.contains(&Action::Cancel(A0)));
    let sends = w.sends();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[1].0, A1);
    assert_ne!(sends[1].1, RegionIx(0));
    let at = FIRST_BYTE + ms(50);
    w.feed(&mut x, at, Event::UpstreamPiece(A1, chunk("Hel", None)));
    w.feed(
        &mut x,
        at + ms(1),
        Event::UpstreamPiece(A1, chunk("lo", None)),
    );
    w.feed(&mut x, at + ms(2), Event::UpstreamPiece(A1, assembled(2)));
    w.feed(&mut x, at + ms(3), Event::UpstreamEnd(A1));
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Served);
    assert_eq!(r.reason, Some(Reason::Failover(FailureKind::Timeout)));
    assert_eq!(r.settle, Settle::Used(PROMPT + 2));
    let emitted: Vec<&Piece> = w
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(emitted, vec![&assembled(2)], "only the assembled answer");
}

#[test]
fn each_piece_moves_the_deadline_within_the_whole_answers_bound() {
    let mut w = world();
    let mut x = w.admit(ms(0), false);
    w.feed(
        &mut x,
        ms(1_000),
        Event::UpstreamPiece(A0, chunk("a", None)),
    );
    assert_eq!(x.poll_timeout(), Some(ms(1_000) + FIRST_BYTE));
    w.feed(
        &mut x,
        ms(4_000),
        Event::UpstreamPiece(A0, chunk("b", None)),
    );
    assert_eq!(
        x.poll_timeout(),
        Some(REQUEST),
        "the whole answer is still due by then"
    );
    // A timer before the deadline changes nothing.
    w.feed(&mut x, ms(4_500), Event::TimerFired);
    assert_eq!(w.sends().len(), 1);
    w.feed(&mut x, REQUEST, Event::TimerFired);
    assert_eq!(w.sends().len(), 2, "too slow as a whole: failed over");
    assert!(
        !w.actions.iter().any(|a| matches!(a, Action::Emit(_))),
        "nothing of the slow attempt reached the client"
    );
}

#[test]
fn a_stream_that_ends_without_its_answer_is_broken_and_moves() {
    let mut w = world();
    let mut x = w.admit(ms(0), false);
    w.feed(&mut x, ms(10), Event::UpstreamPiece(A0, chunk("a", None)));
    w.feed(&mut x, ms(20), Event::UpstreamEnd(A0));
    assert_eq!(w.sends().len(), 2, "failed over");
    w.feed(&mut x, ms(30), Event::UpstreamPiece(A1, assembled(5)));
    w.feed(&mut x, ms(31), Event::UpstreamEnd(A1));
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Served);
    assert_eq!(
        r.settle,
        Settle::Used(PROMPT + 5),
        "the first attempt's piece is not billed"
    );
}
