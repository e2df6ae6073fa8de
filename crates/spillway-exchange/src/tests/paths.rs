//! Every path of a request's life, each ending in exactly one `Finished` (checked by
//! `World::check_finished`, with the release count, residency and settlement invariants).
use std::time::Duration;

use bytes::Bytes;
use spillway_core::{FailureKind, Reason, RegionIx};

use super::{FIRST_BYTE, PROMPT, REQUEST, TOTAL, World, chunk, ms, usage};
use crate::{
    Action, AttemptId, Event, Failure, Outcome, Piece, Refusal, Settle, StreamEnd, TryResult,
};

const A0: AttemptId = AttemptId(0);
const A1: AttemptId = AttemptId(1);

fn emitted(w: &World) -> usize {
    w.actions
        .iter()
        .filter(|a| matches!(a, Action::Emit(_)))
        .count()
}

#[test]
fn streamed_success_settles_to_reported_usage() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    assert_eq!(w.sends(), vec![(A0, RegionIx(0))], "source first");
    w.feed(&mut x, ms(5), Event::UpstreamHead(A0));
    w.feed(&mut x, ms(80), Event::UpstreamPiece(A0, chunk("Hel", None)));
    w.feed(&mut x, ms(90), Event::UpstreamPiece(A0, chunk("lo", None)));
    let u = usage(PROMPT, 7);
    w.feed(&mut x, ms(95), Event::UpstreamPiece(A0, chunk("", Some(u))));
    w.feed(&mut x, ms(96), Event::UpstreamEnd(A0));
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Served);
    assert_eq!(
        r.usage, u,
        "the upstream's own usage wins over the piece count"
    );
    assert_eq!(r.settle, Settle::Used(PROMPT + 7));
    assert_eq!(r.served_in, Some(RegionIx(0)));
    assert_eq!(r.reason, Some(Reason::Local));
    assert_eq!(r.timings.first_byte, Some(ms(80)));
    assert_eq!(r.timings.ended, ms(96));
    assert_eq!(emitted(&w), 3);
    assert!(matches!(
        w.actions[w.actions.len() - 2],
        Action::Close(StreamEnd::Complete)
    ));
    let cost = r.cost.unwrap();
    assert!((cost.total - (100.0 * 1.0 + 7.0 * 4.0) / 1e6).abs() < 1e-12);
}

#[test]
fn streamed_success_without_usage_counts_the_pieces() {
    let mut w = World::new(1);
    let mut x = w.admit(ms(0), true);
    for (i, t) in ["a", "", "b", "c"].iter().enumerate() {
        let piece = chunk(t, None);
        w.feed(&mut x, ms(10 + i as u64), Event::UpstreamPiece(A0, piece));
    }
    w.feed(&mut x, ms(20), Event::UpstreamEnd(A0));
    let r = w.check_finished();
    assert_eq!(r.usage, usage(PROMPT, 3), "three pieces carried text");
    let (_, outcome, _) = w.cap.releases[0];
    match outcome {
        spillway_core::Outcome::Success { ttft, tpot, tokens } => {
            assert_eq!(ttft, ms(10));
            assert_eq!(
                tpot,
                Some(ms(3) / 2),
                "from the first to the last text piece"
            );
            assert_eq!(tokens, PROMPT + 3);
        }
        other => panic!("released as {other:?}"),
    }
}

#[test]
fn non_streamed_success_emits_the_whole_answer_at_the_end() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), false);
    let answer = Piece::Answer {
        raw: Bytes::from_static(b"{}"),
        parsed: None,
        usage: Some(usage(90, 12)),
    };
    w.feed(&mut x, ms(700), Event::UpstreamHead(A0));
    w.feed(&mut x, ms(701), Event::UpstreamPiece(A0, answer.clone()));
    assert_eq!(emitted(&w), 0, "nothing reaches the client before the end");
    w.feed(&mut x, ms(702), Event::UpstreamEnd(A0));
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Served);
    assert_eq!(r.settle, Settle::Used(102));
    assert!(w.actions.contains(&Action::Emit(answer)));
    assert_eq!(r.timings.first_byte, Some(ms(702)));
}

