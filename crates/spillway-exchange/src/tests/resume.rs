//! Mid-stream failover (`exchange::resume`): a stream that breaks after its first text is
//! continued in another region of the plan, as one answer.
use serde_json::json;
use spillway_core::{DeploymentIx, FailureKind, Reason, RegionIx};
use spillway_proto::{ChunkChoice, Delta, Usage};

use super::{FIRST_BYTE, PROMPT, World, chunk, ms, usage};
use crate::{
    Action, AttemptId, Continuation, Event, Failure, Outcome, Piece, ResumePolicy, StreamEnd,
    TryResult,
};

const A0: AttemptId = AttemptId(0);
const A1: AttemptId = AttemptId(1);
const A2: AttemptId = AttemptId(2);

fn world(max_tokens: Option<u64>, max_resumes: u32) -> World {
    let mut w = World::new(3);
    w.resume = Some(ResumePolicy {
        deployments: (0..3)
            .map(|i| (DeploymentIx(i), RegionIx(i as u16)))
            .collect(),
        max_tokens,
        max_resumes,
    });
    w
}

/// `chunk(text)` as sent by an upstream that names its answer `id`.
fn leg_chunk(id: &str, text: &str, u: Option<Usage>) -> Piece {
    let mut p = chunk(text, u);
    if let Piece::Chunk { chunk, raw } = &mut p {
        chunk.id = id.to_string();
        chunk.created = 7;
        chunk.model = format!("model-of-{id}");
        *raw = Some(format!("{{\"id\":\"{id}\"}}"));
    }
    p
}

fn role(id: &str) -> Piece {
    let mut p = leg_chunk(id, "", None);
    if let Piece::Chunk { chunk, .. } = &mut p {
        chunk.choices = vec![ChunkChoice {
            index: 0,
            delta: Delta {
                role: Some("assistant".into()),
                content: None,
                extra: Default::default(),
            },
            finish_reason: None,
            extra: Default::default(),
        }];
    }
    p
}

fn emitted_chunks(w: &World) -> Vec<spillway_proto::ChatChunk> {
    w.actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(Piece::Chunk { chunk, raw }) => {
                Some((**chunk).clone()).filter(|_| raw.is_none() || chunk.id == "first")
            }
            _ => None,
        })
        .collect()
}

fn text_of(w: &World) -> String {
    emitted_chunks(w)
        .iter()
        .flat_map(|c| c.choices.iter().filter_map(|ch| ch.delta.content.clone()))
        .collect()
}

fn continuations(w: &World) -> Vec<(AttemptId, RegionIx, Reason, Continuation)> {
    w.actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                attempt,
                region,
                reason,
                resume: Some(c),
                ..
            } => Some((*attempt, *region, *reason, c.clone())),
            _ => None,
        })
        .collect()
}

/// The first leg: its role chunk and `texts`, from region 0.
fn first_leg(w: &mut World, x: &mut crate::Exchange, texts: &[&str]) {
    w.feed(x, ms(5), Event::UpstreamPiece(A0, role("first")));
    for (i, t) in texts.iter().enumerate() {
        let at = ms(10 + i as u64);
        w.feed(x, at, Event::UpstreamPiece(A0, leg_chunk("first", t, None)));
    }
}

#[test]
fn a_stream_broken_after_its_first_text_is_continued_as_one_answer() {
    let mut w = world(Some(10), 2);
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the", " sea"]);
    let reset = Failure::of(FailureKind::ServerError);
    w.feed(&mut x, ms(20), Event::UpstreamError(A0, reset));
    let sent = continuations(&w);
    assert_eq!(sent.len(), 1, "{:?}", w.actions);
    let (id, region, reason, c) = &sent[0];
    assert_eq!(
        (*id, *region),
        (A1, RegionIx(1)),
        "the next region of the plan"
    );
    assert_eq!(*reason, Reason::Resume(FailureKind::ServerError));
    assert_eq!(c.text, " the sea");
    assert_eq!((c.output_tokens, c.max_tokens), (2, Some(8)));
    // The continuation's own role chunk is dropped; its chunks join the first leg's answer.
    w.feed(&mut x, ms(40), Event::UpstreamPiece(A1, role("second")));
    w.feed(
        &mut x,
        ms(41),
        Event::UpstreamPiece(A1, leg_chunk("second", " was", None)),
    );
    let leg2 = usage(PROMPT + 2, 1);
    let u = Some(leg2);
    w.feed(
        &mut x,
        ms(42),
        Event::UpstreamPiece(A1, leg_chunk("second", "", u)),
    );
    w.feed(&mut x, ms(43), Event::UpstreamEnd(A1));
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Served);
    assert_eq!(text_of(&w), " the sea was");
    let chunks = emitted_chunks(&w);
    assert!(
        chunks
            .iter()
            .all(|c| c.id == "first" && c.model == "model-of-first")
    );
    let roles = chunks
        .iter()
        .filter(|c| c.choices.iter().any(|ch| ch.delta.role.is_some()))
        .count();
    assert_eq!(roles, 1, "one role chunk");
    // Both legs are billed: the first for its prompt and two tokens, the second as reported.
    let total = usage(PROMPT + PROMPT + 2, 2 + 1);
    assert_eq!(r.usage, total);
    let last = chunks.iter().rev().find_map(|c| c.usage);
    assert_eq!(last, Some(total), "the client's one usage is the sum");
    assert_eq!(
        r.served_in,
        Some(RegionIx(0)),
        "where the client was told it started"
    );
    let results: Vec<_> = r.tries.iter().map(|t| (t.region, t.result)).collect();
    assert_eq!(
        results,
        vec![
            (RegionIx(0), TryResult::Failed(FailureKind::ServerError)),
            (RegionIx(1), TryResult::Succeeded)
        ]
    );
    assert!(
        !w.actions
            .iter()
            .any(|a| matches!(a, Action::Close(StreamEnd::Broken(_))))
    );
}

