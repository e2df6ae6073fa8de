//! Mid-stream failover (issue 19): with `midstream_failover` on, a stream whose region resets,
//! sends an error event or stalls after its first tokens is continued in another region of its
//! set, and the client gets one whole answer, token for token the unbroken one.
use std::collections::HashSet;

use spillway_sim::Fault;

use crate::calls::{Api, End};
use crate::common::{M, US};
use crate::support::{Matrix, N, answer_text, spec, us};

/// Tokens the first leg sends before it fails.
const K: u64 = 3;

/// The matrix's spec with mid-stream failover on for `M` and seeded text on every simulator
/// (the same seed everywhere: one model, the same answer in every region).
fn midstream_spec() -> crate::common::Spec {
    let mut s = spec().routing("first_byte_timeout_ms", "300");
    s.models[0].midstream = true;
    s.text_seed = Some(0x5eed);
    s
}

const STREAMS: [Api; 2] = [Api::ChatStream, Api::ConverseStream];

async fn continued_after(fault: Fault, name: &str) {
    let m = Matrix::start(midstream_spec(), name).await;
    m.fault("us-east-1", fault);
    let seen = m.load(&STREAMS, "us-east-1", &us(), 12).await;
    for s in &seen {
        // Served whole (`assert_served` compares the text with the unbroken answer), in the set.
        s.assert_served(&m.h);
        assert_eq!(s.end, End::Complete, "{s:?}");
    }
    // The streams that started in the source were continued elsewhere in the set: the
    // simulators saw continuations of K tokens, none in the source, none outside `us`.
    let continued: Vec<_> =
        m.h.records()
            .into_iter()
            .filter(|r| r.continued_from.is_some())
            .collect();
    assert!(
        !continued.is_empty(),
        "some streams broke and were continued"
    );
    for r in &continued {
        assert_eq!(r.continued_from, Some(K), "{r:?}");
        assert_ne!(r.region, "us-east-1", "{r:?}");
        assert!(US.contains(&r.region.as_str()), "{r:?}");
    }
    let ids: HashSet<&str> = continued
        .iter()
        .filter_map(|r| r.request_id.as_deref())
        .collect();
    for s in seen.iter().filter(|s| ids.contains(s.id.as_str())) {
        // The client was told where its stream started.
        assert_eq!(s.region(), Some("us-east-1"), "{s:?}");
    }
    m.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_after_the_first_tokens_is_continued_elsewhere() {
    let fault = Fault {
        break_after_tokens: Some(K),
        ..Fault::default()
    };
    continued_after(fault, "midstream-reset").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_event_after_the_first_tokens_is_continued_elsewhere() {
    let fault = Fault {
        error_event_after_tokens: Some(K),
        ..Fault::default()
    };
    continued_after(fault, "midstream-error-event").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_after_the_first_tokens_is_continued_after_the_idle_deadline() {
    let fault = Fault {
        stall_after_tokens: Some(K),
        ..Fault::default()
    };
    continued_after(fault, "midstream-stall").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_id_has_nowhere_to_continue_and_ends_with_the_error_event() {
    let m = Matrix::start(midstream_spec(), "midstream-plain").await;
    m.fault(
        "us-east-1",
        Fault {
            break_after_tokens: Some(K),
            ..Fault::default()
        },
    );
    for api in STREAMS {
        let s = m.call(api, "us-east-1", M).await;
        if s.status != 200 {
            // The breaks ejected the source: a clean refusal.
            s.assert_clean_refusal();
            continue;
        }
        assert!(matches!(s.end, End::ErrorEvent(_)), "{s:?}");
        assert_eq!(s.content, answer_text(&m.h, K), "{s:?}");
    }
    assert!(m.h.records().iter().all(|r| r.continued_from.is_none()));
    m.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stitched_answer_is_the_unbroken_one_and_different_prompts_differ() {
    // Seeded text makes a continuation that restarted, or that lost the prompt, visible.
    let m = Matrix::start(midstream_spec(), "midstream-text").await;
    let whole = answer_text(&m.h, N);
    assert_ne!(
        whole,
        spillway_sim::completion_text(N),
        "seeded, not the cycle"
    );
    let s = m.call(Api::ChatStream, "us-east-1", &us()).await;
    s.assert_served(&m.h);
    assert_eq!(s.content, whole);
    m.verify().await;
}