#[test]
fn the_upstream_s_cached_tokens_reach_the_record_and_the_deployment_s_learning() {
    let mut w = World::new(1);
    let mut x = w.admit(ms(0), false);
    let reported = spillway_proto::Usage {
        prompt_tokens_details: Some(spillway_proto::PromptTokensDetails { cached_tokens: 64 }),
        ..usage(PROMPT, 5)
    };
    let answer = Piece::Answer {
        raw: Bytes::from_static(b"{}"),
        parsed: None,
        usage: Some(reported),
    };
    w.feed(&mut x, ms(100), Event::UpstreamHead(A0));
    w.feed(&mut x, ms(101), Event::UpstreamPiece(A0, answer));
    w.feed(&mut x, ms(102), Event::UpstreamEnd(A0));
    let r = w.check_finished();
    assert_eq!(r.usage, reported);
    assert_eq!(
        r.settle,
        Settle::Used(PROMPT + 5),
        "cached tokens are still input"
    );
    assert_eq!(w.cap.reported_cached, [Some(64)]);
    // Without a report the admission's estimate stands.
    let mut w = World::new(1);
    let mut x = w.admit(ms(0), true);
    w.feed(&mut x, ms(10), Event::UpstreamPiece(A0, chunk("a", None)));
    w.feed(&mut x, ms(20), Event::UpstreamEnd(A0));
    w.check_finished();
    assert_eq!(w.cap.reported_cached, [None]);
}

/// Each retryable failure before the first byte moves the request to the next region.
fn fails_over(stream: bool, failure: Option<Failure>, at: Duration) {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), stream);
    let kind = match failure {
        Some(f) => {
            let kind = f.kind;
            w.feed(&mut x, at, Event::UpstreamError(A0, f));
            kind
        }
        None => {
            // No answer at all: the attempt's deadline fires.
            assert_eq!(x.poll_timeout(), Some(at));
            w.feed(&mut x, at, Event::TimerFired);
            assert!(w.actions.contains(&Action::Cancel(A0)));
            FailureKind::Timeout
        }
    };
    let sends = w.sends();
    assert_eq!(sends.len(), 2, "failover: {:?}", w.actions);
    assert_ne!(sends[1].1, RegionIx(0));
    let piece = if stream {
        chunk("hi", None)
    } else {
        Piece::Answer {
            raw: Bytes::new(),
            parsed: None,
            usage: None,
        }
    };
    w.feed(&mut x, at + ms(50), Event::UpstreamPiece(A1, piece));
    w.feed(&mut x, at + ms(60), Event::UpstreamEnd(A1));
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Served);
    assert_eq!(r.served_in, Some(sends[1].1));
    assert_eq!(r.reason, Some(Reason::Failover(kind)));
    assert_eq!(r.tries.len(), 2);
    assert_eq!(r.tries[0].result, TryResult::Failed(kind));
    assert_eq!(r.tries[1].result, TryResult::Succeeded);
}

fn status(kind: FailureKind, status: u16) -> Option<Failure> {
    Some(Failure {
        kind,
        status: Some(status),
        body: Bytes::new(),
    })
}

#[test]
fn failover_before_the_first_byte_for_every_retryable_failure() {
    for stream in [true, false] {
        fails_over(stream, Some(Failure::of(FailureKind::Connect)), ms(3));
        let with = FailureKind::Throttled {
            retry_after: Some(Duration::from_secs(2)),
        };
        fails_over(stream, status(with, 429), ms(20));
        let without = FailureKind::Throttled { retry_after: None };
        fails_over(stream, status(without, 429), ms(20));
        fails_over(stream, status(FailureKind::ServerError, 503), ms(30));
        let deadline = if stream { FIRST_BYTE } else { REQUEST };
        fails_over(stream, None, deadline);
    }
}