#[test]
fn a_stall_after_the_first_text_is_continued_after_the_idle_deadline() {
    let mut w = world(None, 2);
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the"]);
    let deadline = x.poll_timeout().expect("a piece deadline");
    assert_eq!(deadline, ms(10) + FIRST_BYTE);
    w.feed(&mut x, deadline, Event::TimerFired);
    assert!(w.actions.contains(&Action::Cancel(A0)));
    let sent = continuations(&w);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2, Reason::Resume(FailureKind::Timeout));
    assert_eq!(sent[0].3.max_tokens, None, "no cap set, none sent");
    let t = deadline + ms(30);
    w.feed(
        &mut x,
        t,
        Event::UpstreamPiece(A1, leg_chunk("second", " sea", None)),
    );
    w.feed(&mut x, t + ms(1), Event::UpstreamEnd(A1));
    assert_eq!(w.check_finished().outcome, Outcome::Served);
    assert_eq!(text_of(&w), " the sea");
}

#[test]
fn a_tool_call_relayed_is_not_continued() {
    let mut w = world(None, 2);
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the"]);
    let mut call = leg_chunk("first", "", None);
    if let Piece::Chunk { chunk, .. } = &mut call {
        let args = json!([{"index": 0, "function": {"arguments": "{\"a\":"}}]);
        chunk.choices[0]
            .delta
            .extra
            .insert("tool_calls".into(), args);
    }
    w.feed(&mut x, ms(15), Event::UpstreamPiece(A0, call));
    w.feed(
        &mut x,
        ms(20),
        Event::UpstreamError(A0, Failure::of(FailureKind::ServerError)),
    );
    assert!(continuations(&w).is_empty());
    let end = Action::Close(StreamEnd::Broken(FailureKind::ServerError));
    assert!(w.actions.contains(&end));
    assert_eq!(
        w.check_finished().outcome,
        Outcome::Broken(FailureKind::ServerError)
    );
}

#[test]
fn a_break_at_the_cap_ends_the_answer_with_a_length_finish() {
    let mut w = world(Some(2), 2);
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the", " sea"]);
    w.feed(
        &mut x,
        ms(20),
        Event::UpstreamError(A0, Failure::of(FailureKind::ServerError)),
    );
    assert!(continuations(&w).is_empty(), "nothing is left to generate");
    let chunks = emitted_chunks(&w);
    let finish = chunks
        .iter()
        .flat_map(|c| c.choices.iter().filter_map(|ch| ch.finish_reason.clone()))
        .collect::<Vec<_>>();
    assert_eq!(finish, vec!["length".to_string()]);
    assert_eq!(chunks.last().and_then(|c| c.usage), Some(usage(PROMPT, 2)));
    assert!(w.actions.contains(&Action::Close(StreamEnd::Complete)));
    assert_eq!(w.check_finished().outcome, Outcome::Served);
}

#[test]
fn continuations_stop_at_the_limit_and_at_the_untried_deployments() {
    // One continuation allowed: the second break ends the stream.
    let mut w = world(None, 1);
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the"]);
    w.feed(
        &mut x,
        ms(20),
        Event::UpstreamError(A0, Failure::of(FailureKind::ServerError)),
    );
    w.feed(
        &mut x,
        ms(30),
        Event::UpstreamPiece(A1, leg_chunk("second", " sea", None)),
    );
    w.feed(
        &mut x,
        ms(31),
        Event::UpstreamError(A1, Failure::of(FailureKind::ServerError)),
    );
    assert_eq!(continuations(&w).len(), 1);
    assert_eq!(
        w.check_finished().outcome,
        Outcome::Broken(FailureKind::ServerError)
    );
    assert_eq!(text_of(&w), " the sea");

    // Only region 0 accepts continuations, and it is the one that broke.
    let mut w = world(None, 2);
    if let Some(p) = w.resume.as_mut() {
        p.deployments = vec![(DeploymentIx(0), RegionIx(0))];
    }
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the"]);
    w.feed(
        &mut x,
        ms(20),
        Event::UpstreamError(A0, Failure::of(FailureKind::ServerError)),
    );
    assert!(continuations(&w).is_empty());
    assert_eq!(
        w.check_finished().outcome,
        Outcome::Broken(FailureKind::ServerError)
    );
}

