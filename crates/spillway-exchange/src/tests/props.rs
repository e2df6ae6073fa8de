//! Random event sequences: whatever the driver reports, in whatever order, every exchange ends
//! in exactly one `Finished`, releases every admission once, settles to the answer's tokens,
//! never sends outside the destination set and never sends again after the first byte.
use bytes::Bytes;
use proptest::prelude::*;
use spillway_core::FailureKind;

use super::{World, chunk, ms, usage};
use crate::{Action, AttemptId, Event, Failure, Outcome, Piece, Settle};

fn failure() -> impl Strategy<Value = Failure> {
    prop_oneof![
        Just(FailureKind::Connect),
        Just(FailureKind::Timeout),
        Just(FailureKind::Throttled { retry_after: None }),
        Just(FailureKind::Throttled {
            retry_after: Some(ms(1500))
        }),
        Just(FailureKind::ServerError),
        Just(FailureKind::ClientError),
    ]
    .prop_map(Failure::of)
}

/// Pieces of a streamed answer (`stream`), of a whole one, or (`both`) of a whole answer
/// assembled from a streamed one: chunks, then the answer.
fn piece(stream: bool, both: bool) -> BoxedStrategy<Piece> {
    if both {
        prop_oneof![piece(true, false), piece(false, false)].boxed()
    } else if stream {
        prop_oneof![
            "[a-z]{0,3}".prop_map(|t| chunk(&t, None)),
            (0u64..50).prop_map(|n| chunk("", Some(usage(100, n)))),
        ]
        .boxed()
    } else {
        proptest::option::of(0u64..50)
            .prop_map(|n| Piece::Answer {
                raw: Bytes::new(),
                parsed: None,
                usage: n.map(|n| usage(90, n)),
            })
            .boxed()
    }
}

fn event(stream: bool, both: bool) -> impl Strategy<Value = Event> {
    let id = (0u32..4).prop_map(AttemptId);
    prop_oneof![
        2 => id.clone().prop_map(Event::UpstreamHead),
        6 => (id.clone(), piece(stream, both)).prop_map(|(a, p)| Event::UpstreamPiece(a, p)),
        2 => id.clone().prop_map(Event::UpstreamEnd),
        3 => (id, failure()).prop_map(|(a, f)| Event::UpstreamError(a, f)),
        1 => Just(Event::ClientGone),
        1 => Just(Event::ClientStalled),
        2 => Just(Event::TimerFired),
    ]
}

fn run(
    (stream, upstream_stream, resume): (bool, bool, bool),
    regions: u16,
    drain: bool,
    steps: Vec<(u64, Event)>,
) {
    let mut w = World::new(regions);
    if resume {
        w.resume = Some(crate::ResumePolicy {
            deployments: (0..regions)
                .map(|r| {
                    (
                        spillway_core::DeploymentIx(u32::from(r)),
                        spillway_core::RegionIx(r),
                    )
                })
                .collect(),
            max_tokens: Some(6),
            max_resumes: 2,
        });
    }
    w.upstream_stream = upstream_stream;
    if drain {
        w.drain = ms(2_000);
    }
    let mut x = w.admit(ms(0), stream);
    let mut now = ms(0);
    for (dt, ev) in steps {
        now += ms(dt);
        // A timer fires at its deadline, as the driver would.
        let at = match (&ev, x.poll_timeout()) {
            (Event::TimerFired, Some(d)) => d.max(now),
            _ => now,
        };
        now = at;
        w.feed(&mut x, now, ev);
    }
    if !x.is_done() {
        w.feed(&mut x, now + ms(1), Event::Aborted);
    }
    let r = w.check_finished();
    assert!(
        r.tries.len() <= regions as usize,
        "a deployment is tried once"
    );
    // Settlement: to the tokens of the answer, which are the upstream's usage or the prompt
    // and the text pieces the client got (and, draining, those it was gone for).
    if let (Settle::Used(_), true, None, false) = (r.settle, stream, last_reported(&w), drain) {
        let text = w
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Emit(p) if p.output_tokens() > 0))
            .count() as u64;
        assert_eq!(r.usage.completion_tokens, text);
    }
    if r.outcome == Outcome::Served {
        assert!(r.served_in.is_some());
        assert!(r.timings.first_byte.is_some());
    }
}

/// The last usage the client's emitted pieces reported, if any.
fn last_reported(w: &World) -> Option<spillway_proto::Usage> {
    w.actions.iter().rev().find_map(|a| match a {
        Action::Emit(p) => p.usage(),
        _ => None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_sequence_ends_once(
        stream in any::<bool>(),
        upstream_stream in any::<bool>(),
        resume in any::<bool>(),
        regions in 1u16..=3,
        drain in any::<bool>(),
        steps in proptest::collection::vec((0u64..3_000, any::<bool>()), 0..30)
            .prop_flat_map(move |times| {
                let n = times.len();
                let events = |stream, both| proptest::collection::vec(event(stream, both), n);
                (Just(times), events(true, false), events(false, false), events(false, true))
            }),
    ) {
        let (times, streamed, whole, assembled) = steps;
        let events = match (stream, upstream_stream) {
            (true, _) => streamed,
            (false, false) => whole,
            (false, true) => assembled,
        };
        let seq = times.into_iter().map(|(t, _)| t).zip(events).collect();
        run((stream, upstream_stream, resume), regions, drain, seq);
    }
}