#[test]
fn a_429_with_retry_after_cools_the_region_down() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    let f = status(
        FailureKind::Throttled {
            retry_after: Some(Duration::from_secs(30)),
        },
        429,
    );
    w.feed(&mut x, ms(10), Event::UpstreamError(A0, f.unwrap()));
    let view = w.cap.router.view(spillway_core::DeploymentIx(0), ms(11));
    assert!(
        view.cooldown_until
            .is_some_and(|c| c >= Duration::from_secs(30))
    );
    w.feed(&mut x, ms(20), Event::Aborted);
    w.check_finished();
}

#[test]
fn every_region_failing_ends_in_the_last_failure_and_cancels_the_reservation() {
    for (failure, refusal) in [
        (status(FailureKind::ServerError, 500), Refusal::Unavailable),
        (
            status(FailureKind::Throttled { retry_after: None }, 429),
            Refusal::AllThrottled {
                retry_after: Duration::from_secs(1),
            },
        ),
    ] {
        let mut w = World::new(3);
        let mut x = w.admit(ms(0), true);
        for i in 0..3 {
            let f = failure.clone().unwrap();
            w.feed(
                &mut x,
                ms(10 * i + 10),
                Event::UpstreamError(AttemptId(i as u32), f),
            );
        }
        let r = w.check_finished();
        assert_eq!(w.sends().len(), 3);
        assert_eq!(r.outcome, Outcome::Refused(refusal.clone()));
        assert!(w.actions.contains(&Action::Respond(refusal)));
        assert_eq!(r.settle, Settle::Cancel);
        assert_eq!(r.served_in, None);
    }
}

#[test]
fn an_upstream_4xx_is_relayed_without_failover() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), false);
    let body = Bytes::from_static(b"{\"error\":{\"message\":\"bad\"}}");
    let f = Failure {
        kind: FailureKind::ClientError,
        status: Some(422),
        body: body.clone(),
    };
    w.feed(&mut x, ms(10), Event::UpstreamError(A0, f));
    let r = w.check_finished();
    assert_eq!(w.sends().len(), 1);
    let refusal = Refusal::Rejected { status: 422, body };
    assert_eq!(r.outcome, Outcome::Refused(refusal));
    assert_eq!(r.settle, Settle::Cancel);
}

#[test]
fn a_failure_after_the_first_byte_breaks_the_stream_and_bills_what_was_sent() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    w.feed(&mut x, ms(50), Event::UpstreamPiece(A0, chunk("one", None)));
    w.feed(&mut x, ms(60), Event::UpstreamPiece(A0, chunk("two", None)));
    let f = Failure::of(FailureKind::ServerError);
    w.feed(&mut x, ms(70), Event::UpstreamError(A0, f));
    let r = w.check_finished();
    assert_eq!(
        w.sends().len(),
        1,
        "no second attempt once the client has bytes"
    );
    assert!(
        w.actions
            .contains(&Action::Close(StreamEnd::Broken(FailureKind::ServerError)))
    );
    assert_eq!(r.outcome, Outcome::Broken(FailureKind::ServerError));
    assert_eq!(r.settle, Settle::Used(PROMPT + 2));
    assert_eq!(r.served_in, Some(RegionIx(0)));
    assert_eq!(
        w.cap.releases[0].2,
        PROMPT + 2,
        "the deployment is charged too"
    );
}

#[test]
fn a_stream_that_goes_quiet_breaks_at_the_idle_deadline() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    w.feed(&mut x, ms(50), Event::UpstreamPiece(A0, chunk("one", None)));
    assert_eq!(x.poll_timeout(), Some(ms(50) + FIRST_BYTE));
    w.feed(&mut x, ms(50) + FIRST_BYTE, Event::TimerFired);
    let r = w.check_finished();
    assert!(w.actions.contains(&Action::Cancel(A0)));
    assert_eq!(r.outcome, Outcome::Broken(FailureKind::Timeout));
    assert_eq!(r.settle, Settle::Used(PROMPT + 1));
}