#[test]
fn a_continuation_that_fails_at_once_moves_on_to_the_next_region() {
    let mut w = world(Some(10), 2);
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the"]);
    w.feed(
        &mut x,
        ms(20),
        Event::UpstreamError(A0, Failure::of(FailureKind::ServerError)),
    );
    w.feed(
        &mut x,
        ms(21),
        Event::UpstreamError(A1, Failure::of(FailureKind::Connect)),
    );
    let sent = continuations(&w);
    assert_eq!(sent.len(), 2);
    assert_eq!((sent[1].0, sent[1].1), (A2, RegionIx(2)));
    assert_eq!(sent[1].2, Reason::Resume(FailureKind::Connect));
    assert_eq!(sent[1].3.text, " the", "nothing came from the failed leg");
    w.feed(
        &mut x,
        ms(30),
        Event::UpstreamPiece(A2, leg_chunk("third", " sea", None)),
    );
    w.feed(&mut x, ms(31), Event::UpstreamEnd(A2));
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Served);
    assert_eq!(text_of(&w), " the sea");
    // The leg that failed before answering is not billed.
    assert_eq!(r.usage, usage(PROMPT + PROMPT + 1, 2));
}

#[test]
fn without_the_feature_a_break_ends_the_stream_as_before() {
    let mut w = World::new(3);
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the"]);
    w.feed(
        &mut x,
        ms(20),
        Event::UpstreamError(A0, Failure::of(FailureKind::ServerError)),
    );
    assert!(continuations(&w).is_empty());
    assert_eq!(
        w.check_finished().outcome,
        Outcome::Broken(FailureKind::ServerError)
    );
}

#[test]
fn a_continuation_refused_by_its_upstream_ends_the_stream_and_is_not_billed() {
    let mut w = world(Some(10), 2);
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the", " sea"]);
    w.feed(
        &mut x,
        ms(20),
        Event::UpstreamError(A0, Failure::of(FailureKind::ServerError)),
    );
    let refused = Failure {
        kind: FailureKind::ClientError,
        status: Some(400),
        body: bytes::Bytes::from_static(b"{}"),
    };
    w.feed(&mut x, ms(25), Event::UpstreamError(A1, refused));
    assert_eq!(
        continuations(&w).len(),
        1,
        "no second continuation after a 4xx"
    );
    let end = Action::Close(StreamEnd::Broken(FailureKind::ClientError));
    assert!(w.actions.contains(&end));
    let r = w.check_finished();
    assert_eq!(r.usage, usage(PROMPT, 2), "the first leg only");
    assert_eq!(r.served_in, Some(RegionIx(0)));
}

#[test]
fn a_continuation_waits_in_a_full_destination_queue_within_its_bound() {
    let mut w = world(None, 2);
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the"]);
    // Every other region is at its in-flight limit (8).
    let demand = spillway_core::Demand {
        est_tokens: 10,
        input_tokens: 5,
    };
    let mut held = Vec::new();
    for d in [DeploymentIx(1), DeploymentIx(2)] {
        while let Ok(a) = w.cap.router.try_acquire(d, demand, ms(15)) {
            held.push(a);
        }
    }
    assert_eq!(held.len(), 16);
    w.feed(
        &mut x,
        ms(20),
        Event::UpstreamError(A0, Failure::of(FailureKind::ServerError)),
    );
    let sent = continuations(&w);
    assert_eq!(sent.len(), 1, "queued beyond the limit, not refused");
    assert_eq!(sent[0].1, RegionIx(1));
    w.feed(
        &mut x,
        ms(60),
        Event::UpstreamPiece(A1, leg_chunk("second", " sea", None)),
    );
    w.feed(&mut x, ms(61), Event::UpstreamEnd(A1));
    for a in held {
        let outcome = spillway_core::Outcome::Failure(FailureKind::Cancelled);
        w.cap.router.release(a, outcome, ms(70));
    }
    assert_eq!(w.check_finished().outcome, Outcome::Served);
    assert_eq!(text_of(&w), " the sea");
}

