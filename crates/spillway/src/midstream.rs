//! Mid-stream faults and how a continued stream is judged: shared by `spillway demo`'s
//! `cross-region-midstream` scenario and `spillway bench midstream`.
//!
//! # The faults
//!
//! A simulator can break a stream after its first `k` tokens three ways ([`Kind`]): it aborts the
//! connection (`break_after_tokens`, a reset as the gateway sees it), it sends an SSE error event
//! and ends the stream (`error_event_after_tokens`), or it stops sending and holds the connection
//! (`stall_after_tokens`: the gateway notices after `first_byte_timeout_ms` without a chunk). The
//! simulator applies one at a time (where two are set, one wins), so a schedule that wants all
//! three switches between them.
//!
//! # The evidence
//!
//! * **Continued** streams are counted from the simulators' own records: a request id that some
//!   simulator served as a continuation ([`spillway_sim::ServedRecord::continued_from`]), as
//!   residency is judged from them rather than from what the gateway says. The kind of break
//!   that preceded it is the outcome of that id's first leg (`broken`, `error`, `cancelled`).
//! * **The text**: every simulator has the same text seed ([`TEXT_SEED`], one model's weights),
//!   so the unbroken answer to a request is `seeded_text(seed, fingerprint of its messages, 0,
//!   n)` with `n` its `max_tokens` (the simulator writes exactly that many). Each request gets a
//!   prompt of its own ([`spillway_bench::client::tagged_prompt`]), so a continuation that went
//!   on from another request's text, restarted, or skipped or repeated a token shows as a
//!   mismatch ([`mismatch`]).
use std::collections::{HashMap, HashSet};

use spillway_bench::client::{RequestResult, RequestSpec};
use spillway_sim::SimHandle;

/// The simulated model's text seed, the same in every region.
pub const TEXT_SEED: u64 = 0x5eed_2019;

/// How a stream breaks after its first tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Kind {
    /// The connection is aborted.
    Reset,
    /// An SSE error event, then the end of the stream.
    ErrorEvent,
    /// No more bytes, the connection held open.
    Stall,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Reset, Kind::ErrorEvent, Kind::Stall];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Reset => "reset",
            Kind::ErrorEvent => "error-event",
            Kind::Stall => "stall",
        }
    }

    /// The simulator's fault: this break after `k` content tokens.
    pub fn fault(self, k: u64) -> spillway_sim::Fault {
        let mut f = spillway_sim::Fault::default();
        match self {
            Kind::Reset => f.break_after_tokens = Some(k),
            Kind::ErrorEvent => f.error_event_after_tokens = Some(k),
            Kind::Stall => f.stall_after_tokens = Some(k),
        }
        f
    }

    /// The kind of break a simulator recorded as this outcome (the broken leg of a stream).
    pub fn of_outcome(outcome: &str) -> Option<Kind> {
        match outcome {
            "broken" => Some(Kind::Reset),
            "error" => Some(Kind::ErrorEvent),
            // The stalled leg ends when the gateway gives up on it and goes away.
            "cancelled" => Some(Kind::Stall),
            _ => None,
        }
    }
}

/// The answer the request gets from a stream that does not break.
pub fn unbroken(spec: &RequestSpec) -> String {
    let fingerprint = spillway_sim::prompt_fingerprint(&spec.messages());
    spillway_sim::seeded_text(TEXT_SEED, fingerprint, 0, spec.max_tokens)
}

/// Streams of `results` whose text is not the unbroken answer to their prompt (`expected`, by
/// request id; a stream with no expected answer counts too).
pub fn text_mismatches(results: &[RequestResult], expected: &HashMap<String, String>) -> u64 {
    results
        .iter()
        .filter(|r| expected.get(&r.id).is_none_or(|e| mismatch(r, e)))
        .count() as u64
}

/// The client's text is not the unbroken answer `expected`: a complete stream whose text is not
/// exactly it, or an incomplete one whose text is not a beginning of it. A complete stream
/// without a transcript counts as a mismatch (nothing shows it is right).
pub fn mismatch(result: &RequestResult, expected: &str) -> bool {
    match &result.transcript {
        Some(t) if result.ok() => t.text != expected,
        Some(t) => !expected.starts_with(&t.text),
        None => result.ok(),
    }
}

/// The request ids among `ids` that a simulator served as a continuation, each with the kind of
/// the break that preceded it (`None` when no simulator recorded the broken leg as one).
pub fn continued(sims: &[SimHandle], ids: &HashSet<String>) -> HashMap<String, Option<Kind>> {
    let records: Vec<_> = sims.iter().flat_map(SimHandle::served).collect();
    let mut out: HashMap<String, Option<Kind>> = records
        .iter()
        .filter(|r| r.continued_from.is_some())
        .filter_map(|r| r.request_id.clone())
        .filter(|id| ids.contains(id))
        .map(|id| (id, None))
        .collect();
    for r in records.iter().filter(|r| r.continued_from.is_none()) {
        if let Some(kind) = r.request_id.as_ref().and_then(|id| out.get_mut(id)) {
            *kind = kind.or(Kind::of_outcome(&r.outcome));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_bench::client::Transcript;
    use std::time::Duration;

    fn spec(tag: &str) -> RequestSpec {
        RequestSpec {
            id: tag.into(),
            at: Duration::ZERO,
            base_url: String::new(),
            source: "us-east-1".into(),
            model: "m".into(),
            prompt_tokens: 50,
            max_tokens: 8,
            prompt: Some(spillway_bench::client::tagged_prompt(tag, 50)),
            hash_ids: None,
        }
    }

    fn result(status: u16, complete: bool, text: Option<&str>) -> RequestResult {
        RequestResult {
            id: "a".into(),
            source: "us-east-1".into(),
            status,
            served_region: None,
            route_reason: None,
            ttft: None,
            e2e: Duration::ZERO,
            output_chunks: 0,
            complete,
            late: Duration::ZERO,
            transcript: text.map(|t| Transcript {
                text: t.into(),
                ..Transcript::default()
            }),
        }
    }

    #[test]
    fn each_prompt_has_its_own_answer_of_max_tokens() {
        let (a, b) = (unbroken(&spec("a")), unbroken(&spec("b")));
        assert_ne!(a, b);
        assert_eq!(a.split_whitespace().count(), 8);
    }

    #[test]
    fn the_text_is_judged_whole_when_complete_and_as_a_prefix_when_not() {
        let whole = unbroken(&spec("a"));
        let half = &whole[..whole.len() / 2];
        assert!(!mismatch(&result(200, true, Some(&whole)), &whole));
        assert!(mismatch(&result(200, true, Some(half)), &whole));
        assert!(!mismatch(&result(200, false, Some(half)), &whole));
        let repeated = format!("{half}{half}");
        assert!(mismatch(&result(200, false, Some(&repeated)), &whole));
        assert!(mismatch(&result(200, true, None), &whole));
        assert!(!mismatch(&result(429, false, None), &whole));
    }

    #[test]
    fn kinds_make_their_faults() {
        assert_eq!(Kind::Reset.fault(3).break_after_tokens, Some(3));
        assert_eq!(Kind::ErrorEvent.fault(2).error_event_after_tokens, Some(2));
        assert_eq!(Kind::Stall.fault(1).stall_after_tokens, Some(1));
        for k in Kind::ALL {
            let outcome = match k {
                Kind::Reset => "broken",
                Kind::ErrorEvent => "error",
                Kind::Stall => "cancelled",
            };
            assert_eq!(Kind::of_outcome(outcome), Some(k));
        }
    }
}