#[test]
fn client_gone_before_the_first_byte_charges_the_prompt() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), false);
    w.feed(&mut x, ms(30), Event::ClientGone);
    let r = w.check_finished();
    assert!(w.actions.contains(&Action::Cancel(A0)));
    let gone = Outcome::ClientGone {
        after_first_byte: false,
    };
    assert_eq!(r.outcome, gone);
    assert_eq!(r.settle, Settle::Used(PROMPT));
    assert_eq!(r.tries[0].result, TryResult::Cancelled);
    assert!(!w.actions.iter().any(|a| matches!(a, Action::Respond(_))));
}

#[test]
fn client_gone_after_the_first_byte_bills_the_tokens_generated() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    for i in 0..5 {
        w.feed(
            &mut x,
            ms(40 + i),
            Event::UpstreamPiece(A0, chunk("t", None)),
        );
    }
    w.feed(&mut x, ms(50), Event::ClientGone);
    let r = w.check_finished();
    let gone = Outcome::ClientGone {
        after_first_byte: true,
    };
    assert_eq!(r.outcome, gone);
    assert_eq!(r.settle, Settle::Used(PROMPT + 5));
    assert!(!w.actions.iter().any(|a| matches!(a, Action::Close(_))));
}

#[test]
fn a_stalled_reader_cancels_the_attempt() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    w.feed(&mut x, ms(40), Event::UpstreamPiece(A0, chunk("t", None)));
    w.feed(&mut x, ms(9_000), Event::ClientStalled);
    let r = w.check_finished();
    assert!(w.actions.contains(&Action::Cancel(A0)));
    assert_eq!(r.outcome, Outcome::Stalled);
    assert_eq!(r.settle, Settle::Used(PROMPT + 1));
}

#[test]
fn the_request_deadline_bounds_the_time_to_the_first_byte_across_failovers() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    // Two attempts time out at 4 s and 8 s; the third is cut by the 10 s total deadline.
    w.feed(&mut x, FIRST_BYTE, Event::TimerFired);
    w.feed(&mut x, FIRST_BYTE * 2, Event::TimerFired);
    assert_eq!(w.sends().len(), 3);
    assert_eq!(x.poll_timeout(), Some(TOTAL));
    w.feed(&mut x, TOTAL, Event::TimerFired);
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Refused(Refusal::Timeout));
    assert!(w.actions.contains(&Action::Respond(Refusal::Timeout)));
    assert_eq!(r.settle, Settle::Cancel);
    assert_eq!(r.tries[2].result, TryResult::Cancelled);
}

#[test]
fn an_early_timer_changes_nothing() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    w.feed(&mut x, ms(100), Event::TimerFired);
    assert_eq!(w.sends().len(), 1);
    assert!(!x.is_done());
    w.feed(&mut x, ms(200), Event::Aborted);
    w.check_finished();
}

#[test]
fn an_aborted_driver_still_ends_the_request_once() {
    // Before the first byte: the client gets an error.
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), false);
    w.feed(&mut x, ms(10), Event::Aborted);
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Aborted);
    assert!(w.actions.contains(&Action::Respond(Refusal::Unavailable)));
    // After it: the stream ends with an error event.
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    w.feed(&mut x, ms(10), Event::UpstreamPiece(A0, chunk("a", None)));
    w.feed(&mut x, ms(20), Event::Aborted);
    w.check_finished();
    let broken = StreamEnd::Broken(FailureKind::Cancelled);
    assert!(w.actions.contains(&Action::Close(broken)));
}