/// Fills deployments 1 and 2 to their limit and their queue bound; returns the admissions.
fn fill_the_set(w: &mut World, now: std::time::Duration) -> Vec<spillway_core::Admission> {
    let demand = spillway_core::Demand {
        est_tokens: 10,
        input_tokens: 5,
    };
    let mut held = Vec::new();
    for (d, r) in [(1, 1), (2, 2)] {
        let step = spillway_core::Step {
            deployment: DeploymentIx(d),
            region: RegionIx(r),
            reason: Reason::Local,
            queued: true,
        };
        while let Ok(a) = w.cap.router.admit(&step, demand, now) {
            held.push(a);
        }
    }
    held
}

#[test]
fn a_continuation_waits_for_room_in_a_full_set_and_goes_when_a_slot_frees() {
    let mut w = world(None, 2);
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the"]);
    let mut held = fill_the_set(&mut w, ms(15));
    assert!(held.len() > 16, "queues full too: {}", held.len());
    w.feed(
        &mut x,
        ms(20),
        Event::UpstreamError(A0, Failure::of(FailureKind::ServerError)),
    );
    assert!(continuations(&w).is_empty(), "no room yet");
    assert!(!x.is_done(), "waiting, not ended");
    let poll = x.poll_timeout().expect("a poll timer");
    assert_eq!(poll, ms(30));
    w.feed(&mut x, poll, Event::TimerFired);
    assert!(continuations(&w).is_empty());
    // A slot of region 2 frees: the next poll sends the continuation there.
    let outcome = spillway_core::Outcome::Failure(FailureKind::Cancelled);
    let freed = held.pop().expect("one");
    assert_eq!(freed.deployment, DeploymentIx(2));
    w.cap.router.release(freed, outcome, ms(35));
    let poll = x.poll_timeout().expect("a poll timer");
    w.feed(&mut x, poll, Event::TimerFired);
    let sent = continuations(&w);
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0, sent[0].1), (A1, RegionIx(2)));
    w.feed(
        &mut x,
        poll + ms(30),
        Event::UpstreamPiece(A1, leg_chunk("second", " sea", None)),
    );
    w.feed(&mut x, poll + ms(31), Event::UpstreamEnd(A1));
    for a in held {
        w.cap.router.release(a, outcome, ms(90));
    }
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Served);
    assert_eq!(text_of(&w), " the sea");
    assert_eq!(
        r.usage,
        usage(PROMPT + PROMPT + 1, 2),
        "nothing billed for the wait"
    );
}

#[test]
fn a_continuation_that_finds_no_room_within_the_first_byte_wait_ends_the_stream() {
    let mut w = world(None, 2);
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the"]);
    let held = fill_the_set(&mut w, ms(15));
    w.feed(
        &mut x,
        ms(20),
        Event::UpstreamError(A0, Failure::of(FailureKind::ServerError)),
    );
    while let Some(t) = x.poll_timeout() {
        assert!(t <= ms(20) + FIRST_BYTE, "no poll past the wait");
        w.feed(&mut x, t, Event::TimerFired);
    }
    assert!(continuations(&w).is_empty());
    let end = Action::Close(StreamEnd::Broken(FailureKind::ServerError));
    assert!(w.actions.contains(&end));
    let outcome = spillway_core::Outcome::Failure(FailureKind::Cancelled);
    for a in held {
        w.cap.router.release(a, outcome, ms(90));
    }
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Broken(FailureKind::ServerError));
    assert_eq!(r.usage, usage(PROMPT, 1), "the first leg only");
}

#[test]
fn a_continuation_may_go_to_a_candidate_the_plan_left_out_for_want_of_room() {
    let mut w = world(None, 2);
    // At admission the other regions are full: the plan holds the source only.
    let held = fill_the_set(&mut w, ms(0));
    let mut x = w.admit(ms(0), true);
    first_leg(&mut w, &mut x, &[" the"]);
    let outcome = spillway_core::Outcome::Failure(FailureKind::Cancelled);
    for a in held {
        w.cap.router.release(a, outcome, ms(12));
    }
    w.feed(
        &mut x,
        ms(20),
        Event::UpstreamError(A0, Failure::of(FailureKind::ServerError)),
    );
    let sent = continuations(&w);
    assert_eq!(sent.len(), 1, "{:?}", w.actions);
    assert_ne!(sent[0].1, RegionIx(0));
    let (a, region) = (sent[0].0, sent[0].1);
    w.feed(
        &mut x,
        ms(40),
        Event::UpstreamPiece(a, leg_chunk("second", " sea", None)),
    );
    w.feed(&mut x, ms(41), Event::UpstreamEnd(a));
    let r = w.check_finished();
    assert_eq!(r.outcome, Outcome::Served);
    assert_eq!(
        r.tries.last().map(|t| t.region),
        Some(region),
        "the send's region is the try's"
    );
    assert_eq!(text_of(&w), " the sea");
}