#[test]
fn no_capacity_anywhere_is_a_429_without_a_send() {
    // No wait in a full source either.
    let cfg = spillway_core::RouterConfig {
        source_wait: 0.0,
        ..Default::default()
    };
    let mut w = World::with(3, cfg);
    // Fill every deployment.
    let mut held = Vec::new();
    for d in 0..3 {
        for _ in 0..8 {
            let dep = spillway_core::DeploymentIx(d);
            held.push(w.cap.router.try_acquire(dep, 1, ms(0)).unwrap());
        }
    }
    let mut x = w.admit(ms(1), true);
    assert!(x.is_done());
    w.feed(&mut x, ms(2), Event::ClientGone);
    let r = w.check_finished();
    assert!(w.sends().is_empty());
    assert!(matches!(
        r.outcome,
        Outcome::Refused(Refusal::NoCapacity { .. })
    ));
    assert_eq!(r.settle, Settle::Cancel);
    for a in held {
        w.cap.router.release(
            a,
            spillway_core::Outcome::Failure(FailureKind::Cancelled),
            ms(3),
        );
    }
}

#[test]
fn events_of_an_abandoned_attempt_are_ignored() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    w.feed(
        &mut x,
        ms(10),
        Event::UpstreamError(A0, Failure::of(FailureKind::Connect)),
    );
    w.feed(
        &mut x,
        ms(11),
        Event::UpstreamPiece(A0, chunk("late", None)),
    );
    w.feed(&mut x, ms(12), Event::UpstreamEnd(A0));
    assert!(
        !x.is_done(),
        "the old attempt's end does not end the request"
    );
    assert_eq!(emitted(&w), 0);
    w.feed(&mut x, ms(40), Event::UpstreamPiece(A1, chunk("x", None)));
    w.feed(&mut x, ms(41), Event::UpstreamEnd(A1));
    let r = w.check_finished();
    assert_eq!(r.usage.completion_tokens, 1);
}

#[test]
fn a_source_only_request_that_fails_is_not_throttled() {
    // One candidate, tried and failed: the client gets the failure, not a 429.
    let mut w = World::new(1);
    let mut x = w.admit(ms(0), true);
    w.feed(
        &mut x,
        ms(10),
        Event::UpstreamError(A0, Failure::of(FailureKind::Connect)),
    );
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Refused(Refusal::Unavailable));
}

#[test]
fn a_stream_that_breaks_after_its_role_chunk_still_fails_over() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    // The role chunk carries nothing of the answer: it is held, and the stream not committed.
    w.feed(&mut x, ms(40), Event::UpstreamPiece(A0, chunk("", None)));
    assert_eq!(emitted(&w), 0, "the role chunk went out: {:?}", w.actions);
    let f = Failure::of(FailureKind::ServerError);
    w.feed(&mut x, ms(50), Event::UpstreamError(A0, f));
    let sends = w.sends();
    assert_eq!(sends.len(), 2, "no failover: {:?}", w.actions);
    assert_ne!(sends[1].1, RegionIx(0));
    // The second region's role chunk and text go out together, once.
    w.feed(&mut x, ms(80), Event::UpstreamPiece(A1, chunk("", None)));
    w.feed(&mut x, ms(90), Event::UpstreamPiece(A1, chunk("hi", None)));
    assert_eq!(emitted(&w), 2);
    w.feed(&mut x, ms(100), Event::UpstreamEnd(A1));
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Served);
    assert_eq!(r.served_in, Some(sends[1].1));
    assert_eq!(r.settle, Settle::Used(PROMPT + 1));
}

#[test]
fn a_stream_of_only_a_role_chunk_is_still_delivered() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    w.feed(&mut x, ms(40), Event::UpstreamPiece(A0, chunk("", None)));
    w.feed(&mut x, ms(50), Event::UpstreamEnd(A0));
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Served);
    assert_eq!(emitted(&w), 1, "the held chunk goes out at the end");
    assert!(w.actions.contains(&Action::Close(StreamEnd::Complete)));
}
